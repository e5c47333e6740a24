//! How many bytes a cached output counts: [`CacheSize`].

use std::collections::{BTreeMap, HashMap};
use std::mem::size_of;
use std::sync::Arc;

/// The heap memory a value owns: what a cached output counts against the byte bound
/// ([`set_cache_max_bytes`](crate::set_cache_max_bytes)) beyond its own `size_of`.
///
/// Implemented for the standard types whose heap use is known: numbers, `bool`, `char`, `()`,
/// `&'static str`, `Duration` (none), `String` (its capacity), `Box<str>`, `Arc<str>`, and
/// `Vec`, `Box`, `Option`, arrays, tuples, `HashMap` and `BTreeMap` of such types (their
/// elements' sizes, approximately for the maps). Shared data (`Arc<str>`) is counted in full.
///
/// Implement it for your own output types so that an `#[xcs::operator]` returning them is
/// counted at its real size. An output type without it counts its `size_of` only, and a
/// `Vec<T>` of such elements its capacity × `size_of::<T>()`. (Hand-written operators are
/// cached only for standard types, which are all counted.)
///
/// ```
/// use xcs::CacheSize;
///
/// #[derive(Clone)]
/// struct Answer {
///     text: String,
///     tokens: Vec<u32>,
/// }
///
/// impl CacheSize for Answer {
///     fn heap_size(&self) -> usize {
///         self.text.heap_size() + self.tokens.heap_size()
///     }
/// }
///
/// let answer = Answer { text: "forty-two".to_string(), tokens: vec![1, 2, 3] };
/// assert_eq!(answer.heap_size(), answer.text.capacity() + 3 * 4);
/// ```
pub trait CacheSize {
    /// The bytes this value owns on the heap, not counting `size_of::<Self>()`.
    fn heap_size(&self) -> usize;
}

macro_rules! no_heap {
    ($($t:ty),*) => {$(
        impl CacheSize for $t {
            fn heap_size(&self) -> usize {
                0
            }
        }
    )*};
}

no_heap!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    char,
    (),
    &'static str,
    std::time::Duration
);

impl CacheSize for String {
    fn heap_size(&self) -> usize {
        self.capacity()
    }
}

impl CacheSize for Box<str> {
    fn heap_size(&self) -> usize {
        self.len()
    }
}

impl CacheSize for Arc<str> {
    fn heap_size(&self) -> usize {
        self.len()
    }
}

impl<T: CacheSize> CacheSize for Vec<T> {
    fn heap_size(&self) -> usize {
        self.capacity() * size_of::<T>() + self.iter().map(T::heap_size).sum::<usize>()
    }
}

impl<T: CacheSize> CacheSize for Box<[T]> {
    fn heap_size(&self) -> usize {
        self.len() * size_of::<T>() + self.iter().map(T::heap_size).sum::<usize>()
    }
}

impl<T: CacheSize> CacheSize for Box<T> {
    fn heap_size(&self) -> usize {
        size_of::<T>() + (**self).heap_size()
    }
}

impl<T: CacheSize> CacheSize for Option<T> {
    fn heap_size(&self) -> usize {
        self.as_ref().map_or(0, T::heap_size)
    }
}

impl<T: CacheSize, const N: usize> CacheSize for [T; N] {
    fn heap_size(&self) -> usize {
        self.iter().map(T::heap_size).sum()
    }
}

impl<K: CacheSize, V: CacheSize, S> CacheSize for HashMap<K, V, S> {
    fn heap_size(&self) -> usize {
        // Buckets of (K, V) plus a control byte each; the entries' own heap.
        self.capacity() * (size_of::<(K, V)>() + 1)
            + self
                .iter()
                .map(|(k, v)| k.heap_size() + v.heap_size())
                .sum::<usize>()
    }
}

impl<K: CacheSize, V: CacheSize> CacheSize for BTreeMap<K, V> {
    fn heap_size(&self) -> usize {
        // Nodes are at least half full: count each entry once and a half.
        self.len() * size_of::<(K, V)>() * 3 / 2
            + self
                .iter()
                .map(|(k, v)| k.heap_size() + v.heap_size())
                .sum::<usize>()
    }
}

macro_rules! tuple_heap {
    ($(($($name:ident),+)),*) => {$(
        impl<$($name: CacheSize),+> CacheSize for ($($name,)+) {
            #[allow(non_snake_case)]
            fn heap_size(&self) -> usize {
                let ($($name,)+) = self;
                0 $(+ $name.heap_size())+
            }
        }
    )*};
}

tuple_heap!(
    (A),
    (A, B),
    (A, B, C),
    (A, B, C, D),
    (A, B, C, D, E),
    (A, B, C, D, E, F)
);

/// The bytes `value` counts against the byte bound: its `size_of` and its heap.
pub(super) fn bytes_of<T: CacheSize>(value: &T) -> usize {
    size_of::<T>() + value.heap_size()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_sizes_of_std_types() {
        assert_eq!(7u64.heap_size(), 0);
        assert_eq!(String::with_capacity(10).heap_size(), 10);
        assert_eq!(Box::<str>::from("abc").heap_size(), 3);
        assert_eq!(Arc::<str>::from("abcd").heap_size(), 4);
        assert_eq!(vec![1u32, 2].heap_size(), 8);
        assert_eq!(Some("ab".to_string()).heap_size(), 2);
        assert_eq!(("ab".to_string(), 3u8, vec![1u16]).heap_size(), 4);
        assert_eq!(Box::new(5u64).heap_size(), 8);
        assert_eq!(["a".to_string(), "bc".to_string()].heap_size(), 3);
    }
}
