//! Async sending and receiving: [`SendFut`], [`RecvFut`], and the
//! `futures_core::Stream` / `futures_sink::Sink` impls.
//!
//! Async tasks wait on the same waiter lists as blocked threads (see
//! [`crate::wait`]). A future dropped while registered passes on a wake-up
//! it had already received, so cancellation never strands a message.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use futures_core::{FusedFuture, FusedStream, Stream};
use futures_sink::Sink;

use crate::channel::{Receiver, Sender};
use crate::error::{RecvError, SendError};
use crate::priority::Priority;
use crate::wait::WaitId;

/// A future that sends one value; returned by [`Sender::send_async`].
/// Dropping it before it completes drops the value.
#[must_use = "futures do nothing unless polled"]
pub struct SendFut<'a, T> {
    sender: &'a Sender<T>,
    lane: usize,
    value: Option<T>,
    wait: Option<WaitId>,
}

// The value is moved, never pinned.
impl<T> Unpin for SendFut<'_, T> {}

impl<'a, T> SendFut<'a, T> {
    pub(crate) fn new(sender: &'a Sender<T>, priority: Priority, value: T) -> Self {
        Self {
            sender,
            lane: priority.index(),
            value: Some(value),
            wait: None,
        }
    }

    /// The priority this future sends with.
    pub fn priority(&self) -> Priority {
        Priority::ALL[self.lane]
    }
}

/// # Panics
///
/// If polled again after it returned `Ready`.
impl<T> Future for SendFut<'_, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(this.value.is_some(), "SendFut polled after completion");
        this.sender
            .chan
            .poll_send(this.lane, &mut this.value, &mut this.wait, false, cx)
            .map(|r| r.map_err(SendError))
    }
}

impl<T> FusedFuture for SendFut<'_, T> {
    fn is_terminated(&self) -> bool {
        self.value.is_none()
    }
}

impl<T> Drop for SendFut<'_, T> {
    fn drop(&mut self) {
        if let Some(id) = self.wait.take() {
            self.sender
                .chan
                .send_waiters(self.lane)
                .cancel_and_forward(id);
        }
    }
}

/// A future that receives one message; returned by [`Receiver::recv_async`].
#[must_use = "futures do nothing unless polled"]
pub struct RecvFut<'a, T> {
    receiver: &'a Receiver<T>,
    wait: Option<WaitId>,
    done: bool,
}

impl<'a, T> RecvFut<'a, T> {
    pub(crate) fn new(receiver: &'a Receiver<T>) -> Self {
        Self {
            receiver,
            wait: None,
            done: false,
        }
    }
}

/// # Panics
///
/// If polled again after it returned `Ready`.
impl<T> Future for RecvFut<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(!this.done, "RecvFut polled after completion");
        let chan = &this.receiver.chan;
        let out = chan.poll_recv(&mut this.wait, false, cx);
        if out.is_ready() {
            this.done = true;
        }
        out.map(|v| v.ok_or(RecvError))
    }
}

impl<T> FusedFuture for RecvFut<'_, T> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<T> Drop for RecvFut<'_, T> {
    fn drop(&mut self) {
        if let Some(id) = self.wait.take() {
            self.receiver.chan.recv_waiters().cancel_and_forward(id);
        }
    }
}

/// Yields messages in priority order; ends when the channel is closed and
/// empty.
///
/// After `poll_next` returns `Pending` the receiver stays registered for a
/// wake-up until it is polled again or dropped, even if its task has moved
/// on (its `next()` lost a `select!`). So that such an idle stream cannot
/// strand a message, a wake-up that reaches it is also passed to the next
/// waiting receiver. The price: while only streams wait on a channel, each
/// message wakes all of them (one gets it, the rest poll and wait again).
/// Many tasks sharing one channel wake one at a time with
/// [`Receiver::recv_async`], whose futures deregister when dropped.
impl<T> Stream for Receiver<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        this.chan.poll_recv(&mut this.stream_wait, true, cx)
    }
}

impl<T> FusedStream for Receiver<T> {
    fn is_terminated(&self) -> bool {
        self.chan.is_closed() && self.chan.len() == 0
    }
}

/// Sends on the `Normal` lane. `start_send` keeps the value in the sender
/// until there is room; `poll_ready` and `poll_flush` wait for it to go out.
/// A `start_send` while a previous value is still buffered (no successful
/// `poll_ready` in between) hands the new value back in the error.
/// `poll_close` flushes but does not close the channel (other senders may
/// still use it); drop the sender, or call [`Sender::close`], to close it.
/// A value still buffered when the sender is dropped is dropped with it.
///
/// As with the `Stream` impl, a sink waiting for room stays registered
/// while its task has moved on, so a free slot also wakes the next waiting
/// sender, and while only sinks wait, each free slot wakes all of them;
/// [`Sender::send_async`] futures wake one at a time.
impl<T> Sink<T> for Sender<T> {
    type Error = SendError<T>;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.poll_flush(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: T) -> Result<(), Self::Error> {
        let this = self.get_mut();
        if this.sink.item.is_some() {
            // `start_send` without a `poll_ready` that returned `Ready(Ok)`:
            // the previous value is still waiting, so hand this one back.
            return Err(SendError(item));
        }
        match this.chan.try_send(Priority::Normal.index(), item) {
            Ok(()) => Ok(()),
            Err(crate::error::TrySendError::Full(v)) => {
                this.sink.item = Some(v);
                Ok(())
            }
            Err(e) => Err(SendError(e.into_inner())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        if this.sink.item.is_none() {
            return Poll::Ready(Ok(()));
        }
        let lane = Priority::Normal.index();
        this.chan
            .poll_send(lane, &mut this.sink.item, &mut this.sink.wait, true, cx)
            .map(|r| r.map_err(SendError))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.poll_flush(cx)
    }
}

impl<T> fmt::Debug for SendFut<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendFut")
            .field("priority", &self.priority())
            .field("done", &self.value.is_none())
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for RecvFut<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvFut")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
