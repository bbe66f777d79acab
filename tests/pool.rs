//! The worker pool: outcomes, retries, dead letters, panics, keyed order
//! under stealing, the urgent bound, the circuit breaker, shutdown in every
//! mode, stats, and a bus subscription as the source.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{scale, wait_until, Rng};
use lanebus::pool::{
    BreakerState, CircuitBreaker, Delivery, Outcome, RetryPolicy, Shutdown, WorkerPool,
};
use lanebus::{Bus, Message, Priority};

/// No backoff: retries run at once (deterministic in a manual pool).
fn instant_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy::attempts(attempts).backoff(Duration::ZERO, Duration::ZERO, 1.0)
}

/// Handled ids, to check exactly-once.
#[derive(Default)]
struct Seen(Mutex<Vec<u64>>);

impl Seen {
    fn push(&self, id: u64) {
        self.0.lock().unwrap().push(id);
    }
    fn sorted(&self) -> Vec<u64> {
        let mut v = self.0.lock().unwrap().clone();
        v.sort_unstable();
        v
    }
}

#[test]
fn every_message_is_acked_exactly_once() {
    let n = scale(20_000, 96) as u64;
    let (tx, rx) = lanebus::bounded::<u64>(64);
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    let pool = WorkerPool::builder()
        .workers(4) // oversubscribed on 2 cores: stealing under preemption
        .batch_size(8)
        .build(rx, move |d: &Delivery<u64>| {
            s.push(*d.payload());
            Outcome::Ack
        });
    for i in 0..n {
        tx.send_with(Priority::ALL[(i % 4) as usize], i).unwrap();
    }
    drop(tx);
    let report = pool.join();
    assert_eq!(seen.sorted(), (0..n).collect::<Vec<_>>());
    assert_eq!((report.taken, report.acked), (n, n));
    assert_eq!(report.dead_lettered, 0);
    assert!(report.unprocessed.is_empty());
    assert!(report.is_consistent());
    assert!(!report.timed_out);
}

#[test]
fn retries_until_acked_then_dead_letters_when_exhausted() {
    let (tx, rx) = lanebus::bounded::<u64>(16);
    let mut pool = WorkerPool::builder()
        .workers(0)
        .retry(instant_retries(3))
        .build(rx, |d: &Delivery<u64>| {
            // Message 1 succeeds on its 3rd attempt, message 2 never does.
            if *d.payload() == 1 && d.attempt() == 3 {
                Outcome::Ack
            } else {
                Outcome::Retry
            }
        });
    let dead = pool.dead_letters();
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    assert_eq!(pool.run_pending(), 6);
    let letter = dead.try_recv().expect("message 2 is dead");
    assert_eq!((letter.payload, letter.attempts), (2, 3));
    assert!(
        letter.reason.contains("no attempts left (3 of 3)"),
        "{}",
        letter.reason
    );
    assert!(dead.try_recv().is_err());
    let stats = pool.stats();
    assert_eq!((stats.acked, stats.dead_lettered, stats.retried), (1, 1, 4));
    assert_eq!(stats.processed, 6);
    drop(tx);
    let report = pool.join();
    assert!(report.is_consistent());
    assert_eq!(report.retries, 4);
}

#[test]
fn dead_letter_outcome_is_immediate_and_can_be_republished() {
    let (tx, rx) = lanebus::bounded::<String>(16);
    let mut pool = WorkerPool::builder()
        .workers(0)
        .build(rx, |d: &Delivery<String>| {
            if d.payload().starts_with("bad") {
                Outcome::DeadLetter(format!("refused {}", d.payload()))
            } else {
                Outcome::Ack
            }
        });
    let dead = pool.dead_letters();
    tx.send_with(Priority::High, "bad order".into()).unwrap();
    pool.run_pending();
    let letter = dead.try_recv().unwrap();
    assert_eq!(letter.reason, "refused bad order");
    assert_eq!((letter.attempts, letter.priority), (1, Priority::High));
    // Fixed and sent again: acked this time.
    let fixed = letter.into_payload().replace("bad", "good");
    tx.send(fixed).unwrap();
    pool.run_pending();
    assert_eq!(pool.stats().acked, 1);
    assert!(dead.try_recv().is_err());
}

#[test]
fn a_panicking_handler_is_a_failed_attempt_and_the_worker_survives() {
    let (tx, rx) = lanebus::bounded::<u64>(64);
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    let pool = WorkerPool::builder()
        .workers(1) // one thread: it must survive every panic
        .retry(instant_retries(2))
        .build(rx, move |d: &Delivery<u64>| {
            let id = *d.payload();
            // Odd ids panic on the first attempt; ids divisible by 10
            // always panic.
            if id % 10 == 0 || (id % 2 == 1 && d.attempt() == 1) {
                panic!("boom {id}");
            }
            s.push(id);
            Outcome::Ack
        });
    let dead = pool.dead_letters();
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for i in 1..=50 {
        tx.send(i).unwrap();
    }
    drop(tx);
    let report = pool.join();
    std::panic::set_hook(prev);
    // 25 odd (panic once, then ack), 20 even not divisible by 10 (ack),
    // 5 multiples of 10 (panic twice, then dead).
    assert_eq!(report.acked, 45);
    assert_eq!(report.dead_lettered, 5);
    assert_eq!(report.panics, 25 + 10);
    assert!(report.is_consistent());
    let letters: Vec<_> = dead.try_iter().collect();
    assert_eq!(letters.len(), 5);
    for letter in letters {
        assert_eq!(letter.payload % 10, 0);
        assert!(
            letter.reason.contains("panicked: boom"),
            "{}",
            letter.reason
        );
        assert_eq!(letter.attempts, 2);
    }
    assert_eq!(seen.sorted().len(), 45);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "threads, sleeps and timing: hours under miri; run natively and under TSan"
)]
fn same_key_is_handled_one_at_a_time_in_order_under_stealing() {
    let keys = 6u64;
    let per_key = scale(400, 20) as u64;
    let (tx, rx) = lanebus::bounded::<(u64, u64)>(32);
    let busy: Arc<Vec<AtomicBool>> = Arc::new((0..keys).map(|_| AtomicBool::new(false)).collect());
    let order = Arc::new(Mutex::new(HashMap::<u64, Vec<u64>>::new()));
    let (b, o) = (busy.clone(), order.clone());
    let pool = WorkerPool::builder()
        .workers(4)
        .batch_size(4)
        .retry(instant_retries(3))
        .key(|&(key, _): &(u64, u64)| Some(key))
        .build(rx, move |d: &Delivery<(u64, u64)>| {
            let (key, seq) = *d.payload();
            assert!(
                !b[key as usize].swap(true, Ordering::SeqCst),
                "key {key} handled concurrently"
            );
            // Random small delays: spin or yield or sleep.
            let mut rng = Rng::new(seq * 31 + key);
            match rng.below(8) {
                0 => thread::sleep(Duration::from_micros(50)),
                1 | 2 => thread::yield_now(),
                _ => {}
            }
            // Every 7th message fails once: a retry keeps its key busy.
            let outcome = if seq % 7 == 3 && d.attempt() == 1 {
                Outcome::Retry
            } else {
                o.lock().unwrap().entry(key).or_default().push(seq);
                Outcome::Ack
            };
            b[key as usize].store(false, Ordering::SeqCst);
            outcome
        });
    for seq in 0..per_key {
        for key in 0..keys {
            tx.send((key, seq)).unwrap();
        }
    }
    drop(tx);
    let report = pool.join();
    assert_eq!(report.acked, keys * per_key);
    assert!(report.is_consistent());
    let order = order.lock().unwrap();
    for key in 0..keys {
        assert_eq!(
            order[&key],
            (0..per_key).collect::<Vec<_>>(),
            "key {key} out of order"
        );
    }
}

#[test]
#[cfg_attr(
    miri,
    ignore = "threads, sleeps and timing: hours under miri; run natively and under TSan"
)]
fn unkeyed_messages_spread_over_workers() {
    let (tx, rx) = lanebus::bounded::<u64>(256);
    let pool = WorkerPool::builder()
        .workers(2)
        .batch_size(4)
        .build(rx, |_: &Delivery<u64>| {
            thread::sleep(Duration::from_micros(200));
            Outcome::Ack
        });
    for i in 0..200 {
        tx.send(i).unwrap();
    }
    drop(tx);
    let stats_before_join = {
        wait_until("half handled", || pool.stats().acked >= 100);
        pool.stats()
    };
    let report = pool.join();
    assert_eq!(report.acked, 200);
    // Both workers took part (a sleeping handler leaves the other free).
    assert!(
        stats_before_join.workers.iter().all(|w| w.handled > 0),
        "{:?}",
        stats_before_join.workers
    );
}

/// The documented bound: an Urgent message waits behind at most one batch.
#[test]
fn urgent_waits_at_most_one_batch() {
    for batch in [1usize, 4, 16] {
        let (tx, rx) = lanebus::bounded::<u64>(256);
        let order = Arc::new(Mutex::new(Vec::new()));
        let o = order.clone();
        let urgent_tx = tx.clone();
        let mut pool = WorkerPool::builder().workers(0).batch_size(batch).build(
            rx,
            move |d: &Delivery<u64>| {
                let mut order = o.lock().unwrap();
                order.push(*d.payload());
                // While handling the 3rd Normal message, an Urgent arrives.
                if *d.payload() == 2 {
                    urgent_tx.send_with(Priority::Urgent, 1_000).unwrap();
                }
                Outcome::Ack
            },
        );
        for i in 0..100 {
            tx.send(i).unwrap();
        }
        pool.run_pending();
        let order = order.lock().unwrap();
        let sent_at = order.iter().position(|&v| v == 2).unwrap();
        let handled_at = order.iter().position(|&v| v == 1_000).unwrap();
        let waited = handled_at - sent_at - 1;
        assert!(
            waited < batch,
            "batch {batch}: urgent waited behind {waited}"
        );
    }
}

#[test]
#[cfg_attr(
    miri,
    ignore = "threads, sleeps and timing: hours under miri; run natively and under TSan"
)]
fn a_delayed_retry_does_not_block_the_worker_and_keeps_its_priority() {
    let (tx, rx) = lanebus::bounded::<u64>(16);
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let pool = WorkerPool::builder()
        .workers(1)
        .build(rx, move |d: &Delivery<u64>| {
            l.lock()
                .unwrap()
                .push((*d.payload(), d.attempt(), d.priority()));
            if *d.payload() == 1 && d.attempt() == 1 {
                Outcome::RetryAfter(Duration::from_millis(300))
            } else {
                Outcome::Ack
            }
        });
    tx.send_with(Priority::High, 1).unwrap();
    wait_until("first attempt", || !log.lock().unwrap().is_empty());
    tx.send(2).unwrap();
    // Message 2 is handled while 1 waits to retry.
    wait_until("message 2", || log.lock().unwrap().len() == 2);
    assert_eq!(log.lock().unwrap()[1], (2, 1, Priority::Normal));
    wait_until("the retry", || log.lock().unwrap().len() == 3);
    assert_eq!(log.lock().unwrap()[2], (1, 2, Priority::High));
    drop(tx);
    let report = pool.join();
    assert_eq!((report.acked, report.retries), (2, 1));
}

#[test]
fn backoff_grows_and_is_capped() {
    let policy = RetryPolicy::attempts(10)
        .backoff(Duration::from_millis(10), Duration::from_millis(100), 2.0)
        .jitter(0.0);
    assert_eq!(policy.delay(1, 0.5), Duration::from_millis(10));
    assert_eq!(policy.delay(2, 0.5), Duration::from_millis(20));
    assert_eq!(policy.delay(4, 0.5), Duration::from_millis(80));
    assert_eq!(policy.delay(5, 0.5), Duration::from_millis(100));
    assert_eq!(policy.delay(60, 0.5), Duration::from_millis(100));
    let jittered = policy.clone().jitter(0.5);
    assert_eq!(jittered.delay(2, 0.0), Duration::from_millis(20));
    assert_eq!(jittered.delay(2, 1.0), Duration::from_millis(10));
}

#[test]
fn per_message_retry_policy_overrides_the_pool() {
    let (tx, rx) = lanebus::bounded::<u64>(16);
    let mut pool = WorkerPool::builder()
        .workers(0)
        .retry(instant_retries(5))
        .retry_policy_for(|d: &Delivery<u64>| (*d.payload() == 7).then(RetryPolicy::never))
        .build(rx, |_: &Delivery<u64>| Outcome::Retry);
    let dead = pool.dead_letters();
    tx.send(7).unwrap();
    tx.send(8).unwrap();
    pool.run_pending();
    let attempts: HashMap<u64, u32> = dead.try_iter().map(|l| (l.payload, l.attempts)).collect();
    assert_eq!(attempts, HashMap::from([(7, 1), (8, 5)]));
}

#[test]
fn circuit_breaker_opens_probes_and_closes() {
    // Long enough that the steps between trips fit in it, also under miri.
    let cool_down = Duration::from_millis(if cfg!(miri) { 5_000 } else { 100 });
    let (tx, rx) = lanebus::bounded::<u64>(64);
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let mut pool = WorkerPool::builder()
        .workers(0)
        .batch_size(1)
        .retry(RetryPolicy::never())
        .circuit_breaker(CircuitBreaker {
            window: 4,
            min_attempts: 4,
            failure_ratio: 0.5,
            cool_down,
        })
        .build(rx, move |_: &Delivery<u64>| {
            if h.load(Ordering::SeqCst) {
                Outcome::Ack
            } else {
                Outcome::DeadLetter("down".into())
            }
        });
    for i in 0..20 {
        tx.send(i).unwrap();
    }
    // Four failures open it; then nothing more is taken.
    assert_eq!(pool.run_pending(), 4);
    assert_eq!(pool.run_pending(), 0);
    // (The state only changes inside `run_pending`: a slow snapshot, as
    // under miri, cannot race the cool-down.)
    assert_eq!(pool.stats().breaker, BreakerState::Open);
    assert_eq!(pool.stats().taken, 4);
    // After the cool-down one probe goes through; it fails: open again.
    thread::sleep(cool_down + cool_down / 5);
    assert_eq!(pool.run_pending(), 1);
    assert_eq!(pool.stats().breaker, BreakerState::Open);
    // Healthy now: the next probe closes it and work flows.
    healthy.store(true, Ordering::SeqCst);
    thread::sleep(cool_down + cool_down / 5);
    assert_eq!(pool.run_pending(), 15);
    assert_eq!(pool.stats().breaker, BreakerState::Closed);
    assert_eq!(pool.stats().acked, 15);
}

/// Messages for shutdown tests: ids with a priority.
fn fill(tx: &lanebus::Sender<u64>, n: u64) {
    for i in 0..n {
        tx.send_with(Priority::ALL[(i % 4) as usize], i).unwrap();
    }
}

/// A pool of `workers` on a fresh channel of `cap` per lane whose handler
/// sleeps `sleep_ms` and records what it acks; also a spare receiver to
/// read what the pool left in the channel.
fn sleepy_pool(
    cap: usize,
    workers: usize,
    batch: usize,
    sleep_ms: u64,
) -> (
    lanebus::Sender<u64>,
    lanebus::Receiver<u64>,
    Arc<Seen>,
    WorkerPool<u64>,
) {
    let (tx, rx) = lanebus::bounded::<u64>(cap);
    let spare_rx = rx.clone();
    let acked = Arc::new(Seen::default());
    let a = acked.clone();
    let pool = WorkerPool::builder()
        .workers(workers)
        .batch_size(batch)
        .build(rx, move |d: &Delivery<u64>| {
            thread::sleep(Duration::from_millis(sleep_ms));
            a.push(*d.payload());
            Outcome::Ack
        });
    (tx, spare_rx, acked, pool)
}

fn check_accounting(
    sent: u64,
    report: &lanebus::pool::ShutdownReport<u64>,
    acked: &Seen,
    left_in_channel: Vec<u64>,
) {
    assert!(report.is_consistent(), "{report:?}");
    let mut all = acked.sorted();
    all.extend(report.unprocessed.iter().map(|u| u.payload));
    all.extend(report.dead_letters_unsent.iter().map(|l| l.payload));
    all.extend(left_in_channel);
    all.sort_unstable();
    assert_eq!(
        all,
        (0..sent).collect::<Vec<_>>(),
        "a message lost or duplicated"
    );
    // Unprocessed come highest priority first.
    assert!(report
        .unprocessed
        .windows(2)
        .all(|w| w[0].priority <= w[1].priority));
}

#[test]
#[cfg_attr(
    miri,
    ignore = "threads, sleeps and timing: hours under miri; run natively and under TSan"
)]
fn graceful_shutdown_finishes_taken_work_and_leaves_the_source() {
    let (tx, spare_rx, acked, pool) = sleepy_pool(64, 2, 4, 2);
    fill(&tx, 200);
    wait_until("some handled", || pool.stats().acked >= 10);
    let report = pool.shutdown(Shutdown::Graceful {
        deadline: Instant::now() + Duration::from_secs(10),
    });
    assert!(!report.timed_out);
    assert!(
        report.unprocessed.is_empty(),
        "everything taken was finished"
    );
    let left: Vec<u64> = spare_rx.try_iter().collect();
    assert!(!left.is_empty(), "the source was left alone");
    check_accounting(200, &report, &acked, left);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "threads, sleeps and timing: hours under miri; run natively and under TSan"
)]
fn graceful_shutdown_past_its_deadline_returns_the_rest() {
    let (tx, spare_rx, acked, pool) = sleepy_pool(64, 1, 32, 5);
    fill(&tx, 64);
    wait_until("a batch taken", || pool.stats().taken >= 32);
    let report = pool.shutdown(Shutdown::Graceful {
        deadline: Instant::now() + Duration::from_millis(20),
    });
    assert!(report.timed_out);
    assert!(!report.unprocessed.is_empty());
    check_accounting(64, &report, &acked, spare_rx.try_iter().collect());
}

#[test]
#[cfg_attr(
    miri,
    ignore = "threads, sleeps and timing: hours under miri; run natively and under TSan"
)]
fn immediate_shutdown_returns_everything_not_in_flight() {
    let (tx, rx) = lanebus::bounded::<u64>(64);
    let spare_rx = rx.clone();
    let acked = Arc::new(Seen::default());
    let a = acked.clone();
    let pool = WorkerPool::builder()
        .workers(2)
        .batch_size(16)
        .retry(RetryPolicy::attempts(3).backoff(
            Duration::from_secs(60),
            Duration::from_secs(60),
            1.0,
        ))
        .key(|v: &u64| Some(v % 3))
        .build(rx, move |d: &Delivery<u64>| {
            thread::sleep(Duration::from_millis(1));
            if *d.payload() % 5 == 0 {
                return Outcome::Retry; // parked for a minute
            }
            a.push(*d.payload());
            Outcome::Ack
        });
    fill(&tx, 120);
    wait_until("a retry is pending", || pool.stats().retried >= 1);
    let report = pool.shutdown(Shutdown::Immediate);
    // Waiting retries and keys' mailboxes come back too.
    assert!(report.unprocessed.iter().any(|u| u.attempts == 1));
    check_accounting(120, &report, &acked, spare_rx.try_iter().collect());
}

#[test]
#[cfg_attr(
    miri,
    ignore = "threads, sleeps and timing: hours under miri; run natively and under TSan"
)]
fn drain_closes_the_source_and_handles_everything() {
    let (tx, rx) = lanebus::bounded::<u64>(64);
    let acked = Arc::new(Seen::default());
    let a = acked.clone();
    let pool = WorkerPool::builder()
        .workers(2)
        .build(rx, move |d: &Delivery<u64>| {
            a.push(*d.payload());
            Outcome::Ack
        });
    fill(&tx, 200);
    let report = pool.shutdown(Shutdown::Drain {
        deadline: Instant::now() + Duration::from_secs(30),
    });
    assert!(!report.timed_out);
    check_accounting(200, &report, &acked, Vec::new());
    assert_eq!(report.acked, 200);
    // Closed: a sender gets its value back.
    assert_eq!(tx.send(7).unwrap_err().0, 7);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "threads, sleeps and timing: hours under miri; run natively and under TSan"
)]
fn drain_past_its_deadline_returns_the_source_too() {
    let (tx, _spare_rx, acked, pool) = sleepy_pool(128, 1, 4, 2);
    fill(&tx, 400);
    let report = pool.shutdown(Shutdown::Drain {
        deadline: Instant::now() + Duration::from_millis(30),
    });
    assert!(report.timed_out);
    check_accounting(400, &report, &acked, Vec::new());
    assert_eq!(
        report.taken, 400,
        "the source's leftovers are in the report"
    );
}

/// Shutdown (every mode, random moments) racing workers in the middle of
/// handlers, retries and keyed mailboxes: every message exactly once.
#[test]
#[cfg_attr(
    miri,
    ignore = "threads, sleeps and timing: hours under miri; run natively and under TSan"
)]
fn shutdown_racing_in_flight_work_loses_nothing() {
    let rounds = scale(40, 3);
    let mut rng = Rng::new(7);
    for round in 0..rounds {
        let (tx, rx) = lanebus::bounded::<u64>(32);
        let spare_rx = rx.clone();
        let acked = Arc::new(Seen::default());
        let a = acked.clone();
        let pool = WorkerPool::builder()
            .workers(1 + rng.below(3))
            .batch_size(1 + rng.below(8))
            .retry(instant_retries(2))
            .key(|v: &u64| (v % 2 == 0).then_some(v % 5))
            .build(rx, move |d: &Delivery<u64>| {
                if *d.payload() % 9 == 4 && d.attempt() == 1 {
                    return Outcome::Retry;
                }
                if *d.payload() % 13 == 0 {
                    return Outcome::DeadLetter("thirteen".into());
                }
                a.push(*d.payload());
                Outcome::Ack
            });
        let dead = pool.dead_letters();
        let n = 100;
        let producer = thread::spawn(move || {
            for i in 0..n {
                if tx.send_with(Priority::ALL[(i % 4) as usize], i).is_err() {
                    return i; // closed by a Drain: sent 0..i
                }
            }
            n
        });
        thread::sleep(Duration::from_micros(rng.below(2_000) as u64));
        let mode = match round % 3 {
            0 => Shutdown::Immediate,
            1 => Shutdown::Graceful {
                deadline: Instant::now() + Duration::from_micros(rng.below(500) as u64),
            },
            _ => Shutdown::Drain {
                deadline: Instant::now() + Duration::from_micros(rng.below(500) as u64),
            },
        };
        // Keep draining the channel so a blocked producer can finish.
        let report = pool.shutdown(mode);
        let mut left: Vec<u64> = Vec::new();
        let sent = loop {
            left.extend(spare_rx.try_iter());
            if producer.is_finished() {
                left.extend(spare_rx.try_iter());
                break producer.join().unwrap();
            }
            thread::yield_now();
        };
        let letters: Vec<u64> = dead.try_iter().map(|l| l.payload).collect();
        assert_eq!(
            letters.len() as u64 + report.dead_letters_unsent.len() as u64,
            report.dead_lettered
        );
        left.extend(letters);
        check_accounting(sent, &report, &acked, left);
    }
}

#[test]
fn dead_letters_that_do_not_fit_at_shutdown_are_in_the_report() {
    let (tx, rx) = lanebus::bounded::<u64>(64);
    let mut pool = WorkerPool::builder()
        .workers(0)
        .dead_letter_capacity(2)
        .build(rx, |_: &Delivery<u64>| Outcome::DeadLetter("no".into()));
    // Normal lane of the dead-letter queue holds 2; nobody reads it.
    for i in 0..2 {
        tx.send(i).unwrap();
    }
    pool.run_pending();
    for i in 2..5 {
        tx.send(i).unwrap();
    }
    drop(tx);
    let report = pool.shutdown(Shutdown::Drain {
        deadline: Instant::now() + Duration::from_secs(5),
    });
    assert_eq!(report.dead_lettered, 5);
    let unsent: HashSet<u64> = report
        .dead_letters_unsent
        .iter()
        .map(|l| l.payload)
        .collect();
    assert_eq!(unsent, HashSet::from([2, 3, 4]));
    assert!(report.is_consistent());
}

#[test]
#[cfg_attr(
    miri,
    ignore = "threads, sleeps and timing: hours under miri; run natively and under TSan"
)]
fn stats_report_latency_per_lane_and_worker_time() {
    let (tx, rx) = lanebus::bounded::<u64>(64);
    let pool = WorkerPool::builder()
        .workers(2)
        .build(rx, |_: &Delivery<u64>| {
            thread::sleep(Duration::from_micros(100));
            Outcome::Ack
        });
    for i in 0..40 {
        tx.send_with(
            if i < 10 {
                Priority::Urgent
            } else {
                Priority::Low
            },
            i,
        )
        .unwrap();
    }
    wait_until("all handled", || pool.stats().acked == 40);
    let stats = pool.stats();
    assert_eq!(stats.latency[Priority::Urgent.index()].count, 10);
    assert_eq!(stats.latency[Priority::Low.index()].count, 30);
    assert_eq!(stats.latency[Priority::High.index()].count, 0);
    let low = stats.latency[Priority::Low.index()];
    assert!(low.p50 >= 100_000 && low.p50 <= low.p95 && low.p95 <= low.p99 && low.p99 <= low.max);
    assert_eq!(stats.workers.len(), 2);
    assert_eq!(stats.workers.iter().map(|w| w.handled).sum::<u64>(), 40);
    assert!(stats.workers.iter().map(|w| w.busy).sum::<Duration>() >= Duration::from_millis(4));
    assert_eq!((stats.in_pool, stats.source_depth), (0, 0));
}

#[test]
#[cfg_attr(
    miri,
    ignore = "threads, sleeps and timing: hours under miri; run natively and under TSan"
)]
fn a_bus_subscription_feeds_a_pool_with_envelope_keys() {
    let bus = Bus::builder().capacity(64).build();
    let sub = bus.subscribe("orders.*").unwrap();
    let order = Arc::new(Mutex::new(HashMap::<String, Vec<u32>>::new()));
    let o = order.clone();
    let concurrent = Arc::new(AtomicUsize::new(0));
    let c = concurrent.clone();
    let pool = WorkerPool::builder().workers(3).batch_size(2).build(
        sub,
        move |d: &Delivery<lanebus::Envelope>| {
            assert!(d.key().is_some(), "the envelope's key is the ordering key");
            let n: u32 = d.payload().decode().unwrap();
            let key = d.payload().key().unwrap().to_string();
            c.fetch_add(1, Ordering::SeqCst);
            thread::yield_now();
            o.lock().unwrap().entry(key).or_default().push(n);
            c.fetch_sub(1, Ordering::SeqCst);
            Outcome::Ack
        },
    );
    for n in 0..300u32 {
        let customer = format!("c{}", n % 3);
        bus.publish("orders.new", Message::encode(&n).unwrap().key(customer))
            .unwrap();
    }
    bus.close();
    let report = pool.join();
    assert_eq!(report.acked, 300);
    let order = order.lock().unwrap();
    for (key, seqs) in order.iter() {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{key} out of order");
        assert_eq!(seqs.len(), 100);
    }
}

#[test]
#[cfg_attr(
    miri,
    ignore = "threads, sleeps and timing: hours under miri; run natively and under TSan"
)]
fn tickets_follow_a_message_through_the_pool() {
    use lanebus::pool::{TicketStatus, Tracked};
    let (tx, rx) = lanebus::bounded::<Tracked<u64>>(16);
    let gate = Arc::new(AtomicBool::new(false));
    let g = gate.clone();
    let pool = WorkerPool::builder()
        .workers(1)
        .track(Tracked::tracker_of)
        .retry(
            RetryPolicy::attempts(2)
                .backoff(Duration::from_millis(100), Duration::from_millis(100), 1.0)
                .jitter(0.0),
        )
        .build(rx, move |d: &Delivery<Tracked<u64>>| {
            match d.payload().value {
                // 1: held in the handler until the test opens the gate.
                1 => {
                    while !g.load(Ordering::SeqCst) {
                        thread::yield_now();
                    }
                    Outcome::Ack
                }
                // 2: fails once, then acked.
                2 if d.attempt() == 1 => Outcome::Retry,
                2 => Outcome::Ack,
                _ => Outcome::DeadLetter("three".into()),
            }
        });
    let dead = pool.dead_letters();
    let (one, t1) = Tracked::new(1);
    assert_eq!(t1.status(), TicketStatus::Queued);
    tx.send(one).unwrap();
    wait_until("in flight", || t1.status() == TicketStatus::InFlight);
    assert_eq!(t1.wait_timeout(Duration::from_millis(20)), None);
    gate.store(true, Ordering::SeqCst);
    assert_eq!(t1.wait(), TicketStatus::Acked);

    let (two, t2) = Tracked::new(2);
    tx.send(two).unwrap();
    // Back to queued while it waits to retry, then acked.
    wait_until("waiting to retry", || pool.stats().retried == 1);
    assert_eq!(t2.status(), TicketStatus::Queued);
    assert_eq!(
        futures_executor::block_on(t2.settled()),
        TicketStatus::Acked
    );

    let (three, t3) = Tracked::new(3);
    tx.send(three).unwrap();
    assert_eq!(
        t3.wait_timeout(Duration::from_secs(10)),
        Some(TicketStatus::DeadLettered)
    );
    // Republished from the dead letters, the ticket stays final.
    let letter = dead.recv().unwrap();
    assert_eq!(letter.payload.value, 3);
    drop(tx);
    pool.join();
}

#[test]
fn a_ticket_of_a_message_dropped_unsettled_reads_dropped() {
    use lanebus::pool::{TicketStatus, Tracked};
    let (tx, rx) = lanebus::bounded::<Tracked<u64>>(16);
    let spare_rx = rx.clone();
    let pool = WorkerPool::builder()
        .workers(0)
        .track(Tracked::tracker_of)
        .build(rx, |_: &Delivery<Tracked<u64>>| Outcome::Ack);
    let (message, ticket) = Tracked::new(1);
    tx.send(message).unwrap();
    // Never run: an immediate shutdown leaves it in the channel...
    let report = pool.shutdown(Shutdown::Immediate);
    assert_eq!(report.taken, 0);
    assert_eq!(ticket.status(), TicketStatus::Queued);
    // ...and the last receiver going drops it.
    drop(spare_rx);
    assert_eq!(ticket.wait(), TicketStatus::Dropped);
    drop(tx);
}

#[test]
fn a_tracked_bus_message_reports_its_dead_letter() {
    use lanebus::pool::TicketStatus;
    let bus = Bus::builder().build();
    let pool = WorkerPool::builder().workers(1).build(
        bus.subscribe("jobs").unwrap(),
        |_: &Delivery<lanebus::Envelope>| Outcome::DeadLetter("no".into()),
    );
    let (message, ticket) = Message::new(&b"x"[..]).tracked();
    assert_eq!(bus.publish("jobs", message).unwrap(), 1);
    assert_eq!(ticket.wait(), TicketStatus::DeadLettered);
    bus.close();
    assert_eq!(pool.join().dead_lettered, 1);
}

/// The bug class of RUSTSEC-2021-0093 (a steal racing the owner's pop hands
/// one task to two workers): big batches and many workers make thieves race
/// owners on every batch; each message must be handled exactly once.
#[test]
#[cfg_attr(
    miri,
    ignore = "threads, sleeps and timing: hours under miri; run natively and under TSan"
)]
fn steal_racing_the_owner_never_hands_a_message_out_twice() {
    let n = scale(50_000, 100);
    let mut stolen = 0;
    for round in 0..3 {
        let (tx, rx) = lanebus::bounded::<usize>(1024);
        let handled: Arc<Vec<AtomicUsize>> =
            Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect());
        let h = handled.clone();
        let pool = WorkerPool::builder().workers(4).batch_size(64).build(
            rx,
            move |d: &Delivery<usize>| {
                let before = h[*d.payload()].fetch_add(1, Ordering::SeqCst);
                assert_eq!(before, 0, "message {} handled twice", d.payload());
                if d.payload() % 97 == round {
                    thread::yield_now(); // let a thief in mid-batch
                }
                Outcome::Ack
            },
        );
        for i in 0..n {
            tx.send(i).unwrap();
        }
        drop(tx);
        wait_until("all handled", || pool.stats().acked == n as u64);
        stolen += pool.stats().workers.iter().map(|w| w.stolen).sum::<u64>();
        let report = pool.join();
        assert_eq!(report.acked, n as u64);
        assert!(handled.iter().all(|c| c.load(Ordering::SeqCst) == 1));
    }
    eprintln!("{stolen} messages stolen");
    assert!(stolen > 0, "the test must exercise stealing");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "threads, sleeps and timing: hours under miri; run natively and under TSan"
)]
fn pools_on_the_members_of_a_consumer_group_share_its_messages() {
    let bus = Bus::builder().capacity(128).build();
    let seen = Arc::new(Seen::default());
    let pools: Vec<_> = (0..2)
        .map(|_| {
            let s = seen.clone();
            WorkerPool::builder().workers(1).build(
                bus.group("jobs", "workers").unwrap(),
                move |d: &Delivery<lanebus::Envelope>| {
                    s.push(d.payload().decode::<u64>().unwrap());
                    Outcome::Ack
                },
            )
        })
        .collect();
    for i in 0..1_000u64 {
        bus.publish("jobs", Message::encode(&i).unwrap()).unwrap();
    }
    bus.close();
    let acked: u64 = pools.into_iter().map(|p| p.join().acked).sum();
    assert_eq!(acked, 1_000);
    assert_eq!(seen.sorted(), (0..1_000).collect::<Vec<_>>());
}

/// One hot key and a slow handler: the mailbox would grow without bound if
/// intake did not pause at the key backlog; the channel pushes back instead.
#[test]
#[cfg_attr(
    miri,
    ignore = "threads, sleeps and timing: hours under miri; run natively and under TSan"
)]
fn a_hot_key_cannot_grow_the_pool_without_bound() {
    let (tx, rx) = lanebus::bounded::<u64>(16);
    let last = Arc::new(AtomicUsize::new(0));
    let l = last.clone();
    let pool = WorkerPool::builder()
        .workers(2)
        .batch_size(4)
        .key_backlog(32)
        .key(|_: &u64| Some(1))
        .build(rx, move |d: &Delivery<u64>| {
            // In order, one at a time.
            assert_eq!(
                l.swap(*d.payload() as usize + 1, Ordering::SeqCst),
                *d.payload() as usize
            );
            thread::sleep(Duration::from_micros(20));
            Outcome::Ack
        });
    let n = scale(3_000, 50) as u64;
    let producer = thread::spawn(move || {
        for i in 0..n {
            tx.send(i).unwrap();
        }
    });
    let mut most = 0;
    while !producer.is_finished() {
        let stats = pool.stats();
        // One in a handler, the backlog, at most one batch over it.
        assert!(stats.waiting_for_keys <= 32 + 4, "{stats:?}");
        assert!(stats.in_pool <= 32 + 4 + 1, "{stats:?}");
        most = most.max(stats.waiting_for_keys);
        thread::sleep(Duration::from_millis(1));
    }
    producer.join().unwrap();
    assert!(most >= 16, "the backlog filled ({most})");
    assert_eq!(pool.join().acked, n);
}

/// A key's next message is the oldest of its highest lane.
#[test]
#[cfg_attr(
    miri,
    ignore = "threads, sleeps and timing: hours under miri; run natively and under TSan"
)]
fn a_busy_keys_urgent_message_goes_before_its_normal_ones() {
    let (tx, rx) = lanebus::bounded::<(u64, &'static str)>(16);
    let gate = Arc::new(AtomicBool::new(false));
    let order = Arc::new(Mutex::new(Vec::new()));
    let (g, o) = (gate.clone(), order.clone());
    let pool = WorkerPool::builder()
        .workers(2)
        .key(|&(key, _): &(u64, &str)| Some(key))
        .build(rx, move |d: &Delivery<(u64, &'static str)>| {
            while !g.load(Ordering::SeqCst) {
                thread::yield_now();
            }
            o.lock().unwrap().push(d.payload().1);
            Outcome::Ack
        });
    tx.send((7, "first")).unwrap();
    wait_until("first in flight", || pool.stats().taken == 1);
    tx.send((7, "normal")).unwrap();
    wait_until("normal waits", || pool.stats().waiting_for_keys == 1);
    tx.send_with(Priority::Urgent, (7, "urgent")).unwrap();
    wait_until("urgent waits", || pool.stats().waiting_for_keys == 2);
    gate.store(true, Ordering::SeqCst);
    drop(tx);
    pool.join();
    assert_eq!(*order.lock().unwrap(), ["first", "urgent", "normal"]);
}
