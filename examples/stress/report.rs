//! Verification and the reports: text, markdown and JSON.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use lanebus::{BudgetStats, Priority, LANES};
use serde::Serialize;

use crate::baseline::Comparison;
use crate::common::{
    group, human_bytes, new_histogram, peak_rss_bytes, per_priority, Fingerprint, Outcome,
};
use crate::pool_mode::{self, PoolSettings, PoolSummary};
use crate::{describe_budget, Args, Mode};

// ----- verification -----

pub struct Verdict {
    pub ok: bool,
    pub lines: Vec<String>,
}

fn mismatch(who: &str, sent: &Fingerprint, got: &Fingerprint) -> String {
    format!(
        "{who}: sent {} (seq sum {}, hash sum {:#x}), received {} (seq sum {}, hash sum {:#x})",
        sent.count, sent.seq_sum, sent.hash_sum, got.count, got.seq_sum, got.hash_sum
    )
}

pub fn verify(outcome: &Outcome) -> Verdict {
    let mut lines = Vec::new();
    for (id, p) in outcome.producers.iter().enumerate() {
        // Pool mode: what the workers handled first is checked by the mode;
        // here, where every message ended up.
        let got = match &outcome.pool {
            Some(pool) => pool.accounted[id],
            None => {
                let mut got = Fingerprint::default();
                for c in &outcome.workers {
                    got.merge(&c.received[id]);
                }
                got
            }
        };
        if got != p.sent {
            let who = match outcome.pool {
                Some(_) => format!("producer {id} (acked + dead-lettered + unprocessed + left)"),
                None => format!("producer {id}"),
            };
            lines.push(mismatch(&who, &p.sent, &got));
        }
        for (s, sub) in outcome.subscribers.iter().enumerate() {
            if sub.received[id] != p.sent {
                let who = format!("subscriber {s}, producer {id}");
                lines.push(mismatch(&who, &p.sent, &sub.received[id]));
            }
        }
        lines.extend(p.error.iter().cloned());
    }
    let consumers = outcome.workers.iter().map(|c| (String::new(), c));
    let subscribers = outcome
        .subscribers
        .iter()
        .enumerate()
        .map(|(s, c)| (format!("subscriber {s}: "), c));
    for (who, c) in consumers.chain(subscribers) {
        lines.extend(c.errors.iter().map(|e| format!("{who}{e}")));
        if c.error_count > c.errors.len() as u64 {
            let more = c.error_count - c.errors.len() as u64;
            lines.push(format!("{who}... and {more} more errors"));
        }
    }
    lines.extend(outcome.failures.iter().cloned());
    if let Some(b) = &outcome.budget {
        if b.peak > b.max_bytes {
            lines.push(format!(
                "budget exceeded: peak {} B > max {} B",
                group(b.peak as u64),
                group(b.max_bytes as u64)
            ));
        }
        if b.in_use != 0 {
            lines.push(format!(
                "{} B still charged to the budget after everything drained",
                group(b.in_use as u64)
            ));
        }
    }
    let ok = lines.is_empty();
    if ok {
        if let Some(pool) = &outcome.pool {
            lines.push(pool_ok_line(outcome, pool));
            return Verdict { ok, lines };
        }
        let by = match outcome.subscribers.len() {
            0 => String::new(),
            1 => " by the workers and by the subscriber".to_string(),
            n => format!(" by the workers and by each of {n} subscribers"),
        };
        let budget = outcome.budget.as_ref().map_or(String::new(), |b| {
            format!(
                "; budget peak {} <= max {} B, 0 B left",
                group(b.peak as u64),
                group(b.max_bytes as u64)
            )
        });
        lines.push(format!(
            "OK: every sequence number of all {} producers received exactly once{by} \
             (count, seq sum and hash sum match); payloads intact; per-lane order kept{budget}",
            outcome.producers.len()
        ));
    }
    Verdict { ok, lines }
}

/// The verification line of a pool run that passed.
fn pool_ok_line(outcome: &Outcome, pool: &PoolSummary) -> String {
    let order = match pool.settings.keys {
        0 => "unkeyed (no order to check)".to_string(),
        k => format!(
            "per-key order of first handling kept and one message at a time per key, \
             retries holding their key ({k} keys)"
        ),
    };
    let budget = outcome.budget.as_ref().map_or(String::new(), |b| {
        format!(
            "; budget peak {} <= max {} B, 0 B left",
            group(b.peak as u64),
            group(b.max_bytes as u64)
        )
    });
    format!(
        "OK: every message of all {} producers accounted for exactly once: sent {} = \
         acked {} + dead-lettered {} + unprocessed {} + left in the channel {} (count, seq \
         sum and hash sum match per producer; ShutdownReport consistent, its counts match \
         the handler's); each taken message handled first exactly once, retried and \
         dead-lettered as its fate says; {} panics; payloads intact; {order}{budget}",
        outcome.producers.len(),
        group(pool.sent),
        group(pool.acked),
        group(pool.dead_lettered),
        group(pool.unprocessed),
        group(pool.left_in_channel),
        pool.panics
    )
}

// ----- summary -----

/// Latency percentiles of one histogram, in microseconds.
#[derive(Clone, Copy)]
pub struct Latency {
    pub count: u64,
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_us: us(h.value_at_quantile(0.5)),
            p95_us: us(h.value_at_quantile(0.95)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }

    /// The percentiles as table cells (`-` without messages).
    fn cells(&self) -> [String; 5] {
        let all = [
            self.p50_us,
            self.p95_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
        ];
        all.map(|v| match self.count {
            0 => "-".to_string(),
            _ => format!("{v:.1}"),
        })
    }
}

/// The figures every report shows.
pub struct Summary {
    /// Messages the workers received (each message once).
    pub total: u64,
    pub rate: f64,
    pub elapsed: Duration,
    /// The workers' latency per priority.
    pub lanes: Vec<(Priority, Latency)>,
    /// Bus mode with subscribers: how many, and their latency over every
    /// delivery and priority.
    pub subscribers: Option<(usize, Latency)>,
    pub budget: Option<BudgetStats>,
    pub peak_rss: Option<u64>,
    /// Pool mode: the pool's figures.
    pub pool: Option<PoolSummary>,
}

impl Summary {
    pub fn new(outcome: &Outcome) -> Self {
        let lanes = Priority::ALL
            .iter()
            .map(|&p| {
                let mut h = new_histogram();
                for c in &outcome.workers {
                    h.add(&c.latency[p.index()]).expect("same bounds");
                }
                (p, Latency::of(&h))
            })
            .collect();
        let subscribers = (!outcome.subscribers.is_empty()).then(|| {
            let mut h = new_histogram();
            for c in &outcome.subscribers {
                for lane in &c.latency {
                    h.add(lane).expect("same bounds");
                }
            }
            (outcome.subscribers.len(), Latency::of(&h))
        });
        let total: u64 = outcome.workers.iter().map(|c| c.count()).sum();
        Self {
            total,
            rate: total as f64 / outcome.elapsed.as_secs_f64(),
            elapsed: outcome.elapsed,
            lanes,
            subscribers,
            budget: outcome.budget.clone(),
            peak_rss: peak_rss_bytes(),
            pool: outcome.pool.clone(),
        }
    }
}

// ----- lines shared by the text and markdown reports -----

fn settings(args: &Args) -> String {
    let mut s = format!("producers {}, workers {}", args.producers, args.workers);
    if args.mode == Mode::Bus {
        let _ = write!(s, ", subscribers {}", args.subscribers);
    }
    let _ = write!(
        s,
        ", capacity {}/lane, batch {}, payload {} B, mix {}",
        args.capacity,
        args.batch_size,
        args.payload_size,
        args.priority_mix.describe()
    );
    if args.interval > 0 {
        let _ = write!(s, ", interval {} us", args.interval);
    }
    if args.budget.is_some() {
        let _ = write!(s, ", budget {}", describe_budget(args));
    }
    if args.mode == Mode::Pool {
        let _ = write!(
            s,
            "; pool: {}",
            pool_settings_text(&PoolSettings::new(args))
        );
    }
    s
}

fn pool_settings_text(p: &PoolSettings) -> String {
    let policy = pool_mode::retry_policy();
    let keys = match p.keys {
        0 => "unkeyed".to_string(),
        k => format!("{k} keys"),
    };
    let timeout = match p.shutdown {
        pool_mode::ShutdownMode::Immediate => String::new(),
        _ => format!(" (deadline {} s)", p.shutdown_timeout_secs),
    };
    format!(
        "fail rate {}, dead rate {}, {keys}, handler {} us, {} attempts (backoff {:?} x{} \
         up to {:?}, jitter {}), shutdown {}{timeout}",
        p.fail_rate,
        p.dead_rate,
        p.handler_us,
        policy.max_attempts,
        policy.initial_backoff,
        policy.multiplier,
        policy.max_backoff,
        policy.jitter,
        p.shutdown.as_str()
    )
}

/// The pool's accounting in one line.
fn pool_accounting_text(p: &PoolSummary) -> String {
    format!(
        "sent {} = acked {} + dead-lettered {} + unprocessed {} + left in the channel {}; \
         taken {}; retries {}; panics {}; dead letters unsent {}; shutdown took {:.1} ms{}",
        group(p.sent),
        group(p.acked),
        group(p.dead_lettered),
        group(p.unprocessed),
        group(p.left_in_channel),
        group(p.taken),
        group(p.retries),
        p.panics,
        group(p.dead_letters_unsent),
        p.shutdown_took.as_secs_f64() * 1000.0,
        if p.timed_out { " (TIMED OUT)" } else { "" }
    )
}

/// The pool's own latency (`PoolStats`) of one lane as table cells, in
/// microseconds: p50, p95, p99, p99.9 (not kept by the pool) and max.
fn pool_latency_cells(l: &lanebus::pool::LatencySummary) -> [String; 5] {
    let us = |ns: u64| match l.count {
        0 => "-".to_string(),
        _ => format!("{:.1}", ns as f64 / 1000.0),
    };
    [
        us(l.p50),
        us(l.p95),
        us(l.p99),
        "n/a".to_string(),
        us(l.max),
    ]
}

const POOL_LATENCY_NOTE: &str = "pool latency (PoolStats): from when a worker took the \
     message from the channel to when it was settled (handler time and retry backoff \
     included), read just before the shutdown";

/// The workers' share of the handler calls and their busy time.
fn pool_workers_text(p: &PoolSummary) -> String {
    let parts: Vec<String> = p
        .stats
        .workers
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let total = (w.busy + w.idle).as_secs_f64();
            let busy = if total > 0.0 {
                w.busy.as_secs_f64() * 100.0 / total
            } else {
                0.0
            };
            format!("#{i} {} calls, busy {busy:.0}%", group(w.handled))
        })
        .collect();
    parts.join("; ")
}

fn latency_note(args: &Args) -> &'static str {
    match args.mode {
        Mode::Channel => "latency: from the send call to the receive (monotonic clock)",
        Mode::Bus => {
            "latency: from the admitted publish (envelope enqueued_at, wall clock) to the \
             receive; time a publisher waited for budget or room is not included"
        }
        Mode::Pool => {
            "latency: from the send call to the message's first handler call (monotonic \
             clock)"
        }
    }
}

/// `1 subscriber`, `2 subscribers`.
fn plural(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

fn rss_text(summary: &Summary) -> String {
    summary.peak_rss.map_or("n/a".into(), human_bytes)
}

fn budget_text(b: &BudgetStats) -> String {
    format!(
        "{} (watermark {}), peak {} ({} B, {:.1}%); waits {}; rejections {}; too large {}",
        human_bytes(b.max_bytes as u64),
        human_bytes(b.high_watermark as u64),
        human_bytes(b.peak as u64),
        group(b.peak as u64),
        b.peak as f64 * 100.0 / b.max_bytes as f64,
        per_priority(b.waits),
        per_priority(b.rejections),
        b.too_large
    )
}

fn throughput_text(args: &Args, summary: &Summary) -> String {
    let fanout = match summary.subscribers {
        Some((n, l)) => format!(
            " (+ {} deliveries to {})",
            group(l.count),
            plural(n, "subscriber")
        ),
        None => String::new(),
    };
    format!(
        "sent for {} s, drained after {:.2} s: {} messages{fanout}, {} msg/s",
        args.duration,
        summary.elapsed.as_secs_f64(),
        group(summary.total),
        group(summary.rate as u64)
    )
}

// ----- text -----

pub fn text(
    args: &Args,
    summary: &Summary,
    verdict: &Verdict,
    comparison: Option<&Comparison>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "lanebus stress ({}): {}",
        args.mode.as_str(),
        settings(args)
    );
    let _ = writeln!(s, "{}", throughput_text(args, summary));
    let _ = writeln!(
        s,
        "{:<12} {:>14} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "priority", "messages", "p50 us", "p95 us", "p99 us", "p99.9 us", "max us"
    );
    let row = |s: &mut String, name: &str, l: &Latency| {
        let [p50, p95, p99, p999, max] = l.cells();
        let n = group(l.count);
        let _ = writeln!(
            s,
            "{name:<12} {n:>14} {p50:>10} {p95:>10} {p99:>10} {p999:>10} {max:>10}"
        );
    };
    for (p, l) in &summary.lanes {
        row(&mut s, p.as_str(), l);
    }
    if let Some((_, l)) = &summary.subscribers {
        row(&mut s, "subscribers", l);
    }
    let _ = writeln!(s, "{}", latency_note(args));
    if let Some(p) = &summary.pool {
        let _ = writeln!(s, "pool: {}", pool_accounting_text(p));
        let _ = writeln!(s, "{POOL_LATENCY_NOTE}:");
        for (lane, l) in p.stats.latency.iter().enumerate() {
            let [p50, p95, p99, p999, max] = pool_latency_cells(l);
            let name = Priority::ALL[lane].as_str();
            let n = group(l.count);
            let _ = writeln!(
                s,
                "{name:<12} {n:>14} {p50:>10} {p95:>10} {p99:>10} {p999:>10} {max:>10}"
            );
        }
        let _ = writeln!(s, "pool workers: {}", pool_workers_text(p));
    }
    let _ = writeln!(s, "peak RSS: {}", rss_text(summary));
    if let Some(b) = &summary.budget {
        let _ = writeln!(s, "budget: {}", budget_text(b));
    }
    for line in &verdict.lines {
        let _ = writeln!(s, "verify: {line}");
    }
    if let Some(c) = comparison {
        s.push_str(&c.text_table());
    }
    s
}

// ----- markdown -----

pub fn markdown(
    args: &Args,
    summary: &Summary,
    verdict: &Verdict,
    comparison: Option<&Comparison>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "### lanebus stress: {} mode\n", args.mode.as_str());
    let _ = writeln!(s, "{}\n", settings(args));
    let _ = writeln!(s, "| metric | value |\n|---|---:|");
    let _ = writeln!(s, "| throughput | {} msg/s |", group(summary.rate as u64));
    let _ = writeln!(
        s,
        "| messages | {} in {:.2} s |",
        group(summary.total),
        summary.elapsed.as_secs_f64()
    );
    if let Some((n, l)) = &summary.subscribers {
        let to = plural(*n, "subscriber");
        let _ = writeln!(s, "| fan-out | {} deliveries to {to} |", group(l.count));
    }
    let _ = writeln!(s, "| peak RSS | {} |\n", rss_text(summary));
    let _ = writeln!(
        s,
        "| priority | messages | p50 µs | p95 µs | p99 µs | p99.9 µs | max µs |\n\
         |---|---:|---:|---:|---:|---:|---:|"
    );
    let row = |s: &mut String, name: &str, l: &Latency| {
        let [p50, p95, p99, p999, max] = l.cells();
        let n = group(l.count);
        let _ = writeln!(
            s,
            "| {name} | {n} | {p50} | {p95} | {p99} | {p999} | {max} |"
        );
    };
    for (p, l) in &summary.lanes {
        row(&mut s, p.as_str(), l);
    }
    if let Some((_, l)) = &summary.subscribers {
        row(&mut s, "subscribers (all)", l);
    }
    let _ = writeln!(s, "\n{}\n", latency_note(args));
    if let Some(p) = &summary.pool {
        let _ = writeln!(s, "**Pool:** {}\n", pool_accounting_text(p));
        let _ = writeln!(
            s,
            "| priority | messages | p50 µs | p95 µs | p99 µs | p99.9 µs | max µs |\n\
             |---|---:|---:|---:|---:|---:|---:|"
        );
        for (lane, l) in p.stats.latency.iter().enumerate() {
            let [p50, p95, p99, p999, max] = pool_latency_cells(l);
            let name = Priority::ALL[lane].as_str();
            let n = group(l.count);
            let _ = writeln!(
                s,
                "| {name} | {n} | {p50} | {p95} | {p99} | {p999} | {max} |"
            );
        }
        let _ = writeln!(s, "\n{POOL_LATENCY_NOTE}.\n");
        let _ = writeln!(s, "**Pool workers:** {}\n", pool_workers_text(p));
    }
    if let Some(b) = &summary.budget {
        let _ = writeln!(s, "**Budget:** {}\n", budget_text(b));
    }
    let mark = if verdict.ok { "✅" } else { "❌" };
    for line in &verdict.lines {
        let _ = writeln!(s, "**Verification:** {mark} {line}\n");
    }
    if let Some(c) = comparison {
        s.push_str(&c.markdown_table());
    }
    s
}

// ----- json -----

/// The settings, as the JSON report's `config` (the first seven keys are
/// those of the first version of the report).
#[derive(Serialize)]
pub struct JsonConfig {
    duration_secs: u64,
    producers: u32,
    /// The workers (named `consumers` since the first version).
    consumers: u32,
    capacity: usize,
    batch_size: usize,
    payload_size: usize,
    priority_mix: String,
    mode: &'static str,
    subscribers: u32,
    interval_us: u64,
    budget_bytes: Option<usize>,
    high_watermark_bytes: Option<usize>,
    /// Pool mode only (absent otherwise, so that reports of the other
    /// modes keep their keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    fail_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dead_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    handler_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shutdown: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shutdown_timeout_secs: Option<u64>,
}

pub fn json_config(args: &Args) -> JsonConfig {
    let budget = crate::build_budget(args);
    let pool = (args.mode == Mode::Pool).then(|| PoolSettings::new(args));
    JsonConfig {
        duration_secs: args.duration,
        producers: args.producers,
        consumers: args.workers,
        capacity: args.capacity.get(),
        batch_size: args.batch_size.get(),
        payload_size: args.payload_size,
        priority_mix: args.priority_mix.describe(),
        mode: args.mode.as_str(),
        subscribers: args.subscribers,
        interval_us: args.interval,
        budget_bytes: budget.as_ref().map(|b| b.max_bytes()),
        high_watermark_bytes: budget.as_ref().map(|b| b.high_watermark()),
        fail_rate: pool.map(|p| p.fail_rate),
        dead_rate: pool.map(|p| p.dead_rate),
        keys: pool.map(|p| p.keys),
        handler_us: pool.map(|p| p.handler_us),
        shutdown: pool.map(|p| p.shutdown.as_str()),
        shutdown_timeout_secs: pool.map(|p| p.shutdown_timeout_secs),
    }
}

#[derive(Serialize)]
struct JsonLatency {
    messages: u64,
    p50_us: f64,
    p95_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
}

impl From<&Latency> for JsonLatency {
    fn from(l: &Latency) -> Self {
        Self {
            messages: l.count,
            p50_us: l.p50_us,
            p95_us: l.p95_us,
            p99_us: l.p99_us,
            p999_us: l.p999_us,
            max_us: l.max_us,
        }
    }
}

#[derive(Serialize)]
struct JsonLane {
    priority: &'static str,
    #[serde(flatten)]
    latency: JsonLatency,
}

#[derive(Serialize)]
struct JsonSubscribers {
    count: usize,
    #[serde(flatten)]
    latency: JsonLatency,
}

/// Per-priority counters by name.
#[derive(Serialize)]
struct PerPriority {
    urgent: u64,
    high: u64,
    normal: u64,
    low: u64,
}

impl From<[u64; LANES]> for PerPriority {
    fn from([urgent, high, normal, low]: [u64; LANES]) -> Self {
        Self {
            urgent,
            high,
            normal,
            low,
        }
    }
}

#[derive(Serialize)]
struct JsonBudget {
    max_bytes: usize,
    high_watermark_bytes: usize,
    peak_bytes: usize,
    in_use_at_end: usize,
    waits: PerPriority,
    rejections: PerPriority,
    too_large: u64,
}

/// Pool mode: the shutdown report and the pool's own statistics.
#[derive(Serialize)]
struct JsonPool {
    retry: JsonRetry,
    sent: u64,
    taken: u64,
    acked: u64,
    dead_lettered: u64,
    dead_letters_unsent: u64,
    retries: u64,
    panics: u64,
    unprocessed: u64,
    left_in_channel: u64,
    timed_out: bool,
    shutdown_secs: f64,
    /// `PoolStats` latency (taken to settled), read before the shutdown.
    latency: Vec<JsonPoolLane>,
    workers: Vec<JsonPoolWorker>,
}

#[derive(Serialize)]
struct JsonRetry {
    max_attempts: u32,
    initial_backoff_ms: f64,
    max_backoff_ms: f64,
    multiplier: f64,
    jitter: f64,
}

#[derive(Serialize)]
struct JsonPoolLane {
    priority: &'static str,
    messages: u64,
    p50_us: f64,
    p95_us: f64,
    p99_us: f64,
    max_us: f64,
}

#[derive(Serialize)]
struct JsonPoolWorker {
    handled: u64,
    busy_secs: f64,
    idle_secs: f64,
}

impl From<&PoolSummary> for JsonPool {
    fn from(p: &PoolSummary) -> Self {
        let policy = pool_mode::retry_policy();
        let us = |ns: u64| ns as f64 / 1000.0;
        Self {
            retry: JsonRetry {
                max_attempts: policy.max_attempts,
                initial_backoff_ms: policy.initial_backoff.as_secs_f64() * 1000.0,
                max_backoff_ms: policy.max_backoff.as_secs_f64() * 1000.0,
                multiplier: policy.multiplier,
                jitter: policy.jitter,
            },
            sent: p.sent,
            taken: p.taken,
            acked: p.acked,
            dead_lettered: p.dead_lettered,
            dead_letters_unsent: p.dead_letters_unsent,
            retries: p.retries,
            panics: p.panics,
            unprocessed: p.unprocessed,
            left_in_channel: p.left_in_channel,
            timed_out: p.timed_out,
            shutdown_secs: p.shutdown_took.as_secs_f64(),
            latency: p
                .stats
                .latency
                .iter()
                .zip(Priority::ALL)
                .map(|(l, priority)| JsonPoolLane {
                    priority: priority.as_str(),
                    messages: l.count,
                    p50_us: us(l.p50),
                    p95_us: us(l.p95),
                    p99_us: us(l.p99),
                    max_us: us(l.max),
                })
                .collect(),
            workers: p
                .stats
                .workers
                .iter()
                .map(|w| JsonPoolWorker {
                    handled: w.handled,
                    busy_secs: w.busy.as_secs_f64(),
                    idle_secs: w.idle.as_secs_f64(),
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
struct JsonVerification<'a> {
    ok: bool,
    details: &'a [String],
}

/// The JSON report: the keys of its first version, in their order, then
/// the newer ones.
#[derive(Serialize)]
struct JsonReport<'a> {
    config: JsonConfig,
    elapsed_secs: f64,
    total_messages: u64,
    messages_per_sec: u64,
    lanes: Vec<JsonLane>,
    verification: JsonVerification<'a>,
    /// Bus mode with subscribers only.
    #[serde(skip_serializing_if = "Option::is_none")]
    subscribers: Option<JsonSubscribers>,
    budget: Option<JsonBudget>,
    peak_rss_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline: Option<&'a Comparison>,
    /// When and where the run was taken (for charts and for people).
    taken: Taken,
    /// Pool mode only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<JsonPool>,
}

/// The date and machine of a run.
#[derive(Serialize)]
struct Taken {
    /// `YYYY-MM-DD HH:MM:SS UTC`, or `?`.
    date_utc: String,
    /// Logical CPUs, or 0 when unknown.
    nproc: usize,
    /// The CPU model from `/proc/cpuinfo`, or `?`.
    cpu: String,
}

impl Taken {
    fn now() -> Self {
        let date_utc = std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M:%S UTC"])
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "?".to_string());
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_string())
            })
            .unwrap_or_else(|| "?".to_string());
        Self {
            date_utc,
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
        }
    }
}

pub fn json(
    args: &Args,
    summary: &Summary,
    verdict: &Verdict,
    comparison: Option<&Comparison>,
) -> String {
    let report = JsonReport {
        config: json_config(args),
        elapsed_secs: summary.elapsed.as_millis() as f64 / 1000.0,
        total_messages: summary.total,
        messages_per_sec: summary.rate.round() as u64,
        lanes: summary
            .lanes
            .iter()
            .map(|(p, l)| JsonLane {
                priority: p.as_str(),
                latency: l.into(),
            })
            .collect(),
        verification: JsonVerification {
            ok: verdict.ok,
            details: &verdict.lines,
        },
        subscribers: summary
            .subscribers
            .as_ref()
            .map(|(count, l)| JsonSubscribers {
                count: *count,
                latency: l.into(),
            }),
        budget: summary.budget.as_ref().map(|b| JsonBudget {
            max_bytes: b.max_bytes,
            high_watermark_bytes: b.high_watermark,
            peak_bytes: b.peak,
            in_use_at_end: b.in_use,
            waits: b.waits.into(),
            rejections: b.rejections.into(),
            too_large: b.too_large,
        }),
        peak_rss_bytes: summary.peak_rss,
        baseline: comparison,
        taken: Taken::now(),
        pool: summary.pool.as_ref().map(JsonPool::from),
    };
    let mut s = serde_json::to_string(&report).expect("the report serializes");
    s.push('\n');
    s
}
