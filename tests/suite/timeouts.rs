//! `timeout_seconds`: one deadline for the whole call, returned at even while an item hangs.
//! Observed through gates the test holds closed: the call comes back while an item is still
//! inside its body, unstarted items never start, and later calls still get all their workers.

use crate::common;

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{Hang, wait_for};
use xcs::{Operator, OptionsPatch, XcsError, pmap, vmap, with_options};

fn timeout(seconds: f64) -> OptionsPatch {
    OptionsPatch::new()
        .timeout(Some(Duration::from_secs_f64(seconds)))
        .unwrap()
}

#[test]
fn vmap_returns_at_the_deadline_while_an_item_hangs() {
    let op = Hang::new(1); // item 0 hangs, the others return at once
    let (gate, finished) = (Arc::clone(&op.gate), Arc::clone(&op.finished));
    let patch = timeout(0.1).max_workers(NonZeroUsize::new(2));
    let err = with_options(&patch, || vmap(op).call((0..4).collect())).unwrap_err();
    // The hung item is still inside its body: the call did not wait for it.
    assert!(finished.load(Ordering::SeqCst) < 4);
    match &err {
        XcsError::Timeout { index, timeout, .. } => {
            assert_eq!(*index, Some(0));
            assert_eq!(*timeout, Duration::from_millis(100));
        }
        other => panic!("unexpected {other:?}"),
    }
    // Released, the abandoned item finishes in the background.
    gate.open();
    assert!(wait_for(&finished, 4));
}

#[test]
fn sequential_batches_also_return_at_the_deadline() {
    let op = Hang::new(1);
    let (gate, finished) = (Arc::clone(&op.gate), Arc::clone(&op.finished));
    let patch = timeout(0.05).use_parallel(false);
    let err = with_options(&patch, || vmap(op).call((0..3).collect())).unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(finished.load(Ordering::SeqCst), 0);
    gate.open();
}

#[test]
fn unstarted_items_are_never_started() {
    let op = Hang::new(u64::MAX); // every item hangs
    let (gate, started) = (Arc::clone(&op.gate), Arc::clone(&op.started));
    let err = with_options(&timeout(0.1), || pmap(op, 2).call((0..10).collect())).unwrap_err();
    assert!(err.is_timeout());
    // At most one item per worker started (a worker that came up after the deadline takes none).
    let at_return = started.load(Ordering::SeqCst);
    assert!((1..=2).contains(&at_return), "{at_return} items started");
    gate.open();
    // The workers finish their items and take no more.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(started.load(Ordering::SeqCst), at_return);
}

/// Two items that can only finish if they run at the same time.
struct Pair(Arc<Barrier>);

impl Operator for Pair {
    type Input = u64;
    type Output = u64;
    fn forward(&self, input: u64) -> Result<u64, XcsError> {
        self.0.wait();
        Ok(input)
    }
    fn name(&self) -> &str {
        "pair"
    }
}

#[test]
fn abandoned_items_do_not_take_workers_from_later_calls() {
    // Many timed-out batches in a row, each leaving two items hung on its workers…
    let mut gates = Vec::new();
    for _ in 0..10 {
        let op = Hang::new(u64::MAX);
        gates.push(Arc::clone(&op.gate));
        let err = with_options(&timeout(0.02), || pmap(op, 2).call((0..4).collect()));
        assert!(err.unwrap_err().is_timeout());
    }
    // …then a normal batch still gets both of its workers at once (the items meet at a barrier,
    // so they can only finish if two threads run them together).
    let pair = pmap(Pair(Arc::new(Barrier::new(2))), 2);
    let out = with_options(&timeout(5.0), || pair.call(vec![1, 2])).unwrap();
    assert_eq!(out, vec![1, 2]);
    // The same for vmap's compute pool with the same worker count.
    let pair = vmap(Pair(Arc::new(Barrier::new(2))));
    let patch = timeout(5.0).max_workers(NonZeroUsize::new(2));
    assert_eq!(
        with_options(&patch, || pair.call(vec![3, 4])).unwrap(),
        vec![3, 4]
    );
    for gate in gates {
        gate.open();
    }
}

#[test]
fn arc_operator_call_returns_at_the_deadline() {
    let op = Arc::new(Hang::new(1));
    let started = Instant::now();
    let err = with_options(&timeout(0.05), || op.call(0)).unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(op.finished.load(Ordering::SeqCst), 0);
    assert!(started.elapsed() < Duration::from_secs(5));
    op.gate.open();
    assert!(wait_for(&op.finished, 1));
}

#[test]
fn static_ref_operator_call_returns_at_the_deadline() {
    let op: &'static Hang = Box::leak(Box::new(Hang::new(1)));
    // Method syntax on `op` would pick `Hang`'s own (borrowed) `call`; the handle's impl is
    // the one for `&'static Hang`.
    let err = with_options(&timeout(0.05), || Operator::call(&op, 0)).unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(op.finished.load(Ordering::SeqCst), 0);
    op.gate.open();
}

/// A hand-written operator called through a plain borrow: sleeps, optionally cooperating.
struct Slow {
    sleep: Duration,
    cooperate: bool,
    steps: AtomicUsize,
}

impl Operator for Slow {
    type Input = ();
    type Output = ();
    fn forward(&self, (): ()) -> Result<(), XcsError> {
        let until = Instant::now() + self.sleep;
        while Instant::now() < until {
            if self.cooperate && xcs::cancelled() {
                return Ok(());
            }
            self.steps.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
    fn name(&self) -> &str {
        "slow"
    }
}

#[test]
fn borrowed_call_discards_a_late_result_and_bodies_can_cooperate() {
    let slow = Slow {
        sleep: Duration::from_millis(300),
        cooperate: false,
        steps: AtomicUsize::new(0),
    };
    let err = with_options(&timeout(0.05), || slow.call(())).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let cooperative = Slow {
        sleep: Duration::from_secs(10),
        cooperate: true,
        steps: AtomicUsize::new(0),
    };
    let started = Instant::now();
    let err = with_options(&timeout(0.05), || cooperative.call(())).unwrap_err();
    assert!(err.is_timeout());
    // It stopped when told to, long before its 10 s.
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Reports the deadline it sees and calls itself again under a longer timeout.
struct Deadlines;

impl Operator for Deadlines {
    type Input = bool;
    type Output = (Option<Instant>, Option<Instant>);
    fn forward(&self, nest: bool) -> Result<Self::Output, XcsError> {
        let outer = xcs::deadline();
        let inner = if nest {
            with_options(&timeout(60.0), || Deadlines.call(false))?.0
        } else {
            None
        };
        Ok((outer, inner))
    }
    fn name(&self) -> &str {
        "deadlines"
    }
}

#[test]
fn nested_calls_share_the_outer_deadline() {
    let before = Instant::now();
    let seen = with_options(&timeout(2.0), || vmap(Deadlines).call(vec![true, true])).unwrap();
    for (outer, inner) in seen {
        let outer = outer.expect("items see the batch deadline");
        assert!(outer <= before + Duration::from_secs(3));
        // An inner scope with a longer timeout cannot extend the outer deadline.
        assert_eq!(inner, Some(outer));
    }
    assert_eq!(xcs::deadline(), None);
}

#[test]
fn a_deadline_already_passed_starts_nothing() {
    let op = Hang::new(0);
    let started = Arc::clone(&op.started);
    let err = with_options(&timeout(0.05), || {
        std::thread::sleep(Duration::from_millis(80));
        // Inside an item context whose deadline passed: simulate by nesting in a call.
        vmap(op).call(vec![1, 2, 3])
    });
    // The scope's timeout starts when the call starts, so this one runs normally…
    assert_eq!(err.unwrap(), vec![1, 2, 3]);
    // …but inside a call whose deadline has passed, nothing starts.
    let op = Arc::new(Hang::new(0));
    let inner = Arc::clone(&op);
    struct Late(Arc<Hang>);
    impl Operator for Late {
        type Input = ();
        type Output = Result<Vec<u64>, String>;
        fn forward(&self, (): ()) -> Result<Self::Output, XcsError> {
            std::thread::sleep(Duration::from_millis(80));
            Ok(vmap(Arc::clone(&self.0))
                .call(vec![1, 2])
                .map_err(|e| e.to_string()))
        }
        fn name(&self) -> &str {
            "late"
        }
    }
    let outer = with_options(&timeout(0.05), || Arc::new(Late(inner)).call(()));
    assert!(outer.unwrap_err().is_timeout());
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(started.load(Ordering::SeqCst), 3);
    assert_eq!(op.started.load(Ordering::SeqCst), 0);
}

/// A pmap item that runs an inner vmap whose items hang.
struct Outer(Arc<Hang>);

impl Operator for Outer {
    type Input = u64;
    type Output = Vec<u64>;
    fn forward(&self, x: u64) -> Result<Vec<u64>, XcsError> {
        vmap(Arc::clone(&self.0)).call(vec![x, x + 100])
    }
    fn name(&self) -> &str {
        "outer"
    }
}

#[test]
fn items_abandoned_inside_nested_batches_do_not_starve_later_batches() {
    let hang = Arc::new(Hang::new(u64::MAX));
    let patch = timeout(0.05).max_workers(NonZeroUsize::new(2));
    let err = with_options(&patch, || {
        pmap(Outer(Arc::clone(&hang)), 2).call(vec![1, 2])
    });
    assert!(err.unwrap_err().is_timeout());
    // The inner items still hang; a later vmap with the same worker count gets two threads.
    let pair = vmap(Pair(Arc::new(Barrier::new(2))));
    let patch = OptionsPatch::new().max_workers(NonZeroUsize::new(2));
    assert_eq!(
        with_options(&patch, || pair.call(vec![5, 6])).unwrap(),
        vec![5, 6]
    );
    // …and did not wait for the hung items to come back.
    assert_eq!(hang.finished.load(Ordering::SeqCst), 0);
    hang.gate.open();
}

/// Returns its input at once.
struct Instant0;

impl Operator for Instant0 {
    type Input = u64;
    type Output = u64;

    fn forward(&self, input: u64) -> Result<u64, XcsError> {
        Ok(input)
    }

    fn name(&self) -> &str {
        "instant0"
    }
}

/// A batch whose deadline passes before its items start is a timeout, whichever comes first of
/// the deadline check at the call's start and the start of an item: never `Cancelled`.
#[test]
fn a_batch_cut_by_its_deadline_is_always_a_timeout() {
    let patch = timeout(1e-9);
    let serial = timeout(1e-9).use_parallel(false);
    for round in 0..5_000 {
        let errors = [
            with_options(&patch, || vmap(Instant0).call(vec![1, 2, 3, 4])).unwrap_err(),
            with_options(&patch, || pmap(Instant0, 2).call(vec![1, 2, 3, 4])).unwrap_err(),
            with_options(&serial, || vmap(Instant0).call(vec![1, 2, 3, 4])).unwrap_err(),
        ];
        for error in errors {
            assert!(
                matches!(error, XcsError::Timeout { .. }),
                "round {round}: {error:?}"
            );
        }
    }
}
