//! Bytes -> a sequence of channel operations on one thread, each checked
//! against a model: a `VecDeque` of message ids per lane, a closed flag and
//! the lane capacities (tokio's `fuzz_linked_list` pattern).
//!
//! Checked after every operation: results (`Full` exactly when the model
//! lane is full, `Disconnected` exactly when closed, receives return the
//! front of the highest non-empty lane, values handed back are the ones
//! sent), `len`/`len_of`/`is_closed`/capacities on every live handle, and
//! drop bookkeeping: every message created is either queued in the model or
//! already dropped exactly once. At the end every message has been dropped
//! exactly once.
//!
//! Blocking operations (`send_with`, `send_batch_with`, `recv`,
//! `recv_batch`) run only when the model says they cannot block.
//!
//! Run: `cargo +nightly fuzz run channel_ops -- -max_total_time=60`.

#![no_main]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use arbitrary::Arbitrary;
use lanebus::{ChannelBuilder, Priority, Receiver, Sender, TryRecvError, TrySendError, LANES};
use libfuzzer_sys::fuzz_target;

/// At most this many live handles of each kind.
const MAX_HANDLES: usize = 4;
/// At most this many values in one `send_batch_with`.
const MAX_BATCH: u8 = 4;
/// At most this many values asked for by one batch receive.
const MAX_RECV_BATCH: u8 = 8;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Lane capacities, mapped to 1..=4.
    caps: [u8; LANES],
    /// At the end, drop the receivers before the senders.
    receivers_first: bool,
    ops: Vec<Op>,
}

/// One operation; `sender`/`receiver`/`handle` pick a live handle (modulo
/// how many there are), `lane` a priority (modulo 4).
#[derive(Arbitrary, Debug)]
enum Op {
    TrySend { sender: u8, lane: u8 },
    Send { sender: u8, lane: u8 },
    SendBatch { sender: u8, lane: u8, n: u8 },
    TryRecv { receiver: u8 },
    Recv { receiver: u8 },
    TryRecvBatch { receiver: u8, max: u8 },
    RecvBatch { receiver: u8, max: u8 },
    Close { by_receiver: bool, handle: u8 },
    CloneSender { sender: u8 },
    DropSender { sender: u8 },
    CloneReceiver { receiver: u8 },
    DropReceiver { receiver: u8 },
}

/// How many times each message (indexed by id) has been dropped.
#[derive(Default)]
struct DropLog {
    drops: RefCell<Vec<u32>>,
}

/// The payload: an id, a heap cell holding the id again (so a double drop or
/// a use after free shows up under AddressSanitizer too) and the drop log.
struct Msg {
    id: usize,
    boxed: Box<usize>,
    log: Rc<DropLog>,
}

impl Msg {
    fn new(log: &Rc<DropLog>) -> Self {
        let mut drops = log.drops.borrow_mut();
        drops.push(0);
        let id = drops.len() - 1;
        Self {
            id,
            boxed: Box::new(id),
            log: log.clone(),
        }
    }

    /// Asserts this is message `id`, intact.
    fn check(&self, id: usize, what: &str) {
        assert_eq!(
            self.id, id,
            "{what}: got message {} instead of {id}",
            self.id
        );
        assert_eq!(*self.boxed, id, "{what}: message {id} is corrupt");
    }
}

impl Drop for Msg {
    fn drop(&mut self) {
        let mut drops = self.log.drops.borrow_mut();
        drops[self.id] += 1;
        let n = drops[self.id];
        drop(drops);
        assert_eq!(n, 1, "message {} dropped {n} times", self.id);
    }
}

/// What the model says a send on a lane does now.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum SendOutcome {
    Sent,
    Full,
    Disconnected,
}

/// What a handle reports about the channel, or what the model says it
/// should report.
#[derive(Debug, PartialEq, Eq)]
struct View {
    closed: bool,
    len: usize,
    is_empty: bool,
    lens: [usize; LANES],
    caps: [usize; LANES],
    capacity: usize,
}

macro_rules! view_of {
    ($h:expr) => {{
        let h = $h;
        View {
            closed: h.is_closed(),
            len: h.len(),
            is_empty: h.is_empty(),
            lens: Priority::ALL.map(|p| h.len_of(p)),
            caps: Priority::ALL.map(|p| h.capacity_of(p)),
            capacity: h.capacity(),
        }
    }};
}

/// The reference: a queue of ids per lane, the capacities, a closed flag.
struct Model {
    lanes: [VecDeque<usize>; LANES],
    caps: [usize; LANES],
    closed: bool,
}

impl Model {
    fn len(&self) -> usize {
        self.lanes.iter().map(VecDeque::len).sum()
    }

    fn send_outcome(&self, lane: usize, n: usize) -> SendOutcome {
        if self.closed {
            SendOutcome::Disconnected
        } else if self.lanes[lane].len() + n > self.caps[lane] {
            SendOutcome::Full
        } else {
            SendOutcome::Sent
        }
    }

    /// The front of the highest non-empty lane.
    fn pop(&mut self) -> Option<usize> {
        self.lanes.iter_mut().find_map(VecDeque::pop_front)
    }

    /// What a receive that finds nothing reports.
    fn empty_error(&self) -> TryRecvError {
        if self.closed {
            TryRecvError::Disconnected
        } else {
            TryRecvError::Empty
        }
    }

    fn view(&self) -> View {
        View {
            closed: self.closed,
            len: self.len(),
            is_empty: self.len() == 0,
            lens: [0, 1, 2, 3].map(|i| self.lanes[i].len()),
            caps: self.caps,
            capacity: self.caps.iter().sum(),
        }
    }
}

fn pick<T>(handles: &[T], i: u8) -> Option<&T> {
    (!handles.is_empty()).then(|| &handles[usize::from(i) % handles.len()])
}

fn priority(lane: u8) -> (usize, Priority) {
    let i = usize::from(lane) % LANES;
    (i, Priority::ALL[i])
}

struct Harness {
    senders: Vec<Sender<Msg>>,
    receivers: Vec<Receiver<Msg>>,
    model: Model,
    log: Rc<DropLog>,
}

impl Harness {
    fn new(caps: [u8; LANES]) -> Self {
        let caps = caps.map(|c| 1 + usize::from(c % 4));
        let builder = Priority::ALL
            .into_iter()
            .fold(ChannelBuilder::new(), |b, p| {
                b.lane_capacity(p, caps[p.index()])
            });
        let (tx, rx) = builder.build();
        Self {
            senders: vec![tx],
            receivers: vec![rx],
            model: Model {
                lanes: Default::default(),
                caps,
                closed: false,
            },
            log: Rc::default(),
        }
    }

    fn run(&mut self, op: &Op) {
        match *op {
            Op::TrySend { sender, lane } => self.try_send(sender, lane),
            Op::Send { sender, lane } => self.send(sender, lane),
            Op::SendBatch { sender, lane, n } => self.send_batch(sender, lane, n % (MAX_BATCH + 1)),
            Op::TryRecv { receiver } => self.try_recv(receiver),
            Op::Recv { receiver } => self.recv(receiver),
            Op::TryRecvBatch { receiver, max } => {
                self.recv_batch(receiver, usize::from(max % (MAX_RECV_BATCH + 1)), false)
            }
            Op::RecvBatch { receiver, max } => {
                self.recv_batch(receiver, usize::from(max % (MAX_RECV_BATCH + 1)), true)
            }
            Op::Close {
                by_receiver,
                handle,
            } => self.close(by_receiver, handle),
            Op::CloneSender { sender } => self.clone_sender(sender),
            Op::DropSender { sender } => self.drop_sender(sender),
            Op::CloneReceiver { receiver } => self.clone_receiver(receiver),
            Op::DropReceiver { receiver } => self.drop_receiver(receiver),
        }
        self.check_views();
        self.check_drops();
    }

    // ----- sending -----

    fn try_send(&mut self, sender: u8, lane: u8) {
        let Some(tx) = pick(&self.senders, sender) else {
            return;
        };
        let (lane, p) = priority(lane);
        let msg = Msg::new(&self.log);
        let id = msg.id;
        let got = tx.try_send_with(p, msg);
        match (got, self.model.send_outcome(lane, 1)) {
            (Ok(()), SendOutcome::Sent) => self.model.lanes[lane].push_back(id),
            (Err(TrySendError::Full(m)), SendOutcome::Full)
            | (Err(TrySendError::Disconnected(m)), SendOutcome::Disconnected) => {
                m.check(id, "try_send_with handed back")
            }
            (got, want) => panic!("try_send_with({p}) = {got:?}, model: {want:?}"),
        }
    }

    /// Blocking send, only when it cannot block.
    fn send(&mut self, sender: u8, lane: u8) {
        let Some(tx) = pick(&self.senders, sender) else {
            return;
        };
        let (lane, p) = priority(lane);
        let want = self.model.send_outcome(lane, 1);
        if want == SendOutcome::Full {
            return;
        }
        let msg = Msg::new(&self.log);
        let id = msg.id;
        match (tx.send_with(p, msg), want) {
            (Ok(()), SendOutcome::Sent) => self.model.lanes[lane].push_back(id),
            (Err(e), SendOutcome::Disconnected) => {
                e.into_inner().check(id, "send_with handed back")
            }
            (got, want) => panic!("send_with({p}) = {got:?}, model: {want:?}"),
        }
    }

    /// `send_batch_with` of `n` new messages, only when they all fit or the
    /// channel is closed (otherwise it would block).
    fn send_batch(&mut self, sender: u8, lane: u8, n: u8) {
        let Some(tx) = pick(&self.senders, sender) else {
            return;
        };
        let (lane, p) = priority(lane);
        let n = usize::from(n);
        let want = if n == 0 {
            SendOutcome::Sent
        } else {
            self.model.send_outcome(lane, n)
        };
        if want == SendOutcome::Full {
            return;
        }
        let mut items: Vec<Msg> = (0..n).map(|_| Msg::new(&self.log)).collect();
        let ids: Vec<usize> = items.iter().map(|m| m.id).collect();
        match (tx.send_batch_with(p, &mut items), want) {
            (Ok(()), SendOutcome::Sent) => {
                assert!(
                    items.is_empty(),
                    "send_batch_with left {} items",
                    items.len()
                );
                self.model.lanes[lane].extend(ids);
            }
            (Err(_), SendOutcome::Disconnected) => check_all(&items, &ids, "send_batch_with kept"),
            (got, want) => panic!("send_batch_with({p}, {n}) = {got:?}, model: {want:?}"),
        }
    }

    // ----- receiving -----

    fn try_recv(&mut self, receiver: u8) {
        let Some(rx) = pick(&self.receivers, receiver) else {
            return;
        };
        let got = rx.try_recv();
        match (got, self.model.pop()) {
            (Ok(m), Some(id)) => m.check(id, "try_recv"),
            (Err(e), None) => assert_eq!(e, self.model.empty_error(), "try_recv"),
            (got, want) => panic!("try_recv = {:?}, model: {want:?}", got.map(|m| m.id)),
        }
    }

    /// Blocking receive, only when it cannot block.
    fn recv(&mut self, receiver: u8) {
        let Some(rx) = pick(&self.receivers, receiver) else {
            return;
        };
        if self.model.len() == 0 && !self.model.closed {
            return;
        }
        match (rx.recv(), self.model.pop()) {
            (Ok(m), Some(id)) => m.check(id, "recv"),
            (Err(_), None) => {}
            (got, want) => panic!("recv = {:?}, model: {want:?}", got.map(|m| m.id)),
        }
    }

    /// `try_recv_batch`, or `recv_batch` (`blocking`) when it cannot block.
    fn recv_batch(&mut self, receiver: u8, max: usize, blocking: bool) {
        let Some(rx) = pick(&self.receivers, receiver) else {
            return;
        };
        let empty = self.model.len() == 0;
        if blocking && max > 0 && empty && !self.model.closed {
            return;
        }
        let mut out = Vec::new();
        let got = if blocking {
            rx.recv_batch(&mut out, max)
                .map_err(|_| TryRecvError::Disconnected)
        } else {
            rx.try_recv_batch(&mut out, max)
        };
        let want: Vec<usize> = (0..max).map_while(|_| self.model.pop()).collect();
        let what = if blocking {
            "recv_batch"
        } else {
            "try_recv_batch"
        };
        match got {
            Ok(k) => {
                assert!(
                    max == 0 || !empty,
                    "{what}({max}) = Ok({k}) on an empty model"
                );
                assert_eq!(k, out.len(), "{what}({max}): count vs out.len()");
                let ids: Vec<usize> = out.iter().map(|m| m.id).collect();
                assert_eq!(ids, want, "{what}({max}): ids received vs model");
                check_all(&out, &want, what);
            }
            Err(e) => {
                assert!(
                    max > 0 && empty,
                    "{what}({max}) = Err({e:?}), model: {want:?}"
                );
                assert!(out.is_empty(), "{what} failed but appended");
                assert_eq!(e, self.model.empty_error(), "{what}({max})");
            }
        }
    }

    // ----- close and handles -----

    fn close(&mut self, by_receiver: bool, handle: u8) {
        let closed_now = if by_receiver {
            pick(&self.receivers, handle).map(Receiver::close)
        } else {
            pick(&self.senders, handle).map(Sender::close)
        };
        if let Some(first) = closed_now {
            assert_eq!(first, !self.model.closed, "close() = {first}");
            self.model.closed = true;
        }
    }

    fn clone_sender(&mut self, sender: u8) {
        if self.senders.len() < MAX_HANDLES {
            if let Some(tx) = pick(&self.senders, sender) {
                self.senders.push(tx.clone());
            }
        }
    }

    fn clone_receiver(&mut self, receiver: u8) {
        if self.receivers.len() < MAX_HANDLES {
            if let Some(rx) = pick(&self.receivers, receiver) {
                self.receivers.push(rx.clone());
            }
        }
    }

    /// The last sender closes the channel; queued messages stay.
    fn drop_sender(&mut self, sender: u8) {
        if self.senders.is_empty() {
            return;
        }
        drop(
            self.senders
                .swap_remove(usize::from(sender) % self.senders.len()),
        );
        if self.senders.is_empty() {
            self.model.closed = true;
        }
    }

    /// The last receiver closes the channel and drops queued messages.
    fn drop_receiver(&mut self, receiver: u8) {
        if self.receivers.is_empty() {
            return;
        }
        drop(
            self.receivers
                .swap_remove(usize::from(receiver) % self.receivers.len()),
        );
        if self.receivers.is_empty() {
            self.model.closed = true;
            for lane in &mut self.model.lanes {
                lane.clear();
            }
        }
    }

    // ----- invariants -----

    fn check_views(&self) {
        let want = self.model.view();
        for tx in &self.senders {
            assert_eq!(view_of!(tx), want, "a Sender's view");
        }
        for rx in &self.receivers {
            assert_eq!(view_of!(rx), want, "a Receiver's view");
        }
    }

    /// Every message is queued (never dropped) or dropped exactly once.
    fn check_drops(&self) {
        let drops = self.log.drops.borrow();
        let dropped = drops.iter().filter(|&&d| d == 1).count();
        assert_eq!(
            dropped + self.model.len(),
            drops.len(),
            "created = queued + dropped"
        );
        for id in self.model.lanes.iter().flatten() {
            assert_eq!(drops[*id], 0, "queued message {id} was dropped");
        }
    }

    /// Drops every handle; then every message must have been dropped once.
    fn finish(mut self, receivers_first: bool) {
        if receivers_first {
            self.receivers.clear();
        }
        self.senders.clear();
        self.receivers.clear();
        let drops = self.log.drops.borrow();
        for (id, &d) in drops.iter().enumerate() {
            assert_eq!(d, 1, "message {id} dropped {d} times by the end");
        }
    }
}

fn check_all(msgs: &[Msg], ids: &[usize], what: &str) {
    assert_eq!(msgs.len(), ids.len(), "{what}: count");
    for (m, &id) in msgs.iter().zip(ids) {
        m.check(id, what);
    }
}

fuzz_target!(|input: Input| {
    let mut harness = Harness::new(input.caps);
    for op in &input.ops {
        harness.run(op);
    }
    harness.finish(input.receivers_first);
});
