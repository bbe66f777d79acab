//! Drop exactly once: messages left in a channel, messages discarded with
//! the last receiver, values handed back in errors, batch leftovers.

mod common;

use std::thread;
use std::time::Duration;

use common::{scale, Rng, Tracker};
use lanebus::{ChannelBuilder, Priority, SendError, SendTimeoutError, TrySendError};

#[test]
fn drops() {
    // Messages queued in every lane, with the heads moved to various slots,
    // are dropped exactly once with the channel, whichever handle goes last.
    let rounds = scale(50, 6);
    let mut rng = Rng::new(7);
    for round in 0..rounds {
        let cap = 1 + rng.below(5);
        let n = 4 * cap * 3;
        let t = Tracker::new(n);
        let (tx, rx) = lanebus::bounded(cap);
        let mut next = 0;
        let mut received = Vec::new();
        for _ in 0..rng.below(3 * cap) {
            let lane = Priority::ALL[rng.below(4)];
            match tx.try_send_with(lane, t.item(next)) {
                Ok(()) => {}
                Err(e) => drop(e.into_inner()),
            }
            next += 1;
            if rng.below(2) == 0 {
                if let Ok(v) = rx.try_recv() {
                    received.push(v);
                }
            }
        }
        drop(received);
        let in_flight = rx.len();
        let dropped_before = t.total_drops();
        assert_eq!(dropped_before + in_flight, next, "round {round}");
        if round % 2 == 0 {
            drop(tx);
            drop(rx);
        } else {
            drop(rx);
            // The last receiver took the queued messages with it.
            assert_eq!(t.total_drops(), dropped_before + in_flight);
            drop(tx);
        }
        t.assert_all_dropped_once();
    }
}

#[test]
fn messages_dropped_when_last_receiver_goes_away() {
    let t = Tracker::new(8);
    let (tx, rx) = lanebus::bounded(4);
    let rx2 = rx.clone();
    for i in 0..6 {
        tx.send_with(Priority::ALL[i % 2], t.item(i)).unwrap();
    }
    drop(rx);
    assert_eq!(t.total_drops(), 0, "a receiver is still alive");
    let first = rx2.recv().unwrap();
    assert_eq!(first.id, 0);
    drop(rx2);
    // The five still queued were dropped now, not when the sender goes.
    for i in 1..6 {
        assert_eq!(t.drops_of(i), 1, "id {i}");
    }
    assert_eq!(t.drops_of(0), 0);
    let err = tx.send(t.item(6)).unwrap_err();
    assert_eq!(t.drops_of(6), 0, "handed back, not dropped");
    drop(err);
    assert_eq!(t.drops_of(6), 1);
    drop(first);
    drop(tx);
    t.assert_all_dropped_once();
}

#[test]
fn error_values_are_not_double_dropped() {
    let t = Tracker::new(16);
    let (tx, rx) = lanebus::bounded(1);
    tx.send(t.item(0)).unwrap();

    let v = match tx.try_send(t.item(1)) {
        Err(TrySendError::Full(v)) => v,
        other => panic!("expected Full, got {other:?}"),
    };
    assert_eq!(v.id, 1);
    assert_eq!(t.total_drops(), 0);
    drop(v);
    assert_eq!(t.drops_of(1), 1);

    let e = tx.send_timeout(t.item(2), Duration::ZERO).unwrap_err();
    assert!(e.is_timeout());
    assert_eq!(t.drops_of(2), 0);
    drop(e);
    assert_eq!(t.drops_of(2), 1);

    // `Debug` of the errors works and drops nothing.
    let e = tx.try_send(t.item(3)).unwrap_err();
    assert_eq!(format!("{e:?}"), "Full(..)");
    assert_eq!(t.drops_of(3), 0);
    drop(e);

    rx.close();
    let e = tx.send(t.item(4)).unwrap_err();
    let SendError(v) = e;
    assert_eq!(v.id, 4);
    assert_eq!(t.drops_of(4), 0);
    drop(v);
    let e = tx.send_timeout(t.item(5), Duration::ZERO).unwrap_err();
    assert!(matches!(e, SendTimeoutError::Disconnected(ref v) if v.id == 5));
    drop(e);
    let e = tx.try_send_with(Priority::Low, t.item(6)).unwrap_err();
    assert!(e.is_disconnected());
    drop(e.into_inner());

    // The queued message is still delivered after close.
    let v = rx.recv().unwrap();
    assert_eq!(v.id, 0);
    assert_eq!(t.drops_of(0), 0);
    drop(v);
    drop((tx, rx));
    t.assert_all_dropped_once();
}

#[test]
fn send_batch_leaves_unsent_items_on_close() {
    let t = Tracker::new(8);
    let (tx, rx) = lanebus::bounded(2);
    let mut items: Vec<_> = (0..5).map(|i| t.item(i)).collect();
    thread::scope(|s| {
        let h = s.spawn(|| {
            let r = tx.send_with(Priority::Urgent, t.item(7));
            assert!(r.is_ok());
            let r = tx.send_batch(&mut items);
            (r, items)
        });
        // Wait until the batch filled the lane: it is blocked now (or about
        // to be), and close must stop it either way.
        while rx.len_of(Priority::Normal) < 2 {
            thread::yield_now();
        }
        assert!(rx.close());
        let (r, items) = h.join().unwrap();
        assert_eq!(r, Err(SendError(())));
        assert_eq!(items.iter().map(|v| v.id).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(t.total_drops(), 0);
        drop(items);
        for i in 2..5 {
            assert_eq!(t.drops_of(i), 1);
        }
    });
    let got: Vec<usize> = rx.iter().map(|v| v.id).collect();
    assert_eq!(got, [7, 0, 1]);
    drop((tx, rx));
    t.assert_all_dropped_once();
}

#[test]
fn batch_receive_does_not_double_drop() {
    let t = Tracker::new(64);
    let (tx, rx) = ChannelBuilder::new().capacity(3).build();
    let mut id = 0;
    let mut all = Vec::new();
    for _ in 0..scale(8, 4) {
        let mut items: Vec<_> = (0..3)
            .map(|_| {
                id += 1;
                t.item(id - 1)
            })
            .collect();
        tx.send_batch_with(Priority::High, &mut items).unwrap();
        assert!(items.is_empty());
        let mut out = Vec::new();
        assert_eq!(rx.try_recv_batch(&mut out, 2), Ok(2));
        assert_eq!(rx.recv_batch(&mut out, 5), Ok(1));
        all.extend(out);
    }
    assert_eq!(t.total_drops(), 0);
    assert_eq!(
        all.iter().map(|v| v.id).collect::<Vec<_>>(),
        (0..id).collect::<Vec<_>>()
    );
    drop(all);
    drop((tx, rx));
    t.assert_all_dropped_once();
}

#[test]
fn dropped_send_future_drops_its_value() {
    let t = Tracker::new(2);
    let (tx, rx) = lanebus::bounded(1);
    tx.send(t.item(0)).unwrap();
    let fut = tx.send_async(t.item(1));
    assert_eq!(t.total_drops(), 0);
    drop(fut);
    assert_eq!(t.drops_of(1), 1);
    assert_eq!(rx.len(), 1);
    drop((tx, rx));
    t.assert_all_dropped_once();
}

#[test]
fn concurrent_drop_of_last_handles() {
    // Both last handles dropped at the same time on two threads while
    // messages are queued: each message is dropped exactly once.
    let rounds = scale(300, 10);
    for round in 0..rounds {
        let n = 6;
        let t = Tracker::new(n);
        let (tx, rx) = lanebus::bounded(2);
        for i in 0..n {
            tx.send_with(Priority::ALL[i % 4], t.item(i)).unwrap();
        }
        if round % 2 == 0 {
            let _ = rx.recv().unwrap();
        }
        let a = thread::spawn(move || drop(tx));
        let b = thread::spawn(move || drop(rx));
        a.join().unwrap();
        b.join().unwrap();
        t.assert_all_dropped_once();
    }
}
