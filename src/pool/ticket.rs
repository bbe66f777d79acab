//! Completion tracking: a [`Ticket`] follows one message through a pool.

use core::fmt;
use core::future::Future;
use std::time::{Duration, Instant};

use crate::loom::{handshake_load, Arc, AtomicUsize, Ordering};
use crate::wait::{Attempt, WaitList};

/// Where a tracked message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TicketStatus {
    /// Sent, or waiting to be retried.
    Queued,
    /// A handler is working on it.
    InFlight,
    /// A handler acked it. Final.
    Acked,
    /// It went to the dead letters. Final.
    DeadLettered,
    /// Every copy of it was dropped unsettled: never handled by a pool
    /// (received some other way, discarded with a channel, or returned by
    /// a shutdown and then dropped). Final.
    Dropped,
}

const QUEUED: usize = 0;
const IN_FLIGHT: usize = 1;
const ACKED: usize = 2;
const DEAD: usize = 3;
const DROPPED: usize = 4;

impl TicketStatus {
    /// True for the final states.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TicketStatus::Acked | TicketStatus::DeadLettered | TicketStatus::Dropped
        )
    }

    fn from_word(word: usize) -> Self {
        match word {
            QUEUED => TicketStatus::Queued,
            IN_FLIGHT => TicketStatus::InFlight,
            ACKED => TicketStatus::Acked,
            DEAD => TicketStatus::DeadLettered,
            _ => TicketStatus::Dropped,
        }
    }

    fn word(self) -> usize {
        match self {
            TicketStatus::Queued => QUEUED,
            TicketStatus::InFlight => IN_FLIGHT,
            TicketStatus::Acked => ACKED,
            TicketStatus::DeadLettered => DEAD,
            TicketStatus::Dropped => DROPPED,
        }
    }
}

/// What a ticket and its trackers share.
struct Cell {
    status: AtomicUsize,
    waiters: WaitList,
}

impl Cell {
    /// Moves to `status` unless already final. A final status wakes every
    /// waiter: the SeqCst RMW here, then `WaitList::notify`'s
    /// `handshake_load`, against a waiter's register-then-`handshake_load`
    /// of `status` (the protocol of `src/wait.rs`).
    fn set(&self, status: TicketStatus) {
        let new = status.word();
        let mut now = self.status.load(Ordering::Relaxed);
        loop {
            if TicketStatus::from_word(now).is_final() {
                return;
            }
            match self
                .status
                .compare_exchange_weak(now, new, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(current) => now = current,
            }
        }
        if status.is_final() {
            self.waiters.notify_all();
        }
    }

    fn attempt(&self) -> Attempt<TicketStatus> {
        let status = TicketStatus::from_word(handshake_load(&self.status));
        if status.is_final() {
            Attempt::Done(status)
        } else {
            Attempt::Wait
        }
    }
}

/// The sender's half: the status of one tracked message. Cheap to clone.
///
/// With fan-out (one tracked message published to several pools), the
/// first pool to settle a copy decides the final status.
#[derive(Clone)]
pub struct Ticket {
    cell: Arc<Cell>,
}

impl Ticket {
    /// The status now.
    pub fn status(&self) -> TicketStatus {
        TicketStatus::from_word(self.cell.status.load(Ordering::SeqCst))
    }

    /// Waits for a final status.
    pub fn wait(&self) -> TicketStatus {
        match self.cell.waiters.block(None, || self.cell.attempt()) {
            Ok(status) => status,
            Err(_) => unreachable!("no deadline"),
        }
    }

    /// Waits at most `timeout` for a final status; `None` if there is none
    /// by then.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<TicketStatus> {
        self.wait_deadline(Instant::now().checked_add(timeout))
    }

    /// Waits until `deadline` (`None`: for ever) for a final status.
    pub fn wait_deadline(&self, deadline: Option<Instant>) -> Option<TicketStatus> {
        self.cell
            .waiters
            .block(deadline, || self.cell.attempt())
            .ok()
    }

    /// A future of the final status.
    pub fn settled(&self) -> impl Future<Output = TicketStatus> + '_ {
        self.cell.waiters.wait_async(|| self.cell.attempt())
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("status", &self.status())
            .finish()
    }
}

/// Marks the message dropped when the last tracker goes unsettled.
struct Owner {
    cell: Arc<Cell>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.cell.set(TicketStatus::Dropped);
    }
}

/// The message's half of a [`Ticket`]: travels with the message (inside a
/// [`Tracked`] value, or a [`Message`](crate::Message) made with
/// [`Message::tracked`](crate::Message::tracked)); a pool updates it. When
/// the last clone is dropped before the message was settled, the ticket
/// reads [`TicketStatus::Dropped`].
#[derive(Clone)]
pub struct Tracker {
    owner: Arc<Owner>,
}

impl Tracker {
    /// A new tracker and its ticket, [`TicketStatus::Queued`].
    pub fn new() -> (Tracker, Ticket) {
        let cell = Arc::new(Cell {
            status: AtomicUsize::new(QUEUED),
            waiters: WaitList::new(),
        });
        let ticket = Ticket { cell: cell.clone() };
        (
            Tracker {
                owner: Arc::new(Owner { cell }),
            },
            ticket,
        )
    }

    /// Moves the ticket to `status`, unless it is final already.
    pub fn set(&self, status: TicketStatus) {
        self.owner.cell.set(status);
    }
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = TicketStatus::from_word(self.owner.cell.status.load(Ordering::SeqCst));
        f.debug_struct("Tracker").field("status", &status).finish()
    }
}

/// A channel message with a tracker: send `Tracked<T>` on a channel and
/// build the pool with [`PoolBuilder::track`](super::PoolBuilder::track)
/// and [`Tracked::tracker_of`].
///
/// ```
/// use lanebus::pool::{Delivery, Outcome, Tracked, TicketStatus, WorkerPool};
///
/// let (tx, rx) = lanebus::bounded::<Tracked<u32>>(8);
/// let pool = WorkerPool::builder()
///     .workers(1)
///     .track(Tracked::tracker_of)
///     .build(rx, |_: &Delivery<Tracked<u32>>| Outcome::Ack);
/// let (message, ticket) = Tracked::new(7);
/// tx.send(message).unwrap();
/// assert_eq!(ticket.wait(), TicketStatus::Acked);
/// drop(tx);
/// pool.join();
/// ```
#[derive(Debug)]
pub struct Tracked<T> {
    /// The message.
    pub value: T,
    tracker: Tracker,
}

impl<T> Tracked<T> {
    /// Wraps `value` with a new tracker; returns its ticket too.
    pub fn new(value: T) -> (Self, Ticket) {
        let (tracker, ticket) = Tracker::new();
        (Self { value, tracker }, ticket)
    }

    /// The tracker (for [`PoolBuilder::track`](super::PoolBuilder::track)).
    pub fn tracker_of(this: &Self) -> Option<&Tracker> {
        Some(&this.tracker)
    }

    /// The value; the ticket reads `Dropped` unless it was settled.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> core::ops::Deref for Tracked<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}
