//! Backpressure: a bus under a `MemoryBudget` with a high watermark. A fast
//! producer floods a slow consumer with Low/Normal messages and a few Urgent
//! ones; above the watermark Low/Normal wait while Urgent passes. Then the
//! same budget rules on a typed channel.
//!
//! Run (from the repository root):
//!
//! ```text
//! cargo run --release --example backpressure
//! ```

use std::thread;
use std::time::{Duration, Instant};

use lanebus::{Bus, ChannelBuilder, MemoryBudget, Message, Priority, PublishError};

const MAX: usize = 16 * 1024;
const WATERMARK: usize = 8 * 1024;
const MESSAGES: usize = 2000;

fn stats(label: &str, budget: &MemoryBudget) {
    let s = budget.stats();
    let per = |a: [u64; 4]| format!("u{} h{} n{} l{}", a[0], a[1], a[2], a[3]);
    let (waits, rejections) = (per(s.waits), per(s.rejections));
    let (in_use, peak, too_large) = (s.in_use, s.peak, s.too_large);
    println!("{label:>8}: in_use {in_use:>5} peak {peak:>5} | waits {waits:<19} rejections {rejections:<12} too_large {too_large}");
}

fn main() {
    let budget = MemoryBudget::builder(MAX).high_watermark(WATERMARK).build();
    let bus = Bus::builder().budget(budget.clone()).build();
    let jobs = bus.subscribe("jobs").unwrap();
    let msg = |p: Priority| Message::new(vec![0u8; 256]).priority(p);
    println!("budget {MAX} bytes, watermark {WATERMARK}: above it only Urgent/High are admitted");

    // Nobody consumes yet: Low fills the budget up to the watermark...
    let mut queued = 0;
    let err = loop {
        match bus.try_publish("jobs", msg(Priority::Low)) {
            Ok(_) => queued += 1,
            Err(e) => break e,
        }
    };
    let in_use = budget.in_use();
    println!("try_publish Low after {queued} accepted: {err:?} at in_use {in_use}");
    assert!(matches!(err, PublishError::OverBudget(_)) && budget.in_use() <= WATERMARK);
    // ...while Urgent still passes, above the watermark.
    bus.try_publish("jobs", msg(Priority::Urgent)).unwrap();
    let in_use = budget.in_use();
    println!("try_publish Urgent: Ok, in_use {in_use} > watermark");
    assert!(in_use > WATERMARK);
    let (t, wait) = (Instant::now(), Duration::from_millis(50));
    let err = bus.publish_timeout("jobs", msg(Priority::Normal), wait);
    let took = t.elapsed();
    println!("publish_timeout Normal 50ms: {err:?} after {took:?}");
    assert!(matches!(err, Err(PublishError::Timeout(_))) && took >= wait);
    let t = Instant::now();
    let big = Message::new(vec![0u8; MAX]).priority(Priority::Urgent);
    let err = bus.publish("jobs", big).unwrap_err();
    let took = t.elapsed();
    assert!(matches!(err, PublishError::TooLarge(_)));
    let weight = err.into_inner().weight();
    println!("publish (blocking) of a {weight} byte envelope: TooLarge after {took:?}");
    stats("0.00s", &budget);

    // A slow consumer (0.5 ms a message) and a producer as fast as allowed.
    let consumer = thread::spawn(move || {
        let mut got = [0usize; 4];
        while let Ok(env) = jobs.recv() {
            got[env.priority().index()] += 1;
            drop(env); // its bytes go back to the budget here
            thread::sleep(Duration::from_micros(500));
        }
        got
    });
    let publisher = bus.publisher("jobs").unwrap();
    let producer = thread::spawn(move || {
        for i in 0..MESSAGES {
            let p = match i % 100 {
                50 => Priority::Urgent,
                n if n % 2 == 0 => Priority::Normal,
                _ => Priority::Low,
            };
            publisher.publish(msg(p)).unwrap();
        }
    });
    let start = Instant::now();
    while !producer.is_finished() {
        thread::sleep(Duration::from_millis(250));
        stats(&format!("{:.2}s", start.elapsed().as_secs_f64()), &budget);
        assert!(budget.in_use() <= MAX);
    }
    producer.join().unwrap();
    bus.close(); // the consumer drains what is queued, then stops
    let got = consumer.join().unwrap();
    stats("drained", &budget);
    println!("received per lane (u/h/n/l): {got:?}");
    let s = budget.stats();
    assert_eq!(got.iter().sum::<usize>(), queued + 1 + MESSAGES);
    assert_eq!(got[Priority::Urgent.index()], 1 + MESSAGES / 100);
    assert!(s.peak <= s.max_bytes && s.peak > WATERMARK);
    let [urgent_waits, _, normal_waits, low_waits] = s.waits;
    assert!(urgent_waits == 0 && normal_waits > 0 && low_waits > 0);
    assert_eq!(s.in_use, 0);

    // The same rules on a typed channel: each value is charged its `Weigh`.
    let budget = MemoryBudget::builder(4096).high_watermark(2048).build();
    let (tx, rx) = ChannelBuilder::new().build_budgeted::<Vec<u8>>(budget.clone());
    let mut n = 0;
    while tx.try_send_with(Priority::Low, vec![0; 488]).is_ok() {
        n += 1; // 24 + 488 = 512 bytes each
    }
    let urgent = tx.try_send_with(Priority::Urgent, vec![1; 488]);
    let timeout = tx.send_timeout_with(Priority::Normal, vec![2; 488], wait);
    let too_large = tx.send_with(Priority::Urgent, vec![3; 4096]);
    println!("channel: {n} Low, then Urgent {urgent:?}, Normal {timeout:?}, 4 KiB {too_large:?}");
    assert!(n == 4 && urgent.is_ok());
    assert!(matches!(timeout, Err(PublishError::Timeout(_))));
    assert!(matches!(too_large, Err(PublishError::TooLarge(_))));
    assert_eq!(rx.recv().unwrap()[0], 1); // Urgent first
    drop(tx);
    assert_eq!(rx.iter().count(), n);
    stats("channel", &budget);
    assert_eq!(budget.in_use(), 0);
    println!("ok");
}
