#![cfg(loom)]
//! Model 3: send, receive and close racing each other.

mod common;

use lanebus::{Priority, RecvError, SendError, TryRecvError, TrySendError};
use loom::thread;

/// A blocking `send` races `close` while the receiver drains until `Err`:
/// either the send succeeded and the value is received exactly once, or
/// the send handed it back and it is never received — never both, never
/// neither.
#[test]
fn close_vs_send_vs_recv() {
    common::model("close_vs_send_vs_recv", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        let closer = tx.clone();
        let sender = thread::spawn(move || match tx.send(1) {
            Ok(()) => true,
            Err(SendError(v)) => {
                assert_eq!(v, 1);
                false
            }
        });
        let close = thread::spawn(move || {
            assert!(closer.close(), "only this thread closes");
        });
        let mut received = Vec::new();
        while let Ok(v) = rx.recv() {
            received.push(v);
        }
        let sent = sender.join().unwrap();
        close.join().unwrap();
        assert_eq!(received, if sent { vec![1] } else { vec![] });
        assert_eq!(rx.recv(), Err(RecvError));
    });
}

/// `try_send` races `close` on a channel with messages queued in two other
/// lanes; afterwards the receiver drains everything in priority order and
/// then gets `Disconnected`.
#[test]
fn close_vs_try_send_then_drain() {
    common::model("close_vs_try_send_then_drain", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        assert_eq!(tx.try_send_with(Priority::Low, 1), Ok(()));
        assert_eq!(tx.try_send_with(Priority::Urgent, 2), Ok(()));
        let rx2 = rx.clone();
        let close = thread::spawn(move || {
            assert!(rx2.close());
        });
        let sent = match tx.try_send_with(Priority::High, 3) {
            Ok(()) => true,
            Err(TrySendError::Disconnected(v)) => {
                assert_eq!(v, 3);
                false
            }
            Err(e) => panic!("unexpected {e:?}"),
        };
        close.join().unwrap();
        assert!(tx.is_closed());
        assert_eq!(rx.try_recv(), Ok(2));
        if sent {
            assert_eq!(rx.try_recv(), Ok(3));
        }
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    });
}

/// A receiver drains queued messages while another thread closes, then its
/// blocking `recv` returns `Err` (woken by the close if it had parked). The
/// close may land anywhere in the receiver's drain, register, re-check and
/// park (no yield before it: see `common`).
#[test]
fn recv_after_close_drains_then_errs() {
    common::model("recv_after_close_drains_then_errs", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        assert_eq!(tx.send(1), Ok(()));
        assert_eq!(tx.send(2), Ok(()));
        let close = thread::spawn(move || {
            assert!(tx.close());
            assert_eq!(tx.send(3), Err(SendError(3)));
        });
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Ok(2));
        assert_eq!(rx.recv(), Err(RecvError));
        close.join().unwrap();
    });
}

/// `close` from a sender and from a receiver race each other and a
/// `try_send` that may run into the close (and then finishes it): exactly
/// one of the two calls reports that it closed the channel, and the send
/// either got in (and is received) or handed its value back.
#[test]
fn racing_closes_exactly_one_reports_closing() {
    common::model("racing_closes_exactly_one_reports_closing", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        let (tx2, rx2) = (tx.clone(), rx.clone());
        let from_sender = thread::spawn(move || tx2.close());
        let from_receiver = thread::spawn(move || rx2.close());
        let sent = match tx.try_send_with(Priority::High, 1) {
            Ok(()) => true,
            Err(TrySendError::Disconnected(v)) => {
                assert_eq!(v, 1);
                // Every lane is closed once a send says so.
                assert!(tx.is_closed());
                assert_eq!(
                    tx.try_send_with(Priority::Urgent, 2),
                    Err(TrySendError::Disconnected(2))
                );
                false
            }
            Err(e) => panic!("unexpected {e:?}"),
        };
        let a = from_sender.join().unwrap();
        let b = from_receiver.join().unwrap();
        assert!(
            a != b,
            "exactly one close reports closing (got {a} and {b})"
        );
        if sent {
            assert_eq!(rx.try_recv(), Ok(1));
        }
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    });
}
