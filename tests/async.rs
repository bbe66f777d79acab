//! Async sending and receiving: `SendFut`, `RecvFut`, `Stream`, `Sink`, and
//! the passing on of a wake-up by a future that is dropped.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread;
use std::time::Duration;

use common::{scale, CountingWaker, Tracker};
use futures_core::{FusedFuture, FusedStream, Stream};
use futures_executor::block_on;
use futures_sink::Sink;
use futures_util::{stream, SinkExt, StreamExt};
use lanebus::{Priority, RecvError, SendError};

fn poll_once<F: Future + Unpin>(fut: &mut F, waker: &std::task::Waker) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(waker))
}

fn let_them_block() {
    thread::sleep(Duration::from_millis(if cfg!(miri) { 5 } else { 50 }));
}

#[test]
fn smoke() {
    let (tx, rx) = lanebus::bounded::<u32>(2);
    block_on(async {
        tx.send_async(1).await.unwrap();
        tx.send_with_async(Priority::Urgent, 2).await.unwrap();
        assert_eq!(rx.recv_async().await, Ok(2));
        assert_eq!(rx.recv_async().await, Ok(1));
    });
    assert_eq!(tx.send_async(3).priority(), Priority::Normal);
    assert_eq!(
        tx.send_with_async(Priority::Low, 3).priority(),
        Priority::Low
    );
    drop(tx);
    assert_eq!(block_on(rx.recv_async()), Err(RecvError));
}

#[test]
fn send_async_on_closed_hands_value_back() {
    let (tx, rx) = lanebus::bounded::<String>(1);
    drop(rx);
    assert_eq!(
        block_on(tx.send_async("x".into())),
        Err(SendError("x".to_string()))
    );
}

#[test]
fn async_across_threads() {
    let n = scale(10_000, 50);
    let (tx, rx) = lanebus::bounded::<usize>(1);
    let producer = thread::spawn(move || {
        block_on(async {
            for i in 0..n {
                tx.send_async(i).await.unwrap();
            }
        })
    });
    let consumer = thread::spawn(move || {
        block_on(async {
            let mut got = Vec::new();
            while let Ok(v) = rx.recv_async().await {
                got.push(v);
            }
            got
        })
    });
    producer.join().unwrap();
    assert_eq!(consumer.join().unwrap(), (0..n).collect::<Vec<_>>());
}

#[test]
fn async_mpmc_mixed_with_blocking() {
    let n = scale(5_000, 30);
    let (tx, rx) = lanebus::bounded::<usize>(2);
    let received: Vec<Vec<usize>> = thread::scope(|s| {
        // One async and one blocking producer, one async and one blocking
        // consumer.
        let atx = tx.clone();
        s.spawn(move || {
            block_on(async {
                for i in 0..n {
                    atx.send_with_async(Priority::ALL[i % 4], i).await.unwrap();
                }
            })
        });
        s.spawn(move || {
            for i in n..2 * n {
                tx.send_with(Priority::ALL[i % 4], i).unwrap();
            }
        });
        let arx = rx.clone();
        let a = s.spawn(move || block_on(arx.collect::<Vec<_>>()));
        let b = s.spawn(move || rx.iter().collect::<Vec<_>>());
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    let mut all: Vec<usize> = received.into_iter().flatten().collect();
    all.sort_unstable();
    assert_eq!(all, (0..2 * n).collect::<Vec<_>>());
}

#[test]
fn fused_futures() {
    let (tx, rx) = lanebus::bounded::<u32>(1);
    let (_c, w) = CountingWaker::new();
    let mut f = tx.send_async(1);
    assert!(!f.is_terminated());
    assert_eq!(poll_once(&mut f, &w), Poll::Ready(Ok(())));
    assert!(f.is_terminated());
    drop(f);
    let mut f = rx.recv_async();
    assert!(!f.is_terminated());
    assert_eq!(poll_once(&mut f, &w), Poll::Ready(Ok(1)));
    assert!(f.is_terminated());
}

#[test]
fn stream_in_priority_order_then_ends() {
    let (tx, mut rx) = lanebus::bounded::<(Priority, u32)>(4);
    for i in 0..2 {
        for p in [
            Priority::Low,
            Priority::High,
            Priority::Normal,
            Priority::Urgent,
        ] {
            tx.send_with(p, (p, i)).unwrap();
        }
    }
    assert!(!rx.is_terminated());
    drop(tx);
    assert!(!rx.is_terminated(), "closed but not drained");
    let got: Vec<_> = block_on((&mut rx).collect::<Vec<_>>());
    let want: Vec<_> = Priority::ALL
        .into_iter()
        .flat_map(|p| (0..2).map(move |i| (p, i)))
        .collect();
    assert_eq!(got, want);
    assert!(rx.is_terminated());
    assert_eq!(block_on(rx.next()), None);
}

#[test]
fn stream_waits_for_messages() {
    let (tx, rx) = lanebus::bounded::<u32>(1);
    let h = thread::spawn(move || block_on(rx.take(3).collect::<Vec<_>>()));
    let_them_block();
    for i in 0..3 {
        tx.send(i).unwrap();
    }
    assert_eq!(h.join().unwrap(), [0, 1, 2]);
}

#[test]
fn sink_send_feed_flush() {
    let (mut tx, rx) = lanebus::bounded::<u32>(1);
    block_on(async {
        SinkExt::send(&mut tx, 1).await.unwrap();
    });
    thread::scope(|s| {
        let h = s.spawn(|| {
            let_them_block();
            (0..4).map(|_| rx.recv().unwrap()).collect::<Vec<_>>()
        });
        block_on(async {
            // The lane is full: `feed` buffers 2, and the next readiness
            // check waits for the consumer.
            tx.feed(2).await.unwrap();
            tx.feed(3).await.unwrap();
            tx.flush().await.unwrap();
            SinkExt::send(&mut tx, 4).await.unwrap();
        });
        assert_eq!(h.join().unwrap(), [1, 2, 3, 4]);
    });
    block_on(async {
        let mut items = stream::iter(vec![5, 6, 7]).map(Ok);
        let h = thread::spawn({
            let rx = rx.clone();
            move || (0..3).map(|_| rx.recv().unwrap()).collect::<Vec<_>>()
        });
        tx.send_all(&mut items).await.unwrap();
        assert_eq!(h.join().unwrap(), [5, 6, 7]);
        // `close` flushes but does not close the channel.
        SinkExt::close(&mut tx).await.unwrap();
    });
    assert!(!rx.is_closed());
}

#[test]
fn sink_errors_hand_value_back() {
    let (mut tx, rx) = lanebus::bounded::<String>(1);
    let (c, w) = CountingWaker::new();
    let mut cx = Context::from_waker(&w);
    assert_eq!(Pin::new(&mut tx).poll_ready(&mut cx), Poll::Ready(Ok(())));
    Pin::new(&mut tx).start_send("a".into()).unwrap();
    // Full now: the next value is buffered in the sender.
    assert_eq!(Pin::new(&mut tx).poll_ready(&mut cx), Poll::Ready(Ok(())));
    Pin::new(&mut tx).start_send("b".into()).unwrap();
    assert_eq!(rx.len(), 1);
    // A second start_send without poll_ready hands its value back.
    assert_eq!(
        Pin::new(&mut tx).start_send("c".into()),
        Err(SendError("c".to_string()))
    );
    assert!(Pin::new(&mut tx).poll_ready(&mut cx).is_pending());
    assert_eq!(c.count(), 0);
    assert_eq!(rx.recv().unwrap(), "a");
    assert_eq!(c.count(), 1, "a free slot wakes the waiting sink");
    assert_eq!(Pin::new(&mut tx).poll_flush(&mut cx), Poll::Ready(Ok(())));
    assert_eq!(rx.recv().unwrap(), "b");
    // Closed: the buffered value comes back through poll_flush.
    Pin::new(&mut tx).start_send("d".into()).unwrap();
    Pin::new(&mut tx).start_send("e".into()).unwrap();
    assert_eq!(
        Pin::new(&mut tx).start_send("f".into()),
        Err(SendError("f".to_string()))
    );
    rx.close();
    assert_eq!(
        Pin::new(&mut tx).poll_flush(&mut cx),
        Poll::Ready(Err(SendError("e".to_string())))
    );
    assert_eq!(
        Pin::new(&mut tx).start_send("g".into()),
        Err(SendError("g".to_string()))
    );
    assert_eq!(rx.recv().unwrap(), "d");
    drop(rx);
    assert_eq!(
        block_on(SinkExt::send(&mut tx, "h".to_string())),
        Err(SendError("h".to_string()))
    );
}

#[test]
fn sink_buffered_value_returned_on_close() {
    let (mut tx, rx) = lanebus::bounded::<u32>(1);
    let (_c, w) = CountingWaker::new();
    let mut cx = Context::from_waker(&w);
    Pin::new(&mut tx).start_send(1).unwrap(); // sent at once
    Pin::new(&mut tx).start_send(2).unwrap(); // full: buffered
    assert_eq!(Pin::new(&mut tx).start_send(3), Err(SendError(3)));
    assert!(Pin::new(&mut tx).poll_ready(&mut cx).is_pending());
    assert!(Pin::new(&mut tx).poll_flush(&mut cx).is_pending());
    assert_eq!(rx.len(), 1);
    rx.close();
    assert_eq!(
        Pin::new(&mut tx).poll_flush(&mut cx),
        Poll::Ready(Err(SendError(2)))
    );
    assert_eq!(Pin::new(&mut tx).poll_flush(&mut cx), Poll::Ready(Ok(())));
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1]);
}

/// Two receivers wait; one message arrives and wakes the first; the first
/// future is dropped without being polled again: the second must be woken
/// and get the message.
#[test]
fn recv_fut_woken_then_dropped_passes_wakeup_on() {
    let (tx, rx) = lanebus::bounded::<u32>(1);
    let rx2 = rx.clone();
    let (c1, w1) = CountingWaker::new();
    let (c2, w2) = CountingWaker::new();
    let mut f1 = rx.recv_async();
    let mut f2 = rx2.recv_async();
    assert!(poll_once(&mut f1, &w1).is_pending());
    assert!(poll_once(&mut f2, &w2).is_pending());
    tx.send(5).unwrap();
    assert_eq!((c1.count(), c2.count()), (1, 0), "one message, one wake-up");
    drop(f1);
    assert_eq!(c2.count(), 1, "the dropped future passed its wake-up on");
    assert_eq!(poll_once(&mut f2, &w2), Poll::Ready(Ok(5)));
}

/// As above, with the second receiver a thread blocked in `block_on` (or in
/// a blocking `recv`).
#[test]
fn recv_fut_woken_then_dropped_wakes_blocked_thread() {
    for blocking in [false, true] {
        let (tx, rx) = lanebus::bounded::<u32>(1);
        let rx2 = rx.clone();
        let (_c1, w1) = CountingWaker::new();
        let mut f1 = rx.recv_async();
        assert!(poll_once(&mut f1, &w1).is_pending());
        let h = thread::spawn(move || {
            if blocking {
                rx2.recv()
            } else {
                block_on(rx2.recv_async())
            }
        });
        let_them_block();
        tx.send(9).unwrap();
        drop(f1);
        // Hangs here if the wake-up was lost.
        assert_eq!(h.join().unwrap(), Ok(9));
    }
}

/// Two senders wait for room; one slot frees and wakes the first; the first
/// future is dropped without being polled again: the second must be woken
/// and send.
#[test]
fn send_fut_woken_then_dropped_passes_wakeup_on() {
    let t = Tracker::new(3);
    let (tx, rx) = lanebus::bounded(1);
    let tx2 = tx.clone();
    tx.send(t.item(0)).unwrap();
    let (c1, w1) = CountingWaker::new();
    let (c2, w2) = CountingWaker::new();
    let mut f1 = tx.send_async(t.item(1));
    let mut f2 = tx2.send_async(t.item(2));
    assert!(poll_once(&mut f1, &w1).is_pending());
    assert!(poll_once(&mut f2, &w2).is_pending());
    assert_eq!(rx.recv().unwrap().id, 0);
    assert_eq!((c1.count(), c2.count()), (1, 0), "one slot, one wake-up");
    drop(f1);
    assert_eq!(t.drops_of(1), 1, "the dropped future drops its value");
    assert_eq!(c2.count(), 1, "the dropped future passed its wake-up on");
    assert!(matches!(poll_once(&mut f2, &w2), Poll::Ready(Ok(()))));
    assert_eq!(rx.recv().unwrap().id, 2);
    drop(f2);
    drop((tx, tx2, rx));
    t.assert_all_dropped_once();
}

#[test]
fn send_fut_woken_then_dropped_wakes_blocked_thread() {
    for blocking in [false, true] {
        let (tx, rx) = lanebus::bounded::<u32>(1);
        let tx2 = tx.clone();
        tx.send(0).unwrap();
        let (_c1, w1) = CountingWaker::new();
        let mut f1 = tx.send_async(1);
        assert!(poll_once(&mut f1, &w1).is_pending());
        let h = thread::spawn(move || {
            if blocking {
                tx2.send(2).map_err(|e| e.0)
            } else {
                block_on(tx2.send_async(2)).map_err(|e| e.0)
            }
        });
        let_them_block();
        assert_eq!(rx.recv(), Ok(0));
        drop(f1);
        assert_eq!(h.join().unwrap(), Ok(()));
        assert_eq!(rx.recv(), Ok(2));
    }
}

/// A `Receiver` polled as a `Stream` keeps its registration while its task
/// may have stopped polling it, so a wake-up that reaches it goes on to the
/// next waiter too: both stream receivers are woken by one message, and the
/// one that polls gets it.
#[test]
fn stream_wakeup_also_reaches_the_next_waiter() {
    let (tx, mut rx1) = lanebus::bounded::<u32>(1);
    let mut rx2 = rx1.clone();
    let (c1, w1) = CountingWaker::new();
    let (c2, w2) = CountingWaker::new();
    let mut cx1 = Context::from_waker(&w1);
    let mut cx2 = Context::from_waker(&w2);
    assert!(Pin::new(&mut rx1).poll_next(&mut cx1).is_pending());
    assert!(Pin::new(&mut rx2).poll_next(&mut cx2).is_pending());
    tx.send(3).unwrap();
    assert_eq!((c1.count(), c2.count()), (1, 1));
    drop(rx1);
    assert_eq!(Pin::new(&mut rx2).poll_next(&mut cx2), Poll::Ready(Some(3)));
}

/// A stream that returned `Pending` and is never polled again (its `next()`
/// lost a `select!`) must not strand a message: a receiver blocked in `recv`
/// behind it still gets the message.
#[test]
fn idle_stream_does_not_strand_a_blocked_receiver() {
    let (tx, mut rx1) = lanebus::bounded::<u32>(1);
    let rx2 = rx1.clone();
    let (_c1, w1) = CountingWaker::new();
    assert!(Pin::new(&mut rx1)
        .poll_next(&mut Context::from_waker(&w1))
        .is_pending());
    let h = thread::spawn(move || rx2.recv());
    let_them_block();
    tx.send(5).unwrap();
    assert_eq!(h.join().unwrap(), Ok(5));
    drop(rx1);
}

/// The same for a `Sender` polled as a `Sink`: a wake-up that reaches a
/// flushing sink also reaches the next waiting sender.
#[test]
fn sink_wakeup_also_reaches_the_next_waiter() {
    let (mut tx1, rx) = lanebus::bounded::<u32>(1);
    let mut tx2 = tx1.clone();
    tx1.send(0).unwrap();
    let (c1, w1) = CountingWaker::new();
    let (c2, w2) = CountingWaker::new();
    let mut cx1 = Context::from_waker(&w1);
    let mut cx2 = Context::from_waker(&w2);
    Pin::new(&mut tx1).start_send(1).unwrap();
    Pin::new(&mut tx2).start_send(2).unwrap();
    assert!(Pin::new(&mut tx1).poll_flush(&mut cx1).is_pending());
    assert!(Pin::new(&mut tx2).poll_flush(&mut cx2).is_pending());
    assert_eq!(rx.recv(), Ok(0));
    assert_eq!((c1.count(), c2.count()), (1, 1));
    drop(tx1); // its buffered 1 is dropped with it
    assert_eq!(Pin::new(&mut tx2).poll_flush(&mut cx2), Poll::Ready(Ok(())));
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [2]);
}

/// An idle sink (flush returned `Pending`, never polled again) must not
/// strand a sender blocked behind it.
#[test]
fn idle_sink_does_not_strand_a_blocked_sender() {
    let (mut tx1, rx) = lanebus::bounded::<u32>(1);
    let tx2 = tx1.clone();
    tx1.send(0).unwrap();
    let (_c1, w1) = CountingWaker::new();
    Pin::new(&mut tx1).start_send(1).unwrap();
    assert!(Pin::new(&mut tx1)
        .poll_flush(&mut Context::from_waker(&w1))
        .is_pending());
    let h = thread::spawn(move || tx2.send(2));
    let_them_block();
    assert_eq!(rx.recv(), Ok(0));
    assert_eq!(h.join().unwrap(), Ok(()));
    assert_eq!(rx.recv(), Ok(2));
    drop(tx1);
}

/// Futures dropped before they were woken leave the wait list without
/// stealing anything: later receivers still get every message.
#[test]
fn cancelled_futures_do_not_strand_messages() {
    let (tx, rx) = lanebus::bounded::<u32>(4);
    let (_c, w) = CountingWaker::new();
    for _ in 0..3 {
        let mut f = rx.recv_async();
        assert!(poll_once(&mut f, &w).is_pending());
    }
    let h = thread::spawn({
        let rx = rx.clone();
        move || block_on(rx.recv_async())
    });
    let_them_block();
    tx.send(1).unwrap();
    assert_eq!(h.join().unwrap(), Ok(1));
    drop(tx);
    assert_eq!(block_on(rx.recv_async()), Err(RecvError));
}
