//! What the modes share: the priority mix, fingerprints, pacing, the
//! per-consumer statistics, the progress line and small parsers.

use std::io::IsTerminal;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use lanebus::{BudgetStats, MemoryBudget, Priority, LANES};

// ----- priority mix -----

/// Relative weights of the four priorities, as given by `--priority-mix`.
#[derive(Clone, Debug)]
pub struct PriorityMix {
    weights: [u32; LANES],
    total: u32,
}

impl FromStr for PriorityMix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut weights: [Option<u32>; LANES] = [None; LANES];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = parse_mix_part(part)?;
            let slot = &mut weights[name.index()];
            if slot.replace(weight).is_some() {
                return Err(format!("{name} is given twice"));
            }
        }
        let weights = weights.map(|w| w.unwrap_or(0));
        let total = weights
            .iter()
            .try_fold(0u32, |sum, &w| sum.checked_add(w))
            .ok_or("the weights add up to more than 4294967295")?;
        if total == 0 {
            return Err("no priority has a weight above 0 (example: urgent=5,normal=95)".into());
        }
        Ok(Self { weights, total })
    }
}

/// Parses one `NAME=WEIGHT` pair.
fn parse_mix_part(part: &str) -> Result<(Priority, u32), String> {
    let (name, weight) = part
        .split_once('=')
        .ok_or_else(|| format!("`{part}`: expected NAME=WEIGHT, as in normal=80"))?;
    let name: Priority = name.trim().parse().map_err(|e| format!("`{part}`: {e}"))?;
    let weight = weight
        .trim()
        .parse()
        .map_err(|_| format!("`{part}`: the weight must be a whole number (0 or more)"))?;
    Ok((name, weight))
}

impl PriorityMix {
    /// The priority for a uniformly random `r`.
    pub fn pick(&self, r: u64) -> Priority {
        let mut x = (r % u64::from(self.total)) as u32;
        for (i, &w) in self.weights.iter().enumerate() {
            if x < w {
                return Priority::ALL[i];
            }
            x -= w;
        }
        unreachable!("x < total = sum of weights")
    }

    pub fn describe(&self) -> String {
        let parts: Vec<String> = Priority::ALL
            .iter()
            .zip(self.weights)
            .filter(|(_, w)| *w > 0)
            .map(|(p, w)| format!("{p}={w}"))
            .collect();
        parts.join(",")
    }
}

// ----- byte sizes -----

/// A number of bytes, as given on the command line: `65536`, `64KiB`,
/// `64K` (binary), `64KB` (decimal), and likewise M and G.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let bad = || format!("`{s}`: expected a size such as 65536, 64KiB, 16MiB or 1GB");
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "m" | "mib" => 1 << 20,
            "g" | "gib" => 1 << 30,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            _ => return Err(bad()),
        };
        let bytes = n
            .checked_mul(scale)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| format!("`{s}`: too large"))?;
        if bytes == 0 {
            return Err(format!("`{s}`: must be more than 0"));
        }
        Ok(ByteSize(bytes))
    }
}

/// `--high-watermark`: bytes, or a percentage of the budget.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Watermark {
    Bytes(usize),
    Percent(f64),
}

impl FromStr for Watermark {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(Watermark::Percent(p)),
                _ => Err(format!("`{s}`: expected a percentage from 0% to 100%")),
            },
            None => Ok(Watermark::Bytes(s.parse::<ByteSize>()?.0)),
        }
    }
}

/// `n` bytes for people: `512 B`, `64.0 KiB`, `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `1234567` as `1,234,567`.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Four per-priority counters as `u1 h2 n3 l4`.
pub fn per_priority(a: [u64; LANES]) -> String {
    let parts: Vec<String> = Priority::ALL
        .iter()
        .zip(a)
        .map(|(p, n)| format!("{}{}", &p.as_str()[..1], group(n)))
        .collect();
    parts.join(" ")
}

/// The peak resident set size of this process (`VmHWM` in
/// `/proc/self/status`), if it can be read.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

// ----- fingerprints -----

/// SplitMix64: a good 64-bit mixer, for fingerprints and for picking lanes.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A multiset fingerprint of sequence numbers: equal fingerprints of what
/// was sent and what was received mean each was received exactly once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fingerprint {
    pub count: u64,
    pub seq_sum: u64,
    pub hash_sum: u64,
}

impl Fingerprint {
    pub fn add(&mut self, seq: u64) {
        self.count += 1;
        self.seq_sum = self.seq_sum.wrapping_add(seq);
        self.hash_sum = self.hash_sum.wrapping_add(mix64(seq));
    }

    pub fn merge(&mut self, other: &Fingerprint) {
        self.count += other.count;
        self.seq_sum = self.seq_sum.wrapping_add(other.seq_sum);
        self.hash_sum = self.hash_sum.wrapping_add(other.hash_sum);
    }
}

/// The byte a payload is filled with.
pub fn fill_byte(producer: u32, seq: u64) -> u8 {
    (seq as u8) ^ (producer as u8)
}

// ----- clocks and pacing -----

/// Nanoseconds from `start` to `now`.
pub fn nanos_since(start: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(start).as_nanos() as u64
}

/// Nanoseconds since the unix epoch (the clock of `Envelope::enqueued_at`).
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Keeps a producer to one send per `--interval`, on a fixed schedule
/// (slot k at start + k × interval), so the offered rate holds even when a
/// producer is descheduled now and then: one that falls behind sends
/// without pausing until it is back on schedule. If the bus cannot take the
/// rate, that makes the run a saturated one; the report's msg/s shows it.
pub struct Pacer {
    interval: Option<Duration>,
    next: Option<Instant>,
}

impl Pacer {
    pub fn new(interval_us: u64) -> Self {
        Self {
            interval: (interval_us > 0).then(|| Duration::from_micros(interval_us)),
            next: None,
        }
    }

    /// Waits for the next slot (but not past `deadline`).
    pub fn pace(&mut self, deadline: Instant) {
        let Some(interval) = self.interval else {
            return;
        };
        let slot = match self.next {
            None => Instant::now(),
            Some(next) => {
                wait_until(next.min(deadline));
                next
            }
        };
        self.next = Some(slot + interval);
    }
}

/// Sleeps while at least a millisecond is left, then spins (yielding the
/// core, which may be shared) until `t`.
fn wait_until(t: Instant) {
    loop {
        let now = Instant::now();
        if now >= t {
            return;
        }
        let left = t - now;
        if left >= Duration::from_millis(1) {
            thread::sleep(left);
        } else {
            thread::yield_now();
        }
    }
}

// ----- consumers -----

/// Latency histogram bounds, in nanoseconds: 1 ns to 60 s, 3 digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// What one consumer (a channel consumer, a group member, a subscriber or
/// a pool worker) saw.
pub struct ConsumerStats {
    pub latency: [Histogram<u64>; LANES],
    /// Per producer.
    pub received: Vec<Fingerprint>,
    /// Per producer and lane: the last sequence number seen.
    last_seq: Vec<[Option<u64>; LANES]>,
    /// Whether sequence numbers must arrive in order per producer and lane
    /// (not for a pool worker: work stealing and retries reorder).
    ordered: bool,
    /// Payload or order violations (the first few, and how many).
    pub errors: Vec<String>,
    pub error_count: u64,
}

impl ConsumerStats {
    pub fn new(producers: usize) -> Self {
        Self {
            latency: [(); LANES].map(|()| new_histogram()),
            received: vec![Fingerprint::default(); producers],
            last_seq: vec![[None; LANES]; producers],
            ordered: true,
            errors: Vec::new(),
            error_count: 0,
        }
    }

    /// As `new`, without the per-lane order check.
    pub fn unordered(producers: usize) -> Self {
        Self {
            ordered: false,
            ..Self::new(producers)
        }
    }

    pub fn error(&mut self, text: String) {
        self.error_count += 1;
        if self.errors.len() < 5 {
            self.errors.push(text);
        }
    }

    /// Records one received message; `intact` says whether its payload
    /// checked out.
    pub fn record(
        &mut self,
        producer: u32,
        seq: u64,
        priority: Priority,
        latency_ns: u64,
        intact: bool,
    ) {
        let lane = priority.index();
        self.latency[lane].saturating_record(latency_ns.max(1));
        let Some(fp) = self.received.get_mut(producer as usize) else {
            return self.error(format!("message from unknown producer {producer}"));
        };
        fp.add(seq);
        if !intact {
            self.error(format!("producer {producer} seq {seq}: corrupt payload"));
        }
        if !self.ordered {
            return;
        }
        let last = &mut self.last_seq[producer as usize][lane];
        if let Some(prev) = last.replace(seq).filter(|&prev| prev >= seq) {
            self.error(format!(
                "producer {producer} lane {priority}: seq {seq} received after {prev}"
            ));
        }
    }

    pub fn count(&self) -> u64 {
        self.received.iter().map(|f| f.count).sum()
    }
}

/// What one producer did.
pub struct ProducerResult {
    /// The fingerprint of what was sent; `count` is the next `seq`.
    pub sent: Fingerprint,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

/// A counter on its own cache line, so consumers do not slow each other.
#[repr(align(128))]
#[derive(Default)]
pub struct PaddedCounter(pub AtomicU64);

/// Everything a run produced, in any mode.
pub struct Outcome {
    pub producers: Vec<ProducerResult>,
    /// The channel's consumers, or the consumer group's members.
    pub workers: Vec<ConsumerStats>,
    /// Bus mode: the fan-out subscribers, one each.
    pub subscribers: Vec<ConsumerStats>,
    /// From the start until every consumer finished.
    pub elapsed: Duration,
    /// The budget's counters after everything drained.
    pub budget: Option<BudgetStats>,
    /// Failed checks of one mode (e.g. messages a bus left unrouted).
    pub failures: Vec<String>,
    /// Pool mode: what the pool did and where every message ended up.
    pub pool: Option<crate::pool_mode::PoolSummary>,
}

pub fn join<T>(handle: JoinHandle<T>) -> T {
    handle.join().expect("a stress thread panicked")
}

/// What the progress line shows besides the rate.
pub struct Gauges {
    /// Messages queued per lane (in the channel, or the group's queue).
    pub lanes: [usize; LANES],
    /// Pool mode: messages the pool took and has not settled yet.
    pub in_pool: Option<u64>,
    /// Appended to the line (pool mode: retries and dead letters so far).
    pub extra: String,
}

/// Shows progress once a second until `done`: messages/s, queue depth per
/// lane and budget bytes in use. On a terminal it is a live progress line
/// (indicatif); otherwise (a CI log, a pipe) one plain line a second goes to
/// stderr.
pub fn monitor(
    progress: &[Arc<PaddedCounter>],
    done: impl Fn() -> bool,
    depth: impl Fn() -> [usize; LANES],
    budget: Option<&MemoryBudget>,
    start: Instant,
) {
    let gauges = || Gauges {
        lanes: depth(),
        in_pool: None,
        extra: String::new(),
    };
    monitor_gauges(progress, done, gauges, budget, start);
}

/// As `monitor`, with the queue depth and more from `gauges`: the depth
/// counts the messages in the pool too (`pool=N`).
pub fn monitor_gauges(
    progress: &[Arc<PaddedCounter>],
    done: impl Fn() -> bool,
    gauges: impl Fn() -> Gauges,
    budget: Option<&MemoryBudget>,
    start: Instant,
) {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .expect("a valid progress template"),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    });
    let mut next = start + Duration::from_secs(1);
    let mut last = 0u64;
    while !done() {
        thread::sleep(Duration::from_millis(20));
        if Instant::now() < next {
            continue;
        }
        let total: u64 = progress.iter().map(|c| c.0.load(Ordering::Relaxed)).sum();
        let Gauges {
            lanes,
            in_pool,
            extra,
        } = gauges();
        let mut names: Vec<String> = Priority::ALL
            .iter()
            .map(|&p| format!("{}={}", &p.as_str()[..1], lanes[p.index()]))
            .collect();
        let mut depth = lanes.iter().sum::<usize>() as u64;
        if let Some(n) = in_pool {
            names.push(format!("pool={n}"));
            depth += n;
        }
        let budget = budget.map_or(String::new(), |b| {
            format!("   budget in use {:>10}", human_bytes(b.in_use() as u64))
        });
        let line = format!(
            "{:>12} msg/s   queue depth {:>6} ({}){budget}{extra}",
            group(total - last),
            depth,
            names.join(" ")
        );
        match &bar {
            Some(bar) => bar.set_message(line),
            None => eprintln!("[{:>3}s] {line}", next.duration_since(start).as_secs()),
        }
        last = total;
        next += Duration::from_secs(1);
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}
