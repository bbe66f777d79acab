//! Regressions found by the `pool_ops` fuzz target, and by miri.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Delivery, Outcome, RetryPolicy, Shutdown, WorkerPool};

/// A message `(key, id)`; id 0 is parked for an hour, the others acked.
type Keyed = (Option<u64>, u32);

fn park_first(d: &Delivery<Keyed>) -> Outcome {
    if d.payload().1 == 0 {
        Outcome::RetryAfter(Duration::from_secs(3600))
    } else {
        Outcome::Ack
    }
}

/// A caught handler panic's payload is dropped, not leaked.
#[test]
fn handler_panic_payload_is_dropped() {
    struct Token(Arc<AtomicUsize>);
    impl Drop for Token {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let token_drops = drops.clone();
    let (tx, rx) = crate::bounded::<u32>(4);
    let mut pool = WorkerPool::builder()
        .workers(0)
        .retry(RetryPolicy::never())
        .build(rx, move |_: &Delivery<u32>| -> Outcome {
            std::panic::panic_any(Token(token_drops.clone()))
        });
    tx.send(1).unwrap();
    assert_eq!(pool.run_pending(), 1);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    let report = pool.shutdown(Shutdown::Immediate);
    assert_eq!((report.panics, report.dead_lettered), (1, 1));
}

/// A batch that all goes to the mailbox of a key waiting on a retry does
/// not end `run_pending` while the source holds more.
#[test]
fn run_pending_looks_past_a_busy_key() {
    let (tx, rx) = crate::bounded::<Keyed>(8);
    let mut pool = WorkerPool::builder()
        .workers(0)
        .batch_size(1)
        .key(|m: &Keyed| m.0)
        .build(rx, park_first);
    tx.send((Some(7), 0)).unwrap();
    assert_eq!(pool.run_pending(), 1);
    tx.send((Some(7), 1)).unwrap();
    tx.send((None, 2)).unwrap();
    assert_eq!(pool.run_pending(), 1, "the unkeyed message is ready");
    let stats = pool.stats();
    assert_eq!((stats.source_depth, stats.in_pool, stats.acked), (0, 2, 1));
    let report = pool.shutdown(Shutdown::Immediate);
    assert_eq!(report.unprocessed.len(), 2);
    assert!(report.is_consistent());
}

/// The same with worker threads: a worker whose last look before parking
/// took only messages for a busy key's mailbox must not park with more in
/// the source.
#[test]
fn worker_does_not_park_past_a_busy_key() {
    let (tx, rx) = crate::bounded::<Keyed>(256);
    let done = Arc::new(AtomicBool::new(false));
    let handled = done.clone();
    let pool = WorkerPool::builder()
        .workers(1)
        .batch_size(1)
        .key(|m: &Keyed| m.0)
        .build(rx, move |d: &Delivery<Keyed>| {
            if d.payload().1 == 999 {
                handled.store(true, Ordering::SeqCst);
            }
            park_first(d)
        });
    // A stranded message waits for ever, so a long limit still catches
    // the bug; 5 s was too short under miri beside another job (it takes
    // 8 s there on its own).
    const PATIENCE: Duration = Duration::from_secs(120);
    tx.send((Some(7), 0)).unwrap();
    let start = Instant::now();
    while pool.stats().processed == 0 && start.elapsed() < PATIENCE {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut batch: Vec<Keyed> = (1..=100).map(|i| (Some(7), i)).collect();
    batch.push((None, 999));
    tx.send_batch(&mut batch).unwrap();
    let start = Instant::now();
    while !done.load(Ordering::SeqCst) && start.elapsed() < PATIENCE {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        done.load(Ordering::SeqCst),
        "the unkeyed message was stranded"
    );
    let report = pool.shutdown(Shutdown::Immediate);
    assert_eq!(report.unprocessed.len(), 101);
    assert!(report.is_consistent());
}

/// `Drain` does not wait for room in a full dead-letter queue that nobody
/// reads: once shutdown starts the letter is reported unsent, and the pool
/// finishes long before its (generous, also under miri) deadline.
#[test]
fn drain_deadline_holds_with_a_full_dead_letter_queue() {
    let (tx, rx) = crate::bounded::<u32>(8);
    let pool = WorkerPool::builder()
        .workers(0)
        .dead_letter_capacity(1)
        .build(rx, |_: &Delivery<u32>| {
            Outcome::DeadLetter("refused".into())
        });
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    let start = Instant::now();
    let report = pool.shutdown(Shutdown::Drain {
        deadline: start + Duration::from_secs(60),
    });
    // Finished once the closed source was empty, not at the deadline.
    assert!(start.elapsed() < Duration::from_secs(30));
    assert!(!report.timed_out);
    assert_eq!(report.dead_lettered, 2);
    assert_eq!(report.dead_letters_unsent.len(), 1);
    assert!(report.is_consistent());
}

/// A manual pool whose dead-letter queue is full does not wait for room
/// (its own thread is the only reader): the letter goes to the report.
#[test]
fn manual_pool_never_waits_for_dead_letter_room() {
    let (tx, rx) = crate::bounded::<u32>(8);
    let mut pool = WorkerPool::builder()
        .workers(0)
        .dead_letter_capacity(1)
        .build(rx, |_: &Delivery<u32>| Outcome::DeadLetter("no".into()));
    let dead = pool.dead_letters();
    for i in 0..3 {
        tx.send(i).unwrap();
    }
    assert_eq!(pool.run_pending(), 3);
    assert_eq!(dead.try_recv().unwrap().payload, 0);
    let report = pool.shutdown(Shutdown::Immediate);
    let unsent: Vec<u32> = report
        .dead_letters_unsent
        .iter()
        .map(|l| l.payload)
        .collect();
    assert_eq!(unsent, [1, 2]);
    assert_eq!(report.dead_lettered, 3);
}

/// A half-open probe that lands behind a busy key does not hold the
/// breaker half-open: another probe goes through.
#[test]
fn a_probe_behind_a_busy_key_lets_another_probe_through() {
    use super::{BreakerState, CircuitBreaker};
    let (tx, rx) = crate::bounded::<Keyed>(16);
    let mut pool = WorkerPool::builder()
        .workers(0)
        .batch_size(1)
        .retry(RetryPolicy::attempts(2).backoff(
            Duration::from_secs(3600),
            Duration::from_secs(3600),
            1.0,
        ))
        .key(|m: &Keyed| m.0)
        .circuit_breaker(CircuitBreaker {
            window: 1,
            min_attempts: 1,
            failure_ratio: 1.0,
            cool_down: Duration::ZERO,
        })
        .build(rx, park_first);
    // Message 0 fails (parked for an hour): the breaker opens.
    tx.send((Some(7), 0)).unwrap();
    assert_eq!(pool.run_pending(), 1);
    // The first probe has key 7 (busy): it waits; the next probe (no key)
    // is acked and closes the breaker.
    tx.send((Some(7), 1)).unwrap();
    tx.send((None, 2)).unwrap();
    pool.run_pending();
    let stats = pool.stats();
    assert_eq!(stats.breaker, BreakerState::Closed);
    assert_eq!((stats.acked, stats.waiting_for_keys), (1, 1));
    drop(tx);
    let report = pool.shutdown(Shutdown::Immediate);
    assert!(report.is_consistent());
}

/// A deadline that passes on an idle pool is not a time-out.
#[test]
fn an_idle_pool_does_not_time_out() {
    let (_tx, rx) = crate::bounded::<u32>(8);
    let pool = WorkerPool::builder()
        .workers(1)
        .build(rx, |_: &Delivery<u32>| Outcome::Ack);
    let report = pool.shutdown(Shutdown::Graceful {
        deadline: Instant::now(),
    });
    assert!(!report.timed_out);
}

/// A worker that looks while a send is still being written (its slot
/// claimed, not yet written) must not park. That sender's wake-up may have
/// read the waiter list before the worker registered (the look saw the
/// claim, so the channel's handshake does not promise a wake-up), and then
/// nothing wakes the worker until the next send. Here the write finishes
/// with no wake-up at all, as it does when that race is lost. Found by
/// miri (`worker_does_not_park_past_a_busy_key` stranded its message once,
/// behind a batch send still being written); before the fix the worker
/// parked and this test failed after its patience ran out.
#[test]
fn worker_does_not_park_on_a_send_still_being_written() {
    use crate::Priority;
    let (tx, rx) = crate::bounded::<u32>(8);
    let chan = rx.chan.clone();
    let seen = Arc::new(AtomicUsize::new(0));
    let handled = seen.clone();
    let pool = WorkerPool::builder()
        .workers(1)
        .build(rx, move |d: &Delivery<u32>| {
            handled.fetch_or(1 << *d.payload(), Ordering::SeqCst);
            Outcome::Ack
        });
    const PATIENCE: Duration = Duration::from_secs(120);
    let wait_for = |bit: u32| {
        let start = Instant::now();
        while seen.load(Ordering::SeqCst) & (1 << bit) == 0 && start.elapsed() < PATIENCE {
            std::thread::sleep(Duration::from_millis(1));
        }
        seen.load(Ordering::SeqCst) & (1 << bit) != 0
    };
    // A send into the Normal lane, preempted after claiming its slot.
    let normal = chan.lane_ring(Priority::Normal.index());
    let pos = normal.claim_without_writing();
    // Wake the worker with a message it can take; its next look finds
    // nothing ready but the claimed slot.
    tx.send_with(Priority::Low, 1).unwrap();
    assert!(wait_for(1), "the Low message was not handled");
    std::thread::sleep(Duration::from_millis(20));
    // The preempted send finishes; its wake-up read the list too early.
    normal.finish_write(pos, 2);
    assert!(
        wait_for(2),
        "the message behind the unfinished write was stranded"
    );
    let report = pool.shutdown(Shutdown::Immediate);
    assert!(report.is_consistent());
}
