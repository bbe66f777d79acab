//! What both benches share: messages that carry a sequence number, the
//! tally that proves every message arrived exactly once, and the channels
//! under test behind one `Flavor` trait; and the small helpers of the
//! custom harnesses (watchdog, statistics, arguments).

use std::ops::Range;
use std::process::Command;
use std::str::FromStr;
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The capacity of every channel (of every lane, for lanebus).
pub const CAP: usize = 1024;

/// A message that carries a sequence number.
pub trait Msg: Send + 'static {
    /// The message's name in benchmark ids.
    const NAME: &'static str;
    /// A message carrying `seq`.
    fn new(seq: u64) -> Self;
    /// The sequence number it carries.
    fn seq(&self) -> u64;
}

impl Msg for u64 {
    const NAME: &'static str = "u64";

    #[inline]
    fn new(seq: u64) -> Self {
        seq
    }

    #[inline]
    fn seq(&self) -> u64 {
        *self
    }
}

impl Msg for [u8; 256] {
    const NAME: &'static str = "256B";

    #[inline]
    fn new(seq: u64) -> Self {
        let mut m = [0u8; 256];
        m[..8].copy_from_slice(&seq.to_le_bytes());
        m
    }

    #[inline]
    fn seq(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self[..8]);
        u64::from_le_bytes(b)
    }
}

/// What one consumer received: count, sum and (wrapping) sum of squares of
/// the sequence numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: u64,
    pub sum: u64,
    pub squares: u64,
}

impl Tally {
    #[inline]
    pub fn add(&mut self, seq: u64) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(seq);
        self.squares = self.squares.wrapping_add(seq.wrapping_mul(seq));
    }

    pub fn merge(self, other: Tally) -> Tally {
        Tally {
            count: self.count + other.count,
            sum: self.sum.wrapping_add(other.sum),
            squares: self.squares.wrapping_add(other.squares),
        }
    }

    /// The tally of `0..n`, each exactly once.
    pub fn expected(n: u64) -> Tally {
        let n = u128::from(n);
        let sum = n * n.saturating_sub(1) / 2;
        let squares = n.saturating_sub(1) * n * (2 * n).saturating_sub(1) / 6;
        Tally {
            count: n as u64,
            sum: sum as u64,
            squares: squares as u64,
        }
    }
}

/// A channel under test. `produce`/`consume` default to one message per call.
pub trait Flavor<T: Msg>: 'static {
    type Tx: Send + 'static;
    type Rx: Send + 'static;
    /// The table column.
    const NAME: &'static str;
    /// False for single-consumer channels (std).
    const MULTI_CONSUMER: bool = true;

    fn channel() -> (Self::Tx, Self::Rx);
    fn clone_tx(tx: &Self::Tx) -> Self::Tx;
    fn clone_rx(rx: &Self::Rx) -> Self::Rx;
    fn send(tx: &Self::Tx, msg: T);
    /// `None` once every sender is gone and the channel is empty.
    fn recv(rx: &Self::Rx) -> Option<T>;

    fn produce(tx: &Self::Tx, seqs: Range<u64>) {
        for seq in seqs {
            Self::send(tx, T::new(seq));
        }
    }

    fn consume(rx: &Self::Rx) -> Tally {
        let mut tally = Tally::default();
        while let Some(msg) = Self::recv(rx) {
            tally.add(msg.seq());
        }
        tally
    }
}

/// A `Flavor` for channels whose handles are `Clone` and whose `send`/`recv`
/// return `Result`.
macro_rules! flavor {
    ($ty:ident, $name:expr, $tx:ty, $rx:ty, $new:expr) => {
        pub struct $ty;

        impl<T: $crate::common::Msg> $crate::common::Flavor<T> for $ty {
            type Tx = $tx;
            type Rx = $rx;
            const NAME: &'static str = $name;

            fn channel() -> (Self::Tx, Self::Rx) {
                $new
            }

            fn clone_tx(tx: &Self::Tx) -> Self::Tx {
                tx.clone()
            }

            fn clone_rx(rx: &Self::Rx) -> Self::Rx {
                rx.clone()
            }

            #[inline]
            fn send(tx: &Self::Tx, msg: T) {
                if tx.send(msg).is_err() {
                    panic!("{}: receivers gone", $name);
                }
            }

            #[inline]
            fn recv(rx: &Self::Rx) -> Option<T> {
                rx.recv().ok()
            }
        }
    };
}

flavor!(
    Lanebus,
    "lanebus",
    lanebus::Sender<T>,
    lanebus::Receiver<T>,
    lanebus::bounded(CAP)
);
flavor!(
    Crossbeam,
    "crossbeam",
    crossbeam_channel::Sender<T>,
    crossbeam_channel::Receiver<T>,
    crossbeam_channel::bounded(CAP)
);
flavor!(
    Kanal,
    "kanal",
    kanal::Sender<T>,
    kanal::Receiver<T>,
    kanal::bounded(CAP)
);
flavor!(
    Flume,
    "flume",
    flume::Sender<T>,
    flume::Receiver<T>,
    flume::bounded(CAP)
);

/// `std::sync::mpsc::sync_channel`; single consumer.
pub struct StdSync;

impl<T: Msg> Flavor<T> for StdSync {
    type Tx = mpsc::SyncSender<T>;
    type Rx = mpsc::Receiver<T>;
    const NAME: &'static str = "std";
    const MULTI_CONSUMER: bool = false;

    fn channel() -> (Self::Tx, Self::Rx) {
        mpsc::sync_channel(CAP)
    }

    fn clone_tx(tx: &Self::Tx) -> Self::Tx {
        tx.clone()
    }

    fn clone_rx(_: &Self::Rx) -> Self::Rx {
        unreachable!("std::sync::mpsc has a single consumer")
    }

    #[inline]
    fn send(tx: &Self::Tx, msg: T) {
        tx.send(msg).expect("std: receiver gone");
    }

    #[inline]
    fn recv(rx: &Self::Rx) -> Option<T> {
        rx.recv().ok()
    }
}

/// Sends `seqs` through `send_batch` in batches of `batch`; every batch must
/// go out whole.
pub fn produce_batches<T: Msg>(tx: &lanebus::Sender<T>, seqs: Range<u64>, batch: usize) {
    let mut buf = Vec::with_capacity(batch);
    let mut next = seqs.start;
    while next < seqs.end {
        let end = seqs.end.min(next + batch as u64);
        buf.extend((next..end).map(T::new));
        tx.send_batch(&mut buf).expect("lanebus: receivers gone");
        assert!(buf.is_empty(), "send_batch left messages behind");
        next = end;
    }
}

/// Receives with `recv_batch` of up to `batch` until the channel is closed
/// and empty; tallies every sequence number.
pub fn consume_batches<T: Msg>(rx: &lanebus::Receiver<T>, batch: usize) -> Tally {
    let mut tally = Tally::default();
    let mut buf = Vec::with_capacity(batch);
    while rx.recv_batch(&mut buf, batch).is_ok() {
        for msg in buf.drain(..) {
            tally.add(msg.seq());
        }
    }
    tally
}

/// The first line of a command's output, or `?` (for the `date` in a
/// report's header).
pub fn command_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

/// The CPU's model name from `/proc/cpuinfo`, or `?`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "?".to_string())
}

/// The run the watchdog is looking at: its label and start.
pub static CURRENT: Mutex<Option<(String, Instant)>> = Mutex::new(None);

/// Checks `CURRENT` every second and aborts the process (exit status 2) if
/// one run has taken longer than `limit`, so a hang shows which run hung.
pub fn start_watchdog(limit: Duration) {
    thread::spawn(move || loop {
        thread::sleep(Duration::from_secs(1));
        if let Some((label, since)) = &*CURRENT.lock().expect("watchdog lock") {
            if since.elapsed() > limit {
                eprintln!("watchdog: `{label}` still running after {limit:?}; aborting");
                std::process::exit(2);
            }
        }
    });
}

/// Median (the mean of the middle two for an even count), min and max of a
/// non-empty sample.
pub fn stats(xs: &[f64]) -> (f64, f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 0 {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    };
    (median, v[0], v[v.len() - 1])
}

/// The median of a non-empty sample, as in `stats`.
pub fn median(xs: &[f64]) -> f64 {
    stats(xs).0
}

/// A number, with `_` separators allowed; `fail`s with `usage` otherwise.
pub fn number<T: FromStr>(s: &str, usage: &str) -> T {
    s.replace('_', "")
        .parse()
        .unwrap_or_else(|_| fail(&format!("not a number: {s}"), usage))
}

/// One command-line argument of a custom harness, from [`args`].
pub enum Arg {
    /// `--name value`: every option of these harnesses takes a value.
    Option(String, String),
    /// A bare word: a scenario filter.
    Filter(String),
}

/// The harness's command line: skips `--bench` (which `cargo bench` adds),
/// answers `-h`/`--help` with `usage`, pairs every other `-`-argument with
/// the one after it (and `fail`s if there is none). The caller matches the
/// option names and `fail`s on one it does not know.
pub fn args(usage: &str) -> Vec<Arg> {
    let mut out = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => {}
            "-h" | "--help" => {
                println!("{usage}");
                std::process::exit(0);
            }
            flag if flag.starts_with('-') => {
                let value = args
                    .next()
                    .unwrap_or_else(|| fail(&format!("{flag} needs a value"), usage));
                out.push(Arg::Option(arg, value));
            }
            _ => out.push(Arg::Filter(arg)),
        }
    }
    out
}

/// `fail`s with "unknown option".
pub fn unknown(option: &str, usage: &str) -> ! {
    fail(&format!("unknown option {option}"), usage)
}

/// Prints `msg` and the `usage` line to stderr and exits with status 2.
pub fn fail(msg: &str, usage: &str) -> ! {
    eprintln!("{msg}\n{usage}");
    std::process::exit(2);
}
