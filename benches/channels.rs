//! Throughput of lanebus against crossbeam-channel, kanal, flume and
//! `std::sync::mpsc::sync_channel`, all bounded to 1024 messages, in one run.
//!
//! Every benchmark id names its thread counts and message type:
//! `<scenario>_<P>p<C>c/<message>/<channel>`, e.g. `mpmc_2p2c/u64/lanebus`.
//!
//! - `spsc_1p1c`, `mpsc_2p1c`, `mpmc_2p2c`, `mpmc_4p4c`: `u64` and 256-byte
//!   messages, one `send`/`recv` per message. `std` is single-consumer, so it
//!   only runs where there is one consumer. `mpmc_4p4c` is oversubscribed on
//!   a 2-core machine on purpose.
//! - `batch_1p1c`: lanebus `send_batch`/`recv_batch` with batches of 16 and
//!   256 (`lanebus_batch16`, `lanebus_batch256`) beside the per-message loop
//!   of lanebus and of every peer, so the ratio shows the batch gain.
//! - `priority_overhead_1p1c`, `priority_overhead_2p2c`: all traffic on the
//!   `Normal` lane of a channel with four 1024-slot lanes
//!   (`lanebus_normal_of_4x1024`) against one whose other three lanes have
//!   capacity 1 and stay unused (`lanebus_normal_1024_others_cap1`). Both run
//!   the same code (the receiver still looks at every lane), so crossbeam is
//!   there as the single-lane reference.
//!
//! Each sample runs in fresh threads (`iter_custom`): the channel is created,
//! producers and consumers meet at a `Barrier`, and the time runs from the
//! first worker leaving it to the last one finishing (each worker reads the
//! clock itself). The
//! producers send the sequence numbers `0..n` between them (for 256-byte
//! messages in the first 8 bytes); each consumer counts and sums what it gets
//! and, after the clock stops, the totals are checked against `0..n`, so a
//! lost or duplicated message fails the benchmark.
//!
//! `benches/summarize.py target/criterion` turns the results into a Markdown
//! table.

use std::ops::Range;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode,
    Throughput,
};
use lanebus::{ChannelBuilder, Priority};

#[macro_use]
// `command_line` and `cpu_model` serve the custom-harness benches only.
#[allow(dead_code)]
mod common;
use common::{Crossbeam, Flavor, Flume, Kanal, Lanebus, Msg, StdSync, Tally, CAP};

/// Messages per criterion iteration; divisible by every producer count.
const MSGS: u64 = 200_000;

// All traffic on `Normal` of `bounded(CAP)`: the same channel as `Lanebus`,
// named for the priority-overhead groups.
flavor!(
    LanebusFourLanes,
    "lanebus_normal_of_4x1024",
    lanebus::Sender<T>,
    lanebus::Receiver<T>,
    lanebus::bounded(CAP)
);
// `Normal` has CAP slots, the other lanes 1 each and carry nothing.
flavor!(
    LanebusOthersCap1,
    "lanebus_normal_1024_others_cap1",
    lanebus::Sender<T>,
    lanebus::Receiver<T>,
    ChannelBuilder::new()
        .capacity(1)
        .lane_capacity(Priority::Normal, CAP)
        .build()
);

/// lanebus with `send_batch` / `recv_batch` of `B` messages.
struct LanebusBatch<const B: usize>;

impl<T: Msg, const B: usize> Flavor<T> for LanebusBatch<B> {
    type Tx = lanebus::Sender<T>;
    type Rx = lanebus::Receiver<T>;

    const NAME: &'static str = match B {
        16 => "lanebus_batch16",
        256 => "lanebus_batch256",
        _ => "lanebus_batch",
    };

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
        common::produce_batches(tx, seqs, B);
    }

    fn consume(rx: &Self::Rx) -> Tally {
        common::consume_batches(rx, B)
    }
}

/// Sends `0..total` from `producers` threads to `consumers` threads through
/// a fresh channel; returns the time from the first worker leaving the start
/// barrier to the last worker finishing. Each worker reads the clock itself:
/// on 2 cores the main thread may not run again until the workers are done,
/// so a clock in the main thread would start late. Panics unless every
/// message arrived exactly once.
fn run<T: Msg, F: Flavor<T>>(producers: usize, consumers: usize, total: u64) -> Duration {
    assert!(consumers == 1 || F::MULTI_CONSUMER);
    assert_eq!(total % producers as u64, 0);
    let per_producer = total / producers as u64;
    let (tx, rx) = F::channel();
    let barrier = Arc::new(Barrier::new(producers + consumers));

    let senders: Vec<_> = (0..producers as u64)
        .map(|p| {
            let tx = F::clone_tx(&tx);
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                F::produce(&tx, p * per_producer..(p + 1) * per_producer);
                (start, Instant::now())
            })
        })
        .collect();
    drop(tx);

    let mut rx = Some(rx);
    let receivers: Vec<_> = (0..consumers)
        .map(|c| {
            let rx = if c + 1 == consumers {
                rx.take().unwrap()
            } else {
                F::clone_rx(rx.as_ref().unwrap())
            };
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                let tally = F::consume(&rx);
                (tally, (start, Instant::now()))
            })
        })
        .collect();

    let mut spans: Vec<(Instant, Instant)> = senders
        .into_iter()
        .map(|s| s.join().expect("producer panicked"))
        .collect();
    let mut tally = Tally::default();
    for r in receivers {
        let (t, span) = r.join().expect("consumer panicked");
        tally = Tally::merge(tally, t);
        spans.push(span);
    }
    let first = spans
        .iter()
        .map(|s| s.0)
        .min()
        .expect("at least one worker");
    let last = spans
        .iter()
        .map(|s| s.1)
        .max()
        .expect("at least one worker");

    assert_eq!(
        tally,
        Tally::expected(total),
        "{} {}p{}c {}: messages lost or duplicated",
        F::NAME,
        producers,
        consumers,
        T::NAME,
    );
    last - first
}

fn bench<T: Msg, F: Flavor<T>>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    producers: usize,
    consumers: usize,
) {
    if consumers > 1 && !F::MULTI_CONSUMER {
        return;
    }
    g.bench_function(BenchmarkId::new(T::NAME, F::NAME), |b| {
        b.iter_custom(|iters| run::<T, F>(producers, consumers, iters * MSGS))
    });
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(MSGS));
    // Every iteration moves MSGS messages (milliseconds); flat sampling keeps
    // the iteration count per sample even instead of growing it linearly.
    g.sampling_mode(SamplingMode::Flat);
    g
}

fn peers<T: Msg>(g: &mut BenchmarkGroup<'_, WallTime>, producers: usize, consumers: usize) {
    bench::<T, Lanebus>(g, producers, consumers);
    bench::<T, Crossbeam>(g, producers, consumers);
    bench::<T, Kanal>(g, producers, consumers);
    bench::<T, Flume>(g, producers, consumers);
    bench::<T, StdSync>(g, producers, consumers);
}

fn topology(c: &mut Criterion, name: &str, producers: usize, consumers: usize) {
    let mut g = group(c, &format!("{name}_{producers}p{consumers}c"));
    peers::<u64>(&mut g, producers, consumers);
    peers::<[u8; 256]>(&mut g, producers, consumers);
    g.finish();
}

fn spsc(c: &mut Criterion) {
    topology(c, "spsc", 1, 1);
}

fn mpsc(c: &mut Criterion) {
    topology(c, "mpsc", 2, 1);
}

fn mpmc(c: &mut Criterion) {
    topology(c, "mpmc", 2, 2);
}

fn mpmc_4x4(c: &mut Criterion) {
    topology(c, "mpmc", 4, 4);
}

fn batch(c: &mut Criterion) {
    let mut g = group(c, "batch_1p1c");
    bench::<u64, LanebusBatch<16>>(&mut g, 1, 1);
    bench::<u64, LanebusBatch<256>>(&mut g, 1, 1);
    peers::<u64>(&mut g, 1, 1);
    g.finish();
}

fn priority_overhead(c: &mut Criterion) {
    for (producers, consumers) in [(1, 1), (2, 2)] {
        let mut g = group(c, &format!("priority_overhead_{producers}p{consumers}c"));
        bench::<u64, LanebusFourLanes>(&mut g, producers, consumers);
        bench::<u64, LanebusOthersCap1>(&mut g, producers, consumers);
        bench::<u64, Crossbeam>(&mut g, producers, consumers);
        g.finish();
    }
}

criterion_group! {
    name = benches;
    // Defaults sized so the whole suite takes about 5 minutes on 2 cores;
    // `--warm-up-time`, `--measurement-time` and `--sample-size` override.
    config = Criterion::default()
        .sample_size(15)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = spsc, mpsc, mpmc, mpmc_4x4, batch, priority_overhead
}
criterion_main!(benches);
