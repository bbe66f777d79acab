//! The bus: named topics, fan-out subscriptions and consumer groups over
//! [`Envelope`]s, under an optional [`MemoryBudget`].
//!
//! # Publishing
//!
//! A publish turns a [`Message`] into an [`Envelope`] (id, topic, enqueue
//! time), takes a budget permit for its [`Envelope::weight`] (one charge per
//! message, whatever the number of subscribers), reserves room in the queue
//! of every subscription and group that matches the topic, and then pushes a
//! clone of the envelope into each: clones share the header and the payload
//! bytes, so fan-out copies nothing. Reserving first makes a publish
//! all-or-nothing: it reaches every willing queue, or it is handed back
//! having reached none. (Each queue counts, per lane, the envelopes
//! reserved or queued in it, never more than its capacity, so a push into a
//! reserved lane cannot find it full; a ring cannot take a push back.
//! Publishers reserve in a fixed order of queues, so two publishers waiting
//! on each other's queues cannot deadlock.)
//!
//! [`Bus::publisher`] returns a [`Publisher`] for one topic, which caches the
//! topic's subscriber list and a block of message ids: the fast path takes no
//! lock. [`Bus::publish`] looks the topic up on each call.
//!
//! # Slow subscribers
//!
//! Per subscription, [`SlowSubscriber::Block`] (the default: publishers wait
//! for room) or [`SlowSubscriber::DropNewest`] (the subscriber misses the
//! message and counts it).

use core::cell::{Cell, RefCell};
use core::fmt;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;

use crate::budget::{AcquireError, MemoryBudget};
use crate::codec::{Codec, EncodeError};
use crate::envelope::{Envelope, Header};
use crate::error::PublishError;
use crate::loom::plain::{Arc, Weak};
use crate::loom::{AtomicUsize, Ordering, RwLock, RwLockReadGuard, RwLockWriteGuard};
use crate::pool::{Ticket, Tracker};
use crate::priority::{Priority, LANES};
use crate::subscription::{new_queue, Queue, Registration, Reserve, SlowSubscriber, Subscription};
use crate::topic::{validate_topic, Pattern, TopicError};
use crate::wait::{Attempt, TimedOut};

/// How many message ids a [`Publisher`] takes from the bus at a time.
const ID_BLOCK: u64 = 1024;

/// A message to publish: payload bytes, priority, optional ordering key and
/// headers. The payload is shared, never copied.
///
/// # Examples
///
/// ```
/// use lanebus::{Message, Priority};
///
/// let raw = Message::new(&b"pre-encoded bytes"[..]).priority(Priority::High).key("customer-7");
/// let typed = Message::encode(&("order", 42u32)).unwrap().header("trace", "abc");
/// assert_eq!(raw.payload().as_ref(), b"pre-encoded bytes");
/// assert!(typed.payload().len() > 0);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Message {
    priority: Priority,
    key: Option<Box<str>>,
    headers: Vec<(Box<str>, Box<str>)>,
    payload: Bytes,
    tracker: Option<Tracker>,
}

impl Message {
    /// A message carrying `payload` as-is (bytes you encoded yourself:
    /// postcard, rkyv, JSON...), on the `Normal` lane.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            payload: payload.into(),
            ..Self::default()
        }
    }

    /// A message whose payload is `value` encoded with the default
    /// [`Codec`].
    ///
    /// # Errors
    ///
    /// If `value` cannot be encoded or is larger than the codec's limit.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self, EncodeError> {
        Self::encode_with(&Codec::default(), value)
    }

    /// A message whose payload is `value` encoded with `codec`.
    ///
    /// # Errors
    ///
    /// As [`Message::encode`].
    pub fn encode_with<T: Serialize + ?Sized>(
        codec: &Codec,
        value: &T,
    ) -> Result<Self, EncodeError> {
        Ok(Self::new(codec.encode(value)?))
    }

    /// Sets the priority (lane).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// The same message with a [`Ticket`] that follows it through the
    /// [`WorkerPool`](crate::WorkerPool)s of its subscribers (the first to
    /// settle it decides; see [`Ticket`]).
    ///
    /// ```
    /// use lanebus::pool::{Delivery, Outcome, TicketStatus, WorkerPool};
    /// use lanebus::{Bus, Envelope, Message};
    ///
    /// let bus = Bus::builder().build();
    /// let pool = WorkerPool::builder()
    ///     .workers(1)
    ///     .build(bus.subscribe("jobs").unwrap(), |_: &Delivery<Envelope>| Outcome::Ack);
    /// let (message, ticket) = Message::encode(&42u32).unwrap().tracked();
    /// bus.publish("jobs", message).unwrap();
    /// assert_eq!(ticket.wait(), TicketStatus::Acked);
    /// bus.close();
    /// pool.join();
    /// ```
    pub fn tracked(mut self) -> (Self, Ticket) {
        let (tracker, ticket) = Tracker::new();
        self.tracker = Some(tracker);
        (self, ticket)
    }

    /// Sets the ordering key (messages with one key are handled in order by
    /// a worker pool).
    pub fn key(mut self, key: impl Into<Box<str>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<Box<str>>, value: impl Into<Box<str>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }
}

/// Configures a [`Bus`].
#[derive(Clone, Debug)]
pub struct BusBuilder {
    caps: [usize; LANES],
    budget: Option<MemoryBudget>,
    policy: SlowSubscriber,
    max_message_bytes: usize,
}

impl BusBuilder {
    /// The queue capacity of every lane of every subscription (default 1024).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.caps = [capacity; LANES];
        self
    }

    /// The queue capacity of one lane of every subscription.
    pub fn lane_capacity(mut self, priority: Priority, capacity: usize) -> Self {
        self.caps[priority.index()] = capacity;
        self
    }

    /// Charges every message's weight to `budget` (shared with whatever
    /// else uses it).
    pub fn budget(mut self, budget: MemoryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The default slow-subscriber policy of new subscriptions.
    pub fn slow_subscriber(mut self, policy: SlowSubscriber) -> Self {
        self.policy = policy;
        self
    }

    /// The largest envelope (its [`Envelope::weight`]) the bus accepts
    /// (default 64 MiB); larger ones fail with `TooLarge`.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// Builds the bus.
    ///
    /// # Panics
    ///
    /// If a lane capacity is zero.
    pub fn build(self) -> Bus {
        assert!(
            self.caps.iter().all(|&c| c > 0),
            "lane capacity must be > 0"
        );
        Bus {
            inner: Arc::new(BusInner {
                registry: RwLock::new(Registry::default()),
                next_id: AtomicUsize::new(1),
                next_queue: AtomicUsize::new(1),
                closed: AtomicUsize::new(0),
                budget: self.budget,
                caps: self.caps,
                policy: self.policy,
                max_message_bytes: self.max_message_bytes,
                published: AtomicUsize::new(0),
                unrouted: AtomicUsize::new(0),
            }),
        }
    }
}

/// Options of one subscription; see [`Bus::subscribe_with`].
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct SubscribeOptions {
    /// Per-lane queue capacity (`None`: the bus's).
    pub capacity: Option<usize>,
    /// What publishers do when this queue is full (`None`: the bus's).
    pub slow_subscriber: Option<SlowSubscriber>,
}

impl SubscribeOptions {
    /// Sets the per-lane capacity.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Sets the slow-subscriber policy.
    pub fn slow_subscriber(mut self, policy: SlowSubscriber) -> Self {
        self.slow_subscriber = Some(policy);
        self
    }
}

/// A message bus: topics, subscriptions, consumer groups. Clones share it;
/// it is `Send + Sync`. See the module docs of [`crate::bus`].
///
/// # Examples
///
/// ```
/// use lanebus::{Bus, Message, Priority};
///
/// let bus = Bus::new();
/// let audit = bus.subscribe("orders.*").unwrap();
/// let billing_a = bus.group("orders.created", "billing").unwrap();
/// let billing_b = billing_a.clone(); // a second member of the group
///
/// let delivered = bus
///     .publish("orders.created", Message::encode(&("order-1", 25u32)).unwrap().priority(Priority::High))
///     .unwrap();
/// assert_eq!(delivered, 2); // the audit subscription and the billing group
///
/// let seen = audit.recv().unwrap();
/// let (id, amount): (&str, u32) = seen.decode_borrowed().unwrap();
/// assert_eq!((seen.topic(), id, amount), ("orders.created", "order-1", 25));
/// // One of the group's members gets it, not both.
/// assert!(billing_a.try_recv().is_ok() ^ billing_b.try_recv().is_ok());
/// ```
#[derive(Clone)]
pub struct Bus {
    inner: Arc<BusInner>,
}

struct BusInner {
    registry: RwLock<Registry>,
    next_id: AtomicUsize,
    next_queue: AtomicUsize,
    closed: AtomicUsize,
    budget: Option<MemoryBudget>,
    caps: [usize; LANES],
    policy: SlowSubscriber,
    max_message_bytes: usize,
    published: AtomicUsize,
    unrouted: AtomicUsize,
}

/// The last handle of the bus (every `Bus` and `Publisher`) is gone: close
/// every queue, so that subscriptions drain what is queued and then end
/// instead of waiting for publishers that cannot exist any more.
impl Drop for BusInner {
    fn drop(&mut self) {
        let registry = self.registry.get_mut().unwrap_or_else(|e| e.into_inner());
        for queue in &registry.queues {
            queue.close();
        }
    }
}

#[derive(Default)]
struct Registry {
    topics: HashMap<Arc<str>, Arc<TopicState>>,
    /// Every live queue (subscriptions and groups).
    queues: Vec<Arc<Queue>>,
    /// Live groups by (pattern, name).
    groups: HashMap<(String, Box<str>), Weak<Registration>>,
}

/// A topic's subscriber list. Publishers read a snapshot; subscribing and
/// unsubscribing replace it and bump `version`.
struct TopicState {
    name: Arc<str>,
    version: AtomicUsize,
    targets: RwLock<Arc<[Arc<Queue>]>>,
}

impl TopicState {
    fn snapshot(&self) -> Arc<[Arc<Queue>]> {
        self.targets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set(&self, targets: Vec<Arc<Queue>>) {
        *self.targets.write().unwrap_or_else(|e| e.into_inner()) = targets.into();
        self.version.fetch_add(1, Ordering::Release);
    }
}

/// Counters of a bus (a snapshot).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BusStats {
    /// Messages published (reaching at least zero subscribers).
    pub published: u64,
    /// Messages published to a topic nobody subscribed to (dropped).
    pub unrouted: u64,
    /// Topics known to the bus.
    pub topics: usize,
    /// Live subscriptions and groups.
    pub subscriptions: usize,
}

/// How long a publish may wait.
#[derive(Clone, Copy)]
enum Wait {
    Never,
    Until(Option<Instant>),
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl Bus {
    /// A bus with default settings: capacity 1024 per lane per
    /// subscription, no budget, [`SlowSubscriber::Block`].
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Starts configuring a bus.
    pub fn builder() -> BusBuilder {
        BusBuilder {
            caps: [1024; LANES],
            budget: None,
            policy: SlowSubscriber::Block,
            max_message_bytes: 64 << 20,
        }
    }

    /// A publishing handle for `topic`: the fast path (see the module docs).
    ///
    /// # Errors
    ///
    /// If `topic` is not a valid topic name.
    pub fn publisher(&self, topic: &str) -> Result<Publisher, TopicError> {
        let state = self.topic(topic)?;
        let snapshot = state.snapshot();
        Ok(Publisher {
            bus: self.clone(),
            version: Cell::new(state.version.load(Ordering::Acquire)),
            targets: RefCell::new(snapshot),
            topic: state,
            ids: Cell::new((0, 0)),
        })
    }

    /// Publishes `message` on `topic`, waiting for budget and for room in
    /// every subscriber's queue (per its policy). Returns how many queues
    /// (subscriptions and groups) it reached.
    ///
    /// # Errors
    ///
    /// `TooLarge` at once, `Closed`, `InvalidTopic` (use [`Bus::publisher`]
    /// to see the [`TopicError`]). The envelope is handed back.
    pub fn publish(&self, topic: &str, message: Message) -> Result<usize, PublishError<Envelope>> {
        self.publish_inner(topic, message, Wait::Until(None))
    }

    /// Publishes without waiting.
    ///
    /// # Errors
    ///
    /// `Full` (some `Block` subscriber's queue is full), `OverBudget`,
    /// `TooLarge`, `Closed`. Nothing was delivered.
    pub fn try_publish(
        &self,
        topic: &str,
        message: Message,
    ) -> Result<usize, PublishError<Envelope>> {
        self.publish_inner(topic, message, Wait::Never)
    }

    /// Publishes, waiting at most `timeout` in all.
    ///
    /// # Errors
    ///
    /// `Timeout`, `TooLarge`, `Closed`. Nothing was delivered.
    pub fn publish_timeout(
        &self,
        topic: &str,
        message: Message,
        timeout: Duration,
    ) -> Result<usize, PublishError<Envelope>> {
        self.publish_inner(
            topic,
            message,
            Wait::Until(Instant::now().checked_add(timeout)),
        )
    }

    /// Publishes asynchronously. Dropping the future before it completes
    /// delivers nothing.
    ///
    /// # Errors
    ///
    /// As [`Bus::publish`].
    pub async fn publish_async(
        &self,
        topic: &str,
        message: Message,
    ) -> Result<usize, PublishError<Envelope>> {
        let (state, envelope) = self.prepare(topic, message)?;
        self.deliver_async(&state.snapshot(), envelope).await
    }

    /// Publishes an envelope built elsewhere (one received, or decoded with
    /// [`Envelope::from_wire`]) on its own topic and priority, keeping its
    /// id and header. An envelope that already holds a permit of this bus's
    /// budget is not charged again.
    ///
    /// # Errors
    ///
    /// As [`Bus::publish`].
    pub fn publish_envelope(&self, envelope: Envelope) -> Result<usize, PublishError<Envelope>> {
        let state = match self.topic(envelope.topic()) {
            Ok(state) => state,
            Err(_) => return Err(PublishError::InvalidTopic(envelope)),
        };
        self.deliver(&state.snapshot(), envelope, Wait::Until(None))
    }

    fn publish_inner(
        &self,
        topic: &str,
        message: Message,
        wait: Wait,
    ) -> Result<usize, PublishError<Envelope>> {
        let (state, envelope) = self.prepare(topic, message)?;
        self.deliver(&state.snapshot(), envelope, wait)
    }

    /// Looks up `topic` and wraps `message` in a new envelope for it.
    fn prepare(
        &self,
        topic: &str,
        message: Message,
    ) -> Result<(Arc<TopicState>, Envelope), PublishError<Envelope>> {
        match self.topic(topic) {
            Ok(state) => {
                let envelope = self.envelope(&state.name, message, self.next_id());
                Ok((state, envelope))
            }
            Err(_) => Err(PublishError::InvalidTopic(
                self.bare_envelope(topic, message),
            )),
        }
    }

    /// Subscribes to a topic or pattern (`orders.created`, `orders.*`, `*`):
    /// this subscription gets every message published on a matching topic
    /// from now on.
    ///
    /// # Errors
    ///
    /// If `pattern` is not a valid topic name or pattern.
    pub fn subscribe(&self, pattern: &str) -> Result<Subscription, TopicError> {
        self.subscribe_with(pattern, SubscribeOptions::default())
    }

    /// [`Bus::subscribe`] with options.
    ///
    /// # Errors
    ///
    /// As [`Bus::subscribe`].
    ///
    /// # Panics
    ///
    /// If `options.capacity` is zero.
    pub fn subscribe_with(
        &self,
        pattern: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription, TopicError> {
        let pattern = Pattern::parse(pattern)?;
        let mut registry = self.write_registry();
        let registration = self.register(&mut registry, pattern, None, options);
        Ok(Subscription::new(registration))
    }

    /// Joins the consumer group `name` on a topic or pattern: the members of
    /// one group compete for its messages (each goes to one member), and each
    /// group gets every message, as a subscription does. The group exists
    /// while it has members.
    ///
    /// # Errors
    ///
    /// If `pattern` is not a valid topic name or pattern.
    pub fn group(&self, pattern: &str, name: &str) -> Result<Subscription, TopicError> {
        self.group_with(pattern, name, SubscribeOptions::default())
    }

    /// [`Bus::group`] with options; they apply when this call creates the
    /// group.
    ///
    /// # Errors
    ///
    /// As [`Bus::subscribe`].
    pub fn group_with(
        &self,
        pattern: &str,
        name: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription, TopicError> {
        let pattern = Pattern::parse(pattern)?;
        let key = (pattern.to_string(), Box::<str>::from(name));
        let mut registry = self.write_registry();
        if let Some(existing) = registry.groups.get(&key).and_then(Weak::upgrade) {
            return Ok(Subscription::new(existing));
        }
        let registration = self.register(&mut registry, pattern, Some(key.1.clone()), options);
        registry.groups.insert(key, Arc::downgrade(&registration));
        Ok(Subscription::new(registration))
    }

    /// Closes the bus: publishes fail with `Closed` from now on, every
    /// subscription drains what is queued and then reports closed, and
    /// publishers waiting for room or budget wake up. Returns true if this
    /// call closed it. Dropping the last `Bus` and `Publisher` handle closes
    /// it too.
    pub fn close(&self) -> bool {
        if self.inner.closed.swap(1, Ordering::SeqCst) != 0 {
            return false;
        }
        let registry = self.read_registry();
        for queue in &registry.queues {
            queue.close();
        }
        if let Some(budget) = &self.inner.budget {
            budget.waiters().notify_all();
        }
        true
    }

    /// True once the bus is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst) != 0
    }

    /// The budget messages are charged to, if any.
    pub fn budget(&self) -> Option<&MemoryBudget> {
        self.inner.budget.as_ref()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> BusStats {
        let registry = self.read_registry();
        BusStats {
            published: self.inner.published.load(Ordering::Relaxed) as u64,
            unrouted: self.inner.unrouted.load(Ordering::Relaxed) as u64,
            topics: registry.topics.len(),
            subscriptions: registry.queues.len(),
        }
    }

    // ----- registry -----

    fn read_registry(&self) -> RwLockReadGuard<'_, Registry> {
        self.inner
            .registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn write_registry(&self) -> RwLockWriteGuard<'_, Registry> {
        self.inner
            .registry
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The state of `topic`, created (with every matching queue) on first
    /// use.
    fn topic(&self, topic: &str) -> Result<Arc<TopicState>, TopicError> {
        if let Some(state) = self.read_registry().topics.get(topic) {
            return Ok(state.clone());
        }
        validate_topic(topic)?;
        let mut registry = self.write_registry();
        if let Some(state) = registry.topics.get(topic) {
            return Ok(state.clone());
        }
        let targets: Vec<Arc<Queue>> = registry
            .queues
            .iter()
            .filter(|q| q.pattern.matches(topic))
            .cloned()
            .collect();
        let name: Arc<str> = topic.into();
        let state = Arc::new(TopicState {
            name: name.clone(),
            version: AtomicUsize::new(0),
            targets: RwLock::new(targets.into()),
        });
        registry.topics.insert(name, state.clone());
        Ok(state)
    }

    fn register(
        &self,
        registry: &mut Registry,
        pattern: Pattern,
        group: Option<Box<str>>,
        options: SubscribeOptions,
    ) -> Arc<Registration> {
        let caps = match options.capacity {
            Some(cap) => {
                assert!(cap > 0, "subscription capacity must be > 0");
                [cap; LANES]
            }
            None => self.inner.caps,
        };
        let policy = options.slow_subscriber.unwrap_or(self.inner.policy);
        let id = self.inner.next_queue.fetch_add(1, Ordering::Relaxed) as u64;
        let (queue, receiver) = new_queue(id, pattern, group, policy, caps);
        if self.is_closed() {
            queue.close();
        }
        for state in registry.topics.values() {
            if queue.pattern.matches(&state.name) {
                let mut targets = state.snapshot().to_vec();
                // Ids only grow: pushing keeps the list in reservation order.
                targets.push(queue.clone());
                state.set(targets);
            }
        }
        registry.queues.push(queue.clone());
        let bus = Arc::downgrade(&self.inner);
        Arc::new(Registration {
            queue,
            receiver,
            unregister: Some(Box::new(move |id| {
                if let Some(inner) = bus.upgrade() {
                    Bus { inner }.unregister(id);
                }
            })),
        })
    }

    fn unregister(&self, id: u64) {
        let mut registry = self.write_registry();
        registry.queues.retain(|q| q.id != id);
        registry.groups.retain(|_, g| g.strong_count() > 0);
        for state in registry.topics.values() {
            let targets = state.snapshot();
            if targets.iter().any(|q| q.id == id) {
                state.set(targets.iter().filter(|q| q.id != id).cloned().collect());
            }
        }
    }

    // ----- publishing -----

    fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed) as u64
    }

    /// A new envelope; its enqueue time is set once it is admitted (see
    /// `push_reserved`).
    fn envelope(&self, topic: &Arc<str>, message: Message, id: u64) -> Envelope {
        let mut envelope = Envelope::new(
            Header {
                id,
                topic: topic.clone(),
                priority: message.priority,
                key: message.key,
                enqueued_at: 0,
                headers: message.headers,
            },
            message.payload,
        );
        if let Some(tracker) = message.tracker {
            envelope.attach_tracker(tracker);
        }
        envelope
    }

    /// An envelope for handing back a message that never got a topic.
    fn bare_envelope(&self, topic: &str, message: Message) -> Envelope {
        self.envelope(&Arc::from(topic), message, 0)
    }

    /// Charges `envelope` to the budget (unless it already holds a permit
    /// of it), waiting as `wait` says.
    fn charge(&self, envelope: &mut Envelope, wait: Wait) -> Result<(), AcquireError> {
        let Some(budget) = &self.inner.budget else {
            return Ok(());
        };
        if envelope.permit().is_from(budget) {
            return Ok(());
        }
        let priority = envelope.priority();
        let bytes = envelope.weight();
        let permit = match wait {
            Wait::Never => budget.try_acquire(priority, bytes)?,
            // Closed while waiting (`None`): the caller reports it.
            Wait::Until(deadline) => {
                match budget.acquire_unless(priority, bytes, deadline, || self.is_closed())? {
                    Some(permit) => permit,
                    None => return Ok(()),
                }
            }
        };
        envelope.attach_permit(permit);
        Ok(())
    }

    fn deliver(
        &self,
        targets: &[Arc<Queue>],
        mut envelope: Envelope,
        wait: Wait,
    ) -> Result<usize, PublishError<Envelope>> {
        if self.is_closed() {
            return Err(PublishError::Closed(envelope));
        }
        if envelope.weight() > self.inner.max_message_bytes {
            return Err(PublishError::TooLarge(envelope));
        }
        if let Err(e) = self.charge(&mut envelope, wait) {
            return Err(acquire_error(e, envelope));
        }
        if self.is_closed() {
            return Err(PublishError::Closed(envelope));
        }
        let lane = envelope.priority().index();
        let mut reserved = Marks::new(targets.len());
        for (i, queue) in targets.iter().enumerate() {
            let outcome = match (queue.policy, wait) {
                (SlowSubscriber::Block, Wait::Until(deadline)) => queue.reserve(lane, deadline),
                _ => Ok(queue.try_reserve(lane)),
            };
            match outcome {
                Ok(Reserve::Reserved) => reserved.set(i),
                Ok(Reserve::Gone) => {}
                Ok(Reserve::Full) if queue.policy == SlowSubscriber::DropNewest => {
                    queue.count_missed();
                }
                Ok(Reserve::Full) => {
                    release(targets, &reserved, lane);
                    return Err(PublishError::Full(envelope));
                }
                Err(TimedOut) => {
                    release(targets, &reserved, lane);
                    return Err(PublishError::Timeout(envelope));
                }
            }
        }
        if self.is_closed() {
            // Closed while this publish waited: hand it back. (A close that
            // lands between here and the pushes makes those pushes fail;
            // the returned count says how many queues it reached.)
            release(targets, &reserved, lane);
            return Err(PublishError::Closed(envelope));
        }
        Ok(self.push_reserved(targets, &reserved, envelope))
    }

    async fn deliver_async(
        &self,
        targets: &[Arc<Queue>],
        mut envelope: Envelope,
    ) -> Result<usize, PublishError<Envelope>> {
        if self.is_closed() {
            return Err(PublishError::Closed(envelope));
        }
        if envelope.weight() > self.inner.max_message_bytes {
            return Err(PublishError::TooLarge(envelope));
        }
        if let Some(budget) = &self.inner.budget {
            if !envelope.permit().is_from(budget) {
                let (priority, bytes) = (envelope.priority(), envelope.weight());
                if let Err(e) = budget.check_size(bytes) {
                    return Err(acquire_error(e, envelope));
                }
                let mut counted = false;
                let permit = budget
                    .waiters()
                    .wait_async(|| {
                        if self.is_closed() {
                            return Attempt::Done(None);
                        }
                        match budget.attempt(priority, bytes, &mut counted) {
                            Attempt::Done(permit) => Attempt::Done(Some(permit)),
                            _ => Attempt::Wait,
                        }
                    })
                    .await;
                match permit {
                    Some(permit) => envelope.attach_permit(permit),
                    None => return Err(PublishError::Closed(envelope)),
                }
            }
        }
        let lane = envelope.priority().index();
        let mut reserved = Marks::new(targets.len());
        for (i, queue) in targets.iter().enumerate() {
            let outcome = match queue.policy {
                SlowSubscriber::Block => {
                    queue
                        .credit_gate(lane)
                        .waiters()
                        .wait_async(|| queue.reserve_attempt(lane))
                        .await
                }
                _ => queue.try_reserve(lane),
            };
            match outcome {
                Reserve::Reserved => reserved.set(i),
                Reserve::Gone => {}
                Reserve::Full => queue.count_missed(),
            }
        }
        if self.is_closed() {
            release(targets, &reserved, lane);
            return Err(PublishError::Closed(envelope));
        }
        Ok(self.push_reserved(targets, &reserved, envelope))
    }

    /// Pushes `envelope` into every reserved queue: clones for all but the
    /// last, which gets the envelope itself.
    fn push_reserved(
        &self,
        targets: &[Arc<Queue>],
        reserved: &Marks,
        mut envelope: Envelope,
    ) -> usize {
        if envelope.enqueued_at() == 0 {
            // Admitted now (budget and room): this is when it is enqueued,
            // not when `publish` was called.
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
            envelope.set_enqueued_at(now);
        }
        self.inner.published.fetch_add(1, Ordering::Relaxed);
        let priority = envelope.priority();
        let Some(last) = reserved.last() else {
            if targets.is_empty() {
                self.inner.unrouted.fetch_add(1, Ordering::Relaxed);
            }
            return 0;
        };
        let mut delivered = 0;
        for (i, queue) in targets[..last].iter().enumerate() {
            if reserved.get(i) {
                delivered += usize::from(queue.push(priority, envelope.clone()));
            }
        }
        delivered + usize::from(targets[last].push(priority, envelope))
    }
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("closed", &self.is_closed())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn acquire_error<T>(err: AcquireError, value: T) -> PublishError<T> {
    match err {
        AcquireError::OverBudget => PublishError::OverBudget(value),
        AcquireError::TooLarge => PublishError::TooLarge(value),
        AcquireError::Timeout => PublishError::Timeout(value),
    }
}

/// Gives back the credits reserved in `targets` for a publish that fails.
fn release(targets: &[Arc<Queue>], reserved: &Marks, lane: usize) {
    for (i, queue) in targets.iter().enumerate() {
        if reserved.get(i) {
            queue.unreserve(lane);
        }
    }
}

/// Which targets a publish reserved: a bit set, on the stack for up to 64.
enum Marks {
    Small(u64),
    Large(Vec<bool>),
}

impl Marks {
    fn new(n: usize) -> Self {
        if n <= 64 {
            Marks::Small(0)
        } else {
            Marks::Large(vec![false; n])
        }
    }

    fn set(&mut self, i: usize) {
        match self {
            Marks::Small(bits) => *bits |= 1 << i,
            Marks::Large(v) => v[i] = true,
        }
    }

    fn get(&self, i: usize) -> bool {
        match self {
            Marks::Small(bits) => bits & (1 << i) != 0,
            Marks::Large(v) => v[i],
        }
    }

    fn last(&self) -> Option<usize> {
        match self {
            Marks::Small(0) => None,
            Marks::Small(bits) => Some(63 - bits.leading_zeros() as usize),
            Marks::Large(v) => v.iter().rposition(|&b| b),
        }
    }
}

/// A publishing handle for one topic: caches the topic's subscriber list
/// (re-read only when it changes) and a block of message ids, so a publish
/// takes no lock. `Send` but not `Sync`: give each thread its own (clone
/// it).
pub struct Publisher {
    bus: Bus,
    topic: Arc<TopicState>,
    version: Cell<usize>,
    targets: RefCell<Arc<[Arc<Queue>]>>,
    /// The next id and the end of the block taken from the bus.
    ids: Cell<(u64, u64)>,
}

impl Clone for Publisher {
    fn clone(&self) -> Self {
        Self {
            bus: self.bus.clone(),
            topic: self.topic.clone(),
            version: Cell::new(self.version.get()),
            targets: RefCell::new(self.targets.borrow().clone()),
            ids: Cell::new((0, 0)),
        }
    }
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.topic.name)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// The topic this handle publishes on.
    pub fn topic(&self) -> &str {
        &self.topic.name
    }

    /// The bus this handle publishes to.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Publishes, waiting for budget and room; see [`Bus::publish`].
    ///
    /// # Errors
    ///
    /// As [`Bus::publish`].
    pub fn publish(&self, message: Message) -> Result<usize, PublishError<Envelope>> {
        self.send(message, Wait::Until(None))
    }

    /// Publishes without waiting; see [`Bus::try_publish`].
    ///
    /// # Errors
    ///
    /// As [`Bus::try_publish`].
    pub fn try_publish(&self, message: Message) -> Result<usize, PublishError<Envelope>> {
        self.send(message, Wait::Never)
    }

    /// Publishes, waiting at most `timeout`; see [`Bus::publish_timeout`].
    ///
    /// # Errors
    ///
    /// As [`Bus::publish_timeout`].
    pub fn publish_timeout(
        &self,
        message: Message,
        timeout: Duration,
    ) -> Result<usize, PublishError<Envelope>> {
        self.send(message, Wait::Until(Instant::now().checked_add(timeout)))
    }

    /// Publishes asynchronously; see [`Bus::publish_async`].
    ///
    /// # Errors
    ///
    /// As [`Bus::publish`].
    pub async fn publish_async(&self, message: Message) -> Result<usize, PublishError<Envelope>> {
        let envelope = self.envelope(message);
        self.refresh();
        let targets = self.targets.borrow().clone();
        self.bus.deliver_async(&targets, envelope).await
    }

    fn send(&self, message: Message, wait: Wait) -> Result<usize, PublishError<Envelope>> {
        let envelope = self.envelope(message);
        self.refresh();
        // Borrowed, not cloned: no shared refcount to bump per publish.
        let targets = self.targets.borrow();
        self.bus.deliver(&targets, envelope, wait)
    }

    fn envelope(&self, message: Message) -> Envelope {
        let (mut next, mut end) = self.ids.get();
        if next == end {
            next = self
                .bus
                .inner
                .next_id
                .fetch_add(ID_BLOCK as usize, Ordering::Relaxed) as u64;
            end = next + ID_BLOCK;
        }
        self.ids.set((next + 1, end));
        self.bus.envelope(&self.topic.name, message, next)
    }

    /// Re-reads the subscriber list if it changed since the last publish.
    fn refresh(&self) {
        // Acquire: pairs with the Release bump in `TopicState::set`, after
        // the new list was stored.
        let version = self.topic.version.load(Ordering::Acquire);
        if version != self.version.get() {
            *self.targets.borrow_mut() = self.topic.snapshot();
            self.version.set(version);
        }
    }
}
