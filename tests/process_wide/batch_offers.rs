//! What the fast paths of the batch drivers must keep: a `vmap` whose `max_workers` is above
//! the CPU count offers its helpers as jobs that it withdraws when it has taken every item
//! itself, and that must neither leak threads nor lose the promise that `max_workers` items
//! run at once. Every assertion is an observed count (threads, items in flight), never a time.
//! Each test holds the binary's lock, so no other test's threads are counted.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use xcs::{Operator, OptionsPatch, XcsError, vmap, with_options};

use crate::common::{Gauge, Meet, global_lock, process_threads, watchdog};

fn workers(n: usize) -> OptionsPatch {
    OptionsPatch::new().max_workers(NonZeroUsize::new(n))
}

/// An instant item.
struct Double;
impl Operator for Double {
    type Input = u64;
    type Output = u64;
    fn forward(&self, x: u64) -> Result<u64, XcsError> {
        Ok(x * 2)
    }
    fn name(&self) -> &str {
        "double"
    }
}

/// Thousands of small batches above the CPU count, each over before its helpers wake: the
/// helpers' threads are reused, so the threads started stay bounded by one batch's helpers
/// (not by the number of batches), and the process does not grow.
#[test]
fn repeated_small_batches_above_the_cpu_count_reuse_their_threads() {
    let _turn = global_lock();
    let slots = xcs::thread_stats().compute_slots;
    let limit = slots + 2;
    let op = vmap(Double);
    // Warm up: the threads one batch may use exist and are idle.
    with_options(&workers(limit), || op.call((0..8).collect())).unwrap();
    let before = xcs::thread_stats().started;
    let threads_before = process_threads();
    watchdog("repeated small batches", Duration::from_secs(120), || {
        with_options(&workers(limit), || {
            for round in 0..5_000u64 {
                let out = op.call((round..round + 8).collect()).unwrap();
                assert_eq!(out, (round..round + 8).map(|x| x * 2).collect::<Vec<_>>());
            }
        })
    });
    let started = xcs::thread_stats().started - before;
    // A batch of 8 has at most `limit - 1` helpers; a helper withdrawn unseen is idle again at
    // once, so later batches reuse it. (A few more may start while helpers that did join are
    // still on their way back to the idle list.)
    let bound = 2 * (limit - 1);
    assert!(
        started <= bound,
        "{started} threads started for 5 000 batches (bound {bound})"
    );
    let grew = process_threads().saturating_sub(threads_before);
    assert!(grew <= bound + 1, "the process grew by {grew} threads");
    let stats = xcs::thread_stats();
    assert!(stats.compute <= stats.compute_slots, "{stats:?}");
}

/// An outer batch of `outer` items, each a batch of `inner` meeting items.
struct Outer {
    inner: Arc<dyn Fn() -> Vec<u64> + Send + Sync>,
}
impl Operator for Outer {
    type Input = u64;
    type Output = u64;
    fn forward(&self, _: u64) -> Result<u64, XcsError> {
        Ok((self.inner)().iter().sum())
    }
    fn name(&self) -> &str {
        "outer"
    }
}

/// Helpers grow while items wait: nested batches above the CPU count reach every one of their
/// workers at once (4 outer × 4 inner = 16 items running together), and never more.
#[test]
fn nested_batches_above_the_cpu_count_run_all_their_workers_at_once() {
    let _turn = global_lock();
    let (outer, inner) = (4, 4);
    let gauge = Arc::new(Gauge::default());
    let meet = vmap(Meet {
        gauge: Arc::clone(&gauge),
        target: outer * inner + 1,
        until: Instant::now() + Duration::from_secs(2),
    });
    let inner_items: Vec<u64> = (0..inner as u64).collect();
    let op = vmap(Outer {
        inner: Arc::new(move || {
            with_options(&workers(inner), || meet.call(inner_items.clone())).unwrap()
        }),
    });
    let out = watchdog("nested meeting batches", Duration::from_secs(120), || {
        with_options(&workers(outer), || op.call((0..outer as u64).collect())).unwrap()
    });
    assert_eq!(out, vec![6; outer]);
    assert_eq!(
        gauge.peak(),
        outer * inner,
        "{} items ran at once",
        gauge.peak()
    );
}

/// A long batch above the CPU count: every one of its `max_workers` runs items (helpers offer
/// the next helpers while items are left), and no more than that many run at once.
#[test]
fn a_long_batch_above_the_cpu_count_keeps_every_worker_busy() {
    let _turn = global_lock();
    let slots = xcs::thread_stats().compute_slots;
    for limit in [slots + 1, 8, 32] {
        let gauge = Arc::new(Gauge::default());
        let op = vmap(Meet {
            gauge: Arc::clone(&gauge),
            target: limit + 1,
            until: Instant::now() + Duration::from_secs(2),
        });
        let items = 2 * limit as u64;
        let out = watchdog("a long meeting batch", Duration::from_secs(120), || {
            with_options(&workers(limit), || op.call((0..items).collect())).unwrap()
        });
        assert_eq!(out, (0..items).collect::<Vec<_>>());
        assert_eq!(gauge.peak(), limit, "max_workers = {limit}");
    }
}
