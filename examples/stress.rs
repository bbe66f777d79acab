//! Stress demo: saturates a lanebus channel and reports throughput, latency
//! per priority and an exactly-once check.
//!
//! `--producers` threads send as fast as they can for `--duration` seconds,
//! each message on a lane drawn from `--priority-mix`, then drop their
//! senders. `--consumers` threads receive until the channel is closed and
//! empty, recording the send-to-receive latency of every message in one
//! histogram per priority. Once a second a progress line (messages/s, queue
//! depth) goes to stderr; at the end a report (text or JSON) goes to stdout
//! or to `--out FILE`.
//!
//! Verification: every producer numbers its messages 0, 1, 2, … and keeps
//! a fingerprint of what it sent (count, sum of sequence numbers, sum of a
//! 64-bit hash of each); the consumers build the same fingerprint from what
//! they received. Equal fingerprints mean every message arrived exactly once
//! (a loss and a duplicate would have to collide in both sums). Consumers
//! also check each payload and that, per producer and lane, sequence numbers
//! arrive in increasing order. The exit status is 1 if any check fails.
//!
//! Run (from the repository root):
//!
//! ```text
//! cargo run --release --example stress
//! cargo run --release --example stress -- --duration 3 --producers 4 --batch-size 64
//! cargo run --release --example stress -- --priority-mix urgent=1,low=99 --payload-size 256
//! cargo run --release --example stress -- --report json --out stress.json
//! ```

use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use lanebus::{Priority, Receiver, Sender, LANES};

/// Stress a lanebus channel: producers send flat out for a while, consumers
/// measure latency per priority, and every message is checked to arrive
/// exactly once.
#[derive(Parser, Debug)]
#[command(about, long_about = None)]
struct Args {
    /// How long the producers send, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    duration: u64,

    /// Producer threads.
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    producers: u32,

    /// Consumer threads.
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    consumers: u32,

    /// Capacity of each priority lane.
    #[arg(long, value_name = "N", default_value = "1024")]
    capacity: NonZeroUsize,

    /// Messages per send_batch/recv_batch call; 1 sends and receives one
    /// message at a time.
    #[arg(long, value_name = "N", default_value = "1")]
    batch_size: NonZeroUsize,

    /// Payload bytes per message (up to 16 are stored inline, more on the
    /// heap).
    #[arg(long, value_name = "BYTES", default_value_t = 8)]
    payload_size: usize,

    /// Share of messages per priority, as NAME=WEIGHT pairs; weights are
    /// relative and a priority left out gets none.
    #[arg(long, value_name = "MIX", default_value = "urgent=5,high=15,normal=80")]
    priority_mix: PriorityMix,

    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    report: ReportFormat,

    /// Write the report to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

// ----- priority mix -----

/// Relative weights of the four priorities, as given by `--priority-mix`.
#[derive(Clone, Debug)]
struct PriorityMix {
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
    fn pick(&self, r: u64) -> Priority {
        let mut x = (r % u64::from(self.total)) as u32;
        for (i, &w) in self.weights.iter().enumerate() {
            if x < w {
                return Priority::ALL[i];
            }
            x -= w;
        }
        unreachable!("x < total = sum of weights")
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = Priority::ALL
            .iter()
            .zip(self.weights)
            .filter(|(_, w)| *w > 0)
            .map(|(p, w)| format!("{p}={w}"))
            .collect();
        parts.join(",")
    }
}

// ----- messages and fingerprints -----

/// Payloads up to this size are stored inline.
const INLINE: usize = 16;

enum Payload {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Payload {
    /// `size` bytes, each `fill`.
    fn new(size: usize, fill: u8) -> Self {
        if size <= INLINE {
            Payload::Inline {
                len: size as u8,
                bytes: [fill; INLINE],
            }
        } else {
            Payload::Heap(vec![fill; size].into_boxed_slice())
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Payload::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Payload::Heap(b) => b,
        }
    }

    /// True if the payload has `size` bytes and its ends hold `fill`.
    fn is_intact(&self, size: usize, fill: u8) -> bool {
        let b = self.bytes();
        let ends = [b.first(), b.last()];
        b.len() == size && ends.iter().flatten().all(|&&x| x == fill)
    }
}

struct Message {
    producer: u32,
    seq: u64,
    /// Nanoseconds from the shared start to the send.
    sent_ns: u64,
    priority: Priority,
    payload: Payload,
}

/// The byte a payload is filled with.
fn fill_byte(producer: u32, seq: u64) -> u8 {
    (seq as u8) ^ (producer as u8)
}

impl Message {
    fn new(producer: u32, seq: u64, priority: Priority, sent_ns: u64, size: usize) -> Self {
        Self {
            producer,
            seq,
            sent_ns,
            priority,
            payload: Payload::new(size, fill_byte(producer, seq)),
        }
    }
}

/// SplitMix64: a good 64-bit mixer, for fingerprints and for picking lanes.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A multiset fingerprint of sequence numbers: equal fingerprints of what
/// was sent and what was received mean each was received exactly once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Fingerprint {
    count: u64,
    seq_sum: u64,
    hash_sum: u64,
}

impl Fingerprint {
    fn add(&mut self, seq: u64) {
        self.count += 1;
        self.seq_sum = self.seq_sum.wrapping_add(seq);
        self.hash_sum = self.hash_sum.wrapping_add(mix64(seq));
    }

    fn merge(&mut self, other: &Fingerprint) {
        self.count += other.count;
        self.seq_sum = self.seq_sum.wrapping_add(other.seq_sum);
        self.hash_sum = self.hash_sum.wrapping_add(other.hash_sum);
    }
}

/// Nanoseconds from `start` to `now`.
fn nanos_since(start: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(start).as_nanos() as u64
}

// ----- producers -----

/// What every thread needs to know.
#[derive(Clone)]
struct Plan {
    start: Instant,
    deadline: Instant,
    batch: usize,
    payload_size: usize,
    mix: PriorityMix,
    producers: usize,
}

/// One producer thread's state.
struct Producer<'a> {
    id: u32,
    tx: Sender<Message>,
    plan: &'a Plan,
    /// The fingerprint of what was sent so far; `count` is the next `seq`.
    sent: Fingerprint,
    batch: Vec<Message>,
}

impl<'a> Producer<'a> {
    fn new(id: u32, tx: Sender<Message>, plan: &'a Plan) -> Self {
        Self {
            id,
            tx,
            plan,
            sent: Fingerprint::default(),
            batch: Vec::with_capacity(plan.batch),
        }
    }

    /// Sends until the deadline (or until the channel closes early), then
    /// drops its sender; returns the fingerprint of what was sent.
    fn run(mut self) -> Fingerprint {
        let mut rng = mix64(u64::from(self.id) + 1);
        loop {
            let now = Instant::now();
            if now >= self.plan.deadline {
                return self.sent;
            }
            rng = mix64(rng);
            let priority = self.plan.mix.pick(rng);
            let stamp = nanos_since(self.plan.start, now);
            let open = if self.plan.batch == 1 {
                self.send_one(priority, stamp)
            } else {
                self.send_batch(priority, stamp)
            };
            if !open {
                return self.sent;
            }
        }
    }

    fn message(&self, seq: u64, priority: Priority, stamp: u64) -> Message {
        Message::new(self.id, seq, priority, stamp, self.plan.payload_size)
    }

    /// Sends one message; false if the channel is closed.
    fn send_one(&mut self, priority: Priority, stamp: u64) -> bool {
        let seq = self.sent.count;
        let msg = self.message(seq, priority, stamp);
        let ok = self.tx.send_with(priority, msg).is_ok();
        if ok {
            self.sent.add(seq);
        }
        ok
    }

    /// Sends `plan.batch` messages with one `send_batch_with`; false if the
    /// channel is closed (then only the messages that went out count).
    fn send_batch(&mut self, priority: Priority, stamp: u64) -> bool {
        let first = self.sent.count;
        let seqs = first..first + self.plan.batch as u64;
        let mut batch = std::mem::take(&mut self.batch);
        batch.extend(seqs.map(|seq| self.message(seq, priority, stamp)));
        let result = self.tx.send_batch_with(priority, &mut batch);
        // The unsent messages, if any, stay in `batch`.
        let went = (self.plan.batch - batch.len()) as u64;
        for seq in first..first + went {
            self.sent.add(seq);
        }
        batch.clear();
        self.batch = batch;
        result.is_ok()
    }
}

// ----- consumers -----

/// Latency histogram bounds, in nanoseconds: 1 ns to 60 s, 3 digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// What one consumer saw.
struct ConsumerStats {
    latency: [Histogram<u64>; LANES],
    /// Per producer.
    received: Vec<Fingerprint>,
    /// Per producer and lane: the last sequence number seen.
    last_seq: Vec<[Option<u64>; LANES]>,
    /// Payload or order violations (the first few, and how many).
    errors: Vec<String>,
    error_count: u64,
    payload_size: usize,
}

impl ConsumerStats {
    fn new(producers: usize, payload_size: usize) -> Self {
        Self {
            latency: [(); LANES].map(|()| new_histogram()),
            received: vec![Fingerprint::default(); producers],
            last_seq: vec![[None; LANES]; producers],
            errors: Vec::new(),
            error_count: 0,
            payload_size,
        }
    }

    fn error(&mut self, text: String) {
        self.error_count += 1;
        if self.errors.len() < 5 {
            self.errors.push(text);
        }
    }

    fn record(&mut self, msg: &Message, now_ns: u64) {
        let lane = msg.priority.index();
        let latency = now_ns.saturating_sub(msg.sent_ns).max(1);
        self.latency[lane].saturating_record(latency);
        let Some(fp) = self.received.get_mut(msg.producer as usize) else {
            return self.error(format!("message from unknown producer {}", msg.producer));
        };
        fp.add(msg.seq);
        if !msg
            .payload
            .is_intact(self.payload_size, fill_byte(msg.producer, msg.seq))
        {
            self.error(format!(
                "producer {} seq {}: corrupt payload",
                msg.producer, msg.seq
            ));
        }
        let last = &mut self.last_seq[msg.producer as usize][lane];
        if let Some(prev) = last.replace(msg.seq).filter(|&prev| prev >= msg.seq) {
            let p = msg.priority;
            self.error(format!(
                "producer {} lane {p}: seq {} received after {prev}",
                msg.producer, msg.seq
            ));
        }
    }

    fn count(&self) -> u64 {
        self.received.iter().map(|f| f.count).sum()
    }
}

/// Receives until the channel is closed and empty, publishing its count in
/// `progress`.
fn run_consumer(rx: Receiver<Message>, plan: &Plan, progress: &AtomicU64) -> ConsumerStats {
    let mut stats = ConsumerStats::new(plan.producers, plan.payload_size);
    let mut buf = Vec::with_capacity(plan.batch);
    loop {
        if plan.batch == 1 {
            let Ok(msg) = rx.recv() else { break };
            stats.record(&msg, nanos_since(plan.start, Instant::now()));
        } else {
            if rx.recv_batch(&mut buf, plan.batch).is_err() {
                break;
            }
            let now = nanos_since(plan.start, Instant::now());
            for msg in buf.drain(..) {
                stats.record(&msg, now);
            }
        }
        // Relaxed: a progress figure only.
        progress.store(stats.count(), Ordering::Relaxed);
    }
    stats
}

// ----- running -----

/// A counter on its own cache line, so consumers do not slow each other.
#[repr(align(128))]
#[derive(Default)]
struct PaddedCounter(AtomicU64);

struct Outcome {
    sent: Vec<Fingerprint>,
    consumers: Vec<ConsumerStats>,
    /// From the start until every consumer finished.
    elapsed: Duration,
}

fn spawn_producers(tx: Sender<Message>, plan: &Plan) -> Vec<JoinHandle<Fingerprint>> {
    (0..plan.producers as u32)
        .map(|id| {
            let (tx, plan) = (tx.clone(), plan.clone());
            thread::spawn(move || Producer::new(id, tx, &plan).run())
        })
        .collect()
}

fn spawn_consumers(
    rx: &Receiver<Message>,
    plan: &Plan,
    progress: &[Arc<PaddedCounter>],
) -> Vec<JoinHandle<ConsumerStats>> {
    progress
        .iter()
        .map(|counter| {
            let (rx, plan, counter) = (rx.clone(), plan.clone(), counter.clone());
            thread::spawn(move || run_consumer(rx, &plan, &counter.0))
        })
        .collect()
}

/// Prints a progress line to stderr every second until every consumer is
/// done.
fn monitor(
    rx: &Receiver<Message>,
    progress: &[Arc<PaddedCounter>],
    consumers: &[JoinHandle<ConsumerStats>],
    start: Instant,
) {
    let mut next = start + Duration::from_secs(1);
    let mut last = 0u64;
    while !consumers.iter().all(JoinHandle::is_finished) {
        thread::sleep(Duration::from_millis(20));
        if Instant::now() < next {
            continue;
        }
        let total: u64 = progress.iter().map(|c| c.0.load(Ordering::Relaxed)).sum();
        let lanes: Vec<String> = Priority::ALL
            .iter()
            .map(|&p| format!("{}={}", &p.as_str()[..1], rx.len_of(p)))
            .collect();
        eprintln!(
            "[{:>3}s] {:>12} msg/s   queue depth {:>6} ({})",
            next.duration_since(start).as_secs(),
            group(total - last),
            rx.len(),
            lanes.join(" ")
        );
        last = total;
        next += Duration::from_secs(1);
    }
}

fn run(args: &Args) -> Outcome {
    let start = Instant::now();
    let plan = Plan {
        start,
        deadline: start + Duration::from_secs(args.duration),
        batch: args.batch_size.get(),
        payload_size: args.payload_size,
        mix: args.priority_mix.clone(),
        producers: args.producers as usize,
    };
    let (tx, rx) = lanebus::bounded::<Message>(args.capacity.get());
    let progress: Vec<Arc<PaddedCounter>> = (0..args.consumers).map(|_| Arc::default()).collect();
    let consumers = spawn_consumers(&rx, &plan, &progress);
    let producers = spawn_producers(tx, &plan);
    // The last producer to finish drops the last sender; `rx` stays for
    // the progress line's queue depth.
    monitor(&rx, &progress, &consumers, start);
    let sent = producers.into_iter().map(join).collect();
    let consumers = consumers.into_iter().map(join).collect();
    Outcome {
        sent,
        consumers,
        elapsed: start.elapsed(),
    }
}

fn join<T>(handle: JoinHandle<T>) -> T {
    handle.join().expect("a stress thread panicked")
}

// ----- verification -----

struct Verdict {
    ok: bool,
    lines: Vec<String>,
}

fn verify(outcome: &Outcome) -> Verdict {
    let mut lines = Vec::new();
    for (id, sent) in outcome.sent.iter().enumerate() {
        let mut got = Fingerprint::default();
        for c in &outcome.consumers {
            got.merge(&c.received[id]);
        }
        if got != *sent {
            lines.push(format!(
                "producer {id}: sent {} (seq sum {}, hash sum {:#x}), received {} (seq sum {}, hash sum {:#x})",
                sent.count, sent.seq_sum, sent.hash_sum, got.count, got.seq_sum, got.hash_sum
            ));
        }
    }
    for c in &outcome.consumers {
        lines.extend(c.errors.iter().cloned());
        if c.error_count > c.errors.len() as u64 {
            lines.push(format!(
                "... and {} more errors",
                c.error_count - c.errors.len() as u64
            ));
        }
    }
    let ok = lines.is_empty();
    if ok {
        lines.push(format!(
            "OK: every sequence number of all {} producers received exactly once \
             (count, seq sum and hash sum match); payloads intact; per-lane order kept",
            outcome.sent.len()
        ));
    }
    Verdict { ok, lines }
}

// ----- reporting -----

/// Latency and count of one priority.
struct LaneSummary {
    priority: Priority,
    count: u64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
}

fn summarize(outcome: &Outcome) -> Vec<LaneSummary> {
    Priority::ALL
        .iter()
        .map(|&priority| {
            let mut h = new_histogram();
            for c in &outcome.consumers {
                h.add(&c.latency[priority.index()]).expect("same bounds");
            }
            let us = |ns: u64| ns as f64 / 1000.0;
            LaneSummary {
                priority,
                count: h.len(),
                p50_us: us(h.value_at_quantile(0.5)),
                p99_us: us(h.value_at_quantile(0.99)),
                p999_us: us(h.value_at_quantile(0.999)),
                max_us: us(h.max()),
            }
        })
        .collect()
}

/// `1234567` as `1,234,567`.
fn group(n: u64) -> String {
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

fn total_and_rate(outcome: &Outcome) -> (u64, f64) {
    let total: u64 = outcome.consumers.iter().map(ConsumerStats::count).sum();
    (total, total as f64 / outcome.elapsed.as_secs_f64())
}

fn text_report(args: &Args, outcome: &Outcome, lanes: &[LaneSummary], verdict: &Verdict) -> String {
    let (total, rate) = total_and_rate(outcome);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "lanebus stress: producers {}, consumers {}, capacity {}/lane, batch {}, payload {} B, mix {}",
        args.producers,
        args.consumers,
        args.capacity,
        args.batch_size,
        args.payload_size,
        args.priority_mix.describe()
    );
    let _ = writeln!(
        s,
        "sent for {} s, drained after {:.2} s: {} messages, {} msg/s",
        args.duration,
        outcome.elapsed.as_secs_f64(),
        group(total),
        group(rate as u64)
    );
    let _ = writeln!(
        s,
        "{:<8} {:>14} {:>11} {:>11} {:>11} {:>11}",
        "priority", "messages", "p50 us", "p99 us", "p99.9 us", "max us"
    );
    for l in lanes {
        let _ = writeln!(
            s,
            "{:<8} {:>14} {:>11.1} {:>11.1} {:>11.1} {:>11.1}",
            l.priority.as_str(),
            group(l.count),
            l.p50_us,
            l.p99_us,
            l.p999_us,
            l.max_us
        );
    }
    for line in &verdict.lines {
        let _ = writeln!(s, "verify: {line}");
    }
    s
}

/// `s` as a JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_report(args: &Args, outcome: &Outcome, lanes: &[LaneSummary], verdict: &Verdict) -> String {
    let (total, rate) = total_and_rate(outcome);
    let lanes: Vec<String> = lanes
        .iter()
        .map(|l| {
            format!(
                "{{\"priority\":\"{}\",\"messages\":{},\"p50_us\":{:.3},\"p99_us\":{:.3},\"p999_us\":{:.3},\"max_us\":{:.3}}}",
                l.priority, l.count, l.p50_us, l.p99_us, l.p999_us, l.max_us
            )
        })
        .collect();
    let details: Vec<String> = verdict.lines.iter().map(|l| json_str(l)).collect();
    format!(
        "{{\"config\":{{\"duration_secs\":{},\"producers\":{},\"consumers\":{},\"capacity\":{},\
         \"batch_size\":{},\"payload_size\":{},\"priority_mix\":{}}},\
         \"elapsed_secs\":{:.3},\"total_messages\":{},\"messages_per_sec\":{:.0},\
         \"lanes\":[{}],\"verification\":{{\"ok\":{},\"details\":[{}]}}}}\n",
        args.duration,
        args.producers,
        args.consumers,
        args.capacity,
        args.batch_size,
        args.payload_size,
        json_str(&args.priority_mix.describe()),
        outcome.elapsed.as_secs_f64(),
        total,
        rate,
        lanes.join(","),
        verdict.ok,
        details.join(",")
    )
}

fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = run(&args);
    let lanes = summarize(&outcome);
    let verdict = verify(&outcome);
    let report = match args.report {
        ReportFormat::Text => text_report(&args, &outcome, &lanes, &verdict),
        ReportFormat::Json => json_report(&args, &outcome, &lanes, &verdict),
    };
    match &args.out {
        None => print!("{report}"),
        Some(path) => {
            if let Err(e) = std::fs::write(path, &report) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            eprintln!("report written to {}", path.display());
        }
    }
    if verdict.ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("verification FAILED");
        ExitCode::FAILURE
    }
}
