//! Bytes -> a `MemoryBudget` and a sequence of operations on it and on a
//! budgeted channel sharing it, on one thread, each checked against a
//! model: the bytes held, the limit, the peak and the counters, with the
//! admission rule of the `budget` module docs decided by the model
//! (tokio's `fuzz_linked_list` pattern).
//!
//! Checked after every operation: each acquire or send is admitted exactly
//! when the model admits it, `TooLarge` exactly when `bytes > max_bytes`;
//! `in_use()` equals the bytes of the live permits (held permits, values
//! queued in the channel, received values held), which never exceed
//! `max_bytes`; `stats()` matches the model (`peak >= in_use`, `limit`,
//! waits, rejections, too-large count); `refresh` sets the limit by the rule
//! of `MemoryBudget::refresh`; received values come highest lane first with
//! their own permit. At the end everything is dropped and `in_use() == 0`.
//!
//! Blocking operations (`acquire`, `send_with`) run only when the model
//! says they cannot block.
//!
//! Run: `cargo +nightly fuzz run budget_ops -- -max_total_time=60`.

#![no_main]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use lanebus::budget::{AcquireError, MemoryReading, MemorySource};
use lanebus::{
    BudgetedSender, ChannelBuilder, MemoryBudget, Permit, Permitted, Priority, PublishError,
    Receiver, TryRecvError, LANES,
};
use libfuzzer_sys::fuzz_target;

/// The largest `max_bytes` tried.
const MAX_BUDGET: u16 = 4096;
/// The weight of a `Vec<u8>` value beyond its length.
const VEC_HEADER: usize = std::mem::size_of::<Vec<u8>>();

#[derive(Arbitrary, Debug)]
struct Input {
    /// Mapped to `0..=MAX_BUDGET`.
    max_bytes: u16,
    /// `None`: the default (80%); values above `max_bytes` are capped.
    high_watermark: Option<u16>,
    /// The pressure priority, modulo 4.
    pressure: u8,
    /// Build with a fake memory source (else `refresh` is a no-op).
    with_source: bool,
    /// Mapped to `0..=100`.
    reserve_percent: u8,
    /// Lane capacity of the budgeted channel, mapped to 1..=4.
    capacity: u8,
    ops: Vec<Op>,
}

/// One operation; `lane` is a priority (modulo 4), `bytes` and `len` are
/// mapped around `max_bytes` by [`Harness::size`], `index` picks a live
/// permit or received value (modulo how many there are).
#[derive(Arbitrary, Debug)]
enum Op {
    TryAcquire {
        lane: u8,
        bytes: u16,
    },
    /// `acquire_timeout` with `Duration::ZERO`.
    AcquireTimeoutZero {
        lane: u8,
        bytes: u16,
    },
    /// Blocking `acquire`, only when it cannot block.
    Acquire {
        lane: u8,
        bytes: u16,
    },
    /// `acquire_async` polled once with a no-op waker, then dropped if
    /// pending (a registered future cancelled).
    AcquireAsyncOnce {
        lane: u8,
        bytes: u16,
    },
    DropPermit {
        index: u8,
    },
    /// `try_send_with` of a `Vec<u8>` of `len` bytes.
    SendBudgeted {
        lane: u8,
        len: u16,
    },
    /// Blocking `send_with`, only when it cannot block.
    SendBudgetedBlocking {
        lane: u8,
        len: u16,
    },
    RecvBudgeted,
    /// `how` modulo 3: drop it, `into_inner` (bytes back at once), or
    /// `into_parts` keeping the permit as a held one.
    DropReceived {
        index: u8,
        how: u8,
    },
    /// Sets what the fake source reads next (`None`: no reading) and calls
    /// `refresh`.
    Refresh {
        reading: Option<(u32, u32)>,
    },
}

/// The budget's background sampler samples this often. Short, so that a
/// run can wait for its sampler thread to end (see [`Sampler`]).
const SAMPLE_INTERVAL: Duration = Duration::from_micros(50);

/// A memory source whose reading the fuzz input sets. It answers only on
/// the harness's thread: the budget's background sampler gets `None` and
/// so never changes the limit behind the model's back.
struct FakeSource {
    reading: Arc<Mutex<Option<MemoryReading>>>,
    owner: ThreadId,
    sampler: Sampler,
}

impl MemorySource for FakeSource {
    fn sample(&mut self) -> Option<MemoryReading> {
        if thread::current().id() != self.owner {
            self.sampler.seen_on_this_thread();
            return None;
        }
        *self.reading.lock().unwrap()
    }
}

/// Tracks the budget's sampler thread, so that each run ends only after it
/// has: a sampler still sleeping when the run returns makes libFuzzer turn
/// per-input leak detection off, and one alive at exit is reported by
/// LeakSanitizer.
#[derive(Clone, Default)]
struct Sampler {
    /// The sampler thread has sampled once (and armed `gone`).
    seen: Arc<AtomicBool>,
    /// The sampler thread has ended (a thread-local's destructor there).
    gone: Arc<AtomicBool>,
}

/// Sets its flag when the thread that holds it ends.
struct OnThreadExit(Arc<AtomicBool>);

impl Drop for OnThreadExit {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

thread_local! {
    static ON_EXIT: RefCell<Option<OnThreadExit>> = const { RefCell::new(None) };
}

impl Sampler {
    fn seen_on_this_thread(&self) {
        ON_EXIT.with(|slot| {
            slot.borrow_mut()
                .get_or_insert_with(|| OnThreadExit(Arc::clone(&self.gone)));
        });
        self.seen.store(true, Ordering::Release);
    }

    /// Waits (at most a second; the thread may have failed to start) until
    /// `flag` is set.
    fn wait(flag: &AtomicBool) {
        let deadline = Instant::now() + Duration::from_secs(1);
        while !flag.load(Ordering::Acquire) && Instant::now() < deadline {
            thread::yield_now();
        }
    }
}

/// The reference: configuration, bytes held, limit and counters.
struct Model {
    max_bytes: usize,
    high_watermark: usize,
    pressure_lane: usize,
    reserve_percent: u8,
    limit: usize,
    used: usize,
    peak: usize,
    waits: [u64; LANES],
    rejections: [u64; LANES],
    too_large: u64,
}

/// What the model says an acquire does now.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Admission {
    Admitted,
    Refused,
    TooLarge,
}

impl Model {
    /// The admission rule of the `budget` module docs.
    fn admission(&self, lane: usize, bytes: usize) -> Admission {
        if bytes > self.max_bytes {
            return Admission::TooLarge;
        }
        if bytes == 0 {
            return Admission::Admitted;
        }
        // Lanes at or above the pressure priority, or a message alone in
        // an empty budget, may use the whole limit; the others stop at the
        // watermark.
        let cap = if lane <= self.pressure_lane || self.used == 0 {
            self.limit
        } else {
            self.high_watermark.min(self.limit)
        };
        if self.used + bytes <= cap {
            Admission::Admitted
        } else {
            Admission::Refused
        }
    }

    fn take(&mut self, bytes: usize) {
        self.used += bytes;
        assert!(
            self.used <= self.max_bytes,
            "model admitted {} > max_bytes",
            self.used
        );
        self.peak = self.peak.max(self.used);
    }

    fn give_back(&mut self, bytes: usize) {
        self.used -= bytes;
    }

    /// The rule of `MemoryBudget::refresh`, phrased as its docs put it:
    /// `max_bytes`, or `in_use + headroom` when the headroom (less the
    /// reserve) is smaller than what the budget could still admit.
    fn refresh(&mut self, reading: MemoryReading) {
        let reserve = reading.max / 100 * u64::from(self.reserve_percent);
        let headroom = reading
            .max
            .saturating_sub(reading.current)
            .saturating_sub(reserve);
        let could_admit = (self.max_bytes - self.used) as u64;
        self.limit = if headroom < could_admit {
            self.used + headroom as usize
        } else {
            self.max_bytes
        };
    }
}

/// A value sent through the channel: its id, the bytes it was charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    id: usize,
    len: usize,
}

struct Harness {
    budget: MemoryBudget,
    tx: BudgetedSender<Vec<u8>>,
    rx: Receiver<Permitted<Vec<u8>>>,
    source: Option<Arc<Mutex<Option<MemoryReading>>>>,
    sampler: Option<Sampler>,
    model: Model,
    /// Held permits with the bytes asked for.
    permits: Vec<(Permit, usize)>,
    /// Values queued in the channel, per lane.
    queued: [VecDeque<Sent>; LANES],
    /// Values received and still held.
    received: Vec<(Permitted<Vec<u8>>, Sent)>,
    capacity: usize,
    next_id: usize,
}

fn lane_of(lane: u8) -> (usize, Priority) {
    let i = usize::from(lane) % LANES;
    (i, Priority::ALL[i])
}

/// The contents of value `id`: `len` copies of its low byte.
fn payload(id: usize, len: usize) -> Vec<u8> {
    vec![id as u8; len]
}

impl Harness {
    fn new(input: &Input) -> Self {
        let max_bytes = usize::from(input.max_bytes % (MAX_BUDGET + 1));
        let pressure = Priority::ALL[usize::from(input.pressure) % LANES];
        let reserve_percent = input.reserve_percent % 101;
        let mut builder = MemoryBudget::builder(max_bytes)
            .pressure_priority(pressure)
            .reserve_percent(reserve_percent);
        if let Some(w) = input.high_watermark {
            builder = builder.high_watermark(usize::from(w));
        }
        let source = input.with_source.then(Arc::default);
        let sampler = input.with_source.then(Sampler::default);
        if let (Some(reading), Some(sampler)) = (&source, &sampler) {
            let fake = FakeSource {
                reading: Arc::clone(reading),
                owner: thread::current().id(),
                sampler: sampler.clone(),
            };
            builder = builder.memory_source(fake, SAMPLE_INTERVAL);
        }
        let budget = builder.build();
        let high_watermark = match input.high_watermark {
            Some(w) => usize::from(w).min(max_bytes),
            None => max_bytes / 5 * 4 + max_bytes % 5 * 4 / 5,
        };
        let capacity = 1 + usize::from(input.capacity % 4);
        let (tx, rx) = ChannelBuilder::new()
            .capacity(capacity)
            .build_budgeted::<Vec<u8>>(budget.clone());
        Self {
            budget,
            tx,
            rx,
            source,
            sampler,
            model: Model {
                max_bytes,
                high_watermark,
                pressure_lane: pressure.index(),
                reserve_percent,
                limit: max_bytes,
                used: 0,
                peak: 0,
                waits: [0; LANES],
                rejections: [0; LANES],
                too_large: 0,
            },
            permits: Vec::new(),
            queued: Default::default(),
            received: Vec::new(),
            capacity,
            next_id: 0,
        }
    }

    /// Maps raw sizes onto `0..=max + max / 2 + 1` (both sides of
    /// `max_bytes`), and `u16::MAX` onto `usize::MAX` (overflow checks).
    fn size(&self, raw: u16) -> usize {
        match raw {
            u16::MAX => usize::MAX,
            r => usize::from(r) % (self.model.max_bytes + self.model.max_bytes / 2 + 2),
        }
    }

    fn run(&mut self, op: &Op) {
        match *op {
            Op::TryAcquire { lane, bytes } => self.try_acquire(lane, self.size(bytes)),
            Op::AcquireTimeoutZero { lane, bytes } => {
                self.acquire_timeout_zero(lane, self.size(bytes))
            }
            Op::Acquire { lane, bytes } => self.acquire(lane, self.size(bytes)),
            Op::AcquireAsyncOnce { lane, bytes } => self.acquire_async_once(lane, self.size(bytes)),
            Op::DropPermit { index } => self.drop_permit(index),
            Op::SendBudgeted { lane, len } => self.send(lane, len, false),
            Op::SendBudgetedBlocking { lane, len } => self.send(lane, len, true),
            Op::RecvBudgeted => self.recv(),
            Op::DropReceived { index, how } => self.drop_received(index, how),
            Op::Refresh { reading } => self.refresh(reading),
        }
        self.check();
    }

    // ----- acquiring -----

    /// Records an admitted permit of `bytes`.
    fn keep(&mut self, permit: Permit, bytes: usize, what: &str) {
        assert_eq!(permit.bytes(), bytes, "{what}: permit size");
        assert!(
            permit.is_from(&self.budget),
            "{what}: permit of another budget"
        );
        self.model.take(bytes);
        self.permits.push((permit, bytes));
    }

    fn try_acquire(&mut self, lane: u8, bytes: usize) {
        let (lane, p) = lane_of(lane);
        let want = self.model.admission(lane, bytes);
        match (self.budget.try_acquire(p, bytes), want) {
            (Ok(permit), Admission::Admitted) => self.keep(permit, bytes, "try_acquire"),
            (Err(AcquireError::OverBudget), Admission::Refused) => self.model.rejections[lane] += 1,
            (Err(AcquireError::TooLarge), Admission::TooLarge) => self.model.too_large += 1,
            (got, want) => panic!("try_acquire({p}, {bytes}) = {got:?}, model: {want:?}"),
        }
    }

    fn acquire_timeout_zero(&mut self, lane: u8, bytes: usize) {
        let (lane, p) = lane_of(lane);
        let want = self.model.admission(lane, bytes);
        match (self.budget.acquire_timeout(p, bytes, Duration::ZERO), want) {
            (Ok(permit), Admission::Admitted) => self.keep(permit, bytes, "acquire_timeout"),
            (Err(AcquireError::Timeout), Admission::Refused) => {
                // It had to wait (once), then timed out.
                self.model.waits[lane] += 1;
                self.model.rejections[lane] += 1;
            }
            (Err(AcquireError::TooLarge), Admission::TooLarge) => self.model.too_large += 1,
            (got, want) => panic!("acquire_timeout({p}, {bytes}, 0) = {got:?}, model: {want:?}"),
        }
    }

    /// Blocking acquire, only when the model says it cannot block.
    fn acquire(&mut self, lane: u8, bytes: usize) {
        let (lane, p) = lane_of(lane);
        let want = self.model.admission(lane, bytes);
        if want == Admission::Refused {
            return;
        }
        match (self.budget.acquire(p, bytes), want) {
            (Ok(permit), Admission::Admitted) => self.keep(permit, bytes, "acquire"),
            (Err(AcquireError::TooLarge), Admission::TooLarge) => self.model.too_large += 1,
            (got, want) => panic!("acquire({p}, {bytes}) = {got:?}, model: {want:?}"),
        }
    }

    /// One poll of `acquire_async`; a pending future is dropped (it
    /// registered, so the drop cancels the registration).
    fn acquire_async_once(&mut self, lane: u8, bytes: usize) {
        let (lane, p) = lane_of(lane);
        let want = self.model.admission(lane, bytes);
        let got = {
            let mut fut = pin!(self.budget.acquire_async(p, bytes));
            fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
        };
        match (got, want) {
            (Poll::Ready(Ok(permit)), Admission::Admitted) => {
                self.keep(permit, bytes, "acquire_async")
            }
            (Poll::Pending, Admission::Refused) => self.model.waits[lane] += 1,
            (Poll::Ready(Err(AcquireError::TooLarge)), Admission::TooLarge) => {
                self.model.too_large += 1
            }
            (got, want) => panic!("acquire_async({p}, {bytes}) = {got:?}, model: {want:?}"),
        }
    }

    fn drop_permit(&mut self, index: u8) {
        if self.permits.is_empty() {
            return;
        }
        let at = usize::from(index) % self.permits.len();
        let (permit, bytes) = self.permits.swap_remove(at);
        drop(permit);
        self.model.give_back(bytes);
    }

    // ----- the budgeted channel -----

    /// `try_send_with`, or `send_with` (`blocking`) when it cannot block.
    /// The permit is taken before the channel is tried, so a `Full` send
    /// still counts towards the peak.
    fn send(&mut self, lane: u8, len: u16, blocking: bool) {
        let (lane, p) = lane_of(lane);
        let len = self.size(len) % (self.model.max_bytes + 2);
        let weight = VEC_HEADER + len;
        let want = self.model.admission(lane, weight);
        let full = self.queued[lane].len() == self.capacity;
        if blocking && (want == Admission::Refused || (want == Admission::Admitted && full)) {
            return;
        }
        let sent = Sent {
            id: self.next_id,
            len,
        };
        self.next_id += 1;
        let got = if blocking {
            self.tx.send_with(p, payload(sent.id, len))
        } else {
            self.tx.try_send_with(p, payload(sent.id, len))
        };
        let what = if blocking {
            "send_with"
        } else {
            "try_send_with"
        };
        let back = match (got, want) {
            (Ok(()), Admission::Admitted) if !full => {
                self.model.take(weight);
                self.queued[lane].push_back(sent);
                return;
            }
            (Err(PublishError::Full(v)), Admission::Admitted) if full => {
                // Admitted, then handed back with its permit dropped.
                self.model.take(weight);
                self.model.give_back(weight);
                v
            }
            (Err(PublishError::OverBudget(v)), Admission::Refused) => {
                self.model.rejections[lane] += 1;
                v
            }
            (Err(PublishError::TooLarge(v)), Admission::TooLarge) => {
                self.model.too_large += 1;
                v
            }
            (got, want) => panic!("{what}({p}, {weight}) = {got:?}, model: {want:?}, full: {full}"),
        };
        assert_eq!(
            back,
            payload(sent.id, len),
            "{what} handed back another value"
        );
    }

    fn recv(&mut self) {
        let want = self.queued.iter_mut().find_map(VecDeque::pop_front);
        match (self.rx.try_recv(), want) {
            (Ok(value), Some(sent)) => {
                assert_eq!(*value, payload(sent.id, sent.len), "try_recv: wrong value");
                assert_eq!(
                    value.permit().bytes(),
                    VEC_HEADER + sent.len,
                    "try_recv: permit"
                );
                assert!(value.permit().is_from(&self.budget), "try_recv: permit");
                self.received.push((value, sent));
            }
            (Err(TryRecvError::Empty), None) => {}
            (got, want) => panic!("try_recv = {:?}, model: {want:?}", got.map(|v| v.len())),
        }
    }

    fn drop_received(&mut self, index: u8, how: u8) {
        if self.received.is_empty() {
            return;
        }
        let at = usize::from(index) % self.received.len();
        let (value, sent) = self.received.swap_remove(at);
        let weight = VEC_HEADER + sent.len;
        match how % 3 {
            0 => {
                drop(value);
                self.model.give_back(weight);
            }
            1 => {
                let inner = value.into_inner();
                // The bytes are back before the value itself is dropped.
                self.model.give_back(weight);
                assert_eq!(self.budget.in_use(), self.model.used, "into_inner");
                assert_eq!(inner, payload(sent.id, sent.len), "into_inner");
            }
            _ => {
                let (inner, permit) = value.into_parts();
                assert_eq!(inner, payload(sent.id, sent.len), "into_parts");
                assert_eq!(permit.bytes(), weight, "into_parts");
                self.permits.push((permit, weight));
            }
        }
    }

    // ----- the limit -----

    fn refresh(&mut self, reading: Option<(u32, u32)>) {
        let reading = reading.map(|(current, max)| MemoryReading {
            current: current.into(),
            max: max.into(),
        });
        let Some(source) = &self.source else {
            assert_eq!(self.budget.refresh(), None, "refresh without a source");
            return;
        };
        *source.lock().unwrap() = reading;
        assert_eq!(
            self.budget.refresh(),
            reading,
            "refresh returns the reading"
        );
        if let Some(reading) = reading {
            self.model.refresh(reading);
        }
    }

    // ----- invariants -----

    /// The model's bytes, summed from what is live.
    fn live_bytes(&self) -> usize {
        let held: usize = self.permits.iter().map(|(_, b)| b).sum();
        let queued: usize = self
            .queued
            .iter()
            .flatten()
            .map(|s| VEC_HEADER + s.len)
            .sum();
        let received: usize = self.received.iter().map(|(_, s)| VEC_HEADER + s.len).sum();
        held + queued + received
    }

    fn check(&self) {
        let m = &self.model;
        assert_eq!(m.used, self.live_bytes(), "model bookkeeping");
        assert_eq!(self.budget.in_use(), m.used, "in_use vs live permits");
        assert_eq!(self.budget.limit(), m.limit, "limit");
        let stats = self.budget.stats();
        assert_eq!(stats.in_use, m.used, "stats.in_use");
        assert!(stats.peak >= stats.in_use, "stats.peak < in_use");
        assert_eq!(stats.peak, m.peak, "stats.peak");
        assert_eq!(stats.max_bytes, m.max_bytes, "stats.max_bytes");
        assert_eq!(
            stats.high_watermark, m.high_watermark,
            "stats.high_watermark"
        );
        assert_eq!(stats.limit, m.limit, "stats.limit");
        assert_eq!(stats.waits, m.waits, "stats.waits");
        assert_eq!(stats.rejections, m.rejections, "stats.rejections");
        assert_eq!(stats.too_large, m.too_large, "stats.too_large");
        for p in Priority::ALL {
            let want = self.queued[p.index()].len();
            assert_eq!(self.rx.len_of(p), want, "len_of({p})");
        }
    }

    /// Drops everything: held permits and received values, then the
    /// receiver (which drops what is queued), then the sender and the
    /// budget; then waits for the sampler thread, if any, to end.
    fn finish(mut self) {
        if let Some(sampler) = &self.sampler {
            // Once it has sampled, its end is observable.
            Sampler::wait(&sampler.seen);
        }
        self.permits.clear();
        self.received.clear();
        let queued: usize = self
            .queued
            .iter()
            .flatten()
            .map(|s| VEC_HEADER + s.len)
            .sum();
        assert_eq!(
            self.budget.in_use(),
            queued,
            "only queued values hold bytes"
        );
        drop(self.rx);
        assert_eq!(
            self.budget.in_use(),
            0,
            "queued values gave their bytes back"
        );
        drop(self.tx);
        assert_eq!(self.budget.in_use(), 0, "in_use after dropping everything");
        drop(self.budget);
        if let Some(sampler) = &self.sampler {
            Sampler::wait(&sampler.gone);
        }
    }
}

fuzz_target!(|input: Input| {
    let mut harness = Harness::new(&input);
    for op in &input.ops {
        harness.run(op);
    }
    harness.finish();
});
