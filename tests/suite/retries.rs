//! `max_retries` and `rate_limit`, sync and async: attempts counted, waits bounded
//! from below only.

use crate::common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[cfg(feature = "tokio")]
use xcs::AsyncOperator;
use xcs::{Operator, OptionsPatch, Outcome, XcsError, execution_options, pmap, vmap, with_options};

/// Fails its first `failures` attempts per input, then answers; records when attempts start.
struct Flaky {
    name: &'static str,
    failures: u32,
    error: fn() -> XcsError,
    attempts: Mutex<HashMap<u64, Vec<Instant>>>,
}

impl Flaky {
    fn new(name: &'static str, failures: u32) -> Arc<Flaky> {
        Flaky::failing_with(name, failures, || XcsError::operator("flaky", "transient"))
    }
    fn failing_with(name: &'static str, failures: u32, error: fn() -> XcsError) -> Arc<Flaky> {
        Arc::new(Flaky {
            name,
            failures,
            error,
            attempts: Mutex::default(),
        })
    }
    fn attempts(&self, x: u64) -> usize {
        self.attempts.lock().unwrap().get(&x).map_or(0, Vec::len)
    }
    fn starts(&self, x: u64) -> Vec<Instant> {
        self.attempts
            .lock()
            .unwrap()
            .get(&x)
            .cloned()
            .unwrap_or_default()
    }
    fn attempt(&self, x: u64) -> Result<u64, XcsError> {
        let n = {
            let mut attempts = self.attempts.lock().unwrap();
            let starts = attempts.entry(x).or_default();
            starts.push(Instant::now());
            starts.len() as u32
        };
        if x >= 100 && n <= self.failures {
            return Err((self.error)());
        }
        Ok(x)
    }
}

impl Operator for Flaky {
    type Input = u64;
    type Output = u64;
    fn forward(&self, x: u64) -> Result<u64, XcsError> {
        self.attempt(x)
    }
    fn name(&self) -> &str {
        self.name
    }
}

#[cfg(feature = "tokio")]
struct AsyncFlaky(Arc<Flaky>);
#[cfg(feature = "tokio")]
impl AsyncOperator for AsyncFlaky {
    type Input = u64;
    type Output = u64;
    async fn forward(&self, x: u64) -> Result<u64, XcsError> {
        tokio::task::yield_now().await;
        self.0.attempt(x)
    }
    fn name(&self) -> &str {
        self.0.name
    }
}

fn retries(n: u32) -> OptionsPatch {
    OptionsPatch::new().max_retries(n)
}

#[test]
fn a_flaky_call_succeeds_after_n_failures_and_stops_at_max_retries() {
    let op = Flaky::new("flaky_sync", 2);
    assert_eq!(with_options(&retries(2), || op.call(100)).unwrap(), 100);
    assert_eq!(op.attempts(100), 3);
    let op = Flaky::new("flaky_sync_exhausted", 5);
    let err = with_options(&retries(2), || op.call(100)).unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(op.attempts(100), 3);
    // Without the option: one attempt.
    let op = Flaky::new("flaky_sync_off", 1);
    assert!(op.call(100).is_err());
    assert_eq!(op.attempts(100), 1);
}

#[test]
fn permanent_errors_and_panics_are_not_retried() {
    let op = Flaky::failing_with("permanent", 5, || XcsError::permanent("p", "bad request"));
    assert!(with_options(&retries(3), || op.call(100)).is_err());
    assert_eq!(op.attempts(100), 1);

    struct Panics(AtomicU32);
    impl Operator for Panics {
        type Input = u64;
        type Output = u64;
        fn forward(&self, _: u64) -> Result<u64, XcsError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            panic!("always");
        }
        fn name(&self) -> &str {
            "panics_retried"
        }
    }
    let op = Panics(AtomicU32::new(0));
    let err = with_options(&retries(3), || op.call(1)).unwrap_err();
    assert!(matches!(err, XcsError::Panicked { .. }));
    assert_eq!(op.0.load(Ordering::SeqCst), 1);
}

#[test]
fn retry_after_is_waited_for_at_least() {
    let op = Flaky::failing_with("retry_after", 1, || {
        XcsError::retry_after("r", Duration::from_millis(300), "429")
    });
    assert_eq!(with_options(&retries(1), || op.call(100)).unwrap(), 100);
    let starts = op.starts(100);
    assert!(starts[1].duration_since(starts[0]) >= Duration::from_millis(300));
}

#[test]
fn retries_never_run_past_the_deadline() {
    // Backoffs of 50–100, 100–200, 200–400 ms… under a 250 ms deadline: some retries, then the
    // last error (or the timeout), and no attempt starts after the deadline.
    let op = Flaky::new("deadline_bound", 100);
    let patch = retries(10)
        .timeout(Some(Duration::from_millis(250)))
        .unwrap();
    let started = Instant::now();
    let err = with_options(&patch, || op.call(100)).unwrap_err();
    assert!(err.is_retryable() || err.is_timeout(), "{err}");
    let deadline = started + Duration::from_millis(250);
    assert!(op.starts(100).iter().all(|s| *s < deadline));
    assert!(op.attempts(100) >= 2);
}

#[test]
fn batch_items_are_retried_one_by_one() {
    let op = Flaky::new("flaky_items", 1);
    // Items ≥ 100 fail once; the others never.
    let out = with_options(&retries(1), || {
        vmap(Arc::clone(&op)).call(vec![1, 100, 2, 101])
    });
    assert_eq!(out.unwrap(), vec![1, 100, 2, 101]);
    assert_eq!(
        [1, 100, 2, 101].map(|x| op.attempts(x)),
        [1, 2, 1, 2],
        "each item retried on its own"
    );
    let op = Flaky::new("flaky_pmap_items", 1);
    let out = with_options(&retries(1), || pmap(Arc::clone(&op), 2).call(vec![100, 3]));
    assert_eq!(out.unwrap(), vec![100, 3]);
    assert_eq!([op.attempts(100), op.attempts(3)], [2, 1]);
}

#[test]
fn attempts_are_trace_events_and_the_summary_counts_retries() {
    // The trace buffer is process-wide: with the binary's other tests that trace.
    let _lock = common::global_lock();
    let op = Flaky::new("traced_retries", 2);
    execution_options!(max_retries = 2, trace_execution = true => op.call(100)).unwrap();
    let trace = xcs::take_trace();
    let mut attempts: Vec<(u32, Outcome)> = trace
        .iter()
        .filter(|e| e.operator == "traced_retries")
        .map(|e| (e.attempt, e.outcome))
        .collect();
    attempts.sort_by_key(|a| a.0);
    assert_eq!(
        attempts,
        vec![(1, Outcome::Error), (2, Outcome::Error), (3, Outcome::Ok)]
    );
    assert_eq!(trace.summary().get("traced_retries").unwrap().retries, 2);
    // The printed table has the column too: 3 attempts, 2 of them retries.
    let table = trace.summary().to_string();
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    let row: Vec<&str> = table
        .lines()
        .find(|line| line.starts_with("traced_retries "))
        .unwrap()
        .split_whitespace()
        .collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    let retries = column("retries").unwrap_or_else(|| panic!("no retries column:\n{table}"));
    assert_eq!(row[column("count").unwrap()], "3", "{table}");
    assert_eq!(row[retries], "2", "{table}");
}

#[cfg(feature = "tokio")]
#[test]
fn async_calls_and_items_retry_too() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let flaky = Flaky::new("flaky_async", 2);
        let op = AsyncFlaky(Arc::clone(&flaky));
        let out = execution_options!(max_retries = 2 => async { op.call(100).await }).await;
        assert_eq!(out.unwrap(), 100);
        assert_eq!(flaky.attempts(100), 3);
        let items = execution_options!(max_retries = 2 => async {
            vmap(AsyncFlaky(Arc::clone(&flaky))).call(vec![5, 101]).await
        })
        .await;
        assert_eq!(items.unwrap(), vec![5, 101]);
        assert_eq!([flaky.attempts(5), flaky.attempts(101)], [1, 3]);
    });
}

/// Records when each call started.
struct Stamp {
    name: &'static str,
    starts: Mutex<Vec<Instant>>,
}
impl Stamp {
    fn new(name: &'static str) -> Arc<Stamp> {
        Arc::new(Stamp {
            name,
            starts: Mutex::default(),
        })
    }
    fn gaps(&self) -> Vec<Duration> {
        let mut starts = self.starts.lock().unwrap().clone();
        starts.sort();
        starts.windows(2).map(|w| w[1] - w[0]).collect()
    }
}
impl Operator for Stamp {
    type Input = u64;
    type Output = u64;
    fn forward(&self, x: u64) -> Result<u64, XcsError> {
        self.starts.lock().unwrap().push(Instant::now());
        Ok(x)
    }
    fn name(&self) -> &str {
        self.name
    }
}
#[cfg(feature = "tokio")]
struct AsyncStamp(Arc<Stamp>);
#[cfg(feature = "tokio")]
impl AsyncOperator for AsyncStamp {
    type Input = u64;
    type Output = u64;
    async fn forward(&self, x: u64) -> Result<u64, XcsError> {
        self.0.starts.lock().unwrap().push(Instant::now());
        Ok(x)
    }
    fn name(&self) -> &str {
        self.0.name
    }
}

/// Consecutive starts at least `1/r` apart (1 ms of slack for clock granularity).
fn spaced(gaps: &[Duration], rate: f64) -> bool {
    let interval = Duration::from_secs_f64(1.0 / rate) - Duration::from_millis(1);
    gaps.iter().all(|gap| *gap >= interval)
}

#[test]
fn rate_limited_starts_are_spaced_across_threads() {
    let op = Stamp::new("rate_threads");
    let out =
        execution_options!(rate_limit = 20 => pmap(Arc::clone(&op), 4).call((0..8).collect()));
    assert_eq!(out.unwrap().len(), 8);
    let gaps = op.gaps();
    assert_eq!(gaps.len(), 7);
    assert!(spaced(&gaps, 20.0), "{gaps:?}");
    // Shared by separate threads calling the same operator (by name).
    let op2 = Stamp::new("rate_threads");
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let op = Arc::clone(&op2);
            std::thread::spawn(move || execution_options!(rate_limit = 20 => op.call(i)))
        })
        .collect();
    for handle in handles {
        handle.join().unwrap().unwrap();
    }
    assert!(spaced(&op2.gaps(), 20.0), "{:?}", op2.gaps());
}

#[cfg(feature = "tokio")]
#[test]
fn rate_limited_starts_are_spaced_across_async_tasks() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let op = Stamp::new("rate_tasks");
    runtime.block_on(async {
        let tasks: Vec<_> = (0..3)
            .map(|i| {
                let op = AsyncStamp(Arc::clone(&op));
                tokio::spawn(async move {
                    execution_options!(rate_limit = 25 => async {
                        vmap(op).call(vec![i, i + 10]).await
                    })
                    .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    });
    let gaps = op.gaps();
    assert_eq!(gaps.len(), 5);
    assert!(spaced(&gaps, 25.0), "{gaps:?}");
}

#[test]
fn a_call_that_cannot_start_before_its_deadline_times_out() {
    let op = Stamp::new("rate_deadline");
    // One start per second: the first starts now, the second could start only after the
    // 200 ms deadline.
    let first = execution_options!(rate_limit = 1 => op.call(1));
    assert!(first.is_ok());
    let second = execution_options!(rate_limit = 1, timeout_seconds = 0.2 => op.call(2));
    assert!(second.unwrap_err().is_timeout());
    assert_eq!(op.starts.lock().unwrap().len(), 1);
}
