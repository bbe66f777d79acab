//! The waiter list: parked threads and async wakers waiting for one
//! condition ("a message arrived", "a slot came free").
//!
//! Fast path: a notifier reads `len`; when it is zero (nobody waits) it
//! returns without a lock or a syscall. Waiters take the lock.
//!
//! # The handshake (no lost wake-up)
//!
//! A waiter registers (SeqCst RMW on `len`), then re-checks its condition
//! (a SeqCst load on the other side's state). A notifier changes that state
//! (a SeqCst RMW, e.g. the CAS on a ring's `tail`), then reads `len` with
//! [`handshake_load`]. In the SeqCst total order one of the two loads sees the
//! other side's write: either the waiter sees the change and does not park, or
//! the notifier sees the waiter and wakes it.
//!
//! # Passing a wake-up on
//!
//! A notified waiter is removed from the list. If it then gives up without
//! retrying (an async future dropped after its waker fired), it must call
//! [`WaitList::notify`] with 1 so that the wake-up reaches someone who can use
//! it (the "notify_one lost wake-up" bug class).

use core::task::Waker;
use std::collections::VecDeque;

use crate::loom::{handshake_load, thread::Thread, AtomicUsize, Mutex, MutexGuard, Ordering};

/// How to wake one waiter.
#[derive(Debug)]
pub(crate) enum Unpark {
    /// A thread parked in a blocking call.
    Thread(Thread),
    /// An async task.
    Waker(Waker),
}

impl Unpark {
    fn wake(self) {
        match self {
            Unpark::Thread(thread) => thread.unpark(),
            Unpark::Waker(waker) => waker.wake(),
        }
    }
}

/// Identifies one registration, to update or cancel it.
pub(crate) type WaitId = u64;

#[derive(Debug, Default)]
struct Inner {
    next_id: WaitId,
    entries: VecDeque<(WaitId, Unpark)>,
}

/// A FIFO list of waiters; see the module docs.
#[derive(Debug)]
pub(crate) struct WaitList {
    /// Number of registered waiters: the lock-free fast-path check.
    len: AtomicUsize,
    inner: Mutex<Inner>,
}

impl WaitList {
    pub(crate) fn new() -> Self {
        Self {
            len: AtomicUsize::new(0),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while the lock is held, but never let a poisoned
        // lock turn into a second panic.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a waiter. The caller must re-check its condition afterwards and
    /// only then park or return `Pending`.
    pub(crate) fn register(&self, unpark: Unpark) -> WaitId {
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.entries.push_back((id, unpark));
        // SeqCst RMW: the publish half of the handshake (module docs).
        self.len.fetch_add(1, Ordering::SeqCst);
        id
    }

    /// Replaces the waker of a registration. Returns false if the
    /// registration is gone (it was notified): register again.
    pub(crate) fn refresh(&self, id: WaitId, waker: &Waker) -> bool {
        let mut inner = self.lock();
        match inner.entries.iter_mut().find(|(i, _)| *i == id) {
            Some((_, Unpark::Waker(w))) => {
                if !w.will_wake(waker) {
                    w.clone_from(waker);
                }
                true
            }
            Some((_, unpark)) => {
                *unpark = Unpark::Waker(waker.clone());
                true
            }
            None => false,
        }
    }

    /// Removes a registration. Returns true if it was still registered,
    /// false if a notifier took it (this waiter was woken).
    pub(crate) fn cancel(&self, id: WaitId) -> bool {
        let mut inner = self.lock();
        match inner.entries.iter().position(|(i, _)| *i == id) {
            Some(at) => {
                inner.entries.remove(at);
                self.len.fetch_sub(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Removes a registration of a waiter that gives up; if it had already
    /// been woken, passes the wake-up on to the next waiter.
    pub(crate) fn cancel_and_forward(&self, id: WaitId) {
        if !self.cancel(id) {
            self.notify(1);
        }
    }

    /// Wakes up to `n` waiters, oldest first. Free when nobody waits.
    #[inline]
    pub(crate) fn notify(&self, n: usize) {
        if n == 0 || handshake_load(&self.len) == 0 {
            return;
        }
        self.notify_slow(n);
    }

    /// Wakes every waiter.
    #[inline]
    pub(crate) fn notify_all(&self) {
        self.notify(usize::MAX);
    }

    #[cold]
    fn notify_slow(&self, n: usize) {
        let mut inner = self.lock();
        if n == 1 {
            // The common case: no allocation.
            let first = inner.entries.pop_front();
            if first.is_some() {
                self.len.fetch_sub(1, Ordering::Relaxed);
            }
            drop(inner);
            if let Some((_, unpark)) = first {
                unpark.wake();
            }
            return;
        }
        let k = n.min(inner.entries.len());
        let woken: Vec<_> = inner.entries.drain(..k).collect();
        self.len.fetch_sub(k, Ordering::Relaxed);
        drop(inner);
        for (_, unpark) in woken {
            unpark.wake();
        }
    }
}
