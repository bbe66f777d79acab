//! Many producers and consumers on all lanes with a close at a random
//! point: exactly once, drop exactly once, FIFO per producer and lane.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use common::{scale, Rng, Tracked, Tracker};
use lanebus::{Priority, SendTimeoutError, TrySendError};

const PRODUCERS: usize = 4;
const CONSUMERS: usize = 4;

/// Message id layout: producer * PER + sequence number.
fn per_producer() -> usize {
    scale(20_000, 40)
}

/// How a stress round ends.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// `close()` from a receiver at a random point; consumers drain.
    CloseByReceiver,
    /// `close()` from a sender at a random point; consumers drain.
    CloseBySender,
    /// Every consumer drops its receiver at a random point: queued messages
    /// are discarded by the channel.
    DropReceivers,
}

struct Outcome {
    /// Ids received, per consumer, in order.
    received: Vec<Vec<(usize, Priority)>>,
    /// Ids handed back in send errors.
    handed_back: Vec<usize>,
    /// Ids whose send returned `Ok`.
    sent: usize,
}

fn run(seed: u64, ending: Ending) {
    let per = per_producer();
    let total = PRODUCERS * per;
    let tracker = Tracker::new(total);
    let mut rng = Rng::new(seed);
    let close_after = rng.below(total + total / 4); // may be "never"
    let (tx, rx) = lanebus::bounded::<(Tracked, Priority)>(1 + rng.below(6));
    let received_count = Arc::new(AtomicUsize::new(0));
    let producers_done = Arc::new(AtomicUsize::new(0));

    let outcome = thread::scope(|s| {
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let tx = tx.clone();
                let tracker = tracker.clone();
                let producers_done = producers_done.clone();
                let mut rng = Rng::new(seed * 31 + p as u64);
                s.spawn(move || {
                    let _done = Done(producers_done);
                    let mut handed_back = Vec::new();
                    let mut sent = 0;
                    for i in 0..per {
                        let id = p * per + i;
                        let lane = Priority::ALL[rng.below(4)];
                        let item = (tracker.item(id), lane);
                        // A mix of every send form.
                        let failed = match rng.below(4) {
                            0 => tx.send_with(lane, item).err().map(|e| e.0),
                            1 => match tx.try_send_with(lane, item) {
                                Ok(()) => None,
                                Err(TrySendError::Full(item)) => {
                                    tx.send_with(lane, item).err().map(|e| e.0)
                                }
                                Err(e) => Some(e.into_inner()),
                            },
                            2 => {
                                let timeout = std::time::Duration::from_micros(50);
                                let mut item = item;
                                loop {
                                    match tx.send_timeout_with(lane, item, timeout) {
                                        Ok(()) => break None,
                                        Err(SendTimeoutError::Timeout(v)) => item = v,
                                        Err(e) => break Some(e.into_inner()),
                                    }
                                }
                            }
                            _ => {
                                let mut items = vec![item];
                                match tx.send_batch_with(lane, &mut items) {
                                    Ok(()) => None,
                                    Err(_) => items.pop(),
                                }
                            }
                        };
                        match failed {
                            None => sent += 1,
                            Some((v, _)) => {
                                assert_eq!(v.id, id, "handed back someone else's value");
                                handed_back.push(v.id);
                                // After a close every later send fails too.
                                for j in i + 1..per {
                                    let v = tracker.item(p * per + j);
                                    let e = tx.send((v, Priority::Low)).unwrap_err();
                                    handed_back.push(e.0 .0.id);
                                }
                                break;
                            }
                        }
                    }
                    (handed_back, sent)
                })
            })
            .collect();

        let consumers: Vec<_> = (0..CONSUMERS)
            .map(|c| {
                let rx = rx.clone();
                let received_count = received_count.clone();
                let mut rng = Rng::new(seed * 17 + c as u64);
                let drop_after = rng.below(total / CONSUMERS + total / 8);
                s.spawn(move || {
                    let mut got = Vec::new();
                    loop {
                        if matches!(ending, Ending::DropReceivers) && got.len() >= drop_after {
                            break;
                        }
                        let r = match rng.below(3) {
                            0 => rx.recv().ok().map(|v| vec![v]),
                            1 => {
                                let mut out = Vec::new();
                                rx.recv_batch(&mut out, 1 + rng.below(4)).ok().map(|_| out)
                            }
                            _ => match rx.recv_timeout(std::time::Duration::from_micros(100)) {
                                Ok(v) => Some(vec![v]),
                                Err(lanebus::RecvTimeoutError::Timeout) => Some(vec![]),
                                Err(_) => None,
                            },
                        };
                        let Some(batch) = r else { break };
                        received_count.fetch_add(batch.len(), Ordering::Relaxed);
                        for (v, lane) in batch {
                            got.push((v.id, lane));
                        }
                    }
                    got
                })
            })
            .collect();
        // The closer: closes once `close_after` messages were received, or
        // once the producers are done (so that the consumers finish).
        let closer = (!matches!(ending, Ending::DropReceivers)).then(|| (tx.clone(), rx.clone()));
        let received_count = received_count.clone();
        let producers_done = producers_done.clone();
        s.spawn(move || {
            let Some((tx, rx)) = closer else { return };
            while received_count.load(Ordering::Relaxed) < close_after
                && producers_done.load(Ordering::SeqCst) < PRODUCERS
            {
                thread::yield_now();
            }
            match ending {
                Ending::CloseBySender => tx.close(),
                _ => rx.close(),
            };
        });
        drop(tx);
        drop(rx);
        let mut handed_back = Vec::new();
        let mut sent = 0;
        for h in producers {
            let (hb, n) = h.join().unwrap();
            handed_back.extend(hb);
            sent += n;
        }
        let received = consumers.into_iter().map(|h| h.join().unwrap()).collect();
        Outcome {
            received,
            handed_back,
            sent,
        }
    });

    // Every message is dropped exactly once: received ones were dropped by
    // the consumers, handed-back ones by the producers, discarded ones by
    // the channel.
    tracker.assert_all_dropped_once();

    let mut seen = HashSet::new();
    for per_consumer in &outcome.received {
        // FIFO per (producer, lane) as seen by one consumer.
        let mut last = vec![None; PRODUCERS * 4];
        for &(id, lane) in per_consumer {
            assert!(seen.insert(id), "{ending:?} seed {seed}: id {id} twice");
            let key = id / per * 4 + lane.index();
            if let Some(prev) = last[key] {
                assert!(
                    prev < id,
                    "{ending:?} seed {seed}: {id} after {prev} on {lane}"
                );
            }
            last[key] = Some(id);
        }
    }
    let received = seen.len();
    for id in &outcome.handed_back {
        assert!(
            seen.insert(*id),
            "{ending:?} seed {seed}: id {id} received and handed back"
        );
    }
    match ending {
        Ending::CloseByReceiver | Ending::CloseBySender => {
            // Consumers drain after a close: nothing is lost.
            assert_eq!(received, outcome.sent, "{ending:?} seed {seed}");
            assert_eq!(seen.len(), total, "{ending:?} seed {seed}");
        }
        Ending::DropReceivers => {
            assert!(received <= outcome.sent);
            assert_eq!(outcome.sent + outcome.handed_back.len(), total);
        }
    }
}

#[test]
fn stress_close_by_receiver() {
    for seed in 1..=scale(12, 1) as u64 {
        run(seed, Ending::CloseByReceiver);
    }
}

#[test]
fn stress_close_by_sender() {
    for seed in 100..100 + scale(12, 1) as u64 {
        run(seed, Ending::CloseBySender);
    }
}

#[test]
fn stress_drop_receivers() {
    for seed in 200..200 + scale(12, 1) as u64 {
        run(seed, Ending::DropReceivers);
    }
}

/// Counts a finished producer, also when it panics.
struct Done(Arc<AtomicUsize>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}
