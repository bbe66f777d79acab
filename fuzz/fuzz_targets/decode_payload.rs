//! Arbitrary bytes -> `Codec::decode` as a small message type (owned and
//! borrowed, with a recursive field): never a panic, an abort or a huge
//! allocation. Whatever decodes re-encodes, and the re-encoding decodes to
//! a value that encodes the same (bincode's `roundtrip.rs` pattern; the
//! input itself need not be canonical: bincode accepts over-long varints).
//!
//! Run: `cargo +nightly fuzz run decode_payload -- -max_total_time=60`.

#![no_main]

use std::collections::BTreeMap;

use lanebus::Codec;
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Tree {
    Leaf(u8),
    Node(Vec<Tree>),
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Kind {
    Unit,
    Pair(i16, char),
    Named { flag: bool, ratio: f32 },
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Owned {
    id: u64,
    name: String,
    tags: Vec<Box<str>>,
    attrs: BTreeMap<String, i32>,
    kind: Option<Kind>,
    tree: Tree,
    unit: Vec<()>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Borrowed<'a> {
    name: &'a str,
    data: &'a [u8],
    rest: Vec<&'a str>,
}

fuzz_target!(|data: &[u8]| {
    let codec = Codec::new(4096);
    if let Ok(value) = codec.decode::<Owned>(data) {
        // Compare encodings, not values: a NaN is not equal to itself.
        let bytes = codec.encode(&value).unwrap();
        let again: Owned = codec.decode(&bytes).unwrap();
        assert_eq!(codec.encode(&again).unwrap(), bytes);
    }
    if let Ok(value) = codec.decode_borrowed::<Borrowed<'_>>(data) {
        let bytes = codec.encode(&value).unwrap();
        let again: Borrowed<'_> = codec.decode_borrowed(&bytes).unwrap();
        assert_eq!(again, value);
    }
});
