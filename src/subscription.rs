//! The receiving side of the bus: one [`Queue`] per subscription or
//! consumer group, and the [`Subscription`] handle that reads it.
//!
//! # Credits: all-or-nothing fan-out
//!
//! A publish to several queues must either reach every queue that is
//! willing to take it or hand the envelope back having reached none
//! (exactly once per subscriber, or handed back; never both). A ring cannot
//! take back a push, so each queue keeps *credits*: one [`Gate`] per lane
//! counting the envelopes reserved or queued in that lane, at most the lane's
//! capacity. A publisher first reserves a credit in every queue (in queue-id
//! order, so that two publishers waiting on each other's queues cannot
//! deadlock), and only then pushes; a push into a reserved lane cannot find
//! it full. A receiver gives the credit back after its pop has freed the
//! slot, so queued + being-pushed never exceeds the ring's capacity.

use core::fmt;
use core::pin::Pin;
use core::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::Stream;

use crate::chan::BatchTry;
use crate::channel::{Receiver, Sender};
use crate::envelope::Envelope;
use crate::error::{RecvError, RecvTimeoutError, TryRecvError, TrySendError};
use crate::gate::Gate;
// The bus's registry keeps queues and registrations in std `Arc`s (it needs
// `Weak`, which loom lacks; see `crate::loom::plain`).
use crate::loom::plain::Arc;
use crate::loom::{AtomicUsize, Ordering};
use crate::priority::{Priority, LANES};
use crate::topic::Pattern;
use crate::wait::{Attempt, TimedOut};

/// What a publisher does when a subscriber's queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SlowSubscriber {
    /// Wait for room (blocking and async publishes wait, `try_publish`
    /// returns `Full` and `publish_timeout` `Timeout`, in each case having
    /// delivered to nobody). A slow subscriber slows every publisher of its
    /// topics; nothing is lost.
    #[default]
    Block,
    /// Skip this subscriber for this message and count it in
    /// [`Subscription::missed`]. Publishers never wait for it.
    DropNewest,
}

/// A subscriber's (or a group's) queue: a channel of envelopes plus the
/// credits that make fan-out all-or-nothing (module docs).
pub(crate) struct Queue {
    /// Unique per bus; the order in which publishers reserve credits.
    pub(crate) id: u64,
    pub(crate) pattern: Pattern,
    pub(crate) group: Option<Box<str>>,
    pub(crate) policy: SlowSubscriber,
    sender: Sender<Envelope>,
    /// Envelopes reserved or queued, per lane.
    credits: [Gate; LANES],
    caps: [usize; LANES],
    delivered: AtomicUsize,
    missed: AtomicUsize,
}

/// What a credit reservation found.
pub(crate) enum Reserve {
    Reserved,
    /// The lane is full (all credits taken).
    Full,
    /// The subscription is gone.
    Gone,
}

impl Queue {
    /// Reserves one envelope's room in `lane` without waiting.
    #[inline]
    pub(crate) fn try_reserve(&self, lane: usize) -> Reserve {
        if self.sender.is_closed() {
            return Reserve::Gone;
        }
        let cap = self.caps[lane];
        match self.credits[lane].try_acquire(1, |used| used < cap) {
            Some(_) => Reserve::Reserved,
            None => Reserve::Full,
        }
    }

    /// Reserves room in `lane`, waiting until `deadline` (or for ever). Ok
    /// is `Reserved` or `Gone`.
    pub(crate) fn reserve(
        &self,
        lane: usize,
        deadline: Option<Instant>,
    ) -> Result<Reserve, TimedOut> {
        self.credits[lane]
            .waiters()
            .block(deadline, || self.reserve_attempt(lane))
    }

    pub(crate) fn reserve_attempt(&self, lane: usize) -> Attempt<Reserve> {
        match self.try_reserve(lane) {
            Reserve::Full => Attempt::Wait,
            done => Attempt::Done(done),
        }
    }

    pub(crate) fn credit_gate(&self, lane: usize) -> &Gate {
        &self.credits[lane]
    }

    /// Gives back a reservation that will not be pushed.
    #[inline]
    pub(crate) fn unreserve(&self, lane: usize) {
        self.credits[lane].release(1, 1);
    }

    /// Pushes into a reserved lane. False if the subscription is gone.
    #[inline]
    pub(crate) fn push(&self, priority: Priority, envelope: Envelope) -> bool {
        match self.sender.try_send_with(priority, envelope) {
            Ok(()) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Disconnected(_)) => {
                self.unreserve(priority.index());
                false
            }
            Err(TrySendError::Full(_)) => {
                // Credits never exceed the ring's capacity (module docs).
                unreachable!("a reserved lane was full")
            }
        }
    }

    /// Counts an envelope this subscriber missed ([`SlowSubscriber::DropNewest`]).
    pub(crate) fn count_missed(&self) {
        self.missed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn is_gone(&self) -> bool {
        self.sender.is_closed()
    }

    /// Closes the queue: receivers drain it, publishers skip it, and every
    /// publisher waiting for its credits wakes.
    pub(crate) fn close(&self) {
        self.sender.close();
        for gate in &self.credits {
            gate.waiters().notify_all();
        }
    }
}

/// Ties a queue's registration on the bus to its handles: dropped when the
/// last [`Subscription`] of a subscriber or group goes, it unregisters the
/// queue and closes it (queued envelopes are dropped, releasing their
/// budget).
pub(crate) struct Registration {
    pub(crate) queue: Arc<Queue>,
    /// Cloned for each new member of a group.
    pub(crate) receiver: Receiver<Envelope>,
    pub(crate) unregister: Option<Box<dyn FnOnce(u64) + Send + Sync>>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(unregister) = self.unregister.take() {
            unregister(self.queue.id);
        }
        self.queue.close();
    }
}

/// Creates a queue and its registration.
pub(crate) fn new_queue(
    id: u64,
    pattern: Pattern,
    group: Option<Box<str>>,
    policy: SlowSubscriber,
    caps: [usize; LANES],
) -> (Arc<Queue>, Receiver<Envelope>) {
    let mut builder = crate::ChannelBuilder::new();
    for (lane, cap) in caps.iter().enumerate() {
        builder = builder.lane_capacity(Priority::ALL[lane], *cap);
    }
    let (sender, receiver) = builder.build();
    let queue = Arc::new(Queue {
        id,
        pattern,
        group,
        policy,
        sender,
        credits: [(); LANES].map(|_| Gate::new()),
        caps,
        delivered: AtomicUsize::new(0),
        missed: AtomicUsize::new(0),
    });
    (queue, receiver)
}

/// A subscription to a topic (or pattern), or one member of a consumer
/// group; from [`Bus::subscribe`](crate::Bus::subscribe) or
/// [`Bus::group`](crate::Bus::group).
///
/// Receives envelopes in priority order, like a channel [`Receiver`]. Every
/// subscription gets every message of its topics; the members of one group
/// share one queue and compete for its messages. Dropping the last handle of
/// a subscription (or group) unsubscribes it: its queued envelopes are
/// dropped and their budget released.
pub struct Subscription {
    receiver: Receiver<Envelope>,
    registration: Arc<Registration>,
}

impl Subscription {
    pub(crate) fn new(registration: Arc<Registration>) -> Self {
        Self {
            receiver: registration.receiver.clone(),
            registration,
        }
    }

    fn queue(&self) -> &Queue {
        &self.registration.queue
    }

    pub(crate) fn receiver(&self) -> &Receiver<Envelope> {
        &self.receiver
    }

    /// Takes up to `max` ready envelopes without waiting, logging their
    /// lanes (for the worker pool), and returns their credits.
    pub(crate) fn try_take_logged(
        &self,
        out: &mut Vec<Envelope>,
        max: usize,
        log: &mut Vec<(usize, usize)>,
    ) -> BatchTry {
        let start = out.len();
        let took = self.receiver.chan.try_recv_batch_logged(out, max, log);
        for envelope in &out[start..] {
            self.queue().credits[envelope.priority().index()].release(1, 1);
        }
        took
    }

    /// Returns the credit of a received envelope (module docs).
    #[inline]
    fn took(&self, envelope: Envelope) -> Envelope {
        self.queue().credits[envelope.priority().index()].release(1, 1);
        envelope
    }

    /// Receives the next envelope, waiting for one.
    ///
    /// # Errors
    ///
    /// Once the bus is closed (or the subscription dropped by every
    /// handle) and the queue is empty.
    pub fn recv(&self) -> Result<Envelope, RecvError> {
        self.receiver.recv().map(|e| self.took(e))
    }

    /// Receives an envelope if one is ready.
    ///
    /// # Errors
    ///
    /// `Empty`, or `Disconnected` once closed and empty.
    pub fn try_recv(&self) -> Result<Envelope, TryRecvError> {
        self.receiver.try_recv().map(|e| self.took(e))
    }

    /// Receives, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout`, or `Disconnected` once closed and empty.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Envelope, RecvTimeoutError> {
        self.receiver.recv_timeout(timeout).map(|e| self.took(e))
    }

    /// Receives, waiting until `deadline` (`None`: for ever).
    ///
    /// # Errors
    ///
    /// As [`Subscription::recv_timeout`].
    pub fn recv_deadline(&self, deadline: Option<Instant>) -> Result<Envelope, RecvTimeoutError> {
        self.receiver.recv_deadline(deadline).map(|e| self.took(e))
    }

    /// Waits for at least one envelope, then takes up to `max` that are
    /// ready, in priority order, appending them to `out`.
    ///
    /// # Errors
    ///
    /// Once closed and empty.
    pub fn recv_batch(&self, out: &mut Vec<Envelope>, max: usize) -> Result<usize, RecvError> {
        let start = out.len();
        let n = self.receiver.recv_batch(out, max)?;
        for envelope in &out[start..] {
            self.queue().credits[envelope.priority().index()].release(1, 1);
        }
        Ok(n)
    }

    /// Receives asynchronously.
    ///
    /// # Errors
    ///
    /// Once closed and empty.
    pub async fn recv_async(&self) -> Result<Envelope, RecvError> {
        let envelope = self.receiver.recv_async().await?;
        Ok(self.took(envelope))
    }

    /// Envelopes queued now.
    pub fn len(&self) -> usize {
        self.receiver.len()
    }

    /// True if nothing is queued now.
    pub fn is_empty(&self) -> bool {
        self.receiver.is_empty()
    }

    /// Envelopes queued in one lane now.
    pub fn len_of(&self, priority: Priority) -> usize {
        self.receiver.len_of(priority)
    }

    /// Envelopes delivered to this queue so far (for a group: to all its
    /// members together).
    pub fn delivered(&self) -> u64 {
        self.queue().delivered.load(Ordering::Relaxed) as u64
    }

    /// Envelopes this queue missed because it was full under
    /// [`SlowSubscriber::DropNewest`].
    pub fn missed(&self) -> u64 {
        self.queue().missed.load(Ordering::Relaxed) as u64
    }

    /// The topic or pattern subscribed to, as given.
    pub fn pattern(&self) -> String {
        self.queue().pattern.to_string()
    }

    /// The consumer group, if this is a group member.
    pub fn group(&self) -> Option<&str> {
        self.queue().group.as_deref()
    }

    /// True once the subscription is closed (by [`Bus::close`](crate::Bus::close)).
    pub fn is_closed(&self) -> bool {
        self.queue().is_gone()
    }
}

impl Clone for Subscription {
    /// Another handle on the same queue: for a group, another member; for a
    /// plain subscription, a competing reader of the same queue.
    fn clone(&self) -> Self {
        Self::new(self.registration.clone())
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("pattern", &self.pattern())
            .field("group", &self.group())
            .field("len", &self.len())
            .finish()
    }
}

/// Yields envelopes in priority order; ends when the subscription is closed
/// and empty.
impl Stream for Subscription {
    type Item = Envelope;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Envelope>> {
        let this = self.get_mut();
        match Pin::new(&mut this.receiver).poll_next(cx) {
            Poll::Ready(Some(envelope)) => Poll::Ready(Some(this.took(envelope))),
            other => other,
        }
    }
}
