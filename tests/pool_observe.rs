//! The pool through the `metrics` facade and `tracing` spans (features
//! `metrics` and `tracing`; `cargo test --all-features` runs these).

#![cfg(any(feature = "metrics", feature = "tracing"))]

use lanebus::pool::{Delivery, Outcome, RetryPolicy, WorkerPool};
use lanebus::Priority;
use std::time::Duration;

#[cfg(feature = "metrics")]
mod recorder {
    use metrics::{
        Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString,
        Unit,
    };
    use std::collections::HashMap;
    use std::sync::atomic::AtomicU64;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    pub struct Samples(pub Mutex<Vec<f64>>);

    impl HistogramFn for Samples {
        fn record(&self, value: f64) {
            self.0.lock().unwrap().push(value);
        }
    }

    /// Keeps every counter and histogram by its key (name and labels).
    #[derive(Default)]
    pub struct Memory {
        pub counters: Mutex<HashMap<Key, Arc<AtomicU64>>>,
        pub histograms: Mutex<HashMap<Key, Arc<Samples>>>,
    }

    impl Recorder for Memory {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let c = self
                .counters
                .lock()
                .unwrap()
                .entry(key.clone())
                .or_default()
                .clone();
            Counter::from_arc(c)
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            let h = self
                .histograms
                .lock()
                .unwrap()
                .entry(key.clone())
                .or_default()
                .clone();
            Histogram::from_arc(h)
        }
    }
}

#[cfg(feature = "metrics")]
#[test]
fn pool_counters_and_latency_reach_the_metrics_recorder() {
    use std::sync::atomic::Ordering;
    let memory = recorder::Memory::default();
    let (tx, rx) = lanebus::bounded::<u64>(64);
    // Handles are registered when the pool is built.
    let pool = metrics::with_local_recorder(&memory, || {
        WorkerPool::builder()
            .workers(1)
            .thread_name("billing")
            .retry(RetryPolicy::attempts(2).backoff(Duration::ZERO, Duration::ZERO, 1.0))
            .build(rx, |d: &Delivery<u64>| match *d.payload() {
                0 => Outcome::DeadLetter("zero".into()),
                1 if d.attempt() == 1 => Outcome::Retry,
                _ => Outcome::Ack,
            })
    });
    for i in 0..10 {
        tx.send_with(
            if i < 4 {
                Priority::Urgent
            } else {
                Priority::Normal
            },
            i,
        )
        .unwrap();
    }
    drop(tx);
    pool.join();
    let counter = |name: &str| {
        let counters = memory.counters.lock().unwrap();
        let (key, value) = counters
            .iter()
            .find(|(k, _)| k.name() == name)
            .unwrap_or_else(|| panic!("{name} registered"));
        assert!(key
            .labels()
            .any(|l| l.key() == "pool" && l.value() == "billing"));
        value.load(Ordering::SeqCst)
    };
    assert_eq!(counter("lanebus_pool_taken_total"), 10);
    assert_eq!(counter("lanebus_pool_acked_total"), 9);
    assert_eq!(counter("lanebus_pool_retried_total"), 1);
    assert_eq!(counter("lanebus_pool_dead_lettered_total"), 1);
    assert_eq!(counter("lanebus_pool_panics_total"), 0);
    let histograms = memory.histograms.lock().unwrap();
    let samples = |priority: &str| {
        let (_, h) = histograms
            .iter()
            .find(|(k, _)| {
                k.name() == "lanebus_pool_latency_seconds"
                    && k.labels()
                        .any(|l| l.key() == "priority" && l.value() == priority)
            })
            .unwrap();
        let v = h.0.lock().unwrap().clone();
        assert!(v.iter().all(|s| (0.0..60.0).contains(s)));
        v.len()
    };
    assert_eq!(samples("urgent"), 4);
    assert_eq!(samples("normal"), 6);
    assert_eq!(samples("low"), 0);
}

#[cfg(feature = "tracing")]
#[test]
fn every_handler_call_runs_in_a_delivery_span() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    /// Counts `lanebus.delivery` spans made and entered on this test's
    /// workers (other tests in this binary run pools too).
    fn ours() -> bool {
        std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("traced-"))
    }
    #[derive(Default)]
    struct Count {
        spans: AtomicU64,
        entered: AtomicU64,
        next: AtomicU64,
    }
    struct Sub(Arc<Count>);
    impl Subscriber for Sub {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, span: &Attributes<'_>) -> Id {
            if span.metadata().name() == "lanebus.delivery" && ours() {
                self.0.spans.fetch_add(1, Ordering::SeqCst);
            }
            Id::from_u64(self.0.next.fetch_add(1, Ordering::SeqCst) + 1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, _: &Id) {
            if ours() {
                self.0.entered.fetch_add(1, Ordering::SeqCst);
            }
        }
        fn exit(&self, _: &Id) {}
    }

    let count = Arc::new(Count::default());
    // A global default: the workers are other threads.
    tracing::subscriber::set_global_default(Sub(count.clone())).unwrap();
    let (tx, rx) = lanebus::bounded::<u64>(64);
    let pool = WorkerPool::builder()
        .workers(2)
        .thread_name("traced")
        .retry(RetryPolicy::attempts(2).backoff(Duration::ZERO, Duration::ZERO, 1.0))
        .build(rx, |d: &Delivery<u64>| {
            if *d.payload() == 3 && d.attempt() == 1 {
                Outcome::Retry
            } else {
                Outcome::Ack
            }
        });
    for i in 0..20 {
        tx.send(i).unwrap();
    }
    drop(tx);
    pool.join();
    // 20 messages, one retried: 21 handler calls, each in its own span.
    assert_eq!(count.spans.load(Ordering::SeqCst), 21);
    assert_eq!(count.entered.load(Ordering::SeqCst), 21);
}
