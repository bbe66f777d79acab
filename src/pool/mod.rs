//! A pool of work-stealing workers that consume a channel or a bus
//! subscription and settle every message: ack, retry with backoff, or
//! dead-letter.
//!
//! ```
//! use lanebus::pool::{Outcome, Shutdown, WorkerPool};
//! use std::time::{Duration, Instant};
//!
//! let (tx, rx) = lanebus::bounded::<u64>(64);
//! let pool = WorkerPool::builder()
//!     .workers(2)
//!     .build(rx, |job: &lanebus::pool::Delivery<u64>| {
//!         if *job.payload() % 10 == 0 {
//!             Outcome::DeadLetter("multiples of ten are refused".into())
//!         } else {
//!             Outcome::Ack
//!         }
//!     });
//! let dead = pool.dead_letters();
//! for i in 1..=20 {
//!     tx.send(i).unwrap();
//! }
//! drop(tx); // the pool finishes once the channel is closed and drained
//! let report = pool.join();
//! assert_eq!((report.taken, report.acked, report.dead_lettered), (20, 18, 2));
//! assert!(report.is_consistent());
//! assert_eq!(dead.try_iter().count(), 2);
//! ```
//!
//! # How it works
//!
//! Each worker owns a small FIFO queue (a lock-free ring of `batch_size`
//! slots). A worker takes from its own queue; when that is empty it takes
//! due retries, then a batch of up to `batch_size` messages from the source
//! (highest lane first); when the source has nothing it steals half of a
//! sibling's queue. So an Urgent message that arrives while every worker is
//! busy waits for at most one batch: it is taken by the first worker to
//! finish the (at most `batch_size`) messages in its queue.
//!
//! **Intake.** One worker at a time takes from the source, under the
//! intake lock (`src/pool/intake.rs`): that keeps messages with the same key in the
//! order they left their lane. A worker that loses the race for it leaves a
//! request that makes the holder look again, so a message that woke it is
//! never stranded.
//!
//! **Keys.** A key is *active* while one of its messages is queued in a
//! worker, in a handler or waiting to retry; later messages with that key
//! wait in the key's mailbox (a short lock, taken only for keyed messages)
//! and the worker that settles one moves the next into its own queue. Only
//! one message per key is ever in a worker queue, so stealing cannot
//! reorder a key. The order is per lane: a key's next message is the
//! oldest of its highest lane, so an Urgent message may overtake an earlier
//! Normal one with the same key (but never one being handled or retried).
//! The urgent bound above holds for a message whose key is not busy. At
//! most [`key_backlog`](PoolBuilder::key_backlog) messages wait in
//! mailboxes; then intake pauses, so memory stays bounded.
//!
//! **Waiting.** An idle worker registers on the source's waiter list and on
//! the pool's own (retries scheduled, batches to steal, shutdown), checks
//! once more for work, and parks until the next retry is due.
//!
//! **Shutdown** ([`Shutdown`]) accounts for every message taken: acked,
//! dead-lettered, or returned unprocessed in the [`ShutdownReport`].
//! Handlers are never abandoned: a handler that never returns holds up
//! shutdown.

mod intake;
mod observe;
mod source;
#[cfg(all(test, not(loom)))]
mod tests;
mod ticket;
mod types;

/// The crate-private intake lock, reachable from the loom models in
/// `loom-tests/` and nowhere else: thin wrappers, so that the lock keeps
/// its `pub(crate)` API in every other build.
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_api {
    use super::intake;

    /// [`intake::IntakeLock`]: a lock that is only ever tried.
    pub struct IntakeLock<D>(intake::IntakeLock<D>);

    /// [`intake::IntakeGuard`]: the lock, held.
    pub struct IntakeGuard<'a, D>(intake::IntakeGuard<'a, D>);

    impl<D> core::fmt::Debug for IntakeLock<D> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("IntakeLock").finish_non_exhaustive()
        }
    }

    impl<D> core::fmt::Debug for IntakeGuard<'_, D> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("IntakeGuard").finish_non_exhaustive()
        }
    }

    impl<D> IntakeLock<D> {
        /// A free lock guarding `data`.
        pub fn new(data: D) -> Self {
            Self(intake::IntakeLock::new(data))
        }

        /// Takes the lock if it is free; if it is held, asks the holder to
        /// look again and returns `None`.
        pub fn try_enter(&self) -> Option<IntakeGuard<'_, D>> {
            self.0.try_enter().map(IntakeGuard)
        }
    }

    impl<D> IntakeGuard<'_, D> {
        /// Runs `f` on the guarded data.
        pub fn with<R>(&mut self, f: impl FnOnce(&mut D) -> R) -> R {
            self.0.with(f)
        }

        /// Leaves the lock, or keeps it (and returns it) for one more look
        /// if another thread asked for one.
        pub fn leave(self) -> Option<Self> {
            self.0.leave().map(IntakeGuard)
        }
    }
}

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::{hash_map::Entry, BinaryHeap, HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use self::intake::IntakeLock;
pub use self::source::{key_of, IntoSource};
use self::source::{Clock, Source, Take};
pub use self::ticket::{Ticket, TicketStatus, Tracked, Tracker};
pub use self::types::{
    BreakerState, CircuitBreaker, DeadLetter, Delivery, Handler, LatencySummary, Outcome,
    PoolStats, RetryPolicy, Shutdown, ShutdownReport, Unprocessed, WorkerStats,
};
use crate::backoff::Backoff;
use crate::channel::{ChannelBuilder, Receiver, Sender};
use crate::error::{SendTimeoutError, TrySendError};
use crate::loom::plain::{self, AtomicU64};
use crate::loom::{handshake_load, thread, Arc, AtomicUsize, Mutex, MutexGuard, Ordering};
use crate::priority::{Priority, LANES};
use crate::ring::{Pop, Ring};
use crate::wait::{Unpark, WaitList};

/// Taking from the source.
const RUNNING: usize = 0;
/// Finishing what was taken; the source is left alone.
const FINISHING: usize = 1;
/// Stopped: workers leave after their current message.
const STOPPED: usize = 2;

/// A message in the pool.
struct Job<T> {
    delivery: Delivery<T>,
    /// The order it was taken in (for the shutdown report).
    seq: u64,
    /// The circuit breaker's half-open probe.
    probe: bool,
}

/// A job waiting to be retried, ordered by due time.
struct Delayed<T> {
    due: Instant,
    seq: u64,
    job: Job<T>,
}

impl<T> PartialEq for Delayed<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl<T> Eq for Delayed<T> {}
impl<T> PartialOrd for Delayed<T> {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Delayed<T> {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// The messages waiting for an active key, by lane: the key's next message
/// is the oldest of its highest lane.
struct Mailbox<T> {
    lanes: [VecDeque<Job<T>>; LANES],
}

impl<T> Mailbox<T> {
    fn new() -> Self {
        Self {
            lanes: [(); LANES].map(|_| VecDeque::new()),
        }
    }

    fn push(&mut self, job: Job<T>) {
        self.lanes[job.delivery.priority.index()].push_back(job);
    }

    fn pop(&mut self) -> Option<Job<T>> {
        self.lanes.iter_mut().find_map(VecDeque::pop_front)
    }
}

/// The intake's scratch space, reused batch after batch.
struct IntakeData<T> {
    items: Vec<T>,
    lanes: Vec<(usize, usize)>,
    next_seq: u64,
}

/// The shutdown deadline: set at most once, by [`WorkerPool::shutdown`],
/// and read by every worker on every turn.
struct Deadline {
    at: plain::OnceLock<Instant>,
    /// Under loom, 1 once `at` is set: a loom access beside the `std`
    /// `OnceLock`, which loom does not see. Without it loom finds no
    /// dependency between a worker's turn and the shutdown that sets the
    /// deadline, so it never runs the turn before the shutdown and every
    /// worker finds the deadline set (and gone) before it takes anything.
    #[cfg(loom)]
    published: AtomicUsize,
}

impl Deadline {
    fn new() -> Self {
        Self {
            at: plain::OnceLock::new(),
            #[cfg(loom)]
            published: AtomicUsize::new(0),
        }
    }

    fn get(&self) -> Option<Instant> {
        #[cfg(loom)]
        if self.published.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.at.get().copied()
    }

    /// Sets the deadline, unless one is set already.
    fn set(&self, at: Instant) {
        let _ = self.at.set(at);
        #[cfg(loom)]
        self.published.store(1, Ordering::Release);
    }
}

/// Messages taken from the source (counted per batch; the per-message
/// counters are per worker, in [`WorkerRecord`], so that workers never
/// write a shared line per message).
#[derive(Default)]
struct Counters {
    taken: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(std::sync::atomic::Ordering::Relaxed)
}

/// The latency histograms' highest value (ns) and significant digits:
/// 1 ns to 1 hour, 2 digits (1% resolution, about 30 KiB per lane and worker). Under loom
/// every iteration of a model builds a pool and nothing reads latencies:
/// 1 ns to 1 ms, 1 digit, as allocating and zeroing the full-size ones
/// was most of a model's run time.
#[cfg(not(loom))]
const LATENCY_BOUNDS: (u64, u8) = (3_600_000_000_000, 2);
#[cfg(loom)]
const LATENCY_BOUNDS: (u64, u8) = (1_000_000, 1);

/// One worker's statistics, written by that worker only (one uncontended
/// lock per message), read by snapshots.
struct WorkerRecord {
    handled: u64,
    stolen: u64,
    acked: u64,
    retried: u64,
    dead_lettered: u64,
    panics: u64,
    busy: Duration,
    idle: Duration,
    latency: [Histogram<u64>; LANES],
}

/// The sums of every worker's record.
#[derive(Default)]
struct Totals {
    handled: u64,
    acked: u64,
    retried: u64,
    dead_lettered: u64,
    panics: u64,
}

impl Totals {
    fn add(&mut self, record: &WorkerRecord) {
        self.handled += record.handled;
        self.acked += record.acked;
        self.retried += record.retried;
        self.dead_lettered += record.dead_lettered;
        self.panics += record.panics;
    }
}

/// What one handler call adds to its worker's record.
#[derive(Default)]
struct Tally {
    acked: u64,
    retried: u64,
    dead_lettered: u64,
    panics: u64,
    busy: Duration,
    idle: Duration,
    /// Settled: its lane and enqueue-to-settled time.
    latency: Option<(Priority, Duration)>,
}

impl WorkerRecord {
    fn add(&mut self, tally: Tally) {
        self.handled += 1;
        self.acked += tally.acked;
        self.retried += tally.retried;
        self.dead_lettered += tally.dead_lettered;
        self.panics += tally.panics;
        self.busy += tally.busy;
        self.idle += tally.idle;
        if let Some((priority, latency)) = tally.latency {
            let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1);
            self.latency[priority.index()].saturating_record(nanos);
        }
    }
}

impl WorkerRecord {
    fn new() -> Self {
        Self {
            handled: 0,
            stolen: 0,
            acked: 0,
            retried: 0,
            dead_lettered: 0,
            panics: 0,
            busy: Duration::ZERO,
            idle: Duration::ZERO,
            latency: [(); LANES].map(|_| {
                let (high, digits) = LATENCY_BOUNDS;
                Histogram::new_with_bounds(1, high, digits).expect("valid bounds")
            }),
        }
    }
}

/// The circuit breaker's state machine.
struct Breaker {
    config: CircuitBreaker,
    window: VecDeque<bool>,
    failures: usize,
    state: BreakerState,
    open_until: Instant,
    probe_out: bool,
}

impl Breaker {
    fn new(config: CircuitBreaker) -> Self {
        Self {
            window: VecDeque::with_capacity(config.window),
            config,
            failures: 0,
            state: BreakerState::Closed,
            open_until: Instant::now(),
            probe_out: false,
        }
    }

    /// How many messages intake may take now (0, 1 for the probe, or any),
    /// and whether they are the probe.
    fn admit(&mut self, now: Instant) -> (usize, bool) {
        match self.state {
            BreakerState::Closed => (usize::MAX, false),
            BreakerState::Open if now < self.open_until => (0, false),
            BreakerState::Open | BreakerState::HalfOpen => {
                self.state = BreakerState::HalfOpen;
                if self.probe_out {
                    (0, false)
                } else {
                    self.probe_out = true;
                    (1, true)
                }
            }
        }
    }

    /// The probe was not taken after all (the source was empty).
    fn unprobe(&mut self) {
        self.probe_out = false;
    }

    fn record(&mut self, ok: bool, probe: bool, now: Instant) {
        if probe {
            self.probe_out = false;
            if ok {
                self.state = BreakerState::Closed;
            } else {
                self.trip(now);
            }
            return;
        }
        if self.state != BreakerState::Closed {
            return;
        }
        if self.window.len() == self.config.window.max(1) && self.window.pop_front() == Some(false)
        {
            self.failures -= 1;
        }
        self.window.push_back(ok);
        if !ok {
            self.failures += 1;
        }
        let n = self.window.len();
        if n >= self.config.min_attempts.max(1)
            && self.failures as f64 >= self.config.failure_ratio * n as f64
        {
            self.trip(now);
        }
    }

    fn trip(&mut self, now: Instant) {
        self.state = BreakerState::Open;
        self.open_until = now + self.config.cool_down;
        self.window.clear();
        self.failures = 0;
    }
}

type KeyFn<T> = Box<dyn Fn(&T) -> Option<u64> + Send + Sync>;
type PolicyFn<T> = Box<dyn Fn(&Delivery<T>) -> Option<RetryPolicy> + Send + Sync>;
/// Finds the tracker a message carries.
pub type TrackFn<T> = fn(&T) -> Option<&Tracker>;

/// Locks a mutex; the pool never panics while holding one, but a poisoned
/// lock must not turn into a second panic.
fn lock<U>(mutex: &Mutex<U>) -> MutexGuard<'_, U> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What [`Inner::find_work`] found.
struct Found<T> {
    job: Option<Job<T>>,
    /// Messages it took from the source (into queues or mailboxes).
    from_source: usize,
    /// The source had nothing ready but a send still being written
    /// ([`Take::Busy`]): look again soon, do not park.
    source_busy: bool,
}

/// The state the workers share.
struct Inner<T> {
    source: Box<dyn Source<T>>,
    handler: Box<dyn Handler<T>>,
    key_fn: Option<KeyFn<T>>,
    track: Option<TrackFn<T>>,
    policy: RetryPolicy,
    policy_fn: Option<PolicyFn<T>>,
    batch: usize,
    /// One queue per worker (one for a manual pool).
    locals: Box<[Ring<Job<T>>]>,
    intake: IntakeLock<IntakeData<T>>,
    /// Mailboxes of the active keys (module docs, "Keys").
    keys: Mutex<HashMap<u64, Mailbox<T>>>,
    /// Messages waiting in mailboxes (changed under `keys`).
    parked: AtomicUsize,
    /// Intake stops while `parked` is at least this.
    key_backlog: usize,
    /// No worker threads: the owner runs the pool.
    manual: bool,
    delayed: Mutex<BinaryHeap<Reverse<Delayed<T>>>>,
    /// `delayed.len()`, to skip the lock when nothing waits.
    delayed_len: AtomicUsize,
    delayed_seq: AtomicUsize,
    /// Idle workers (retries scheduled, work to steal, shutdown).
    idle: WaitList,
    state: AtomicUsize,
    /// 1 once the source reported closed and empty.
    source_done: AtomicUsize,
    /// Taken and not yet settled.
    outstanding: AtomicUsize,
    deadline: Deadline,
    /// 1 once `shutdown` or `join` was called: nobody may read the dead
    /// letters any more.
    closing: AtomicUsize,
    timed_out: AtomicUsize,
    dead_tx: Sender<DeadLetter<T>>,
    dead_rx: Receiver<DeadLetter<T>>,
    dead_unsent: Mutex<Vec<DeadLetter<T>>>,
    breaker: Option<Mutex<Breaker>>,
    counters: Counters,
    meters: observe::Meters,
    records: Box<[plain::Mutex<WorkerRecord>]>,
}

impl<T: Send + 'static> Inner<T> {
    /// Read with [`handshake_load`], like every read of `state`,
    /// `source_done` and `outstanding`: every access to them is SeqCst, so
    /// a read sees the latest write in the SeqCst order. A loom SeqCst load
    /// may also return older writes (the initial value, which loom does
    /// not count as SeqCst, and writes it cannot order): executions that
    /// cannot happen, and about twice the interleavings in the pool models.
    fn state(&self) -> usize {
        handshake_load(&self.state)
    }

    /// May intake still take from the source?
    ///
    /// The load half of a handshake ([`handshake_load`]): a settle that
    /// takes `outstanding` to zero, then finds intake closed, wakes the
    /// idle workers; a worker that closes intake (the source reported
    /// closed, or a shutdown), then finds `outstanding` above zero
    /// ([`Inner::finished`]), waits for that wake-up. All four accesses are
    /// SeqCst, so one side sees the other; under loom the two loads must be
    /// read-modify-writes for loom to see that too (`src/loom.rs`), and so
    /// must every write of `state` and `source_done` (see [`Inner::stop`]).
    fn intake_open(&self) -> bool {
        handshake_load(&self.state) == RUNNING && handshake_load(&self.source_done) == 0
    }

    /// Stopped, or nothing more will come and nothing is left.
    fn finished(&self) -> bool {
        // `outstanding`: the other load of the handshake in `intake_open`.
        self.state() == STOPPED || (!self.intake_open() && handshake_load(&self.outstanding) == 0)
    }

    /// Stops the pool if the shutdown deadline has passed.
    fn check_deadline(&self) {
        if let Some(deadline) = self.deadline.get() {
            if self.state() != STOPPED && Instant::now() >= deadline {
                // Timed out only if something was left to do.
                let pending = self.outstanding.load(Ordering::SeqCst) > 0
                    || (self.intake_open() && self.source.len() > 0);
                if pending {
                    self.timed_out.store(1, Ordering::SeqCst);
                }
                self.stop();
            }
        }
    }

    fn stop(&self) {
        // A swap, not a store: `intake_open` reads `state` with an RMW
        // under loom, and loom 0.7 lets a plain store slip in between an
        // RMW's read and its write (tokio-rs/loom#254), after which the
        // RMW's stale value counts as the latest. With RMWs on both sides it
        // cannot. (`swap` is what a SeqCst store compiles to on x86_64.)
        self.state.swap(STOPPED, Ordering::SeqCst);
        self.idle.notify_all();
    }

    /// When an idle worker must wake even if nobody wakes it: the next
    /// retry, the shutdown deadline, the end of the breaker's cool-down.
    fn wake_deadline(&self) -> Option<Instant> {
        let mut at = self.deadline.get();
        let mut earliest = |t: Instant| at = Some(at.map_or(t, |a| a.min(t)));
        if self.delayed_len.load(Ordering::SeqCst) > 0 {
            if let Some(Reverse(first)) = lock(&self.delayed).peek() {
                earliest(first.due);
            }
        }
        if let Some(breaker) = &self.breaker {
            let breaker = lock(breaker);
            if breaker.state == BreakerState::Open {
                earliest(breaker.open_until);
            }
        }
        at
    }

    fn push_local(&self, me: usize, job: Job<T>) {
        // Cannot fail: a worker pushes only into its own queue, only after
        // finding it empty (a batch, a steal: at most `batch` jobs) or
        // after popping the job it replaces (a successor, a retry).
        if self.locals[me].push(job).is_err() {
            unreachable!("a worker queue overflowed: pool invariant broken");
        }
    }

    fn pop_local(&self, me: usize) -> Option<Job<T>> {
        match self.locals[me].try_pop(true) {
            Pop::Item(job) => Some(job),
            _ => None,
        }
    }

    /// Work for worker `me` without waiting: its queue, due retries, the
    /// source, a sibling's queue.
    fn find_work(&self, me: usize) -> Found<T> {
        if let Some(job) = self.pop_local(me) {
            return Found {
                job: Some(job),
                from_source: 0,
                source_busy: false,
            };
        }
        let (total, from_source, source_busy) = self.refill(me);
        if total > 1 {
            // More than this worker can start now: let an idle one steal.
            self.idle.notify(1);
        }
        if total > 0 {
            if let Some(job) = self.pop_local(me) {
                return Found {
                    job: Some(job),
                    from_source,
                    source_busy,
                };
            }
        }
        Found {
            job: self.steal(me),
            from_source,
            source_busy,
        }
    }

    /// Fills the empty queue of worker `me`: due retries first, else a
    /// batch from the source. Returns (jobs taken, of which from the
    /// source, whether the source's last answer was [`Take::Busy`]); the
    /// source's keyed messages may go to mailboxes instead.
    fn refill(&self, me: usize) -> (usize, usize, bool) {
        let retries = self.take_due(me);
        if retries > 0 || !self.intake_open() {
            return (retries, 0, false);
        }
        let (mut max, probe) = match &self.breaker {
            Some(breaker) => lock(breaker).admit(Instant::now()),
            None => (usize::MAX, false),
        };
        // Bounded memory: messages waiting for busy keys hold up intake
        // (the source's bounded lanes then push back on its senders).
        let room = self
            .key_backlog
            .saturating_sub(self.parked.load(Ordering::Relaxed));
        max = max.min(self.batch).min(room);
        let mut taken = 0;
        let mut busy = false;
        if max > 0 {
            if let Some(mut guard) = self.intake.try_enter() {
                loop {
                    let (n, now_busy) =
                        guard.with(|data| self.take_from_source(data, me, max - taken, probe));
                    taken += n;
                    busy = now_busy;
                    match guard.leave() {
                        Some(again) if taken < max => guard = again,
                        Some(full) => {
                            // Full batch, and a worker asked for a look (it
                            // may be parked by now): release, dropping the
                            // request, and wake an idle worker to look in its
                            // place. Not "we look again after this batch":
                            // the batch can be stolen while this is our last
                            // look before parking, and then we park too and
                            // what the asker was woken for (a message, the
                            // source closing) waits for the next send.
                            drop(full);
                            self.idle.notify(1);
                            break;
                        }
                        None => break,
                    }
                }
            }
        }
        if probe && taken == 0 {
            if let Some(breaker) = &self.breaker {
                lock(breaker).unprobe();
            }
        }
        (taken, taken, busy)
    }

    /// Takes up to `max` messages from the source into worker `me`'s queue
    /// or their keys' mailboxes. Returns how many, and whether the source
    /// answered [`Take::Busy`].
    fn take_from_source(
        &self,
        data: &mut IntakeData<T>,
        me: usize,
        max: usize,
        probe: bool,
    ) -> (usize, bool) {
        data.items.clear();
        data.lanes.clear();
        let n = match self.source.take(&mut data.items, &mut data.lanes, max) {
            Take::Took(n) => n,
            Take::Empty => return (0, false),
            Take::Busy => return (0, true),
            Take::Closed => {
                // A swap: see `stop`.
                self.source_done.swap(1, Ordering::SeqCst);
                // Idle workers: check whether the pool is finished.
                self.idle.notify_all();
                return (0, false);
            }
        };
        // Counted before any of them can be settled, and before the intake
        // is left: a worker that sees the source closed sees these too.
        self.outstanding.fetch_add(n, Ordering::SeqCst);
        bump(&self.counters.taken, n as u64);
        self.meters.taken(n as u64);
        let clock = Clock::now();
        let mut items = data.items.drain(..);
        let mut keys = None;
        for &(lane, count) in &data.lanes {
            for _ in 0..count {
                let payload = items.next().expect("the lane log matches the items");
                let key = self.key_of(&payload);
                let enqueued_at = self
                    .source
                    .enqueued_at(&payload, &clock)
                    .unwrap_or(clock.now);
                let job = Job {
                    delivery: Delivery {
                        payload,
                        priority: Priority::ALL[lane],
                        key,
                        attempt: 0,
                        enqueued_at,
                    },
                    seq: data.next_seq,
                    probe,
                };
                data.next_seq += 1;
                match key {
                    None => self.push_local(me, job),
                    Some(key) => {
                        let keys = keys.get_or_insert_with(|| lock(&self.keys));
                        match keys.entry(key) {
                            Entry::Occupied(mut waiting) => {
                                let mut job = job;
                                if job.probe {
                                    // A probe stuck behind its key decides
                                    // nothing: let another one through.
                                    job.probe = false;
                                    if let Some(breaker) = &self.breaker {
                                        lock(breaker).unprobe();
                                    }
                                }
                                waiting.get_mut().push(job);
                                self.parked.fetch_add(1, Ordering::Relaxed);
                            }
                            Entry::Vacant(free) => {
                                free.insert(Mailbox::new());
                                self.push_local(me, job);
                            }
                        }
                    }
                }
            }
        }
        (n, false)
    }

    /// The ordering key of a message: the pool's key function, else what
    /// the source says. A panicking key function counts as "no key".
    fn key_of(&self, payload: &T) -> Option<u64> {
        match &self.key_fn {
            Some(f) => catch_unwind(AssertUnwindSafe(|| f(payload))).unwrap_or(None),
            None => self.source.key(payload),
        }
    }

    /// The tracker of a message: the builder's function, else the
    /// source's.
    fn tracker_of<'a>(&self, payload: &'a T) -> Option<&'a Tracker> {
        match self.track {
            Some(f) => f(payload),
            None => self.source.tracker(payload),
        }
    }

    fn track(&self, payload: &T, status: TicketStatus) {
        if let Some(tracker) = self.tracker_of(payload) {
            tracker.set(status);
        }
    }

    /// Moves due retries into worker `me`'s queue, up to a batch.
    fn take_due(&self, me: usize) -> usize {
        if self.delayed_len.load(Ordering::SeqCst) == 0 {
            return 0;
        }
        let now = Instant::now();
        let mut delayed = lock(&self.delayed);
        let mut n = 0;
        while n < self.batch && delayed.peek().is_some_and(|Reverse(d)| d.due <= now) {
            let Reverse(due) = delayed.pop().expect("peeked");
            self.push_local(me, due.job);
            n += 1;
        }
        self.delayed_len.store(delayed.len(), Ordering::SeqCst);
        n
    }

    /// Takes half of a sibling's queue (at least one job) into worker
    /// `me`'s, returning the first.
    fn steal(&self, me: usize) -> Option<Job<T>> {
        let workers = self.locals.len();
        for i in 1..workers {
            let victim = &self.locals[(me + i) % workers];
            let want = victim.len().div_ceil(2);
            let mut first = None;
            let mut stolen = 0;
            for _ in 0..want {
                match victim.try_pop(false) {
                    Pop::Item(job) if first.is_none() => first = Some(job),
                    Pop::Item(job) => self.push_local(me, job),
                    _ => break,
                }
                stolen += 1;
            }
            if first.is_some() {
                self.records[me]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .stolen += stolen;
                return first;
            }
        }
        None
    }

    /// The next job for worker `me`, waiting for one; `None` once the pool
    /// is stopped or finished.
    fn next_job(&self, me: usize) -> Option<Job<T>> {
        let mut backoff = Backoff::new();
        loop {
            self.check_deadline();
            if self.state() == STOPPED {
                return None;
            }
            if let Some(job) = self.find_work(me).job {
                return Some(job);
            }
            if self.finished() {
                return None;
            }
            if !backoff.is_completed() {
                backoff.snooze();
                continue;
            }
            // Register on both lists, look once more, park (module docs,
            // "Waiting").
            let me_thread = thread::current();
            let idle_id = self.idle.register(Unpark::Thread(me_thread.clone()), false);
            let source_id = self.intake_open().then(|| {
                self.source
                    .waiters()
                    .register(Unpark::Thread(me_thread), false)
            });
            let mut found = self.find_work(me);
            // A look that took messages but found no job (they all went to
            // busy keys' mailboxes) must not park: the source may hold
            // more. (It stops taking once the key backlog is full.) Nor one
            // that found a send still being written: that sender may have
            // read the waiter list before we registered (`Take::Busy`).
            if found.job.is_none()
                && found.from_source == 0
                && !found.source_busy
                && !self.finished()
            {
                crate::loom::park(self.wake_deadline());
                // The look the wake-up was for.
                self.check_deadline();
                if self.state() != STOPPED {
                    found = self.find_work(me);
                }
            }
            self.idle.cancel(idle_id);
            if let Some(id) = source_id {
                // Woken by the source but busy with other work: pass the
                // wake-up on to a worker that can take the message.
                if !self.source.waiters().cancel(id)
                    && found.job.is_some()
                    && found.from_source == 0
                {
                    self.source.waiters().notify(1);
                }
            }
            if found.job.is_some() {
                return found.job;
            }
            if found.source_busy {
                // A send is being written: give its thread the core.
                crate::loom::yield_now();
            }
        }
    }

    /// Runs a manual pool's work on the calling thread, as worker 0, and
    /// returns how many handler calls it made. Without `until_finished` it
    /// returns as soon as no work is ready (or the pool stopped); with it,
    /// it runs until the pool has finished, waiting for the next retry or
    /// the deadline in between, since nobody else wakes this thread.
    fn run_manual(&self, until_finished: bool) -> usize {
        let mut rng = seed(0);
        let mut n = 0;
        loop {
            self.check_deadline();
            let done = if until_finished {
                self.finished()
            } else {
                self.state() == STOPPED
            };
            if done {
                return n;
            }
            let found = self.find_work(0);
            match found.job {
                Some(job) => {
                    self.process(0, job, &mut rng, Instant::now());
                    n += 1;
                }
                // Everything it took went to busy keys' mailboxes: the
                // source may hold more.
                None if found.from_source > 0 => {}
                None if !until_finished => return n,
                // That look may have found the source closed: done.
                None if self.finished() => return n,
                // Look again at least every 1 ms.
                None => {
                    let soon = Instant::now() + Duration::from_millis(1);
                    let at = self.wake_deadline().map_or(soon, |at| at.min(soon));
                    crate::loom::park(Some(at));
                }
            }
        }
    }

    /// Runs the handler on `job` and acts on the outcome. `idle_since`:
    /// when the worker started looking for this job. Returns when it was
    /// done (two clock reads per message in all).
    fn process(&self, me: usize, mut job: Job<T>, rng: &mut u64, idle_since: Instant) -> Instant {
        job.delivery.attempt += 1;
        self.track(&job.delivery.payload, TicketStatus::InFlight);
        #[cfg(feature = "tracing")]
        let span = observe::delivery_span(
            job.delivery.priority,
            job.delivery.attempt,
            job.delivery.key,
        );
        #[cfg(feature = "tracing")]
        let _entered = span.enter();
        let start = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| self.handler.handle(&job.delivery)));
        let end = Instant::now();
        let mut tally = Tally {
            busy: end - start,
            idle: start.saturating_duration_since(idle_since),
            ..Tally::default()
        };
        let retry = "the handler asked for a retry";
        match result {
            Ok(Outcome::Ack) => {
                self.record_breaker(true, job.probe, end);
                self.settle(me, job, end, &mut tally);
            }
            Ok(Outcome::DeadLetter(reason)) => {
                self.record_breaker(false, job.probe, end);
                self.dead_letter(me, job, reason, end, &mut tally);
            }
            Ok(Outcome::Retry) => self.failed(me, job, None, retry.into(), end, rng, &mut tally),
            Ok(Outcome::RetryAfter(delay)) => {
                self.failed(me, job, Some(delay), retry.into(), end, rng, &mut tally)
            }
            Err(panic) => {
                tally.panics = 1;
                self.meters.panicked();
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string payload".into());
                // Dropping the payload can itself panic: contain that too.
                let _ = catch_unwind(AssertUnwindSafe(move || drop(panic)));
                let reason = format!("the handler panicked: {what}");
                self.failed(me, job, None, reason, end, rng, &mut tally);
            }
        }
        self.records[me]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(tally);
        end
    }

    fn record_breaker(&self, ok: bool, probe: bool, now: Instant) {
        if let Some(breaker) = &self.breaker {
            lock(breaker).record(ok, probe, now);
        }
    }

    /// A failed attempt: retry later, or dead-letter after the last one.
    #[allow(clippy::too_many_arguments)]
    fn failed(
        &self,
        me: usize,
        mut job: Job<T>,
        delay: Option<Duration>,
        reason: String,
        now: Instant,
        rng: &mut u64,
        tally: &mut Tally,
    ) {
        self.record_breaker(false, job.probe, now);
        job.probe = false;
        let policy = self
            .policy_fn
            .as_ref()
            .and_then(|f| catch_unwind(AssertUnwindSafe(|| f(&job.delivery))).unwrap_or(None));
        let policy = policy.as_ref().unwrap_or(&self.policy);
        let attempt = job.delivery.attempt;
        if attempt >= policy.max_attempts {
            let reason = format!(
                "{reason}; no attempts left ({attempt} of {})",
                policy.max_attempts
            );
            self.dead_letter(me, job, reason, now, tally);
            return;
        }
        tally.retried = 1;
        self.meters.retried();
        self.track(&job.delivery.payload, TicketStatus::Queued);
        let delay = delay.unwrap_or_else(|| policy.delay(attempt, next_unit(rng)));
        if delay.is_zero() {
            // It replaces the job just popped: room in our own queue.
            self.push_local(me, job);
            return;
        }
        let seq = self.delayed_seq.fetch_add(1, Ordering::Relaxed) as u64;
        {
            let mut delayed = lock(&self.delayed);
            delayed.push(Reverse(Delayed {
                due: now + delay,
                seq,
                job,
            }));
            self.delayed_len.store(delayed.len(), Ordering::SeqCst);
        }
        // An idle worker must re-arm its park for the new due time.
        self.idle.notify(1);
    }

    fn dead_letter(&self, me: usize, job: Job<T>, reason: String, now: Instant, tally: &mut Tally) {
        tally.dead_lettered = 1;
        self.meters.dead_lettered();
        self.track(&job.delivery.payload, TicketStatus::DeadLettered);
        let key = job.delivery.key;
        let priority = job.delivery.priority;
        let enqueued_at = job.delivery.enqueued_at;
        let mut letter = DeadLetter {
            payload: job.delivery.payload,
            reason,
            attempts: job.delivery.attempt,
            priority,
            key,
        };
        loop {
            if self.closing.load(Ordering::SeqCst) == 0 && !self.manual {
                // Wait for room (backpressure), looking up now and then
                // for a shutdown. (A manual pool never waits: its one
                // thread may be the dead letters' only reader.)
                match self
                    .dead_tx
                    .send_timeout_with(priority, letter, Duration::from_millis(20))
                {
                    Ok(()) => break,
                    Err(SendTimeoutError::Timeout(back)) => letter = back,
                    Err(SendTimeoutError::Disconnected(back)) => {
                        lock(&self.dead_unsent).push(back);
                        break;
                    }
                }
            } else {
                // Shutting down (nobody may be reading) or a manual pool:
                // keep it for the report.
                if let Err(TrySendError::Full(back) | TrySendError::Disconnected(back)) =
                    self.dead_tx.try_send_with(priority, letter)
                {
                    lock(&self.dead_unsent).push(back);
                }
                break;
            }
        }
        tally.latency = Some(self.settled(me, key, priority, enqueued_at, now));
    }

    /// An acked job.
    fn settle(&self, me: usize, job: Job<T>, now: Instant, tally: &mut Tally) {
        tally.acked = 1;
        self.meters.acked();
        let Delivery {
            key,
            priority,
            enqueued_at,
            payload,
            ..
        } = job.delivery;
        self.track(&payload, TicketStatus::Acked);
        drop(payload);
        tally.latency = Some(self.settled(me, key, priority, enqueued_at, now));
    }

    /// Bookkeeping for a job that left the pool: its key's next message,
    /// the count of jobs in the pool. Returns its lane and latency.
    fn settled(
        &self,
        me: usize,
        key: Option<u64>,
        priority: Priority,
        enqueued_at: Instant,
        now: Instant,
    ) -> (Priority, Duration) {
        let latency = now.saturating_duration_since(enqueued_at);
        self.meters.latency(priority, latency);
        if let Some(key) = key {
            let mut keys = lock(&self.keys);
            if let Entry::Occupied(mut waiting) = keys.entry(key) {
                match waiting.get_mut().pop() {
                    // The key stays active; its next message replaces the
                    // job just popped in our own queue.
                    Some(next) => {
                        self.parked.fetch_sub(1, Ordering::Relaxed);
                        self.push_local(me, next);
                    }
                    None => {
                        waiting.remove();
                    }
                }
            }
        }
        if self.outstanding.fetch_sub(1, Ordering::SeqCst) == 1 && !self.intake_open() {
            // The last one: idle workers may leave.
            self.idle.notify_all();
        }
        (priority, latency)
    }

    fn totals(&self) -> Totals {
        let mut total = Totals::default();
        for record in self.records.iter() {
            total.add(&record.lock().unwrap_or_else(|e| e.into_inner()));
        }
        total
    }

    /// The worker loop.
    fn run(&self, me: usize) {
        crate::loom::keep_unpark_token();
        let mut rng = seed(me);
        let mut idle_since = Instant::now();
        while let Some(job) = self.next_job(me) {
            idle_since = self.process(me, job, &mut rng, idle_since);
        }
    }
}

fn seed(me: usize) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (0x9E37_79B9_7F4A_7C15u64 ^ nanos).wrapping_mul(me as u64 * 2 + 1) | 1
}

/// A random number in `[0, 1)` (xorshift64*).
fn next_unit(state: &mut u64) -> f64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
}

/// Configures a [`WorkerPool`]; from [`WorkerPool::builder`].
pub struct PoolBuilder<T> {
    workers: Option<usize>,
    batch: usize,
    retry: RetryPolicy,
    policy_fn: Option<PolicyFn<T>>,
    key_fn: Option<KeyFn<T>>,
    track: Option<TrackFn<T>>,
    key_backlog: usize,
    dead_capacity: usize,
    breaker: Option<CircuitBreaker>,
    name: String,
}

impl<T> core::fmt::Debug for PoolBuilder<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("workers", &self.workers)
            .field("batch", &self.batch)
            .field("retry", &self.retry)
            .field("dead_capacity", &self.dead_capacity)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> PoolBuilder<T> {
    /// How many worker threads; default: the number of CPUs
    /// (`std::thread::available_parallelism`).
    ///
    /// `0` makes a manual pool: no threads; the owner runs it with
    /// [`WorkerPool::run_pending`] (deterministic, for tests).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// How many messages a worker takes from the source at a time (at
    /// least 1, default 16). An Urgent message waits behind at most this
    /// many messages of one worker.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch = n.max(1);
        self
    }

    /// The retry policy (default [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// A per-message retry policy: where `f` returns `Some`, it replaces
    /// the pool's for that message (e.g. from an envelope header).
    pub fn retry_policy_for(
        mut self,
        f: impl Fn(&Delivery<T>) -> Option<RetryPolicy> + Send + Sync + 'static,
    ) -> Self {
        self.policy_fn = Some(Box::new(f));
        self
    }

    /// The ordering key of a message (module docs, "Keys"). For a bus
    /// subscription the default is the envelope's key ([`key_of`]); for a
    /// channel, no key.
    pub fn key(mut self, f: impl Fn(&T) -> Option<u64> + Send + Sync + 'static) -> Self {
        self.key_fn = Some(Box::new(f));
        self
    }

    /// At most about this many messages (default 1024, plus one batch) wait
    /// in the mailboxes of busy keys; while they do, the pool takes nothing
    /// more from its source, whose bounded lanes then push back on the
    /// senders. Memory stays bounded however skewed the keys are.
    pub fn key_backlog(mut self, n: usize) -> Self {
        self.key_backlog = n.max(1);
        self
    }

    /// How to find the [`Tracker`] a message carries, for completion
    /// tracking: [`Tracked::tracker_of`] for a channel of [`Tracked`]
    /// values. A bus subscription needs nothing: a tracked
    /// [`Message`](crate::Message) carries its tracker in the envelope.
    pub fn track(mut self, f: TrackFn<T>) -> Self {
        self.track = Some(f);
        self
    }

    /// How many dead letters (per lane; default 1024) wait for a reader.
    /// While the pool runs, a worker whose dead letter does not fit waits
    /// for room (backpressure); once [`WorkerPool::shutdown`] or
    /// [`WorkerPool::join`] is called, it puts the letter in the report's
    /// `dead_letters_unsent` instead. A manual pool (`workers(0)`) never
    /// waits (its one thread may be the only reader): it always does the
    /// latter.
    pub fn dead_letter_capacity(mut self, n: usize) -> Self {
        self.dead_capacity = n.max(1);
        self
    }

    /// Adds a circuit breaker.
    pub fn circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// The name prefix of the worker threads (default `lanebus-worker`).
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.name = prefix.into();
        self
    }

    /// Starts the pool on `source` with `handler`.
    ///
    /// # Panics
    ///
    /// If the retry policy is invalid ([`RetryPolicy::max_attempts`] 0, or
    /// a non-finite multiplier or jitter).
    pub fn build(self, source: impl IntoSource<T>, handler: impl Handler<T>) -> WorkerPool<T> {
        self.retry.validate();
        #[cfg(not(loom))]
        let default_workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        #[cfg(loom)]
        let default_workers = 2;
        let workers = self.workers.unwrap_or(default_workers);
        let queues = workers.max(1);
        let (dead_tx, dead_rx) = ChannelBuilder::new()
            .capacity(self.dead_capacity)
            .build::<DeadLetter<T>>();
        let inner = Arc::new(Inner {
            source: source.into_source(),
            handler: Box::new(handler),
            key_fn: self.key_fn,
            track: self.track,
            policy: self.retry,
            policy_fn: self.policy_fn,
            batch: self.batch,
            locals: (0..queues).map(|_| Ring::new(self.batch)).collect(),
            intake: IntakeLock::new(IntakeData {
                items: Vec::with_capacity(self.batch),
                lanes: Vec::with_capacity(LANES),
                next_seq: 0,
            }),
            keys: Mutex::new(HashMap::new()),
            parked: AtomicUsize::new(0),
            key_backlog: self.key_backlog,
            manual: workers == 0,
            delayed: Mutex::new(BinaryHeap::new()),
            delayed_len: AtomicUsize::new(0),
            delayed_seq: AtomicUsize::new(0),
            idle: WaitList::new(),
            state: AtomicUsize::new(RUNNING),
            source_done: AtomicUsize::new(0),
            outstanding: AtomicUsize::new(0),
            deadline: Deadline::new(),
            closing: AtomicUsize::new(0),
            timed_out: AtomicUsize::new(0),
            dead_tx,
            dead_rx,
            dead_unsent: Mutex::new(Vec::new()),
            breaker: self.breaker.map(|b| Mutex::new(Breaker::new(b))),
            counters: Counters::default(),
            meters: observe::Meters::new(&self.name),
            records: (0..queues)
                .map(|_| plain::Mutex::new(WorkerRecord::new()))
                .collect(),
        });
        let threads = (0..workers)
            .map(|me| {
                let inner = inner.clone();
                spawn(format!("{}-{me}", self.name), move || inner.run(me))
            })
            .collect();
        WorkerPool {
            inner: Some(inner),
            threads,
        }
    }
}

#[cfg(not(loom))]
fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .name(name)
        .spawn(f)
        .expect("failed to spawn a pool worker thread")
}

#[cfg(loom)]
fn spawn(_name: String, f: impl FnOnce() + Send + 'static) -> thread::JoinHandle<()> {
    thread::spawn(f)
}

/// A pool of worker threads consuming a channel or a bus subscription; see
/// the [module docs](self).
///
/// Dropping the pool without [`WorkerPool::shutdown`] or
/// [`WorkerPool::join`] stops it as [`Shutdown::Immediate`] and drops the
/// unprocessed messages.
pub struct WorkerPool<T: Send + 'static> {
    inner: Option<Arc<Inner<T>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl<T: Send + 'static> core::fmt::Debug for WorkerPool<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("workers", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> WorkerPool<T> {
    /// A builder with the defaults.
    pub fn builder() -> PoolBuilder<T> {
        PoolBuilder {
            workers: None,
            batch: 16,
            retry: RetryPolicy::default(),
            policy_fn: None,
            key_fn: None,
            track: None,
            key_backlog: 1024,
            dead_capacity: 1024,
            breaker: None,
            name: "lanebus-worker".into(),
        }
    }
}

impl<T: Send + 'static> WorkerPool<T> {
    fn inner(&self) -> &Inner<T> {
        self.inner.as_ref().expect("the pool is running")
    }

    /// The dead letters: a receiver (clone it freely) of messages that
    /// failed for good. It outlives the pool.
    pub fn dead_letters(&self) -> Receiver<DeadLetter<T>> {
        self.inner().dead_rx.clone()
    }

    /// How many worker threads run (0 for a manual pool).
    pub fn workers(&self) -> usize {
        self.threads.len()
    }

    /// A snapshot of the pool's counters and latencies.
    pub fn stats(&self) -> PoolStats {
        let inner = self.inner();
        let mut merged: [Option<Histogram<u64>>; LANES] = Default::default();
        let mut workers = Vec::with_capacity(inner.records.len());
        let mut total = Totals::default();
        for record in inner.records.iter() {
            let record = record.lock().unwrap_or_else(|e| e.into_inner());
            total.add(&record);
            workers.push(WorkerStats {
                handled: record.handled,
                stolen: record.stolen,
                busy: record.busy,
                idle: record.idle,
            });
            for (lane, h) in record.latency.iter().enumerate() {
                match &mut merged[lane] {
                    Some(m) => m.add(h).expect("same bounds"),
                    none => *none = Some(h.clone()),
                }
            }
        }
        let latency = merged.map(|h| match h {
            Some(h) if !h.is_empty() => LatencySummary {
                count: h.len(),
                p50: h.value_at_quantile(0.50),
                p95: h.value_at_quantile(0.95),
                p99: h.value_at_quantile(0.99),
                max: h.max(),
            },
            _ => LatencySummary::default(),
        });
        PoolStats {
            taken: read(&inner.counters.taken),
            processed: total.handled,
            acked: total.acked,
            retried: total.retried,
            dead_lettered: total.dead_lettered,
            panics: total.panics,
            in_pool: inner.outstanding.load(Ordering::SeqCst) as u64,
            waiting_for_keys: inner.parked.load(Ordering::Relaxed) as u64,
            source_depth: inner.source.len(),
            latency,
            workers,
            breaker: inner
                .breaker
                .as_ref()
                .map_or(BreakerState::Closed, |b| lock(b).state),
        }
    }

    /// Runs a manual pool (`workers(0)`) on this thread until no work is
    /// ready: messages in the source, due retries, keys' next messages.
    /// Returns how many handler calls it made. Does nothing on a pool with
    /// worker threads.
    pub fn run_pending(&mut self) -> usize {
        if !self.threads.is_empty() {
            return 0;
        }
        self.inner().run_manual(false)
    }

    /// Waits until the source is closed and every message is settled (for
    /// a manual pool: runs it until then), and reports.
    pub fn join(mut self) -> ShutdownReport<T> {
        self.finish()
    }

    /// Shuts the pool down (see [`Shutdown`]) and reports on every message
    /// it took.
    pub fn shutdown(mut self, mode: Shutdown) -> ShutdownReport<T> {
        let inner = self.inner();
        inner.closing.store(1, Ordering::SeqCst);
        match mode {
            Shutdown::Immediate => inner.stop(),
            Shutdown::Graceful { deadline } => {
                inner.deadline.set(deadline);
                let _ = inner.state.compare_exchange(
                    RUNNING,
                    FINISHING,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
                inner.idle.notify_all();
            }
            Shutdown::Drain { deadline } => {
                inner.deadline.set(deadline);
                // Closing wakes the workers parked on the source.
                inner.source.close();
                inner.idle.notify_all();
            }
        }
        let drain = matches!(mode, Shutdown::Drain { .. });
        let mut report = self.finish();
        if drain {
            // Past the deadline, what is left in the source is ours too.
            let mut inner = self.inner.take().expect("finish keeps the pool");
            let inner = Arc::get_mut(&mut inner).expect("every worker has stopped");
            let mut items = Vec::new();
            let mut lanes = Vec::new();
            let mut backoff = Backoff::new();
            loop {
                match inner.source.take(&mut items, &mut lanes, usize::MAX) {
                    Take::Took(_) => {}
                    Take::Closed => break,
                    // A send that got in before the close is finishing.
                    Take::Empty | Take::Busy => backoff.snooze(),
                }
            }
            let mut items = items.into_iter();
            for (lane, count) in lanes {
                for payload in items.by_ref().take(count) {
                    report.taken += 1;
                    report.unprocessed.push(Unprocessed {
                        payload,
                        priority: Priority::ALL[lane],
                        attempts: 0,
                    });
                }
            }
            report.unprocessed.sort_by_key(|u| u.priority);
        }
        report
    }

    /// Runs (manual pool) or waits for the workers until they stop, then
    /// collects what is left.
    fn finish(&mut self) -> ShutdownReport<T> {
        self.inner().closing.store(1, Ordering::SeqCst);
        if self.threads.is_empty() {
            self.inner().run_manual(true);
        }
        let mut panicked = None;
        for handle in self.threads.drain(..) {
            if let Err(panic) = handle.join() {
                panicked = Some(panic);
            }
        }
        if let Some(panic) = panicked {
            std::panic::resume_unwind(panic);
        }
        let mut arc = self.inner.take().expect("the pool is running");
        let inner = Arc::get_mut(&mut arc).expect("every worker has stopped");
        let mut left = Vec::new();
        for queue in inner.locals.iter() {
            while let Pop::Item(job) = queue.try_pop(true) {
                left.push(job);
            }
        }
        for (_, mut waiting) in lock(&inner.keys).drain() {
            while let Some(job) = waiting.pop() {
                left.push(job);
            }
        }
        left.extend(lock(&inner.delayed).drain().map(|Reverse(d)| d.job));
        left.sort_by_key(|job| (job.delivery.priority, job.seq));
        let total = inner.totals();
        let report = ShutdownReport {
            taken: read(&inner.counters.taken),
            acked: total.acked,
            dead_lettered: total.dead_lettered,
            retries: total.retried,
            panics: total.panics,
            unprocessed: left
                .into_iter()
                .map(|job| Unprocessed {
                    attempts: job.delivery.attempt,
                    priority: job.delivery.priority,
                    payload: job.delivery.payload,
                })
                .collect(),
            dead_letters_unsent: core::mem::take(&mut *lock(&inner.dead_unsent)),
            timed_out: inner.timed_out.load(Ordering::SeqCst) != 0,
        };
        self.inner = Some(arc);
        report
    }
}

impl<T: Send + 'static> Drop for WorkerPool<T> {
    fn drop(&mut self) {
        if self.inner.is_some() && !self.threads.is_empty() {
            self.inner().stop();
            for handle in self.threads.drain(..) {
                let _ = handle.join();
            }
        }
    }
}
