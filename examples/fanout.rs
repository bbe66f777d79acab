//! Fan-out: plain subscribers (each gets every message of its pattern),
//! consumer groups (each message to exactly one member of each group) and a
//! `DropNewest` subscriber that is too slow and misses messages.
//!
//! Run (from the repository root):
//!
//! ```text
//! cargo run --release --example fanout
//! ```

use std::collections::BTreeSet;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use lanebus::{Bus, Message, SlowSubscriber, SubscribeOptions, Subscription};

const PRODUCERS: u32 = 2;
const PER_PRODUCER: u32 = 3000;
const TOPICS: [&str; 4] = [
    "orders.created",
    "orders.paid",
    "orders.eu.shipped",
    "stock.updated",
];

type Id = (u32, u32); // (producer, sequence number)

/// Receives until the bus is closed and the queue drained.
fn drain(sub: Subscription, pause: Duration) -> JoinHandle<Vec<Id>> {
    thread::spawn(move || {
        let mut got = Vec::new();
        while let Ok(env) = sub.recv() {
            got.push(env.decode::<Id>().unwrap());
            thread::sleep(pause);
        }
        got
    })
}

/// The messages published on a topic that passes `keep`.
fn expected(keep: impl Fn(&str) -> bool) -> BTreeSet<Id> {
    let all = (0..PRODUCERS).flat_map(|p| (0..PER_PRODUCER).map(move |i| (p, i)));
    all.filter(|&(_, i)| keep(TOPICS[i as usize % 4])).collect()
}

/// Asserts that `members` together got each message of `want` at most once,
/// and all but `missed` of them. Returns how many they got.
fn check(name: &str, members: Vec<JoinHandle<Vec<Id>>>, want: &BTreeSet<Id>, missed: u64) -> usize {
    let got: Vec<Vec<Id>> = members.into_iter().map(|h| h.join().unwrap()).collect();
    let counts: Vec<usize> = got.iter().map(Vec::len).collect();
    let all = got.concat();
    let unique: BTreeSet<Id> = all.iter().copied().collect();
    let (n, of) = (all.len(), want.len());
    println!("{name:>24}: {n:>4} of {of} (per member {counts:?}), missed {missed}");
    assert_eq!(n, unique.len(), "{name}: duplicates");
    assert!(unique.is_subset(want), "{name}: unexpected messages");
    assert_eq!(n + missed as usize, of, "{name}: lost messages");
    n
}

fn main() {
    let bus = Bus::new();
    let fast = Duration::ZERO;
    let audit = drain(bus.subscribe("*").unwrap(), fast);
    let orders = drain(bus.subscribe("orders.*").unwrap(), fast);
    let paid = drain(bus.subscribe("orders.paid").unwrap(), fast);
    let billing = bus.group("orders.*", "billing").unwrap();
    let billing_members: Vec<_> = (0..3).map(|_| drain(billing.clone(), fast)).collect();
    let shipping = bus.group("orders.*", "shipping").unwrap();
    let shipping_members: Vec<_> = (0..2).map(|_| drain(shipping.clone(), fast)).collect();
    // Slow (1 ms a message), with room for 8 per lane; publishers never wait for it.
    let options = SubscribeOptions::default().capacity(8);
    let options = options.slow_subscriber(SlowSubscriber::DropNewest);
    let slow = bus.subscribe_with("orders.*", options).unwrap();
    let slow_reader = drain(slow.clone(), Duration::from_millis(1));
    println!("{:?}", bus.stats());
    assert_eq!(bus.stats().subscriptions, 6); // 3 plain, 2 groups, 1 slow

    let producers: Vec<JoinHandle<usize>> = (0..PRODUCERS)
        .map(|p| {
            let publishers: Vec<_> = TOPICS.iter().map(|t| bus.publisher(t).unwrap()).collect();
            thread::spawn(move || {
                let mut reached = 0; // queues reached, summed over messages
                for i in 0..PER_PRODUCER {
                    let message = Message::encode(&(p, i)).unwrap();
                    reached += publishers[i as usize % 4].publish(message).unwrap();
                }
                reached
            })
        })
        .collect();
    let reached: usize = producers.into_iter().map(|h| h.join().unwrap()).sum();
    let stats = bus.stats();
    println!("published {} messages on {TOPICS:?}", stats.published);
    assert_eq!(stats.published, u64::from(PRODUCERS * PER_PRODUCER));
    bus.close(); // subscribers drain what is queued, then see the bus closed

    let (every, paid_only) = (expected(|_| true), expected(|t| t == "orders.paid"));
    let orders_only = expected(|t| t.starts_with("orders."));
    let missed = slow.missed();
    let delivered = check("audit *", vec![audit], &every, 0)
        + check("orders.*", vec![orders], &orders_only, 0)
        + check("orders.paid", vec![paid], &paid_only, 0)
        + check("group billing orders.*", billing_members, &orders_only, 0)
        + check("group shipping orders.*", shipping_members, &orders_only, 0)
        + check(
            "DropNewest orders.*",
            vec![slow_reader],
            &orders_only,
            missed,
        );
    assert!(
        missed > 0,
        "the slow subscriber should have missed messages"
    );
    // Each publish() returned how many queues it reached: that adds up too.
    println!("publish() reported {reached} deliveries; subscribers received {delivered}");
    assert_eq!(reached, delivered);
    let groups = billing.delivered() + shipping.delivered();
    assert_eq!(groups, 2 * orders_only.len() as u64);
    println!("ok");
}
