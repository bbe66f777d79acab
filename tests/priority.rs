//! Strict priority across lanes for one consumer; FIFO per producer within a
//! lane.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::thread;

use common::{scale, Rng};
use lanebus::{ChannelBuilder, Priority, TryRecvError};

#[test]
fn priority_names() {
    assert_eq!(Priority::default(), Priority::Normal);
    assert_eq!(
        Priority::ALL,
        [
            Priority::Urgent,
            Priority::High,
            Priority::Normal,
            Priority::Low
        ]
    );
    for (i, p) in Priority::ALL.into_iter().enumerate() {
        assert_eq!(p.index(), i);
        assert_eq!(Priority::from_index(i), Some(p));
        assert_eq!(p.to_string(), p.as_str());
        assert_eq!(p.as_str().parse::<Priority>(), Ok(p));
        assert_eq!(p.as_str().to_uppercase().parse::<Priority>(), Ok(p));
    }
    assert_eq!(Priority::from_index(lanebus::LANES), None);
    let err = "critical".parse::<Priority>().unwrap_err();
    assert!(err.to_string().contains("\"critical\""), "{err}");
    assert!(Priority::Urgent < Priority::Low);
}

#[test]
fn strict_priority_single_consumer() {
    let (tx, rx) = lanebus::bounded::<(usize, u32)>(8);
    // Interleave sends over the lanes, lowest first.
    for i in 0..8u32 {
        for lane in (0..4).rev() {
            tx.send_with(Priority::ALL[lane], (lane, i)).unwrap();
        }
    }
    let got: Vec<(usize, u32)> = rx.try_iter().collect();
    let want: Vec<(usize, u32)> = (0..4)
        .flat_map(|lane| (0..8).map(move |i| (lane, i)))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn higher_lane_arriving_later_jumps_the_queue() {
    let (tx, rx) = lanebus::bounded::<&str>(4);
    tx.send_with(Priority::Low, "low1").unwrap();
    tx.send("normal1").unwrap();
    assert_eq!(rx.recv(), Ok("normal1"));
    tx.send_with(Priority::High, "high1").unwrap();
    tx.send("normal2").unwrap();
    assert_eq!(rx.recv(), Ok("high1"));
    tx.send_with(Priority::Urgent, "urgent1").unwrap();
    assert_eq!(rx.recv(), Ok("urgent1"));
    assert_eq!(rx.recv(), Ok("normal2"));
    assert_eq!(rx.recv(), Ok("low1"));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}

/// A message in a higher lane whose send returned before `recv` started is
/// served before anything in a lower lane, even while another producer keeps
/// the lower lanes busy.
#[test]
fn higher_lane_sent_before_recv_is_served_first() {
    let rounds = scale(300, 10);
    let (tx, rx) = lanebus::bounded::<(Priority, usize)>(64);
    let (go_tx, go_rx) = lanebus::bounded::<usize>(1);
    let (ack_tx, ack_rx) = lanebus::bounded::<()>(1);
    let (done_tx, done_rx) = lanebus::bounded::<()>(1);
    // Every thread owns the handles it uses, so that a failed assertion
    // disconnects the others instead of leaving them blocked.
    let noise = tx.clone();
    let noise = thread::spawn(move || {
        let mut i = 0;
        while done_rx.try_recv() == Err(TryRecvError::Empty) {
            let _ = noise.try_send_with(Priority::ALL[2 + i % 2], (Priority::Low, i));
            i += 1;
            thread::yield_now();
        }
    });
    let producer = thread::spawn(move || {
        for round in 0..rounds {
            let p = if round % 2 == 0 {
                Priority::Urgent
            } else {
                Priority::High
            };
            tx.send_with(p, (p, round)).unwrap();
            // The send returned: now tell the consumer.
            if go_tx.send(round).is_err() || ack_rx.recv().is_err() {
                return;
            }
        }
    });
    let consumer = thread::spawn(move || {
        let _done = done_tx;
        for round in 0..rounds {
            assert_eq!(go_rx.recv(), Ok(round));
            let (p, r) = rx.recv().unwrap();
            assert!(p <= Priority::High, "round {round}: got a {p} message");
            assert_eq!(r, round);
            ack_tx.send(()).unwrap();
        }
    });
    let result = consumer.join();
    producer.join().unwrap();
    noise.join().unwrap();
    result.unwrap();
}

/// One lane, several producers, one consumer: each producer's messages
/// arrive in the order it sent them, and none is lost.
#[test]
fn fifo_per_producer_within_lane() {
    let producers = 4;
    let n = scale(5_000, 20);
    for lane in Priority::ALL {
        let (tx, rx) = lanebus::bounded::<(usize, usize)>(3);
        thread::scope(|s| {
            for p in 0..producers {
                let tx = tx.clone();
                s.spawn(move || {
                    for i in 0..n {
                        tx.send_with(lane, (p, i)).unwrap();
                    }
                });
            }
            drop(tx);
            let mut next = vec![0; producers];
            for (p, i) in rx.iter() {
                assert_eq!(i, next[p], "producer {p} on {lane}");
                next[p] += 1;
            }
            assert_eq!(next, vec![n; producers]);
        });
    }
}

/// Several producers on all lanes, one consumer: FIFO per (producer, lane),
/// and whenever the consumer drains with `try_iter` while producers are
/// paused, the drained sequence is sorted by lane.
#[test]
fn fifo_per_producer_all_lanes_with_pauses() {
    let producers = 3;
    let rounds = scale(100, 5);
    let per_round = 6;
    let (tx, rx) = lanebus::bounded::<(usize, Priority, usize)>(producers * per_round);
    let barrier = Arc::new(Barrier::new(producers + 1));
    thread::scope(|s| {
        for p in 0..producers {
            let tx = tx.clone();
            let barrier = barrier.clone();
            s.spawn(move || {
                let mut rng = Rng::new(p as u64 + 1);
                let mut seq = [0usize; 4];
                for _ in 0..rounds {
                    for _ in 0..per_round {
                        let lane = rng.below(4);
                        tx.send_with(Priority::ALL[lane], (p, Priority::ALL[lane], seq[lane]))
                            .unwrap();
                        seq[lane] += 1;
                    }
                    barrier.wait(); // all sent
                    barrier.wait(); // consumer drained
                }
            });
        }
        let mut next: HashMap<(usize, Priority), usize> = HashMap::new();
        for _ in 0..rounds {
            barrier.wait();
            let batch: Vec<_> = rx.try_iter().collect();
            assert_eq!(batch.len(), producers * per_round);
            assert!(
                batch.windows(2).all(|w| w[0].1 <= w[1].1),
                "not in priority order: {batch:?}"
            );
            for (p, lane, i) in batch {
                let want = next.entry((p, lane)).or_insert(0);
                assert_eq!(i, *want, "producer {p} on {lane}");
                *want += 1;
            }
            barrier.wait();
        }
    });
}

/// Priority order holds when the higher lane's ring has wrapped around
/// (its queued run crosses the end of the slot array).
#[test]
fn priority_order_across_wrap() {
    for cap in 1..=5usize {
        let (tx, rx) = ChannelBuilder::new()
            .capacity(cap)
            .build::<(usize, usize)>();
        // Move every lane's head to the middle of its ring.
        for lane in 0..4 {
            for _ in 0..cap / 2 + 1 {
                tx.send_with(Priority::ALL[lane], (9, 9)).unwrap();
            }
        }
        assert_eq!(rx.try_iter().count(), 4 * (cap / 2 + 1));
        for lane in (0..4).rev() {
            for i in 0..cap {
                tx.send_with(Priority::ALL[lane], (lane, i)).unwrap();
            }
        }
        let want: Vec<_> = (0..4).flat_map(|l| (0..cap).map(move |i| (l, i))).collect();
        let got: Vec<_> = rx.try_iter().collect();
        assert_eq!(got, want, "cap {cap}");
    }
}

/// `recv_batch` returns messages highest lane first, each lane in FIFO
/// order, also when a lane's queued run wraps around the ring.
#[test]
fn recv_batch_priority_order_across_wrap() {
    for cap in 2..=5usize {
        let (tx, rx) = ChannelBuilder::new()
            .capacity(cap)
            .build::<(usize, usize)>();
        for lane in 0..4 {
            for _ in 0..cap - 1 {
                tx.send_with(Priority::ALL[lane], (9, 9)).unwrap();
            }
        }
        let mut out = Vec::new();
        assert_eq!(rx.recv_batch(&mut out, usize::MAX), Ok(4 * (cap - 1)));
        // Now each lane's head is at its last slot: a full lane wraps.
        for lane in (0..4).rev() {
            for i in 0..cap {
                tx.send_with(Priority::ALL[lane], (lane, i)).unwrap();
            }
        }
        let want: Vec<_> = (0..4).flat_map(|l| (0..cap).map(move |i| (l, i))).collect();
        let mut out = Vec::new();
        assert_eq!(rx.recv_batch(&mut out, 4 * cap), Ok(4 * cap), "cap {cap}");
        assert_eq!(out, want, "cap {cap}");
    }
}
