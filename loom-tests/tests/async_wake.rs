#![cfg(loom)]
//! Models 5 and 8: park/wake with async wakers (`loom::future::block_on`
//! against a thread), and cancelled futures passing a wake-up on.
//!
//! No model yields before its racing operation (see `common`): the
//! notifying operation may land anywhere in the waiter's try, register,
//! re-check sequence (and, in model 8, before or after the future is
//! dropped). loom reaches "the waiter parked first" by preempting the
//! notifier. `common::block_on` yields after a
//! `Pending`, which is after the register and re-check.

mod common;

use std::task::Poll;

use common::block_on;
use lanebus::{RecvError, SendError, TryRecvError};
use loom::thread;

/// Model 5: `recv_async` on an empty channel is woken by a send.
#[test]
fn recv_async_woken_by_send() {
    common::model("recv_async_woken_by_send", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        let producer = thread::spawn(move || {
            assert_eq!(tx.send(1), Ok(()));
            tx
        });
        assert_eq!(block_on(rx.recv_async()), Ok(1));
        let _tx = producer.join().unwrap();
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    });
}

/// Model 5: `send_async` on a full lane is woken by a receive.
#[test]
fn send_async_woken_by_recv() {
    common::model("send_async_woken_by_recv", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(2), Ok(()));
        let rx2 = rx.clone();
        let consumer = thread::spawn(move || {
            assert_eq!(rx2.recv(), Ok(1));
        });
        assert_eq!(block_on(tx.send_async(3)), Ok(()));
        consumer.join().unwrap();
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    });
}

/// Model 5: `recv_async` on an empty channel is woken by `close`.
#[test]
fn recv_async_woken_by_close() {
    common::model("recv_async_woken_by_close", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        let closer = thread::spawn(move || {
            assert!(tx.close());
            tx
        });
        assert_eq!(block_on(rx.recv_async()), Err(RecvError));
        let _tx = closer.join().unwrap();
    });
}

/// Model 5: `recv_async` gets the last message, then `Err` once the last
/// sender (in another thread) is gone.
#[test]
fn recv_async_last_message_then_disconnect() {
    common::model("recv_async_last_message_then_disconnect", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        let producer = thread::spawn(move || {
            assert_eq!(tx.send(1), Ok(()));
        });
        assert_eq!(block_on(rx.recv_async()), Ok(1));
        assert_eq!(block_on(rx.recv_async()), Err(RecvError));
        producer.join().unwrap();
    });
}

/// Model 5: `send_async` on a full lane is woken by `close` and hands the
/// value back.
#[test]
fn send_async_woken_by_close() {
    common::model("send_async_woken_by_close", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(2), Ok(()));
        let closer = thread::spawn(move || {
            assert!(rx.close());
            rx
        });
        assert_eq!(block_on(tx.send_async(3)), Err(SendError(3)));
        let rx = closer.join().unwrap();
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    });
}

/// Model 8: two receivers — an async one whose future is polled once and
/// then dropped, and a thread blocked in `recv` — and one message sent by a
/// third thread. The future registers first (before the thread exists), so
/// the send's `notify(1)` takes the future's entry when both wait; dropping
/// the woken future must pass the wake-up on, or the thread stays parked
/// with the message queued (a deadlock for loom). The send races the
/// thread's register and re-check and the drop.
#[test]
fn cancelled_recv_future_forwards_wakeup() {
    common::model("cancelled_recv_future_forwards_wakeup", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        let mut fut = rx.recv_async();
        assert!(common::poll_once(&mut fut).is_pending());
        let rx2 = rx.clone();
        let blocked = thread::spawn(move || rx2.recv());
        let producer = thread::spawn(move || {
            assert_eq!(tx.send(1), Ok(()));
            tx
        });
        drop(fut);
        assert_eq!(blocked.join().unwrap(), Ok(1));
        let _tx = producer.join().unwrap();
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    });
}

/// Model 8 with the main thread as the sender: the future (registered
/// first) is woken by the send and dropped; the blocked thread must get the
/// message. The send races the thread's register, re-check and park.
///
/// This model cannot catch a weak handshake (both handshake loads
/// `Relaxed` passes): the future's own registration keeps `len` non-zero,
/// so the send's notify always takes the waiter list's lock, which orders
/// it with the thread's register. The handshake is `recv_woken_by_send`'s
/// and `cancelled_recv_future_forwards_wakeup`'s to check; this one checks
/// the forward.
#[test]
fn woken_recv_future_dropped_forwards_wakeup() {
    common::model("woken_recv_future_dropped_forwards_wakeup", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        let mut fut = rx.recv_async();
        assert!(common::poll_once(&mut fut).is_pending());
        let rx2 = rx.clone();
        let blocked = thread::spawn(move || rx2.recv());
        assert_eq!(tx.send(1), Ok(()));
        drop(fut);
        assert_eq!(blocked.join().unwrap(), Ok(1));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    });
}

/// Model 8, racing: the future is polled once while the blocked thread and
/// the sender run, then dropped. Whichever of them got the message, it is
/// received exactly once; if the single poll took it, the main thread
/// sends a second one so that the thread can finish.
#[test]
fn cancelled_recv_future_racing() {
    common::model("cancelled_recv_future_racing", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        let tx_main = tx.clone();
        let rx2 = rx.clone();
        let blocked = thread::spawn(move || rx2.recv().unwrap());
        let producer = thread::spawn(move || {
            assert_eq!(tx.send(1), Ok(()));
        });
        let mut fut = rx.recv_async();
        let first = common::poll_once(&mut fut);
        drop(fut);
        let main_got = match first {
            Poll::Ready(Ok(v)) => {
                assert_eq!(v, 1);
                assert_eq!(tx_main.send(2), Ok(()));
                true
            }
            Poll::Ready(Err(e)) => panic!("unexpected {e:?}"),
            Poll::Pending => false,
        };
        let thread_got = blocked.join().unwrap();
        producer.join().unwrap();
        assert_eq!(thread_got, if main_got { 2 } else { 1 });
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    });
}

/// Model 8, sending side: a `send_async` on a full lane registers first
/// (before the blocked thread exists), is woken by the receive that frees
/// one slot, and is dropped: the wake-up must reach the blocked sender. The
/// receive races the thread's register, re-check and park. (As above, the
/// forward is checked here, not the handshake: see `send_woken_by_recv`.)
#[test]
fn woken_send_future_dropped_forwards_wakeup() {
    common::model("woken_send_future_dropped_forwards_wakeup", || {
        let (tx, rx) = lanebus::bounded::<u32>(2);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(2), Ok(()));
        let mut fut = tx.send_async(3);
        assert!(common::poll_once(&mut fut).is_pending());
        let tx2 = tx.clone();
        let blocked = thread::spawn(move || tx2.send(4));
        assert_eq!(rx.recv(), Ok(1));
        drop(fut);
        assert_eq!(blocked.join().unwrap(), Ok(()));
        let rest: Vec<u32> = rx.try_iter().collect();
        assert_eq!(rest, [2, 4]);
    });
}
