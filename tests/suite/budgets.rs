//! Usage and budgets: `record_usage`, `Operator::estimate`, `token_budget` / `cost_budget`,
//! `spent()`, and usage in traces.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[cfg(feature = "tokio")]
use xcs::AsyncOperator;
use xcs::{Operator, Usage, XcsError, execution_options, vmap};

/// Records `input` tokens (or, with `Some(n)` as its second field, `n`), estimating `estimate`.
struct Model {
    name: &'static str,
    estimate: u64,
    records: Option<u64>,
    runs: Arc<AtomicUsize>,
}

impl Model {
    fn new(name: &'static str, estimate: u64, records: Option<u64>) -> Self {
        Model {
            name,
            estimate,
            records,
            runs: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl Operator for Model {
    type Input = u64;
    type Output = u64;

    fn forward(&self, input: u64) -> Result<u64, XcsError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if let Some(tokens) = self.records {
            xcs::record_usage(Usage {
                input_tokens: tokens,
                output_tokens: 0,
                cost: tokens as f64 / 1000.0,
            });
        }
        Ok(input)
    }

    fn name(&self) -> &str {
        self.name
    }

    fn estimate(&self, _: &u64) -> Usage {
        Usage {
            input_tokens: self.estimate,
            output_tokens: 0,
            cost: self.estimate as f64 / 1000.0,
        }
    }
}

#[test]
fn what_a_call_records_is_spent_and_a_call_that_records_nothing_spends_its_estimate() {
    let recorded = Model::new("budget_recorded", 50, Some(30));
    let silent = Model::new("budget_silent", 20, None);
    execution_options!(token_budget = 1_000 => {
        assert_eq!(recorded.call(1).unwrap(), 1);
        assert_eq!(xcs::spent().tokens(), 30);
        silent.call(2).unwrap();
        assert_eq!(xcs::spent().tokens(), 50);
        assert!((xcs::spent().cost - 0.05).abs() < 1e-9);
    });
    // Outside any budget scope nothing is spent.
    assert_eq!(xcs::spent(), Usage::default());
}

#[test]
fn a_call_whose_estimate_does_not_fit_fails_at_once_and_never_runs() {
    let model = Model::new("budget_refused", 60, Some(60));
    let result = execution_options!(token_budget = 100, max_retries = 3 => {
        model.call(1).unwrap();
        model.call(2)
    });
    match result {
        Err(XcsError::BudgetExceeded {
            operator,
            budget,
            limit,
            spent,
            ..
        }) => {
            assert_eq!(operator, "budget_refused");
            assert_eq!(budget, "token_budget");
            assert_eq!((limit, spent), (100.0, 60.0));
        }
        other => panic!("expected BudgetExceeded, got {other:?}"),
    }
    // Never retried, never run: one run in all.
    assert_eq!(model.runs.load(Ordering::SeqCst), 1);
}

#[test]
fn cost_budgets_hold_like_token_budgets() {
    let model = Model::new("budget_cost", 100, Some(100));
    let result = execution_options!(cost_budget = 0.25 => {
        (0..5).map(|i| model.call(i)).collect::<Result<Vec<_>, _>>()
    });
    assert!(
        matches!(&result, Err(XcsError::BudgetExceeded { budget, .. }) if *budget == "cost_budget"),
        "{result:?}"
    );
    assert_eq!(model.runs.load(Ordering::SeqCst), 2);
}

#[test]
fn nested_budget_scopes_only_narrow() {
    let model = Model::new("budget_nested", 40, Some(40));
    execution_options!(token_budget = 100 => {
        // A larger inner budget does not widen the outer one.
        let inner = execution_options!(token_budget = 1_000 => {
            (0..5).map(|i| model.call(i)).collect::<Result<Vec<_>, _>>()
        });
        assert!(matches!(inner, Err(XcsError::BudgetExceeded { limit, .. }) if limit == 100.0));
        assert_eq!(xcs::spent().tokens(), 80);
        assert_eq!(xcs::get_execution_options().token_budget, Some(100));
        // A smaller one narrows.
        execution_options!(token_budget = 10 => {
            assert!(model.call(9).is_err());
            assert_eq!(xcs::get_execution_options().token_budget, Some(10));
        });
    });
}

#[test]
fn a_batch_under_a_budget_is_never_over_it_and_fails_with_the_refused_item() {
    // Estimates that bound usage: 10 estimated, 7 to 10 recorded; 200 items of which ~25 fit.
    struct Varied;
    impl Operator for Varied {
        type Input = u64;
        type Output = u64;
        fn forward(&self, i: u64) -> Result<u64, XcsError> {
            std::thread::sleep(std::time::Duration::from_millis(1));
            xcs::record_usage(Usage {
                input_tokens: 7 + i % 4,
                ..Usage::default()
            });
            Ok(i)
        }
        fn name(&self) -> &str {
            "budget_batch"
        }
        fn estimate(&self, _: &u64) -> Usage {
            Usage {
                input_tokens: 10,
                ..Usage::default()
            }
        }
    }
    let (result, spent) = execution_options!(token_budget = 250, max_workers = 16 => {
        let result = vmap(Varied).call((0..200).collect());
        (result, xcs::spent())
    });
    assert!(spent.tokens() <= 250, "spent {spent:?}");
    assert!(spent.tokens() >= 150, "spent {spent:?}");
    match result {
        // Some item was refused; which one depends on which worker took which items.
        Err(XcsError::BudgetExceeded { index: Some(i), .. }) => assert!(i < 200),
        other => panic!("expected BudgetExceeded at an index, got {other:?}"),
    }
}

#[cfg(feature = "tokio")]
#[test]
fn async_calls_at_256_concurrency_never_exceed_a_budget() {
    struct Llm;
    impl AsyncOperator for Llm {
        type Input = u64;
        type Output = u64;
        async fn forward(&self, i: u64) -> Result<u64, XcsError> {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            xcs::record_usage(Usage {
                input_tokens: 5 + i % 6,
                output_tokens: 0,
                cost: 0.0,
            });
            Ok(i)
        }
        fn name(&self) -> &str {
            "budget_async"
        }
        fn estimate(&self, _: &u64) -> Usage {
            Usage {
                input_tokens: 10,
                ..Usage::default()
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (result, spent) = runtime.block_on(execution_options!(
        token_budget = 2_000, max_workers = 256 => async {
            let result = vmap(Llm).call((0..1_000).collect()).await;
            (result, xcs::spent())
        }
    ));
    assert!(spent.tokens() <= 2_000, "spent {spent:?}");
    assert!(
        matches!(result, Err(XcsError::BudgetExceeded { index: Some(_), .. })),
        "{result:?}"
    );
}

#[test]
fn usage_shows_in_trace_events_and_the_summary() {
    let _lock = crate::common::global_lock();
    let model = Model::new("budget_traced", 0, Some(12));
    let _ = xcs::take_trace();
    execution_options!(trace_execution = true => {
        model.call(1).unwrap();
        model.call(2).unwrap();
    });
    let trace = xcs::take_trace();
    let events: Vec<_> = trace
        .events()
        .iter()
        .filter(|e| e.operator == "budget_traced")
        .collect();
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|e| e.usage.map(|u| u.input_tokens) == Some(12))
    );
    let summary = trace.summary();
    assert_eq!(summary.get("budget_traced").unwrap().usage.tokens(), 24);
    assert!(summary.to_string().contains("tokens"));
}
