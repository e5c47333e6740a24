//! Warnings given once per operator reach someone: the `tracing` subscriber when one is
//! installed, standard error (`xcs: warning: …`) when none is.
//!
//! Each case runs in a child process — this test binary again, running one `child_…` test with
//! `WARNINGS_CASE` set — so that its standard error can be read and no subscriber is installed
//! unless the case installs one. Without the variable, the `child_…` tests do nothing.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use xcs::{Operator, XcsError, execution_options};

const CASE: &str = "WARNINGS_CASE";

/// Runs test `case` in a child process and returns its standard error.
fn stderr_of(case: &str) -> String {
    common::rerun(module_path!(), case, &[(CASE, case.as_ref())]).1
}

fn is_child(case: &str) -> bool {
    std::env::var(CASE).is_ok_and(|value| value == case)
}

/// The lines of `stderr` that are xcs warnings mentioning `needle`.
fn warnings<'a>(stderr: &'a str, needle: &str) -> Vec<&'a str> {
    stderr
        .lines()
        .filter(|line| line.starts_with("xcs: warning: ") && line.contains(needle))
        .collect()
}

/// An input that is not a standard type: a hand-written operator taking it runs uncached.
#[derive(Debug)]
struct Opaque(u32);

struct Uncacheable;
impl Operator for Uncacheable {
    type Input = Opaque;
    type Output = u32;
    fn forward(&self, x: Opaque) -> Result<u32, XcsError> {
        Ok(x.0 + 1)
    }
    fn name(&self) -> &str {
        "uncacheable_input"
    }
}

fn call_uncacheable_twice() {
    execution_options!(enable_caching = true => {
        assert_eq!(Uncacheable.call(Opaque(1)).unwrap(), 2);
        assert_eq!(Uncacheable.call(Opaque(1)).unwrap(), 2);
    });
}

#[test]
fn child_uncacheable_without_subscriber() {
    if is_child("child_uncacheable_without_subscriber") {
        call_uncacheable_twice();
    }
}

#[test]
fn without_a_subscriber_a_warning_goes_to_standard_error_once() {
    let stderr = stderr_of("child_uncacheable_without_subscriber");
    let lines = warnings(&stderr, "`uncacheable_input` runs uncached");
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("enable_caching"), "{stderr}");
}

#[test]
fn child_uncacheable_without_caching() {
    if is_child("child_uncacheable_without_caching") {
        // Per-call options other than caching (the call goes through the plan): nothing is
        // cached, so nothing is said about caching.
        execution_options!(max_retries = 1, timeout_seconds = 30 => {
            assert_eq!(Uncacheable.call(Opaque(1)).unwrap(), 2);
        });
    }
}

#[test]
fn without_caching_an_unkeyable_input_is_not_warned_about() {
    let stderr = stderr_of("child_uncacheable_without_caching");
    assert!(warnings(&stderr, "runs uncached").is_empty(), "{stderr}");
    // The retries it cannot make are said (its input cannot be copied either).
    assert_eq!(
        warnings(&stderr, "runs without retries").len(),
        1,
        "{stderr}"
    );
}

/// Counts WARN events of target `xcs`.
struct CountWarnings(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountWarnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        if meta.target() == "xcs" && *meta.level() == tracing::Level::WARN {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn child_uncacheable_with_subscriber() {
    if is_child("child_uncacheable_with_subscriber") {
        use tracing_subscriber::layer::SubscriberExt;
        let count = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry().with(CountWarnings(Arc::clone(&count)));
        tracing::subscriber::set_global_default(subscriber).unwrap();
        call_uncacheable_twice();
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "one warning, to the subscriber"
        );
    }
}

#[test]
fn with_a_subscriber_the_warning_goes_to_it_instead() {
    let stderr = stderr_of("child_uncacheable_with_subscriber");
    assert!(
        warnings(&stderr, "uncacheable_input").is_empty(),
        "{stderr}"
    );
}

/// A sync operator that only counts.
#[cfg(feature = "tokio")]
struct Count(&'static str);

#[cfg(feature = "tokio")]
impl Operator for Count {
    type Input = u32;
    type Output = u32;
    fn forward(&self, x: u32) -> Result<u32, XcsError> {
        Ok(x)
    }
    fn name(&self) -> &str {
        self.0
    }
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn child_sync_call_on_a_runtime_thread() {
    if is_child("child_sync_call_on_a_runtime_thread") {
        use xcs::AsyncOperator;
        // Called from async code: said once, however often.
        for x in 0..3 {
            assert_eq!(Count("sync_in_async").call(x).unwrap(), x);
        }
        assert_eq!(
            xcs::vmap(Count("sync_batch_item"))
                .call(vec![1, 2])
                .unwrap(),
            [1, 2]
        );
        // On tokio's blocking threads, where it belongs: nothing to say.
        let out = xcs::blocking(Count("sync_on_blocking_thread"))
            .call(4)
            .await;
        assert_eq!(out.unwrap(), 4);
    }
}

#[cfg(feature = "tokio")]
#[test]
fn a_sync_call_from_async_code_is_warned_about_once() {
    let stderr = stderr_of("child_sync_call_on_a_runtime_thread");
    let lines = warnings(&stderr, "`sync_in_async`");
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("xcs::blocking(op)"), "{stderr}");
    assert!(lines[0].contains("async operator"), "{stderr}");
    // The batch is warned about as the batch.
    assert_eq!(
        warnings(&stderr, "`vmap(sync_batch_item)`").len(),
        1,
        "{stderr}"
    );
    assert!(
        warnings(&stderr, "sync_on_blocking_thread").is_empty(),
        "{stderr}"
    );
}

#[test]
fn child_sync_call_off_any_runtime() {
    if is_child("child_sync_call_off_any_runtime") {
        struct Plain;
        impl Operator for Plain {
            type Input = u32;
            type Output = u32;
            fn forward(&self, x: u32) -> Result<u32, XcsError> {
                Ok(x)
            }
            fn name(&self) -> &str {
                "plain_sync"
            }
        }
        assert_eq!(Plain.call(1).unwrap(), 1);
        assert_eq!(xcs::vmap(Plain).call(vec![1, 2]).unwrap(), [1, 2]);
    }
}

#[test]
fn a_sync_call_off_any_runtime_is_not_warned_about() {
    let stderr = stderr_of("child_sync_call_off_any_runtime");
    assert!(!stderr.contains("xcs: warning"), "{stderr}");
}

/// A body that builds and drops a tokio runtime, which tokio refuses on a runtime thread.
#[cfg(feature = "tokio")]
struct OwnRuntime;

#[cfg(feature = "tokio")]
impl Operator for OwnRuntime {
    type Input = ();
    type Output = ();
    fn forward(&self, (): ()) -> Result<(), XcsError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|error| XcsError::operator("own_runtime", error))?;
        drop(runtime);
        Ok(())
    }
    fn name(&self) -> &str {
        "own_runtime"
    }
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn a_runtime_dropped_in_async_code_panics_with_the_hint() {
    match OwnRuntime.call(()) {
        Err(XcsError::Panicked { message, .. }) => {
            assert!(message.contains("Cannot drop a runtime"), "{message}");
            assert!(message.contains("xcs::blocking(op)"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Where blocking is allowed, the same body is fine.
    use xcs::AsyncOperator;
    assert_eq!(xcs::blocking(OwnRuntime).call(()).await.ok(), Some(()));
}
