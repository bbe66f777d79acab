//! One test per known bug class of channel crates.

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use common::{scale, Rng, Tracker};
use lanebus::{
    ChannelBuilder, Priority, RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError,
};

/// RUSTSEC-2025-0024 class (double free in crossbeam-channel's Drop): a
/// channel dropped with messages queued, its head anywhere in the ring and
/// its queued run wrapping, drops each message exactly once, whichever
/// handle goes last.
#[test]
fn drop_with_messages_queued() {
    for cap in 1..=scale(5, 3) {
        for head in 0..cap {
            for queued in 0..=cap {
                for receiver_last in [false, true] {
                    let t = Tracker::new(2 * cap + 1);
                    let (tx, rx) = ChannelBuilder::new()
                        .capacity(cap)
                        .lane_capacity(Priority::Low, 1)
                        .build();
                    for i in 0..head {
                        tx.send_with(Priority::High, t.item(i)).unwrap();
                        drop(rx.recv().unwrap());
                    }
                    for i in 0..queued {
                        tx.send_with(Priority::High, t.item(cap + i)).unwrap();
                    }
                    tx.send_with(Priority::Low, t.item(2 * cap)).unwrap();
                    assert_eq!(rx.len(), queued + 1);
                    if receiver_last {
                        drop(tx);
                        drop(rx);
                    } else {
                        drop(rx);
                        drop(tx);
                    }
                    t.assert_all_dropped_once();
                }
            }
        }
    }
}

/// A producer descheduled between claiming a slot and writing it must not
/// block other lanes, nor lose or reorder messages. Black box: many more
/// threads than cores, yielding between sends, while one consumer checks
/// FIFO per (producer, lane) and that every message arrives.
#[test]
fn descheduled_producer_does_not_block_or_lose() {
    let producers = scale(12, 4);
    let n = scale(2_000, 20);
    let (tx, rx) = lanebus::bounded::<(usize, usize, usize)>(2);
    thread::scope(|s| {
        for p in 0..producers {
            let tx = tx.clone();
            s.spawn(move || {
                let lane = p % 4;
                for i in 0..n {
                    tx.send_with(Priority::ALL[lane], (p, lane, i)).unwrap();
                    if i % 3 == p % 3 {
                        thread::yield_now();
                    }
                }
            });
        }
        drop(tx);
        let mut next = vec![0; producers];
        let mut count = 0;
        for (p, lane, i) in rx.iter() {
            assert_eq!(lane, p % 4);
            assert_eq!(i, next[p], "producer {p}");
            next[p] += 1;
            count += 1;
        }
        assert_eq!(count, producers * n);
    });
}

/// While one lane is full and its senders are blocked, the other lanes
/// keep working in both directions.
#[test]
fn full_lane_does_not_block_other_lanes() {
    let (tx, rx) = lanebus::bounded::<(Priority, usize)>(1);
    tx.send_with(Priority::Urgent, (Priority::Urgent, 0))
        .unwrap();
    thread::scope(|s| {
        let blocked: Vec<_> = (1..4)
            .map(|i| {
                let tx = tx.clone();
                s.spawn(move || tx.send_with(Priority::Urgent, (Priority::Urgent, i)))
            })
            .collect();
        thread::sleep(Duration::from_millis(if cfg!(miri) { 5 } else { 20 }));
        let others = [Priority::High, Priority::Normal, Priority::Low];
        for p in others {
            assert_eq!(tx.try_send_with(p, (p, 0)), Ok(()));
            assert_eq!(tx.try_send_with(p, (p, 1)), Err(TrySendError::Full((p, 1))));
            assert_eq!(rx.len_of(p), 1);
        }
        // Receive all 7: the three others in lane order, the four Urgent
        // ones in between as the blocked senders refill their lane.
        let mut urgent = Vec::new();
        let mut rest = Vec::new();
        for _ in 0..7 {
            let m = rx.recv().unwrap();
            if m.0 == Priority::Urgent {
                urgent.push(m.1);
            } else {
                rest.push(m);
            }
        }
        assert_eq!(rest, others.map(|p| (p, 0)));
        assert_eq!(urgent[0], 0);
        urgent.sort_unstable();
        assert_eq!(urgent, [0, 1, 2, 3]);
        for h in blocked {
            assert_eq!(h.join().unwrap(), Ok(()));
        }
    });
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}

/// Disconnect racing the last message, with several receivers: the
/// message is received by exactly one of them, and every receiver ends
/// with `Disconnected`.
#[test]
fn disconnect_racing_last_message() {
    let rounds = scale(1_000, 10);
    for round in 0..rounds {
        let (tx, rx) = lanebus::bounded::<usize>(1);
        let got = thread::scope(|s| {
            let hs: Vec<_> = (0..3)
                .map(|_| {
                    let rx = rx.clone();
                    s.spawn(move || rx.iter().collect::<Vec<_>>())
                })
                .collect();
            s.spawn(move || {
                tx.send_with(Priority::ALL[round % 4], round).unwrap();
            });
            hs.into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        });
        assert_eq!(got, [round]);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }
}

/// notify_one vs notify_all lost wake-up: receivers that wait for ever and
/// receivers whose timeouts expire while messages arrive. A wake-up given
/// to a receiver that times out must not be lost: every blocked receiver
/// that can have a message gets one (the test hangs otherwise).
#[test]
fn no_lost_wakeup_receivers_with_timeouts() {
    let rounds = scale(30, 2);
    for round in 0..rounds {
        let blocking = 3;
        let timing_out = 3;
        let timeout = Duration::from_micros([0, 1, 10, 100, 1000][round % 5]);
        let (tx, rx) = lanebus::bounded::<usize>(blocking + timing_out);
        let (got_blocking, got_timing_out, left) = thread::scope(|s| {
            let bs: Vec<_> = (0..blocking)
                .map(|_| {
                    let rx = rx.clone();
                    s.spawn(move || rx.recv().unwrap())
                })
                .collect();
            let ts: Vec<_> = (0..timing_out)
                .map(|_| {
                    let rx = rx.clone();
                    s.spawn(move || match rx.recv_timeout(timeout) {
                        Ok(v) => Some(v),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(e) => panic!("{e:?}"),
                    })
                })
                .collect();
            thread::sleep(Duration::from_micros(500));
            for i in 0..blocking + timing_out {
                tx.send(i).unwrap();
            }
            let got_t: Vec<usize> = ts.into_iter().filter_map(|h| h.join().unwrap()).collect();
            // The blocking receivers must all return: there are at least
            // `blocking` messages for them.
            let got_b: Vec<usize> = bs.into_iter().map(|h| h.join().unwrap()).collect();
            (got_b, got_t, rx.try_iter().collect::<Vec<_>>())
        });
        let mut all: Vec<usize> = got_blocking
            .iter()
            .chain(&got_timing_out)
            .chain(&left)
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..blocking + timing_out).collect::<Vec<_>>());
        assert_eq!(left.len(), timing_out - got_timing_out.len());
    }
}

/// The same for senders: blocked senders that wait for ever and senders
/// whose timeouts expire while slots free up. Every sender that waits for
/// ever gets through while the receiver keeps taking (hangs otherwise).
#[test]
fn no_lost_wakeup_senders_with_timeouts() {
    let rounds = scale(30, 2);
    for round in 0..rounds {
        let blocking = 3;
        let timing_out = 3;
        let timeout = Duration::from_micros([0, 1, 10, 100, 1000][round % 5]);
        let (tx, rx) = lanebus::bounded::<usize>(1);
        tx.send(100).unwrap();
        let done = AtomicUsize::new(0);
        let (timed_out, received) = thread::scope(|s| {
            let done = &done;
            for i in 0..blocking {
                let tx = tx.clone();
                s.spawn(move || {
                    tx.send(i).unwrap();
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
            let ts: Vec<_> = (0..timing_out)
                .map(|i| {
                    let tx = tx.clone();
                    s.spawn(move || {
                        let r = match tx.send_timeout(10 + i, timeout) {
                            Ok(()) => None,
                            Err(SendTimeoutError::Timeout(v)) => Some(v),
                            Err(e) => panic!("{e:?}"),
                        };
                        done.fetch_add(1, Ordering::SeqCst);
                        r
                    })
                })
                .collect();
            thread::sleep(Duration::from_micros(500));
            let mut received = Vec::new();
            loop {
                match rx.recv_timeout(Duration::from_millis(1)) {
                    Ok(v) => received.push(v),
                    Err(RecvTimeoutError::Timeout) => {
                        // Only stop once every sender returned and nothing
                        // is left; a sender stuck with room in the lane
                        // (a lost wake-up) keeps this loop going for ever.
                        if done.load(Ordering::SeqCst) == blocking + timing_out && rx.is_empty() {
                            break;
                        }
                    }
                    Err(e) => panic!("{e:?}"),
                }
            }
            let timed_out: Vec<usize> = ts.into_iter().filter_map(|h| h.join().unwrap()).collect();
            (timed_out, received)
        });
        let mut all: Vec<usize> = timed_out.iter().chain(&received).copied().collect();
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2, 10, 11, 12, 100]);
        assert!(received.contains(&100) && (0..3).all(|i| received.contains(&i)));
    }
}

/// Receivers woken one at a time: several blocked receivers, messages sent
/// one by one; each message must wake a distinct receiver (no wake-up spent
/// on an already-woken receiver).
#[test]
fn each_message_wakes_a_receiver() {
    let receivers = 4;
    let rounds = scale(50, 2);
    for _ in 0..rounds {
        let (tx, rx) = lanebus::bounded::<usize>(8);
        thread::scope(|s| {
            let hs: Vec<_> = (0..receivers)
                .map(|_| {
                    let rx = rx.clone();
                    s.spawn(move || rx.recv().unwrap())
                })
                .collect();
            thread::sleep(Duration::from_micros(200));
            for i in 0..receivers {
                tx.send(i).unwrap();
            }
            let mut got: Vec<usize> = hs.into_iter().map(|h| h.join().unwrap()).collect();
            got.sort_unstable();
            assert_eq!(got, (0..receivers).collect::<Vec<_>>());
        });
    }
}

/// thingbuf #83 class: "full" detection after skipped slots. Capacities
/// 1, 2, 3 (and 5) are not powers of two, so positions skip indices at the
/// end of each lap. Fill, partially drain, refill across wrap-around, and
/// check `len` and `Full` exactly at every step.
#[test]
fn full_detection_after_skipped_slots() {
    for cap in [1usize, 2, 3, 5] {
        let (tx, rx) = ChannelBuilder::new().capacity(cap).build::<usize>();
        let mut model = VecDeque::new();
        let mut next = 0;
        for lap in 0..scale(50, 5) {
            for drain in 0..=cap {
                // Fill to capacity.
                while model.len() < cap {
                    assert_eq!(tx.try_send(next), Ok(()), "cap {cap} lap {lap}");
                    model.push_back(next);
                    next += 1;
                    assert_eq!(tx.len(), model.len());
                }
                assert_eq!(rx.len_of(Priority::Normal), cap);
                assert_eq!(
                    tx.try_send(usize::MAX),
                    Err(TrySendError::Full(usize::MAX)),
                    "cap {cap} lap {lap}: full not detected"
                );
                assert_eq!(
                    tx.send_timeout(usize::MAX, Duration::ZERO),
                    Err(SendTimeoutError::Timeout(usize::MAX))
                );
                // Partially drain.
                for _ in 0..drain {
                    assert_eq!(rx.try_recv(), Ok(model.pop_front().unwrap()));
                    assert_eq!(rx.len(), model.len());
                }
                // Exactly `drain` slots are free again.
                assert_eq!(rx.len(), cap - drain);
            }
            // Mix batch operations across the wrap.
            let k = 1 + lap % cap;
            let mut out = Vec::new();
            let n = match rx.try_recv_batch(&mut out, k) {
                Err(TryRecvError::Empty) if model.is_empty() => 0,
                r => r.unwrap(),
            };
            assert_eq!(n, k.min(model.len()));
            for v in out {
                assert_eq!(Some(v), model.pop_front());
            }
            let mut items: Vec<usize> = (next..next + n).collect();
            next += n;
            model.extend(items.iter().copied());
            tx.send_batch(&mut items).unwrap();
            assert_eq!(rx.len(), model.len());
        }
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), Vec::from(model));
    }
}

/// Wrap-around over many laps on every lane at small capacities, checking
/// values and counts, with a random mix of operations against a model.
#[test]
fn wrap_around_many_laps() {
    let steps = scale(100_000, 500);
    for cap in [1usize, 2, 3, 4, 7] {
        let (tx, rx) = ChannelBuilder::new().capacity(cap).build::<usize>();
        let mut model: [VecDeque<usize>; 4] = Default::default();
        let mut rng = Rng::new(cap as u64);
        let mut next = 0;
        for step in 0..steps {
            match rng.below(6) {
                0..=2 => {
                    let lane = rng.below(4);
                    let r = tx.try_send_with(Priority::ALL[lane], next);
                    if model[lane].len() < cap {
                        assert_eq!(r, Ok(()), "cap {cap} step {step}");
                        model[lane].push_back(next);
                    } else {
                        assert_eq!(r, Err(TrySendError::Full(next)), "cap {cap} step {step}");
                    }
                    next += 1;
                }
                3 | 4 => {
                    let want = model.iter_mut().find_map(VecDeque::pop_front);
                    assert_eq!(rx.try_recv().ok(), want, "cap {cap} step {step}");
                }
                _ => {
                    let max = rng.below(2 * cap + 1);
                    let mut out = Vec::new();
                    let r = rx.try_recv_batch(&mut out, max);
                    let mut want = Vec::new();
                    for lane in model.iter_mut() {
                        while want.len() < max {
                            match lane.pop_front() {
                                Some(v) => want.push(v),
                                None => break,
                            }
                        }
                    }
                    if max > 0 && want.is_empty() {
                        assert_eq!(r, Err(TryRecvError::Empty));
                    } else {
                        assert_eq!(r, Ok(want.len()));
                    }
                    assert_eq!(out, want, "cap {cap} step {step}");
                }
            }
            for (lane, m) in model.iter().enumerate() {
                assert_eq!(rx.len_of(Priority::ALL[lane]), m.len());
            }
        }
    }
}

/// Receivers racing each other never return the same message twice
/// (the RUSTSEC-2021-0093 "steal racing pop" class, for a channel: two
/// consumers competing for one slot).
#[test]
fn competing_receivers_never_duplicate() {
    let n = scale(20_000, 100);
    let (tx, rx) = lanebus::bounded::<usize>(2);
    let results: Vec<Vec<usize>> = thread::scope(|s| {
        s.spawn(move || {
            for i in 0..n {
                tx.send_with(Priority::ALL[i % 4], i).unwrap();
            }
        });
        let hs: Vec<_> = (0..3)
            .map(|c| {
                let rx = rx.clone();
                s.spawn(move || {
                    let mut got = Vec::new();
                    let mut out = Vec::new();
                    loop {
                        let r = match c {
                            0 => rx.recv().map(|v| got.push(v)).is_ok(),
                            1 => rx.recv_batch(&mut out, 3).is_ok(),
                            _ => match rx.try_recv() {
                                Ok(v) => {
                                    got.push(v);
                                    true
                                }
                                Err(TryRecvError::Empty) => {
                                    thread::yield_now();
                                    true
                                }
                                Err(_) => false,
                            },
                        };
                        got.append(&mut out);
                        if !r {
                            return got;
                        }
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<usize> = results.into_iter().flatten().collect();
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>());
}
