//! `hedge_after`: a call still running after the delay (fixed, or a quantile of the operator's
//! recent latency) is raced by a second attempt on a copy of its input; the first success
//! answers and the other attempt is cancelled (async: dropped; sync: abandoned with
//! `cancelled()` set). At most one hedge per call; hedges count against resources and budgets.
//!
//! Each test uses operators and resources of its own name (latencies and resources are kept by
//! name, process-wide). No timing is asserted but lower bounds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xcs::{Operator, Outcome, ResourceLimits, Usage, XcsError, execution_options, vmap};

use crate::common::{global_lock, global_subscriber, lock, wait_for};

/// How a body behaves on each start for an input.
#[derive(Clone, Copy)]
enum Shape {
    /// The first start for an input hangs (until cancelled, at most 10 s); later ones answer
    /// after `fast` ms.
    FirstHangs,
    /// Every start answers after this many ms.
    Every(u64),
    /// Every start fails (retryably) after this many ms.
    Fails(u64),
    /// Inputs ≥ 1000 hang on their first start; the others answer after `fast` ms.
    SlowAbove1000,
}

/// A sync operator that counts its body starts, per input and in all, and how many of its
/// bodies saw `cancelled()`.
struct Body {
    name: &'static str,
    shape: Shape,
    fast: u64,
    resource: Option<&'static str>,
    starts: AtomicUsize,
    per_input: Mutex<HashMap<u64, usize>>,
    saw_cancel: AtomicUsize,
}

impl Body {
    fn new(name: &'static str, shape: Shape) -> Arc<Body> {
        Body::on(name, shape, None)
    }

    fn on(name: &'static str, shape: Shape, resource: Option<&'static str>) -> Arc<Body> {
        Arc::new(Body {
            name,
            shape,
            fast: 5,
            resource,
            starts: AtomicUsize::new(0),
            per_input: Mutex::new(HashMap::new()),
            saw_cancel: AtomicUsize::new(0),
        })
    }

    fn starts(&self) -> usize {
        self.starts.load(Ordering::SeqCst)
    }

    /// Hangs until cancelled (at most 10 s).
    fn hang(&self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if xcs::cancelled() {
                self.saw_cancel.fetch_add(1, Ordering::SeqCst);
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Operator for Body {
    type Input = u64;
    type Output = (u64, usize);

    /// Answers `(input, which start for this input)`.
    fn forward(&self, input: u64) -> Result<(u64, usize), XcsError> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        let nth = {
            let mut per_input = lock(&self.per_input);
            let n = per_input.entry(input).or_default();
            *n += 1;
            *n
        };
        let hangs = match self.shape {
            Shape::FirstHangs => nth == 1,
            Shape::SlowAbove1000 => nth == 1 && input >= 1000,
            Shape::Every(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                false
            }
            Shape::Fails(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                return Err(XcsError::operator(self.name, "flaky"));
            }
        };
        if hangs {
            self.hang();
            return Err(XcsError::operator(self.name, "stopped"));
        }
        std::thread::sleep(Duration::from_millis(self.fast));
        if self.resource.is_some() {
            xcs::record_usage(Usage {
                input_tokens: 10,
                ..Usage::default()
            });
        }
        Ok((input, nth))
    }

    fn name(&self) -> &str {
        self.name
    }

    fn resource(&self) -> Option<&str> {
        self.resource
    }

    fn estimate(&self, _: &u64) -> Usage {
        Usage {
            input_tokens: 10,
            ..Usage::default()
        }
    }
}

#[test]
fn a_slow_sync_call_is_hedged_and_the_loser_sees_cancelled() {
    let op = Body::new("hedge_sync_fixed", Shape::FirstHangs);
    let started = Instant::now();
    let answer = execution_options!(hedge_after = 0.05 => Arc::clone(&op).call(7)).unwrap();
    // The hedge (the second start) answered, no sooner than the delay.
    assert_eq!(answer, (7, 2));
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(op.starts(), 2);
    // The first attempt was abandoned with `cancelled()` set.
    assert!(wait_for(&op.saw_cancel, 1));
}

#[test]
fn a_call_that_answers_before_the_delay_is_not_hedged() {
    let op = Body::new("hedge_sync_quick", Shape::Every(1));
    for n in 0..5 {
        let answer = execution_options!(hedge_after = 5 => Arc::clone(&op).call(n)).unwrap();
        assert_eq!(answer, (n, 1));
    }
    assert_eq!(op.starts(), 5);
}

#[test]
fn at_most_one_hedge_per_call_and_per_batch_item() {
    // Every start is slow: each call is hedged once, never more.
    let op = Body::new("hedge_once_each", Shape::Every(300));
    let out = execution_options!(hedge_after = 0.01, max_workers = 8 => {
        vmap(Arc::clone(&op)).call((0..8).collect())
    })
    .unwrap();
    assert_eq!(out.len(), 8);
    assert_eq!(op.starts(), 16);

    // Retries included: attempt 1 and its hedge fail, then two retries run unhedged.
    let flaky = Body::new("hedge_once_with_retries", Shape::Fails(150));
    let result = execution_options!(hedge_after = 0.005, max_retries = 2 => {
        Arc::clone(&flaky).call(1)
    });
    assert!(result.unwrap_err().is_retryable());
    assert_eq!(flaky.starts(), 4);
}

#[test]
fn a_quantile_hedges_after_twenty_successes() {
    let op = Body::new("hedge_sync_quantile", Shape::SlowAbove1000);
    // Before 20 successful calls, no quantile is known: a slow call is not hedged.
    let early = Body::new("hedge_sync_quantile_early", Shape::Every(60));
    execution_options!(hedge_after = "p50" => Arc::clone(&early).call(1)).unwrap();
    assert_eq!(early.starts(), 1);

    execution_options!(hedge_after = "p95" => {
        for n in 0..20 {
            assert_eq!(Arc::clone(&op).call(n).unwrap(), (n, 1));
        }
        // The 21st call hangs on its first start: hedged after about p95 of 5 ms.
        assert_eq!(Arc::clone(&op).call(1000).unwrap(), (1000, 2));
    });
    assert_eq!(op.starts(), 22);
    assert!(wait_for(&op.saw_cancel, 1));
}

#[test]
fn hedges_are_requests_of_the_resource_and_spend_the_budget() {
    let resource = "hedge_resource_counted";
    xcs::set_resource_limits(resource, &ResourceLimits::new().max_in_flight(16)).unwrap();
    let op = Body::on("hedge_charged", Shape::FirstHangs, Some(resource));
    let spent = execution_options!(hedge_after = 0.05, token_budget = 1000 => {
        for n in 0..3 {
            assert_eq!(Arc::clone(&op).call(n).unwrap(), (n, 2));
        }
        xcs::spent()
    });
    assert_eq!(op.starts(), 6);
    // Every hedge was admitted by the resource: two requests per call.
    let stats = xcs::resource_stats(resource).unwrap();
    assert_eq!(stats.requests, 6);
    // Each winner recorded 10 tokens; each loser recorded nothing and keeps its estimate (10).
    assert_eq!(spent.tokens(), 60);
}

#[test]
fn a_budget_with_no_room_for_a_hedge_runs_the_call_alone() {
    let op = Body::new("hedge_budget_tight", Shape::Every(60));
    // Room for one estimate (10) and not two.
    let answer =
        execution_options!(hedge_after = 0.005, token_budget = 15 => Arc::clone(&op).call(3))
            .unwrap();
    assert_eq!(answer, (3, 1));
    assert_eq!(op.starts(), 1);
}

/// An input xcs cannot copy.
struct Ticket(u64);

struct Uncopied {
    starts: AtomicUsize,
}

impl Operator for Uncopied {
    type Input = Ticket;
    type Output = u64;

    fn forward(&self, input: Ticket) -> Result<u64, XcsError> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(40));
        Ok(input.0)
    }

    fn name(&self) -> &str {
        "hedge_not_clone"
    }
}

#[test]
fn an_input_that_cannot_be_copied_is_not_hedged_and_warned_once() {
    let warnings = global_subscriber();
    let op = Arc::new(Uncopied {
        starts: AtomicUsize::new(0),
    });
    for n in 0..2 {
        let out = execution_options!(hedge_after = 0.005 => Arc::clone(&op).call(Ticket(n)));
        assert_eq!(out.unwrap(), n);
    }
    assert_eq!(op.starts.load(Ordering::SeqCst), 2);
    let warned = warnings.warnings_mentioning("`hedge_not_clone` runs without hedging");
    assert_eq!(warned.len(), 1, "{warned:#?}");
    assert!(warned[0].contains("Ticket"), "{}", warned[0]);
}

#[test]
fn trace_events_mark_the_hedge_and_the_winner_sync() {
    let _lock = global_lock();
    let op = Body::new("hedge_traced_sync", Shape::FirstHangs);
    let _ = xcs::take_trace();
    let answer =
        execution_options!(hedge_after = 0.02, trace_execution = true => Arc::clone(&op).call(5))
            .unwrap();
    assert_eq!(answer, (5, 2));
    let trace = xcs::take_trace();
    let events: Vec<_> = trace
        .iter()
        .filter(|e| e.operator == "hedge_traced_sync")
        .collect();
    assert_eq!(events.len(), 2, "{events:#?}");
    let first = events.iter().find(|e| e.hedge.is_some_and(|m| !m.is_hedge));
    let hedge = events.iter().find(|e| e.hedge.is_some_and(|m| m.is_hedge));
    let (Some(first), Some(hedge)) = (first, hedge) else {
        panic!("{events:#?}")
    };
    // The body that started first hangs. That is the first attempt, unless its thread was so
    // slow to start that the hedge's body started before it: then the first attempt answers.
    let (winner, loser) = if hedge.outcome == Outcome::Ok {
        (hedge, first)
    } else {
        (first, hedge)
    };
    assert_eq!(loser.outcome, Outcome::Cancelled, "{events:#?}");
    assert!(loser.hedge.is_some_and(|m| !m.won));
    assert_eq!(winner.outcome, Outcome::Ok, "{events:#?}");
    assert!(winner.hedge.is_some_and(|m| m.won));
    // Siblings: both attempts are events of the call itself, at its depth.
    assert_eq!((first.parent, first.depth), (hedge.parent, hedge.depth));
    let stats = trace.summary();
    let stats = stats.get("hedge_traced_sync").unwrap();
    assert_eq!((stats.count, stats.hedges), (2, 1));
    assert_eq!(stats.count_of(Outcome::Cancelled), 1);
    let chrome = trace.to_chrome_json();
    assert!(chrome.contains("\"hedge\":\"hedge\""), "{chrome}");
    assert!(chrome.contains("\"won\":true"), "{chrome}");
}

#[cfg(feature = "tokio")]
mod async_calls {
    use super::*;
    use xcs::AsyncOperator;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap()
    }

    /// Counts the bodies dropped before they finished.
    struct Unfinished<'a> {
        dropped: &'a AtomicUsize,
        done: bool,
    }

    impl Drop for Unfinished<'_> {
        fn drop(&mut self) {
            if !self.done {
                self.dropped.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// An async operator whose first start for an input (≥ `slow_from`) hangs for 10 s; the
    /// others answer after 50 ms (inputs below 100) or 1 ms.
    struct Remote {
        name: &'static str,
        slow_from: u64,
        starts: AtomicUsize,
        dropped: AtomicUsize,
        per_input: Mutex<HashMap<u64, usize>>,
    }

    impl Remote {
        fn new(name: &'static str, slow_from: u64) -> Arc<Remote> {
            Arc::new(Remote {
                name,
                slow_from,
                starts: AtomicUsize::new(0),
                dropped: AtomicUsize::new(0),
                per_input: Mutex::new(HashMap::new()),
            })
        }
    }

    impl AsyncOperator for Remote {
        type Input = u64;
        type Output = (u64, usize);

        async fn forward(&self, input: u64) -> Result<(u64, usize), XcsError> {
            self.starts.fetch_add(1, Ordering::SeqCst);
            let nth = {
                let mut per_input = lock(&self.per_input);
                let n = per_input.entry(input).or_default();
                *n += 1;
                *n
            };
            let mut guard = Unfinished {
                dropped: &self.dropped,
                done: false,
            };
            let wait = if nth == 1 && input >= self.slow_from {
                Duration::from_secs(10)
            } else if input < 100 {
                Duration::from_millis(50)
            } else {
                Duration::from_millis(1)
            };
            tokio::time::sleep(wait).await;
            guard.done = true;
            Ok((input, nth))
        }

        fn name(&self) -> &str {
            self.name
        }
    }

    #[test]
    fn a_slow_async_call_is_hedged_and_the_loser_dropped() {
        rt().block_on(async {
            let op = Remote::new("hedge_async_fixed", 0);
            let started = Instant::now();
            let answer = execution_options!(hedge_after = 0.03 => async {
                AsyncOperator::call(&op, 9).await
            })
            .await
            .unwrap();
            assert_eq!(answer, (9, 2));
            assert!(started.elapsed() >= Duration::from_millis(30));
            assert_eq!(op.starts.load(Ordering::SeqCst), 2);
            // The first attempt's future was dropped before the call returned.
            assert_eq!(op.dropped.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn async_batch_items_are_hedged_once_each_after_a_quantile() {
        rt().block_on(async {
            let op = Remote::new("hedge_async_quantile", 1000);
            let out = execution_options!(hedge_after = "p90" => async {
                // Warm-up: 20 calls of 50 ms, then a batch of quick items whose inputs
                // ≥ 1000 hang at first.
                for n in 0..20 {
                    AsyncOperator::call(&op, n).await.unwrap();
                }
                xcs::vmap(Arc::clone(&op)).call(vec![100, 1000, 101, 1001]).await
            })
            .await
            .unwrap();
            assert_eq!(out, vec![(100, 1), (1000, 2), (101, 1), (1001, 2)]);
            // 20 warm-up starts, 4 items, 2 hedges.
            assert_eq!(op.starts.load(Ordering::SeqCst), 26);
            assert_eq!(op.dropped.load(Ordering::SeqCst), 2);
        });
    }

    #[test]
    fn trace_events_mark_the_hedge_and_the_winner_async() {
        let _lock = global_lock();
        rt().block_on(async {
            let op = Remote::new("hedge_traced_async", 0);
            let _ = xcs::take_trace();
            execution_options!(hedge_after = 0.02, trace_execution = true => async {
                AsyncOperator::call(&op, 4).await
            })
            .await
            .unwrap();
            let trace = xcs::take_trace();
            let mut marks: Vec<_> = trace
                .iter()
                .filter(|e| e.operator == "hedge_traced_async")
                .map(|e| (e.hedge.map(|m| (m.is_hedge, m.won)), e.outcome))
                .collect();
            marks.sort_by_key(|(mark, _)| *mark);
            assert_eq!(
                marks,
                [
                    (Some((false, false)), Outcome::Cancelled),
                    (Some((true, true)), Outcome::Ok)
                ]
            );
        });
    }
}
