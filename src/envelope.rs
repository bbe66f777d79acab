//! Messages with routing metadata: a [`Header`] and a payload of bytes.
//!
//! An [`Envelope`] keeps its header behind one `Arc` and its payload in a
//! [`Bytes`], so cloning one (to fan a message out) allocates nothing and
//! copies no payload. The payload is opaque bytes: raw bytes are carried
//! as-is, and [`Envelope::encode`]/[`Envelope::decode`] use a [`Codec`] for
//! serde values. The wire form is documented on [`Envelope`].

use crate::pool::Tracker;
use core::fmt;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::budget::{Permit, Weigh};
use crate::codec::{Codec, DecodeError, EncodeError};
use crate::loom::plain::Arc;
use crate::priority::Priority;

/// The first four bytes of every wire form.
const MAGIC: [u8; 4] = *b"LBEV";
/// The wire format version this crate writes and reads.
const VERSION: u8 = 1;
/// Flag bit: a key follows the topic.
const FLAG_KEY: u8 = 1;
/// The bytes of a wire form besides its strings and payload: magic,
/// version, flags, priority, attempt, id, enqueued-at, topic length, header
/// count, payload length.
const FIXED_LEN: usize = 4 + 1 + 1 + 1 + 4 + 8 + 8 + 4 + 4 + 8;
/// The length prefix of a string in the wire form.
const STR_PREFIX: usize = 4;

/// The routing metadata of a message.
///
/// Every string must be shorter than 4 GiB and there must be fewer than
/// 2^32 headers, or [`Envelope::new`] panics (the wire form has 32-bit
/// lengths).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The message id, chosen by the sender.
    pub id: u64,
    /// The topic the message is published on.
    pub topic: Arc<str>,
    /// The lane the message travels in.
    pub priority: Priority,
    /// An optional partitioning or deduplication key.
    pub key: Option<Box<str>>,
    /// When the message was enqueued, in nanoseconds since the unix epoch;
    /// `0` if not set.
    pub enqueued_at: u64,
    /// Free-form name/value pairs, in order; names may repeat.
    pub headers: Vec<(Box<str>, Box<str>)>,
}

impl Header {
    /// A header for `topic` with id 0, [`Priority::Normal`], no key, no
    /// enqueue time and no headers.
    pub fn new(topic: impl Into<Arc<str>>) -> Self {
        Header {
            id: 0,
            topic: topic.into(),
            priority: Priority::Normal,
            key: None,
            enqueued_at: 0,
            headers: Vec::new(),
        }
    }

    /// The value of the first header named `name`, if any.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| &**v)
    }

    /// The length of the wire form without the payload bytes.
    ///
    /// # Panics
    ///
    /// If a string is 4 GiB or longer, or there are 2^32 or more headers.
    fn wire_len(&self) -> usize {
        let mut len = FIXED_LEN + check32(self.topic.len(), "topic");
        if let Some(key) = &self.key {
            len += STR_PREFIX + check32(key.len(), "key");
        }
        check32(self.headers.len(), "header count");
        for (name, value) in &self.headers {
            len += 2 * STR_PREFIX + check32(name.len(), "header name");
            len += check32(value.len(), "header value");
        }
        len
    }
}

/// `len`, if it fits the wire form's 32-bit length fields.
fn check32(len: usize, what: &str) -> usize {
    assert!(
        u32::try_from(len).is_ok(),
        "envelope {what} of {len} does not fit in 32 bits"
    );
    len
}

/// What every clone of an envelope shares.
#[derive(Debug)]
struct Shared {
    header: Header,
    /// `header.wire_len()`, computed once.
    header_weight: usize,
    /// The budget share of the message, released when the last clone goes
    /// (by whoever holds it then: a subscriber, a dead-letter queue, a
    /// shutdown report).
    permit: Permit,
    /// The ticket of a tracked message ([`Message::tracked`](crate::Message::tracked)).
    tracker: Option<Tracker>,
}

/// A message: a shared [`Header`], a payload of bytes and a delivery
/// attempt count.
///
/// Cloning is an `Arc` clone and a [`Bytes`] clone: no allocation, no copy.
/// The attempt count belongs to each clone.
///
/// # Wire form
///
/// [`Envelope::to_wire`] and [`Envelope::from_wire`] convert to and from one
/// versioned, fixed-width, little-endian byte string, with no padding and
/// nothing after the payload:
///
/// | bytes | field |
/// |---|---|
/// | 4 | magic `b"LBEV"` |
/// | 1 | version, `1` |
/// | 1 | flags: bit 0 set if a key follows the topic; other bits are 0 |
/// | 1 | priority: `0` urgent, `1` high, `2` normal, `3` low ([`Priority::index`]) |
/// | 4 | attempt, `u32` |
/// | 8 | id, `u64` |
/// | 8 | enqueued at, `u64` unix nanoseconds (`0`: not set) |
/// | 4 + n | topic: `u32` length, then that many bytes of UTF-8 |
/// | 4 + n | key, only if flag bit 0 is set: `u32` length, then UTF-8 |
/// | 4 | header count, `u32` |
/// | each 4 + n + 4 + m | header: `u32` name length, name, `u32` value length, value (UTF-8) |
/// | 8 + n | payload: `u64` length, then the bytes |
///
/// The form is canonical: an input that [`Envelope::from_wire`] accepts
/// re-encodes to exactly the same bytes. Decoding returns a [`WireError`] for
/// any other input; it never panics, allocates at most a few times the
/// input length, and the decoded payload shares the input buffer.
///
/// # Examples
///
/// ```
/// use lanebus::{Envelope, Header, Priority};
///
/// let header = Header {
///     id: 7,
///     priority: Priority::High,
///     ..Header::new("orders.created")
/// };
/// let env = Envelope::encode(header, &("order-1", 3u32), &Default::default()).unwrap();
/// let (order, qty): (&str, u32) = env.decode_borrowed().unwrap();
/// assert_eq!((env.topic(), order, qty), ("orders.created", "order-1", 3));
///
/// let wire = env.to_wire();
/// assert_eq!(wire.len(), env.weight());
/// assert_eq!(Envelope::from_wire(wire).unwrap(), env);
/// ```
#[derive(Clone)]
pub struct Envelope {
    shared: Arc<Shared>,
    payload: Bytes,
    attempt: u32,
}

impl Envelope {
    /// An envelope carrying `payload` as-is, attempt 0. Takes a [`Bytes`]
    /// or anything that converts to one without copying (`Vec<u8>`,
    /// `String`, `&'static [u8]`, ...).
    ///
    /// # Panics
    ///
    /// If a string of `header` is 4 GiB or longer or it has 2^32 or more
    /// headers: the wire form could not hold them.
    pub fn new(header: Header, payload: impl Into<Bytes>) -> Self {
        let header_weight = header.wire_len();
        let payload = payload.into();
        // A `Bytes` made from a `Vec` allocates its shared reference count on
        // its first clone. Take that allocation here, next to the `Arc`'s,
        // so that cloning an envelope never allocates. Only a unique payload
        // can be such a `Vec`: one that is already shared (a buffer fanned
        // out to many messages) or static skips the increment and decrement,
        // which on a shared count contend with every thread dropping a clone.
        if payload.is_unique() {
            drop(payload.clone());
        }
        Envelope {
            shared: Arc::new(Shared {
                header,
                header_weight,
                permit: Permit::none(),
                tracker: None,
            }),
            payload,
            attempt: 0,
        }
    }

    /// An envelope whose payload is `value` encoded with `codec`.
    ///
    /// On error `header` is dropped; to keep it, encode with
    /// [`Codec::encode`] first and then call [`Envelope::new`].
    ///
    /// # Panics
    ///
    /// As for [`Envelope::new`].
    ///
    /// # Errors
    ///
    /// As for [`Codec::encode`].
    pub fn encode<T: Serialize + ?Sized>(
        header: Header,
        value: &T,
        codec: &Codec,
    ) -> Result<Self, EncodeError> {
        Ok(Envelope::new(header, codec.encode(value)?))
    }

    /// The routing metadata.
    pub fn header(&self) -> &Header {
        &self.shared.header
    }

    /// The message id.
    pub fn id(&self) -> u64 {
        self.header().id
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.header().topic
    }

    /// The priority.
    pub fn priority(&self) -> Priority {
        self.header().priority
    }

    /// The key, if there is one.
    pub fn key(&self) -> Option<&str> {
        self.header().key.as_deref()
    }

    /// When the message was enqueued, in nanoseconds since the unix epoch;
    /// `0` if not set.
    pub fn enqueued_at(&self) -> u64 {
        self.header().enqueued_at
    }

    /// The name/value headers, in order.
    pub fn headers(&self) -> &[(Box<str>, Box<str>)] {
        &self.header().headers
    }

    /// The value of the first header named `name`, if any.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.header().value(name)
    }

    /// The payload. It derefs to `&[u8]`; clone it to share the buffer
    /// without copying.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// How many times delivery has been attempted (0 for a new envelope).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Sets the attempt count of this envelope (not of its clones).
    pub fn set_attempt(&mut self, attempt: u32) {
        self.attempt = attempt;
    }

    /// The length of [`Envelope::to_wire`], computed without encoding.
    pub fn weight(&self) -> usize {
        self.shared.header_weight.saturating_add(self.payload.len())
    }

    /// Bytes of a [`MemoryBudget`](crate::MemoryBudget) this message holds
    /// (0 if it was not published under one). Every clone shares the one
    /// charge, released when the last clone is dropped.
    pub fn budget_bytes(&self) -> usize {
        self.shared.permit.bytes()
    }

    /// Sets the enqueue time if no other clone shares the header (a new
    /// envelope being published).
    pub(crate) fn set_enqueued_at(&mut self, unix_nanos: u64) {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.header.enqueued_at = unix_nanos;
        }
    }

    pub(crate) fn permit(&self) -> &Permit {
        &self.shared.permit
    }

    /// Makes `permit` the budget share of this message (replacing any
    /// other). If the header is shared with other clones, this envelope gets
    /// its own copy of it.
    /// Makes a new envelope (no clone yet) carry `tracker`.
    pub(crate) fn attach_tracker(&mut self, tracker: Tracker) {
        let shared = Arc::get_mut(&mut self.shared).expect("a new envelope is not shared");
        shared.tracker = Some(tracker);
    }

    /// The tracker of a tracked message.
    pub(crate) fn tracker(&self) -> Option<&Tracker> {
        self.shared.tracker.as_ref()
    }

    pub(crate) fn attach_permit(&mut self, permit: Permit) {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => shared.permit = permit,
            None => {
                self.shared = Arc::new(Shared {
                    header: self.shared.header.clone(),
                    header_weight: self.shared.header_weight,
                    permit,
                    tracker: self.shared.tracker.clone(),
                });
            }
        }
    }

    /// Decodes the payload with [`Codec::default`].
    ///
    /// # Errors
    ///
    /// As for [`Codec::decode`].
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        self.decode_with(&Codec::default())
    }

    /// Decodes the payload with `codec`.
    ///
    /// # Errors
    ///
    /// As for [`Codec::decode`].
    pub fn decode_with<T: DeserializeOwned>(&self, codec: &Codec) -> Result<T, DecodeError> {
        codec.decode(&self.payload)
    }

    /// Decodes the payload with [`Codec::default`]; `&str` and `&[u8]`
    /// fields point into the payload.
    ///
    /// # Errors
    ///
    /// As for [`Codec::decode`].
    pub fn decode_borrowed<'a, T: Deserialize<'a>>(&'a self) -> Result<T, DecodeError> {
        self.decode_borrowed_with(&Codec::default())
    }

    /// Decodes the payload with `codec`; `&str` and `&[u8]` fields point
    /// into the payload.
    ///
    /// # Errors
    ///
    /// As for [`Codec::decode`].
    pub fn decode_borrowed_with<'a, T: Deserialize<'a>>(
        &'a self,
        codec: &Codec,
    ) -> Result<T, DecodeError> {
        codec.decode_borrowed(&self.payload)
    }

    /// The wire form (see [the type docs](Envelope#wire-form)): one allocation of
    /// [`Envelope::weight`] bytes.
    pub fn to_wire(&self) -> Bytes {
        let header = self.header();
        let mut out = Vec::with_capacity(self.weight());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(if header.key.is_some() { FLAG_KEY } else { 0 });
        // `Priority::index` is 0..=3.
        out.push(header.priority.index() as u8);
        out.extend_from_slice(&self.attempt.to_le_bytes());
        out.extend_from_slice(&header.id.to_le_bytes());
        out.extend_from_slice(&header.enqueued_at.to_le_bytes());
        put_str(&mut out, &header.topic);
        if let Some(key) = &header.key {
            put_str(&mut out, key);
        }
        put_u32(&mut out, header.headers.len());
        for (name, value) in &header.headers {
            put_str(&mut out, name);
            put_str(&mut out, value);
        }
        out.extend_from_slice(&(self.payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.payload);
        debug_assert_eq!(out.len(), self.weight());
        Bytes::from(out)
    }

    /// Parses a wire form (see [the type docs](Envelope#wire-form)). The payload is a
    /// slice of `wire`: no copy.
    ///
    /// # Errors
    ///
    /// A [`WireError`] if `wire` is not exactly one canonical wire form.
    pub fn from_wire(wire: Bytes) -> Result<Self, WireError> {
        let mut r = Reader { buf: &wire, pos: 0 };
        if r.take(MAGIC.len())? != MAGIC {
            return Err(WireError::BadMagic);
        }
        let version = r.u8()?;
        if version != VERSION {
            return Err(WireError::UnsupportedVersion(version));
        }
        let flags = r.u8()?;
        if flags & !FLAG_KEY != 0 {
            return Err(WireError::BadFlags(flags));
        }
        let priority = r.u8()?;
        let priority =
            Priority::from_index(priority.into()).ok_or(WireError::BadPriority(priority))?;
        let attempt = r.u32()?;
        let id = r.u64()?;
        let enqueued_at = r.u64()?;
        let topic = Arc::from(r.str("topic")?);
        let key = match flags & FLAG_KEY {
            0 => None,
            _ => Some(Box::from(r.str("key")?)),
        };
        let count = r.u32()?;
        // Every header takes at least its two length prefixes: never reserve
        // more entries than the rest of the input could hold.
        let room = (wire.len() - r.pos) / (2 * STR_PREFIX);
        let mut headers = Vec::with_capacity((count as usize).min(room));
        for _ in 0..count {
            let name = Box::from(r.str("header name")?);
            headers.push((name, Box::from(r.str("header value")?)));
        }
        let payload_len = usize::try_from(r.u64()?).map_err(|_| WireError::Truncated)?;
        let start = r.pos;
        r.take(payload_len)?;
        if r.pos != wire.len() {
            return Err(WireError::TrailingBytes {
                extra: wire.len() - r.pos,
            });
        }
        let header = Header {
            id,
            topic,
            priority,
            key,
            enqueued_at,
            headers,
        };
        let mut envelope = Envelope::new(header, wire.slice(start..));
        envelope.attempt = attempt;
        Ok(envelope)
    }
}

/// Equal when headers, attempts and payload bytes are equal.
impl PartialEq for Envelope {
    fn eq(&self, other: &Self) -> bool {
        self.attempt == other.attempt
            && self.payload == other.payload
            && (Arc::ptr_eq(&self.shared, &other.shared) || self.header() == other.header())
    }
}

impl Eq for Envelope {}

/// Its weight in a budget: [`Envelope::weight`], the wire size.
impl Weigh for Envelope {
    fn weight(&self) -> usize {
        Envelope::weight(self)
    }
}

/// Prints the header, the attempt and the payload length, not the payload.
impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("header", self.header())
            .field("attempt", &self.attempt)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

fn put_u32(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).expect("checked by Envelope::new");
    out.extend_from_slice(&len.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// A cursor over a wire form; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let rest = &self.buf[self.pos..];
        if n > rest.len() {
            return Err(WireError::Truncated);
        }
        self.pos += n;
        Ok(&rest[..n])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        self.array().map(u64::from_le_bytes)
    }

    /// A `u32` length, then that many bytes of UTF-8.
    fn str(&mut self, field: &'static str) -> Result<&'a str, WireError> {
        let len = self.u32()?;
        let bytes = self.take(usize::try_from(len).map_err(|_| WireError::Truncated)?)?;
        core::str::from_utf8(bytes).map_err(|_| WireError::InvalidUtf8 { field })
    }
}

/// [`Envelope::from_wire`] failed: the input is not a canonical wire form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The input ended in the middle of a field.
    Truncated,
    /// The input does not start with `b"LBEV"`.
    BadMagic,
    /// The format version is not 1.
    UnsupportedVersion(u8),
    /// A flag bit other than bit 0 is set.
    BadFlags(u8),
    /// The priority byte is not 0, 1, 2 or 3.
    BadPriority(u8),
    /// A string is not valid UTF-8.
    InvalidUtf8 {
        /// Which string: `"topic"`, `"key"`, `"header name"` or
        /// `"header value"`.
        field: &'static str,
    },
    /// Bytes follow the payload.
    TrailingBytes {
        /// How many.
        extra: usize,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("envelope ended in the middle of a field"),
            Self::BadMagic => f.write_str("not an envelope: bad magic bytes"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported envelope version {v}"),
            Self::BadFlags(flags) => write!(f, "unknown envelope flags {flags:#04x}"),
            Self::BadPriority(p) => write!(f, "invalid envelope priority {p}"),
            Self::InvalidUtf8 { field } => write!(f, "envelope {field} is not valid UTF-8"),
            Self::TrailingBytes { extra } => {
                write!(f, "{extra} trailing bytes after the envelope payload")
            }
        }
    }
}

impl std::error::Error for WireError {}
