//! The threads batches use: bounds read from the process's own thread count (sync batches, and
//! async ones whose waiting items must cost no thread), pools reused across calls, one compute
//! lane per CPU. The tests of this binary take turns, so no other test's threads are counted or
//! hold the pools.

use crate::common;

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use common::{Gauge, Meet, Probe, Rendezvous, lock, op, process_threads, serial, watchdog};
use xcs::{Operator, OptionsPatch, XcsError, execution_options, pmap, vmap, with_options};

fn turn() -> MutexGuard<'static, ()> {
    common::global_lock()
}

fn workers(n: usize) -> OptionsPatch {
    OptionsPatch::new().max_workers(NonZeroUsize::new(n))
}

struct Leaf;
impl Operator for Leaf {
    type Input = u64;
    type Output = u64;
    fn forward(&self, x: u64) -> Result<u64, XcsError> {
        std::thread::sleep(Duration::from_millis(1));
        Ok(x * 2)
    }
    fn name(&self) -> &str {
        "leaf"
    }
}

// ---------------------------------------------------------------------------------------------
// Observation 3: under a deadline, `max_workers` still bounds nested batches.

struct Recurse {
    gauge: Arc<Gauge>,
    threads: Arc<Mutex<HashSet<ThreadId>>>,
}
impl Operator for Recurse {
    type Input = u32;
    type Output = u64;
    fn forward(&self, depth: u32) -> Result<u64, XcsError> {
        if depth == 0 {
            let _running = self.gauge.enter();
            self.threads
                .lock()
                .unwrap()
                .insert(std::thread::current().id());
            std::thread::sleep(Duration::from_millis(1));
            return Ok(1);
        }
        let inner = Recurse {
            gauge: Arc::clone(&self.gauge),
            threads: Arc::clone(&self.threads),
        };
        Ok(vmap(inner).call(vec![depth - 1, depth - 1])?.iter().sum())
    }
    fn name(&self) -> &str {
        "recurse"
    }
}

#[test]
fn max_workers_bounds_deep_recursion_with_and_without_a_deadline() {
    for timeout in [None, Some(60.0)] {
        let gauge = Arc::new(Gauge::default());
        let threads = Arc::new(Mutex::new(HashSet::new()));
        let op = vmap(Recurse {
            gauge: Arc::clone(&gauge),
            threads: Arc::clone(&threads),
        });
        // Two workers per batch, kept to the compute lanes: no more than one per CPU (above the
        // CPU count each batch would run both of its items at once, on jobs).
        let per_batch = 2.min(xcs::thread_stats().compute_slots);
        let patch = workers(per_batch)
            .timeout(timeout.map(Duration::from_secs_f64))
            .unwrap();
        let _turn = turn();
        let before = process_threads();
        let out = watchdog("depth-8 recursion", Duration::from_secs(120), || {
            with_options(&patch, || op.call(vec![7, 7])).unwrap()
        });
        assert_eq!(out, vec![128, 128]);
        let slots = xcs::thread_stats().compute_slots;
        // At most the caller plus one compute lane per CPU without a deadline; two jobs with.
        let bound = if timeout.is_some() { 2 } else { 1 + slots };
        assert!(
            gauge.peak() <= bound,
            "timeout {timeout:?}: {} leaves ran at once (bound {bound})",
            gauge.peak()
        );
        let used = threads.lock().unwrap().len();
        assert!(
            used <= bound,
            "timeout {timeout:?}: leaves ran on {used} threads"
        );
        // The watchdog's own thread, the jobs, and the compute lanes.
        let grew = process_threads().saturating_sub(before);
        assert!(grew <= 1 + 2 + slots, "the process grew by {grew} threads");
    }
}

// ---------------------------------------------------------------------------------------------
// Observation 4: absurd worker counts start no more threads than items.

#[test]
fn huge_worker_counts_start_no_more_threads_than_items() {
    let _turn = turn();
    let threads_before = process_threads();
    watchdog("huge worker counts", Duration::from_secs(60), || {
        let before = xcs::thread_stats().started;
        let out = with_options(&workers(1_000_000), || vmap(Leaf).call((0..10).collect()));
        assert_eq!(out.unwrap().len(), 10);
        let out = pmap(Leaf, 1_000_000).call((0..10).collect());
        assert_eq!(out.unwrap().len(), 10);
        // Distinct worker counts share the same threads: no pool per count.
        for n in 1..=64 {
            let out = with_options(&workers(n), || vmap(Leaf).call((0..4).collect()));
            assert_eq!(out.unwrap().len(), 4);
        }
        let started = xcs::thread_stats().started - before;
        // The 10 workers of each 10-item batch (the vmap's on compute lanes and jobs, pmap's on
        // jobs, sharing idle threads) plus at most the compute lanes.
        let slots = xcs::thread_stats().compute_slots;
        assert!(started <= 10 + slots, "{started} threads started");
        let stats = xcs::thread_stats();
        assert!(stats.compute <= stats.compute_slots, "{stats:?}");
        let grew = process_threads().saturating_sub(threads_before);
        assert!(grew <= 1 + 10 + slots, "the process grew by {grew} threads");
    });
}

// ---------------------------------------------------------------------------------------------
// An explicit `max_workers` is how many items of a batch run at once, above the CPU count too.

/// The most items of a 64-item `vmap` running at once under `patch`, when each waits for one
/// more than `limit` to be running: `limit` if the batch reaches it and never exceeds it.
fn peak_of_vmap(patch: &OptionsPatch, limit: usize) -> usize {
    let gauge = Arc::new(Gauge::default());
    let op = vmap(Meet {
        gauge: Arc::clone(&gauge),
        target: limit + 1,
        until: Instant::now() + Duration::from_secs(2),
    });
    let out = watchdog("vmap meeting", Duration::from_secs(120), || {
        with_options(patch, || op.call((0..64).collect())).unwrap()
    });
    assert_eq!(out, (0..64).collect::<Vec<_>>());
    gauge.peak()
}

#[test]
fn an_explicit_max_workers_runs_that_many_items_at_once() {
    let _turn = turn();
    for limit in [3, 16] {
        let peak = peak_of_vmap(&workers(limit), limit);
        assert_eq!(
            peak, limit,
            "max_workers = {limit}: {peak} items ran at once"
        );
    }
    // Unset: one per CPU (the caller included).
    let slots = xcs::thread_stats().compute_slots;
    let peak = peak_of_vmap(&OptionsPatch::new(), slots);
    assert_eq!(peak, slots, "max_workers unset: {peak} items ran at once");
}

/// Sleeps `ms` (awaiting, not blocking), counting the items in flight.
#[cfg(feature = "tokio")]
struct Nap {
    ms: u64,
    gauge: Arc<Gauge>,
}

#[cfg(feature = "tokio")]
impl xcs::AsyncOperator for Nap {
    type Input = u64;
    type Output = u64;
    async fn forward(&self, x: u64) -> Result<u64, XcsError> {
        let _running = self.gauge.enter();
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        Ok(x * 2)
    }
    fn name(&self) -> &str {
        "nap"
    }
}

#[cfg(feature = "tokio")]
#[test]
fn thousands_of_waiting_items_cost_no_threads() {
    let _turn = turn();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    // Warm the runtime's workers first, then count.
    runtime.block_on(async { tokio::time::sleep(Duration::from_millis(1)).await });
    let before = process_threads();
    let op = Arc::new(Nap {
        ms: 50,
        gauge: Arc::default(),
    });
    let peak = runtime.block_on(async {
        vmap(Arc::clone(&op))
            .call((0..5000).collect())
            .await
            .unwrap();
        op.gauge.peak()
    });
    assert_eq!(peak, 5000);
    let grew = process_threads().saturating_sub(before);
    assert!(grew <= 1, "5000 waiting items started {grew} threads");
}

#[test]
fn pools_are_built_once_per_worker_count() {
    let _turn = turn();
    // Every round runs on the very same three threads: the pool is reused, not rebuilt. Items
    // wait (up to a generous limit, for a loaded machine whose other tests hold the compute
    // slots a while) until three threads run them.
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let (mut op, record) = Probe::new(1);
        op.rendezvous = Some((3, Instant::now() + Duration::from_secs(20)));
        with_options(&workers(3), || vmap(op).call((0..12).collect())).unwrap();
        let threads = record.threads.lock().unwrap().clone();
        assert_eq!(threads.len(), 3);
        rounds.push(threads);
    }
    assert!(rounds.windows(2).all(|pair| pair[0] == pair[1]));
}

#[test]
fn vmap_compute_pools_are_reused() {
    let _s = serial();
    let threads = Arc::new(Mutex::new(HashSet::<ThreadId>::new()));
    let th2 = threads.clone();
    let item = Arc::new(op("record_thread_vmap", move |_: u64| {
        lock(&th2).insert(thread::current().id());
        thread::sleep(Duration::from_millis(5));
    }));
    for _ in 0..20 {
        execution_options!(max_workers = 3 => vmap(item.clone()).call((0..12).collect()).unwrap());
    }
    let n = lock(&threads).len();
    assert!(
        n <= 3,
        "vmap calls with max_workers = 3 share one pool of 3 workers, saw {n} threads"
    );
}

/// Worker pools are created once per worker count and reused; no call builds a thread pool.
/// `pmap` runs on reusable spare threads; each puts itself back on the idle list before its
/// caller hears it is done, so back-to-back calls run on the same 5 threads. (Before that fix,
/// a call that followed at once could find no idle thread and start new ones.)
#[test]
fn pmap_calls_reuse_their_workers() {
    let _s = serial();
    let threads = Arc::new(Mutex::new(HashSet::<ThreadId>::new()));
    let th2 = threads.clone();
    let item = Arc::new(op("record_thread_pmap", move |_: u64| {
        lock(&th2).insert(thread::current().id());
        thread::sleep(Duration::from_millis(2));
    }));
    for _ in 0..50 {
        pmap(item.clone(), 5).call((0..20).collect()).unwrap();
    }
    let n = lock(&threads).len();
    assert!(
        n <= 5,
        "pmap(…, 5) calls share one pool of 5 workers, saw {n} threads"
    );
}

#[test]
fn default_vmap_workers_and_pmap_zero_are_one_per_cpu() {
    let _s = serial();
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    for use_pmap in [false, true] {
        let rv = Arc::new(Rendezvous::new(cpus, Duration::from_secs(2)));
        let rv2 = rv.clone();
        let item = op("meet_cpus", move |_: u64| rv2.meet());
        let inputs: Vec<u64> = (0..(2 * cpus as u64).max(2)).collect();
        let out = if use_pmap {
            pmap(item, 0).call(inputs)
        } else {
            vmap(item).call(inputs)
        }
        .unwrap();
        assert!(
            out.iter().take(cpus).all(|m| *m),
            "pmap={use_pmap}: {out:?}"
        );
        assert_eq!(rv.max_inside(), cpus, "pmap={use_pmap}: one worker per CPU");
    }
}
