//! The call cache behind `enable_caching`.
//!
//! One process-wide, bounded LRU map from (operator, input fingerprint) to a stored output.
//! Inputs are not kept (operators consume their inputs, and they need not be `Clone`); the key
//! holds a 128-bit fingerprint of the input instead (two independently seeded foldhash passes),
//! which makes an accidental collision far less likely than a hardware fault. Only successful
//! outputs are stored; errors, panics and timeouts are never cached, so a retry really retries.
//!
//! Concurrent calls with one input (duplicates in a parallel batch, several threads) run the
//! body once: the first claims the input and the others wait for its output, each no longer than
//! its own deadline. If the first fails, the next waiter runs the body itself.
//!
//! Which operators can be cached is decided without any bound on the `Operator` trait: generated
//! operators probe their concrete input and output types at compile time (see
//! [`crate::probe`]); hand-written ones are cached when their input and output are common
//! standard types (integers, `bool`, `char`, `String`, `&'static str`, `()`, and `Vec`s of them).
//! Anything else runs uncached — never a compile error.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use foldhash::quality::FixedState;
use lru::LruCache;

/// Two independently seeded passes of a fast, high-quality hash make the 128-bit fingerprint.
/// (Fixed seeds: a fingerprint must not depend on the process, only on the input.)
const KEY_SEEDS: [FixedState; 2] = [
    FixedState::with_seed(0x9e37_79b9_7f4a_7c15),
    FixedState::with_seed(0xc2b2_ae3d_27d4_eb4f),
];

/// The number of entries the cache holds before evicting the least recently used.
pub const DEFAULT_CACHE_CAPACITY: usize = 4096;

/// How an operator's calls are cached: how to fingerprint its input and clone its output.
pub struct CacheSupport<I, O> {
    operator: TypeId,
    hash_input: fn(&I, &mut dyn Hasher),
    clone_output: fn(&O) -> O,
}

impl<I, O> Clone for CacheSupport<I, O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<I, O> Copy for CacheSupport<I, O> {}

impl<I: 'static, O: 'static> CacheSupport<I, O> {
    /// Cache support for operator type `Op` from explicit functions (used by generated code).
    pub fn new<Op: 'static>(
        hash_input: fn(&I, &mut dyn Hasher),
        clone_output: fn(&O) -> O,
    ) -> Self {
        CacheSupport {
            operator: TypeId::of::<Op>(),
            hash_input,
            clone_output,
        }
    }

    /// Cache support when `I` and `O` are among the standard types listed in the module docs.
    pub fn for_std_types_of<Op: 'static>() -> Option<Self> {
        Some(CacheSupport {
            operator: TypeId::of::<Op>(),
            hash_input: std_hasher::<I>()?,
            clone_output: std_cloner::<O>()?,
        })
    }

    /// As [`for_std_types_of`](Self::for_std_types_of), identifying the operator by its input and
    /// output types and name only.
    pub fn for_std_types() -> Option<Self> {
        Self::for_std_types_of::<(I, O)>()
    }

    pub(crate) fn key(&self, name: &str, input: &I) -> CacheKey {
        let mut halves = [0u64; 2];
        for (seed, half) in KEY_SEEDS.iter().zip(&mut halves) {
            let mut hasher = seed.build_hasher();
            name.hash(&mut hasher);
            (self.hash_input)(input, &mut hasher);
            *half = hasher.finish();
        }
        CacheKey {
            operator: self.operator,
            types: TypeId::of::<(I, O)>(),
            fingerprint: (u128::from(halves[0]) << 64) | u128::from(halves[1]),
        }
    }

    pub(crate) fn clone_output(&self, output: &O) -> O {
        (self.clone_output)(output)
    }
}

macro_rules! std_types {
    ($mac:ident) => {
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
            &'static str,
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
            Vec<String>,
            Vec<&'static str>
        )
    };
}

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
    std_types!(pick);
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
    std_types!(pick);
    None
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct CacheKey {
    operator: TypeId,
    types: TypeId,
    fingerprint: u128,
}

/// Counters of the call cache, from [`cache_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Calls answered from the cache.
    pub hits: u64,
    /// Cacheable calls that ran their body.
    pub misses: u64,
    /// Entries stored now.
    pub entries: usize,
    /// The most entries the cache holds.
    pub capacity: usize,
    /// Entries evicted to make room.
    pub evictions: u64,
}

struct Store {
    map: LruCache<CacheKey, Box<dyn Any + Send>>,
    hits: u64,
    misses: u64,
    evictions: u64,
}

static STORE: Mutex<Option<Store>> = Mutex::new(None);

fn store() -> MutexGuard<'static, Option<Store>> {
    STORE.lock().unwrap_or_else(PoisonError::into_inner)
}

fn with_store<R>(f: impl FnOnce(&mut Store) -> R) -> R {
    let mut guard = store();
    let store = guard.get_or_insert_with(|| Store {
        map: LruCache::new(capacity_of(DEFAULT_CACHE_CAPACITY)),
        hits: 0,
        misses: 0,
        evictions: 0,
    });
    f(store)
}

fn capacity_of(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

/// The stored output for `key`, counted as a hit, if there is one.
fn hit<I: 'static, O: 'static>(support: &CacheSupport<I, O>, key: &CacheKey) -> Option<O> {
    with_store(|store| {
        let found = store
            .map
            .get(key)
            .and_then(|stored| stored.downcast_ref::<O>().map(|o| support.clone_output(o)));
        if found.is_some() {
            store.hits += 1;
        }
        found
    })
}

/// What the cache says about an input.
pub(crate) enum Lookup<O> {
    /// Seen before: the stored output.
    Hit(O),
    /// Not stored: this caller runs the body (and should [`insert`] a success). Callers asking
    /// for the same key meanwhile wait for it instead of running the body too; they are woken
    /// when the claim is dropped.
    Compute(Claim),
    /// Another caller was computing this key and `deadline` passed while waiting for it.
    TimedOut,
}

/// A computation in flight: waiters sleep on it until its claim is dropped.
#[derive(Default)]
struct Flight {
    done: Mutex<bool>,
    woken: Condvar,
}

/// The right (and duty) to compute one key; see [`Lookup::Compute`].
pub(crate) struct Claim {
    key: CacheKey,
    flight: Arc<Flight>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        with_flights(|flights| flights.remove(&self.key));
        *self
            .flight
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.flight.woken.notify_all();
    }
}

static FLIGHTS: Mutex<Option<HashMap<CacheKey, Arc<Flight>>>> = Mutex::new(None);

fn with_flights<R>(f: impl FnOnce(&mut HashMap<CacheKey, Arc<Flight>>) -> R) -> R {
    let mut flights = FLIGHTS.lock().unwrap_or_else(PoisonError::into_inner);
    f(flights.get_or_insert_with(HashMap::new))
}

/// Looks `key` up; on a miss, either claims the computation or waits (until `deadline`) for
/// the caller computing it, so that concurrent calls with one input run the body once.
pub(crate) fn lookup<I: 'static, O: 'static>(
    support: &CacheSupport<I, O>,
    key: &CacheKey,
    deadline: Option<Instant>,
) -> Lookup<O> {
    loop {
        if let Some(found) = hit(support, key) {
            return Lookup::Hit(found);
        }
        // Re-checked under the flights lock: a claim inserts its output before it leaves this
        // map, so a key is either stored, in flight, or free to claim.
        let flight = with_flights(|flights| {
            if let Some(found) = hit(support, key) {
                return Err(Lookup::Hit(found));
            }
            match flights.get(key) {
                Some(flight) => Ok(Arc::clone(flight)),
                None => {
                    let flight = Arc::new(Flight::default());
                    flights.insert(*key, Arc::clone(&flight));
                    with_store(|store| store.misses += 1);
                    Err(Lookup::Compute(Claim { key: *key, flight }))
                }
            }
        });
        let flight = match flight {
            Ok(flight) => flight,
            Err(answer) => return answer,
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
        if timed_out {
            return Lookup::TimedOut;
        }
        // The computation finished (stored, or failed and left the key free): look again.
    }
}

pub(crate) fn insert<O: Send + 'static>(key: CacheKey, output: O) {
    with_store(|store| {
        if let Some((evicted, _)) = store.map.push(key, Box::new(output)) {
            if evicted != key {
                store.evictions += 1;
            }
        }
    });
}

/// Empties the call cache and zeroes its counters.
///
/// ```
/// xcs::clear_cache();
/// assert_eq!(xcs::cache_stats().entries, 0);
/// ```
pub fn clear_cache() {
    with_store(|store| {
        store.map.clear();
        store.hits = 0;
        store.misses = 0;
        store.evictions = 0;
    });
}

/// The cache's counters: hits, misses, entries, capacity and evictions.
pub fn cache_stats() -> CacheStats {
    with_store(|store| CacheStats {
        hits: store.hits,
        misses: store.misses,
        entries: store.map.len(),
        capacity: store.map.cap().get(),
        evictions: store.evictions,
    })
}

/// Sets how many entries the cache holds (at least 1); shrinking evicts the least recently
/// used entries at once.
///
/// ```
/// xcs::set_cache_capacity(128);
/// assert_eq!(xcs::cache_stats().capacity, 128);
/// xcs::set_cache_capacity(xcs::DEFAULT_CACHE_CAPACITY);
/// ```
pub fn set_cache_capacity(capacity: usize) {
    with_store(|store| {
        let before = store.map.len();
        store.map.resize(capacity_of(capacity));
        store.evictions += (before - store.map.len()) as u64;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn std_support_covers_common_types_only() {
        assert!(CacheSupport::<String, u64>::for_std_types().is_some());
        assert!(CacheSupport::<Vec<String>, String>::for_std_types().is_some());
        assert!(CacheSupport::<f64, u64>::for_std_types().is_none());
        assert!(CacheSupport::<u64, std::fs::File>::for_std_types().is_none());
    }

    #[test]
    fn keys_separate_inputs_and_names() {
        let support = CacheSupport::<String, u64>::for_std_types().unwrap();
        let a = support.key("op", &"a".to_string());
        assert_eq!(a, support.key("op", &"a".to_string()));
        assert_ne!(a, support.key("op", &"b".to_string()));
        assert_ne!(a, support.key("other", &"a".to_string()));
        let cloned = support.clone_output(&7);
        assert_eq!(cloned, 7);
    }
}
