#![cfg(loom)]
//! Model 3, linearizability of `close`: once a send has reported the
//! channel disconnected, the channel is closed for every lane and
//! `is_closed` says so.
//!
//! `Chan::close` marks the lanes one at a time (Urgent first) and sets
//! `closed` last, so a send that saw the mark on one lane could be
//! followed, in the same thread, by a send into a lane not marked yet that
//! succeeds, and by `is_closed() == false`. `Chan::try_send` therefore
//! finishes a half-done close before it reports `Disconnected`; this model
//! fails without that. No yields: the close races the sends.

mod common;

use lanebus::{Priority, TrySendError};
use loom::thread;

#[test]
fn disconnected_send_means_closed_everywhere() {
    common::model("disconnected_send_means_closed_everywhere", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        let closer = thread::spawn(move || {
            assert!(rx.close());
            rx
        });
        if let Err(e) = tx.try_send_with(Priority::Urgent, 1) {
            assert_eq!(e, TrySendError::Disconnected(1));
            assert!(tx.is_closed(), "send said Disconnected, is_closed said no");
            assert_eq!(
                tx.try_send_with(Priority::Low, 2),
                Err(TrySendError::Disconnected(2)),
                "a send succeeded after a send saw the channel closed"
            );
        }
        let _rx = closer.join().unwrap();
    });
}
