//! `send_batch` and `recv_batch` / `try_recv_batch`.

mod common;

use std::thread;
use std::time::Duration;

use common::scale;
use lanebus::{ChannelBuilder, Priority, RecvError, SendError, TryRecvError};

#[test]
fn send_batch_drains_in_order() {
    let (tx, rx) = lanebus::bounded::<u32>(8);
    let mut items = vec![1, 2, 3, 4, 5];
    let cap_before = items.capacity();
    tx.send_batch(&mut items).unwrap();
    assert!(items.is_empty());
    assert_eq!(items.capacity(), cap_before, "the Vec is reused");
    let mut empty: Vec<u32> = Vec::new();
    tx.send_batch(&mut empty).unwrap();
    assert_eq!(rx.len_of(Priority::Normal), 5);
    let mut more = vec![9, 8];
    tx.send_batch_with(Priority::Urgent, &mut more).unwrap();
    assert_eq!(rx.len_of(Priority::Urgent), 2);
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [9, 8, 1, 2, 3, 4, 5]);
}

#[test]
fn send_batch_blocks_for_room() {
    for cap in [1, 2, 3, 5] {
        let n = scale(2_000, 40);
        let (tx, rx) = lanebus::bounded::<usize>(cap);
        let h = thread::spawn(move || {
            let mut items: Vec<usize> = (0..n).collect();
            tx.send_batch_with(Priority::Low, &mut items).unwrap();
            assert!(items.is_empty());
        });
        for i in 0..n {
            assert_eq!(rx.recv(), Ok(i), "cap {cap}");
        }
        h.join().unwrap();
        assert_eq!(rx.recv(), Err(RecvError));
    }
}

#[test]
fn send_batch_on_closed_channel_keeps_items() {
    let (tx, rx) = lanebus::bounded::<u32>(4);
    tx.close();
    let mut items = vec![1, 2, 3];
    assert_eq!(tx.send_batch(&mut items), Err(SendError(())));
    assert_eq!(items, [1, 2, 3]);
    assert_eq!(rx.len(), 0);
}

#[test]
fn send_batch_partial_then_close() {
    // Two values fit, then the batch blocks; closing leaves the other three
    // in the Vec, in order.
    let (tx, rx) = lanebus::bounded::<u32>(2);
    thread::scope(|s| {
        let h = s.spawn(|| {
            let mut items = vec![1, 2, 3, 4, 5];
            let r = tx.send_batch(&mut items);
            (r, items)
        });
        while rx.len() < 2 {
            thread::yield_now();
        }
        tx.close();
        let (r, items) = h.join().unwrap();
        assert_eq!(r, Err(SendError(())));
        assert_eq!(items, [3, 4, 5]);
    });
    assert_eq!(rx.iter().collect::<Vec<_>>(), [1, 2]);
}

#[test]
fn recv_batch_waits_for_at_least_one() {
    let (tx, rx) = lanebus::bounded::<u32>(4);
    thread::scope(|s| {
        s.spawn(|| {
            thread::sleep(Duration::from_millis(20));
            tx.send_with(Priority::High, 7).unwrap();
        });
        let mut out = vec![0];
        // Blocks until the message arrives (whatever the sleep did).
        let n = rx.recv_batch(&mut out, 10).unwrap();
        assert_eq!(n, 1);
        assert_eq!(out, [0, 7], "appends, does not clear");
    });
}

#[test]
fn recv_batch_takes_up_to_max_in_priority_order() {
    let (tx, rx) = lanebus::bounded::<(Priority, u32)>(4);
    for i in 0..3 {
        for p in [
            Priority::Low,
            Priority::Normal,
            Priority::High,
            Priority::Urgent,
        ] {
            tx.send_with(p, (p, i)).unwrap();
        }
    }
    let mut out = Vec::new();
    assert_eq!(rx.recv_batch(&mut out, 4), Ok(4));
    assert_eq!(
        out,
        [
            (Priority::Urgent, 0),
            (Priority::Urgent, 1),
            (Priority::Urgent, 2),
            (Priority::High, 0)
        ]
    );
    out.clear();
    assert_eq!(rx.try_recv_batch(&mut out, 3), Ok(3));
    assert_eq!(
        out,
        [
            (Priority::High, 1),
            (Priority::High, 2),
            (Priority::Normal, 0)
        ]
    );
    out.clear();
    assert_eq!(rx.recv_batch(&mut out, 100), Ok(5));
    assert_eq!(
        out,
        [
            (Priority::Normal, 1),
            (Priority::Normal, 2),
            (Priority::Low, 0),
            (Priority::Low, 1),
            (Priority::Low, 2)
        ]
    );
    out.clear();
    assert_eq!(rx.try_recv_batch(&mut out, 100), Err(TryRecvError::Empty));
    assert!(out.is_empty());
}

#[test]
fn recv_batch_max_zero() {
    let (tx, rx) = lanebus::bounded::<u32>(2);
    let mut out = Vec::new();
    // Returns at once, even on an empty channel.
    assert_eq!(rx.recv_batch(&mut out, 0), Ok(0));
    assert_eq!(rx.try_recv_batch(&mut out, 0), Ok(0));
    tx.send(1).unwrap();
    assert_eq!(rx.recv_batch(&mut out, 0), Ok(0));
    assert_eq!(rx.try_recv_batch(&mut out, 0), Ok(0));
    assert!(out.is_empty());
    assert_eq!(rx.len(), 1, "max 0 takes nothing");
    assert_eq!(rx.recv_batch(&mut out, 1), Ok(1));
    assert_eq!(out, [1]);
}

#[test]
fn recv_batch_after_close() {
    let (tx, rx) = lanebus::bounded::<u32>(4);
    tx.send(1).unwrap();
    tx.send_with(Priority::Low, 2).unwrap();
    drop(tx);
    let mut out = Vec::new();
    assert_eq!(rx.recv_batch(&mut out, 1), Ok(1));
    assert_eq!(rx.try_recv_batch(&mut out, 5), Ok(1));
    assert_eq!(out, [1, 2]);
    assert_eq!(rx.recv_batch(&mut out, 5), Err(RecvError));
    assert_eq!(
        rx.try_recv_batch(&mut out, 5),
        Err(TryRecvError::Disconnected)
    );
    assert_eq!(out, [1, 2]);
}

#[test]
fn recv_batch_wakes_blocked_senders() {
    // A batch receive frees several slots at once: every sender blocked on
    // that lane must get through.
    let (tx, rx) = lanebus::bounded::<u32>(3);
    for i in 0..3 {
        tx.send(i).unwrap();
    }
    thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|i| {
                let tx = tx.clone();
                s.spawn(move || tx.send(10 + i).unwrap())
            })
            .collect();
        thread::sleep(Duration::from_millis(if cfg!(miri) { 5 } else { 30 }));
        let mut out = Vec::new();
        assert_eq!(rx.recv_batch(&mut out, 3), Ok(3));
        assert_eq!(out, [0, 1, 2]);
        for h in hs {
            h.join().unwrap();
        }
    });
    let mut rest: Vec<u32> = rx.try_iter().collect();
    rest.sort_unstable();
    assert_eq!(rest, [10, 11, 12]);
}

#[test]
fn send_batch_wakes_blocked_receivers() {
    let (tx, rx) = lanebus::bounded::<u32>(8);
    thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|_| {
                let rx = rx.clone();
                s.spawn(move || rx.recv().unwrap())
            })
            .collect();
        thread::sleep(Duration::from_millis(if cfg!(miri) { 5 } else { 30 }));
        let mut items = vec![1, 2, 3];
        tx.send_batch(&mut items).unwrap();
        let mut got: Vec<u32> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, [1, 2, 3]);
    });
}

/// Batches across wrap-around: a model check with capacities 1..=5.
#[test]
fn batch_wrap_around() {
    for cap in 1..=5usize {
        let (tx, rx) = ChannelBuilder::new().capacity(cap).build::<usize>();
        let mut next_send = 0;
        let mut next_recv = 0;
        for step in 0..scale(200, 20) {
            // Never more than fits: this thread is the only receiver.
            let room = cap - (next_send - next_recv);
            let k = (1 + step % cap).min(room);
            let mut items: Vec<usize> = (next_send..next_send + k).collect();
            next_send += k;
            tx.send_batch(&mut items).unwrap();
            assert_eq!(rx.len(), next_send - next_recv);
            let max = 1 + (step * 7) % (cap + 1);
            let mut out = Vec::new();
            let n = rx.try_recv_batch(&mut out, max).unwrap();
            assert_eq!(n, max.min(next_send - next_recv), "cap {cap} step {step}");
            assert_eq!(out, (next_recv..next_recv + n).collect::<Vec<_>>());
            next_recv += n;
            if rx.len() == cap {
                assert_eq!(rx.try_recv_batch(&mut out, cap), Ok(cap));
                next_recv += cap;
            }
        }
        let rest: Vec<usize> = rx.try_iter().collect();
        assert_eq!(rest, (next_recv..next_send).collect::<Vec<_>>());
    }
}

#[test]
fn batch_mpmc() {
    let producers = 3;
    let consumers = 3;
    let batches = scale(300, 6);
    let per = 7;
    let (tx, rx) = lanebus::bounded::<(usize, usize)>(5);
    let received: Vec<Vec<(usize, usize)>> = thread::scope(|s| {
        for p in 0..producers {
            let tx = tx.clone();
            s.spawn(move || {
                for b in 0..batches {
                    let mut items: Vec<_> = (0..per).map(|i| (p, b * per + i)).collect();
                    tx.send_batch_with(Priority::ALL[b % 4], &mut items)
                        .unwrap();
                    assert!(items.is_empty());
                }
            });
        }
        drop(tx);
        let hs: Vec<_> = (0..consumers)
            .map(|c| {
                let rx = rx.clone();
                s.spawn(move || {
                    let mut all = Vec::new();
                    let mut out = Vec::new();
                    while rx.recv_batch(&mut out, 1 + c * 3).is_ok() {
                        assert!(!out.is_empty() && out.len() <= 1 + c * 3);
                        all.append(&mut out);
                    }
                    all
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<_> = received.into_iter().flatten().collect();
    all.sort_unstable();
    let want: Vec<_> = (0..producers)
        .flat_map(|p| (0..batches * per).map(move |i| (p, i)))
        .collect();
    assert_eq!(all, want);
}

/// As `sender_on_a_full_lane_takes_a_single_freed_slot` in `channel.rs`:
/// a batch blocked on a full lane takes slots as single ones come free,
/// without waiting for receivers to free a stretch.
#[test]
fn send_batch_on_a_full_lane_takes_single_freed_slots() {
    // As in `channel.rs`: 256 under miri keeps the low-water mark at 128.
    const CAP: u32 = if cfg!(miri) { 256 } else { 1024 };
    let (tx, rx) = lanebus::bounded::<u32>(CAP as usize);
    for i in 0..CAP {
        tx.try_send(i).unwrap();
    }
    let (step, steps) = std::sync::mpsc::channel::<()>();
    thread::scope(|s| {
        let rx = &rx;
        s.spawn(move || {
            // Free one slot at a time, each only after the sender's batch
            // has had time to stall on the full lane again.
            for expect in 0..3 {
                thread::sleep(Duration::from_millis(20));
                assert_eq!(rx.recv(), Ok(expect));
            }
            steps.recv().unwrap();
        });
        let mut items = vec![CAP, CAP + 1, CAP + 2];
        tx.send_batch(&mut items).unwrap();
        assert!(items.is_empty());
        step.send(()).unwrap();
    });
    assert_eq!(rx.len(), CAP as usize);
    assert_eq!(
        rx.try_iter().collect::<Vec<_>>(),
        (3..CAP + 3).collect::<Vec<_>>()
    );
}
