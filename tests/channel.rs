//! The public surface of one channel: capacity, lengths, try/timeout forms,
//! close, handles, errors.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::scale;
use lanebus::{
    ChannelBuilder, Priority, RecvError, RecvTimeoutError, SendError, SendTimeoutError,
    TryRecvError, TrySendError,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn smoke() {
    let (tx, rx) = lanebus::bounded(4);
    tx.send(7).unwrap();
    assert_eq!(rx.try_recv(), Ok(7));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    tx.send_with(Priority::Low, 8).unwrap();
    assert_eq!(rx.recv(), Ok(8));
    assert!(tx.same_channel(&tx.clone()));
    assert!(rx.same_channel(&rx.clone()));
    let (tx2, rx2) = lanebus::bounded::<i32>(4);
    assert!(!tx.same_channel(&tx2));
    assert!(!rx.same_channel(&rx2));
}

#[test]
fn capacity() {
    for cap in [1, 2, 3, 7, 16] {
        let (tx, rx) = lanebus::bounded::<usize>(cap);
        assert_eq!(tx.capacity(), 4 * cap);
        assert_eq!(rx.capacity(), 4 * cap);
        for p in Priority::ALL {
            assert_eq!(tx.capacity_of(p), cap);
            assert_eq!(rx.capacity_of(p), cap);
        }
        for i in 0..cap {
            assert_eq!(tx.try_send(i), Ok(()));
        }
        // Normal is full; the other lanes still have room.
        assert_eq!(tx.try_send(99), Err(TrySendError::Full(99)));
        for p in [Priority::Urgent, Priority::High, Priority::Low] {
            assert_eq!(tx.try_send_with(p, 100), Ok(()));
        }
        assert_eq!(rx.len(), cap + 3);
        assert_eq!(rx.len_of(Priority::Normal), cap);
        for p in [Priority::Urgent, Priority::High] {
            assert_eq!(rx.recv(), Ok(100), "{p}");
        }
        for i in 0..cap {
            assert_eq!(rx.recv(), Ok(i));
        }
        assert_eq!(rx.recv(), Ok(100));
        assert!(rx.is_empty());
    }
}

#[test]
fn lane_capacity() {
    let (tx, rx) = ChannelBuilder::new()
        .capacity(3)
        .lane_capacity(Priority::Urgent, 1)
        .lane_capacity(Priority::Low, 5)
        .build::<u32>();
    let caps = [1, 3, 3, 5];
    assert_eq!(tx.capacity(), 12);
    assert_eq!(rx.capacity(), 12);
    for (p, cap) in Priority::ALL.into_iter().zip(caps) {
        assert_eq!(tx.capacity_of(p), cap);
        assert_eq!(rx.capacity_of(p), cap);
        for i in 0..cap {
            assert_eq!(tx.try_send_with(p, i as u32), Ok(()));
        }
        assert_eq!(tx.try_send_with(p, 42), Err(TrySendError::Full(42)));
        assert_eq!(rx.len_of(p), cap);
    }
    assert_eq!(rx.len(), 12);
    let all: Vec<u32> = rx.try_iter().collect();
    assert_eq!(all, [0, 0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 4]);
}

#[test]
fn builder_defaults() {
    assert_eq!(ChannelBuilder::DEFAULT_CAPACITY, 1024);
    for b in [ChannelBuilder::new(), ChannelBuilder::default()] {
        let (tx, _rx) = b.build::<u8>();
        for p in Priority::ALL {
            assert_eq!(tx.capacity_of(p), 1024);
        }
        assert_eq!(tx.capacity(), 4096);
    }
    // `capacity` after `lane_capacity` overrides every lane.
    let (tx, _rx) = ChannelBuilder::new()
        .lane_capacity(Priority::High, 2)
        .capacity(5)
        .build::<u8>();
    assert_eq!(tx.capacity_of(Priority::High), 5);
}

#[test]
#[should_panic]
fn zero_capacity_panics() {
    let _ = lanebus::bounded::<u8>(0);
}

#[test]
#[should_panic]
fn zero_lane_capacity_panics() {
    let _ = ChannelBuilder::new()
        .lane_capacity(Priority::Low, 0)
        .build::<u8>();
}

#[test]
fn len_len_of_is_empty() {
    let (tx, rx) = lanebus::bounded(4);
    assert!(tx.is_empty() && rx.is_empty());
    assert_eq!(tx.len(), 0);
    tx.send_with(Priority::High, 1).unwrap();
    tx.send_with(Priority::High, 2).unwrap();
    tx.send_with(Priority::Low, 3).unwrap();
    for h in [tx.len(), rx.len()] {
        assert_eq!(h, 3);
    }
    assert!(!tx.is_empty() && !rx.is_empty());
    assert_eq!(rx.len_of(Priority::Urgent), 0);
    assert_eq!(rx.len_of(Priority::High), 2);
    assert_eq!(tx.len_of(Priority::Normal), 0);
    assert_eq!(tx.len_of(Priority::Low), 1);
    assert_eq!(rx.recv(), Ok(1));
    assert_eq!(rx.len_of(Priority::High), 1);
    assert_eq!(rx.len(), 2);
    // Closing does not change the counts.
    tx.close();
    assert_eq!(rx.len(), 2);
    assert_eq!(rx.len_of(Priority::Low), 1);
    assert_eq!(rx.recv(), Ok(2));
    assert_eq!(rx.recv(), Ok(3));
    assert!(rx.is_empty());
    assert_eq!(rx.len(), 0);
}

#[test]
fn try_send_hands_value_back() {
    let (tx, rx) = lanebus::bounded::<String>(1);
    tx.try_send("a".to_string()).unwrap();
    let err = tx.try_send("b".to_string()).unwrap_err();
    assert!(err.is_full());
    assert!(!err.is_disconnected());
    assert_eq!(err, TrySendError::Full("b".to_string()));
    assert_eq!(err.into_inner(), "b");
    drop(rx);
    let err = tx.try_send("c".to_string()).unwrap_err();
    assert!(err.is_disconnected());
    assert!(!err.is_full());
    assert_eq!(err.into_inner(), "c");
    // Even a full lane reports Disconnected once closed.
    assert_eq!(
        tx.try_send_with(Priority::Normal, "d".to_string()),
        Err(TrySendError::Disconnected("d".to_string()))
    );
}

#[test]
fn try_send_after_close_hands_value_back() {
    let (tx, rx) = lanebus::bounded::<Vec<u8>>(2);
    assert!(tx.close());
    for p in Priority::ALL {
        assert_eq!(
            tx.try_send_with(p, vec![1, 2]),
            Err(TrySendError::Disconnected(vec![1, 2]))
        );
    }
    assert_eq!(tx.send(vec![3]), Err(SendError(vec![3])));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}

#[test]
fn send_timeout() {
    let (tx, rx) = lanebus::bounded::<u32>(1);
    assert_eq!(tx.send_timeout(1, ms(1)), Ok(()));
    let start = Instant::now();
    let err = tx.send_timeout(2, ms(20)).unwrap_err();
    assert!(start.elapsed() >= ms(20), "returned before the deadline");
    assert!(err.is_timeout());
    assert_eq!(err, SendTimeoutError::Timeout(2));
    assert_eq!(
        tx.send_timeout(3, Duration::ZERO),
        Err(SendTimeoutError::Timeout(3))
    );
    // A deadline in the past still tries once.
    assert_eq!(
        tx.send_deadline_with(Priority::High, 4, Some(Instant::now())),
        Ok(())
    );
    // Room made by a receiver while we wait.
    thread::scope(|s| {
        s.spawn(|| {
            thread::sleep(ms(20));
            assert_eq!(rx.recv(), Ok(4));
            assert_eq!(rx.recv(), Ok(1));
        });
        assert_eq!(tx.send_timeout(5, Duration::from_secs(60)), Ok(()));
    });
    assert_eq!(rx.recv(), Ok(5));
    // A huge timeout does not overflow (waits for ever).
    assert_eq!(
        tx.send_timeout_with(Priority::Low, 6, Duration::MAX),
        Ok(())
    );
    // A lane with room takes the value whatever the timeout.
    assert_eq!(
        tx.send_timeout_with(Priority::Urgent, 8, Duration::ZERO),
        Ok(())
    );
    drop(rx);
    let err = tx.send_timeout(7, ms(10)).unwrap_err();
    assert!(err.is_disconnected());
    assert_eq!(err.into_inner(), 7);
}

#[test]
fn recv_timeout() {
    let (tx, rx) = lanebus::bounded::<u32>(2);
    let start = Instant::now();
    assert_eq!(rx.recv_timeout(ms(20)), Err(RecvTimeoutError::Timeout));
    assert!(start.elapsed() >= ms(20), "returned before the deadline");
    assert_eq!(
        rx.recv_timeout(Duration::ZERO),
        Err(RecvTimeoutError::Timeout)
    );
    assert_eq!(
        rx.recv_deadline(Some(Instant::now())),
        Err(RecvTimeoutError::Timeout)
    );
    tx.send(1).unwrap();
    assert_eq!(rx.recv_timeout(Duration::ZERO), Ok(1));
    thread::scope(|s| {
        s.spawn(|| {
            thread::sleep(ms(20));
            tx.send_with(Priority::Low, 2).unwrap();
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(2));
    });
    tx.send(3).unwrap();
    drop(tx);
    assert_eq!(rx.recv_timeout(Duration::MAX), Ok(3));
    assert_eq!(rx.recv_timeout(ms(10)), Err(RecvTimeoutError::Disconnected));
    assert_eq!(rx.recv_deadline(None), Err(RecvTimeoutError::Disconnected));
}

#[test]
fn close_from_sender() {
    let (tx, rx) = lanebus::bounded::<u8>(4);
    let tx2 = tx.clone();
    tx.send(1).unwrap();
    tx.send_with(Priority::Urgent, 2).unwrap();
    assert!(!tx.is_closed() && !rx.is_closed());
    assert!(tx.close());
    assert!(!tx2.close(), "only the first close reports true");
    assert!(!rx.close());
    assert!(tx.is_closed() && tx2.is_closed() && rx.is_closed());
    assert_eq!(tx2.send(3), Err(SendError(3)));
    assert_eq!(rx.recv(), Ok(2));
    assert_eq!(rx.try_recv(), Ok(1));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    assert_eq!(rx.recv(), Err(RecvError));
}

#[test]
fn close_from_receiver() {
    let (tx, rx) = lanebus::bounded::<u8>(4);
    tx.send(1).unwrap();
    assert!(rx.close());
    assert!(!rx.close());
    assert!(tx.is_closed());
    assert_eq!(tx.try_send(2), Err(TrySendError::Disconnected(2)));
    assert_eq!(
        tx.send_timeout(3, ms(1)),
        Err(SendTimeoutError::Disconnected(3))
    );
    // Queued messages are still delivered after an explicit close.
    assert_eq!(rx.recv(), Ok(1));
    assert_eq!(rx.recv(), Err(RecvError));
}

#[test]
fn is_closed_by_drop() {
    let (tx, rx) = lanebus::bounded::<u8>(1);
    let rx2 = rx.clone();
    drop(rx);
    assert!(!tx.is_closed());
    drop(rx2);
    assert!(tx.is_closed());

    let (tx, rx) = lanebus::bounded::<u8>(1);
    let tx2 = tx.clone();
    drop(tx);
    assert!(!rx.is_closed());
    drop(tx2);
    assert!(rx.is_closed());
}

#[test]
fn iter_and_try_iter() {
    let (tx, rx) = lanebus::bounded::<u32>(8);
    for i in 0..5 {
        tx.send(i).unwrap();
    }
    assert_eq!(rx.try_iter().take(2).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [2, 3, 4]);
    assert_eq!(rx.try_iter().next(), None);
    let h = thread::spawn(move || {
        for i in 10..20 {
            tx.send(i).unwrap();
        }
    });
    let got: Vec<u32> = rx.iter().collect();
    h.join().unwrap();
    assert_eq!(got, (10..20).collect::<Vec<_>>());
    let mut n = 0;
    for _ in &rx {
        n += 1;
    }
    assert_eq!(n, 0);
}

#[test]
fn send_blocks_until_room() {
    let (tx, rx) = lanebus::bounded::<u32>(1);
    tx.send(0).unwrap();
    thread::scope(|s| {
        let h = s.spawn(|| {
            tx.send(1).unwrap();
            tx.send(2).unwrap();
        });
        thread::sleep(ms(10));
        assert_eq!(rx.recv(), Ok(0));
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Ok(2));
        h.join().unwrap();
    });
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}

#[test]
fn spsc() {
    let n = scale(50_000, 200);
    let (tx, rx) = lanebus::bounded::<usize>(3);
    let h = thread::spawn(move || {
        for i in 0..n {
            tx.send(i).unwrap();
        }
    });
    for i in 0..n {
        assert_eq!(rx.recv(), Ok(i));
    }
    assert_eq!(rx.recv(), Err(RecvError));
    h.join().unwrap();
}

#[test]
fn mpmc() {
    let n = scale(20_000, 100);
    let threads = 3;
    let (tx, rx) = lanebus::bounded::<usize>(4);
    let received: Vec<Vec<usize>> = thread::scope(|s| {
        for t in 0..threads {
            let tx = tx.clone();
            s.spawn(move || {
                for i in 0..n {
                    tx.send_with(Priority::ALL[i % 4], t * n + i).unwrap();
                }
            });
        }
        drop(tx);
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let rx = rx.clone();
                s.spawn(move || rx.iter().collect::<Vec<_>>())
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<usize> = received.into_iter().flatten().collect();
    all.sort_unstable();
    assert_eq!(all, (0..threads * n).collect::<Vec<_>>());
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<lanebus::Sender<String>>();
    check::<lanebus::Receiver<String>>();
    let (tx, rx) = lanebus::bounded::<u32>(2);
    thread::scope(|s| {
        s.spawn(|| tx.send(1).unwrap());
        s.spawn(|| tx.send(2).unwrap());
    });
    let mut got: Vec<u32> = rx.try_iter().collect();
    got.sort_unstable();
    assert_eq!(got, [1, 2]);
}

/// A payload without `Debug`: errors still format.
struct Opaque;

#[test]
fn errors_format_without_debug() {
    assert_eq!(format!("{:?}", SendError(Opaque)), "SendError(..)");
    assert_eq!(format!("{:?}", TrySendError::Full(Opaque)), "Full(..)");
    assert_eq!(
        format!("{:?}", TrySendError::Disconnected(Opaque)),
        "Disconnected(..)"
    );
    assert_eq!(
        format!("{:?}", SendTimeoutError::Timeout(Opaque)),
        "Timeout(..)"
    );
    assert_eq!(SendError(Opaque).to_string(), "sending on a closed channel");
    assert_eq!(
        TrySendError::Full(Opaque).to_string(),
        "sending on a full lane"
    );
    assert_eq!(
        SendTimeoutError::Timeout(Opaque).to_string(),
        "timed out waiting on send operation"
    );
    assert_eq!(
        RecvError.to_string(),
        "receiving on an empty and closed channel"
    );
    assert_eq!(
        TryRecvError::Empty.to_string(),
        "receiving on an empty channel"
    );
    assert_eq!(
        RecvTimeoutError::Timeout.to_string(),
        "timed out waiting on receive operation"
    );
    let e: Box<dyn std::error::Error> = Box::new(TrySendError::Full(Opaque));
    assert_eq!(e.to_string(), "sending on a full lane");
    // Conversions keep the value.
    let t: TrySendError<u8> = SendError(5).into();
    assert_eq!(t, TrySendError::Disconnected(5));
    let t: SendTimeoutError<u8> = SendError(6).into();
    assert_eq!(t, SendTimeoutError::Disconnected(6));
    assert_eq!(TryRecvError::from(RecvError), TryRecvError::Disconnected);
    assert_eq!(
        RecvTimeoutError::from(RecvError),
        RecvTimeoutError::Disconnected
    );
    assert_eq!(SendError(9).into_inner(), 9);
}

#[test]
fn handle_debug() {
    let (tx, rx) = lanebus::bounded::<Opaque>(2);
    tx.send(Opaque).ok().unwrap();
    let s = format!("{tx:?}");
    assert!(s.starts_with("Sender") && s.contains("len: 1"), "{s}");
    let s = format!("{rx:?}");
    assert!(s.contains("closed: false"), "{s}");
}

/// A sender that finds its lane full first waits a little for receivers to
/// free a stretch of it (a pacing hint for throughput), but it must still
/// take a single freed slot: a receiver that takes one message and then
/// waits for something else (request/response) must not leave it blocked.
#[test]
fn sender_on_a_full_lane_takes_a_single_freed_slot() {
    // Far above the pacing's low-water mark (min(128, CAP / 2)). Under
    // miri, where a send or receive takes ~10 ms, 256 keeps the mark at
    // 128 with a quarter of the messages.
    const CAP: u32 = if cfg!(miri) { 256 } else { 1024 };
    let (tx, rx) = lanebus::bounded::<u32>(CAP as usize);
    for i in 0..CAP {
        tx.try_send(i).unwrap();
    }
    let (freed, done) = std::sync::mpsc::channel::<()>();
    thread::scope(|s| {
        let rx = &rx;
        s.spawn(move || {
            thread::sleep(ms(20));
            assert_eq!(rx.recv(), Ok(0));
            // Now wait for the sender instead of receiving more.
            done.recv().unwrap();
        });
        assert_eq!(tx.send_timeout(CAP, Duration::from_secs(60)), Ok(()));
        freed.send(()).unwrap();
    });
    assert_eq!(rx.len(), CAP as usize);
    assert_eq!(
        rx.try_iter().collect::<Vec<_>>(),
        (1..=CAP).collect::<Vec<_>>()
    );
}
