//! A typed channel under a [`MemoryBudget`]: [`BudgetedSender`] takes a
//! [`Permit`] for each value's [`Weigh::weight`] before sending it, and the
//! value travels as [`Permitted`] with its permit, so its bytes stay
//! counted until the receiver is done with it.

use core::fmt;
use core::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use crate::budget::{AcquireError, MemoryBudget, Permit, Weigh};
use crate::channel::{ChannelBuilder, Receiver, Sender};
use crate::error::{PublishError, SendTimeoutError, TrySendError};
use crate::priority::Priority;

/// A value with the [`Permit`] for its bytes. The bytes are given back
/// when this is dropped, or when [`Permitted::into_inner`] takes the value
/// out.
pub struct Permitted<T> {
    value: T,
    permit: Permit,
}

impl<T> Permitted<T> {
    /// Pairs a value with its permit.
    pub fn new(value: T, permit: Permit) -> Self {
        Self { value, permit }
    }

    /// The value; its bytes go back to the budget now.
    pub fn into_inner(self) -> T {
        self.value
    }

    /// The value and its permit, to release the bytes later.
    pub fn into_parts(self) -> (T, Permit) {
        (self.value, self.permit)
    }

    /// The permit (how many bytes this value holds).
    pub fn permit(&self) -> &Permit {
        &self.permit
    }
}

impl<T> Deref for Permitted<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> DerefMut for Permitted<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Permitted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permitted")
            .field("value", &self.value)
            .field("bytes", &self.permit.bytes())
            .finish()
    }
}

impl ChannelBuilder {
    /// Creates a channel whose sends are charged to `budget`: see
    /// [`BudgetedSender`].
    ///
    /// # Panics
    ///
    /// As [`ChannelBuilder::build`].
    ///
    /// # Examples
    ///
    /// ```
    /// use lanebus::{ChannelBuilder, MemoryBudget, PublishError, Priority};
    ///
    /// let budget = MemoryBudget::builder(64).high_watermark(32).build();
    /// let (tx, rx) = ChannelBuilder::new().build_budgeted::<[u8; 16]>(budget.clone());
    /// tx.try_send([1; 16]).unwrap();
    /// tx.try_send([2; 16]).unwrap();
    /// // 32 bytes held: Normal is over the watermark now, Urgent still passes.
    /// assert!(matches!(tx.try_send([3; 16]), Err(PublishError::OverBudget(_))));
    /// tx.try_send_with(Priority::Urgent, [4; 16]).unwrap();
    /// assert_eq!(*rx.recv().unwrap(), [4; 16]);
    /// assert_eq!(budget.in_use(), 32); // dropped: its 16 bytes are back
    /// ```
    pub fn build_budgeted<T: Weigh>(
        self,
        budget: MemoryBudget,
    ) -> (BudgetedSender<T>, Receiver<Permitted<T>>) {
        let (sender, receiver) = self.build();
        (BudgetedSender { sender, budget }, receiver)
    }
}

/// The sending side of a channel under a [`MemoryBudget`] (see
/// [`ChannelBuilder::build_budgeted`]). Each send first takes a permit for
/// the value's weight at its priority (waiting, timing out or failing as the
/// form says), then sends the value with it. Every error hands the value
/// back and holds no bytes.
pub struct BudgetedSender<T> {
    sender: Sender<Permitted<T>>,
    budget: MemoryBudget,
}

impl<T> Clone for BudgetedSender<T> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
            budget: self.budget.clone(),
        }
    }
}

impl<T> fmt::Debug for BudgetedSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetedSender")
            .field("sender", &self.sender)
            .field("budget", &self.budget)
            .finish()
    }
}

fn from_acquire<T>(err: AcquireError, value: T) -> PublishError<T> {
    match err {
        AcquireError::OverBudget => PublishError::OverBudget(value),
        AcquireError::TooLarge => PublishError::TooLarge(value),
        AcquireError::Timeout => PublishError::Timeout(value),
    }
}

impl<T: Weigh> BudgetedSender<T> {
    /// Sends on the `Normal` lane, waiting for budget and room.
    ///
    /// # Errors
    ///
    /// `TooLarge` (at once) or `Closed`.
    pub fn send(&self, value: T) -> Result<(), PublishError<T>> {
        self.send_deadline_with(Priority::Normal, value, None)
    }

    /// Sends on the lane of `priority`, waiting for budget and room.
    ///
    /// # Errors
    ///
    /// `TooLarge` (at once) or `Closed`.
    pub fn send_with(&self, priority: Priority, value: T) -> Result<(), PublishError<T>> {
        self.send_deadline_with(priority, value, None)
    }

    /// Sends on the `Normal` lane without waiting.
    ///
    /// # Errors
    ///
    /// `OverBudget`, `TooLarge`, `Full` or `Closed`.
    pub fn try_send(&self, value: T) -> Result<(), PublishError<T>> {
        self.try_send_with(Priority::Normal, value)
    }

    /// Sends on the lane of `priority` without waiting.
    ///
    /// # Errors
    ///
    /// `OverBudget`, `TooLarge`, `Full` or `Closed`.
    pub fn try_send_with(&self, priority: Priority, value: T) -> Result<(), PublishError<T>> {
        if self.sender.is_closed() {
            return Err(PublishError::Closed(value));
        }
        let permit = match self.budget.try_acquire(priority, value.weight()) {
            Ok(permit) => permit,
            Err(e) => return Err(from_acquire(e, value)),
        };
        self.sender
            .try_send_with(priority, Permitted { value, permit })
            .map_err(|e| match e {
                TrySendError::Full(p) => PublishError::Full(p.value),
                TrySendError::Disconnected(p) => PublishError::Closed(p.value),
            })
    }

    /// Sends on the lane of `priority`, waiting at most `timeout` in all.
    ///
    /// # Errors
    ///
    /// `Timeout`, `TooLarge` (at once) or `Closed`.
    pub fn send_timeout_with(
        &self,
        priority: Priority,
        value: T,
        timeout: Duration,
    ) -> Result<(), PublishError<T>> {
        self.send_deadline_with(priority, value, Instant::now().checked_add(timeout))
    }

    /// Sends on the lane of `priority`, waiting until `deadline` (`None`:
    /// for ever) for budget, then for room.
    ///
    /// # Errors
    ///
    /// `Timeout`, `TooLarge` (at once) or `Closed`.
    pub fn send_deadline_with(
        &self,
        priority: Priority,
        value: T,
        deadline: Option<Instant>,
    ) -> Result<(), PublishError<T>> {
        if self.sender.is_closed() {
            return Err(PublishError::Closed(value));
        }
        let permit = match self
            .budget
            .acquire_deadline(priority, value.weight(), deadline)
        {
            Ok(permit) => permit,
            Err(e) => return Err(from_acquire(e, value)),
        };
        self.sender
            .send_deadline_with(priority, Permitted { value, permit }, deadline)
            .map_err(|e| match e {
                SendTimeoutError::Timeout(p) => PublishError::Timeout(p.value),
                SendTimeoutError::Disconnected(p) => PublishError::Closed(p.value),
            })
    }

    /// Sends on the lane of `priority`, waiting asynchronously for budget
    /// and room. Dropping the future before it completes drops the value
    /// and holds no bytes.
    ///
    /// # Errors
    ///
    /// `TooLarge` (at once) or `Closed`.
    pub async fn send_with_async(
        &self,
        priority: Priority,
        value: T,
    ) -> Result<(), PublishError<T>> {
        if self.sender.is_closed() {
            return Err(PublishError::Closed(value));
        }
        let permit = match self.budget.acquire_async(priority, value.weight()).await {
            Ok(permit) => permit,
            Err(e) => return Err(from_acquire(e, value)),
        };
        self.sender
            .send_with_async(priority, Permitted { value, permit })
            .await
            .map_err(|e| PublishError::Closed(e.0.value))
    }

    /// The budget this sender charges.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// The underlying channel sender (sending on it bypasses the budget
    /// only if you pair values with [`Permit::none`]).
    pub fn inner(&self) -> &Sender<Permitted<T>> {
        &self.sender
    }

    /// Closes the channel; see [`Sender::close`].
    pub fn close(&self) -> bool {
        self.sender.close()
    }

    /// True once the channel is closed.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}
