//! The worker pool: how it scales with workers, how long an Urgent message
//! waits behind a Normal backlog, and what it costs over a bare receive loop.
//!
//! Every id names its thread counts: `2w_3thr` is 2 workers plus one
//! producer thread, `2w_2thr` 2 workers alone. On a 2-core machine 4, 8 and
//! 20 workers are oversubscribed on purpose.
//!
//! - `pool_scaling_<cost>` (`0us`, `1us`, `10us`): throughput of a pool of
//!   1, 2, 4, 8 and 20 workers whose handler spins for about that long (a
//!   busy loop calibrated once at startup against [`Instant`], not a
//!   sleep; the calibration is printed). Two feeds:
//!   - `live/<w>w_<w+1>thr`: `lanebus::bounded::<u64>(1024)`, one producer
//!     thread sending `0..n` with blocking `send` while the pool runs. On 2
//!     cores the producer is a third thread competing with two workers.
//!   - `prefilled/<w>w_<w>thr`: every message is in the channel (Normal
//!     lane capacity `n`) before the pool starts, so only the workers run.
//!   - `ideal/<t>thr` (1 and 2 threads): no channel, no pool; the threads
//!     claim chunks of 16 sequence numbers from a shared counter and run the
//!     same handler. The scaling the machine allows at that moment: on a
//!     shared machine compare `prefilled/2w_2thr / prefilled/1w_1thr` with
//!     `ideal/2thr / ideal/1thr`. (At `0us` it mostly measures the
//!     handlers' shared count and sum bouncing between the cores.)
//! - `pool_urgent_latency/<w>w_<w>thr/batch<b>`: a backlog of Normal
//!   messages (handler ~10 µs) is being worked through when one Urgent
//!   message is sent; the time is from just before its `send_with` to the
//!   start of its handler. It is sent by the handler of a random Normal
//!   message (after every worker has been through a batch), at a random
//!   point of its spin, so it lands at a random point of a batch while every
//!   worker is busy. 1 and 2 workers, `batch_size` 1, 16 (the default) and
//!   64: the Urgent message waits for the rest of the batch of the first
//!   worker to run out, at most one batch of handlers (about half a batch on
//!   average for one worker; less for two, as far as their batches are out
//!   of step). The main thread only sleeps and polls. Criterion keeps per-sample means; the percentiles and the
//!   maximum over every send are printed after each benchmark, beside the
//!   one-batch bound (`batch` x 10 µs).
//! - `pool_overhead_0us/<feed>/<consumer>`: the same `n` messages and ~0
//!   handler through a bare consumer thread calling the handler on every
//!   message it receives with `recv` (`bare_recv_1c`) or `recv_batch` of 16
//!   (`bare_batch16_1c`), against a pool of 1 (`pool_1w`) and 2 (`pool_2w`)
//!   workers; `live` and `prefilled` as above.
//!
//! Each iteration builds a fresh channel and a fresh pool (or consumer
//! thread): a pool is only done once its channel is closed, and a
//! pre-filled run needs a new channel anyway. The clock starts when the
//! producer thread starts sending (`live`: the pool is already built and its
//! workers parked) or when the first handler starts (`prefilled`, `ideal`:
//! building the pool is not counted; it costs about 0.4 ms per worker here,
//! mostly zeroing the worker's latency histograms, which would be 25% of a
//! 20-worker run), and stops when the handler of the last message is done
//! (the handler that brings the count to `n` reads the clock). Every handler
//! adds its message's sequence number to a shared sum and count; after each
//! iteration the count and sum must be those of `0..n` and the pool's
//! report must say `n` taken, `n` acked and nothing else, so a lost or
//! duplicated message fails the benchmark.
//!
//! The machine this was written for has 2 cores and is shared: compare rows
//! of one run (ratios), not runs.
//!
//! ```text
//! cargo bench --bench pool
//! cargo bench --bench pool -- pool_scaling_1us
//! cargo bench --bench pool -- 'pool_scaling_1us/prefilled/(1|2)w_'
//! ```

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode,
    Throughput,
};
use lanebus::pool::{Delivery, Outcome, Shutdown, ShutdownReport, WorkerPool};
use lanebus::{ChannelBuilder, Priority, Receiver};

/// The capacity of the live feed's channel (of every lane).
const CAP: usize = 1024;
/// Worker counts of the scaling groups.
const WORKERS: [usize; 5] = [1, 2, 4, 8, 20];
/// Normal messages queued ahead of the Urgent one: 40 ms of 10 µs handlers
/// for one worker, far more than the pool gets through before the Urgent
/// message is sent.
const BACKLOG: u64 = 4000;
/// The Urgent message's payload (every other payload is a sequence number).
const URGENT: u64 = u64::MAX;

/// A handler cost: its name in ids, its nominal time, and the messages per
/// iteration (about 50 ms of handler work for one worker).
struct Cost {
    name: &'static str,
    nanos: u64,
    msgs: u64,
}

const COSTS: [Cost; 3] = [
    Cost {
        name: "0us",
        nanos: 0,
        msgs: 200_000,
    },
    Cost {
        name: "1us",
        nanos: 1_000,
        msgs: 40_000,
    },
    Cost {
        name: "10us",
        nanos: 10_000,
        msgs: 5_000,
    },
];

/// CPU work: `iters` dependent xorshift steps.
#[inline(never)]
fn spin(iters: u64) -> u64 {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..black_box(iters) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    black_box(x)
}

/// Nanoseconds per `spin` step on this machine: the fastest of several
/// timed runs (a shared machine only ever makes a run slower).
fn ns_per_spin() -> f64 {
    *NS_PER_SPIN.get_or_init(|| {
        const STEPS: u64 = 2_000_000;
        spin(STEPS);
        let best = (0..15)
            .map(|_| {
                let start = Instant::now();
                spin(STEPS);
                start.elapsed()
            })
            .min()
            .expect("runs");
        let ns = best.as_nanos() as f64 / STEPS as f64;
        println!("calibration: {ns:.4} ns per spin step (fastest of 15 runs of {STEPS} steps)");
        for cost in &COSTS[1..] {
            let steps = spins_of(cost.nanos, ns);
            // The median of 21 timings of 100 calls each.
            let mut per_call: Vec<f64> = (0..21)
                .map(|_| {
                    let start = Instant::now();
                    for _ in 0..100 {
                        spin(steps);
                    }
                    start.elapsed().as_nanos() as f64 / 100.0
                })
                .collect();
            per_call.sort_by(f64::total_cmp);
            println!(
                "calibration: {} handler = {steps} spin steps, measured {:.3} us per call (median of 21x100)",
                cost.name,
                per_call[10] / 1e3
            );
        }
        ns
    })
}

static NS_PER_SPIN: OnceLock<f64> = OnceLock::new();

fn spins_of(nanos: u64, ns_per_spin: f64) -> u64 {
    (nanos as f64 / ns_per_spin).round() as u64
}

/// What the handlers of one iteration did, on its own cache line.
#[repr(align(128))]
struct Progress {
    count: AtomicU64,
    sum: AtomicU64,
    /// Messages in the iteration.
    target: u64,
    /// Spin steps per message.
    spins: u64,
    /// When the first handler call started.
    begin: OnceLock<Instant>,
    /// When the handler of the `target`-th message returned.
    end: OnceLock<Instant>,
}

impl Progress {
    fn new(target: u64, spins: u64) -> Arc<Self> {
        Arc::new(Self {
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            target,
            spins,
            begin: OnceLock::new(),
            end: OnceLock::new(),
        })
    }

    /// The handler's work: spin, tally, stop the clock after the last one.
    #[inline]
    fn handle(&self, seq: u64) {
        if self.begin.get().is_none() {
            let _ = self.begin.set(Instant::now());
        }
        spin(self.spins);
        self.sum.fetch_add(seq, Ordering::Relaxed);
        if self.count.fetch_add(1, Ordering::Relaxed) + 1 == self.target {
            let _ = self.end.set(Instant::now());
        }
    }

    /// Panics unless `0..target` were each handled exactly once (count and
    /// sum); returns when the first one started and when the last one was
    /// done.
    fn check(&self, what: &str) -> (Instant, Instant) {
        let n = self.target;
        assert_eq!(
            self.count.load(Ordering::Relaxed),
            n,
            "{what}: handler calls"
        );
        assert_eq!(
            self.sum.load(Ordering::Relaxed),
            n * n.saturating_sub(1) / 2,
            "{what}: messages lost or duplicated"
        );
        (
            *self.begin.get().expect("the first handler read the clock"),
            *self.end.get().expect("the last handler read the clock"),
        )
    }
}

/// Panics unless the pool took and acked exactly `n` messages and nothing
/// else happened to any of them.
fn check_report(report: &ShutdownReport<u64>, n: u64, what: &str) {
    assert!(
        report.taken == n
            && report.acked == n
            && report.dead_lettered == 0
            && report.retries == 0
            && report.panics == 0
            && report.unprocessed.is_empty()
            && report.dead_letters_unsent.is_empty()
            && !report.timed_out
            && report.is_consistent(),
        "{what}: expected {n} taken and acked, got {report:?}"
    );
}

/// Where an iteration's messages come from.
#[derive(Clone, Copy)]
enum Feed {
    /// A producer thread sends `0..n` into `bounded(CAP)` while the
    /// consumer runs.
    Live,
    /// `0..n` are queued (Normal lane of capacity `n`) before the consumer
    /// starts.
    Prefilled,
}

impl Feed {
    fn name(self) -> &'static str {
        match self {
            Feed::Live => "live",
            Feed::Prefilled => "prefilled",
        }
    }

    /// Threads for `consumers` consumer threads.
    fn threads(self, consumers: usize) -> usize {
        match self {
            Feed::Live => consumers + 1,
            Feed::Prefilled => consumers,
        }
    }

    /// Feeds `0..n` to the consumer that `start` starts on the receiver and
    /// returns what `start` returned and, for a live feed, when the producer
    /// started (a pre-filled run's clock starts with its first handler). The
    /// sender is gone when this returns: the consumer ends once it has
    /// drained the channel.
    fn run<C>(self, n: u64, start: impl FnOnce(Receiver<u64>) -> C) -> (Option<Instant>, C) {
        match self {
            Feed::Live => {
                let (tx, rx) = lanebus::bounded::<u64>(CAP);
                let consumer = start(rx);
                let producer = thread::spawn(move || {
                    let start = Instant::now();
                    for seq in 0..n {
                        tx.send(seq).expect("the consumer is gone");
                    }
                    start
                });
                (Some(producer.join().expect("producer panicked")), consumer)
            }
            Feed::Prefilled => {
                let (tx, rx) = ChannelBuilder::new()
                    .capacity(1)
                    .lane_capacity(Priority::Normal, n as usize)
                    .build::<u64>();
                let mut all: Vec<u64> = (0..n).collect();
                tx.send_batch(&mut all).expect("the channel is open");
                assert!(all.is_empty(), "the channel holds every message");
                drop(tx);
                (None, start(rx))
            }
        }
    }
}

/// One iteration through a pool of `workers`; returns the time until the
/// last message was handled.
fn run_pool(feed: Feed, workers: usize, n: u64, spins: u64) -> Duration {
    let progress = Progress::new(n, spins);
    let handler = {
        let progress = progress.clone();
        move |job: &Delivery<u64>| {
            progress.handle(*job.payload());
            Outcome::Ack
        }
    };
    let (start, pool) = feed.run(n, |rx| {
        WorkerPool::builder().workers(workers).build(rx, handler)
    });
    let report = pool.join();
    let what = format!("{} pool of {workers}", feed.name());
    check_report(&report, n, &what);
    let (begin, end) = progress.check(&what);
    end - start.unwrap_or(begin)
}

/// Messages an `ideal` thread claims at a time (the pool's default batch).
const IDEAL_CHUNK: u64 = 16;

/// One iteration without a channel or a pool: `threads` threads claim
/// chunks of `0..n` from a shared counter and run the same handler on each
/// message. What the machine gives right now, for the ratios of the pool
/// rows beside it. The clock runs from the first handler call to the end
/// of the last, as for a pre-filled pool.
fn run_ideal(threads: usize, n: u64, spins: u64) -> Duration {
    let progress = Progress::new(n, spins);
    let next = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (progress, next) = (progress.clone(), next.clone());
            thread::spawn(move || loop {
                let lo = next.fetch_add(IDEAL_CHUNK, Ordering::Relaxed);
                if lo >= n {
                    break;
                }
                for seq in lo..n.min(lo + IDEAL_CHUNK) {
                    progress.handle(seq);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("ideal thread panicked");
    }
    let (begin, end) = progress.check("ideal");
    end - begin
}

/// How the bare consumer receives.
#[derive(Clone, Copy)]
enum Bare {
    Recv,
    Batch(usize),
}

/// One iteration through a bare consumer thread that calls the handler on
/// every message it receives.
fn run_bare(feed: Feed, bare: Bare, n: u64) -> Duration {
    let progress = Progress::new(n, 0);
    let consumer = progress.clone();
    let (start, handle) = feed.run(n, move |rx| {
        thread::spawn(move || match bare {
            Bare::Recv => {
                while let Ok(seq) = rx.recv() {
                    consumer.handle(seq);
                }
            }
            Bare::Batch(batch) => {
                let mut buf = Vec::with_capacity(batch);
                while rx.recv_batch(&mut buf, batch).is_ok() {
                    for seq in buf.drain(..) {
                        consumer.handle(seq);
                    }
                }
            }
        })
    });
    handle.join().expect("consumer panicked");
    let (begin, end) = progress.check("bare consumer");
    end - start.unwrap_or(begin)
}

/// A pseudo-random number (splitmix64 of a global counter): where in the
/// backlog the Urgent message is sent.
fn random() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut z = NEXT
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One Urgent message sent while `workers` work through a Normal backlog
/// (handler `spins`) in batches of `batch`: the time from its send to the
/// start of its handler.
///
/// The Urgent message is sent by the handler of a randomly chosen Normal
/// message, at a random point of its spin, once every worker has been
/// through a batch: so it arrives at a random point of a random batch, on a
/// machine whose cores are all busy with handlers (a sender on a third
/// thread would have to wait for a core first).
fn urgent_latency(workers: usize, batch: usize, spins: u64) -> Duration {
    let (tx, rx) = ChannelBuilder::new()
        .capacity(1)
        .lane_capacity(Priority::Normal, BACKLOG as usize)
        .build::<u64>();
    let mut backlog: Vec<u64> = (0..BACKLOG).collect();
    tx.send_batch(&mut backlog).expect("the channel is open");
    // Stays here: what the pool never took is drained from it below.
    let left = rx.clone();
    let probe = rx.clone();
    let span = (workers * batch) as u64;
    let trigger = span + random() % span;
    let split = random() % (spins + 1);
    assert!(
        trigger + span < BACKLOG,
        "BACKLOG too small for batch {batch}"
    );
    // The handler spins itself (split around the send on the trigger).
    let normal = Progress::new(BACKLOG, 0);
    // When the Urgent message was sent, and when its handler started (with
    // the backlog still in the channel then).
    let sent: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let started: Arc<OnceLock<(Instant, usize)>> = Arc::new(OnceLock::new());
    let handler = {
        let (normal, sent, started) = (normal.clone(), sent.clone(), started.clone());
        move |job: &Delivery<u64>| {
            let seq = *job.payload();
            if seq == URGENT {
                let now = Instant::now();
                assert!(
                    started.set((now, probe.len())).is_ok(),
                    "Urgent handled twice"
                );
            } else if seq == trigger {
                spin(split);
                let now = Instant::now();
                tx.send_with(Priority::Urgent, URGENT)
                    .expect("the channel is open");
                let _ = sent.set(now);
                spin(spins - split);
                normal.handle(seq);
            } else {
                spin(spins);
                normal.handle(seq);
            }
            Outcome::Ack
        }
    };
    let pool = WorkerPool::builder()
        .workers(workers)
        .batch_size(batch)
        .build(rx, handler);
    let (started, depth) = loop {
        if let Some(&done) = started.get() {
            break done;
        }
        thread::sleep(Duration::from_micros(100));
    };
    let report = pool.shutdown(Shutdown::Immediate);
    assert!(
        depth > 0,
        "the backlog ran out before the Urgent message was handled: raise BACKLOG"
    );
    // Every message is accounted for exactly once: handled, returned
    // unprocessed, or still in the channel.
    let handled = normal.count.load(Ordering::Relaxed);
    let mut seen_sum = normal.sum.load(Ordering::Relaxed);
    let mut seen = handled;
    for u in &report.unprocessed {
        seen += 1;
        seen_sum += u.payload;
    }
    while let Ok(seq) = left.try_recv() {
        seen += 1;
        seen_sum += seq;
    }
    assert!(
        report.is_consistent() && report.acked == handled + 1,
        "urgent {workers}w batch{batch}: {report:?}, {handled} handled"
    );
    assert_eq!(
        (seen, seen_sum),
        (BACKLOG, BACKLOG * (BACKLOG - 1) / 2),
        "urgent {workers}w batch{batch}: messages lost or duplicated"
    );
    let latency = started - *sent.get().expect("sent before handled");
    LATENCIES.lock().expect("not poisoned").push(latency);
    latency
}

/// Every Urgent latency of the benchmark running now, for the percentiles
/// printed after it (criterion only keeps per-sample means).
static LATENCIES: Mutex<Vec<Duration>> = Mutex::new(Vec::new());

/// Prints the percentiles of [`LATENCIES`] and empties it.
fn print_latencies(id: &str, bound: Duration) {
    let mut all = core::mem::take(&mut *LATENCIES.lock().expect("not poisoned"));
    if all.is_empty() {
        return;
    }
    all.sort();
    let at = |q: f64| all[((all.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    println!(
        "{id}: {} sends: p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, max {:.1} us (one batch of handlers: {:.0} us)",
        all.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0),
        bound.as_secs_f64() * 1e6
    );
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    // An iteration takes milliseconds: keep the iteration count per sample
    // even instead of growing it linearly.
    g.sampling_mode(SamplingMode::Flat);
    g
}

fn scaling(c: &mut Criterion) {
    let ns = ns_per_spin();
    for cost in &COSTS {
        let spins = spins_of(cost.nanos, ns);
        let mut g = group(c, &format!("pool_scaling_{}", cost.name));
        g.throughput(Throughput::Elements(cost.msgs));
        for threads in [1, 2] {
            let id = BenchmarkId::new("ideal", format!("{threads}thr"));
            g.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| run_ideal(threads, cost.msgs, spins))
                        .sum()
                })
            });
        }
        for feed in [Feed::Live, Feed::Prefilled] {
            for workers in WORKERS {
                let id = BenchmarkId::new(
                    feed.name(),
                    format!("{workers}w_{}thr", feed.threads(workers)),
                );
                g.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        (0..iters)
                            .map(|_| run_pool(feed, workers, cost.msgs, spins))
                            .sum()
                    })
                });
            }
        }
        g.finish();
    }
}

fn urgent(c: &mut Criterion) {
    let spins = spins_of(10_000, ns_per_spin());
    let mut g = group(c, "pool_urgent_latency");
    for workers in [1, 2] {
        for batch in [1, 16, 64] {
            let id = BenchmarkId::new(format!("{workers}w_{workers}thr"), format!("batch{batch}"));
            LATENCIES.lock().expect("not poisoned").clear();
            g.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| urgent_latency(workers, batch, spins))
                        .sum()
                })
            });
            print_latencies(
                &format!("pool_urgent_latency/{workers}w_{workers}thr/batch{batch}"),
                Duration::from_nanos(10_000 * batch as u64),
            );
        }
    }
    g.finish();
}

fn overhead(c: &mut Criterion) {
    let n = COSTS[0].msgs;
    let mut g = group(c, "pool_overhead_0us");
    g.throughput(Throughput::Elements(n));
    for feed in [Feed::Live, Feed::Prefilled] {
        let bare = [
            ("bare_recv_1c", Bare::Recv),
            ("bare_batch16_1c", Bare::Batch(16)),
        ];
        for (name, bare) in bare {
            g.bench_function(BenchmarkId::new(feed.name(), name), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| run_bare(feed, bare, n)).sum())
            });
        }
        for workers in [1, 2] {
            let id = BenchmarkId::new(feed.name(), format!("pool_{workers}w"));
            g.bench_function(id, |b| {
                b.iter_custom(|iters| (0..iters).map(|_| run_pool(feed, workers, n, 0)).sum())
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    // Sized so the whole file takes about 4 minutes on 2 cores;
    // `--warm-up-time`, `--measurement-time` and `--sample-size` override.
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = scaling, urgent, overhead
}
criterion_main!(benches);
