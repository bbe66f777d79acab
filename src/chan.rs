//! `Chan<T>`: the state shared by every handle of one channel — one ring per
//! priority lane, the waiter lists, the handle counts — and the operations
//! the handles call: try, blocking (with an optional deadline) and poll.
//!
//! # Waiting
//!
//! Every blocking or async operation is an *attempt* run in a loop (see
//! [`WaitList::block`] and [`WaitList::poll`]): try; on "would block" spin, then
//! yield, then register on the waiter list and try once more before parking
//! (the handshake of [`crate::wait`]). Receivers wait on one list for the whole
//! channel; senders wait on the list of the lane they send to, so a pop from
//! one lane wakes only senders of that lane.
//!
//! A blocking sender that finds its lane full first spins (then yields)
//! until receivers have freed [`LOW_WATER`] slots ([`BATCH_LOW_WATER`] for
//! a batch; at most half the lane) or its backoff runs out, and only then
//! starts the attempts above ([`Chan::await_room`]). A full
//! ring's next free slot is the one receivers read next; pushing into it
//! the moment it frees makes sender and receiver trade that cache line for
//! every message, which halved throughput in the benches. The pacing is a
//! hint only: the attempts that follow take a single free slot, and it
//! never parks.
//!
//! A blocking receive (`recv`, `recv_timeout`, `recv_deadline`; not
//! `recv_batch`) that finds nothing first watches the lanes
//! ([`Chan::await_message`]): it spins, then yields, until some lane's
//! front slot (or the one after it) looks written, the channel closes,
//! the deadline passes or its backoff runs out. Its attempts then go on
//! from the backoff step it reached, so the watch does not delay parking.
//! It reads each lane's `head` and front two stamps, never `tail`: an
//! attempt that finds the front slot unwritten reads `tail` to tell
//! "empty" from "being written", and every such read took the line
//! producers claim slots on away from them, so a receiver that kept up
//! with its producer made each push wait for that line. The second slot
//! covers a producer preempted between claiming the front slot and
//! writing it with a finished message behind it: the attempts then wait
//! that writer out (`Scan::Blocked`). Watching the front slot alone cost
//! MPSC `u64` near rounds 1.12 → 1.04 (paired, below), two slots 1.10. A
//! hint only: it changes no state and never parks.
//!
//! Measured with `interleaved`, `u64` rows, kernel-placed, alternating
//! with the build before it (50 alternations of 3 rounds, twice), paired
//! ratio to the best peer, medians, rounds in parentheses: near rounds
//! SPSC 1.01 → 1.14 and 1.04 → 1.13 (105-130 each), MPSC 1.09 → 1.18 and
//! 1.07 → 1.13, SPSC on one lane of four against crossbeam 1.24 → 1.39
//! and 1.15 → 1.38; hyperthread-sibling rounds SPSC 0.70 → 0.70 and 0.78
//! → 0.75 (12-31); far rounds too few to say (4-14). A first version,
//! which ran a whole backoff of its own before the attempts' own, had
//! moved sibling rounds instead (0.66 → 0.99, 0.71 → 0.85, 0.69 → 0.78)
//! and near ones by -0.03 to +0.19 (SPSC) and -0.19 to -0.01 (MPSC).
//!
//! # Slipping (large messages)
//!
//! A blocking receive that finds every lane empty, on a channel of large
//! messages (slots of a cache line or more), first waits up to
//! [`SLIP_BUDGET`] for a lane to fill [`SLIP_DEPTH`] slots deep before it
//! starts the attempts above ([`Chan::slip`]); it watches one stamp per lane
//! and takes nothing. A message in the Urgent lane (or in a lane too short
//! to wait on) ends it at once. A receiver that keeps up with its producer reads each
//! slot right after it is written, so the slot's lines go back and forth
//! between the two cores for every message; one that lets the producer
//! get ahead reads lines the producer has finished with, and the misses
//! overlap (the consumer prefetch helps). This is the "temporal slipping"
//! of FastForward (Giacomoni, Moseley, Vachharajani, PPoPP 2008). The wait
//! is a hint, like the sender's pacing: it changes no state, and the
//! attempts that follow are the same.
//!
//! A thread whose waits do not spin (one core, or a core it keeps handing
//! to other threads: see [`crate::backoff`]) does not slip: spinning there
//! only delays the threads it waits for (4p4c 256 B near, probe: 28.4 M
//! msg/s without slipping, 26.2 slipping, 29.8 slipping only when not
//! crowded).
//!
//! Whether it paid is judged afterwards from how much was queued: a
//! receiver that found fewer than [`SLIP_WORTH`] messages (a request and
//! reply, a trickle) skips the next 1, 2, 4, … up to [`SLIP_MAX_SKIP`]
//! slips, so such traffic pays the wait about a dozen times, not once per
//! message. That state lives in each `Receiver` handle ([`Slip`]).
//!
//! Measured (interleaved bench, 256 B, 40 alternations of 2 rounds against
//! the build without it, near phase, M msg/s medians): SPSC 35.6 → 43.1,
//! MPSC 40.2 → 44.5, 2p2c 35.6 → 41.5, 4p4c 29.6 → 28.5. Far-phase rounds
//! were mixed (see `benches/HISTORY.md`). A first version also read each lane's
//! `tail` to notice a close while slipping: that took the producers' line
//! away from them on every poll and cancelled the whole gain.
//!
//! # Close
//!
//! [`Chan::close`] marks every ring's `tail` (no push succeeds after that),
//! then sets `closed`, then wakes every waiter. A receiver that finds every
//! lane empty reads `closed`, and if it is set scans once more: pushes that
//! won their CAS before the mark are then visible (or `Busy`), so an empty
//! second scan means empty for ever.
//!
//! Which of racing `close` calls "closed the channel" (its return value)
//! is the one whose mark of the Urgent lane, always marked first, found it
//! unmarked. A send that finds its lane marked finishes the close
//! ([`Chan::finish_close`]) before it reports `Disconnected`, so that by
//! then every lane is closed; it acquires the mark it saw first, so its
//! own mark of the Urgent lane comes after the closer's and never takes
//! that report.
//!
//! # The ready mask (a hint for finding a message, never for "empty")
//!
//! `ready` holds one "maybe non-empty" bit per lane (bits `0..LANES`) and,
//! above them, a count of receivers in the middle of clearing bits
//! (`CLEARING`). A receive pops from the lanes whose bit is set, highest
//! first, and only falls back to the lanes whose bit is clear when that
//! finds nothing. So the mask only ever decides *where to look first*:
//! every `Empty`, `Busy` or `Disconnected` answer still comes from a strict
//! check of all four lanes, each one after the caller registered (the
//! waiter handshake of [`crate::wait`]) and, when closed, after `closed`
//! was seen (the close rule above), exactly as without the mask.
//!
//! What the mask must guarantee is priority: a receive that starts after a
//! send into lane `h` returned must not skip `h` to serve a lower lane.
//!
//! - Push: after the CAS that claims its slot (a SeqCst RMW on `tail`),
//!   the sender reads `ready` with [`handshake_load`] and, only if its
//!   lane's bit is clear, sets it with `fetch_or` (SeqCst). Steady traffic
//!   into a lane whose bit is set costs one load, no RMW. The send returns
//!   after this.
//! - Clear: a receive that found lane `h` empty (strictly: `tail == head`)
//!   and then popped a message from a lower lane clears `h`'s bit and adds
//!   one to `CLEARING` in the same SeqCst CAS, then re-checks `h` (`head`,
//!   then `tail` with [`handshake_load`]); if `h` is not empty it sets the
//!   bit again, and in the same CAS takes its one off `CLEARING`. A receive
//!   that found nothing does not clear (draining a lane costs no RMW).
//! - A receive that reads `CLEARING != 0` ignores the mask and scans every
//!   lane in order, as without it.
//!
//! Why a completed send into `h` is not skipped: the sender's load `P2`
//! of `ready` follows its `tail` CAS `P1`. A clear `C` of `h`'s bit that
//! comes after the value `P2` read in `ready`'s modification order follows
//! `P2` in the SeqCst total order (store buffering, as in [`crate::wait`]:
//! `P1 < P2 < C < re-check`), so the clearer's re-check of `tail` sees
//! `P1` and sets the bit again (or the message was already taken). A
//! receive that starts after the send returned reads `ready` at or after
//! the value `P2` read (coherence); if a clear came in between, the value
//! it reads either still counts that clearer in `CLEARING` (full scan) or
//! was written after the clearer set the bit again. A clear that comes
//! before `P2`'s value is seen by `P2` (clear bit), and the sender sets it.

use core::mem::MaybeUninit;
use core::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::error::{SendTimeoutError, TryRecvError, TrySendError};
use crate::loom::{fence, handshake_load, AtomicUsize, Ordering};
use crate::pad::CachePadded;
use crate::priority::{Priority, LANES};
use crate::ring::{Pop, PushError, Ring};
use crate::wait::{Attempt, TimedOut, WaitId, WaitList};

/// What a batch receive that does not wait found
/// ([`Chan::try_recv_batch_logged`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum BatchTry {
    /// It took this many messages (at least one).
    Took(usize),
    /// Every lane is empty: a thread that registered as a waiter before
    /// this look may park, since a send that lands after the look wakes it.
    Empty,
    /// Nothing is ready, but a send has claimed a slot and is still
    /// writing it. A thread must not park on this: the sender's wake-up
    /// may already have read the waiter list before the thread registered
    /// (the look saw the claim, not the write), so it looks again soon
    /// instead, as the channel's own blocking receives do.
    Busy,
    /// Closed and empty.
    Disconnected,
}

/// What a receive found.
pub(crate) enum Recv<T> {
    Item(T),
    /// Every lane is empty.
    Empty,
    /// Every lane is empty but for slots whose producers are still writing:
    /// no completed send is waiting, but do not park (see [`Pop::Busy`]).
    Busy,
    /// Every lane is empty and the channel is closed.
    Disconnected,
}

/// What one pass over the lanes found.
enum Scan {
    /// A message, moved to the caller's place, and the lane it came from.
    Item(usize),
    Empty,
    Busy,
    /// A lane holds a finished message behind a slot still being written;
    /// lower lanes must not be served before it (see [`Pop::Blocked`]).
    Blocked,
}

/// Why [`Chan::await_message`] stopped waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AwaitEnd {
    /// A lane's front slot (or the one after it) looks written.
    Ready,
    /// The channel is closed.
    Closed,
    /// The deadline passed.
    Deadline,
    /// The backoff ran out.
    Spent,
    /// This thread's waits do not spin now (or under loom): no wait.
    NoSpin,
}

/// Free slots a sender that found its lane full waits for before pushing
/// again (see [`Chan::await_room`]).
const LOW_WATER: usize = 128;

/// [`LOW_WATER`] for [`Chan::send_batch`]. A batch refills a stretch with
/// one claim per call, so it pays to let receivers get further ahead:
/// with lanes of 1024 (so 512 against 128) the interleaved bench's
/// `send_batch`/`recv_batch` of 256 moved 182.4 → 215.6 and 184.6 →
/// 215.2 M msg/s in near rounds (two runs of 30 alternations of 5 rounds
/// against 128; far rounds, 10-21 per run, 123.0 → 92.6 and 128.2 →
/// 118.6). Two runs with 512 for every sender: batch 185.8 → 223.0 and
/// 169.5 → 212.5, the per-message rows level, so per-message sends keep
/// 128. Waiting for one batch's worth (256) was level (178.3 → 178.4).
const BATCH_LOW_WATER: usize = 512;

/// How many messages deep a lane must be before a slipping receiver
/// returns to it ([`Chan::slip`]; half the lane's capacity if that is less).
/// Measured against 16 and 64 (probe, 2 cores, capacity 1024, 256 B
/// messages, kernel-placed threads, alternated): the deepest gained most.
const SLIP_DEPTH: usize = 256;

/// Lanes whose depth ([`SLIP_DEPTH`] clamped to half the capacity) would
/// be shallower than this are not waited on: their first message ends a
/// slip, as the Urgent lane's does.
const SLIP_MIN_DEPTH: usize = 16;

/// The longest a receive slips. In the SPSC 256 B probe a slip mostly runs
/// this long and then finds about 46 messages queued; half and a quarter
/// of it gained less.
const SLIP_BUDGET: Duration = Duration::from_nanos(1_500);

/// A slip that ends with fewer messages queued than this did not pay.
/// Probe, 256 B, alternated (401 near / 35 far runs each): 16, 32 and 64
/// alike near (SPSC 40.8-40.9 M msg/s against 34.4 without slipping);
/// far SPSC 11.1 / 13.3 / 12.8 against 12.2.
const SLIP_WORTH: usize = 32;

/// The most slips a receiver skips after slips that did not pay.
const SLIP_MAX_SKIP: usize = 4096;

/// The lane bits of [`Chan::ready`].
const LANE_BITS: usize = (1 << LANES) - 1;
/// One receiver clearing bits of [`Chan::ready`].
const CLEARING: usize = 1 << LANES;

/// One receiver handle's record of whether slipping pays for it (module
/// docs, "Slipping"). Relaxed atomics only so that a shared `&Receiver`
/// can update it; it is a heuristic, and a lost update is harmless.
pub(crate) struct Slip {
    /// Slips still to skip.
    skip: AtomicUsize,
    /// How many to skip after the next slip that does not pay (0: none
    /// failed since the last that paid).
    streak: AtomicUsize,
}

impl Slip {
    /// A receiver that has not slipped yet.
    pub(crate) fn new() -> Self {
        Self {
            skip: AtomicUsize::new(0),
            streak: AtomicUsize::new(0),
        }
    }
}

/// The shared state of one channel.
pub(crate) struct Chan<T> {
    lanes: [Ring<T>; LANES],
    /// Receivers waiting for any message.
    recv_waiters: CachePadded<WaitList>,
    /// Senders waiting for room in lane `i`.
    send_waiters: [CachePadded<WaitList>; LANES],
    /// Bits `0..LANES`: lane `i` may be non-empty; above them, the number
    /// of receivers clearing bits (module docs, "The ready mask").
    ready: CachePadded<AtomicUsize>,
    /// 0 while open, 1 once closed (a `usize` for [`handshake_load`]).
    closed: CachePadded<AtomicUsize>,
    /// Live `Sender`s; the last one to go closes the channel.
    pub(crate) senders: AtomicUsize,
    /// Live `Receiver`s; the last one to go closes and empties it.
    pub(crate) receivers: AtomicUsize,
}

impl<T> Chan<T> {
    /// A channel whose lane `i` holds up to `caps[i]` messages, with one
    /// sender and one receiver.
    pub(crate) fn new(caps: [usize; LANES]) -> Self {
        Self {
            lanes: caps.map(Ring::new),
            recv_waiters: CachePadded(WaitList::new()),
            send_waiters: [(); LANES].map(|_| CachePadded(WaitList::new())),
            ready: CachePadded(AtomicUsize::new(0)),
            closed: CachePadded(AtomicUsize::new(0)),
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(1),
        }
    }

    // ----- sending -----

    /// One push attempt into `lane`; wakes a receiver on success.
    #[inline]
    pub(crate) fn try_send(&self, lane: usize, value: T) -> Result<(), TrySendError<T>> {
        match self.lanes[lane].push(value) {
            Ok(()) => {
                self.mark_ready(lane);
                self.recv_waiters.notify(1);
                Ok(())
            }
            Err(PushError::Full(v)) => Err(TrySendError::Full(v)),
            Err(PushError::Closed(v)) => {
                // A close may be half-way (it marks the lanes one by one):
                // finish it, so that once a send reports `Disconnected`,
                // every lane is closed and `is_closed` is true.
                self.finish_close();
                Err(TrySendError::Disconnected(v))
            }
        }
    }

    /// [`Chan::try_send`]'s first attempt alone, small enough to inline:
    /// one [`Ring::try_push_once`] into `lane`, waking a receiver on
    /// success. The value back says nothing about the channel (the caller
    /// then takes the full path); a send done here is what `try_send`
    /// would have done, with the same atomic operations.
    #[inline(always)]
    pub(crate) fn try_send_once(&self, lane: usize, value: T) -> Result<(), T> {
        self.lanes[lane].try_push_once(value)?;
        self.mark_ready(lane);
        self.recv_waiters.notify(1);
        Ok(())
    }

    /// Sets `lane`'s bit in `ready` unless it is set already; called after
    /// a push into `lane` succeeded (module docs, "The ready mask").
    #[inline(always)]
    fn mark_ready(&self, lane: usize) {
        let bit = 1 << lane;
        // The load half of the handshake with a clearing receiver: our
        // `tail` CAS came first.
        if handshake_load(&self.ready) & bit == 0 {
            self.ready.fetch_or(bit, Ordering::SeqCst);
        }
    }

    /// `try_send` as an [`Attempt`], keeping the value in `slot` while it
    /// waits. `slot` must hold a value.
    fn send_attempt(&self, lane: usize, slot: &mut Option<T>) -> Attempt<Result<(), T>> {
        let value = slot.take().expect("send attempt without a value");
        match self.try_send(lane, value) {
            Ok(()) => Attempt::Done(Ok(())),
            Err(TrySendError::Disconnected(v)) => Attempt::Done(Err(v)),
            Err(TrySendError::Full(v)) => {
                *slot = Some(v);
                Attempt::Wait
            }
        }
    }

    /// Sends into `lane`, waiting for room until `deadline` (or for ever).
    pub(crate) fn send(
        &self,
        lane: usize,
        value: T,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<T>> {
        let value = match self.try_send(lane, value) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Disconnected(v)) => return Err(SendTimeoutError::Disconnected(v)),
            Err(TrySendError::Full(v)) => v,
        };
        self.await_room(lane, LOW_WATER, deadline);
        let mut slot = Some(value);
        match self.send_waiters[lane].block(deadline, || self.send_attempt(lane, &mut slot)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(v)) => Err(SendTimeoutError::Disconnected(v)),
            Err(TimedOut) => Err(SendTimeoutError::Timeout(
                slot.take().expect("a timed-out send keeps its value"),
            )),
        }
    }

    /// The lane was full: spin, then yield, until receivers have freed
    /// `want` slots of it, or half of it if that is less (or the backoff
    /// runs out, or `deadline` passes).
    ///
    /// A full ring puts the next free slot where receivers are reading, so
    /// a sender that pushed as soon as one slot came free would write the
    /// very cache line the receiver reads next, for every message. Waiting
    /// for [`LOW_WATER`] free slots lets senders refill lines receivers have
    /// left. Only a hint: it never parks; the exact attempts of
    /// [`WaitList::block`] follow.
    fn await_room(&self, lane: usize, want: usize, deadline: Option<Instant>) {
        let ring = &self.lanes[lane];
        let want = want.min(ring.capacity().div_ceil(2));
        let mut backoff = Backoff::new();
        while !backoff.is_completed() && ring.room_hint() < want {
            if deadline.is_some_and(crate::loom::passed) {
                return;
            }
            backoff.snooze();
        }
    }

    /// Before a blocking receive's attempts: spin, then yield, through the
    /// steps of `backoff`, until some lane's front looks readable
    /// ([`Ring::front_ready_hint`]), the channel closed, `deadline` passed
    /// or the backoff ran out (module docs, "Waiting"); says which. The
    /// caller's attempts then go on from the step reached. A hint only: it
    /// takes nothing and never parks. Not under loom (it changes no state,
    /// so there is nothing to model), nor for a thread whose waits do not
    /// spin (see [`crate::backoff`]).
    fn await_message(&self, deadline: Option<Instant>, backoff: &mut Backoff) -> AwaitEnd {
        // `closed` is written once; reading it takes no line from anyone.
        let look = || {
            if self.lanes.iter().any(Ring::front_ready_hint) {
                Some(AwaitEnd::Ready)
            } else if self.closed.load(Ordering::Relaxed) != 0 {
                Some(AwaitEnd::Closed)
            } else {
                None
            }
        };
        if cfg!(loom) {
            return AwaitEnd::NoSpin;
        }
        if let Some(end) = look() {
            return end;
        }
        let passed = crate::loom::passed;
        if deadline.is_some_and(passed) {
            return AwaitEnd::Deadline;
        }
        // Only now, for a receive that would wait: the policy is worked out
        // once per process, which allocates.
        if !crate::backoff::spinning_helps() {
            return AwaitEnd::NoSpin;
        }
        loop {
            if backoff.is_completed() {
                return AwaitEnd::Spent;
            }
            backoff.snooze();
            if let Some(end) = look() {
                return end;
            }
            if deadline.is_some_and(passed) {
                return AwaitEnd::Deadline;
            }
        }
    }

    /// Polls a send of the value in `slot` into `lane`.
    pub(crate) fn poll_send(
        &self,
        lane: usize,
        slot: &mut Option<T>,
        wait: &mut Option<WaitId>,
        sticky: bool,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), T>> {
        self.send_waiters[lane].poll(wait, sticky, cx, || self.send_attempt(lane, slot))
    }

    /// Sends every value of `items` into `lane`, in order, waiting for room
    /// as needed; sent values are drained from the front of `items`. On
    /// close, the unsent values stay in `items` and `Err(())` is returned.
    pub(crate) fn send_batch(&self, lane: usize, items: &mut Vec<T>) -> Result<(), ()> {
        // An attempt that pushed part of the batch wakes receivers (taking
        // their list's lock) and may back off (a yield under loom) before
        // it finds the lane full and parks: under loom a receiver's unpark
        // in between would be lost, as `std` never loses it (see
        // `crate::loom`'s `thread` module). Nothing outside loom.
        crate::loom::keep_unpark_token();
        let mut batch = BatchSource::new(items);
        let ring = &self.lanes[lane];
        // Whether this attempt already waited for room since it last found
        // the lane full (see `await_room`).
        let mut paced = false;
        let outcome = self.send_waiters[lane].block(None, || {
            while batch.remaining() > 0 {
                // SAFETY: `BatchSource` hands out a pointer to `remaining()`
                // initialised values that nobody else reads; `advance` below
                // records the ones the ring moved out.
                match unsafe { ring.push_many(batch.as_ptr(), batch.remaining()) } {
                    Ok(0) if paced => return Attempt::Wait,
                    Ok(0) => {
                        // Full: let receivers free a stretch first, then
                        // try again (exactly) before waiting.
                        self.await_room(lane, BATCH_LOW_WATER, None);
                        paced = true;
                    }
                    Ok(k) => {
                        paced = false;
                        batch.advance(k);
                        self.mark_ready(lane);
                        self.recv_waiters.notify(k);
                    }
                    Err(()) => {
                        self.finish_close(); // as in `try_send`
                        return Attempt::Done(Err(()));
                    }
                }
            }
            Attempt::Done(Ok(()))
        });
        match outcome {
            Ok(result) => result,
            Err(TimedOut) => unreachable!("send_batch has no deadline"),
        }
    }

    // ----- receiving -----

    /// [`Chan::try_recv_or`] as a [`Recv`] (for tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn try_recv(&self) -> Recv<T> {
        match self.try_recv_tagged() {
            Recv::Item((_, v)) => Recv::Item(v),
            Recv::Empty => Recv::Empty,
            Recv::Busy => Recv::Busy,
            Recv::Disconnected => Recv::Disconnected,
        }
    }

    /// Scans the lanes from the highest priority down and pops the first
    /// message found (waking a sender of its lane), answering with the
    /// caller's errors: `empty` when nothing is queued (or a send is still
    /// being written), `disconnected` once closed and empty. The message
    /// moves once, out of its slot into the result: going through [`Recv`]
    /// and then the caller's `Result` copied a 256-byte message three more
    /// times.
    #[inline]
    pub(crate) fn try_recv_or<E>(&self, empty: E, disconnected: E) -> Result<T, E> {
        let mut out = MaybeUninit::<T>::uninit();
        // SAFETY: `out` is a place for one `T`.
        match unsafe { self.try_recv_into(out.as_mut_ptr(), true) } {
            // SAFETY: `Item` means a message was moved to `out`.
            Recv::Item(_) => Ok(unsafe { out.assume_init() }),
            Recv::Empty | Recv::Busy => Err(empty),
            Recv::Disconnected => Err(disconnected),
        }
    }

    /// A non-blocking receive as a [`Recv`], also telling which lane the
    /// message came from.
    #[inline(always)]
    fn try_recv_tagged(&self) -> Recv<(usize, T)> {
        let mut out = MaybeUninit::<T>::uninit();
        // SAFETY: `out` is a place for one `T`.
        match unsafe { self.try_recv_into(out.as_mut_ptr(), true) } {
            // SAFETY: `Item` means a message was moved to `out`.
            Recv::Item(lane) => Recv::Item((lane, unsafe { out.assume_init() })),
            Recv::Empty => Recv::Empty,
            Recv::Busy => Recv::Busy,
            Recv::Disconnected => Recv::Disconnected,
        }
    }

    /// [`Chan::try_recv_tagged`] that moves the message to `out` (see
    /// [`Ring::try_pop_into`]) and answers the lane it came from.
    ///
    /// # Safety
    ///
    /// `out` must be valid for writing one `T`. On `Item`, `*out` holds the
    /// message and the caller owns it; otherwise `*out` is untouched.
    ///
    /// With `wait_blocked`, a lane blocked by a write under way (a finished
    /// message behind it) is waited out: that message's send has returned,
    /// so answering `Empty` (or timing out) would deny a completed send;
    /// the writer ahead is between its claim and its stamp, so the wait
    /// is short unless it was preempted, and it then yields to it. A poll
    /// passes false: it answers `Busy`, and its future wakes itself to
    /// retry rather than hold the executor's thread.
    #[inline(always)]
    unsafe fn try_recv_into(&self, out: *mut T, wait_blocked: bool) -> Recv<usize> {
        let mut closed = false;
        let mut blocked = Backoff::new();
        loop {
            // SAFETY: passed on from our caller.
            match unsafe { self.scan(out) } {
                Scan::Item(lane) => return Recv::Item(lane),
                Scan::Blocked if wait_blocked => blocked.snooze(),
                // Busy: only sends still being written, which have not
                // returned; a receive may answer before them.
                Scan::Busy | Scan::Blocked => return Recv::Busy,
                // Closed: a second scan sees every push that got in before
                // the close (module docs), so empty now is empty for ever.
                Scan::Empty if closed => return Recv::Disconnected,
                Scan::Empty if handshake_load(&self.closed) != 0 => closed = true,
                Scan::Empty => return Recv::Empty,
            }
        }
    }

    /// The first step of [`Chan::scan`] alone, small enough to inline: one
    /// pop attempt on the highest lane whose `ready` bit is set, unless a
    /// receiver is clearing bits. `None` says nothing about the channel
    /// (the caller then takes the full path); a message taken here is the
    /// one `scan` would have taken first, with the same atomic operations.
    #[inline(always)]
    pub(crate) fn try_recv_once(&self) -> Option<T> {
        // Acquire: as in `scan`.
        let mask = self.ready.load(Ordering::Acquire);
        if mask >= CLEARING || mask == 0 {
            return None;
        }
        let lane = mask.trailing_zeros() as usize;
        let value = self.lanes[lane].try_pop_once()?;
        self.send_waiters[lane].notify(1);
        Some(value)
    }

    /// One pass over the lanes: first those whose `ready` bit is set,
    /// highest first, then (if that found nothing) the others, so that
    /// each lane is checked once and an answer other than `Item` means what
    /// it meant without the mask (module docs, "The ready mask").
    ///
    /// # Safety
    ///
    /// As [`Chan::try_recv_into`]: a message found is moved to `out`.
    #[inline]
    unsafe fn scan(&self, out: *mut T) -> Scan {
        // Acquire is enough for a hint: coherence orders it after the load
        // of any send that happened-before this receive.
        let mask = self.ready.load(Ordering::Acquire);
        if mask >= CLEARING {
            // SAFETY: passed on from our caller.
            return unsafe { self.scan_lanes(LANE_BITS, false, out) };
        }
        let set = mask & LANE_BITS;
        let mut empty = 0;
        let mut busy = false;
        let mut bits = set;
        while bits != 0 {
            let lane = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            // SAFETY: passed on from our caller.
            match unsafe { self.lanes[lane].try_pop_into(true, out) } {
                Pop::Item(()) => {
                    self.send_waiters[lane].notify(1);
                    // Higher lanes that were empty: their bits misled us.
                    let stale = empty & ((1 << lane) - 1);
                    if stale != 0 {
                        self.clear_ready(stale);
                    }
                    return Scan::Item(lane);
                }
                Pop::Busy => busy = true,
                Pop::Blocked => return Scan::Blocked,
                Pop::Empty => empty |= 1 << lane,
            }
        }
        if set == LANE_BITS {
            return if busy { Scan::Busy } else { Scan::Empty };
        }
        // SAFETY: passed on from our caller.
        unsafe { self.scan_lanes(LANE_BITS & !set, busy, out) }
    }

    /// One pass over the lanes in `lanes`, highest first.
    ///
    /// # Safety
    ///
    /// As [`Chan::try_recv_into`]: a message found is moved to `out`.
    #[inline]
    unsafe fn scan_lanes(&self, lanes: usize, mut busy: bool, out: *mut T) -> Scan {
        for (lane, ring) in self.lanes.iter().enumerate() {
            if lanes & (1 << lane) == 0 {
                continue;
            }
            // SAFETY: passed on from our caller.
            match unsafe { ring.try_pop_into(true, out) } {
                Pop::Item(()) => {
                    self.send_waiters[lane].notify(1);
                    return Scan::Item(lane);
                }
                // A producer is still writing this lane's front slot and no
                // finished message waits behind it: its send has not
                // returned, so a lower lane may be served.
                Pop::Busy => busy = true,
                Pop::Blocked => return Scan::Blocked,
                Pop::Empty => {}
            }
        }
        if busy {
            Scan::Busy
        } else {
            Scan::Empty
        }
    }

    /// Clears the `ready` bits of `lanes` (found empty), then sets again
    /// those whose lane is not empty on a re-check (module docs).
    #[cold]
    #[inline(never)]
    fn clear_ready(&self, lanes: usize) {
        let mut mask = self.ready.load(Ordering::Relaxed);
        // SeqCst RMW: the publish half of the handshake with `mark_ready`.
        while let Err(now) = self.ready.compare_exchange_weak(
            mask,
            (mask & !lanes) + CLEARING,
            Ordering::SeqCst,
            Ordering::Relaxed,
        ) {
            mask = now;
        }
        let mut refill = 0;
        let mut bits = lanes;
        while bits != 0 {
            let lane = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if !self.lanes[lane].is_empty_now() {
                refill |= 1 << lane;
            }
        }
        let mut mask = self.ready.load(Ordering::Relaxed);
        while let Err(now) = self.ready.compare_exchange_weak(
            mask,
            (mask | refill) - CLEARING,
            Ordering::SeqCst,
            Ordering::Relaxed,
        ) {
            mask = now;
        }
    }

    /// The ring of `lane` (test hook: `Ring::claim_without_writing` and
    /// `Ring::finish_write` act out a send preempted mid-write).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn lane_ring(&self, lane: usize) -> &Ring<T> {
        &self.lanes[lane]
    }

    /// A receive attempt as an [`Attempt`] carrying the message.
    #[cfg(all(test, not(loom)))]
    fn recv_attempt(&self) -> Attempt<Option<T>> {
        match self.try_recv() {
            Recv::Item(v) => Attempt::Done(Some(v)),
            Recv::Disconnected => Attempt::Done(None),
            Recv::Empty => Attempt::Wait,
            Recv::Busy => Attempt::Busy,
        }
    }

    /// Receives, waiting until `deadline` (or for ever); on failure answers
    /// `disconnected` or `timed_out`.
    ///
    /// The message moves once from its slot to a local, once from there to
    /// the result; passing it back through each layer's enum cost a 256-byte
    /// message four more copies. The errors are the caller's own type for
    /// the same reason: mapping the result afterwards copies it again.
    #[inline]
    pub(crate) fn recv<E>(
        &self,
        deadline: Option<Instant>,
        disconnected: E,
        timed_out: E,
    ) -> Result<T, E> {
        let mut backoff = Backoff::new();
        self.await_message(deadline, &mut backoff);
        let mut out = MaybeUninit::<T>::uninit();
        let place = out.as_mut_ptr();
        // SAFETY: `place` is `out`, a place for one `T`. Only `Done(true)`
        // writes it, and that ends the wait: no message is overwritten.
        let got = self.recv_waiters.block_after(backoff, deadline, || unsafe {
            self.recv_attempt_into(place, true)
        });
        match got {
            // SAFETY: `Done(true)` only after a message was moved to `out`.
            Ok(true) => Ok(unsafe { out.assume_init() }),
            Ok(false) => Err(disconnected),
            Err(TimedOut) => Err(timed_out),
        }
    }

    /// Before a blocking receive that found nothing: wait, without taking
    /// anything, until a lane is [`SLIP_DEPTH`] deep, another receiver
    /// takes from it, the channel closes or [`SLIP_BUDGET`] passes; then
    /// record in `slip` whether that paid (module docs, "Slipping"). Does
    /// nothing for messages smaller than a cache line, under loom (it
    /// changes no state, so there is nothing to model) or while `slip`
    /// says to skip.
    #[inline(never)]
    pub(crate) fn slip(&self, slip: &Slip) {
        // It only spins: not for a thread whose waits do not spin (one
        // core, or a core it keeps handing to other threads).
        if !Ring::<T>::LARGE_SLOTS || cfg!(loom) || !crate::backoff::spinning_helps() {
            return;
        }
        let skip = slip.skip.load(Ordering::Relaxed);
        if skip > 0 {
            slip.skip.store(skip - 1, Ordering::Relaxed);
            return;
        }
        // The depth each lane is waited for. The Urgent lane, and lanes too
        // short to slip on, end the slip with their first message: the
        // wait is for throughput, and those are for latency.
        let depth: [usize; LANES] = core::array::from_fn(|l| {
            let d = SLIP_DEPTH.min(self.lanes[l].capacity() / 2);
            if l == Priority::Urgent.index() || d < SLIP_MIN_DEPTH {
                1
            } else {
                d
            }
        });
        if depth.iter().all(|&d| d == 1) {
            return;
        }
        let heads: [usize; LANES] = core::array::from_fn(|l| self.lanes[l].head_hint());
        let start = Instant::now();
        'wait: for poll in 1u32.. {
            // Not `tail` (the line producers claim slots on): reading it
            // every poll took it from the producer each time, which cost
            // more than the slip gained. `closed` is written once.
            if self.closed.load(Ordering::Relaxed) != 0 {
                break;
            }
            for (lane, ring) in self.lanes.iter().enumerate() {
                if ring.filled_hint(heads[lane], depth[lane]) {
                    if depth[lane] == 1 {
                        // Nothing was waited for in vain: no judgement.
                        return;
                    }
                    break 'wait;
                }
                if ring.head_hint() != heads[lane] {
                    break 'wait;
                }
            }
            // The clock costs more than a poll; read it every 8th.
            if poll % 8 == 0 && start.elapsed() >= SLIP_BUDGET {
                break;
            }
            crate::loom::spin_loop();
            crate::loom::spin_loop();
        }
        let queued = self
            .lanes
            .iter()
            .map(|ring| ring.capacity() - ring.room_hint())
            .max()
            .unwrap_or(0);
        if queued >= SLIP_WORTH {
            slip.streak.store(0, Ordering::Relaxed);
        } else {
            let streak = slip.streak.load(Ordering::Relaxed);
            let next = (streak * 2).clamp(1, SLIP_MAX_SKIP);
            slip.streak.store(next, Ordering::Relaxed);
            slip.skip.store(next, Ordering::Relaxed);
        }
    }

    /// One receive attempt as an [`Attempt`]: `Done(true)` once a message
    /// was moved to `place`, `Done(false)` once closed and empty.
    /// `wait_blocked`: as in [`Chan::try_recv_into`].
    ///
    /// # Safety
    ///
    /// `place` must be valid for writing one `T`; only `Done(true)` writes
    /// it, and the caller then owns the message there.
    #[inline(always)]
    unsafe fn recv_attempt_into(&self, place: *mut T, wait_blocked: bool) -> Attempt<bool> {
        // SAFETY: passed on from our caller.
        match unsafe { self.try_recv_into(place, wait_blocked) } {
            Recv::Item(_) => Attempt::Done(true),
            Recv::Disconnected => Attempt::Done(false),
            Recv::Empty => Attempt::Wait,
            Recv::Busy => Attempt::Busy,
        }
    }

    /// Polls a receive; `Ready(None)` means empty and closed. As in
    /// [`Chan::recv`], the message moves from its slot to a local and from
    /// there to the result, not through each layer's enum.
    pub(crate) fn poll_recv(
        &self,
        wait: &mut Option<WaitId>,
        sticky: bool,
        cx: &mut Context<'_>,
    ) -> Poll<Option<T>> {
        // Not registered: the one-shot pop is the first attempt of
        // `WaitList::poll`, which would return at once on success. (A
        // registered future must cancel its entry when it succeeds, so it
        // takes the full path.)
        if wait.is_none() {
            if let Some(value) = self.try_recv_once() {
                return Poll::Ready(Some(value));
            }
        }
        let mut out = MaybeUninit::<T>::uninit();
        let place = out.as_mut_ptr();
        // SAFETY: as in `recv`: `place` is `out`, and only `Done(true)`,
        // which ends the poll, writes it.
        let got = self.recv_waiters.poll(wait, sticky, cx, || unsafe {
            self.recv_attempt_into(place, false)
        });
        match got {
            // SAFETY: `Done(true)` only after a message was moved to `out`.
            Poll::Ready(true) => Poll::Ready(Some(unsafe { out.assume_init() })),
            Poll::Ready(false) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Takes up to `max` messages that are ready now, highest lane first.
    pub(crate) fn try_recv_batch(
        &self,
        out: &mut Vec<T>,
        max: usize,
    ) -> Result<usize, TryRecvError> {
        match self.try_recv_batch_logged(out, max, &mut ()) {
            BatchTry::Took(n) => Ok(n),
            BatchTry::Empty | BatchTry::Busy => Err(TryRecvError::Empty),
            BatchTry::Disconnected => Err(TryRecvError::Disconnected),
        }
    }

    /// [`Chan::try_recv_batch`], also recording in `log` which lane each
    /// appended message came from, and telling "empty" from "a send is
    /// still being written" (for the worker pool, which must not park on
    /// the latter: see [`BatchTry::Busy`]).
    pub(crate) fn try_recv_batch_logged(
        &self,
        out: &mut Vec<T>,
        max: usize,
        log: &mut impl LaneLog,
    ) -> BatchTry {
        match self.recv_batch_attempt(out, max, log) {
            Attempt::Done(Some(n)) => BatchTry::Took(n),
            Attempt::Done(None) => BatchTry::Disconnected,
            Attempt::Wait => BatchTry::Empty,
            Attempt::Busy => BatchTry::Busy,
        }
    }

    fn recv_batch_attempt(
        &self,
        out: &mut Vec<T>,
        max: usize,
        log: &mut impl LaneLog,
    ) -> Attempt<Option<usize>> {
        if max == 0 {
            return Attempt::Done(Some(0));
        }
        let mut n = self.drain_ready(out, max, log);
        if n == 0 {
            // Nothing ready: one exact receive waits out a blocked lane and
            // tells empty, busy and closed apart.
            match self.try_recv_tagged() {
                Recv::Item((lane, v)) => {
                    out.push(v);
                    log.took(lane, 1);
                    n = 1 + self.drain_ready(out, max - 1, log);
                }
                Recv::Disconnected => return Attempt::Done(None),
                Recv::Empty => return Attempt::Wait,
                Recv::Busy => return Attempt::Busy,
            }
        }
        Attempt::Done(Some(n))
    }

    /// Pops ready messages lane by lane, highest first, up to `max`. Stops
    /// at a lane that is blocked (a finished message behind a slot still
    /// being written) rather than serve a lower lane before it.
    fn drain_ready(&self, out: &mut Vec<T>, max: usize, log: &mut impl LaneLog) -> usize {
        let mut n = 0;
        for (lane, ring) in self.lanes.iter().enumerate() {
            let before = n;
            let mut blocked = false;
            while n < max {
                match ring.pop_many(out, max - n) {
                    // Nothing ready at the front (or the end of a lap):
                    // one exact pop tells empty, busy and blocked apart.
                    0 => match ring.try_pop(true) {
                        Pop::Item(v) => {
                            out.push(v);
                            n += 1;
                        }
                        Pop::Blocked => {
                            blocked = true;
                            break;
                        }
                        Pop::Empty | Pop::Busy => break,
                    },
                    k => n += k,
                }
            }
            self.send_waiters[lane].notify(n - before);
            if n > before {
                log.took(lane, n - before);
            }
            if n == max || blocked {
                break;
            }
        }
        n
    }

    /// Waits for at least one message, then takes up to `max` without
    /// waiting. `Ok(0)` only for `max == 0`; `Err(())` when empty and closed.
    pub(crate) fn recv_batch(&self, out: &mut Vec<T>, max: usize) -> Result<usize, ()> {
        match self
            .recv_waiters
            .block(None, || self.recv_batch_attempt(out, max, &mut ()))
        {
            Ok(Some(n)) => Ok(n),
            Ok(None) => Err(()),
            Err(TimedOut) => unreachable!("recv_batch has no deadline"),
        }
    }

    // ----- close and counts -----

    /// Closes every lane and wakes every waiter. Returns true if this call
    /// closed the channel: every close marks the Urgent lane first, and of
    /// racing calls exactly one finds it unmarked (module docs, "Close").
    pub(crate) fn close(&self) -> bool {
        let first = self.lanes[0].close();
        for ring in &self.lanes[1..] {
            ring.close();
        }
        // SeqCst RMW: the publish half of the close handshake with parking
        // receivers (they register, then `handshake_load` this flag).
        self.closed.fetch_or(1, Ordering::SeqCst);
        self.recv_waiters.notify_all();
        for waiters in &self.send_waiters {
            waiters.notify_all();
        }
        first
    }

    /// Completes a close that a send ran into (it saw its lane's mark), so
    /// that every lane is marked and `closed` set before the send reports
    /// `Disconnected`. It never takes the "closed it" report from the
    /// close under way: that close marked the Urgent lane before the mark
    /// this send saw (module docs, "Close").
    fn finish_close(&self) {
        // The send saw the mark through a relaxed load; this fence makes
        // the closing RMW it read from (a release) happen-before our own
        // marks, and with it that close's earlier mark of the Urgent lane,
        // which ours then finds set.
        fence(Ordering::Acquire);
        self.close();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst) != 0
    }

    /// Closes the channel and drops every queued message (the last receiver
    /// is gone: nobody will take them).
    pub(crate) fn close_and_discard(&self) {
        self.close();
        for ring in &self.lanes {
            let mut backoff = Backoff::new();
            loop {
                match ring.try_pop(true) {
                    Pop::Item(v) => drop(v),
                    Pop::Empty => break,
                    // A push that won its CAS before the mark: wait for it.
                    Pop::Busy | Pop::Blocked => backoff.snooze(),
                }
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lanes.iter().map(Ring::len).sum()
    }

    pub(crate) fn len_of(&self, lane: usize) -> usize {
        self.lanes[lane].len()
    }

    pub(crate) fn capacity_of(&self, lane: usize) -> usize {
        self.lanes[lane].capacity()
    }

    pub(crate) fn recv_waiters(&self) -> &WaitList {
        &self.recv_waiters
    }

    pub(crate) fn send_waiters(&self, lane: usize) -> &WaitList {
        &self.send_waiters[lane]
    }
}

/// Where a batch receive records which lane its messages came from: after
/// each run of `n` messages appended from one lane, `took(lane, n)`.
pub(crate) trait LaneLog {
    fn took(&mut self, lane: usize, n: usize);
}

/// No log: the ordinary batch receive.
impl LaneLog for () {
    #[inline(always)]
    fn took(&mut self, _: usize, _: usize) {}
}

/// Runs of `(lane, count)`, in the order the messages were appended.
impl LaneLog for Vec<(usize, usize)> {
    fn took(&mut self, lane: usize, n: usize) {
        self.push((lane, n));
    }
}

/// The values of a `Vec` being moved out from the front, panic-safely: the
/// `Vec`'s length is zero while values are being moved, and on drop the
/// unsent tail is shifted to the front and the length restored, so a value
/// is never dropped twice nor lost.
struct BatchSource<'a, T> {
    vec: &'a mut Vec<T>,
    taken: usize,
    len: usize,
}

impl<'a, T> BatchSource<'a, T> {
    fn new(vec: &'a mut Vec<T>) -> Self {
        let len = vec.len();
        // SAFETY: shrinking the length only forgets values; `Drop` below
        // restores the ones not moved out.
        unsafe { vec.set_len(0) };
        Self { vec, taken: 0, len }
    }

    fn remaining(&self) -> usize {
        self.len - self.taken
    }

    /// The first value not moved out yet.
    fn as_ptr(&self) -> *const T {
        // SAFETY: `taken <= len <= capacity`: in bounds of the allocation.
        unsafe { self.vec.as_ptr().add(self.taken) }
    }

    /// Records that the next `k` values were moved out.
    fn advance(&mut self, k: usize) {
        debug_assert!(k <= self.remaining());
        self.taken += k;
    }
}

impl<T> Drop for BatchSource<'_, T> {
    fn drop(&mut self) {
        let rest = self.remaining();
        let base = self.vec.as_mut_ptr();
        // SAFETY: values taken..len are initialised and owned by the `Vec`
        // (not moved out); move them to the front (regions may overlap:
        // `copy` is memmove) and make them the `Vec`'s contents again.
        unsafe {
            core::ptr::copy(base.add(self.taken), base, rest);
            self.vec.set_len(rest);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn chan() -> Chan<u32> {
        Chan::new([4; LANES])
    }

    fn recv_now(chan: &Chan<u32>) -> Option<u32> {
        match chan.try_recv() {
            Recv::Item(v) => Some(v),
            _ => None,
        }
    }

    /// The pre-wait of a blocking receive stops for the right reason, and
    /// without a step where it should not wait at all: a message at the
    /// front of any lane (or behind a write under way) or a close ends it
    /// at once, a passed deadline before the first step, an empty lane or
    /// a lone write under way only when the backoff runs out; a thread
    /// whose waits do not spin does not wait.
    #[test]
    fn await_message_stops_for_each_reason() {
        // Each wait starts uncrowded: the yields of a wait that ran out may
        // have found the core busy (other tests), which counts.
        let fresh = |chan: &Chan<u32>, deadline| {
            crate::backoff::set_crowded_for_test(0);
            let mut backoff = Backoff::new();
            let end = chan.await_message(deadline, &mut backoff);
            (end, backoff.steps())
        };
        let chan = chan();
        crate::backoff::set_crowded_for_test(0);
        if !crate::backoff::spinning_helps() {
            // One core (the pinned test run): waits never spin, so none.
            assert_eq!(fresh(&chan, None), (AwaitEnd::NoSpin, 0));
            return;
        }
        let (end, steps) = fresh(&chan, None);
        assert_eq!(end, AwaitEnd::Spent, "empty: the backoff runs out");
        assert!(steps > 0);
        let past = Some(Instant::now());
        assert_eq!(fresh(&chan, past), (AwaitEnd::Deadline, 0));

        let low = Priority::Low.index();
        chan.try_send(low, 1).ok().unwrap();
        assert_eq!(fresh(&chan, None), (AwaitEnd::Ready, 0), "any lane counts");
        assert_eq!(recv_now(&chan), Some(1));

        let normal = Priority::Normal.index();
        let pos = chan.lanes[normal].claim_without_writing();
        let (end, steps) = fresh(&chan, None);
        assert_eq!(end, AwaitEnd::Spent, "a lone write under way");
        assert!(steps > 0);
        chan.try_send(normal, 3).ok().unwrap();
        assert_eq!(
            fresh(&chan, None),
            (AwaitEnd::Ready, 0),
            "finished behind it"
        );
        chan.lanes[normal].finish_write(pos, 2);
        assert_eq!(recv_now(&chan), Some(2));
        assert_eq!(recv_now(&chan), Some(3));

        // Lanes of one slot: the front slot only.
        let one = Chan::<u32>::new([1; LANES]);
        let pos = one.lanes[normal].claim_without_writing();
        assert_eq!(fresh(&one, None).0, AwaitEnd::Spent);
        one.lanes[normal].finish_write(pos, 4);
        assert_eq!(fresh(&one, None), (AwaitEnd::Ready, 0));

        assert!(chan.close());
        assert_eq!(fresh(&chan, None), (AwaitEnd::Closed, 0));

        // A thread whose yields keep handing its core away does not spin.
        crate::backoff::set_crowded_for_test(u8::MAX);
        let mut backoff = Backoff::new();
        assert_eq!(
            self::chan().await_message(None, &mut backoff),
            AwaitEnd::NoSpin
        );
        assert_eq!(backoff.steps(), 0);
        crate::backoff::set_crowded_for_test(0);
    }

    /// A finished message two slots behind writes still under way: the
    /// pre-wait's hint (the front two slots) does not see it, so it waits
    /// out its deadline; the receive after it must still wait for the
    /// writers (the message's send has returned) and never time out.
    #[test]
    fn a_completed_send_behind_two_unfinished_writes_is_not_timed_out() {
        let chan = std::sync::Arc::new(chan());
        let normal = Priority::Normal.index();
        let first = chan.lanes[normal].claim_without_writing();
        let second = chan.lanes[normal].claim_without_writing();
        chan.try_send(normal, 3).ok().unwrap();
        let writer = {
            let chan = chan.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                chan.lanes[normal].finish_write(first, 1);
                chan.lanes[normal].finish_write(second, 2);
            })
        };
        let deadline = Some(Instant::now() + Duration::from_millis(1));
        assert_eq!(chan.recv(deadline, "disconnected", "timed out"), Ok(1));
        writer.join().unwrap();
        assert_eq!(recv_now(&chan), Some(2));
        assert_eq!(recv_now(&chan), Some(3));
    }

    #[test]
    fn unfinished_write_does_not_hold_up_lower_lanes() {
        let chan = chan();
        let urgent = &chan.lanes[Priority::Urgent.index()];
        let pos = urgent.claim_without_writing();
        chan.try_send(Priority::Normal.index(), 2).ok().unwrap();
        // The urgent send has not returned: serving Normal is correct.
        assert_eq!(recv_now(&chan), Some(2));
        assert!(matches!(chan.try_recv(), Recv::Busy));
        urgent.finish_write(pos, 1);
        assert_eq!(recv_now(&chan), Some(1));
    }

    #[test]
    fn finished_message_behind_unfinished_write_is_served_first() {
        let chan = std::sync::Arc::new(chan());
        let urgent = Priority::Urgent.index();
        let pos = chan.lanes[urgent].claim_without_writing();
        chan.try_send(urgent, 11).ok().unwrap();
        chan.try_send(Priority::Low.index(), 30).ok().unwrap();
        let writer = {
            let chan = chan.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                chan.lanes[urgent].finish_write(pos, 10);
            })
        };
        // Urgent 11 was sent before this receive started: it must come
        // before Low 30, so the receive waits for the writer ahead of it.
        let mut out = Vec::new();
        assert_eq!(chan.recv_batch(&mut out, 8), Ok(3));
        assert_eq!(out, [10, 11, 30]);
        writer.join().unwrap();
    }

    /// A lane blocked behind a write under way, where a finished message
    /// waits (its send returned): `try_recv` and a receive whose deadline
    /// passes meanwhile wait for the writer instead of answering "empty" or
    /// "timed out"; a poll answers `Pending` (it must not hold the thread).
    #[test]
    fn a_completed_send_behind_an_unfinished_write_is_never_missed() {
        use core::task::{Context, Poll, Waker};
        let normal = Priority::Normal.index();
        let blocked = |first: u32, second: u32| {
            let chan = std::sync::Arc::new(chan());
            let pos = chan.lanes[normal].claim_without_writing();
            chan.try_send(normal, second).ok().unwrap();
            let writer = {
                let chan = chan.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    chan.lanes[normal].finish_write(pos, first);
                })
            };
            (chan, writer)
        };

        let (chan, writer) = blocked(10, 11);
        // Polled while blocked: not ready, and nothing taken.
        let mut cx = Context::from_waker(Waker::noop());
        let mut wait = None;
        assert!(matches!(
            chan.poll_recv(&mut wait, false, &mut cx),
            Poll::Pending
        ));
        if let Some(id) = wait.take() {
            chan.recv_waiters().cancel(id);
        }
        assert_eq!(chan.try_recv_or("empty", "closed"), Ok(10));
        assert_eq!(chan.try_recv_or("empty", "closed"), Ok(11));
        writer.join().unwrap();

        let (chan, writer) = blocked(20, 21);
        let deadline = Instant::now() + std::time::Duration::from_millis(1);
        assert_eq!(chan.recv(Some(deadline), "closed", "timed out"), Ok(20));
        assert_eq!(chan.recv(Some(deadline), "closed", "timed out"), Ok(21));
        assert_eq!(
            chan.recv(Some(deadline), "closed", "timed out"),
            Err("timed out")
        );
        writer.join().unwrap();
    }

    #[test]
    fn blocked_lane_stops_a_batch_that_already_has_messages() {
        let chan = std::sync::Arc::new(chan());
        let high = Priority::High.index();
        chan.try_send(Priority::Urgent.index(), 1).ok().unwrap();
        let pos = chan.lanes[high].claim_without_writing();
        chan.try_send(high, 21).ok().unwrap();
        chan.try_send(Priority::Normal.index(), 3).ok().unwrap();
        let mut out = Vec::new();
        // Urgent is taken; High is blocked, so Normal must not be.
        assert_eq!(chan.try_recv_batch(&mut out, 8), Ok(1));
        assert_eq!(out, [1]);
        chan.lanes[high].finish_write(pos, 20);
        assert_eq!(chan.try_recv_batch(&mut out, 8), Ok(3));
        assert_eq!(out, [1, 20, 21, 3]);
    }

    /// `try_recv_once` takes only what `scan` would take first, and when
    /// it declines it leaves everything as it was for the full path.
    /// The slip's bookkeeping: a slip that ends with too little queued
    /// makes the next 1, then 2, … slips skip; one that finds a lane deep
    /// enough resets that; an Urgent message, or one in a short lane, ends
    /// a slip without judgement; none takes a message; a crowded thread and
    /// messages smaller than a cache line never slip.
    #[test]
    fn slip_skips_after_slips_that_do_not_pay() {
        let state = |s: &Slip| {
            (
                s.skip.load(Ordering::Relaxed),
                s.streak.load(Ordering::Relaxed),
            )
        };
        // Lanes of 64: the depth waited for is 32.
        let chan = Chan::<[u8; 256]>::new([64; LANES]);
        let slip = Slip::new();
        if !crate::backoff::spinning_helps() {
            // One core (the pinned CI run): waits do not spin, nor slip.
            chan.slip(&slip);
            assert_eq!(state(&slip), (0, 0), "no slip on one core");
            return;
        }
        chan.slip(&slip); // nothing queued: waits its budget, does not pay
        assert_eq!(state(&slip), (1, 1));
        chan.slip(&slip); // skipped
        assert_eq!(state(&slip), (0, 1));
        chan.slip(&slip); // does not pay again: twice as many skipped
        assert_eq!(state(&slip), (2, 2));
        chan.slip(&slip);
        chan.slip(&slip);
        assert_eq!(state(&slip), (0, 2));
        let lane = Priority::Low.index();
        for i in 0..32u8 {
            chan.try_send(lane, [i; 256]).unwrap();
        }
        chan.slip(&slip); // the lane is 32 deep: pays
        assert_eq!(state(&slip), (0, 0));
        assert_eq!(chan.len(), 32, "a slip takes nothing");
        assert_eq!(chan.try_recv_once(), Some([0; 256]));

        // An Urgent message ends a slip at once, and is not held against it.
        let chan = Chan::<[u8; 256]>::new([64; LANES]);
        let slip = Slip::new();
        chan.try_send(Priority::Urgent.index(), [7; 256]).unwrap();
        chan.slip(&slip);
        assert_eq!(state(&slip), (0, 0));
        // So does a message in a lane too short to wait on (16 / 2 < 16).
        let chan = Chan::<[u8; 256]>::new([64, 64, 64, 16]);
        chan.try_send(Priority::Low.index(), [7; 256]).unwrap();
        chan.slip(&slip);
        assert_eq!(state(&slip), (0, 0));
        assert_eq!(chan.len(), 1);

        // A thread whose waits do not spin (crowded, here) never slips.
        let chan = Chan::<[u8; 256]>::new([64; LANES]);
        crate::backoff::set_crowded_for_test(u8::MAX);
        chan.slip(&slip);
        crate::backoff::set_crowded_for_test(0);
        assert_eq!(state(&slip), (0, 0), "a crowded thread never slips");

        let small = Chan::<u64>::new([64; LANES]);
        let slip = Slip::new();
        small.slip(&slip);
        assert_eq!(state(&slip), (0, 0), "small messages never slip");
    }

    #[test]
    fn one_attempt_receive_declines_without_side_effects() {
        let chan = chan();
        let (urgent, normal, low) = (
            Priority::Urgent.index(),
            Priority::Normal.index(),
            Priority::Low.index(),
        );
        assert_eq!(chan.try_recv_once(), None, "empty channel");
        chan.try_send(low, 30).ok().unwrap();
        chan.try_send(urgent, 10).ok().unwrap();
        assert_eq!(chan.try_recv_once(), Some(10), "highest ready lane first");
        // Urgent's bit is now stale (draining does not clear it): the one
        // attempt looks there, finds nothing and declines, and the full
        // path serves Low and clears the bit.
        assert_ne!(chan.ready.load(Ordering::Relaxed) & (1 << urgent), 0);
        assert_eq!(chan.try_recv_once(), None, "stale bit");
        assert_eq!(chan.len(), 1, "declining took nothing");
        assert_eq!(recv_now(&chan), Some(30));
        assert_eq!(chan.ready.load(Ordering::Relaxed) & (1 << urgent), 0);

        // An unfinished write at the front: decline, as `scan` would not
        // take it either.
        let pos = chan.lanes[normal].claim_without_writing();
        chan.try_send(normal, 21).ok().unwrap();
        assert_eq!(chan.try_recv_once(), None, "front slot being written");
        chan.lanes[normal].finish_write(pos, 20);
        assert_eq!(chan.try_recv_once(), Some(20));

        // A receiver clearing bits: the mask cannot be trusted, decline.
        chan.ready.fetch_add(CLEARING, Ordering::SeqCst);
        assert_eq!(chan.try_recv_once(), None, "mask being cleared");
        chan.ready.fetch_sub(CLEARING, Ordering::SeqCst);
        assert_eq!(chan.try_recv_once(), Some(21));
        assert_eq!(chan.len(), 0);
    }

    /// A waiter that registered and then took a message on its re-check
    /// must pass on a wake-up that arrived in between: it was for another
    /// message, and another waiter is parked behind it.
    #[test]
    fn registered_waiter_that_succeeds_forwards_its_wakeup() {
        use std::sync::{mpsc, Arc};

        let chan = Arc::new(chan());
        let normal = Priority::Normal.index();
        // m0 arrives while nobody waits: its notify wakes no one.
        chan.try_send(normal, 0).ok().unwrap();
        let (tx_go, rx_go) = mpsc::channel();
        let (tx_cont, rx_cont) = mpsc::channel::<()>();
        let r1 = {
            let c = chan.clone();
            std::thread::spawn(move || {
                let mut rechecked = false;
                c.recv_waiters.block(None, || {
                    // First attempt: as if R1 looked before m0 arrived.
                    if c.recv_waiters.waiting() == 0 && !rechecked {
                        return Attempt::Wait;
                    }
                    // The re-check after registering: takes m0, then
                    // pauses until R2 is parked and m1 was sent.
                    let a = c.recv_attempt();
                    if !rechecked {
                        rechecked = true;
                        tx_go.send(()).unwrap();
                        rx_cont.recv().unwrap();
                    }
                    a
                })
            })
        };
        rx_go.recv().unwrap();
        let r2 = {
            let c = chan.clone();
            std::thread::spawn(move || c.recv(None, (), ()).ok())
        };
        while chan.recv_waiters.waiting() < 2 {
            std::thread::yield_now();
        }
        // m1: its notify pops R1's entry (the oldest), not R2's.
        chan.try_send(normal, 1).ok().unwrap();
        tx_cont.send(()).unwrap();
        assert_eq!(r1.join().unwrap().ok().flatten(), Some(0));
        // R2 gets m1 only if R1 forwarded the wake-up (else it parks for
        // ever and this join hangs the test).
        assert_eq!(r2.join().unwrap(), Some(1));
    }
}
