#![cfg(loom)]
//! Model 10: fan-out delivery on the bus. Publishes racing receives,
//! unsubscribes and `close` on the queues' credits (the per-lane `Gate`
//! that makes a fan-out all-or-nothing) and on the memory budget; consumer
//! groups. Under loom a blocking call parks at once, and a lost wake-up (or
//! two publishers holding each other's credits) leaves threads parked for
//! ever, which loom reports as a deadlock.
//!
//! The registry (topics, subscriber lists) keeps its reference counts in
//! std `Arc`/`Weak` under loom, but its locks are loom's, so subscribing
//! and unsubscribing inside a model are modelled too (model 4c). The racing
//! threads still publish through a `Publisher` (its fast path takes no
//! registry lock) to keep the models small.
//!
//! No model yields before its racing operation (see `common` for why that
//! hides interleavings): loom reaches "the waiter parked first" by
//! preempting.

mod common;

use common::block_on;
use lanebus::{
    Bus, Envelope, Header, MemoryBudget, Message, Priority, PublishError, SubscribeOptions,
    Subscription, TryRecvError,
};
use loom::thread;

/// A one-byte message carrying `n`.
fn msg(n: u8) -> Message {
    Message::new(vec![n])
}

/// The byte a message of [`msg`] carried.
fn body(envelope: &Envelope) -> u8 {
    envelope.payload()[0]
}

/// What [`msg`] published on `topic` weighs (and is charged to a budget):
/// the wire size does not depend on the id or the time.
fn weight(topic: &str) -> usize {
    Envelope::new(Header::new(topic), vec![0u8]).weight()
}

/// Receives without waiting and returns the byte, panicking if nothing is
/// queued.
fn take(sub: &Subscription) -> u8 {
    body(&sub.try_recv().expect("a message is queued"))
}

fn assert_empty(sub: &Subscription) {
    assert!(matches!(sub.try_recv(), Err(TryRecvError::Empty)));
}

/// 1. A publish blocked on the credit of a full queue (capacity 1, one
///    message held) is woken by the receive that gives the credit back:
///    the publisher's register-then-retry on the credit gate against the
///    receiver's `fetch_sub`-then-read-the-list. The message then arrives
///    exactly once.
#[test]
fn blocked_publish_woken_by_recv() {
    common::model("blocked_publish_woken_by_recv", || {
        let bus = Bus::builder().capacity(1).build();
        let sub = bus.subscribe("t").unwrap();
        let publisher = bus.publisher("t").unwrap();
        assert_eq!(publisher.publish(msg(1)).unwrap(), 1);
        let blocked = thread::spawn(move || publisher.publish(msg(2)).unwrap());
        assert_eq!(body(&sub.recv().unwrap()), 1);
        assert_eq!(blocked.join().unwrap(), 1);
        assert_eq!(take(&sub), 2);
        assert_empty(&sub);
    });
}

/// 2. All-or-nothing: two subscribers of capacity 1, the second (in
///    reservation order) full; a `try_publish` races a receive on the full
///    one. Either `Full` and neither got the message (the first one's
///    credit, already reserved, is given back), or `Ok(2)` and both did —
///    never one. Either way no credit is left behind: once both are
///    drained, the next `try_publish` reaches both.
#[test]
fn try_publish_all_or_nothing() {
    common::model("try_publish_all_or_nothing", || {
        let bus = Bus::builder().capacity(1).build();
        let free = bus.subscribe("t").unwrap();
        let full = bus.subscribe("t").unwrap();
        let publisher = bus.publisher("t").unwrap();
        assert_eq!(publisher.publish(msg(1)).unwrap(), 2);
        assert_eq!(take(&free), 1);
        let receiver = thread::spawn(move || {
            assert_eq!(body(&full.recv().unwrap()), 1);
            full
        });
        let sent = match publisher.try_publish(msg(2)) {
            Ok(n) => {
                assert_eq!(n, 2, "a fan-out reached only some subscribers");
                true
            }
            Err(PublishError::Full(envelope)) => {
                assert_eq!(body(&envelope), 2);
                false
            }
            Err(e) => panic!("unexpected {e:?}"),
        };
        let full = receiver.join().unwrap();
        if sent {
            assert_eq!(take(&full), 2);
            assert_eq!(take(&free), 2);
        }
        assert_empty(&full);
        assert_empty(&free);
        assert_eq!(publisher.try_publish(msg(3)).unwrap(), 2);
    });
}

/// 2b. A failed fan-out gives its credits back with a wake-up: a
///     `try_publish` to `[a, b]` (b full) holds a's credit for a moment
///     and then fails with `Full`; a blocking publish to `[a]` alone that
///     found that credit taken must be woken by its return
///     (`Queue::unreserve`), or it stays parked with `a` empty.
#[test]
fn failed_try_publish_returns_credit_with_wakeup() {
    common::model("failed_try_publish_returns_credit_with_wakeup", || {
        let bus = Bus::builder().capacity(1).build();
        let a = bus.subscribe("*").unwrap();
        let b = bus.subscribe("both").unwrap();
        let both = bus.publisher("both").unwrap();
        let only_a = bus.publisher("one").unwrap();
        assert_eq!(both.publish(msg(1)).unwrap(), 2);
        assert_eq!(take(&a), 1);
        let failing = thread::spawn(move || match both.try_publish(msg(2)) {
            Err(PublishError::Full(envelope)) => assert_eq!(body(&envelope), 2),
            other => panic!("b is full: {other:?}"),
        });
        assert_eq!(only_a.publish(msg(3)).unwrap(), 1);
        failing.join().unwrap();
        assert_eq!(take(&a), 3);
        assert_eq!(take(&b), 1);
        assert_empty(&a);
        assert_empty(&b);
    });
}

/// 3. Two publishers on two topics, each fanning out to the same two
///    subscribers of capacity 1, while the main thread receives once from
///    each: whichever publisher reserves first fills both queues, and the
///    other waits for the credits those receives give back. Credits are
///    reserved in queue-id order whatever the order in which a topic learnt
///    of its subscribers, so neither publisher can hold a credit the other
///    waits for. Topic `a` exists before the subscriptions (they are added
///    to its list) and `b` after (its list is built from the registry), so
///    a list kept out of id order shows here as a deadlock. Each subscriber
///    gets both messages exactly once.
#[test]
fn two_publishers_no_deadlock() {
    common::model("two_publishers_no_deadlock", || {
        let bus = Bus::builder().capacity(1).build();
        let pa = bus.publisher("a").unwrap();
        let s1 = bus.subscribe("*").unwrap();
        let s2 = bus.subscribe("*").unwrap();
        let pb = bus.publisher("b").unwrap();
        let ta = thread::spawn(move || pa.publish(msg(1)).unwrap());
        let tb = thread::spawn(move || pb.publish(msg(2)).unwrap());
        let first = body(&s1.recv().unwrap());
        assert_eq!(body(&s2.recv().unwrap()), first, "fan-outs interleaved");
        assert_eq!(ta.join().unwrap(), 2);
        assert_eq!(tb.join().unwrap(), 2);
        let second = 3 - first;
        assert_eq!((take(&s1), take(&s2)), (second, second));
        assert_empty(&s1);
        assert_empty(&s2);
    });
}

/// 4. A publish blocked on the credit of a full subscription (capacity 1)
///    while another thread drops that subscription: the drop closes the
///    queue and wakes the publisher, which skips it and delivers to the
///    other subscriber only, once. The budget is charged once per message
///    and every charge comes back exactly once, also for the message
///    discarded with the dropped queue.
#[test]
fn unsubscribe_wakes_publisher_blocked_on_credit() {
    common::model("unsubscribe_wakes_publisher_blocked_on_credit", || {
        let w = weight("t");
        let budget = MemoryBudget::new(16 * w);
        let bus = Bus::builder().capacity(1).budget(budget.clone()).build();
        let dropped = bus.subscribe("t").unwrap();
        assert_eq!(bus.publish("t", msg(1)).unwrap(), 1);
        let kept = bus.subscribe("t").unwrap();
        let publisher = bus.publisher("t").unwrap();
        let blocked = thread::spawn(move || publisher.publish(msg(2)).unwrap());
        drop(dropped);
        assert_eq!(blocked.join().unwrap(), 1);
        assert_eq!(budget.in_use(), w);
        assert_eq!(take(&kept), 2);
        assert_empty(&kept);
        assert_eq!(budget.in_use(), 0);
    });
}

/// 4b. A publish to two subscribers (capacity 1, room in both) races the
///     drop of one of them: it reaches the dropped one or not (2 or 1),
///     the other gets the message exactly once, and the one budget charge
///     is released exactly once — by the last clone, wherever it went (the
///     dropped queue's discard, a push that found the queue closed, or the
///     kept subscriber's receiver).
#[test]
fn publish_races_unsubscribe() {
    common::model("publish_races_unsubscribe", || {
        let w = weight("t");
        let budget = MemoryBudget::new(16 * w);
        let bus = Bus::builder().capacity(1).budget(budget.clone()).build();
        let dropped = bus.subscribe("t").unwrap();
        let kept = bus.subscribe("t").unwrap();
        let publisher = bus.publisher("t").unwrap();
        let racing = thread::spawn(move || publisher.publish(msg(1)).unwrap());
        drop(dropped);
        let reached = racing.join().unwrap();
        assert!(reached == 1 || reached == 2, "reached {reached}");
        assert_eq!(budget.in_use(), w);
        assert_eq!(take(&kept), 1);
        assert_empty(&kept);
        assert_eq!(budget.in_use(), 0);
    });
}

/// 5. `close` wakes a publisher blocked on a queue's credit and one blocked
///    on the budget. A `High` message (1 of 1 in its lane) is held by the
///    subscriber; the budget is `2w`, watermark `1.6w`. The `High` publish
///    is admitted by the budget (`High` may use it all) and waits for the
///    lane's credit; the `Normal` one waits for the budget (above the
///    watermark). Each returns `Ok(0)` or `Err(Closed)`, and once
///    everything is dropped the budget is empty.
#[test]
fn close_wakes_blocked_publishers() {
    common::model("close_wakes_blocked_publishers", || {
        let w = weight("t");
        let budget = MemoryBudget::new(2 * w);
        assert!(budget.high_watermark() < 2 * w);
        let bus = Bus::builder().capacity(1).budget(budget.clone()).build();
        let sub = bus.subscribe("t").unwrap();
        let publisher = bus.publisher("t").unwrap();
        assert_eq!(
            publisher.publish(msg(1).priority(Priority::High)).unwrap(),
            1
        );
        let spawn_publish = |message: Message| {
            let publisher = publisher.clone();
            thread::spawn(move || match publisher.publish(message) {
                Ok(n) => assert_eq!(n, 0, "delivered into a full lane"),
                Err(PublishError::Closed(envelope)) => drop(envelope),
                Err(e) => panic!("unexpected {e:?}"),
            })
        };
        let on_credit = spawn_publish(msg(2).priority(Priority::High));
        let on_budget = spawn_publish(msg(3));
        assert!(bus.close());
        on_credit.join().unwrap();
        on_budget.join().unwrap();
        assert_eq!(budget.in_use(), w);
        assert_eq!(body(&sub.recv().unwrap()), 1);
        assert!(sub.recv().is_err());
        assert_eq!(budget.in_use(), 0);
    });
}

/// 4c. A subscription created while another thread publishes the first
///     message of its topic (creating the topic): the publish reaches it
///     (it was in the topic's list) or not, and the count says which. The
///     registry's locks order the two; a std lock here would hide that
///     order from loom (it reported a causality violation) or, held across
///     a loom operation, hang loom's one OS thread.
#[test]
fn subscribe_races_first_publish() {
    common::model("subscribe_races_first_publish", || {
        let bus = Bus::builder().capacity(1).build();
        let racing = thread::spawn({
            let bus = bus.clone();
            move || bus.publish("t", msg(1)).unwrap()
        });
        let sub = bus.subscribe("t").unwrap();
        let reached = racing.join().unwrap();
        match sub.try_recv() {
            Ok(envelope) => {
                assert_eq!((reached, body(&envelope)), (1, 1));
            }
            Err(TryRecvError::Empty) => assert_eq!(reached, 0),
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert_eq!(bus.stats().published, 1);
    });
}

/// 6. `publish_async` blocked on the credit of a full queue (a loom waker,
///    `block_on`) is woken by a receive in another thread.
#[test]
fn publish_async_woken_by_recv() {
    common::model("publish_async_woken_by_recv", || {
        let bus = Bus::builder().capacity(1).build();
        let sub = bus.subscribe("t").unwrap();
        let publisher = bus.publisher("t").unwrap();
        assert_eq!(publisher.publish(msg(1)).unwrap(), 1);
        let receiver = thread::spawn(move || {
            assert_eq!(body(&sub.recv().unwrap()), 1);
            sub
        });
        assert_eq!(block_on(publisher.publish_async(msg(2))).unwrap(), 1);
        let sub = receiver.join().unwrap();
        assert_eq!(take(&sub), 2);
        assert_empty(&sub);
    });
}

/// 7. Two members of a consumer group (one queue of capacity 1) receive
///    once each, concurrently, while the main thread publishes two
///    messages: the first is queued before the members start, so they race
///    for it; the second publish waits for the credit that the winner's
///    receive gives back (a group's credits are shared by its members),
///    and each message goes to exactly one member. The members hand their
///    handles back, so the group is unregistered only after the joins.
///
///    Why the first message is queued up front: while a push is half-way
///    through its slot, a receiver spins (`Attempt::Busy`, yielding), and
///    two receivers yielding to each other can starve the pusher for ever
///    in loom's schedule (no preemption is spent switching between
///    yielded threads), which loom reports as "exceeded maximum number of
///    branches". Queued first, only the second push can be half-way, and
///    by then one member has finished.
#[test]
fn group_members_share_messages() {
    common::model("group_members_share_messages", || {
        let bus = Bus::builder().capacity(2).build();
        let first = bus
            .group_with("t", "g", SubscribeOptions::default().capacity(1))
            .unwrap();
        let second = first.clone();
        let publisher = bus.publisher("t").unwrap();
        assert_eq!(publisher.publish(msg(1)).unwrap(), 1);
        let member = |sub: Subscription| {
            thread::spawn(move || {
                let got = body(&sub.recv().unwrap());
                (got, sub)
            })
        };
        let (m1, m2) = (member(first), member(second));
        assert_eq!(publisher.publish(msg(2)).unwrap(), 1);
        let (got1, first) = m1.join().unwrap();
        let (got2, _second) = m2.join().unwrap();
        let mut got = [got1, got2];
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
        assert_empty(&first);
    });
}
