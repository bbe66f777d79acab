#![cfg(loom)]
//! Model 7: priority selection while sends race.

mod common;

use lanebus::{Priority, TryRecvError};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;

/// A sender sends `Low` then `Urgent`, then signals on a second channel.
/// Once the receiver has the signal (both sends happened-before), it gets
/// `Urgent` first, then `Low`.
#[test]
fn urgent_first_after_signal() {
    common::model("urgent_first_after_signal", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        let (signal_tx, signal_rx) = lanebus::bounded::<()>(1);
        let sender = thread::spawn(move || {
            assert_eq!(tx.send_with(Priority::Low, 1), Ok(()));
            assert_eq!(tx.send_with(Priority::Urgent, 2), Ok(()));
            assert_eq!(signal_tx.send(()), Ok(()));
            tx
        });
        assert_eq!(signal_rx.recv(), Ok(()));
        assert_eq!(rx.recv(), Ok(2));
        assert_eq!(rx.recv(), Ok(1));
        let _tx = sender.join().unwrap();
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    });
}

/// A sender sends `Low` then `Urgent` while the receiver receives twice
/// with no synchronisation: `Low` can come first only if `Urgent` was not
/// sent yet; both arrive exactly once.
#[test]
fn low_then_urgent_racing_receiver() {
    common::model("low_then_urgent_racing_receiver", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        let urgent_sent = Arc::new(AtomicBool::new(false));
        let sender = thread::spawn({
            let urgent_sent = urgent_sent.clone();
            move || {
                assert_eq!(tx.send_with(Priority::Low, 1), Ok(()));
                assert_eq!(tx.send_with(Priority::Urgent, 2), Ok(()));
                urgent_sent.store(true, Ordering::Release);
                tx
            }
        });
        // Acquire: pairs with the Release store after the Urgent send, so if
        // this sees `true` that send happened-before the `recv` below.
        let seen = urgent_sent.load(Ordering::Acquire);
        let first = rx.recv().unwrap();
        if seen {
            assert_eq!(first, 2, "Low served although Urgent was queued");
        }
        let second = rx.recv().unwrap();
        assert_eq!([first.min(second), first.max(second)], [1, 2]);
        let _tx = sender.join().unwrap();
    });
}

/// Two senders race: one sends `Urgent` and then raises a flag, the other
/// sends `Low`. A receiver that saw the flag before `recv` gets `Urgent`
/// first, even with the `Low` send racing (possibly half-written).
#[test]
fn urgent_before_racing_low() {
    common::model("urgent_before_racing_low", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        let urgent_sent = Arc::new(AtomicBool::new(false));
        let tx_low = tx.clone();
        let urgent = thread::spawn({
            let urgent_sent = urgent_sent.clone();
            move || {
                assert_eq!(tx.send_with(Priority::Urgent, 2), Ok(()));
                urgent_sent.store(true, Ordering::Release);
            }
        });
        let low = thread::spawn(move || {
            assert_eq!(tx_low.send_with(Priority::Low, 1), Ok(()));
        });
        // Acquire: pairs with the Release store after the Urgent send.
        let seen = urgent_sent.load(Ordering::Acquire);
        let first = rx.recv().unwrap();
        if seen {
            assert_eq!(first, 2, "Low served although Urgent was queued");
        }
        let second = rx.recv().unwrap();
        assert_eq!([first.min(second), first.max(second)], [1, 2]);
        urgent.join().unwrap();
        low.join().unwrap();
        // Both senders are gone: closed and drained.
        assert!(rx.recv().is_err());
    });
}

/// Two producers race into one lane. Once the receiver knows the second
/// send returned, `try_recv` gets a message, never `Empty`: when the other
/// producer stopped between claiming the front slot and writing it, the
/// finished message waits behind that write, and the receive waits it out
/// (found in review: it used to answer `Empty`).
#[test]
fn try_recv_never_misses_a_completed_send_behind_a_slow_writer() {
    common::model(
        "try_recv_never_misses_a_completed_send_behind_a_slow_writer",
        || {
            let (tx, rx) = lanebus::bounded::<u32>(2);
            let tx2 = tx.clone();
            let done = Arc::new(AtomicBool::new(false));
            let signal = done.clone();
            let slow = thread::spawn(move || assert_eq!(tx.try_send(1), Ok(())));
            let fast = thread::spawn(move || {
                assert_eq!(tx2.try_send(2), Ok(()));
                signal.store(true, Ordering::Release);
            });
            while !done.load(Ordering::Acquire) {
                thread::yield_now();
            }
            let first = rx.try_recv().expect("a completed send is never missed");
            slow.join().unwrap();
            fast.join().unwrap();
            let second = rx.try_recv().expect("both sends returned");
            let mut got = [first, second];
            got.sort_unstable();
            assert_eq!(got, [1, 2]);
            // Both senders are gone.
            assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        },
    );
}
