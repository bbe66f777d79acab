use lanebus::{Priority, TryRecvError};
use std::thread;

#[test]
fn smoke() {
    let (tx, rx) = lanebus::bounded(4);
    tx.send(1).unwrap();
    tx.send_with(Priority::Urgent, 2).unwrap();
    tx.send_with(Priority::Low, 3).unwrap();
    assert_eq!(rx.len(), 3);
    assert_eq!(rx.recv(), Ok(2));
    assert_eq!(rx.recv(), Ok(1));
    assert_eq!(rx.recv(), Ok(3));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    drop(tx);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}

#[test]
fn quick_mpmc() {
    let (tx, rx) = lanebus::bounded::<u64>(16);
    let n = 100_000u64;
    let producers: Vec<_> = (0..2)
        .map(|p| {
            let tx = tx.clone();
            thread::spawn(move || {
                for i in 0..n {
                    tx.send_with(Priority::ALL[(i % 4) as usize], p * n + i)
                        .unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let rx = rx.clone();
            thread::spawn(move || rx.iter().collect::<Vec<_>>())
        })
        .collect();
    drop(rx);
    for p in producers {
        p.join().unwrap();
    }
    let mut all: Vec<u64> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..2 * n).collect::<Vec<_>>());
}
