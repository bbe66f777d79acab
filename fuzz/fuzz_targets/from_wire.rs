//! Arbitrary bytes -> `Envelope::from_wire`: either an error, or an
//! envelope that re-encodes to exactly the input (the wire form is
//! canonical) and whose weight is the input length.
//!
//! Run: `cargo +nightly fuzz run from_wire -- -max_total_time=60`.

#![no_main]

use bytes::Bytes;
use lanebus::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::from_wire(Bytes::copy_from_slice(data)) {
        assert_eq!(env.to_wire(), data);
        assert_eq!(env.weight(), data.len());
        assert_eq!(env.clone(), env);
    }
});
