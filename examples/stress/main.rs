//! Stress tool: saturates (or paces) a lanebus channel, bus or worker pool
//! and reports throughput, latency per priority, memory and an exactly-once
//! check.
//!
//! # Modes
//!
//! - `--mode channel` (the default): `--producers` threads send on one
//!   channel for `--duration` seconds, each message on a lane drawn from
//!   `--priority-mix`, then drop their senders; `--workers` threads receive
//!   until the channel is closed and empty. Latency is from the send call to
//!   the receive (monotonic clock).
//! - `--mode bus`: producer N publishes on topic `stress.pN` with its own
//!   `Publisher`; the `--workers` are the members of one consumer group
//!   (`stress.*`, `workers`), so each message is handled once, and
//!   `--subscribers` plain `stress.*` subscriptions each get every message.
//!   When the producers are done the bus is closed and everyone drains.
//!   Latency is from the envelope's `enqueued_at` (the wall-clock time the
//!   publish was admitted, after any wait for budget or room) to the
//!   receive.
//! - `--mode pool`: the producers of channel mode send on one channel (plain
//!   or budgeted); a `WorkerPool` of `--workers` threads, taking
//!   `--batch-size` messages at a time, consumes it. Its handler spins for
//!   `--handler-us`, dead-letters `--dead-rate` of the messages and asks for
//!   a retry on `--fail-rate` of its attempts (3 attempts, backoff 1 ms
//!   doubling to 10 ms); `--keys N` gives every message one of N ordering
//!   keys. When the producers are done the pool is shut down (`--shutdown
//!   drain|graceful|immediate`, deadline `--shutdown-timeout`). Latency is
//!   from the send call to the message's first handler call (monotonic
//!   clock); the report also shows the pool's own `PoolStats` latency.
//!
//! `--budget BYTES` puts the messages under a `MemoryBudget` (a budgeted
//! channel, or the bus's budget; `--high-watermark` defaults to 80%).
//! `--interval MICROS` paces each producer to one send per interval, to
//! measure latency at a fixed rate rather than saturated.
//!
//! While it runs, stderr shows messages/s, queue depth per lane and budget
//! in use: a live progress line (indicatif) on a terminal, one plain line a
//! second otherwise; at the end a report (`--report text|json|markdown`) goes
//! to stdout or to `--out FILE`. It includes the peak RSS of the process
//! (`VmHWM`).
//!
//! # Verification
//!
//! Every producer numbers its messages 0, 1, 2, … and keeps a fingerprint
//! of what it sent (count, sum of sequence numbers, sum of a 64-bit hash of
//! each); the receivers build the same fingerprint from what they received
//! (the workers together, and each subscriber on its own). Equal
//! fingerprints mean every message arrived exactly once (a loss and a
//! duplicate would have to collide in both sums). Receivers also check each
//! payload and that, per producer and lane, sequence numbers arrive in
//! increasing order. Under a budget, its peak must not exceed its size and
//! nothing may be left charged at the end.
//!
//! In pool mode every message sent must be accounted for exactly once:
//! acked by the handler, in the dead letters, returned unprocessed by the
//! shutdown, or left in the channel (fingerprints per producer, and the
//! `ShutdownReport` counts against the handler's). Its handler's decisions
//! are a function of (producer, seq, attempt), so every message's fate and
//! attempts are checked too; with `--keys`, so is the order of first
//! handling per key, lane and producer, and that a key's messages are
//! handled one at a time (a retry holding its key).
//!
//! # Baselines and exit status
//!
//! `--baseline FILE` compares this run with an earlier `--report json` of
//! this tool: throughput and p99 per priority. The exit status is
//!
//! - 0: verification passed and no regression;
//! - 1: verification failed (this wins over a regression), or the report
//!   could not be written;
//! - 2: throughput fell, or a p99 rose, by more than
//!   `--regression-threshold` percent (a p99 must also have risen by more
//!   than `--p99-floor-us` microseconds, default 100: on the 2-core VM this
//!   was written on, two identical paced runs gave an Urgent p99 of 52 and
//!   100 µs, so a relative threshold alone flags noise); also bad arguments and a
//!   baseline that cannot be read or parsed (checked before the run starts).
//!
//! Run (from the repository root):
//!
//! ```text
//! cargo run --release --example stress
//! cargo run --release --example stress -- --duration 3 --producers 4 --batch-size 64
//! cargo run --release --example stress -- --priority-mix urgent=1,low=99 --payload-size 256
//! cargo run --release --example stress -- --mode bus --workers 2 --subscribers 1
//! cargo run --release --example stress -- --mode pool --keys 8 --handler-us 5
//! cargo run --release --example stress -- --budget 64KiB --payload-size 1024
//! cargo run --release --example stress -- --interval 100 --report markdown
//! cargo run --release --example stress -- --report json --out stress.json
//! cargo run --release --example stress -- --baseline stress.json
//! ```

mod baseline;
mod bus_mode;
mod channel_mode;
mod common;
mod pool_mode;
mod report;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, ValueEnum};
use lanebus::{Envelope, Header, MemoryBudget};

use common::{human_bytes, ByteSize, PriorityMix, Watermark};

/// Stress a lanebus channel, bus or worker pool: producers send flat out (or
/// at a fixed rate) for a while, consumers measure latency per priority, and
/// every message is checked to arrive exactly once.
#[derive(Parser, Debug)]
#[command(
    name = "stress",
    long_about = None,
    after_help = "\
Examples:
  stress --duration 3 --producers 4 --batch-size 64
  stress --mode bus --workers 2 --subscribers 1 --budget 16MiB
  stress --mode pool --workers 4 --batch-size 16 --fail-rate 0.05
  stress --budget 64KiB --payload-size 1024 --report markdown
  stress --report json --out base.json; stress --baseline base.json

Exit status: 0 all good; 1 verification failed; 2 regression against
--baseline, bad arguments or an unreadable baseline."
)]
struct Args {
    /// What to stress: a channel, a bus with topics, a consumer group and
    /// fan-out subscribers, or a worker pool consuming a channel.
    #[arg(long, value_enum, default_value_t = Mode::Channel)]
    mode: Mode,

    /// How long the producers send, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    duration: u64,

    /// Producer threads (bus: producer N publishes on topic `stress.pN`).
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    producers: u32,

    /// Consumer threads (bus: the members of the consumer group, so each
    /// message is handled by one of them; pool: the pool's workers).
    #[arg(long, visible_alias = "consumers", value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    workers: u32,

    /// Bus only: plain subscribers to `stress.*`, each of which must get
    /// every message exactly once too (one thread each).
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=1024))]
    subscribers: u32,

    /// Capacity of each priority lane (bus: of every subscription's queue).
    #[arg(long, value_name = "N", default_value = "1024")]
    capacity: NonZeroUsize,

    /// Messages per receive call (recv_batch; pool: the pool's batch_size);
    /// in channel and pool mode without a budget also per send call
    /// (send_batch). Publishes and budgeted sends go one at a time. 1
    /// receives one message at a time.
    #[arg(long, value_name = "N", default_value = "1")]
    batch_size: NonZeroUsize,

    /// Payload bytes per message (channel and pool: up to 16 are stored
    /// inline, more on the heap; bus: at least 8, the first 8 carry the
    /// sequence number).
    #[arg(long, value_name = "BYTES", default_value_t = 8)]
    payload_size: usize,

    /// Share of messages per priority, as NAME=WEIGHT pairs; weights are
    /// relative and a priority left out gets none.
    #[arg(long, value_name = "MIX", default_value = "urgent=5,high=15,normal=80")]
    priority_mix: PriorityMix,

    /// Charge every message to a memory budget of this size (64KiB, 16MiB,
    /// 1GiB, 500KB or plain bytes). Channel and pool: the weight is the
    /// message's size (pool: held until the message is settled); bus: the
    /// envelope's weight (header plus payload).
    #[arg(long, value_name = "BYTES")]
    budget: Option<ByteSize>,

    /// The budget's high watermark, in bytes or as a percentage of it
    /// (`75%`); above it only Urgent and High are admitted. Default 80%.
    #[arg(long, value_name = "BYTES|PCT", requires = "budget")]
    high_watermark: Option<Watermark>,

    /// Pause between sends of each producer, in microseconds (0: flat out):
    /// each producer offers one message (or batch) per interval, on a fixed
    /// schedule; one that falls behind sends without pausing until it is
    /// back on schedule.
    #[arg(long, value_name = "MICROS", default_value_t = 0)]
    interval: u64,

    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    report: ReportFormat,

    /// Write the report to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,

    /// An earlier `--report json` of this tool to compare with: exit status
    /// 2 if throughput fell, or the p99 of a priority rose, by more than
    /// --regression-threshold.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,

    /// The change, in percent, beyond which a comparison with --baseline
    /// counts as a regression.
    #[arg(long, value_name = "PERCENT", default_value_t = 10.0,
          requires = "baseline", value_parser = parse_percent)]
    regression_threshold: f64,

    /// The smallest rise of a p99, in microseconds, that can count as a
    /// regression with --baseline (besides exceeding the percentage).
    #[arg(long, value_name = "MICROS", default_value_t = 100.0,
          requires = "baseline", value_parser = parse_micros)]
    p99_floor_us: f64,

    /// Pool only: the fraction of handler attempts, first ones and retries
    /// alike, that return Outcome::Retry; a message whose 3 attempts all
    /// fail is dead-lettered. [default: 0.01]
    #[arg(long, value_name = "FRACTION", value_parser = parse_fraction)]
    fail_rate: Option<f64>,

    /// Pool only: the fraction of messages the handler dead-letters
    /// (Outcome::DeadLetter) on their first attempt. [default: 0.001]
    #[arg(long, value_name = "FRACTION", value_parser = parse_fraction)]
    dead_rate: Option<f64>,

    /// Pool only: ordering keys; each message gets one of N, from its
    /// producer and sequence number. 0: no keys. [default: 0]
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(0..=65536))]
    keys: Option<u32>,

    /// Pool only: busy CPU work (a spin) per handler call, in microseconds.
    /// [default: 0]
    #[arg(long, value_name = "MICROS",
          value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    handler_us: Option<u64>,

    /// Pool only: how the pool is shut down when the producers are done:
    /// drain (handle everything, the channel included), graceful (finish
    /// what the pool took; the rest stays in the channel) or immediate.
    /// [default: drain]
    #[arg(long, value_enum)]
    shutdown: Option<pool_mode::ShutdownMode>,

    /// Pool only: the shutdown's deadline, in seconds from its start; the
    /// verification fails if it is reached. [default: 30]
    #[arg(long, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    shutdown_timeout: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Channel,
    Bus,
    Pool,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Channel => "channel",
            Mode::Bus => "bus",
            Mode::Pool => "pool",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ReportFormat {
    Text,
    Json,
    Markdown,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "`{s}`: expected a fraction from 0 to 1, as in 0.01"
        )),
    }
}

fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("`{s}`: expected a number of percent, as in 10 or 2.5"))?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("`{s}`: must be 0 or more"))
    }
}

fn parse_micros(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}`: expected a number of microseconds, as in 50 or 12.5"))?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("`{s}`: must be 0 or more"))
    }
}

/// Checks what clap cannot; exits with status 2 (as clap does) on error.
fn check(args: &Args) {
    let fail = |msg: String| -> ! {
        Args::command()
            .error(clap::error::ErrorKind::ArgumentConflict, msg)
            .exit()
    };
    if args.mode != Mode::Bus && args.subscribers > 0 {
        fail("--subscribers needs --mode bus".into());
    }
    if args.mode != Mode::Pool {
        let pool_only = [
            ("--fail-rate", args.fail_rate.is_some()),
            ("--dead-rate", args.dead_rate.is_some()),
            ("--keys", args.keys.is_some()),
            ("--handler-us", args.handler_us.is_some()),
            ("--shutdown", args.shutdown.is_some()),
            ("--shutdown-timeout", args.shutdown_timeout.is_some()),
        ];
        if let Some((flag, _)) = pool_only.iter().find(|(_, given)| *given) {
            fail(format!("{flag} needs --mode pool"));
        }
    }
    if args.mode == Mode::Bus && args.payload_size < bus_mode::MIN_PAYLOAD {
        fail(format!(
            "--mode bus needs --payload-size {} or more (the payload carries the sequence number)",
            bus_mode::MIN_PAYLOAD
        ));
    }
    if let Some(budget) = args.budget {
        let weight = message_weight(args);
        if weight > budget.0 {
            fail(format!(
                "a message weighs {weight} B, more than the whole --budget of {} B: \
                 it could never be admitted",
                budget.0
            ));
        }
        if let Some(Watermark::Bytes(w)) = args.high_watermark {
            if w > budget.0 {
                fail(format!(
                    "--high-watermark {w} B is above the --budget of {} B",
                    budget.0
                ));
            }
        }
    }
}

/// The budget weight of one message (the largest, in bus mode: the topic
/// of the last producer is the longest).
fn message_weight(args: &Args) -> usize {
    match args.mode {
        Mode::Channel | Mode::Pool => channel_mode::message_weight(args.payload_size),
        Mode::Bus => {
            let topic = bus_mode::topic(args.producers - 1);
            let header = Envelope::new(Header::new(topic.as_str()), &b""[..]).weight();
            header.saturating_add(args.payload_size)
        }
    }
}

fn build_budget(args: &Args) -> Option<MemoryBudget> {
    let max = args.budget?.0;
    let mut builder = MemoryBudget::builder(max);
    match args.high_watermark {
        Some(Watermark::Bytes(b)) => builder = builder.high_watermark(b),
        Some(Watermark::Percent(p)) => {
            builder = builder.high_watermark((max as f64 * p / 100.0) as usize);
        }
        None => {}
    }
    Some(builder.build())
}

/// A one-line description of the budget settings.
fn describe_budget(args: &Args) -> String {
    match build_budget(args) {
        None => "none".into(),
        Some(b) => format!(
            "{} (watermark {})",
            human_bytes(b.max_bytes() as u64),
            human_bytes(b.high_watermark() as u64)
        ),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    check(&args);
    // Read the baseline first: a bad one should not cost a whole run.
    let baseline = match &args.baseline {
        None => None,
        Some(path) => match baseline::Baseline::read(path) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("error: --baseline {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
    };
    if args.batch_size.get() > 1 && (args.mode == Mode::Bus || args.budget.is_some()) {
        eprintln!(
            "note: --batch-size {} applies to receiving only: {} one at a time",
            args.batch_size,
            match args.mode {
                Mode::Bus => "Publisher has no batch publish, so messages are published",
                Mode::Channel | Mode::Pool => {
                    "BudgetedSender has no send_batch, so messages are sent"
                }
            }
        );
    }
    let budget = build_budget(&args);
    let outcome = match args.mode {
        Mode::Channel => channel_mode::run(&args, budget),
        Mode::Bus => bus_mode::run(&args, budget),
        Mode::Pool => pool_mode::run(&args, budget),
    };
    let summary = report::Summary::new(&outcome);
    let verdict = report::verify(&outcome);
    let comparison = baseline.as_ref().map(|b| {
        b.compare(
            &args,
            &summary,
            args.regression_threshold,
            args.p99_floor_us,
        )
    });
    let text = match args.report {
        ReportFormat::Text => report::text(&args, &summary, &verdict, comparison.as_ref()),
        ReportFormat::Markdown => report::markdown(&args, &summary, &verdict, comparison.as_ref()),
        ReportFormat::Json => report::json(&args, &summary, &verdict, comparison.as_ref()),
    };
    match &args.out {
        None => print!("{text}"),
        Some(path) => {
            if let Err(e) = std::fs::write(path, &text) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            eprintln!("report written to {}", path.display());
        }
    }
    if let Some(c) = &comparison {
        // The text and markdown reports on stdout hold the table already.
        if args.report == ReportFormat::Json || args.out.is_some() {
            eprint!("{}", c.text_table());
        }
    }
    if !verdict.ok {
        eprintln!("verification FAILED");
        return ExitCode::FAILURE;
    }
    match &comparison {
        Some(c) if c.regressed() => {
            eprintln!("REGRESSION against {}", c.path);
            ExitCode::from(2)
        }
        _ => ExitCode::SUCCESS,
    }
}
