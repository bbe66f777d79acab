#![cfg(loom)]
//! Model 13: a thread that reaches a slot the previous lap still holds — its
//! producer claimed it and has not written it, or its consumer claimed it
//! and has not read it — on a lane of capacity 1, where every push and pop
//! wraps. The ring answers "full" to such a push and "empty" to such a pop
//! (`Ring::held_by_last_lap` in `src/ring.rs`), and the callers wait as for
//! full or empty; these models check that nothing is lost, duplicated or
//! stranded by it. Both reach that state (a `panic!` put in its branch
//! fails each of them).

mod common;

use lanebus::{TryRecvError, TrySendError};
use loom::thread;

/// Two producers race `try_send` into one free slot: the second to claim
/// may find the first's claim a lap back, still unwritten, and must get its
/// value back as `Full` (the slot is taken) rather than wait for that write.
/// Exactly one value is sent, the other handed back.
#[test]
fn push_meets_an_unfinished_write_a_lap_back() {
    common::model("push_meets_an_unfinished_write_a_lap_back", || {
        let (tx, rx) = lanebus::bounded::<u32>(1);
        let producers: Vec<_> = (1..=2)
            .map(|v| {
                let tx = tx.clone();
                thread::spawn(move || match tx.try_send(v) {
                    Ok(()) => None,
                    Err(TrySendError::Full(back)) => {
                        assert_eq!(back, v, "Full hands back the same value");
                        Some(back)
                    }
                    Err(e) => panic!("unexpected {e:?}"),
                })
            })
            .collect();
        drop(tx);
        let back: Vec<u32> = producers
            .into_iter()
            .filter_map(|p| p.join().unwrap())
            .collect();
        assert_eq!(back.len(), 1, "one slot: one value sent, one handed back");
        let sent = rx.try_recv().expect("the value sent");
        assert_eq!(sent + back[0], 3, "each value sent or handed back once");
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    });
}

/// Two consumers race `try_recv` for the one queued value: the second to
/// reach the slot may find the first's claim a lap back, not yet read, and
/// must answer `Empty` (nothing else is queued) rather than wait for that
/// read. Exactly one gets the value; after it, a new value can be sent and
/// received.
#[test]
fn pop_meets_an_unfinished_read_a_lap_back() {
    common::model("pop_meets_an_unfinished_read_a_lap_back", || {
        let (tx, rx) = lanebus::bounded::<u32>(1);
        assert_eq!(tx.send(1), Ok(()));
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let rx = rx.clone();
                thread::spawn(move || match rx.try_recv() {
                    Ok(v) => Some(v),
                    Err(TryRecvError::Empty) => None,
                    Err(e) => panic!("unexpected {e:?}"),
                })
            })
            .collect();
        let got: Vec<u32> = consumers
            .into_iter()
            .filter_map(|c| c.join().unwrap())
            .collect();
        assert_eq!(got, [1], "the one value, received once");
        assert_eq!(tx.try_send(2), Ok(()), "the slot is free again");
        assert_eq!(rx.try_recv(), Ok(2));
    });
}
