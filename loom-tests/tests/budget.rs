#![cfg(loom)]
//! Model 9: the memory budget. Releases racing blocked acquires (threads
//! and async), the watermark between priorities, `try_acquire` at the
//! boundary, a budgeted channel, and `refresh` raising the limit. Under
//! loom a blocking acquire parks at once, and a lost wake-up leaves it
//! parked for ever, which loom reports as a deadlock.
//!
//! No model yields before its releasing (or refreshing) operation (see
//! `common`): the release may land anywhere in the waiter's try, register,
//! re-check, park sequence, which is where a lost wake-up hides. loom
//! reaches "the waiter parked first" by preempting the releaser.
//! `common::block_on` yields after a `Pending`, which is after the
//! register and re-check.

mod common;

use std::time::Duration;

use common::block_on;
use lanebus::budget::{MemoryReading, MemorySource};
use lanebus::{ChannelBuilder, MemoryBudget, Priority, TryRecvError};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;

/// A budget of `max` bytes whose watermark is `max` (no watermark).
fn flat(max: usize) -> MemoryBudget {
    MemoryBudget::builder(max).high_watermark(max).build()
}

/// A thread blocked in `acquire` on a full budget is woken by the release
/// that frees room: the waiter's register-then-retry against the
/// releaser's `fetch_sub`-then-read-the-list (the `gate` handshake).
#[test]
fn release_races_blocked_acquire() {
    common::model("release_races_blocked_acquire", || {
        let budget = flat(2);
        let held = budget.try_acquire(Priority::Normal, 2).unwrap();
        let waiter = thread::spawn({
            let budget = budget.clone();
            move || {
                let permit = budget.acquire(Priority::Normal, 1).unwrap();
                assert_eq!(permit.bytes(), 1);
                permit
            }
        });
        drop(held);
        let permit = waiter.join().unwrap();
        assert_eq!(budget.in_use(), 1);
        drop(permit);
        assert_eq!(budget.in_use(), 0);
    });
}

/// Two blocked acquirers that do not fit together (`High` 2 and `Low` 2 in
/// a budget of 3) and one release: the first one admitted holds its permit
/// briefly and drops it, and that second release must wake the other one
/// (every release wakes all waiters; each re-checks its own rule). Either
/// release may land anywhere in either waiter's try, register, re-check
/// and park.
#[test]
fn two_waiters_one_release_each() {
    common::model("two_waiters_one_release_each", || {
        let budget = MemoryBudget::builder(3).high_watermark(2).build();
        let held = budget.try_acquire(Priority::Urgent, 3).unwrap();
        let waiter = |priority| {
            let budget = budget.clone();
            thread::spawn(move || {
                let permit = budget.acquire(priority, 2).unwrap();
                assert!(budget.in_use() <= 3);
                drop(permit);
            })
        };
        let high = waiter(Priority::High);
        let low = waiter(Priority::Low);
        drop(held);
        high.join().unwrap();
        low.join().unwrap();
        assert_eq!(budget.in_use(), 0);
        assert!(budget.stats().peak <= 3);
    });
}

/// Two threads `try_acquire` 2 bytes each from a budget of 3 and keep what
/// they get: exactly one is admitted (the CAS on `used` re-runs the rule
/// on the value it lost to), and each permit is released exactly once.
#[test]
fn try_acquire_races_at_boundary() {
    common::model("try_acquire_races_at_boundary", || {
        let budget = flat(3);
        let racer = || {
            let budget = budget.clone();
            thread::spawn(move || budget.try_acquire(Priority::Normal, 2).ok())
        };
        let (a, b) = (racer(), racer());
        let a = a.join().unwrap();
        let b = b.join().unwrap();
        assert!(a.is_some() != b.is_some(), "exactly one of 2 + 2 fits in 3");
        assert_eq!(budget.in_use(), 2);
        assert_eq!(budget.stats().peak, 2);
        drop((a, b));
        assert_eq!(budget.in_use(), 0);
    });
}

/// A `try_acquire` of the whole budget races the release of the permit
/// holding it: admitted only after the release (never above `max`), and
/// the bytes come back exactly once.
#[test]
fn try_acquire_races_release() {
    common::model("try_acquire_races_release", || {
        let budget = flat(2);
        let held = budget.try_acquire(Priority::Normal, 2).unwrap();
        let releaser = thread::spawn(move || drop(held));
        let got = budget.try_acquire(Priority::Normal, 2).ok();
        assert!(budget.in_use() <= 2);
        releaser.join().unwrap();
        assert_eq!(budget.in_use(), if got.is_some() { 2 } else { 0 });
        assert_eq!(budget.stats().peak, 2);
        drop(got);
        assert_eq!(budget.in_use(), 0);
    });
}

/// Above the watermark (2 of 4 held, watermark 2) a blocked `Low` acquire
/// waits while an `Urgent` one passes. Releasing the urgent bytes wakes
/// the `Low` waiter for nothing (it must register again); releasing the
/// first 2 bytes must wake it for real. It is never admitted before that
/// release. Both releases race the `Low` acquire's register and re-check.
#[test]
fn low_waits_above_watermark_urgent_passes() {
    common::model("low_waits_above_watermark_urgent_passes", || {
        let budget = MemoryBudget::builder(4).high_watermark(2).build();
        let held = budget.try_acquire(Priority::Normal, 2).unwrap();
        let released = Arc::new(AtomicBool::new(false));
        let low = thread::spawn({
            let budget = budget.clone();
            let released = released.clone();
            move || {
                let permit = budget.acquire(Priority::Low, 1).unwrap();
                // Acquire: the admitting CAS read the release's `fetch_sub`,
                // which comes after the Release store below.
                assert!(
                    released.load(Ordering::Acquire),
                    "Low admitted above the watermark"
                );
                permit
            }
        });
        let urgent = budget.try_acquire(Priority::Urgent, 2).unwrap();
        assert_eq!(budget.in_use(), 4);
        drop(urgent);
        // Release: pairs with the Acquire load in the `Low` thread.
        released.store(true, Ordering::Release);
        drop(held);
        let permit = low.join().unwrap();
        assert_eq!(budget.in_use(), 1);
        drop(permit);
        assert_eq!(budget.in_use(), 0);
    });
}

/// `acquire_async` on a full budget (a loom waker, `block_on`) is woken by
/// a release in another thread, which may land before, between or after
/// the future's register and re-check.
#[test]
fn acquire_async_woken_by_release() {
    common::model("acquire_async_woken_by_release", || {
        let budget = flat(2);
        let held = budget.try_acquire(Priority::Normal, 2).unwrap();
        let releaser = thread::spawn(move || drop(held));
        let permit = block_on(budget.acquire_async(Priority::Normal, 1)).unwrap();
        assert_eq!(permit.bytes(), 1);
        releaser.join().unwrap();
        assert_eq!(budget.in_use(), 1);
        drop(permit);
        assert_eq!(budget.in_use(), 0);
    });
}

/// An `acquire_async` future polled once (registered first) and a thread
/// blocked in `acquire`; a third thread releases while the future is
/// dropped. If the release woke the future, dropping it must pass the
/// wake-up on (`cancel_and_forward`), or the thread stays parked with the
/// budget free. (A permit's release wakes every waiter, so today the thread
/// is woken by the release itself and a missing forward goes unnoticed;
/// these two models guard a switch to waking fewer.) The release races the
/// thread's register, re-check and park, and the drop.
#[test]
fn cancelled_acquire_future_forwards_wakeup() {
    common::model("cancelled_acquire_future_forwards_wakeup", || {
        let budget = flat(2);
        let held = budget.try_acquire(Priority::Normal, 2).unwrap();
        let mut fut = budget.acquire_async(Priority::Normal, 1);
        assert!(common::poll_once(&mut fut).is_pending());
        let blocked = thread::spawn({
            let budget = budget.clone();
            move || budget.acquire(Priority::Normal, 2).unwrap()
        });
        let releaser = thread::spawn(move || drop(held));
        drop(fut);
        let permit = blocked.join().unwrap();
        releaser.join().unwrap();
        assert_eq!(budget.in_use(), 2);
        drop(permit);
        assert_eq!(budget.in_use(), 0);
    });
}

/// As above with the main thread releasing: the future registered first is
/// woken by the release and then dropped; the blocked thread must still be
/// admitted. The release races the thread's register, re-check and park.
///
/// This model cannot catch a weak handshake (`Relaxed` handshake loads and
/// register pass): the future's own registration keeps the waiter count
/// non-zero, so the release's notify always takes the waiter list's lock,
/// which orders it with the thread's register. The handshake is
/// `release_races_blocked_acquire`'s and
/// `cancelled_acquire_future_forwards_wakeup`'s to check; this one checks
/// the forward.
#[test]
fn woken_acquire_future_dropped_forwards_wakeup() {
    common::model("woken_acquire_future_dropped_forwards_wakeup", || {
        let budget = flat(2);
        let held = budget.try_acquire(Priority::Normal, 2).unwrap();
        let mut fut = budget.acquire_async(Priority::Normal, 1);
        assert!(common::poll_once(&mut fut).is_pending());
        let blocked = thread::spawn({
            let budget = budget.clone();
            move || budget.acquire(Priority::Normal, 2).unwrap()
        });
        drop(held);
        drop(fut);
        let permit = blocked.join().unwrap();
        assert_eq!(budget.in_use(), 2);
        drop(permit);
        assert_eq!(budget.in_use(), 0);
    });
}

/// A `BudgetedSender::send` blocked on the budget (one `u8` held of 1
/// byte) is woken when the receiver, in another thread, takes the queued
/// `Permitted` value and drops it: the permit travels with the value and
/// its release is the wake-up. The drop may land anywhere in the send's
/// try, register, re-check and park.
#[test]
fn budgeted_send_woken_by_dropped_value() {
    common::model("budgeted_send_woken_by_dropped_value", || {
        let budget = flat(1);
        let (tx, rx) = ChannelBuilder::new()
            .capacity(2)
            .build_budgeted::<u8>(budget.clone());
        assert!(tx.try_send(1).is_ok());
        let rx2 = rx.clone();
        let consumer = thread::spawn(move || {
            let value = rx2.recv().unwrap();
            assert_eq!(*value, 1);
            assert_eq!(value.permit().bytes(), 1);
            drop(value);
        });
        assert!(tx.send(2).is_ok());
        consumer.join().unwrap();
        assert_eq!(budget.in_use(), 1);
        let value = rx.try_recv().unwrap();
        assert_eq!(*value, 2);
        drop(value);
        assert_eq!(budget.in_use(), 0);
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    });
}

/// A memory source that returns its readings in order, then none.
struct Readings(Vec<MemoryReading>);

impl MemorySource for Readings {
    fn sample(&mut self) -> Option<MemoryReading> {
        (!self.0.is_empty()).then(|| self.0.remove(0))
    }
}

/// A thread blocked because process pressure lowered the limit to 0 is
/// woken by the `refresh` that raises it again: the waiter's re-check of
/// `limit` against `refresh`'s swap-then-read-the-list. The refresh may
/// land anywhere in the waiter's try, register, re-check and park.
#[test]
fn refresh_raising_limit_wakes_waiter() {
    common::model("refresh_raising_limit_wakes_waiter", || {
        let reading = |current| MemoryReading { current, max: 100 };
        let source = Readings(vec![reading(100), reading(0)]);
        let budget = MemoryBudget::builder(2)
            .memory_source(source, Duration::from_secs(1))
            .reserve_percent(0)
            .build();
        assert_eq!(budget.refresh(), Some(reading(100)));
        assert_eq!(budget.limit(), 0);
        let waiter = thread::spawn({
            let budget = budget.clone();
            move || budget.acquire(Priority::Urgent, 1).unwrap()
        });
        assert_eq!(budget.refresh(), Some(reading(0)));
        assert_eq!(budget.limit(), 2);
        let permit = waiter.join().unwrap();
        assert_eq!(budget.in_use(), 1);
        drop(permit);
        assert_eq!(budget.in_use(), 0);
    });
}
