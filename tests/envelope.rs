//! Envelopes and the payload codec: round trips, zero-copy borrowing and
//! sharing, size limits, hostile payloads and the canonical wire form.

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use common::scale;
use lanebus::{Codec, DecodeError, EncodeError, Envelope, Header, Priority, WireError};
use serde::de::{Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
enum Kind {
    Created,
    Moved(i64, i64),
    Renamed { from: String, to: String },
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Event {
    name: String,
    tags: Vec<String>,
    samples: Vec<u32>,
    kind: Kind,
    parent: Option<u64>,
    attrs: BTreeMap<String, i32>,
    ratio: f64,
}

fn event() -> Event {
    Event {
        name: "sensor-7 ✓".to_string(),
        tags: vec!["a".into(), "".into(), "ünïcødé".into()],
        samples: vec![0, 1, 127, 128, 65_535, u32::MAX],
        kind: Kind::Renamed {
            from: "old".into(),
            to: "new".into(),
        },
        parent: Some(u64::MAX),
        attrs: [("x".to_string(), -1), ("y".to_string(), 2)].into(),
        ratio: 0.25,
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Borrowed<'a> {
    id: u32,
    name: &'a str,
    data: &'a [u8],
}

/// `true` if `inner` lies within `outer`.
fn points_into(inner: &[u8], outer: &[u8]) -> bool {
    let outer = outer.as_ptr_range();
    let inner = inner.as_ptr_range();
    outer.start <= inner.start && inner.end <= outer.end
}

/// A header that uses every field.
fn full_header() -> Header {
    Header {
        id: 0x0102_0304_0506_0708,
        topic: Arc::from("заказы/created 🚀"),
        priority: Priority::Urgent,
        key: Some("kéy-1".into()),
        enqueued_at: 1_700_000_000_123_456_789,
        headers: vec![
            ("trace-id".into(), "abc".into()),
            ("".into(), "".into()),
            ("trace-id".into(), "second".into()),
            ("ü".into(), "値".into()),
        ],
    }
}

/// The bincode encoding of a length prefix `len` (varint, 9 bytes).
fn claim(len: u64) -> Vec<u8> {
    let mut out = vec![253];
    out.extend_from_slice(&len.to_le_bytes());
    out
}

/// A byte buffer decoded through `deserialize_byte_buf`.
#[derive(Debug, PartialEq)]
struct ByteBuf(Vec<u8>);

impl Serialize for ByteBuf {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteBuf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// A recursive type, for nesting depth.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum List {
    Cons(Box<List>),
    Nil,
}

/// The encoding of a `List` with `depth` `Cons` cells (variant 0 = Cons,
/// 1 = Nil, one byte each).
fn nested_list(depth: usize) -> Vec<u8> {
    let mut out = vec![0; depth];
    out.push(1);
    out
}

#[test]
fn owned_round_trip() {
    let codec = Codec::default();
    let value = event();
    let bytes = codec.encode(&value).unwrap();
    assert_eq!(codec.decode::<Event>(&bytes).unwrap(), value);

    let env = Envelope::encode(Header::new("events"), &value, &codec).unwrap();
    assert_eq!(env.payload(), &bytes);
    assert_eq!(env.decode::<Event>().unwrap(), value);
    assert_eq!(env.decode_with::<Event>(&codec).unwrap(), value);

    for kind in [Kind::Created, Kind::Moved(-5, i64::MAX)] {
        let env = Envelope::encode(Header::new("k"), &kind, &codec).unwrap();
        assert_eq!(env.decode::<Kind>().unwrap(), kind);
    }
    // Unsized values encode too.
    let bytes = codec.encode("a str").unwrap();
    assert_eq!(codec.decode::<String>(&bytes).unwrap(), "a str");
    let bytes = codec.encode(&[1u16, 2, 3][..]).unwrap();
    assert_eq!(codec.decode::<Vec<u16>>(&bytes).unwrap(), [1, 2, 3]);
    let bytes = codec.encode(&ByteBuf(vec![9; 300])).unwrap();
    assert_eq!(
        codec.decode::<ByteBuf>(&bytes).unwrap(),
        ByteBuf(vec![9; 300])
    );
}

#[test]
fn borrowed_decode_points_into_the_payload() {
    let data: Vec<u8> = (0..=255).collect();
    let value = Borrowed {
        id: 42,
        name: "zero-copy ✓",
        data: &data,
    };
    let env = Envelope::encode(Header::new("b"), &value, &Codec::default()).unwrap();
    let decoded: Borrowed<'_> = env.decode_borrowed().unwrap();
    assert_eq!(decoded, value);
    assert!(points_into(decoded.name.as_bytes(), env.payload()));
    assert!(points_into(decoded.data, env.payload()));

    let decoded: Borrowed<'_> = env.decode_borrowed_with(&Codec::new(1024)).unwrap();
    assert!(points_into(decoded.data, env.payload()));

    // Directly on the codec, and into a clone of the payload.
    let payload = env.payload().clone();
    let decoded: Borrowed<'_> = Codec::default().decode_borrowed(&payload).unwrap();
    assert!(points_into(decoded.name.as_bytes(), env.payload()));
}

#[test]
fn clone_shares_header_and_payload() {
    let mut env = Envelope::new(full_header(), vec![1u8, 2, 3]);
    env.set_attempt(2);
    let mut copy = env.clone();
    assert_eq!(copy, env);
    assert_eq!(copy.payload().as_ptr(), env.payload().as_ptr());
    assert!(std::ptr::eq(copy.header(), env.header()));

    copy.set_attempt(3);
    assert_eq!((env.attempt(), copy.attempt()), (2, 3));
    assert_ne!(copy, env);
}

#[test]
fn accessors() {
    let env = Envelope::new(full_header(), Bytes::from_static(b"xyz"));
    let header = full_header();
    assert_eq!(env.header(), &header);
    assert_eq!(env.id(), header.id);
    assert_eq!(env.topic(), "заказы/created 🚀");
    assert_eq!(env.priority(), Priority::Urgent);
    assert_eq!(env.key(), Some("kéy-1"));
    assert_eq!(env.enqueued_at(), 1_700_000_000_123_456_789);
    assert_eq!(env.headers(), &header.headers[..]);
    assert_eq!(env.header_value("trace-id"), Some("abc"));
    assert_eq!(env.header_value(""), Some(""));
    assert_eq!(env.header_value("ü"), Some("値"));
    assert_eq!(env.header_value("missing"), None);
    assert_eq!(env.attempt(), 0);
    assert_eq!(&env.payload()[..], b"xyz");

    let plain = Envelope::new(Header::new("t"), Bytes::new());
    assert_eq!(
        (
            plain.id(),
            plain.priority(),
            plain.key(),
            plain.enqueued_at()
        ),
        (0, Priority::Normal, None, 0)
    );
    assert!(plain.headers().is_empty());
}

#[test]
fn debug_prints_payload_length_not_bytes() {
    let env = Envelope::new(Header::new("t"), b"secret-payload".to_vec());
    let text = format!("{env:?}");
    assert!(text.contains("payload_len: 14"), "{text}");
    assert!(!text.contains("secret"), "{text}");
}

#[test]
fn raw_bytes_are_carried_as_is() {
    let raw: &'static [u8] = b"\xff\x00\xfe not bincode \x80";
    let env = Envelope::new(Header::new("raw"), raw);
    assert_eq!(&env.payload()[..], raw);
    assert_eq!(env.payload().as_ptr(), raw.as_ptr());
    let back = Envelope::from_wire(env.to_wire()).unwrap();
    assert_eq!(&back.payload()[..], raw);
    assert_eq!(back, env);
    // It is not an encoded String: a typed error, not a panic.
    assert!(env.decode::<String>().is_err());

    let env = Envelope::new(Header::new("s"), String::from("text"));
    assert_eq!(&env.payload()[..], b"text");
}

#[test]
fn encode_limit() {
    // A 15-byte string encodes to 16 bytes (1-byte length prefix).
    let codec = Codec::new(16);
    assert_eq!(codec.limit(), 16);
    assert_eq!(codec.encode(&"x".repeat(15)).unwrap().len(), 16);
    assert_eq!(
        codec.encode(&"x".repeat(16)),
        Err(EncodeError::TooLarge { limit: 16 })
    );
    assert_eq!(
        codec.encode(&vec![0u64; 1000]),
        Err(EncodeError::TooLarge { limit: 16 })
    );
    assert_eq!(
        Envelope::encode(Header::new("t"), &vec![7u8; 17], &codec).unwrap_err(),
        EncodeError::TooLarge { limit: 16 }
    );
    assert_eq!(Codec::new(0).encode(&()).unwrap().len(), 0);
    assert!(Codec::new(0).encode(&0u8).is_err());
    assert_eq!(Codec::default().limit(), Codec::DEFAULT_LIMIT);
}

#[test]
fn unencodable_values_are_errors() {
    // A sequence of unknown length cannot be encoded.
    struct Unsized;
    impl Serialize for Unsized {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq((0..3).filter(|_| true))
        }
    }
    assert!(matches!(
        Codec::default().encode(&Unsized),
        Err(EncodeError::Serialize(_))
    ));

    struct Failing;
    impl Serialize for Failing {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused"))
        }
    }
    let err = Codec::default().encode(&Failing).unwrap_err();
    assert_eq!(err, EncodeError::Serialize("refused".into()));
    assert_eq!(err.to_string(), "value cannot be encoded: refused");
}

#[test]
fn decode_limit() {
    let codec = Codec::new(8);
    let bytes = Codec::default().encode("12345678").unwrap();
    assert_eq!(bytes.len(), 9);
    assert_eq!(
        codec.decode::<String>(&bytes),
        Err(DecodeError::TooLarge { len: 9, limit: 8 })
    );
    assert_eq!(
        codec.decode_borrowed::<&str>(&bytes),
        Err(DecodeError::TooLarge { len: 9, limit: 8 })
    );
    assert_eq!(
        codec.decode::<String>(&bytes[..8]),
        Err(DecodeError::Truncated)
    );
    assert_eq!(Codec::new(9).decode::<String>(&bytes).unwrap(), "12345678");
}

#[test]
fn trailing_bytes_are_rejected() {
    let codec = Codec::default();
    let mut bytes = codec.encode(&300u32).unwrap().to_vec();
    let len = bytes.len();
    bytes.push(0);
    assert_eq!(
        codec.decode::<u32>(&bytes),
        Err(DecodeError::TrailingBytes {
            consumed: len,
            len: len + 1
        })
    );
    assert_eq!(
        codec.decode_borrowed::<&str>(b"\x01ab"),
        Err(DecodeError::TrailingBytes {
            consumed: 2,
            len: 3
        })
    );
    let env = Envelope::new(Header::new("t"), bytes);
    assert!(matches!(
        env.decode::<u32>(),
        Err(DecodeError::TrailingBytes { .. })
    ));
}

#[test]
fn truncated_and_invalid_payloads() {
    let codec = Codec::default();
    let bytes = codec.encode(&event()).unwrap();
    for n in 0..bytes.len() {
        assert!(codec.decode::<Event>(&bytes[..n]).is_err(), "prefix {n}");
    }
    assert_eq!(codec.decode::<u32>(&[]), Err(DecodeError::Truncated));
    // Invalid UTF-8, an unknown variant, a bad bool.
    assert!(matches!(
        codec.decode::<String>(b"\x02\xff\xfe"),
        Err(DecodeError::Invalid(_))
    ));
    assert!(matches!(
        codec.decode_borrowed::<&str>(b"\x02\xff\xfe"),
        Err(DecodeError::Invalid(_))
    ));
    assert!(matches!(
        codec.decode::<Kind>(b"\x09"),
        Err(DecodeError::Invalid(_))
    ));
    assert!(matches!(
        codec.decode::<bool>(b"\x02"),
        Err(DecodeError::Invalid(_))
    ));
}

#[test]
fn hostile_length_prefixes_are_errors_not_aborts() {
    // Without the codec's guard, bincode 2.0.1 allocates the claimed length
    // of a String or byte buffer first: 2^40 or 2^60 aborts the process.
    let codec = Codec::default();
    for len in [1 << 20, 1 << 33, 1 << 40, 1 << 60, u64::MAX] {
        let input = claim(len);
        assert_eq!(codec.decode::<String>(&input), Err(DecodeError::Truncated));
        assert_eq!(
            codec.decode::<Box<str>>(&input),
            Err(DecodeError::Truncated)
        );
        assert_eq!(codec.decode::<ByteBuf>(&input), Err(DecodeError::Truncated));
        assert_eq!(codec.decode::<Vec<u8>>(&input), Err(DecodeError::Truncated));
        assert_eq!(
            codec.decode::<Vec<u64>>(&input),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            codec.decode::<Vec<String>>(&input),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            codec.decode::<BTreeMap<String, u8>>(&input),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            codec.decode::<std::collections::HashMap<u64, u64>>(&input),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            codec.decode_borrowed::<&str>(&input),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            codec.decode_borrowed::<&[u8]>(&input),
            Err(DecodeError::Truncated)
        );

        // Nested inside a struct, and through an envelope.
        let mut nested = codec.encode(&5u32).unwrap().to_vec();
        nested.extend_from_slice(&input);
        assert_eq!(
            codec.decode::<(u32, String)>(&nested),
            Err(DecodeError::Truncated)
        );
        let env = Envelope::new(Header::new("evil"), nested);
        assert_eq!(env.decode::<(u32, String)>(), Err(DecodeError::Truncated));
    }
}

#[test]
fn zero_size_elements_are_bounded() {
    // `()` encodes to nothing: a claimed 2^60 of them is no allocation, but
    // would loop 2^60 times. The codec stops at `limit` elements.
    let codec = Codec::new(1024);
    assert_eq!(
        codec.decode::<Vec<()>>(&claim(1 << 60)),
        Err(DecodeError::TooManyElements { limit: 1024 })
    );
    // Up to the limit is fine, even when it exceeds the input length.
    let ok = codec.encode(&vec![(); 1024]).unwrap();
    assert_eq!(ok.len(), 3);
    assert_eq!(codec.decode::<Vec<()>>(&ok).unwrap().len(), 1024);
    let too_many = Codec::default().encode(&vec![(); 1025]).unwrap();
    assert_eq!(
        codec.decode::<Vec<()>>(&too_many),
        Err(DecodeError::TooManyElements { limit: 1024 })
    );
}

#[test]
fn nesting_is_bounded() {
    let codec = Codec::default();
    // One level per `Cons` plus the final `Nil`.
    let deepest = Codec::MAX_DEPTH - 1;
    let mut expected = List::Nil;
    for _ in 0..deepest {
        expected = List::Cons(Box::new(expected));
    }
    assert_eq!(
        codec.encode(&expected).unwrap()[..],
        nested_list(deepest)[..]
    );
    assert_eq!(
        codec.decode::<List>(&nested_list(deepest)).unwrap(),
        expected
    );

    let too_deep = Err(DecodeError::TooDeep {
        max_depth: Codec::MAX_DEPTH,
    });
    assert_eq!(codec.decode::<List>(&nested_list(deepest + 1)), too_deep);
    // Without the bound this overflows the stack.
    let hostile = nested_list(scale(1_000_000, 10_000));
    assert_eq!(codec.decode::<List>(&hostile), too_deep);
}

#[test]
fn error_messages_are_lowercase() {
    let errors: Vec<Box<dyn std::error::Error>> = vec![
        Box::new(EncodeError::TooLarge { limit: 1 }),
        Box::new(EncodeError::Serialize("x".into())),
        Box::new(DecodeError::TooLarge { len: 2, limit: 1 }),
        Box::new(DecodeError::Truncated),
        Box::new(DecodeError::TrailingBytes {
            consumed: 1,
            len: 3,
        }),
        Box::new(DecodeError::TooManyElements { limit: 1 }),
        Box::new(DecodeError::TooDeep { max_depth: 1 }),
        Box::new(DecodeError::Invalid("x".into())),
        Box::new(WireError::Truncated),
        Box::new(WireError::BadMagic),
        Box::new(WireError::UnsupportedVersion(2)),
        Box::new(WireError::BadFlags(2)),
        Box::new(WireError::BadPriority(4)),
        Box::new(WireError::InvalidUtf8 { field: "topic" }),
        Box::new(WireError::TrailingBytes { extra: 1 }),
    ];
    for err in errors {
        let text = err.to_string();
        assert!(text.starts_with(|c: char| !c.is_uppercase()), "{text}");
    }
    assert_eq!(
        DecodeError::TrailingBytes {
            consumed: 1,
            len: 3
        }
        .to_string(),
        "2 trailing bytes after a value of 1 bytes"
    );
}

// ---- wire form ----

/// Envelopes covering every optional part of the wire form.
fn samples() -> Vec<Envelope> {
    let mut with_attempt = Envelope::new(full_header(), b"payload \x00\xff".to_vec());
    with_attempt.set_attempt(u32::MAX);
    let mut keyed_empty = Header::new("");
    keyed_empty.key = Some("".into());
    keyed_empty.priority = Priority::Low;
    vec![
        with_attempt,
        Envelope::new(Header::new("t"), Bytes::new()),
        Envelope::new(keyed_empty, Bytes::new()),
        Envelope::new(
            Header {
                priority: Priority::High,
                headers: vec![("n".into(), "v".into())],
                ..Header::new("only headers")
            },
            vec![0u8; 300],
        ),
        Envelope::encode(full_header(), &event(), &Codec::default()).unwrap(),
    ]
}

#[test]
fn wire_round_trip() {
    for env in samples() {
        let wire = env.to_wire();
        let back = Envelope::from_wire(wire.clone()).unwrap();
        assert_eq!(back, env);
        assert_eq!(back.header(), env.header());
        assert_eq!(back.attempt(), env.attempt());
        assert_eq!(back.payload(), env.payload());
        assert_eq!(back.to_wire(), wire);
        // The payload is a slice of the wire buffer, not a copy.
        assert!(points_into(back.payload(), &wire));
        if !env.payload().is_empty() {
            assert_eq!(
                back.payload().as_ptr(),
                wire[wire.len() - env.payload().len()..].as_ptr()
            );
        }
    }
    let env = Envelope::from_wire(samples()[4].to_wire()).unwrap();
    assert_eq!(env.decode::<Event>().unwrap(), event());
}

#[test]
fn weight_is_the_wire_length() {
    for env in samples() {
        assert_eq!(env.weight(), env.to_wire().len());
    }
    // Fixed part: 43 bytes, plus the strings and payload.
    assert_eq!(Envelope::new(Header::new(""), Bytes::new()).weight(), 43);
    assert_eq!(Envelope::new(Header::new("ab"), vec![0u8; 5]).weight(), 50);
}

#[test]
fn the_documented_layout() {
    let mut wire = Vec::new();
    wire.extend_from_slice(b"LBEV");
    wire.extend_from_slice(&[1, 1, 3]); // version, flags (key), priority low
    wire.extend_from_slice(&7u32.to_le_bytes()); // attempt
    wire.extend_from_slice(&42u64.to_le_bytes()); // id
    wire.extend_from_slice(&99u64.to_le_bytes()); // enqueued at
    wire.extend_from_slice(&2u32.to_le_bytes());
    wire.extend_from_slice(b"tp");
    wire.extend_from_slice(&1u32.to_le_bytes());
    wire.extend_from_slice(b"k");
    wire.extend_from_slice(&1u32.to_le_bytes()); // one header
    wire.extend_from_slice(&1u32.to_le_bytes());
    wire.extend_from_slice(b"n");
    wire.extend_from_slice(&2u32.to_le_bytes());
    wire.extend_from_slice(b"vv");
    wire.extend_from_slice(&3u64.to_le_bytes());
    wire.extend_from_slice(b"abc");

    let env = Envelope::from_wire(Bytes::from(wire.clone())).unwrap();
    let mut header = Header::new("tp");
    header.id = 42;
    header.priority = Priority::Low;
    header.key = Some("k".into());
    header.enqueued_at = 99;
    header.headers = vec![("n".into(), "vv".into())];
    assert_eq!(env.header(), &header);
    assert_eq!(env.attempt(), 7);
    assert_eq!(&env.payload()[..], b"abc");
    assert_eq!(env.to_wire(), wire);
}

#[test]
fn every_truncation_is_an_error() {
    for env in samples() {
        let wire = env.to_wire();
        for n in 0..wire.len() {
            assert_eq!(
                Envelope::from_wire(wire.slice(..n)),
                Err(WireError::Truncated),
                "prefix {n} of {}",
                wire.len()
            );
        }
    }
}

#[test]
fn flipped_bytes_are_errors_or_canonical() {
    let masks: &[u8] = if cfg!(miri) {
        &[0x01]
    } else {
        &[0x01, 0x02, 0x10, 0x80, 0xff]
    };
    for env in samples().into_iter().take(scale(5, 2)) {
        let wire = env.to_wire().to_vec();
        for i in 0..wire.len() {
            for &mask in masks {
                let mut bad = wire.clone();
                bad[i] ^= mask;
                if let Ok(decoded) = Envelope::from_wire(Bytes::from(bad.clone())) {
                    assert_eq!(decoded.to_wire(), bad, "byte {i} ^ {mask:#x}");
                    assert_eq!(decoded.weight(), bad.len());
                }
            }
        }
    }
}

#[test]
fn wire_errors() {
    let wire = samples()[0].to_wire().to_vec();
    let parse = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut bad = wire.clone();
        f(&mut bad);
        Envelope::from_wire(Bytes::from(bad))
    };
    assert_eq!(parse(&|w| w[0] = b'X'), Err(WireError::BadMagic));
    assert_eq!(parse(&|w| w[4] = 2), Err(WireError::UnsupportedVersion(2)));
    assert_eq!(parse(&|w| w[4] = 0), Err(WireError::UnsupportedVersion(0)));
    assert_eq!(parse(&|w| w[5] = 0x81), Err(WireError::BadFlags(0x81)));
    assert_eq!(parse(&|w| w[6] = 4), Err(WireError::BadPriority(4)));
    assert_eq!(parse(&|w| w[6] = 0xff), Err(WireError::BadPriority(0xff)));
    // The topic starts at byte 31, after its length at 27..31.
    assert_eq!(
        parse(&|w| w[31] = 0xff),
        Err(WireError::InvalidUtf8 { field: "topic" })
    );
    assert_eq!(
        parse(&|w| w.push(0)),
        Err(WireError::TrailingBytes { extra: 1 })
    );
    assert_eq!(
        parse(&|w| w.extend_from_slice(b"xyz")),
        Err(WireError::TrailingBytes { extra: 3 })
    );
    assert_eq!(Envelope::from_wire(Bytes::new()), Err(WireError::Truncated));

    // A key that is not UTF-8, a header name and value that are not.
    let keyed = |key: &str, name: &str, value: &str| {
        let mut h = Header::new("t");
        h.key = Some(key.into());
        h.headers = vec![(name.into(), value.into())];
        Envelope::new(h, Bytes::new()).to_wire().to_vec()
    };
    for (wire, field) in [
        (keyed("?", "n", "v"), "key"),
        (keyed("k", "?", "v"), "header name"),
        (keyed("k", "n", "?"), "header value"),
    ] {
        let at = wire.iter().position(|&b| b == b'?').unwrap();
        let mut bad = wire;
        bad[at] = 0x80;
        assert_eq!(
            Envelope::from_wire(Bytes::from(bad)),
            Err(WireError::InvalidUtf8 { field })
        );
    }
}

#[test]
fn hostile_wire_lengths_are_errors() {
    // The topic length, the header count and the payload length each
    // claiming the maximum, in a short input.
    let env = Envelope::new(Header::new("t"), b"p".to_vec());
    let wire = env.to_wire().to_vec();
    let topic_len = 27;
    let count = topic_len + 4 + 1;
    let payload_len = count + 4;
    for (at, width) in [(topic_len, 4), (count, 4), (payload_len, 8)] {
        for value in [u64::MAX, 1 << 31, 1 << 16] {
            let mut bad = wire.clone();
            bad[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
            assert_eq!(
                Envelope::from_wire(Bytes::from(bad)),
                Err(WireError::Truncated),
                "field at {at} = {value}"
            );
        }
    }
    // 2^32 - 1 empty headers claimed, a few present.
    let mut bad = wire[..count].to_vec();
    bad.extend_from_slice(&u32::MAX.to_le_bytes());
    bad.extend_from_slice(&[0; 64]);
    assert_eq!(
        Envelope::from_wire(Bytes::from(bad)),
        Err(WireError::Truncated)
    );
}
