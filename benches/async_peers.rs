//! Async throughput of lanebus (`send_async` / `recv_async`, and the
//! `Stream` impl) against tokio's `mpsc`, flume, kanal and async-channel,
//! all bounded to 1024, `u64` messages, on tokio runtimes.
//!
//! Every id names its producers, consumers and threads: `4p1c_tasks_1thr`
//! is 4 producer tasks and 1 consumer task on one runtime thread,
//! `1p1c_2thr` one producer thread and one consumer thread. Channels
//! (the last part of every id):
//!
//! - `lanebus`: `lanebus::bounded(1024)`, `Sender::send_async` and
//!   `Receiver::recv_async`.
//! - `lanebus_stream`: the same channel, received through its
//!   `futures_core::Stream` impl (`StreamExt::next`); 1p1c rows only.
//! - `tokio`: `tokio::sync::mpsc::channel(1024)`. Single consumer, so it has
//!   no `2p2c` rows. It is the only peer that takes part in tokio's
//!   cooperative budget: once a task has spent its budget (128 operations
//!   per poll), its sends and receives return `Pending` and wake it, so it
//!   yields to the scheduler.
//! - `flume`: `flume::bounded(1024)`, `send_async` / `recv_async`.
//! - `kanal`: `kanal::bounded_async(1024)`, `send` / `recv` of its async
//!   handles.
//! - `async_channel`: `async_channel::bounded(1024)` (smol's), `send` /
//!   `recv`.
//!
//! Groups:
//!
//! - `current_thread/<s>_tasks_1thr/<channel>`: a tokio current-thread
//!   runtime; every producer and consumer is a task on its one thread, so a
//!   full or empty channel always means a task switch. Scenarios `1p1c`,
//!   `4p1c` and `2p2c` (tasks, not threads).
//! - `multi_thread/<s>_tasks_2thr/<channel>`: a tokio multi-thread runtime
//!   with 2 worker threads (the machine's 2 cores; on a shared machine they
//!   compete with whatever else runs). Same scenarios. The main thread only
//!   waits in `block_on` for the tasks' join handles.
//! - `sync_to_async/1p1c_2thr/<channel>`: one OS thread sends with the
//!   blocking call (`send`; tokio `blocking_send`; async-channel
//!   `send_blocking`; kanal's sync `Sender`, the receiver turned async with
//!   `to_async`) while one task on a current-thread runtime (run by the
//!   main thread) receives asynchronously.
//!
//! Each runtime is built once per benchmark; every iteration makes a fresh
//! channel and spawns fresh tasks (or a fresh producer thread). The
//! producers send `0..n` between them (producer `i` of `P` sends the `i`-th
//! of `P` equal ranges), one message at a time, and drop their sender when
//! done. The clock is read inside the tasks: it runs from the first
//! producer's first send (each producer reads the clock just before its
//! first send; the earliest counts) to the last consumer seeing the channel
//! closed and empty (each consumer reads the clock after its receive loop;
//! the latest counts). Spawning, joining and, in `sync_to_async`, starting
//! the producer thread (which meets the main thread at a `Barrier` before it
//! reads the clock) are not counted. Every consumer tallies the sequence
//! numbers it got; after each iteration the merged tallies must be exactly
//! `0..n`, so a lost or duplicated message fails the benchmark.
//!
//! At most two threads run at a time (the multi-thread runtime's main
//! thread sleeps in `block_on`), so nothing is oversubscribed on 2 cores;
//! `4p1c` and `2p2c` multiplex tasks, not threads. `n` is 100,000 messages
//! per iteration; `LANEBUS_BENCH_QUICK=1` makes it 2,000, with a 50 ms
//! warm-up and a 150 ms clock per benchmark (about 10 s in all), to check
//! that everything runs. The machine this was written for has 2 cores and
//! is shared: compare rows of one run (ratios), not runs.
//!
//! ```text
//! cargo bench --bench async_peers
//! cargo bench --bench async_peers -- current_thread
//! cargo bench --bench async_peers -- 'multi_thread/1p1c_tasks_2thr/'
//! LANEBUS_BENCH_QUICK=1 cargo bench --bench async_peers
//! ```

use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode,
    Throughput,
};
use futures_util::StreamExt;
use tokio::runtime::{Builder, Runtime};

// Only `Tally` and `CAP` are used here; the channel flavors are for the
// other benches.
#[allow(dead_code)]
mod common;
use common::{Tally, CAP};

/// Messages per iteration (`LANEBUS_BENCH_QUICK=1`: [`QUICK_MSGS`]).
const MSGS: u64 = 100_000;
const QUICK_MSGS: u64 = 2_000;

fn quick() -> bool {
    std::env::var("LANEBUS_BENCH_QUICK").is_ok_and(|v| v == "1")
}

fn msgs() -> u64 {
    if quick() {
        QUICK_MSGS
    } else {
        MSGS
    }
}

/// An async channel under test: producer and consumer loops as `Send`
/// futures, so that they can be spawned on either runtime.
trait AsyncFlavor: 'static {
    type Tx: Send + 'static;
    type Rx: Send + 'static;
    /// The last part of the benchmark id.
    const NAME: &'static str;
    /// False for single-consumer channels (tokio's `mpsc`).
    const MULTI_CONSUMER: bool = true;

    fn channel() -> (Self::Tx, Self::Rx);
    fn clone_tx(tx: &Self::Tx) -> Self::Tx;
    fn clone_rx(rx: &Self::Rx) -> Self::Rx;
    /// Sends every sequence number of `seqs` with the async send, one at a
    /// time, then drops `tx`.
    fn produce(tx: Self::Tx, seqs: Range<u64>) -> impl Future<Output = ()> + Send + 'static;
    /// Receives until the channel is closed and empty.
    fn consume(rx: Self::Rx) -> impl Future<Output = Tally> + Send + 'static;
}

/// An [`AsyncFlavor`] whose channel can also be fed by a blocking sender on
/// an OS thread.
trait MixedFlavor: AsyncFlavor {
    type BlockingTx: Send + 'static;

    /// A channel with a blocking sender and the async receiver of
    /// [`AsyncFlavor::consume`].
    fn mixed_channel() -> (Self::BlockingTx, Self::Rx);
    /// Sends every sequence number of `seqs` with the blocking send, then
    /// drops `tx`.
    fn produce_blocking(tx: Self::BlockingTx, seqs: Range<u64>);
}

struct Lanebus;

impl AsyncFlavor for Lanebus {
    type Tx = lanebus::Sender<u64>;
    type Rx = lanebus::Receiver<u64>;
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

    async fn produce(tx: Self::Tx, seqs: Range<u64>) {
        for seq in seqs {
            tx.send_async(seq).await.expect("lanebus: receivers gone");
        }
    }

    async fn consume(rx: Self::Rx) -> Tally {
        let mut tally = Tally::default();
        while let Ok(seq) = rx.recv_async().await {
            tally.add(seq);
        }
        tally
    }
}

impl MixedFlavor for Lanebus {
    type BlockingTx = lanebus::Sender<u64>;

    fn mixed_channel() -> (Self::BlockingTx, Self::Rx) {
        lanebus::bounded(CAP)
    }

    fn produce_blocking(tx: Self::BlockingTx, seqs: Range<u64>) {
        for seq in seqs {
            tx.send(seq).expect("lanebus: receivers gone");
        }
    }
}

/// lanebus, received through `Stream::poll_next` instead of `recv_async`.
struct LanebusStream;

impl AsyncFlavor for LanebusStream {
    type Tx = lanebus::Sender<u64>;
    type Rx = lanebus::Receiver<u64>;
    const NAME: &'static str = "lanebus_stream";

    fn channel() -> (Self::Tx, Self::Rx) {
        lanebus::bounded(CAP)
    }

    fn clone_tx(tx: &Self::Tx) -> Self::Tx {
        tx.clone()
    }

    fn clone_rx(rx: &Self::Rx) -> Self::Rx {
        rx.clone()
    }

    fn produce(tx: Self::Tx, seqs: Range<u64>) -> impl Future<Output = ()> + Send + 'static {
        Lanebus::produce(tx, seqs)
    }

    async fn consume(mut rx: Self::Rx) -> Tally {
        let mut tally = Tally::default();
        while let Some(seq) = rx.next().await {
            tally.add(seq);
        }
        tally
    }
}

impl MixedFlavor for LanebusStream {
    type BlockingTx = lanebus::Sender<u64>;

    fn mixed_channel() -> (Self::BlockingTx, Self::Rx) {
        lanebus::bounded(CAP)
    }

    fn produce_blocking(tx: Self::BlockingTx, seqs: Range<u64>) {
        Lanebus::produce_blocking(tx, seqs);
    }
}

struct Tokio;

impl AsyncFlavor for Tokio {
    type Tx = tokio::sync::mpsc::Sender<u64>;
    type Rx = tokio::sync::mpsc::Receiver<u64>;
    const NAME: &'static str = "tokio";
    const MULTI_CONSUMER: bool = false;

    fn channel() -> (Self::Tx, Self::Rx) {
        tokio::sync::mpsc::channel(CAP)
    }

    fn clone_tx(tx: &Self::Tx) -> Self::Tx {
        tx.clone()
    }

    fn clone_rx(_: &Self::Rx) -> Self::Rx {
        unreachable!("tokio's mpsc has a single consumer")
    }

    async fn produce(tx: Self::Tx, seqs: Range<u64>) {
        for seq in seqs {
            tx.send(seq).await.expect("tokio: receiver gone");
        }
    }

    async fn consume(mut rx: Self::Rx) -> Tally {
        let mut tally = Tally::default();
        while let Some(seq) = rx.recv().await {
            tally.add(seq);
        }
        tally
    }
}

impl MixedFlavor for Tokio {
    type BlockingTx = tokio::sync::mpsc::Sender<u64>;

    fn mixed_channel() -> (Self::BlockingTx, Self::Rx) {
        tokio::sync::mpsc::channel(CAP)
    }

    fn produce_blocking(tx: Self::BlockingTx, seqs: Range<u64>) {
        for seq in seqs {
            tx.blocking_send(seq).expect("tokio: receiver gone");
        }
    }
}

struct Flume;

impl AsyncFlavor for Flume {
    type Tx = flume::Sender<u64>;
    type Rx = flume::Receiver<u64>;
    const NAME: &'static str = "flume";

    fn channel() -> (Self::Tx, Self::Rx) {
        flume::bounded(CAP)
    }

    fn clone_tx(tx: &Self::Tx) -> Self::Tx {
        tx.clone()
    }

    fn clone_rx(rx: &Self::Rx) -> Self::Rx {
        rx.clone()
    }

    async fn produce(tx: Self::Tx, seqs: Range<u64>) {
        for seq in seqs {
            tx.send_async(seq).await.expect("flume: receivers gone");
        }
    }

    async fn consume(rx: Self::Rx) -> Tally {
        let mut tally = Tally::default();
        while let Ok(seq) = rx.recv_async().await {
            tally.add(seq);
        }
        tally
    }
}

impl MixedFlavor for Flume {
    type BlockingTx = flume::Sender<u64>;

    fn mixed_channel() -> (Self::BlockingTx, Self::Rx) {
        flume::bounded(CAP)
    }

    fn produce_blocking(tx: Self::BlockingTx, seqs: Range<u64>) {
        for seq in seqs {
            tx.send(seq).expect("flume: receivers gone");
        }
    }
}

struct Kanal;

impl AsyncFlavor for Kanal {
    type Tx = kanal::AsyncSender<u64>;
    type Rx = kanal::AsyncReceiver<u64>;
    const NAME: &'static str = "kanal";

    fn channel() -> (Self::Tx, Self::Rx) {
        kanal::bounded_async(CAP)
    }

    fn clone_tx(tx: &Self::Tx) -> Self::Tx {
        tx.clone()
    }

    fn clone_rx(rx: &Self::Rx) -> Self::Rx {
        rx.clone()
    }

    async fn produce(tx: Self::Tx, seqs: Range<u64>) {
        for seq in seqs {
            tx.send(seq).await.expect("kanal: receivers gone");
        }
    }

    async fn consume(rx: Self::Rx) -> Tally {
        let mut tally = Tally::default();
        while let Ok(seq) = rx.recv().await {
            tally.add(seq);
        }
        tally
    }
}

impl MixedFlavor for Kanal {
    type BlockingTx = kanal::Sender<u64>;

    fn mixed_channel() -> (Self::BlockingTx, Self::Rx) {
        let (tx, rx) = kanal::bounded(CAP);
        (tx, rx.to_async())
    }

    fn produce_blocking(tx: Self::BlockingTx, seqs: Range<u64>) {
        for seq in seqs {
            tx.send(seq).expect("kanal: receivers gone");
        }
    }
}

struct AsyncChannel;

impl AsyncFlavor for AsyncChannel {
    type Tx = async_channel::Sender<u64>;
    type Rx = async_channel::Receiver<u64>;
    const NAME: &'static str = "async_channel";

    fn channel() -> (Self::Tx, Self::Rx) {
        async_channel::bounded(CAP)
    }

    fn clone_tx(tx: &Self::Tx) -> Self::Tx {
        tx.clone()
    }

    fn clone_rx(rx: &Self::Rx) -> Self::Rx {
        rx.clone()
    }

    async fn produce(tx: Self::Tx, seqs: Range<u64>) {
        for seq in seqs {
            tx.send(seq).await.expect("async_channel: receivers gone");
        }
    }

    async fn consume(rx: Self::Rx) -> Tally {
        let mut tally = Tally::default();
        while let Ok(seq) = rx.recv().await {
            tally.add(seq);
        }
        tally
    }
}

impl MixedFlavor for AsyncChannel {
    type BlockingTx = async_channel::Sender<u64>;

    fn mixed_channel() -> (Self::BlockingTx, Self::Rx) {
        async_channel::bounded(CAP)
    }

    fn produce_blocking(tx: Self::BlockingTx, seqs: Range<u64>) {
        for seq in seqs {
            tx.send_blocking(seq)
                .expect("async_channel: receivers gone");
        }
    }
}

/// The `i`-th of `parts` near-equal ranges of `0..n`.
fn share(n: u64, parts: u64, i: u64) -> Range<u64> {
    n * i / parts..n * (i + 1) / parts
}

/// Panics unless `tally` is exactly `0..n`.
fn check(tally: Tally, n: u64, what: &str) {
    assert_eq!(
        tally,
        Tally::expected(n),
        "{what}: messages lost or duplicated"
    );
}

/// One iteration on `rt`: `producers` and `consumers` fresh tasks move `n`
/// messages through a fresh channel. Returns the time from the earliest
/// first send to the latest end of a receive loop.
fn run_tasks<F: AsyncFlavor>(rt: &Runtime, producers: u64, consumers: u64, n: u64) -> Duration {
    let (tx, rx) = F::channel();
    let (start, end, tally) = rt.block_on(async move {
        // Consumers first, so that they are waiting when the sends start.
        let mut rxs: Vec<F::Rx> = (1..consumers).map(|_| F::clone_rx(&rx)).collect();
        rxs.push(rx);
        let consumer_tasks: Vec<_> = rxs
            .into_iter()
            .map(|rx| {
                tokio::spawn(async move {
                    let tally = F::consume(rx).await;
                    (tally, Instant::now())
                })
            })
            .collect();
        let mut txs: Vec<F::Tx> = (1..producers).map(|_| F::clone_tx(&tx)).collect();
        txs.push(tx);
        let producer_tasks: Vec<_> = txs
            .into_iter()
            .enumerate()
            .map(|(i, tx)| {
                let seqs = share(n, producers, i as u64);
                tokio::spawn(async move {
                    let start = Instant::now();
                    F::produce(tx, seqs).await;
                    start
                })
            })
            .collect();
        let mut start: Option<Instant> = None;
        for task in producer_tasks {
            let s = task.await.expect("producer task panicked");
            start = Some(start.map_or(s, |t| t.min(s)));
        }
        let mut end: Option<Instant> = None;
        let mut tally = Tally::default();
        for task in consumer_tasks {
            let (t, e) = task.await.expect("consumer task panicked");
            tally = tally.merge(t);
            end = Some(end.map_or(e, |x| x.max(e)));
        }
        (start.expect("a producer"), end.expect("a consumer"), tally)
    });
    check(tally, n, &format!("{} {producers}p{consumers}c", F::NAME));
    end - start
}

/// One `sync_to_async` iteration: a fresh OS thread sends `0..n` with the
/// blocking send while a task on `rt` (run by this thread) receives.
fn run_mixed<F: MixedFlavor>(rt: &Runtime, n: u64) -> Duration {
    let (tx, rx) = F::mixed_channel();
    let barrier = Arc::new(Barrier::new(2));
    let producer = {
        let barrier = Arc::clone(&barrier);
        thread::spawn(move || {
            barrier.wait();
            let start = Instant::now();
            F::produce_blocking(tx, 0..n);
            start
        })
    };
    barrier.wait();
    let (tally, end) = rt.block_on(async move {
        let tally = F::consume(rx).await;
        (tally, Instant::now())
    });
    let start = producer.join().expect("producer thread panicked");
    check(tally, n, &format!("{} sync_to_async", F::NAME));
    end - start
}

fn group<'a>(c: &'a mut Criterion, name: &str, n: u64) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    // An iteration takes milliseconds: keep the iteration count per sample
    // even instead of growing it linearly.
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(n));
    g
}

/// Which runtime a task group runs on.
#[derive(Clone, Copy)]
enum RtKind {
    CurrentThread,
    MultiThread,
}

impl RtKind {
    fn group(self) -> &'static str {
        match self {
            RtKind::CurrentThread => "current_thread",
            RtKind::MultiThread => "multi_thread",
        }
    }

    fn threads(self) -> usize {
        match self {
            RtKind::CurrentThread => 1,
            RtKind::MultiThread => 2,
        }
    }

    fn runtime(self) -> Runtime {
        match self {
            RtKind::CurrentThread => Builder::new_current_thread().build(),
            RtKind::MultiThread => Builder::new_multi_thread()
                .worker_threads(self.threads())
                .build(),
        }
        .expect("tokio runtime")
    }
}

/// One benchmark of a task group: `F` with `producers` and `consumers`
/// tasks on a runtime of `kind` built for it.
fn bench_tasks<F: AsyncFlavor>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    kind: RtKind,
    producers: u64,
    consumers: u64,
    n: u64,
) {
    if consumers > 1 && !F::MULTI_CONSUMER {
        return;
    }
    let scenario = format!("{producers}p{consumers}c_tasks_{}thr", kind.threads());
    let rt = kind.runtime();
    g.bench_function(BenchmarkId::new(scenario, F::NAME), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| run_tasks::<F>(&rt, producers, consumers, n))
                .sum()
        })
    });
}

fn tasks(c: &mut Criterion, kind: RtKind) {
    let n = msgs();
    let mut g = group(c, kind.group(), n);
    for (p, c) in [(1, 1), (4, 1), (2, 2)] {
        bench_tasks::<Lanebus>(&mut g, kind, p, c, n);
        if (p, c) == (1, 1) {
            bench_tasks::<LanebusStream>(&mut g, kind, p, c, n);
        }
        bench_tasks::<Tokio>(&mut g, kind, p, c, n);
        bench_tasks::<Flume>(&mut g, kind, p, c, n);
        bench_tasks::<Kanal>(&mut g, kind, p, c, n);
        bench_tasks::<AsyncChannel>(&mut g, kind, p, c, n);
    }
    g.finish();
}

fn current_thread(c: &mut Criterion) {
    tasks(c, RtKind::CurrentThread);
}

fn multi_thread(c: &mut Criterion) {
    tasks(c, RtKind::MultiThread);
}

fn bench_mixed<F: MixedFlavor>(g: &mut BenchmarkGroup<'_, WallTime>, n: u64) {
    let rt = RtKind::CurrentThread.runtime();
    g.bench_function(BenchmarkId::new("1p1c_2thr", F::NAME), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run_mixed::<F>(&rt, n)).sum())
    });
}

fn sync_to_async(c: &mut Criterion) {
    let n = msgs();
    let mut g = group(c, "sync_to_async", n);
    bench_mixed::<Lanebus>(&mut g, n);
    bench_mixed::<LanebusStream>(&mut g, n);
    bench_mixed::<Tokio>(&mut g, n);
    bench_mixed::<Flume>(&mut g, n);
    bench_mixed::<Kanal>(&mut g, n);
    bench_mixed::<AsyncChannel>(&mut g, n);
    g.finish();
}

/// Sized so the whole file takes about 2.5 minutes on 2 cores (36
/// benchmarks); `LANEBUS_BENCH_QUICK=1` shrinks it to about 10 seconds. `--warm-up-time`, `--measurement-time` and `--sample-size`
/// override.
fn config() -> Criterion {
    let (warm_up, measure) = if quick() {
        (Duration::from_millis(50), Duration::from_millis(150))
    } else {
        (Duration::from_secs(1), Duration::from_millis(2500))
    };
    Criterion::default()
        .sample_size(10)
        .warm_up_time(warm_up)
        .measurement_time(measure)
}

criterion_group! {
    name = benches;
    config = config();
    targets = current_thread, multi_thread, sync_to_async
}
criterion_main!(benches);
