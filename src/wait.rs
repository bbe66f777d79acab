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
//! retrying (an async future dropped after its waker fired), or succeeds
//! without the notified state (it registered, then its re-check took a
//! message), it calls [`WaitList::cancel_and_forward`] so that the wake-up
//! reaches someone who can use it (the "notify_one lost wake-up" bug class).
//! A blocking wait that times out while it holds an unused wake-up (its
//! retries found only a write still under way) passes it on too.
//!
//! A *sticky* registration belongs to a handle rather than a future (a
//! `Receiver` polled as a `Stream`, a `Sender` as a `Sink`): it stays in the
//! list while its task may have stopped polling that handle (the `next()`
//! future lost a `select!`). Waking it proves nothing, so a notification
//! that pops a sticky entry keeps going until it has also woken a
//! non-sticky one (or emptied the list).

use core::task::Waker;
use std::collections::VecDeque;

use core::task::{Context, Poll};
use std::time::Instant;

use crate::backoff::Backoff;
use crate::loom::{
    handshake_load, thread, thread::Thread, AtomicUsize, Mutex, MutexGuard, Ordering,
};

/// One step of a blocking or async operation.
pub(crate) enum Attempt<R> {
    /// Finished, successfully or not.
    Done(R),
    /// Would block: wait for a notification.
    Wait,
    /// Another thread is half-way through a step we need (a producer
    /// writing the front slot): retry soon, without parking.
    Busy,
}

/// The blocking operation's deadline passed.
pub(crate) struct TimedOut;

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

#[derive(Debug)]
struct Entry {
    id: WaitId,
    unpark: Unpark,
    sticky: bool,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: WaitId,
    entries: VecDeque<Entry>,
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

    /// Adds a waiter (`sticky`: see the module docs). The caller must
    /// re-check its condition afterwards and only then park or return
    /// `Pending`.
    pub(crate) fn register(&self, unpark: Unpark, sticky: bool) -> WaitId {
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.entries.push_back(Entry { id, unpark, sticky });
        // SeqCst RMW: the publish half of the handshake (module docs).
        self.len.fetch_add(1, Ordering::SeqCst);
        id
    }

    /// Replaces the waker of a registration. Returns false if the
    /// registration is gone (it was notified): register again.
    pub(crate) fn refresh(&self, id: WaitId, waker: &Waker) -> bool {
        let mut inner = self.lock();
        match inner.entries.iter_mut().find(|e| e.id == id) {
            Some(Entry {
                unpark: Unpark::Waker(w),
                ..
            }) => {
                if !w.will_wake(waker) {
                    w.clone_from(waker);
                }
                true
            }
            Some(entry) => {
                entry.unpark = Unpark::Waker(waker.clone());
                true
            }
            None => false,
        }
    }

    /// Removes a registration. Returns true if it was still registered,
    /// false if a notifier took it (this waiter was woken).
    pub(crate) fn cancel(&self, id: WaitId) -> bool {
        let mut inner = self.lock();
        match inner.entries.iter().position(|e| e.id == id) {
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

    /// Number of registered waiters (a snapshot, for tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn waiting(&self) -> usize {
        self.len.load(Ordering::SeqCst)
    }

    /// Wakes every waiter.
    #[inline]
    pub(crate) fn notify_all(&self) {
        self.notify(usize::MAX);
    }

    /// Runs `attempt` until it is `Done`, backing off and then parking on
    /// this list in between. Returns `Err(TimedOut)` once `deadline` passes
    /// (never before `attempt` has run at least once).
    #[inline]
    pub(crate) fn block<R>(
        &self,
        deadline: Option<Instant>,
        attempt: impl FnMut() -> Attempt<R>,
    ) -> Result<R, TimedOut> {
        self.block_after(Backoff::new(), deadline, attempt)
    }

    /// [`WaitList::block`] for a caller that already waited through some
    /// steps of `backoff` (a pre-wait that only watched for a change): the
    /// attempts go on from that step, so the pre-wait does not lengthen the
    /// time before the thread parks.
    pub(crate) fn block_after<R>(
        &self,
        mut backoff: Backoff,
        deadline: Option<Instant>,
        mut attempt: impl FnMut() -> Attempt<R>,
    ) -> Result<R, TimedOut> {
        // Two backoffs: `backoff` paces waiting for another thread to act
        // (a message, a slot) and ends in parking; `busy` paces waiting for
        // a write already under way, which takes nanoseconds. Sharing one
        // made a receive that had spun a while on an empty channel then
        // sleep for its long spin step when it met the message being
        // written: blocking round trips took 1.4x crossbeam's.
        let mut busy = Backoff::new();
        let mut registered: Option<WaitId> = None;
        // Whether this waiter holds a wake-up it has not used: a notifier
        // took its registration, and no attempt since found the condition
        // plainly unmet (`Wait`: the wake-up's message or slot went to
        // someone else). Giving up while holding one must pass it on.
        let mut woken = false;
        loop {
            match attempt() {
                Attempt::Done(r) => {
                    if let Some(id) = registered {
                        // Registered, then succeeded on the re-check: a
                        // wake-up that arrived since was for a message (or
                        // slot) this attempt did not take, so pass it on.
                        self.cancel_and_forward(id);
                    }
                    return Ok(r);
                }
                Attempt::Busy => {
                    // Never park while registered-and-busy: unregister and
                    // spin; we retry at once, so no wake-up is lost. Short
                    // spins first; it still yields if the writer was
                    // preempted.
                    if let Some(id) = registered.take() {
                        woken |= !self.cancel(id);
                    }
                    if deadline.is_some_and(crate::loom::passed) {
                        if woken {
                            // The wake-up may be for a message behind the
                            // write under way (or for that write): another
                            // waiter must get it, or it could stay parked
                            // with the message queued.
                            self.notify(1);
                        }
                        return Err(TimedOut);
                    }
                    busy.snooze();
                    continue;
                }
                Attempt::Wait => woken = false,
            }
            match registered.take() {
                None => {
                    if deadline.is_some_and(crate::loom::passed) {
                        return Err(TimedOut);
                    }
                    if !backoff.is_completed() {
                        backoff.snooze();
                        continue;
                    }
                    // Register, then loop to try once more before parking:
                    // the handshake of `wait`.
                    registered = Some(self.register(Unpark::Thread(thread::current()), false));
                }
                Some(id) => {
                    crate::loom::park(deadline);
                    // Whether woken, timed out or spurious: leave the list
                    // and try again. A woken waiter always retries once, and
                    // that retry is what its wake-up was for.
                    woken = !self.cancel(id);
                }
            }
        }
    }

    /// The async form of [`WaitList::block`]: one poll. `wait` keeps the
    /// registration between polls; the owner of `wait` must call
    /// [`WaitList::cancel_and_forward`] if it is dropped while registered.
    /// `sticky` marks a registration that may outlive the task's interest
    /// (a `Stream` or `Sink` handle; see [`WaitList::register`]).
    pub(crate) fn poll<R>(
        &self,
        wait: &mut Option<WaitId>,
        sticky: bool,
        cx: &mut Context<'_>,
        mut attempt: impl FnMut() -> Attempt<R>,
    ) -> Poll<R> {
        loop {
            match attempt() {
                Attempt::Done(r) => {
                    if let Some(id) = wait.take() {
                        // As in `block`: a wake-up since the last poll was
                        // not for what this attempt took.
                        self.cancel_and_forward(id);
                    }
                    return Poll::Ready(r);
                }
                Attempt::Busy => {
                    // A producer is mid-write: poll again soon. (A spin
                    // loop through the executor: hint it, and let loom
                    // switch threads here.)
                    crate::loom::spin_loop();
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Attempt::Wait => {}
            }
            match *wait {
                // Still registered: keep the newest waker and wait.
                Some(id) if self.refresh(id, cx.waker()) => return Poll::Pending,
                // Not registered, or woken since: register, then try again.
                _ => *wait = Some(self.register(Unpark::Waker(cx.waker().clone()), sticky)),
            }
        }
    }

    /// [`WaitList::poll`] as a future that runs `attempt` until it is
    /// `Done`. Dropped while registered, it passes on a wake-up it received.
    pub(crate) fn wait_async<'a, R: 'a>(
        &'a self,
        mut attempt: impl FnMut() -> Attempt<R> + 'a,
    ) -> impl core::future::Future<Output = R> + 'a {
        struct Registered<'a> {
            list: &'a WaitList,
            wait: Option<WaitId>,
        }
        impl Drop for Registered<'_> {
            fn drop(&mut self) {
                if let Some(id) = self.wait.take() {
                    self.list.cancel_and_forward(id);
                }
            }
        }
        let mut registered = Registered {
            list: self,
            wait: None,
        };
        core::future::poll_fn(move |cx| {
            registered
                .list
                .poll(&mut registered.wait, false, cx, &mut attempt)
        })
    }

    #[cold]
    fn notify_slow(&self, n: usize) {
        let mut inner = self.lock();
        // Pop until `n` non-sticky waiters are out (module docs).
        let mut plain = 0;
        let mut popped = 0;
        while plain < n && popped < inner.entries.len() {
            plain += usize::from(!inner.entries[popped].sticky);
            popped += 1;
        }
        if popped == 0 {
            return;
        }
        self.len.fetch_sub(popped, Ordering::Relaxed);
        if popped == 1 {
            // The common case: no allocation.
            let first = inner.entries.pop_front();
            drop(inner);
            if let Some(entry) = first {
                entry.unpark.wake();
            }
            return;
        }
        let woken: Vec<Entry> = inner.entries.drain(..popped).collect();
        drop(inner);
        for entry in woken {
            entry.unpark.wake();
        }
    }
}

/// The waiter list as `loom-tests/` sees it, so that a model can check the
/// list's own contract (a wake-up is never lost, and a waiter that gives
/// up holding one passes it on) with a condition of its own making,
/// rather than only through a channel. Only built with `--cfg loom`.
#[cfg(loom)]
pub mod loom_api {
    use super::Attempt as Step;

    /// One step of a wait (the crate's `Attempt`).
    #[derive(Debug)]
    pub enum Attempt<R> {
        /// The condition held: return `R`.
        Done(R),
        /// Not yet: register and park.
        Wait,
        /// Another thread is half-way through a step: retry without
        /// parking.
        Busy,
    }

    /// A waiter list (the crate's `WaitList`).
    #[derive(Debug)]
    pub struct WaitList(super::WaitList);

    impl Default for WaitList {
        fn default() -> Self {
            Self(super::WaitList::new())
        }
    }

    impl WaitList {
        /// Wakes up to `n` waiters, oldest first.
        pub fn notify(&self, n: usize) {
            self.0.notify(n);
        }

        /// Runs `attempt` until it is `Done`, parking on the list in
        /// between: `Some` of what it returned; with `timed`, `None` if
        /// it gave up (once `loom_expire_deadlines` has run).
        pub fn block<R>(&self, timed: bool, mut attempt: impl FnMut() -> Attempt<R>) -> Option<R> {
            // Any instant: under loom only the switch ends a wait.
            let deadline = timed.then(std::time::Instant::now);
            self.0
                .block(deadline, || match attempt() {
                    Attempt::Done(r) => Step::Done(r),
                    Attempt::Wait => Step::Wait,
                    Attempt::Busy => Step::Busy,
                })
                .ok()
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

    /// A timed wait that a notifier picked, but whose retries find only a
    /// write still under way (`Busy`) until its deadline, passes the
    /// wake-up on: the other waiter, parked for the same event, wakes.
    /// (Found in review: the timed-out waiter used to keep the wake-up, and
    /// a receiver stayed parked with a message queued.)
    #[test]
    fn a_timed_out_waiter_passes_on_a_wake_up_it_holds() {
        let list = Arc::new(WaitList::new());
        let ready = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        // Long enough to register and set up the second waiter first, even
        // under miri.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut other = None;
        let got = list.block(Some(deadline), || {
            if list.waiting() == 0 {
                // Not registered yet: back off until `block` registers.
                return Attempt::Wait;
            }
            if other.is_none() {
                // Registered, first in the list. A second waiter registers
                // behind us and parks.
                let (their_list, their_ready) = (list.clone(), ready.clone());
                let done = done_tx.clone();
                other = Some(std::thread::spawn(move || {
                    let got = their_list.block(None, || {
                        if their_ready.load(Ordering::SeqCst) {
                            Attempt::Done(())
                        } else {
                            Attempt::Wait
                        }
                    });
                    done.send(()).expect("the test waits for this");
                    got.is_ok()
                }));
                while list.waiting() < 2 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                std::thread::sleep(Duration::from_millis(50));
                // The event happens and one waiter is woken: the oldest, us.
                ready.store(true, Ordering::SeqCst);
                list.notify(1);
                assert_eq!(list.waiting(), 1, "the notifier took our entry");
            }
            // Our retry finds the event still being written, until the
            // deadline has passed.
            while Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            Attempt::<()>::Busy
        });
        assert!(got.is_err(), "the wait timed out");
        let woke = done_rx.recv_timeout(Duration::from_secs(10)).is_ok();
        if !woke {
            // Release it so the test ends, then fail.
            list.notify_all();
        }
        let other_ok = other.expect("second waiter").join().expect("no panic");
        assert!(
            woke,
            "the other waiter stayed parked: the timed-out waiter kept the wake-up"
        );
        assert!(other_ok);
    }
}
