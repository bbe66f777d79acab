#![cfg(loom)]
//! Sticky registrations (`src/wait.rs`, module docs): a `Receiver` polled
//! as a `Stream` or a `Sender` polled as a `Sink` stays in its waiter list
//! after `Pending`, whether or not its task ever polls that handle again
//! (the `next()` future lost a `select!`). Waking such an entry proves
//! nothing, so a notification that pops one must also wake a non-sticky
//! waiter.
//!
//! In the `idle_*` models the handle is polled once and then left alone
//! (alive) until the end, while a thread blocked in `recv` or `send` waits
//! beside it; the main thread's notification pops the sticky entry. If it
//! stopped there, the blocked thread would stay parked with a message (or
//! a free slot) waiting for it, which loom reports as a deadlock. In the
//! first two the idle handle registers before the thread exists, so its
//! entry is first; in `idle_stream_either_order` the two register in
//! either order. As in `async_wake`'s model 8, the idle entry keeps `len`
//! non-zero, so these check the hand-on past the sticky entry, not the
//! handshake (`park` checks that). `repolled_stream_gets_the_message`
//! checks that a sticky handle that *is* polled again loses nothing itself.
//!
//! No model yields before its racing operation (see `common`): the
//! notifying operation may land anywhere in the blocked thread's try,
//! register, re-check, park sequence. loom reaches "the waiter parked
//! first" by preempting the notifier.
//!
//! The wakers the idle handles register count their wake-ups in a std
//! atomic (outside the model, read only after the threads have been
//! joined), so the models also check that the sticky entry itself was
//! woken: its owner may still want to poll again.

mod common;

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use common::block_on;
use futures_core::Stream;
use futures_sink::Sink;
use lanebus::TryRecvError;
use loom::thread;

/// A waker that counts how often it was woken: the waker of a task that
/// polled a handle once and moved on.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl CountingWaker {
    fn wakes(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Receiving side: a `Receiver` clone polled once as a `Stream` on an
/// empty channel (`Pending`: a sticky entry, first in the list) and never
/// again, and a second receiver blocked in `recv` in another thread. The
/// main thread sends one message; the blocked receiver must get it.
///
/// A failure means the send's notification woke only the idle stream's
/// entry and left the blocked receiver parked with the message queued (a
/// deadlock for loom). Afterwards the message is gone from the channel
/// (received exactly once) and the idle stream was woken once.
#[test]
fn idle_stream_does_not_strand_a_blocked_recv() {
    common::model("idle_stream_does_not_strand_a_blocked_recv", || {
        let (tx, rx) = lanebus::bounded::<u32>(1);
        let mut stream = rx.clone();
        let waker = Arc::new(CountingWaker::default());
        let task_waker = Waker::from(waker.clone());
        let mut cx = Context::from_waker(&task_waker);
        assert_eq!(Pin::new(&mut stream).poll_next(&mut cx), Poll::Pending);
        let blocked = thread::spawn(move || rx.recv());
        assert_eq!(tx.send(1), Ok(()));
        assert_eq!(blocked.join().unwrap(), Ok(1));
        assert_eq!(stream.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(waker.wakes(), 1, "the idle stream's entry is woken too");
        drop(stream);
    });
}

/// Sending side: a capacity-1 lane, full. A `Sender` clone polled as a
/// `Sink` (`start_send` buffers its value, `poll_ready` returns `Pending`:
/// a sticky entry, first in the list) and never again, and a second sender
/// blocked in `send` in another thread. The main thread receives one
/// message, freeing the slot; the blocked sender must complete, and its
/// message is then received. Last, the idle sink, polled again, still
/// sends its buffered value.
///
/// A failure means the receive's notification woke only the idle sink's
/// entry and left the blocked sender parked beside a free slot (a deadlock
/// for loom), or a value was lost or duplicated.
#[test]
fn idle_sink_does_not_strand_a_blocked_send() {
    common::model("idle_sink_does_not_strand_a_blocked_send", || {
        let (tx, rx) = lanebus::bounded::<u32>(1);
        assert_eq!(tx.try_send(1), Ok(()));
        let mut sink = tx.clone();
        let waker = Arc::new(CountingWaker::default());
        let task_waker = Waker::from(waker.clone());
        let mut cx = Context::from_waker(&task_waker);
        assert_eq!(Pin::new(&mut sink).poll_ready(&mut cx), Poll::Ready(Ok(())));
        assert_eq!(Pin::new(&mut sink).start_send(2), Ok(()));
        assert_eq!(Pin::new(&mut sink).poll_ready(&mut cx), Poll::Pending);
        let blocked = thread::spawn(move || tx.send(3));
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(blocked.join().unwrap(), Ok(()));
        assert_eq!(waker.wakes(), 1, "the idle sink's entry is woken too");
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(Pin::new(&mut sink).poll_flush(&mut cx), Poll::Ready(Ok(())));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    });
}

/// [`idle_stream_does_not_strand_a_blocked_recv`] with the blocked
/// receiver started first: its register races the stream's, so either
/// entry may be first in the list (the sticky entry before or behind the
/// plain one), and the send may land anywhere in the thread's try,
/// register, re-check, park sequence. The blocked receiver gets the
/// message, exactly once.
///
/// A failure (a deadlock for loom) means the send's notification stopped
/// at the idle stream's entry, or skipped the plain entry in front of it.
#[test]
fn idle_stream_either_order() {
    common::model("idle_stream_either_order", || {
        let (tx, rx) = lanebus::bounded::<u32>(1);
        let mut stream = rx.clone();
        let blocked = thread::spawn(move || rx.recv());
        let task_waker = Waker::from(Arc::new(CountingWaker::default()));
        let mut cx = Context::from_waker(&task_waker);
        assert_eq!(Pin::new(&mut stream).poll_next(&mut cx), Poll::Pending);
        assert_eq!(tx.send(1), Ok(()));
        assert_eq!(blocked.join().unwrap(), Ok(1));
        assert_eq!(stream.try_recv(), Err(TryRecvError::Empty));
        drop(stream);
    });
}

/// A sticky stream that is polled again loses nothing itself: a producer
/// thread sends one message while the main thread polls the stream once
/// (the `next()` of a task that then moves on; its waker is never polled
/// again) and then awaits it with a new waker, as the task's next `next()`
/// does. The send may land before the first poll, between its register
/// and re-check, between the two polls (waking the first waker and popping
/// the entry, so the second poll must register again) or during the
/// second (which must replace the first waker with its own). The stream
/// gets the message, exactly once.
///
/// A failure (a deadlock for loom) means the second poll kept waiting on
/// an entry that was already popped, or on the old waker.
#[test]
fn repolled_stream_gets_the_message() {
    common::model("repolled_stream_gets_the_message", || {
        let (tx, rx) = lanebus::bounded::<u32>(1);
        let producer = thread::spawn(move || {
            assert_eq!(tx.send(1), Ok(()));
            tx
        });
        let mut stream = rx;
        let first = common::poll_once(&mut poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)));
        let got = match first {
            Poll::Ready(v) => v,
            Poll::Pending => block_on(poll_fn(|cx| Pin::new(&mut stream).poll_next(cx))),
        };
        assert_eq!(got, Some(1));
        let _tx = producer.join().unwrap();
        assert_eq!(stream.try_recv(), Err(TryRecvError::Empty));
    });
}
