//! Memory under 10x overload: when producers offer ten times what the
//! consumer can handle, how much memory does each channel use, and how many
//! allocations does it make per message?
//!
//! # Setup
//!
//! One consumer thread handles each message with a busy spin of about 2 µs
//! (a loop calibrated once against [`Instant`] in the parent process, from
//! the fastest of many short runs so that a loaded machine does not shrink
//! it; the calibration is printed, and the children get the step count), so
//! it can take at most about 500k msg/s.
//! Producer threads offer messages carrying a 1 KiB payload (a fresh
//! `Vec<u8>` each, its first 8 bytes the sequence number) at ten times that
//! rate in all, paced: each producer follows a schedule of `rate / P`
//! messages per second and sleeps whenever it is more than 1 ms ahead of it
//! (when it is behind, because a send blocked, it sends at once, so it never
//! offers more than the schedule). After the duration (default 2 s) the
//! producers stop and drop their senders (the bus is closed), and the
//! consumer drains what is queued, still spending ~2 µs on each message.
//!
//! Each scenario runs with 1 and 2 producers: `<name>/1p1c_2thr` and
//! `<name>/2p1c_3thr` (producers + consumer threads; the child's main thread
//! also wakes once a millisecond to sample the queue). On a 2-core machine
//! `2p1c_3thr` is oversubscribed, and even `1p1c_2thr` shares the cores
//! with the sampling thread.
//!
//! # Scenarios
//!
//! - `lanebus_bus_budget`: a `lanebus::Bus` with a `MemoryBudget` of 4 MiB
//!   (default watermark 80%: Normal messages wait above 3.2 MiB), one
//!   subscription, `Message::new(Vec<u8>)` published with blocking
//!   `Publisher::publish`. The subscription's Normal lane holds 4096
//!   envelopes (other lanes the default 1024), more than the budget admits
//!   (about 3000 of ~1.1 KiB), so the budget, not the queue, binds.
//! - `lanebus_bus_budget_timeout`: the same with `publish_timeout(1 ms)`;
//!   a publish that times out hands its envelope back and counts as
//!   refused (its payload's sequence number is checked).
//! - `lanebus_bus_queue`: the same bus without a budget, default lanes of
//!   1024: the subscription's queue binds. Beside `lanebus_bus_budget` it
//!   shows what the budget itself costs.
//! - `lanebus_bounded`: `lanebus::bounded::<Vec<u8>>(1024)`, blocking `send`.
//! - `crossbeam_bounded`, `flume_bounded`, `kanal_bounded`: bounded to 1024,
//!   blocking `send`.
//! - `crossbeam_unbounded`, `flume_unbounded`, `std_channel`
//!   (`std::sync::mpsc::channel`): no backpressure, the reference rows. They
//!   grow until the producers stop or the child's resident memory passes
//!   the safety cap (default 1024 MiB, `--rss-cap-mib`; checked every
//!   10 ms), which stops the producers early: such rows are marked `capped`
//!   and show how long the producers ran. Their drain takes the backlog
//!   times 2 µs.
//!
//! # Measurements
//!
//! Every scenario runs in its own child process (the bench re-executes
//! itself with `--child <scenario>`), so its peak RSS is its own: `VmHWM`
//! from `/proc/self/status`, read by the child at the end. `RSS over
//! baseline` subtracts the `VmHWM` of a child that allocates nothing and
//! exits, measured the same way.
//!
//! Allocations are counted by a `#[global_allocator]` wrapper around
//! `std::alloc::System` (relaxed `AtomicU64`s for calls and bytes; a
//! `realloc` counts as one call of its new size), from just before the
//! channel is built until everything is joined and dropped (thread spawns
//! and channel setup included; they are a few dozen allocations against
//! hundreds of thousands of messages). `allocs/msg` and `bytes/msg` divide by
//! the messages delivered and include the payload itself (one 1024-byte
//! allocation per message offered); the `excl. payload` columns subtract one
//! payload allocation per message offered (refused ones too) before
//! dividing: what the channel costs on top of the message.
//!
//! `max depth` is the most messages queued at once: `len()` sampled every
//! 1 ms by the child's main thread, or, for `std_channel` (no `len()`),
//! messages accepted minus messages received (counters the producers and
//! the consumer publish after every message).
//!
//! `offered k/s` is the messages offered over the time the producers ran;
//! `delivered k/s` the messages the consumer had received by the time the
//! last producer stopped, over the same time (the drain is not in it). A
//! blocking send is offered once, however long it waits, so for the
//! blocking rows offered = delivered: the 10x shows as producers blocked,
//! not as a higher rate. The unbounded rows show what the producers could
//! really offer: allocating and filling a fresh 1 KiB per message (and
//! faulting in new pages as the queue grows) on 2 shared cores, that is far
//! below the 10x target.
//!
//! Every message sent is received exactly once or handed back: the
//! producers tally (count, sum, sum of squares) the sequence numbers whose
//! send succeeded and those refused, the consumer tallies what it got, and
//! the child panics unless the consumer's tally equals the accepted one and
//! offered = accepted + refused. A child that fails or hangs fails the bench.
//!
//! # Run
//!
//! ```text
//! cargo bench --bench overload
//! cargo bench --bench overload -- --filter lanebus_bus --duration 5 --json overload.json
//! LANEBUS_BENCH_QUICK=1 cargo bench --bench overload   # 0.2 s per scenario
//! ```
//!
//! Options: `--duration S` (seconds of production per scenario, default 2;
//! 0.2 with `LANEBUS_BENCH_QUICK=1`), `--filter SUB` (only scenarios whose
//! id contains `SUB`; a bare argument works too), `--rss-cap-mib N` (the
//! safety cap; 0 = none; default 1024, 256 in quick mode), `--json FILE`
//! (also write the results to `FILE`). A default run takes about a minute
//! on 2 cores, most of it the 2-second production phases and the unbounded
//! rows' drains.
//!
//! The JSON file holds `date_utc`, `nproc`, `cpu`, `duration_s`,
//! `payload_bytes`, `consumer_ns` (measured cost of one handler spin),
//! `offered_target_per_s` (all producers together), `rss_cap_mib`,
//! `baseline_rss_mib` and `scenarios`: one object per table row with
//! `scenario` (the row id), `threads` (producers + consumer), `producers`,
//! `offered`, `delivered`, `refused` (message counts), `offered_per_s` and
//! `delivered_per_s` (as in the table), `produce_s` (seconds the producers
//! ran), `capped` (stopped by the RSS cap), `peak_rss_mib`,
//! `rss_over_baseline_mib`, `allocs_per_msg`, `bytes_per_msg`,
//! `allocs_per_msg_excl_payload`, `bytes_per_msg_excl_payload`, `max_depth`
//! and `depth_source` (`"len"` or `"counters"`).
//!
//! The numbers that matter are the memory ones; rates on a shared 2-core
//! machine are only there to show the overload was real.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write as _};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use lanebus::{Bus, Envelope, MemoryBudget, Message, Priority, PublishError, Publisher};
use serde::{Deserialize, Serialize};

// Only `Tally` and `CAP` are used here; the channel flavors are for the
// other benches.
#[allow(dead_code)]
mod common;
use common::{fail, number, Arg, Tally, CAP};

/// Payload bytes per message.
const PAYLOAD: usize = 1024;
/// The consumer's handling cost per message, in nanoseconds.
const CONSUMER_NS: u64 = 2_000;
/// Offered rate over the consumer's rate.
const OVERLOAD: f64 = 10.0;
/// How far a producer may run ahead of its schedule before it sleeps.
const SLACK: Duration = Duration::from_millis(1);
/// The bus scenarios' budget.
const BUDGET_BYTES: usize = 4 << 20;
/// The bus subscription's Normal lane: more than the budget admits.
const BUS_NORMAL_LANE: usize = 4096;
/// `lanebus_bus_budget_timeout`'s publish timeout.
const PUBLISH_TIMEOUT: Duration = Duration::from_millis(1);
/// The topic of the bus scenarios.
const TOPIC: &str = "overload";
/// Producer thread counts every scenario runs with.
const PRODUCERS: [usize; 2] = [1, 2];
/// How often the child samples the queue depth, and checks its RSS.
const DEPTH_EVERY: Duration = Duration::from_millis(1);
const RSS_EVERY: u32 = 10;

// ---------------------------------------------------------------- allocations

/// `System`, counting allocation calls and bytes.
struct Counting;

static ALLOC_CALLS: AtomicU64 = AtomicU64::new(0);
static ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);

#[inline]
fn count(bytes: usize) {
    ALLOC_CALLS.fetch_add(1, Ordering::Relaxed);
    ALLOC_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments, so
// it upholds `GlobalAlloc`'s contract exactly as `System` does; the counters
// are plain atomics and never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's obligations for `alloc`, passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this wrapper, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: as for `dealloc`, and the caller's obligations on `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocation calls and bytes so far.
fn allocations() -> (u64, u64) {
    (
        ALLOC_CALLS.load(Ordering::Relaxed),
        ALLOC_BYTES.load(Ordering::Relaxed),
    )
}

// ---------------------------------------------------------------- the handler

/// A busy loop of `steps` xorshift steps.
fn spin(steps: u64) -> u64 {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..black_box(steps) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    black_box(x)
}

/// Spin steps for a `CONSUMER_NS` handler and the cost of one such call in
/// ns. Both are the fastest of many short timed runs: a run that was
/// preempted only ever comes out slower, and on a loaded machine a long run
/// is almost always preempted somewhere (a median or a few long runs would
/// calibrate the load, not the loop).
fn calibrate(quick: bool) -> (u64, f64) {
    /// About 40 µs per run at 0.8 ns per step.
    const STEPS: u64 = 50_000;
    fn fastest(runs: usize, mut f: impl FnMut()) -> Duration {
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .min()
            .expect("runs")
    }
    spin(20 * STEPS);
    let runs = if quick { 100 } else { 400 };
    let ns_per_step = fastest(runs, || {
        spin(STEPS);
    })
    .as_nanos() as f64
        / STEPS as f64;
    let steps = ((CONSUMER_NS as f64 / ns_per_step).round() as u64).max(1);
    let call_ns = fastest(runs, || {
        for _ in 0..20 {
            spin(steps);
        }
    })
    .as_nanos() as f64
        / 20.0;
    println!(
        "calibration: {ns_per_step:.4} ns per spin step (fastest of {runs} runs of {STEPS}); \
         handler = {steps} steps, {:.3} us per call (fastest of {runs} runs of 20 calls)",
        call_ns / 1e3
    );
    (steps, call_ns)
}

// ---------------------------------------------------------------- channels

/// The payload of message `seq`: `PAYLOAD` bytes, the first 8 the sequence
/// number.
#[inline]
fn payload(seq: u64) -> Vec<u8> {
    let mut v = vec![0xA5u8; PAYLOAD];
    v[..8].copy_from_slice(&seq.to_le_bytes());
    v
}

/// The sequence number a payload carries; panics if it is not whole.
#[inline]
fn seq_of(bytes: &[u8]) -> u64 {
    assert_eq!(bytes.len(), PAYLOAD, "payload changed size");
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(b)
}

/// A channel under overload.
trait Contender: 'static {
    type Tx: Send + 'static;
    type Rx: Send + 'static;
    type Msg;
    /// What the child's main thread keeps: a handle to read the queue depth
    /// and to close.
    type Probe;

    fn open() -> (Self::Tx, Self::Rx, Self::Probe);
    fn clone_tx(tx: &Self::Tx) -> Self::Tx;
    /// Sends a message; `Err(seq)` if it was refused and handed back
    /// (`seq` read from the handed-back payload).
    fn send(tx: &Self::Tx, payload: Vec<u8>) -> Result<(), u64>;
    /// `None` once the channel is closed and empty.
    fn recv(rx: &Self::Rx) -> Option<Self::Msg>;
    fn bytes(msg: &Self::Msg) -> &[u8];
    /// Messages queued now, if the channel can tell.
    fn depth(probe: &Self::Probe) -> Option<usize>;
    /// Every producer is done and has dropped its sender.
    fn close(_probe: &Self::Probe) {}
}

/// A channel whose handles are `Clone`, with a blocking `send` that fails
/// only when disconnected and a `len()`.
macro_rules! plain {
    ($ty:ident, $name:expr, $tx:ty, $rx:ty, $new:expr) => {
        struct $ty;

        impl Contender for $ty {
            type Tx = $tx;
            type Rx = $rx;
            type Msg = Vec<u8>;
            type Probe = $rx;

            fn open() -> (Self::Tx, Self::Rx, Self::Probe) {
                let (tx, rx) = $new;
                let probe = rx.clone();
                (tx, rx, probe)
            }

            fn clone_tx(tx: &Self::Tx) -> Self::Tx {
                tx.clone()
            }

            #[inline]
            fn send(tx: &Self::Tx, payload: Vec<u8>) -> Result<(), u64> {
                if tx.send(payload).is_err() {
                    panic!("{}: receiver gone", $name);
                }
                Ok(())
            }

            #[inline]
            fn recv(rx: &Self::Rx) -> Option<Vec<u8>> {
                rx.recv().ok()
            }

            fn bytes(msg: &Vec<u8>) -> &[u8] {
                msg
            }

            fn depth(probe: &Self::Probe) -> Option<usize> {
                Some(probe.len())
            }
        }
    };
}

plain!(
    LanebusBounded,
    "lanebus_bounded",
    lanebus::Sender<Vec<u8>>,
    lanebus::Receiver<Vec<u8>>,
    lanebus::bounded::<Vec<u8>>(CAP)
);
plain!(
    CrossbeamBounded,
    "crossbeam_bounded",
    crossbeam_channel::Sender<Vec<u8>>,
    crossbeam_channel::Receiver<Vec<u8>>,
    crossbeam_channel::bounded::<Vec<u8>>(CAP)
);
plain!(
    FlumeBounded,
    "flume_bounded",
    flume::Sender<Vec<u8>>,
    flume::Receiver<Vec<u8>>,
    flume::bounded::<Vec<u8>>(CAP)
);
plain!(
    KanalBounded,
    "kanal_bounded",
    kanal::Sender<Vec<u8>>,
    kanal::Receiver<Vec<u8>>,
    kanal::bounded::<Vec<u8>>(CAP)
);
plain!(
    CrossbeamUnbounded,
    "crossbeam_unbounded",
    crossbeam_channel::Sender<Vec<u8>>,
    crossbeam_channel::Receiver<Vec<u8>>,
    crossbeam_channel::unbounded::<Vec<u8>>()
);
plain!(
    FlumeUnbounded,
    "flume_unbounded",
    flume::Sender<Vec<u8>>,
    flume::Receiver<Vec<u8>>,
    flume::unbounded::<Vec<u8>>()
);

/// `std::sync::mpsc::channel`: unbounded, no `len()`.
struct StdChannel;

impl Contender for StdChannel {
    type Tx = mpsc::Sender<Vec<u8>>;
    type Rx = mpsc::Receiver<Vec<u8>>;
    type Msg = Vec<u8>;
    type Probe = ();

    fn open() -> (Self::Tx, Self::Rx, ()) {
        let (tx, rx) = mpsc::channel();
        (tx, rx, ())
    }

    fn clone_tx(tx: &Self::Tx) -> Self::Tx {
        tx.clone()
    }

    #[inline]
    fn send(tx: &Self::Tx, payload: Vec<u8>) -> Result<(), u64> {
        tx.send(payload).expect("std_channel: receiver gone");
        Ok(())
    }

    #[inline]
    fn recv(rx: &Self::Rx) -> Option<Vec<u8>> {
        rx.recv().ok()
    }

    fn bytes(msg: &Vec<u8>) -> &[u8] {
        msg
    }

    fn depth(_: &()) -> Option<usize> {
        None
    }
}

/// A bus with one subscription. `BUDGET`: under a 4 MiB budget, with a
/// Normal lane of `BUS_NORMAL_LANE` (the budget binds); else no budget and
/// the default lanes of 1024 (the queue binds). `TIMEOUT`: publishes wait at
/// most `PUBLISH_TIMEOUT`, else for ever.
struct BusContender<const BUDGET: bool, const TIMEOUT: bool>;

impl<const BUDGET: bool, const TIMEOUT: bool> Contender for BusContender<BUDGET, TIMEOUT> {
    type Tx = Publisher;
    type Rx = lanebus::Subscription;
    type Msg = Envelope;
    type Probe = (Bus, lanebus::Subscription);

    fn open() -> (Self::Tx, Self::Rx, Self::Probe) {
        let bus = if BUDGET {
            Bus::builder()
                .budget(MemoryBudget::new(BUDGET_BYTES))
                .lane_capacity(Priority::Normal, BUS_NORMAL_LANE)
                .build()
        } else {
            Bus::builder().capacity(CAP).build()
        };
        let sub = bus.subscribe(TOPIC).expect("topic");
        let publisher = bus.publisher(TOPIC).expect("topic");
        let probe = (bus, sub.clone());
        (publisher, sub, probe)
    }

    fn clone_tx(tx: &Publisher) -> Publisher {
        tx.clone()
    }

    #[inline]
    fn send(tx: &Publisher, payload: Vec<u8>) -> Result<(), u64> {
        let message = Message::new(payload);
        let sent = if TIMEOUT {
            tx.publish_timeout(message, PUBLISH_TIMEOUT)
        } else {
            tx.publish(message)
        };
        match sent {
            Ok(1) => Ok(()),
            Ok(n) => panic!("bus: published to {n} queues, not 1"),
            Err(PublishError::Timeout(envelope)) if TIMEOUT => Err(seq_of(envelope.payload())),
            Err(e) => panic!("bus: publish failed: {e}"),
        }
    }

    #[inline]
    fn recv(rx: &lanebus::Subscription) -> Option<Envelope> {
        rx.recv().ok()
    }

    fn bytes(msg: &Envelope) -> &[u8] {
        msg.payload()
    }

    fn depth(probe: &Self::Probe) -> Option<usize> {
        Some(probe.1.len())
    }

    fn close(probe: &Self::Probe) {
        probe.0.close();
    }
}

/// A scenario's name and its child-side runner.
type Runner = fn(&ChildConfig) -> ChildResult;

const SCENARIOS: [(&str, Runner); 10] = [
    ("lanebus_bus_budget", run::<BusContender<true, false>>),
    (
        "lanebus_bus_budget_timeout",
        run::<BusContender<true, true>>,
    ),
    ("lanebus_bus_queue", run::<BusContender<false, false>>),
    ("lanebus_bounded", run::<LanebusBounded>),
    ("crossbeam_bounded", run::<CrossbeamBounded>),
    ("flume_bounded", run::<FlumeBounded>),
    ("kanal_bounded", run::<KanalBounded>),
    ("crossbeam_unbounded", run::<CrossbeamUnbounded>),
    ("flume_unbounded", run::<FlumeUnbounded>),
    ("std_channel", run::<StdChannel>),
];

// ---------------------------------------------------------------- the child

/// What the parent tells a child.
struct ChildConfig {
    producers: usize,
    duration: Duration,
    /// Offered messages per second, all producers together.
    rate: f64,
    spin_steps: u64,
    /// Resident bytes at which the producers are stopped early (0: never).
    rss_cap: u64,
}

/// The JSON line a child prints.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct ChildResult {
    offered: u64,
    delivered: u64,
    refused: u64,
    /// Messages the consumer had received when the last producer stopped.
    delivered_by_stop: u64,
    /// Seconds the producers ran (the longest of them).
    produce_s: f64,
    capped: bool,
    peak_rss_kib: u64,
    allocs: u64,
    alloc_bytes: u64,
    max_depth: u64,
    depth_source: String,
}

/// A counter on its own cache line.
#[repr(align(128))]
#[derive(Default)]
struct Counter(AtomicU64);

/// What one producer did.
struct Produced {
    offered: u64,
    accepted: Tally,
    refused: Tally,
    elapsed: Duration,
}

/// Offers `seq = id << 40 | k` for k = 0, 1, ... on a schedule of `rate`
/// messages per second until `duration` has passed or `stop` is set.
fn produce<C: Contender>(
    tx: C::Tx,
    id: u64,
    rate: f64,
    duration: Duration,
    stop: &AtomicBool,
    accepted_count: &Counter,
) -> Produced {
    let interval_ns = 1e9 / rate;
    let (mut accepted, mut refused) = (Tally::default(), Tally::default());
    let start = Instant::now();
    let mut k = 0u64;
    loop {
        let now = Instant::now();
        let elapsed = now - start;
        if elapsed >= duration || stop.load(Ordering::Relaxed) {
            break;
        }
        let due = Duration::from_nanos((k as f64 * interval_ns) as u64);
        if due > elapsed + SLACK {
            thread::sleep(due - elapsed);
            continue;
        }
        let seq = id << 40 | k;
        k += 1;
        match C::send(&tx, payload(seq)) {
            Ok(()) => {
                accepted.add(seq);
                accepted_count.0.store(accepted.count, Ordering::Relaxed);
            }
            Err(back) => {
                assert_eq!(back, seq, "a refused send handed back another message");
                refused.add(seq);
            }
        }
    }
    let elapsed = start.elapsed();
    drop(tx);
    Produced {
        offered: k,
        accepted,
        refused,
        elapsed,
    }
}

/// Receives until the channel is closed and empty, spinning `spin_steps`
/// per message.
fn consume<C: Contender>(rx: C::Rx, spin_steps: u64, received: &Counter) -> Tally {
    let mut tally = Tally::default();
    while let Some(msg) = C::recv(&rx) {
        tally.add(seq_of(C::bytes(&msg)));
        spin(spin_steps);
        received.0.store(tally.count, Ordering::Relaxed);
        drop(msg);
    }
    tally
}

/// One scenario, in this (child) process.
fn run<C: Contender>(cfg: &ChildConfig) -> ChildResult {
    let producers = cfg.producers;
    let (allocs_before, bytes_before) = allocations();
    let (tx, rx, probe) = C::open();
    let stop = Arc::new(AtomicBool::new(false));
    let accepted: Arc<Vec<Counter>> =
        Arc::new((0..producers).map(|_| Counter::default()).collect());
    let received = Arc::new(Counter::default());
    let barrier = Arc::new(Barrier::new(producers + 2));

    let consumer = {
        let (barrier, received, steps) = (barrier.clone(), received.clone(), cfg.spin_steps);
        thread::spawn(move || {
            barrier.wait();
            consume::<C>(rx, steps, &received)
        })
    };
    let rate = cfg.rate / producers as f64;
    let handles: Vec<_> = (0..producers)
        .map(|p| {
            let tx = C::clone_tx(&tx);
            let (barrier, stop, accepted) = (barrier.clone(), stop.clone(), accepted.clone());
            let duration = cfg.duration;
            thread::spawn(move || {
                barrier.wait();
                produce::<C>(tx, p as u64, rate, duration, &stop, &accepted[p])
            })
        })
        .collect();
    drop(tx);

    barrier.wait();
    let (mut max_depth, mut capped, mut tick) = (0u64, false, 0u32);
    let from_len = C::depth(&probe).is_some();
    while !handles.iter().all(|h| h.is_finished()) {
        thread::sleep(DEPTH_EVERY);
        let depth = C::depth(&probe).unwrap_or_else(|| {
            // Received first: a stale `received` only overstates the depth
            // by what arrived since.
            let got = received.0.load(Ordering::Relaxed);
            let sent: u64 = accepted.iter().map(|c| c.0.load(Ordering::Relaxed)).sum();
            sent.saturating_sub(got) as usize
        });
        max_depth = max_depth.max(depth as u64);
        tick += 1;
        if cfg.rss_cap > 0 && tick % RSS_EVERY == 0 && !capped && rss_bytes() > cfg.rss_cap {
            capped = true;
            stop.store(true, Ordering::Relaxed);
        }
    }
    let produced: Vec<Produced> = handles
        .into_iter()
        .map(|h| h.join().expect("producer panicked"))
        .collect();
    let delivered_by_stop = received.0.load(Ordering::Relaxed);
    C::close(&probe);
    let got = consumer.join().expect("consumer panicked");
    drop(probe);
    let (allocs_after, bytes_after) = allocations();

    let offered: u64 = produced.iter().map(|p| p.offered).sum();
    let sent = produced
        .iter()
        .fold(Tally::default(), |t, p| t.merge(p.accepted));
    let refused = produced
        .iter()
        .fold(Tally::default(), |t, p| t.merge(p.refused));
    assert_eq!(
        got, sent,
        "messages lost or duplicated: received {got:?}, accepted {sent:?}"
    );
    assert_eq!(
        sent.count + refused.count,
        offered,
        "offered messages neither accepted nor refused"
    );
    ChildResult {
        offered,
        delivered: got.count,
        refused: refused.count,
        delivered_by_stop,
        produce_s: produced
            .iter()
            .map(|p| p.elapsed.as_secs_f64())
            .fold(0.0, f64::max),
        capped,
        peak_rss_kib: peak_rss_kib(),
        allocs: allocs_after - allocs_before,
        alloc_bytes: bytes_after - bytes_before,
        max_depth,
        depth_source: if from_len { "len" } else { "counters" }.to_string(),
    }
}

/// Resident bytes now, from `/proc/self/statm` (pages of 4 KiB), without
/// allocating (it runs while allocations are counted). Only for the safety
/// cap, so an approximate page size is fine.
fn rss_bytes() -> u64 {
    let mut buf = [0u8; 256];
    let Ok(mut file) = File::open("/proc/self/statm") else {
        return 0;
    };
    let n = file.read(&mut buf).unwrap_or(0);
    let pages = std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|s| s.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    pages * 4096
}

/// `VmHWM` (peak resident set) of this process in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// The child's `main`: runs `scenario` (or, for `baseline`, nothing) and
/// prints one JSON line.
fn child(scenario: &str, cfg: &ChildConfig) {
    let result = if scenario == "baseline" {
        ChildResult {
            offered: 0,
            delivered: 0,
            refused: 0,
            delivered_by_stop: 0,
            produce_s: 0.0,
            capped: false,
            peak_rss_kib: peak_rss_kib(),
            allocs: 0,
            alloc_bytes: 0,
            max_depth: 0,
            depth_source: "none".to_string(),
        }
    } else {
        let (_, runner) = SCENARIOS
            .iter()
            .find(|(name, _)| *name == scenario)
            .unwrap_or_else(|| fail(&format!("unknown scenario {scenario}"), USAGE));
        runner(cfg)
    };
    let line = serde_json::to_string(&result).expect("the result serializes");
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").expect("stdout");
}

// ---------------------------------------------------------------- the parent

/// Runs one child and parses its JSON line; panics if it fails or hangs.
fn spawn_child(config: &Config, scenario: &str, producers: usize) -> ChildResult {
    let mut child = Command::new(std::env::current_exe().expect("current_exe"))
        .args([
            "--child",
            scenario,
            "--producers",
            &producers.to_string(),
            "--duration",
            &config.duration.as_secs_f64().to_string(),
            "--rate",
            &config.rate.to_string(),
            "--spin-steps",
            &config.spin_steps.to_string(),
            "--rss-cap-mib",
            &config.rss_cap_mib.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child");
    // The drain of a capped unbounded run is its backlog times 2 µs: a
    // minute covers a few GiB of backlog.
    let limit = config.duration + Duration::from_secs(60 + config.rss_cap_mib / 256 * 2);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{scenario} with {producers} producers still running after {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_string(&mut out)
        .expect("the child's stdout");
    assert!(
        status.success(),
        "{scenario} with {producers} producers failed ({status})"
    );
    let line = out.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{scenario}: cannot parse the child's line {line:?}: {e}"))
}

/// One table row.
#[derive(Serialize)]
struct Row {
    scenario: String,
    threads: usize,
    producers: usize,
    offered: u64,
    delivered: u64,
    refused: u64,
    offered_per_s: f64,
    delivered_per_s: f64,
    produce_s: f64,
    capped: bool,
    peak_rss_mib: f64,
    rss_over_baseline_mib: f64,
    allocs_per_msg: f64,
    bytes_per_msg: f64,
    allocs_per_msg_excl_payload: f64,
    bytes_per_msg_excl_payload: f64,
    max_depth: u64,
    depth_source: String,
}

fn row(name: &str, producers: usize, r: &ChildResult, baseline_kib: u64) -> Row {
    let per = |x: f64| {
        if r.delivered == 0 {
            0.0
        } else {
            x / r.delivered as f64
        }
    };
    let payload_allocs = r.offered as f64;
    let payload_bytes = (r.offered * PAYLOAD as u64) as f64;
    let rate = |n: u64| {
        if r.produce_s > 0.0 {
            n as f64 / r.produce_s
        } else {
            0.0
        }
    };
    Row {
        scenario: format!("{name}/{producers}p1c_{}thr", producers + 1),
        threads: producers + 1,
        producers,
        offered: r.offered,
        delivered: r.delivered,
        refused: r.refused,
        offered_per_s: rate(r.offered),
        delivered_per_s: rate(r.delivered_by_stop),
        produce_s: r.produce_s,
        capped: r.capped,
        peak_rss_mib: r.peak_rss_kib as f64 / 1024.0,
        rss_over_baseline_mib: r.peak_rss_kib.saturating_sub(baseline_kib) as f64 / 1024.0,
        allocs_per_msg: per(r.allocs as f64),
        bytes_per_msg: per(r.alloc_bytes as f64),
        allocs_per_msg_excl_payload: per(r.allocs as f64 - payload_allocs),
        bytes_per_msg_excl_payload: per(r.alloc_bytes as f64 - payload_bytes),
        max_depth: r.max_depth,
        depth_source: r.depth_source.clone(),
    }
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | threads | offered | offered k/s | delivered | delivered k/s | refused \
         | peak RSS MiB | over baseline MiB | allocs/msg | excl. payload | bytes/msg \
         | excl. payload | max depth |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let capped = if r.capped {
            format!(" (capped at {:.2} s)", r.produce_s)
        } else {
            String::new()
        };
        let depth_mark = if r.depth_source == "len" { "" } else { " ~" };
        let _ = writeln!(
            out,
            "| {}{capped} | {} | {} | {:.0} | {} | {:.0} | {} | {:.1} | {:.1} | {:.3} | {:.3} \
             | {:.0} | {:.0} | {}{depth_mark} |",
            r.scenario,
            r.threads,
            r.offered,
            r.offered_per_s / 1e3,
            r.delivered,
            r.delivered_per_s / 1e3,
            r.refused,
            r.peak_rss_mib,
            r.rss_over_baseline_mib,
            r.allocs_per_msg,
            r.allocs_per_msg_excl_payload,
            r.bytes_per_msg,
            r.bytes_per_msg_excl_payload,
            r.max_depth,
        );
    }
    out
}

/// The `--json` file.
#[derive(Serialize)]
struct JsonReport<'a> {
    date_utc: &'a str,
    nproc: usize,
    cpu: String,
    duration_s: f64,
    payload_bytes: usize,
    consumer_ns: f64,
    offered_target_per_s: f64,
    rss_cap_mib: u64,
    baseline_rss_mib: f64,
    scenarios: &'a [Row],
}

struct Config {
    duration: Duration,
    filter: Option<String>,
    json: Option<String>,
    rss_cap_mib: u64,
    /// Set by the parent after calibrating (or given to a child).
    rate: f64,
    spin_steps: u64,
    consumer_ns: f64,
    child: Option<String>,
    producers: usize,
}

const USAGE: &str = "usage: overload [--duration S] [--rss-cap-mib N] [--json FILE] \
                     [--filter SUBSTR | SUBSTR]";

fn parse_args() -> Config {
    let quick = std::env::var("LANEBUS_BENCH_QUICK").is_ok_and(|v| v == "1");
    let mut config = Config {
        duration: Duration::from_secs_f64(if quick { 0.2 } else { 2.0 }),
        filter: None,
        json: None,
        rss_cap_mib: if quick { 256 } else { 1024 },
        rate: 0.0,
        spin_steps: 0,
        consumer_ns: 0.0,
        child: None,
        producers: 1,
    };
    for arg in common::args(USAGE) {
        match arg {
            Arg::Option(name, value) => match name.as_str() {
                "--duration" => {
                    let s: f64 = number(&value, USAGE);
                    if !(s > 0.0 && s < 3600.0) {
                        fail("--duration must be between 0 and 3600 seconds", USAGE);
                    }
                    config.duration = Duration::from_secs_f64(s);
                }
                "--filter" => config.filter = Some(value),
                "--json" => config.json = Some(value),
                "--rss-cap-mib" => config.rss_cap_mib = number(&value, USAGE),
                // Internal: the parent's arguments to a child.
                "--child" => config.child = Some(value),
                "--producers" => config.producers = number(&value, USAGE),
                "--rate" => config.rate = number(&value, USAGE),
                "--spin-steps" => config.spin_steps = number(&value, USAGE),
                _ => common::unknown(&name, USAGE),
            },
            Arg::Filter(substr) => config.filter = Some(substr),
        }
    }
    config
}

fn main() {
    let mut config = parse_args();
    if let Some(scenario) = &config.child {
        if config.producers == 0 || config.rate <= 0.0 {
            fail("a child needs --producers >= 1 and --rate > 0", USAGE);
        }
        let cfg = ChildConfig {
            producers: config.producers,
            duration: config.duration,
            rate: config.rate,
            spin_steps: config.spin_steps,
            rss_cap: config.rss_cap_mib << 20,
        };
        child(scenario, &cfg);
        return;
    }

    let quick = std::env::var("LANEBUS_BENCH_QUICK").is_ok_and(|v| v == "1");
    let ids: Vec<(&str, usize)> = SCENARIOS
        .iter()
        .flat_map(|(name, _)| PRODUCERS.iter().map(move |&p| (*name, p)))
        .filter(|(name, p)| {
            let id = format!("{name}/{p}p1c_{}thr", p + 1);
            config
                .filter
                .as_ref()
                .is_none_or(|f| id.contains(f.as_str()))
        })
        .collect();
    if ids.is_empty() {
        fail("no scenario matches the filter", USAGE);
    }
    let started = Instant::now();
    let (steps, call_ns) = calibrate(quick);
    config.spin_steps = steps;
    config.consumer_ns = call_ns;
    config.rate = OVERLOAD * 1e9 / call_ns;
    println!(
        "consumer ~{:.2} us per message (<= {:.0}k msg/s); offered target {OVERLOAD}x = {:.0}k \
         msg/s in all, for {:.1} s per scenario",
        call_ns / 1e3,
        1e6 / call_ns,
        config.rate / 1e3,
        config.duration.as_secs_f64()
    );

    let baseline = spawn_child(&config, "baseline", 1).peak_rss_kib;
    let mut rows = Vec::with_capacity(ids.len());
    for (name, producers) in ids {
        let t = Instant::now();
        let result = spawn_child(&config, name, producers);
        let r = row(name, producers, &result, baseline);
        eprintln!(
            "{}: peak RSS {:.1} MiB, {:.2} allocs/msg, done in {:.1} s",
            r.scenario,
            r.peak_rss_mib,
            r.allocs_per_msg,
            t.elapsed().as_secs_f64()
        );
        rows.push(r);
    }

    let date = common::command_line("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]);
    let nproc = common::command_line("nproc", &[]);
    println!(
        "\nlanebus overload memory, {date}; nproc {nproc} ({cpu}); {dur:.1} s of production per \
         scenario; payload {PAYLOAD} B; consumer ~{c:.2} us/msg; offered {OVERLOAD}x = {rate:.0}k \
         msg/s; baseline child VmHWM {base:.1} MiB; RSS cap {cap} MiB.\n",
        cpu = common::cpu_model(),
        dur = config.duration.as_secs_f64(),
        c = call_ns / 1e3,
        rate = config.rate / 1e3,
        base = baseline as f64 / 1024.0,
        cap = config.rss_cap_mib,
    );
    print!("{}", table(&rows));
    println!(
        "\nallocs/msg and bytes/msg: allocations while the scenario ran / messages delivered, \
         including the {PAYLOAD}-byte payload of every message offered; `excl. payload` \
         subtracts those. `~`: depth from sent - received counters (no len()). \
         {} children in {:.0} s.",
        rows.len() + 1,
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = &config.json {
        let report = JsonReport {
            date_utc: &date,
            nproc: nproc.parse().unwrap_or(0),
            cpu: common::cpu_model(),
            duration_s: config.duration.as_secs_f64(),
            payload_bytes: PAYLOAD,
            consumer_ns: call_ns,
            offered_target_per_s: config.rate,
            rss_cap_mib: config.rss_cap_mib,
            baseline_rss_mib: baseline as f64 / 1024.0,
            scenarios: &rows,
        };
        let mut s = serde_json::to_string_pretty(&report).expect("the report serializes");
        s.push('\n');
        if let Err(e) = std::fs::write(path, s) {
            eprintln!("cannot write {path}: {e}");
            std::process::exit(1);
        }
        eprintln!("results written to {path}");
    }
}
