//! The call cache behind `enable_caching`.
//!
//! One process-wide LRU map from (operator type, name, input fingerprint) to a stored output.
//! Inputs are not kept (operators consume their inputs, and they need not be `Clone`); the key
//! holds a 128-bit fingerprint of the input instead (two independently seeded foldhash passes),
//! which makes an accidental collision far less likely than a hardware fault. The operator's own
//! type is part of the key, so two operator types never share entries, whatever their names.
//! Only successful outputs are stored; errors, panics and timeouts are never cached, so a retry
//! really retries.
//!
//! The map is bounded twice: in entries ([`DEFAULT_CACHE_CAPACITY`]) and in bytes
//! ([`DEFAULT_CACHE_MAX_BYTES`]), because a count alone lets a few thousand large outputs hold
//! gigabytes. An output is counted at `size_of` plus the heap it owns where that is known
//! ([`CacheSize`]); the least recently used entries go until both bounds hold again.
//!
//! User code — an input's `Hash`, an output's `Clone` and `Drop`, a [`CacheSize`] impl — never
//! runs while a cache lock is held: a slow `Hash` would stall every cached call in the process,
//! and a panic would leave the cache half-updated. Keys are computed before locking, stored
//! outputs sit behind their own small lock and are cloned after the map's lock is released, and
//! evicted outputs are dropped after it. A panic in any of these is caught where it happens: a
//! panicking `Hash` or `Clone` becomes the call's error, a panicking `Drop` is swallowed.
//!
//! Concurrent calls with one input (duplicates in a parallel batch, several threads) run the
//! body once: the first claims the input and the others wait for its output, each no longer than
//! its own deadline. If the first fails, the next waiter runs the body itself. A wait must never
//! close a cycle — a body that (directly, or through batches on other threads) calls its own
//! operator with its own input would otherwise wait for itself forever. So each caller says which
//! claims its ancestors hold (a `ClaimChain`), every waiter is registered with its chain, and a
//! caller that would wait, through any chain of waiters, for a claim of its own ancestors runs
//! the body uncached instead. The invariant: the waits-for graph between claims stays acyclic, so
//! every wait ends when the (finite) body it waits for ends, or at the waiter's deadline.
//!
//! Which operators can be cached is decided without any bound on the `Operator` trait: generated
//! operators probe their concrete input and output types at compile time (see
//! [`crate::probe`]); hand-written ones are cached when their input and output are common
//! standard types (integers, `bool`, `char`, `String`, `&'static str`, `()`, and `Vec`s of them).
//! Anything else runs uncached — never a compile error, and never silently: the first such call
//! of each operator type logs a warning (target `xcs`).

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash, Hasher};
use std::mem::size_of;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::Instant;

use foldhash::quality::FixedState;
use lru::LruCache;

/// Two independently seeded passes of a fast, high-quality hash make the 128-bit fingerprint.
/// (Fixed seeds: a fingerprint must not depend on the process, only on the input.)
const KEY_SEEDS: [FixedState; 2] = [
    FixedState::with_seed(0x9e37_79b9_7f4a_7c15),
    FixedState::with_seed(0xc2b2_ae3d_27d4_eb4f),
];

/// The number of entries the cache holds before evicting the least recently used; change it
/// with [`set_cache_capacity`].
pub const DEFAULT_CACHE_CAPACITY: usize = 4096;

/// The bytes of stored outputs (256 MiB) the cache holds before evicting the least recently
/// used; change it with [`set_cache_max_bytes`]. How an output is counted: [`CacheSize`].
pub const DEFAULT_CACHE_MAX_BYTES: usize = 256 * 1024 * 1024;

/// The heap memory a value owns: what a cached output counts against the byte bound
/// ([`set_cache_max_bytes`]) beyond its own `size_of`.
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
fn bytes_of<T: CacheSize>(value: &T) -> usize {
    size_of::<T>() + value.heap_size()
}

/// How an operator's calls are cached: how to fingerprint its input, clone its output, and
/// count the output's bytes. Not a stable API: built by generated code and by the default
/// `Operator::__xcs_cache_support`.
pub struct CacheSupport<I, O> {
    operator: TypeId,
    hash_input: fn(&I, &mut dyn Hasher),
    clone_output: fn(&O) -> O,
    output_bytes: fn(&O) -> usize,
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

/// The claims a call's ancestors hold: the keys of the enclosing cached calls whose bodies it
/// runs inside, on this thread or (through batches) on another. Cheap to clone and to extend (a
/// persistent list: each call adds one link in front of its parent's chain).
#[derive(Clone, Default, Debug)]
pub(crate) struct ClaimChain(Option<Arc<ChainLink>>);

#[derive(Debug)]
struct ChainLink {
    key: CacheKey,
    parent: ClaimChain,
}

impl ClaimChain {
    /// No claims: a call that runs inside no cached call.
    pub(crate) const fn new() -> Self {
        ClaimChain(None)
    }

    /// This chain with `key` added: what the body of the call that claimed `key` runs under.
    #[must_use]
    pub(crate) fn push(&self, key: CacheKey) -> ClaimChain {
        ClaimChain(Some(Arc::new(ChainLink {
            key,
            parent: self.clone(),
        })))
    }

    /// Whether an ancestor holds the claim on `key`.
    pub(crate) fn contains(&self, key: &CacheKey) -> bool {
        let mut link = self.0.as_deref();
        while let Some(current) = link {
            if current.key == *key {
                return true;
            }
            link = current.parent.0.as_deref();
        }
        false
    }

    fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

/// Counters of the call cache, from [`cache_stats`].
///
/// Every cacheable call (a call or batch item of a cacheable operator under `enable_caching`)
/// that gets past the lookup counts once, in exactly one of `hits`, `persistent_hits` and
/// `misses`: answered from memory, answered from the `cache_dir` store, or by running its body.
/// (A call that times out or fails while waiting for a concurrent identical call counts in
/// none; operators that cannot be cached count nowhere.)
///
/// ```standalone_crate
/// use xcs::{Operator, XcsError, execution_options};
///
/// struct Double;
/// impl Operator for Double {
///     type Input = u64;
///     type Output = u64;
///     fn forward(&self, x: u64) -> Result<u64, XcsError> { Ok(2 * x) }
///     fn name(&self) -> &str { "double_stats_doc" }
/// }
///
/// xcs::clear_cache();
/// execution_options!(enable_caching = true => {
///     Double.call(21)?; // runs the body: a miss
///     Double.call(21)?; // answered from memory: a hit
/// });
/// let stats = xcs::cache_stats();
/// assert_eq!((stats.hits, stats.misses, stats.persistent_hits), (1, 1, 0));
/// # Ok::<(), XcsError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Cacheable calls answered from the memory cache, without running their body.
    pub hits: u64,
    /// Cacheable calls found neither in memory nor in a `cache_dir` store, which ran their body
    /// (or, under a cluster strategy, sent their item to a worker to run). A call answered from
    /// the store is not a miss: it is counted in `persistent_hits`.
    pub misses: u64,
    /// Entries stored now.
    pub entries: usize,
    /// The most entries the cache holds.
    pub capacity: usize,
    /// Entries evicted to make room (for either bound).
    pub evictions: u64,
    /// The bytes the stored outputs count now (see [`CacheSize`]).
    pub bytes: usize,
    /// The most bytes of stored outputs the cache holds.
    pub max_bytes: usize,
    /// Cacheable calls not in memory but answered from a persistent `cache_dir` store, without
    /// running their body (the answer is then kept in memory too, so the next identical call is
    /// a `hit`).
    pub persistent_hits: u64,
}

/// A stored output: a `Mutex<O>` (so that it is `Sync` for any `Send` output, and can be cloned
/// without holding the map's lock), and the bytes it counts.
struct Entry {
    value: Arc<dyn Any + Send + Sync>,
    bytes: usize,
}

struct Store {
    map: LruCache<CacheKey, Entry>,
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
    evictions: u64,
}

impl Store {
    /// Evicts least recently used entries until both bounds hold, handing them to `evicted`
    /// (to be dropped once the lock is released).
    fn shrink(&mut self, evicted: &mut Vec<Entry>) {
        while self.map.len() > self.capacity || self.bytes > self.max_bytes {
            let Some((_, entry)) = self.map.pop_lru() else {
                break;
            };
            self.bytes -= entry.bytes;
            self.evictions += 1;
            evicted.push(entry);
        }
    }
}

static STORE: Mutex<Option<Store>> = Mutex::new(None);
static HITS: AtomicU64 = AtomicU64::new(0);
static MISSES: AtomicU64 = AtomicU64::new(0);

/// Runs `f` on the store under its lock. `f` must not run user code or drop stored outputs:
/// it returns what is to be dropped.
fn with_store<R>(f: impl FnOnce(&mut Store) -> R) -> R {
    let mut guard = STORE.lock().unwrap_or_else(PoisonError::into_inner);
    let store = guard.get_or_insert_with(|| Store {
        map: LruCache::unbounded(),
        capacity: DEFAULT_CACHE_CAPACITY,
        max_bytes: DEFAULT_CACHE_MAX_BYTES,
        bytes: 0,
        evictions: 0,
    });
    f(store)
}

/// The stored output for `key`, if any, marked as most recently used.
fn stored(key: &CacheKey) -> Option<Arc<dyn Any + Send + Sync>> {
    with_store(|store| store.map.get(key).map(|entry| Arc::clone(&entry.value)))
}

/// Drops `value`, swallowing a panic from its `Drop` (and from the panic payload's own `Drop`,
/// whose second payload is leaked rather than dropped).
fn drop_quietly<T>(value: T) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(value))) {
        if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            std::mem::forget(again);
        }
    }
}

/// The message of a caught panic, with where it happened.
fn panic_text(payload: Box<dyn Any + Send>, during: &str) -> String {
    let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic payload is not a string".to_owned()
    };
    drop_quietly(payload);
    format!("{message} ({during})")
}

/// A hit: a clone of the stored output, made outside the map's lock.
fn answer<I, O: Send + 'static>(
    support: &CacheSupport<I, O>,
    stored: Arc<dyn Any + Send + Sync>,
) -> Lookup<O> {
    let Ok(stored) = stored.downcast::<Mutex<O>>() else {
        // Unreachable: the key holds the output type.
        return Lookup::Panicked("a cached output has another type than expected".to_owned());
    };
    let cloned = catch_unwind(AssertUnwindSafe(|| {
        let output = stored.lock().unwrap_or_else(PoisonError::into_inner);
        (support.clone_output)(&output)
    }));
    // The last holder drops the output, if it was evicted meanwhile.
    drop_quietly(stored);
    match cloned {
        Ok(output) => {
            HITS.fetch_add(1, Ordering::Relaxed);
            Lookup::Hit(output)
        }
        Err(payload) => Lookup::Panicked(panic_text(payload, "in `Clone` of the cached output")),
    }
}

/// What the cache says about an input.
pub(crate) enum Lookup<O> {
    /// Seen before: the stored output.
    Hit(O),
    /// Not stored: this caller runs the body (and should [`insert`] a success). Callers asking
    /// for the same key meanwhile wait for it instead of running the body too; they are woken
    /// when the claim is dropped. The body runs under the caller's chain with
    /// [`Claim::key`] pushed.
    Compute(Claim),
    /// Not stored, and computed by a call that is waiting (perhaps through other waiters) for
    /// this caller's ancestors: waiting would deadlock. This caller runs the body without
    /// caching its output.
    Uncached,
    /// Another caller was computing this key and `deadline` passed while waiting for it.
    TimedOut,
    /// The stored output's `Clone` panicked: the panic message.
    Panicked(String),
}

/// A computation in flight: waiters sleep on it until its claim is dropped.
#[derive(Default)]
struct Flight {
    done: Mutex<bool>,
    woken: Condvar,
    /// Wakes async waiters, which must not block a thread on the condition variable.
    #[cfg(feature = "tokio")]
    woken_async: tokio::sync::Notify,
}

/// The right (and duty) to compute one key; see [`Lookup::Compute`].
pub(crate) struct Claim {
    key: CacheKey,
    flight: Arc<Flight>,
}

impl Claim {
    /// The claimed key: push it onto the chain the body runs under.
    pub(crate) fn key(&self) -> CacheKey {
        self.key
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        with_flights(|flights| flights.running.remove(&self.key));
        *self
            .flight
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.flight.woken.notify_all();
        #[cfg(feature = "tokio")]
        self.flight.woken_async.notify_waiters();
    }
}

/// A caller waiting for a claim: what it waits for, and the claims its ancestors hold (which
/// cannot finish until it does).
struct Waiter {
    held: ClaimChain,
    waits_for: CacheKey,
}

#[derive(Default)]
struct Flights {
    running: HashMap<CacheKey, Arc<Flight>>,
    waiting: HashMap<u64, Waiter>,
    next_waiter: u64,
}

impl Flights {
    /// Whether a caller whose ancestors hold `held` would close a cycle by waiting for `key`:
    /// whether `key`'s computation waits, directly or through other waiters, for one of them.
    fn would_deadlock(&self, held: &ClaimChain, key: &CacheKey) -> bool {
        if held.is_empty() {
            return false;
        }
        let mut todo = vec![*key];
        let mut seen = Vec::new();
        while let Some(blocked) = todo.pop() {
            if held.contains(&blocked) {
                return true;
            }
            if seen.contains(&blocked) {
                continue;
            }
            seen.push(blocked);
            // `blocked` cannot finish before the waiters running inside its body.
            todo.extend(
                self.waiting
                    .values()
                    .filter(|waiter| waiter.held.contains(&blocked))
                    .map(|waiter| waiter.waits_for),
            );
        }
        false
    }
}

static FLIGHTS: Mutex<Option<Flights>> = Mutex::new(None);

fn with_flights<R>(f: impl FnOnce(&mut Flights) -> R) -> R {
    let mut flights = FLIGHTS.lock().unwrap_or_else(PoisonError::into_inner);
    f(flights.get_or_insert_with(Flights::default))
}

/// A registered waiter; unregistered when dropped.
struct Waiting(u64);

impl Drop for Waiting {
    fn drop(&mut self) {
        with_flights(|flights| flights.waiting.remove(&self.0));
    }
}

/// What [`lookup`] found under the flights lock.
enum Found {
    Stored(Arc<dyn Any + Send + Sync>),
    Claimed(Claim),
    Uncached,
    Wait(Arc<Flight>, Waiting),
}

/// Looks `key` up; on a miss, either claims the computation or waits (until `deadline`) for
/// the caller computing it, so that concurrent calls with one input run the body once. `held`
/// is the chain of claims the caller's ancestors hold: a wait that would close a cycle through
/// them returns [`Lookup::Uncached`] instead.
pub(crate) fn lookup<I, O: Send + 'static>(
    support: &CacheSupport<I, O>,
    key: &CacheKey,
    deadline: Option<Instant>,
    held: &ClaimChain,
) -> Lookup<O> {
    loop {
        let (flight, waiting) = match find(support, key, held) {
            Ok(answer) => return answer,
            Err(wait) => wait,
        };
        let done = flight.done.lock().unwrap_or_else(PoisonError::into_inner);
        let (done, timed_out) = match deadline {
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                let (done, result) = flight
                    .woken
                    .wait_timeout_while(done, left, |done| !*done)
                    .unwrap_or_else(PoisonError::into_inner);
                (done, result.timed_out())
            }
            None => (
                flight
                    .woken
                    .wait_while(done, |done| !*done)
                    .unwrap_or_else(PoisonError::into_inner),
                false,
            ),
        };
        drop(done);
        drop(waiting);
        if timed_out {
            return Lookup::TimedOut;
        }
        // The computation finished (stored, or failed and left the key free): look again.
    }
}

/// [`lookup`] for async callers: the wait is an `.await` on the flight, never a blocked thread.
#[cfg(feature = "tokio")]
pub(crate) async fn lookup_async<I, O: Send + 'static>(
    support: &CacheSupport<I, O>,
    key: &CacheKey,
    deadline: Option<Instant>,
    held: &ClaimChain,
) -> Lookup<O> {
    loop {
        let (flight, waiting) = match find(support, key, held) {
            Ok(answer) => return answer,
            Err(wait) => wait,
        };
        {
            let notified = flight.woken_async.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before checking, so a claim dropped in between still wakes us.
            notified.as_mut().enable();
            let done = *flight.done.lock().unwrap_or_else(PoisonError::into_inner);
            if !done {
                match deadline {
                    Some(at) => {
                        if tokio::time::timeout_at(at.into(), notified).await.is_err() {
                            drop(waiting);
                            return Lookup::TimedOut;
                        }
                    }
                    None => notified.await,
                }
            }
        }
        drop(waiting);
    }
}

/// One look at `key`: an answer, or the flight to wait for (and the registration that lets
/// other callers see this one waiting).
fn find<I, O: Send + 'static>(
    support: &CacheSupport<I, O>,
    key: &CacheKey,
    held: &ClaimChain,
) -> Result<Lookup<O>, (Arc<Flight>, Waiting)> {
    if let Some(found) = stored(key) {
        return Ok(answer(support, found));
    }
    // Re-checked under the flights lock: a claim inserts its output before it leaves the
    // running map, so a key is either stored, in flight, or free to claim.
    let found = with_flights(|flights| {
        if let Some(found) = stored(key) {
            return Found::Stored(found);
        }
        let Some(flight) = flights.running.get(key).map(Arc::clone) else {
            let flight = Arc::new(Flight::default());
            flights.running.insert(*key, Arc::clone(&flight));
            return Found::Claimed(Claim { key: *key, flight });
        };
        if flights.would_deadlock(held, key) {
            return Found::Uncached;
        }
        let id = flights.next_waiter;
        flights.next_waiter += 1;
        flights.waiting.insert(
            id,
            Waiter {
                held: held.clone(),
                waits_for: *key,
            },
        );
        Found::Wait(flight, Waiting(id))
    });
    match found {
        Found::Stored(found) => Ok(answer(support, found)),
        Found::Claimed(claim) => Ok(Lookup::Compute(claim)),
        Found::Uncached => Ok(Lookup::Uncached),
        Found::Wait(flight, waiting) => Err((flight, waiting)),
    }
}

/// Stores a clone of `output` under `key`, evicting least recently used entries until both
/// bounds hold; an output counting more than the byte bound is not stored. The clone and the
/// count run before the map is locked, evicted outputs are dropped after (a panicking `Drop` is
/// swallowed). A panic in the output's `Clone` (or its [`CacheSize`]) comes back as its message.
pub(crate) fn insert<I, O: Send + 'static>(
    support: &CacheSupport<I, O>,
    key: CacheKey,
    output: &O,
) -> Result<(), String> {
    let copy =
        catch_unwind(AssertUnwindSafe(|| (support.clone_output)(output))).map_err(|payload| {
            panic_text(payload, "in `Clone` of the output, storing it in the cache")
        })?;
    let bytes = match catch_unwind(AssertUnwindSafe(|| (support.output_bytes)(&copy))) {
        Ok(bytes) => bytes,
        Err(payload) => {
            drop_quietly(copy);
            return Err(panic_text(payload, "measuring the output for the cache"));
        }
    };
    let entry = Entry {
        value: Arc::new(Mutex::new(copy)),
        bytes,
    };
    let evicted = with_store(|store| {
        let mut evicted = Vec::new();
        if bytes > store.max_bytes {
            evicted.push(entry);
            return evicted;
        }
        store.bytes += bytes;
        if let Some((_, replaced)) = store.map.push(key, entry) {
            store.bytes -= replaced.bytes;
            evicted.push(replaced);
        }
        store.shrink(&mut evicted);
        evicted
    });
    drop_entries(evicted);
    Ok(())
}

/// Drops entries taken out of the store, one at a time, swallowing panics.
fn drop_entries(entries: impl IntoIterator<Item = Entry>) {
    for entry in entries {
        drop_quietly(entry);
    }
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

/// Counts a cacheable call that runs its body: found neither in memory nor in a store (see
/// [`CacheStats::misses`]).
pub(crate) fn count_miss() {
    MISSES.fetch_add(1, Ordering::Relaxed);
}

/// Empties the call cache and zeroes its counters. The bounds stay as they are.
///
/// ```
/// xcs::clear_cache();
/// assert_eq!(xcs::cache_stats().entries, 0);
/// ```
pub fn clear_cache() {
    let old = with_store(|store| {
        store.bytes = 0;
        store.evictions = 0;
        std::mem::replace(&mut store.map, LruCache::unbounded())
    });
    HITS.store(0, Ordering::Relaxed);
    MISSES.store(0, Ordering::Relaxed);
    drop_entries(old.into_iter().map(|(_, entry)| entry));
}

/// The cache's counters and bounds: hits (from memory and from a `cache_dir` store), misses,
/// entries, capacity, evictions, bytes and the byte bound (see [`CacheStats`]).
pub fn cache_stats() -> CacheStats {
    let mut stats = with_store(|store| CacheStats {
        entries: store.map.len(),
        capacity: store.capacity,
        evictions: store.evictions,
        bytes: store.bytes,
        max_bytes: store.max_bytes,
        ..CacheStats::default()
    });
    stats.hits = HITS.load(Ordering::Relaxed);
    stats.misses = MISSES.load(Ordering::Relaxed);
    stats.persistent_hits = crate::persist::hits();
    stats
}

/// Sets how many entries the cache holds (at least 1; the default is
/// [`DEFAULT_CACHE_CAPACITY`]); shrinking evicts the least recently used entries at once.
///
/// ```
/// xcs::set_cache_capacity(128);
/// assert_eq!(xcs::cache_stats().capacity, 128);
/// xcs::set_cache_capacity(xcs::DEFAULT_CACHE_CAPACITY);
/// ```
pub fn set_cache_capacity(capacity: usize) {
    let evicted = with_store(|store| {
        store.capacity = capacity.max(1);
        let mut evicted = Vec::new();
        store.shrink(&mut evicted);
        evicted
    });
    drop_entries(evicted);
}

/// Sets how many bytes of stored outputs the cache holds (the default is
/// [`DEFAULT_CACHE_MAX_BYTES`]; how outputs are counted: [`CacheSize`]); shrinking evicts the
/// least recently used entries at once. An output counting more than the bound is not stored.
///
/// ```
/// xcs::set_cache_max_bytes(64 << 20);
/// assert_eq!(xcs::cache_stats().max_bytes, 64 << 20);
/// xcs::set_cache_max_bytes(xcs::DEFAULT_CACHE_MAX_BYTES);
/// ```
pub fn set_cache_max_bytes(max_bytes: usize) {
    let evicted = with_store(|store| {
        store.max_bytes = max_bytes;
        let mut evicted = Vec::new();
        store.shrink(&mut evicted);
        evicted
    });
    drop_entries(evicted);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An operator type for keys.
    struct Op;
    /// Another one.
    struct OtherOp;

    fn support() -> CacheSupport<String, u64> {
        CacheSupport::for_std_types_of::<Op>().unwrap()
    }

    fn key_of(input: &str) -> CacheKey {
        support().key("op", &input.to_string()).unwrap()
    }

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

    #[test]
    fn chains_know_their_ancestors() {
        let (a, b, c) = (key_of("a"), key_of("b"), key_of("c"));
        let root = ClaimChain::new();
        let ab = root.push(a).push(b);
        assert!(ab.contains(&a) && ab.contains(&b) && !ab.contains(&c));
        assert!(!root.contains(&a));
        // Persistent: the parent is unchanged.
        let ac = root.push(a).push(c);
        assert!(ac.contains(&c) && !ac.contains(&b));
    }

    /// A key claimed by an ancestor is not waited for: the nested call runs uncached.
    #[test]
    fn a_key_held_by_an_ancestor_runs_uncached() {
        let support = support();
        let key = support.key("ancestor-test", &"x".to_string()).unwrap();
        let Lookup::Compute(claim) = lookup(&support, &key, None, &ClaimChain::new()) else {
            panic!("the first lookup claims");
        };
        let inside = ClaimChain::new().push(claim.key());
        assert!(matches!(
            lookup(&support, &key, None, &inside),
            Lookup::Uncached
        ));
        // A caller outside the claim's body still waits, and gets the output.
        let outside =
            std::thread::spawn(
                move || match lookup(&support, &key, None, &ClaimChain::new()) {
                    Lookup::Hit(found) => found,
                    _ => panic!("expected a hit"),
                },
            );
        while !with_flights(|f| f.waiting.values().any(|w| w.waits_for == key)) {
            std::thread::yield_now();
        }
        insert(&support, key, &42).unwrap();
        drop(claim);
        assert_eq!(outside.join().unwrap(), 42);
    }

    /// Two claims whose bodies each wait for the other's key: the second wait would close the
    /// cycle and runs uncached instead.
    #[test]
    fn a_wait_that_closes_a_cycle_runs_uncached() {
        let support = support();
        let a = support.key("cycle-test", &"a".to_string()).unwrap();
        let b = support.key("cycle-test", &"b".to_string()).unwrap();
        let Lookup::Compute(claim_a) = lookup(&support, &a, None, &ClaimChain::new()) else {
            panic!("claims a");
        };
        let Lookup::Compute(claim_b) = lookup(&support, &b, None, &ClaimChain::new()) else {
            panic!("claims b");
        };
        // Inside a's body (another thread): wait for b.
        let under_a = ClaimChain::new().push(claim_a.key());
        let waiter = std::thread::spawn(move || {
            matches!(lookup(&support, &b, None, &under_a), Lookup::Hit(7))
        });
        while !with_flights(|f| f.waiting.values().any(|w| w.waits_for == b)) {
            std::thread::yield_now();
        }
        // Inside b's body: waiting for a would wait for ourselves.
        let under_b = ClaimChain::new().push(claim_b.key());
        assert!(matches!(
            lookup(&support, &a, None, &under_b),
            Lookup::Uncached
        ));
        insert(&support, b, &7).unwrap();
        drop(claim_b);
        assert!(waiter.join().unwrap());
        drop(claim_a);
    }
}
