//! The one place that names atomics, cells, `Arc`, `Mutex` and threads.
//!
//! Under `--cfg loom` everything comes from [loom](https://docs.rs/loom) so
//! that the model checker sees every access; otherwise from `std`. No other
//! file in the crate imports `std::sync::atomic`, `std::cell::UnsafeCell`,
//! `std::sync::Arc`/`Mutex` or `std::thread`.

#[cfg(loom)]
pub(crate) use loom::{
    cell::UnsafeCell,
    sync::atomic::{fence, AtomicUsize, Ordering},
    sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

/// loom's threads; a thread that asks for it ([`keep_unpark_token`]) gets
/// `std`'s unpark token.
///
/// loom 0.7 keeps a thread's unpark token only while the thread runs on:
/// if, between an `unpark` and its `park`, the thread blocks on a loom
/// lock or yields, the token is gone and the `park` blocks for ever
/// (`std` keeps the token until the next `park`). A pool worker does just
/// that: after registering on its idle list it takes the source's
/// waiter-list lock and the keys lock, and spins in rings (a yield under
/// loom), before it parks; an `unpark` in between was reported as a
/// deadlock that cannot happen. So a worker keeps the token here as well: a
/// flag, set (with an RMW, see [`handshake_load`]) before loom's `unpark`
/// and taken by [`park`]. Other threads park and unpark exactly as loom
/// does (the flag's operations would only enlarge their models).
#[cfg(loom)]
pub(crate) mod thread {
    use core::cell::RefCell;

    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::sync::Arc;
    pub(crate) use loom::thread::{spawn, yield_now, JoinHandle};

    loom::thread_local! {
        static TOKEN: RefCell<Option<Arc<AtomicUsize>>> = RefCell::new(None);
    }

    /// A handle to a thread, to unpark it.
    #[derive(Clone, Debug)]
    pub(crate) struct Thread {
        thread: loom::thread::Thread,
        token: Option<Arc<AtomicUsize>>,
    }

    impl Thread {
        /// Wakes the thread if it parks; if it keeps a token, makes the
        /// token available first.
        pub(crate) fn unpark(&self) {
            if let Some(token) = &self.token {
                // Release: what the unparker did happens-before the return
                // of the `park` that takes the token (as with `std`).
                token.swap(1, Ordering::Release);
            }
            self.thread.unpark();
        }
    }

    /// A handle to the calling thread.
    pub(crate) fn current() -> Thread {
        Thread {
            thread: loom::thread::current(),
            token: TOKEN.with(|token| token.borrow().clone()),
        }
    }

    /// From now on the calling thread keeps its unpark token (module docs).
    pub(crate) fn keep_unpark_token() {
        TOKEN.with(|token| {
            token
                .borrow_mut()
                .get_or_insert_with(|| Arc::new(AtomicUsize::new(0)));
        });
    }

    /// Parks; for a thread that keeps its token, returns at once, taking
    /// it, if it is available. (A token set after that check also reaches
    /// loom's `park` as loom's own: nothing runs in between.) Spurious
    /// returns are allowed, as with `std`.
    pub(crate) fn park() {
        let taken = TOKEN.with(|token| {
            token
                .borrow()
                .as_ref()
                .is_some_and(|token| token.swap(0, Ordering::Acquire) != 0)
        });
        if !taken {
            loom::thread::park();
        }
    }
}

/// Makes the calling thread keep its unpark token under loom (see the
/// `thread` module there); nothing to do with `std`, which always does.
#[inline(always)]
pub(crate) fn keep_unpark_token() {
    #[cfg(loom)]
    thread::keep_unpark_token();
}

#[cfg(not(loom))]
pub(crate) use std::{
    sync::atomic::{fence, AtomicUsize, Ordering},
    sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard},
    thread,
};

/// Plain `std` types even under loom, for state that no lock-free protocol
/// depends on: the reference counts of the bus's registry of topics and
/// subscriptions (it needs `Weak`, which loom lacks) and the immutable
/// shared header of an envelope. The locks that guard the registry are
/// loom's (above): a std lock held across a loom operation would block
/// loom's one OS thread when another loom thread takes it, and would hide
/// from loom the ordering it gives to what it guards.
pub(crate) mod plain {
    /// The worker pool's counters and statistics: snapshots that no
    /// protocol reads. Its statistics lock is only ever held across plain
    /// code (no loom operation inside), so loom never switches threads
    /// while it is held.
    pub(crate) use std::sync::{atomic::AtomicU64, Mutex, OnceLock};
    pub(crate) use std::sync::{Arc, Weak};
}

/// `std::cell::UnsafeCell` with loom's closure API, so that the same code
/// compiles against both.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a shared raw pointer to the contents.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with a unique raw pointer to the contents.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// A hint that this thread is busy-waiting. Under loom it yields, because loom
/// needs every spin loop to yield to explore (and terminate).
#[inline(always)]
pub(crate) fn spin_loop() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// Gives up the rest of this thread's time slice.
#[inline]
pub(crate) fn yield_now() {
    thread::yield_now();
}

/// The load half of a store-buffering (Dekker) handshake: "I published my
/// side with a SeqCst read-modify-write; now read the other side".
///
/// With `std` this is a SeqCst load (a plain `mov` on x86_64): both sides'
/// publishing operations are SeqCst RMWs and both loads are SeqCst, so all
/// four sit in the single total order and at least one load sees the other
/// side's write. loom models SeqCst loads as Acquire (see its README), which
/// would report lost wake-ups that cannot happen; an RMW always reads the
/// latest value in modification order, so under loom the load is a
/// `fetch_add(0, SeqCst)` (the trap thingbuf documents).
#[inline(always)]
pub(crate) fn handshake_load(atomic: &AtomicUsize) -> usize {
    #[cfg(loom)]
    {
        atomic.fetch_add(0, Ordering::SeqCst)
    }
    #[cfg(not(loom))]
    {
        atomic.load(Ordering::SeqCst)
    }
}

/// Whether `deadline` has passed.
///
/// loom has no clock, so under loom time is one switch: until it is
/// flipped no deadline has passed, from then on every one has. A model
/// thread that flips it (`expire_deadlines`) lets loom put the moment a
/// timed wait's deadline passes between any two of the wait's steps.
#[inline]
pub(crate) fn passed(deadline: std::time::Instant) -> bool {
    #[cfg(loom)]
    {
        let _ = deadline;
        // An RMW reads the latest value: once a deadline has passed for
        // one thread it has for all (a relaxed load could go on reading
        // the old value, and loom would explore each such read).
        clock::EXPIRED.fetch_add(0, Ordering::SeqCst) != 0
    }
    #[cfg(not(loom))]
    {
        std::time::Instant::now() >= deadline
    }
}

/// From now on every deadline has passed (see [`passed`]); for loom models.
#[cfg(loom)]
pub(crate) fn expire_deadlines() {
    clock::EXPIRED.fetch_add(1, Ordering::SeqCst);
}

/// The switch that is time under loom (see [`passed`]); loom makes it anew
/// for each execution of a model.
#[cfg(loom)]
mod clock {
    loom::lazy_static! {
        pub(super) static ref EXPIRED: loom::sync::atomic::AtomicUsize =
            loom::sync::atomic::AtomicUsize::new(0);
    }
}

/// Parks the current thread until it is unparked or `deadline` passes.
/// Spurious returns are allowed; callers re-check their condition.
pub(crate) fn park(deadline: Option<std::time::Instant>) {
    #[cfg(loom)]
    {
        // loom has no clock (see `passed`): a timed park is modelled as a
        // spurious wake-up, an untimed one as a real park (loom reports a
        // deadlock if nobody ever unparks it).
        match deadline {
            Some(_) => thread::yield_now(),
            None => thread::park(),
        }
    }
    #[cfg(not(loom))]
    match deadline {
        None => thread::park(),
        Some(deadline) => {
            let now = std::time::Instant::now();
            if deadline > now {
                thread::park_timeout(deadline - now);
            }
        }
    }
}
