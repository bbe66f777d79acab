//! Latency percentiles of lanebus against crossbeam-channel, kanal, flume
//! and `std::sync::mpsc::sync_channel`, all bounded to 1024: round trips,
//! one-way delivery to a busy-polling and to a parked receiver, and how long
//! an Urgent message waits behind a flood of Normal ones.
//!
//! # Why not criterion
//!
//! Criterion keeps one mean per sample; here every message's latency goes
//! into an HDR histogram (3 significant digits) and the tables show the
//! tail. As in `benches/interleaved.rs`, every round runs every channel once
//! per scenario, one after the other, in an order that rotates from round to
//! round (no channel is always first), so the slow phases of a small shared
//! machine hit all channels alike.
//!
//! # Run
//!
//! ```text
//! cargo bench --bench latency
//! cargo bench --bench latency -- --rounds 9 --samples 50000 --json latency.json
//! cargo bench --bench latency -- --filter oneway
//! LANEBUS_BENCH_QUICK=1 cargo bench --bench latency   # 1 round, 500 samples
//! ```
//!
//! Options: `--rounds R` (default 5), `--samples N` recorded per run
//! (default 20,000), `--filter SUB` (only scenarios whose name contains
//! `SUB`; a bare argument works too), `--json FILE` (also write the results
//! as JSON to `FILE`; the tables on stdout are the same). A default run
//! took 70 s on 2 cores (shared with other work), most of it in
//! `oneway_park` (N x ~70 µs per channel and round) and
//! `priority_under_load` (N x the stamped messages' interval); the time
//! each scenario took is printed after every round.
//!
//! The JSON file holds `date_utc`, `nproc`, `cpu`, `rounds`, `samples`,
//! `unit` (`"ns"`) and `scenarios`: one object per table with `scenario`
//! (its id), `threads` and `channels`, one object per channel that ran,
//! with `channel`, `p50`, `p90`, `p99`, `p999`, `max` (each the median over
//! the rounds of that percentile) and `rounds`, one object per round with
//! that round's `p50`, `p90`, `p99`, `p999` and `max` (integers).
//!
//! # Scenarios
//!
//! Every id names its threads: `1p1c_2thr` is one producer and one consumer
//! thread, `2p1c_3thr` two producers and one consumer. The machine this was
//! written for has 2 cores, so `2p1c_3thr` is oversubscribed: its three
//! threads share two cores, and scheduling delays are part of what it
//! measures.
//!
//! - `roundtrip_spin/1p1c_2thr`: ping-pong over two channels of the same
//!   kind. The pinging thread reads the clock, sends, and busy-polls
//!   `try_recv` for the echo, which the echoing thread (also busy-polling)
//!   sends straight back; each sample is one round-trip time.
//! - `roundtrip_park/1p1c_2thr`: the same with blocking `recv` on both
//!   sides: each waits in its channel's own way (spin, yield, park) and is
//!   woken by the other.
//! - `oneway_spin/1p1c_2thr`: the producer stamps each message with the time
//!   just before its `send` (nanoseconds since an `Instant` both threads
//!   share); the consumer busy-polls `try_recv` and records its clock minus
//!   the stamp. Pacing: the producer sends the next message once the
//!   consumer has taken the previous one (it watches a counter the consumer
//!   bumps) and it has then spun on the clock for 2 µs, so every message
//!   finds the queue empty, even when the consumer was descheduled for a
//!   while: this measures the hand-over, not queueing.
//! - `oneway_park/1p1c_2thr`: as `oneway_spin` with 50 µs instead of 2 µs
//!   (spin pacing: the producer spins on the clock, so its core stays busy
//!   and the gap is exact) and the consumer blocking in `recv`. lanebus,
//!   crossbeam, flume and std park within a few µs, so nearly every
//!   receive is a park and a wake-up; kanal yields up to 256 times before
//!   it parks, so it mostly does not (see the footer below the table).
//! - `priority_under_load/2p1c_3thr`, lanebus and crossbeam only: one
//!   producer floods Normal messages with blocking `send`; the consumer
//!   drains with `recv` and busy-waits 1 µs on the clock after each message
//!   (a handler), so it is the bottleneck and the channel stays nearly full.
//!   A second producer sends a stamped message with
//!   `send_with(Priority::Urgent, _)` on lanebus and plain `send` on
//!   crossbeam, the one-lane reference, where it queues behind up to 1024
//!   flood messages (and its send may wait for room). Pacing: it sleeps
//!   `thread::sleep(20 µs)` before each stamped send (sleep pacing, so it
//!   leaves the cores to the other two; with Linux's default 50 µs timer
//!   slack the interval comes out near 70 µs, printed below the table), and
//!   sends only while at least 768 messages are queued (else it sleeps
//!   again), so every stamped message meets a backlog. The consumer records
//!   the latency of the stamped messages only. The gap between the two
//!   rows is what a priority lane buys: about one handler against about
//!   a full channel of handlers.
//!
//! Every busy-polling loop (`try_recv`, the one-way producer watching the
//! consumer's counter) spins for its first 50 µs of waiting and yields
//! between looks after that: waits on a quiet machine are far shorter, so
//! this changes nothing there, but where a busy machine puts both threads
//! on one core, a message costs a yield instead of a scheduler time slice.
//!
//! Every run starts fresh threads and fresh channels; the threads meet at a
//! start line (each bumps a shared counter, then yields until all have) so
//! all of them are running when the first message goes. Each run sends a
//! warm-up prefix of N/10 messages (at least 10) first, through the same
//! code path, whose latencies are not recorded. Every message carries its
//! producer's sequence number; every receiver checks that each producer's
//! numbers arrive in order with none missing, that the counts match what
//! was sent and that nothing more arrives once the senders are gone, and
//! the bench panics otherwise. A watchdog aborts a run that hangs and names
//! it.
//!
//! # Reading the tables
//!
//! One table per scenario: for each channel the median over rounds of each
//! round's p50, p90, p99, p99.9 and maximum in nanoseconds, with
//! `[min-max]` over rounds for p50 and p99 (a wide range means the machine
//! was noisy, not the channel). On the lanebus row, `p50 / best` and
//! `p99 / best` are the median over rounds of lanebus's percentile over the
//! lowest of the peers' in the same round (below 1: lanebus is faster);
//! the line under the table says which peer that was in how many rounds.
//! `max` and p99.9 rest on a few samples and mostly show the machine's
//! hiccups. Trust ratios, not absolute numbers, and compare runs only on the
//! same machine.
//!
//! Below the tables of the blocking scenarios (Linux only, from
//! `/proc/thread-self`, runs of at least 100 ms): the receiving thread's
//! (consumer's, or the echoing side's) CPU time over its wall time and its
//! voluntary context switches per message, i.e. how often it blocked. A low
//! latency at ~100% CPU and 0 blocks is bought with a busy core (kanal in
//! `oneway_park`), not with a faster wake-up. `priority_under_load` also
//! shows the mean interval between stamped sends and the mean number of
//! messages queued just after the consumer took a stamped one.

use std::fmt::Write as _;
use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

#[allow(dead_code)]
mod common;
use common::{
    fail, number, start_watchdog, stats, Arg, Crossbeam, Flavor, Flume, Kanal, Lanebus, Msg,
    StdSync, CAP, CURRENT,
};

const DEFAULT_ROUNDS: usize = 5;
const DEFAULT_SAMPLES: u64 = 20_000;
/// `oneway_spin`: the pause between the consumer taking a message and the
/// next send.
const SPIN_GAP: Duration = Duration::from_micros(2);
/// `oneway_park`: the pause between the consumer taking a message and the
/// next send.
const PARK_GAP: Duration = Duration::from_micros(50);
/// `priority_under_load`: the sleep before each stamped send.
const PROBE_PERIOD: Duration = Duration::from_micros(20);
/// `priority_under_load`: the consumer's work per message (a busy wait on
/// the clock), which makes it the bottleneck so the flood keeps the channel
/// full.
const HANDLER: Duration = Duration::from_micros(1);
/// `priority_under_load`: a stamped message is sent only while at least
/// this many messages are queued.
const MIN_BACKLOG: usize = CAP * 3 / 4;
/// The highest latency a histogram holds (larger ones count as this): 60 s.
const HIGHEST_NS: u64 = 60_000_000_000;
/// How long a busy-polling thread spins before it starts yielding between
/// looks (see [`BusyWait`]).
const SPIN_FOR: Duration = Duration::from_micros(50);
/// The table's channel rows, in order; the first is the one compared.
const COLUMNS: [&str; 5] = ["lanebus", "crossbeam", "kanal", "flume", "std"];

// ---------------------------------------------------------------- messages

/// Which producer of `priority_under_load` sent a message.
const FLOOD: u64 = 0;
const PROBE: u64 = 1;

/// A message: its producer's sequence number, the time just before it was
/// sent (ns since the run's epoch; 0 where not measured) and its producer.
#[derive(Clone, Copy, Debug)]
struct Probe {
    seq: u64,
    sent_ns: u64,
    source: u64,
}

impl Msg for Probe {
    const NAME: &'static str = "probe";

    fn new(seq: u64) -> Self {
        Probe {
            seq,
            sent_ns: 0,
            source: PROBE,
        }
    }

    fn seq(&self) -> u64 {
        self.seq
    }
}

/// Nanoseconds from `epoch` to `now`.
#[inline]
fn since(epoch: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(epoch).as_nanos() as u64
}

// ---------------------------------------------------------------- channels

/// What a non-blocking receive found.
enum Polled<T> {
    Ready(T),
    Empty,
    /// Every sender is gone and the channel is empty.
    Closed,
}

/// A channel with a non-blocking receive.
trait Poll<T: Msg>: Flavor<T> {
    fn try_recv(rx: &Self::Rx) -> Polled<T>;
}

impl<T: Msg> Poll<T> for Lanebus {
    #[inline]
    fn try_recv(rx: &Self::Rx) -> Polled<T> {
        match rx.try_recv() {
            Ok(m) => Polled::Ready(m),
            Err(lanebus::TryRecvError::Empty) => Polled::Empty,
            Err(_) => Polled::Closed,
        }
    }
}

impl<T: Msg> Poll<T> for Crossbeam {
    #[inline]
    fn try_recv(rx: &Self::Rx) -> Polled<T> {
        match rx.try_recv() {
            Ok(m) => Polled::Ready(m),
            Err(crossbeam_channel::TryRecvError::Empty) => Polled::Empty,
            Err(crossbeam_channel::TryRecvError::Disconnected) => Polled::Closed,
        }
    }
}

impl<T: Msg> Poll<T> for Kanal {
    #[inline]
    fn try_recv(rx: &Self::Rx) -> Polled<T> {
        match rx.try_recv() {
            Ok(Some(m)) => Polled::Ready(m),
            Ok(None) => Polled::Empty,
            Err(_) => Polled::Closed,
        }
    }
}

impl<T: Msg> Poll<T> for Flume {
    #[inline]
    fn try_recv(rx: &Self::Rx) -> Polled<T> {
        match rx.try_recv() {
            Ok(m) => Polled::Ready(m),
            Err(flume::TryRecvError::Empty) => Polled::Empty,
            Err(flume::TryRecvError::Disconnected) => Polled::Closed,
        }
    }
}

impl<T: Msg> Poll<T> for StdSync {
    #[inline]
    fn try_recv(rx: &Self::Rx) -> Polled<T> {
        match rx.try_recv() {
            Ok(m) => Polled::Ready(m),
            Err(std::sync::mpsc::TryRecvError::Empty) => Polled::Empty,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Polled::Closed,
        }
    }
}

/// A channel that can send a message ahead of queued ones, or the one-lane
/// reference that cannot.
trait Marked<T: Msg>: Flavor<T> {
    fn send_marked(tx: &Self::Tx, msg: T);
    /// Messages queued now, over all lanes.
    fn backlog(rx: &Self::Rx) -> usize;
}

impl<T: Msg> Marked<T> for Lanebus {
    #[inline]
    fn send_marked(tx: &Self::Tx, msg: T) {
        tx.send_with(lanebus::Priority::Urgent, msg)
            .expect("lanebus: receivers gone");
    }

    fn backlog(rx: &Self::Rx) -> usize {
        rx.len()
    }
}

impl<T: Msg> Marked<T> for Crossbeam {
    #[inline]
    fn send_marked(tx: &Self::Tx, msg: T) {
        <Crossbeam as Flavor<T>>::send(tx, msg);
    }

    fn backlog(rx: &Self::Rx) -> usize {
        rx.len()
    }
}

/// One busy-wait: spins, but once it has waited longer than
/// `SPIN_FOR` it yields between looks, so that a thread it shares a core
/// with (on a busy machine) can run. A wait on a quiet machine never gets
/// that far, so it does not change what is measured there; without it, two
/// threads on one core would take a scheduler time slice per message.
#[derive(Default)]
struct BusyWait {
    looks: u32,
    since: Option<Instant>,
    yielding: bool,
}

impl BusyWait {
    #[inline]
    fn step(&mut self) {
        if self.yielding {
            thread::yield_now();
            return;
        }
        spin_loop();
        self.looks += 1;
        if self.looks % 256 == 0 {
            let since = *self.since.get_or_insert_with(Instant::now);
            self.yielding = since.elapsed() > SPIN_FOR;
        }
    }
}

/// Receives one message, busy-polling `try_recv` (`spin`) or blocking in
/// `recv`; `None` once every sender is gone and the channel is empty.
#[inline]
fn receive<F: Poll<Probe>>(rx: &F::Rx, spin: bool) -> Option<Probe> {
    if !spin {
        return F::recv(rx);
    }
    let mut wait = BusyWait::default();
    loop {
        match F::try_recv(rx) {
            Polled::Ready(m) => return Some(m),
            Polled::Empty => wait.step(),
            Polled::Closed => return None,
        }
    }
}

/// Spins on the clock until `deadline`.
#[inline]
fn pace(deadline: Instant) {
    while Instant::now() < deadline {
        spin_loop();
    }
}

// ---------------------------------------------------------------- runs

/// The messages of one run: `warm_up` unrecorded ones, then `samples`.
#[derive(Clone, Copy, Debug)]
struct Counts {
    warm_up: u64,
    samples: u64,
}

impl Counts {
    fn total(self) -> u64 {
        self.warm_up + self.samples
    }
}

/// What one run measured.
struct Outcome {
    /// The latencies of every message after the warm-up prefix.
    hist: Histogram<u64>,
    extra: Extra,
}

/// The figures of one run besides the latencies (printed under the tables,
/// not in the JSON file).
#[derive(Clone, Copy, Debug, Default)]
struct Extra {
    /// What the receiving thread (consumer, or echo side of a round trip)
    /// spent, if `/proc` could tell.
    rx: Option<Usage>,
    /// `priority_under_load`: the mean number of messages queued just after
    /// the consumer took a stamped one.
    backlog: Option<f64>,
    /// `priority_under_load`: the mean time from one stamped send to the
    /// next, in ns.
    interval_ns: Option<f64>,
}

/// The calling thread's CPU time and voluntary context switches so far,
/// from `/proc/thread-self` (Linux).
#[derive(Clone, Copy, Debug)]
struct ThreadClock {
    at: Instant,
    cpu_ns: u64,
    blocked: u64,
}

impl ThreadClock {
    fn now() -> Option<ThreadClock> {
        let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
        let cpu_ns = schedstat.split_whitespace().next()?.parse().ok()?;
        let blocked = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
            .trim()
            .parse()
            .ok()?;
        Some(ThreadClock {
            at: Instant::now(),
            cpu_ns,
            blocked,
        })
    }

    /// What the thread spent from `self` until now, over `messages`; `None`
    /// for less than 100 ms, since the kernel brings a running thread's CPU
    /// time up to date only at scheduler ticks and switches.
    fn usage(self, messages: u64) -> Option<Usage> {
        let end = ThreadClock::now()?;
        let wall = since(self.at, end.at);
        if wall < 100_000_000 {
            return None;
        }
        Some(Usage {
            cpu: (end.cpu_ns - self.cpu_ns) as f64 / wall as f64,
            blocks_per_msg: (end.blocked - self.blocked) as f64 / messages.max(1) as f64,
        })
    }
}

/// A receiving thread's costs over one run.
#[derive(Clone, Copy, Debug)]
struct Usage {
    /// CPU time over wall time (1.0: it never slept).
    cpu: f64,
    /// Voluntary context switches (the thread blocked: parked, slept, or
    /// waited for a lock) per message received.
    blocks_per_msg: f64,
}

/// Times the receiving side of a run: `work` returns its message count.
fn measured<R>(work: impl FnOnce() -> (u64, R)) -> (u64, R, Option<Usage>) {
    let start = ThreadClock::now();
    let (messages, r) = work();
    let usage = start.and_then(|s| s.usage(messages));
    (messages, r, usage)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_NS, 3).expect("valid histogram bounds")
}

/// Where the threads of a run meet before the first message: each one
/// checks in, then yields until all have, so that every thread is running
/// (not still being woken) when the work starts.
#[derive(Clone)]
struct StartLine {
    arrived: Arc<AtomicUsize>,
    threads: usize,
}

impl StartLine {
    fn new(threads: usize) -> Self {
        StartLine {
            arrived: Arc::new(AtomicUsize::new(0)),
            threads,
        }
    }

    fn wait(&self) {
        // Relaxed: the line only lines up the start; the threads share
        // nothing through it.
        self.arrived.fetch_add(1, Ordering::Relaxed);
        while self.arrived.load(Ordering::Relaxed) < self.threads {
            thread::yield_now();
        }
    }
}

/// Runs `a` and `b` on two fresh threads that meet at a start line.
fn pair<A, B>(
    a: impl FnOnce() -> A + Send + 'static,
    b: impl FnOnce() -> B + Send + 'static,
) -> (A, B)
where
    A: Send + 'static,
    B: Send + 'static,
{
    let line = StartLine::new(2);
    let start = line.clone();
    let ta = thread::spawn(move || {
        start.wait();
        a()
    });
    let tb = thread::spawn(move || {
        line.wait();
        b()
    });
    let a = ta.join().expect("first thread panicked");
    let b = tb.join().expect("second thread panicked");
    (a, b)
}

/// Ping-pong: one thread sends `0..total` one at a time over `ping` and
/// waits for each to come back over `pong`; returns the round-trip times of
/// all but the warm-up prefix.
fn roundtrip<F: Poll<Probe>>(counts: Counts, spin: bool) -> Outcome {
    let (ping_tx, ping_rx) = F::channel();
    let (pong_tx, pong_rx) = F::channel();
    let total = counts.total();
    let pinger = move || {
        let mut hist = histogram();
        for seq in 0..total {
            let start = Instant::now();
            F::send(&ping_tx, Probe::new(seq));
            let back = receive::<F>(&pong_rx, spin).expect("echo thread gone");
            let rtt = since(start, Instant::now());
            assert_eq!(back.seq, seq, "{}: echo out of order", F::NAME);
            if seq >= counts.warm_up {
                hist.saturating_record(rtt);
            }
        }
        drop(ping_tx);
        assert!(
            receive::<F>(&pong_rx, spin).is_none(),
            "{}: an echo too many",
            F::NAME
        );
        hist
    };
    let echo = move || {
        measured(|| {
            let mut next = 0;
            while let Some(m) = receive::<F>(&ping_rx, spin) {
                assert_eq!(m.seq, next, "{}: ping out of order", F::NAME);
                next += 1;
                F::send(&pong_tx, m);
            }
            (next, ())
        })
    };
    let (hist, (echoed, (), rx)) = pair(pinger, echo);
    assert_eq!(echoed, total, "{}: pings lost or duplicated", F::NAME);
    Outcome {
        hist,
        extra: Extra {
            // A busy-polling thread never blocks; nothing to show.
            rx: rx.filter(|_| !spin),
            ..Extra::default()
        },
    }
}

/// One producer sends `0..total` stamped messages, each once the consumer
/// has taken the one before and `gap` has passed; the consumer records
/// receive time minus stamp for all but the warm-up prefix.
fn oneway<F: Poll<Probe>>(counts: Counts, spin: bool, gap: Duration) -> Outcome {
    let (tx, rx) = F::channel();
    let total = counts.total();
    let epoch = Instant::now();
    let taken = Arc::new(AtomicU64::new(0));
    let consumer_taken = taken.clone();
    let producer = move || {
        for seq in 0..total {
            // Acquire/Release: only pacing; the messages travel through
            // the channel under test.
            let mut wait = BusyWait::default();
            while taken.load(Ordering::Acquire) < seq {
                // The consumer dropped its handle: it panicked.
                assert!(Arc::strong_count(&taken) > 1, "{}: consumer gone", F::NAME);
                wait.step();
            }
            pace(Instant::now() + gap);
            let msg = Probe {
                seq,
                sent_ns: since(epoch, Instant::now()),
                source: PROBE,
            };
            F::send(&tx, msg);
        }
    };
    let consumer = move || {
        measured(|| {
            let mut hist = histogram();
            let mut next = 0;
            while let Some(m) = receive::<F>(&rx, spin) {
                let latency = since(epoch, Instant::now()).saturating_sub(m.sent_ns);
                assert_eq!(m.seq, next, "{}: message out of order or lost", F::NAME);
                if next >= counts.warm_up {
                    hist.saturating_record(latency);
                }
                next += 1;
                consumer_taken.store(next, Ordering::Release);
            }
            (next, hist)
        })
    };
    let ((), (received, hist, rx)) = pair(producer, consumer);
    assert_eq!(received, total, "{}: messages lost or duplicated", F::NAME);
    Outcome {
        hist,
        extra: Extra {
            // A busy-polling thread never blocks; nothing to show.
            rx: rx.filter(|_| !spin),
            ..Extra::default()
        },
    }
}

/// A flood of Normal messages and a stamped `send_marked` one after each
/// `PROBE_PERIOD` sleep (into a backlog of at least `MIN_BACKLOG`), drained
/// by a consumer that works `HANDLER` per message;
/// returns the stamped messages' latencies (all but the warm-up prefix) and
/// the mean backlog behind them.
fn priority<F: Marked<Probe>>(counts: Counts) -> Outcome {
    let (tx, rx) = F::channel();
    let probe_tx = F::clone_tx(&tx);
    let probe_rx = F::clone_rx(&rx);
    let total = counts.total();
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flood = stop.clone();
    let line = StartLine::new(3);

    let start = line.clone();
    let flood = thread::spawn(move || {
        start.wait();
        let mut seq = 0;
        // Relaxed: the flag only ends the loop; the message count goes to
        // the main thread through `join`.
        while !stop_flood.load(Ordering::Relaxed) {
            let msg = Probe {
                seq,
                sent_ns: 0,
                source: FLOOD,
            };
            F::send(&tx, msg);
            seq += 1;
        }
        seq
    });
    let start = line.clone();
    let prober = thread::spawn(move || {
        start.wait();
        let mut first = None;
        let mut last = Instant::now();
        for seq in 0..total {
            // Sleep pacing: between stamped sends this thread is off the
            // cores, which the consumer and the flood need.
            thread::sleep(PROBE_PERIOD);
            // Only into a backlog: if the flood fell behind (its thread
            // was not scheduled), wait until it has refilled the channel.
            while F::backlog(&probe_rx) < MIN_BACKLOG {
                thread::sleep(PROBE_PERIOD);
            }
            last = Instant::now();
            first.get_or_insert(last);
            let msg = Probe {
                seq,
                sent_ns: since(epoch, last),
                source: PROBE,
            };
            F::send_marked(&probe_tx, msg);
        }
        stop.store(true, Ordering::Relaxed);
        let first = first.expect("at least one stamped message");
        since(first, last) as f64 / (total - 1).max(1) as f64
    });
    let consumer = thread::spawn(move || {
        line.wait();
        let start = ThreadClock::now();
        let mut hist = histogram();
        let (mut floods, mut probes, mut backlog) = (0, 0, 0);
        while let Some(m) = F::recv(&rx) {
            let now = Instant::now();
            if m.source == FLOOD {
                assert_eq!(m.seq, floods, "{}: flood out of order or lost", F::NAME);
                floods += 1;
            } else {
                assert_eq!(m.seq, probes, "{}: probe out of order or lost", F::NAME);
                if probes >= counts.warm_up {
                    hist.saturating_record(since(epoch, now).saturating_sub(m.sent_ns));
                    backlog += F::backlog(&rx) as u64;
                }
                probes += 1;
            }
            pace(now + HANDLER);
        }
        let usage = start.and_then(|s| s.usage(floods + probes));
        (floods, probes, hist, backlog, usage)
    });

    let flooded = flood.join().expect("flood producer panicked");
    let interval_ns = prober.join().expect("probe producer panicked");
    let (floods, probes, hist, backlog, rx) = consumer.join().expect("consumer panicked");
    assert_eq!(floods, flooded, "{}: flood lost or duplicated", F::NAME);
    assert_eq!(probes, total, "{}: probes lost or duplicated", F::NAME);
    Outcome {
        hist,
        extra: Extra {
            rx,
            backlog: Some(backlog as f64 / counts.samples as f64),
            interval_ns: Some(interval_ns),
        },
    }
}

// ---------------------------------------------------------------- scenarios

/// One channel in one scenario.
struct Contender {
    column: &'static str,
    run: fn(Counts) -> Outcome,
}

struct Scenario {
    name: &'static str,
    threads: usize,
    /// What one sample is, for the table's title.
    what: &'static str,
    contenders: Vec<Contender>,
}

fn roundtrip_spin<F: Poll<Probe>>(c: Counts) -> Outcome {
    roundtrip::<F>(c, true)
}

fn roundtrip_park<F: Poll<Probe>>(c: Counts) -> Outcome {
    roundtrip::<F>(c, false)
}

fn oneway_spin<F: Poll<Probe>>(c: Counts) -> Outcome {
    oneway::<F>(c, true, SPIN_GAP)
}

fn oneway_park<F: Poll<Probe>>(c: Counts) -> Outcome {
    oneway::<F>(c, false, PARK_GAP)
}

/// Every channel, each running `run::<ThatChannel>`.
macro_rules! all_channels {
    ($run:ident) => {
        vec![
            Contender {
                column: <Lanebus as Flavor<Probe>>::NAME,
                run: $run::<Lanebus>,
            },
            Contender {
                column: <Crossbeam as Flavor<Probe>>::NAME,
                run: $run::<Crossbeam>,
            },
            Contender {
                column: <Kanal as Flavor<Probe>>::NAME,
                run: $run::<Kanal>,
            },
            Contender {
                column: <Flume as Flavor<Probe>>::NAME,
                run: $run::<Flume>,
            },
            Contender {
                column: <StdSync as Flavor<Probe>>::NAME,
                run: $run::<StdSync>,
            },
        ]
    };
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "roundtrip_spin/1p1c_2thr",
            threads: 2,
            what: "round trip, both sides busy-poll try_recv",
            contenders: all_channels!(roundtrip_spin),
        },
        Scenario {
            name: "roundtrip_park/1p1c_2thr",
            threads: 2,
            what: "round trip, both sides block in recv",
            contenders: all_channels!(roundtrip_park),
        },
        Scenario {
            name: "oneway_spin/1p1c_2thr",
            threads: 2,
            what: "send to receive, next send 2 µs after each receive, receiver busy-polls \
                   try_recv",
            contenders: all_channels!(oneway_spin),
        },
        Scenario {
            name: "oneway_park/1p1c_2thr",
            threads: 2,
            what: "send to receive, next send 50 µs after each receive (spin-paced), receiver \
                   blocks in recv",
            contenders: all_channels!(oneway_park),
        },
        Scenario {
            name: "priority_under_load/2p1c_3thr",
            threads: 3,
            what:
                "send to receive of a stamped message (one per 20 µs sleep) behind a Normal flood, \
                   consumer works 1 µs per message (lanebus: Urgent lane; crossbeam: one lane); \
                   3 threads, oversubscribed on 2 cores",
            contenders: vec![
                Contender {
                    column: <Lanebus as Flavor<Probe>>::NAME,
                    run: priority::<Lanebus>,
                },
                Contender {
                    column: <Crossbeam as Flavor<Probe>>::NAME,
                    run: priority::<Crossbeam>,
                },
            ],
        },
    ]
}

// ---------------------------------------------------------------- rounds

/// The percentiles of one run, in ns.
#[derive(Clone, Copy, Debug, Serialize)]
struct Pcts {
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
    #[serde(skip)]
    extra: Extra,
}

impl Pcts {
    fn of(outcome: &Outcome) -> Pcts {
        let hist = &outcome.hist;
        Pcts {
            p50: hist.value_at_quantile(0.50),
            p90: hist.value_at_quantile(0.90),
            p99: hist.value_at_quantile(0.99),
            p999: hist.value_at_quantile(0.999),
            max: hist.max(),
            extra: outcome.extra,
        }
    }
}

/// `[scenario][contender][round]`.
type Results = Vec<Vec<Vec<Pcts>>>;

/// Runs every contender of every scenario once per round, rotating the
/// contender order by one each round so that no channel is always first.
fn run_rounds(scenarios: &[Scenario], config: &Config) -> Results {
    let mut results: Results = scenarios
        .iter()
        .map(|s| vec![Vec::with_capacity(config.rounds); s.contenders.len()])
        .collect();
    let counts = config.counts();
    for round in 0..config.rounds {
        let started = Instant::now();
        let mut times = Vec::with_capacity(scenarios.len());
        for (scenario, per_channel) in scenarios.iter().zip(&mut results) {
            let scenario_started = Instant::now();
            let n = scenario.contenders.len();
            for i in (0..n).map(|k| (k + round) % n) {
                let outcome = watched(scenario, i, counts);
                assert_eq!(outcome.hist.len(), counts.samples, "every sample recorded");
                per_channel[i].push(Pcts::of(&outcome));
            }
            let kind = scenario.name.split('/').next().unwrap_or(scenario.name);
            times.push(format!(
                "{kind} {:.1}",
                scenario_started.elapsed().as_secs_f64()
            ));
        }
        eprintln!(
            "round {}/{} done in {:.1} s ({})",
            round + 1,
            config.rounds,
            started.elapsed().as_secs_f64(),
            times.join(", ")
        );
    }
    results
}

/// Runs contender `i` of `scenario` under the watchdog, so a hang shows
/// which channel hung.
fn watched(scenario: &Scenario, i: usize, counts: Counts) -> Outcome {
    let contender = &scenario.contenders[i];
    let label = format!("{} {}", scenario.name, contender.column);
    *CURRENT.lock().expect("watchdog lock") = Some((label, Instant::now()));
    let outcome = (contender.run)(counts);
    *CURRENT.lock().expect("watchdog lock") = None;
    outcome
}

/// Time allowed for one run before the watchdog aborts the process: 60 s
/// plus 2 ms per message (some 30x the slowest pacing).
fn limit(counts: Counts) -> Duration {
    Duration::from_secs(60) + Duration::from_millis(2 * counts.total())
}

// ---------------------------------------------------------------- report

/// One percentile over the rounds, as `f64`.
fn series(rounds: &[Pcts], pick: fn(&Pcts) -> u64) -> Vec<f64> {
    rounds.iter().map(|p| pick(p) as f64).collect()
}

fn median_of(rounds: &[Pcts], pick: fn(&Pcts) -> u64) -> f64 {
    stats(&series(rounds, pick)).0
}

fn ranged(rounds: &[Pcts], pick: fn(&Pcts) -> u64) -> String {
    let (med, lo, hi) = stats(&series(rounds, pick));
    format!("{med:.0} [{lo:.0}-{hi:.0}]")
}

/// Per round, lanebus's percentile over the lowest peer's; returns the
/// cell (median [min-max]) and how often each peer was the lowest.
fn versus_best(
    scenario: &Scenario,
    per_channel: &[Vec<Pcts>],
    pick: fn(&Pcts) -> u64,
) -> (String, Vec<(&'static str, usize)>) {
    let lanebus = scenario
        .contenders
        .iter()
        .position(|c| c.column == COLUMNS[0])
        .expect("every scenario has lanebus");
    let rounds = per_channel[lanebus].len();
    let mut wins: Vec<(&'static str, usize)> = Vec::new();
    let ratios: Vec<f64> = (0..rounds)
        .map(|r| {
            let best = (0..per_channel.len())
                .filter(|&i| i != lanebus)
                .min_by_key(|&i| pick(&per_channel[i][r]))
                .expect("every scenario has a peer");
            let column = scenario.contenders[best].column;
            match wins.iter_mut().find(|(c, _)| *c == column) {
                Some((_, n)) => *n += 1,
                None => wins.push((column, 1)),
            }
            pick(&per_channel[lanebus][r]) as f64 / pick(&per_channel[best][r]).max(1) as f64
        })
        .collect();
    let (med, lo, hi) = stats(&ratios);
    (format!("{med:.2} [{lo:.2}-{hi:.2}]"), wins)
}

fn wins_line(label: &str, wins: &[(&str, usize)]) -> String {
    let list: Vec<String> = wins.iter().map(|(c, n)| format!("{c} {n}")).collect();
    format!("lowest peer {label} (rounds): {}", list.join(", "))
}

fn table(scenario: &Scenario, per_channel: &[Vec<Pcts>]) -> String {
    let mut out = format!(
        "### {} — {}\n\n\
         | channel | p50 | p90 | p99 | p99.9 | max | p50 / best | p99 / best |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
        scenario.name, scenario.what
    );
    let (p50_ratio, p50_wins) = versus_best(scenario, per_channel, |p| p.p50);
    let (p99_ratio, p99_wins) = versus_best(scenario, per_channel, |p| p.p99);
    for col in COLUMNS {
        let Some(i) = scenario.contenders.iter().position(|c| c.column == col) else {
            continue;
        };
        let rounds = &per_channel[i];
        let (r50, r99) = if col == COLUMNS[0] {
            (p50_ratio.as_str(), p99_ratio.as_str())
        } else {
            ("", "")
        };
        let _ = writeln!(
            out,
            "| {col} | {} | {:.0} | {} | {:.0} | {:.0} | {r50} | {r99} |",
            ranged(rounds, |p| p.p50),
            median_of(rounds, |p| p.p90),
            ranged(rounds, |p| p.p99),
            median_of(rounds, |p| p.p999),
            median_of(rounds, |p| p.max),
        );
    }
    let _ = writeln!(
        out,
        "\n{}; {}.",
        wins_line("p50", &p50_wins),
        wins_line("p99", &p99_wins)
    );
    let footer = |label: &str, fmt: fn(&[Extra]) -> Option<String>| {
        let cells: Vec<String> = scenario
            .contenders
            .iter()
            .zip(per_channel)
            .filter_map(|(c, rounds)| {
                let extras: Vec<Extra> = rounds.iter().map(|p| p.extra).collect();
                fmt(&extras).map(|cell| format!("{} {cell}", c.column))
            })
            .collect();
        if cells.is_empty() {
            String::new()
        } else {
            format!("{label} (median over rounds): {}.\n", cells.join(", "))
        }
    };
    out += &footer(
        "Receiving thread: CPU time / wall time, blocking waits per message",
        |e| {
            let u: Vec<Usage> = e.iter().filter_map(|e| e.rx).collect();
            let cpu: Vec<f64> = u.iter().map(|u| u.cpu * 100.0).collect();
            let blocks: Vec<f64> = u.iter().map(|u| u.blocks_per_msg).collect();
            (!u.is_empty()).then(|| format!("{:.0}% {:.2}", stats(&cpu).0, stats(&blocks).0))
        },
    );
    out += &footer("Mean time between stamped sends, µs", |e| {
        let v: Vec<f64> = e.iter().filter_map(|e| e.interval_ns).collect();
        (!v.is_empty()).then(|| format!("{:.1}", stats(&v).0 / 1000.0))
    });
    out += &footer(
        "Mean messages queued just after a stamped one was taken",
        |e| {
            let v: Vec<f64> = e.iter().filter_map(|e| e.backlog).collect();
            (!v.is_empty()).then(|| format!("{:.0}", stats(&v).0))
        },
    );
    out
}

fn header(config: &Config, date: &str) -> String {
    let counts = config.counts();
    format!(
        "lanebus latency, {date}; nproc {nproc} ({cpu}); {rounds} rounds; \
         {samples} samples per run after {warm_up} warm-up messages; capacity {CAP}; \
         ns, median over rounds of each round's percentile, [min-max] over rounds.",
        nproc = common::command_line("nproc", &[]),
        cpu = common::cpu_model(),
        rounds = config.rounds,
        samples = counts.samples,
        warm_up = counts.warm_up,
    )
}

/// The `--json` file: the tables' figures, machine-readable.
#[derive(Serialize)]
struct JsonReport<'a> {
    date_utc: &'a str,
    nproc: usize,
    cpu: String,
    rounds: usize,
    samples: u64,
    unit: &'static str,
    scenarios: Vec<JsonScenario<'a>>,
}

#[derive(Serialize)]
struct JsonScenario<'a> {
    scenario: &'static str,
    threads: usize,
    channels: Vec<JsonChannel<'a>>,
}

#[derive(Serialize)]
struct JsonChannel<'a> {
    channel: &'static str,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
    rounds: &'a [Pcts],
}

fn json(config: &Config, date: &str, scenarios: &[Scenario], results: &Results) -> String {
    let report = JsonReport {
        date_utc: date,
        nproc: common::command_line("nproc", &[]).parse().unwrap_or(0),
        cpu: common::cpu_model(),
        rounds: config.rounds,
        samples: config.samples,
        unit: "ns",
        scenarios: scenarios
            .iter()
            .zip(results)
            .map(|(s, per_channel)| JsonScenario {
                scenario: s.name,
                threads: s.threads,
                channels: s
                    .contenders
                    .iter()
                    .zip(per_channel)
                    .map(|(c, r)| JsonChannel {
                        channel: c.column,
                        p50: median_of(r, |p| p.p50),
                        p90: median_of(r, |p| p.p90),
                        p99: median_of(r, |p| p.p99),
                        p999: median_of(r, |p| p.p999),
                        max: median_of(r, |p| p.max),
                        rounds: r,
                    })
                    .collect(),
            })
            .collect(),
    };
    let mut s = serde_json::to_string_pretty(&report).expect("the report serializes");
    s.push('\n');
    s
}

// ---------------------------------------------------------------- main

struct Config {
    rounds: usize,
    samples: u64,
    filter: Option<String>,
    /// Where `--json` writes the results, besides the tables on stdout.
    json: Option<String>,
}

impl Config {
    /// A tenth of the samples, at least 10, go first as the warm-up.
    fn counts(&self) -> Counts {
        Counts {
            warm_up: (self.samples / 10).max(10),
            samples: self.samples,
        }
    }
}

const USAGE: &str =
    "usage: latency [--rounds R] [--samples N] [--json FILE] [--filter SUBSTR | SUBSTR]";

fn parse_args() -> Config {
    let quick = std::env::var("LANEBUS_BENCH_QUICK").is_ok_and(|v| v == "1");
    let mut config = Config {
        rounds: if quick { 1 } else { DEFAULT_ROUNDS },
        samples: if quick { 500 } else { DEFAULT_SAMPLES },
        filter: None,
        json: None,
    };
    for arg in common::args(USAGE) {
        match arg {
            Arg::Option(name, value) => match name.as_str() {
                "--rounds" => config.rounds = number::<u64>(&value, USAGE) as usize,
                "--samples" => config.samples = number(&value, USAGE),
                "--filter" => config.filter = Some(value),
                "--json" => config.json = Some(value),
                _ => common::unknown(&name, USAGE),
            },
            Arg::Filter(substr) => config.filter = Some(substr),
        }
    }
    if config.rounds == 0 || config.samples == 0 {
        fail("--rounds and --samples must be at least 1", USAGE);
    }
    config
}

fn main() {
    let config = parse_args();
    let mut scenarios = scenarios();
    if let Some(filter) = &config.filter {
        scenarios.retain(|s| s.name.contains(filter.as_str()));
    }
    if scenarios.is_empty() {
        fail("no scenario matches the filter", USAGE);
    }
    start_watchdog(limit(config.counts()));
    let started = Instant::now();
    let results = run_rounds(&scenarios, &config);
    let date = common::command_line("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]);
    println!("{}\n", header(&config, &date));
    for (scenario, per_channel) in scenarios.iter().zip(&results) {
        println!("{}", table(scenario, per_channel));
    }
    println!(
        "{} runs in {:.0} s.",
        config.rounds * scenarios.iter().map(|s| s.contenders.len()).sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = &config.json {
        if let Err(e) = std::fs::write(path, json(&config, &date, &scenarios, &results)) {
            eprintln!("cannot write {path}: {e}");
            std::process::exit(1);
        }
        eprintln!("results written to {path}");
    }
}
