//! The sync driver (threads) and the async driver (futures) run one call plan: the same
//! scenario through both gives the same result and the same trace events, field by field
//! (everything but ids, threads and times).
//!
//! The in-memory trace is process-wide and `take_trace` drains it, so each test holds the
//! binary's lock.
#![cfg(feature = "tokio")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use xcs::{
    AsyncOperator, HedgeMark, Operator, OptionsPatch, Outcome, TraceEvent, Usage, XcsError,
    with_options,
};

/// What the body does.
#[derive(Clone, Copy, Debug)]
enum Act {
    /// Doubles its input.
    Double,
    /// Fails (retryably) on its first `n` attempts, then doubles.
    FailFirst(u32),
    /// Fails for good.
    Permanent,
    /// Panics.
    Panic,
    /// Hangs on its first start (until cancelled: the sync body polls `cancelled()`, the async
    /// one sleeps until dropped; at most 10 s), then doubles.
    FirstHangs,
}

/// One operator, written once for each driver: `attempts` counts the bodies that ran.
struct Body {
    name: &'static str,
    act: Act,
    /// The resource its calls use, if any.
    resource: Option<&'static str>,
    attempts: AtomicU32,
}

impl Body {
    fn new(name: &'static str, act: Act) -> Self {
        Body {
            name,
            act,
            resource: None,
            attempts: AtomicU32::new(0),
        }
    }

    /// A body starts: its attempt number (counted over the operator's life).
    fn begin(&self) -> u32 {
        self.attempts.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Whether the body of `attempt` hangs.
    fn hangs(&self, attempt: u32) -> bool {
        matches!(self.act, Act::FirstHangs) && attempt == 1
    }

    fn answer(&self, attempt: u32, input: u64) -> Result<u64, XcsError> {
        // Each attempt records what it used: the input, in tokens.
        xcs::record_usage(Usage {
            input_tokens: input,
            output_tokens: 1,
            cost: 0.0,
        });
        match self.act {
            Act::Double | Act::FirstHangs => Ok(input * 2),
            Act::FailFirst(n) if attempt <= n => Err(XcsError::operator(self.name, "flaky")),
            Act::FailFirst(_) => Ok(input * 2),
            Act::Permanent => Err(XcsError::permanent(self.name, "bad request")),
            Act::Panic => panic!("body of {} panicked", self.name),
        }
    }
}

struct SyncOp(Body);
impl Operator for SyncOp {
    type Input = u64;
    type Output = u64;
    fn forward(&self, input: u64) -> Result<u64, XcsError> {
        let attempt = self.0.begin();
        if self.0.hangs(attempt) {
            let start = std::time::Instant::now();
            while !xcs::cancelled() && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(1));
            }
            return Err(XcsError::operator(self.0.name, "hung"));
        }
        self.0.answer(attempt, input)
    }
    fn name(&self) -> &str {
        self.0.name
    }
    fn estimate(&self, input: &u64) -> Usage {
        estimate(*input)
    }
    fn resource(&self) -> Option<&str> {
        self.0.resource
    }
}

struct AsyncOp(Body);
impl AsyncOperator for AsyncOp {
    type Input = u64;
    type Output = u64;
    async fn forward(&self, input: u64) -> Result<u64, XcsError> {
        tokio::task::yield_now().await;
        let attempt = self.0.begin();
        if self.0.hangs(attempt) {
            tokio::time::sleep(Duration::from_secs(10)).await;
            return Err(XcsError::operator(self.0.name, "hung"));
        }
        self.0.answer(attempt, input)
    }
    fn name(&self) -> &str {
        self.0.name
    }
    fn estimate(&self, input: &u64) -> Usage {
        estimate(*input)
    }
    fn resource(&self) -> Option<&str> {
        self.0.resource
    }
}

/// What a call with `input` is expected to use: what it records.
fn estimate(input: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: 1,
        cost: 0.0,
    }
}

/// An event with what differs by nature (ids, threads, times) left out.
type Shape = (
    String,
    Option<usize>,
    usize,
    Outcome,
    u32,
    bool,
    Option<Usage>,
    Option<HedgeMark>,
);

fn shape(events: &[TraceEvent], name: &str) -> Vec<Shape> {
    events
        .iter()
        .filter(|e| e.operator == name)
        .map(|e| {
            (
                e.operator.clone(),
                e.index,
                e.depth,
                e.outcome,
                e.attempt,
                e.parent.is_some(),
                e.usage,
                e.hedge,
            )
        })
        .collect()
}

/// A result with what differs by nature (a measured time) left out.
fn result_shape(result: &Result<u64, XcsError>) -> String {
    match result {
        Ok(value) => format!("ok {value}"),
        Err(XcsError::Timeout {
            operator, index, ..
        }) => format!("timeout {operator} {index:?}"),
        Err(XcsError::Panicked {
            operator, index, ..
        }) => format!("panicked {operator} {index:?}"),
        // The resource differs by design (see `agree_on`), and the time left is measured.
        Err(XcsError::CircuitOpen {
            operator, index, ..
        }) => format!("circuit open {operator} {index:?}"),
        Err(other) => format!("{other}"),
    }
}

/// Runs `calls` calls of a fresh operator `name` doing `act` under `patch` (tracing on), first
/// through the sync driver, then through the async one, and checks that both return the same
/// results, run the same number of bodies and record the same events.
fn agree(name: &'static str, act: Act, patch: &OptionsPatch, calls: &[u64]) -> Vec<Shape> {
    agree_on(name, act, None, patch, calls)
}

/// [`agree`] with the sync operator's calls using resource `resources.0`, the async one's
/// `resources.1` (two resources, so that what the first run leaves in one does not reach the
/// second).
fn agree_on(
    name: &'static str,
    act: Act,
    resources: Option<(&'static str, &'static str)>,
    patch: &OptionsPatch,
    calls: &[u64],
) -> Vec<Shape> {
    let _guard = crate::common::global_lock();
    let patch = patch.trace_execution(true);
    let _ = xcs::take_trace();

    let sync = std::sync::Arc::new(SyncOp(Body {
        resource: resources.map(|(sync, _)| sync),
        ..Body::new(name, act)
    }));
    let sync_results: Vec<String> = calls
        .iter()
        .map(|&input| {
            result_shape(&with_options(&patch, || {
                if matches!(act, Act::FirstHangs) {
                    // Through an `Arc`: a sync call that can be abandoned (by a hedge that
                    // answered first), as an async one can be dropped.
                    std::sync::Arc::clone(&sync).call(input)
                } else {
                    Operator::call(&*sync, input)
                }
            }))
        })
        .collect();
    let sync_events = shape(&xcs::take_trace().into_events(), name);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let op = AsyncOp(Body {
        resource: resources.map(|(_, async_resource)| async_resource),
        ..Body::new(name, act)
    });
    let async_results: Vec<String> = runtime.block_on(async {
        let mut results = Vec::new();
        for &input in calls {
            // The options of the call are those in force where it is made: inside the scope.
            let result = xcs::with_options_async(&patch, async { op.call(input).await }).await;
            results.push(result_shape(&result));
        }
        results
    });
    let async_events = shape(&xcs::take_trace().into_events(), name);

    assert_eq!(sync_results, async_results, "{name}: results");
    assert_eq!(
        sync.0.attempts.load(Ordering::SeqCst),
        op.0.attempts.load(Ordering::SeqCst),
        "{name}: bodies run"
    );
    assert_eq!(sync_events, async_events, "{name}: trace events");
    sync_events
}

fn outcomes(events: &[Shape]) -> Vec<(Outcome, u32)> {
    events.iter().map(|e| (e.3, e.4)).collect()
}

#[test]
fn a_plain_call() {
    let events = agree("agree_plain", Act::Double, &OptionsPatch::new(), &[21]);
    assert_eq!(outcomes(&events), [(Outcome::Ok, 1)]);
}

#[test]
fn retries_then_success() {
    let patch = OptionsPatch::new().max_retries(3);
    let events = agree("agree_retries", Act::FailFirst(2), &patch, &[5]);
    assert_eq!(
        outcomes(&events),
        [(Outcome::Error, 1), (Outcome::Error, 2), (Outcome::Ok, 3)]
    );
}

#[test]
fn a_permanent_error_is_not_retried() {
    let patch = OptionsPatch::new().max_retries(3);
    let events = agree("agree_permanent", Act::Permanent, &patch, &[5]);
    assert_eq!(outcomes(&events), [(Outcome::Error, 1)]);
}

#[test]
fn a_panic_is_the_calls_error() {
    let events = agree("agree_panic", Act::Panic, &OptionsPatch::new(), &[5]);
    assert_eq!(outcomes(&events), [(Outcome::Panicked, 1)]);
}

#[test]
fn a_second_call_with_one_input_is_a_cache_hit() {
    let patch = OptionsPatch::new().enable_caching(true);
    let events = agree("agree_cache", Act::Double, &patch, &[7, 7, 8]);
    assert_eq!(
        outcomes(&events),
        [(Outcome::Ok, 1), (Outcome::CacheHit, 1), (Outcome::Ok, 1)]
    );
}

#[test]
fn rate_limited_calls() {
    let patch = OptionsPatch::new().rate_limit(Some(50.0)).unwrap();
    let events = agree("agree_rate", Act::Double, &patch, &[1, 2, 3]);
    assert_eq!(outcomes(&events), [(Outcome::Ok, 1); 3]);
}

#[test]
fn a_deadline_too_short_for_any_body_is_a_timeout() {
    let patch = OptionsPatch::new()
        .timeout(Some(Duration::from_nanos(1)))
        .unwrap();
    let events = agree("agree_deadline", Act::Double, &patch, &[1]);
    assert_eq!(outcomes(&events).len(), 1);
    assert_eq!(outcomes(&events)[0].0, Outcome::Timeout);
}

#[test]
fn a_budget_refuses_a_call_whose_estimate_does_not_fit() {
    let patch = OptionsPatch::new().token_budget(Some(15)).unwrap();
    // Each call runs in a scope of its own: 10 (+1) fits, 20 (+1) does not.
    let events = agree("agree_budget", Act::Double, &patch, &[10, 20]);
    assert_eq!(outcomes(&events), [(Outcome::Ok, 1), (Outcome::Error, 1)]);
    assert_eq!(events[0].6.map(|u| u.input_tokens), Some(10));
    assert_eq!(events[1].6, None);
}

#[test]
fn an_open_circuit_refuses_calls_without_running_them() {
    let breaker = xcs::ResourceLimits::new()
        .open_after_failures(2)
        .cooldown_seconds(600.0);
    let resources = ("agree_breaker_sync", "agree_breaker_async");
    for resource in [resources.0, resources.1] {
        xcs::set_resource_limits(resource, &breaker).unwrap();
    }
    // Every body fails retryably: two failures open the circuit, the next calls are refused.
    let events = agree_on(
        "agree_breaker",
        Act::FailFirst(u32::MAX),
        Some(resources),
        &OptionsPatch::new(),
        &[1, 2, 3, 4],
    );
    assert_eq!(
        outcomes(&events),
        [
            (Outcome::Error, 1),
            (Outcome::Error, 1),
            (Outcome::Error, 1),
            (Outcome::Error, 1)
        ]
    );
    // The refused calls ran no body and used nothing.
    assert!(events[2].6.is_none() && events[3].6.is_none(), "{events:?}");
    for resource in [resources.0, resources.1] {
        let stats = xcs::resource_stats(resource).unwrap();
        assert_eq!(stats.requests, 2, "{resource}: {stats:?}");
        assert!(matches!(stats.circuit, xcs::CircuitState::Open { .. }));
    }
}

#[test]
fn a_hung_call_is_answered_by_its_hedge() {
    // The body that starts first hangs: the hedge's delay is long enough for the first
    // attempt's thread to have started by then, even on a loaded machine.
    let patch = OptionsPatch::from_pairs([("hedge_after", "0.25")]).unwrap();
    let events = agree("agree_hedge", Act::FirstHangs, &patch, &[3, 4]);
    let marks: Vec<_> = events
        .iter()
        .map(|e| (e.3, e.4, e.7.map(|m| (m.is_hedge, m.won))))
        .collect();
    let (first, hedge) = (Some((false, false)), Some((true, true)));
    // The first call's first attempt hangs: the hedge answers and the first is cancelled. The
    // second call answers before the delay: not hedged.
    assert_eq!(
        marks,
        [
            (Outcome::Cancelled, 1, first),
            (Outcome::Ok, 1, hedge),
            (Outcome::Ok, 1, None)
        ],
        "{events:?}"
    );
}
