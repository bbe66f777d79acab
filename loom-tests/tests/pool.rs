#![cfg(loom)]
//! Model 12: the worker pool. The intake lock's "look again" request, a
//! key's messages handled one at a time and in order while workers steal,
//! shutdown racing in-flight work, and idle workers woken by a send or a
//! shutdown. A wake-up lost in the pool's idle protocol leaves a worker
//! parked for ever and `join`/`shutdown` waiting for it, which loom
//! reports as a deadlock.
//!
//! No model yields before its racing operation (see `common`): the send,
//! close or shutdown may land anywhere in a worker's look, register,
//! re-check, park sequence. Under loom a worker parks as soon as it finds
//! nothing (`PARK_AFTER` is 0), and a timed park (a shutdown deadline) is
//! a yield.

mod common;

use std::time::{Duration, Instant};

use lanebus::pool::loom_api::IntakeLock;
use lanebus::pool::{Delivery, Outcome, Shutdown, ShutdownReport, WorkerPool};
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

// ---------------------------------------------------------------------------
// The intake lock
// ---------------------------------------------------------------------------

/// A toy source: item `i` is pending while `items[i]` is 1. Pushes and
/// takes are plain `Relaxed` accesses, so an item is only surely seen by a
/// look that its push happens-before: the ordering has to come from the
/// lock (the asker's Release CAS, the holder's Acquire swap), as it does
/// for a pool's real source.
struct Toy {
    items: Vec<AtomicUsize>,
    lock: IntakeLock<usize>,
}

impl Toy {
    fn new(n: usize) -> Self {
        Self {
            items: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            // The data: how many items were taken, by whoever held it.
            lock: IntakeLock::new(0),
        }
    }

    fn push(&self, i: usize) {
        self.items[i].store(1, Ordering::Relaxed);
    }

    /// What a worker's `refill` does: try to enter; holding, take every
    /// pending item, and take again for as long as `leave` says someone
    /// asked.
    fn look(&self) {
        let Some(mut guard) = self.lock.try_enter() else {
            return;
        };
        loop {
            guard.with(|taken| {
                for item in &self.items {
                    if item.load(Ordering::Relaxed) == 1 {
                        item.store(0, Ordering::Relaxed);
                        *taken += 1;
                    }
                }
            });
            match guard.leave() {
                Some(again) => guard = again,
                None => return,
            }
        }
    }

    /// After every thread has been joined: nothing is pending and each
    /// item was taken exactly once. (The count sits in the lock's
    /// `UnsafeCell`: two holders at once would be a loom causality error.)
    fn check_all_taken(&self) {
        for (i, item) in self.items.iter().enumerate() {
            assert_eq!(item.load(Ordering::Relaxed), 0, "item {i} stranded");
        }
        let mut guard = self.lock.try_enter().expect("nobody holds the lock");
        assert_eq!(guard.with(|taken| *taken), self.items.len());
        assert!(guard.leave().is_none(), "nobody asked");
    }
}

/// Two threads each push an item and then look. Whichever fails to enter
/// has asked the holder to look again, so its item, pushed before the
/// failed `try_enter`, is taken by a look that starts after it: nothing is
/// left pending, and the lock is never held twice.
#[test]
fn intake_failed_entry_makes_holder_look_again() {
    common::model("intake_failed_entry_makes_holder_look_again", || {
        let toy = Arc::new(Toy::new(2));
        let other = thread::spawn({
            let toy = toy.clone();
            move || {
                toy.push(1);
                toy.look();
            }
        });
        toy.push(0);
        toy.look();
        other.join().unwrap();
        toy.check_all_taken();
    });
}

/// Three threads push and look: a second asker finds `WANTED` already set
/// and must still order its push before the holder's next look (it writes
/// the word again with Release instead of returning at once).
#[test]
fn intake_second_request_is_ordered_too() {
    common::model("intake_second_request_is_ordered_too", || {
        let toy = Arc::new(Toy::new(3));
        let others: Vec<_> = (1..3)
            .map(|i| {
                let toy = toy.clone();
                thread::spawn(move || {
                    toy.push(i);
                    toy.look();
                })
            })
            .collect();
        toy.push(0);
        toy.look();
        for other in others {
            other.join().unwrap();
        }
        toy.check_all_taken();
    });
}

// ---------------------------------------------------------------------------
// Pools
// ---------------------------------------------------------------------------

/// Branch points a pool model's execution may take (`common::model_long`):
/// the longest here, a worker whose park is a yield (a `Drain` deadline is
/// set) spinning until the close, take up to about 3000 at 3 preemptions.
const POOL_BRANCHES: usize = 6_000;

/// What the handlers did, in an `UnsafeCell` that only the pool orders:
/// two handler calls not ordered by happens-before (two messages of one
/// key at once, or a successor not synchronised with its predecessor) are
/// a loom causality error, not just a wrong order.
struct Handled(UnsafeCell<Vec<u32>>);

// SAFETY: only touched by handlers of messages that share one key (the
// pool runs them one at a time, ordered by happens-before: what the model
// checks) and by the model thread after `join`.
unsafe impl Sync for Handled {}
// SAFETY: as above.
unsafe impl Send for Handled {}

impl Handled {
    fn new() -> Arc<Self> {
        Arc::new(Self(UnsafeCell::new(Vec::new())))
    }

    fn push(&self, v: u32) {
        // SAFETY: see the `Sync` impl; loom checks it.
        self.0.with_mut(|p| unsafe { (*p).push(v) });
    }

    fn take(&self) -> Vec<u32> {
        // SAFETY: see the `Sync` impl; loom checks it.
        self.0.with_mut(|p| unsafe { core::mem::take(&mut *p) })
    }
}

/// Two messages with one key, sent and the channel closed before two
/// workers start (the only race is between the workers), handled by a
/// pool with `batch`; both are handled, one after the other (ordered by
/// happens-before), first to last, and both workers leave.
fn one_key_two_workers(batch: usize) {
    let (tx, rx) = lanebus::bounded::<u32>(2);
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    drop(tx);
    let handled = Handled::new();
    let pool = WorkerPool::builder()
        .workers(2)
        .batch_size(batch)
        .dead_letter_capacity(1)
        .key(|_: &u32| Some(0))
        .build(rx, {
            let handled = handled.clone();
            move |d: &Delivery<u32>| {
                handled.push(*d.payload());
                Outcome::Ack
            }
        });
    let report = pool.join();
    assert!(report.is_consistent(), "{report:?}");
    assert_eq!((report.taken, report.acked), (2, 2), "{report:?}");
    assert_eq!(handled.take(), [1, 2]);
}

/// Batch 1: each look takes one message. Either worker may take the
/// first; the other may steal it from the taker's queue before the taker
/// pops it. The second is taken by a later look (the taker's, or the
/// thief's) into that worker's queue if the key is free again, else into
/// the key's mailbox, from which the worker that settles the first moves
/// it into its own queue. A worker that fails to enter the intake leaves a
/// request; a holder that stops at a full batch (here: always) drops it
/// and wakes an idle worker instead.
///
/// Also the regression model for that wake-up: without it (a holder whose
/// only job is stolen while this is its last look before parking, and
/// the asker parked too), loom reports both workers parked for ever and
/// `join` waiting, at 3 preemptions.
#[test]
fn key_handled_in_order_across_workers() {
    common::model_long("key_handled_in_order_across_workers", POOL_BRANCHES, || {
        one_key_two_workers(1)
    });
}

/// Batch 2: one look takes both messages, the first into the taker's
/// queue and the second into the key's mailbox, and wakes the other
/// worker to steal. If it steals the first, the second follows the thief:
/// it moves into the thief's queue when the first is settled.
#[test]
fn key_successor_follows_stolen_job() {
    common::model_long("key_successor_follows_stolen_job", POOL_BRANCHES, || {
        one_key_two_workers(2)
    });
}

/// A one-worker pool on an empty channel.
fn idle_pool() -> (lanebus::Sender<u32>, Log, WorkerPool<u32>) {
    let (tx, rx) = lanebus::bounded::<u32>(2);
    let log = Log::default();
    let pool = WorkerPool::builder()
        .workers(1)
        .batch_size(1)
        .dead_letter_capacity(1)
        .build(rx, acking(&log));
    (tx, log, pool)
}

/// An idle worker and a send: the send lands anywhere in the worker's
/// look, register, re-check, park sequence, and the message is handled;
/// then the last sender is dropped and the pool finishes.
#[test]
fn idle_worker_woken_by_send() {
    common::model_long("idle_worker_woken_by_send", POOL_BRANCHES, || {
        let (tx, log, pool) = idle_pool();
        tx.send(1).unwrap();
        drop(tx);
        let report = pool.join();
        assert!(report.is_consistent(), "{report:?}");
        assert_eq!((report.taken, report.acked), (1, 1), "{report:?}");
        assert_eq!(*log.lock().unwrap(), [1]);
    });
}

/// An idle worker and a send, with the sender kept open until the message
/// is handled: only the send's wake-up (or the worker's own re-check) can
/// get the worker to it. In [`idle_worker_woken_by_send`] the close that
/// follows the send wakes the worker too, and hides a send that wakes
/// nobody: with `try_send`'s `notify` removed, that model passes and this
/// one reports a deadlock (checked). A worker that parks past the message
/// leaves the model thread waiting for the handler's signal for ever.
///
/// Not reached here: the worker parking on a slot still being written
/// (`Take::Busy`, fixed in `next_job`; the unit test
/// `pool::tests::worker_does_not_park_on_a_send_still_being_written` acts
/// it out). It needs the sender's load of the waiter list to pass its own
/// earlier stamp store (a store buffer), and under loom that load is a
/// read-modify-write (`handshake_load` in `src/loom.rs`), which orders
/// the stamp before it: the model passes at 2 and 3 on the code before
/// the fix too (checked).
#[test]
fn idle_worker_woken_by_send_kept_open() {
    common::model_long("idle_worker_woken_by_send_kept_open", POOL_BRANCHES, || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        let (done_tx, done_rx) = lanebus::bounded::<u32>(1);
        let log = Log::default();
        let handler = {
            let log = log.clone();
            move |d: &Delivery<u32>| {
                log.lock().unwrap().push(*d.payload());
                done_tx.try_send(*d.payload()).unwrap();
                Outcome::Ack
            }
        };
        let pool = WorkerPool::builder()
            .workers(1)
            .batch_size(1)
            .dead_letter_capacity(1)
            .build(rx, handler);
        tx.send(1).unwrap();
        assert_eq!(done_rx.recv(), Ok(1));
        drop(tx);
        let report = pool.join();
        assert!(report.is_consistent(), "{report:?}");
        assert_eq!((report.taken, report.acked), (1, 1), "{report:?}");
        assert_eq!(*log.lock().unwrap(), [1]);
    });
}

/// An idle worker and the last sender dropped: the close wakes it, it
/// finds the source closed and empty, and leaves.
#[test]
fn idle_worker_woken_by_close() {
    common::model_long("idle_worker_woken_by_close", POOL_BRANCHES, || {
        let (tx, _log, pool) = idle_pool();
        drop(tx);
        let report = pool.join();
        assert!(report.is_consistent(), "{report:?}");
        assert_eq!(report.taken, 0);
    });
}

/// An idle worker (the sender kept) and an immediate shutdown: the stop
/// wakes it.
#[test]
fn idle_worker_woken_by_shutdown() {
    common::model_long("idle_worker_woken_by_shutdown", POOL_BRANCHES, || {
        let (tx, _log, pool) = idle_pool();
        let report = pool.shutdown(Shutdown::Immediate);
        assert!(report.is_consistent(), "{report:?}");
        assert_eq!(report.taken, 0);
        drop(tx);
    });
}

/// An idle worker and a graceful shutdown with time to spare: intake
/// closes (no stop, no deadline passing), which wakes it, and it finds
/// nothing left to do.
#[test]
fn idle_worker_woken_by_graceful_shutdown() {
    common::model_long(
        "idle_worker_woken_by_graceful_shutdown",
        POOL_BRANCHES,
        || {
            let (tx, _log, pool) = idle_pool();
            let report = pool.shutdown(Shutdown::Graceful {
                deadline: Instant::now() + Duration::from_secs(3600),
            });
            assert!(report.is_consistent(), "{report:?}");
            assert!(!report.timed_out);
            drop(tx);
        },
    );
}

/// A log of handled payloads, for handlers that may run at once.
type Log = Arc<Mutex<Vec<u32>>>;

/// A handler that acks and logs every payload, except that payload 1's
/// first attempt is retried at once when `retry_first` (it goes back into
/// the worker's own queue).
fn acking_or_retrying(
    log: &Log,
    retry_first: bool,
) -> impl Fn(&Delivery<u32>) -> Outcome + Send + Sync + 'static {
    let log = log.clone();
    move |d: &Delivery<u32>| {
        if retry_first && *d.payload() == 1 && d.attempt() == 1 {
            return Outcome::RetryAfter(Duration::ZERO);
        }
        log.lock().unwrap().push(*d.payload());
        Outcome::Ack
    }
}

/// A handler that acks and logs every payload.
fn acking(log: &Log) -> impl Fn(&Delivery<u32>) -> Outcome + Send + Sync + 'static {
    acking_or_retrying(log, false)
}

/// A one-worker pool with `batch`, on a channel holding `before` when the
/// worker starts; the model thread sends `after`, then shuts the pool down
/// with `mode`, racing the worker. Every message is accounted for exactly
/// once: acked (and logged by the handler), returned unprocessed, or left
/// in the channel (taken by a receiver clone after the shutdown). Returns
/// the report and the acked payloads.
fn shutdown_racing_work(
    before: &[u32],
    after: &[u32],
    batch: usize,
    retry_first: bool,
    mode: impl FnOnce() -> Shutdown,
) -> (ShutdownReport<u32>, Vec<u32>) {
    let (tx, rx) = lanebus::bounded::<u32>(2);
    let rest = rx.clone();
    for &v in before {
        tx.send(v).unwrap();
    }
    let log = Log::default();
    let pool = WorkerPool::builder()
        .workers(1)
        .batch_size(batch)
        .dead_letter_capacity(1)
        .build(rx, acking_or_retrying(&log, retry_first));
    for &v in after {
        tx.send(v).unwrap();
    }
    let report = pool.shutdown(mode());
    let acked = core::mem::take(&mut *log.lock().unwrap());
    let mut in_channel = Vec::new();
    while let Ok(v) = rest.try_recv() {
        in_channel.push(v);
    }
    drop(tx);

    assert!(report.is_consistent(), "{report:?}");
    assert_eq!(report.dead_lettered, 0, "{report:?}");
    assert_eq!(report.acked, acked.len() as u64, "{report:?}");
    let unprocessed: Vec<u32> = report.unprocessed.iter().map(|u| u.payload).collect();
    let mut all: Vec<u32> = acked
        .iter()
        .copied()
        .chain(unprocessed)
        .chain(in_channel)
        .collect();
    all.sort_unstable();
    let mut sent: Vec<u32> = before.iter().chain(after).copied().collect();
    sent.sort_unstable();
    assert_eq!(all, sent, "lost or duplicated: {report:?}");
    (report, acked)
}

/// `Immediate` racing a worker that takes a batch of two and handles it,
/// retrying the first message once (back into its own queue): each
/// message is acked, returned unprocessed (taken, perhaps tried once) or
/// left in the channel, exactly once.
#[test]
fn shutdown_immediate_races_work() {
    common::model_long("shutdown_immediate_races_work", POOL_BRANCHES, || {
        let (report, _) = shutdown_racing_work(&[1, 2], &[], 2, true, || Shutdown::Immediate);
        for u in &report.unprocessed {
            let tried = u32::from(u.payload == 1 && report.retries == 1);
            assert_eq!(u.attempts, tried, "{report:?}");
        }
    });
}

/// `Immediate` racing a send to an idle worker: the message is acked or
/// left in the channel, and the worker is never left parked.
#[test]
fn shutdown_immediate_races_send() {
    common::model_long("shutdown_immediate_races_send", POOL_BRANCHES, || {
        shutdown_racing_work(&[], &[1], 1, false, || Shutdown::Immediate);
    });
}

/// `Graceful` whose deadline has passed: the worker stops taking, times
/// out and stops (the deadline is seen at any point of its turn); the
/// accounting holds as for `Immediate`.
#[test]
fn shutdown_graceful_past_deadline_races_work() {
    common::model_long(
        "shutdown_graceful_past_deadline_races_work",
        POOL_BRANCHES,
        || {
            let (report, _) = shutdown_racing_work(&[1, 2], &[], 2, false, || Shutdown::Graceful {
                deadline: Instant::now(),
            });
            assert!(report.timed_out || report.unprocessed.is_empty());
        },
    );
}

/// `Drain` whose deadline has passed: the source is closed, the worker
/// stops, and what is left in the source is reported unprocessed too
/// (nothing stays in the channel).
#[test]
fn shutdown_drain_past_deadline_races_work() {
    common::model_long(
        "shutdown_drain_past_deadline_races_work",
        POOL_BRANCHES,
        || {
            let (report, acked) =
                shutdown_racing_work(&[1, 2], &[], 2, false, || Shutdown::Drain {
                    deadline: Instant::now(),
                });
            assert_eq!(acked.len() + report.unprocessed.len(), 2, "{report:?}");
        },
    );
}

/// `Drain` with time to spare racing a worker that takes a message,
/// handles it and goes idle: the close wakes the worker wherever it is
/// (parked on the source, or on its idle list with a timed park once the
/// deadline is set), and it leaves only after handling the message.
#[test]
fn shutdown_drain_handles_everything() {
    common::model_long("shutdown_drain_handles_everything", POOL_BRANCHES, || {
        let (report, acked) = shutdown_racing_work(&[1], &[], 1, false, || Shutdown::Drain {
            deadline: Instant::now() + Duration::from_secs(3600),
        });
        assert_eq!(acked, [1], "{report:?}");
        assert!(!report.timed_out);
    });
}
