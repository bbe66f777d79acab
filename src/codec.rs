//! Payload encoding: serde values to bytes and back, within a size limit.
//!
//! [`Codec`] is the only place that names the encoding library, so it can be
//! replaced without changing the public API: its errors carry messages, not
//! the library's types. The encoding is bincode 2's standard configuration
//! (little-endian, variable-length integers, lengths before sequences), which
//! is compact but not self-describing: decode with the type that encoded.
//!
//! bincode 2.0.1 on its own allocates the claimed length of a `String` or
//! byte buffer before checking the input holds it: a 9-byte input claiming
//! 2^40 bytes makes the allocation fail, which aborts the process. The
//! `guard` submodule closes that and the other holes listed on [`Codec`].

use core::fmt;

use bincode::error::{DecodeError as BincodeDecodeError, EncodeError as BincodeEncodeError};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

mod guard;

use guard::{Limits, Root, Tripped};

/// Encodes serde values to [`Bytes`] and decodes them back, refusing
/// encodings longer than a limit.
///
/// # Hostile input
///
/// Decoding never trusts a length prefix. The input must not exceed the
/// limit and must be consumed exactly. A claimed length never makes the
/// decoder allocate before the bytes are known to be there, no collection
/// preallocates more elements than the input has bytes, a payload may hold
/// at most `limit` sequence elements and map entries (more is only possible
/// with elements that encode to nothing, like `()`), and nesting is limited
/// to [`Codec::MAX_DEPTH`] levels so a recursive type cannot overflow the
/// stack.
///
/// The encoding is compact and not self-describing: decode with the type
/// that encoded. Serde features that need a self-describing format
/// (`deserialize_any`: untagged or internally tagged enums, `flatten`) are
/// not supported.
///
/// # Examples
///
/// ```
/// use lanebus::Codec;
///
/// let codec = Codec::default();
/// let bytes = codec.encode(&("temperature", 21.5f64)).unwrap();
/// let (name, value): (String, f64) = codec.decode(&bytes).unwrap();
/// assert_eq!((name.as_str(), value), ("temperature", 21.5));
///
/// // Borrowed decoding points into the input instead of copying.
/// let (name, _): (&str, f64) = codec.decode_borrowed(&bytes).unwrap();
/// assert_eq!(name, "temperature");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Codec {
    /// The longest encoding accepted, in bytes.
    limit: usize,
}

impl Codec {
    /// The limit of [`Codec::default`]: 16 MiB.
    pub const DEFAULT_LIMIT: usize = 16 * 1024 * 1024;

    /// The deepest nesting a payload may have when decoded: every struct,
    /// tuple, sequence, map, enum, option and newtype level counts one, as
    /// does the innermost value. Decoding that deep takes under 256 KiB of
    /// stack in a debug build, under 64 KiB optimized.
    pub const MAX_DEPTH: usize = guard::MAX_DEPTH;

    /// A codec that refuses encodings longer than `limit` bytes.
    pub const fn new(limit: usize) -> Self {
        Codec { limit }
    }

    /// The longest encoding accepted, in bytes.
    pub const fn limit(&self) -> usize {
        self.limit
    }

    /// Encodes `value`.
    ///
    /// Encoding stops as soon as it passes the limit: a value too large to
    /// send never allocates more than the limit.
    ///
    /// # Errors
    ///
    /// [`EncodeError::TooLarge`] if the encoding would be longer than the
    /// limit, [`EncodeError::Serialize`] if the value cannot be encoded (its
    /// `Serialize` impl failed, or it is a sequence of unknown length).
    pub fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Bytes, EncodeError> {
        // Two passes: count, then write into a buffer of exactly that size.
        // One allocation, no spare capacity (the weight a budget charges is
        // the memory held), and nothing allocated for a value over the
        // limit.
        let mut counter = CountingWriter {
            len: 0,
            limit: self.limit,
        };
        match bincode::serde::encode_into_writer(value, &mut counter, config()) {
            Ok(()) => {}
            Err(_) if counter.len > self.limit => {
                return Err(EncodeError::TooLarge { limit: self.limit })
            }
            Err(err) => return Err(EncodeError::Serialize(encode_message(err))),
        }
        let mut writer = LimitedWriter {
            buf: Vec::with_capacity(counter.len),
            limit: self.limit,
            overflowed: false,
        };
        match bincode::serde::encode_into_writer(value, &mut writer, config()) {
            // No copy: the vector becomes the buffer.
            Ok(()) => Ok(Bytes::from(writer.buf)),
            Err(_) if writer.overflowed => Err(EncodeError::TooLarge { limit: self.limit }),
            Err(err) => Err(EncodeError::Serialize(encode_message(err))),
        }
    }

    /// Decodes a `T` that owns its data from all of `bytes`.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] if `bytes` is longer than the limit, is not exactly
    /// one encoded `T`, or passes a bound listed in the module docs.
    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, DecodeError> {
        self.decode_borrowed(bytes)
    }

    /// Decodes a `T` from all of `bytes`; its `&str` and `&[u8]` fields
    /// borrow from `bytes` instead of copying.
    ///
    /// # Errors
    ///
    /// As for [`Codec::decode`].
    pub fn decode_borrowed<'a, T: Deserialize<'a>>(
        &self,
        bytes: &'a [u8],
    ) -> Result<T, DecodeError> {
        let len = bytes.len();
        if len > self.limit {
            return Err(DecodeError::TooLarge {
                len,
                limit: self.limit,
            });
        }
        let limits = Limits::new(len, self.limit);
        match bincode::serde::seed_decode_from_slice(Root::<T>::new(&limits), bytes, config()) {
            Ok((value, consumed)) if consumed == len => Ok(value),
            Ok((_, consumed)) => Err(DecodeError::TrailingBytes { consumed, len }),
            Err(err) => Err(match limits.tripped() {
                Some(Tripped::Elements) => DecodeError::TooManyElements { limit: self.limit },
                Some(Tripped::Depth) => DecodeError::TooDeep {
                    max_depth: Self::MAX_DEPTH,
                },
                None => decode_error(err),
            }),
        }
    }
}

impl Default for Codec {
    /// A codec with the [`Codec::DEFAULT_LIMIT`].
    fn default() -> Self {
        Codec::new(Self::DEFAULT_LIMIT)
    }
}

/// The one encoding configuration, for both directions.
fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// A bincode writer into a vector that fails instead of growing past `limit`.
struct LimitedWriter {
    buf: Vec<u8>,
    limit: usize,
    /// Set when a write was refused for the limit.
    overflowed: bool,
}

/// Counts the bytes of an encoding; fails once past `limit`.
struct CountingWriter {
    len: usize,
    limit: usize,
}

impl bincode::enc::write::Writer for CountingWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), BincodeEncodeError> {
        self.len = self.len.saturating_add(bytes.len());
        if self.len > self.limit {
            return Err(BincodeEncodeError::Other("size limit exceeded"));
        }
        Ok(())
    }
}

impl bincode::enc::write::Writer for LimitedWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), BincodeEncodeError> {
        let len = self.buf.len();
        if bytes.len() > self.limit - len {
            self.overflowed = true;
            return Err(BincodeEncodeError::Other("size limit exceeded"));
        }
        let needed = len + bytes.len();
        if needed > self.buf.capacity() {
            // Grow by doubling as `Vec` would, but never past the limit.
            let target = needed
                .max(self.buf.capacity().saturating_mul(2))
                .max(64)
                .min(self.limit);
            self.buf.reserve_exact(target - len);
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }
}

fn encode_message(err: BincodeEncodeError) -> String {
    match err {
        BincodeEncodeError::OtherString(message) => message,
        other => other.to_string(),
    }
}

fn decode_error(err: BincodeDecodeError) -> DecodeError {
    match err {
        BincodeDecodeError::UnexpectedEnd { .. } => DecodeError::Truncated,
        BincodeDecodeError::OtherString(message) => DecodeError::Invalid(message),
        other => DecodeError::Invalid(other.to_string()),
    }
}

/// Encoding a value failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The encoding would be longer than the codec's limit.
    TooLarge {
        /// The codec's limit, in bytes.
        limit: usize,
    },
    /// The value cannot be encoded; the message says why.
    Serialize(String),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { limit } => {
                write!(f, "encoded value exceeds the limit of {limit} bytes")
            }
            Self::Serialize(message) => write!(f, "value cannot be encoded: {message}"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// Decoding a value failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is longer than the codec's limit.
    TooLarge {
        /// The input length, in bytes.
        len: usize,
        /// The codec's limit, in bytes.
        limit: usize,
    },
    /// The input ended in the middle of the value.
    Truncated,
    /// The value ended before the input did.
    TrailingBytes {
        /// The bytes the value took.
        consumed: usize,
        /// The input length, in bytes.
        len: usize,
    },
    /// The input holds more sequence elements and map entries than the
    /// codec's limit.
    TooManyElements {
        /// The codec's limit.
        limit: usize,
    },
    /// The input nests deeper than [`Codec::MAX_DEPTH`].
    TooDeep {
        /// [`Codec::MAX_DEPTH`].
        max_depth: usize,
    },
    /// The input is not an encoding of the type; the message says why.
    Invalid(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len, limit } => {
                write!(f, "input of {len} bytes exceeds the limit of {limit} bytes")
            }
            Self::Truncated => f.write_str("input ended in the middle of the value"),
            Self::TrailingBytes { consumed, len } => write!(
                f,
                "{} trailing bytes after a value of {consumed} bytes",
                len.saturating_sub(*consumed)
            ),
            Self::TooManyElements { limit } => write!(
                f,
                "input holds more than {limit} sequence elements and map entries"
            ),
            Self::TooDeep { max_depth } => {
                write!(f, "input nests deeper than {max_depth} levels")
            }
            Self::Invalid(message) => write!(f, "invalid input: {message}"),
        }
    }
}

impl std::error::Error for DecodeError {}
