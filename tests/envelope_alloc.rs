//! Allocation counts: cloning an envelope allocates nothing, and hostile
//! length prefixes allocate no more than the input holds.
//!
//! The counting allocator counts per thread, and everything measured runs
//! on the test's thread; the binary still has one test, so that nothing
//! else of ours runs beside it.

mod common;

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use common::{allocated_by as allocated, ThreadCountingAlloc};
use lanebus::{Codec, Envelope, Header};
use serde::de::DeserializeOwned;

#[global_allocator]
static GLOBAL: ThreadCountingAlloc = ThreadCountingAlloc;

/// The bincode encoding of a length prefix `len` (varint, 9 bytes).
fn claim(len: u64) -> Vec<u8> {
    let mut out = vec![253];
    out.extend_from_slice(&len.to_le_bytes());
    out
}

/// Decoding `input` as a `T` fails and allocates at most 1 KiB.
fn hostile<T: DeserializeOwned>(input: &[u8]) {
    let (result, _, bytes) = allocated(|| Codec::default().decode::<T>(input));
    let what = std::any::type_name::<T>();
    assert!(result.is_err(), "{what} decoded");
    assert!(bytes <= 1024, "{what}: {bytes} bytes allocated");
}

#[test]
fn allocations() {
    // Cloning: an Arc clone and a Bytes clone.
    let mut header = Header::new("topic");
    header.key = Some("key".into());
    header.headers = vec![("a".into(), "b".into())];
    let env = Envelope::new(header, vec![1u8; 1000]);
    let (copy, count, _) = allocated(|| env.clone());
    assert_eq!(count, 0, "clone allocated");
    assert_eq!(copy, env);
    let shared = Envelope::new(Header::new("t"), Bytes::from_static(b"static"));
    let (_, count, _) = allocated(|| shared.clone());
    assert_eq!(count, 0, "clone allocated");
    // Payloads that are not a lone `Vec`: a buffer already shared with
    // other messages, a `Vec` with spare capacity, and a slice.
    let buffer = Bytes::from(vec![2u8; 64]);
    let mut spare = Vec::with_capacity(128);
    spare.extend_from_slice(&[3u8; 64]);
    for payload in [
        buffer.clone(),
        Bytes::from(spare),
        Bytes::from(vec![4u8; 64]).slice(1..),
    ] {
        let env = Envelope::new(Header::new("t"), payload);
        let (copy, count, _) = allocated(|| env.clone());
        assert_eq!(count, 0, "clone allocated");
        assert_eq!(copy, env);
    }

    // Hostile length prefixes: 9 bytes claim up to 2^60 bytes or elements.
    for len in [1 << 20, 1 << 33, 1 << 60] {
        let input = claim(len);
        hostile::<String>(&input);
        hostile::<Box<str>>(&input);
        hostile::<Vec<u8>>(&input);
        hostile::<Vec<u64>>(&input);
        hostile::<HashMap<u64, u64>>(&input);
        hostile::<BTreeMap<String, u8>>(&input);
    }

    // A wire form claiming 2^32 - 1 headers in a 100-byte input.
    let mut wire = Envelope::new(Header::new("t"), Bytes::new())
        .to_wire()
        .to_vec();
    wire.truncate(32);
    wire.extend_from_slice(&u32::MAX.to_le_bytes());
    wire.extend_from_slice(&[0; 64]);
    let wire = Bytes::from(wire);
    let (result, _, bytes) = allocated(|| Envelope::from_wire(wire.clone()));
    assert!(result.is_err());
    assert!(bytes <= 1024, "from_wire: {bytes} bytes allocated");
}
