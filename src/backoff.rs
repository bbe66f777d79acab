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
//! # Two threads on one of several cores
//!
//! Having several cores does not put the thread waited for on another one.
//! Linux starts a new thread, and often wakes a parked one, on the core of
//! the thread that spawned or woke it, and moves one of them away only
//! later: on the bench machine (2 cores), in 9 of 10 runs of 2 M `u64`
//! messages SPSC the two threads shared one core for part of the run, and
//! the 3 runs where they shared it throughout took 35-40 M msg/s against 84
//! for the one run where they never did. Spinning there only delays the
//! other side, exactly as on one core. So each thread
//! times its yields: a yield that returns at once found nothing else to
//! run on its core; one that took [`SWITCH_FACTOR`] times as long as the
//! quickest yield seen in this process (and at least [`SWITCH_FLOOR`])
//! handed the core to another thread (~0.5 µs against ~2.7 µs on the
//! bench machine). After [`CROWDED_LIMIT`] more such slow yields than
//! quick ones, the thread waits as on one core (no spin, a long yield
//! phase) until its yields come back quickly again. A thread alone on its
//! core never yields slowly, so its waits keep spinning. Under miri,
//! where time says nothing about the machine, yields are not timed.
//!
//! Measured with `interleaved` (two runs of 8 alternations of 3 rounds,
//! the build before against the build after; medians, M msg/s): 256 B
//! SPSC 20/17 → 31/36, MPSC 21/22 → 31/31, 2p2c 16/16 → 24/25, 4p4c
//! 10/8 → 26/21; `u64` MPSC 66/67 → 80/84; the other rows unchanged
//! within the noise, the blocking round trip too.
//!
//! Shorter spins, longer yield phases and a cap on how many waiters spin
//! at once were measured on two cores too, and none gave a gain that held
//! across paired runs.
//!
//! # Lost races
//!
//! A producer that loses the CAS on a ring's `tail` (or a consumer on
//! `head`) lost it to a thread that now owns that cache line. Retrying at
//! once takes the line back across cores before the winner has used it,
//! so on machines where a line takes long to cross, producers on two cores
//! can trade it for every message. [`Backoff::spin`] therefore waits
//! [`LOST_RACE_SPINS`] hints before the first retry (four `pause`s, about
//! 100 ns on the bench machine's AMD EPYC, where one cross-core trip takes
//! 15-40 ns while its vCPUs are "near" and ~170 ns while they are "far";
//! see the README) and doubles from there, up to 256. Crossbeam's backoff
//! starts from one hint, which is what this did before.
//!
//! Measured on the bench machine, M msg/s or paired ratio to the best
//! peer, medians. A probe alternating the settings every few seconds
//! (kernel-placed threads, capacity 1024, 33 far and 59 near alternations
//! of each), ratio to starting from one hint: far 2p2c / 4p4c 256 B 1.06 /
//! 1.25, `u64` 1.04 / 1.05; near within 4% except 256 B MPSC 0.88.
//! `interleaved` (2-round runs alternated with the build starting from one
//! hint, 73 of each, 2026-12-06), paired: far (10-35 rounds per row)
//! `u64` 2p2c 0.44 → 0.82, 4p4c 0.56 → 0.70, 256 B 4p4c 0.29 → 0.40, 2p2c
//! 0.59 → 0.53; near (111-136 rounds) 256 B MPSC 1.42 → 1.49, 2p2c 0.92 →
//! 0.85, the rest within the noise. The noise is large: SPSC rows, which
//! never lose a race, moved as much (near `u64` 0.90 → 0.68, far 0.33 →
//! 0.75). A start of eight hints gained as much or more far (probe: 4p4c
//! 256 B 1.54 and 1.11 in two 15-20 minute runs) but cost 256 B MPSC near
//! in all three runs (probe 0.79; `interleaved` paired 1.62 → 1.37, and
//! 33.1 → 28.2 M msg/s in the other run); starting from one hint and only
//! raising the bound (to 512 or 4096 hints) gained nothing.

use crate::loom::{spin_loop, yield_now};

/// `1 << SPIN_LIMIT` is the longest run of `spin_loop` hints in one step
/// of [`Backoff::snooze`] (and, times [`LOST_RACE_SPINS`], of
/// [`Backoff::spin`]).
const SPIN_LIMIT: u32 = 6;

/// `spin_loop` hints in the first step of [`Backoff::spin`], the backoff
/// after a lost race for a ring's `head` or `tail`; each later step
/// doubles it, up to `LOST_RACE_SPINS << SPIN_LIMIT` (module docs, "Lost
/// races"). One under loom and miri: every hint is a scheduling point
/// there, and time means nothing (four made miri's channel tests take 61
/// s against 35).
#[cfg(not(any(loom, miri)))]
const LOST_RACE_SPINS: u32 = 4;
#[cfg(any(loom, miri))]
const LOST_RACE_SPINS: u32 = 1;

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

/// A yield this many times as long as the quickest one seen in this
/// process handed the core to another thread (module docs).
#[cfg(not(loom))]
const SWITCH_FACTOR: u128 = 4;
/// ... and at least this long: a yield that took less was quick whatever
/// the quickest one took.
#[cfg(not(loom))]
const SWITCH_FLOOR: std::time::Duration = std::time::Duration::from_nanos(500);

/// Slow yields (net of quick ones) after which a thread waits as on one
/// core; [`CROWDED_MAX`] bounds the count, so that a few quick yields undo
/// it.
#[cfg(not(loom))]
const CROWDED_LIMIT: u8 = 2;
#[cfg(not(loom))]
const CROWDED_MAX: u8 = 4;

#[cfg(not(loom))]
const _: () = assert!(0 < CROWDED_LIMIT && CROWDED_LIMIT <= CROWDED_MAX);

#[cfg(not(loom))]
std::thread_local! {
    /// This thread's slow yields minus its quick ones, in `0..=CROWDED_MAX`
    /// (module docs). No destructor, so it is readable at any time.
    static CROWDED: core::cell::Cell<u8> = const { core::cell::Cell::new(0) };
}

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

    /// The policy for this thread's next wait step: as on one core if the
    /// process has one, or if this thread's yields have lately been
    /// handing its core to other threads (module docs).
    #[inline]
    fn for_this_wait() -> Self {
        #[cfg(not(loom))]
        {
            Self::for_wait(cores(), CROWDED.with(|c| c.get()))
        }
        #[cfg(loom)]
        Self::MULTI_CORE
    }

    /// [`Policy::for_this_wait`] for `cores` and a `crowded` count.
    #[cfg(not(loom))]
    fn for_wait(cores: usize, crowded: u8) -> Self {
        if crowded >= CROWDED_LIMIT {
            Self::SINGLE_CORE
        } else {
            Self::for_cores(cores)
        }
    }
}

/// Whether this thread's waits spin at present: not on one core, nor while
/// its yields keep handing its core to other threads (module docs). A wait
/// that only spins, such as a receive's slip (`Chan::slip`), would only
/// delay the thread it waits for then.
#[inline]
pub(crate) fn spinning_helps() -> bool {
    Policy::for_this_wait().spin_steps > 0
}

/// Sets this thread's `crowded` count (for tests of callers).
#[cfg(all(test, not(loom)))]
pub(crate) fn set_crowded_for_test(crowded: u8) {
    CROWDED.with(|c| c.set(crowded.min(CROWDED_MAX)));
}

/// The cores this process may use, read once.
#[cfg(not(loom))]
#[inline]
fn cores() -> usize {
    use crate::loom::{AtomicUsize, Ordering};
    /// The cores seen at the first call; 0 until then.
    static CORES: AtomicUsize = AtomicUsize::new(0);
    let mut cores = CORES.load(Ordering::Relaxed);
    if cores == 0 {
        cores = crate::loom::thread::available_parallelism().map_or(1, |n| n.get());
        CORES.store(cores, Ordering::Relaxed);
    }
    cores
}

/// Yields, and on several cores counts whether the yield handed the core
/// to another thread (module docs).
#[inline]
fn timed_yield() {
    // Not under miri: its clock says nothing about the machine.
    #[cfg(not(loom))]
    if !cfg!(miri) && cores() > 1 {
        /// The quickest yield seen in this process, in nanoseconds.
        static QUICKEST: crate::loom::AtomicUsize = crate::loom::AtomicUsize::new(usize::MAX);
        let start = std::time::Instant::now();
        yield_now();
        count_yield(start.elapsed(), &QUICKEST);
        return;
    }
    yield_now();
}

/// Counts a yield that took `took` in this thread's `CROWDED`, and in
/// `quickest` (nanoseconds) if it was the quickest yet (module docs).
#[cfg(not(loom))]
fn count_yield(took: std::time::Duration, quickest: &crate::loom::AtomicUsize) {
    use crate::loom::Ordering;
    let ns = usize::try_from(took.as_nanos()).unwrap_or(usize::MAX);
    let seen = quickest.load(Ordering::Relaxed);
    if ns < seen {
        // Relaxed: a statistic, not a protocol (nothing is published
        // through it, and under loom none of this exists); `fetch_min`
        // keeps the smallest of racing updates.
        quickest.fetch_min(ns, Ordering::Relaxed);
    }
    let switched = handed_over(took, seen.min(ns));
    CROWDED.with(|c| c.set(crowded_after(c.get(), switched)));
}

/// Whether a yield that took `took` handed the core over, given the
/// quickest yield seen, in nanoseconds (module docs).
#[cfg(not(loom))]
fn handed_over(took: std::time::Duration, quickest_ns: usize) -> bool {
    took >= SWITCH_FLOOR && took.as_nanos() >= (quickest_ns as u128) * SWITCH_FACTOR
}

/// The `crowded` count after one more yield (module docs).
#[cfg(not(loom))]
fn crowded_after(crowded: u8, switched: bool) -> u8 {
    if switched {
        (crowded + 1).min(CROWDED_MAX)
    } else {
        crowded.saturating_sub(1)
    }
}

/// Backoff state for one wait. Cheap to create; not shared.
///
/// The policy is read again at every step, so a wait that finds its
/// thread crowded half-way goes on yielding rather than parking, and one
/// whose yields come back quickly again goes back to the several-core
/// policy (the step count carries over either way).
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    step: u32,
}

impl Backoff {
    pub(crate) const fn new() -> Self {
        Self { step: 0 }
    }

    /// Backs off in a lock-free retry loop (a lost CAS): always spins, since
    /// the other thread is making progress right now; from
    /// [`LOST_RACE_SPINS`] hints at the first step (module docs, "Lost
    /// races").
    #[inline]
    pub(crate) fn spin(&mut self) {
        for _ in 0..lost_race_spins(self.step) {
            spin_loop();
        }
        if self.step <= SPIN_LIMIT {
            self.step += 1;
        }
    }

    /// Backs off while waiting for another thread to act (a slot being
    /// written, a message to arrive): spins briefly, then yields the core to
    /// that thread, which on an oversubscribed machine may need it. On a
    /// single core, or while this thread shares its core, it only yields
    /// (module docs).
    #[inline]
    pub(crate) fn snooze(&mut self) {
        self.snooze_as(Policy::for_this_wait());
    }

    #[inline]
    fn snooze_as(&mut self, policy: Policy) {
        if self.step < policy.spin_steps {
            for _ in 0..1u32 << self.step {
                spin_loop();
            }
        } else {
            timed_yield();
        }
        if self.step < policy.park_after {
            self.step += 1;
        }
    }

    /// True once spinning and yielding have gone on long enough that the
    /// caller should park instead.
    #[inline]
    pub(crate) fn is_completed(&self) -> bool {
        self.is_completed_as(Policy::for_this_wait())
    }

    #[inline]
    fn is_completed_as(&self, policy: Policy) -> bool {
        self.step >= policy.park_after
    }

    /// The steps taken so far (for tests of callers).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn steps(&self) -> u32 {
        self.step
    }
}

/// The `spin_loop` hints of step `step` of [`Backoff::spin`].
#[inline]
fn lost_race_spins(step: u32) -> u32 {
    LOST_RACE_SPINS << step.min(SPIN_LIMIT)
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
    fn a_lost_race_backs_off_from_a_cross_core_trip_and_doubles_to_a_bound() {
        if !cfg!(miri) {
            assert_eq!(LOST_RACE_SPINS, 4);
        }
        let first = LOST_RACE_SPINS;
        let steps: Vec<u32> = (0..10).map(lost_race_spins).collect();
        assert_eq!(&steps[..4], [first, 2 * first, 4 * first, 8 * first]);
        let top = first << SPIN_LIMIT;
        assert!(steps[SPIN_LIMIT as usize..].iter().all(|&n| n == top));
        assert!(steps[..SPIN_LIMIT as usize].iter().all(|&n| n < top));
        // The step count stops growing at the bound too.
        let mut backoff = Backoff::new();
        for _ in 0..20 {
            backoff.spin();
        }
        assert_eq!(backoff.step, SPIN_LIMIT + 1);
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
        assert_eq!(super::cores(), cores);
        assert_eq!(Policy::for_wait(cores, 0), Policy::for_cores(cores));
    }

    #[test]
    fn a_crowded_thread_waits_as_on_one_core() {
        for crowded in 0..CROWDED_LIMIT {
            assert_eq!(Policy::for_wait(2, crowded), Policy::MULTI_CORE);
        }
        for crowded in CROWDED_LIMIT..=CROWDED_MAX {
            assert_eq!(Policy::for_wait(2, crowded), Policy::SINGLE_CORE);
            assert_eq!(Policy::for_wait(1, crowded), Policy::SINGLE_CORE);
        }
    }

    #[test]
    fn slow_yields_count_up_to_a_bound_and_quick_ones_count_down() {
        // From a thread alone on its core: two yields that handed the core
        // over make it crowded, and it stays so for as long as they keep
        // outnumbering the quick ones.
        let mut crowded = 0;
        crowded = crowded_after(crowded, true);
        assert!(crowded < CROWDED_LIMIT);
        crowded = crowded_after(crowded, true);
        assert_eq!(crowded, CROWDED_LIMIT);
        for _ in 0..100 {
            crowded = crowded_after(crowded, true);
        }
        assert_eq!(crowded, CROWDED_MAX, "bounded");
        // Once its yields come back quickly, a bounded number of them
        // (not as many as the slow ones before) bring the spinning back.
        let quick_to_spin = CROWDED_MAX - CROWDED_LIMIT + 1;
        for _ in 0..quick_to_spin {
            assert!(crowded >= CROWDED_LIMIT);
            crowded = crowded_after(crowded, false);
        }
        assert!(crowded < CROWDED_LIMIT);
        for _ in 0..100 {
            crowded = crowded_after(crowded, false);
        }
        assert_eq!(crowded, 0);
    }

    #[test]
    fn a_yield_handed_the_core_over_if_much_slower_than_the_quickest() {
        let ns = std::time::Duration::from_nanos;
        // The bench machine: ~0.5 µs alone, ~2.7 µs when another ran.
        assert!(!handed_over(ns(510), 500));
        assert!(!handed_over(ns(1_900), 500));
        assert!(handed_over(ns(2_000), 500));
        assert!(handed_over(ns(2_700), 500));
        // Below the floor, never: a machine whose quickest yield is tiny.
        assert!(!handed_over(ns(400), 10));
        assert!(handed_over(ns(600), 10));
        // Before any yield was timed (quickest unknown), and once no
        // quicker yield was ever seen: never.
        assert!(!handed_over(ns(u64::MAX), usize::MAX));
        assert!(!handed_over(ns(3_000), 3_000));
    }

    /// The accounting `timed_yield` does after each yield, on this
    /// thread's real count, with the times of the bench machine. (Whether
    /// real yields take those times is the scheduler's business: measured
    /// in the module docs, not asserted here.)
    #[test]
    fn timed_yields_decide_this_threads_next_waits() {
        let ns = std::time::Duration::from_nanos;
        let quickest = crate::loom::AtomicUsize::new(usize::MAX);
        CROWDED.with(|c| c.set(0));
        // The first yield timed sets the quickest time; slow or not, it is
        // not counted as handing the core over.
        count_yield(ns(2_700), &quickest);
        assert_eq!(CROWDED.with(|c| c.get()), 0);
        count_yield(ns(500), &quickest);
        assert_eq!(quickest.load(crate::loom::Ordering::Relaxed), 500);
        // Two yields that handed the core over: the next wait step of
        // this thread is a one-core step, whatever the cores.
        count_yield(ns(2_700), &quickest);
        assert_eq!(
            Policy::for_wait(2, CROWDED.with(|c| c.get())),
            Policy::MULTI_CORE
        );
        count_yield(ns(2_700), &quickest);
        assert_eq!(Policy::for_this_wait(), Policy::SINGLE_CORE);
        // One quick yield and it spins again (on several cores).
        count_yield(ns(520), &quickest);
        let crowded = CROWDED.with(|c| c.get());
        assert_eq!(Policy::for_wait(2, crowded), Policy::MULTI_CORE);
        assert_eq!(Policy::for_this_wait(), Policy::for_cores(super::cores()));
        // Another thread starts with its own count.
        CROWDED.with(|c| c.set(CROWDED_MAX));
        let other = std::thread::spawn(|| CROWDED.with(|c| c.get()))
            .join()
            .unwrap();
        assert_eq!(other, 0);
        CROWDED.with(|c| c.set(0));
    }
}
