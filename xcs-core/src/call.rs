//! How one operator call runs: the options read once, then the deadline, the cache and the
//! trace around the body.
//!
//! The common case — no timeout, no caching, no tracing — is a flag check and the body (with
//! panics caught), so an operator call costs nanoseconds more than calling its function.
//!
//! A deadline is *enforced* by the outermost call that sets it: that call returns at the
//! deadline. Calls nested inside it (batch items, operators called from bodies) share the
//! deadline and only check it, since the enclosing call already returns on time; a nested call
//! whose own timeout ends *earlier* enforces that earlier deadline itself. Enforcing needs an
//! owned handle on the operator (to leave a hung body behind on its thread): generated
//! operators, `Arc<O>`, `&'static O` and batch executors have one; a plain borrow does not, so
//! there the call refuses to start after the deadline and discards a result that comes late.

use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crate::cache;
use crate::deadline::{self, CallContext, CancelFlag};
use crate::error::{BoxError, XcsError};
use crate::operator::Operator;
use crate::options::ExecutionOptions;
use crate::policy::{
    self,
    memo::{self, Claimed},
};
use crate::pool::{self, Crew, Job};
use crate::scope::{self, get_execution_options};
use crate::trace::{self, Outcome};
use crate::util::{drop_quietly, guarded, timeout_error};

/// A body that can be moved to another thread: the owned half of a detachable call.
pub(crate) type DetachedBody<I, O> = Box<dyn FnOnce(I) -> Result<O, XcsError> + Send + 'static>;

/// Makes a [`DetachedBody`] for one call.
pub(crate) type Detach<'a, I, O> = &'a dyn Fn() -> DetachedBody<I, O>;

/// Default `Operator::call`: the operator is only borrowed, so a deadline is checked, not
/// enforced.
pub(crate) fn call_borrowed<O: Operator + ?Sized>(
    op: &O,
    input: O::Input,
) -> Result<O::Output, XcsError> {
    invoke(op, input, None, None)
}

/// `Operator::call` for an operator the runtime may move to a worker (generated operators,
/// `Arc<O>`, `&'static O`): returns at the deadline even if the body hangs.
pub fn call_owned<O: Operator + Clone>(op: O, input: O::Input) -> Result<O::Output, XcsError> {
    let detach = || -> DetachedBody<O::Input, O::Output> {
        let op = op.clone();
        Box::new(move |input| op.forward(input))
    };
    invoke(&op, input, None, Some(&detach))
}

/// Wraps the error of a generated operator's body.
pub fn operator_error(operator: &str, error: impl Into<BoxError>) -> XcsError {
    XcsError::operator(operator, error)
}

/// The deadline a call starting now must meet, and the timeout it comes from: its own
/// `timeout_seconds` from now, capped by the deadline of the call it runs inside.
pub(crate) fn deadline_for(
    options: &ExecutionOptions,
    context: &CallContext,
    now: Instant,
) -> Option<(Instant, Duration)> {
    let own = options
        .timeout_seconds
        .and_then(|t| now.checked_add(t).map(|at| (at, t)));
    let inherited = context.deadline.zip(context.timeout);
    match (own, inherited) {
        (Some(own), Some(inherited)) => Some(if own.0 < inherited.0 { own } else { inherited }),
        (own, inherited) => own.or(inherited),
    }
}

/// Whether a call with `deadline` must enforce it itself (no enclosing call returns by then).
pub(crate) fn must_enforce(deadline: Option<(Instant, Duration)>, context: &CallContext) -> bool {
    match (deadline, context.deadline) {
        (Some((at, _)), Some(enclosing)) => at < enclosing,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn outcome_of<T>(result: &Result<T, XcsError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ok,
        Err(XcsError::Timeout { .. }) => Outcome::Timeout,
        Err(XcsError::Panicked { .. }) => Outcome::Panicked,
        Err(_) => Outcome::Error,
    }
}

/// One operator call (or one batch item, with `index`) under the effective options.
pub(crate) fn invoke<O: Operator + ?Sized>(
    op: &O,
    input: O::Input,
    index: Option<usize>,
    detach: Option<Detach<'_, O::Input, O::Output>>,
) -> Result<O::Output, XcsError> {
    // The common case reads one flag, not the whole options.
    if !scope::per_call_work() {
        return guarded(op.name(), index, || op.forward(input));
    }
    // A sync body on a thread that drives async tasks: said once per operator.
    #[cfg(feature = "tokio")]
    if scope::on_runtime() {
        crate::warn::runtime_thread::warn_unless_sanctioned(op.name());
    }
    let options = get_execution_options();
    let timed = options.timeout_seconds.is_some() || deadline::has_deadline();
    invoke_under(op, input, index, detach, &options, timed)
}

/// [`invoke`] with the options (and whether a deadline applies) already known, as they are for
/// batch items: the executor read them once for the whole batch.
#[inline]
pub(crate) fn invoke_under<O: Operator + ?Sized>(
    op: &O,
    input: O::Input,
    index: Option<usize>,
    detach: Option<Detach<'_, O::Input, O::Output>>,
    options: &ExecutionOptions,
    timed: bool,
) -> Result<O::Output, XcsError> {
    if !options.has_call_policy() && !timed {
        return guarded(op.name(), index, || op.forward(input));
    }
    invoke_with(op, input, index, detach, options, timed)
}

#[cold]
fn invoke_with<O: Operator + ?Sized>(
    op: &O,
    input: O::Input,
    index: Option<usize>,
    detach: Option<Detach<'_, O::Input, O::Output>>,
    options: &ExecutionOptions,
    timed: bool,
) -> Result<O::Output, XcsError> {
    let name = op.name();
    // Only calls under a deadline (or caching: the claims held up the chain) read the context;
    // only calls under a deadline read the clock.
    let context = if timed || options.enable_caching {
        deadline::current()
    } else {
        CallContext::default()
    };
    let now = if timed { Some(Instant::now()) } else { None };
    let deadline = now.and_then(|now| deadline_for(options, &context, now));
    if let (Some((at, timeout)), Some(now)) = (deadline, now) {
        if now >= at || context.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
            if options.trace_execution {
                trace::begin(name, index).finish(Outcome::Timeout);
            }
            return Err(timeout_error(name, index, timeout));
        }
    }

    let cache = if options.enable_caching {
        op.__xcs_cache_support()
    } else {
        None
    };
    // A panic in the input's `Hash` or the output's `Clone` is the call's error.
    let cache_panic = |message| {
        if options.trace_execution {
            trace::begin(name, index).finish(Outcome::Panicked);
        }
        Err(XcsError::Panicked {
            operator: name.to_owned(),
            index,
            message,
        })
    };
    let key = match cache.as_ref().map(|support| support.key(name, &input)) {
        Some(Err(message)) => return cache_panic(message),
        key => key.and_then(Result::ok),
    };
    // Held while the body runs: concurrent calls with the same input wait for this one.
    let (input, held) = match (&cache, &key) {
        (Some(support), Some(key)) => {
            let lookup = cache::lookup(support, key, deadline.map(|(at, _)| at), &context.claims);
            let timeout = deadline.map_or(Duration::ZERO, |(_, t)| t);
            let persist = op.persist_support();
            match memo::after_lookup(
                lookup, options, name, index, *support, persist, input, timeout,
            ) {
                Claimed::Answered(result, outcome) => {
                    if options.trace_execution {
                        trace::begin(name, index).finish(outcome);
                    }
                    return result;
                }
                Claimed::Run(input, held) => (input, held),
            }
        }
        _ => (input, None),
    };
    let mut kept = Some(input);
    let context = match &held {
        Some(held) => held.context(context),
        None => context,
    };
    let _claims = held.is_some().then(|| deadline::enter(context.clone()));
    let at = deadline.map(|(at, _)| at);
    let retries = options.max_retries;
    let clone_input = memo::input_cloner(
        options,
        op.__xcs_clone_input(),
        op.__xcs_retried_by_items(),
        name,
    );
    let mut attempt = 1u32;
    let result = loop {
        // Keep a copy while another attempt may follow.
        let input = match (clone_input, &kept) {
            (Some(clone), Some(original)) if attempt <= retries => clone(original),
            _ => match kept.take() {
                Some(input) => input,
                None => break Err(timeout_error(name, index, Duration::ZERO)),
            },
        };
        if let Some(rate) = options.rate_limit {
            match policy::rate::reserve(name, rate, at) {
                Ok(start) => {
                    policy::rate::sleep_until(start);
                    while let Some(wait) = policy::rate::confirm(name, rate) {
                        policy::rate::sleep_until(Instant::now() + wait);
                    }
                }
                Err(policy::rate::TooLate) => {
                    drop_quietly(input);
                    let timeout = deadline.map_or(Duration::ZERO, |(_, t)| t);
                    break Err(timeout_error(name, index, timeout));
                }
            }
        }
        let recorder = options
            .trace_execution
            .then(|| trace::begin(name, index).attempt(attempt));
        let result = attempt_once(op, input, index, detach, options, &context, deadline);
        if let Some(recorder) = recorder {
            recorder.finish(outcome_of(&result));
        }
        match result {
            Err(error) if kept.is_some() => {
                let wait = policy::retry::backoff(attempt, &error);
                if !policy::retry::should_retry(&error, attempt, retries, wait, at) {
                    break Err(error);
                }
                std::thread::sleep(wait);
                attempt += 1;
            }
            result => break result,
        }
    };
    drop_quietly(kept);
    // Stored (or failed), then the claim goes: the callers waiting for this input wake.
    match held {
        Some(held) => held.finish(result, true, name, index),
        None => result,
    }
}

/// One attempt of the body, under the call's deadline (enforced here when no enclosing call
/// does).
fn attempt_once<O: Operator + ?Sized>(
    op: &O,
    input: O::Input,
    index: Option<usize>,
    detach: Option<Detach<'_, O::Input, O::Output>>,
    options: &ExecutionOptions,
    context: &CallContext,
    deadline: Option<(Instant, Duration)>,
) -> Result<O::Output, XcsError> {
    let name = op.name();
    match deadline {
        Some((at, timeout)) if must_enforce(deadline, context) => match detach {
            Some(make) => run_detached(name, index, make(), input, options, context, at, timeout),
            None => {
                let _context = deadline::enter(CallContext {
                    deadline: Some(at),
                    timeout: Some(timeout),
                    cancel: Some(CancelFlag::child_of(context.cancel.clone())),
                    claims: context.claims.clone(),
                });
                let result = guarded(name, index, || op.forward(input));
                if Instant::now() > at {
                    Err(timeout_error(name, index, timeout))
                } else {
                    result
                }
            }
        },
        Some((at, timeout)) => {
            let result = guarded(name, index, || op.forward(input));
            if Instant::now() > at {
                Err(timeout_error(name, index, timeout))
            } else {
                result
            }
        }
        None => guarded(name, index, || op.forward(input)),
    }
}

/// Runs `body` on a job (a thread of its own) under the caller's options and a deadline
/// context, and waits for it until the deadline. A body still running then is abandoned: its
/// thread finishes it in the background (counted by `abandoned_items`), `cancelled()` tells it
/// to stop, and its result is dropped.
#[allow(clippy::too_many_arguments)]
fn run_detached<I: Send + 'static, O: Send + 'static>(
    name: &str,
    index: Option<usize>,
    body: DetachedBody<I, O>,
    input: I,
    options: &ExecutionOptions,
    context: &CallContext,
    at: Instant,
    timeout: Duration,
) -> Result<O, XcsError> {
    if let Err((abandoned, limit)) = pool::check_abandoned() {
        drop_quietly(input);
        return Err(XcsError::AbandonedLimit {
            operator: name.to_owned(),
            abandoned,
            limit,
        });
    }
    let cancel = CancelFlag::child_of(context.cancel.clone());
    let worker_context = CallContext {
        deadline: Some(at),
        timeout: Some(timeout),
        cancel: Some(cancel.clone()),
        claims: context.claims.clone(),
    };
    let crew = Arc::new(Crew::default());
    let (sender, receiver) = mpsc::sync_channel(1);
    let options = *options;
    let owned_name = name.to_owned();
    crew.enlist_job();
    let done = Arc::clone(&crew);
    let job = Job::new(move || {
        let pinned = (scope::pin(options), deadline::enter(worker_context));
        let result = guarded(&owned_name, index, || body(input));
        drop(pinned);
        // The caller may have given up already; then nobody wants the result.
        if let Err(
            mpsc::TrySendError::Full(unwanted) | mpsc::TrySendError::Disconnected(unwanted),
        ) = sender.try_send(result)
        {
            drop_quietly(unwanted);
        }
    })
    .then(move || {
        done.leave(false);
    });
    if let Err(job) = pool::spawn(job) {
        // No thread could be started: run here, checking the deadline afterwards.
        job.run_here();
    }
    let remaining = at.saturating_duration_since(Instant::now());
    match receiver.recv_timeout(remaining) {
        Ok(result) => result,
        Err(_) => {
            cancel.cancel();
            crew.abandon(name);
            Err(timeout_error(name, index, timeout))
        }
    }
}
