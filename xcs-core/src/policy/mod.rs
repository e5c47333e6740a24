//! What one call goes through, in one fixed order, the same for sync and async calls:
//!
//! 1. **deadline** — a call that cannot start before its deadline is a timeout;
//! 2. **cache** ([`memo`]) — an input seen before is answered without running the body (memory,
//!    then the `cache_dir` store, holding the single-flight claim);
//! 3. **budget** ([`budget`]) — the call is admitted only if its estimate fits in what its
//!    budget scopes have left, and is charged what it recorded when it ends;
//! 4. **rate limit** ([`rate`]) — each attempt waits for its start slot (the wait counts
//!    against the deadline);
//! 5. **resource** ([`resource`]) — each attempt waits for its operator's resource (a place in
//!    flight, its share of the request and token rates), charged by the call's estimate; the
//!    resource's circuit breaker ([`breaker`]) refuses it at once while open, and hears how it
//!    ended;
//! 6. **trace** — each attempt is an event carrying its attempt number, its usage and its wait;
//! 7. **body**, with panics caught, recording its usage on a meter of its own;
//! 8. **hedge** ([`hedge`]) — an attempt still running after `hedge_after` is raced by a second
//!    one on a copy of its input (admitted as in 3–5), once per call; the first success answers;
//! 9. **retry** ([`retry`]) — a retryable failure runs again after a backoff, up to
//!    `max_retries` more times, never past the deadline (no wait that ends past it starts an
//!    attempt).
//!
//! The modules here hold the rules; `call` (threads) and `call_async` (futures) only differ in
//! how they wait, and the cluster caller's side runs the same plan up to the body.

pub(crate) mod breaker;
pub(crate) mod budget;
pub(crate) mod deadline;
pub(crate) mod hedge;
pub(crate) mod memo;
pub(crate) mod plan;
pub(crate) mod rate;
pub(crate) mod resource;
pub(crate) mod retry;

use crate::options::ExecutionOptions;

/// Whether a call under `options` (inside a call with a deadline, or not) runs the call plan at
/// all: `false` is the fast path, the body alone with its panics caught. The one rule that the
/// sync fast path, the async lean path and each thread's cached flag read.
#[inline]
pub(crate) fn needs_plan(options: &ExecutionOptions, under_deadline: bool) -> bool {
    under_deadline || options.has_call_policy() || options.timeout_seconds.is_some()
}

/// Whether a call of an operator that uses `resource` takes the fast path, given whether the
/// options in force leave it lean (`options_lean`: not [`needs_plan`], or the thread's cached
/// answer to it): an operator with a resource always goes through the plan, which waits for
/// it. The one rule that the sync fast path, the async lean path and a batch's lean loop read.
#[inline(always)]
pub(crate) fn lean(options_lean: bool, resource: Option<&str>) -> bool {
    options_lean && resource.is_none()
}
