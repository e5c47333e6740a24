//! `timeout_seconds`: one deadline for the whole call, returned at even while an item hangs.
//! Observed through gates the test holds closed: the call comes back while an item is still
//! inside its body, unstarted items never start, and later calls still get all their workers.

use crate::common;

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    Double, Generate, GenerateInputs, Hang, HangOp, Latch, Rendezvous, assert_lowercase_led,
    hang_op, lock, op, serial, wait_for, wait_until,
};
use xcs::prelude::*;

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

static GEN_GATE: Latch = Latch::new();

static GEN_HANG_DONE: AtomicBool = AtomicBool::new(false);

#[xcs::operator]
fn hang_gen(x: u64) -> u64 {
    GEN_GATE.wait();
    GEN_HANG_DONE.store(true, Ordering::SeqCst);
    x
}

static INNER_RAN: AtomicBool = AtomicBool::new(false);

static OUTER_DONE: AtomicBool = AtomicBool::new(false);

static OUTER_INNER_RESULT: Mutex<Option<String>> = Mutex::new(None);

struct HandInner;

impl Operator for HandInner {
    type Input = u64;
    type Output = u64;
    fn forward(&self, input: u64) -> Result<u64, XcsError> {
        INNER_RAN.store(true, Ordering::SeqCst);
        Ok(input)
    }
    fn name(&self) -> &str {
        "hand_inner"
    }
}

/// Sleeps past the deadline (without cooperating), then calls a hand-written operator by plain borrow.
#[xcs::operator]
fn sleepy_outer(x: u64) -> u64 {
    thread::sleep(Duration::from_millis(400));
    let inner = HandInner;
    let res = inner.call(x);
    *lock(&OUTER_INNER_RESULT) = Some(match &res {
        Ok(v) => format!("ok {v}"),
        Err(XcsError::Timeout { .. }) => "timeout".to_string(),
        Err(e) => format!("other error: {e}"),
    });
    OUTER_DONE.store(true, Ordering::SeqCst);
    x
}

#[test]
fn vmap_timeout_returns_promptly_while_an_item_hangs() {
    let _s = serial();
    let (hop, gate, _started, finished) = hang_op(Some(3));
    let start = Instant::now();
    let res = execution_options!(timeout_seconds = 0.3 => vmap(hop).call(vec![1, 2, 3, 4]));
    let hung = finished.load(Ordering::SeqCst) < 4;
    let elapsed = start.elapsed();
    gate.release();
    let err = res.unwrap_err();
    assert!(matches!(err, XcsError::Timeout { .. }), "{err:?}");
    assert!(hung, "the call returned while the item was still blocked");
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    assert_lowercase_led(&err);
}

#[test]
fn pmap_timeout_and_later_call_gets_full_worker_count() {
    let _s = serial();
    let (hop, gate, started, finished) = hang_op(None);
    let res = execution_options!(timeout_seconds = 0.3 => pmap(hop, 2).call(vec![1, 2]));
    assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    assert_eq!(finished.load(Ordering::SeqCst), 0, "both items still hang");

    // Both workers of the 2-pool are blocked, yet a later 2-worker call gets two workers.
    let rv = Arc::new(Rendezvous::new(2, Duration::from_secs(5)));
    let rv2 = rv.clone();
    let meet = op("meet_after_timeout", move |_: u64| rv2.meet());
    let out = pmap(meet, 2).call(vec![0, 1]).unwrap();
    let still_hung = finished.load(Ordering::SeqCst) == 0;
    gate.release();
    assert!(still_hung);
    assert_eq!(
        out,
        vec![true, true],
        "the later call had its full worker count"
    );
    assert!(wait_until(
        || finished.load(Ordering::SeqCst) == started.load(Ordering::SeqCst)
    ));
}

#[test]
fn timeout_items_not_started_are_never_started() {
    let _s = serial();
    let (hop, gate, started, finished) = hang_op(Some(1));
    let res = execution_options!(use_parallel = false, timeout_seconds = 0.3 => {
        vmap(hop).call(vec![1, 2, 3])
    });
    let hung = finished.load(Ordering::SeqCst) == 0;
    gate.release();
    assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    assert!(hung, "returned while item 0 hung");
    assert!(wait_until(|| finished.load(Ordering::SeqCst) >= 1));
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "items after the deadline never start"
    );
}

#[test]
fn operator_call_timeout_generated_arc_and_static_ref() {
    let _s = serial();
    // A generated operator.
    GEN_GATE.reset();
    GEN_HANG_DONE.store(false, Ordering::SeqCst);
    let res = execution_options!(timeout_seconds = 0.2 => HangGen.call(HangGenInputs { x: 1 }));
    let hung = !GEN_HANG_DONE.load(Ordering::SeqCst);
    GEN_GATE.release();
    assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    assert!(
        hung,
        "generated operator: returned at the deadline while forward hung"
    );
    assert!(wait_until(|| GEN_HANG_DONE.load(Ordering::SeqCst)));

    // An `Arc<O>` of a hand-written operator (called through the `Arc<HangOp>` impl).
    let (hop, gate, _, finished2) = hang_op(None);
    let arc = Arc::new(hop);
    let res = execution_options!(timeout_seconds = 0.2 => <Arc<HangOp> as Operator>::call(&arc, 1));
    let hung = finished2.load(Ordering::SeqCst) == 0;
    gate.release();
    assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    assert!(hung, "Arc<O>: returned at the deadline while forward hung");
    assert!(wait_until(|| finished2.load(Ordering::SeqCst) == 1));

    // A `&'static O`.
    let (hop, gate, _, finished) = hang_op(None);
    let leaked: &'static HangOp = Box::leak(Box::new(hop));
    let res = execution_options!(timeout_seconds = 0.2 => <&'static HangOp as Operator>::call(&leaked, 1));
    let hung = finished.load(Ordering::SeqCst) == 0;
    gate.release();
    assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    assert!(
        hung,
        "&'static O: returned at the deadline while forward hung"
    );
    assert!(wait_until(|| finished.load(Ordering::SeqCst) == 1));
}

#[test]
fn borrowed_hand_written_operator_returns_timeout_when_forward_finishes_late() {
    let _s = serial();
    let (hop, gate, _, finished) = hang_op(None);
    let releaser = {
        let gate = gate.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(500));
            gate.release();
        })
    };
    let res = execution_options!(timeout_seconds = 0.1 => hop.call(1));
    releaser.join().unwrap();
    assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    assert_eq!(finished.load(Ordering::SeqCst), 1);
}

#[test]
fn borrowed_hand_written_operator_cooperates_through_cancelled() {
    let _s = serial();
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let saw = saw_cancel.clone();
    let coop = op("cooperative", move |_: u64| {
        let start = Instant::now();
        while !xcs::cancelled() && start.elapsed() < Duration::from_secs(10) {
            thread::sleep(Duration::from_millis(5));
        }
        saw.store(xcs::cancelled(), Ordering::SeqCst);
        1u64
    });
    assert!(!xcs::cancelled());
    let res = execution_options!(timeout_seconds = 0.2 => coop.call(0));
    assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    assert!(
        saw_cancel.load(Ordering::SeqCst),
        "the body saw cancelled() become true"
    );
}

#[test]
fn borrowed_hand_written_operator_refuses_to_start_after_the_shared_deadline() {
    let _s = serial();
    INNER_RAN.store(false, Ordering::SeqCst);
    OUTER_DONE.store(false, Ordering::SeqCst);
    *lock(&OUTER_INNER_RESULT) = None;
    let res =
        execution_options!(timeout_seconds = 0.1 => SleepyOuter.call(SleepyOuterInputs { x: 1 }));
    let returned_early = !OUTER_DONE.load(Ordering::SeqCst);
    assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    assert!(
        returned_early,
        "the generated operator's call returned at the deadline"
    );
    assert!(wait_until(|| OUTER_DONE.load(Ordering::SeqCst)));
    assert!(
        !INNER_RAN.load(Ordering::SeqCst),
        "the nested borrowed call refused to start after the deadline"
    );
    assert_eq!(lock(&OUTER_INNER_RESULT).as_deref(), Some("timeout"));
}

#[test]
fn deadline_and_cancelled_and_nested_calls_share_the_outer_deadline() {
    let _s = serial();
    let no_deadline = op("no_deadline", |_: u64| (xcs::deadline(), xcs::cancelled()));
    assert_eq!(no_deadline.call(0).unwrap(), (None, false));

    let inner = Arc::new(op("inner_deadline", |_: u64| xcs::deadline()));
    let outer = op("outer_deadline", move |_: u64| {
        let mine = xcs::deadline();
        thread::sleep(Duration::from_millis(20));
        let nested = inner.call(0).unwrap();
        (mine, nested, xcs::cancelled())
    });
    let outer = Arc::new(outer);
    let before = Instant::now();
    let out =
        execution_options!(timeout_seconds = 5 => vmap(outer.clone()).call(vec![0, 1, 2]).unwrap());
    let first = out[0].0.expect("a deadline is in force inside the call");
    assert!(first > before && first <= before + Duration::from_secs(6));
    for (mine, nested, cancelled) in &out {
        assert_eq!(*mine, Some(first), "all items share the call's deadline");
        assert_eq!(
            *nested,
            Some(first),
            "a nested call shares the outer deadline"
        );
        assert!(!cancelled);
    }
    // Same through `Operator::call` directly.
    let (mine, nested, _) = execution_options!(timeout_seconds = 5 => outer.call(0).unwrap());
    assert!(mine.is_some());
    assert_eq!(mine, nested);
}

#[test]
fn abandoned_vmap_items_see_cancelled() {
    let _s = serial();
    let saw = Arc::new(AtomicUsize::new(0));
    let saw2 = saw.clone();
    let coop = op("coop_items", move |_: u64| {
        let start = Instant::now();
        while !xcs::cancelled() && start.elapsed() < Duration::from_secs(10) {
            thread::sleep(Duration::from_millis(5));
        }
        if xcs::cancelled() {
            saw2.fetch_add(1, Ordering::SeqCst);
        }
    });
    let res =
        execution_options!(max_workers = 2, timeout_seconds = 0.2 => vmap(coop).call(vec![0, 1]));
    assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    assert!(
        wait_until(|| saw.load(Ordering::SeqCst) == 2),
        "both running items saw cancelled()"
    );
}

#[test]
fn pmap_timeout_with_one_worker_never_starts_the_rest() {
    let _s = serial();
    let (hop, gate, started, finished) = hang_op(Some(1));
    let res = execution_options!(timeout_seconds = 0.3 => pmap(hop, 1).call(vec![1, 2, 3]));
    let hung = finished.load(Ordering::SeqCst) == 0;
    gate.release();
    assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    assert!(hung);
    assert!(wait_until(|| finished.load(Ordering::SeqCst) >= 1));
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "items not started before the deadline never start"
    );
}

#[test]
fn vmap_timeout_then_full_worker_count_for_the_same_max_workers() {
    let _s = serial();
    let (hop, gate, _, finished) = hang_op(None);
    let res =
        execution_options!(max_workers = 2, timeout_seconds = 0.3 => vmap(hop).call(vec![1, 2]));
    assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    let rv = Arc::new(Rendezvous::new(2, Duration::from_secs(5)));
    let rv2 = rv.clone();
    let meet = op("meet_vmap_after_timeout", move |_: u64| rv2.meet());
    let out = execution_options!(max_workers = 2 => vmap(meet).call(vec![0, 1]));
    let still_hung = finished.load(Ordering::SeqCst) == 0;
    gate.release();
    assert!(still_hung);
    assert_eq!(out.unwrap(), vec![true, true]);
    assert!(wait_until(|| finished.load(Ordering::SeqCst) == 2));
}

#[test]
fn single_item_vmap_and_repeated_call_timeouts_return_promptly() {
    let _s = serial();
    let (hop, gate, _, finished) = hang_op(None);
    let hop = Arc::new(hop);
    let res = execution_options!(timeout_seconds = 0.2 => vmap(hop.clone()).call(vec![1]));
    assert!(
        matches!(res, Err(XcsError::Timeout { .. })),
        "single item: {res:?}"
    );
    // Several abandoned `call`s in a row, then a call that fits in its deadline still succeeds.
    for _ in 0..3 {
        let res = execution_options!(timeout_seconds = 0.1 => hop.call(1));
        assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    }
    let quick = execution_options!(timeout_seconds = 5 => Arc::new(Double).call(21));
    let hung = finished.load(Ordering::SeqCst) == 0;
    gate.release();
    assert!(hung);
    assert_eq!(quick.unwrap(), 42);
    assert_eq!(
        execution_options!(timeout_seconds = 5 => Double.call(4)).unwrap(),
        8
    );
    assert_eq!(
        execution_options!(timeout_seconds = 5 => Generate.call(GenerateInputs {
            prompt: "t".to_string(),
            seed: 0,
        }))
        .unwrap(),
        "t-0"
    );
    assert!(wait_until(|| finished.load(Ordering::SeqCst) == 4));
}

#[test]
fn nested_vmap_inside_an_item_shares_the_deadline() {
    let _s = serial();
    let (hop, gate, started, finished) = hang_op(Some(7));
    let hop = Arc::new(hop);
    let inner = vmap(hop.clone());
    let outer = op("outer_nesting", move |xs: Vec<u64>| inner.call(xs));
    let res = execution_options!(use_parallel = false, timeout_seconds = 0.3 => {
        vmap(outer).call(vec![vec![1, 7, 3], vec![4, 5]])
    });
    let hung = finished.load(Ordering::SeqCst) == 1;
    gate.release();
    assert!(hung, "returned while the inner item hung");
    // The outer call reports a timeout (possibly wrapped by the inner one: both are timeouts).
    assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    assert!(wait_until(
        || finished.load(Ordering::SeqCst) == started.load(Ordering::SeqCst)
    ));
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        started.load(Ordering::SeqCst),
        2,
        "inner item 3 and the second outer item never start"
    );
}
