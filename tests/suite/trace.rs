//! `trace_execution` through the public API: what `vmap`, `pmap` and `Operator::call` record in
//! `xcs::take_trace()`, and the `tracing` spans a subscriber sees.
//!
//! The in-memory trace is process-wide and `take_trace` drains it, so the tests of this file run
//! one at a time (`common::global_lock`, as every test of the binary that traces does) and each
//! looks only at operators with names unique to it.

use crate::common;

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use common::global_lock as lock;
use common::{AlwaysFails, AlwaysFailsInputs, CachedSquare, CachedSquareInputs, hang_op, serial};
use xcs::prelude::*;
use xcs::{Outcome, Trace, TraceEvent};

/// Doubles its input after `sleep`; fails on `fail_on`.
struct Double {
    name: &'static str,
    fail_on: Option<u64>,
    sleep: Duration,
}

impl Double {
    fn named(name: &'static str) -> Self {
        Double {
            name,
            fail_on: None,
            sleep: Duration::from_millis(2),
        }
    }
}

impl Operator for Double {
    type Input = u64;
    type Output = u64;

    fn forward(&self, input: u64) -> Result<u64, XcsError> {
        std::thread::sleep(self.sleep);
        if self.fail_on == Some(input) {
            return Err(XcsError::operator(
                self.name,
                format!("cannot double {input}"),
            ));
        }
        Ok(input * 2)
    }

    fn name(&self) -> &str {
        self.name
    }
}

/// The events of the drained trace whose operator name contains `name`.
fn events_of(name: &str) -> Vec<TraceEvent> {
    xcs::take_trace()
        .into_events()
        .into_iter()
        .filter(|e| e.operator.contains(name))
        .collect()
}

/// The batch-item events, checked to be exactly one per index `0..n`.
fn items(events: &[TraceEvent], n: usize) -> Vec<&TraceEvent> {
    let mut items: Vec<&TraceEvent> = events.iter().filter(|e| e.index.is_some()).collect();
    items.sort_by_key(|e| e.index);
    let indices: Vec<usize> = items.iter().filter_map(|e| e.index).collect();
    assert_eq!(indices, (0..n).collect::<Vec<_>>(), "{events:#?}");
    items
}

fn call_event<'a>(events: &'a [TraceEvent], operator: &str) -> &'a TraceEvent {
    let calls: Vec<&TraceEvent> = events
        .iter()
        .filter(|e| e.index.is_none() && e.operator == operator)
        .collect();
    assert_eq!(
        calls.len(),
        1,
        "one call event of `{operator}`: {events:#?}"
    );
    calls[0]
}

#[test]
fn vmap_records_one_event_per_item_and_the_call() {
    let _guard = lock();
    let _ = xcs::take_trace();
    let op = xcs::vmap(Double::named("trace_it_vmap"));
    let vmap_name = op.name().to_owned();
    let out = execution_options!(trace_execution = true => op.call(vec![1, 2, 3, 4, 5]));
    assert_eq!(out.unwrap(), vec![2, 4, 6, 8, 10]);

    let events = events_of("trace_it_vmap");
    let call = call_event(&events, &vmap_name);
    assert_eq!(call.outcome, Outcome::Ok);
    for item in items(&events, 5) {
        assert_eq!(item.outcome, Outcome::Ok);
        assert!(!item.thread.is_empty());
        assert!(item.thread_id >= 1);
        assert!(
            item.start >= call.start && item.end() <= call.end(),
            "{item:?} in {call:?}"
        );
    }
    let starts: Vec<Duration> = events.iter().map(|e| e.start).collect();
    assert!(starts.is_sorted(), "events ordered by start");
}

#[test]
fn sequential_vmap_items_are_children_of_the_call_on_the_callers_thread() {
    let _guard = lock();
    let _ = xcs::take_trace();
    let op = xcs::vmap(Double::named("trace_it_seq"));
    let vmap_name = op.name().to_owned();
    let caller = std::thread::current()
        .name()
        .unwrap_or("<unnamed>")
        .to_owned();
    execution_options!(trace_execution = true, use_parallel = false => op.call(vec![1, 2, 3]))
        .unwrap();

    let events = events_of("trace_it_seq");
    let call = call_event(&events, &vmap_name);
    assert_eq!(call.thread, caller);
    for item in items(&events, 3) {
        assert_eq!(item.thread_id, call.thread_id);
        assert_eq!(item.thread, caller);
        assert_eq!(item.parent, Some(call.id));
        assert_eq!(item.depth, call.depth + 1);
    }
}

#[test]
fn pmap_records_items_on_its_workers() {
    let _guard = lock();
    let _ = xcs::take_trace();
    let op = xcs::pmap(Double::named("trace_it_pmap"), 2);
    let pmap_name = op.name().to_owned();
    execution_options!(trace_execution = true => op.call((0..6).collect())).unwrap();

    let events = events_of("trace_it_pmap");
    assert_eq!(call_event(&events, &pmap_name).outcome, Outcome::Ok);
    let items = items(&events, 6);
    let threads: BTreeSet<u64> = items.iter().map(|e| e.thread_id).collect();
    assert!(!threads.is_empty() && threads.len() <= 2, "{items:#?}");
}

#[test]
fn nothing_is_recorded_with_tracing_off() {
    let _guard = lock();
    let _ = xcs::take_trace();
    let op = xcs::vmap(Double::named("trace_it_off"));
    op.call(vec![1, 2, 3]).unwrap();
    execution_options!(trace_execution = false => op.call(vec![4, 5])).unwrap();
    Double::named("trace_it_off").call(1).unwrap();
    assert!(events_of("trace_it_off").is_empty());
}

#[test]
fn a_failing_item_is_recorded_as_an_error() {
    let _guard = lock();
    let _ = xcs::take_trace();
    let op = xcs::vmap(Double {
        name: "trace_it_fail",
        fail_on: Some(2),
        sleep: Duration::ZERO,
    });
    let vmap_name = op.name().to_owned();
    let result = execution_options!(trace_execution = true, use_parallel = false => {
        op.call(vec![0, 1, 2, 3])
    });
    assert_eq!(result.unwrap_err().index(), Some(2));

    let events = events_of("trace_it_fail");
    assert_eq!(call_event(&events, &vmap_name).outcome, Outcome::Error);
    let outcome_of = |i| {
        events
            .iter()
            .find(|e| e.index == Some(i))
            .map(|e| e.outcome)
    };
    assert_eq!(outcome_of(0), Some(Outcome::Ok));
    assert_eq!(outcome_of(1), Some(Outcome::Ok));
    assert_eq!(outcome_of(2), Some(Outcome::Error));
    assert_eq!(outcome_of(3), None, "items after a failure are not started");
}

#[test]
fn a_call_records_timeout_and_cache_hit() {
    let _guard = lock();
    let _ = xcs::take_trace();
    let slow = Double {
        name: "trace_it_timeout",
        fail_on: None,
        sleep: Duration::from_millis(300),
    };
    let result = execution_options!(trace_execution = true, timeout_seconds = 0.05 => {
        slow.call(1)
    });
    assert!(result.unwrap_err().is_timeout());
    let events = events_of("trace_it_timeout");
    assert_eq!(
        call_event(&events, "trace_it_timeout").outcome,
        Outcome::Timeout
    );

    let cached = Double::named("trace_it_cached");
    execution_options!(trace_execution = true, enable_caching = true => {
        assert_eq!(cached.call(0x5eed_ca11).unwrap(), 2 * 0x5eed_ca11);
        assert_eq!(cached.call(0x5eed_ca11).unwrap(), 2 * 0x5eed_ca11);
    });
    let outcomes: Vec<Outcome> = events_of("trace_it_cached")
        .iter()
        .map(|e| e.outcome)
        .collect();
    assert_eq!(outcomes, [Outcome::Ok, Outcome::CacheHit]);
}

#[test]
fn whole_trace_summary_and_chrome_json() {
    let _guard = lock();
    let _ = xcs::take_trace();
    let op = xcs::vmap(Double::named("trace_it_whole"));
    let vmap_name = op.name().to_owned();
    execution_options!(trace_execution = true => op.call(vec![1, 2, 3, 4])).unwrap();

    let trace = xcs::take_trace();
    let summary = trace.summary();
    let vmap = summary
        .get(&vmap_name)
        .expect("the vmap call is in the summary");
    assert_eq!(vmap.count, 1);
    assert_eq!(vmap.count_of(Outcome::Ok), 1);
    let item_count: usize = summary
        .iter()
        .filter(|s| s.operator.contains("trace_it_whole"))
        .map(|s| s.items)
        .sum();
    assert_eq!(item_count, 4);
    assert!(summary.to_string().contains(&vmap_name));

    let json: serde_json::Value = serde_json::from_str(&trace.to_chrome_json()).unwrap();
    assert_eq!(json["displayTimeUnit"], "ms");
    let all = json["traceEvents"].as_array().unwrap();
    let names: BTreeSet<&str> = all
        .iter()
        .filter(|e| e["ph"] == "X" && e["cat"] == "xcs")
        .filter_map(|e| e["name"].as_str())
        .filter(|n| n.contains("trace_it_whole"))
        .collect();
    assert!(names.contains(vmap_name.as_str()), "{names:?}");
    for i in 0..4 {
        assert!(
            names.iter().any(|n| n.ends_with(&format!("[{i}]"))),
            "{names:?}"
        );
    }
    let thread_names = all
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .count();
    assert!(thread_names >= 1);
}

#[test]
fn a_tracing_subscriber_sees_spans_with_target_xcs() {
    let _guard = lock();
    let log = common::global_subscriber();
    let op = xcs::vmap(Double::named("trace_it_spans"));
    let vmap_name = op.name().to_owned();
    execution_options!(trace_execution = true => op.call(vec![1, 2, 3])).unwrap();
    let _ = xcs::take_trace();

    let spans: Vec<(String, String, String)> = log
        .spans
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|(_, _, operator)| operator.contains("trace_it_spans"))
        .cloned()
        .collect();
    assert!(
        spans.iter().all(|(target, _, _)| target == "xcs"),
        "{spans:?}"
    );
    assert!(
        spans
            .iter()
            .any(|(_, name, op)| name == "call" && *op == vmap_name),
        "{spans:?}"
    );
    let item_spans = spans.iter().filter(|(_, name, _)| name == "item").count();
    assert_eq!(item_spans, 3, "{spans:?}");
}

#[test]
fn items_on_worker_threads_are_children_of_their_batch() {
    let _lock = lock();
    let _ = xcs::take_trace();
    struct Nested;
    impl Operator for Nested {
        type Input = u64;
        type Output = u64;
        fn forward(&self, x: u64) -> Result<u64, XcsError> {
            std::thread::sleep(Duration::from_millis(2));
            Ok(x)
        }
        fn name(&self) -> &str {
            "parented_item"
        }
    }
    execution_options!(trace_execution = true => xcs::pmap(Nested, 3).call((0..9).collect()))
        .unwrap();
    let trace = xcs::take_trace();
    let batch = trace
        .events()
        .iter()
        .find(|e| e.operator == "pmap(parented_item)")
        .expect("the batch call is recorded");
    let items: Vec<_> = trace
        .events()
        .iter()
        .filter(|e| e.operator == "parented_item")
        .collect();
    assert_eq!(items.len(), 9);
    for item in items {
        assert_ne!(item.thread_id, batch.thread_id, "items ran on workers");
        assert_eq!(item.parent, Some(batch.id));
        assert_eq!(item.depth, batch.depth + 1);
    }
}

/// The same scenario through the sync and the async driver records the same events and returns
/// the same error: a batch of 3 items, each working for up to 10 s (and stopping early when the
/// call is given up), under `timeout_seconds = 0.2` with every item in flight.
#[cfg(feature = "tokio")]
#[test]
fn sync_and_async_drivers_trace_a_timed_out_batch_alike() {
    use xcs::{AsyncOperator, vmap};

    /// Works for 10 s in small steps, stopping once the call is given up.
    struct Slow;
    impl Operator for Slow {
        type Input = u64;
        type Output = u64;
        fn forward(&self, input: u64) -> Result<u64, XcsError> {
            for _ in 0..1_000 {
                if xcs::cancelled() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(input)
        }
        fn name(&self) -> &str {
            "drift_slow"
        }
    }
    /// The async twin: awaits 10 s.
    struct SlowAsync;
    impl AsyncOperator for SlowAsync {
        type Input = u64;
        type Output = u64;
        async fn forward(&self, input: u64) -> Result<u64, XcsError> {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(input)
        }
        fn name(&self) -> &str {
            "drift_slow"
        }
    }

    /// What must agree: everything but ids, threads and times.
    fn shape(events: &[TraceEvent]) -> Vec<(String, Option<usize>, usize, Outcome, u32, bool)> {
        let mut shape: Vec<_> = events
            .iter()
            .map(|e| {
                let parent = e.parent.is_some();
                (
                    e.operator.clone(),
                    e.index,
                    e.depth,
                    e.outcome,
                    e.attempt,
                    parent,
                )
            })
            .collect();
        shape.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        shape
    }
    /// The error with what differs by nature (the measured time) left out.
    fn error_shape(error: &XcsError) -> String {
        match error {
            XcsError::Timeout {
                operator, index, ..
            } => format!("timeout {operator} {index:?}"),
            other => format!("{other:?}"),
        }
    }

    let _guard = lock();
    let _ = xcs::take_trace();
    let sync_error =
        execution_options!(trace_execution = true, timeout_seconds = 0.2, max_workers = 3 => {
            vmap(Slow).call(vec![0, 1, 2])
        })
        .unwrap_err();
    // The abandoned items see `cancelled()` and finish; wait for their events.
    std::thread::sleep(Duration::from_millis(300));
    let sync_events = events_of("drift_slow");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let async_error = runtime
        .block_on(async {
            execution_options!(trace_execution = true, timeout_seconds = 0.2, max_workers = 3 => async {
                vmap(SlowAsync).call(vec![0, 1, 2]).await
            })
            .await
        })
        .unwrap_err();
    let async_events = events_of("drift_slow");

    assert_eq!(error_shape(&sync_error), error_shape(&async_error));
    assert_eq!(shape(&sync_events), shape(&async_events));
    let batch = sync_events.iter().find(|e| e.index.is_none()).unwrap();
    assert_eq!(batch.outcome, Outcome::Timeout);
}

#[xcs::operator]
fn traced_op(x: u64) -> u64 {
    x + 100
}

#[test]
fn trace_records_calls_and_items() {
    let _s = serial();
    let _ = xcs::take_trace();
    execution_options!(trace_execution = true => {
        TracedOp.call(TracedOpInputs { x: 1 }).unwrap();
        vmap(TracedOp).call((0..3).map(|x| TracedOpInputs { x }).collect()).unwrap();
    });
    let trace: Trace = xcs::take_trace();
    assert!(
        trace.events().len() >= 4,
        "one call + three items: {}",
        trace.events().len()
    );
    assert!(format!("{:?}", trace.events()).contains("traced_op"));
    let summary = trace.summary();
    assert!(format!("{summary:?}").contains("traced_op"));

    let chrome = trace.to_chrome_json();
    let value: serde_json::Value = serde_json::from_str(&chrome.to_string()).expect("valid JSON");
    let events = value
        .as_array()
        .or_else(|| value.get("traceEvents").and_then(|v| v.as_array()))
        .expect("Chrome trace-event format: an array or {\"traceEvents\": [...]}");
    assert!(events.len() >= 4);
    assert!(
        events
            .iter()
            .all(|e| e.get("ph").is_some() && e.get("name").is_some())
    );
    assert!(chrome.to_string().contains("traced_op"));

    // Taken: the buffer is now empty.
    assert!(xcs::take_trace().events().is_empty());
}

#[test]
fn trace_off_records_nothing() {
    let _s = serial();
    let _ = xcs::take_trace();
    TracedOp.call(TracedOpInputs { x: 1 }).unwrap();
    vmap(TracedOp)
        .call((0..3).map(|x| TracedOpInputs { x }).collect())
        .unwrap();
    assert!(xcs::take_trace().events().is_empty());
}

#[test]
fn trace_outcomes_include_error_timeout_and_cache_hit() {
    let _s = serial();
    let _ = xcs::take_trace();
    execution_options!(trace_execution = true, enable_caching = true => {
        CachedSquare.call(CachedSquareInputs { x: 11 }).unwrap();
        CachedSquare.call(CachedSquareInputs { x: 11 }).unwrap();
        let _ = AlwaysFails.call(AlwaysFailsInputs { x: 1 });
    });
    let (hop, gate, _, _) = hang_op(None);
    let res =
        execution_options!(trace_execution = true, timeout_seconds = 0.1 => Arc::new(hop).call(1));
    gate.release();
    assert!(res.is_err());
    let trace = xcs::take_trace();
    let dbg = format!("{:?}", trace.events()).to_lowercase();
    assert!(dbg.contains("cache"), "cache hit outcome: {dbg}");
    assert!(dbg.contains("err"), "error outcome: {dbg}");
    assert!(
        dbg.contains("timeout") || dbg.contains("timed"),
        "timeout outcome: {dbg}"
    );
    assert!(dbg.contains("ok"), "ok outcome: {dbg}");
}

mod span_recorder {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    pub struct Recorder {
        pub spans: Arc<Mutex<Vec<(String, String)>>>,
        pub next: AtomicU64,
    }

    impl Subscriber for Recorder {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, attrs: &Attributes<'_>) -> Id {
            let m = attrs.metadata();
            crate::common::lock(&self.spans).push((m.target().to_string(), m.name().to_string()));
            Id::from_u64(self.next.fetch_add(1, Ordering::SeqCst) + 1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
}

#[test]
fn trace_emits_tracing_spans_with_target_xcs() {
    let _s = serial();
    let spans = Arc::new(Mutex::new(Vec::new()));
    let recorder = span_recorder::Recorder {
        spans: spans.clone(),
        next: AtomicU64::new(0),
    };
    tracing::subscriber::with_default(recorder, || {
        execution_options!(trace_execution = true => TracedOp.call(TracedOpInputs { x: 1 }).unwrap());
    });
    let spans = common::lock(&spans).clone();
    assert!(
        spans
            .iter()
            .any(|(target, _)| target == "xcs" || target.starts_with("xcs")),
        "spans: {spans:?}"
    );
    let _ = xcs::take_trace();
}

#[test]
fn trace_events_carry_name_index_thread_timing_and_outcome() {
    let _s = serial();
    let _ = xcs::take_trace();
    execution_options!(trace_execution = true, enable_caching = true => {
        TracedOp.call(TracedOpInputs { x: 10 }).unwrap();
        vmap(TracedOp).call((0..3).map(|x| TracedOpInputs { x }).collect()).unwrap();
        TracedOp.call(TracedOpInputs { x: 10 }).unwrap();
    });
    let trace = xcs::take_trace();
    let ours: Vec<&xcs::TraceEvent> = trace
        .events()
        .iter()
        .filter(|e| e.operator == "traced_op")
        .collect();
    assert_eq!(ours.len(), 5, "{ours:#?}");
    let mut indices: Vec<usize> = ours.iter().filter_map(|e| e.index).collect();
    indices.sort_unstable();
    assert_eq!(
        indices,
        vec![0, 1, 2],
        "every vmap item is recorded with its index"
    );
    assert!(ours.iter().all(|e| !e.thread.is_empty()));
    assert_eq!(
        ours.iter()
            .filter(|e| e.outcome == xcs::Outcome::CacheHit)
            .count(),
        1
    );
    let summary = trace.summary();
    let stats = summary.get("traced_op").expect("per-operator stats");
    assert_eq!(stats.count, 5);
    assert!(stats.total >= stats.max && stats.max >= stats.mean);
    assert_eq!(stats.count_of(xcs::Outcome::CacheHit), 1);
}

#[test]
fn tracing_off_creates_no_xcs_spans() {
    let _s = serial();
    let spans = Arc::new(Mutex::new(Vec::new()));
    let recorder = span_recorder::Recorder {
        spans: spans.clone(),
        next: AtomicU64::new(0),
    };
    tracing::subscriber::with_default(recorder, || {
        TracedOp.call(TracedOpInputs { x: 1 }).unwrap();
        vmap(TracedOp).call(vec![TracedOpInputs { x: 2 }]).unwrap();
    });
    let spans = common::lock(&spans).clone();
    assert!(
        spans.iter().all(|(target, _)| !target.starts_with("xcs")),
        "{spans:?}"
    );
}
