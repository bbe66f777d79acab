//! `--mode bus`: producer N publishes on `stress.pN` with its own
//! `Publisher`; the workers are one consumer group on `stress.*` (each
//! message handled once) and each `--subscribers` subscription gets every
//! message.
//!
//! A payload is `--payload-size` bytes: the sequence number (u64, little
//! endian), then the fill byte of (producer, seq). The producer is the one
//! named by the topic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use lanebus::{Bus, Envelope, MemoryBudget, Message, Priority, Publisher, Subscription};

use crate::common::{
    fill_byte, join, mix64, monitor, unix_nanos, ConsumerStats, Fingerprint, Outcome, Pacer,
    PaddedCounter, PriorityMix, ProducerResult,
};
use crate::Args;

/// The smallest payload: the sequence number.
pub const MIN_PAYLOAD: usize = 8;

const TOPIC_PREFIX: &str = "stress.p";
const PATTERN: &str = "stress.*";
const GROUP: &str = "workers";

/// The topic of producer `id`.
pub fn topic(id: u32) -> String {
    format!("{TOPIC_PREFIX}{id}")
}

/// What every thread needs to know.
#[derive(Clone)]
struct Plan {
    deadline: Instant,
    batch: usize,
    payload_size: usize,
    mix: PriorityMix,
    producers: usize,
    interval_us: u64,
    /// Queues each publish must reach: the group and every subscriber.
    queues: usize,
}

// ----- producers -----

/// `size` bytes: `seq` in the first 8, the fill byte in the rest.
fn payload(producer: u32, seq: u64, size: usize) -> Vec<u8> {
    let mut bytes = vec![fill_byte(producer, seq); size];
    bytes[..MIN_PAYLOAD].copy_from_slice(&seq.to_le_bytes());
    bytes
}

/// Publishes until the deadline (blocking on budget and room), one message
/// at a time.
fn run_producer(id: u32, publisher: Publisher, plan: &Plan) -> ProducerResult {
    let mut rng = mix64(u64::from(id) + 1);
    let mut pacer = Pacer::new(plan.interval_us);
    let mut sent = Fingerprint::default();
    let mut error = None;
    let mut short = 0u64;
    loop {
        pacer.pace(plan.deadline);
        if Instant::now() >= plan.deadline {
            break;
        }
        rng = mix64(rng);
        let priority = plan.mix.pick(rng);
        let seq = sent.count;
        let message = Message::new(payload(id, seq, plan.payload_size)).priority(priority);
        match publisher.publish(message) {
            Ok(reached) => {
                sent.add(seq);
                if reached != plan.queues && short == 0 {
                    error = Some(format!(
                        "producer {id} seq {seq}: the publish reached {reached} queues, not {}",
                        plan.queues
                    ));
                }
                short += u64::from(reached != plan.queues);
            }
            Err(e) => {
                error = Some(format!("producer {id} seq {seq}: publish failed: {e}"));
                break;
            }
        }
    }
    if short > 1 {
        if let Some(e) = &mut error {
            e.push_str(&format!(" ({short} publishes fell short)"));
        }
    }
    ProducerResult { sent, error }
}

// ----- consumers -----

/// The producer of a `stress.pN` topic.
fn producer_of(topic: &str) -> Option<u32> {
    topic.strip_prefix(TOPIC_PREFIX)?.parse().ok()
}

fn record(stats: &mut ConsumerStats, env: &Envelope, now_ns: u64, payload_size: usize) {
    let Some(producer) = producer_of(env.topic()) else {
        return stats.error(format!("message on unexpected topic {}", env.topic()));
    };
    let bytes: &[u8] = env.payload();
    let Some(seq) = bytes
        .get(..MIN_PAYLOAD)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    else {
        return stats.error(format!(
            "producer {producer}: payload of {} bytes",
            bytes.len()
        ));
    };
    let fill = fill_byte(producer, seq);
    let rest = &bytes[MIN_PAYLOAD..];
    let ends = [rest.first(), rest.last()];
    let intact = bytes.len() == payload_size && ends.iter().flatten().all(|&&x| x == fill);
    // Wall clock against wall clock: `enqueued_at` is unix nanoseconds.
    let latency = now_ns.saturating_sub(env.enqueued_at());
    stats.record(producer, seq, env.priority(), latency, intact);
}

/// Receives until the bus is closed and the queue drained.
fn run_consumer(sub: Subscription, plan: &Plan, progress: &AtomicU64) -> ConsumerStats {
    let mut stats = ConsumerStats::new(plan.producers);
    let mut buf = Vec::with_capacity(plan.batch);
    loop {
        if plan.batch == 1 {
            let Ok(env) = sub.recv() else { break };
            record(&mut stats, &env, unix_nanos(), plan.payload_size);
        } else {
            if sub.recv_batch(&mut buf, plan.batch).is_err() {
                break;
            }
            let now = unix_nanos();
            for env in buf.drain(..) {
                record(&mut stats, &env, now, plan.payload_size);
            }
        }
        // Relaxed: a progress figure only.
        progress.store(stats.count(), Ordering::Relaxed);
    }
    stats
}

fn spawn_consumer(
    sub: Subscription,
    plan: &Plan,
    counter: &Arc<PaddedCounter>,
) -> JoinHandle<ConsumerStats> {
    let (plan, counter) = (plan.clone(), counter.clone());
    thread::spawn(move || run_consumer(sub, &plan, &counter.0))
}

// ----- running -----

pub fn run(args: &Args, budget: Option<MemoryBudget>) -> Outcome {
    let start = Instant::now();
    let plan = Plan {
        deadline: start + Duration::from_secs(args.duration),
        batch: args.batch_size.get(),
        payload_size: args.payload_size,
        mix: args.priority_mix.clone(),
        producers: args.producers as usize,
        interval_us: args.interval,
        queues: 1 + args.subscribers as usize,
    };
    let mut builder = Bus::builder().capacity(args.capacity.get());
    if let Some(budget) = &budget {
        builder = builder.budget(budget.clone());
    }
    let bus = builder.build();

    // Subscribe everyone before anyone publishes.
    let group = bus.group(PATTERN, GROUP).expect("valid pattern");
    let subscriptions: Vec<Subscription> = (0..args.subscribers)
        .map(|_| bus.subscribe(PATTERN).expect("valid pattern"))
        .collect();
    let progress: Vec<Arc<PaddedCounter>> = (0..args.workers).map(|_| Arc::default()).collect();
    let consumers: Vec<JoinHandle<ConsumerStats>> = progress
        .iter()
        .map(|counter| spawn_consumer(group.clone(), &plan, counter))
        .collect();
    // Subscribers report no progress: the line counts handled messages.
    let idle = Arc::default();
    let subscribers: Vec<(Subscription, JoinHandle<ConsumerStats>)> = subscriptions
        .into_iter()
        .map(|sub| (sub.clone(), spawn_consumer(sub, &plan, &idle)))
        .collect();

    let producers: Vec<JoinHandle<ProducerResult>> = (0..args.producers)
        .map(|id| {
            let publisher = bus.publisher(&topic(id)).expect("valid topic");
            let plan = plan.clone();
            thread::spawn(move || run_producer(id, publisher, &plan))
        })
        .collect();
    // When every producer is done, close the bus: the consumers drain their
    // queues and stop.
    let closer = {
        let bus = bus.clone();
        thread::spawn(move || {
            let results: Vec<ProducerResult> = producers.into_iter().map(join).collect();
            bus.close();
            results
        })
    };
    let done = || {
        let mut all = consumers.iter().chain(subscribers.iter().map(|(_, h)| h));
        all.all(JoinHandle::is_finished)
    };
    let depth = || Priority::ALL.map(|p| group.len_of(p));
    monitor(&progress, done, depth, budget.as_ref(), start);
    let elapsed = start.elapsed();
    let producers = join(closer);
    let workers: Vec<ConsumerStats> = consumers.into_iter().map(join).collect();
    let mut failures = Vec::new();
    let subscribers: Vec<ConsumerStats> = subscribers
        .into_iter()
        .enumerate()
        .map(|(i, (sub, handle))| {
            let stats = join(handle);
            if sub.missed() > 0 {
                failures.push(format!("subscriber {i} missed {} messages", sub.missed()));
            }
            stats
        })
        .collect();
    if group.missed() > 0 {
        failures.push(format!("the group missed {} messages", group.missed()));
    }
    let stats = bus.stats();
    if stats.unrouted > 0 {
        failures.push(format!("{} messages were unrouted", stats.unrouted));
    }
    let sent: u64 = producers
        .iter()
        .map(|p: &ProducerResult| p.sent.count)
        .sum();
    if stats.published != sent {
        failures.push(format!(
            "the bus counted {} publishes, the producers {sent}",
            stats.published
        ));
    }
    Outcome {
        producers,
        workers,
        subscribers,
        elapsed,
        budget: budget.as_ref().map(MemoryBudget::stats),
        failures,
        pool: None,
    }
}
