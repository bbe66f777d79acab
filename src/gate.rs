//! `Gate`: a counter of units in use (bytes of a budget, queued messages of
//! a subscriber) with an admission rule chosen per acquire, and a waiter list
//! for acquirers that must wait for a release.
//!
//! # The handshake (no lost wake-up)
//!
//! An acquirer that is refused registers on the waiter list (a SeqCst RMW on
//! the list's count) and tries again; its try starts with a SeqCst load of
//! `used` ([`handshake_load`]). A release subtracts with a SeqCst RMW and then
//! reads the list's count with [`handshake_load`] (inside
//! [`WaitList::notify`]). In the SeqCst total order one of the two loads sees
//! the other side's write: either the retry sees the release, or the release
//! sees the waiter and wakes it. This is the same handshake as the channel's
//! (see [`crate::wait`]); the loom models in `loom-tests/tests/budget.rs`
//! check it.

use crate::loom::{handshake_load, AtomicUsize, Ordering};
use crate::pad::CachePadded;
use crate::wait::WaitList;

/// Units in use and the acquirers waiting for some to be released.
#[derive(Debug)]
pub(crate) struct Gate {
    /// Units held by live acquisitions. Only changed by RMWs.
    used: CachePadded<AtomicUsize>,
    waiters: WaitList,
}

impl Gate {
    pub(crate) fn new() -> Self {
        Self {
            used: CachePadded(AtomicUsize::new(0)),
            waiters: WaitList::new(),
        }
    }

    /// Units in use now (a snapshot).
    #[inline]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `n` units if `admit(used)` allows it for the current `used`.
    /// Returns the new total on success.
    #[inline]
    pub(crate) fn try_acquire(&self, n: usize, admit: impl Fn(usize) -> bool) -> Option<usize> {
        // SeqCst: the re-check half of the handshake (module docs).
        let mut used = handshake_load(&self.used);
        loop {
            if !admit(used) {
                return None;
            }
            let new = used.checked_add(n)?;
            // SeqCst on success: pairs with the SeqCst RMW in `release` (a
            // failed CAS returns the latest value, which the loop re-admits).
            match self
                .used
                .compare_exchange_weak(used, new, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => return Some(new),
                Err(now) => used = now,
            }
        }
    }

    /// Gives back `n` units and wakes up to `wake` waiters (free when nobody
    /// waits).
    #[inline]
    pub(crate) fn release(&self, n: usize, wake: usize) {
        // SeqCst RMW: the publish half of the handshake (module docs).
        let before = self.used.fetch_sub(n, Ordering::SeqCst);
        debug_assert!(before >= n, "gate released more than it holds");
        self.waiters.notify(wake);
    }

    /// The acquirers waiting for a release.
    #[inline]
    pub(crate) fn waiters(&self) -> &WaitList {
        &self.waiters
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn admits_by_rule_and_releases() {
        let gate = Gate::new();
        assert_eq!(gate.try_acquire(6, |u| u + 6 <= 10), Some(6));
        assert_eq!(gate.try_acquire(6, |u| u + 6 <= 10), None);
        assert_eq!(gate.try_acquire(4, |u| u + 4 <= 10), Some(10));
        gate.release(6, 1);
        assert_eq!(gate.used(), 4);
        assert_eq!(gate.try_acquire(usize::MAX, |_| true), None, "no overflow");
    }
}
