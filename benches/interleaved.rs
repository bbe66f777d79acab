//! Interleaved throughput comparison of lanebus against crossbeam-channel,
//! kanal, flume and `std::sync::mpsc::sync_channel`, all bounded to 1024.
//!
//! # Why not criterion
//!
//! Criterion measures one channel's benchmark as one block. On a small,
//! shared VM the machine has slow phases, so a whole block can land in one
//! and the same cell varies 2-5x between runs. Here every round runs every
//! channel once per scenario, one after the other, in an order that rotates
//! from round to round (no channel is always first), so slow phases hit all
//! channels alike and the ratios measured side by side mean something.
//!
//! # Run
//!
//! ```text
//! cargo bench --bench interleaved -- --rounds 5
//! cargo bench --bench interleaved -- --filter mpmc --messages 2000000
//! LANEBUS_BENCH_QUICK=1 cargo bench --bench interleaved   # 1 round, 20k msgs
//! ```
//!
//! Options: `--rounds R` (default 5), `--messages N` per run (default
//! 1,000,000), `--filter SUB` (only scenarios whose name contains `SUB`; a
//! bare argument works too), `--json FILE` (also write the results as JSON
//! to `FILE`, for `examples/charts.rs`; the table on stdout is the same). A
//! default run takes well under a minute on 2 cores, so more rounds are
//! cheap and make the medians steadier.
//!
//! The JSON file holds `date_utc`, `nproc`, `cpu`, `rounds`, `messages`,
//! `capacity`, `unit` (`"M msg/s"`) and `scenarios`: one object per table
//! row with `scenario` (the row name), `kind`, `producers`, `consumers`,
//! `threads` (producers + consumers), `message` (`u64` or `256B`) and
//! `channels`, one object per channel that ran, with `channel`, `median`,
//! `min`, `max` and `rounds` (every round's throughput).
//!
//! # Scenarios
//!
//! `<kind>_<P>p<C>c/<message>`: `P` producer and `C` consumer threads.
//! `spsc_1p1c`, `mpsc_2p1c`, `mpmc_2p2c`, `mpmc_4p4c` (oversubscribed on 2
//! cores on purpose), each for `u64` and 256-byte messages, one `send`/`recv`
//! per message; `batch_1p1c/u64`, where lanebus uses `send_batch`/
//! `recv_batch` of 256 and the peers send and receive one message at a time.
//! `std` is single-consumer and only runs where `C` is 1.
//! `lane_urgent_1p1c/u64` and `lane_low_1p1c/u64` put all of lanebus's
//! traffic on the first lane a receive scans and on the last (after three
//! empty ones), each beside crossbeam: the gap between the two rows is the
//! cost of four lanes against one.
//!
//! Every run starts fresh threads that meet at a `Barrier`; the clock runs
//! from the first thread leaving the barrier until the last one finished
//! (read by the threads themselves, since on 2 cores the main thread may not
//! be scheduled again until the work is done). The
//! producers send the sequence numbers `0..N` between them (in the first 8
//! bytes of a 256-byte message); each consumer counts and sums what it got,
//! and the harness panics unless every number arrived exactly once. Before
//! the timed rounds, one untimed warm-up pass runs everything at N/10.
//!
//! # Placement (`--pin`, Linux only)
//!
//! Without `--pin` the kernel places the threads, and on 2 cores where it
//! puts them decides much of a run: a producer and the consumer that takes
//! its messages on one core pass messages through that core's cache, on
//! two cores through the cores' caches in turn. `--pin` fixes the placement
//! (on the cores this process may use, in order), so each can be measured:
//!
//! - `pairs`: producer `i` and consumer `i` on core `i mod cores`;
//! - `split`: every producer on the first core, every consumer on the
//!   second, so every message crosses from one core to the other;
//! - `one`: every thread on the first core.
//!
//! A channel that reads the number of cores once may already have read it
//! unpinned (lanebus reads it at its first wait).
//!
//! # Cross-core latency
//!
//! Before every scenario of every round, two threads pinned to the first
//! two cores this process may use pass a cache line back and forth
//! (Linux only), and the one-way time is recorded. On the VMs this was
//! written on it falls in three classes that the host switches between
//! every few minutes: ~16 ns while the two vCPUs are hyperthreads of one
//! physical core (sharing L1 and L2), ~37 ns, and ~170-220 ns while they
//! are apart. A ring whose producers and consumers run on both cores
//! moves every message across; a lock whose threads mostly sleep keeps
//! them on one core. So after the table the ratios are given again per
//! class (below [`SIBLING_NS`]: "siblings"; below [`NEAR_NS`]: "near";
//! the rest "far"), and the JSON file holds every measurement
//! (`cross_core_ns`, per scenario and round).
//!
//! # Reading the table
//!
//! Each channel cell is the median throughput over the rounds in millions of
//! messages per second, with `[min-max]` over the rounds: a wide range means
//! the machine was noisy, not that the channel was. `lanebus / best` is the
//! lanebus median over the best peer median (above 1: lanebus is faster), and
//! `paired` is the median over rounds of lanebus over that same peer within
//! each round, which cancels slow phases longer than one scenario. Trust
//! ratios, not absolute numbers, and compare runs only on the same machine.

use std::fmt::Write as _;
use std::ops::Range;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

#[macro_use]
mod common;
use common::{
    fail, median, number, start_watchdog, stats, Arg, Crossbeam, Flavor, Flume, Kanal, Lanebus,
    Msg, StdSync, Tally, CAP, CURRENT,
};

/// Messages per `send_batch`/`recv_batch` in `batch_1p1c`.
const BATCH: usize = 256;
const DEFAULT_ROUNDS: usize = 5;
const DEFAULT_MESSAGES: u64 = 1_000_000;
/// The table's channel columns, in order; the first is the one compared.
const COLUMNS: [&str; 5] = ["lanebus", "crossbeam", "kanal", "flume", "std"];

// ---------------------------------------------------------------- channels

/// lanebus with every message on one lane: `lane_urgent` is served by the
/// first lane a receive looks at, `lane_low` only after the three empty
/// higher lanes, so the two rows bound the cost of four lanes against one.
macro_rules! lanebus_on {
    ($ty:ident, $priority:expr) => {
        struct $ty;

        impl<T: Msg> Flavor<T> for $ty {
            type Tx = lanebus::Sender<T>;
            type Rx = lanebus::Receiver<T>;
            const NAME: &'static str = "lanebus";

            fn channel() -> (Self::Tx, Self::Rx) {
                lanebus::bounded(CAP)
            }

            fn clone_tx(tx: &Self::Tx) -> Self::Tx {
                tx.clone()
            }

            fn clone_rx(rx: &Self::Rx) -> Self::Rx {
                rx.clone()
            }

            #[inline]
            fn send(tx: &Self::Tx, msg: T) {
                tx.send_with($priority, msg)
                    .expect("lanebus: receivers gone");
            }

            #[inline]
            fn recv(rx: &Self::Rx) -> Option<T> {
                rx.recv().ok()
            }
        }
    };
}

lanebus_on!(LanebusUrgent, lanebus::Priority::Urgent);
lanebus_on!(LanebusLow, lanebus::Priority::Low);

/// lanebus with `send_batch` / `recv_batch` of `BATCH` messages; shown in
/// the lanebus column of `batch_1p1c`.
struct LanebusBatch;

impl<T: Msg> Flavor<T> for LanebusBatch {
    type Tx = lanebus::Sender<T>;
    type Rx = lanebus::Receiver<T>;
    const NAME: &'static str = "lanebus";

    fn channel() -> (Self::Tx, Self::Rx) {
        lanebus::bounded(CAP)
    }

    fn clone_tx(tx: &Self::Tx) -> Self::Tx {
        tx.clone()
    }

    fn clone_rx(rx: &Self::Rx) -> Self::Rx {
        rx.clone()
    }

    fn send(tx: &Self::Tx, msg: T) {
        tx.send(msg).expect("lanebus: receivers gone");
    }

    fn recv(rx: &Self::Rx) -> Option<T> {
        rx.recv().ok()
    }

    fn produce(tx: &Self::Tx, seqs: Range<u64>) {
        common::produce_batches(tx, seqs, BATCH);
    }

    fn consume(rx: &Self::Rx) -> Tally {
        common::consume_batches(rx, BATCH)
    }
}

// ---------------------------------------------------------------- one run

/// Thread counts and message count of one run.
#[derive(Clone, Copy, Debug)]
struct Shape {
    producers: usize,
    consumers: usize,
    messages: u64,
}

/// When one worker thread passed the start barrier and when it finished.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: Instant,
    end: Instant,
}

/// Where `--pin` puts the workers (module docs, "Placement").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pin {
    /// Wherever the kernel puts them.
    Free,
    Pairs,
    Split,
    One,
}

/// The placement of this run, set once from the command line.
static PIN: std::sync::OnceLock<Pin> = std::sync::OnceLock::new();

/// Which side of the channel a worker is on.
#[derive(Clone, Copy, Debug)]
enum Role {
    Producer,
    Consumer,
}

/// The cores this process may use, in order.
#[cfg(target_os = "linux")]
fn allowed_cores() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is plain data, valid when zeroed; the call
    // writes at most `size_of::<cpu_set_t>()` bytes into `set`.
    let (set, status) = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let status = libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        (set, status)
    };
    if status != 0 {
        fail("sched_getaffinity failed", USAGE);
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `i` is below `CPU_SETSIZE`, the size of the set.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect()
}

/// Pins the calling thread, worker `index` of its `role`, as `--pin` says.
fn place(role: Role, index: usize) {
    let pin = *PIN.get().unwrap_or(&Pin::Free);
    if pin == Pin::Free {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let cores = allowed_cores();
        let core = match (pin, role) {
            (Pin::Pairs, _) => cores[index % cores.len()],
            (Pin::Split, Role::Producer) | (Pin::One, _) => cores[0],
            (Pin::Split, Role::Consumer) => cores[1 % cores.len()],
            (Pin::Free, _) => unreachable!(),
        };
        pin_to(core);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (role, index);
}

/// Below this one-way cross-core latency the two cores count as near
/// (module docs, "Cross-core latency").
const NEAR_NS: f64 = 60.0;

/// Below this one-way cross-core latency the two cores count as
/// hyperthreads of one physical core (module docs, "Cross-core latency").
const SIBLING_NS: f64 = 25.0;

/// One-way time of a cache line between the first two cores this process
/// may use, in nanoseconds (the mean over 5,000 round trips); `None` where
/// it cannot be measured.
fn cross_core_ns() -> Option<f64> {
    #[cfg(target_os = "linux")]
    {
        use std::sync::atomic::{AtomicU64, Ordering};
        const TRIPS: u64 = 5_000;
        let cores = allowed_cores();
        if cores.len() < 2 {
            return None;
        }
        let line = Arc::new(AtomicU64::new(0));
        let echo = {
            let line = line.clone();
            let core = cores[1];
            thread::spawn(move || {
                pin_to(core);
                for i in 0..TRIPS {
                    while line.load(Ordering::Acquire) != 2 * i + 1 {
                        std::hint::spin_loop();
                    }
                    line.store(2 * i + 2, Ordering::Release);
                }
            })
        };
        let back = thread::spawn(move || {
            pin_to(cores[0]);
            let start = Instant::now();
            for i in 0..TRIPS {
                line.store(2 * i + 1, Ordering::Release);
                while line.load(Ordering::Acquire) != 2 * i + 2 {
                    std::hint::spin_loop();
                }
            }
            start.elapsed()
        });
        echo.join().expect("echo thread");
        let took = back.join().expect("timing thread");
        Some(took.as_nanos() as f64 / (2 * TRIPS) as f64)
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Pins the calling thread to `core`.
#[cfg(target_os = "linux")]
fn pin_to(core: usize) {
    // SAFETY: `cpu_set_t` is plain data, valid when zeroed; `core` is one
    // of `allowed_cores`, below `CPU_SETSIZE`.
    let ok = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    };
    assert!(ok, "cannot pin a thread to core {core}");
}

/// Spawns a worker, `index` of its `role`, that waits at `barrier`, then
/// runs `work`, timing it.
fn worker<R: Send + 'static>(
    barrier: &Arc<Barrier>,
    (role, index): (Role, usize),
    work: impl FnOnce() -> R + Send + 'static,
) -> thread::JoinHandle<(Span, R)> {
    let barrier = barrier.clone();
    thread::spawn(move || {
        place(role, index);
        barrier.wait();
        let start = Instant::now();
        let result = work();
        let end = Instant::now();
        (Span { start, end }, result)
    })
}

/// Sends `0..messages` from the producers to the consumers through a fresh
/// channel; returns the time from the first worker leaving the start barrier
/// until the last one finished. Panics unless every message arrived exactly
/// once.
///
/// The workers read the clock themselves: on 2 cores the main thread may not
/// run again until the workers are done, so its own clock would start late.
fn run<T: Msg, F: Flavor<T>>(shape: Shape) -> Duration {
    let Shape {
        producers,
        consumers,
        messages,
    } = shape;
    assert!(consumers == 1 || F::MULTI_CONSUMER);
    assert_eq!(messages % producers as u64, 0);
    let per_producer = messages / producers as u64;
    let (tx, rx) = F::channel();
    let barrier = Arc::new(Barrier::new(producers + consumers));

    let senders: Vec<_> = (0..producers as u64)
        .map(|p| {
            let tx = F::clone_tx(&tx);
            worker(&barrier, (Role::Producer, p as usize), move || {
                F::produce(&tx, p * per_producer..(p + 1) * per_producer);
            })
        })
        .collect();
    drop(tx);

    let mut rx = Some(rx);
    let receivers: Vec<_> = (0..consumers)
        .map(|c| {
            let rx = if c + 1 == consumers {
                rx.take().expect("last consumer")
            } else {
                F::clone_rx(rx.as_ref().expect("receiver"))
            };
            worker(&barrier, (Role::Consumer, c), move || F::consume(&rx))
        })
        .collect();

    let mut spans = Vec::with_capacity(producers + consumers);
    for s in senders {
        spans.push(s.join().expect("producer panicked").0);
    }
    let mut tally = Tally::default();
    for r in receivers {
        let (span, t) = r.join().expect("consumer panicked");
        spans.push(span);
        tally = tally.merge(t);
    }

    assert_eq!(
        tally,
        Tally::expected(messages),
        "{} {producers}p{consumers}c {}: messages lost or duplicated",
        F::NAME,
        T::NAME,
    );
    let start = spans.iter().map(|s| s.start).min().expect("workers");
    let end = spans.iter().map(|s| s.end).max().expect("workers");
    end - start
}

// ---------------------------------------------------------------- scenarios

/// One channel in one scenario, with its message type erased.
struct Contender {
    column: &'static str,
    run: fn(Shape) -> Duration,
}

fn contender<T: Msg, F: Flavor<T>>() -> Contender {
    Contender {
        column: F::NAME,
        run: run::<T, F>,
    }
}

struct Scenario {
    name: String,
    /// `spsc`, `mpsc`, `mpmc`, `batch`, `lane_urgent` or `lane_low`.
    kind: &'static str,
    /// The message type's name: `u64` or `256B`.
    message: &'static str,
    shape: Shape,
    contenders: Vec<Contender>,
}

/// lanebus and every peer that supports `consumers` consumers.
fn per_message<T: Msg>(consumers: usize) -> Vec<Contender> {
    let mut all = vec![
        contender::<T, Lanebus>(),
        contender::<T, Crossbeam>(),
        contender::<T, Kanal>(),
        contender::<T, Flume>(),
    ];
    if consumers == 1 {
        all.push(contender::<T, StdSync>());
    }
    all
}

fn topology<T: Msg>(
    kind: &'static str,
    producers: usize,
    consumers: usize,
    messages: u64,
) -> Scenario {
    Scenario {
        name: format!("{kind}_{producers}p{consumers}c/{}", T::NAME),
        kind,
        message: T::NAME,
        shape: Shape {
            producers,
            consumers,
            messages,
        },
        contenders: per_message::<T>(consumers),
    }
}

/// Every scenario, with `messages` per run (a multiple of 4, so every
/// producer count divides it).
fn scenarios(messages: u64) -> Vec<Scenario> {
    let topologies = [
        ("spsc", 1, 1),
        ("mpsc", 2, 1),
        ("mpmc", 2, 2),
        ("mpmc", 4, 4),
    ];
    let mut all: Vec<Scenario> = topologies
        .iter()
        .map(|&(kind, p, c)| topology::<u64>(kind, p, c, messages))
        .collect();
    all.extend(
        topologies
            .iter()
            .map(|&(kind, p, c)| topology::<[u8; 256]>(kind, p, c, messages)),
    );
    let mut batch = topology::<u64>("batch", 1, 1, messages);
    batch.contenders[0] = contender::<u64, LanebusBatch>();
    all.push(batch);
    // Priority overhead: all traffic on the first lane scanned vs the last,
    // each beside crossbeam as the single-lane reference.
    for (kind, lanebus) in [
        ("lane_urgent", contender::<u64, LanebusUrgent>()),
        ("lane_low", contender::<u64, LanebusLow>()),
    ] {
        let mut lane = topology::<u64>(kind, 1, 1, messages);
        lane.contenders = vec![lanebus, contender::<u64, Crossbeam>()];
        all.push(lane);
    }
    all
}

// ---------------------------------------------------------------- rounds

/// Throughputs in M msg/s: `[scenario][contender][round]`.
type Results = Vec<Vec<Vec<f64>>>;

/// Runs every contender of every scenario once per round, rotating the
/// contender order by one each round so that no channel is always first.
/// Runs every round; also answers the cross-core latency measured before
/// each scenario of each round (`[scenario][round]`, empty where it cannot
/// be measured).
fn run_rounds(scenarios: &[Scenario], rounds: usize) -> (Results, Vec<Vec<f64>>) {
    let mut results: Results = scenarios
        .iter()
        .map(|s| vec![Vec::with_capacity(rounds); s.contenders.len()])
        .collect();
    let mut latency = vec![Vec::with_capacity(rounds); scenarios.len()];
    for round in 0..rounds {
        let started = Instant::now();
        for ((scenario, rates), lat) in scenarios.iter().zip(&mut results).zip(&mut latency) {
            lat.extend(cross_core_ns());
            let n = scenario.contenders.len();
            for i in (0..n).map(|k| (k + round) % n) {
                let elapsed = timed_run(scenario, i, scenario.shape);
                rates[i].push(scenario.shape.messages as f64 / elapsed.as_secs_f64() / 1e6);
            }
        }
        eprintln!(
            "round {}/{rounds} done in {:.1} s",
            round + 1,
            started.elapsed().as_secs_f64()
        );
    }
    (results, latency)
}

/// One untimed pass over everything with a tenth of the messages, so thread
/// stacks, allocator and CPU frequency have settled before round 1.
fn warm_up(scenarios: &[Scenario]) {
    for scenario in scenarios {
        let shape = Shape {
            messages: (scenario.shape.messages / 10).max(4) / 4 * 4,
            ..scenario.shape
        };
        for i in 0..scenario.contenders.len() {
            timed_run(scenario, i, shape);
        }
    }
}

/// Runs contender `i` of `scenario`, watched: if it takes longer than
/// `limit` the watchdog reports it and exits, so a hang shows which channel
/// hung.
fn timed_run(scenario: &Scenario, i: usize, shape: Shape) -> Duration {
    let contender = &scenario.contenders[i];
    let label = format!("{} {}", scenario.name, contender.column);
    *CURRENT.lock().expect("watchdog lock") = Some((label, Instant::now()));
    let elapsed = (contender.run)(shape);
    *CURRENT.lock().expect("watchdog lock") = None;
    elapsed
}

/// Time allowed for one run: 30 s plus 5 s per million messages.
fn limit(messages: u64) -> Duration {
    Duration::from_secs(30 + messages / 200_000)
}

// ---------------------------------------------------------------- report

fn cell(xs: &[f64]) -> String {
    let (med, lo, hi) = stats(xs);
    format!("{med:.1} [{lo:.1}-{hi:.1}]")
}

/// The index of lanebus in `scenario` and of the peer with the best median.
fn lanebus_and_best(scenario: &Scenario, rates: &[Vec<f64>]) -> (usize, usize) {
    let lanebus = scenario
        .contenders
        .iter()
        .position(|c| c.column == COLUMNS[0])
        .expect("every scenario has lanebus");
    let best = (0..rates.len())
        .filter(|&i| i != lanebus)
        .max_by(|&a, &b| median(&rates[a]).total_cmp(&median(&rates[b])))
        .expect("every scenario has a peer");
    (lanebus, best)
}

/// The latency classes the split table uses: one-way cross-core times
/// below [`SIBLING_NS`], from there to below [`NEAR_NS`], and the rest.
const CLASSES: [(&str, f64, f64); 3] = [
    ("siblings", 0.0, SIBLING_NS),
    ("near", SIBLING_NS, NEAR_NS),
    ("far", NEAR_NS, f64::INFINITY),
];

/// The table again, one column per latency class (module docs,
/// "Cross-core latency"); empty if the latency was not measured.
///
/// Within a class, `lanebus / best` is computed as in the main table but
/// over that class's rounds only: lanebus's median over the best peer's
/// median (the best peer chosen within the class), and `paired` the
/// median of the per-round ratio to that peer. Dividing each round by
/// the best peer *of that round* would favour the peers: the largest of
/// three noisy rates is biased upward.
fn by_latency(scenarios: &[Scenario], results: &Results, latency: &[Vec<f64>]) -> String {
    let all: Vec<f64> = latency.iter().flatten().copied().collect();
    if all.is_empty() {
        return String::new();
    }
    let (med, lo, hi) = stats(&all);
    let mut out = format!(
        "Cross-core latency (one way, first two cores, before each scenario of each round): \
         median {med:.0} ns [{lo:.0}-{hi:.0}]; siblings = below {SIBLING_NS:.0} ns, \
         near = below {NEAR_NS:.0} ns, far = the rest. Per class: lanebus median / best \
         peer median within the class (paired median; rounds).\n\n\
         | scenario | {} |\n|---|{}\n",
        CLASSES.map(|(name, _, _)| name).join(" | "),
        "---:|".repeat(CLASSES.len())
    );
    for ((scenario, rates), lat) in scenarios.iter().zip(results).zip(latency) {
        let (lanebus, _) = lanebus_and_best(scenario, rates);
        let cells: Vec<String> = CLASSES
            .iter()
            .map(|&(_, from, below)| {
                let rounds: Vec<usize> = (0..lat.len())
                    .filter(|&r| lat[r] >= from && lat[r] < below)
                    .collect();
                if rounds.is_empty() {
                    return "- (0)".to_string();
                }
                let in_class: Vec<Vec<f64>> = rates
                    .iter()
                    .map(|xs| rounds.iter().map(|&r| xs[r]).collect())
                    .collect();
                let (_, best) = lanebus_and_best(scenario, &in_class);
                let (ratio, paired) = against(&in_class, lanebus, best);
                format!(
                    "{ratio:.2} vs {} ({:.2}; {})",
                    scenario.contenders[best].column,
                    median(&paired),
                    rounds.len()
                )
            })
            .collect();
        let _ = writeln!(out, "| {} | {} |", scenario.name, cells.join(" | "));
    }
    out
}

/// Contender `lanebus`'s median over contender `best`'s, and the ratio of
/// the two in each round.
fn against(rates: &[Vec<f64>], lanebus: usize, best: usize) -> (f64, Vec<f64>) {
    let ratio = median(&rates[lanebus]) / median(&rates[best]);
    let paired = rates[lanebus]
        .iter()
        .zip(&rates[best])
        .map(|(l, p)| l / p)
        .collect();
    (ratio, paired)
}

/// `lanebus / best peer` and the paired per-round ratio against that peer.
fn ratios(scenario: &Scenario, rates: &[Vec<f64>]) -> (String, String) {
    let (lanebus, best) = lanebus_and_best(scenario, rates);
    let (ratio, paired) = against(rates, lanebus, best);
    let (med, lo, hi) = stats(&paired);
    (
        format!("{ratio:.2} vs {}", scenario.contenders[best].column),
        format!("{med:.2} [{lo:.2}-{hi:.2}]"),
    )
}

fn table(scenarios: &[Scenario], results: &Results) -> String {
    let mut out = format!(
        "| scenario | {} | lanebus / best | paired |\n|---|{}---:|---:|\n",
        COLUMNS.join(" | "),
        "---:|".repeat(COLUMNS.len())
    );
    for (scenario, rates) in scenarios.iter().zip(results) {
        let cells: Vec<String> = COLUMNS
            .iter()
            .map(|col| {
                scenario
                    .contenders
                    .iter()
                    .position(|c| c.column == *col)
                    .map_or_else(|| "n/a".to_string(), |i| cell(&rates[i]))
            })
            .collect();
        let (ratio, paired) = ratios(scenario, rates);
        let _ = writeln!(
            out,
            "| {} | {} | {ratio} | {paired} |",
            scenario.name,
            cells.join(" | ")
        );
    }
    out
}

fn header(config: &Config, date: &str) -> String {
    format!(
        "lanebus interleaved throughput, {date}; nproc {nproc} ({cpu}); {rounds} rounds; \
         N = {n} messages per run; capacity {CAP}; \
         M msg/s median [min-max] over rounds; batch_1p1c: lanebus send_batch/recv_batch \
         of {BATCH}, peers per message; lane_urgent/lane_low: lanebus with all traffic \
         on its first/last lane; threads placed: {pin}.",
        pin = match config.pin {
            Pin::Free => "by the kernel",
            Pin::Pairs => "--pin pairs (producer i and consumer i on core i mod cores)",
            Pin::Split => "--pin split (producers on the first core, consumers on the second)",
            Pin::One => "--pin one (all on the first core)",
        },
        nproc = common::command_line("nproc", &[]),
        cpu = common::cpu_model(),
        rounds = config.rounds,
        n = config.messages,
    )
}

/// The `--json` file: the table's figures, machine-readable.
#[derive(Serialize)]
struct JsonReport<'a> {
    date_utc: &'a str,
    nproc: usize,
    cpu: String,
    rounds: usize,
    messages: u64,
    capacity: usize,
    unit: &'static str,
    scenarios: Vec<JsonScenario<'a>>,
}

#[derive(Serialize)]
struct JsonScenario<'a> {
    scenario: &'a str,
    kind: &'static str,
    producers: usize,
    consumers: usize,
    threads: usize,
    message: &'static str,
    /// One-way cross-core latency before this scenario, per round, in ns.
    cross_core_ns: &'a [f64],
    channels: Vec<JsonChannel<'a>>,
}

#[derive(Serialize)]
struct JsonChannel<'a> {
    channel: &'static str,
    median: f64,
    min: f64,
    max: f64,
    rounds: &'a [f64],
}

fn json(
    config: &Config,
    date: &str,
    scenarios: &[Scenario],
    (results, latency): (&Results, &[Vec<f64>]),
) -> String {
    let report = JsonReport {
        date_utc: date,
        nproc: common::command_line("nproc", &[]).parse().unwrap_or(0),
        cpu: common::cpu_model(),
        rounds: config.rounds,
        messages: config.messages,
        capacity: CAP,
        unit: "M msg/s",
        scenarios: scenarios
            .iter()
            .zip(results)
            .zip(latency)
            .map(|((s, rates), lat)| JsonScenario {
                scenario: &s.name,
                kind: s.kind,
                producers: s.shape.producers,
                consumers: s.shape.consumers,
                threads: s.shape.producers + s.shape.consumers,
                message: s.message,
                cross_core_ns: lat,
                channels: s
                    .contenders
                    .iter()
                    .zip(rates)
                    .map(|(c, r)| {
                        let (median, min, max) = stats(r);
                        JsonChannel {
                            channel: c.column,
                            median,
                            min,
                            max,
                            rounds: r,
                        }
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
    messages: u64,
    filter: Option<String>,
    warm_up: bool,
    /// Where `--json` writes the results, besides the table on stdout.
    json: Option<String>,
    /// `--pin`: where the workers run.
    pin: Pin,
}

/// The value of `--pin`.
fn pin_arg(value: &str) -> Pin {
    if cfg!(not(target_os = "linux")) {
        fail("--pin works on Linux only", USAGE);
    }
    match value {
        "pairs" => Pin::Pairs,
        "split" => Pin::Split,
        "one" => Pin::One,
        _ => fail(&format!("--pin {value}: not pairs, split or one"), USAGE),
    }
}

const USAGE: &str = "usage: interleaved [--rounds R] [--messages N] [--json FILE] \
                     [--pin pairs|split|one] [--filter SUBSTR | SUBSTR]";

fn parse_args() -> Config {
    let quick = std::env::var("LANEBUS_BENCH_QUICK").is_ok_and(|v| v == "1");
    let mut config = Config {
        rounds: if quick { 1 } else { DEFAULT_ROUNDS },
        messages: if quick { 20_000 } else { DEFAULT_MESSAGES },
        filter: None,
        warm_up: !quick,
        json: None,
        pin: Pin::Free,
    };
    for arg in common::args(USAGE) {
        match arg {
            Arg::Option(name, value) => match name.as_str() {
                "--rounds" => config.rounds = number::<u64>(&value, USAGE) as usize,
                "--messages" => config.messages = number(&value, USAGE),
                "--filter" => config.filter = Some(value),
                "--json" => config.json = Some(value),
                "--pin" => config.pin = pin_arg(&value),
                _ => common::unknown(&name, USAGE),
            },
            Arg::Filter(substr) => config.filter = Some(substr),
        }
    }
    if config.rounds == 0 || config.messages < 16 {
        fail(
            "--rounds must be at least 1 and --messages at least 16",
            USAGE,
        );
    }
    config.messages = config.messages / 4 * 4;
    config
}

fn main() {
    let config = parse_args();
    PIN.set(config.pin).expect("set once");
    let mut scenarios = scenarios(config.messages);
    if let Some(filter) = &config.filter {
        scenarios.retain(|s| s.name.contains(filter.as_str()));
    }
    if scenarios.is_empty() {
        fail("no scenario matches the filter", USAGE);
    }
    start_watchdog(limit(config.messages));
    let started = Instant::now();
    if config.warm_up {
        warm_up(&scenarios);
    }
    let (results, latency) = run_rounds(&scenarios, config.rounds);
    let date = common::command_line("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]);
    println!("{}\n", header(&config, &date));
    print!("{}", table(&scenarios, &results));
    let split = by_latency(&scenarios, &results, &latency);
    if !split.is_empty() {
        print!("\n{split}");
    }
    println!(
        "\n{} runs in {:.0} s.",
        config.rounds * scenarios.iter().map(|s| s.contenders.len()).sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = &config.json {
        if let Err(e) = std::fs::write(path, json(&config, &date, &scenarios, (&results, &latency)))
        {
            eprintln!("cannot write {path}: {e}");
            std::process::exit(1);
        }
        eprintln!("results written to {path}");
    }
}
