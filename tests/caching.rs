//! `enable_caching`: observed through body counters.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::global_lock;
use xcs::{Operator, OptionsPatch, XcsError, vmap, with_options};

fn caching() -> OptionsPatch {
    OptionsPatch::new().enable_caching(true)
}

/// Counts how often its body runs; fails on negative inputs.
#[derive(Default)]
struct Counted {
    runs: AtomicUsize,
}

impl Operator for Counted {
    type Input = i64;
    type Output = String;
    fn forward(&self, input: i64) -> Result<String, XcsError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if input < 0 {
            return Err(XcsError::operator("counted", "negative"));
        }
        Ok(format!("#{input}"))
    }
    fn name(&self) -> &str {
        "counted"
    }
}

#[test]
fn a_cached_body_runs_once_per_input() {
    let _lock = global_lock();
    xcs::clear_cache();
    let op = Counted::default();
    with_options(&caching(), || {
        assert_eq!(op.call(7).unwrap(), "#7");
        assert_eq!(op.call(7).unwrap(), "#7");
        assert_eq!(op.call(8).unwrap(), "#8");
        assert_eq!(op.call(7).unwrap(), "#7");
    });
    assert_eq!(op.runs.load(Ordering::SeqCst), 2);
    let stats = xcs::cache_stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (2, 2, 2));
    // Without the option, the body runs every time.
    op.call(7).unwrap();
    assert_eq!(op.runs.load(Ordering::SeqCst), 3);
}

#[test]
fn errors_are_not_cached() {
    let _lock = global_lock();
    xcs::clear_cache();
    let op = Counted::default();
    with_options(&caching(), || {
        assert!(op.call(-1).is_err());
        assert!(op.call(-1).is_err());
    });
    assert_eq!(op.runs.load(Ordering::SeqCst), 2);
    assert_eq!(xcs::cache_stats().entries, 0);
}

#[test]
fn batch_items_are_cached_one_by_one() {
    let _lock = global_lock();
    xcs::clear_cache();
    let op = Arc::new(Counted::default());
    let batch = vmap(Arc::clone(&op));
    let out = with_options(&caching(), || {
        batch.call(vec![1, 2, 1, 2, 1, 3]).unwrap();
        batch.call(vec![1, 2, 3]).unwrap()
    });
    assert_eq!(out, vec!["#1", "#2", "#3"]);
    // Each distinct input ran once, even duplicates running at the same time in one parallel
    // batch (the second waits for the first), and the second batch ran nothing.
    assert_eq!(op.runs.load(Ordering::SeqCst), 3);
    let before = op.runs.load(Ordering::SeqCst);
    with_options(&caching(), || batch.call(vec![3, 2, 1])).unwrap();
    assert_eq!(op.runs.load(Ordering::SeqCst), before);
}

#[test]
fn clear_cache_and_capacity_evict() {
    let _lock = global_lock();
    xcs::clear_cache();
    let op = Counted::default();
    with_options(&caching(), || {
        op.call(1).unwrap();
        xcs::clear_cache();
        op.call(1).unwrap();
    });
    assert_eq!(op.runs.load(Ordering::SeqCst), 2);

    xcs::set_cache_capacity(2);
    let op = Counted::default();
    with_options(&caching(), || {
        for i in [10, 11, 12] {
            op.call(i).unwrap();
        }
        // 10 was least recently used and is gone; 12 is still there.
        op.call(12).unwrap();
        op.call(10).unwrap();
    });
    assert_eq!(op.runs.load(Ordering::SeqCst), 4);
    let stats = xcs::cache_stats();
    assert_eq!(stats.capacity, 2);
    assert!(stats.evictions >= 2);
    xcs::set_cache_capacity(xcs::DEFAULT_CACHE_CAPACITY);
}

/// Input that cannot be hashed: runs uncached, never a compile error.
struct Halve(AtomicUsize);

impl Operator for Halve {
    type Input = f64;
    type Output = f64;
    fn forward(&self, x: f64) -> Result<f64, XcsError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(x / 2.0)
    }
    fn name(&self) -> &str {
        "halve"
    }
}

#[test]
fn unhashable_inputs_run_uncached() {
    let _lock = global_lock();
    let op = Halve(AtomicUsize::new(0));
    with_options(&caching(), || {
        op.call(1.0).unwrap();
        op.call(1.0).unwrap();
    });
    assert_eq!(op.0.load(Ordering::SeqCst), 2);
}

/// Counts runs; sleeps past the deadline on its first run only.
struct SlowOnce(AtomicUsize);

impl Operator for SlowOnce {
    type Input = u32;
    type Output = u32;
    fn forward(&self, x: u32) -> Result<u32, XcsError> {
        if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(150));
        }
        Ok(x)
    }
    fn name(&self) -> &str {
        "slow_once"
    }
}

#[test]
fn a_timed_out_call_is_not_cached() {
    let _lock = global_lock();
    xcs::clear_cache();
    let op = Arc::new(SlowOnce(AtomicUsize::new(0)));
    let patch = caching().timeout(Some(Duration::from_millis(50))).unwrap();
    let first = with_options(&patch, || op.call(5));
    assert!(first.unwrap_err().is_timeout());
    // Let the abandoned body finish; its late result must not have been stored.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(with_options(&patch, || op.call(5)).unwrap(), 5);
    assert_eq!(op.0.load(Ordering::SeqCst), 2);
    assert_eq!(with_options(&patch, || op.call(5)).unwrap(), 5);
    assert_eq!(op.0.load(Ordering::SeqCst), 2);
}

/// Slow enough that concurrent calls overlap; counts runs.
struct SlowCount(AtomicUsize, Duration);

impl Operator for SlowCount {
    type Input = u32;
    type Output = u32;
    fn forward(&self, x: u32) -> Result<u32, XcsError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.1);
        Ok(x * 2)
    }
    fn name(&self) -> &str {
        "slow_count"
    }
}

#[test]
fn concurrent_calls_with_one_input_run_the_body_once() {
    let _lock = global_lock();
    xcs::clear_cache();
    let op = Arc::new(SlowCount(AtomicUsize::new(0), Duration::from_millis(50)));
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let op = Arc::clone(&op);
            std::thread::spawn(move || with_options(&caching(), || op.call(21)))
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap().unwrap(), 42);
    }
    assert_eq!(op.0.load(Ordering::SeqCst), 1);
    let stats = xcs::cache_stats();
    assert_eq!((stats.misses, stats.hits), (1, 5));
}

#[test]
fn a_caller_waiting_for_another_still_meets_its_deadline() {
    let _lock = global_lock();
    xcs::clear_cache();
    let op = Arc::new(SlowCount(AtomicUsize::new(0), Duration::from_millis(400)));
    let leader = {
        let op = Arc::clone(&op);
        std::thread::spawn(move || with_options(&caching(), || op.call(5)))
    };
    // Let the leader claim the input, then wait for it under a short deadline.
    while op.0.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let patch = caching().timeout(Some(Duration::from_millis(50))).unwrap();
    let waiter = with_options(&patch, || op.call(5));
    assert!(waiter.unwrap_err().is_timeout());
    assert_eq!(leader.join().unwrap().unwrap(), 10);
    // The waiter did not run the body; the leader's result is stored.
    assert_eq!(op.0.load(Ordering::SeqCst), 1);
    assert_eq!(with_options(&caching(), || op.call(5)).unwrap(), 10);
    assert_eq!(op.0.load(Ordering::SeqCst), 1);
}
