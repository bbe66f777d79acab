//! Where a pool takes its messages from: a channel [`Receiver`] or a bus
//! [`Subscription`] (one subscriber or one member of a consumer group).

use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Tracker;
use crate::chan::BatchTry;
use crate::wait::WaitList;
use crate::{Envelope, Receiver, Subscription};

/// What one non-blocking take found.
pub(crate) enum Take {
    /// This many messages were appended.
    Took(usize),
    /// Nothing is ready now.
    Empty,
    /// Nothing is ready, but a send is still being written: a worker must
    /// look again soon rather than park (see `BatchTry::Busy`).
    Busy,
    /// The source is closed and empty: nothing will ever come.
    Closed,
}

/// A source of messages for a pool. Implemented for [`Receiver<T>`] and
/// [`Subscription`]; sealed (see [`IntoSource`]).
pub(crate) trait Source<T>: Send + Sync + 'static {
    /// Takes up to `max` ready messages, highest lane first, appending them
    /// to `out` and runs of `(lane, count)` to `lanes`.
    fn take(&self, out: &mut Vec<T>, lanes: &mut Vec<(usize, usize)>, max: usize) -> Take;
    /// The list a thread registers on to be woken when a message arrives
    /// (or the source closes).
    fn waiters(&self) -> &WaitList;
    /// Closes the source: senders get their values back from now on.
    fn close(&self);
    /// Messages queued in the source now.
    fn len(&self) -> usize;
    /// The ordering key the source itself gives a message.
    fn key(&self, item: &T) -> Option<u64>;
    /// When the message was enqueued, if the source stamps messages.
    fn enqueued_at(&self, item: &T, clock: &Clock) -> Option<Instant>;
    /// The tracker the message carries, if the source knows of one.
    fn tracker<'a>(&self, item: &'a T) -> Option<&'a Tracker>;
}

/// One reading of both clocks, to turn a unix-epoch stamp into an
/// [`Instant`] without reading them per message.
pub(crate) struct Clock {
    pub(crate) now: Instant,
    unix_nanos: u64,
}

impl Clock {
    pub(crate) fn now() -> Self {
        let unix_nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Self {
            now: Instant::now(),
            unix_nanos,
        }
    }

    /// The instant of a unix-epoch stamp in nanoseconds (`0`: none); a stamp
    /// from the future (clock skew) counts as now.
    fn instant_of(&self, unix_nanos: u64) -> Option<Instant> {
        if unix_nanos == 0 {
            return None;
        }
        let age = Duration::from_nanos(self.unix_nanos.saturating_sub(unix_nanos));
        Some(self.now.checked_sub(age).unwrap_or(self.now))
    }
}

/// The `u64` ordering key of a string key. Any two equal strings give equal
/// keys; two different strings may collide, which only means their messages
/// are handled one at a time too (never out of order).
pub fn key_of(key: &str) -> u64 {
    // SipHash with fixed keys: the same key gives the same number in every
    // process and run.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

impl<T: Send + 'static> Source<T> for Receiver<T> {
    fn take(&self, out: &mut Vec<T>, lanes: &mut Vec<(usize, usize)>, max: usize) -> Take {
        match self.chan.try_recv_batch_logged(out, max, lanes) {
            BatchTry::Took(n) => Take::Took(n),
            BatchTry::Empty => Take::Empty,
            BatchTry::Busy => Take::Busy,
            BatchTry::Disconnected => Take::Closed,
        }
    }

    fn waiters(&self) -> &WaitList {
        self.chan.recv_waiters()
    }

    fn close(&self) {
        Receiver::close(self);
    }

    fn len(&self) -> usize {
        Receiver::len(self)
    }

    fn key(&self, _: &T) -> Option<u64> {
        None
    }

    fn enqueued_at(&self, _: &T, _: &Clock) -> Option<Instant> {
        None
    }

    fn tracker<'a>(&self, _: &'a T) -> Option<&'a Tracker> {
        None
    }
}

impl Source<Envelope> for Subscription {
    fn take(&self, out: &mut Vec<Envelope>, lanes: &mut Vec<(usize, usize)>, max: usize) -> Take {
        match self.try_take_logged(out, max, lanes) {
            BatchTry::Took(n) => Take::Took(n),
            BatchTry::Empty => Take::Empty,
            BatchTry::Busy => Take::Busy,
            BatchTry::Disconnected => Take::Closed,
        }
    }

    fn waiters(&self) -> &WaitList {
        self.receiver().chan.recv_waiters()
    }

    fn close(&self) {
        self.receiver().close();
    }

    fn len(&self) -> usize {
        Subscription::len(self)
    }

    fn key(&self, item: &Envelope) -> Option<u64> {
        item.key().map(key_of)
    }

    fn enqueued_at(&self, item: &Envelope, clock: &Clock) -> Option<Instant> {
        clock.instant_of(item.enqueued_at())
    }

    fn tracker<'a>(&self, item: &'a Envelope) -> Option<&'a Tracker> {
        item.tracker()
    }
}

/// What a [`WorkerPool`](super::WorkerPool) can consume: a channel
/// [`Receiver<T>`] (the pool handles `T`) or a bus [`Subscription`] (the
/// pool handles [`Envelope`]s; a consumer group's member works the same).
///
/// Sealed: the pool relies on how these sources wake waiting threads.
pub trait IntoSource<T>: sealed::Sealed {
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn into_source(self) -> Box<dyn Source<T>>;
}

mod sealed {
    pub trait Sealed {}
    impl<T> Sealed for crate::Receiver<T> {}
    impl Sealed for crate::Subscription {}
}

impl<T: Send + 'static> IntoSource<T> for Receiver<T> {
    #[allow(private_interfaces)]
    fn into_source(self) -> Box<dyn Source<T>> {
        Box::new(self)
    }
}

impl IntoSource<Envelope> for Subscription {
    #[allow(private_interfaces)]
    fn into_source(self) -> Box<dyn Source<Envelope>> {
        Box::new(self)
    }
}
