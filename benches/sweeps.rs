//! Two sweeps against peers: SPSC throughput by batch size (lanebus's
//! `send_batch`/`recv_batch` against the `disruptor` crate's batch
//! publication), and fan-out from one publisher to 1, 2, 4 and 8
//! subscribers (the lanebus bus, one lanebus or crossbeam channel per
//! subscriber, `tokio::sync::broadcast` and a disruptor with one handler per
//! subscriber).
//!
//! Every id names its thread counts: `1p1c_2thr` is one producer and one
//! consumer thread, `1p4s_5thr` one publisher and 4 subscriber threads. On
//! the 2-core machine this was written for, every fan-out from 2
//! subscribers on (3 threads and more) is oversubscribed on purpose.
//!
//! - `batch_sweep/<peer>/<b>/1p1c_2thr`: `u64` sequence numbers `0..n`
//!   (n = 1,000,000 per iteration) from one producer thread to one consumer
//!   thread, moved `b` at a time, `b` in 1, 4, 16, 64, 256 and 1024.
//!   - `lanebus`: `lanebus::bounded(1024)`; `send_batch` of `b` messages
//!     (every batch goes out whole, waiting for room as needed) and
//!     `recv_batch` of up to `b` (it waits for one message, then takes what
//!     is ready).
//!   - `disruptor`: the `disruptor` crate, one producer and one handler
//!     (`build_single_producer`, its single-consumer barrier), a ring of
//!     1024 `u64` slots. The producer claims `b` slots at a time with
//!     `try_batch_publish` (`try_publish` for `b` = 1) and writes the
//!     numbers into them; the handler thread, which the disruptor starts
//!     itself, tallies every event as it is called on it. `b` only sets
//!     the producer's batches: the handler is always called on everything
//!     published so far (the `end_of_batch` flag marks the last one), where
//!     lanebus's consumer takes at most `b` per `recv_batch`.
//!   - `crossbeam/1`, `kanal/1`: `bounded(1024)` with one `send`/`recv` per
//!     message (neither has a batch API): reference rows.
//! - `fanout/<peer>/<k>s/1p<k>s_<k+1>thr`: one publisher thread publishes n
//!   = 50,000 messages, each a fresh 64-byte `bytes::Bytes` whose first 8
//!   bytes are its sequence number (built in the timed loop, the same way
//!   for every peer), to k = 1, 2, 4 and 8 subscriber threads; each must
//!   receive all n, in order. Throughput counts messages published: the
//!   subscribers receive k times as many (deliveries = k x elements).
//!   - `lanebus_bus`: a [`Bus`] with one topic and k `subscribe`rs;
//!     `Bus::publish(topic, Message::new(payload))` (looks the topic up on
//!     every publish) and `Subscription::recv`.
//!   - `lanebus_publisher`: the same bus through a [`Publisher`] handle
//!     (the topic's subscriber list cached: the bus's fast path).
//!   - `lanebus_n`, `crossbeam_n`: k `bounded(1024)` channels, one per
//!     subscriber; the publisher sends each message to every channel in
//!     turn (a refcount bump per channel, the original to the last one).
//!   - `tokio_broadcast`: one `tokio::sync::broadcast::channel(1024)`,
//!     subscribers in `blocking_recv`. A broadcast channel never makes its
//!     sender wait: a subscriber that falls 1024 behind loses messages
//!     (`Lagged`). To compare like with like (every other peer is lossless
//!     and makes the publisher wait for the slowest subscriber), each
//!     subscriber stores how far it has read in its own atomic, and the
//!     publisher, before sending message `i`, waits (spinning briefly, then
//!     `yield_now`) until every subscriber has read past `i - 1024`, so it
//!     never overwrites an unread slot. A `Lagged` would still be counted
//!     and fails the benchmark.
//!   - `disruptor`: one producer, k handlers in parallel on the same ring
//!     of 1024 `Bytes` slots (`with_multi_consumer`, the crate's fan-out;
//!     the multi-consumer barrier is used for k = 1 too); the producer
//!     replaces the payload in a slot with `try_publish`.
//!
//! # Waiting: lanebus parks, the disruptor does not
//!
//! lanebus, crossbeam, kanal and tokio's `blocking_recv` park a thread that
//! has to wait (most after spinning or yielding a little) and wake it with
//! a system call. The `disruptor` crate never parks: its built-in
//! strategies are `BusySpin`, `BusySpinWithSpinLoopHint` and `Sleep`, and a
//! producer facing a full ring spins in `publish`/`batch_publish` (not even
//! a spin-loop hint). Here it runs with `Yield`, a
//! strategy of this file (the crate has none): a waiting handler calls
//! `thread::yield_now` between looks at the ring, and the producer calls
//! `try_*publish` and yields when the ring is full. Pure `BusySpin` was not
//! used because from 3 threads on 2 cores a spinning thread holds its core
//! for a whole time slice while the thread it waits for cannot run. With
//! two threads on two cores (`batch_sweep`), a thread that never sleeps
//! pays no wake-up system calls and never waits to be scheduled: that is
//! unfair to lanebus (and the peers that park), at the price of both cores
//! at 100% even when idle. Oversubscribed (`fanout` from 2 subscribers),
//! idle handlers still run in every time slice the scheduler gives them,
//! which is unfair to the disruptor. The tokio publisher's credit wait
//! (above) also yields instead of parking.
//!
//! # Clock and checks
//!
//! Each iteration builds a fresh channel (bus, ring) and fresh threads.
//! The producer and every consumer meet at a `Barrier` (a disruptor handler
//! thread, started by the crate, waits at it in the handler's state
//! initialiser, before its first look at the ring); each reads the clock
//! when it leaves the barrier and when it is done (a consumer: when it has
//! its last message, or its channel reports the end), and the time of the
//! iteration runs from the first start to the last end. Shutting down (the
//! disruptor's join of its handler threads) is not timed. Every consumer
//! tallies the sequence numbers it got (count, sum and sum of squares, see
//! `benches/common`); fan-out subscribers also count every message that is
//! not the one after the previous. After each iteration every tally must be
//! exactly `0..n` with nothing out of order and nothing lagged, or the
//! benchmark panics. Consumers never panic themselves: a disruptor or tokio
//! publisher would wait for them for ever.
//!
//! The machine this was written for has 2 cores and is shared: compare rows
//! of one run (ratios), not runs. Within a batch size or a subscriber
//! count, every peer runs one after the other.
//!
//! ```text
//! cargo bench --bench sweeps
//! cargo bench --bench sweeps -- batch_sweep
//! cargo bench --bench sweeps -- 'fanout/.*/8s/'
//! LANEBUS_BENCH_QUICK=1 cargo bench --bench sweeps   # tiny counts, seconds
//! ```
//!
//! A full run (38 benchmarks) takes about 3 minutes on 2 cores (10 samples,
//! 1 s warm-up, 3 s measurement each). `LANEBUS_BENCH_QUICK=1` moves 20,000
//! (batch) and 2,000 (fan-out) messages per iteration with the shortest
//! criterion times and 1,000 bootstrap resamples, in a few seconds: the
//! numbers mean nothing, it checks that every case runs and delivers
//! (`-- --test` runs every case once at full size).

use std::hint;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode,
    Throughput,
};
use disruptor::wait_strategies::WaitStrategy;
use disruptor::{Producer, Sequence};
use lanebus::{Bus, Message};
use tokio::sync::broadcast;

// Only the tallies, the batch loops and two peers are used here.
#[allow(dead_code)]
mod common;
use common::{consume_batches, produce_batches, Crossbeam, Flavor, Kanal, Tally, CAP};

/// Batch sizes of `batch_sweep`.
const BATCHES: [usize; 6] = [1, 4, 16, 64, 256, 1024];
/// Subscriber counts of `fanout`.
const SUBSCRIBERS: [usize; 4] = [1, 2, 4, 8];
/// Bytes in a fan-out payload; the first 8 are its sequence number.
const PAYLOAD: usize = 64;
/// The topic of the fan-out bus.
const TOPIC: &str = "bench.fanout";

/// `LANEBUS_BENCH_QUICK=1`: tiny counts and the shortest criterion times.
fn quick() -> bool {
    std::env::var("LANEBUS_BENCH_QUICK").is_ok_and(|v| v == "1")
}

/// Messages per iteration of `batch_sweep`.
fn batch_msgs() -> u64 {
    if quick() {
        20_000
    } else {
        1_000_000
    }
}

/// Messages published per iteration of `fanout`.
fn fanout_msgs() -> u64 {
    if quick() {
        2_000
    } else {
        50_000
    }
}

// ----- timing -----

/// When a worker left the barrier and when it was done.
type Span = (Instant, Instant);

/// A thread that waits at `barrier`, then runs `work` and times it.
fn spawn_timed<R: Send + 'static>(
    barrier: &Arc<Barrier>,
    work: impl FnOnce() -> R + Send + 'static,
) -> thread::JoinHandle<(R, Span)> {
    let barrier = barrier.clone();
    thread::spawn(move || {
        barrier.wait();
        let start = Instant::now();
        let out = work();
        (out, (start, Instant::now()))
    })
}

/// From the first start to the last end.
fn wall(spans: impl IntoIterator<Item = Span>) -> Duration {
    let (first, last) = spans
        .into_iter()
        .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
        .expect("a worker");
    last - first
}

/// Runs `producer` and every consumer on its own thread, all starting at
/// one barrier. Returns the time from the first start to the last end and
/// what each consumer returned.
fn run_workers<P, C, R>(producer: P, consumers: Vec<C>) -> (Duration, Vec<R>)
where
    P: FnOnce() + Send + 'static,
    C: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(1 + consumers.len()));
    let consumers: Vec<_> = consumers
        .into_iter()
        .map(|c| spawn_timed(&barrier, c))
        .collect();
    let producer = spawn_timed(&barrier, producer);
    let mut spans = vec![producer.join().expect("producer panicked").1];
    let mut results = Vec::with_capacity(consumers.len());
    for consumer in consumers {
        let (result, span) = consumer.join().expect("consumer panicked");
        results.push(result);
        spans.push(span);
    }
    (wall(spans), results)
}

// ----- what a consumer saw -----

/// What one consumer saw: the tally of the sequence numbers, how many did
/// not follow the one before, and how many a broadcast receiver lost.
#[derive(Clone, Copy, Default)]
struct Seen {
    tally: Tally,
    next: u64,
    out_of_order: u64,
    lagged: u64,
}

impl Seen {
    #[inline]
    fn add(&mut self, seq: u64) {
        if seq != self.next {
            self.out_of_order += 1;
        }
        self.next = seq.wrapping_add(1);
        self.tally.add(seq);
    }

    /// Panics unless this is `0..n`, exactly once each, in order.
    fn check(&self, n: u64, what: &str) {
        assert_eq!(
            self.tally,
            Tally::expected(n),
            "{what}: messages lost or duplicated"
        );
        assert_eq!(self.out_of_order, 0, "{what}: messages out of order");
        assert_eq!(self.lagged, 0, "{what}: broadcast receiver lagged");
    }
}

/// A fan-out payload: `PAYLOAD` bytes starting with `seq`.
#[inline]
fn payload(seq: u64) -> Bytes {
    let mut bytes = [0u8; PAYLOAD];
    bytes[..8].copy_from_slice(&seq.to_le_bytes());
    Bytes::copy_from_slice(&bytes)
}

/// The sequence number of a payload; `u64::MAX` (out of order, so the
/// check fails later) if it is not `PAYLOAD` bytes long. Never panics.
#[inline]
fn seq_of(payload: &[u8]) -> u64 {
    match payload.first_chunk::<8>() {
        Some(head) if payload.len() == PAYLOAD => u64::from_le_bytes(*head),
        _ => u64::MAX,
    }
}

// ----- the disruptor -----

/// Wait strategy for disruptor handlers: yield the core between looks at
/// the ring (the crate only has busy-spinning and sleeping ones).
#[derive(Clone, Copy)]
struct Yield;

impl WaitStrategy for Yield {
    #[inline]
    fn wait_for(&self, _: Sequence) {
        thread::yield_now();
    }
}

/// The state of one disruptor handler, created on its thread (after the
/// barrier) and dropped when the thread ends: it hands its tally and span
/// to the benchmark then.
struct Handler {
    seen: Seen,
    n: u64,
    start: Instant,
    /// When the `n`-th event was handled.
    end: Option<Instant>,
    report: Arc<Mutex<Vec<(Seen, Span)>>>,
}

impl Handler {
    /// The state initialiser: meets the producer at `barrier`.
    fn starter(
        barrier: &Arc<Barrier>,
        report: &Arc<Mutex<Vec<(Seen, Span)>>>,
        n: u64,
    ) -> impl FnOnce() -> Handler + Send + 'static {
        let barrier = barrier.clone();
        let report = report.clone();
        move || {
            barrier.wait();
            Handler {
                seen: Seen::default(),
                n,
                start: Instant::now(),
                end: None,
                report,
            }
        }
    }

    #[inline]
    fn add(&mut self, seq: u64) {
        self.seen.add(seq);
        if self.seen.tally.count == self.n {
            self.end = Some(Instant::now());
        }
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        let end = self.end.unwrap_or_else(Instant::now);
        self.report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((self.seen, (self.start, end)));
    }
}

/// Publishes one event, yielding while the ring is full.
#[inline]
fn publish_one<E, P: Producer<E>>(producer: &mut P, mut write: impl FnMut(&mut E)) {
    while producer.try_publish(&mut write).is_err() {
        thread::yield_now();
    }
}

/// Checks the handlers' reports and returns the iteration's time.
fn disruptor_result(
    report: &Mutex<Vec<(Seen, Span)>>,
    producer: Span,
    handlers: usize,
    n: u64,
    what: &str,
) -> Duration {
    let report = std::mem::take(&mut *report.lock().unwrap_or_else(|e| e.into_inner()));
    assert_eq!(report.len(), handlers, "{what}: a handler did not report");
    for (i, (seen, _)) in report.iter().enumerate() {
        seen.check(n, &format!("{what}, handler {i} of {handlers}"));
    }
    wall(report.iter().map(|r| r.1).chain([producer]))
}

// ----- batch_sweep -----

fn run_lanebus_batch(n: u64, batch: usize) -> Duration {
    let (tx, rx) = lanebus::bounded::<u64>(CAP);
    let (elapsed, tallies) = run_workers(
        move || produce_batches(&tx, 0..n, batch),
        vec![move || consume_batches(&rx, batch)],
    );
    assert_eq!(
        tallies[0],
        Tally::expected(n),
        "lanebus/{batch}: lost or duplicated"
    );
    elapsed
}

fn run_flavor<F: Flavor<u64>>(n: u64) -> Duration {
    let (tx, rx) = F::channel();
    let (elapsed, tallies) =
        run_workers(move || F::produce(&tx, 0..n), vec![move || F::consume(&rx)]);
    assert_eq!(
        tallies[0],
        Tally::expected(n),
        "{}: lost or duplicated",
        F::NAME
    );
    elapsed
}

fn run_disruptor_batch(n: u64, batch: usize) -> Duration {
    let barrier = Arc::new(Barrier::new(2));
    let report = Arc::new(Mutex::new(Vec::new()));
    let producer = disruptor::build_single_producer(CAP, || 0u64, Yield)
        .handle_events_and_state_with(
            |h: &mut Handler, seq: &u64, _: Sequence, _end_of_batch: bool| h.add(*seq),
            Handler::starter(&barrier, &report, n),
        )
        .build();
    let producer = spawn_timed(&barrier, move || {
        let mut producer = producer;
        let mut next = 0;
        while next < n {
            let len = batch.min((n - next) as usize);
            if len == 1 {
                publish_one(&mut producer, |slot| *slot = next);
            } else {
                while producer
                    .try_batch_publish(len, |slots| {
                        for (slot, seq) in slots.zip(next..) {
                            *slot = seq;
                        }
                    })
                    .is_err()
                {
                    thread::yield_now();
                }
            }
            next += len as u64;
        }
        // Dropped (shut down, handler joined) after the clock stops.
        producer
    });
    let (producer, span) = producer.join().expect("producer panicked");
    drop(producer);
    disruptor_result(&report, span, 1, n, &format!("disruptor/{batch}"))
}

// ----- fanout -----

/// The fan-out peers, in the order they run.
#[derive(Clone, Copy)]
enum Fanout {
    LanebusBus,
    LanebusPublisher,
    LanebusN,
    CrossbeamN,
    TokioBroadcast,
    Disruptor,
}

impl Fanout {
    const ALL: [Fanout; 6] = [
        Fanout::LanebusBus,
        Fanout::LanebusPublisher,
        Fanout::LanebusN,
        Fanout::CrossbeamN,
        Fanout::TokioBroadcast,
        Fanout::Disruptor,
    ];

    fn name(self) -> &'static str {
        match self {
            Fanout::LanebusBus => "lanebus_bus",
            Fanout::LanebusPublisher => "lanebus_publisher",
            Fanout::LanebusN => "lanebus_n",
            Fanout::CrossbeamN => "crossbeam_n",
            Fanout::TokioBroadcast => "tokio_broadcast",
            Fanout::Disruptor => "disruptor",
        }
    }

    fn run(self, k: usize, n: u64) -> Duration {
        let (elapsed, seen) = match self {
            Fanout::LanebusBus => fanout_bus(k, n, false),
            Fanout::LanebusPublisher => fanout_bus(k, n, true),
            Fanout::LanebusN => fanout_channels(
                k,
                n,
                || lanebus::bounded::<Bytes>(CAP),
                |tx, p| tx.send(p).is_ok(),
                |rx| rx.recv().ok(),
            ),
            Fanout::CrossbeamN => fanout_channels(
                k,
                n,
                || crossbeam_channel::bounded::<Bytes>(CAP),
                |tx, p| tx.send(p).is_ok(),
                |rx| rx.recv().ok(),
            ),
            Fanout::TokioBroadcast => fanout_tokio(k, n),
            Fanout::Disruptor => return fanout_disruptor(k, n),
        };
        for (i, seen) in seen.iter().enumerate() {
            seen.check(n, &format!("{}, subscriber {i} of {k}", self.name()));
        }
        elapsed
    }
}

fn fanout_bus(k: usize, n: u64, publisher: bool) -> (Duration, Vec<Seen>) {
    let bus = Bus::builder().capacity(CAP).build();
    let subs: Vec<_> = (0..k)
        .map(|_| bus.subscribe(TOPIC).expect("valid topic"))
        .collect();
    let handle = publisher.then(|| bus.publisher(TOPIC).expect("valid topic"));
    let producer = move || {
        for seq in 0..n {
            let message = Message::new(payload(seq));
            let reached = match &handle {
                Some(handle) => handle.publish(message),
                None => bus.publish(TOPIC, message),
            }
            .expect("publish failed");
            assert_eq!(reached, k, "message {seq} missed a subscriber");
        }
        // Subscribers drain what is queued, then see the end.
        bus.close();
    };
    let consumers = subs
        .into_iter()
        .map(|sub| {
            move || {
                let mut seen = Seen::default();
                while let Ok(envelope) = sub.recv() {
                    seen.add(seq_of(envelope.payload()));
                }
                seen
            }
        })
        .collect();
    run_workers(producer, consumers)
}

/// One channel per subscriber: `send` is false once the receiver is gone,
/// `recv` `None` once the channel is closed and empty.
fn fanout_channels<Tx, Rx>(
    k: usize,
    n: u64,
    channel: impl Fn() -> (Tx, Rx),
    send: impl Fn(&Tx, Bytes) -> bool + Send + 'static,
    recv: impl Fn(&Rx) -> Option<Bytes> + Send + Copy + 'static,
) -> (Duration, Vec<Seen>)
where
    Tx: Send + 'static,
    Rx: Send + 'static,
{
    let (txs, rxs): (Vec<Tx>, Vec<Rx>) = (0..k).map(|_| channel()).unzip();
    let producer = move || {
        let (last, rest) = txs.split_last().expect("a subscriber");
        for seq in 0..n {
            let p = payload(seq);
            for tx in rest {
                assert!(send(tx, p.clone()), "a subscriber is gone");
            }
            assert!(send(last, p), "a subscriber is gone");
        }
        // Dropping `txs` closes every channel.
    };
    let consumers = rxs
        .into_iter()
        .map(|rx| {
            move || {
                let mut seen = Seen::default();
                while let Some(p) = recv(&rx) {
                    seen.add(seq_of(&p));
                }
                seen
            }
        })
        .collect();
    run_workers(producer, consumers)
}

/// How far a broadcast subscriber has read, on its own cache line.
#[repr(align(128))]
#[derive(Default)]
struct ReadTo(AtomicU64);

fn fanout_tokio(k: usize, n: u64) -> (Duration, Vec<Seen>) {
    let (tx, first) = broadcast::channel::<Bytes>(CAP);
    let mut rxs = vec![first];
    rxs.extend((1..k).map(|_| tx.subscribe()));
    let read_to: Arc<[ReadTo]> = (0..k).map(|_| ReadTo::default()).collect();
    let producer = {
        let read_to = read_to.clone();
        move || {
            // Every subscriber has read at least up to here.
            let mut floor = 0u64;
            for seq in 0..n {
                // Sending `seq` overwrites `seq - CAP`: wait until everyone
                // has read it.
                let mut spins = 0u32;
                while seq >= floor + CAP as u64 {
                    floor = read_to
                        .iter()
                        .map(|r| r.0.load(Ordering::Acquire))
                        .min()
                        .expect("a subscriber");
                    if spins < 64 {
                        spins += 1;
                        hint::spin_loop();
                    } else {
                        thread::yield_now();
                    }
                }
                if tx.send(payload(seq)).is_err() {
                    panic!("broadcast: every subscriber is gone");
                }
            }
            // Dropping `tx` ends every subscriber once it has read the rest.
        }
    };
    let consumers = rxs
        .into_iter()
        .zip(0..k)
        .map(|(mut rx, i)| {
            let read_to = read_to.clone();
            move || {
                let mut seen = Seen::default();
                loop {
                    match rx.blocking_recv() {
                        Ok(p) => {
                            let seq = seq_of(&p);
                            seen.add(seq);
                            // Pairs with the publisher's Acquire load: the
                            // slot is read before it may be overwritten.
                            read_to[i].0.store(seq.saturating_add(1), Ordering::Release);
                        }
                        Err(broadcast::error::RecvError::Lagged(lost)) => seen.lagged += lost,
                        Err(broadcast::error::RecvError::Closed) => break,
                    }
                }
                seen
            }
        })
        .collect();
    run_workers(producer, consumers)
}

fn fanout_disruptor(k: usize, n: u64) -> Duration {
    let barrier = Arc::new(Barrier::new(1 + k));
    let report = Arc::new(Mutex::new(Vec::new()));
    let mut builder =
        disruptor::build_single_producer(CAP, Bytes::new, Yield).with_multi_consumer();
    for _ in 0..k {
        builder = builder.handle_events_and_state_with(
            |h: &mut Handler, p: &Bytes, _: Sequence, _end_of_batch: bool| h.add(seq_of(p)),
            Handler::starter(&barrier, &report, n),
        );
    }
    let producer = builder.build();
    let producer = spawn_timed(&barrier, move || {
        let mut producer = producer;
        for seq in 0..n {
            let mut p = Some(payload(seq));
            publish_one(&mut producer, |slot: &mut Bytes| {
                if let Some(p) = p.take() {
                    *slot = p;
                }
            });
        }
        // Dropped (shut down, handlers joined) after the clock stops.
        producer
    });
    let (producer, span) = producer.join().expect("producer panicked");
    drop(producer);
    disruptor_result(&report, span, k, n, &format!("disruptor fan-out to {k}"))
}

// ----- groups -----

/// A group of threaded benchmarks, each iteration moving `n` messages.
fn threaded_group<'a>(c: &'a mut Criterion, name: &str, n: u64) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(n));
    // An iteration takes milliseconds: keep the iteration count per sample
    // even instead of growing it linearly.
    g.sampling_mode(SamplingMode::Flat);
    g
}

/// Benchmarks `run` with a fresh run of `n` messages per iteration.
fn bench(g: &mut BenchmarkGroup<'_, WallTime>, id: BenchmarkId, run: impl Fn() -> Duration) {
    g.bench_function(id, |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run()).sum())
    });
}

fn batch_sweep(c: &mut Criterion) {
    let n = batch_msgs();
    let mut g = threaded_group(c, "batch_sweep", n);
    for batch in BATCHES {
        let param = format!("{batch}/1p1c_2thr");
        if batch == 1 {
            bench(&mut g, BenchmarkId::new("crossbeam", &param), || {
                run_flavor::<Crossbeam>(n)
            });
            bench(&mut g, BenchmarkId::new("kanal", &param), || {
                run_flavor::<Kanal>(n)
            });
        }
        bench(&mut g, BenchmarkId::new("lanebus", &param), || {
            run_lanebus_batch(n, batch)
        });
        bench(&mut g, BenchmarkId::new("disruptor", &param), || {
            run_disruptor_batch(n, batch)
        });
    }
    g.finish();
}

fn fanout(c: &mut Criterion) {
    let n = fanout_msgs();
    let mut g = threaded_group(c, "fanout", n);
    for k in SUBSCRIBERS {
        let param = format!("{k}s/1p{k}s_{}thr", k + 1);
        for peer in Fanout::ALL {
            bench(&mut g, BenchmarkId::new(peer.name(), &param), || {
                peer.run(k, n)
            });
        }
    }
    g.finish();
}

/// Sized so the whole file takes about 4 minutes on 2 cores;
/// `--warm-up-time`, `--measurement-time` and `--sample-size` override.
fn config() -> Criterion {
    let c = Criterion::default().sample_size(10);
    if quick() {
        c.warm_up_time(Duration::from_millis(1))
            .measurement_time(Duration::from_millis(1))
            // The statistics would take longer than the measurements.
            .nresamples(1000)
    } else {
        c.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = batch_sweep, fanout
}
criterion_main!(benches);
