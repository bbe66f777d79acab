//! # lanebus
//!
//! A lock-free, in-process message bus: a bounded multi-producer
//! multi-consumer channel with four priority lanes ([`Priority`]), each a
//! lock-free ring buffer; a [`bus`] of topics with zero-copy envelopes and a
//! memory budget; and a work-stealing worker [`pool`] that settles every
//! message (ack, retry, dead letter).
//!
//! - Receivers always take from the highest non-empty lane first; within a
//!   lane, each producer's messages arrive in the order it sent them.
//! - Blocking, timeout, try, batch and async forms of send and receive on the
//!   same channel; `Receiver` is a `futures_core::Stream` and `Sender` a
//!   `futures_sink::Sink`.
//! - Every failed send hands the value back; every message sent is received
//!   exactly once or handed back, and messages left in a dropped channel are
//!   dropped exactly once.
//! - Waiting spins, then yields, then parks; when nobody waits, sending and
//!   receiving take no lock and make no system call.
//!
//! # Examples
//!
//! ```
//! use lanebus::Priority;
//! use std::thread;
//!
//! let (tx, rx) = lanebus::bounded::<String>(64);
//! let producer = thread::spawn(move || {
//!     tx.send("routine".to_string()).unwrap();
//!     tx.send_with(Priority::Urgent, "page the on-call".to_string()).unwrap();
//!     // `tx` is dropped here: the channel closes once it is drained.
//! });
//! producer.join().unwrap();
//!
//! // Urgent first, then Normal, then `Err` once closed and empty.
//! assert_eq!(rx.recv().unwrap(), "page the on-call");
//! assert_eq!(rx.recv().unwrap(), "routine");
//! assert!(rx.recv().is_err());
//! ```
//!
//! # Verification
//!
//! Every atomic protocol (ring slots, full/empty, park/wake, close) has a
//! [loom](https://docs.rs/loom) model in the `loom-tests/` crate of the
//! repository; the test suite also runs under miri and ThreadSanitizer, and
//! a fuzz target checks operation sequences against a model.

#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms,
    clippy::undocumented_unsafe_blocks
)]
#![deny(unsafe_op_in_unsafe_fn)]

mod backoff;
pub mod budget;
mod budgeted;
pub mod bus;
mod chan;
mod channel;
mod codec;
mod envelope;
mod error;
mod future;
mod gate;
mod loom;
mod pad;
pub mod pool;
mod priority;
mod ring;
mod subscription;
mod topic;
mod wait;

pub use budget::{AcquireError, BudgetStats, MemoryBudget, Permit, Weigh};
pub use budgeted::{BudgetedSender, Permitted};
pub use bus::{Bus, BusBuilder, BusStats, Message, Publisher, SubscribeOptions};
pub use channel::{bounded, ChannelBuilder, Iter, Receiver, Sender, TryIter};
pub use codec::{Codec, DecodeError, EncodeError};
pub use envelope::{Envelope, Header, WireError};
pub use error::{
    PublishError, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError,
    TrySendError,
};
pub use future::{RecvFut, SendFut};
pub use pool::{Delivery, Outcome, WorkerPool};
pub use priority::{ParsePriorityError, Priority, LANES};
pub use subscription::{SlowSubscriber, Subscription};
pub use topic::{validate_topic, TopicError, MAX_TOPIC_LEN};

/// From now on, in the running loom model, every deadline has passed
/// (`recv_timeout`, `send_timeout` and the other timed waits time out at
/// their next check). loom has no clock: a model thread that calls this
/// lets loom put the moment a deadline passes between any two steps of a
/// timed wait. Only built with `--cfg loom`, for `loom-tests/`.
#[cfg(loom)]
#[doc(hidden)]
pub fn loom_expire_deadlines() {
    crate::loom::expire_deadlines();
}

/// The waiter list, for the loom models of its contract in `loom-tests/`.
/// Only built with `--cfg loom`.
#[cfg(loom)]
#[doc(hidden)]
pub use wait::loom_api as loom_wait;

/// The examples of README.md, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
