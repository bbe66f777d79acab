#![cfg(loom)]
//! Model 14: timed waits. loom has no clock, so under `--cfg loom` time is
//! one switch, `lanebus::loom_expire_deadlines()`: until a model thread
//! flips it no deadline has passed, from then on every one has
//! (`passed` in `src/loom.rs`; a timed park is a spurious wake-up). A
//! thread that flips it lets loom put the moment a deadline passes between
//! any two steps of a timed wait: before it registers, between its
//! register and its park, after a sender or receiver took its registration
//! to wake it, and while its retry runs.
//!
//! What must hold: a timed call that times out leaves the channel as if it
//! had never run (a receive takes nothing, a send hands its value back),
//! and one that does not time out does exactly what the untimed call does.
//!
//! A timed waiter that times out holding a wake-up passes it on
//! (`WaitList::block_after`): modelled on the waiter list itself
//! ([`timed_out_waiter_passes_on_a_wake_up_it_holds`]), with a condition of
//! the model's own. Through a channel it needs an untimed waiter beside it
//! and a send still being written, and two threads that spin-wait on a
//! third send loom round an endless loop of free switches between them
//! (loom counts no preemption when a thread that yielded is left); a
//! channel model with a timed and an untimed receiver and one send passed
//! at one preemption but did not reach that code (it passed with the
//! pass-on removed). The unit test
//! `wait::tests::a_timed_out_waiter_passes_on_a_wake_up_it_holds` checks
//! it on real threads too.

mod common;

use std::time::Duration;

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;

use lanebus::loom_wait::{Attempt, WaitList};
use lanebus::{RecvTimeoutError, SendTimeoutError, TryRecvError};
use loom::thread;

/// Long enough never to pass on a real clock: under loom only the switch
/// ends a wait.
const TIMEOUT: Duration = Duration::from_secs(3600);

/// A timed receive races a send and its own deadline. It either receives
/// the value, or times out and the value is still queued for the next
/// receive: never lost, never taken twice.
#[test]
fn timed_recv_races_a_send_and_its_deadline() {
    common::model("timed_recv_races_a_send_and_its_deadline", || {
        let (tx, rx) = lanebus::bounded::<u32>(1);
        let receiver = thread::spawn(move || (rx.recv_timeout(TIMEOUT), rx));
        let sender = thread::spawn(move || {
            tx.send(7).expect("the receiver is alive");
            tx
        });
        lanebus::loom_expire_deadlines();
        let (got, rx) = receiver.join().unwrap();
        let _tx = sender.join().unwrap();
        match got {
            Ok(v) => {
                assert_eq!(v, 7);
                assert_eq!(rx.try_recv(), Err(TryRecvError::Empty), "received once");
            }
            Err(RecvTimeoutError::Timeout) => {
                assert_eq!(rx.try_recv(), Ok(7), "a timed-out receive took nothing");
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    });
}

/// A timed send waits for room on a full lane of capacity 1 while a
/// receive makes room and the deadline passes. The send either got in (the
/// next receive gets its value) or hands its value back; the lane is whole
/// after either.
#[test]
fn timed_send_races_a_recv_and_its_deadline() {
    common::model("timed_send_races_a_recv_and_its_deadline", || {
        let (tx, rx) = lanebus::bounded::<u32>(1);
        tx.send(1).expect("room for one");
        let sender = thread::spawn(move || (tx.send_timeout(2, TIMEOUT), tx));
        assert_eq!(rx.recv(), Ok(1));
        lanebus::loom_expire_deadlines();
        let (sent, tx) = sender.join().unwrap();
        match sent {
            Ok(()) => assert_eq!(rx.try_recv(), Ok(2), "the timed value got in once"),
            Err(SendTimeoutError::Timeout(back)) => {
                assert_eq!(back, 2, "a timed-out send hands its value back");
                assert_eq!(rx.try_recv(), Err(TryRecvError::Empty), "and sent nothing");
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert_eq!(tx.try_send(3), Ok(()), "the slot is free again");
        assert_eq!(rx.try_recv(), Ok(3));
    });
}

/// A timed receive races a close and its deadline, with one value queued
/// before the close: it gets the value, or times out and leaves it; a
/// closed and drained channel answers `Disconnected`, and the timed
/// receive never waits past the close.
#[test]
fn timed_recv_races_a_close_and_its_deadline() {
    common::model("timed_recv_races_a_close_and_its_deadline", || {
        let (tx, rx) = lanebus::bounded::<u32>(1);
        tx.send(7).expect("room for one");
        let receiver = {
            let rx = rx.clone();
            thread::spawn(move || {
                let first = rx.recv_timeout(TIMEOUT);
                let second = rx.recv_timeout(TIMEOUT);
                (first, second)
            })
        };
        tx.close();
        lanebus::loom_expire_deadlines();
        let (first, second) = receiver.join().unwrap();
        assert_eq!(
            first,
            Ok(7),
            "the value queued before the close is received"
        );
        assert!(
            matches!(
                second,
                Err(RecvTimeoutError::Disconnected | RecvTimeoutError::Timeout)
            ),
            "nothing else was sent: {second:?}"
        );
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    });
}

/// Takes one of `items` if there is one.
fn take(items: &AtomicUsize) -> bool {
    let mut n = items.load(Ordering::SeqCst);
    while n > 0 {
        match items.compare_exchange(n, n - 1, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return true,
            Err(now) => n = now,
        }
    }
    false
}

/// The waiter list's pass-on. A notifier makes one item and wakes one
/// waiter while a step of its own is still under way (`busy`, as a
/// producer writing the front slot with a finished message behind it). A
/// timed waiter sees `Busy` while `busy` is set; an untimed one waits for
/// an item. If the notifier picks the timed waiter and its deadline passes
/// while it sees only `Busy`, it must pass the wake-up on: the notifier
/// wakes no one else, so otherwise the untimed waiter stays parked with
/// the item there (loom reports the deadlock). Whatever happens, the item
/// is taken exactly once. (Checked: with the `notify(1)` of that branch of
/// `block_after` removed, loom reports the deadlock.)
#[test]
fn timed_out_waiter_passes_on_a_wake_up_it_holds() {
    common::model("timed_out_waiter_passes_on_a_wake_up_it_holds", || {
        let list = Arc::new(WaitList::default());
        let busy = Arc::new(AtomicBool::new(false));
        let items = Arc::new(AtomicUsize::new(0));
        let timed = {
            let (list, busy, items) = (list.clone(), busy.clone(), items.clone());
            thread::spawn(move || {
                list.block(true, || {
                    if busy.load(Ordering::SeqCst) {
                        Attempt::Busy
                    } else if take(&items) {
                        Attempt::Done(())
                    } else {
                        Attempt::Wait
                    }
                })
            })
        };
        let untimed = {
            let (list, items) = (list.clone(), items.clone());
            thread::spawn(move || {
                list.block(false, || {
                    if take(&items) {
                        Attempt::Done(())
                    } else {
                        Attempt::Wait
                    }
                })
            })
        };
        let notifier = {
            let (list, busy, items) = (list.clone(), busy.clone(), items.clone());
            thread::spawn(move || {
                busy.store(true, Ordering::SeqCst);
                // The change the waiters wait for: a SeqCst RMW, then the
                // notify's handshake load (as a ring's `tail` CAS).
                items.fetch_add(1, Ordering::SeqCst);
                list.notify(1);
                busy.store(false, Ordering::SeqCst);
            })
        };
        lanebus::loom_expire_deadlines();
        let timed_got = timed.join().unwrap();
        notifier.join().unwrap();
        if timed_got.is_some() {
            // The timed waiter took the item: make one for the other.
            items.fetch_add(1, Ordering::SeqCst);
            list.notify(1);
        }
        assert_eq!(untimed.join().unwrap(), Some(()));
        assert_eq!(items.load(Ordering::SeqCst), 0, "every item taken once");
    });
}
