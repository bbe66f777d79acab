//! Envelopes: a typed message through a bus, decoded owned and borrowed
//! (zero-copy), raw bytes carried as-is, and the wire form.
//!
//! Run (from the repository root):
//!
//! ```text
//! cargo run --release --example envelopes
//! ```

use bytes::Bytes;
use lanebus::{Bus, Envelope, Message, Priority, WireError};
use serde::{Deserialize, Serialize};

/// The sender's type: owns its data.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Order {
    customer: String,
    blob: Vec<u8>,
}

/// The same encoding read without copying: the fields borrow the payload.
#[derive(Deserialize, Debug)]
struct OrderRef<'a> {
    customer: &'a str,
    blob: &'a [u8],
}

/// True if `part` lies entirely inside `whole`'s memory.
fn inside(part: &[u8], whole: &[u8]) -> bool {
    let (w, p) = (whole.as_ptr_range(), part.as_ptr_range());
    w.start <= p.start && p.end <= w.end
}

fn main() {
    let bus = Bus::new();
    let sub = bus.subscribe("orders.created").unwrap();

    // 1. A typed message, encoded once with the default codec.
    let order = Order {
        customer: "ACME Corp".into(),
        blob: vec![0xde, 0xad, 0xbe, 0xef],
    };
    let msg = Message::encode(&order).unwrap().priority(Priority::High);
    println!("encoded {order:?}: {} payload bytes", msg.payload().len());
    assert_eq!(bus.publish("orders.created", msg).unwrap(), 1);

    let env = sub.recv().unwrap();
    let (id, topic, weight) = (env.id(), env.topic(), env.weight());
    println!(
        "received id={id} topic={topic} priority={} weight={weight}",
        env.priority()
    );
    assert_eq!((topic, env.priority()), ("orders.created", Priority::High));
    assert_eq!(env.decode::<Order>().unwrap(), order);

    let borrowed: OrderRef<'_> = env.decode_borrowed().unwrap();
    let payload = env.payload();
    let zero_copy = inside(borrowed.customer.as_bytes(), payload) && inside(borrowed.blob, payload);
    println!(
        "borrowed {borrowed:02x?}: fields inside the payload buffer {:?}: {zero_copy}",
        payload.as_ptr_range()
    );
    assert!(zero_copy, "borrowed fields must point into the payload");
    assert_eq!(
        (borrowed.customer, borrowed.blob),
        (&*order.customer, &*order.blob)
    );

    // 2. Bytes you encoded yourself (here JSON) travel as-is: the subscriber
    //    gets the sender's very buffer.
    let json = Bytes::from(br#"{"customer":"ACME Corp","qty":3}"#.to_vec());
    bus.publish("orders.created", Message::new(json.clone()))
        .unwrap();
    let raw = sub.recv().unwrap();
    let same_buffer = raw.payload().as_ptr() == json.as_ptr();
    let text = std::str::from_utf8(raw.payload()).unwrap();
    println!("raw payload {text}, same buffer as the sender's: {same_buffer}");
    assert!(same_buffer && raw.payload() == &json);
    // They are not the codec's encoding: decoding them as an `Order` is a
    // typed error, not a panic or garbage.
    let err = raw.decode::<Order>().unwrap_err();
    println!("the JSON bytes decoded as an Order: Err({err:?}): {err}");

    // 3. The wire form: one byte string; the decoded payload is a slice of it.
    let wire = env.to_wire();
    assert_eq!(wire.len(), env.weight());
    let back = Envelope::from_wire(wire.clone()).unwrap();
    assert_eq!(back, env);
    assert_eq!(back.decode::<Order>().unwrap(), order);
    let shares = inside(back.payload(), &wire);
    println!(
        "wire form: {} bytes {:02x?}..; round trip equal; payload inside the wire buffer: {shares}",
        wire.len(),
        &wire[..7]
    );
    assert!(shares);

    // 4. Corrupted wire bytes give a typed error.
    let check = |what: &str, bytes: Vec<u8>, want: WireError| {
        let got = Envelope::from_wire(Bytes::from(bytes)).unwrap_err();
        println!("{what:>18}: {got:?}: {got}");
        assert_eq!(got, want);
    };
    let with = |at: usize, byte: u8| {
        let mut w = wire.to_vec();
        w[at] = byte;
        w
    };
    let cut = wire[..wire.len() - 1].to_vec();
    let longer = [&wire[..], &[0]].concat();
    check("magic byte changed", with(0, b'X'), WireError::BadMagic);
    check("version 9", with(4, 9), WireError::UnsupportedVersion(9));
    check("priority 7", with(6, 7), WireError::BadPriority(7));
    check("last byte cut off", cut, WireError::Truncated);
    check(
        "one byte appended",
        longer,
        WireError::TrailingBytes { extra: 1 },
    );
    println!("ok");
}
