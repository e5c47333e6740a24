//! The persistent half of the cache (`cache_dir`): which operators persist, under which key,
//! and how every fault of the store degrades to the memory cache.
//!
//! A call with `enable_caching = true` and a `cache_dir` goes: memory cache → (on a miss, holding
//! the single-flight claim) the store → (on a miss there too) the body, whose output is then
//! stored in both. Keys are the operator's name, its [`PersistSupport::version`], the fingerprint
//! of a generated operator's code and the input's serialized bytes; values are the output's serialized bytes (postcard). A stored value that
//! does not decode as the operator's output type is a miss (and is replaced); a store that
//! cannot be opened, read or written is skipped with one warning per directory — never a failed
//! call.

pub(crate) mod store;

use std::any::{Any, TypeId};
use std::sync::Arc;

use crate::cache::std_types;
use crate::codec;
use crate::options::ExecutionOptions;
use store::Store;

pub use store::clear_cache_dir;

/// How an operator's results persist in a `cache_dir` store: how to serialize its input (the
/// key) and its output (the value), and the version that invalidates old entries.
///
/// Generated operators persist whenever their parameters and output are serde types, and so do
/// hand-written ones whose `impl Operator`/`impl AsyncOperator` block carries
/// `#[xcs::operator]`. Their keys also hold a fingerprint of the code the attribute is on (the
/// function's signature and body, or the impl block, not comments or formatting), so editing it
/// makes earlier entries misses by itself; the version covers what that code calls. Other
/// hand-written operators persist when their input and output are common standard types
/// (integers, `bool`, `char`, `String`, `()` and `Vec`s of them), or opt in by overriding
/// [`Operator::persist_support`](crate::Operator::persist_support):
///
/// ```
/// use xcs::{Operator, PersistSupport, XcsError};
///
/// struct Answer;
/// impl Operator for Answer {
///     type Input = (String, u32);
///     type Output = Vec<String>;
///     fn forward(&self, (q, n): (String, u32)) -> Result<Vec<String>, XcsError> {
///         Ok(vec![q; n as usize])
///     }
///     fn name(&self) -> &str { "answer" }
///     fn persist_support(&self) -> Option<PersistSupport<(String, u32), Vec<String>>> {
///         // Bump the version when the body's answers change.
///         Some(PersistSupport::serde().version(2))
///     }
/// }
/// assert_eq!(Answer.persist_support().map(|s| s.version_number()), Some(2));
/// ```
pub struct PersistSupport<I, O> {
    version: u32,
    fingerprint: u64,
    encode_input: Encode<I>,
    encode_output: Encode<O>,
    decode_output: Decode<O>,
}

/// Serializes a value (`None`: it cannot be).
pub type Encode<T> = fn(&T) -> Option<Vec<u8>>;
/// Deserializes a value (`None`: the bytes are not one).
pub type Decode<T> = fn(&[u8]) -> Option<T>;

impl<I, O> Clone for PersistSupport<I, O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<I, O> Copy for PersistSupport<I, O> {}

impl<I, O> std::fmt::Debug for PersistSupport<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistSupport")
            .field("version", &self.version)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl<I, O> PersistSupport<I, O> {
    /// Persistence through serde, version 0.
    pub fn serde() -> Self
    where
        I: serde::Serialize,
        O: serde::Serialize + serde::de::DeserializeOwned,
    {
        PersistSupport {
            version: 0,
            fingerprint: 0,
            encode_input: |input| codec::encode(input),
            encode_output: |output| codec::encode(output),
            decode_output: |bytes| codec::decode_owned(bytes),
        }
    }

    /// From explicit functions (used by generated code).
    #[doc(hidden)]
    pub fn from_fns(
        encode_input: Encode<I>,
        encode_output: Encode<O>,
        decode_output: Decode<O>,
    ) -> Self {
        PersistSupport {
            version: 0,
            fingerprint: 0,
            encode_input,
            encode_output,
            decode_output,
        }
    }

    /// The same, with entries kept under `version`: entries stored under another version are
    /// never returned. Bump it when the body's results change.
    #[must_use]
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// The version entries are kept under.
    pub fn version_number(&self) -> u32 {
        self.version
    }

    /// The same, with entries also kept under `fingerprint`, a hash of the operator's code
    /// (written by `#[xcs::operator]`; 0 otherwise). Not part of the stable API.
    #[doc(hidden)]
    #[must_use]
    pub fn fingerprint(mut self, fingerprint: u64) -> Self {
        self.fingerprint = fingerprint;
        self
    }

    /// The serialized input (`None`: it cannot be serialized).
    pub(crate) fn encode_input(&self, input: &I) -> Option<Vec<u8>> {
        (self.encode_input)(input)
    }

    /// The output these bytes serialize (`None`: they are not one).
    pub(crate) fn decode_output(&self, bytes: &[u8]) -> Option<O> {
        (self.decode_output)(bytes)
    }
}

impl<I: 'static, O: 'static> PersistSupport<I, O> {
    /// Persistence when `I` and `O` are among the common standard types (see the type docs).
    pub fn for_std_types() -> Option<Self> {
        Some(PersistSupport {
            version: 0,
            fingerprint: 0,
            encode_input: std_encoder::<I>()?,
            encode_output: std_encoder::<O>()?,
            decode_output: std_decoder::<O>()?,
        })
    }
}

fn std_encoder<T: 'static>() -> Option<Encode<T>> {
    macro_rules! pick {
        ($($t:ty),*) => {$(
            if TypeId::of::<T>() == TypeId::of::<$t>() {
                return Some(|value: &T| {
                    (value as &dyn Any).downcast_ref::<$t>().and_then(|v| codec::encode(v))
                });
            }
        )*};
    }
    std_types!(pick);
    None
}

fn std_decoder<T: 'static>() -> Option<Decode<T>> {
    macro_rules! pick {
        ($($t:ty),*) => {$(
            if TypeId::of::<T>() == TypeId::of::<$t>() {
                return Some(|bytes: &[u8]| {
                    let value: Box<dyn Any> = Box::new(codec::decode_owned::<$t>(bytes)?);
                    value.downcast::<T>().ok().map(|v| *v)
                });
            }
        )*};
    }
    std_types!(pick);
    None
}

/// One call's place in the store: the store and the key.
pub(crate) struct Slot<O> {
    store: Arc<Store>,
    key: Vec<u8>,
    encode_output: Encode<O>,
    decode_output: Decode<O>,
}

/// The store slot of a call of `operator` with `input`, when the options ask for persistence,
/// the operator supports it and the store opens (else `None`: the memory cache alone).
pub(crate) fn slot<I, O>(
    options: &ExecutionOptions,
    operator: &str,
    support: Option<PersistSupport<I, O>>,
    input: &I,
) -> Option<Slot<O>> {
    let dir = options.cache_dir?;
    let Some(support) = support else {
        warn_not_persisted(operator);
        return None;
    };
    let input = guarded(|| (support.encode_input)(input))?;
    // A store that cannot be opened warns once (in `Store::open`) and is skipped.
    let store = Store::open(dir).ok()?;
    // The key names the input and output types too: a type changed without a version bump
    // cannot be handed bytes of the old type (postcard is not self-describing).
    let operator = format!(
        "{operator}\u{0}{}\u{0}{}",
        std::any::type_name::<I>(),
        std::any::type_name::<O>()
    );
    Some(Slot {
        store,
        key: store::key_bytes(&operator, support.version, support.fingerprint, &input),
        encode_output: support.encode_output,
        decode_output: support.decode_output,
    })
}

/// Warns once per operator name that `cache_dir` cannot apply to it.
fn warn_not_persisted(operator: &str) {
    crate::warn::warn_once("persistence", operator, || {
        format!(
            "`{operator}` is cached in memory only: `cache_dir` needs its input and output to be \
             serde types (a hand-written operator gets that from `#[xcs::operator]` on its \
             `impl Operator`/`impl AsyncOperator` block, or opts in with \
             `Operator::persist_support`)"
        )
    });
}

/// Runs user serialization code, a panic in it counting as "cannot serialize".
fn guarded<T>(f: impl FnOnce() -> Option<T>) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(payload) => {
            crate::util::drop_quietly(payload);
            None
        }
    }
}

impl<O> Slot<O> {
    /// The stored output, if there is one that decodes (one that does not is a miss).
    pub(crate) fn get(&self) -> Option<O> {
        let bytes = self.store.get(&self.key).ok()??;
        let Some(output) = guarded(|| (self.decode_output)(&bytes)) else {
            // Not a value of this output type (a damaged entry): a miss, and the entry goes, so
            // it is never tried again.
            let _ = self.store.remove(&self.key);
            return None;
        };
        crate::cache::count_persistent_hit();
        Some(output)
    }

    /// Stores `output` (replacing what was there); a store fault is skipped.
    #[cfg(test)]
    pub(crate) fn put(&self, output: &O) {
        if let Some(bytes) = guarded(|| (self.encode_output)(output)) {
            let _ = self.store.put(&self.key, &bytes);
        }
    }

    /// The write of `output` to the store, detached from the output's type (an async call runs
    /// it off the runtime's threads); `None` when the output does not serialize.
    pub(crate) fn write(&self, output: &O) -> Option<Write> {
        let bytes = guarded(|| (self.encode_output)(output))?;
        Some(Write {
            store: Arc::clone(&self.store),
            key: self.key.clone(),
            bytes,
        })
    }
}

/// A value on its way to the store: see [`Slot::write`].
pub(crate) struct Write {
    store: Arc<Store>,
    key: Vec<u8>,
    bytes: Vec<u8>,
}

impl Write {
    /// Writes the value (replacing what was there); a store fault is skipped.
    pub(crate) fn run(self) {
        let _ = self.store.put(&self.key, &self.bytes);
    }
}

#[cfg(all(test, feature = "persist"))]
mod tests {
    use super::*;
    use crate::options::CacheDir;

    fn options_in(dir: &std::path::Path) -> ExecutionOptions {
        ExecutionOptions {
            enable_caching: true,
            cache_dir: Some(CacheDir::new(dir).unwrap()),
            ..ExecutionOptions::default()
        }
    }

    #[test]
    fn values_round_trip_and_undecodable_ones_are_misses_that_go_away() {
        let dir = std::env::temp_dir().join(format!("xcs-persist-unit-{}", std::process::id()));
        let options = options_in(&dir);
        let support = PersistSupport::<String, u64>::for_std_types();
        let slot = slot(&options, "persist_unit", support, &"q".to_string()).unwrap();
        assert_eq!(slot.get(), None);
        slot.put(&42);
        assert_eq!(slot.get(), Some(42));
        // Damage the entry: the bytes of a string where a u64 is expected do not decode.
        slot.store.put(&slot.key, &[0xff; 11]).unwrap();
        assert_eq!(slot.get(), None);
        assert_eq!(
            slot.store.get(&slot.key).unwrap(),
            None,
            "the bad entry is removed"
        );
        // Another version, another key.
        let v1 = super::slot(
            &options,
            "persist_unit",
            support.map(|s| s.version(1)),
            &"q".into(),
        );
        slot.put(&7);
        assert_eq!(v1.unwrap().get(), None);
        // Another fingerprint, another key.
        let other_code = super::slot(
            &options,
            "persist_unit",
            support.map(|s| s.fingerprint(0xfeed)),
            &"q".into(),
        );
        assert_eq!(other_code.unwrap().get(), None);
        assert_eq!(slot.get(), Some(7));
        let _ = store::clear_cache_dir(&dir);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn no_dir_or_no_support_means_memory_only() {
        let support = PersistSupport::<String, u64>::for_std_types();
        assert!(slot(&ExecutionOptions::default(), "x", support, &"q".to_string()).is_none());
        let options = options_in(&std::env::temp_dir());
        assert!(slot::<f64, u64>(&options, "x", None, &1.0).is_none());
        assert!(PersistSupport::<f64, u64>::for_std_types().is_none());
    }
}
