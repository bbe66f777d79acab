//! What both benches share: messages that carry a sequence number, and the
//! tally that proves every message arrived exactly once.

/// A message that carries a sequence number.
pub trait Msg: Send + 'static {
    /// The message's name in benchmark ids.
    const NAME: &'static str;
    /// A message carrying `seq`.
    fn new(seq: u64) -> Self;
    /// The sequence number it carries.
    fn seq(&self) -> u64;
}

impl Msg for u64 {
    const NAME: &'static str = "u64";

    #[inline]
    fn new(seq: u64) -> Self {
        seq
    }

    #[inline]
    fn seq(&self) -> u64 {
        *self
    }
}

impl Msg for [u8; 256] {
    const NAME: &'static str = "256B";

    #[inline]
    fn new(seq: u64) -> Self {
        let mut m = [0u8; 256];
        m[..8].copy_from_slice(&seq.to_le_bytes());
        m
    }

    #[inline]
    fn seq(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self[..8]);
        u64::from_le_bytes(b)
    }
}

/// What one consumer received: count, sum and (wrapping) sum of squares of
/// the sequence numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: u64,
    pub sum: u64,
    pub squares: u64,
}

impl Tally {
    #[inline]
    pub fn add(&mut self, seq: u64) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(seq);
        self.squares = self.squares.wrapping_add(seq.wrapping_mul(seq));
    }

    pub fn merge(self, other: Tally) -> Tally {
        Tally {
            count: self.count + other.count,
            sum: self.sum.wrapping_add(other.sum),
            squares: self.squares.wrapping_add(other.squares),
        }
    }

    /// The tally of `0..n`, each exactly once.
    pub fn expected(n: u64) -> Tally {
        let n = u128::from(n);
        let sum = n * n.saturating_sub(1) / 2;
        let squares = n.saturating_sub(1) * n * (2 * n).saturating_sub(1) / 6;
        Tally {
            count: n as u64,
            sum: sum as u64,
            squares: squares as u64,
        }
    }
}
