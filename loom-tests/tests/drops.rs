#![cfg(loom)]
//! Model 6: messages left in the channel are dropped exactly once when the
//! handles go away, also while a send is in progress. `Tracked` panics on a
//! second drop; the bit set shows which values were dropped.

mod common;

use common::DropLog;
use lanebus::{Priority, SendError};
use loom::thread;

/// Both handles are dropped concurrently with messages queued in two lanes:
/// every message is dropped exactly once, none is leaked.
#[test]
fn drop_both_handles_with_messages_queued() {
    common::model("drop_both_handles_with_messages_queued", || {
        let log = DropLog::new();
        let (tx, rx) = lanebus::bounded(2);
        assert!(tx.try_send(log.value(0)).is_ok());
        assert!(tx.try_send(log.value(1)).is_ok());
        assert!(tx.try_send_with(Priority::Urgent, log.value(2)).is_ok());
        let t = thread::spawn(move || drop(tx));
        drop(rx);
        t.join().unwrap();
        assert_eq!(log.dropped(), 0b111);
    });
}

/// The last receiver is dropped while a sender is in the middle of a send:
/// the value is either queued and then discarded by the receiver's drop, or
/// handed back to the sender — dropped exactly once either way, and
/// already by the time both threads are done (while the sender still lives).
#[test]
fn last_receiver_drops_while_sender_mid_send() {
    common::model("last_receiver_drops_while_sender_mid_send", || {
        let log = DropLog::new();
        let (tx, rx) = lanebus::bounded(2);
        let sender = thread::spawn({
            let log = log.clone();
            move || {
                match tx.send(log.value(0)) {
                    Ok(()) => {}
                    Err(SendError(v)) => assert_eq!(v.id, 0),
                }
                tx
            }
        });
        drop(rx);
        let tx = sender.join().unwrap();
        assert_eq!(log.dropped(), 0b1);
        drop(tx);
        assert_eq!(log.dropped(), 0b1);
    });
}

/// The last receiver is dropped while a sender is blocked on a full lane:
/// the queued values are discarded, the blocked send hands its value back,
/// and each is dropped exactly once. The drop may land anywhere in the
/// send's try, register, re-check and park (no yield before it: see
/// `common`).
#[test]
fn last_receiver_drops_while_sender_blocked() {
    common::model("last_receiver_drops_while_sender_blocked", || {
        let log = DropLog::new();
        let (tx, rx) = lanebus::bounded(2);
        assert!(tx.try_send(log.value(0)).is_ok());
        assert!(tx.try_send(log.value(1)).is_ok());
        let sender = thread::spawn({
            let log = log.clone();
            move || {
                match tx.send(log.value(2)) {
                    Err(SendError(v)) => assert_eq!(v.id, 2),
                    Ok(()) => panic!("sent into a lane nobody drains"),
                }
                assert_eq!(log.dropped() & 0b100, 0b100);
                tx
            }
        });
        drop(rx);
        let tx = sender.join().unwrap();
        assert_eq!(log.dropped(), 0b111);
        drop(tx);
        assert_eq!(log.dropped(), 0b111);
    });
}

/// A receiver takes one value and drops while the last sender sends a
/// second one and drops: the second is discarded by the channel or handed
/// back. Received, discarded and returned values are each dropped once.
#[test]
fn receive_one_then_drop_rest() {
    common::model("receive_one_then_drop_rest", || {
        let log = DropLog::new();
        let (tx, rx) = lanebus::bounded(2);
        let sender = thread::spawn({
            let log = log.clone();
            move || {
                assert!(tx.send(log.value(0)).is_ok());
                // The receiver may already be gone: then the value comes back.
                if let Err(SendError(v)) = tx.send(log.value(1)) {
                    assert_eq!(v.id, 1);
                }
            }
        });
        let first = rx.recv().unwrap();
        assert_eq!(first.id, 0);
        drop(first);
        drop(rx);
        sender.join().unwrap();
        assert_eq!(log.dropped(), 0b11);
    });
}
