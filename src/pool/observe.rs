//! The pool's counters and latencies through the `metrics` facade (feature
//! `metrics`) and a span per delivery (feature `tracing`). Without the
//! features every method here is empty.

use std::time::Duration;

use crate::Priority;

/// Metric handles, registered once when the pool is built (with the
/// recorder installed then), labelled `pool = <thread name prefix>`.
///
/// | metric | kind | labels |
/// |---|---|---|
/// | `lanebus_pool_taken_total` | counter | pool |
/// | `lanebus_pool_acked_total` | counter | pool |
/// | `lanebus_pool_retried_total` | counter | pool |
/// | `lanebus_pool_dead_lettered_total` | counter | pool |
/// | `lanebus_pool_panics_total` | counter | pool |
/// | `lanebus_pool_latency_seconds` | histogram, enqueue to settled | pool, priority |
pub(crate) struct Meters {
    #[cfg(feature = "metrics")]
    m: Handles,
}

#[cfg(feature = "metrics")]
struct Handles {
    taken: metrics::Counter,
    acked: metrics::Counter,
    retried: metrics::Counter,
    dead_lettered: metrics::Counter,
    panics: metrics::Counter,
    latency: [metrics::Histogram; crate::LANES],
}

impl Meters {
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn new(pool: &str) -> Self {
        #[cfg(feature = "metrics")]
        {
            let label = pool.to_string();
            let counter = |name: &'static str| metrics::counter!(name, "pool" => label.clone());
            Self {
                m: Handles {
                    taken: counter("lanebus_pool_taken_total"),
                    acked: counter("lanebus_pool_acked_total"),
                    retried: counter("lanebus_pool_retried_total"),
                    dead_lettered: counter("lanebus_pool_dead_lettered_total"),
                    panics: counter("lanebus_pool_panics_total"),
                    latency: Priority::ALL.map(|p| {
                        metrics::histogram!(
                            "lanebus_pool_latency_seconds",
                            "pool" => label.clone(),
                            "priority" => p.as_str()
                        )
                    }),
                },
            }
        }
        #[cfg(not(feature = "metrics"))]
        Self {}
    }

    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn taken(&self, n: u64) {
        #[cfg(feature = "metrics")]
        self.m.taken.increment(n);
    }

    pub(crate) fn acked(&self) {
        #[cfg(feature = "metrics")]
        self.m.acked.increment(1);
    }

    pub(crate) fn retried(&self) {
        #[cfg(feature = "metrics")]
        self.m.retried.increment(1);
    }

    pub(crate) fn dead_lettered(&self) {
        #[cfg(feature = "metrics")]
        self.m.dead_lettered.increment(1);
    }

    pub(crate) fn panicked(&self) {
        #[cfg(feature = "metrics")]
        self.m.panics.increment(1);
    }

    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn latency(&self, priority: Priority, latency: Duration) {
        #[cfg(feature = "metrics")]
        self.m.latency[priority.index()].record(latency.as_secs_f64());
    }
}

/// The span of one handler call: `lanebus.delivery` with the priority,
/// attempt and key.
#[cfg(feature = "tracing")]
pub(crate) fn delivery_span(priority: Priority, attempt: u32, key: Option<u64>) -> tracing::Span {
    tracing::info_span!(
        "lanebus.delivery",
        priority = priority.as_str(),
        attempt,
        key = key.map(tracing::field::display)
    )
}
