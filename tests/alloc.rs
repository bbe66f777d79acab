//! Allocations per message, counted by a global allocator: the typed
//! channel (with and without a budget) allocates nothing per message, and a
//! publish to 8 subscribers allocates the payload once, and no more than a
//! publish to 1 subscriber.
//!
//! The counting allocator counts per thread, and everything measured runs
//! on the test's thread; the binary still has one test, so that nothing
//! else of ours runs beside it.

mod common;

use common::{allocated_by, ThreadCountingAlloc};
use lanebus::{Bus, ChannelBuilder, MemoryBudget, Message, Priority};

#[global_allocator]
static GLOBAL: ThreadCountingAlloc = ThreadCountingAlloc;

/// (allocations + reallocations, bytes allocated) by this thread while
/// running `f`.
fn count(f: impl FnOnce()) -> (usize, usize) {
    let ((), allocations, bytes) = allocated_by(f);
    (allocations, bytes)
}

/// One publish of a 4 KiB payload through `subscribers` subscriptions,
/// received and dropped by each. Returns (allocations, bytes).
fn publish_once(subscribers: usize) -> (usize, usize) {
    let budget = MemoryBudget::new(1 << 20);
    let bus = Bus::builder().capacity(4).budget(budget.clone()).build();
    let subs: Vec<_> = (0..subscribers)
        .map(|_| bus.subscribe("prices").unwrap())
        .collect();
    let publisher = bus.publisher("prices").unwrap();
    let payload = vec![7u8; 4096];
    // Warm up: the publisher's id block and subscriber list.
    publisher
        .publish(Message::encode(&payload).unwrap())
        .unwrap();
    for s in &subs {
        s.recv().unwrap();
    }
    let measured = count(|| {
        let reached = publisher
            .publish(Message::encode(&payload).unwrap().priority(Priority::High))
            .unwrap();
        assert_eq!(reached, subscribers);
        for s in &subs {
            let envelope = s.recv().unwrap();
            assert!(envelope.payload().len() > 4096);
        }
    });
    assert_eq!(budget.in_use(), 0);
    measured
}

#[test]
fn allocations_per_message() {
    // The typed channel: nothing per message once the ring exists.
    // Smaller under miri, where a send or receive takes ~10 ms: 4 lanes of
    // 64 and 200 messages a round there.
    let (capacity, per_round, rounds) = if cfg!(miri) {
        (64, 200, 2)
    } else {
        (1024, 1000, 100)
    };
    let (tx, rx) = lanebus::bounded::<u64>(capacity);
    let (allocs, _) = count(|| {
        for round in 0..rounds {
            for i in 0..per_round {
                tx.send_with(Priority::ALL[(i % 4) as usize], round * per_round + i)
                    .unwrap();
            }
            for _ in 0..per_round {
                rx.recv().unwrap();
            }
        }
    });
    assert_eq!(allocs, 0, "typed channel allocated per message");

    // The same under a budget.
    let budget = MemoryBudget::new(1 << 20);
    let (tx, rx) = ChannelBuilder::new().build_budgeted::<u64>(budget.clone());
    let (allocs, _) = count(|| {
        for i in 0..if cfg!(miri) { 200 } else { 10_000u64 } {
            tx.send(i).unwrap();
            assert_eq!(rx.recv().unwrap().into_inner(), i);
        }
    });
    assert_eq!(allocs, 0, "budgeted channel allocated per message");
    assert_eq!(budget.in_use(), 0);

    // Envelopes: the payload once, whatever the fan-out.
    let (one_allocs, one_bytes) = publish_once(1);
    let (eight_allocs, eight_bytes) = publish_once(8);
    eprintln!(
        "publish+receive of a 4 KiB payload: 1 subscriber {one_allocs} allocations / \
         {one_bytes} bytes, 8 subscribers {eight_allocs} / {eight_bytes}"
    );
    assert_eq!(
        eight_allocs, one_allocs,
        "fan-out to 8 allocated more than to 1 ({eight_allocs} vs {one_allocs})"
    );
    assert!(
        eight_bytes < 2 * 4096,
        "the 4 KiB payload was allocated more than once ({eight_bytes} bytes)"
    );
    assert_eq!(eight_bytes, one_bytes);
}
