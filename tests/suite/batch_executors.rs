//! vmap / pmap steered by the options: observed through the threads items ran on, the order
//! they ran in, and the options they saw.

use crate::common;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::Probe;
use xcs::{
    Operator, OptionsPatch, Scheduler, XcsError, get_execution_options, pmap, vmap, with_options,
};

fn workers(n: usize) -> OptionsPatch {
    OptionsPatch::new().max_workers(NonZeroUsize::new(n))
}

fn sequential() -> OptionsPatch {
    OptionsPatch::new().use_parallel(false)
}

#[test]
fn max_workers_bounds_distinct_threads() {
    for limit in [1usize, 2, 4] {
        let (mut op, record) = Probe::new(1);
        // Items wait for `limit + 1` threads, which never come: each waits until the shared
        // deadline, so every worker the pool has gets to run items.
        op.rendezvous = Some((limit + 1, Instant::now() + Duration::from_millis(800)));
        let out = with_options(&workers(limit), || vmap(op).call((0..16).collect())).unwrap();
        assert_eq!(out, (0..16).map(|x| x * 10).collect::<Vec<_>>());
        let used = record.distinct_threads();
        // Exactly `max_workers`: up to one per CPU on compute lanes, above it (items that wait
        // on I/O) the rest on workers started as `pmap`'s are.
        assert_eq!(
            used, limit,
            "max_workers = {limit} but {used} threads ran items"
        );
    }
}

#[test]
fn max_workers_one_runs_on_the_caller() {
    let (op, record) = Probe::new(0);
    with_options(&workers(1), || vmap(op).call((0..8).collect())).unwrap();
    let threads = record.threads.lock().unwrap();
    assert_eq!(threads.len(), 1);
    assert!(threads.contains(&std::thread::current().id()));
}

#[test]
fn use_parallel_false_is_sequential_on_the_caller() {
    let (op, record) = Probe::new(1);
    let op = Arc::new(op);
    with_options(&sequential(), || {
        vmap(Arc::clone(&op)).call((0..16).collect())
    })
    .unwrap();
    assert_eq!(*record.order.lock().unwrap(), (0..16).collect::<Vec<_>>());
    let threads = record.threads.lock().unwrap().clone();
    assert_eq!(threads.len(), 1);
    assert!(threads.contains(&std::thread::current().id()));
    // pmap too: the global debugging switch.
    let (op, record) = Probe::new(1);
    with_options(&sequential(), || pmap(op, 4).call((0..8).collect())).unwrap();
    assert_eq!(*record.order.lock().unwrap(), (0..8).collect::<Vec<_>>());
    assert_eq!(record.distinct_threads(), 1);
}

#[test]
fn legacy_sequential_scheduler_is_sequential() {
    for name in ["sequential", "topological"] {
        let patch = OptionsPatch::from_pairs([("scheduler", name)]).unwrap();
        let (op, record) = Probe::new(1);
        let seen = with_options(&patch, || {
            assert_eq!(
                get_execution_options().scheduler,
                Scheduler::from_name(name)
            );
            vmap(op).call((0..12).collect()).unwrap();
            get_execution_options()
        });
        assert!(!seen.use_parallel);
        assert_eq!(*record.order.lock().unwrap(), (0..12).collect::<Vec<_>>());
        assert_eq!(record.distinct_threads(), 1);
    }
}

#[test]
fn items_see_the_callers_scope() {
    let patch = OptionsPatch::new()
        .max_workers(NonZeroUsize::new(3))
        .enable_caching(false)
        .device_strategy(xcs::DeviceStrategy::Cpu);
    let (mut op, record) = Probe::new(1);
    op.rendezvous = Some((3, Instant::now() + Duration::from_secs(5)));
    let outer = with_options(&patch, || {
        vmap(op).call((0..24).collect()).unwrap();
        get_execution_options()
    });
    let seen = record.seen.lock().unwrap();
    assert_eq!(seen.len(), 24);
    assert!(seen.iter().all(|options| *options == outer));
    // And they ran on the three workers.
    assert_eq!(record.distinct_threads(), 3);
}

#[test]
fn pmap_items_see_the_callers_scope_and_use_exactly_its_workers() {
    let patch = OptionsPatch::new()
        .trace_execution(false)
        .max_workers(NonZeroUsize::new(1));
    let (mut op, record) = Probe::new(1);
    op.rendezvous = Some((4, Instant::now() + Duration::from_secs(5)));
    let outer = with_options(&patch, || {
        // max_workers does not apply to pmap: its worker count is explicit.
        pmap(op, 4).call((0..16).collect()).unwrap();
        get_execution_options()
    });
    assert_eq!(record.distinct_threads(), 4);
    assert!(record.seen.lock().unwrap().iter().all(|o| *o == outer));
}

#[test]
fn pmap_zero_means_one_per_cpu() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (op, record) = Probe::new(10);
    pmap(op, 0).call((0..(cpus as u64 * 3)).collect()).unwrap();
    assert!(record.distinct_threads() <= cpus);
}

#[test]
fn nested_vmap_keeps_order_and_options() {
    let (op, record) = Probe::new(0);
    let nested = vmap(vmap(op));
    let inputs: Vec<Vec<u64>> = (0..6).map(|i| (i * 10..i * 10 + 5).collect()).collect();
    let out = with_options(&workers(2), || nested.call(inputs.clone())).unwrap();
    let expected: Vec<Vec<u64>> = inputs
        .iter()
        .map(|row| row.iter().map(|x| x * 10).collect())
        .collect();
    assert_eq!(out, expected);
    assert!(
        record
            .seen
            .lock()
            .unwrap()
            .iter()
            .all(|o| o.max_workers == NonZeroUsize::new(2))
    );
    // Each level runs at most two items at once; the inner batches' second lanes may be taken
    // by any compute thread, so all levels together use the caller plus the compute slots
    // (with two CPUs or more: above the CPU count, workers beyond the lanes are jobs).
    let slots = xcs::thread_stats().compute_slots;
    if slots >= 2 {
        assert!(record.distinct_threads() <= 1 + slots);
    }
    // Mixed worker counts nest too.
    let (op, _) = Probe::new(0);
    let mixed = pmap(vmap(op), 3);
    assert_eq!(mixed.call(inputs).unwrap(), expected);
}

#[test]
fn lowest_index_error_wins_and_names_the_item() {
    let (mut op, _) = Probe::new(0);
    op.fail_on = Some(7);
    let err = vmap(op).call((0..20).collect()).unwrap_err();
    match &err {
        XcsError::Operator { index, .. } => assert_eq!(*index, Some(7)),
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("item 7"), "{err}");
}

#[test]
fn unstarted_items_are_not_started_after_a_failure() {
    // In order: nothing after the failing item runs.
    let (mut op, record) = Probe::new(0);
    op.fail_on = Some(2);
    let err = with_options(&sequential(), || vmap(op).call((0..100).collect())).unwrap_err();
    assert_eq!(err.index(), Some(2));
    assert_eq!(record.started.load(Ordering::SeqCst), 3);
    // In parallel: the failure stops the batch long before its 400 items are done.
    let (mut op, record) = Probe::new(2);
    op.fail_on = Some(0);
    let err = with_options(&workers(2), || pmap(op, 2).call((0..400).collect())).unwrap_err();
    assert_eq!(err.index(), Some(0));
    // (Far fewer than the 400: only what the other worker took before the failure landed.)
    assert!(record.started.load(Ordering::SeqCst) < 100);
}

#[test]
fn panics_become_errors_and_the_runtime_stays_usable() {
    for round in 0..50 {
        let (mut op, _) = Probe::new(0);
        op.panic_on = Some(round % 5);
        let err = if round % 2 == 0 {
            vmap(op).call((0..5).collect())
        } else {
            pmap(op, 3).call((0..5).collect())
        }
        .unwrap_err();
        match err {
            XcsError::Panicked { message, index, .. } => {
                assert_eq!(message, format!("probe panicked on {}", round % 5));
                assert_eq!(index, Some(round as usize % 5));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let (mut op, record) = Probe::new(1);
    op.rendezvous = Some((2, Instant::now() + Duration::from_secs(5)));
    let out = with_options(&workers(2), || vmap(op).call((0..16).collect())).unwrap();
    assert_eq!(out.len(), 16);
    assert_eq!(record.distinct_threads(), 2);
}

#[test]
fn call_settled_returns_every_outcome() {
    let (mut op, record) = Probe::new(0);
    op.fail_on = Some(1);
    let outcomes = vmap(op).call_settled(vec![0, 1, 2, 3]);
    assert_eq!(record.started.load(Ordering::SeqCst), 4);
    assert_eq!(outcomes.len(), 4);
    assert!(matches!(
        outcomes[1],
        Err(XcsError::Operator { index: Some(1), .. })
    ));
    assert_eq!(outcomes[3].as_ref().unwrap(), &30);
}

#[test]
fn one_item_and_empty_batches() {
    let (op, record) = Probe::new(0);
    let op = Arc::new(op);
    assert_eq!(vmap(Arc::clone(&op)).call(vec![4]).unwrap(), vec![40]);
    assert!(
        record
            .threads
            .lock()
            .unwrap()
            .contains(&std::thread::current().id())
    );
    assert!(vmap(Arc::clone(&op)).call(vec![]).unwrap().is_empty());
    assert!(pmap(op, 4).call(vec![]).unwrap().is_empty());
}

#[test]
fn pools_are_built_once_per_worker_count() {
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
fn vmap_names_itself_after_its_operator() {
    let (op, _) = Probe::new(0);
    assert_eq!(vmap(op).name(), "vmap(probe)");
    let (op, _) = Probe::new(0);
    let p = pmap(op, 5);
    assert_eq!(p.name(), "pmap(probe)");
    assert_eq!(p.num_workers(), 5);
}

#[test]
fn nested_batches_with_their_own_worker_counts() {
    // Outer vmap on 2 workers; each item runs an inner vmap on 3 (another pool) and a pmap.
    struct Inner;
    impl Operator for Inner {
        type Input = u64;
        type Output = Vec<u64>;
        fn forward(&self, x: u64) -> Result<Vec<u64>, XcsError> {
            let (op, _) = Probe::new(0);
            let (op2, _) = Probe::new(0);
            let inner = with_options(&workers(3), || vmap(op).call(vec![x, x + 1, x + 2]))?;
            let more = pmap(op2, 2).call(vec![x])?;
            Ok(inner.into_iter().chain(more).collect())
        }
        fn name(&self) -> &str {
            "inner"
        }
    }
    let out = with_options(&workers(2), || vmap(Inner).call((0..8).collect())).unwrap();
    for (x, row) in (0..8u64).zip(out) {
        assert_eq!(row, vec![x * 10, (x + 1) * 10, (x + 2) * 10, x * 10]);
    }
}

#[test]
fn batches_of_any_length_use_at_most_their_limit_and_the_compute_slots() {
    // Whatever the lengths and worker counts, the compute slots in use never exceed one per
    // CPU, and a batch never runs its items on more threads than its limit.
    for len in 2..12 {
        let (op, record) = Probe::new(0);
        with_options(&workers(9), || vmap(op).call((0..len).collect())).unwrap();
        let stats = xcs::thread_stats();
        assert!(stats.compute <= stats.compute_slots, "{stats:?}");
        let used = record.distinct_threads();
        assert!(
            used <= 9.min(len as usize),
            "{len} items, max_workers = 9: ran on {used} threads"
        );
    }
}

/// Item 0 is slow, item 2 fails after it, item 5 fails at once.
struct SlowStart;

impl Operator for SlowStart {
    type Input = u64;
    type Output = u64;
    fn forward(&self, x: u64) -> Result<u64, XcsError> {
        match x {
            0 => std::thread::sleep(Duration::from_millis(100)),
            2 => return Err(XcsError::operator("slow_start", "two")),
            5 => return Err(XcsError::operator("slow_start", "five")),
            _ => {}
        }
        Ok(x)
    }
    fn name(&self) -> &str {
        "slow_start"
    }
}

#[test]
fn the_lowest_failing_index_wins_whatever_the_schedule() {
    // On two workers item 5 (in the second half of the batch) fails while item 0 still runs
    // and items 1–4 have not started. They still run, so item 2's error is the one reported.
    for _ in 0..5 {
        let err = with_options(&workers(2), || vmap(SlowStart).call((0..8).collect())).unwrap_err();
        assert_eq!(err.index(), Some(2), "{err}");
        let err = pmap(SlowStart, 2).call((0..8).collect()).unwrap_err();
        assert_eq!(err.index(), Some(2), "{err}");
    }
}
