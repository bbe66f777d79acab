//! A serde `Deserializer` adapter that bounds what a hostile payload can make
//! the decoder allocate, and how deep it can make it recurse.
//!
//! bincode 2.0.1 decodes a `String` or a byte buffer (`deserialize_string`,
//! `deserialize_byte_buf`) by allocating `vec![0u8; len]` for the length
//! prefix it has just read, *before* checking that `len` bytes remain. With
//! no limit configured (and a bincode limit can only be a compile-time
//! constant) a 9-byte payload that claims a 2^40-byte string makes the
//! allocator fail, which aborts the process. bincode also has no recursion
//! limit, so a deeply nested payload of a recursive type overflows the stack.
//!
//! [`Guard`] wraps the decoder's `Deserializer` and every `Deserializer`,
//! `Visitor`, `SeqAccess`, `MapAccess`, `EnumAccess` and `VariantAccess`
//! nested in it, and:
//!
//! - asks for `deserialize_str`/`deserialize_bytes` where the type asked for
//!   `deserialize_string`/`deserialize_byte_buf`: with a slice decoder these
//!   read the same encoding but borrow the bytes (bounds-checked against the
//!   input) instead of allocating first; the type's visitor then copies at
//!   most the input length;
//! - clamps the `size_hint` of every sequence and map to the input length, so
//!   no collection preallocates more elements than the input has bytes;
//! - counts sequence elements and map entries: more than the codec limit in
//!   one payload is an error (only elements that encode to zero bytes, like
//!   `()`, can get there, and they would otherwise loop up to 2^64 times);
//! - counts nesting: deeper than [`MAX_DEPTH`] is an error.
//!
//! The adapter forwards everything else unchanged; it only works with a
//! decoder for which `deserialize_str` and `deserialize_string` (and the two
//! byte forms) read the same encoding, as bincode's do.

use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// The deepest nesting a payload may have: every struct, tuple, sequence,
/// map, enum, option and newtype level counts one, as does the leaf value.
pub(super) const MAX_DEPTH: usize = 128;

/// Which bound a decode ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tripped {
    /// More sequence elements and map entries than allowed.
    Elements,
    /// Nested deeper than [`MAX_DEPTH`].
    Depth,
}

/// The bounds of one decode, shared by every adapter of it.
#[derive(Debug)]
pub(super) struct Limits {
    /// The length of the input: no collection preallocates more elements.
    input_len: usize,
    /// Sequence elements and map entries still allowed.
    elements_left: Cell<usize>,
    /// The current nesting depth.
    depth: Cell<usize>,
    /// The bound that failed the decode, if one did.
    tripped: Cell<Option<Tripped>>,
}

impl Limits {
    /// Bounds for decoding `input_len` bytes holding at most `max_elements`
    /// sequence elements and map entries.
    pub(super) fn new(input_len: usize, max_elements: usize) -> Self {
        Limits {
            input_len,
            elements_left: Cell::new(max_elements),
            depth: Cell::new(0),
            tripped: Cell::new(None),
        }
    }

    /// The bound that failed the decode, if one did.
    pub(super) fn tripped(&self) -> Option<Tripped> {
        self.tripped.get()
    }

    fn trip<E: de::Error>(&self, what: Tripped) -> E {
        self.tripped.set(Some(what));
        E::custom(match what {
            Tripped::Elements => "too many sequence elements or map entries",
            Tripped::Depth => "nested too deeply",
        })
    }

    /// Enter one level of nesting; pair with [`Limits::leave`].
    fn enter<E: de::Error>(&self) -> Result<(), E> {
        let depth = self.depth.get() + 1;
        if depth > MAX_DEPTH {
            return Err(self.trip(Tripped::Depth));
        }
        self.depth.set(depth);
        Ok(())
    }

    fn leave(&self) {
        self.depth.set(self.depth.get() - 1);
    }

    /// Count one sequence element or map entry.
    fn take_element<E: de::Error>(&self) -> Result<(), E> {
        match self.elements_left.get().checked_sub(1) {
            Some(left) => {
                self.elements_left.set(left);
                Ok(())
            }
            None => Err(self.trip(Tripped::Elements)),
        }
    }

    fn clamp_hint(&self, hint: Option<usize>) -> Option<usize> {
        hint.map(|n| n.min(self.input_len))
    }
}

/// The entry point: a seed that deserializes a `T` through a [`Guard`].
pub(super) struct Root<'l, T> {
    limits: &'l Limits,
    marker: PhantomData<fn() -> T>,
}

impl<'l, T> Root<'l, T> {
    pub(super) fn new(limits: &'l Limits) -> Self {
        Root {
            limits,
            marker: PhantomData,
        }
    }
}

impl<'de, T: de::Deserialize<'de>> DeserializeSeed<'de> for Root<'_, T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, inner: D) -> Result<T, D::Error> {
        T::deserialize(Guard {
            inner,
            limits: self.limits,
        })
    }
}

/// A `Deserializer` that enforces [`Limits`] on the one it wraps.
struct Guard<'l, D> {
    inner: D,
    limits: &'l Limits,
}

/// A `Visitor` whose nested deserializers and accesses are guarded.
/// `counted`: the sequence or map it visits has an untrusted length.
struct Wrap<'l, V> {
    inner: V,
    limits: &'l Limits,
    counted: bool,
}

/// A seed that deserializes through a [`Guard`].
struct Seeded<'l, S> {
    inner: S,
    limits: &'l Limits,
}

/// A guarded `SeqAccess`, `MapAccess`, `EnumAccess` or `VariantAccess`.
struct Access<'l, A> {
    inner: A,
    limits: &'l Limits,
    counted: bool,
}

impl<'l, D> Guard<'l, D> {
    /// Run `f` on the inner deserializer one nesting level deeper, with the
    /// visitor wrapped.
    fn nest<'de, V, F>(self, visitor: V, counted: bool, f: F) -> Result<V::Value, D::Error>
    where
        D: Deserializer<'de>,
        V: Visitor<'de>,
        F: FnOnce(D, Wrap<'l, V>) -> Result<V::Value, D::Error>,
    {
        let limits = self.limits;
        limits.enter()?;
        let visitor = Wrap {
            inner: visitor,
            limits,
            counted,
        };
        let result = f(self.inner, visitor);
        limits.leave();
        result
    }
}

/// Forward `deserialize_*` methods whose extra arguments are passed through.
macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.nest(visitor, false, |d, v| d.$method($($arg,)* v))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Guard<'_, D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_bytes();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    /// Borrow, then copy: see the module docs.
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.nest(visitor, false, |d, v| d.deserialize_str(v))
    }

    /// Borrow, then copy: see the module docs.
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.nest(visitor, false, |d, v| d.deserialize_bytes(v))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.nest(visitor, true, |d, v| d.deserialize_seq(v))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.nest(visitor, true, |d, v| d.deserialize_map(v))
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Forward `visit_*` methods that take a plain value.
macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, value: $ty) -> Result<V::Value, E> {
            self.inner.$method(value)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, inner: D) -> Result<V::Value, D::Error> {
        let limits = self.limits;
        self.inner.visit_some(Guard { inner, limits })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, inner: D) -> Result<V::Value, D::Error> {
        let limits = self.limits;
        self.inner.visit_newtype_struct(Guard { inner, limits })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, inner: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(Access {
            inner,
            limits: self.limits,
            counted: self.counted,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, inner: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Access {
            inner,
            limits: self.limits,
            counted: self.counted,
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, inner: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Access {
            inner,
            limits: self.limits,
            counted: false,
        })
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seeded<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, inner: D) -> Result<S::Value, D::Error> {
        let limits = self.limits;
        self.inner.deserialize(Guard { inner, limits })
    }
}

impl<'l, A> Access<'l, A> {
    fn seed<S>(&self, inner: S) -> Seeded<'l, S> {
        Seeded {
            inner,
            limits: self.limits,
        }
    }

    /// Count an element of an untrusted-length sequence or map once it has
    /// been read (so the end of the sequence is not counted).
    fn count<T, E: de::Error>(&self, item: Option<T>) -> Result<Option<T>, E> {
        if self.counted && item.is_some() {
            self.limits.take_element()?;
        }
        Ok(item)
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T>(&mut self, seed: T) -> Result<Option<T::Value>, A::Error>
    where
        T: DeserializeSeed<'de>,
    {
        let item = self.inner.next_element_seed(self.seed(seed))?;
        self.count(item)
    }

    fn size_hint(&self) -> Option<usize> {
        self.limits.clamp_hint(self.inner.size_hint())
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error>
    where
        K: DeserializeSeed<'de>,
    {
        let key = self.inner.next_key_seed(self.seed(seed))?;
        self.count(key)
    }

    fn next_value_seed<T>(&mut self, seed: T) -> Result<T::Value, A::Error>
    where
        T: DeserializeSeed<'de>,
    {
        self.inner.next_value_seed(self.seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.limits.clamp_hint(self.inner.size_hint())
    }
}

impl<'l, 'de, A: EnumAccess<'de>> EnumAccess<'de> for Access<'l, A> {
    type Error = A::Error;
    type Variant = Access<'l, A::Variant>;

    fn variant_seed<T>(self, seed: T) -> Result<(T::Value, Self::Variant), A::Error>
    where
        T: DeserializeSeed<'de>,
    {
        // The variant identifier is not nested data: leave it unguarded so
        // it does not count as a level.
        let limits = self.limits;
        let (value, inner) = self.inner.variant_seed(seed)?;
        let variant = Access {
            inner,
            limits,
            counted: false,
        };
        Ok((value, variant))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T>(self, seed: T) -> Result<T::Value, A::Error>
    where
        T: DeserializeSeed<'de>,
    {
        let seed = self.seed(seed);
        self.inner.newtype_variant_seed(seed)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let visitor = Wrap {
            inner: visitor,
            limits: self.limits,
            counted: false,
        };
        self.inner.tuple_variant(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visitor = Wrap {
            inner: visitor,
            limits: self.limits,
            counted: false,
        };
        self.inner.struct_variant(fields, visitor)
    }
}
