//! `--mode pool`: the producers of channel mode send on one lanebus channel
//! (plain or budgeted); a `WorkerPool` consumes it.
//!
//! The handler spins for `--handler-us`, then acks, asks for a retry
//! (`--fail-rate` of its attempts) or dead-letters (`--dead-rate` of the
//! messages, on their first attempt). Those decisions are a function of
//! (producer, seq, attempt) — see [`Fate`] — so the checks know what must
//! have happened to every message. With `--keys N` each message has one of
//! N ordering keys, also drawn from (producer, seq).
//!
//! When the producers are done (their senders dropped, so the channel is
//! closed) the pool is shut down (`--shutdown`, deadline
//! `--shutdown-timeout`), and every message sent must turn up exactly once:
//! acked by the handler, in the dead letters (read while the pool runs, as
//! an application would, plus the report's `dead_letters_unsent`), returned
//! unprocessed in the `ShutdownReport`, or left in the channel.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use lanebus::pool::{self, DeadLetter, Delivery, PoolStats, RetryPolicy, Shutdown, WorkerPool};
use lanebus::{ChannelBuilder, MemoryBudget, Priority, Receiver, LANES};

use crate::channel_mode::{spawn_producers, Message, Plan, Received, Tx};
use crate::common::{
    group, join, mix64, monitor_gauges, nanos_since, ConsumerStats, Fingerprint, Gauges, Outcome,
    PaddedCounter, ProducerResult,
};
use crate::Args;

// ----- settings -----

/// Attempts per message, the first included.
pub const MAX_ATTEMPTS: u32 = 3;
/// The backoff after a first failed attempt; it doubles up to `MAX_BACKOFF`.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(1);
pub const MAX_BACKOFF: Duration = Duration::from_millis(10);
pub const MULTIPLIER: f64 = 2.0;

/// The pool's retry policy: 3 attempts, backoff 1 ms doubling to 10 ms
/// (with the default jitter).
pub fn retry_policy() -> RetryPolicy {
    RetryPolicy::attempts(MAX_ATTEMPTS).backoff(INITIAL_BACKOFF, MAX_BACKOFF, MULTIPLIER)
}

/// The reason the handler gives for the messages it dead-letters.
const POISON_REASON: &str = "stress: poison message (--dead-rate)";

/// `--shutdown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ShutdownMode {
    /// `Shutdown::Drain`: handle everything, the channel included.
    Drain,
    /// `Shutdown::Graceful`: finish what the pool took.
    Graceful,
    /// `Shutdown::Immediate`.
    Immediate,
}

impl ShutdownMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownMode::Drain => "drain",
            ShutdownMode::Graceful => "graceful",
            ShutdownMode::Immediate => "immediate",
        }
    }
}

/// The pool-only flags, defaults filled in.
#[derive(Clone, Copy, Debug)]
pub struct PoolSettings {
    pub fail_rate: f64,
    pub dead_rate: f64,
    pub keys: u32,
    pub handler_us: u64,
    pub shutdown: ShutdownMode,
    pub shutdown_timeout_secs: u64,
}

impl PoolSettings {
    pub fn new(args: &Args) -> Self {
        Self {
            fail_rate: args.fail_rate.unwrap_or(0.01),
            dead_rate: args.dead_rate.unwrap_or(0.001),
            keys: args.keys.unwrap_or(0),
            handler_us: args.handler_us.unwrap_or(0),
            shutdown: args.shutdown.unwrap_or(ShutdownMode::Drain),
            shutdown_timeout_secs: args.shutdown_timeout.unwrap_or(30),
        }
    }
}

// ----- the handler's decisions -----

const KEY_SALT: u64 = 0x6b65_7973_0000_0001;
const POISON_SALT: u64 = 0x6465_6164_0000_0002;
const FAIL_SALT: u64 = 0x6661_696c_0000_0003;

/// A well-mixed hash of a message's identity.
fn id_hash(producer: u32, seq: u64) -> u64 {
    mix64(mix64(u64::from(producer)) ^ seq)
}

/// True with probability `rate` for a uniformly random `h`.
fn chance(rate: f64, h: u64) -> bool {
    rate >= 1.0 || ((h >> 11) as f64) < rate * (1u64 << 53) as f64
}

/// What the handler does with one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    Ack,
    Retry,
    DeadLetter,
}

/// The handler's decisions, and each message's key: functions of
/// (producer, seq, attempt) only.
#[derive(Clone, Copy, Debug)]
struct Fate {
    fail_rate: f64,
    dead_rate: f64,
    keys: u32,
}

impl Fate {
    fn key(&self, producer: u32, seq: u64) -> Option<u64> {
        (self.keys > 0).then(|| mix64(id_hash(producer, seq) ^ KEY_SALT) % u64::from(self.keys))
    }

    fn poison(&self, producer: u32, seq: u64) -> bool {
        chance(self.dead_rate, mix64(id_hash(producer, seq) ^ POISON_SALT))
    }

    fn fails(&self, producer: u32, seq: u64, attempt: u32) -> bool {
        let salt = FAIL_SALT.wrapping_add(u64::from(attempt));
        chance(self.fail_rate, mix64(id_hash(producer, seq) ^ salt))
    }

    fn decide(&self, producer: u32, seq: u64, attempt: u32) -> Decision {
        if self.poison(producer, seq) {
            Decision::DeadLetter
        } else if self.fails(producer, seq, attempt) {
            Decision::Retry
        } else {
            Decision::Ack
        }
    }

    /// How a message that is handled to the end ends: on which attempt,
    /// and whether it is acked there (else dead-lettered).
    fn end(&self, producer: u32, seq: u64) -> (u32, bool) {
        if self.poison(producer, seq) {
            return (1, false);
        }
        match (1..=MAX_ATTEMPTS).find(|&a| !self.fails(producer, seq, a)) {
            Some(a) => (a, true),
            None => (MAX_ATTEMPTS, false),
        }
    }
}

// ----- what the handler records -----

/// Counts of one worker's handler calls.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    calls: u64,
    acks: u64,
    /// Retry asked for below the last attempt (the pool retries).
    retries: u64,
    /// Retry asked for on the last attempt (the pool dead-letters).
    exhausted: u64,
    /// DeadLetter returned.
    poisoned: u64,
    /// Attempts made on the messages this worker settled.
    settled_attempts: u64,
}

impl Tally {
    fn merge(&mut self, o: &Tally) {
        self.calls += o.calls;
        self.acks += o.acks;
        self.retries += o.retries;
        self.exhausted += o.exhausted;
        self.poisoned += o.poisoned;
        self.settled_attempts += o.settled_attempts;
    }
}

/// One worker's records.
struct Slot {
    /// First attempts: latency from the send, the fingerprint of the
    /// messages handled, payload and check errors.
    first: ConsumerStats,
    /// Per producer: the messages acked.
    acked: Vec<Fingerprint>,
    tally: Tally,
}

/// The ordering checks of one key.
#[derive(Default)]
struct KeyState {
    /// A handler runs on one of its messages.
    busy: bool,
    /// The message (producer, seq) waiting for its retry: the key's next
    /// handler call must be that one.
    retrying: Option<(u32, u64)>,
    /// Per producer and lane: 1 + seq of the last first attempt (0: none).
    last: Vec<[u64; LANES]>,
}

fn lock<U>(m: &Mutex<U>) -> MutexGuard<'_, U> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

thread_local! {
    /// This worker thread's slot (`usize::MAX`: none yet).
    static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// What the handler shares with the run.
struct Shared {
    fate: Fate,
    start: Instant,
    payload_size: usize,
    producers: usize,
    spin: Duration,
    slots: Vec<Mutex<Slot>>,
    progress: Vec<Arc<PaddedCounter>>,
    next_slot: AtomicUsize,
    /// Indexed by key; empty without keys.
    keys: Vec<Mutex<KeyState>>,
    /// Messages sent, once every producer is done (`u64::MAX` before).
    sent: AtomicU64,
}

impl Shared {
    /// This thread's slot: each worker takes the next free one on its first
    /// call (one slot per worker; a mutex each, so sharing would be safe).
    fn slot(&self) -> usize {
        SLOT.with(|s| {
            if s.get() == usize::MAX {
                s.set(self.next_slot.fetch_add(1, Ordering::Relaxed) % self.slots.len());
            }
            s.get()
        })
    }

    /// A handler call on a keyed message starts: nothing else of the key
    /// may be in a handler; a retry must be the one the key waits for; first
    /// attempts must come in order per producer and lane.
    fn enter_key(&self, key: u64, msg: &Message, lane: usize, attempt: u32) -> Vec<String> {
        let mut errors = Vec::new();
        let (p, seq) = (msg.producer, msg.seq);
        let mut k = lock(&self.keys[key as usize]);
        if k.busy {
            errors.push(format!(
                "key {key}: producer {p} seq {seq} handled while another message \
                 of the key was in the handler"
            ));
        }
        k.busy = true;
        match k.retrying {
            Some(r) if r != (p, seq) => errors.push(format!(
                "key {key}: producer {p} seq {seq} (attempt {attempt}) handled while \
                 producer {} seq {} waited for its retry",
                r.0, r.1
            )),
            Some(_) if attempt == 1 => errors.push(format!(
                "key {key}: producer {p} seq {seq} handled as a first attempt again"
            )),
            Some(_) => k.retrying = None,
            None if attempt > 1 => errors.push(format!(
                "key {key}: attempt {attempt} of producer {p} seq {seq}, but no retry \
                 of the key was pending"
            )),
            None => {}
        }
        if attempt == 1 {
            if k.last.is_empty() {
                k.last = vec![[0; LANES]; self.producers];
            }
            if let Some(last) = k.last.get_mut(p as usize) {
                if last[lane] > seq {
                    errors.push(format!(
                        "key {key}, producer {p}, lane {}: seq {seq} handled after seq {}",
                        Priority::ALL[lane],
                        last[lane] - 1
                    ));
                }
                last[lane] = last[lane].max(seq + 1);
            }
        }
        errors
    }

    /// The handler call ends; `retrying`: the message will be retried.
    fn leave_key(&self, key: u64, retrying: Option<(u32, u64)>) {
        let mut k = lock(&self.keys[key as usize]);
        k.busy = false;
        if retrying.is_some() {
            k.retrying = retrying;
        }
    }

    /// Messages the pool has yet to settle, while it shuts down (its
    /// `stats` are out of reach then): sent, less those in the channel and
    /// those the handler settled.
    fn unsettled(&self, in_channel: usize) -> Option<u64> {
        let sent = self.sent.load(Ordering::Relaxed);
        if sent == u64::MAX {
            return None;
        }
        let settled: u64 = self
            .slots
            .iter()
            .map(|slot| {
                let t = lock(slot).tally;
                t.acks + t.poisoned + t.exhausted
            })
            .sum();
        Some(sent.saturating_sub(in_channel as u64 + settled))
    }

    /// The handler.
    fn handle<T: Received>(&self, d: &Delivery<T>) -> pool::Outcome {
        let entered = Instant::now();
        let msg = d.payload().message();
        let (producer, seq, attempt) = (msg.producer, msg.seq, d.attempt());
        let mut errors = Vec::new();
        if d.priority() != msg.priority {
            errors.push(format!(
                "producer {producer} seq {seq}: sent on {}, delivered from {}",
                msg.priority,
                d.priority()
            ));
        }
        let (last_attempt, _) = self.fate.end(producer, seq);
        if attempt == 0 || attempt > last_attempt {
            errors.push(format!(
                "producer {producer} seq {seq}: attempt {attempt}, but its attempt \
                 {last_attempt} is its last"
            ));
        }
        let key = d.key();
        if key != self.fate.key(producer, seq) {
            errors.push(format!(
                "producer {producer} seq {seq}: delivered with key {key:?}, not {:?}",
                self.fate.key(producer, seq)
            ));
        }
        let key = key.filter(|&k| k < self.keys.len() as u64);
        if let Some(k) = key {
            errors.extend(self.enter_key(k, msg, d.priority().index(), attempt));
        }
        while entered.elapsed() < self.spin {
            std::hint::spin_loop();
        }
        let decision = self.fate.decide(producer, seq, attempt);
        let retrying = decision == Decision::Retry && attempt < MAX_ATTEMPTS;
        if let Some(k) = key {
            self.leave_key(k, retrying.then_some((producer, seq)));
        }

        let i = self.slot();
        let mut slot = lock(&self.slots[i]);
        slot.tally.calls += 1;
        if attempt == 1 {
            let latency = nanos_since(self.start, entered).saturating_sub(msg.sent_ns);
            let intact = msg.is_intact(self.payload_size);
            slot.first
                .record(producer, seq, d.priority(), latency, intact);
            // Relaxed: a progress figure only.
            self.progress[i]
                .0
                .store(slot.first.count(), Ordering::Relaxed);
        }
        for e in errors {
            slot.first.error(e);
        }
        match decision {
            Decision::Ack => {
                slot.tally.acks += 1;
                slot.tally.settled_attempts += u64::from(attempt);
                if let Some(fp) = slot.acked.get_mut(producer as usize) {
                    fp.add(seq);
                }
                pool::Outcome::Ack
            }
            Decision::DeadLetter => {
                slot.tally.poisoned += 1;
                slot.tally.settled_attempts += u64::from(attempt);
                pool::Outcome::DeadLetter(POISON_REASON.into())
            }
            Decision::Retry if retrying => {
                slot.tally.retries += 1;
                pool::Outcome::Retry
            }
            Decision::Retry => {
                slot.tally.exhausted += 1;
                slot.tally.settled_attempts += u64::from(attempt);
                pool::Outcome::Retry
            }
        }
    }
}

// ----- what is found after the run -----

/// Messages found in one place: the dead letters, the unprocessed, the
/// channel.
struct Found {
    per_producer: Vec<Fingerprint>,
    count: u64,
    errors: Vec<String>,
    error_count: u64,
}

impl Found {
    fn new(producers: usize) -> Self {
        Self {
            per_producer: vec![Fingerprint::default(); producers],
            count: 0,
            errors: Vec::new(),
            error_count: 0,
        }
    }

    fn error(&mut self, text: String) {
        self.error_count += 1;
        if self.errors.len() < 5 {
            self.errors.push(text);
        }
    }

    /// Adds `msg`, found on the lane of `priority`, as `what`.
    fn add(&mut self, what: &str, msg: &Message, priority: Priority, payload_size: usize) {
        self.count += 1;
        let (p, seq) = (msg.producer, msg.seq);
        match self.per_producer.get_mut(p as usize) {
            Some(fp) => fp.add(seq),
            None => return self.error(format!("{what}: message from unknown producer {p}")),
        }
        if priority != msg.priority {
            self.error(format!(
                "{what}: producer {p} seq {seq}: sent on {}, found on {priority}",
                msg.priority
            ));
        }
        if !msg.is_intact(payload_size) {
            self.error(format!("{what}: producer {p} seq {seq}: corrupt payload"));
        }
    }

    /// The errors, each prefixed.
    fn lines(&self, out: &mut Vec<String>) {
        out.extend(self.errors.iter().cloned());
        if self.error_count > self.errors.len() as u64 {
            let more = self.error_count - self.errors.len() as u64;
            out.push(format!("... and {more} more errors"));
        }
    }
}

/// Checks a dead letter against the fate of its message.
fn check_letter<T: Received>(
    what: &str,
    letter: &DeadLetter<T>,
    fate: &Fate,
    found: &mut Found,
    payload_size: usize,
) {
    let msg = letter.payload.message();
    found.add(what, msg, letter.priority, payload_size);
    let (p, seq) = (msg.producer, msg.seq);
    let (last, acked) = fate.end(p, seq);
    if acked || letter.attempts != last {
        found.error(format!(
            "{what}: producer {p} seq {seq} after {} attempts ({}), but it must be {} \
             on attempt {last}",
            letter.attempts,
            letter.reason,
            if acked { "acked" } else { "dead-lettered" }
        ));
    } else if fate.poison(p, seq) && letter.reason != POISON_REASON {
        found.error(format!(
            "{what}: producer {p} seq {seq}: reason {:?}, not the handler's",
            letter.reason
        ));
    }
    if letter.key != fate.key(p, seq) {
        found.error(format!(
            "{what}: producer {p} seq {seq}: key {:?}, not {:?}",
            letter.key,
            fate.key(p, seq)
        ));
    }
}

/// Reads the dead letters until the pool is gone (as an application would;
/// unread, they would fill the dead-letter queue and hold the pool up).
fn read_dead_letters<T: Received>(
    dead: Receiver<DeadLetter<T>>,
    fate: Fate,
    producers: usize,
    payload_size: usize,
) -> Found {
    let mut found = Found::new(producers);
    for letter in dead.iter() {
        check_letter("dead letter", &letter, &fate, &mut found, payload_size);
    }
    found
}

// ----- the summary -----

/// What the pool did, for the reports and the verification.
#[derive(Clone)]
pub struct PoolSummary {
    pub settings: PoolSettings,
    pub sent: u64,
    /// From the `ShutdownReport`.
    pub taken: u64,
    pub acked: u64,
    pub dead_lettered: u64,
    pub dead_letters_unsent: u64,
    pub retries: u64,
    pub panics: u64,
    pub unprocessed: u64,
    pub timed_out: bool,
    /// Messages still in the channel after the shutdown.
    pub left_in_channel: u64,
    /// How long `shutdown` took.
    pub shutdown_took: Duration,
    /// The pool's own figures, read just before the shutdown.
    pub stats: PoolStats,
    /// Per producer: acked + dead-lettered + unprocessed + left in the
    /// channel (must equal what it sent).
    pub accounted: Vec<Fingerprint>,
}

// ----- running -----

/// What the closing thread returns.
struct Closed<T> {
    producers: Vec<ProducerResult>,
    stats: PoolStats,
    report: pool::ShutdownReport<T>,
    took: Duration,
}

/// Runs the pool on `rx` and the producers on `tx`, shuts the pool down
/// when the producers are done, and accounts for every message.
fn run_with<T: Received>(
    tx: Tx,
    rx: Receiver<T>,
    plan: &Plan,
    args: &Args,
    budget: Option<&MemoryBudget>,
) -> Outcome {
    let settings = PoolSettings::new(args);
    let fate = Fate {
        fail_rate: settings.fail_rate,
        dead_rate: settings.dead_rate,
        keys: settings.keys,
    };
    let workers = args.workers as usize;
    let progress: Vec<Arc<PaddedCounter>> = (0..workers).map(|_| Arc::default()).collect();
    let shared = Arc::new(Shared {
        fate,
        start: plan.start,
        payload_size: plan.payload_size,
        producers: plan.producers,
        spin: Duration::from_micros(settings.handler_us),
        slots: (0..workers)
            .map(|_| {
                Mutex::new(Slot {
                    first: ConsumerStats::unordered(plan.producers),
                    acked: vec![Fingerprint::default(); plan.producers],
                    tally: Tally::default(),
                })
            })
            .collect(),
        progress: progress.clone(),
        next_slot: AtomicUsize::new(0),
        keys: (0..settings.keys).map(|_| Mutex::default()).collect(),
        sent: AtomicU64::new(u64::MAX),
    });

    let mut builder = WorkerPool::builder()
        .workers(workers)
        .batch_size(plan.batch)
        .retry(retry_policy())
        .thread_name("stress-pool");
    if settings.keys > 0 {
        builder = builder.key(move |m: &T| {
            let m = m.message();
            fate.key(m.producer, m.seq)
        });
    }
    // A second receiver: the queue depth while the pool runs, and what is
    // left in the channel after it.
    let channel = rx.clone();
    let handler = {
        let shared = shared.clone();
        move |d: &Delivery<T>| shared.handle(d)
    };
    let pool = builder.build(rx, handler);
    let dead_reader = {
        let dead = pool.dead_letters();
        let (producers, payload_size) = (plan.producers, plan.payload_size);
        thread::spawn(move || read_dead_letters(dead, fate, producers, payload_size))
    };
    let pool = Arc::new(Mutex::new(Some(pool)));
    let producers = spawn_producers(tx, plan);

    // When every producer is done (the channel is closed), shut the pool
    // down.
    let closer: JoinHandle<Closed<T>> = {
        let (pool, shared) = (pool.clone(), shared.clone());
        let timeout = Duration::from_secs(settings.shutdown_timeout_secs);
        thread::spawn(move || {
            let producers: Vec<ProducerResult> = producers.into_iter().map(join).collect();
            let sent = producers.iter().map(|p| p.sent.count).sum();
            shared.sent.store(sent, Ordering::Relaxed);
            drop(shared);
            let pool = lock(&pool).take().expect("the pool runs until now");
            let stats = pool.stats();
            let begun = Instant::now();
            let deadline = begun + timeout;
            let report = pool.shutdown(match settings.shutdown {
                ShutdownMode::Drain => Shutdown::Drain { deadline },
                ShutdownMode::Graceful => Shutdown::Graceful { deadline },
                ShutdownMode::Immediate => Shutdown::Immediate,
            });
            Closed {
                producers,
                stats,
                report,
                took: begun.elapsed(),
            }
        })
    };
    let gauges = || {
        let lanes = Priority::ALL.map(|p| channel.len_of(p));
        match lock(&pool).as_ref().map(WorkerPool::stats) {
            Some(s) => Gauges {
                lanes,
                in_pool: Some(s.in_pool),
                extra: format!(
                    "   retries {}   dead letters {}",
                    group(s.retried),
                    group(s.dead_lettered)
                ),
            },
            None => Gauges {
                lanes,
                in_pool: shared.unsettled(lanes.iter().sum()),
                extra: format!("   shutting down ({})", settings.shutdown.as_str()),
            },
        }
    };
    monitor_gauges(
        &progress,
        || closer.is_finished(),
        gauges,
        budget,
        plan.start,
    );
    let elapsed = plan.start.elapsed();
    let Closed {
        producers,
        stats,
        report,
        took,
    } = join(closer);
    // The pool is gone with its dead-letter sender: the reader stops.
    let dead = join(dead_reader);

    let mut failures = Vec::new();
    let mut unsent = Found::new(plan.producers);
    for letter in &report.dead_letters_unsent {
        check_letter(
            "unsent dead letter",
            letter,
            &fate,
            &mut unsent,
            plan.payload_size,
        );
    }
    let mut unprocessed = Found::new(plan.producers);
    // Never handled: counts as a first attempt that did not happen.
    let mut untouched = Found::new(plan.producers);
    let mut unprocessed_attempts = 0u64;
    for u in &report.unprocessed {
        let msg = u.payload.message();
        unprocessed.add("unprocessed", msg, u.priority, plan.payload_size);
        unprocessed_attempts += u64::from(u.attempts);
        let (last, _) = fate.end(msg.producer, msg.seq);
        if u.attempts >= last {
            unprocessed.error(format!(
                "unprocessed: producer {} seq {} after {} attempts, but attempt {last} \
                 settles it",
                msg.producer, msg.seq, u.attempts
            ));
        }
        if u.attempts == 0 {
            untouched.add("unprocessed", msg, u.priority, plan.payload_size);
        }
    }
    if report
        .unprocessed
        .windows(2)
        .any(|w| w[0].priority > w[1].priority)
    {
        failures.push("the unprocessed messages are not highest priority first".into());
    }
    let mut left = Found::new(plan.producers);
    while let Ok(item) = channel.try_recv() {
        let msg = item.message();
        left.add("left in the channel", msg, msg.priority, plan.payload_size);
    }

    let mut tally = Tally::default();
    let mut acked = vec![Fingerprint::default(); plan.producers];
    let mut first = vec![Fingerprint::default(); plan.producers];
    let slots: Vec<Slot> = Arc::into_inner(shared)
        .expect("the pool dropped its handler")
        .slots
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect();
    for slot in &slots {
        tally.merge(&slot.tally);
        for (id, fp) in slot.acked.iter().enumerate() {
            acked[id].merge(fp);
        }
        for (id, fp) in slot.first.received.iter().enumerate() {
            first[id].merge(fp);
        }
    }
    let sent: u64 = producers.iter().map(|p| p.sent.count).sum();
    let mut accounted = acked;
    for (id, fp) in accounted.iter_mut().enumerate() {
        for place in [&dead, &unsent, &unprocessed, &left] {
            fp.merge(&place.per_producer[id]);
        }
    }
    // Every message is handled a first time exactly once, unless it never
    // was (unprocessed with no attempt, or left in the channel).
    for (id, p) in producers.iter().enumerate() {
        let mut got = first[id];
        got.merge(&untouched.per_producer[id]);
        got.merge(&left.per_producer[id]);
        if got != p.sent {
            failures.push(format!(
                "producer {id}: sent {} (seq sum {}, hash sum {:#x}), first handled or never \
                 handled {} (seq sum {}, hash sum {:#x})",
                p.sent.count, p.sent.seq_sum, p.sent.hash_sum, got.count, got.seq_sum, got.hash_sum
            ));
        }
    }

    // The shutdown report against the handler's own counts.
    let r = &report;
    let n_unprocessed = r.unprocessed.len() as u64;
    let mut expect = |what: &str, pool: u64, ours: u64, theirs: &str| {
        if pool != ours {
            failures.push(format!(
                "ShutdownReport.{what} is {}, {theirs} {}",
                group(pool),
                group(ours)
            ));
        }
    };
    expect(
        "taken",
        r.taken,
        sent - left.count,
        "sent - left in the channel is",
    );
    expect("acked", r.acked, tally.acks, "the handler acked");
    expect(
        "dead_lettered",
        r.dead_lettered,
        tally.poisoned + tally.exhausted,
        "the handler dead-lettered or exhausted",
    );
    expect(
        "dead_lettered",
        r.dead_lettered,
        dead.count + unsent.count,
        "dead letters read + unsent:",
    );
    expect("retries", r.retries, tally.retries, "the handler asked for");
    expect("panics", r.panics, 0, "the handler panics");
    if !r.is_consistent() {
        failures.push(format!(
            "ShutdownReport is not consistent: taken {} != acked {} + dead-lettered {} + \
             unprocessed {}",
            r.taken, r.acked, r.dead_lettered, n_unprocessed
        ));
    }
    if tally.calls != tally.settled_attempts + unprocessed_attempts {
        failures.push(format!(
            "{} handler calls, but the settled and unprocessed messages account for {} \
             attempts (a delivery repeated or lost?)",
            group(tally.calls),
            group(tally.settled_attempts + unprocessed_attempts)
        ));
    }
    let deadline_mode = settings.shutdown != ShutdownMode::Immediate;
    if r.timed_out {
        failures.push(format!(
            "the {} shutdown did not finish within --shutdown-timeout {} s \
             ({} messages unprocessed)",
            settings.shutdown.as_str(),
            settings.shutdown_timeout_secs,
            group(n_unprocessed)
        ));
    } else if deadline_mode && n_unprocessed > 0 {
        failures.push(format!(
            "the {} shutdown finished in time but returned {} messages unprocessed",
            settings.shutdown.as_str(),
            group(n_unprocessed)
        ));
    }
    if settings.shutdown == ShutdownMode::Drain && left.count > 0 {
        failures.push(format!(
            "{} messages left in the channel after a drain",
            group(left.count)
        ));
    }
    for place in [&dead, &unsent, &unprocessed, &left] {
        place.lines(&mut failures);
    }

    let summary = PoolSummary {
        settings,
        sent,
        taken: r.taken,
        acked: r.acked,
        dead_lettered: r.dead_lettered,
        dead_letters_unsent: r.dead_letters_unsent.len() as u64,
        retries: r.retries,
        panics: r.panics,
        unprocessed: n_unprocessed,
        timed_out: r.timed_out,
        left_in_channel: left.count,
        shutdown_took: took,
        stats,
        accounted,
    };
    // Every message (and its budget permit) is dropped before the budget
    // is read.
    drop(report);
    drop(channel);
    Outcome {
        producers,
        workers: slots.into_iter().map(|s| s.first).collect(),
        subscribers: Vec::new(),
        elapsed,
        budget: budget.map(MemoryBudget::stats),
        failures,
        pool: Some(summary),
    }
}

pub fn run(args: &Args, budget: Option<MemoryBudget>) -> Outcome {
    let plan = Plan::new(args, Instant::now());
    let builder = ChannelBuilder::new().capacity(args.capacity.get());
    match budget {
        None => {
            let (tx, rx) = builder.build::<Message>();
            run_with(Tx::Plain(tx), rx, &plan, args, None)
        }
        Some(budget) => {
            let (tx, rx) = builder.build_budgeted::<Message>(budget.clone());
            run_with(Tx::Budgeted(tx), rx, &plan, args, Some(&budget))
        }
    }
}
