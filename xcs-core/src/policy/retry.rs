//! `max_retries`: which failures run again, and how long to wait first.
//!
//! Retryable: every [`XcsError::Operator`] except those made with [`XcsError::permanent`].
//! Panics, timeouts and configuration errors are never retried. The wait before retry `n`
//! (1-based) is an exponential backoff with jitter — about 100 ms, doubling, capped at 10 s —
//! and at least the error's [`retry_after`](XcsError::retry_after) hint. A retry that could not
//! start before the deadline is not attempted: the call returns the last error.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::error::XcsError;

/// Copies an input for another attempt.
pub type CloneInput<I> = fn(&I) -> I;

/// The first backoff.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest backoff.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The wait before retry `retry` (1 for the first retry) after `error`: the backoff with
/// jitter, at least the error's hint.
pub(crate) fn backoff(retry: u32, error: &XcsError) -> Duration {
    let exponent = retry.saturating_sub(1).min(16);
    let base = FIRST_BACKOFF
        .saturating_mul(1u32 << exponent)
        .min(MAX_BACKOFF);
    // "Equal jitter": half the base, plus a random share of the other half, so concurrent
    // callers that failed together spread out but still back off.
    let jittered = base / 2 + base.mul_f64(0.5 * unit_random());
    jittered.max(error.retry_hint().unwrap_or_default())
}

/// Whether retry `retry` (1-based) may run after `error` under `max_retries`, waiting `wait`,
/// before `deadline`.
pub(crate) fn should_retry(
    error: &XcsError,
    retry: u32,
    max_retries: u32,
    wait: Duration,
    deadline: Option<Instant>,
) -> bool {
    retry <= max_retries
        && error.is_retryable()
        && deadline.is_none_or(|at| Instant::now() + wait < at)
}

/// A number in `[0, 1)` from a per-thread xorshift generator (jitter needs spread, not
/// cryptographic quality).
fn unit_random() -> f64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            use std::hash::{BuildHasher, Hasher};
            // Randomly seeded per thread by the standard library.
            std::collections::hash_map::RandomState::new().build_hasher().finish() | 1
        });
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let error = XcsError::operator("op", "flaky");
        for retry in 1..=20 {
            let base = FIRST_BACKOFF
                .saturating_mul(1 << (retry - 1).min(16))
                .min(MAX_BACKOFF);
            let wait = backoff(retry, &error);
            assert!(wait >= base / 2 && wait <= base, "retry {retry}: {wait:?}");
        }
        let hinted = XcsError::retry_after("op", Duration::from_secs(3), "429");
        assert!(backoff(1, &hinted) >= Duration::from_secs(3));
    }

    #[test]
    fn only_retryable_errors_within_budget_and_deadline() {
        let flaky = XcsError::operator("op", "flaky");
        let wait = Duration::from_millis(10);
        assert!(should_retry(&flaky, 1, 2, wait, None));
        assert!(should_retry(&flaky, 2, 2, wait, None));
        assert!(!should_retry(&flaky, 3, 2, wait, None));
        assert!(!should_retry(
            &XcsError::permanent("op", "bad key"),
            1,
            2,
            wait,
            None
        ));
        let timeout = XcsError::Timeout {
            operator: "op".into(),
            index: None,
            timeout: Duration::from_secs(1),
        };
        assert!(!should_retry(&timeout, 1, 2, wait, None));
        let soon = Some(Instant::now() + Duration::from_millis(5));
        assert!(!should_retry(&flaky, 1, 2, wait, soon));
    }
}
