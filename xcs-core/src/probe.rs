//! Compile-time capability probes for generated operators ("autoref specialization").
//!
//! An operator's input is cached only if it is `Hash + Eq` and its output `Clone` (and its output
//! counts its heap against the cache's byte bound only if its size is known), and using an
//! operator must never fail to compile because a type lacks those. Rust has no specialization on
//! stable, but macro-generated code knows concrete types, and method resolution on `&&Probe<T>`
//! prefers an impl for `&Probe<T>` (which requires the capability) over one for `Probe<T>` (which
//! does not). Generated code calls the probe methods with both traits in scope; the answer is
//! resolved at compile time and costs nothing at run time.

use std::fmt::{self, Debug};
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::mem::size_of;

use crate::cache::CacheSize;

/// A zero-sized stand-in for the type `T` whose capabilities are asked about.
pub struct Probe<T>(PhantomData<fn() -> T>);

impl<T> Probe<T> {
    /// A probe for `T`.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Probe(PhantomData)
    }
}

/// `T: Hash + Eq`: hash values into the cache key.
pub trait HashProbe<T> {
    /// Whether `T` can be part of a cache key.
    fn can_hash(&self) -> bool;
    /// Feeds `value` into `state`.
    fn hash_into(&self, value: &T, state: &mut dyn Hasher);
}

/// Fallback: `T` cannot be hashed; the operator runs uncached.
pub trait NoHashProbe<T> {
    /// Always `false`.
    fn can_hash(&self) -> bool;
    /// Never called (the operator is uncached); does nothing.
    fn hash_into(&self, value: &T, state: &mut dyn Hasher);
}

impl<T: Hash + Eq> HashProbe<T> for &Probe<T> {
    fn can_hash(&self) -> bool {
        true
    }
    fn hash_into(&self, value: &T, mut state: &mut dyn Hasher) {
        value.hash(&mut state);
    }
}

impl<T> NoHashProbe<T> for Probe<T> {
    fn can_hash(&self) -> bool {
        false
    }
    fn hash_into(&self, _value: &T, _state: &mut dyn Hasher) {}
}

/// `T: Clone`: a cached output can be handed out again.
pub trait CloneProbe<T> {
    /// A function cloning `T`.
    fn cloner(&self) -> Option<fn(&T) -> T>;
}

/// Fallback: `T` cannot be cloned; the operator runs uncached.
pub trait NoCloneProbe<T> {
    /// Always `None`.
    fn cloner(&self) -> Option<fn(&T) -> T>;
}

impl<T: Clone> CloneProbe<T> for &Probe<T> {
    fn cloner(&self) -> Option<fn(&T) -> T> {
        Some(T::clone)
    }
}

impl<T> NoCloneProbe<T> for Probe<T> {
    fn cloner(&self) -> Option<fn(&T) -> T> {
        None
    }
}

/// `T: Serialize`: inputs and outputs persist in a `cache_dir` store.
pub trait EncodeProbe<T> {
    /// A function serializing a `T` (`None` from it: this value cannot be).
    fn encoder(&self) -> Option<crate::persist::Encode<T>>;
}

/// Fallback: `T` is not `Serialize`; the operator uses the memory cache only.
pub trait NoEncodeProbe<T> {
    /// Always `None`.
    fn encoder(&self) -> Option<crate::persist::Encode<T>>;
}

impl<T: serde::Serialize> EncodeProbe<T> for &Probe<T> {
    fn encoder(&self) -> Option<crate::persist::Encode<T>> {
        Some(|value| crate::codec::encode(value))
    }
}

impl<T> NoEncodeProbe<T> for Probe<T> {
    fn encoder(&self) -> Option<crate::persist::Encode<T>> {
        None
    }
}

/// `T: DeserializeOwned`: stored outputs can be read back.
pub trait DecodeProbe<T> {
    /// A function deserializing a `T` (`None` from it: the bytes are not one).
    fn decoder(&self) -> Option<crate::persist::Decode<T>>;
}

/// Fallback: `T` is not `Deserialize`; the operator uses the memory cache only.
pub trait NoDecodeProbe<T> {
    /// Always `None`.
    fn decoder(&self) -> Option<crate::persist::Decode<T>>;
}

impl<T: serde::de::DeserializeOwned> DecodeProbe<T> for &Probe<T> {
    fn decoder(&self) -> Option<crate::persist::Decode<T>> {
        Some(|bytes| crate::codec::decode_owned(bytes))
    }
}

impl<T> NoDecodeProbe<T> for Probe<T> {
    fn decoder(&self) -> Option<crate::persist::Decode<T>> {
        None
    }
}

/// `T: CacheSize`: an output counts its `size_of` and the heap it owns against the cache's byte
/// bound. Called on `&&&Probe<T>`: one level deeper than the other probes, to leave room for
/// [`VecSizeProbe`].
pub trait SizeProbe<T> {
    /// A function counting the bytes of a `T`.
    fn byte_counter(&self) -> fn(&T) -> usize;
}

/// A `Vec` whose elements are not `CacheSize`: its buffer, `capacity × size_of::<T>()`.
pub trait VecSizeProbe<T> {
    /// A function counting the bytes of a `T`.
    fn byte_counter(&self) -> fn(&T) -> usize;
}

/// Fallback: the size of the heap `T` owns is unknown; it counts its `size_of` only.
pub trait NoSizeProbe<T> {
    /// A function counting `size_of::<T>()`.
    fn byte_counter(&self) -> fn(&T) -> usize;
}

impl<T: CacheSize> SizeProbe<T> for &&Probe<T> {
    fn byte_counter(&self) -> fn(&T) -> usize {
        |value| size_of::<T>() + value.heap_size()
    }
}

impl<T> VecSizeProbe<Vec<T>> for &Probe<Vec<T>> {
    fn byte_counter(&self) -> fn(&Vec<T>) -> usize {
        |value| size_of::<Vec<T>>() + value.capacity() * size_of::<T>()
    }
}

impl<T> NoSizeProbe<T> for Probe<T> {
    fn byte_counter(&self) -> fn(&T) -> usize {
        |_| size_of::<T>()
    }
}

/// `T: Debug`: show the value.
pub trait DebugProbe<T> {
    /// `value` as something to format.
    fn as_debug<'a>(&self, value: &'a T) -> &'a dyn Debug;
}

/// Fallback: `T` is not `Debug`; show a placeholder.
pub trait NoDebugProbe<T> {
    /// A placeholder (`_`) to format instead of the value.
    fn as_debug<'a>(&self, value: &'a T) -> &'a dyn Debug;
}

impl<T: Debug> DebugProbe<T> for &Probe<T> {
    fn as_debug<'a>(&self, value: &'a T) -> &'a dyn Debug {
        value
    }
}

/// What a field whose type is not `Debug` shows.
struct Opaque;

impl Debug for Opaque {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("_")
    }
}

impl<T> NoDebugProbe<T> for Probe<T> {
    fn as_debug<'a>(&self, _value: &'a T) -> &'a dyn Debug {
        &Opaque
    }
}

#[cfg(test)]
// The double borrow is the mechanism under test, not a mistake.
#[allow(clippy::needless_borrow)]
mod tests {
    use super::*;

    struct Opaque;

    #[test]
    fn probes_pick_the_capable_impl() {
        assert!((&&Probe::<String>::new()).can_hash());
        assert!(!(&&Probe::<Opaque>::new()).can_hash());
        assert!(!(&&Probe::<f64>::new()).can_hash());
        assert!((&&Probe::<String>::new()).cloner().is_some());
        assert!((&&Probe::<Opaque>::new()).cloner().is_none());
        assert_eq!(format!("{:?}", (&&Probe::<u8>::new()).as_debug(&7)), "7");
        let text = "x".repeat(100);
        assert_eq!(
            (&&&Probe::<String>::new()).byte_counter()(&text),
            size_of::<String>() + 100
        );
        let nested = vec![text.clone(), text];
        assert_eq!(
            (&&&Probe::<Vec<String>>::new()).byte_counter()(&nested),
            size_of::<Vec<String>>() + 2 * size_of::<String>() + 200
        );
        // Not `CacheSize`: a `Vec` of them counts its buffer, anything else its `size_of`.
        #[allow(dead_code)]
        struct Pair(u64, u64);
        let pairs = vec![Pair(1, 2), Pair(3, 4), Pair(5, 6)];
        assert_eq!(
            (&&&Probe::<Vec<Pair>>::new()).byte_counter()(&pairs),
            size_of::<Vec<Pair>>() + pairs.capacity() * 16
        );
        assert_eq!((&&&Probe::<Pair>::new()).byte_counter()(&pairs[0]), 16);
        assert_eq!((&&&Probe::<[u64; 4]>::new()).byte_counter()(&[0; 4]), 32);
        assert_eq!(
            format!("{:?}", (&&Probe::<Opaque>::new()).as_debug(&Opaque)),
            "_"
        );
    }
}
