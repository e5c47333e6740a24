//! The serialized form of everything xcs writes and reads back: cached inputs and outputs in a
//! `cache_dir` store, and the messages of the cluster. [`encode`] writes postcard; [`decode`]
//! reads it back **bounded**, because the bytes it reads were not necessarily written by us: a
//! store file is only as trustworthy as the directory it sits in, and a worker reads whatever a
//! peer sent.
//!
//! # Why a bounded decoder
//!
//! postcard has no nesting limit, and serde's derived impls recurse once per level: a value of
//! a recursive type (`enum Expr { Neg(Box<Expr>), .. }`) nested 200 000 levels deep fits in
//! 200 KB and overflows any thread's stack while it is decoded. A stack overflow is not a panic:
//! `catch_unwind` cannot stop it, the process aborts. Dropping such a value would recurse as
//! deeply, so the limit must stop decoding before the value is built, not check it afterwards.
//!
//! [`decode`] wraps postcard's deserializer in one that counts nesting through every way serde
//! recurses (each `deserialize_*` call hands its visitor to postcard, and the visitor is wrapped
//! so that every nested deserializer, sequence, map, enum, variant and seed it is handed is
//! wrapped too; serde_stacker's adapter is the model, with a counter instead of stack growth).
//! Past [`MAX_DEPTH`] levels it returns a serde error instead of going deeper, so the stack used
//! is bounded whatever the bytes say. It also bounds:
//!
//! - the input's size ([`MAX_BYTES`]);
//! - the work: a sequence of a zero-sized type (`Vec<()>`) costs no bytes per element, so a
//!   five-byte length would loop 2⁶⁴ times; the elements decoded are capped in proportion to the
//!   input ([`ZERO_SIZED_ELEMENTS`]);
//! - allocation: postcard takes strings and byte strings from the input, and serde never trusts
//!   a length read from the input to pre-allocate more than a small fixed amount;
//! - user code: a `Deserialize` impl that panics is an error, not an unwinding caller.

use std::cell::Cell;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::de::{self, DeserializeSeed, Visitor};
use serde::{Deserialize, Serialize};

/// The deepest nesting [`decode`] accepts (as serde_json's default): each `Option::Some`,
/// newtype struct, sequence, tuple, struct, map and enum variant the value is made of is a
/// level. Real values are rarely more than a few dozen levels deep.
pub(crate) const MAX_DEPTH: usize = 128;

/// The largest serialized value [`encode`] produces and [`decode`] reads (256 MiB).
pub(crate) const MAX_BYTES: usize = 256 << 20;

/// How many sequence or map elements [`decode`] may read per input byte, plus per level of
/// nesting. An element of a zero-sized type (`()`, a unit struct, `PhantomData`) takes no bytes;
/// any other takes at least one, so only values made mostly of zero-sized elements reach the cap.
pub(crate) const ZERO_SIZED_ELEMENTS: usize = 1 << 10;

/// Why bytes did not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// The input is larger than [`MAX_BYTES`].
    #[error("{0} bytes, more than the {MAX_BYTES} a serialized value may have")]
    TooLarge(usize),
    /// The value nests deeper than [`MAX_DEPTH`] levels.
    #[error("a value nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The value has more elements than its size allows ([`ZERO_SIZED_ELEMENTS`]).
    #[error("more sequence or map elements than the input's size allows")]
    TooManyElements,
    /// The bytes are not a value of the type (truncated, wrong type, invalid data).
    #[error("{0}")]
    Malformed(postcard::Error),
    /// The bytes hold a value, then more bytes.
    #[error("{0} bytes left over after the value")]
    TrailingBytes(usize),
    /// The type's `Deserialize` impl panicked.
    #[error("the type's `Deserialize` impl panicked")]
    Panicked,
}

/// `value` serialized (postcard), or `None` if it cannot be: its `Serialize` impl fails or
/// panics, or the result is larger than [`MAX_BYTES`] (it could never be decoded).
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Option<Vec<u8>> {
    match catch_unwind(AssertUnwindSafe(|| postcard::to_stdvec(value))) {
        Ok(Ok(bytes)) if bytes.len() <= MAX_BYTES => Some(bytes),
        Ok(_) => None,
        Err(payload) => {
            crate::util::drop_quietly(payload);
            None
        }
    }
}

/// The value whose serialized form is `bytes`, or `None` if they are not exactly one value of
/// type `T` (wrong type, truncated, trailing bytes, nested too deeply, hostile input, or a
/// panicking `Deserialize` impl): [`decode`] for readers that treat every failure alike, as a
/// store miss or a peer's malformed item.
pub(crate) fn decode_owned<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    decode(bytes).ok()
}

/// The value whose serialized form ([`encode`]) is `bytes`: exactly one value of type `T`, no
/// more than [`MAX_DEPTH`] levels deep, from at most [`MAX_BYTES`] bytes. Anything else is an
/// error, never a panic or an overflowing stack — including a `Deserialize` impl that panics.
pub(crate) fn decode<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, DecodeError> {
    if bytes.len() > MAX_BYTES {
        return Err(DecodeError::TooLarge(bytes.len()));
    }
    let budget = Budget {
        depth: Cell::new(0),
        elements_left: Cell::new(
            bytes
                .len()
                .saturating_add(ZERO_SIZED_ELEMENTS)
                .saturating_mul(MAX_DEPTH),
        ),
        exceeded: Cell::new(None),
    };
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut postcard = postcard::Deserializer::from_bytes(bytes);
        let value = T::deserialize(Limited {
            inner: &mut postcard,
            budget: &budget,
        });
        (value, postcard.finalize())
    }));
    match result {
        Ok((Ok(value), Ok([]))) => Ok(value),
        Ok((Ok(_), Ok(rest))) => Err(DecodeError::TrailingBytes(rest.len())),
        Ok((Ok(_), Err(error))) | Ok((Err(error), _)) => Err(budget
            .exceeded
            .take()
            .unwrap_or(DecodeError::Malformed(error))),
        Err(payload) => {
            crate::util::drop_quietly(payload);
            Err(DecodeError::Panicked)
        }
    }
}

/// What one [`decode`] may still spend, shared by every wrapper of that decode.
struct Budget {
    depth: Cell<usize>,
    elements_left: Cell<usize>,
    /// Which limit stopped the decode (the serde error postcard reports does not say).
    exceeded: Cell<Option<DecodeError>>,
}

impl Budget {
    /// Runs `f` one level deeper, or fails if that is past [`MAX_DEPTH`].
    fn nest<T, E: de::Error>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let depth = self.depth.get() + 1;
        if depth > MAX_DEPTH {
            self.exceeded.set(Some(DecodeError::TooDeep));
            return Err(E::custom(DecodeError::TooDeep));
        }
        self.depth.set(depth);
        let result = f();
        self.depth.set(depth - 1);
        result
    }

    /// Counts one more sequence or map element.
    fn element<E: de::Error>(&self) -> Result<(), E> {
        match self.elements_left.get().checked_sub(1) {
            Some(left) => {
                self.elements_left.set(left);
                Ok(())
            }
            None => {
                self.exceeded.set(Some(DecodeError::TooManyElements));
                Err(E::custom(DecodeError::TooManyElements))
            }
        }
    }
}

/// A wrapper that carries the budget along with the serde value it wraps: a deserializer, a
/// visitor, a seed, or an access to a sequence, map, enum or variant.
struct Limited<'b, T> {
    inner: T,
    budget: &'b Budget,
}

impl<'b, T> Limited<'b, T> {
    fn wrap<U>(&self, inner: U) -> Limited<'b, U> {
        Limited {
            inner,
            budget: self.budget,
        }
    }
}

/// The deserializer: every method hands postcard a wrapped visitor.
macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            let visitor = self.wrap(visitor);
            self.inner.$method($($arg,)* visitor)
        }
    )*};
}

impl<'de, D: de::Deserializer<'de>> de::Deserializer<'de> for Limited<'_, D> {
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
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Scalar visits go straight through.
macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

/// The visitor: each visit that hands over something to read more from is one level deeper, and
/// what it hands over is wrapped.
impl<'de, V: Visitor<'de>> Visitor<'de> for Limited<'_, V> {
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

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let d = self.wrap(d);
        self.budget.nest(|| self.inner.visit_some(d))
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let d = self.wrap(d);
        self.budget.nest(|| self.inner.visit_newtype_struct(d))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let seq = self.wrap(seq);
        self.budget.nest(|| self.inner.visit_seq(seq))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let map = self.wrap(map);
        self.budget.nest(|| self.inner.visit_map(map))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let data = self.wrap(data);
        self.budget.nest(|| self.inner.visit_enum(data))
    }
}

/// A seed deserializes from a wrapped deserializer.
impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Limited<'_, S> {
    type Value = S::Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        let d = self.wrap(d);
        self.inner.deserialize(d)
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Limited<'_, A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        self.budget.element()?;
        let seed = self.wrap(seed);
        self.inner.next_element_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Limited<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.budget.element()?;
        let seed = self.wrap(seed);
        self.inner.next_key_seed(seed)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        let seed = self.wrap(seed);
        self.inner.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, 'b, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Limited<'b, A> {
    type Error = A::Error;
    type Variant = Limited<'b, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let seed = self.wrap(seed);
        let budget = self.budget;
        let (value, inner) = self.inner.variant_seed(seed)?;
        Ok((value, Limited { inner, budget }))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Limited<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        let seed = self.wrap(seed);
        self.inner.newtype_variant_seed(seed)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let visitor = self.wrap(visitor);
        self.inner.tuple_variant(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visitor = self.wrap(visitor);
        self.inner.struct_variant(fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recursive type as users write them: each `Neg` is one more level (its enum).
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Expr {
        Lit(i64),
        Neg(Box<Expr>),
        Add(Box<Expr>, Box<Expr>),
    }

    /// The bytes of `Neg(Neg(…Lit(1)…))` with `negs` `Neg`s, written directly (building the
    /// value to encode it would recurse as deeply as decoding it).
    fn nested_negs(negs: usize) -> Vec<u8> {
        let mut bytes = vec![1u8; negs]; // variant 1 (`Neg`), repeated
        bytes.extend([0, 2]); // variant 0 (`Lit`), zigzag(1)
        bytes
    }

    /// Runs `f` on a thread with the default 2 MiB stack of spawned threads, as a caller's or a
    /// pool's thread would have.
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    fn depth_of(mut expr: &Expr) -> usize {
        let mut depth = 1;
        while let Expr::Neg(inner) = expr {
            depth += 1;
            expr = inner;
        }
        depth
    }

    #[test]
    fn values_up_to_the_depth_limit_decode() {
        // `negs` Negs and the Lit: negs + 1 levels.
        let depth = on_small_stack(|| {
            let expr: Expr = decode(&nested_negs(MAX_DEPTH - 1)).unwrap();
            let depth = depth_of(&expr);
            // Re-encoding goes as deep as decoding did.
            assert_eq!(encode(&expr).unwrap(), nested_negs(MAX_DEPTH - 1));
            depth
        });
        assert_eq!(depth, MAX_DEPTH);
        assert_eq!(
            decode::<Expr>(&nested_negs(MAX_DEPTH)),
            Err(DecodeError::TooDeep)
        );
        let sum = Expr::Add(
            Box::new(Expr::Lit(1)),
            Box::new(Expr::Neg(Box::new(Expr::Lit(-2)))),
        );
        assert_eq!(decode::<Expr>(&encode(&sum).unwrap()), Ok(sum));
    }

    #[test]
    fn a_deeply_nested_value_is_an_error_not_a_stack_overflow() {
        let results = on_small_stack(|| {
            let bytes = nested_negs(200_000);
            let expr = decode::<Expr>(&bytes);
            // Other ways to nest: options of boxes, sequences of sequences.
            let options = decode::<Option<Box<Option<Box<Option<Box<Expr>>>>>>>(&[1; 200_000]);
            #[derive(Debug, PartialEq, Deserialize)]
            struct List(Vec<List>);
            let lists = decode::<List>(&[1; 200_000]);
            assert_eq!(
                decode::<List>(&[2, 0, 1, 0]),
                Ok(List(vec![List(vec![]), List(vec![List(vec![])])]))
            );
            (expr.err(), options.err(), lists.err())
        });
        assert_eq!(
            results,
            (
                Some(DecodeError::TooDeep),
                Some(DecodeError::TooDeep),
                Some(DecodeError::TooDeep)
            )
        );
    }

    #[test]
    fn borrowed_values_decode() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Message<'a> {
            name: &'a str,
            #[serde(borrow)]
            parts: Vec<&'a str>,
            map: std::collections::BTreeMap<u8, Option<char>>,
        }
        let message = Message {
            name: "op",
            parts: vec!["a", "bc"],
            map: [(1, Some('x')), (2, None)].into(),
        };
        let bytes = encode(&message).unwrap();
        assert_eq!(decode::<Message<'_>>(&bytes), Ok(message));
    }

    #[test]
    fn bad_bytes_are_errors() {
        let bytes = encode(&(7u8, String::from("abc"))).unwrap();
        assert!(matches!(
            decode::<(u8, String)>(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Malformed(_))
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            decode::<(u8, String)>(&longer),
            Err(DecodeError::TrailingBytes(1))
        );
        assert!(decode::<String>(&[2, 0xff, 0xfe]).is_err(), "not UTF-8");
        assert!(decode::<bool>(&[2]).is_err(), "not a bool");
        assert!(decode::<u8>(&[]).is_err(), "empty");
        assert!(decode::<Expr>(&[7, 0]).is_err(), "no such variant");
        assert!(
            decode::<Expr>(&nested_negs(50)[..40]).is_err(),
            "truncated deep"
        );
        // A length of 2^35 elements must not allocate 2^35 anything.
        assert!(decode::<Vec<u64>>(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]).is_err());
        assert!(decode::<Vec<u64>>(&[0xff; 16]).is_err(), "overlong varint");
        // Garbage of every length, for a type with every kind of level.
        type Mixed = (
            Vec<Option<Expr>>,
            std::collections::BTreeMap<String, (u8, char)>,
        );
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..2000 {
            let garbage: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = decode::<Mixed>(&garbage);
        }
        let too_large = vec![0u8; MAX_BYTES + 1];
        assert_eq!(
            decode::<Vec<u8>>(&too_large),
            Err(DecodeError::TooLarge(MAX_BYTES + 1))
        );
    }

    #[test]
    fn zero_sized_elements_are_bounded() {
        // 2^62 units from nine bytes: an error, promptly, not a loop.
        let bytes = encode(&(1usize << 62)).unwrap();
        assert!(matches!(
            decode::<Vec<()>>(&bytes),
            Err(DecodeError::TooManyElements)
        ));
        // A few units are fine.
        assert_eq!(decode::<Vec<()>>(&[3]), Ok(vec![(); 3]));
    }

    #[test]
    fn panicking_serde_impls_are_errors() {
        struct Bomb;
        impl Serialize for Bomb {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                panic!("Serialize exploded")
            }
        }
        impl<'de> Deserialize<'de> for Bomb {
            fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Bomb, D::Error> {
                panic!("Deserialize exploded")
            }
        }
        assert!(encode(&Bomb).is_none());
        assert_eq!(decode::<Bomb>(&[0]).err(), Some(DecodeError::Panicked));
        // A panic deep inside a value too.
        assert_eq!(
            decode::<Vec<Option<Bomb>>>(&[2, 0, 1]).err(),
            Some(DecodeError::Panicked)
        );
    }

    #[test]
    fn encode_decode_round_trip_and_are_stable() {
        let value = (
            String::from("héllo"),
            300u64,
            vec![-1i32, 2],
            Some(true),
            1.5f64,
        );
        let bytes = encode(&value).unwrap();
        assert_eq!(
            decode_owned::<(String, u64, Vec<i32>, Option<bool>, f64)>(&bytes),
            Some(value)
        );
        // The wire format: varint integers, length-prefixed strings. Pinned: stored keys and
        // values must read the same in every later build.
        assert_eq!(
            encode(&(1u32, "a", 300usize)).unwrap(),
            [1, 1, b'a', 0xac, 0x02]
        );
        assert_eq!(encode(&Some(-1i64)).unwrap(), [1, 1]);
    }

    #[test]
    fn decode_refuses_bad_bytes() {
        let bytes = encode(&(7u8, String::from("abc"))).unwrap();
        assert_eq!(
            decode_owned::<(u8, String)>(&bytes[..bytes.len() - 1]),
            None,
            "truncated"
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            decode_owned::<(u8, String)>(&longer),
            None,
            "trailing bytes"
        );
        assert_eq!(decode_owned::<String>(&[2, 0xff, 0xfe]), None, "not UTF-8");
        assert_eq!(decode_owned::<bool>(&[2]), None, "not a bool");
        assert_eq!(decode_owned::<u8>(&[]), None, "empty");
        // A length of 2^35 elements must not allocate 2^35 anything.
        assert_eq!(
            decode_owned::<Vec<u64>>(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
            None
        );
        assert_eq!(
            decode_owned::<Vec<u64>>(&[0xff; 16]),
            None,
            "overlong varint"
        );
    }

    #[test]
    fn decode_owned_of_a_panicking_impl_is_none() {
        struct Bomb;
        impl Serialize for Bomb {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                panic!("Serialize exploded")
            }
        }
        impl<'de> Deserialize<'de> for Bomb {
            fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Bomb, D::Error> {
                panic!("Deserialize exploded")
            }
        }
        assert!(encode(&Bomb).is_none());
        assert!(decode_owned::<Bomb>(&[0]).is_none());
    }
}
