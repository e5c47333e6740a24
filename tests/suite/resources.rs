//! Resources: `Operator::resource`, `set_resource_limits`, admission shared by every operator,
//! thread, task and batch on a resource, rate-limited answers, `resource_stats`.
//!
//! Each test uses resources of its own name (the registry is process-wide).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[cfg(feature = "tokio")]
use xcs::AsyncOperator;
use xcs::{Operator, ResourceLimits, Usage, XcsError, execution_options, pmap, vmap};

/// Counts bodies running at once, and the most ever.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    most: AtomicUsize,
    runs: AtomicUsize,
}

impl Gauge {
    fn enter(&self) -> GaugeGuard<'_> {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        self.runs.fetch_add(1, Ordering::SeqCst);
        GaugeGuard(self)
    }
}

struct GaugeGuard<'a>(&'a Gauge);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A sync operator on `resource` that holds its place for `hold`.
struct Caller {
    name: &'static str,
    resource: &'static str,
    hold: Duration,
    tokens: u64,
    gauge: Arc<Gauge>,
}

impl Operator for Caller {
    type Input = u64;
    type Output = u64;

    fn forward(&self, input: u64) -> Result<u64, XcsError> {
        let _in = self.gauge.enter();
        std::thread::sleep(self.hold);
        xcs::record_usage(Usage {
            input_tokens: self.tokens,
            output_tokens: 1,
            cost: 0.0,
        });
        Ok(input)
    }

    fn name(&self) -> &str {
        self.name
    }

    fn resource(&self) -> Option<&str> {
        Some(self.resource)
    }

    fn estimate(&self, _: &u64) -> Usage {
        Usage {
            input_tokens: self.tokens,
            output_tokens: 1,
            cost: 0.0,
        }
    }
}

fn caller(name: &'static str, resource: &'static str, hold_ms: u64, gauge: &Arc<Gauge>) -> Caller {
    Caller {
        name,
        resource,
        hold: Duration::from_millis(hold_ms),
        tokens: 10,
        gauge: Arc::clone(gauge),
    }
}

#[test]
fn two_operators_on_one_resource_share_its_places_across_threads_and_batches() {
    let resource = "res_shared_places";
    xcs::set_resource_limits(resource, &ResourceLimits::new().max_in_flight(2)).unwrap();
    let gauge = Arc::new(Gauge::default());
    let a = Arc::new(caller("res_shared_a", resource, 10, &gauge));
    let b = Arc::new(caller("res_shared_b", resource, 10, &gauge));
    std::thread::scope(|s| {
        let a1 = Arc::clone(&a);
        s.spawn(move || execution_options!(max_workers = 8 => vmap(a1).call((0..12).collect())));
        s.spawn(
            || execution_options!(max_workers = 8 => vmap(Arc::clone(&b)).call((0..12).collect())),
        );
        s.spawn(|| pmap(Arc::clone(&a), 4).call((0..8).collect()));
    });
    assert_eq!(gauge.runs.load(Ordering::SeqCst), 32);
    assert!(gauge.most.load(Ordering::SeqCst) <= 2, "{:?}", gauge.most);
    let stats = xcs::resource_stats(resource).unwrap();
    assert_eq!(stats.requests, 32);
    assert_eq!((stats.in_flight, stats.waiting), (0, 0));
    assert_eq!(stats.input_tokens, 320);
    assert_eq!(stats.output_tokens, 32);
}

#[test]
fn requests_per_minute_spreads_starts() {
    let resource = "res_rpm";
    // 1 200 a minute: 20 a second, a burst of about one second's worth.
    xcs::set_resource_limits(
        resource,
        &ResourceLimits::new().requests_per_minute(1_200.0),
    )
    .unwrap();
    let gauge = Arc::new(Gauge::default());
    let op = Arc::new(caller("res_rpm_op", resource, 0, &gauge));
    let started = Instant::now();
    execution_options!(max_workers = 8 => vmap(op).call((0..40).collect())).unwrap();
    // 40 starts at 20 a second after a burst of 20: at least one second.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(gauge.runs.load(Ordering::SeqCst), 40);
}

#[test]
fn tokens_per_minute_weighs_each_call_by_its_estimate() {
    let resource = "res_tpm";
    // 240 000 tokens a minute: 4 000 a second; each call is estimated at 1 001 tokens.
    xcs::set_resource_limits(
        resource,
        &ResourceLimits::new().tokens_per_minute(240_000.0),
    )
    .unwrap();
    let gauge = Arc::new(Gauge::default());
    let op = Arc::new(Caller {
        tokens: 1_000,
        ..caller("res_tpm_op", resource, 0, &gauge)
    });
    let started = Instant::now();
    execution_options!(max_workers = 8 => vmap(op).call((0..8).collect())).unwrap();
    // Four fit in the first second's bucket; the other four come a quarter second apart.
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_rate_limited_answer_pauses_every_caller_of_the_resource() {
    let resource = "res_pause";
    xcs::set_resource_limits(
        resource,
        &ResourceLimits::new().requests_per_minute(60_000.0),
    )
    .unwrap();
    struct Limited;
    impl Operator for Limited {
        type Input = ();
        type Output = ();
        fn forward(&self, _: ()) -> Result<(), XcsError> {
            Err(XcsError::rate_limited(
                "res_pause_429",
                Some(Duration::from_millis(300)),
            ))
        }
        fn name(&self) -> &str {
            "res_pause_429"
        }
        fn resource(&self) -> Option<&str> {
            Some("res_pause")
        }
    }
    let answered = Instant::now();
    let error = Limited.call(()).unwrap_err();
    assert!(error.is_rate_limited());
    // Another operator on the resource waits out the pause before its body starts.
    let gauge = Arc::new(Gauge::default());
    let other = caller("res_pause_other", resource, 0, &gauge);
    other.call(1).unwrap();
    assert!(
        answered.elapsed() >= Duration::from_millis(280),
        "{:?}",
        answered.elapsed()
    );
    let stats = xcs::resource_stats(resource).unwrap();
    assert_eq!(stats.rate_limited, 1);
    assert!(stats.rate_factor < 1.0, "{stats:?}");
}

#[test]
fn waiting_for_a_resource_counts_against_the_deadline() {
    let resource = "res_deadline";
    xcs::set_resource_limits(resource, &ResourceLimits::new().max_in_flight(1)).unwrap();
    let gauge = Arc::new(Gauge::default());
    let slow = caller("res_deadline_slow", resource, 400, &gauge);
    let quick = caller("res_deadline_quick", resource, 0, &gauge);
    std::thread::scope(|s| {
        let holder = s.spawn(|| slow.call(1));
        // Let the slow call take the only place.
        while gauge.runs.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        let result = execution_options!(timeout_seconds = 0.1 => quick.call(2));
        assert!(
            matches!(result, Err(XcsError::Timeout { .. })),
            "{result:?}"
        );
        assert!(holder.join().unwrap().is_ok());
    });
    // The quick call's body never ran.
    assert_eq!(gauge.runs.load(Ordering::SeqCst), 1);
}

#[cfg(feature = "tokio")]
#[test]
fn async_calls_wait_for_a_resource_without_blocking_a_thread() {
    let resource = "res_async";
    xcs::set_resource_limits(resource, &ResourceLimits::new().max_in_flight(2)).unwrap();
    struct Llm(Arc<Gauge>);
    impl AsyncOperator for Llm {
        type Input = u64;
        type Output = u64;
        async fn forward(&self, i: u64) -> Result<u64, XcsError> {
            let _in = self.0.enter();
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(i)
        }
        fn name(&self) -> &str {
            "res_async_op"
        }
        fn resource(&self) -> Option<&str> {
            Some("res_async")
        }
    }
    let gauge = Arc::new(Gauge::default());
    // One thread: a wait that blocked it would never end.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = runtime
        .block_on(execution_options!(max_workers = 64 => async {
            vmap(Llm(Arc::clone(&gauge))).call((0..10).collect()).await
        }))
        .unwrap();
    assert_eq!(out, (0..10).collect::<Vec<_>>());
    assert_eq!(gauge.most.load(Ordering::SeqCst), 2);
    assert_eq!(xcs::resource_stats(resource).unwrap().requests, 10);
}

#[test]
fn stats_and_bad_limits() {
    assert!(xcs::resource_stats("res_never_named").is_none());
    for limits in [
        ResourceLimits::new().requests_per_minute(0.0),
        ResourceLimits::new().tokens_per_minute(-5.0),
        ResourceLimits::new().requests_per_minute(f64::NAN),
        ResourceLimits::new().max_in_flight(0),
    ] {
        let error = xcs::set_resource_limits("res_bad", &limits).unwrap_err();
        assert!(matches!(error, XcsError::InvalidValue { .. }), "{error:?}");
    }
    assert!(ResourceLimits::from_pairs([("requests_per_minit", "5")]).is_err());
    let limits =
        ResourceLimits::from_pairs([("requests_per_minute", "500"), ("max_in_flight", "4")])
            .unwrap();
    xcs::set_resource_limits("res_from_pairs", &limits).unwrap();
    let stats = xcs::resource_stats("res_from_pairs").unwrap();
    assert_eq!(stats.limits.max_in_flight, Some(4));
    assert_eq!(stats.requests, 0);
}
