//! `Ring<T>`: a bounded multi-producer multi-consumer ring buffer.
//!
//! The design is Dmitry Vyukov's bounded MPMC queue: every slot carries a
//! *stamp* that says whose turn it is, so producers and consumers only
//! contend on their own index (`tail` or `head`) and on the slot they claim.
//! The other side's index is read only at the full/empty boundary.
//!
//! # Positions
//!
//! `head` and `tail` are *positions*: `lap | index`, where `index < cap` is
//! the slot and `lap` is a multiple of `one_lap`. `mark_bit` sits between the
//! two; it is set in `tail` only, by [`Ring::close`], and from then on no push
//! can succeed.
//!
//! ```text
//!   one_lap  = 2 * mark_bit      mark_bit = (cap + 1).next_power_of_two()
//!   position = [ lap ... | mark | index ]
//! ```
//!
//! # Stamps
//!
//! For the slot at `index`, in lap `lap`, with `pos = lap | index`:
//! - `stamp == pos`: empty, the producer that claims `pos` may write it;
//! - `stamp == pos + 1`: full, the consumer that claims `pos` may read it;
//! - a consumer that read `pos` stores `pos + one_lap`: empty for the next lap.
//!
//! A thread *claims* a position by winning the CAS that moves `tail` (or
//! `head`) past it; only after that does it touch the slot's value.
//!
//! A thread at position `pos` that finds the stamp of `pos - one_lap` or
//! `pos - one_lap + 1` meets a slot the previous lap still holds: a
//! producer claimed it and has not finished writing, or a consumer is
//! still reading it. The index does not move until that thread is done,
//! so this is not a stale index to spin past: a producer there finds the
//! ring full (every slot is claimed), a consumer finds it empty (no
//! producer can have claimed `pos`), and both wait as for full or empty,
//! which yields and parks. Spinning there (as for a stale index, which
//! only spins) kept a producer on its core while the writer it waited for
//! was preempted on that same core: with all four producers of 4p4c on
//! one core, it ran for whole four-millisecond slices (`perf sched
//! timehist`) while the writer waited its turn behind it. A probe with
//! producers pinned to one core and consumers to the other (4p4c 256 B, 8
//! alternated runs) went from 14.8 to 28.8 M msg/s (kanal 19-34); the
//! interleaved bench (20 alternations of 3 rounds against the build
//! before, kernel-placed, paired ratio to the best peer) 4p4c 256 B near
//! 1.08 → 1.32 (25.5 → 32.2 M msg/s) and 4p4c `u64` 1.39 → 1.55, far (2-8
//! rounds) 0.61 → 0.88 and 0.60 → 0.73, the other rows within the noise.
//! Placed by the kernel, 4p4c runs were bimodal (probe: 9-14 or 20-30 M
//! msg/s); the one slow run of 14 that recorded where its threads ran had
//! all four producers on one core.
//!
//! # Slot layout
//!
//! A slot is its stamp, then its value. Slots smaller than a cache line
//! (64 bytes with the stamp) are packed back to back. Larger ones each
//! start a line of their own (padded to a multiple of 64 bytes: a 256-byte
//! message takes 320 where it took 264), so no line holds the end of one
//! slot and the start of the next. Packed, the line that held slot `i`'s
//! stamp also held the start of slot `i + 1`: producers writing neighbouring
//! slots from two cores traded it, and so did consumers reading them.
//! Measured with the interleaved bench (256 B rows, 25 alternations of 3
//! rounds against packed slots, twice; paired ratio to the best peer in
//! rounds on ~37 ns cores, 55-70 each): 2p2c 1.22 → 1.32 and 1.21 → 1.30,
//! 4p4c 1.04 → 1.10 and 0.93 → 1.11, MPSC 1.76 → 1.92 and 1.86 → 1.90,
//! SPSC 1.53 → 1.68 and 1.63 → 1.47; the code as landed against the
//! build before (25 alternations): 2p2c 1.19 → 1.25, 4p4c 0.95 → 1.00,
//! MPSC 1.84 → 1.88, SPSC 1.66 → 1.46 (M msg/s up 4-9% in all four:
//! SPSC 33.2 → 36.1, its peer's rounds moved more). With the stamp last
//! (in a line of its own, which the consumer prefetch did not fetch) far
//! rounds did worse (7-13 each: 2p2c 0.93 → 0.46, SPSC 1.38 → 0.96);
//! stamp first without the padding gained less near (2p2c 1.21 → 1.23,
//! 4p4c 0.95 → 1.01).
//!
//! In a slot that starts a line, the value starts at 32 bytes rather than
//! right after the stamp (at 8) wherever that takes no more lines
//! ([`Layout::Lined32`]: a 256-byte message spans bytes 32-288 of its
//! five lines instead of 8-264). Copied in 32-byte pieces (the vector
//! `memcpy`), a value at 8 had every other store straddle two lines.
//! One thread sending and receiving 256 B messages in bursts of 64: 30.2
//! → 27.6-28.0 ns a message (kanal 22.9). Interleaved bench, 256 B rows,
//! two runs of 20 alternations of 5 rounds against the value at 8 (the
//! second with the order swapped), kernel-placed, M msg/s medians of
//! all 100 rounds: SPSC 29.1 → 34.3 and 29.9 → 32.8, MPSC 30.1 → 31.6 and
//! 30.0 → 31.5, 2p2c 26.9 → 27.9 and 26.3 → 27.0, 4p4c 26.1 → 26.8 and
//! 25.7 → 26.5; all threads on one core (5 rounds, twice), SPSC 36.1-36.9
//! → 38.7-39.5, 4p4c 31.3-32.8 → 35.1-35.9 (kanal 34-38). Stamps in an
//! array of their own, which would let a 256-byte value take four lines,
//! lost 20-30% on two cores, both with eight neighbouring stamps to a
//! line and with neighbouring stamps on different lines
//! (`benches/HISTORY.md`); why is not established.

use core::mem::MaybeUninit;

use crate::backoff::Backoff;
use crate::loom::{handshake_load, AtomicUsize, Ordering, UnsafeCell};
use crate::pad::CachePadded;

/// One slot: a stamp and room for one value (`V` is a [`Cell`], or one
/// [`Aligned`] to 32 bytes). `repr(C)`, stamp first: in a slot of a cache
/// line or more, the stamp shares the slot's first line, the one
/// [`Ring::prefetch_ahead`] fetches and a consumer reads first.
#[repr(C)]
struct Slot<V> {
    stamp: AtomicUsize,
    value: V,
}

/// Room for one value.
type Cell<T> = UnsafeCell<MaybeUninit<T>>;

/// The slot of [`Layout::Lined32`]: the value at 32 bytes.
type Slot32<T> = Slot<Aligned<Cell<T>>>;

/// A value that starts at a multiple of 32 bytes: in a slot that starts a
/// line, 32-byte stores of it never straddle two lines. `repr(C)`: the
/// content is at offset 0.
#[repr(C, align(32))]
struct Aligned<C>(C);

/// A slot that starts on a cache line of its own. `repr(C)`: the slot is at
/// offset 0, so a pointer to a `Lined` is a pointer to its slot.
#[repr(C, align(64))]
struct Lined<S>(S);

/// How a ring lays out its slots (module docs, "Slot layout").
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Layout {
    /// Slots smaller than a cache line, back to back, the value right
    /// after the stamp.
    Packed,
    /// Each slot from the start of a line, the value right after the
    /// stamp (at 8 bytes).
    Lined,
    /// Each slot from the start of a line, the value at 32 bytes: where
    /// that takes no more lines than [`Layout::Lined`].
    Lined32,
}

/// A slot's stamp and value, wherever the layout keeps them.
struct SlotRef<'a, T> {
    stamp: &'a AtomicUsize,
    value: &'a Cell<T>,
}

/// The slot array (module docs, "Slot layout"). Only the array of the
/// ring's [`Layout`] is non-empty, which one fixed by [`Ring::LAYOUT`], a
/// constant: finding a slot takes no branch. (As an enum, whose variant
/// was checked on every access, it made `send_batch`/`recv_batch` of
/// `u64` move 176 M msg/s against 214 in the interleaved bench.)
struct Slots<T> {
    /// [`Layout::Packed`].
    packed: Box<[Slot<Cell<T>>]>,
    /// [`Layout::Lined`].
    lined: Box<[Lined<Slot<Cell<T>>>]>,
    /// [`Layout::Lined32`].
    lined32: Box<[Lined<Slot32<T>>]>,
}

impl<T> Slots<T> {
    /// `cap` empty slots, the one at index `i` stamped `i`, laid out as
    /// [`Ring::LAYOUT`] says.
    fn new(cap: usize) -> Self {
        let empty = |i| Slot {
            stamp: AtomicUsize::new(i),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        };
        let mut slots = Self {
            packed: Box::default(),
            lined: Box::default(),
            lined32: Box::default(),
        };
        match Ring::<T>::LAYOUT {
            Layout::Packed => slots.packed = (0..cap).map(empty).collect(),
            Layout::Lined => slots.lined = (0..cap).map(|i| Lined(empty(i))).collect(),
            Layout::Lined32 => {
                slots.lined32 = (0..cap)
                    .map(|i| {
                        Lined(Slot {
                            stamp: AtomicUsize::new(i),
                            value: Aligned(UnsafeCell::new(MaybeUninit::uninit())),
                        })
                    })
                    .collect();
            }
        }
        slots
    }

    /// Pointers to the stamp and the value of the slot at `index`, in
    /// bounds if `index < cap`. Made from a raw pointer to the array, not
    /// from `&slots[index]`: that would first make a reference to the
    /// whole slice, which miri retags slot by slot (the interior-mutable
    /// parts) on every access, making each access cost in proportion to
    /// the capacity under miri.
    #[inline(always)]
    fn at(&self, index: usize) -> (*const AtomicUsize, *const Cell<T>) {
        /// The stamp and value of the `Slot<V>` at `slot`.
        #[inline(always)]
        fn parts<V, T>(slot: *const Slot<V>) -> (*const AtomicUsize, *const Cell<T>) {
            (
                // `Slot` is `repr(C)`: the stamp is at offset 0.
                slot.cast::<AtomicUsize>(),
                // `Aligned` is `repr(C)`: its cell is at offset 0.
                slot.cast::<u8>()
                    .wrapping_add(core::mem::offset_of!(Slot<V>, value))
                    .cast::<Cell<T>>(),
            )
        }
        match Ring::<T>::LAYOUT {
            Layout::Packed => parts::<Cell<T>, T>(
                (&raw const *self.packed)
                    .cast::<Slot<Cell<T>>>()
                    .wrapping_add(index),
            ),
            // `Lined` is `repr(C)`: its slot is at offset 0.
            Layout::Lined => parts::<Cell<T>, T>(
                (&raw const *self.lined)
                    .cast::<Lined<Slot<Cell<T>>>>()
                    .wrapping_add(index)
                    .cast::<Slot<Cell<T>>>(),
            ),
            Layout::Lined32 => parts::<Aligned<Cell<T>>, T>(
                (&raw const *self.lined32)
                    .cast::<Lined<Slot32<T>>>()
                    .wrapping_add(index)
                    .cast::<Slot32<T>>(),
            ),
        }
    }
}

/// Why a push did not take the value; the value is handed back.
pub(crate) enum PushError<T> {
    /// Every slot holds a value.
    Full(T),
    /// [`Ring::close`] was called.
    Closed(T),
}

/// The result of a non-blocking pop.
pub(crate) enum Pop<T> {
    /// The value at the front.
    Item(T),
    /// Nothing is queued and no producer is writing.
    Empty,
    /// A producer has claimed the front slot but not yet finished writing it
    /// (it may be descheduled), and no finished value waits behind it: no
    /// send into this ring has completed that is not yet received, so the
    /// ring counts as empty, but a waiter must retry rather than park.
    Busy,
    /// The front slot is being written, and a finished value waits behind
    /// it: the ring is not empty, but nothing can be popped until that
    /// producer finishes.
    Blocked,
}

/// A bounded MPMC ring; see the module docs for the protocol.
pub(crate) struct Ring<T> {
    /// Next position to read. Only moves forward, by CAS.
    head: CachePadded<AtomicUsize>,
    /// Next position to write, plus `mark_bit` once closed. Only moves
    /// forward, by CAS (or `fetch_or` of the mark).
    tail: CachePadded<AtomicUsize>,
    slots: Slots<T>,
    cap: usize,
    mark_bit: usize,
    one_lap: usize,
}

// SAFETY: values of `T` move between threads through the ring (hence
// `T: Send`); a slot's value is only accessed by the one thread that claimed
// its position (see the module docs), so sharing `&Ring` needs no `T: Sync`.
unsafe impl<T: Send> Send for Ring<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Ring<T> {}

/// How far ahead of the slot it claimed a consumer prefetches, in slots
/// ([`Ring::prefetch_ahead`]). Measured on the 2-core bench machine with
/// 0, 8, 16, 32 and 64 (capacity 1024, kernel-placed threads, alternated,
/// split by the cross-core latency; M msg/s medians of 63 far and 215
/// near runs each): SPSC 256 B near 20.5 → 33.4 and far 7.9 → 16.9, SPSC
/// `u64` far 47 → 66, 2p2c `u64` near 101 → 121 and far 32 → 57, 2p2c
/// 256 B near 29 → 34; 2p2c and 4p4c 256 B far 13.2 / 12.3 → 11.7 / 10.7
/// (the one loss). Distances of 8 and 16 gained less. The interleaved
/// bench, 40 alternations of 2 rounds against the build without it, near
/// phase (73-76 rounds each), 256 B paired ratio to the best peer: SPSC
/// 0.93 → 1.29, MPSC 1.95 → 2.01, 2p2c 0.81 → 1.09, 4p4c 0.87 → 0.93;
/// the far rounds (4-9 each) were too few to say.
const PREFETCH_AHEAD: usize = 64;

/// Slots smaller than this many bytes (a cache line) are not prefetched:
/// several share a line, which the hardware prefetcher follows anyway,
/// and in the interleaved bench the prefetch cost SPSC `u64` near 100 →
/// 86 M msg/s (and 4p4c 87 → 81) where it gave 256 B 20 → 35.
const PREFETCH_MIN_SLOT: usize = 64;

/// A hint to load the cache line at `p`; no effect on the program's
/// meaning (and none at all off x86-64, under loom and under miri).
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(all(target_arch = "x86_64", not(loom), not(miri)))]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch never faults and changes no memory; any
        // address may be passed (ours is inside the slot array).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) };
    }
    #[cfg(not(all(target_arch = "x86_64", not(loom), not(miri))))]
    let _ = p;
}

impl<T> Ring<T> {
    /// Creates a ring holding up to `cap` values.
    ///
    /// # Panics
    ///
    /// If `cap` is zero, or so large that positions would overflow.
    pub(crate) fn new(cap: usize) -> Self {
        assert!(cap > 0, "lane capacity must be at least 1");
        let mark_bit = cap
            .checked_add(1)
            .and_then(usize::checked_next_power_of_two)
            .filter(|m| m.checked_mul(4).is_some())
            .expect("lane capacity is too large");
        Self {
            head: CachePadded(AtomicUsize::new(0)),
            tail: CachePadded(AtomicUsize::new(0)),
            slots: Slots::new(cap),
            cap,
            mark_bit,
            one_lap: mark_bit * 2,
        }
    }

    /// How many values the ring holds at most.
    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }

    /// The position after `pos`.
    #[inline(always)]
    fn next(&self, pos: usize) -> usize {
        let index = pos & (self.mark_bit - 1);
        if index + 1 < self.cap {
            pos + 1
        } else {
            (pos & !(self.one_lap - 1)).wrapping_add(self.one_lap)
        }
    }

    /// Whether `stamp`, read in the slot of position `pos`, says the slot
    /// still belongs to the previous lap: `pos - one_lap` was written and is
    /// not yet read (or is being read), or was claimed by a producer that
    /// has not finished writing it. The index has not moved on then, so
    /// waiting for it to move is waiting for that thread: a producer sees a
    /// full ring, a consumer an empty one (module docs, "Stamps").
    #[inline(always)]
    fn held_by_last_lap(&self, stamp: usize, pos: usize) -> bool {
        let last = pos.wrapping_sub(self.one_lap);
        stamp == last || stamp == last.wrapping_add(1)
    }

    #[inline(always)]
    fn slot(&self, pos: usize) -> SlotRef<'_, T> {
        let index = pos & (self.mark_bit - 1);
        debug_assert!(index < self.cap);
        let (stamp, value) = self.slots.at(index);
        // SAFETY: `index` is the index part of a position, always `< cap`
        // (positions are built by `next`, which wraps at `cap`), so both
        // pointers point into a slot of the live array `slots` owns, and
        // only shared references to a slot's parts are ever made.
        unsafe {
            SlotRef {
                stamp: &*stamp,
                value: &*value,
            }
        }
    }

    /// Pushes `value`, or hands it back if the ring is full or closed.
    #[inline]
    pub(crate) fn push(&self, value: T) -> Result<(), PushError<T>> {
        let mut backoff = Backoff::new();
        let mut tail = self.tail.load(Ordering::Relaxed);
        loop {
            if tail & self.mark_bit != 0 {
                return Err(PushError::Closed(value));
            }
            let slot = self.slot(tail);
            // Acquire: pairs with the Release stamp store of the consumer
            // that emptied this slot, so our write below follows its read.
            let stamp = slot.stamp.load(Ordering::Acquire);
            if stamp == tail {
                // The slot is free for `tail`: claim it. SeqCst: this CAS is
                // the "publish" half of the handshake with a parking receiver
                // (see `Chan`), read by `handshake_load(tail)` in `try_pop`.
                match self.tail.compare_exchange_weak(
                    tail,
                    self.next(tail),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: we won the CAS for position `tail`, so this
                        // thread alone may write the slot until it stores the
                        // stamp; the slot is empty (stamp == tail).
                        slot.value.with_mut(|p| unsafe { (*p).write(value) });
                        // Release: pairs with the Acquire stamp load in pop.
                        slot.stamp.store(tail + 1, Ordering::Release);
                        return Ok(());
                    }
                    Err(current) => {
                        tail = current;
                        backoff.spin();
                    }
                }
            } else if self.held_by_last_lap(stamp, tail) {
                // The slot still belongs to the previous lap: its value is
                // unread or being read, or its producer has not finished
                // writing it. Full if `head` is a whole lap behind (always so
                // in the last case); otherwise a consumer has claimed it and
                // is reading, so wait for it.
                let head = handshake_load(&self.head);
                if head.wrapping_add(self.one_lap) == tail {
                    // Full. A sender about to park must also see a close
                    // that raced with it, so re-read `tail` in the handshake.
                    if self.closed_now() {
                        return Err(PushError::Closed(value));
                    }
                    return Err(PushError::Full(value));
                }
                backoff.snooze();
                tail = self.tail.load(Ordering::Relaxed);
            } else {
                // Another producer moved `tail` on; our copy is stale.
                backoff.spin();
                tail = self.tail.load(Ordering::Relaxed);
            }
        }
    }

    /// Pops the front value. `strict` decides what a slot that is not yet
    /// readable means: with `strict`, the ring checks `tail` and answers
    /// [`Pop::Empty`] or [`Pop::Busy`]; without it, it answers `Empty` at once
    /// (a cheap "looks empty" for scanning several lanes).
    #[inline]
    pub(crate) fn try_pop(&self, strict: bool) -> Pop<T> {
        let mut out = MaybeUninit::<T>::uninit();
        // SAFETY: `out` is a place for one `T`.
        match unsafe { self.try_pop_into(strict, out.as_mut_ptr()) } {
            // SAFETY: `Item` means `try_pop_into` moved a value into `out`.
            Pop::Item(()) => Pop::Item(unsafe { out.assume_init() }),
            Pop::Empty => Pop::Empty,
            Pop::Busy => Pop::Busy,
            Pop::Blocked => Pop::Blocked,
        }
    }

    /// Asks the CPU to start loading the slot [`PREFETCH_AHEAD`] positions
    /// after `head` (called by the consumer that just claimed `head`), so
    /// that when a consumer gets there its stamp load no longer waits for a
    /// cache miss. On a ring at most `2 * PREFETCH_AHEAD` long it does
    /// nothing: the slot ahead would be one a producer is writing. Nor for
    /// slots smaller than [`PREFETCH_MIN_SLOT`].
    #[inline(always)]
    fn prefetch_ahead(&self, head: usize) {
        if !Self::LARGE_SLOTS || self.cap <= 2 * PREFETCH_AHEAD {
            return;
        }
        let mut index = (head & (self.mark_bit - 1)) + PREFETCH_AHEAD;
        if index >= self.cap {
            index -= self.cap;
        }
        // A hint only: it reads nothing the program sees, and is not a
        // memory access in the language's sense.
        prefetch(self.slots.at(index).0);
    }

    /// One push attempt that gives up at the first obstacle: `Ok` if the
    /// slot at `tail` was free and this thread won it in one CAS, the value
    /// back otherwise (full, closed, another producer's claim under way or
    /// won first: the caller falls back to [`Ring::push`]). A failed
    /// attempt changes nothing. Small enough to inline into a sender, so
    /// that a send that finds room makes no call but the copy.
    #[inline(always)]
    pub(crate) fn try_push_once(&self, value: T) -> Result<(), T> {
        let tail = self.tail.load(Ordering::Relaxed);
        let slot = self.slot(tail);
        // Acquire: as in `push`. A closed ring's `tail` carries the mark,
        // which no stamp has: a closed ring always fails here.
        if slot.stamp.load(Ordering::Acquire) != tail {
            return Err(value);
        }
        // SeqCst: as in `push` (the publish half of the handshake with a
        // parking receiver). Strong: an `Err` then means another producer
        // got there, never a spurious failure.
        if self
            .tail
            .compare_exchange(tail, self.next(tail), Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
        {
            return Err(value);
        }
        // SAFETY: as in `push`: we won the CAS for position `tail` and the
        // slot is empty (stamp == tail), so this thread alone writes it
        // until it stores the stamp.
        slot.value.with_mut(|p| unsafe { (*p).write(value) });
        // Release: pairs with the Acquire stamp load in pop.
        slot.stamp.store(tail + 1, Ordering::Release);
        Ok(())
    }

    /// One pop attempt that gives up at the first obstacle: `Some` if the
    /// front slot was readable and this thread won it in one CAS, `None`
    /// otherwise (empty, being written, a lost race: the caller falls back
    /// to [`Ring::try_pop_into`]). A failed attempt changes nothing. It
    /// returns the value rather than moving it to a place, so that once it
    /// is inlined into the caller the compiler reads only what the caller
    /// uses of a large message (the rest stays in the slot's cache lines).
    #[inline(always)]
    pub(crate) fn try_pop_once(&self) -> Option<T> {
        let head = self.head.load(Ordering::Relaxed);
        let slot = self.slot(head);
        // Acquire: as in `try_pop_into`.
        if slot.stamp.load(Ordering::Acquire) != head + 1 {
            return None;
        }
        // SeqCst: as in `try_pop_into` (the publish half of the handshake
        // with a parked sender). Strong: a `None` then means another
        // consumer got there, never a spurious failure.
        self.head
            .compare_exchange(head, self.next(head), Ordering::SeqCst, Ordering::Relaxed)
            .ok()?;
        self.prefetch_ahead(head);
        // SAFETY: as in `try_pop_into`: we won the CAS for position `head`
        // and its producer finished writing, so this thread alone reads the
        // slot until it stores the next stamp; the value moves out, and the
        // slot counts as empty from that stamp on.
        let value = slot.value.with(|p| unsafe { (*p).as_ptr().read() });
        // Release: pairs with the Acquire stamp load in push.
        slot.stamp
            .store(head.wrapping_add(self.one_lap), Ordering::Release);
        Some(value)
    }

    /// [`Ring::try_pop`] that moves the value to `out` (and answers
    /// `Item(())`) rather than returning it. A blocking receive passes the
    /// place it returns from, so a large message is copied once out of its
    /// slot instead of once more through each layer's enum.
    ///
    /// # Safety
    ///
    /// `out` must be valid for writing one `T`. On `Item`, `*out` holds the
    /// popped value and the caller owns it; otherwise `*out` is untouched.
    #[inline]
    pub(crate) unsafe fn try_pop_into(&self, strict: bool, out: *mut T) -> Pop<()> {
        let mut backoff = Backoff::new();
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(head);
            // Acquire: pairs with the producer's Release stamp store, so the
            // value it wrote is visible to our read.
            let stamp = slot.stamp.load(Ordering::Acquire);
            if stamp == head + 1 {
                // SeqCst: the "publish" half of the handshake with a parked
                // sender, read by `handshake_load(head)` in `push`.
                match self.head.compare_exchange_weak(
                    head,
                    self.next(head),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        self.prefetch_ahead(head);
                        // SAFETY: we won the CAS for position `head` and the
                        // stamp says the producer of `head` finished writing;
                        // this thread alone reads the slot until it stores the
                        // next stamp. The value moves to `out`, valid for a
                        // write (the caller's contract) and not inside the
                        // ring; the slot counts as empty from the stamp on.
                        slot.value.with(|p| unsafe {
                            core::ptr::copy_nonoverlapping((*p).as_ptr(), out, 1);
                        });
                        // Release: pairs with the Acquire stamp load in push.
                        slot.stamp
                            .store(head.wrapping_add(self.one_lap), Ordering::Release);
                        return Pop::Item(());
                    }
                    Err(current) => {
                        head = current;
                        backoff.spin();
                    }
                }
            } else if stamp == head || self.held_by_last_lap(stamp, head) {
                // Not written for this lap: empty, or a producer is writing
                // (or the previous lap's value is still being read, and then
                // no producer has claimed `head`: `tail == head`).
                if !strict {
                    return Pop::Empty;
                }
                let tail = handshake_load(&self.tail) & !self.mark_bit;
                if tail == head {
                    return Pop::Empty;
                }
                // A producer claimed `head` (or later) and has not finished.
                let now = self.head.load(Ordering::Relaxed);
                if now == head {
                    return if self.finished_between(head, tail) {
                        Pop::Blocked
                    } else {
                        Pop::Busy
                    };
                }
                head = now;
            } else {
                // Another consumer moved `head` on; our copy is stale.
                backoff.spin();
                head = self.head.load(Ordering::Relaxed);
            }
        }
    }

    /// True if nothing is queued or being written: `head`, then `tail` read
    /// with [`handshake_load`] (the load half of a handshake whose publish
    /// half the caller did), are equal.
    pub(crate) fn is_empty_now(&self) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        handshake_load(&self.tail) & !self.mark_bit == head
    }

    /// True if a position strictly between `head` and `tail` holds a
    /// finished value. If `tail` is not ahead of `head` (a stale read), the
    /// walk stops after one lap; either answer then only makes the caller
    /// retry.
    #[cold]
    fn finished_between(&self, head: usize, tail: usize) -> bool {
        let mut pos = self.next(head);
        // At most a lap of positions lies between the two.
        for _ in 0..self.cap {
            if pos == tail {
                break;
            }
            // Acquire: as in `try_pop`.
            if self.slot(pos).stamp.load(Ordering::Acquire) == pos + 1 {
                return true;
            }
            pos = self.next(pos);
        }
        false
    }

    /// Pushes up to `n` values read from `src`, in order, claiming a run of
    /// consecutive free slots with one CAS. Returns how many it took; `0`
    /// means the ring was full at the front slot.
    ///
    /// # Errors
    ///
    /// `Err(())` if the ring is closed; nothing was taken.
    ///
    /// # Safety
    ///
    /// `src` must point to `n` initialised values. The first `k` of them
    /// (`k` = the returned count) are moved out: the caller must treat them
    /// as uninitialised afterwards. The rest are untouched.
    pub(crate) unsafe fn push_many(&self, src: *const T, n: usize) -> Result<usize, ()> {
        if n == 0 {
            return Ok(0);
        }
        let mut backoff = Backoff::new();
        let mut tail = self.tail.load(Ordering::Relaxed);
        'retry: loop {
            if tail & self.mark_bit != 0 {
                return Err(());
            }
            // Count free slots from `tail` to the end of this lap.
            let index = tail & (self.mark_bit - 1);
            let room = n.min(self.cap - index);
            let mut k = 0;
            while k < room {
                // Acquire: as in `push`.
                if self.slot(tail + k).stamp.load(Ordering::Acquire) != tail + k {
                    break;
                }
                k += 1;
            }
            if k == 0 {
                // Same cases as `push`: full, a consumer still reading, or a
                // stale `tail`.
                let stamp = self.slot(tail).stamp.load(Ordering::Acquire);
                if self.held_by_last_lap(stamp, tail) {
                    let head = handshake_load(&self.head);
                    if head.wrapping_add(self.one_lap) == tail {
                        // Full; see `push` for why `tail` is read again.
                        return if self.closed_now() { Err(()) } else { Ok(0) };
                    }
                    backoff.snooze();
                } else {
                    backoff.spin();
                }
                tail = self.tail.load(Ordering::Relaxed);
                continue 'retry;
            }
            let last = tail + k - 1;
            // SeqCst: as in `push`. Winning it claims positions tail..=last:
            // each was free when we looked, and only its claimant changes it.
            match self.tail.compare_exchange_weak(
                tail,
                self.next(last),
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    for i in 0..k {
                        let slot = self.slot(tail + i);
                        // SAFETY: the CAS claimed position `tail + i` for this
                        // thread; the caller guarantees `src.add(i)` is an
                        // initialised value for us to move.
                        slot.value
                            .with_mut(|p| unsafe { (*p).write(src.add(i).read()) });
                        // Release: as in `push`.
                        slot.stamp.store(tail + i + 1, Ordering::Release);
                    }
                    return Ok(k);
                }
                Err(current) => {
                    tail = current;
                    backoff.spin();
                }
            }
        }
    }

    /// Pops up to `max` values into `out` with one CAS on `head`, in order.
    /// Takes only slots that are ready now; returns how many it took.
    pub(crate) fn pop_many(&self, out: &mut Vec<T>, max: usize) -> usize {
        if max == 0 {
            return 0;
        }
        let mut backoff = Backoff::new();
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            let index = head & (self.mark_bit - 1);
            let room = max.min(self.cap - index);
            let mut k = 0;
            while k < room {
                // Acquire: as in `try_pop`.
                if self.slot(head + k).stamp.load(Ordering::Acquire) != head + k + 1 {
                    break;
                }
                k += 1;
            }
            if k == 0 {
                let stamp = self.slot(head).stamp.load(Ordering::Acquire);
                if stamp == head || self.held_by_last_lap(stamp, head) {
                    // Not written yet (as in `try_pop_into`): nothing ready
                    // at the front.
                    return 0;
                }
                backoff.spin();
                head = self.head.load(Ordering::Relaxed);
                continue;
            }
            // Make room first: nothing may panic between winning the CAS and
            // storing the stamps, or the claimed slots would stay stuck.
            out.reserve(k);
            let last = head + k - 1;
            // SeqCst: as in `try_pop`.
            match self.head.compare_exchange_weak(
                head,
                self.next(last),
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    for i in 0..k {
                        let slot = self.slot(head + i);
                        // SAFETY: the CAS claimed position `head + i`, whose
                        // stamp said it was written; we alone read it.
                        let value = slot.value.with(|p| unsafe { (*p).assume_init_read() });
                        out.push(value);
                        // Release: as in `try_pop`.
                        slot.stamp
                            .store((head + i).wrapping_add(self.one_lap), Ordering::Release);
                    }
                    return k;
                }
                Err(current) => {
                    head = current;
                    backoff.spin();
                }
            }
        }
    }

    /// Sets the mark bit on `tail`: every later push fails with `Closed`.
    /// Returns true if this call closed the ring.
    pub(crate) fn close(&self) -> bool {
        // SeqCst: the mark is the publish half of the close handshake.
        self.tail.fetch_or(self.mark_bit, Ordering::SeqCst) & self.mark_bit == 0
    }

    /// True once [`Ring::close`] has been called, read as the load half of
    /// the close handshake: a sender that registered as a waiter and then
    /// calls this sees a concurrent `close` or is woken by it.
    fn closed_now(&self) -> bool {
        handshake_load(&self.tail) & self.mark_bit != 0
    }

    /// Free slots, from two relaxed loads: a hint that may be stale or
    /// inconsistent (for pacing a wait, never for a decision).
    #[inline]
    pub(crate) fn room_hint(&self) -> usize {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed) & !self.mark_bit;
        self.cap - self.distance(head, tail)
    }

    /// Whether this ring's slots are a cache line or more (see
    /// [`PREFETCH_MIN_SLOT`]): where a consumer that reads right behind the
    /// producer trades several lines with it per message.
    pub(crate) const LARGE_SLOTS: bool = size_of::<Slot<Cell<T>>>() >= PREFETCH_MIN_SLOT;

    /// How this ring lays out its slots (module docs, "Slot layout").
    const LAYOUT: Layout = if !Self::LARGE_SLOTS {
        Layout::Packed
    } else if size_of::<Lined<Slot32<T>>>() == size_of::<Lined<Slot<Cell<T>>>>() {
        Layout::Lined32
    } else {
        Layout::Lined
    };

    /// The position `k` (`< cap`) after `pos`, as `k` calls of `next`
    /// would build it.
    #[inline]
    fn pos_after(&self, pos: usize, k: usize) -> usize {
        debug_assert!(k < self.cap);
        let index = (pos & (self.mark_bit - 1)) + k;
        if index < self.cap {
            pos + k
        } else {
            (pos & !(self.one_lap - 1))
                .wrapping_add(self.one_lap)
                .wrapping_add(index - self.cap)
        }
    }

    /// Whether a pop would likely find something to do: the front slot,
    /// or the one after it, is written for its lap. Judged by relaxed
    /// loads of `head` and those two stamps only, so polling it leaves
    /// `tail` (the line producers claim slots on) alone: a hint for pacing
    /// a wait, never for a decision. The second slot covers a front slot
    /// whose producer was preempted mid-write with a finished value behind
    /// it ([`Pop::Blocked`]), which the exact attempt must then wait out.
    #[inline]
    pub(crate) fn front_ready_hint(&self) -> bool {
        let head = self.head_hint();
        self.filled_hint(head, 1) || (self.cap > 1 && self.filled_hint(head, 2))
    }

    /// `head`, from a relaxed load: a hint (for pacing a wait).
    #[inline]
    pub(crate) fn head_hint(&self) -> usize {
        self.head.load(Ordering::Relaxed)
    }

    /// Whether the ring holds at least `depth` values counted from
    /// position `head` (a value returned by [`Ring::head_hint`]), judged by
    /// one relaxed load of the stamp of the `depth`-th slot: a hint that
    /// may be stale, for pacing a wait, never for a decision. Reading one
    /// stamp, not `tail`, leaves the line producers claim slots on alone.
    /// `depth` must be in `1..=capacity`.
    #[inline]
    pub(crate) fn filled_hint(&self, head: usize, depth: usize) -> bool {
        debug_assert!(depth >= 1 && depth <= self.cap);
        let pos = self.pos_after(head, depth - 1);
        // Written for this lap: the stamp a push leaves (`pos + 1`).
        self.slot(pos).stamp.load(Ordering::Relaxed) == pos.wrapping_add(1)
    }

    /// The number of values queued (a snapshot).
    pub(crate) fn len(&self) -> usize {
        loop {
            let tail = self.tail.load(Ordering::SeqCst);
            let head = self.head.load(Ordering::SeqCst);
            // A consistent pair: `tail` did not move while we read `head`.
            if self.tail.load(Ordering::SeqCst) == tail {
                return self.distance(head, tail & !self.mark_bit);
            }
        }
    }

    /// Values between positions `head` and `tail` (`tail` unmarked).
    fn distance(&self, head: usize, tail: usize) -> usize {
        let hix = head & (self.mark_bit - 1);
        let tix = tail & (self.mark_bit - 1);
        if hix < tix {
            tix - hix
        } else if hix > tix {
            self.cap - hix + tix
        } else if tail == head {
            0
        } else {
            self.cap
        }
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // `&mut self`: no push or pop is in progress, so every position in
        // head..tail holds an initialised value, dropped here exactly once.
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed) & !self.mark_bit;
        let hix = head & (self.mark_bit - 1);
        for i in 0..self.distance(head, tail) {
            // An index is a position of lap 0.
            let index = (hix + i) % self.cap;
            // SAFETY: `index` lies in the queued run head..tail, so its value
            // is initialised and not read by anyone else (`&mut self`).
            self.slot(index)
                .value
                .with_mut(|p| unsafe { (*p).assume_init_drop() });
        }
    }
}

/// Test hooks that stop a producer half-way through a push, or a consumer
/// half-way through a pop.
#[cfg(all(test, not(loom)))]
impl<T> Ring<T> {
    /// Claims the front position like a pop does, but does not read it (a
    /// consumer descheduled after its CAS). Returns the position.
    pub(crate) fn claim_without_reading(&self) -> usize {
        let head = self.head.load(Ordering::Relaxed);
        assert_eq!(self.slot(head).stamp.load(Ordering::Relaxed), head + 1);
        let next = self.next(head);
        self.head
            .compare_exchange(head, next, Ordering::SeqCst, Ordering::Relaxed)
            .expect("no concurrent pop in this test");
        head
    }

    /// Finishes the pop of a position claimed by `claim_without_reading`.
    pub(crate) fn finish_read(&self, pos: usize) -> T {
        let slot = self.slot(pos);
        // SAFETY: `pos` was claimed by `claim_without_reading`, whose stamp
        // said it was written, and not read yet: this is the consumer's
        // read step.
        let value = slot.value.with(|p| unsafe { (*p).assume_init_read() });
        slot.stamp
            .store(pos.wrapping_add(self.one_lap), Ordering::Release);
        value
    }

    /// Claims the next position like `push` does, but does not write it
    /// (a producer descheduled after its CAS). Returns the position.
    pub(crate) fn claim_without_writing(&self) -> usize {
        let tail = self.tail.load(Ordering::Relaxed);
        assert_eq!(self.slot(tail).stamp.load(Ordering::Relaxed), tail);
        let next = self.next(tail);
        self.tail
            .compare_exchange(tail, next, Ordering::SeqCst, Ordering::Relaxed)
            .expect("no concurrent push in this test");
        tail
    }

    /// Finishes the push of a position claimed by `claim_without_writing`.
    pub(crate) fn finish_write(&self, pos: usize, value: T) {
        let slot = self.slot(pos);
        // SAFETY: `pos` was claimed by `claim_without_writing` and not
        // written yet, so this is the producer's write step.
        slot.value.with_mut(|p| unsafe { (*p).write(value) });
        slot.stamp.store(pos + 1, Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// `filled_hint` counts from a `head` through the wrap of the index
    /// and into the next lap, and a slot still holding the previous lap's
    /// value (or not yet written) does not count.
    #[test]
    fn filled_hint_counts_across_the_wrap() {
        let ring = Ring::<u32>::new(5);
        // Move head and tail to index 3 of lap 0.
        for i in 0..3 {
            assert!(ring.push(i).is_ok());
            assert_eq!(ring.try_pop_once(), Some(i));
        }
        let head = ring.head_hint();
        assert!(!ring.filled_hint(head, 1), "empty");
        for i in 0..4 {
            assert!(ring.push(10 + i).is_ok()); // indices 3, 4, then 0, 1 of lap 1
        }
        for depth in 1..=4 {
            assert!(ring.filled_hint(head, depth), "depth {depth}");
        }
        // Index 2 of lap 1: its stamp is still the one lap 0's pop left.
        assert!(!ring.filled_hint(head, 5));
        assert!(ring.push(14).is_ok());
        assert!(ring.filled_hint(head, 5));
    }

    /// `try_push_once` pushes where `push` would, through the wrap of the
    /// index, and at every obstacle hands the value back and changes
    /// nothing: a full ring, a slot whose previous lap is still being
    /// read, one claimed by a producer still writing it, a closed ring.
    #[test]
    fn try_push_once_gives_up_without_a_change() {
        let ring = Ring::<String>::new(2);
        for lap in 0..3 {
            for i in 0..2 {
                assert!(ring.try_push_once(format!("{lap}.{i}")).is_ok());
            }
            assert_eq!(ring.try_push_once("full".into()), Err("full".into()));
            // The consumer claimed the front slot but has not read it.
            let pos = ring.claim_without_reading();
            assert_eq!(ring.try_push_once("read".into()), Err("read".into()));
            assert_eq!(ring.finish_read(pos), format!("{lap}.0"));
            match ring.try_pop(true) {
                Pop::Item(v) => assert_eq!(v, format!("{lap}.1")),
                _ => panic!("lap {lap}: the second value is queued"),
            }
        }
        // A producer claimed the next slot but has not written it: a push
        // goes to the slot after it; then the ring is full, its front
        // slot (the one the push comes round to) still being written.
        let pos = ring.claim_without_writing();
        assert!(ring.try_push_once("next".into()).is_ok(), "the other slot");
        assert_eq!(ring.try_push_once("full".into()), Err("full".into()));
        ring.finish_write(pos, "claimed".into());
        for want in ["claimed", "next"] {
            match ring.try_pop(true) {
                Pop::Item(v) => assert_eq!(v, want),
                _ => panic!("{want} is queued"),
            }
        }
        assert!(ring.close());
        assert_eq!(ring.try_push_once("closed".into()), Err("closed".into()));
        assert!(matches!(ring.try_pop(true), Pop::Empty));
    }

    /// Large slots on a ring long enough to prefetch: values come out in
    /// order through several laps, with the slot ahead wrapping past the
    /// end (run under miri too, which checks the slot pointer arithmetic).
    #[test]
    fn prefetching_ring_keeps_order_across_laps() {
        type Big = [u64; 8];
        assert!(size_of::<Slot<Cell<Big>>>() >= PREFETCH_MIN_SLOT);
        let cap = 2 * PREFETCH_AHEAD + 3;
        let r = Ring::<Big>::new(cap);
        let (mut sent, mut got) = (0u64, 0u64);
        // Two rounds move `head` past every index (fewer ops under miri).
        let rounds = if cfg!(miri) { 2 } else { 5 };
        for _ in 0..rounds {
            // Fill most of the ring, then drain it, alternating the two
            // pop paths, so that `head` passes every index.
            while sent - got < cap as u64 - 1 {
                assert!(r.push([sent; 8]).is_ok());
                sent += 1;
            }
            while got < sent {
                let value = if got % 2 == 0 {
                    r.try_pop_once()
                } else {
                    match r.try_pop(true) {
                        Pop::Item(v) => Some(v),
                        _ => None,
                    }
                };
                assert_eq!(value, Some([got; 8]));
                got += 1;
            }
        }
        assert!(matches!(r.try_pop(true), Pop::Empty));
    }

    /// Slots of a cache line or more start lines of their own, their value
    /// at 32 bytes where that takes no more lines than at 8; smaller ones
    /// are packed back to back (module docs, "Slot layout"). Checks each
    /// layout's stride, where the value starts in its slot, and that
    /// slots of a line or more start lines.
    #[test]
    fn slot_layouts() {
        /// (layout, stride, the value's offset from the stamp).
        fn shape<T>(r: &Ring<T>) -> (Layout, usize, usize) {
            let stamp = |i: usize| r.slot(i).stamp as *const AtomicUsize as usize;
            let value = |i: usize| r.slot(i).value as *const Cell<T> as usize;
            for i in 1..r.capacity() {
                assert_eq!(stamp(i) - stamp(i - 1), stamp(1) - stamp(0), "slot {i}");
                if Ring::<T>::LARGE_SLOTS {
                    assert_eq!(stamp(i) % 64, 0, "slot {i} starts a line");
                }
            }
            (Ring::<T>::LAYOUT, stamp(1) - stamp(0), value(0) - stamp(0))
        }
        // 264 and 288 bytes both take five lines: the value at 32.
        assert_eq!(
            shape(&Ring::<[u8; 256]>::new(5)),
            (Layout::Lined32, 320, 32)
        );
        assert_eq!(shape(&Ring::<[u64; 8]>::new(5)), (Layout::Lined32, 128, 32));
        // 64 bytes with the stamp at 8, 88 at 32: the value stays at 8.
        assert_eq!(shape(&Ring::<[u8; 56]>::new(5)), (Layout::Lined, 64, 8));
        assert_eq!(shape(&Ring::<[u8; 57]>::new(5)), (Layout::Lined32, 128, 32));
        assert_eq!(shape(&Ring::<[u8; 96]>::new(5)), (Layout::Lined32, 128, 32));
        // 108 bytes at 8 fit in two lines, 132 at 32 do not.
        assert_eq!(shape(&Ring::<[u8; 100]>::new(5)), (Layout::Lined, 128, 8));
        // Smaller: packed.
        assert_eq!(shape(&Ring::<u64>::new(5)), (Layout::Packed, 16, 8));
        assert_eq!(shape(&Ring::<[u8; 40]>::new(5)), (Layout::Packed, 48, 8));
    }

    /// A ring of lined slots drops exactly the values still queued, across
    /// the wrap of the index, with the value at 8 and at 32 bytes.
    #[test]
    fn lined_ring_drops_queued_values_once() {
        fn check<const N: usize>(layout: Layout) {
            assert_eq!(Ring::<(std::sync::Arc<()>, [u8; N])>::LAYOUT, layout);
            let token = std::sync::Arc::new(());
            let r = Ring::<(std::sync::Arc<()>, [u8; N])>::new(3);
            for _ in 0..2 {
                assert!(r.push((token.clone(), [0; N])).is_ok());
            }
            assert!(matches!(r.try_pop(true), Pop::Item(_)));
            for _ in 0..2 {
                assert!(r.push((token.clone(), [0; N])).is_ok());
            }
            assert_eq!(std::sync::Arc::strong_count(&token), 4);
            drop(r);
            assert_eq!(std::sync::Arc::strong_count(&token), 1);
        }
        check::<100>(Layout::Lined);
        check::<80>(Layout::Lined32);
    }

    /// `front_ready_hint` says yes for a written front slot, and for a
    /// front slot still being written with a finished one behind it (also
    /// across the wrap of the index), and no for an empty ring, a lone
    /// unfinished write and a slot holding the previous lap's stamp.
    #[test]
    fn front_ready_hint_sees_the_front_two_slots() {
        let r = Ring::<u32>::new(3);
        assert!(!r.front_ready_hint(), "empty");
        assert!(r.push(1).is_ok());
        assert!(r.front_ready_hint(), "written front slot");
        assert_eq!(r.try_pop_once(), Some(1));
        assert!(!r.front_ready_hint(), "emptied again");
        // Move head and tail to index 2, the last one of lap 0.
        assert!(r.push(2).is_ok());
        assert_eq!(r.try_pop_once(), Some(2));
        let pos = r.claim_without_writing(); // index 2
        assert!(!r.front_ready_hint(), "only an unfinished write");
        assert!(r.push(3).is_ok()); // index 0 of lap 1
        assert!(r.front_ready_hint(), "finished value behind the front slot");
        r.finish_write(pos, 4);
        assert_eq!(r.try_pop_once(), Some(4));
        assert_eq!(r.try_pop_once(), Some(3));
        assert!(!r.front_ready_hint(), "stamps of the previous lap");
        let one = Ring::<u32>::new(1);
        assert!(!one.front_ready_hint());
        assert!(one.push(5).is_ok());
        assert!(one.front_ready_hint());
    }

    /// Runs `f` on another thread and returns its result, failing (rather
    /// than hanging) if it takes more than 10 s: for calls that used to
    /// spin until another thread moved.
    fn within_10s<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the call did not return: it waits for a thread that is not running")
    }

    /// Every slot claimed, the oldest one not yet written (its producer
    /// descheduled after its CAS): a push finds the ring full at once. It
    /// used to take the slot's stamp for a stale `tail` and spin, without
    /// yielding, until that producer wrote it.
    #[test]
    fn push_behind_an_unfinished_write_a_lap_ago_finds_the_ring_full() {
        let r = std::sync::Arc::new(Ring::<u32>::new(2));
        let pos = r.claim_without_writing();
        assert!(r.push(1).is_ok());
        let ring = r.clone();
        let full = within_10s(move || matches!(ring.push(2), Err(PushError::Full(2))));
        assert!(full, "push: full");
        let ring = r.clone();
        let full = within_10s(move || {
            let items = [3u32];
            // SAFETY: `items` holds one initialised value, a `u32` (`Copy`:
            // moving it out leaves `items` valid whatever is moved).
            unsafe { ring.push_many(items.as_ptr(), 1) }
        });
        assert_eq!(full, Ok(0), "push_many: full");
        r.finish_write(pos, 0);
        let mut out = Vec::new();
        assert_eq!(r.pop_many(&mut out, 2), 2);
        assert_eq!(out, [0, 1]);
    }

    /// The slot at `head` still being read a lap ago (its consumer
    /// descheduled after its CAS), nothing else queued: a pop finds the
    /// ring empty at once. It used to spin, without yielding, until that
    /// consumer finished.
    #[test]
    fn pop_behind_an_unfinished_read_a_lap_ago_finds_the_ring_empty() {
        let r = std::sync::Arc::new(Ring::<u32>::new(2));
        assert!(r.push(1).is_ok());
        assert!(r.push(2).is_ok());
        let pos = r.claim_without_reading();
        assert!(matches!(r.try_pop(true), Pop::Item(2)));
        for strict in [true, false] {
            let ring = r.clone();
            let empty = within_10s(move || matches!(ring.try_pop(strict), Pop::Empty));
            assert!(empty, "try_pop({strict}): empty");
        }
        let ring = r.clone();
        let none = within_10s(move || ring.try_pop_once().is_none());
        assert!(none, "try_pop_once: nothing");
        let ring = r.clone();
        let taken = within_10s(move || ring.pop_many(&mut Vec::new(), 2));
        assert_eq!(taken, 0, "pop_many: nothing");
        assert_eq!(r.finish_read(pos), 1);
        assert!(r.push(3).is_ok());
        assert!(matches!(r.try_pop(true), Pop::Item(3)));
    }

    #[test]
    fn busy_then_blocked_then_ready() {
        let r = Ring::new(3);
        let pos = r.claim_without_writing();
        // Only an unfinished write: counts as empty, but busy.
        assert!(matches!(r.try_pop(true), Pop::Busy));
        assert!(matches!(r.try_pop(false), Pop::Empty));
        assert!(r.push(7).is_ok());
        // A finished value waits behind the unfinished one.
        assert!(matches!(r.try_pop(true), Pop::Blocked));
        let mut out = Vec::new();
        assert_eq!(r.pop_many(&mut out, 3), 0);
        r.finish_write(pos, 6);
        assert_eq!(r.pop_many(&mut out, 3), 2);
        assert_eq!(out, [6, 7]);
    }

    #[test]
    fn position_layout() {
        let r = Ring::<u8>::new(3);
        assert_eq!(r.mark_bit, 4);
        assert_eq!(r.one_lap, 8);
        assert_eq!(r.next(0), 1);
        assert_eq!(r.next(2), 8);
        assert_eq!(r.next(8 | 2), 16);
    }

    #[test]
    fn distance_handles_wrap_and_full() {
        let r = Ring::<u8>::new(3);
        assert_eq!(r.distance(0, 0), 0);
        assert_eq!(r.distance(0, 8), 3); // one lap ahead, same index: full
        assert_eq!(r.distance(2, 8 | 1), 2);
        assert_eq!(r.distance(8 | 1, 8 | 2), 1);
    }

    #[test]
    fn push_pop_many_laps() {
        let r = Ring::new(3);
        for i in 0..100 {
            assert!(r.push(i).is_ok());
            assert!(r.push(i + 1000).is_ok());
            assert_eq!(r.len(), 2);
            assert!(matches!(r.try_pop(true), Pop::Item(v) if v == i));
            assert!(matches!(r.try_pop(false), Pop::Item(v) if v == i + 1000));
            assert!(matches!(r.try_pop(true), Pop::Empty));
        }
    }

    #[test]
    fn full_then_closed() {
        let r = Ring::new(2);
        assert!(r.push(1).is_ok());
        assert!(r.push(2).is_ok());
        assert!(matches!(r.push(3), Err(PushError::Full(3))));
        assert_eq!(r.len(), 2);
        assert!(r.close());
        assert!(!r.close());
        assert!(matches!(r.push(4), Err(PushError::Closed(4))));
        assert_eq!(r.len(), 2);
        assert!(matches!(r.try_pop(true), Pop::Item(1)));
    }

    #[test]
    fn many_wraps_at_lap_end() {
        let r = Ring::new(4);
        let src = [1u32, 2, 3];
        // SAFETY: `src` holds 3 `Copy` values; moving them out is a copy.
        assert_eq!(unsafe { r.push_many(src.as_ptr(), 3) }, Ok(3));
        let mut out = Vec::new();
        assert_eq!(r.pop_many(&mut out, 2), 2);
        let src = [4u32, 5, 6, 7];
        // Only one slot is left before the lap ends at index 3.
        // SAFETY: as above.
        assert_eq!(unsafe { r.push_many(src.as_ptr(), 4) }, Ok(1));
        // SAFETY: as above.
        assert_eq!(unsafe { r.push_many(src[1..].as_ptr(), 3) }, Ok(2));
        // SAFETY: as above; the ring is full now.
        assert_eq!(unsafe { r.push_many(src[3..].as_ptr(), 1) }, Ok(0));
        assert_eq!(r.pop_many(&mut out, 10), 2);
        assert_eq!(r.pop_many(&mut out, 10), 2);
        assert_eq!(out, [1, 2, 3, 4, 5, 6]);
    }
}
