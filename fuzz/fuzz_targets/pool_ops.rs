//! Bytes -> a single-threaded manual `WorkerPool` (`workers(0)`, run by
//! `run_pending`) over a small channel, and a sequence of operations on it,
//! each checked against a model: every message's state (queued, retrying,
//! parked, acked, dead-lettered, returned, left in the channel), the pool's
//! counters, and the dead-letter queue per lane.
//!
//! Each message carries a unique id, an optional key (one of four) and a
//! script chosen by the input: the outcome of each attempt (ack, retry,
//! retry after zero, dead-letter, panic, or "park": retry after an hour,
//! which never comes due during a run). The handler checks every delivery
//! against the model as it is made.
//!
//! Checked:
//! - `try_send_with` is `Full` exactly when our view of the lane is full,
//!   and hands back the value sent;
//! - each delivery: the right lane, key and attempt number (1 + attempts
//!   already made); never a parked message; per key, never while another
//!   message with that key is retrying or parked (one at a time), and a
//!   first attempt only after every earlier message with that key and lane
//!   is settled (the order is per lane, module docs "Keys");
//! - `run_pending`: returns the number of handler calls; the first attempts
//!   of unkeyed messages are a prefix of the unkeyed messages queued at the
//!   start, highest lane first, in send order (batches are taken highest
//!   lane first, the worker queue is FIFO, and a batch is only taken when it
//!   is empty); afterwards nothing is retrying, and if the breaker is closed,
//!   "no work is ready": the source is empty, and every key with unsettled
//!   messages has one parked;
//! - `stats()` after every `run_pending` and before the end: acked,
//!   dead-lettered, panics, retries, handler calls, `in_pool +
//!   source_depth` = unsettled, `taken`;
//! - dead letters: come highest lane first, in the order they died per lane;
//!   their attempts, lane, key and reason (the handler's, or "no attempts
//!   left" after exactly `max_attempts`);
//! - the end (`shutdown(Immediate | Graceful | Drain)`, or dropping the
//!   sender and `join()`): every accepted message is in exactly one of acked,
//!   dead-lettered (received from the queue, or in `dead_letters_unsent`, the
//!   suffix of its lane that did not fit), returned in `unprocessed` (with its
//!   attempts, in lane order then send order) or still in the channel; the
//!   report's counters, `is_consistent()`, and `timed_out` against the mode;
//! - drops: a message is dropped once it has left the pool and the harness
//!   (acked, or a dead letter received), never before, and exactly once by
//!   the end.
//!
//! Manual-pool hazards kept out of reach: before shutdown (and during
//! `join`), a handler about to dead-letter into a full dead-letter lane first
//! empties the queue (a running manual pool waits for room in a full
//! dead-letter queue, and no other thread can read it); `join()` is replaced
//! by a short `Drain` when a message is parked or will be. `Graceful` and
//! `Drain` get no reader: dead letters that do not fit must come back in
//! `dead_letters_unsent`, and `Drain` must still end at its deadline.
//!
//! Scripted panics are caught by the pool; libfuzzer's panic hook (which
//! aborts on any panic) is wrapped to let just those through, silently.
//!
//! Run: `cargo +nightly fuzz run pool_ops -- -max_total_time=60`.

#![no_main]

use std::cell::Cell;
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use lanebus::pool::{
    BreakerState, CircuitBreaker, DeadLetter, Delivery, Outcome, PoolStats, RetryPolicy, Shutdown,
    ShutdownReport, WorkerPool,
};
use lanebus::{ChannelBuilder, Priority, Receiver, Sender, TryRecvError, TrySendError, LANES};
use libfuzzer_sys::fuzz_target;

/// At most this many messages per input.
const MAX_MESSAGES: usize = 256;
/// The delay of a parked retry: never due during a run.
const PARK: Duration = Duration::from_secs(3600);
/// Keys are mapped to `0..KEYS` so that they collide.
const KEYS: u8 = 4;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Channel lane capacities, mapped to 1..=4.
    caps: [u8; LANES],
    /// Mapped to 1..=8.
    batch: u8,
    /// Mapped to 1..=4.
    max_attempts: u8,
    /// `Some(c)`: dead-letter capacity 1..=4 per lane; `None`: the default.
    dead_capacity: Option<u8>,
    breaker: Option<BreakerInput>,
    ops: Vec<Op>,
    end: End,
}

#[derive(Arbitrary, Debug)]
struct BreakerInput {
    /// Mapped to 1..=8.
    window: u8,
    /// Mapped to 1..=8.
    min_attempts: u8,
    /// 0.25, 0.5, 0.75 or 1.0.
    ratio: u8,
    /// A 50 µs cool-down (else none: the next look is the probe).
    cool_down: bool,
}

/// What the handler does on one attempt.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Ack,
    /// `Outcome::Retry` (the policy's backoff is zero).
    Retry,
    /// `Outcome::RetryAfter(Duration::ZERO)`.
    RetryNow,
    DeadLetter,
    /// The handler panics.
    Panic,
    /// `Outcome::RetryAfter(PARK)`.
    Park,
}

impl Step {
    fn fails(self) -> bool {
        matches!(
            self,
            Step::Retry | Step::RetryNow | Step::Panic | Step::Park
        )
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// `try_send_with` a new message; `lane` modulo 4, `key` modulo `KEYS`;
    /// attempts past the script's end ack.
    Send {
        lane: u8,
        key: Option<u8>,
        script: Vec<Step>,
    },
    RunPending,
    /// Up to `n % 8 + 1` `try_recv`s on the dead letters.
    RecvDead {
        n: u8,
    },
}

/// How the run ends; `wait` is the deadline after now, `wait % 8` times
/// 100 µs.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum End {
    Immediate,
    Graceful {
        wait: u8,
    },
    Drain {
        wait: u8,
    },
    /// Drop the sender, `join()`.
    Join,
}

// ----- the payload -----

struct DropLog(Mutex<Vec<u32>>);

struct Msg {
    id: usize,
    key: Option<u8>,
    /// The id again, on the heap (a double drop or use after free shows up
    /// under AddressSanitizer).
    boxed: Box<usize>,
    log: Arc<DropLog>,
}

impl Msg {
    fn check(&self, id: usize, what: &str) {
        assert_eq!(
            self.id, id,
            "{what}: got message {} instead of {id}",
            self.id
        );
        assert_eq!(*self.boxed, id, "{what}: message {id} is corrupt");
    }
}

impl Drop for Msg {
    fn drop(&mut self) {
        let mut drops = lock(&self.log.0);
        drops[self.id] += 1;
        let n = drops[self.id];
        drop(drops);
        assert_eq!(n, 1, "message {} dropped {n} times", self.id);
    }
}

fn lock<U>(m: &Mutex<U>) -> MutexGuard<'_, U> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ----- panics -----

thread_local! {
    /// Set by the handler just before a scripted panic.
    static EXPECTED_PANIC: Cell<bool> = const { Cell::new(false) };
}

/// libfuzzer's panic hook aborts on any panic, even one the pool catches:
/// wrap it so that scripted handler panics pass silently.
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !EXPECTED_PANIC.with(|e| e.replace(false)) {
                previous(info);
            }
        }));
    });
}

// ----- the model -----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    /// `try_send` handed it back.
    Rejected,
    /// Accepted, never handled (in the channel, or taken by the pool).
    Queued,
    /// Failed, retried at once (in the worker queue).
    Retrying,
    /// Failed, retried after `PARK`.
    Parked,
    Acked,
    /// Dead-lettered; `seen` once received or found unsent.
    Dead {
        exhausted: bool,
        seen: bool,
    },
    /// In the report's `unprocessed`.
    Returned,
    /// Still in the channel after the pool is gone.
    LeftInChannel,
}

impl St {
    fn settled(self) -> bool {
        matches!(self, St::Acked | St::Dead { .. })
    }
    fn in_pool_or_channel(self) -> bool {
        matches!(self, St::Queued | St::Retrying | St::Parked)
    }
}

struct MsgModel {
    lane: usize,
    key: Option<u8>,
    script: Vec<Step>,
    attempts: u32,
    st: St,
}

impl MsgModel {
    fn step(&self, attempt: u32) -> Step {
        self.script
            .get(attempt as usize - 1)
            .copied()
            .unwrap_or(Step::Ack)
    }
}

#[derive(Default)]
struct Model {
    max_attempts: u32,
    msgs: Vec<MsgModel>,
    handled: u64,
    acked: u64,
    dead: u64,
    panics: u64,
    retries: u64,
    /// Dead-lettered ids per lane, in order, not yet received.
    dead_queue: [std::collections::VecDeque<usize>; LANES],
    /// Handler calls `(id, attempt)` since the last `run_pending` began.
    log: Vec<(usize, u32)>,
    /// Before shutdown (and during `join`): a handler about to dead-letter
    /// into a full lane empties the dead-letter queue first.
    reader_active: bool,
    dead_rx: Option<Receiver<DeadLetter<Msg>>>,
}

impl Model {
    fn reason(id: usize) -> String {
        format!("scripted dead letter {id}")
    }

    fn accepted(&self) -> u64 {
        self.msgs.iter().filter(|m| m.st != St::Rejected).count() as u64
    }

    /// The handler's checks and bookkeeping for one delivery.
    fn on_handle(&mut self, d: &Delivery<Msg>) -> Step {
        let id = d.payload().id;
        assert!(id < self.msgs.len(), "unknown message {id}");
        d.payload().check(id, "delivery");
        let m = &self.msgs[id];
        assert_eq!(d.priority(), Priority::ALL[m.lane], "message {id}: lane");
        assert_eq!(d.key(), m.key.map(u64::from), "message {id}: key");
        let attempt = d.attempt();
        assert_eq!(attempt, m.attempts + 1, "message {id}: attempt number");
        match m.st {
            St::Queued | St::Retrying => {}
            st => panic!("message {id} handled in state {st:?}"),
        }
        if let Some(key) = m.key {
            for (j, other) in self.msgs.iter().enumerate() {
                if j == id || other.key != Some(key) || other.st == St::Rejected {
                    continue;
                }
                assert!(
                    !matches!(other.st, St::Retrying | St::Parked),
                    "message {id} (key {key}) handled while message {j} with its key is {:?}",
                    other.st
                );
                if m.st == St::Queued && j < id && other.lane == m.lane {
                    assert!(
                        other.st.settled(),
                        "message {id} (key {key}, lane {}) handled before earlier message {j} \
                         with its key and lane settled ({:?})",
                        m.lane,
                        other.st
                    );
                }
            }
        }
        let step = m.step(attempt);
        let lane = m.lane;
        let max = self.max_attempts;
        let dies = step == Step::DeadLetter || (step.fails() && attempt >= max);
        if dies && self.reader_active {
            self.make_room(lane);
        }
        let m = &mut self.msgs[id];
        m.attempts = attempt;
        m.st = match step {
            Step::Ack => St::Acked,
            Step::DeadLetter => St::Dead {
                exhausted: false,
                seen: false,
            },
            _ if attempt >= max => St::Dead {
                exhausted: true,
                seen: false,
            },
            Step::Park => St::Parked,
            _ => St::Retrying,
        };
        self.handled += 1;
        match m.st {
            St::Acked => self.acked += 1,
            St::Dead { .. } => {
                self.dead += 1;
                self.dead_queue[lane].push_back(id);
            }
            _ => self.retries += 1,
        }
        if step == Step::Panic {
            self.panics += 1;
        }
        self.log.push((id, attempt));
        step
    }

    /// Empties the dead-letter queue if the lane of `lane` is full.
    fn make_room(&mut self, lane: usize) {
        let Some(rx) = self.dead_rx.clone() else {
            return;
        };
        let p = Priority::ALL[lane];
        if rx.len_of(p) < rx.capacity_of(p) {
            return;
        }
        while let Ok(letter) = rx.try_recv() {
            self.on_received(letter);
        }
    }

    /// A dead letter from the queue while the pool runs: the front of the
    /// highest lane with dead letters.
    fn on_received(&mut self, letter: DeadLetter<Msg>) {
        let want = self.dead_queue.iter_mut().find_map(|q| q.pop_front());
        assert_eq!(
            Some(letter.payload.id),
            want,
            "dead letter received out of order"
        );
        self.check_dead(letter, "dead letter");
    }

    /// Checks a dead letter (received or unsent) and marks it seen.
    fn check_dead(&mut self, letter: DeadLetter<Msg>, what: &str) {
        let id = letter.payload.id;
        assert!(id < self.msgs.len(), "{what}: unknown message {id}");
        letter.payload.check(id, what);
        let max = self.max_attempts;
        let m = &mut self.msgs[id];
        let St::Dead { exhausted, seen } = m.st else {
            panic!("{what}: message {id} is {:?}", m.st);
        };
        assert!(!seen, "{what}: message {id} dead-lettered twice");
        m.st = St::Dead {
            exhausted,
            seen: true,
        };
        assert_eq!(letter.attempts, m.attempts, "{what} {id}: attempts");
        assert!(letter.attempts <= max, "{what} {id}: attempts > max");
        assert_eq!(letter.priority, Priority::ALL[m.lane], "{what} {id}: lane");
        assert_eq!(letter.key, m.key.map(u64::from), "{what} {id}: key");
        if exhausted {
            assert_eq!(letter.attempts, max, "{what} {id}: retries exhausted early");
            assert!(
                letter.reason.contains("no attempts left"),
                "{what} {id}: reason {:?}",
                letter.reason
            );
        } else {
            assert_eq!(letter.reason, Self::reason(id), "{what} {id}: reason");
        }
    }

    fn unseen_dead(&self) -> usize {
        self.dead_queue.iter().map(|q| q.len()).sum()
    }
}

// ----- the harness -----

struct Harness {
    pool: WorkerPool<Msg>,
    tx: Sender<Msg>,
    /// Our view of the channel (and what is left in it at the end).
    rx: Receiver<Msg>,
    dead: Receiver<DeadLetter<Msg>>,
    model: Arc<Mutex<Model>>,
    log: Arc<DropLog>,
    breaker: bool,
}

impl Harness {
    fn new(input: &Input) -> Self {
        let caps = input.caps.map(|c| 1 + usize::from(c % 4));
        let (tx, rx) = Priority::ALL
            .into_iter()
            .fold(ChannelBuilder::new(), |b, p| {
                b.lane_capacity(p, caps[p.index()])
            })
            .build::<Msg>();
        let max_attempts = 1 + u32::from(input.max_attempts % 4);
        let model = Arc::new(Mutex::new(Model {
            max_attempts,
            reader_active: true,
            ..Model::default()
        }));
        let handler_model = model.clone();
        let handler = move |d: &Delivery<Msg>| {
            let step = lock(&handler_model).on_handle(d);
            let id = d.payload().id;
            match step {
                Step::Ack => Outcome::Ack,
                Step::Retry => Outcome::Retry,
                Step::RetryNow => Outcome::RetryAfter(Duration::ZERO),
                Step::DeadLetter => Outcome::DeadLetter(Model::reason(id)),
                Step::Park => Outcome::RetryAfter(PARK),
                Step::Panic => {
                    EXPECTED_PANIC.with(|e| e.set(true));
                    panic!("scripted panic {id}");
                }
            }
        };
        let mut builder = WorkerPool::builder()
            .workers(0)
            .batch_size(1 + usize::from(input.batch % 8))
            .retry(RetryPolicy::attempts(max_attempts).backoff(Duration::ZERO, Duration::ZERO, 1.0))
            .key(|m: &Msg| m.key.map(u64::from));
        if let Some(c) = input.dead_capacity {
            builder = builder.dead_letter_capacity(1 + usize::from(c % 4));
        }
        if let Some(b) = &input.breaker {
            builder = builder.circuit_breaker(CircuitBreaker {
                window: 1 + usize::from(b.window % 8),
                min_attempts: 1 + usize::from(b.min_attempts % 8),
                failure_ratio: f64::from(1 + b.ratio % 4) / 4.0,
                cool_down: if b.cool_down {
                    Duration::from_micros(50)
                } else {
                    Duration::ZERO
                },
            });
        }
        let pool = builder.build(rx.clone(), handler);
        let dead = pool.dead_letters();
        lock(&model).dead_rx = Some(dead.clone());
        Self {
            pool,
            tx,
            rx,
            dead,
            model,
            log: Arc::new(DropLog(Mutex::new(Vec::new()))),
            breaker: input.breaker.is_some(),
        }
    }

    fn model(&self) -> MutexGuard<'_, Model> {
        lock(&self.model)
    }

    fn run(&mut self, op: &Op) {
        match op {
            Op::Send { lane, key, script } => self.send(*lane, *key, script),
            Op::RunPending => self.run_pending(),
            Op::RecvDead { n } => self.recv_dead(n % 8 + 1),
        }
        self.check_drops();
    }

    fn send(&mut self, lane: u8, key: Option<u8>, script: &[Step]) {
        let lane = usize::from(lane) % LANES;
        let p = Priority::ALL[lane];
        let key = key.map(|k| k % KEYS);
        let id = {
            let mut drops = lock(&self.log.0);
            drops.push(0);
            drops.len() - 1
        };
        let mut model = self.model();
        let max = model.max_attempts as usize;
        model.msgs.push(MsgModel {
            lane,
            key,
            script: script.iter().copied().take(max).collect(),
            attempts: 0,
            st: St::Queued,
        });
        drop(model);
        let msg = Msg {
            id,
            key,
            boxed: Box::new(id),
            log: self.log.clone(),
        };
        let full = self.rx.len_of(p) >= self.rx.capacity_of(p);
        match self.tx.try_send_with(p, msg) {
            Ok(()) => assert!(!full, "try_send_with({p}) accepted into a full lane"),
            Err(TrySendError::Full(back)) => {
                assert!(full, "try_send_with({p}) = Full, lane not full");
                back.check(id, "try_send_with handed back");
                self.model().msgs[id].st = St::Rejected;
            }
            Err(e) => panic!("try_send_with({p}) = {e:?} on an open channel"),
        }
    }

    fn run_pending(&mut self) {
        // The unkeyed messages never handled are all in the channel (the
        // worker queue is empty between calls): this is the order in which
        // the pool must first handle them.
        let unkeyed: Vec<usize> = {
            let mut model = self.model();
            model.log.clear();
            let mut v: Vec<(usize, usize)> = model
                .msgs
                .iter()
                .enumerate()
                .filter(|(_, m)| m.st == St::Queued && m.key.is_none())
                .map(|(id, m)| (m.lane, id))
                .collect();
            v.sort_unstable();
            v.into_iter().map(|(_, id)| id).collect()
        };
        let n = self.pool.run_pending();
        // `stats()` copies the latency histograms (~0.4 ms): only where
        // the counters can have changed.
        let stats = self.pool.stats();
        self.check_stats(&stats);
        let breaker = stats.breaker;
        let source_depth = self.rx.len();
        let model = self.model();
        assert_eq!(n, model.log.len(), "run_pending() count vs handler calls");
        let first: Vec<usize> = model
            .log
            .iter()
            .filter(|&&(id, attempt)| attempt == 1 && model.msgs[id].key.is_none())
            .map(|&(id, _)| id)
            .collect();
        assert!(
            first.len() <= unkeyed.len() && first[..] == unkeyed[..first.len()],
            "unkeyed first attempts {first:?}, queued (lane, send order) {unkeyed:?}"
        );
        for (id, m) in model.msgs.iter().enumerate() {
            assert_ne!(
                m.st,
                St::Retrying,
                "message {id} left retrying by run_pending"
            );
        }
        if breaker == BreakerState::Closed {
            // No work is ready: nothing in the source, every key waits on a
            // parked message.
            assert_eq!(
                source_depth, 0,
                "run_pending() returned with messages in the source (breaker closed)"
            );
            assert_eq!(
                first.len(),
                unkeyed.len(),
                "run_pending() left unkeyed messages unhandled"
            );
            for (id, m) in model.msgs.iter().enumerate() {
                if m.st != St::Queued {
                    continue;
                }
                let key = m.key.expect("unkeyed message left queued");
                assert!(
                    model
                        .msgs
                        .iter()
                        .any(|o| o.key == Some(key) && o.st == St::Parked),
                    "message {id} (key {key}) is ready but was left by run_pending()"
                );
            }
        } else {
            assert!(self.breaker, "breaker {breaker:?} without a breaker");
        }
    }

    fn recv_dead(&mut self, n: u8) {
        for _ in 0..n {
            match self.dead.try_recv() {
                Ok(letter) => self.model().on_received(letter),
                Err(TryRecvError::Empty) => {
                    assert_eq!(self.model().unseen_dead(), 0, "dead letters missing");
                    return;
                }
                Err(e) => panic!("dead letters: try_recv = {e:?} while the pool runs"),
            }
        }
    }

    fn check_stats(&self, s: &PoolStats) {
        let model = self.model();
        assert_eq!(s.acked, model.acked, "stats.acked");
        assert_eq!(s.dead_lettered, model.dead, "stats.dead_lettered");
        assert_eq!(s.panics, model.panics, "stats.panics");
        assert_eq!(s.retried, model.retries, "stats.retried");
        assert_eq!(s.processed, model.handled, "stats.processed");
        assert_eq!(s.source_depth, self.rx.len(), "stats.source_depth");
        let accepted = model.accepted();
        let unsettled = accepted - model.acked - model.dead;
        assert_eq!(
            s.in_pool + s.source_depth as u64,
            unsettled,
            "in_pool + source_depth vs unsettled"
        );
        assert_eq!(s.taken, accepted - s.source_depth as u64, "stats.taken");
        assert_eq!(
            self.dead.len(),
            model.unseen_dead(),
            "dead letters queued vs model"
        );
    }

    /// Acked and received messages are dropped (once); the others not yet.
    fn check_drops(&self) {
        let drops = lock(&self.log.0);
        let model = self.model();
        for (id, m) in model.msgs.iter().enumerate() {
            let want = match m.st {
                St::Rejected | St::Acked | St::Dead { seen: true, .. } => 1,
                _ => 0,
            };
            assert_eq!(drops[id], want, "message {id} ({:?}): drops", m.st);
        }
    }

    fn finish(self, end: End) {
        self.check_stats(&self.pool.stats());
        let Harness {
            pool,
            tx,
            rx,
            dead,
            model,
            log,
            ..
        } = self;
        // `join` would wait an hour for a message that is parked or will
        // be (a `Park` step before its last attempt).
        let parked = {
            let m = lock(&model);
            let max = m.max_attempts as usize;
            m.msgs.iter().any(|mm| {
                mm.st == St::Parked
                    || (mm.st.in_pool_or_channel()
                        && mm.script[(mm.attempts as usize).min(mm.script.len())..]
                            .iter()
                            .take(max.saturating_sub(mm.attempts as usize + 1))
                            .any(|&s| s == Step::Park))
            })
        };
        let end = match end {
            End::Join if parked => End::Drain { wait: 1 },
            end => end,
        };
        let handled_before = lock(&model).handled;
        let started = Instant::now();
        let deadline_of = |wait: u8| started + Duration::from_micros(100 * u64::from(wait % 8));
        let mut deadline = None;
        let report: ShutdownReport<Msg> = match end {
            End::Immediate => pool.shutdown(Shutdown::Immediate),
            End::Graceful { wait } => {
                lock(&model).reader_active = false;
                let d = deadline_of(wait);
                deadline = Some(d);
                pool.shutdown(Shutdown::Graceful { deadline: d })
            }
            End::Drain { wait } => {
                lock(&model).reader_active = false;
                let d = deadline_of(wait);
                deadline = Some(d);
                pool.shutdown(Shutdown::Drain { deadline: d })
            }
            End::Join => {
                drop(tx);
                pool.join()
            }
        };
        let done = Instant::now();
        let mut m = lock(&model);
        m.reader_active = false;
        m.dead_rx = None;

        // Returned.
        let mut last: Option<(Priority, usize)> = None;
        for u in &report.unprocessed {
            let id = u.payload.id;
            u.payload.check(id, "unprocessed");
            let mm = &mut m.msgs[id];
            assert!(
                mm.st.in_pool_or_channel(),
                "unprocessed message {id} is {:?}",
                mm.st
            );
            mm.st = St::Returned;
            assert_eq!(u.attempts, mm.attempts, "unprocessed {id}: attempts");
            assert_eq!(u.priority, Priority::ALL[mm.lane], "unprocessed {id}: lane");
            if let Some(prev) = last {
                assert!(
                    prev < (u.priority, id),
                    "unprocessed out of order: {prev:?} then {:?}",
                    (u.priority, id)
                );
            }
            last = Some((u.priority, id));
        }
        // Left in the channel.
        let mut left = 0;
        while let Ok(msg) = rx.try_recv() {
            let id = msg.id;
            msg.check(id, "left in the channel");
            let mm = &mut m.msgs[id];
            assert_eq!(mm.st, St::Queued, "message {id} left in the channel");
            mm.st = St::LeftInChannel;
            left += 1;
            drop(msg);
        }
        // Dead letters: per lane, the queue holds a prefix of the model's
        // order, `dead_letters_unsent` the rest.
        let mut received: [Vec<usize>; LANES] = Default::default();
        while let Ok(letter) = dead.try_recv() {
            received[letter.priority.index()].push(letter.payload.id);
            m.check_dead(letter, "dead letter (end)");
        }
        let mut unsent: [Vec<usize>; LANES] = Default::default();
        for letter in report.dead_letters_unsent.iter() {
            unsent[letter.priority.index()].push(letter.payload.id);
        }
        let ShutdownReport {
            taken,
            acked,
            dead_lettered,
            retries,
            panics,
            unprocessed,
            dead_letters_unsent,
            timed_out,
        } = report;
        for letter in dead_letters_unsent {
            m.check_dead(letter, "unsent dead letter");
        }
        for lane in 0..LANES {
            let want: Vec<usize> = m.dead_queue[lane].drain(..).collect();
            let got: Vec<usize> = received[lane]
                .iter()
                .chain(&unsent[lane])
                .copied()
                .collect();
            assert_eq!(got, want, "lane {lane}: dead letters received + unsent");
        }

        // Every accepted message in exactly one place.
        for (id, mm) in m.msgs.iter().enumerate() {
            match mm.st {
                St::Rejected
                | St::Acked
                | St::Returned
                | St::LeftInChannel
                | St::Dead { seen: true, .. } => {}
                st => panic!("message {id} lost: {st:?} after {end:?}"),
            }
        }
        let returned = unprocessed.len() as u64;
        assert_eq!(acked, m.acked, "report.acked");
        assert_eq!(dead_lettered, m.dead, "report.dead_lettered");
        assert_eq!(panics, m.panics, "report.panics");
        assert_eq!(retries, m.retries, "report.retries");
        assert_eq!(taken, m.accepted() - left, "report.taken");
        assert_eq!(
            taken,
            acked + dead_lettered + returned,
            "report not consistent"
        );
        match end {
            End::Immediate => {
                assert!(!timed_out, "Immediate: timed_out");
                assert_eq!(m.handled, handled_before, "Immediate: handled messages");
            }
            End::Join => {
                assert!(!timed_out, "join: timed_out");
                assert_eq!(returned, 0, "join: unprocessed");
                assert_eq!(left, 0, "join: left in the channel");
            }
            End::Graceful { .. } | End::Drain { .. } => {
                let deadline = deadline.expect("set");
                if timed_out {
                    assert!(done >= deadline, "timed out before the deadline");
                } else {
                    assert_eq!(returned, 0, "{end:?}: unprocessed without a time-out");
                }
                if let End::Drain { .. } = end {
                    assert_eq!(left, 0, "Drain: left in the channel");
                }
            }
        }
        drop(m);
        drop(unprocessed);
        drop(dead);
        drop(rx);
        drop(model);
        let drops = lock(&log.0);
        for (id, &d) in drops.iter().enumerate() {
            assert_eq!(d, 1, "message {id} dropped {d} times by the end");
        }
    }
}

fuzz_target!(|input: Input| {
    install_panic_hook();
    let mut harness = Harness::new(&input);
    let mut sent = 0;
    for op in &input.ops {
        if let Op::Send { .. } = op {
            if sent == MAX_MESSAGES {
                continue;
            }
            sent += 1;
        }
        harness.run(op);
    }
    harness.finish(input.end);
});
