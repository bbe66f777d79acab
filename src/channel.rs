//! The public handles: [`Sender`], [`Receiver`], [`bounded`] and
//! [`ChannelBuilder`].

use core::fmt;
use std::time::{Duration, Instant};

use crate::chan::{Chan, Slip};
use crate::error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use crate::future::{RecvFut, SendFut};
use crate::loom::{Arc, Ordering};
use crate::priority::{Priority, LANES};
use crate::wait::WaitId;

/// Creates a channel with four priority lanes, each holding up to `capacity`
/// messages.
///
/// # Memory
///
/// Every lane allocates its slots up front. A slot is the message and a
/// `usize` stamp; a slot of 64 bytes or more is padded to a multiple of 64
/// bytes so that it starts a cache line of its own (no line is shared by
/// two messages that two cores write or read at once). So
/// `bounded::<[u8; 256]>(1024)` takes 4 × 1024 × 320 bytes (1.25 MiB), and
/// `bounded::<u64>(1024)` 4 × 1024 × 16 (64 KiB). A lane that should hold
/// fewer messages can be given its own capacity ([`ChannelBuilder`]).
///
/// # Panics
///
/// If `capacity` is zero (this channel has no rendezvous mode) or too large
/// to index.
///
/// # Examples
///
/// ```
/// use lanebus::Priority;
///
/// let (tx, rx) = lanebus::bounded(8);
/// tx.send("normal").unwrap();
/// tx.send_with(Priority::Urgent, "urgent").unwrap();
/// assert_eq!(rx.recv(), Ok("urgent"));
/// assert_eq!(rx.recv(), Ok("normal"));
/// ```
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    ChannelBuilder::new().capacity(capacity).build()
}

/// Builds a channel with a capacity per lane.
///
/// # Examples
///
/// ```
/// use lanebus::{ChannelBuilder, Priority};
///
/// let (tx, rx) = ChannelBuilder::new()
///     .capacity(1024)
///     .lane_capacity(Priority::Urgent, 16)
///     .build::<u64>();
/// assert_eq!(tx.capacity_of(Priority::Urgent), 16);
/// assert_eq!(rx.capacity(), 16 + 3 * 1024);
/// ```
#[derive(Clone, Debug)]
pub struct ChannelBuilder {
    caps: [usize; LANES],
}

impl Default for ChannelBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChannelBuilder {
    /// The default capacity of every lane.
    pub const DEFAULT_CAPACITY: usize = 1024;

    /// A builder with [`ChannelBuilder::DEFAULT_CAPACITY`] on every lane.
    pub fn new() -> Self {
        Self {
            caps: [Self::DEFAULT_CAPACITY; LANES],
        }
    }

    /// Sets the capacity of every lane.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.caps = [capacity; LANES];
        self
    }

    /// Sets the capacity of one lane.
    pub fn lane_capacity(mut self, priority: Priority, capacity: usize) -> Self {
        self.caps[priority.index()] = capacity;
        self
    }

    /// Creates the channel.
    ///
    /// # Panics
    ///
    /// If a lane capacity is zero or too large to index.
    pub fn build<T>(self) -> (Sender<T>, Receiver<T>) {
        let chan = Arc::new(Chan::new(self.caps));
        (
            Sender {
                chan: chan.clone(),
                sink: SinkState::default(),
            },
            Receiver {
                chan,
                stream_wait: None,
                slip: Slip::new(),
            },
        )
    }
}

/// State of the `futures_sink::Sink` impl of a `Sender`.
pub(crate) struct SinkState<T> {
    /// A value accepted by `start_send` that did not fit yet.
    pub(crate) item: Option<T>,
    pub(crate) wait: Option<WaitId>,
}

impl<T> Default for SinkState<T> {
    fn default() -> Self {
        Self {
            item: None,
            wait: None,
        }
    }
}

/// The sending half of a channel. Clone it for more producers; the channel
/// closes when the last `Sender` is dropped (receivers then drain what is
/// queued and see `Disconnected`).
pub struct Sender<T> {
    pub(crate) chan: Arc<Chan<T>>,
    pub(crate) sink: SinkState<T>,
}

/// The receiving half of a channel. Clones compete for messages (MPMC):
/// each message goes to exactly one receiver. When the last `Receiver` is
/// dropped the channel closes and queued messages are dropped.
pub struct Receiver<T> {
    pub(crate) chan: Arc<Chan<T>>,
    pub(crate) stream_wait: Option<WaitId>,
    /// Whether waiting for a lane to fill pays off here (`Chan::slip`).
    pub(crate) slip: Slip,
}

// SAFETY: `&Sender` only reaches `chan` (an `Arc<Chan<T>>`, itself
// `Send + Sync` for `T: Send`); `sink` is touched only through `&mut Sender`
// (the `Sink` impl), so sharing a `Sender` never shares a `T`.
unsafe impl<T: Send> Sync for Sender<T> {}

// The `T` in `sink.item` is never pinned (the `Sink` impl only moves it).
impl<T> Unpin for Sender<T> {}

/// Aborts: a handle count near `isize::MAX` means leaked handles, and
/// wrapping it would free the channel while in use.
fn count_overflow() -> ! {
    std::process::abort()
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        if self.chan.senders.fetch_add(1, Ordering::Relaxed) > isize::MAX as usize {
            count_overflow();
        }
        Self {
            chan: self.chan.clone(),
            sink: SinkState::default(),
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        if self.chan.receivers.fetch_add(1, Ordering::Relaxed) > isize::MAX as usize {
            count_overflow();
        }
        Self {
            chan: self.chan.clone(),
            stream_wait: None,
            slip: Slip::new(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Some(id) = self.sink.wait.take() {
            self.chan
                .send_waiters(Priority::Normal.index())
                .cancel_and_forward(id);
        }
        // AcqRel: the last sender's close follows every other sender's
        // last use of the channel.
        if self.chan.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.chan.close();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if let Some(id) = self.stream_wait.take() {
            self.chan.recv_waiters().cancel_and_forward(id);
        }
        // AcqRel: as for `Sender`.
        if self.chan.receivers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.chan.close_and_discard();
        }
    }
}

/// Methods both handles share.
macro_rules! common_methods {
    () => {
        /// Closes the channel: sends fail from now on (handing the value
        /// back), receivers drain what is queued and then see
        /// `Disconnected`, and every blocked sender and receiver wakes.
        /// Returns true if this call closed it.
        pub fn close(&self) -> bool {
            self.chan.close()
        }

        /// True once the channel is closed (by `close` or by the last
        /// sender or receiver going away).
        pub fn is_closed(&self) -> bool {
            self.chan.is_closed()
        }

        /// Messages queued in all lanes (a snapshot).
        pub fn len(&self) -> usize {
            self.chan.len()
        }

        /// True if no lane holds a message (a snapshot).
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// Messages queued in the lane of `priority` (a snapshot).
        pub fn len_of(&self, priority: Priority) -> usize {
            self.chan.len_of(priority.index())
        }

        /// The total capacity of all lanes.
        pub fn capacity(&self) -> usize {
            Priority::ALL.iter().map(|p| self.capacity_of(*p)).sum()
        }

        /// The capacity of the lane of `priority`.
        pub fn capacity_of(&self, priority: Priority) -> usize {
            self.chan.capacity_of(priority.index())
        }
    };
}

impl<T> Sender<T> {
    common_methods!();

    /// Sends `value` on the `Normal` lane, waiting while it is full.
    ///
    /// # Errors
    ///
    /// [`SendError`] with the value if the channel is closed.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.send_with(Priority::Normal, value)
    }

    /// Sends `value` on the lane of `priority`, waiting while it is full.
    ///
    /// # Errors
    ///
    /// [`SendError`] with the value if the channel is closed.
    pub fn send_with(&self, priority: Priority, value: T) -> Result<(), SendError<T>> {
        // One inlined attempt first: when the lane has room, the value goes
        // straight from the caller into its slot (`Chan::try_send_once`).
        let Err(value) = self.chan.try_send_once(priority.index(), value) else {
            return Ok(());
        };
        self.chan
            .send(priority.index(), value, None)
            .map_err(|e| SendError(e.into_inner()))
    }

    /// Sends `value` on the `Normal` lane if it has room now.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] or [`TrySendError::Disconnected`], with the
    /// value.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.try_send_with(Priority::Normal, value)
    }

    /// Sends `value` on the lane of `priority` if it has room now.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] or [`TrySendError::Disconnected`], with the
    /// value.
    pub fn try_send_with(&self, priority: Priority, value: T) -> Result<(), TrySendError<T>> {
        // No `try_send_once` first, unlike the waiting sends: `Chan::try_send`
        // inlines already (5.2 ns a send either way), and a caller spinning
        // on `Full` would make two attempts per spin (1p1c `u64`, 10
        // alternations: 76-112 → 45-103 M msg/s with it).
        self.chan.try_send(priority.index(), value)
    }

    /// Sends `value` on the `Normal` lane, waiting at most `timeout` for
    /// room.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] or [`SendTimeoutError::Disconnected`],
    /// with the value.
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_timeout_with(Priority::Normal, value, timeout)
    }

    /// Sends `value` on the lane of `priority`, waiting at most `timeout`
    /// for room.
    ///
    /// # Errors
    ///
    /// As [`Sender::send_timeout`].
    pub fn send_timeout_with(
        &self,
        priority: Priority,
        value: T,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError<T>> {
        // Before reading the clock: a lane with room needs no deadline
        // (one thread into an empty lane: 30.7 → 5.3 ns a send).
        let Err(value) = self.chan.try_send_once(priority.index(), value) else {
            return Ok(());
        };
        self.chan
            .send(priority.index(), value, Instant::now().checked_add(timeout))
    }

    /// Sends `value` on the lane of `priority`, waiting until `deadline`
    /// (`None`: for ever) for room.
    ///
    /// # Errors
    ///
    /// As [`Sender::send_timeout`].
    pub fn send_deadline_with(
        &self,
        priority: Priority,
        value: T,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<T>> {
        // One inlined attempt first, as in `send_with`.
        let Err(value) = self.chan.try_send_once(priority.index(), value) else {
            return Ok(());
        };
        self.chan.send(priority.index(), value, deadline)
    }

    /// Sends every value in `items` on the `Normal` lane, in order, waiting
    /// for room as needed. Sent values are drained from `items`; this takes
    /// runs of free slots with one atomic step each, which is much faster
    /// than one `send` per value.
    ///
    /// # Errors
    ///
    /// If the channel closes, `Err(SendError(()))`: the values not sent stay
    /// in `items`, in order.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = lanebus::bounded(4);
    /// let mut items = vec![1, 2, 3];
    /// tx.send_batch(&mut items).unwrap();
    /// assert!(items.is_empty());
    /// let mut out = Vec::new();
    /// assert_eq!(rx.recv_batch(&mut out, 10), Ok(3));
    /// assert_eq!(out, [1, 2, 3]);
    /// ```
    pub fn send_batch(&self, items: &mut Vec<T>) -> Result<(), SendError<()>> {
        self.send_batch_with(Priority::Normal, items)
    }

    /// [`Sender::send_batch`] on the lane of `priority`.
    ///
    /// # Errors
    ///
    /// As [`Sender::send_batch`].
    pub fn send_batch_with(
        &self,
        priority: Priority,
        items: &mut Vec<T>,
    ) -> Result<(), SendError<()>> {
        self.chan
            .send_batch(priority.index(), items)
            .map_err(|()| SendError(()))
    }

    /// A future that sends `value` on the `Normal` lane. Dropping it before
    /// it completes drops the value.
    pub fn send_async(&self, value: T) -> SendFut<'_, T> {
        self.send_with_async(Priority::Normal, value)
    }

    /// A future that sends `value` on the lane of `priority`.
    pub fn send_with_async(&self, priority: Priority, value: T) -> SendFut<'_, T> {
        SendFut::new(self, priority, value)
    }

    /// True if `self` and `other` send into the same channel.
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

impl<T> Receiver<T> {
    common_methods!();

    /// Receives the highest-priority message, waiting while the channel is
    /// empty.
    ///
    /// For messages of 64 bytes or more (with the slot's stamp), a receive
    /// that finds the channel empty first lets the producers get ahead: it
    /// waits up to 1.5 µs for a lane to be 256 messages deep (or half its
    /// capacity), so that it then reads what the producers have finished
    /// writing rather than each slot as it is written, which costs a
    /// cache-line exchange per line of every message. A message in the
    /// Urgent lane ends that wait at once, and a receiver for which the
    /// waits do not fill the lane (request and reply, a trickle) stops
    /// waiting, for longer each time. [`Receiver::try_recv`],
    /// [`Receiver::recv_deadline`], [`Receiver::recv_timeout`],
    /// [`Receiver::recv_batch`] and the async receive never wait this way.
    ///
    /// # Errors
    ///
    /// [`RecvError`] once the channel is closed and every lane is empty.
    #[inline]
    pub fn recv(&self) -> Result<T, RecvError> {
        // One inlined attempt first: when a message is there, the caller
        // reads it straight from its slot (`Chan::try_recv_once`).
        if let Some(value) = self.chan.try_recv_once() {
            return Ok(value);
        }
        self.chan.slip(&self.slip);
        self.chan.recv(None, RecvError, RecvError)
    }

    /// Receives the highest-priority message if one is queued.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`], or [`TryRecvError::Disconnected`] once the
    /// channel is closed and every lane is empty.
    #[inline]
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        if let Some(value) = self.chan.try_recv_once() {
            return Ok(value);
        }
        // Busy (a send in progress but not finished) counts as empty: as
        // far as this call can tell, nothing is there yet.
        self.chan
            .try_recv_or(TryRecvError::Empty, TryRecvError::Disconnected)
    }

    /// Receives the highest-priority message, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`], or [`RecvTimeoutError::Disconnected`]
    /// once the channel is closed and every lane is empty.
    #[inline]
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        // Before reading the clock: a message that is there needs no
        // deadline.
        if let Some(value) = self.chan.try_recv_once() {
            return Ok(value);
        }
        // Straight to the full path: `recv_deadline` would try once more.
        self.chan.recv(
            Instant::now().checked_add(timeout),
            RecvTimeoutError::Disconnected,
            RecvTimeoutError::Timeout,
        )
    }

    /// Receives the highest-priority message, waiting until `deadline`
    /// (`None`: for ever).
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv_timeout`].
    #[inline]
    pub fn recv_deadline(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        if let Some(value) = self.chan.try_recv_once() {
            return Ok(value);
        }
        self.chan.recv(
            deadline,
            RecvTimeoutError::Disconnected,
            RecvTimeoutError::Timeout,
        )
    }

    /// Waits for at least one message, then appends up to `max` messages
    /// that are ready, without waiting, highest lane first, to `out`.
    /// Returns how many it appended (`Ok(0)` only when `max` is 0).
    ///
    /// # Errors
    ///
    /// [`RecvError`] once the channel is closed and every lane is empty.
    pub fn recv_batch(&self, out: &mut Vec<T>, max: usize) -> Result<usize, RecvError> {
        self.chan.recv_batch(out, max).map_err(|()| RecvError)
    }

    /// Appends up to `max` messages that are ready now to `out`, highest
    /// lane first, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] if nothing is ready (and `max > 0`),
    /// [`TryRecvError::Disconnected`] once closed and empty.
    pub fn try_recv_batch(&self, out: &mut Vec<T>, max: usize) -> Result<usize, TryRecvError> {
        self.chan.try_recv_batch(out, max)
    }

    /// A future that receives the highest-priority message.
    pub fn recv_async(&self) -> RecvFut<'_, T> {
        RecvFut::new(self)
    }

    /// A blocking iterator over received messages; ends when the channel is
    /// closed and empty.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// An iterator over the messages queued now; it never waits.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }

    /// True if `self` and `other` receive from the same channel.
    pub fn same_channel(&self, other: &Receiver<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

/// Blocking iterator returned by [`Receiver::iter`].
pub struct Iter<'a, T> {
    rx: &'a Receiver<T>,
}

/// Non-blocking iterator returned by [`Receiver::try_iter`].
pub struct TryIter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("len", &self.len())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("len", &self.len())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Iter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Iter { .. }")
    }
}

impl<T> fmt::Debug for TryIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TryIter { .. }")
    }
}
