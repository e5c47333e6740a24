//! How one async call runs: the same policies as a sync call (deadline, cache, trace, panics),
//! with the body as a future that is dropped — really cancelled — at the deadline.
//!
//! The options are read when the call is *made* (`call` is a plain function returning the
//! future), and the body runs inside a [`WithOptions`] that puts them back in force around each
//! poll, so they hold after every `.await` on whichever thread polls it.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use futures_util::future::Either;

use crate::cache;
use crate::call;
use crate::deadline::{self, CallContext, CancelFlag};
use crate::error::XcsError;
use crate::operator::{AsyncOperator, Operator};
use crate::options::ExecutionOptions;
use crate::policy::{
    self,
    memo::{self, Claimed},
};
use crate::scope::{self, get_execution_options};
use crate::scoped::{Snapshot, WithOptions};
use crate::trace::{self, Outcome};
use crate::util::{self, drop_quietly};

/// `AsyncOperator::call`: the caller's options, deadline and trace parent, read now.
pub(crate) fn call<'a, O: AsyncOperator + ?Sized>(
    op: &'a O,
    input: O::Input,
) -> impl Future<Output = Result<O::Output, XcsError>> + Send + 'a {
    invoke(op, input, None, Arc::new(Snapshot::now()))
}

/// One async call (or batch item, with `index`) under `snapshot`.
///
/// The common case — no deadline, caching, tracing, retries or rate limit — is a small future:
/// the body with panics caught, inside the poll-scoped options (shared with the batch's other
/// items, not copied). Anything else takes the full policy path, boxed so that the small case
/// stays small.
pub(crate) fn invoke<'a, O: AsyncOperator + ?Sized>(
    op: &'a O,
    input: O::Input,
    index: Option<usize>,
    snapshot: Arc<Snapshot>,
) -> impl Future<Output = Result<O::Output, XcsError>> + Send + 'a {
    if is_lean(&snapshot) && !snapshot.context.is_cancelled() {
        Either::Left(WithOptions::adopt(snapshot, lean(op, input, index)))
    } else {
        Either::Right(Box::pin(invoke_with(op, input, index, snapshot)))
    }
}

/// Whether calls under `snapshot` take the lean path of [`invoke`] (unless their context has
/// been cancelled): no policy applies. The same for every item of a batch.
pub(crate) fn is_lean(snapshot: &Snapshot) -> bool {
    !snapshot.options.has_call_policy()
        && snapshot.options.timeout_seconds.is_none()
        && snapshot.context.deadline.is_none()
}

/// Item `index` of a batch running under `snapshot`: [`invoke`] for a future that is only ever
/// polled with `snapshot` in force already (inside its batch's scoped future), so the lean case
/// does not enter it again on every poll. `lean` is [`is_lean`] of `snapshot`, read once per
/// batch; the batch has just checked that it has not given up (the items' context is its own).
pub(crate) fn invoke_item<'a, O: AsyncOperator + ?Sized>(
    op: &'a O,
    input: O::Input,
    index: usize,
    snapshot: &Arc<Snapshot>,
    lean: bool,
) -> impl Future<Output = Result<O::Output, XcsError>> + Send + use<'a, O> {
    if lean {
        Either::Left(self::lean(op, input, Some(index)))
    } else {
        Either::Right(Box::pin(invoke_with(
            op,
            input,
            Some(index),
            Arc::clone(snapshot),
        )))
    }
}

/// The lean path: the body, its panics caught.
fn lean<'a, O: AsyncOperator + ?Sized>(
    op: &'a O,
    input: O::Input,
    index: Option<usize>,
) -> impl Future<Output = Result<O::Output, XcsError>> + Send + use<'a, O> {
    AssertUnwindSafe(async move { op.forward(input).await })
        .catch_unwind()
        .map(move |result| {
            result.unwrap_or_else(|payload| Err(util::panicked(op.name(), index, payload)))
        })
}

fn outcome_of<T>(result: &Result<T, XcsError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ok,
        Err(XcsError::Timeout { .. }) => Outcome::Timeout,
        Err(XcsError::Panicked { .. }) => Outcome::Panicked,
        Err(_) => Outcome::Error,
    }
}

/// [`invoke`] with policies: deadline, cache, rate limit, trace, retries.
async fn invoke_with<O: AsyncOperator + ?Sized>(
    op: &O,
    input: O::Input,
    index: Option<usize>,
    snapshot: Arc<Snapshot>,
) -> Result<O::Output, XcsError> {
    let Snapshot {
        options,
        context,
        parent,
        progress,
    } = (*snapshot).clone();
    let name = op.name();
    let now = Instant::now();
    let deadline = call::deadline_for(&options, &context, now);
    if let Some((at, timeout)) = deadline {
        if now >= at || context.is_cancelled() {
            drop_quietly(input);
            if options.trace_execution {
                trace::begin_async(name, index, parent.as_ref()).finish(Outcome::Timeout);
            }
            return Err(util::timeout_error(name, index, timeout));
        }
    }
    let at = deadline.map(|(at, _)| at);
    // The cache, as for sync calls; a wait for a concurrent call with the same input is an
    // `.await`, never a blocked thread.
    let cache = if options.enable_caching {
        op.__xcs_cache_support()
    } else {
        None
    };
    let key = match cache.as_ref().map(|support| support.key(name, &input)) {
        Some(Err(message)) => {
            if options.trace_execution {
                trace::begin_async(name, index, parent.as_ref()).finish(Outcome::Panicked);
            }
            return Err(XcsError::Panicked {
                operator: name.to_owned(),
                index,
                message,
            });
        }
        key => key.and_then(Result::ok),
    };
    let (input, held) = match (&cache, &key) {
        (Some(support), Some(key)) => {
            let lookup = cache::lookup_async(support, key, at, &context.claims).await;
            let timeout = deadline.map(|(_, t)| t).unwrap_or_default();
            let persist = op.persist_support();
            match memo::after_lookup(
                lookup, &options, name, index, *support, persist, input, timeout,
            ) {
                Claimed::Answered(result, outcome) => {
                    if options.trace_execution {
                        trace::begin_async(name, index, parent.as_ref()).finish(outcome);
                    }
                    return result;
                }
                Claimed::Run(input, held) => (input, held),
            }
        }
        _ => (input, None),
    };
    let mut kept = Some(input);
    // The body runs holding the claim: nested calls never wait for it.
    let context = match &held {
        Some(held) => held.context(context),
        None => context,
    };
    let retries = options.max_retries;
    let clone_input = memo::input_cloner(
        &options,
        op.__xcs_clone_input(),
        op.__xcs_retried_by_items(),
        name,
    );
    let mut attempt = 1u32;
    let result = loop {
        let input = match (clone_input, &kept) {
            (Some(clone), Some(original)) if attempt <= retries => clone(original),
            _ => match kept.take() {
                Some(input) => input,
                None => break Err(util::timeout_error(name, index, Default::default())),
            },
        };
        if let Some(rate) = options.rate_limit {
            match policy::rate::reserve(name, rate, at) {
                // Waits without blocking a thread.
                Ok(start) => {
                    tokio::time::sleep_until(start.into()).await;
                    while let Some(wait) = policy::rate::confirm(name, rate) {
                        tokio::time::sleep(wait).await;
                    }
                }
                Err(policy::rate::TooLate) => {
                    drop_quietly(input);
                    let timeout = deadline.map(|(_, t)| t).unwrap_or_default();
                    break Err(util::timeout_error(name, index, timeout));
                }
            }
        }
        let result = attempt_once(
            op,
            input,
            index,
            options,
            &context,
            parent.clone(),
            progress.clone(),
            deadline,
            attempt,
        )
        .await;
        match result {
            Err(error) if kept.is_some() => {
                let wait = policy::retry::backoff(attempt, &error);
                if !policy::retry::should_retry(&error, attempt, retries, wait, at) {
                    break Err(error);
                }
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            result => break result,
        }
    };
    drop_quietly(kept);
    let Some(held) = held else {
        return result;
    };
    if let (Some(slot), Ok(output)) = (held.slot(), &result) {
        // The write may wait for another process's lock: off the runtime's worker threads.
        if let Some((store, key, bytes)) = slot.encoded_put(output) {
            let _ = tokio::task::spawn_blocking(move || store.put(&key, &bytes)).await;
        }
    }
    // Stored (or failed), then the claim goes: the callers waiting for this input wake.
    held.finish(result, false, name, index)
}

/// One attempt of the body: a future dropped at the deadline, recorded as one event.
#[allow(clippy::too_many_arguments)]
async fn attempt_once<O: AsyncOperator + ?Sized>(
    op: &O,
    input: O::Input,
    index: Option<usize>,
    options: ExecutionOptions,
    context: &CallContext,
    parent: Option<trace::Parent>,
    progress: Option<Arc<crate::progress::BatchProgress>>,
    deadline: Option<(Instant, std::time::Duration)>,
    attempt: u32,
) -> Result<O::Output, XcsError> {
    let name = op.name();
    let event = options
        .trace_execution
        .then(|| trace::begin_async(name, index, parent.as_ref()).attempt(attempt));
    let cancel = CancelFlag::child_of(context.cancel.clone());
    let inner = CallContext {
        deadline: deadline.map(|(at, _)| at),
        timeout: deadline.map(|(_, t)| t),
        cancel: Some(Arc::clone(&cancel)),
        claims: context.claims.clone(),
    };
    let body_parent = event.as_ref().map(trace::AsyncEvent::parent).or(parent);
    // The body's future is made inside the wrapper, so even work done before its first
    // `.await` sees the options.
    let body = WithOptions::adopt(
        Arc::new(Snapshot {
            options,
            context: inner,
            parent: body_parent,
            progress,
        }),
        AssertUnwindSafe(async move { op.forward(input).await }).catch_unwind(),
    );
    let result = match deadline {
        Some((at, timeout)) => match tokio::time::timeout_at(at.into(), body).await {
            Ok(finished) => finished,
            Err(_) => {
                // The body's future has been dropped: nothing it started keeps running.
                cancel.cancel();
                Ok(Err(util::timeout_error(name, index, timeout)))
            }
        },
        None => body.await,
    };
    let result = result.unwrap_or_else(|payload| Err(util::panicked(name, index, payload)));
    if let Some(event) = event {
        event.finish(outcome_of(&result));
    }
    result
}

/// `blocking(op)`'s body: `op.call(input)` on tokio's blocking threads under the options in
/// force now (the item's, when called from a batch).
pub(crate) fn run_blocking<O: Operator>(
    op: Arc<O>,
    input: O::Input,
) -> impl Future<Output = Result<O::Output, XcsError>> + Send {
    let options = get_execution_options();
    let context = deadline::current();
    let name = op.name().to_owned();
    async move {
        let task = tokio::task::spawn_blocking(move || {
            let _pinned = (scope::pin(options), deadline::enter(context));
            // A blocking thread: where a sync call belongs.
            crate::warn::runtime_thread::sanctioned(|| op.call(input))
        });
        match task.await {
            Ok(result) => result,
            Err(error) => Err(XcsError::Panicked {
                operator: name,
                index: None,
                message: format!("the blocking task failed: {error}"),
            }),
        }
    }
}
