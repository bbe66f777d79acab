//! Exponential backoff for spin loops: spin, then yield, then tell the caller
//! to park. It spins through the loom shim, so loom sees (and yields at)
//! every spin.

use crate::loom::{spin_loop, yield_now};

/// `1 << SPIN_LIMIT` is the longest run of `spin_loop` hints in one step.
const SPIN_LIMIT: u32 = 6;

/// Steps after which [`Backoff::is_completed`] says "park now". Under loom it
/// is zero so that the models go straight to the park/wake protocol (a
/// thread that yields first is one loom rarely preempts at the interesting
/// point).
#[cfg(not(loom))]
const PARK_AFTER: u32 = 11;
#[cfg(loom)]
const PARK_AFTER: u32 = 0;

/// Backoff state for one wait. Cheap to create; not shared.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    step: u32,
}

impl Backoff {
    pub(crate) const fn new() -> Self {
        Self { step: 0 }
    }

    /// Backs off in a lock-free retry loop (a lost CAS): always spins, since
    /// the other thread is making progress right now.
    #[inline]
    pub(crate) fn spin(&mut self) {
        for _ in 0..1u32 << self.step.min(SPIN_LIMIT) {
            spin_loop();
        }
        if self.step <= SPIN_LIMIT {
            self.step += 1;
        }
    }

    /// Backs off while waiting for another thread to act (a slot being
    /// written, a message to arrive): spins briefly, then yields the core to
    /// that thread, which on an oversubscribed machine may need it.
    // Under loom `PARK_AFTER` is 0, so the comparisons below are constant
    // there (clippy: absurd_extreme_comparisons); that is the intent.
    #[inline]
    #[cfg_attr(loom, allow(clippy::absurd_extreme_comparisons))]
    pub(crate) fn snooze(&mut self) {
        if self.step <= SPIN_LIMIT {
            for _ in 0..1u32 << self.step {
                spin_loop();
            }
        } else {
            yield_now();
        }
        if self.step < PARK_AFTER {
            self.step += 1;
        }
    }

    /// True once spinning and yielding have gone on long enough that the
    /// caller should park instead.
    #[inline]
    #[cfg_attr(loom, allow(clippy::absurd_extreme_comparisons))]
    pub(crate) fn is_completed(&self) -> bool {
        self.step >= PARK_AFTER
    }
}
