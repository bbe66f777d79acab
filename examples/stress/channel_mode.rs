//! `--mode channel`: producers and consumers on one lanebus channel, plain
//! or budgeted (`ChannelBuilder::build_budgeted`).
//!
//! `--mode pool` sends the same messages with the same producers (see
//! `pool_mode`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use lanebus::{
    BudgetedSender, ChannelBuilder, MemoryBudget, Permitted, Priority, PublishError, Receiver,
    Sender, Weigh,
};

use crate::common::{
    fill_byte, join, mix64, monitor, nanos_since, ConsumerStats, Fingerprint, Outcome, Pacer,
    PaddedCounter, PriorityMix, ProducerResult,
};
use crate::Args;

// ----- messages -----

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

pub struct Message {
    pub producer: u32,
    pub seq: u64,
    /// Nanoseconds from the shared start to the send.
    pub sent_ns: u64,
    pub priority: Priority,
    payload: Payload,
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

    /// True if the payload is the one its producer sent with this `seq`.
    pub fn is_intact(&self, payload_size: usize) -> bool {
        self.payload
            .is_intact(payload_size, fill_byte(self.producer, self.seq))
    }
}

/// Under `--budget`, a message weighs its own size plus its heap payload.
impl Weigh for Message {
    fn weight(&self) -> usize {
        match &self.payload {
            Payload::Inline { .. } => std::mem::size_of::<Self>(),
            Payload::Heap(b) => std::mem::size_of::<Self>() + b.len(),
        }
    }
}

/// The budget weight of a message with `payload_size` bytes.
pub fn message_weight(payload_size: usize) -> usize {
    if payload_size <= INLINE {
        std::mem::size_of::<Message>()
    } else {
        std::mem::size_of::<Message>() + payload_size
    }
}

/// What consumers receive: a message, or one with its budget permit.
pub trait Received: Send + 'static {
    fn message(&self) -> &Message;
}

impl Received for Message {
    fn message(&self) -> &Message {
        self
    }
}

impl Received for Permitted<Message> {
    fn message(&self) -> &Message {
        self
    }
}

// ----- producers -----

/// What every thread needs to know.
#[derive(Clone)]
pub struct Plan {
    pub start: Instant,
    pub deadline: Instant,
    pub batch: usize,
    pub payload_size: usize,
    pub mix: PriorityMix,
    pub producers: usize,
    pub interval_us: u64,
}

impl Plan {
    /// The plan of a run that starts at `start`.
    pub fn new(args: &Args, start: Instant) -> Self {
        Self {
            start,
            deadline: start + Duration::from_secs(args.duration),
            batch: args.batch_size.get(),
            payload_size: args.payload_size,
            mix: args.priority_mix.clone(),
            producers: args.producers as usize,
            interval_us: args.interval,
        }
    }
}

/// The sending side: a plain or a budgeted sender.
#[derive(Clone)]
pub enum Tx {
    Plain(Sender<Message>),
    Budgeted(BudgetedSender<Message>),
}

/// A failed send: the channel closed (the normal end), or an error to report.
enum SendFailure {
    Closed,
    Error(String),
}

fn budget_failure(e: &PublishError<Message>) -> SendFailure {
    match e {
        PublishError::Closed(_) => SendFailure::Closed,
        e => SendFailure::Error(format!("budgeted send failed: {e}")),
    }
}

impl Tx {
    fn send(&self, priority: Priority, msg: Message) -> Result<(), SendFailure> {
        match self {
            Tx::Plain(tx) => tx.send_with(priority, msg).map_err(|_| SendFailure::Closed),
            Tx::Budgeted(tx) => tx.send_with(priority, msg).map_err(|e| budget_failure(&e)),
        }
    }

    /// Sends `batch`, leaving what was not sent in it.
    fn send_batch(&self, priority: Priority, batch: &mut Vec<Message>) -> Result<(), SendFailure> {
        match self {
            Tx::Plain(tx) => tx
                .send_batch_with(priority, batch)
                .map_err(|_| SendFailure::Closed),
            // No batch form: one at a time, oldest first.
            Tx::Budgeted(tx) => {
                batch.reverse();
                while let Some(msg) = batch.pop() {
                    if let Err(e) = tx.send_with(priority, msg) {
                        let failure = budget_failure(&e);
                        batch.push(e.into_inner());
                        batch.reverse();
                        return Err(failure);
                    }
                }
                Ok(())
            }
        }
    }
}

/// One producer thread's state.
struct Producer<'a> {
    id: u32,
    tx: Tx,
    plan: &'a Plan,
    /// The fingerprint of what was sent so far; `count` is the next `seq`.
    sent: Fingerprint,
    batch: Vec<Message>,
}

impl<'a> Producer<'a> {
    fn new(id: u32, tx: Tx, plan: &'a Plan) -> Self {
        Self {
            id,
            tx,
            plan,
            sent: Fingerprint::default(),
            batch: Vec::with_capacity(plan.batch),
        }
    }

    /// Sends until the deadline (or until the channel closes early), then
    /// drops its sender.
    fn run(mut self) -> ProducerResult {
        let mut rng = mix64(u64::from(self.id) + 1);
        let mut pacer = Pacer::new(self.plan.interval_us);
        loop {
            pacer.pace(self.plan.deadline);
            let now = Instant::now();
            if now >= self.plan.deadline {
                return self.done(None);
            }
            rng = mix64(rng);
            let priority = self.plan.mix.pick(rng);
            let stamp = nanos_since(self.plan.start, now);
            let sent = if self.plan.batch == 1 {
                self.send_one(priority, stamp)
            } else {
                self.send_batch(priority, stamp)
            };
            match sent {
                Ok(()) => {}
                Err(SendFailure::Closed) => return self.done(None),
                Err(SendFailure::Error(e)) => {
                    let e = format!("producer {} seq {}: {e}", self.id, self.sent.count);
                    return self.done(Some(e));
                }
            }
        }
    }

    fn done(self, error: Option<String>) -> ProducerResult {
        ProducerResult {
            sent: self.sent,
            error,
        }
    }

    fn message(&self, seq: u64, priority: Priority, stamp: u64) -> Message {
        Message::new(self.id, seq, priority, stamp, self.plan.payload_size)
    }

    fn send_one(&mut self, priority: Priority, stamp: u64) -> Result<(), SendFailure> {
        let seq = self.sent.count;
        let msg = self.message(seq, priority, stamp);
        self.tx.send(priority, msg)?;
        self.sent.add(seq);
        Ok(())
    }

    /// Sends `plan.batch` messages; on failure only the messages that went
    /// out count.
    fn send_batch(&mut self, priority: Priority, stamp: u64) -> Result<(), SendFailure> {
        let first = self.sent.count;
        let seqs = first..first + self.plan.batch as u64;
        let mut batch = std::mem::take(&mut self.batch);
        batch.extend(seqs.map(|seq| self.message(seq, priority, stamp)));
        let result = self.tx.send_batch(priority, &mut batch);
        // The unsent messages, if any, stay in `batch`.
        let went = (self.plan.batch - batch.len()) as u64;
        for seq in first..first + went {
            self.sent.add(seq);
        }
        batch.clear();
        self.batch = batch;
        result
    }
}

// ----- consumers -----

fn record(stats: &mut ConsumerStats, msg: &Message, now_ns: u64, payload_size: usize) {
    let intact = msg.is_intact(payload_size);
    let latency = now_ns.saturating_sub(msg.sent_ns);
    stats.record(msg.producer, msg.seq, msg.priority, latency, intact);
}

/// Receives until the channel is closed and empty, publishing its count in
/// `progress`.
fn run_consumer<T: Received>(rx: Receiver<T>, plan: &Plan, progress: &AtomicU64) -> ConsumerStats {
    let mut stats = ConsumerStats::new(plan.producers);
    let mut buf = Vec::with_capacity(plan.batch);
    loop {
        if plan.batch == 1 {
            let Ok(msg) = rx.recv() else { break };
            let now = nanos_since(plan.start, Instant::now());
            record(&mut stats, msg.message(), now, plan.payload_size);
        } else {
            if rx.recv_batch(&mut buf, plan.batch).is_err() {
                break;
            }
            let now = nanos_since(plan.start, Instant::now());
            for msg in buf.drain(..) {
                record(&mut stats, msg.message(), now, plan.payload_size);
            }
        }
        // Relaxed: a progress figure only.
        progress.store(stats.count(), Ordering::Relaxed);
    }
    stats
}

// ----- running -----

/// Starts `plan.producers` producers on `tx`; each drops its sender when it
/// is done, so the channel closes after the last one.
pub fn spawn_producers(tx: Tx, plan: &Plan) -> Vec<JoinHandle<ProducerResult>> {
    (0..plan.producers as u32)
        .map(|id| {
            let (tx, plan) = (tx.clone(), plan.clone());
            thread::spawn(move || Producer::new(id, tx, &plan).run())
        })
        .collect()
}

fn spawn_consumers<T: Received>(
    rx: &Receiver<T>,
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

/// Runs consumers on `rx` and producers on `tx` until the producers are
/// done and the channel is drained.
fn run_with<T: Received>(
    tx: Tx,
    rx: Receiver<T>,
    plan: &Plan,
    workers: u32,
    budget: Option<&MemoryBudget>,
) -> Outcome {
    let progress: Vec<Arc<PaddedCounter>> = (0..workers).map(|_| Arc::default()).collect();
    let consumers = spawn_consumers(&rx, plan, &progress);
    let producers = spawn_producers(tx, plan);
    // The last producer to finish drops the last sender; `rx` stays for
    // the progress line's queue depth.
    let depth = || Priority::ALL.map(|p| rx.len_of(p));
    let done = || consumers.iter().all(JoinHandle::is_finished);
    monitor(&progress, done, depth, budget, plan.start);
    let elapsed = plan.start.elapsed();
    let producers = producers.into_iter().map(join).collect();
    let workers = consumers.into_iter().map(join).collect();
    Outcome {
        producers,
        workers,
        subscribers: Vec::new(),
        elapsed,
        budget: budget.map(MemoryBudget::stats),
        failures: Vec::new(),
        pool: None,
    }
}

pub fn run(args: &Args, budget: Option<MemoryBudget>) -> Outcome {
    let plan = Plan::new(args, Instant::now());
    let builder = ChannelBuilder::new().capacity(args.capacity.get());
    match budget {
        None => {
            let (tx, rx) = builder.build::<Message>();
            run_with(Tx::Plain(tx), rx, &plan, args.workers, None)
        }
        Some(budget) => {
            let (tx, rx) = builder.build_budgeted::<Message>(budget.clone());
            run_with(Tx::Budgeted(tx), rx, &plan, args.workers, Some(&budget))
        }
    }
}
