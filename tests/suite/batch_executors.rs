//! vmap / pmap steered by the options: observed through the threads items ran on, the order
//! they ran in, and the options they saw.

use crate::common;

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use common::{
    Double, FAIL_ON_RUNS, FailOn, FailOnInputs, NestedProbe, NestedProbeInputs, Probe,
    ProbeOptions, ProbeOptionsInputs, Rendezvous, assert_lowercase_led, lock, nz, op, serial,
};
use xcs::prelude::*;
use xcs::{Scheduler, XcsError};

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

#[test]
fn vmap_and_pmap_keep_order_and_nest() {
    let _s = serial();
    let slow_first = op("slow_first", |x: u64| {
        thread::sleep(Duration::from_millis(if x < 3 { 30 } else { 0 }));
        x * 10
    });
    let slow_first = Arc::new(slow_first);
    let inputs: Vec<u64> = (0..12).collect();
    let expected: Vec<u64> = inputs.iter().map(|x| x * 10).collect();
    assert_eq!(
        vmap(slow_first.clone()).call(inputs.clone()).unwrap(),
        expected
    );
    assert_eq!(
        pmap(slow_first.clone(), 3).call(inputs.clone()).unwrap(),
        expected
    );
    assert_eq!(
        pmap(slow_first.clone(), 0).call(inputs.clone()).unwrap(),
        expected
    );
    execution_options!(use_parallel = false => {
        assert_eq!(vmap(slow_first.clone()).call(inputs.clone()).unwrap(), expected);
    });

    let nested = vmap(vmap(Double));
    assert_eq!(
        nested.call(vec![vec![1, 2], vec![], vec![3]]).unwrap(),
        vec![vec![2, 4], vec![], vec![6]]
    );
    let nested = pmap(vmap(Double), 2);
    assert_eq!(
        nested.call(vec![vec![1], vec![2, 3]]).unwrap(),
        vec![vec![2], vec![4, 6]]
    );
    assert_eq!(vmap(Double).call(vec![]).unwrap(), Vec::<u64>::new());
}

#[test]
fn vmap_runs_in_parallel_on_at_most_max_workers() {
    let _s = serial();
    let rv = Arc::new(Rendezvous::new(2, Duration::from_secs(2)));
    let threads = Arc::new(Mutex::new(HashSet::<ThreadId>::new()));
    let (rv2, th2) = (rv.clone(), threads.clone());
    let item = op("meet2", move |_: u64| {
        lock(&th2).insert(thread::current().id());
        let met = rv2.meet();
        thread::sleep(Duration::from_millis(10));
        met
    });
    let out = execution_options!(max_workers = 2 => vmap(item).call((0..8).collect()).unwrap());
    assert!(out[0] && out[1], "two items ran at once: {out:?}");
    assert_eq!(
        rv.max_inside(),
        2,
        "never more than max_workers items at once"
    );
    assert!(
        lock(&threads).len() <= 2,
        "at most max_workers worker threads"
    );
}

#[test]
fn vmap_sequential_on_caller_thread_when_not_parallel_or_single_item() {
    let _s = serial();
    let caller = thread::current().id();
    let where_ = op("where", |_: u64| thread::current().id());
    let where_ = Arc::new(where_);
    let ids = execution_options!(use_parallel = false => vmap(where_.clone()).call((0..6).collect()).unwrap());
    assert!(
        ids.iter().all(|id| *id == caller),
        "use_parallel = false runs on the caller's thread"
    );
    let ids = vmap(where_.clone()).call(vec![1]).unwrap();
    assert_eq!(
        ids,
        vec![caller],
        "a one-item batch runs on the caller's thread"
    );
    let ids = execution_options!(use_parallel = false => pmap(where_.clone(), 3).call((0..6).collect()).unwrap());
    assert!(
        ids.iter().all(|id| *id == caller),
        "pmap with use_parallel = false is sequential"
    );
    // Sequential means one item at a time.
    let active = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let (a2, m2) = (active.clone(), max.clone());
    let counting = op("counting", move |_: u64| {
        let now = a2.fetch_add(1, Ordering::SeqCst) + 1;
        m2.fetch_max(now, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(5));
        a2.fetch_sub(1, Ordering::SeqCst);
    });
    execution_options!(use_parallel = false => pmap(counting, 4).call((0..8).collect()).unwrap());
    assert_eq!(max.load(Ordering::SeqCst), 1);
}

#[test]
fn pmap_uses_exactly_num_workers_ignoring_max_workers() {
    let _s = serial();
    let rv = Arc::new(Rendezvous::new(3, Duration::from_secs(2)));
    let threads = Arc::new(Mutex::new(HashSet::<ThreadId>::new()));
    let (rv2, th2) = (rv.clone(), threads.clone());
    let item = op("meet3", move |_: u64| {
        lock(&th2).insert(thread::current().id());
        let met = rv2.meet();
        thread::sleep(Duration::from_millis(10));
        met
    });
    let out = execution_options!(max_workers = 1 => pmap(item, 3).call((0..9).collect()).unwrap());
    assert!(
        out[0] && out[1] && out[2],
        "three items ran at once: {out:?}"
    );
    assert_eq!(rv.max_inside(), 3, "never more than num_workers at once");
    assert!(
        lock(&threads).len() <= 3,
        "exactly num_workers worker threads"
    );
}

#[test]
fn items_see_the_callers_effective_options() {
    let _s = serial();
    let out = execution_options!(max_workers = 3, enable_caching = true => {
        vmap(ProbeOptions).call(ProbeOptionsInputs::batch(vec![1u64, 2, 3, 4]).unwrap()).unwrap()
    });
    assert_eq!(out.len(), 4);
    for (_, mw, par, cache) in &out {
        assert_eq!(*mw, nz(3));
        assert!(*par);
        assert!(*cache);
    }
    // A nested operator call inside a batch item sees the outer scope, through pmap too.
    let out = execution_options!(max_workers = 7, enable_caching = true => {
        // Fresh inputs: the ones above are cached now (with the options they saw then).
        pmap(NestedProbe, 2).call((11..=14).map(|x| NestedProbeInputs { x }).collect()).unwrap()
    });
    for (_, mw, _, cache) in &out {
        assert_eq!(*mw, nz(7));
        assert!(*cache);
    }
    let out = execution_options!(max_workers = 5 => {
        vmap(vmap(ProbeOptions)).call(vec![vec![ProbeOptionsInputs { x: 1 }, ProbeOptionsInputs { x: 2 }], vec![
            ProbeOptionsInputs { x: 3 },
        ]])
        .unwrap()
    });
    assert!(out.iter().flatten().all(|(_, mw, _, _)| *mw == nz(5)));
}

#[test]
fn error_of_lowest_index_failing_item() {
    let _s = serial();
    // Item 5 fails at once; item 2 fails later: the call reports item 2.
    let inputs: Vec<FailOnInputs> = [1u64, 2, 20, 4, 5, 50, 7, 8]
        .iter()
        .map(|&x| FailOnInputs { x })
        .collect();
    let err = execution_options!(max_workers = 8 => vmap(FailOn).call(inputs)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("twenty") || format!("{err:?}").contains("twenty"),
        "{msg}"
    );
    assert!(msg.contains('2'), "the item index is in the message: {msg}");
    assert!(matches!(err, XcsError::Operator { .. }), "{err:?}");
    assert_lowercase_led(&err);

    let inputs: Vec<FailOnInputs> = [1u64, 2, 20, 4, 5, 50]
        .iter()
        .map(|&x| FailOnInputs { x })
        .collect();
    let err = pmap(FailOn, 6).call(inputs).unwrap_err();
    assert!(err.to_string().contains('2'), "{err}");
    assert!(format!("{err}{err:?}").contains("twenty"), "{err:?}");
}

#[test]
fn items_not_started_after_a_failure_are_not_started() {
    let _s = serial();
    FAIL_ON_RUNS.store(0, Ordering::SeqCst);
    let inputs: Vec<FailOnInputs> = [1u64, 50, 3, 4, 5]
        .iter()
        .map(|&x| FailOnInputs { x })
        .collect();
    let err = execution_options!(use_parallel = false => vmap(FailOn).call(inputs)).unwrap_err();
    assert!(matches!(err, XcsError::Operator { .. }));
    assert_eq!(
        FAIL_ON_RUNS.load(Ordering::SeqCst),
        2,
        "items after the failing one never ran"
    );
}

#[test]
fn panics_become_panicked_and_runtime_stays_usable() {
    let _s = serial();
    let boom = Arc::new(op("boom", |x: u64| {
        if x == 2 {
            panic!("kaboom in item");
        }
        x
    }));
    let r = catch_unwind(AssertUnwindSafe(|| vmap(boom.clone()).call(vec![1, 2, 3])));
    let err = r
        .expect("a panic never unwinds through the caller")
        .unwrap_err();
    assert!(matches!(err, XcsError::Panicked { .. }), "{err:?}");
    assert!(err.to_string().contains("kaboom in item"), "{err}");
    assert_lowercase_led(&err);

    let r = catch_unwind(AssertUnwindSafe(|| pmap(boom.clone(), 2).call(vec![2, 1])));
    let err = r.expect("no unwinding").unwrap_err();
    assert!(matches!(err, XcsError::Panicked { .. }), "{err:?}");

    let r = catch_unwind(AssertUnwindSafe(
        || execution_options!(use_parallel = false => vmap(boom.clone()).call(vec![1, 2])),
    ));
    let err = r.expect("no unwinding when sequential").unwrap_err();
    assert!(matches!(err, XcsError::Panicked { .. }), "{err:?}");

    // Still usable.
    assert_eq!(
        vmap(boom.clone()).call(vec![1, 3, 4]).unwrap(),
        vec![1, 3, 4]
    );
    assert_eq!(pmap(boom.clone(), 2).call(vec![5, 6]).unwrap(), vec![5, 6]);
    assert_eq!(get_execution_options(), ExecutionOptions::default());
}

#[test]
fn call_settled_returns_every_outcome_of_vmap_and_pmap() {
    let _s = serial();
    let inputs = || {
        [1u64, 20, 3, 50]
            .iter()
            .map(|&x| FailOnInputs { x })
            .collect::<Vec<_>>()
    };
    for results in [
        vmap(FailOn).call_settled(inputs()),
        pmap(FailOn, 2).call_settled(inputs()),
    ] {
        assert_eq!(results.len(), 4);
        assert_eq!(results[0].as_ref().unwrap(), &1);
        assert!(matches!(results[1], Err(XcsError::Operator { .. })));
        assert_eq!(results[2].as_ref().unwrap(), &3);
        assert!(matches!(results[3], Err(XcsError::Operator { .. })));
    }
    let boom = op("boom_settled", |x: u64| {
        if x == 1 {
            panic!("settled panic");
        }
        x
    });
    let results = vmap(boom).call_settled(vec![0, 1, 2]);
    assert!(results[0].is_ok() && results[2].is_ok());
    assert!(matches!(results[1], Err(XcsError::Panicked { .. })));
}

#[test]
fn parallel_failure_does_not_start_later_items_with_one_worker() {
    let _s = serial();
    FAIL_ON_RUNS.store(0, Ordering::SeqCst);
    let inputs: Vec<FailOnInputs> = [50u64, 2, 3, 4, 5, 6]
        .iter()
        .map(|&x| FailOnInputs { x })
        .collect();
    let err = pmap(FailOn, 1).call(inputs).unwrap_err();
    assert!(matches!(err, XcsError::Operator { .. }));
    assert!(
        err.to_string().contains('0'),
        "index 0 in the message: {err}"
    );
    assert_eq!(
        FAIL_ON_RUNS.load(Ordering::SeqCst),
        1,
        "a single worker never starts items after the failure"
    );
}

/// A batch that stops at its first failure, with items that are only their bodies (the lean
/// path, which collects outputs in place): the failing item's error comes back, no later item
/// starts, and every input is dropped exactly once — run by its body or left unstarted.
#[test]
fn a_sequential_batch_stops_at_its_first_failure_and_drops_every_input_once() {
    static DROPPED: AtomicUsize = AtomicUsize::new(0);
    static RAN: AtomicUsize = AtomicUsize::new(0);
    struct Counted(u64);
    impl Drop for Counted {
        fn drop(&mut self) {
            DROPPED.fetch_add(1, Ordering::SeqCst);
        }
    }
    struct FailAt3;
    impl Operator for FailAt3 {
        type Input = Counted;
        type Output = u64;
        fn forward(&self, input: Counted) -> Result<u64, XcsError> {
            RAN.fetch_add(1, Ordering::SeqCst);
            if input.0 == 3 {
                return Err(XcsError::operator("fail_at_3", "three"));
            }
            Ok(input.0 * 10)
        }
        fn name(&self) -> &str {
            "fail_at_3"
        }
    }
    let inputs = || (0..10).map(Counted).collect::<Vec<_>>();
    let err = execution_options!(use_parallel = false => vmap(FailAt3).call(inputs())).unwrap_err();
    assert!(err.to_string().contains("three"), "{err}");
    assert_eq!(
        RAN.load(Ordering::SeqCst),
        4,
        "items after the failure never start"
    );
    assert_eq!(
        DROPPED.load(Ordering::SeqCst),
        10,
        "every input dropped once"
    );
    // Without a failure, the outputs come back in order.
    struct Tenfold;
    impl Operator for Tenfold {
        type Input = Counted;
        type Output = u64;
        fn forward(&self, input: Counted) -> Result<u64, XcsError> {
            Ok(input.0 * 10)
        }
        fn name(&self) -> &str {
            "tenfold"
        }
    }
    let out = execution_options!(use_parallel = false => vmap(Tenfold).call(inputs())).unwrap();
    assert_eq!(out, (0..10).map(|x| x * 10).collect::<Vec<u64>>());
    assert_eq!(DROPPED.load(Ordering::SeqCst), 20);

    // Inputs with nothing to drop take the in-place loop: the same stop at the first failure.
    static PLAIN_RAN: AtomicUsize = AtomicUsize::new(0);
    struct PlainFailAt3;
    impl Operator for PlainFailAt3 {
        type Input = u64;
        type Output = u64;
        fn forward(&self, input: u64) -> Result<u64, XcsError> {
            PLAIN_RAN.fetch_add(1, Ordering::SeqCst);
            if input == 3 {
                return Err(XcsError::operator("plain_fail_at_3", "three"));
            }
            Ok(input * 10)
        }
        fn name(&self) -> &str {
            "plain_fail_at_3"
        }
    }
    let err =
        execution_options!(use_parallel = false => vmap(PlainFailAt3).call((0..10).collect()))
            .unwrap_err();
    assert!(err.to_string().contains("three"), "{err}");
    assert_eq!(PLAIN_RAN.load(Ordering::SeqCst), 4);
    let out =
        execution_options!(use_parallel = false => vmap(PlainTenfold).call((0..10).collect()))
            .unwrap();
    assert_eq!(out, (0..10).map(|x| x * 10).collect::<Vec<u64>>());

    struct PlainTenfold;
    impl Operator for PlainTenfold {
        type Input = u64;
        type Output = u64;
        fn forward(&self, input: u64) -> Result<u64, XcsError> {
            Ok(input * 10)
        }
        fn name(&self) -> &str {
            "tenfold_plain"
        }
    }
}
