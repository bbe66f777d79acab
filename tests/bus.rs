//! The bus: fan-out, consumer groups, patterns, slow-subscriber policies,
//! the budget (one charge per message), close, async, and exactly-once
//! delivery per subscriber under concurrency.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::{scale, wait_until};
use futures_executor::block_on;
use futures_util::StreamExt;
use lanebus::{
    Bus, Envelope, MemoryBudget, Message, Priority, PublishError, RecvTimeoutError, TopicError,
    TryRecvError,
};
use lanebus::{SlowSubscriber, SubscribeOptions};

fn let_them_block() {
    thread::sleep(Duration::from_millis(if cfg!(miri) { 5 } else { 50 }));
}

fn msg(n: u32) -> Message {
    Message::encode(&n).unwrap()
}

fn value(e: &Envelope) -> u32 {
    e.decode().unwrap()
}

#[test]
fn fan_out_shares_one_payload() {
    let bus = Bus::new();
    let subs: Vec<_> = (0..3).map(|_| bus.subscribe("prices").unwrap()).collect();
    let payload = vec![7u8; 4096];
    let n = bus
        .publish(
            "prices",
            Message::new(payload).priority(Priority::High).key("eur"),
        )
        .unwrap();
    assert_eq!(n, 3);
    let got: Vec<Envelope> = subs.iter().map(|s| s.recv().unwrap()).collect();
    let ptr = got[0].payload().as_ptr();
    for e in &got {
        assert_eq!(e.payload().as_ptr(), ptr, "fan-out copied the payload");
        assert_eq!(e.payload().len(), 4096);
        assert_eq!(
            (e.topic(), e.priority(), e.key()),
            ("prices", Priority::High, Some("eur"))
        );
        assert_eq!(e.id(), got[0].id());
        assert!(e.enqueued_at() > 0);
    }
    for s in &subs {
        assert_eq!(s.try_recv().unwrap_err(), TryRecvError::Empty);
        assert_eq!(s.delivered(), 1);
    }
}

#[test]
fn groups_compete_and_every_group_gets_everything() {
    let bus = Bus::new();
    let a1 = bus.group("jobs", "a").unwrap();
    let a2 = bus.group("jobs", "a").unwrap();
    let b1 = bus.group("jobs", "b").unwrap();
    assert_eq!(a1.group(), Some("a"));
    let n = 100;
    for i in 0..n {
        assert_eq!(
            bus.publish("jobs", msg(i)).unwrap(),
            2,
            "one queue per group"
        );
    }
    let mut a_seen = Vec::new();
    for (k, sub) in [&a1, &a2].into_iter().cycle().enumerate().take(n as usize) {
        let _ = k;
        a_seen.push(value(&sub.recv().unwrap()));
    }
    a_seen.sort();
    assert_eq!(a_seen, (0..n).collect::<Vec<_>>());
    assert!(a1.try_recv().is_err() && a2.try_recv().is_err());
    let b_seen: Vec<u32> = (0..n).map(|_| value(&b1.recv().unwrap())).collect();
    assert_eq!(b_seen, (0..n).collect::<Vec<_>>(), "FIFO within a lane");
}

#[test]
fn group_lives_while_it_has_members() {
    let bus = Bus::new();
    let first = bus.group("jobs", "g").unwrap();
    bus.publish("jobs", msg(1)).unwrap();
    let second = bus.group("jobs", "g").unwrap();
    drop(first);
    // The queue survives with its message.
    assert_eq!(value(&second.recv().unwrap()), 1);
    drop(second);
    assert_eq!(bus.stats().subscriptions, 0);
    let fresh = bus.group("jobs", "g").unwrap();
    assert_eq!(fresh.try_recv().unwrap_err(), TryRecvError::Empty);
}

#[test]
fn patterns_match_existing_and_future_topics() {
    let bus = Bus::new();
    bus.publish("orders.eu", msg(0)).unwrap(); // creates the topic, unrouted
    let orders = bus.subscribe("orders.*").unwrap();
    let all = bus.subscribe("*").unwrap();
    let exact = bus.subscribe("orders").unwrap();
    assert_eq!(bus.publish("orders.eu", msg(1)).unwrap(), 2);
    assert_eq!(bus.publish("orders.us.paid", msg(2)).unwrap(), 2);
    assert_eq!(bus.publish("orders", msg(3)).unwrap(), 2);
    assert_eq!(bus.publish("payments", msg(4)).unwrap(), 1);
    let o: Vec<u32> = orders.try_iter_values();
    assert_eq!(o, [1, 2]);
    assert_eq!(all.try_iter_values(), [1, 2, 3, 4]);
    assert_eq!(exact.try_iter_values(), [3]);
    assert_eq!(orders.pattern(), "orders.*");
    let stats = bus.stats();
    assert_eq!((stats.published, stats.unrouted), (5, 1));
}

trait Drain {
    fn try_iter_values(&self) -> Vec<u32>;
}

impl Drain for lanebus::Subscription {
    fn try_iter_values(&self) -> Vec<u32> {
        std::iter::from_fn(|| self.try_recv().ok())
            .map(|e| value(&e))
            .collect()
    }
}

#[test]
fn invalid_names_are_errors_and_hand_the_message_back() {
    let bus = Bus::new();
    assert_eq!(bus.subscribe("").unwrap_err(), TopicError::Empty);
    assert_eq!(bus.subscribe("a..b").unwrap_err(), TopicError::EmptySegment);
    assert_eq!(
        bus.publisher("a b").unwrap_err(),
        TopicError::InvalidChar(' ')
    );
    assert!(matches!(
        bus.group("x.*.y", "g"),
        Err(TopicError::InvalidChar('*'))
    ));
    match bus.publish("bad topic", Message::new(&b"keep me"[..])) {
        Err(PublishError::InvalidTopic(e)) => assert_eq!(e.payload().as_ref(), b"keep me"),
        other => panic!("expected the message back, got {other:?}"),
    }
}

#[test]
fn block_policy_is_all_or_nothing() {
    let bus = Bus::new();
    let fast = bus.subscribe("t").unwrap();
    let slow = bus
        .subscribe_with("t", SubscribeOptions::default().capacity(2))
        .unwrap();
    bus.publish("t", msg(1)).unwrap();
    bus.publish("t", msg(2)).unwrap();
    // `slow` is full: try_publish reaches nobody and hands the message back.
    match bus.try_publish("t", msg(3)) {
        Err(PublishError::Full(e)) => assert_eq!(value(&e), 3),
        other => panic!("expected Full, got {other:?}"),
    }
    match bus.publish_timeout("t", msg(4), Duration::from_millis(10)) {
        Err(PublishError::Timeout(e)) => assert_eq!(value(&e), 4),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert_eq!(fast.len(), 2, "the fast subscriber got neither");
    // A blocking publish waits for the slow subscriber.
    let publisher = {
        let bus = bus.clone();
        thread::spawn(move || bus.publish("t", msg(5)).unwrap())
    };
    let_them_block();
    assert!(!publisher.is_finished());
    assert_eq!(value(&slow.recv().unwrap()), 1);
    assert_eq!(publisher.join().unwrap(), 2);
    assert_eq!(fast.try_iter_values(), [1, 2, 5]);
    assert_eq!(slow.try_iter_values(), [2, 5]);
}

#[test]
fn drop_newest_policy_skips_and_counts() {
    let bus = Bus::builder()
        .capacity(2)
        .slow_subscriber(SlowSubscriber::DropNewest)
        .build();
    let slow = bus.subscribe("t").unwrap();
    let fast = bus
        .subscribe_with(
            "t",
            SubscribeOptions::default()
                .capacity(100)
                .slow_subscriber(SlowSubscriber::Block),
        )
        .unwrap();
    for i in 0..10 {
        let reached = bus.try_publish("t", msg(i)).unwrap();
        assert_eq!(reached, if i < 2 { 2 } else { 1 });
    }
    assert_eq!(slow.missed(), 8);
    assert_eq!(slow.try_iter_values(), [0, 1]);
    assert_eq!(fast.try_iter_values(), (0..10).collect::<Vec<_>>());
    assert_eq!(fast.missed(), 0);
}

#[test]
fn one_budget_charge_per_message_released_by_the_last_holder() {
    let budget = MemoryBudget::new(1 << 20);
    let bus = Bus::builder().budget(budget.clone()).build();
    let subs: Vec<_> = (0..3).map(|_| bus.subscribe("t").unwrap()).collect();
    bus.publish("t", Message::new(vec![0u8; 1000])).unwrap();
    let charged = budget.in_use();
    assert!(charged > 1000 && charged < 1100, "one charge: {charged}");
    let first = subs[0].recv().unwrap();
    assert_eq!(first.weight(), charged);
    let second = subs[1].recv().unwrap();
    drop(first);
    drop(second);
    assert_eq!(budget.in_use(), charged, "still queued for the third");
    drop(subs); // the third subscription goes with its queued copy
    assert_eq!(budget.in_use(), 0);
}

#[test]
fn budget_backpressure_on_publish() {
    let budget = MemoryBudget::builder(3000).high_watermark(1500).build();
    let bus = Bus::builder().budget(budget.clone()).build();
    let sub = bus.subscribe("t").unwrap();
    bus.publish("t", Message::new(vec![1u8; 1400])).unwrap();
    // Over the watermark: Normal is refused, High still goes.
    assert!(matches!(
        bus.try_publish("t", Message::new(vec![2u8; 200])),
        Err(PublishError::OverBudget(_))
    ));
    bus.try_publish("t", Message::new(vec![3u8; 1400]).priority(Priority::High))
        .unwrap();
    // Larger than the whole budget: at once, even in the blocking form.
    match bus.publish("t", Message::new(vec![4u8; 4000])) {
        Err(PublishError::TooLarge(e)) => assert_eq!(e.payload().len(), 4000),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(matches!(
        bus.publish_timeout("t", Message::new(vec![5u8; 100]), Duration::from_millis(5)),
        Err(PublishError::Timeout(_))
    ));
    // A blocked publisher goes once the subscriber drains.
    let publisher = {
        let bus = bus.clone();
        thread::spawn(move || bus.publish("t", Message::new(vec![6u8; 100])).is_ok())
    };
    wait_until("the publish waits for budget", || {
        budget.stats().waits[Priority::Normal.index()] == 2
    });
    assert!(!publisher.is_finished());
    let got: Vec<_> = (0..2).map(|_| sub.recv().unwrap()).collect();
    assert_eq!(got[0].payload()[0], 3, "High first");
    drop(got);
    assert!(publisher.join().unwrap());
    assert_eq!(sub.recv().unwrap().payload()[0], 6);
    assert_eq!(budget.in_use(), 0);
    let stats = budget.stats();
    assert_eq!(stats.waits[Priority::Normal.index()], 2);
}

#[test]
fn republished_envelope_is_not_charged_twice() {
    let budget = MemoryBudget::new(1 << 20);
    let bus = Bus::builder().budget(budget.clone()).build();
    let sub = bus.subscribe("t").unwrap();
    bus.publish("t", Message::new(vec![0u8; 500])).unwrap();
    let charged = budget.in_use();
    let mut envelope = sub.recv().unwrap();
    envelope.set_attempt(1);
    bus.publish_envelope(envelope).unwrap();
    assert_eq!(budget.in_use(), charged);
    let again = sub.recv().unwrap();
    assert_eq!(again.attempt(), 1);
    drop(again);
    assert_eq!(budget.in_use(), 0);
}

#[test]
fn dropping_a_subscription_unblocks_publishers() {
    let bus = Bus::builder().capacity(1).build();
    let keep = bus
        .subscribe_with("t", SubscribeOptions::default().capacity(10))
        .unwrap();
    let gone = bus.subscribe("t").unwrap();
    bus.publish("t", msg(1)).unwrap();
    let publisher = {
        let bus = bus.clone();
        thread::spawn(move || bus.publish("t", msg(2)).unwrap())
    };
    let_them_block();
    drop(gone);
    assert_eq!(publisher.join().unwrap(), 1);
    assert_eq!(keep.try_iter_values(), [1, 2]);
}

#[test]
fn close_drains_then_disconnects_and_wakes_publishers() {
    let bus = Bus::builder().capacity(1).build();
    let sub = bus.subscribe("t").unwrap();
    bus.publish("t", msg(1)).unwrap();
    let publisher = {
        let bus = bus.clone();
        thread::spawn(move || bus.publish("t", msg(2)))
    };
    let_them_block();
    assert!(bus.close());
    assert!(!bus.close());
    // The blocked publish reached nobody (its only target closed).
    assert!(matches!(
        publisher.join().unwrap(),
        Ok(0) | Err(PublishError::Closed(_))
    ));
    assert_eq!(value(&sub.recv().unwrap()), 1);
    assert_eq!(
        sub.recv_timeout(Duration::from_secs(5)).unwrap_err(),
        RecvTimeoutError::Disconnected
    );
    assert!(sub.is_closed());
    assert!(matches!(
        bus.publish("t", msg(3)),
        Err(PublishError::Closed(_))
    ));
    let late = bus.subscribe("t").unwrap();
    assert!(late.recv().is_err(), "subscribing to a closed bus");
}

#[test]
fn async_publish_and_receive() {
    let bus = Bus::builder().capacity(2).build();
    let mut sub = bus.subscribe("t").unwrap();
    let publisher = bus.publisher("t").unwrap();
    let consumer = thread::spawn(move || {
        block_on(async {
            let mut seen = Vec::new();
            while let Some(e) = sub.next().await {
                seen.push(value(&e));
                if seen.len() == 20 {
                    break;
                }
            }
            seen
        })
    });
    block_on(async {
        for i in 0..20 {
            assert_eq!(publisher.publish_async(msg(i)).await.unwrap(), 1);
        }
    });
    assert_eq!(consumer.join().unwrap(), (0..20).collect::<Vec<_>>());
    let sub2 = bus.subscribe("t").unwrap();
    block_on(bus.publish_async("t", msg(99))).unwrap();
    assert_eq!(value(&block_on(sub2.recv_async()).unwrap()), 99);
}

#[test]
fn publishers_see_new_subscribers() {
    let bus = Bus::new();
    let publisher = bus.publisher("t").unwrap();
    assert_eq!(publisher.publish(msg(0)).unwrap(), 0);
    let sub = bus.subscribe("t").unwrap();
    assert_eq!(publisher.publish(msg(1)).unwrap(), 1);
    drop(sub);
    assert_eq!(publisher.publish(msg(2)).unwrap(), 0);
}

/// Two publishers, a plain subscriber, a two-member group and a lossy
/// subscriber, all lanes: every subscriber gets every message exactly once
/// (the lossy one: at most once, and `missed` accounts for the rest), and
/// ids are unique.
#[test]
fn concurrent_exactly_once_per_subscriber() {
    // 64 under miri: two publishers still fill the 64-message queues.
    let per_publisher = scale(20_000, 64) as u32;
    let bus = Bus::builder().capacity(64).build();
    let plain = bus.subscribe("load.*").unwrap();
    let group = bus.group("load.*", "workers").unwrap();
    let lossy = bus
        .subscribe_with(
            "load.*",
            SubscribeOptions::default()
                .capacity(4)
                .slow_subscriber(SlowSubscriber::DropNewest),
        )
        .unwrap();
    let start = Arc::new(Barrier::new(2));
    let producers: Vec<_> = (0..2u32)
        .map(|p| {
            let publisher = bus.publisher(&format!("load.p{p}")).unwrap();
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                for i in 0..per_publisher {
                    let priority = Priority::ALL[(i % 4) as usize];
                    publisher
                        .publish(msg(p * per_publisher + i).priority(priority))
                        .unwrap();
                }
            })
        })
        .collect();
    let consume = |sub: lanebus::Subscription| {
        thread::spawn(move || {
            let mut seen = Vec::new();
            while let Ok(e) = sub.recv() {
                seen.push((value(&e), e.id()));
            }
            seen
        })
    };
    let plain_c = consume(plain);
    let group_c = [consume(group.clone()), consume(group)];
    let lossy_sub = lossy.clone();
    let lossy_c = consume(lossy);
    for p in producers {
        p.join().unwrap();
    }
    bus.close();
    let total = 2 * per_publisher as usize;
    let check = |seen: Vec<(u32, u64)>, exact: bool| {
        let values: HashSet<u32> = seen.iter().map(|s| s.0).collect();
        assert_eq!(values.len(), seen.len(), "a message was delivered twice");
        let ids: HashSet<u64> = seen.iter().map(|s| s.1).collect();
        assert_eq!(ids.len(), seen.len(), "ids are unique");
        if exact {
            assert_eq!(seen.len(), total, "a message was lost");
        }
        seen.len()
    };
    check(plain_c.join().unwrap(), true);
    let mut group_seen = Vec::new();
    for c in group_c {
        group_seen.extend(c.join().unwrap());
    }
    check(group_seen, true);
    let got = check(lossy_c.join().unwrap(), false);
    assert_eq!(got as u64 + lossy_sub.missed(), total as u64);
}

#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Bus>();
    send_sync::<lanebus::Subscription>();
    send_sync::<Envelope>();
    send_sync::<MemoryBudget>();
    send::<lanebus::Publisher>();
}

#[test]
fn dropping_the_bus_closes_its_subscriptions_after_they_drain() {
    let bus = Bus::new();
    let sub = bus.subscribe("t").unwrap();
    bus.publish("t", msg(1)).unwrap();
    drop(bus);
    assert_eq!(value(&sub.recv().unwrap()), 1);
    assert!(sub.recv().is_err());
}

#[test]
fn enqueue_time_is_when_admitted_not_when_called() {
    let budget = MemoryBudget::builder(1000).high_watermark(1000).build();
    let bus = Bus::builder().budget(budget.clone()).build();
    let sub = bus.subscribe("t").unwrap();
    let hold = budget.acquire(Priority::Normal, 1000).unwrap();
    let publisher = {
        let bus = bus.clone();
        thread::spawn(move || {
            let called = std::time::SystemTime::now();
            bus.publish("t", Message::new(vec![0u8; 10])).unwrap();
            called
        })
    };
    wait_until("the publish waits", || {
        budget.stats().waits[Priority::Normal.index()] == 1
    });
    let released = std::time::SystemTime::now();
    drop(hold);
    let called = publisher.join().unwrap();
    let unix = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    };
    let enqueued = sub.recv().unwrap().enqueued_at();
    assert!(unix(called) <= unix(released));
    assert!(enqueued >= unix(released), "stamped before it was admitted");
}
