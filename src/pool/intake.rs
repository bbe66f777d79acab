//! The intake lock: one worker at a time takes messages from the source,
//! and a worker that finds it taken leaves a note that makes the holder
//! look again before it lets go.
//!
//! Why not `Mutex::try_lock`: a worker that is woken because a message
//! arrived, and finds another worker taking from the source, must not park
//! while that message may have been missed (the holder may have looked
//! before it arrived). With a bare `try_lock` that worker cannot tell the
//! holder. Here both sides are read-modify-writes of one word, so one of
//! them sees the other:
//!
//! - A worker that fails to enter sets `WANTED` with a CAS that succeeds
//!   only while `HELD` is set (Release: its reason to look, the message it
//!   was woken for, happens-before the holder's next look).
//! - The holder leaves with a CAS `HELD -> 0` (Release) that fails while
//!   `WANTED` is set; then it clears `WANTED` (Acquire), keeps the lock and
//!   takes again.
//!
//! So every failed entry is followed by a look at the source that starts
//! after it: no message is stranded by a lost race for the lock.

use crate::loom::{AtomicUsize, Ordering, UnsafeCell};

const HELD: usize = 1;
const WANTED: usize = 2;

/// A lock that is only ever tried, never waited for; see the module docs.
pub(crate) struct IntakeLock<D> {
    word: AtomicUsize,
    data: UnsafeCell<D>,
}

// SAFETY: `data` is only reached through an `IntakeGuard`, and at most one
// guard exists at a time (the `HELD` bit, taken with Acquire and given up
// with Release); `D: Send` is enough to hand it between threads.
unsafe impl<D: Send> Sync for IntakeLock<D> {}
// SAFETY: as above.
unsafe impl<D: Send> Send for IntakeLock<D> {}

/// Access to the data of an [`IntakeLock`] while it is held.
pub(crate) struct IntakeGuard<'a, D> {
    lock: &'a IntakeLock<D>,
}

impl<D> IntakeLock<D> {
    pub(crate) fn new(data: D) -> Self {
        Self {
            word: AtomicUsize::new(0),
            data: UnsafeCell::new(data),
        }
    }

    /// Takes the lock if it is free. If it is held, asks the holder to look
    /// again on our behalf (module docs) and returns `None`.
    pub(crate) fn try_enter(&self) -> Option<IntakeGuard<'_, D>> {
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            let (new, entered) = if word & HELD == 0 {
                // Free (a stale `WANTED` may be left over from a holder that
                // had gone: we look now, so drop it).
                (HELD, true)
            } else if word & WANTED != 0 {
                // Held and asked already; the holder's leaving CAS fails
                // on that request, which is ordered before ours... but we
                // still need our own Release to order our reason to look
                // before the holder's re-look: write the same word again.
                (word, false)
            } else {
                (word | WANTED, false)
            };
            let success = if entered {
                Ordering::Acquire
            } else {
                Ordering::Release
            };
            match self
                .word
                .compare_exchange_weak(word, new, success, Ordering::Relaxed)
            {
                Ok(_) if entered => return Some(IntakeGuard { lock: self }),
                Ok(_) => return None,
                Err(now) => word = now,
            }
        }
    }
}

impl<D> IntakeGuard<'_, D> {
    /// Runs `f` on the guarded data.
    pub(crate) fn with<R>(&mut self, f: impl FnOnce(&mut D) -> R) -> R {
        // SAFETY: this guard holds `HELD` (module docs), so no other
        // reference to `data` exists; `&mut self` makes this one unique.
        self.lock.data.with_mut(|p| f(unsafe { &mut *p }))
    }

    /// Leaves the lock, unless another worker asked for a look since we
    /// entered (or last looked): then keeps it, clears the request and
    /// returns the guard for one more look.
    pub(crate) fn leave(self) -> Option<Self> {
        let lock = self.lock;
        match lock
            .word
            .compare_exchange(HELD, 0, Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => {
                // Released: the drop below must not release again.
                core::mem::forget(self);
                None
            }
            Err(_) => {
                // `HELD | WANTED`: nobody else can change the word while we
                // hold it but to set `WANTED`, which is set. Acquire: the
                // asker's reason to look happens-before our next look.
                lock.word.swap(HELD, Ordering::Acquire);
                Some(self)
            }
        }
    }
}

impl<D> Drop for IntakeGuard<'_, D> {
    /// Releases the lock, dropping a pending request. Reached when a
    /// holder stops at a full batch although asked to look again (the pool
    /// then wakes an idle worker to look in the asker's place), and when a
    /// look unwinds (a panic), so that the pool can still shut down; the
    /// asker looks again when it next runs out of work.
    fn drop(&mut self) {
        // A swap, not a store: every other write of the word is an RMW, and
        // loom 0.7 lets a plain store slip in between an RMW's read and its
        // write (tokio-rs/loom#254), after which a failed `try_enter`'s
        // rewrite of `HELD | WANTED` would count as the latest value and the
        // lock would look held for ever.
        self.lock.word.swap(0, Ordering::Release);
    }
}
