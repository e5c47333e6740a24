//! `#[xcs::operator]` on an `async fn`: an `AsyncOperator` with the same inputs
//! struct, `batch` and fallible forms as a sync one.
#![cfg(feature = "tokio")]

use std::error::Error as _;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use xcs::prelude::*;

/// Shouts, after yielding to the runtime.
#[xcs::operator]
pub async fn shout(text: String, times: usize) -> String {
    tokio::task::yield_now().await;
    text.to_uppercase().repeat(times)
}

#[tokio::test]
async fn the_function_stays_an_async_fn() {
    assert_eq!(shout("a".into(), 2).await, "AA");
}

#[tokio::test]
async fn the_operator_is_called_directly() -> Result<(), XcsError> {
    assert_eq!(Shout.name(), "shout");
    assert_eq!(Shout.call(ShoutInputs::new("hi".into(), 2)).await?, "HIHI");
    let inputs = ShoutInputs {
        text: "direct".into(),
        times: 1,
    };
    assert_eq!(Shout.forward(inputs).await?, "DIRECT");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmap_and_pmap_run_it() -> Result<(), XcsError> {
    let batch = ShoutInputs::batch(vec!["a", "b", "c"], 2)?;
    assert_eq!(vmap(Shout).call(batch.clone()).await?, ["AA", "BB", "CC"]);
    assert_eq!(pmap(Shout, 2).call(batch).await?, ["AA", "BB", "CC"]);
    let nested = vmap(vmap(Shout))
        .call(vec![
            ShoutInputs::batch(vec!["x"], 1)?,
            ShoutInputs::batch(vec!["y", "z"], 3)?,
        ])
        .await?;
    assert_eq!(nested, [vec!["X"], vec!["YYY", "ZZZ"]]);
    Ok(())
}

/// The `max_workers` in force before and after an `.await` that may resume on another thread.
#[xcs::operator]
async fn observe(millis: u64) -> (Option<usize>, Option<usize>) {
    let before = get_execution_options().max_workers.map(NonZeroUsize::get);
    tokio::time::sleep(Duration::from_millis(millis)).await;
    let after = get_execution_options().max_workers.map(NonZeroUsize::get);
    (before, after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_are_seen_inside_after_an_await() -> Result<(), XcsError> {
    let seen = execution_options!(max_workers = 3 => async {
        Observe.call(ObserveInputs::new(5)).await
    })
    .await?;
    assert_eq!(seen, (Some(3), Some(3)));

    let batch = ObserveInputs::batch(vec![1, 5, 2, 8])?;
    let items =
        execution_options!(max_workers = 2 => async { vmap(Observe).call(batch).await }).await?;
    assert!(
        items.iter().all(|seen| *seen == (Some(2), Some(2))),
        "{items:?}"
    );
    // Outside the scope, nothing leaked.
    assert_eq!(Observe.call(ObserveInputs::new(1)).await?, (None, None));
    Ok(())
}

// --- fallible functions -----------------------------------------------------------------------

#[xcs::operator]
async fn parse_later(text: String) -> Result<u64, std::num::ParseIntError> {
    tokio::task::yield_now().await;
    text.parse()
}

#[xcs::operator]
async fn refuse_later(code: u16) -> Result<u64, XcsError> {
    tokio::task::yield_now().await;
    Err(XcsError::permanent("refuse_later", format!("code {code}")))
}

#[tokio::test]
async fn errors_become_operator_errors_with_the_source() {
    assert_eq!(
        ParseLater
            .call(ParseLaterInputs::new("42".into()))
            .await
            .unwrap(),
        42
    );
    let error = ParseLater
        .call(ParseLaterInputs::new("x".into()))
        .await
        .unwrap_err();
    assert!(matches!(&error, XcsError::Operator { operator, .. } if operator == "parse_later"));
    let source = error.source().unwrap();
    assert!(source.downcast_ref::<std::num::ParseIntError>().is_some());

    let error = vmap(ParseLater)
        .call(ParseLaterInputs::batch(vec!["1", "x"]).unwrap())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("parse_later"), "{error}");
}

#[tokio::test]
async fn an_xcs_error_passes_through_and_is_not_retried() {
    let error = execution_options!(max_retries = 3 => async {
        RefuseLater.call(RefuseLaterInputs::new(400)).await
    })
    .await
    .unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert!(error.to_string().contains("refuse_later"), "{error}");
}

// --- retries, deadlines, versions -------------------------------------------------------------

static FLAKY_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

#[xcs::operator]
async fn flaky_later(failures: u32) -> Result<u32, String> {
    tokio::task::yield_now().await;
    let attempt = FLAKY_ATTEMPTS.fetch_add(1, Ordering::SeqCst) + 1;
    if attempt <= failures {
        Err(format!("attempt {attempt} failed"))
    } else {
        Ok(attempt)
    }
}

#[tokio::test]
async fn async_generated_operators_are_retried() {
    assert!(FlakyLater.__xcs_clone_input().is_some());
    let output = execution_options!(max_retries = 2 => async {
        FlakyLater.call(FlakyLaterInputs::new(2)).await
    })
    .await;
    assert_eq!(output.unwrap(), 3, "succeeds on the third attempt");
    assert_eq!(FLAKY_ATTEMPTS.load(Ordering::SeqCst), 3);
}

static NAP_FINISHED: AtomicBool = AtomicBool::new(false);

#[xcs::operator(version = 2)]
async fn long_nap(millis: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    NAP_FINISHED.store(true, Ordering::SeqCst);
    millis
}

#[tokio::test]
async fn the_body_is_dropped_at_the_deadline() {
    let started = Instant::now();
    let error = execution_options!(timeout_seconds = 0.05 => async {
        LongNap.call(LongNapInputs::new(5_000)).await
    })
    .await
    .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(!NAP_FINISHED.load(Ordering::SeqCst));
}

#[test]
fn versions_and_cache_support() {
    assert_eq!(LongNap.__xcs_version(), 2);
    assert_eq!(Shout.__xcs_version(), 0);
    assert_eq!(AsyncOperator::__xcs_version(&vmap(LongNap)), 2);
    assert!(Shout.__xcs_cache_support().is_some());
    assert!(Observe.__xcs_cache_support().is_some());
}
