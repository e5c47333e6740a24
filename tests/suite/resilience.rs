//! Circuit breakers (`open_after_failures`, `cooldown_seconds`) and `fallback`: a breaker opens
//! after consecutive retryable failures and refuses at once without running the body, admits
//! exactly one trial after its cooldown, closes on its success and opens again on its failure;
//! a fallback runs its secondary on retryable errors and open circuits only, sync and async,
//! nested, and its trace event names the operator that answered.
//!
//! Each test uses resources and operator names of its own (the registry and the trace are
//! process-wide). No timing is asserted except lower bounds.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

#[cfg(feature = "tokio")]
use xcs::AsyncOperator;
use xcs::{
    CircuitState, Operator, ResourceLimits, XcsError, execution_options, fallback, resource_stats,
    set_resource_limits, vmap,
};

use crate::common::{self, Gate, Gauge};

const OK: u8 = 0;
const FAIL: u8 = 1;
const PERMANENT: u8 = 2;
const PANIC: u8 = 3;
const RATE_LIMITED: u8 = 4;
const SLOW: u8 = 5;
const HOLD: u8 = 6;

/// What a [`Service`] does, shared with the test that steers it.
#[derive(Default)]
struct Behaviour {
    mode: AtomicU8,
    runs: AtomicUsize,
    gauge: Gauge,
    gate: Gate,
}

impl Behaviour {
    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    /// One body: answers `input` (plus the service's `add`) as the mode says.
    fn answer(&self, name: &str, input: u64, add: u64) -> Result<u64, XcsError> {
        let _in = self.gauge.enter();
        self.runs.fetch_add(1, Ordering::SeqCst);
        match self.mode.load(Ordering::SeqCst) {
            FAIL => Err(XcsError::operator(name, "503 Service Unavailable")),
            PERMANENT => Err(XcsError::permanent(name, "400 Bad Request")),
            PANIC => panic!("{name} broke"),
            RATE_LIMITED => Err(XcsError::rate_limited(name, Some(Duration::from_millis(1)))),
            SLOW => {
                std::thread::sleep(Duration::from_millis(400));
                Ok(input + add)
            }
            HOLD => {
                self.gate.wait(Duration::from_secs(20));
                Ok(input + add)
            }
            _ => Ok(input + add),
        }
    }
}

/// A sync operator on a resource, steered by its [`Behaviour`]; answers `input + add`.
struct Service {
    name: &'static str,
    resource: Option<&'static str>,
    add: u64,
    behaviour: Arc<Behaviour>,
}

fn service(
    name: &'static str,
    resource: Option<&'static str>,
    add: u64,
) -> (Service, Arc<Behaviour>) {
    let behaviour = Arc::new(Behaviour::default());
    let op = Service {
        name,
        resource,
        add,
        behaviour: Arc::clone(&behaviour),
    };
    (op, behaviour)
}

impl Operator for Service {
    type Input = u64;
    type Output = u64;

    fn forward(&self, input: u64) -> Result<u64, XcsError> {
        self.behaviour.answer(self.name, input, self.add)
    }

    fn name(&self) -> &str {
        self.name
    }

    fn resource(&self) -> Option<&str> {
        self.resource
    }
}

/// The async twin of [`Service`].
#[cfg(feature = "tokio")]
struct AsyncService(Service);

#[cfg(feature = "tokio")]
impl AsyncOperator for AsyncService {
    type Input = u64;
    type Output = u64;

    async fn forward(&self, input: u64) -> Result<u64, XcsError> {
        tokio::task::yield_now().await;
        let Service {
            name,
            add,
            behaviour,
            ..
        } = &self.0;
        // Slow and held answers wait off the runtime's threads.
        let behaviour = Arc::clone(behaviour);
        let (name, add) = (*name, *add);
        match tokio::task::spawn_blocking(move || behaviour.answer(name, input, add)).await {
            Ok(result) => result,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }

    fn name(&self) -> &str {
        self.0.name
    }

    fn resource(&self) -> Option<&str> {
        self.0.resource
    }
}

fn breaker(resource: &str, open_after: usize, cooldown: Duration) {
    set_resource_limits(
        resource,
        &ResourceLimits::new()
            .open_after_failures(open_after)
            .cooldown_seconds(cooldown.as_secs_f64()),
    )
    .unwrap();
}

fn circuit(resource: &str) -> CircuitState {
    resource_stats(resource).unwrap().circuit
}

/// Waits until `resource`'s circuit is half-open (its cooldown has passed).
fn until_half_open(resource: &str) {
    let begun = Instant::now();
    while matches!(circuit(resource), CircuitState::Open { .. }) {
        assert!(begun.elapsed() < Duration::from_secs(30), "never half-open");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[track_caller]
fn refused(result: Result<u64, XcsError>, resource: &str) -> Option<Instant> {
    match result {
        Err(XcsError::CircuitOpen {
            resource: named,
            until,
            ..
        }) => {
            assert_eq!(&*named, resource);
            until
        }
        other => panic!("expected an open circuit, got {other:?}"),
    }
}

#[test]
fn a_breaker_opens_after_consecutive_retryable_failures_and_refuses_without_running() {
    const RESOURCE: &str = "resilience-opens";
    breaker(RESOURCE, 3, Duration::from_secs(60));
    let (op, behaviour) = service("resilience_opens", Some(RESOURCE), 0);
    behaviour.set(FAIL);
    for n in 1..=3 {
        assert!(matches!(op.call(1), Err(XcsError::Operator { .. })));
        assert_eq!(resource_stats(RESOURCE).unwrap().consecutive_failures, n);
    }
    let opened = Instant::now();
    let stats = resource_stats(RESOURCE).unwrap();
    let CircuitState::Open { until } = stats.circuit else {
        panic!("expected open, got {:?}", stats.circuit);
    };
    assert!(until > opened + Duration::from_secs(50));
    // Refused at once: the body does not run, even when it would succeed now.
    behaviour.set(OK);
    let error = op.call(2).unwrap_err();
    assert!(!error.is_retryable());
    assert!(
        error
            .to_string()
            .contains("the circuit of resource `resilience-opens` is open"),
        "{error}"
    );
    assert_eq!(refused(Err(error), RESOURCE), Some(until));
    assert_eq!(behaviour.runs(), 3);
    let stats = resource_stats(RESOURCE).unwrap();
    assert_eq!((stats.refused_open, stats.requests), (1, 3));
}

#[test]
fn an_open_circuit_is_not_retried_and_ends_the_retries() {
    const RESOURCE: &str = "resilience-retries";
    breaker(RESOURCE, 2, Duration::from_secs(60));
    let (op, behaviour) = service("resilience_retries", Some(RESOURCE), 0);
    behaviour.set(FAIL);
    // The second failure opens the circuit: the third attempt is refused, and no more follow.
    let result = execution_options!(max_retries = 5 => op.call(1));
    refused(result, RESOURCE);
    assert_eq!(behaviour.runs(), 2);
    let result = execution_options!(max_retries = 5 => op.call(1));
    refused(result, RESOURCE);
    assert_eq!(behaviour.runs(), 2);
}

#[test]
fn only_retryable_failures_count_and_a_success_resets_them() {
    const RESOURCE: &str = "resilience-counts";
    breaker(RESOURCE, 2, Duration::from_secs(60));
    let (op, behaviour) = service("resilience_counts", Some(RESOURCE), 0);
    let count = || resource_stats(RESOURCE).unwrap().consecutive_failures;
    behaviour.set(FAIL);
    let _ = op.call(1);
    assert_eq!(count(), 1);
    // A rate-limited answer, a permanent error and a panic leave the count as it is.
    for mode in [RATE_LIMITED, PERMANENT, PANIC] {
        behaviour.set(mode);
        assert!(op.call(1).is_err());
        assert_eq!(count(), 1, "mode {mode}");
        assert_eq!(circuit(RESOURCE), CircuitState::Closed);
    }
    // A success resets it.
    behaviour.set(OK);
    assert_eq!(op.call(1).unwrap(), 1);
    assert_eq!(count(), 0);
    behaviour.set(FAIL);
    let _ = op.call(1);
    assert_eq!(circuit(RESOURCE), CircuitState::Closed);
    let _ = op.call(1);
    assert!(matches!(circuit(RESOURCE), CircuitState::Open { .. }));
}

/// After the cooldown, eight threads call at once: exactly one body (the trial) runs, the
/// others are refused while it is in flight; its success closes the circuit.
#[test]
fn half_open_admits_exactly_one_trial_whose_success_closes() {
    const RESOURCE: &str = "resilience-trial";
    const THREADS: usize = 8;
    let cooldown = Duration::from_millis(150);
    breaker(RESOURCE, 1, cooldown);
    let (op, behaviour) = service("resilience_trial", Some(RESOURCE), 0);
    let op = Arc::new(op);
    behaviour.set(FAIL);
    let opened = Instant::now();
    let _ = op.call(1);
    until_half_open(RESOURCE);
    assert!(opened.elapsed() >= cooldown);
    assert_eq!(
        circuit(RESOURCE),
        CircuitState::HalfOpen {
            trial_in_flight: false
        }
    );
    behaviour.set(HOLD);
    let runs_before = behaviour.runs();
    let (sender, results) = mpsc::channel();
    let threads: Vec<_> = (0..THREADS)
        .map(|i| {
            let (op, sender) = (Arc::clone(&op), sender.clone());
            std::thread::spawn(move || {
                let _ = sender.send(op.call(i as u64));
            })
        })
        .collect();
    // Every call but the trial is refused while the trial is held.
    let mut answered = Vec::new();
    for _ in 0..THREADS - 1 {
        let result = results
            .recv_timeout(Duration::from_secs(30))
            .expect("a refused call returns at once");
        answered.push(result);
    }
    assert!(
        answered
            .iter()
            .all(|r| matches!(r, Err(XcsError::CircuitOpen { until: None, .. }))),
        "{answered:?}"
    );
    assert_eq!(behaviour.runs() - runs_before, 1);
    assert_eq!(behaviour.gauge.peak(), 1);
    assert_eq!(
        circuit(RESOURCE),
        CircuitState::HalfOpen {
            trial_in_flight: true
        }
    );
    behaviour.gate.open();
    let trial = results.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(trial.is_ok(), "{trial:?}");
    for thread in threads {
        thread.join().unwrap();
    }
    let stats = resource_stats(RESOURCE).unwrap();
    assert_eq!(
        (stats.circuit, stats.consecutive_failures),
        (CircuitState::Closed, 0)
    );
    behaviour.set(OK);
    assert_eq!(op.call(5).unwrap(), 5);
}

#[test]
fn a_trial_that_fails_opens_the_circuit_again() {
    const RESOURCE: &str = "resilience-reopen";
    let cooldown = Duration::from_millis(100);
    breaker(RESOURCE, 1, cooldown);
    let (op, behaviour) = service("resilience_reopen", Some(RESOURCE), 0);
    behaviour.set(FAIL);
    let _ = op.call(1);
    until_half_open(RESOURCE);
    let trial_began = Instant::now();
    assert!(matches!(op.call(1), Err(XcsError::Operator { .. })));
    let CircuitState::Open { until } = circuit(RESOURCE) else {
        panic!("expected open again");
    };
    assert!(until >= trial_began + cooldown);
    let runs = behaviour.runs();
    refused(op.call(1), RESOURCE);
    assert_eq!(behaviour.runs(), runs);
    // The next trial succeeds: closed.
    behaviour.set(OK);
    until_half_open(RESOURCE);
    assert_eq!(op.call(3).unwrap(), 3);
    assert_eq!(circuit(RESOURCE), CircuitState::Closed);
}

/// A trial admitted by the breaker that cannot start before its deadline (the request rate
/// gives it a start too late) gives its place back: the circuit stays half-open with no trial in
/// flight, and the next call is the trial.
#[test]
fn a_trial_that_never_runs_gives_its_place_back() {
    const RESOURCE: &str = "resilience-never-ran";
    set_resource_limits(
        RESOURCE,
        &ResourceLimits::new()
            .open_after_failures(1)
            .cooldown_seconds(0.05)
            .requests_per_minute(60.0),
    )
    .unwrap();
    let (op, behaviour) = service("resilience_never_ran", Some(RESOURCE), 0);
    behaviour.set(FAIL);
    // Takes the one request the bucket holds and opens the circuit.
    let _ = op.call(1);
    until_half_open(RESOURCE);
    behaviour.set(OK);
    // The next request start is most of a second away: past a 10 ms deadline.
    let result = execution_options!(timeout_seconds = 0.01 => op.call(1));
    assert!(
        matches!(result, Err(XcsError::Timeout { .. })),
        "{result:?}"
    );
    assert_eq!(
        circuit(RESOURCE),
        CircuitState::HalfOpen {
            trial_in_flight: false
        }
    );
    assert_eq!(behaviour.runs(), 1);
    // Without a deadline, the next call is the trial: it waits for its start and closes.
    assert_eq!(op.call(2).unwrap(), 2);
    assert_eq!(circuit(RESOURCE), CircuitState::Closed);
}

#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_trial_dropped_while_waiting_gives_its_place_back() {
    const RESOURCE: &str = "resilience-async-dropped";
    set_resource_limits(
        RESOURCE,
        &ResourceLimits::new()
            .open_after_failures(1)
            .cooldown_seconds(0.05)
            .requests_per_minute(60.0),
    )
    .unwrap();
    let (op, behaviour) = service("resilience_async_dropped", Some(RESOURCE), 0);
    let op = AsyncService(op);
    behaviour.set(FAIL);
    let _ = op.call(1).await;
    while matches!(circuit(RESOURCE), CircuitState::Open { .. }) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    behaviour.set(OK);
    // Admitted as the trial, waiting for its start: dropped.
    let dropped = tokio::time::timeout(Duration::from_millis(20), op.call(1)).await;
    assert!(dropped.is_err());
    assert_eq!(
        circuit(RESOURCE),
        CircuitState::HalfOpen {
            trial_in_flight: false
        }
    );
    assert_eq!(op.call(4).await.unwrap(), 4);
    assert_eq!(circuit(RESOURCE), CircuitState::Closed);
}

/// Batch items go through the same breaker: sequential items after the third failure are
/// refused without running.
#[test]
fn batch_items_open_and_meet_the_breaker() {
    const RESOURCE: &str = "resilience-batch";
    breaker(RESOURCE, 3, Duration::from_secs(60));
    let (op, behaviour) = service("resilience_batch", Some(RESOURCE), 0);
    behaviour.set(FAIL);
    let results =
        execution_options!(use_parallel = false => vmap(op).call_settled((0..10).collect()));
    assert_eq!(behaviour.runs(), 3);
    assert!(
        results[..3]
            .iter()
            .all(|r| matches!(r, Err(XcsError::Operator { .. })))
    );
    for (i, result) in results.iter().enumerate().skip(3) {
        match result {
            Err(XcsError::CircuitOpen { index, .. }) => assert_eq!(*index, Some(i)),
            other => panic!("item {i}: {other:?}"),
        }
    }
}

#[cfg(feature = "tokio")]
#[tokio::test(flavor = "current_thread")]
async fn async_batch_items_open_and_meet_the_breaker() {
    const RESOURCE: &str = "resilience-async-batch";
    breaker(RESOURCE, 2, Duration::from_secs(60));
    let (op, behaviour) = service("resilience_async_batch", Some(RESOURCE), 0);
    behaviour.set(FAIL);
    let results = execution_options!(max_workers = 1 => {
        xcs::vmap(AsyncService(op)).call_settled_async((0..6).collect())
    })
    .await;
    assert_eq!(behaviour.runs(), 2);
    assert!(
        results[2..]
            .iter()
            .all(|r| matches!(r, Err(XcsError::CircuitOpen { .. })))
    );
}

#[test]
fn limits_of_the_breaker_are_checked_and_parsed() {
    assert!(matches!(
        set_resource_limits("resilience-bad", &ResourceLimits::new().open_after_failures(0)),
        Err(XcsError::InvalidValue { option, .. }) if option == "open_after_failures"
    ));
    assert!(matches!(
        set_resource_limits("resilience-bad", &ResourceLimits::new().cooldown_seconds(-1.0)),
        Err(XcsError::InvalidValue { option, .. }) if option == "cooldown_seconds"
    ));
    let limits =
        ResourceLimits::from_pairs([("open_after_failures", "5"), ("cooldown_seconds", "2.5")])
            .unwrap();
    assert_eq!(
        limits,
        ResourceLimits::new()
            .open_after_failures(5)
            .cooldown_seconds(2.5)
    );
    assert!(ResourceLimits::from_pairs([("cooldown_seconds", "0")]).is_err());
    xcs::set_resource_limits!(
        "resilience-macro",
        open_after_failures = 5,
        cooldown_seconds = 30
    );
    let limits = resource_stats("resilience-macro").unwrap().limits;
    assert_eq!(
        (limits.open_after_failures, limits.cooldown_seconds),
        (Some(5), Some(30.0))
    );
    let pause = Duration::from_millis(1500);
    xcs::set_resource_limits!("resilience-macro", cooldown_seconds = pause);
    assert_eq!(
        resource_stats("resilience-macro")
            .unwrap()
            .limits
            .cooldown(),
        pause
    );
}

#[test]
fn a_fallback_answers_with_its_secondary_on_a_retryable_error() {
    let (primary, p) = service("fallback_sync_primary", None, 100);
    let (secondary, s) = service("fallback_sync_secondary", None, 200);
    let op = fallback(primary, secondary);
    assert_eq!(
        op.name(),
        "fallback(fallback_sync_primary, fallback_sync_secondary)"
    );
    assert_eq!(op.call(1).unwrap(), 101);
    assert_eq!((p.runs(), s.runs()), (1, 0));
    p.set(FAIL);
    assert_eq!(op.call(1).unwrap(), 201);
    assert_eq!((p.runs(), s.runs()), (2, 1));
    // The primary's retries run first; the fallback does not retry the whole.
    s.set(FAIL);
    let result = execution_options!(max_retries = 2 => op.call(1));
    match result {
        Err(XcsError::Operator { operator, .. }) => assert_eq!(operator, "fallback_sync_secondary"),
        other => panic!("{other:?}"),
    }
    assert_eq!((p.runs(), s.runs()), (5, 4));
}

#[test]
fn a_fallback_returns_permanent_errors_panics_and_timeouts_as_they_are() {
    let (primary, p) = service("fallback_as_is_primary", None, 0);
    let (secondary, s) = service("fallback_as_is_secondary", None, 0);
    let op = fallback(primary, secondary);
    p.set(PERMANENT);
    let error = op.call(1).unwrap_err();
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("400 Bad Request"), "{error}");
    p.set(PANIC);
    assert!(matches!(op.call(1), Err(XcsError::Panicked { .. })));
    p.set(SLOW);
    let begun = Instant::now();
    let result = execution_options!(timeout_seconds = 0.05 => op.call(1));
    assert!(
        matches!(result, Err(XcsError::Timeout { .. })),
        "{result:?}"
    );
    assert!(begun.elapsed() >= Duration::from_millis(50));
    assert_eq!(s.runs(), 0);
}

#[test]
fn a_fallback_runs_its_secondary_when_the_primary_circuit_is_open() {
    const RESOURCE: &str = "resilience-fallback-open";
    breaker(RESOURCE, 2, Duration::from_secs(60));
    let (primary, p) = service("fallback_open_primary", Some(RESOURCE), 0);
    let (secondary, s) = service("fallback_open_secondary", None, 1000);
    let op = fallback(primary, secondary);
    p.set(FAIL);
    let answers: Vec<u64> = (0..6).map(|i| op.call(i).unwrap()).collect();
    assert_eq!(answers, [1000, 1001, 1002, 1003, 1004, 1005]);
    // Two failures opened the circuit; the other four never reached the primary.
    assert_eq!((p.runs(), s.runs()), (2, 6));
    assert_eq!(resource_stats(RESOURCE).unwrap().refused_open, 4);
}

#[test]
fn fallbacks_nest() {
    let (a, a_b) = service("fallback_nest_a", None, 1);
    let (b, b_b) = service("fallback_nest_b", None, 2);
    let (c, c_b) = service("fallback_nest_c", None, 3);
    let op = fallback(a, fallback(b, c));
    assert_eq!(
        op.name(),
        "fallback(fallback_nest_a, fallback(fallback_nest_b, fallback_nest_c))"
    );
    a_b.set(FAIL);
    assert_eq!(op.call(10).unwrap(), 12);
    b_b.set(FAIL);
    assert_eq!(op.call(10).unwrap(), 13);
    c_b.set(FAIL);
    assert!(op.call(10).is_err());
    assert_eq!((a_b.runs(), b_b.runs(), c_b.runs()), (3, 3, 2));
    // In a batch, each item falls back on its own.
    b_b.set(OK);
    assert_eq!(vmap(op).call(vec![1, 2]).unwrap(), [3, 4]);
}

#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_fallback_answers_with_its_secondary() {
    let (primary, p) = service("fallback_async_primary", None, 100);
    let (secondary, s) = service("fallback_async_secondary", None, 200);
    let op = fallback(AsyncService(primary), AsyncService(secondary));
    assert_eq!(op.call(1).await.unwrap(), 101);
    p.set(FAIL);
    assert_eq!(op.call(1).await.unwrap(), 201);
    p.set(PERMANENT);
    assert!(op.call(1).await.is_err());
    assert_eq!(s.runs(), 1);
    p.set(FAIL);
    let all = xcs::vmap(op).call(vec![1, 2, 3]).await.unwrap();
    assert_eq!(all, [201, 202, 203]);
    // A timeout of the caller's is not a reason to ask the secondary.
    let (slow, _) = service("fallback_async_slow", None, 0);
    slow.behaviour.set(SLOW);
    let (other, o) = service("fallback_async_other", None, 0);
    let op = fallback(AsyncService(slow), AsyncService(other));
    let result = execution_options!(timeout_seconds = 0.05 => op.call(1)).await;
    assert!(
        matches!(result, Err(XcsError::Timeout { .. })),
        "{result:?}"
    );
    assert_eq!(o.runs(), 0);
}

#[test]
fn the_trace_names_the_operator_that_answered() {
    let _lock = common::global_lock();
    let (primary, p) = service("fallback_traced_primary", None, 0);
    let (secondary, _) = service("fallback_traced_secondary", None, 0);
    let op = fallback(primary, secondary);
    let name = op.name().to_owned();
    xcs::take_trace();
    execution_options!(trace_execution = true => {
        op.call(1).unwrap();
        p.set(FAIL);
        op.call(2).unwrap();
        vmap(op.clone()).call(vec![3]).unwrap();
    });
    let trace = xcs::take_trace();
    let answers: Vec<_> = trace
        .iter()
        .filter(|e| e.operator == name)
        .map(|e| (e.index, e.answered_by.as_deref()))
        .collect();
    assert_eq!(
        answers,
        [
            (None, Some("fallback_traced_primary")),
            (None, Some("fallback_traced_secondary")),
            (Some(0), Some("fallback_traced_secondary")),
        ]
    );
    // The parts' own events are there too, as children; they name no answerer.
    assert!(
        trace
            .iter()
            .filter(|e| e.operator.starts_with("fallback_traced_"))
            .all(|e| e.answered_by.is_none() && e.parent.is_some())
    );
    assert!(
        trace
            .to_chrome_json()
            .contains("\"answered_by\":\"fallback_traced_secondary\"")
    );
}

#[cfg(feature = "tokio")]
#[test]
fn the_trace_names_the_async_operator_that_answered() {
    let (primary, p) = service("fallback_async_traced_primary", None, 0);
    let (secondary, _) = service("fallback_async_traced_secondary", None, 0);
    let op = fallback(AsyncService(primary), AsyncService(secondary));
    let name = op.name().to_owned();
    p.set(FAIL);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _lock = common::global_lock();
    xcs::take_trace();
    runtime
        .block_on(execution_options!(trace_execution = true => op.call(1)))
        .unwrap();
    let trace = xcs::take_trace();
    let answers: Vec<_> = trace
        .iter()
        .filter(|e| e.operator == name)
        .map(|e| e.answered_by.as_deref())
        .collect();
    assert_eq!(answers, [Some("fallback_async_traced_secondary")]);
}
