//! Exponential backoff for spin loops: spin, then yield, then tell the caller
//! to park. It spins through the loom shim, so loom sees (and yields at)
//! every spin.
//!
//! # One core
//!
//! When this process may run on one core only
//! ([`std::thread::available_parallelism`] is 1: under `taskset -c 0`, or
//! in a container whose CPU quota is one core), a waiter never spins: the
//! thread it waits for cannot run while it spins, so every spin only
//! delays it. It yields instead, and yields for longer before it parks
//! ([`SINGLE_CORE_PARK_AFTER`] steps): on one core a yield hands the core
//! to the other side, which then works until it has to wait in turn, so
//! the two trade whole batches, while a waiter that parks early makes
//! every later message pay a wake-up. On the bench machine pinned to one
//! core (`taskset -c 0`, same-run medians) SPSC `u64` went from 52 to 67 M
//! msg/s and a blocking round trip from 10.4 to 2.8 µs. The answer is read
//! once per process and kept.
//!
//! With two or more cores the policy is unchanged. Shorter spins, longer
//! yield phases and a cap on how many waiters spin at once were measured
//! there too, and none gave a gain that held across paired runs.

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

/// Steps (all of them yields) after which a waiter on a single core parks
/// (module docs). More made no difference on the bench machine; 11, as on
/// several cores, made a blocked waiter park in the middle of a batch.
#[cfg(not(loom))]
const SINGLE_CORE_PARK_AFTER: u32 = 64;
#[cfg(not(loom))]
const _: () = assert!(SINGLE_CORE_PARK_AFTER > PARK_AFTER);

/// How [`Backoff::snooze`] waits: steps `0..spin_steps` spin, later steps
/// yield, and after `park_after` steps the caller should park.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Policy {
    spin_steps: u32,
    park_after: u32,
}

impl Policy {
    /// Several cores: spin first, the thread waited for may be running.
    const MULTI_CORE: Self = Self {
        spin_steps: SPIN_LIMIT + 1,
        park_after: PARK_AFTER,
    };

    /// One core: never spin (module docs).
    #[cfg(not(loom))]
    const SINGLE_CORE: Self = Self {
        spin_steps: 0,
        park_after: SINGLE_CORE_PARK_AFTER,
    };

    #[cfg(not(loom))]
    fn for_cores(cores: usize) -> Self {
        if cores <= 1 {
            Self::SINGLE_CORE
        } else {
            Self::MULTI_CORE
        }
    }

    /// The policy for this process, from the cores it may use when first
    /// asked. Under loom, always [`Policy::MULTI_CORE`] (whose constants
    /// send the models straight to parking).
    #[inline]
    fn current() -> Self {
        #[cfg(not(loom))]
        {
            use crate::loom::{AtomicUsize, Ordering};
            /// The cores seen at the first call; 0 until then.
            static CORES: AtomicUsize = AtomicUsize::new(0);
            let mut cores = CORES.load(Ordering::Relaxed);
            if cores == 0 {
                cores = crate::loom::thread::available_parallelism().map_or(1, |n| n.get());
                CORES.store(cores, Ordering::Relaxed);
            }
            Self::for_cores(cores)
        }
        #[cfg(loom)]
        Self::MULTI_CORE
    }
}

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
    /// that thread, which on an oversubscribed machine may need it. On a
    /// single core it only yields (module docs).
    #[inline]
    pub(crate) fn snooze(&mut self) {
        self.snooze_as(Policy::current());
    }

    #[inline]
    fn snooze_as(&mut self, policy: Policy) {
        if self.step < policy.spin_steps {
            for _ in 0..1u32 << self.step {
                spin_loop();
            }
        } else {
            yield_now();
        }
        if self.step < policy.park_after {
            self.step += 1;
        }
    }

    /// True once spinning and yielding have gone on long enough that the
    /// caller should park instead.
    #[inline]
    pub(crate) fn is_completed(&self) -> bool {
        self.is_completed_as(Policy::current())
    }

    #[inline]
    fn is_completed_as(&self, policy: Policy) -> bool {
        self.step >= policy.park_after
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Spin steps, then yields, until the policy says park.
    fn steps_until_park(policy: Policy) -> (u32, u32) {
        let mut backoff = Backoff::new();
        let (mut spins, mut yields) = (0, 0);
        while !backoff.is_completed_as(policy) {
            if backoff.step < policy.spin_steps {
                spins += 1;
            } else {
                yields += 1;
            }
            backoff.snooze_as(policy);
        }
        (spins, yields)
    }

    #[test]
    fn several_cores_spin_then_yield_then_park() {
        assert_eq!(Policy::for_cores(2), Policy::MULTI_CORE);
        assert_eq!(Policy::for_cores(64), Policy::MULTI_CORE);
        assert_eq!(
            steps_until_park(Policy::MULTI_CORE),
            (SPIN_LIMIT + 1, PARK_AFTER - SPIN_LIMIT - 1)
        );
    }

    #[test]
    fn one_core_never_spins_and_yields_longer() {
        assert_eq!(Policy::for_cores(1), Policy::SINGLE_CORE);
        // `available_parallelism` failing counts as one core.
        assert_eq!(Policy::for_cores(0), Policy::SINGLE_CORE);
        assert_eq!(
            steps_until_park(Policy::SINGLE_CORE),
            (0, SINGLE_CORE_PARK_AFTER)
        );
    }

    #[test]
    fn policy_follows_the_cores_this_process_may_use() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(Policy::current(), Policy::for_cores(cores));
    }
}
