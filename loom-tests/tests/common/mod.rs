//! Helpers shared by the loom models (each `tests/*.rs` file includes this
//! module; not every file uses every helper).
//!
//! # No yield before a racing operation
//!
//! No model yields before its notifying operation (a send, receive, close,
//! drop, release or refresh) to "let the waiter park first". loom never
//! picks a yielded thread at a backtracking point, so after a yield it
//! (almost) never explores the notifying operation between the waiter's
//! register, its re-check and its park, where a lost wake-up hides. (A
//! helper that yielded twice there let a mutant with all handshake loads
//! and register `Relaxed` pass
//! `park::send_woken_by_{recv,close,last_receiver_drop}` and
//! `drops::last_receiver_drops_while_sender_blocked`, and a waiter that
//! parks without its re-check pass
//! `budget::acquire_async_woken_by_release`.)
//! Nor is it needed for the waiter to park first: under loom a blocking call
//! does not back off before it registers (`PARK_AFTER` is 0 in
//! `src/backoff.rs`), and loom reaches "the waiter parked, then the notifier
//! acts" by preempting the notifier. The only yields left are those a spin
//! loop needs to terminate (see [`block_on`]).
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Runs `f` under `loom::model` and prints how many interleavings loom
/// explored (visible with `--nocapture`).
pub fn model<F>(name: &str, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    // A std atomic: loom runs its threads on one OS thread, and this counter
    // is not part of the model.
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    loom::model(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    eprintln!("{name}: {} interleavings", runs.load(Ordering::Relaxed));
}

/// [`model`] for long executions: loom gives up on an execution after
/// `LOOM_MAX_BRANCHES` (default 1000) branch points, and a worker pool's
/// threads reach that with no spin loop at all. Allows at least
/// `max_branches` (more if `LOOM_MAX_BRANCHES` says so). Runs
/// `loom::model::Builder::check`, so `LOOM_LOG` prints nothing.
pub fn model_long<F>(name: &str, max_branches: usize, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let mut builder = loom::model::Builder::new();
    builder.max_branches = builder.max_branches.max(max_branches);
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    eprintln!("{name}: {} interleavings", runs.load(Ordering::Relaxed));
}

/// A value that records its drop in a bit set and panics if it is dropped
/// twice. The bit set is a std atomic, outside the model: it is only read
/// after the threads have been joined.
#[derive(Debug)]
pub struct Tracked {
    pub id: u32,
    drops: Arc<AtomicUsize>,
}

/// The shared drop log of a set of [`Tracked`] values.
#[derive(Clone, Debug, Default)]
pub struct DropLog(Arc<AtomicUsize>);

impl DropLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// A value with identity `id` (< 64).
    pub fn value(&self, id: u32) -> Tracked {
        Tracked {
            id,
            drops: self.0.clone(),
        }
    }

    /// The set of ids dropped so far, as a bit set.
    pub fn dropped(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let bit = 1usize << self.id;
        let before = self.drops.fetch_or(bit, Ordering::SeqCst);
        assert_eq!(before & bit, 0, "value {} dropped twice", self.id);
    }
}

/// Polls `fut` exactly once inside `loom::future::block_on` (so the waker it
/// registers is a loom waker) and returns the result of that one poll.
pub fn poll_once<F: std::future::Future + Unpin>(fut: &mut F) -> std::task::Poll<F::Output> {
    loom::future::block_on(std::future::poll_fn(|cx| {
        std::task::Poll::Ready(std::pin::Pin::new(&mut *fut).poll(cx))
    }))
}

/// `loom::future::block_on`, except that the thread yields to loom after
/// every `Pending`.
///
/// Why: on `Busy` (a producer has claimed the front slot but not written it
/// yet) `WaitList::poll` calls `wake_by_ref` and returns `Pending` — a spin loop
/// that does not go through the crate's loom shim. loom's `block_on` re-polls
/// a self-woken future without yielding, so loom would keep scheduling the
/// polling thread and never the producer (it reports "exceeded maximum
/// number of branches"). A real executor runs on its own OS thread and does
/// not starve the producer; yielding here models that. A lost wake-up is
/// still caught: after the yield `block_on` waits for a real wake.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    loom::future::block_on(std::future::poll_fn(move |cx| {
        let out = fut.as_mut().poll(cx);
        if out.is_pending() {
            loom::thread::yield_now();
        }
        out
    }))
}
