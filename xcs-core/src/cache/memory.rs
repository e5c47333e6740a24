//! The memory cache: a process-wide LRU map, bounded in entries and in bytes, whose stored
//! outputs are cloned and dropped outside its lock.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use lru::LruCache;

use super::key::{CacheKey, CacheSupport};
use super::{DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_MAX_BYTES};
use crate::util::{drop_quietly, panic_text};

/// A stored output: a `Mutex<O>` (so that it is `Sync` for any `Send` output, and can be cloned
/// without holding the map's lock), and the bytes it counts.
pub(super) struct Entry {
    value: Arc<dyn Any + Send + Sync>,
    bytes: usize,
}

pub(super) struct Store {
    pub(super) map: LruCache<CacheKey, Entry>,
    pub(super) capacity: usize,
    pub(super) max_bytes: usize,
    pub(super) bytes: usize,
    pub(super) evictions: u64,
}

impl Store {
    /// Evicts least recently used entries until both bounds hold, handing them to `evicted`
    /// (to be dropped once the lock is released).
    pub(super) fn shrink(&mut self, evicted: &mut Vec<Entry>) {
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
pub(super) static HITS: AtomicU64 = AtomicU64::new(0);
pub(super) static MISSES: AtomicU64 = AtomicU64::new(0);

/// Runs `f` on the store under its lock. `f` must not run user code or drop stored outputs:
/// it returns what is to be dropped.
pub(super) fn with_store<R>(f: impl FnOnce(&mut Store) -> R) -> R {
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
pub(super) fn stored(key: &CacheKey) -> Option<Arc<dyn Any + Send + Sync>> {
    with_store(|store| store.map.get(key).map(|entry| Arc::clone(&entry.value)))
}

/// A hit: a clone of the stored output, made outside the map's lock (or the message of a panic
/// in its `Clone`).
pub(super) fn answer<I, O: Send + 'static>(
    support: &CacheSupport<I, O>,
    stored: Arc<dyn Any + Send + Sync>,
) -> Result<O, String> {
    let Ok(stored) = stored.downcast::<Mutex<O>>() else {
        // Unreachable: the key holds the output type.
        return Err("a cached output has another type than expected".to_owned());
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
            Ok(output)
        }
        Err(payload) => Err(panic_text(payload, "in `Clone` of the cached output")),
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
pub(super) fn drop_entries(entries: impl IntoIterator<Item = Entry>) {
    for entry in entries {
        drop_quietly(entry);
    }
}

/// Counts a cacheable call that runs its body: found neither in memory nor in a store (see
/// [`CacheStats::misses`]).
pub(crate) fn count_miss() {
    MISSES.fetch_add(1, Ordering::Relaxed);
}
