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

mod flight;
mod key;
mod memory;
mod size;

use std::sync::atomic::Ordering;

use lru::LruCache;

#[cfg(feature = "tokio")]
pub(crate) use flight::lookup_async;
pub(crate) use flight::{Claim, ClaimChain, Lookup, lookup, peek};
pub use key::CacheSupport;
pub(crate) use key::{CacheKey, std_cloner, std_types};
use memory::{HITS, MISSES, drop_entries, with_store};
pub(crate) use memory::{count_miss, insert};
pub use size::CacheSize;

/// Calls answered from a `cache_dir` store (counted by the store's slots).
static PERSISTENT_HITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One more call answered from a `cache_dir` store.
pub(crate) fn count_persistent_hit() {
    PERSISTENT_HITS.fetch_add(1, Ordering::Relaxed);
}

/// The number of entries the cache holds before evicting the least recently used; change it
/// with [`set_cache_capacity`].
pub const DEFAULT_CACHE_CAPACITY: usize = 4096;

/// The bytes of stored outputs (256 MiB) the cache holds before evicting the least recently
/// used; change it with [`set_cache_max_bytes`]. How an output is counted: [`CacheSize`].
pub const DEFAULT_CACHE_MAX_BYTES: usize = 256 * 1024 * 1024;

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
    stats.persistent_hits = PERSISTENT_HITS.load(Ordering::Relaxed);
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

/// What the unit tests of this module's files share.
#[cfg(test)]
mod test_support {
    use super::key::{CacheKey, CacheSupport};

    /// An operator type for keys.
    pub(super) struct Op;
    /// Another one.
    pub(super) struct OtherOp;

    pub(super) fn support() -> CacheSupport<String, u64> {
        CacheSupport::for_std_types_of::<Op>().unwrap()
    }

    pub(super) fn key_of(input: &str) -> CacheKey {
        support().key("op", &input.to_string()).unwrap()
    }
}
