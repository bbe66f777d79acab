//! Close and disconnect: last sender, last receiver, explicit close, and the
//! wake-ups of blocked threads.

mod common;

use std::thread;
use std::time::Duration;

use common::scale;
use lanebus::{
    Priority, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};

/// Long enough that a test which depends on it failing to expire would
/// hang visibly rather than pass by accident.
const LONG: Duration = Duration::from_secs(3600);

/// Lets spawned threads reach their blocking call. The tests stay correct
/// if it is too short: the call then sees the close at once.
fn let_them_block() {
    thread::sleep(Duration::from_millis(if cfg!(miri) { 5 } else { 50 }));
}

#[test]
fn last_sender_dropped_receivers_drain_then_disconnect() {
    let (tx, rx) = lanebus::bounded::<u32>(4);
    let tx2 = tx.clone();
    tx.send(1).unwrap();
    tx2.send_with(Priority::Urgent, 2).unwrap();
    tx2.send_with(Priority::Low, 3).unwrap();
    drop(tx);
    assert!(!rx.is_closed(), "a clone is still alive");
    tx2.send(4).unwrap();
    drop(tx2);
    assert!(rx.is_closed());
    let rx2 = rx.clone();
    assert_eq!(rx.recv(), Ok(2));
    assert_eq!(rx2.try_recv(), Ok(1));
    assert_eq!(rx.recv_timeout(LONG), Ok(4));
    assert_eq!(rx2.recv(), Ok(3));
    assert_eq!(rx.recv(), Err(RecvError));
    assert_eq!(rx2.try_recv(), Err(TryRecvError::Disconnected));
    assert_eq!(rx.recv_timeout(LONG), Err(RecvTimeoutError::Disconnected));
    let mut out = vec![];
    assert_eq!(rx.recv_batch(&mut out, 4), Err(RecvError));
    assert_eq!(
        rx.try_recv_batch(&mut out, 4),
        Err(TryRecvError::Disconnected)
    );
    assert!(out.is_empty());
}

#[test]
fn last_receiver_dropped_send_returns_value() {
    let (tx, rx) = lanebus::bounded::<String>(2);
    let rx2 = rx.clone();
    drop(rx);
    tx.send("kept".into()).unwrap();
    drop(rx2);
    assert!(tx.is_closed());
    assert_eq!(tx.send("a".into()), Err(SendError("a".into())));
    assert_eq!(
        tx.send_with(Priority::Urgent, "b".into()),
        Err(SendError("b".into()))
    );
    assert_eq!(
        tx.try_send("c".into()),
        Err(TrySendError::Disconnected("c".into()))
    );
    assert_eq!(
        tx.send_timeout("d".into(), LONG),
        Err(SendTimeoutError::Disconnected("d".into()))
    );
    let mut items = vec!["e".to_string(), "f".to_string()];
    assert_eq!(tx.send_batch(&mut items), Err(SendError(())));
    assert_eq!(items, ["e", "f"]);
    // The queued message went with the last receiver.
    assert_eq!(tx.len(), 0);
}

#[test]
fn disconnect_wakes_receiver() {
    let (tx, rx) = lanebus::bounded::<u8>(1);
    let h = thread::spawn(move || rx.recv());
    let_them_block();
    drop(tx);
    assert_eq!(h.join().unwrap(), Err(RecvError));
}

#[test]
fn disconnect_wakes_sender() {
    let (tx, rx) = lanebus::bounded::<u8>(1);
    tx.send(1).unwrap();
    let h = thread::spawn(move || tx.send(2));
    let_them_block();
    drop(rx);
    assert_eq!(h.join().unwrap(), Err(SendError(2)));
}

/// `close` wakes every blocked sender, whatever call it is blocked in, and
/// hands each its value back.
fn close_wakes_blocked_senders(close_from_receiver: bool) {
    let (tx, rx) = lanebus::bounded::<u32>(1);
    for p in Priority::ALL {
        tx.send_with(p, 0).unwrap();
    }
    thread::scope(|s| {
        let mut hs = Vec::new();
        for (i, p) in Priority::ALL.into_iter().enumerate() {
            let i = i as u32;
            let tx1 = tx.clone();
            hs.push(s.spawn(move || tx1.send_with(p, 10 + i).map_err(|e| e.0)));
            let tx2 = tx.clone();
            hs.push(s.spawn(move || {
                tx2.send_timeout_with(p, 20 + i, LONG).map_err(|e| {
                    assert!(e.is_disconnected());
                    e.into_inner()
                })
            }));
        }
        let batch = s.spawn(|| {
            let mut items = vec![30, 31, 32];
            let r = tx.send_batch(&mut items);
            (r, items)
        });
        let_them_block();
        if close_from_receiver {
            assert!(rx.close());
        } else {
            assert!(tx.close());
        }
        let mut handed_back: Vec<u32> = hs
            .into_iter()
            .map(|h| h.join().unwrap().unwrap_err())
            .collect();
        handed_back.sort_unstable();
        assert_eq!(handed_back, [10, 11, 12, 13, 20, 21, 22, 23]);
        let (r, items) = batch.join().unwrap();
        assert_eq!(r, Err(SendError(())));
        assert_eq!(items, [30, 31, 32]);
    });
    // The messages queued before the close are still there.
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [0, 0, 0, 0]);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}

#[test]
fn close_from_sender_wakes_blocked_senders() {
    close_wakes_blocked_senders(false);
}

#[test]
fn close_from_receiver_wakes_blocked_senders() {
    close_wakes_blocked_senders(true);
}

/// `close` wakes every blocked receiver, whatever call it is blocked in.
fn close_wakes_blocked_receivers(close_from_receiver: bool) {
    let (tx, rx) = lanebus::bounded::<u32>(1);
    thread::scope(|s| {
        let mut hs = Vec::new();
        for _ in 0..2 {
            let rx1 = rx.clone();
            hs.push(s.spawn(move || rx1.recv().map_err(RecvTimeoutError::from)));
            let rx2 = rx.clone();
            hs.push(s.spawn(move || rx2.recv_timeout(LONG)));
        }
        let batch = s.spawn(|| {
            let mut out = Vec::new();
            (rx.recv_batch(&mut out, 8), out)
        });
        let iter = s.spawn(|| rx.iter().count());
        let_them_block();
        if close_from_receiver {
            assert!(rx.close());
        } else {
            assert!(tx.close());
        }
        for h in hs {
            assert_eq!(h.join().unwrap(), Err(RecvTimeoutError::Disconnected));
        }
        assert_eq!(batch.join().unwrap(), (Err(RecvError), vec![]));
        assert_eq!(iter.join().unwrap(), 0);
    });
    // The sender is still alive but the channel is closed.
    assert_eq!(tx.send(1), Err(SendError(1)));
}

#[test]
fn close_from_sender_wakes_blocked_receivers() {
    close_wakes_blocked_receivers(false);
}

#[test]
fn close_from_receiver_wakes_blocked_receivers() {
    close_wakes_blocked_receivers(true);
}

/// A sender sends a few messages and goes away at once; the receiver must
/// get every one of them before it sees the disconnect.
#[test]
fn disconnect_racing_the_last_message() {
    let rounds = scale(2_000, 20);
    for round in 0..rounds {
        let (tx, rx) = lanebus::bounded::<usize>(2);
        let k = round % 3 + 1;
        let lane = Priority::ALL[round % 4];
        let h = thread::spawn(move || {
            for i in 0..k {
                tx.send_with(lane, i).unwrap();
            }
        });
        for i in 0..k {
            assert_eq!(rx.recv(), Ok(i), "round {round}");
        }
        assert_eq!(rx.recv(), Err(RecvError), "round {round}");
        h.join().unwrap();
    }
}

/// As above, with the receiver polling with `try_recv`: it may see
/// `Empty` while the message is in flight, but never `Disconnected` before it
/// has the message.
#[test]
fn disconnect_racing_the_last_message_try_recv() {
    let rounds = scale(2_000, 20);
    for round in 0..rounds {
        let (tx, rx) = lanebus::bounded::<usize>(1);
        let h = thread::spawn(move || {
            tx.send_with(Priority::High, round).unwrap();
        });
        loop {
            match rx.try_recv() {
                Ok(v) => {
                    assert_eq!(v, round);
                    break;
                }
                Err(TryRecvError::Empty) => thread::yield_now(),
                Err(e) => panic!("round {round}: message lost ({e:?})"),
            }
        }
        h.join().unwrap();
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }
}

/// An explicit close from the receiver side while a producer keeps
/// sending: every send that returned `Ok` is received, the first failed send
/// hands its value back, and nothing is received twice.
#[test]
fn close_racing_send() {
    let rounds = scale(200, 5);
    for round in 0..rounds {
        let (tx, rx) = lanebus::bounded::<usize>(4);
        let h = thread::spawn(move || {
            let mut i = 0;
            loop {
                match tx.send_with(Priority::ALL[i % 4], i) {
                    Ok(()) => i += 1,
                    Err(SendError(v)) => return (i, v),
                }
            }
        });
        let mut got = Vec::new();
        for _ in 0..round % 7 {
            got.push(rx.recv().unwrap());
        }
        rx.close();
        got.extend(rx.iter());
        let (sent, failed) = h.join().unwrap();
        assert_eq!(failed, sent, "the failed send hands back its own value");
        got.sort_unstable();
        assert_eq!(got, (0..sent).collect::<Vec<_>>());
    }
}

/// Racing `close` calls, from both sides and beside sends that run into
/// the close: exactly one call reports that it closed the channel. (Before
/// 2026-12-07 two could: each reported whether it marked *some* lane.)
#[test]
fn exactly_one_racing_close_reports_closing() {
    let rounds = scale(300, 10);
    for _ in 0..rounds {
        let (tx, rx) = lanebus::bounded::<usize>(4);
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(5));
        let closers: Vec<_> = (0..4)
            .map(|i| {
                let (tx, rx, barrier) = (tx.clone(), rx.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    if i % 2 == 0 {
                        tx.close()
                    } else {
                        rx.close()
                    }
                })
            })
            .collect();
        barrier.wait();
        // A send that runs into the close finishes it; that must not count.
        let mut i = 0;
        while tx.try_send_with(Priority::ALL[i % 4], i).is_ok() || !tx.is_closed() {
            i += 1;
            if i % 4 == 0 {
                while rx.try_recv().is_ok() {}
            }
        }
        let closed: usize = closers
            .into_iter()
            .map(|h| usize::from(h.join().unwrap()))
            .sum();
        assert_eq!(closed, 1, "exactly one close call reports it closed");
        assert!(!tx.close() && !rx.close(), "closing again reports false");
    }
}
