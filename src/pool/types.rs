//! The pool's public vocabulary: deliveries, outcomes, policies, reports.

use core::fmt;
use core::ops::Deref;
use std::time::{Duration, Instant};

use crate::Priority;

/// One message handed to a handler, with what the pool knows about it.
///
/// Derefs to the payload. The pool keeps ownership (a retry needs the
/// message back), so handlers get `&Delivery<T>`.
pub struct Delivery<T> {
    pub(crate) payload: T,
    pub(crate) priority: Priority,
    pub(crate) key: Option<u64>,
    pub(crate) attempt: u32,
    pub(crate) enqueued_at: Instant,
}

impl<T> Delivery<T> {
    /// The message.
    pub fn payload(&self) -> &T {
        &self.payload
    }

    /// The lane it came from; a retry keeps it.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// Its ordering key: messages with the same key are handled one at a
    /// time, in the order they were taken from their lane.
    pub fn key(&self) -> Option<u64> {
        self.key
    }

    /// Which attempt this is: 1 for the first delivery.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// When the message was enqueued: the envelope's stamp for a bus
    /// subscription, or when the pool took it from a channel (a channel
    /// stamps nothing).
    pub fn enqueued_at(&self) -> Instant {
        self.enqueued_at
    }
}

impl<T> Deref for Delivery<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.payload
    }
}

impl<T> fmt::Debug for Delivery<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("priority", &self.priority)
            .field("key", &self.key)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// What a handler decided about a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done: the message is settled.
    Ack,
    /// Failed: try again after the retry policy's backoff, or dead-letter
    /// it if that was the last attempt.
    Retry,
    /// As [`Outcome::Retry`], after this delay instead of the backoff.
    RetryAfter(Duration),
    /// Give up now: send it to the dead letters with this reason.
    DeadLetter(String),
}

/// Handles deliveries; implemented for every
/// `Fn(&Delivery<T>) -> Outcome + Send + Sync`.
///
/// Workers call one shared handler concurrently. A panic is caught and
/// counted as a failed attempt of that message (see [`RetryPolicy`]).
pub trait Handler<T>: Send + Sync + 'static {
    /// Handles one delivery.
    fn handle(&self, delivery: &Delivery<T>) -> Outcome;
}

impl<T, F> Handler<T> for F
where
    F: Fn(&Delivery<T>) -> Outcome + Send + Sync + 'static,
{
    fn handle(&self, delivery: &Delivery<T>) -> Outcome {
        self(delivery)
    }
}

/// How often and how soon a failed message is tried again.
///
/// Attempt `n` (1-based) that fails is retried after
/// `min(initial * multiplier^(n-1), max)`, less a random part of up to
/// `jitter` of it (so retries of many messages spread out). After
/// `max_attempts` attempts the message goes to the dead letters.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; at least 1.
    pub max_attempts: u32,
    /// The backoff after the first failed attempt.
    pub initial_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
    /// Growth of the backoff per attempt; at least 1.
    pub multiplier: f64,
    /// The fraction of each backoff that is random, in `0.0..=1.0`.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// 5 attempts; backoff 10 ms, doubling, at most 10 s, half of it random.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.5,
        }
    }
}

impl RetryPolicy {
    /// No retries: a failed message goes straight to the dead letters.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// `max_attempts` attempts in all, with the default backoff.
    pub fn attempts(max_attempts: u32) -> Self {
        Self {
            max_attempts,
            ..Self::default()
        }
    }

    /// The same policy with this backoff: `initial`, growing by
    /// `multiplier` up to `max`.
    pub fn backoff(mut self, initial: Duration, max: Duration, multiplier: f64) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self.multiplier = multiplier;
        self
    }

    /// The same policy with this jitter fraction.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// The delay before retrying after failed attempt `attempt` (1-based);
    /// `unit` is a random number in `[0, 1)`.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let max = self.max_backoff.as_secs_f64();
        let grow = self
            .multiplier
            .max(1.0)
            .powi(attempt.saturating_sub(1).min(1_000) as i32);
        let base = (self.initial_backoff.as_secs_f64() * grow).min(max);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let secs = base * (1.0 - jitter * unit.clamp(0.0, 1.0));
        Duration::try_from_secs_f64(secs).unwrap_or(self.max_backoff)
    }

    pub(crate) fn validate(&self) {
        assert!(
            self.max_attempts >= 1,
            "RetryPolicy::max_attempts must be at least 1"
        );
        assert!(
            self.multiplier.is_finite() && self.jitter.is_finite(),
            "RetryPolicy::multiplier and jitter must be finite"
        );
    }
}

/// A circuit breaker: when too many recent attempts failed, the pool stops
/// taking new messages from its source for a cool-down, then lets one probe
/// through (half-open): if the probe is acked the breaker closes, otherwise
/// it opens again. Retries already scheduled still run while it is open.
#[derive(Clone, Debug, PartialEq)]
pub struct CircuitBreaker {
    /// How many of the latest attempts count.
    pub window: usize,
    /// Opens when at least this many attempts are in the window...
    pub min_attempts: usize,
    /// ...and at least this fraction of them failed (retry, dead letter
    /// or panic).
    pub failure_ratio: f64,
    /// How long it stays open before the probe.
    pub cool_down: Duration,
}

impl Default for CircuitBreaker {
    /// Window 20, at least 10 attempts, half failing, 1 s cool-down.
    fn default() -> Self {
        Self {
            window: 20,
            min_attempts: 10,
            failure_ratio: 0.5,
            cool_down: Duration::from_secs(1),
        }
    }
}

/// The state of a pool's circuit breaker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BreakerState {
    /// Taking work (also: no breaker configured).
    #[default]
    Closed,
    /// Not taking new work until the cool-down ends.
    Open,
    /// One probe message is being tried.
    HalfOpen,
}

/// A message that failed for good.
pub struct DeadLetter<T> {
    /// The message, as it was delivered (republish it to try again).
    pub payload: T,
    /// Why: the handler's reason, or why its retries ended.
    pub reason: String,
    /// How many attempts were made.
    pub attempts: u32,
    /// Its lane.
    pub priority: Priority,
    /// Its ordering key.
    pub key: Option<u64>,
}

impl<T> DeadLetter<T> {
    /// The message, to publish or send again.
    pub fn into_payload(self) -> T {
        self.payload
    }
}

impl<T> fmt::Debug for DeadLetter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetter")
            .field("reason", &self.reason)
            .field("attempts", &self.attempts)
            .field("priority", &self.priority)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// How to shut a pool down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// Stop taking messages from the source (those left there stay
    /// there); finish every message already taken, retries included,
    /// until `deadline`. What is left then is returned unprocessed.
    Graceful {
        /// When to give up.
        deadline: Instant,
    },
    /// Close the source (its senders get their values back from now on),
    /// then handle everything in it and in the pool until `deadline`.
    /// What is left then, in the source too, is returned unprocessed.
    Drain {
        /// When to give up.
        deadline: Instant,
    },
    /// Stop now: handlers running finish their message; everything else
    /// taken is returned unprocessed. The source is left as it is.
    Immediate,
}

/// A message the pool took but did not settle.
pub struct Unprocessed<T> {
    /// The message.
    pub payload: T,
    /// Its lane.
    pub priority: Priority,
    /// Attempts already made (0: never handled).
    pub attempts: u32,
}

impl<T> fmt::Debug for Unprocessed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unprocessed")
            .field("priority", &self.priority)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// What happened to every message a pool took from its source.
///
/// `taken == acked + dead_lettered + unprocessed.len()`.
pub struct ShutdownReport<T> {
    /// Messages taken from the source (counted once, however many
    /// attempts).
    pub taken: u64,
    /// Messages a handler acked.
    pub acked: u64,
    /// Messages that went to the dead letters (including
    /// `dead_letters_unsent`).
    pub dead_lettered: u64,
    /// Retries scheduled (a message can be retried several times).
    pub retries: u64,
    /// Handler panics caught.
    pub panics: u64,
    /// Taken but not settled, highest priority first, then in the order
    /// they were taken.
    pub unprocessed: Vec<Unprocessed<T>>,
    /// Dead letters that did not fit in the dead-letter queue during
    /// shutdown (it was full and nobody was reading it).
    pub dead_letters_unsent: Vec<DeadLetter<T>>,
    /// True if the deadline passed before the pool finished.
    pub timed_out: bool,
}

impl<T> ShutdownReport<T> {
    /// True if every taken message is accounted for exactly once.
    pub fn is_consistent(&self) -> bool {
        self.taken == self.acked + self.dead_lettered + self.unprocessed.len() as u64
    }
}

impl<T> fmt::Debug for ShutdownReport<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownReport")
            .field("taken", &self.taken)
            .field("acked", &self.acked)
            .field("dead_lettered", &self.dead_lettered)
            .field("retries", &self.retries)
            .field("panics", &self.panics)
            .field("unprocessed", &self.unprocessed.len())
            .field("dead_letters_unsent", &self.dead_letters_unsent.len())
            .field("timed_out", &self.timed_out)
            .finish()
    }
}

/// Latency percentiles of one lane, enqueue to settled, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Messages settled.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

/// One worker's time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Handler calls.
    pub handled: u64,
    /// Messages it stole from other workers' queues.
    pub stolen: u64,
    /// Time in handlers.
    pub busy: Duration,
    /// Time looking for work or parked.
    pub idle: Duration,
}

/// A snapshot of a pool's counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolStats {
    /// Messages taken from the source.
    pub taken: u64,
    /// Handler calls (attempts).
    pub processed: u64,
    /// Messages acked.
    pub acked: u64,
    /// Retries scheduled.
    pub retried: u64,
    /// Messages dead-lettered.
    pub dead_lettered: u64,
    /// Handler panics caught.
    pub panics: u64,
    /// Taken and not yet settled (queued in workers, waiting for their
    /// key, waiting to retry, or in a handler).
    pub in_pool: u64,
    /// Of `in_pool`, messages waiting for their key's earlier message.
    pub waiting_for_keys: u64,
    /// Messages waiting in the source.
    pub source_depth: usize,
    /// Latency by lane, indexed by [`Priority::index`].
    pub latency: [LatencySummary; crate::LANES],
    /// Per worker.
    pub workers: Vec<WorkerStats>,
    /// The circuit breaker.
    pub breaker: BreakerState,
}
