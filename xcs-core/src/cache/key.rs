//! Which operators can be cached, and under which key: [`CacheSupport`] fingerprints an input
//! into a [`CacheKey`], clones an output and counts its bytes.

use std::any::{Any, TypeId};
use std::hash::{BuildHasher, Hash, Hasher};
use std::mem::size_of;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{PoisonError, RwLock};

use foldhash::quality::FixedState;

use super::size::bytes_of;
use crate::util::panic_text;

/// Two independently seeded passes of a fast, high-quality hash make the 128-bit fingerprint.
/// (Fixed seeds: a fingerprint must not depend on the process, only on the input.)
const KEY_SEEDS: [FixedState; 2] = [
    FixedState::with_seed(0x9e37_79b9_7f4a_7c15),
    FixedState::with_seed(0xc2b2_ae3d_27d4_eb4f),
];

/// How an operator's calls are cached: how to fingerprint its input, clone its output, and
/// count the output's bytes. Not a stable API: built by generated code and by the default
/// `Operator::__xcs_cache_support`.
pub struct CacheSupport<I, O> {
    operator: TypeId,
    hash_input: fn(&I, &mut dyn Hasher),
    pub(super) clone_output: fn(&O) -> O,
    pub(super) output_bytes: fn(&O) -> usize,
}

impl<I, O> Clone for CacheSupport<I, O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<I, O> Copy for CacheSupport<I, O> {}

impl<I: 'static, O: 'static> CacheSupport<I, O> {
    /// Cache support for operator type `Op` from explicit functions. Outputs count their
    /// `size_of` only, unless [`with_output_bytes`](Self::with_output_bytes) says more.
    pub fn new<Op: ?Sized + 'static>(
        hash_input: fn(&I, &mut dyn Hasher),
        clone_output: fn(&O) -> O,
    ) -> Self {
        CacheSupport {
            operator: TypeId::of::<Op>(),
            hash_input,
            clone_output,
            output_bytes: |_| size_of::<O>(),
        }
    }

    /// The same support, counting an output as `output_bytes` says (`size_of` plus heap).
    #[must_use]
    pub fn with_output_bytes(self, output_bytes: fn(&O) -> usize) -> Self {
        CacheSupport {
            output_bytes,
            ..self
        }
    }

    /// Cache support for operator type `Op` when `I` and `O` are among the standard types
    /// listed in the module docs.
    pub fn for_std_types_of<Op: ?Sized + 'static>() -> Option<Self> {
        Some(CacheSupport {
            operator: TypeId::of::<Op>(),
            hash_input: std_hasher::<I>()?,
            clone_output: std_cloner::<O>()?,
            output_bytes: std_sizer::<O>()?,
        })
    }

    /// What a hand-written operator `Op` named `name` gets by default:
    /// [`for_std_types_of`](Self::for_std_types_of), or a warning (once per operator type)
    /// saying why its calls run uncached.
    pub fn for_hand_written<Op: ?Sized + 'static>(name: &str) -> Option<Self> {
        let support = Self::for_std_types_of::<Op>();
        if support.is_none() {
            let mut why = Vec::new();
            if std_hasher::<I>().is_none() {
                why.push(format!(
                    "its input type `{}` is not one xcs can hash for a hand-written operator",
                    std::any::type_name::<I>()
                ));
            }
            if std_cloner::<O>().is_none() {
                why.push(format!(
                    "its output type `{}` is not one xcs can clone for a hand-written operator",
                    std::any::type_name::<O>()
                ));
            }
            let why = format!(
                "{} (hand-written operators are cached when input and output are integers, \
                 `bool`, `char`, `String`, `&'static str`, `()` or `Vec`s of them; put \
                 `#[xcs::operator]` on the `impl Operator`/`impl AsyncOperator` block to cache \
                 any `Hash + Eq` input and `Clone` output)",
                why.join(" and ")
            );
            warn_uncacheable(TypeId::of::<Op>(), name, &why);
        }
        support
    }

    /// What a generated operator `Op` named `name` gets, from its compile-time probes: each
    /// parameter's name, type name and whether it is `Hash + Eq`; how to hash the whole input;
    /// how to clone the output (if it is `Clone`); how to count its bytes. `None`, with a warning
    /// (once per operator type), when a parameter cannot be hashed or the output not cloned.
    pub fn from_probes<Op: ?Sized + 'static>(
        name: &str,
        params: &[(&str, &str, bool)],
        hash_input: fn(&I, &mut dyn Hasher),
        clone_output: Option<fn(&O) -> O>,
        output_bytes: fn(&O) -> usize,
    ) -> Option<Self> {
        let hashable = params.iter().all(|&(_, _, can_hash)| can_hash);
        if let (true, Some(clone_output)) = (hashable, clone_output) {
            return Some(Self::new::<Op>(hash_input, clone_output).with_output_bytes(output_bytes));
        }
        let mut why = Vec::new();
        let unhashable: Vec<String> = params
            .iter()
            .filter(|&&(_, _, can_hash)| !can_hash)
            .map(|&(param, ty, _)| format!("`{param}: {ty}`"))
            .collect();
        match unhashable.as_slice() {
            [] => {}
            [one] => why.push(format!("its parameter {one} is not `Hash + Eq`")),
            many => why.push(format!(
                "its parameters {} are not `Hash + Eq`",
                many.join(", ")
            )),
        }
        if clone_output.is_none() {
            why.push(format!(
                "its output `{}` is not `Clone`",
                std::any::type_name::<O>()
            ));
        }
        warn_uncacheable(TypeId::of::<Op>(), name, &why.join(" and "));
        None
    }

    /// The cache key of `input` for the operator named `name`. A panic in the input's `Hash`
    /// comes back as its message.
    pub(crate) fn key(&self, name: &str, input: &I) -> Result<CacheKey, String> {
        let fingerprint = catch_unwind(AssertUnwindSafe(|| {
            let mut halves = [0u64; 2];
            for (seed, half) in KEY_SEEDS.iter().zip(&mut halves) {
                let mut hasher = seed.build_hasher();
                name.hash(&mut hasher);
                (self.hash_input)(input, &mut hasher);
                *half = hasher.finish();
            }
            (u128::from(halves[0]) << 64) | u128::from(halves[1])
        }))
        .map_err(|payload| panic_text(payload, "in the input's `Hash`, computing its cache key"))?;
        Ok(CacheKey {
            operator: self.operator,
            types: TypeId::of::<(I, O)>(),
            fingerprint,
        })
    }
}

/// The common standard types that operators handle without help (caching, persistence):
/// `$mac!` is called with all of them, then `$extra` (the cache adds borrowed strings, which
/// hash but do not deserialize).
macro_rules! std_types {
    ($mac:ident $(, $extra:ty)*) => {
        $mac!(
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
            bool,
            char,
            String,
            (),
            Vec<u8>,
            Vec<u16>,
            Vec<u32>,
            Vec<u64>,
            Vec<usize>,
            Vec<i8>,
            Vec<i16>,
            Vec<i32>,
            Vec<i64>,
            Vec<isize>,
            Vec<bool>,
            Vec<char>,
            Vec<String>
            $(, $extra)*
        )
    };
}
pub(crate) use std_types;

fn std_hasher<I: 'static>() -> Option<fn(&I, &mut dyn Hasher)> {
    macro_rules! pick {
        ($($t:ty),*) => {$(
            if TypeId::of::<I>() == TypeId::of::<$t>() {
                return Some(|input: &I, mut state: &mut dyn Hasher| {
                    if let Some(value) = (input as &dyn Any).downcast_ref::<$t>() {
                        value.hash(&mut state);
                    }
                });
            }
        )*};
    }
    std_types!(pick, &'static str, Vec<&'static str>);
    None
}

pub(crate) fn std_cloner<O: 'static>() -> Option<fn(&O) -> O> {
    macro_rules! pick {
        ($($t:ty),*) => {$(
            if TypeId::of::<O>() == TypeId::of::<$t>() {
                return Some(|output: &O| {
                    let any: &dyn Any = output;
                    match any.downcast_ref::<$t>() {
                        Some(value) => {
                            let boxed: Box<dyn Any> = Box::new(value.clone());
                            match boxed.downcast::<O>() {
                                Ok(cloned) => *cloned,
                                Err(_) => unreachable!("type ids matched"),
                            }
                        }
                        None => unreachable!("type ids matched"),
                    }
                });
            }
        )*};
    }
    std_types!(pick, &'static str, Vec<&'static str>);
    None
}

fn std_sizer<O: 'static>() -> Option<fn(&O) -> usize> {
    macro_rules! pick {
        ($($t:ty),*) => {$(
            if TypeId::of::<O>() == TypeId::of::<$t>() {
                return Some(|output: &O| {
                    (output as &dyn Any)
                        .downcast_ref::<$t>()
                        .map_or(size_of::<O>(), bytes_of::<$t>)
                });
            }
        )*};
    }
    std_types!(pick, &'static str, Vec<&'static str>);
    None
}

/// Where a call's output is stored: the operator's type, its input and output types, and a
/// fingerprint of its name and input.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct CacheKey {
    operator: TypeId,
    types: TypeId,
    fingerprint: u128,
}

/// Operator types already warned about by [`warn_uncacheable`].
static WARNED: RwLock<Vec<TypeId>> = RwLock::new(Vec::new());

/// Warns (once per operator type; see `crate::warn` for where it goes) that calls of the operator `name` run uncached
/// under `enable_caching`, and `why`.
pub(crate) fn warn_uncacheable(operator: TypeId, name: &str, why: &str) {
    if WARNED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(&operator)
    {
        return;
    }
    {
        let mut warned = WARNED.write().unwrap_or_else(PoisonError::into_inner);
        if warned.contains(&operator) {
            return;
        }
        warned.push(operator);
    }
    crate::warn::warn(
        name,
        &format!(
            "operator `{name}` runs uncached although `enable_caching` is on: {why}; \
             a client or other state that cannot be hashed does not belong in the input: hold \
             it in a `static` (e.g. a `LazyLock`), or in a field of a hand-written operator \
             struct (an operator's fields are not part of its input)"
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{Op, OtherOp, support};
    use super::*;

    #[test]
    fn std_support_covers_common_types_only() {
        assert!(CacheSupport::<String, u64>::for_std_types_of::<Op>().is_some());
        assert!(CacheSupport::<Vec<String>, String>::for_std_types_of::<Op>().is_some());
        assert!(CacheSupport::<f64, u64>::for_std_types_of::<Op>().is_none());
        assert!(CacheSupport::<u64, std::fs::File>::for_std_types_of::<Op>().is_none());
    }

    #[test]
    fn keys_separate_inputs_names_and_operator_types() {
        let support = support();
        let a = support.key("op", &"a".to_string()).unwrap();
        assert_eq!(a, support.key("op", &"a".to_string()).unwrap());
        assert_ne!(a, support.key("op", &"b".to_string()).unwrap());
        assert_ne!(a, support.key("other", &"a".to_string()).unwrap());
        // Same name, same types, another operator type: another key.
        let other = CacheSupport::<String, u64>::for_std_types_of::<OtherOp>().unwrap();
        assert_ne!(a, other.key("op", &"a".to_string()).unwrap());
        assert_eq!((support.clone_output)(&7), 7);
    }

    #[test]
    fn std_outputs_count_their_heap() {
        let strings = CacheSupport::<u8, String>::for_std_types_of::<Op>().unwrap();
        let text = "x".repeat(1000);
        assert_eq!((strings.output_bytes)(&text), size_of::<String>() + 1000);
        let lists = CacheSupport::<u8, Vec<String>>::for_std_types_of::<Op>().unwrap();
        let list = vec!["ab".to_string(), "cde".to_string()];
        assert_eq!(
            (lists.output_bytes)(&list),
            size_of::<Vec<String>>() + 2 * size_of::<String>() + 5
        );
    }

    #[test]
    fn a_panicking_hash_is_an_error() {
        #[derive(PartialEq, Eq)]
        struct Bad;
        impl Hash for Bad {
            fn hash<H: Hasher>(&self, _: &mut H) {
                panic!("no hashing today");
            }
        }
        let support =
            CacheSupport::<Bad, u8>::new::<Op>(|bad, mut state| bad.hash(&mut state), |o| *o);
        let error = support.key("bad", &Bad).unwrap_err();
        assert!(error.starts_with("no hashing today ("), "{error}");
    }
}
