//! Memory-pressure backpressure: [`MemoryBudget`], a byte budget with a
//! priority-aware high watermark, and [`Permit`], the RAII share of it that
//! travels with a message.
//!
//! # Admission
//!
//! An acquire of `n` bytes at priority `p`, with `used` bytes held:
//!
//! - `n > max_bytes`: fails at once with [`AcquireError::TooLarge`]; it could
//!   never be admitted, so it must not wait.
//! - `p` at or above the budget's *pressure priority* (default
//!   [`Priority::High`]): admitted while `used + n <= limit`, where `limit` is
//!   `max_bytes` (or less, while a [`MemorySource`] reports the process near
//!   its own limit).
//! - lower priorities: admitted while `used + n <= high_watermark` (capped at
//!   `limit`). A message larger than the watermark alone is admitted when
//!   nothing else is held, so it waits for the budget to empty but not for
//!   ever.
//!
//! So above the watermark the low lanes wait (or time out, or get
//! [`AcquireError::OverBudget`] from `try_acquire`) while the high lanes
//! still pass; at `limit` everything waits. A zero-byte acquire always
//! succeeds.
//!
//! Waiters of every priority wait on one list and every release wakes them
//! all, so each re-checks its own rule (weights differ, so waking one could
//! pick one that still does not fit). That costs nothing while nobody waits.
//! Among waiters there is no queueing order: a stream of small acquires can
//! overtake a large one.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::FusedFuture;

use crate::gate::Gate;
use crate::loom::{Arc, AtomicUsize, Mutex, Ordering};
use crate::priority::{Priority, LANES};
use crate::wait::{Attempt, TimedOut, WaitId};

/// Why an acquire failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum AcquireError {
    /// `try_acquire`: the budget cannot admit this many bytes at this
    /// priority now.
    OverBudget,
    /// The request is larger than the whole budget (`max_bytes`); it can
    /// never be admitted.
    TooLarge,
    /// The deadline passed before the bytes were admitted.
    Timeout,
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OverBudget => "memory budget exhausted for this priority",
            Self::TooLarge => "message larger than the whole memory budget",
            Self::Timeout => "timed out waiting for the memory budget",
        })
    }
}

impl std::error::Error for AcquireError {}

/// A reading of the process's memory: bytes in use and the most it may use.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MemoryReading {
    /// Bytes in use now.
    pub current: u64,
    /// The limit the process runs under.
    pub max: u64,
}

/// A process-level memory signal that can tighten a budget (see
/// [`BudgetBuilder::memory_source`]). It is sampled on a timer, never per
/// message.
pub trait MemorySource: Send + 'static {
    /// Reads the process's memory now; `None` if it cannot be read (the
    /// budget then keeps its configured limit).
    fn sample(&mut self) -> Option<MemoryReading>;
}

/// The cgroup v2 memory controller of this process: `memory.current` and
/// `memory.max` (no reading while `memory.max` is `"max"`, i.e. unlimited).
#[derive(Clone, Debug)]
pub struct CgroupMemory {
    dir: std::path::PathBuf,
}

impl CgroupMemory {
    /// The cgroup mounted at `/sys/fs/cgroup` (the view from inside a
    /// container).
    pub fn new() -> Self {
        Self::at("/sys/fs/cgroup")
    }

    /// The cgroup whose files are in `dir`.
    pub fn at(dir: impl Into<std::path::PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn read(&self, file: &str) -> Option<u64> {
        let text = std::fs::read_to_string(self.dir.join(file)).ok()?;
        text.trim().parse().ok()
    }
}

impl Default for CgroupMemory {
    fn default() -> Self {
        Self::new()
    }
}

impl MemorySource for CgroupMemory {
    fn sample(&mut self) -> Option<MemoryReading> {
        Some(MemoryReading {
            current: self.read("memory.current")?,
            max: self.read("memory.max")?,
        })
    }
}

/// The resident set size of this process (`VmRSS` in `/proc/self/status`)
/// against a limit you choose.
#[derive(Clone, Debug)]
pub struct ProcessRss {
    max: u64,
}

impl ProcessRss {
    /// Treats `max` bytes of resident memory as the process's limit.
    pub fn new(max: u64) -> Self {
        Self { max }
    }
}

impl MemorySource for ProcessRss {
    fn sample(&mut self) -> Option<MemoryReading> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(MemoryReading {
            current: kib.checked_mul(1024)?,
            max: self.max,
        })
    }
}

/// Configures a [`MemoryBudget`].
pub struct BudgetBuilder {
    max_bytes: usize,
    high_watermark: usize,
    pressure_priority: Priority,
    source: Option<(Box<dyn MemorySource>, Duration)>,
    reserve_percent: u8,
}

impl fmt::Debug for BudgetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetBuilder")
            .field("max_bytes", &self.max_bytes)
            .field("high_watermark", &self.high_watermark)
            .field("pressure_priority", &self.pressure_priority)
            .field("memory_source", &self.source.as_ref().map(|s| s.1))
            .field("reserve_percent", &self.reserve_percent)
            .finish()
    }
}

impl BudgetBuilder {
    /// The high watermark in bytes (default: 80% of `max_bytes`). Values
    /// above `max_bytes` are capped at it.
    pub fn high_watermark(mut self, bytes: usize) -> Self {
        self.high_watermark = bytes;
        self
    }

    /// The lowest priority still admitted above the high watermark (default
    /// [`Priority::High`]: `Urgent` and `High` pass, `Normal` and `Low`
    /// wait). [`Priority::Low`] makes the watermark moot; [`Priority::Urgent`]
    /// reserves the room above it for urgent messages.
    pub fn pressure_priority(mut self, priority: Priority) -> Self {
        self.pressure_priority = priority;
        self
    }

    /// Samples `source` every `interval` on a background thread (which ends
    /// as soon as the budget is dropped) and tightens the budget's limit while the
    /// process is near its own memory limit; see [`MemoryBudget::refresh`].
    pub fn memory_source(mut self, source: impl MemorySource, interval: Duration) -> Self {
        self.source = Some((Box::new(source), interval));
        self
    }

    /// The share of the process limit (in percent, default 10) that the
    /// budget keeps free when a memory source is set.
    ///
    /// # Panics
    ///
    /// If `percent > 100`.
    pub fn reserve_percent(mut self, percent: u8) -> Self {
        assert!(percent <= 100, "reserve_percent is a percentage");
        self.reserve_percent = percent;
        self
    }

    /// Builds the budget (and starts the sampler, if a source is set).
    pub fn build(self) -> MemoryBudget {
        let (source, interval) = match self.source {
            Some((source, interval)) => (Some(Mutex::new(source)), Some(interval)),
            None => (None, None),
        };
        let budget = MemoryBudget {
            inner: Arc::new(Inner {
                gate: Gate::new(),
                max_bytes: self.max_bytes,
                high_watermark: self.high_watermark.min(self.max_bytes),
                pressure_lane: self.pressure_priority.index(),
                limit: AtomicUsize::new(self.max_bytes),
                peak: AtomicUsize::new(0),
                waits: Default::default(),
                rejections: Default::default(),
                too_large: AtomicUsize::new(0),
                source,
                reserve_percent: self.reserve_percent,
                #[cfg(not(loom))]
                sampler: std::sync::OnceLock::new(),
            }),
        };
        if let Some(interval) = interval {
            budget.start_sampler(interval);
        }
        budget
    }
}

/// A shared byte budget (clones share it). See the module docs of
/// [`crate::budget`] for the admission rules.
///
/// # Examples
///
/// ```
/// use lanebus::{budget::AcquireError, MemoryBudget, Priority};
///
/// let budget = MemoryBudget::builder(1000).high_watermark(600).build();
/// let a = budget.try_acquire(Priority::Normal, 500).unwrap();
/// // Above the watermark: Normal waits, High still passes.
/// assert_eq!(budget.try_acquire(Priority::Normal, 200).unwrap_err(), AcquireError::OverBudget);
/// let b = budget.try_acquire(Priority::High, 400).unwrap();
/// assert_eq!(budget.in_use(), 900);
/// drop((a, b)); // permits give their bytes back when dropped
/// assert_eq!(budget.in_use(), 0);
/// assert_eq!(budget.try_acquire(Priority::Low, 2000).unwrap_err(), AcquireError::TooLarge);
/// ```
#[derive(Clone)]
pub struct MemoryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    gate: Gate,
    max_bytes: usize,
    /// At most `max_bytes`.
    high_watermark: usize,
    /// Lanes `0..=pressure_lane` are admitted above the watermark.
    pressure_lane: usize,
    /// The admission limit: `max_bytes`, or less while the memory source
    /// reports pressure. Read with SeqCst in admission, swapped with SeqCst
    /// by `refresh` (a handshake with waiters, as in `gate`).
    limit: AtomicUsize,
    peak: AtomicUsize,
    waits: [AtomicUsize; LANES],
    rejections: [AtomicUsize; LANES],
    too_large: AtomicUsize,
    source: Option<Mutex<Box<dyn MemorySource>>>,
    reserve_percent: u8,
    /// The sampler thread, woken to exit when the budget is dropped.
    #[cfg(not(loom))]
    sampler: std::sync::OnceLock<std::thread::Thread>,
}

#[cfg(not(loom))]
impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(thread) = self.sampler.get() {
            thread.unpark();
        }
    }
}

/// Counters of a [`MemoryBudget`] (a snapshot). Per-priority arrays are
/// indexed by [`Priority::index`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BudgetStats {
    /// Bytes held by live permits.
    pub in_use: usize,
    /// The most bytes ever held at once.
    pub peak: usize,
    /// The configured budget.
    pub max_bytes: usize,
    /// The configured high watermark.
    pub high_watermark: usize,
    /// The admission limit now (below `max_bytes` under process pressure).
    pub limit: usize,
    /// Acquires that had to wait, per priority.
    pub waits: [u64; LANES],
    /// Acquires refused (`try_acquire`) or timed out, per priority.
    pub rejections: [u64; LANES],
    /// Acquires larger than the whole budget.
    pub too_large: u64,
}

impl MemoryBudget {
    /// A budget of `max_bytes` with the default watermark (80%) and
    /// pressure priority ([`Priority::High`]).
    pub fn new(max_bytes: usize) -> Self {
        Self::builder(max_bytes).build()
    }

    /// Starts configuring a budget of `max_bytes`.
    pub fn builder(max_bytes: usize) -> BudgetBuilder {
        BudgetBuilder {
            max_bytes,
            high_watermark: max_bytes / 5 * 4 + max_bytes % 5 * 4 / 5,
            pressure_priority: Priority::High,
            source: None,
            reserve_percent: 10,
        }
    }

    /// Takes `bytes` for a message of `priority` if the budget admits them
    /// now.
    ///
    /// # Errors
    ///
    /// [`AcquireError::OverBudget`] if not admitted now,
    /// [`AcquireError::TooLarge`] if `bytes > max_bytes`.
    pub fn try_acquire(&self, priority: Priority, bytes: usize) -> Result<Permit, AcquireError> {
        let lane = priority.index();
        self.check_size(bytes)?;
        match Inner::try_take(&self.inner, lane, bytes) {
            Some(permit) => Ok(permit),
            None => {
                self.inner.rejections[lane].fetch_add(1, Ordering::Relaxed);
                Err(AcquireError::OverBudget)
            }
        }
    }

    /// Takes `bytes` for a message of `priority`, waiting as long as needed.
    ///
    /// # Errors
    ///
    /// [`AcquireError::TooLarge`] if `bytes > max_bytes` (at once).
    pub fn acquire(&self, priority: Priority, bytes: usize) -> Result<Permit, AcquireError> {
        self.acquire_deadline(priority, bytes, None)
    }

    /// Takes `bytes` for a message of `priority`, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`] when the time is up,
    /// [`AcquireError::TooLarge`] if `bytes > max_bytes` (at once).
    pub fn acquire_timeout(
        &self,
        priority: Priority,
        bytes: usize,
        timeout: Duration,
    ) -> Result<Permit, AcquireError> {
        self.acquire_deadline(priority, bytes, Instant::now().checked_add(timeout))
    }

    /// Takes `bytes` for a message of `priority`, waiting until `deadline`
    /// (`None`: for ever).
    ///
    /// # Errors
    ///
    /// As [`MemoryBudget::acquire_timeout`].
    pub fn acquire_deadline(
        &self,
        priority: Priority,
        bytes: usize,
        deadline: Option<Instant>,
    ) -> Result<Permit, AcquireError> {
        self.acquire_unless(priority, bytes, deadline, || false)
            .map(|permit| permit.expect("never stopped"))
    }

    /// [`MemoryBudget::acquire_deadline`] that also gives up, with
    /// `Ok(None)`, once `stop()` is true (checked before every attempt; the
    /// caller wakes the waiters when `stop` turns true, as `Bus::close`
    /// does).
    pub(crate) fn acquire_unless(
        &self,
        priority: Priority,
        bytes: usize,
        deadline: Option<Instant>,
        stop: impl Fn() -> bool,
    ) -> Result<Option<Permit>, AcquireError> {
        let lane = priority.index();
        self.check_size(bytes)?;
        let mut counted = false;
        let inner = &self.inner;
        let waited = inner.gate.waiters().block(deadline, || {
            if stop() {
                return Attempt::Done(None);
            }
            match Inner::acquire_attempt(inner, lane, bytes, &mut counted) {
                Attempt::Done(permit) => Attempt::Done(Some(permit)),
                Attempt::Wait => Attempt::Wait,
                Attempt::Busy => Attempt::Busy,
            }
        });
        waited.map_err(|TimedOut| {
            inner.rejections[lane].fetch_add(1, Ordering::Relaxed);
            AcquireError::Timeout
        })
    }

    /// A future that takes `bytes` for a message of `priority`; it resolves
    /// to `Err(TooLarge)` at once if `bytes > max_bytes`.
    pub fn acquire_async(&self, priority: Priority, bytes: usize) -> AcquireFut<'_> {
        AcquireFut {
            budget: self,
            lane: priority.index(),
            bytes,
            counted: false,
            wait: None,
            done: false,
        }
    }

    /// One admission attempt for a waiting loop of another layer (the bus
    /// adds its own stop condition); `counted` records the first wait.
    pub(crate) fn attempt(
        &self,
        priority: Priority,
        bytes: usize,
        counted: &mut bool,
    ) -> Attempt<Permit> {
        Inner::acquire_attempt(&self.inner, priority.index(), bytes, counted)
    }

    /// The acquirers waiting for a release.
    pub(crate) fn waiters(&self) -> &crate::wait::WaitList {
        self.inner.gate.waiters()
    }

    pub(crate) fn check_size(&self, bytes: usize) -> Result<(), AcquireError> {
        if bytes > self.inner.max_bytes {
            self.inner.too_large.fetch_add(1, Ordering::Relaxed);
            return Err(AcquireError::TooLarge);
        }
        Ok(())
    }

    /// Bytes held by live permits now.
    pub fn in_use(&self) -> usize {
        self.inner.gate.used()
    }

    /// The configured budget.
    pub fn max_bytes(&self) -> usize {
        self.inner.max_bytes
    }

    /// The configured high watermark.
    pub fn high_watermark(&self) -> usize {
        self.inner.high_watermark
    }

    /// The admission limit now: `max_bytes`, or less while a memory source
    /// reports the process near its limit.
    pub fn limit(&self) -> usize {
        self.inner.limit.load(Ordering::Relaxed)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> BudgetStats {
        let inner = &*self.inner;
        let load = |a: &AtomicUsize| a.load(Ordering::Relaxed) as u64;
        BudgetStats {
            in_use: inner.gate.used(),
            peak: inner.peak.load(Ordering::Relaxed),
            max_bytes: inner.max_bytes,
            high_watermark: inner.high_watermark,
            limit: inner.limit.load(Ordering::Relaxed),
            waits: inner.waits.each_ref().map(load),
            rejections: inner.rejections.each_ref().map(load),
            too_large: load(&inner.too_large),
        }
    }

    /// Samples the memory source now (the background sampler calls this)
    /// and sets the limit: `max_bytes`, or, when the process's headroom
    /// (`max - current`, less the reserve) is smaller than what the budget
    /// could still admit, `in_use + headroom`. Returns the reading; `None`
    /// (limit unchanged) without a source or a reading.
    pub fn refresh(&self) -> Option<MemoryReading> {
        let inner = &*self.inner;
        let reading = inner
            .source
            .as_ref()?
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sample()?;
        let reserve = reading.max / 100 * u64::from(inner.reserve_percent);
        let headroom = reading
            .max
            .saturating_sub(reading.current)
            .saturating_sub(reserve);
        let headroom = usize::try_from(headroom).unwrap_or(usize::MAX);
        let limit = inner
            .gate
            .used()
            .saturating_add(headroom)
            .min(inner.max_bytes);
        // SeqCst RMW, then the waiters' count: the handshake with a waiter
        // that re-checks the limit after registering (as in `gate`).
        let old = inner.limit.swap(limit, Ordering::SeqCst);
        if limit > old {
            inner.gate.waiters().notify_all();
        }
        Some(reading)
    }

    #[cfg(not(loom))]
    fn start_sampler(&self, interval: Duration) {
        let weak = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("lanebus-budget-sampler".into())
            .spawn(move || loop {
                // Unparked when the budget is dropped (`Drop for Inner`).
                std::thread::park_timeout(interval);
                match weak.upgrade() {
                    Some(inner) => {
                        MemoryBudget { inner }.refresh();
                    }
                    None => return,
                }
            });
        // Without the thread the budget still works, with its static limit.
        if let Ok(handle) = spawned {
            let _ = self.inner.sampler.set(handle.thread().clone());
        }
    }

    #[cfg(loom)]
    fn start_sampler(&self, _interval: Duration) {}
}

impl fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("in_use", &self.in_use())
            .field("max_bytes", &self.inner.max_bytes)
            .field("high_watermark", &self.inner.high_watermark)
            .field("limit", &self.limit())
            .finish()
    }
}

impl Inner {
    /// The admission rule of the module docs, for `used` bytes held.
    #[inline]
    fn admits(&self, lane: usize, bytes: usize, used: usize) -> bool {
        if bytes == 0 {
            return true;
        }
        // SeqCst: pairs with the swap in `refresh` (see `limit`).
        let limit = self.limit.load(Ordering::SeqCst);
        let cap = if lane <= self.pressure_lane {
            limit
        } else if used == 0 {
            // The budget is empty: even a message above the watermark alone
            // may go, or it would wait for ever.
            limit
        } else {
            self.high_watermark.min(limit)
        };
        used.checked_add(bytes).is_some_and(|total| total <= cap)
    }

    // `this: &Arc<Self>` rather than `self: &Arc<Self>`: loom's `Arc` is not
    // a method receiver on stable Rust, and these must build under loom.
    #[inline]
    fn try_take(this: &Arc<Self>, lane: usize, bytes: usize) -> Option<Permit> {
        let total = this
            .gate
            .try_acquire(bytes, |used| this.admits(lane, bytes, used))?;
        if total > this.peak.load(Ordering::Relaxed) {
            this.peak.fetch_max(total, Ordering::Relaxed);
        }
        Some(Permit {
            budget: Some(Arc::clone(this)),
            bytes,
        })
    }

    fn acquire_attempt(
        this: &Arc<Self>,
        lane: usize,
        bytes: usize,
        counted: &mut bool,
    ) -> Attempt<Permit> {
        match Self::try_take(this, lane, bytes) {
            Some(permit) => Attempt::Done(permit),
            None => {
                if !*counted {
                    *counted = true;
                    this.waits[lane].fetch_add(1, Ordering::Relaxed);
                }
                Attempt::Wait
            }
        }
    }
}

/// A share of a [`MemoryBudget`]: `bytes()` bytes, given back when the permit
/// is dropped (by whoever holds the message last). Not `Clone`: one permit
/// is released exactly once.
pub struct Permit {
    /// `None` for a permit of no budget ([`Permit::none`]).
    budget: Option<Arc<Inner>>,
    bytes: usize,
}

impl Permit {
    /// A permit that holds nothing from no budget (for messages sent without
    /// one).
    pub fn none() -> Self {
        Self {
            budget: None,
            bytes: 0,
        }
    }

    /// The bytes this permit holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// True if this permit was taken from `budget`.
    pub fn is_from(&self, budget: &MemoryBudget) -> bool {
        self.budget
            .as_ref()
            .is_some_and(|b| Arc::ptr_eq(b, &budget.inner))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            if self.bytes > 0 {
                // Wake every waiter: each re-checks its own rule (module docs).
                budget.gate.release(self.bytes, usize::MAX);
            }
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

/// A future that acquires from a budget; see [`MemoryBudget::acquire_async`].
/// Dropping it before it completes acquires nothing.
#[must_use = "futures do nothing unless polled"]
pub struct AcquireFut<'a> {
    budget: &'a MemoryBudget,
    lane: usize,
    bytes: usize,
    counted: bool,
    wait: Option<WaitId>,
    done: bool,
}

/// # Panics
///
/// If polled again after it returned `Ready`.
impl Future for AcquireFut<'_> {
    type Output = Result<Permit, AcquireError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(!this.done, "AcquireFut polled after completion");
        if let Err(e) = this.budget.check_size(this.bytes) {
            this.done = true;
            return Poll::Ready(Err(e));
        }
        let inner = &this.budget.inner;
        let (lane, bytes, counted) = (this.lane, this.bytes, &mut this.counted);
        let out = inner.gate.waiters().poll(&mut this.wait, false, cx, || {
            Inner::acquire_attempt(inner, lane, bytes, counted)
        });
        if out.is_ready() {
            this.done = true;
        }
        out.map(Ok)
    }
}

impl FusedFuture for AcquireFut<'_> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl Drop for AcquireFut<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.wait.take() {
            self.budget.inner.gate.waiters().cancel_and_forward(id);
        }
    }
}

impl fmt::Debug for AcquireFut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcquireFut")
            .field("priority", &Priority::ALL[self.lane])
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

/// The weight of a value in a [`MemoryBudget`]: the bytes it stands for.
/// The default is its inline size (`size_of_val`); types that own heap
/// memory should add it.
///
/// # Examples
///
/// ```
/// use lanebus::Weigh;
///
/// struct Order { id: u64, note: String }
/// impl Weigh for Order {
///     fn weight(&self) -> usize {
///         std::mem::size_of::<Self>() + self.note.len()
///     }
/// }
/// assert_eq!(7u64.weight(), 8);
/// ```
pub trait Weigh {
    /// Bytes this value stands for.
    fn weight(&self) -> usize
    where
        Self: Sized,
    {
        core::mem::size_of_val(self)
    }
}

macro_rules! weigh_inline {
    ($($t:ty),*) => { $(impl Weigh for $t {})* };
}
weigh_inline!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64
);

impl<const N: usize> Weigh for [u8; N] {}

impl Weigh for String {
    fn weight(&self) -> usize {
        core::mem::size_of::<Self>() + self.len()
    }
}

impl Weigh for Vec<u8> {
    fn weight(&self) -> usize {
        core::mem::size_of::<Self>() + self.len()
    }
}

impl Weigh for Box<str> {
    fn weight(&self) -> usize {
        core::mem::size_of::<Self>() + self.len()
    }
}

impl Weigh for Box<[u8]> {
    fn weight(&self) -> usize {
        core::mem::size_of::<Self>() + self.len()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn default_watermark_is_80_percent() {
        assert_eq!(MemoryBudget::new(1000).high_watermark(), 800);
        assert_eq!(MemoryBudget::new(7).high_watermark(), 5);
        assert_eq!(
            MemoryBudget::new(usize::MAX).high_watermark(),
            usize::MAX / 5 * 4
        );
    }

    #[test]
    fn low_priority_above_watermark_alone_is_admitted_when_empty() {
        let budget = MemoryBudget::builder(100).high_watermark(10).build();
        let big = budget.try_acquire(Priority::Low, 50).unwrap();
        assert_eq!(
            budget.try_acquire(Priority::Low, 1).unwrap_err(),
            AcquireError::OverBudget
        );
        drop(big);
        assert!(budget.try_acquire(Priority::Low, 1).is_ok());
    }
}
