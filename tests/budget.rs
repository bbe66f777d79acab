//! The memory budget: admission by watermark and priority, waiting and
//! waking, permits released exactly once, the process memory signal, and the
//! typed channel under a budget.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use common::{scale, wait_until, CountingWaker, Rng, Tracker};
use futures_executor::block_on;
use lanebus::budget::{CgroupMemory, MemoryReading, MemorySource, ProcessRss};
use lanebus::{AcquireError, ChannelBuilder, MemoryBudget, Priority, PublishError, Weigh};

fn let_them_block() {
    thread::sleep(Duration::from_millis(if cfg!(miri) { 5 } else { 50 }));
}

#[test]
fn watermark_admits_high_lanes_only() {
    let budget = MemoryBudget::builder(100).high_watermark(50).build();
    let _a = budget.try_acquire(Priority::Low, 50).unwrap();
    for p in [Priority::Normal, Priority::Low] {
        assert_eq!(
            budget.try_acquire(p, 1).unwrap_err(),
            AcquireError::OverBudget
        );
    }
    let _b = budget.try_acquire(Priority::High, 30).unwrap();
    let _c = budget.try_acquire(Priority::Urgent, 20).unwrap();
    assert_eq!(budget.in_use(), 100);
    // At max_bytes everything waits.
    assert_eq!(
        budget.try_acquire(Priority::Urgent, 1).unwrap_err(),
        AcquireError::OverBudget
    );
    // Zero bytes take nothing and always pass.
    assert_eq!(budget.try_acquire(Priority::Low, 0).unwrap().bytes(), 0);
    let stats = budget.stats();
    assert_eq!(stats.rejections, [1, 0, 1, 1]);
    assert_eq!(stats.peak, 100);
}

#[test]
fn pressure_priority_is_configurable() {
    let budget = MemoryBudget::builder(100)
        .high_watermark(10)
        .pressure_priority(Priority::Urgent)
        .build();
    let _a = budget.try_acquire(Priority::Normal, 10).unwrap();
    assert!(budget.try_acquire(Priority::High, 1).is_err());
    assert!(budget.try_acquire(Priority::Urgent, 90).is_ok());
}

#[test]
fn too_large_fails_at_once_in_every_form() {
    let budget = MemoryBudget::new(100);
    let _hold = budget.try_acquire(Priority::Urgent, 100).unwrap();
    let start = Instant::now();
    assert_eq!(
        budget.acquire(Priority::Urgent, 101).unwrap_err(),
        AcquireError::TooLarge
    );
    assert_eq!(
        budget
            .acquire_timeout(Priority::Low, 1000, Duration::from_secs(60))
            .unwrap_err(),
        AcquireError::TooLarge
    );
    assert_eq!(
        block_on(budget.acquire_async(Priority::Low, 101)).unwrap_err(),
        AcquireError::TooLarge
    );
    assert!(start.elapsed() < Duration::from_secs(30));
    assert_eq!(budget.stats().too_large, 3);
}

#[test]
fn blocked_acquire_wakes_on_release() {
    let budget = MemoryBudget::builder(100).high_watermark(100).build();
    let hold = budget.acquire(Priority::Normal, 80).unwrap();
    let waiter = {
        let budget = budget.clone();
        thread::spawn(move || budget.acquire(Priority::Normal, 40).map(|p| p.bytes()))
    };
    wait_until("the acquire waits", || {
        budget.stats().waits[Priority::Normal.index()] == 1
    });
    assert_eq!(budget.in_use(), 80, "the waiter must not get in yet");
    drop(hold);
    assert_eq!(waiter.join().unwrap(), Ok(40));
    assert_eq!(budget.stats().waits[Priority::Normal.index()], 1);
    assert_eq!(budget.in_use(), 0);
}

#[test]
fn low_lane_waits_above_watermark_while_urgent_passes() {
    let budget = MemoryBudget::builder(100).high_watermark(50).build();
    let hold = budget.acquire(Priority::Normal, 50).unwrap();
    let low = {
        let budget = budget.clone();
        thread::spawn(move || budget.acquire(Priority::Low, 10).map(|p| p.bytes()))
    };
    let_them_block();
    // Urgent is not held up by the waiting Low acquire.
    let urgent = budget
        .acquire_timeout(Priority::Urgent, 40, Duration::from_secs(10))
        .unwrap();
    drop(urgent);
    assert!(!low.is_finished());
    drop(hold);
    assert_eq!(low.join().unwrap(), Ok(10));
}

#[test]
fn acquire_timeout_times_out_and_counts() {
    let budget = MemoryBudget::new(10);
    let _hold = budget.acquire(Priority::High, 10).unwrap();
    let start = Instant::now();
    assert_eq!(
        budget
            .acquire_timeout(Priority::High, 1, Duration::from_millis(20))
            .unwrap_err(),
        AcquireError::Timeout
    );
    assert!(start.elapsed() >= Duration::from_millis(20));
    let stats = budget.stats();
    assert_eq!(stats.rejections[Priority::High.index()], 1);
    assert_eq!(stats.waits[Priority::High.index()], 1);
}

#[test]
fn async_acquire_wakes_on_release_and_cancels_cleanly() {
    let budget = MemoryBudget::new(10);
    let hold = budget.try_acquire(Priority::Normal, 8).unwrap();
    let (counter, waker) = CountingWaker::new();
    let mut cx = Context::from_waker(&waker);

    // A future that is dropped while waiting holds nothing.
    let mut dropped = budget.acquire_async(Priority::Normal, 5);
    assert!(Pin::new(&mut dropped).poll(&mut cx).is_pending());
    drop(dropped);

    let mut fut = budget.acquire_async(Priority::Normal, 5);
    assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
    let before = counter.count();
    drop(hold);
    assert!(counter.count() > before, "the release woke the task");
    match Pin::new(&mut fut).poll(&mut cx) {
        Poll::Ready(Ok(permit)) => assert_eq!(permit.bytes(), 5),
        other => panic!("expected a permit, got {other:?}"),
    }
    assert_eq!(budget.in_use(), 0);
}

#[test]
fn concurrent_permits_never_exceed_the_budget_and_all_come_back() {
    let budget = MemoryBudget::builder(1000).high_watermark(600).build();
    let threads = 4;
    let rounds = scale(5_000, 100);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let budget = budget.clone();
            thread::spawn(move || {
                let mut rng = Rng::new(t as u64 + 1);
                let mut held = Vec::new();
                for _ in 0..rounds {
                    let priority = Priority::ALL[rng.below(4)];
                    let bytes = 1 + rng.below(200);
                    if rng.below(3) == 0 {
                        held.clear();
                    }
                    match rng.below(3) {
                        0 => {
                            if let Ok(p) = budget.try_acquire(priority, bytes) {
                                held.push(p);
                            }
                        }
                        1 => {
                            if let Ok(p) =
                                budget.acquire_timeout(priority, bytes, Duration::from_micros(50))
                            {
                                held.push(p);
                            }
                        }
                        _ => {
                            // Blocking: release ours first so the four
                            // threads cannot all wait on each other.
                            held.clear();
                            held.push(budget.acquire(priority, bytes).unwrap());
                        }
                    }
                    assert!(budget.in_use() <= 1000);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let stats = budget.stats();
    assert_eq!(stats.in_use, 0, "every permit was released exactly once");
    assert!(stats.peak <= 1000 && stats.peak > 0);
}

/// A memory source the test controls.
#[derive(Clone)]
struct FakeSource(Arc<Mutex<Option<MemoryReading>>>);

impl FakeSource {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(None)))
    }
    fn set(&self, current: u64, max: u64) {
        *self.0.lock().unwrap() = Some(MemoryReading { current, max });
    }
}

impl MemorySource for FakeSource {
    fn sample(&mut self) -> Option<MemoryReading> {
        *self.0.lock().unwrap()
    }
}

#[test]
fn memory_source_tightens_and_loosens_the_limit() {
    let source = FakeSource::new();
    let budget = MemoryBudget::builder(1000)
        .high_watermark(1000)
        .memory_source(source.clone(), Duration::from_secs(3600))
        .reserve_percent(10)
        .build();
    assert_eq!(budget.refresh(), None, "no reading yet: limit unchanged");
    assert_eq!(budget.limit(), 1000);

    // Process at 9_500 of 10_000 with a 10% reserve: no headroom at all.
    source.set(9_500, 10_000);
    budget.refresh().unwrap();
    assert_eq!(budget.limit(), 0);
    assert!(budget.try_acquire(Priority::Urgent, 1).is_err());

    // A waiter is woken when the pressure goes away.
    let waiter = {
        let budget = budget.clone();
        thread::spawn(move || budget.acquire(Priority::Urgent, 300).map(|p| p.bytes()))
    };
    let_them_block();
    source.set(8_600, 10_000); // 400 bytes of headroom above the reserve
    budget.refresh().unwrap();
    assert_eq!(budget.limit(), 400);
    assert_eq!(waiter.join().unwrap(), Ok(300));

    source.set(0, 10_000);
    budget.refresh().unwrap();
    assert_eq!(budget.limit(), 1000, "never above max_bytes");
    assert_eq!(budget.stats().limit, 1000);
}

#[test]
fn sampler_thread_refreshes_on_its_interval() {
    let source = FakeSource::new();
    let budget = MemoryBudget::builder(1000)
        .memory_source(source.clone(), Duration::from_millis(5))
        .build();
    source.set(10_000, 10_000);
    let deadline = Instant::now() + Duration::from_secs(20);
    while budget.limit() != 0 {
        assert!(Instant::now() < deadline, "the sampler never ran");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn cgroup_source_reads_files_and_ignores_unlimited() {
    let dir = std::env::temp_dir().join(format!("lanebus-cgroup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("memory.current"), "1234\n").unwrap();
    std::fs::write(dir.join("memory.max"), "4096\n").unwrap();
    let mut source = CgroupMemory::at(&dir);
    assert_eq!(
        source.sample(),
        Some(MemoryReading {
            current: 1234,
            max: 4096
        })
    );
    std::fs::write(dir.join("memory.max"), "max\n").unwrap();
    assert_eq!(source.sample(), None);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[cfg_attr(miri, ignore = "miri cannot read /proc")]
fn process_rss_reads_proc() {
    let reading = ProcessRss::new(1 << 40).sample().expect("VmRSS on Linux");
    assert!(reading.current > 0);
    assert_eq!(reading.max, 1 << 40);
}

// ----- the typed channel under a budget -----

#[test]
fn budgeted_channel_hands_values_back_and_releases_on_drop() {
    let budget = MemoryBudget::builder(64).high_watermark(32).build();
    let (tx, rx) = ChannelBuilder::new()
        .capacity(2)
        .build_budgeted::<[u8; 16]>(budget.clone());
    tx.try_send([1; 16]).unwrap();
    tx.try_send([2; 16]).unwrap();
    match tx.try_send([3; 16]) {
        Err(PublishError::OverBudget(v)) => assert_eq!(v, [3; 16]),
        other => panic!("expected OverBudget, got {other:?}"),
    }
    // The Normal lane is full (capacity 2): Full hands it back, no bytes held.
    tx.try_send_with(Priority::High, [4; 16]).unwrap();
    tx.try_send_with(Priority::High, [5; 16]).unwrap();
    assert!(matches!(
        tx.try_send_with(Priority::High, [6; 16]),
        Err(PublishError::OverBudget(_))
    ));
    assert_eq!(budget.in_use(), 64);
    let first = rx.recv().unwrap();
    assert_eq!(first.permit().bytes(), 16);
    assert_eq!(budget.in_use(), 64, "held until the receiver is done");
    let value = first.into_inner();
    assert_eq!(value, [4; 16]);
    assert_eq!(budget.in_use(), 48);
    tx.try_send_with(Priority::Urgent, [7; 16]).unwrap();
    assert_eq!(budget.in_use(), 64);
    drop(rx); // queued messages dropped: their bytes come back
    assert_eq!(budget.in_use(), 0);
    assert!(matches!(tx.try_send([9; 16]), Err(PublishError::Closed(_))));
}

struct Blob(Vec<u8>);
impl Weigh for Blob {
    fn weight(&self) -> usize {
        self.0.len()
    }
}

#[test]
fn budgeted_channel_too_large_and_blocking_send() {
    let budget = MemoryBudget::builder(100).high_watermark(100).build();
    let (tx, rx) = ChannelBuilder::new().build_budgeted::<Blob>(budget.clone());
    match tx.send(Blob(vec![0; 101])) {
        Err(PublishError::TooLarge(b)) => assert_eq!(b.0.len(), 101),
        other => panic!(
            "expected TooLarge, got {:?}",
            other.map_err(|e| e.to_string())
        ),
    }
    tx.send(Blob(vec![1; 70])).unwrap();
    let sender = {
        let tx = tx.clone();
        thread::spawn(move || tx.send(Blob(vec![2; 70])).is_ok())
    };
    let_them_block();
    assert!(!sender.is_finished(), "waits for the budget");
    let first = rx.recv().unwrap();
    assert_eq!(first.0[0], 1);
    drop(first);
    assert!(sender.join().unwrap());
    assert_eq!(rx.recv().unwrap().0[0], 2);
    assert!(matches!(
        tx.send_timeout_with(Priority::Low, Blob(vec![3; 10]), Duration::from_millis(1)),
        Ok(())
    ));
    assert_eq!(budget.in_use(), 10);
}

#[test]
fn budgeted_channel_timeout_and_async() {
    let budget = MemoryBudget::new(10);
    let (tx, rx) = ChannelBuilder::new().build_budgeted::<u64>(budget.clone());
    block_on(tx.send_with_async(Priority::High, 1)).unwrap();
    assert!(matches!(
        tx.send_timeout_with(Priority::High, 2, Duration::from_millis(10)),
        Err(PublishError::Timeout(2))
    ));
    let waiting = {
        let tx = tx.clone();
        thread::spawn(move || block_on(tx.send_with_async(Priority::High, 3)).is_ok())
    };
    let_them_block();
    assert_eq!(*rx.recv().unwrap(), 1);
    assert!(waiting.join().unwrap());
    assert_eq!(rx.recv().unwrap().into_inner(), 3);
    assert_eq!(budget.in_use(), 0);
}

#[test]
fn budgeted_channel_drops_each_value_once() {
    let tracker = Tracker::new(50);
    let budget = MemoryBudget::new(1 << 20);
    {
        let (tx, rx) = ChannelBuilder::new()
            .capacity(64)
            .build_budgeted::<common::Tracked>(budget.clone());
        for id in 0..50 {
            tx.send_with(Priority::ALL[id % 4], tracker.item(id))
                .unwrap();
        }
        for _ in 0..20 {
            drop(rx.recv().unwrap());
        }
    }
    tracker.assert_all_dropped_once();
    assert_eq!(budget.in_use(), 0);
}

impl Weigh for common::Tracked {}
