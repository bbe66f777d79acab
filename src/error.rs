//! Error types. Every error of a send hands the value back, and `Debug`
//! never needs `T: Debug`.

use core::fmt;

/// `send` failed: every receiver is gone or the channel was closed. The value
/// is handed back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub struct SendError<T>(pub T);

/// `try_send` failed; the value is handed back.
#[derive(PartialEq, Eq, Clone, Copy)]
#[non_exhaustive]
pub enum TrySendError<T> {
    /// The lane is full.
    Full(T),
    /// Every receiver is gone or the channel was closed.
    Disconnected(T),
}

/// `send_timeout` failed; the value is handed back.
#[derive(PartialEq, Eq, Clone, Copy)]
#[non_exhaustive]
pub enum SendTimeoutError<T> {
    /// The lane stayed full until the deadline.
    Timeout(T),
    /// Every receiver is gone or the channel was closed.
    Disconnected(T),
}

/// `recv` failed: the channel is empty and closed (every sender is gone or
/// `close` was called).
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub struct RecvError;

/// `try_recv` found nothing to receive.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
#[non_exhaustive]
pub enum TryRecvError {
    /// Every lane is empty. (A send still being written, which has not
    /// returned, does not count; a message whose send returned is never
    /// missed, even when it waits behind such a write.)
    Empty,
    /// Every lane is empty and the channel is closed.
    Disconnected,
}

/// `recv_timeout` found nothing to receive before the deadline.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
#[non_exhaustive]
pub enum RecvTimeoutError {
    /// Nothing arrived before the deadline.
    Timeout,
    /// Every lane is empty and the channel is closed.
    Disconnected,
}

impl<T> SendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> TrySendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(v) | Self::Disconnected(v) => v,
        }
    }

    /// True if the lane was full.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }

    /// True if the channel is closed.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Disconnected(_))
    }
}

impl<T> SendTimeoutError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            Self::Timeout(v) | Self::Disconnected(v) => v,
        }
    }

    /// True if the deadline passed.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }

    /// True if the channel is closed.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Disconnected(_))
    }
}

impl<T> From<SendError<T>> for TrySendError<T> {
    fn from(err: SendError<T>) -> Self {
        Self::Disconnected(err.0)
    }
}

impl<T> From<SendError<T>> for SendTimeoutError<T> {
    fn from(err: SendError<T>) -> Self {
        Self::Disconnected(err.0)
    }
}

impl From<RecvError> for TryRecvError {
    fn from(_: RecvError) -> Self {
        Self::Disconnected
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(_: RecvError) -> Self {
        Self::Disconnected
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Disconnected(_) => f.write_str("Disconnected(..)"),
        }
    }
}

impl<T> fmt::Debug for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(_) => f.write_str("Timeout(..)"),
            Self::Disconnected(_) => f.write_str("Disconnected(..)"),
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sending on a closed channel")
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("sending on a full lane"),
            Self::Disconnected(_) => f.write_str("sending on a closed channel"),
        }
    }
}

impl<T> fmt::Display for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(_) => f.write_str("timed out waiting on send operation"),
            Self::Disconnected(_) => f.write_str("sending on a closed channel"),
        }
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("receiving on an empty and closed channel")
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("receiving on an empty channel"),
            Self::Disconnected => f.write_str("receiving on an empty and closed channel"),
        }
    }
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out waiting on receive operation"),
            Self::Disconnected => f.write_str("receiving on an empty and closed channel"),
        }
    }
}

impl<T> std::error::Error for SendError<T> {}
impl<T> std::error::Error for TrySendError<T> {}
impl<T> std::error::Error for SendTimeoutError<T> {}
impl std::error::Error for RecvError {}
impl std::error::Error for TryRecvError {}
impl std::error::Error for RecvTimeoutError {}

/// A send through a [`MemoryBudget`](crate::MemoryBudget) (a
/// [`BudgetedSender`](crate::BudgetedSender)) or a publish on a bus failed;
/// the value is handed back and nothing was delivered.
#[derive(PartialEq, Eq, Clone, Copy)]
#[non_exhaustive]
pub enum PublishError<T> {
    /// `try_*`: a lane (or a subscriber's queue) is full.
    Full(T),
    /// `try_*`: the budget does not admit this message at its priority now.
    OverBudget(T),
    /// The message is larger than the whole budget (or, on a bus, than its
    /// `max_message_bytes`); it can never be sent.
    TooLarge(T),
    /// The deadline passed first.
    Timeout(T),
    /// The channel (or bus) is closed.
    Closed(T),
    /// The topic name is not valid (bus only; see
    /// [`validate_topic`](crate::validate_topic)).
    InvalidTopic(T),
}

impl<T> PublishError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(v)
            | Self::OverBudget(v)
            | Self::TooLarge(v)
            | Self::Timeout(v)
            | Self::Closed(v)
            | Self::InvalidTopic(v) => v,
        }
    }

    /// The same error around another value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> PublishError<U> {
        match self {
            Self::Full(v) => PublishError::Full(f(v)),
            Self::OverBudget(v) => PublishError::OverBudget(f(v)),
            Self::TooLarge(v) => PublishError::TooLarge(f(v)),
            Self::Timeout(v) => PublishError::Timeout(f(v)),
            Self::Closed(v) => PublishError::Closed(f(v)),
            Self::InvalidTopic(v) => PublishError::InvalidTopic(f(v)),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Full(_) => "Full",
            Self::OverBudget(_) => "OverBudget",
            Self::TooLarge(_) => "TooLarge",
            Self::Timeout(_) => "Timeout",
            Self::Closed(_) => "Closed",
            Self::InvalidTopic(_) => "InvalidTopic",
        }
    }
}

impl<T> fmt::Debug for PublishError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(..)", self.name())
    }
}

impl<T> fmt::Display for PublishError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full(_) => "publishing on a full queue",
            Self::OverBudget(_) => "memory budget exhausted for this priority",
            Self::TooLarge(_) => {
                "message larger than the whole memory budget or the bus's message limit"
            }
            Self::Timeout(_) => "timed out waiting to publish",
            Self::Closed(_) => "publishing on a closed channel",
            Self::InvalidTopic(_) => "publishing on an invalid topic name",
        })
    }
}

impl<T> std::error::Error for PublishError<T> {}
