#![cfg(loom)]
//! Models 1 and 2: one lane's ring at the wrap-around and at the full and
//! empty boundaries (capacity 2 per lane).

mod common;

use lanebus::{Priority, TryRecvError, TrySendError};
use loom::thread;

/// Model 1: a producer sends three values through a lane of capacity 2, so
/// the third send wraps to the next lap (and may park until a slot is
/// free); the consumer receives each value once, in order.
#[test]
fn wrap_around_fifo_exactly_once() {
    common::model("wrap_around_fifo_exactly_once", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        let producer = thread::spawn(move || {
            for v in 1..=3 {
                assert_eq!(tx.send(v), Ok(()));
            }
        });
        for v in 1..=3 {
            assert_eq!(rx.recv(), Ok(v));
        }
        producer.join().unwrap();
        // The only sender is gone: closed and drained.
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    });
}

/// Model 1, two whole laps without parking: four values through `try_send`
/// and `try_recv`, both retrying (with a yield) on `Full` / `Empty`.
///
/// The yields are spin-loop yields and must stay: loom needs every spin
/// loop to yield, or it keeps running the spinning thread and never ends.
/// Each comes after a failed try, not before a racing operation, and
/// nobody parks here, so they hide no wake-up race.
#[test]
fn wrap_around_two_laps_try() {
    common::model("wrap_around_two_laps_try", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        let producer = thread::spawn(move || {
            for v in 1..=4 {
                let mut value = v;
                loop {
                    match tx.try_send(value) {
                        Ok(()) => break,
                        Err(TrySendError::Full(back)) => {
                            assert_eq!(back, v, "Full must hand back the same value");
                            value = back;
                            thread::yield_now();
                        }
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                }
            }
        });
        for v in 1..=4 {
            loop {
                match rx.try_recv() {
                    Ok(got) => {
                        assert_eq!(got, v);
                        break;
                    }
                    Err(TryRecvError::Empty) => thread::yield_now(),
                    Err(e) => panic!("unexpected {e:?} before value {v}"),
                }
            }
        }
        producer.join().unwrap();
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    });
}

/// Model 2: `try_send` on a full lane races a `recv` that frees a slot. It
/// either fits (and is received after the older value) or returns
/// `Full` with the very value; the lane never reports more than its
/// capacity; after the receiver is done there is room again.
#[test]
fn full_try_send_vs_recv() {
    common::model("full_try_send_vs_recv", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(2), Ok(()));
        assert_eq!(tx.try_send(9), Err(TrySendError::Full(9)));
        let rx2 = rx.clone();
        let consumer = thread::spawn(move || {
            assert_eq!(rx2.recv(), Ok(1));
            assert!(rx2.len_of(Priority::Normal) <= 2);
        });
        let sent = match tx.try_send(3) {
            Ok(()) => true,
            Err(TrySendError::Full(v)) => {
                assert_eq!(v, 3);
                false
            }
            Err(e) => panic!("unexpected {e:?}"),
        };
        assert!(tx.len_of(Priority::Normal) <= 2);
        consumer.join().unwrap();
        assert_eq!(rx.len_of(Priority::Normal), if sent { 2 } else { 1 });
        if !sent {
            // The consumer freed a slot and that happened-before this point.
            assert_eq!(tx.try_send(3), Ok(()));
        }
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    });
}

/// Model 2: `try_recv` on an empty channel races a `try_send`. It either
/// gets the value or says `Empty` (never `Disconnected`: a sender lives);
/// after the join the value is there exactly once.
#[test]
fn empty_try_recv_vs_send() {
    common::model("empty_try_recv_vs_send", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        let tx2 = tx.clone();
        let producer = thread::spawn(move || {
            assert_eq!(tx2.try_send(7), Ok(()));
        });
        let first = rx.try_recv();
        assert!(
            first == Ok(7) || first == Err(TryRecvError::Empty),
            "{first:?}"
        );
        producer.join().unwrap();
        if first.is_err() {
            assert_eq!(rx.try_recv(), Ok(7));
        }
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        drop(tx);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    });
}

/// Model 2: `len_of` and `len` never exceed the capacity while a producer
/// wraps the lane and the consumer empties it (and the consumer never sees
/// fewer messages than it is about to receive).
#[test]
fn len_never_exceeds_capacity() {
    common::model("len_never_exceeds_capacity", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        let producer = thread::spawn(move || {
            for v in 1..=3 {
                assert_eq!(tx.send(v), Ok(()));
                assert!(tx.len_of(Priority::Normal) <= 2);
            }
        });
        for v in 1..=3 {
            assert!(rx.len_of(Priority::Normal) <= 2);
            assert_eq!(rx.recv(), Ok(v));
        }
        producer.join().unwrap();
        assert_eq!(rx.len(), 0);
    });
}
