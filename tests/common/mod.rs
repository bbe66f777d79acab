//! Helpers shared by the integration tests: a drop tracker, a tiny PRNG,
//! a counting waker and scaled iteration counts.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};

/// `normal` normally, `miri` under miri.
pub fn scale(normal: usize, miri: usize) -> usize {
    if cfg!(miri) {
        miri
    } else {
        normal
    }
}

/// Waits (polling) until `cond` holds: to let another thread reach a
/// blocking call before the test acts. Panics after a generous 30 s, which
/// only a hang reaches.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Counts how often each id was dropped.
#[derive(Debug)]
pub struct Tracker {
    drops: Vec<AtomicUsize>,
    created: Vec<AtomicBool>,
}

impl Tracker {
    pub fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            drops: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            created: (0..n).map(|_| AtomicBool::new(false)).collect(),
        })
    }

    /// A new tracked value. Each id may be created once.
    pub fn item(self: &Arc<Self>, id: usize) -> Tracked {
        let was = self.created[id].swap(true, Ordering::Relaxed);
        assert!(!was, "id {id} created twice");
        Tracked {
            id,
            tracker: self.clone(),
        }
    }

    pub fn drops_of(&self, id: usize) -> usize {
        self.drops[id].load(Ordering::SeqCst)
    }

    /// Total number of destructor calls.
    pub fn total_drops(&self) -> usize {
        self.drops.iter().map(|d| d.load(Ordering::SeqCst)).sum()
    }

    /// Every created value was dropped exactly once, and nothing else.
    pub fn assert_all_dropped_once(&self) {
        for (id, d) in self.drops.iter().enumerate() {
            let d = d.load(Ordering::SeqCst);
            let created = self.created[id].load(Ordering::SeqCst);
            let want = usize::from(created);
            assert_eq!(d, want, "id {id} (created: {created}) dropped {d} times");
        }
    }
}

/// A value that records its drop in a [`Tracker`]; panics on a double drop
/// (which would otherwise be UB, caught by miri).
#[derive(Debug)]
pub struct Tracked {
    pub id: usize,
    tracker: Arc<Tracker>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let before = self.tracker.drops[self.id].fetch_add(1, Ordering::SeqCst);
        assert_eq!(before, 0, "id {} dropped twice", self.id);
    }
}

/// xorshift64*: deterministic per seed, no dependency.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A waker that counts its wake-ups.
#[derive(Debug, Default)]
pub struct CountingWaker {
    wakes: AtomicUsize,
}

impl CountingWaker {
    pub fn new() -> (Arc<Self>, Waker) {
        let this = Arc::new(Self::default());
        let waker = Waker::from(this.clone());
        (this, waker)
    }

    pub fn count(&self) -> usize {
        self.wakes.load(Ordering::SeqCst)
    }
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

/// A global allocator that counts, per thread, the allocations (and
/// reallocations) and bytes (including growth by realloc) the thread asks
/// for. Per thread, so that the test harness's own allocations on its main
/// thread (say its "has been running for over 60 seconds" notice, which
/// fired in the middle of a measurement under miri) are not charged to the
/// code under test.
pub struct ThreadCountingAlloc;

std::thread_local! {
    /// (allocations, bytes) of this thread. A `const`-initialised `Cell`
    /// of plain data: accessing it never allocates.
    static ALLOCATED: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, 0)) };
}

fn note_allocation(bytes: usize) {
    let _ = ALLOCATED.try_with(|c| {
        let (n, b) = c.get();
        c.set((n + 1, b + bytes));
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments,
// so `System`'s guarantees hold; counting touches only a thread-local
// `Cell` and never allocates.
unsafe impl std::alloc::GlobalAlloc for ThreadCountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: our caller's contract is `System`'s.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: as in `alloc`.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size.saturating_sub(layout.size()));
        // SAFETY: as in `alloc`.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: as in `alloc`.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

/// Runs `f` and answers its result with the allocations (and
/// reallocations) and bytes this thread asked for meanwhile; needs
/// [`ThreadCountingAlloc`] as the global allocator.
pub fn allocated_by<R>(f: impl FnOnce() -> R) -> (R, usize, usize) {
    let (n0, b0) = ALLOCATED.with(|c| c.get());
    let result = f();
    let (n1, b1) = ALLOCATED.with(|c| c.get());
    (result, n1 - n0, b1 - b0)
}
