#![cfg(loom)]
//! Model 11: the per-channel "maybe non-empty lanes" mask (see `Chan`'s
//! docs, "The ready mask"). A receive that found `High` empty with its bit
//! set and then served `Low` clears `High`'s bit and re-checks; these
//! models race that clear with a push into `High`.

mod common;

use lanebus::{Priority, TryRecvError};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;

/// `High`'s bit is set but `High` is empty, one message waits on `Low`. A
/// sender pushes into `High` while the receiver takes `Low` (and clears
/// `High`'s bit): the blocking receive that follows gets the `High`
/// message (no miss, no park for ever), each message exactly once.
#[test]
fn clear_races_push_no_miss() {
    common::model("clear_races_push_no_miss", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        assert_eq!(tx.send_with(Priority::High, 0), Ok(()));
        assert_eq!(rx.recv(), Ok(0)); // High's bit stays set, High is empty
        assert_eq!(tx.send_with(Priority::Low, 1), Ok(()));
        let high = thread::spawn(move || {
            assert_eq!(tx.send_with(Priority::High, 2), Ok(()));
        });
        let first = rx.recv().unwrap();
        let second = rx.recv().unwrap();
        assert_eq!([first.min(second), first.max(second)], [1, 2]);
        high.join().unwrap();
        // The only sender is gone: closed and drained.
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    });
}

/// As above with a second receiver: while the main thread clears `High`'s
/// bit after taking a `Low` message, a `High` send completes and raises a
/// flag. The other receiver, if it saw the flag before `recv`, must not
/// serve `Low` while that `High` message is still queued (it may serve
/// `Low` only if the main thread took the `High` message). The clearing
/// receiver is the main thread so that the race needs few preemptions.
#[test]
fn clear_races_push_keeps_priority() {
    common::model("clear_races_push_keeps_priority", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        assert_eq!(tx.send_with(Priority::High, 0), Ok(()));
        assert_eq!(rx.recv(), Ok(0)); // High's bit stays set, High is empty
        assert_eq!(tx.send_with(Priority::Low, 1), Ok(()));
        assert_eq!(tx.send_with(Priority::Low, 3), Ok(()));
        let high_sent = Arc::new(AtomicBool::new(false));
        let sender = thread::spawn({
            let high_sent = high_sent.clone();
            move || {
                assert_eq!(tx.send_with(Priority::High, 2), Ok(()));
                high_sent.store(true, Ordering::Release);
            }
        });
        let other = thread::spawn({
            let rx = rx.clone();
            let high_sent = high_sent.clone();
            move || {
                // Acquire: pairs with the Release store after the High send.
                let seen = high_sent.load(Ordering::Acquire);
                (seen, rx.recv().unwrap())
            }
        });
        let mine = rx.recv().unwrap();
        sender.join().unwrap();
        let (seen, theirs) = other.join().unwrap();
        if seen && theirs != 2 {
            assert_eq!(mine, 2, "Low served although High was queued");
        }
        let last = rx.recv().unwrap();
        let mut all = [mine, theirs, last];
        all.sort_unstable();
        assert_eq!(all, [1, 2, 3]);
        assert!(rx.recv().is_err());
    });
}

/// Two receivers clear `High`'s bit at once (each finds `High` empty with
/// its bit set and takes a `Low` message; `CLEARING` counts both) while a
/// `High` send races them and raises a flag when it returns. The second
/// clearer then reads the flag and receives again: if it saw the flag and
/// the `High` message is still queued, it gets it, not `Low` (so one
/// clearer finishing does not make the mask trusted while the other is
/// still clearing); and once everything is done, a queued `High` message
/// still comes before the `Low` one left.
#[test]
fn two_clearers_race_push_keep_priority() {
    common::model("two_clearers_race_push_keep_priority", || {
        let (tx, rx) = lanebus::bounded::<u32>(3);
        assert_eq!(tx.send_with(Priority::High, 0), Ok(()));
        assert_eq!(rx.recv(), Ok(0)); // High's bit stays set, High is empty
        for low in [1, 3, 5] {
            assert_eq!(tx.send_with(Priority::Low, low), Ok(()));
        }
        let high_sent = Arc::new(AtomicBool::new(false));
        let sender = thread::spawn({
            let high_sent = high_sent.clone();
            move || {
                assert_eq!(tx.send_with(Priority::High, 2), Ok(()));
                high_sent.store(true, Ordering::Release);
            }
        });
        let other = thread::spawn({
            let rx = rx.clone();
            let high_sent = high_sent.clone();
            move || {
                let first = rx.try_recv().unwrap();
                // Acquire: pairs with the Release store after the High send.
                let seen = high_sent.load(Ordering::Acquire);
                (first, seen, rx.try_recv().unwrap())
            }
        });
        let mine = rx.try_recv().unwrap();
        let (first, seen, second) = other.join().unwrap();
        sender.join().unwrap();
        if seen && ![mine, first].contains(&2) {
            assert_eq!(second, 2, "Low served although High was queued");
        }
        let mut rest = Vec::new();
        while let Ok(v) = rx.try_recv() {
            rest.push(v);
        }
        if ![mine, first, second].contains(&2) {
            assert_eq!(rest[0], 2, "Low served before the queued High");
        }
        let mut all = [[mine, first, second].as_slice(), &rest].concat();
        all.sort_unstable();
        assert_eq!(all, [1, 2, 3, 5]);
    });
}
