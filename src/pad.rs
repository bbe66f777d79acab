//! Cache-line padding for hot atomics.

use core::ops::Deref;

/// Aligns `T` to 128 bytes so that two padded values never share a cache
/// line, nor an adjacent-line prefetch pair on x86_64.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> Deref for CachePadded<T> {
    type Target = T;

    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}
