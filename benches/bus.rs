//! Throughput of the bus layer: what fan-out, envelopes, encoding and the
//! memory budget cost on top of the typed channel.
//!
//! Every id names its thread counts: `1p8s_9thr` is one publisher thread
//! and 8 subscriber threads, `1p1c` one producer and one consumer, `1thr` a
//! single thread. Throughput is in messages (published, not delivered: a
//! fan-out to 8 delivers 8 times as many) and, where a payload has a size,
//! in bytes of payload published.
//!
//! - `bus_fanout`: does publishing cost grow with the number of
//!   subscribers? One [`Publisher`] thread publishes raw
//!   `Message::new(payload.clone())` (a clone of one pre-built `Bytes`, so
//!   nothing is encoded or copied) to 1 subscriber (`1p1s_2thr`, 2 threads)
//!   or 8 (`1p8s_9thr`: 9 threads on a 2-core machine, oversubscribed on
//!   purpose), each drained by its own thread with `recv`; payloads of 64 B
//!   and 4 KiB.
//! - `typed_vs_envelope`: what does going through the bus with a serde value
//!   cost against a typed channel? The same SPSC stream of `Order`s (a `u64`,
//!   a `u32` and a 16-character `String`; the producer builds one per
//!   message) through `lanebus::bounded::<Order>` (`typed_channel`), through
//!   the bus with `Message::encode` and `Envelope::decode::<Order>`
//!   (`bus_decode`), and with `Envelope::decode_borrowed` into an
//!   `OrderRef<'_>` whose `sku` is a `&str` (`bus_decode_borrowed`).
//! - `codec` (single thread): `Codec::encode`, `decode` and
//!   `decode_borrowed` of one `Order`; `Envelope::to_wire` and `from_wire`
//!   of an envelope (bus-style header: id, topic, enqueue time) with 64 B
//!   and 4 KiB payloads.
//! - `budget_overhead`: what does a [`MemoryBudget`] that never binds (1 GiB)
//!   cost per message? SPSC `u64` through `lanebus::bounded(1024)` against
//!   `ChannelBuilder::build_budgeted`, and the bus (1 publisher, 1
//!   subscriber, 64 B raw payload) without and with a budget.
//!
//! Each threaded sample runs in fresh threads (`iter_custom`): the channel
//! or bus and its subscriptions are set up first, the workers meet at a
//! `Barrier`, and the time runs from the first worker leaving it to the last
//! one finishing (each worker reads the clock itself). Every consumer tallies
//! the sequence numbers it got (the envelope id for raw payloads: on a fresh
//! bus one `Publisher` numbers its messages 1, 2, ...; the `Order::id`
//! otherwise) and, after the clock stops, each consumer's tally must be
//! exactly `0..n`: a lost or duplicated message fails the benchmark. Under a
//! budget, every byte must be back once the subscribers are gone.
//!
//! The machine this was written for has 2 cores and is shared: compare rows
//! of one run (ratios), not runs.
//!
//! ```text
//! cargo bench --bench bus
//! cargo bench --bench bus -- bus_fanout
//! ```

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode,
    Throughput,
};
use lanebus::{
    Bus, BusBuilder, ChannelBuilder, Codec, Envelope, Header, MemoryBudget, Message, Publisher,
};
use serde::{Deserialize, Serialize};

// Only `Tally` is used here; the channel flavors are for the other benches.
#[allow(dead_code)]
mod common;
use common::{Tally, CAP};

/// Messages per iteration of the fan-out group.
const FANOUT_MSGS: u64 = 50_000;
/// Messages per iteration of the SPSC groups.
const SPSC_MSGS: u64 = 100_000;
/// The topic every bus bench publishes on.
const TOPIC: &str = "bench.orders";
/// 16 characters.
const SKU: &str = "SKU-0042-BLUE-XL";
/// A budget that never binds.
const BIG_BUDGET: usize = 1 << 30;

#[derive(Serialize, Deserialize)]
struct Order {
    id: u64,
    qty: u32,
    sku: String,
}

impl Order {
    fn new(id: u64) -> Self {
        Order {
            id,
            qty: (id % 100) as u32 + 1,
            sku: SKU.to_owned(),
        }
    }
}

/// `Order` decoded without copying its string.
#[derive(Deserialize)]
struct OrderRef<'a> {
    id: u64,
    qty: u32,
    sku: &'a str,
}

/// The check every consumer makes on an order before tallying its id.
#[inline]
fn order_seq(id: u64, qty: u32, sku: &str) -> u64 {
    assert!(
        qty == (id % 100) as u32 + 1 && sku == SKU,
        "order {id} corrupted"
    );
    id
}

/// What a worker returns: its result and when it started and finished.
type Timed<R> = (R, (Instant, Instant));

/// A thread that waits at `barrier`, then runs `work` and times it.
fn spawn_timed<R: Send + 'static>(
    barrier: &Arc<Barrier>,
    work: impl FnOnce() -> R + Send + 'static,
) -> thread::JoinHandle<Timed<R>> {
    let barrier = barrier.clone();
    thread::spawn(move || {
        barrier.wait();
        let start = Instant::now();
        let out = work();
        (out, (start, Instant::now()))
    })
}

/// Runs `producer` and every consumer on its own thread, all starting at
/// one barrier. Returns the time from the first worker starting to the last
/// one finishing, and each consumer's tally.
fn run_workers<P, C>(producer: P, consumers: Vec<C>) -> (Duration, Vec<Tally>)
where
    P: FnOnce() + Send + 'static,
    C: FnOnce() -> Tally + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(1 + consumers.len()));
    let consumers: Vec<_> = consumers
        .into_iter()
        .map(|c| spawn_timed(&barrier, c))
        .collect();
    let producer = spawn_timed(&barrier, producer);
    let mut spans = vec![producer.join().expect("producer panicked").1];
    let mut tallies = Vec::with_capacity(consumers.len());
    for consumer in consumers {
        let (tally, span) = consumer.join().expect("consumer panicked");
        tallies.push(tally);
        spans.push(span);
    }
    let first = spans.iter().map(|s| s.0).min().expect("a worker");
    let last = spans.iter().map(|s| s.1).max().expect("a worker");
    (last - first, tallies)
}

/// Publishes `make(0..n)` from one `Publisher` thread on a fresh bus to
/// `subscribers` subscriptions, each drained by its own thread; `seq` maps a
/// received envelope back to its number. Panics unless every subscriber got
/// `0..n` exactly once (and, under a budget, all bytes came back).
fn run_bus<M, S>(builder: BusBuilder, subscribers: usize, n: u64, make: M, seq: S) -> Duration
where
    M: Fn(u64) -> Message + Send + 'static,
    S: Fn(&Envelope) -> u64 + Clone + Send + 'static,
{
    let bus = builder.build();
    let subs: Vec<_> = (0..subscribers)
        .map(|_| bus.subscribe(TOPIC).expect("valid topic"))
        .collect();
    let publisher: Publisher = bus.publisher(TOPIC).expect("valid topic");
    let producer = move || {
        for i in 0..n {
            let reached = publisher.publish(make(i)).expect("publish failed");
            assert_eq!(reached, subscribers, "message {i} missed a subscriber");
        }
        // Subscribers drain what is queued, then see the end.
        publisher.bus().close();
    };
    let consumers = subs
        .into_iter()
        .map(|sub| {
            let seq = seq.clone();
            move || {
                let mut tally = Tally::default();
                while let Ok(envelope) = sub.recv() {
                    tally.add(seq(&envelope));
                }
                tally
            }
        })
        .collect();
    let (elapsed, tallies) = run_workers(producer, consumers);
    for (i, tally) in tallies.into_iter().enumerate() {
        assert_eq!(
            tally,
            Tally::expected(n),
            "subscriber {i} of {subscribers}: messages lost or duplicated"
        );
    }
    if let Some(budget) = bus.budget() {
        assert_eq!(budget.in_use(), 0, "budget bytes not released");
    }
    elapsed
}

/// Sends `0..n` from one thread to another through `(tx, rx)`: `send(&tx,
/// seq)` on one side, `recv(&rx)` until it returns `None` (the channel
/// closes when the producer drops `tx`) on the other. Panics unless every
/// number arrived exactly once.
fn run_spsc<Tx, Rx>(
    (tx, rx): (Tx, Rx),
    n: u64,
    send: impl Fn(&Tx, u64) + Send + 'static,
    recv: impl Fn(&Rx) -> Option<u64> + Send + 'static,
) -> Duration
where
    Tx: Send + 'static,
    Rx: Send + 'static,
{
    let producer = move || {
        for seq in 0..n {
            send(&tx, seq);
        }
        drop(tx);
    };
    let consumer = move || {
        let mut tally = Tally::default();
        while let Some(seq) = recv(&rx) {
            tally.add(seq);
        }
        tally
    };
    let (elapsed, tallies) = run_workers(producer, vec![consumer]);
    assert_eq!(
        tallies[0],
        Tally::expected(n),
        "messages lost or duplicated"
    );
    elapsed
}

/// The number a raw-payload consumer tallies: the envelope id, which a
/// fresh bus's only `Publisher` hands out from 1.
#[inline]
fn id_seq(len: usize) -> impl Fn(&Envelope) -> u64 + Clone + Send + 'static {
    move |envelope: &Envelope| {
        assert_eq!(envelope.payload().len(), len, "payload changed");
        envelope.id() - 1
    }
}

/// A payload of `len` bytes, built once and shared by every message.
fn payload(len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| i as u8).collect::<Vec<u8>>())
}

fn size_name(len: usize) -> String {
    if len >= 1024 {
        format!("{}KiB", len / 1024)
    } else {
        format!("{len}B")
    }
}

/// A group of threaded benchmarks, each iteration moving `n` messages.
fn threaded_group<'a>(c: &'a mut Criterion, name: &str, n: u64) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(n));
    // An iteration takes milliseconds: keep the iteration count per sample
    // even instead of growing it linearly.
    g.sampling_mode(SamplingMode::Flat);
    g
}

fn bus_fanout(c: &mut Criterion) {
    let mut g = threaded_group(c, "bus_fanout", FANOUT_MSGS);
    for (subscribers, threads) in [(1, "1p1s_2thr"), (8, "1p8s_9thr")] {
        for len in [64, 4096] {
            g.throughput(Throughput::ElementsAndBytes {
                elements: FANOUT_MSGS,
                bytes: FANOUT_MSGS * len as u64,
            });
            let bytes = payload(len);
            g.bench_function(BenchmarkId::new(threads, size_name(len)), |b| {
                b.iter_custom(|iters| {
                    let bytes = bytes.clone();
                    run_bus(
                        Bus::builder().capacity(CAP),
                        subscribers,
                        iters * FANOUT_MSGS,
                        move |_| Message::new(bytes.clone()),
                        id_seq(len),
                    )
                })
            });
        }
    }
    g.finish();
}

fn typed_vs_envelope(c: &mut Criterion) {
    let mut g = threaded_group(c, "typed_vs_envelope", SPSC_MSGS);
    g.bench_function(BenchmarkId::new("1p1c", "typed_channel"), |b| {
        b.iter_custom(|iters| {
            run_spsc(
                lanebus::bounded::<Order>(CAP),
                iters * SPSC_MSGS,
                |tx, seq| tx.send(Order::new(seq)).expect("receiver gone"),
                |rx| rx.recv().ok().map(|o| order_seq(o.id, o.qty, &o.sku)),
            )
        })
    });
    g.bench_function(BenchmarkId::new("1p1c", "bus_decode"), |b| {
        b.iter_custom(|iters| {
            run_bus(
                Bus::builder().capacity(CAP),
                1,
                iters * SPSC_MSGS,
                |seq| Message::encode(&Order::new(seq)).expect("encodes"),
                |envelope: &Envelope| {
                    let o: Order = envelope.decode().expect("decodes");
                    order_seq(o.id, o.qty, &o.sku)
                },
            )
        })
    });
    g.bench_function(BenchmarkId::new("1p1c", "bus_decode_borrowed"), |b| {
        b.iter_custom(|iters| {
            run_bus(
                Bus::builder().capacity(CAP),
                1,
                iters * SPSC_MSGS,
                |seq| Message::encode(&Order::new(seq)).expect("encodes"),
                |envelope: &Envelope| {
                    let o: OrderRef<'_> = envelope.decode_borrowed().expect("decodes");
                    order_seq(o.id, o.qty, o.sku)
                },
            )
        })
    });
    g.finish();
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    let codec = Codec::default();
    let order = Order::new(123_456);
    let encoded = codec.encode(&order).expect("encodes");
    g.bench_function(BenchmarkId::new("1thr_encode", "order"), |b| {
        b.iter(|| codec.encode(black_box(&order)).expect("encodes"))
    });
    g.bench_function(BenchmarkId::new("1thr_decode", "order"), |b| {
        b.iter(|| {
            let o: Order = codec.decode(black_box(&encoded)).expect("decodes");
            o
        })
    });
    g.bench_function(BenchmarkId::new("1thr_decode_borrowed", "order"), |b| {
        b.iter(|| {
            let o: OrderRef<'_> = codec.decode_borrowed(black_box(&encoded)).expect("decodes");
            (o.id, o.qty, o.sku.len())
        })
    });
    for len in [64, 4096] {
        let header = Header {
            id: 123_456,
            enqueued_at: 1_700_000_000_000_000_000,
            ..Header::new(TOPIC)
        };
        let envelope = Envelope::new(header, payload(len));
        let wire = envelope.to_wire();
        g.throughput(Throughput::ElementsAndBytes {
            elements: 1,
            bytes: wire.len() as u64,
        });
        g.bench_function(BenchmarkId::new("1thr_to_wire", size_name(len)), |b| {
            b.iter(|| black_box(&envelope).to_wire())
        });
        g.bench_function(BenchmarkId::new("1thr_from_wire", size_name(len)), |b| {
            b.iter(|| Envelope::from_wire(black_box(&wire).clone()).expect("decodes"))
        });
    }
    g.finish();
}

fn budget_overhead(c: &mut Criterion) {
    let mut g = threaded_group(c, "budget_overhead", SPSC_MSGS);
    g.bench_function(BenchmarkId::new("1p1c_channel_u64", "none"), |b| {
        b.iter_custom(|iters| {
            run_spsc(
                lanebus::bounded::<u64>(CAP),
                iters * SPSC_MSGS,
                |tx, seq| tx.send(seq).expect("receiver gone"),
                |rx| rx.recv().ok(),
            )
        })
    });
    g.bench_function(BenchmarkId::new("1p1c_channel_u64", "budget_1GiB"), |b| {
        b.iter_custom(|iters| {
            let budget = MemoryBudget::new(BIG_BUDGET);
            let elapsed = run_spsc(
                ChannelBuilder::new()
                    .capacity(CAP)
                    .build_budgeted::<u64>(budget.clone()),
                iters * SPSC_MSGS,
                |tx, seq| tx.send(seq).expect("receiver gone"),
                |rx| rx.recv().ok().map(|p| *p),
            );
            assert_eq!(budget.in_use(), 0, "budget bytes not released");
            elapsed
        })
    });
    let bytes = payload(64);
    for (name, budget) in [("none", false), ("budget_1GiB", true)] {
        g.bench_function(BenchmarkId::new("1p1s_bus_64B", name), |b| {
            b.iter_custom(|iters| {
                let mut builder = Bus::builder().capacity(CAP);
                if budget {
                    builder = builder.budget(MemoryBudget::new(BIG_BUDGET));
                }
                let bytes = bytes.clone();
                run_bus(
                    builder,
                    1,
                    iters * SPSC_MSGS,
                    move |_| Message::new(bytes.clone()),
                    id_seq(64),
                )
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    // Sized so the whole file takes about 2 minutes on 2 cores;
    // `--warm-up-time`, `--measurement-time` and `--sample-size` override.
    config = Criterion::default()
        .sample_size(15)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_millis(2500));
    targets = bus_fanout, typed_vs_envelope, codec, budget_overhead
}
criterion_main!(benches);
