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
//! Not modelled: a timed waiter that times out holding a wake-up passes it
//! on (`WaitList::block_after`). That needs an untimed waiter beside it and
//! a send still being written, and two threads that spin-wait on a third
//! send loom round an endless loop of free switches between them (loom
//! counts no preemption when a thread that yielded is left). A model with
//! a timed and an untimed receiver and one send passed at one preemption,
//! but did not reach that code (it passed with the pass-on removed). The
//! unit test `wait::tests::a_timed_out_waiter_passes_on_a_wake_up_it_holds`
//! checks it on real threads.

mod common;

use std::time::Duration;

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
