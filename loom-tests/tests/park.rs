#![cfg(loom)]
//! Model 4: park/wake in both directions with threads. Under loom a
//! blocking call parks at once, and a wake-up that is lost leaves a thread
//! parked for ever, which loom reports as a deadlock.
//!
//! No model yields before its racing operation (see `common`): the
//! notifying operation may land anywhere in the waiter's try, register,
//! re-check, park sequence, which is where a lost wake-up hides. loom
//! reaches "the waiter parked first" by preempting the notifier.

mod common;

use lanebus::{RecvError, SendError, TryRecvError};
use loom::thread;

/// A receiver blocked in `recv` on an empty channel is woken by a send.
#[test]
fn recv_woken_by_send() {
    common::model("recv_woken_by_send", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        let producer = thread::spawn(move || {
            assert_eq!(tx.send(1), Ok(()));
            tx
        });
        assert_eq!(rx.recv(), Ok(1));
        let tx = producer.join().unwrap();
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        drop(tx);
    });
}

/// A sender blocked in `send` on a full lane is woken by a receive that
/// frees a slot.
#[test]
fn send_woken_by_recv() {
    common::model("send_woken_by_recv", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        assert_eq!(tx.send(1), Ok(()));
        assert_eq!(tx.send(2), Ok(()));
        let producer = thread::spawn(move || {
            assert_eq!(tx.send(3), Ok(()));
            tx
        });
        assert_eq!(rx.recv(), Ok(1));
        let _tx = producer.join().unwrap();
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    });
}

/// A receiver blocked on an empty channel is woken by `close`.
#[test]
fn recv_woken_by_close() {
    common::model("recv_woken_by_close", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        let closer = thread::spawn(move || {
            assert!(tx.close());
            tx
        });
        assert_eq!(rx.recv(), Err(RecvError));
        let _tx = closer.join().unwrap();
    });
}

/// A receiver blocked on an empty channel is woken when the last of two
/// senders is dropped (each in its own thread).
#[test]
fn recv_woken_by_last_sender_drop() {
    common::model("recv_woken_by_last_sender_drop", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        let tx2 = tx.clone();
        let a = thread::spawn(move || drop(tx));
        let b = thread::spawn(move || drop(tx2));
        assert_eq!(rx.recv(), Err(RecvError));
        assert!(rx.is_closed());
        a.join().unwrap();
        b.join().unwrap();
    });
}

/// The last sender sends one value and drops: the blocked receiver gets the
/// value, then `Err` (the close must not overtake the message).
#[test]
fn recv_gets_last_message_then_disconnect() {
    common::model("recv_gets_last_message_then_disconnect", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        let producer = thread::spawn(move || {
            assert_eq!(tx.send(1), Ok(()));
        });
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Err(RecvError));
        producer.join().unwrap();
    });
}

/// A sender blocked on a full lane is woken by `close` and gets its value
/// back; the queued values are still received, then `Err`.
#[test]
fn send_woken_by_close() {
    common::model("send_woken_by_close", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        assert_eq!(tx.send(1), Ok(()));
        assert_eq!(tx.send(2), Ok(()));
        let producer = thread::spawn(move || {
            assert_eq!(tx.send(3), Err(SendError(3)));
        });
        assert!(rx.close());
        producer.join().unwrap();
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Ok(2));
        assert_eq!(rx.recv(), Err(RecvError));
    });
}

/// A sender blocked on a full lane is woken when the last receiver is
/// dropped, and gets its value back.
#[test]
fn send_woken_by_last_receiver_drop() {
    common::model("send_woken_by_last_receiver_drop", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        assert_eq!(tx.send(1), Ok(()));
        assert_eq!(tx.send(2), Ok(()));
        let producer = thread::spawn(move || {
            assert_eq!(tx.send(3), Err(SendError(3)));
            tx
        });
        drop(rx);
        let tx = producer.join().unwrap();
        assert!(tx.is_closed());
        assert!(tx.is_empty(), "the last receiver discarded what was queued");
    });
}
