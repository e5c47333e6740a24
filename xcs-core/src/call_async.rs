//! How one async call runs: the same policies as a sync call (deadline, cache, trace, panics),
//! with the body as a future that is dropped — really cancelled — at the deadline.
//!
//! The options are read when the call is *made* (`call` is a plain function returning the
//! future), and the body runs inside a [`WithOptions`] that puts them back in force around each
//! poll, so they hold after every `.await` on whichever thread polls it.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use futures_util::FutureExt;
use futures_util::future::Either;

use crate::ambient::Ambient;
use crate::cache;
use crate::deadline::{CallContext, CancelFlag};
use crate::error::XcsError;
use crate::policy::deadline::Now;
use crate::policy::memo::{self, AtOnce};
use crate::policy::plan::{self, CallPlan, Charge, Step, Supports, outcome_of};
use crate::policy::plan::{HedgeStep, Raced, Racer};
use crate::scoped::WithOptions;
use crate::trace;
use crate::util::{self, drop_quietly};

/// What the async driver needs of an operator. Every [`AsyncOperator`](crate::AsyncOperator)
/// is one (a blanket impl beside the trait), so the driver does not depend on the trait that
/// calls it.
pub(crate) trait AsyncCallee: Send + Sync {
    type Input: Send + 'static;
    type Output: Send + 'static;
    fn name(&self) -> &str;
    fn forward(
        &self,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, XcsError>> + Send;
    /// How the operator's input is keyed in the memory cache, if it can be.
    fn cache_support(&self) -> Option<crate::cache::CacheSupport<Self::Input, Self::Output>>;
    /// What else the operator offers the call plan.
    fn supports(&self) -> Supports<Self::Input, Self::Output>;
    /// The resource the operator's calls use, if any.
    fn resource(&self) -> Option<&str>;
    /// What a call with `input` is expected to use.
    fn estimate(&self, input: &Self::Input) -> crate::Usage;
}

/// `AsyncOperator::call`: the caller's options, deadline and trace parent, read now.
pub(crate) fn call<'a, O: AsyncCallee + ?Sized>(
    op: &'a O,
    input: O::Input,
) -> impl Future<Output = Result<O::Output, XcsError>> + Send + 'a {
    invoke(op, input, None, Arc::new(Ambient::capture()))
}

/// One async call (or batch item, with `index`) under `ambient`.
///
/// The common case — no deadline, caching, tracing, retries or rate limit — is a small future:
/// the body with panics caught, inside the poll-scoped options (shared with the batch's other
/// items, not copied). Anything else takes the full policy path, boxed so that the small case
/// stays small.
pub(crate) fn invoke<'a, O: AsyncCallee + ?Sized>(
    op: &'a O,
    input: O::Input,
    index: Option<usize>,
    ambient: Arc<Ambient>,
) -> impl Future<Output = Result<O::Output, XcsError>> + Send + 'a {
    if crate::policy::lean(is_lean(&ambient), op.resource()) && !ambient.context.is_cancelled() {
        Either::Left(WithOptions::adopt(ambient, lean(op, input, index)))
    } else {
        Either::Right(Box::pin(invoke_with(op, input, index, ambient)))
    }
}

/// Whether calls under `ambient` take the lean path of [`invoke`] (unless their context has
/// been cancelled): no policy applies. The same for every item of a batch.
pub(crate) fn is_lean(ambient: &Ambient) -> bool {
    !crate::policy::needs_plan(&ambient.options, ambient.context.deadline.is_some())
}

/// Item `index` of a batch running under `ambient`: [`invoke`] for a future that is only ever
/// polled with `ambient` in force already (inside its batch's scoped future), so the lean case
/// does not enter it again on every poll. `lean` is [`is_lean`] of `ambient`, read once per
/// batch; the batch has just checked that it has not given up (the items' context is its own).
pub(crate) fn invoke_item<'a, O: AsyncCallee + ?Sized>(
    op: &'a O,
    input: O::Input,
    index: usize,
    ambient: &Arc<Ambient>,
    lean: bool,
) -> impl Future<Output = Result<O::Output, XcsError>> + Send + use<'a, O> {
    if crate::policy::lean(lean, op.resource()) {
        Either::Left(self::lean(op, input, Some(index)))
    } else {
        Either::Right(Box::pin(invoke_with(
            op,
            input,
            Some(index),
            Arc::clone(ambient),
        )))
    }
}

/// The lean path: the body, its panics caught.
fn lean<'a, O: AsyncCallee + ?Sized>(
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

/// [`invoke`] with policies: the call plan, awaited.
pub(crate) async fn invoke_with<O: AsyncCallee + ?Sized>(
    op: &O,
    input: O::Input,
    index: Option<usize>,
    ambient: Arc<Ambient>,
) -> Result<O::Output, XcsError> {
    let name = op.name();
    // Asked only when caching is on: an operator whose input cannot be keyed is warned about
    // then, and only then.
    let cache = ambient
        .options
        .enable_caching
        .then(|| op.cache_support())
        .flatten();
    // A cached call with no deadline is answered from the memory cache before a plan is made.
    let mut key = None;
    let timed = ambient.context.deadline.is_some() || ambient.options.timeout_seconds.is_some();
    if let (Some(support), false, true) = (&cache, timed, ambient.options.enable_caching) {
        match memo::at_once(support, name, index, &input) {
            AtOnce::Answered(result, outcome) => {
                drop_quietly(input);
                if ambient.options.trace_execution {
                    trace::begin_async(name, index, ambient.parent.as_ref()).finish(outcome);
                }
                return result;
            }
            AtOnce::Keyed(made) => key = Some(made),
        }
    }
    let Ambient {
        options,
        context,
        parent,
        progress,
    } = (*ambient).clone();
    let now = Now::LAZY;
    let more = || op.supports();
    let estimate = |input: &O::Input| op.estimate(input);
    let charge = Charge {
        resource: op.resource(),
        estimate: Some(&estimate),
    };
    let mut plan = CallPlan::new(
        name, index, &options, cache, &more, charge, context, input, now,
    );
    if let Some(key) = key {
        plan.keyed(key);
    }
    let mut step = plan.start(now);
    loop {
        step = match step {
            // A wait for a concurrent call with the same input is an `.await`, never a blocked
            // thread.
            Step::Lookup => {
                let lookup = {
                    let (support, key, at, held) = plan.lookup_request();
                    cache::lookup_async(support, key, at, held).await
                };
                plan.looked_up(lookup, Now::LAZY)
            }
            Step::Sleep => {
                let until = plan.until();
                tokio::time::sleep_until(until.into()).await;
                plan.woke(Now::LAZY)
            }
            // A wait for the resource is an `.await` too (until the deadline at most).
            Step::Wait => {
                let listener = plan.take_listener();
                match plan.deadline() {
                    Some((at, _)) => {
                        let _ = tokio::time::timeout_at(at.into(), listener).await;
                    }
                    None => listener.await,
                }
                plan.woke(Now::LAZY)
            }
            // Hedging races a second attempt against this one (the call's own path, boxed so
            // that the future of a call without it stays as small as it was).
            Step::Run(input) if options.hedge_after.is_some() => {
                Box::pin(race(
                    op,
                    input,
                    index,
                    &options,
                    &mut plan,
                    parent.clone(),
                    progress.clone(),
                ))
                .await
            }
            Step::Run(input) => {
                let attempt = Attempt {
                    deadline: plan.deadline(),
                    traced: plan.traced().then_some(plan.attempt()),
                    context: plan.body_context().clone(),
                    waited: plan.resource_wait(),
                    race: None,
                };
                let result = attempt_once(
                    op,
                    input,
                    index,
                    &options,
                    attempt,
                    parent.clone(),
                    progress.clone(),
                )
                .await;
                plan.ran(result, Now::LAZY)
            }
            // The write may wait for another process's lock: off the runtime's worker threads.
            Step::Write => {
                let write = plan.take_write();
                let _ = tokio::task::spawn_blocking(move || write.run()).await;
                plan.written()
            }
            Step::Done => {
                let (result, event) = plan.outcome();
                if let Some(outcome) = event {
                    trace::begin_async(name, index, parent.as_ref()).finish(outcome);
                }
                return result;
            }
        };
    }
}

/// What one attempt of the body runs under (read from the plan before it is awaited).
struct Attempt {
    deadline: Option<(Instant, std::time::Duration)>,
    /// The attempt's number, when it is traced.
    traced: Option<u32>,
    context: CallContext,
    /// How long the attempt waited for its resource.
    waited: std::time::Duration,
    /// For an attempt that may race a hedge: whether it is the hedge, and the marks the two
    /// attempts' trace events share.
    race: Option<(bool, Arc<trace::RaceMarks>)>,
}

/// One attempt under `hedge_after` ([`Step::Run`] with hedging on): the attempt, and from the
/// instant the plan names, its hedge; the first success answers, and the other attempt's future
/// is dropped (recorded as cancelled). Returns the plan's next step.
async fn race<O: AsyncCallee + ?Sized>(
    op: &O,
    input: O::Input,
    index: Option<usize>,
    options: &crate::options::ExecutionOptions,
    plan: &mut CallPlan<'_, O::Input, O::Output>,
    parent: Option<trace::Parent>,
    progress: Option<Arc<crate::progress::BatchProgress>>,
) -> Step<O::Input> {
    let marks = Arc::new(trace::RaceMarks::default());
    let attempt = Attempt {
        deadline: plan.deadline(),
        traced: plan.traced().then_some(plan.attempt()),
        context: plan.body_context().clone(),
        waited: plan.resource_wait(),
        race: Some((false, Arc::clone(&marks))),
    };
    let mut first = Box::pin(attempt_once(
        op,
        input,
        index,
        options,
        attempt,
        parent.clone(),
        progress.clone(),
    ));
    let mut hedge_at = plan.hedge_at(Instant::now());
    // Until the hedge starts: the first attempt against the hedge's instant.
    let hedge_input = loop {
        let Some(at) = hedge_at else {
            let result = first.as_mut().await;
            return over(plan.raced(Racer::First, result, Now::LAZY));
        };
        let mut sleep = std::pin::pin!(tokio::time::sleep_until(at.into()));
        let finished = std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = first.as_mut().poll(cx) {
                return Poll::Ready(Some(result));
            }
            sleep.as_mut().poll(cx).map(|()| None)
        })
        .await;
        if let Some(result) = finished {
            return over(plan.raced(Racer::First, result, Now::LAZY));
        }
        match plan.hedge(Instant::now()) {
            HedgeStep::Run(input) => break input,
            HedgeStep::Later(at) => hedge_at = Some(at),
            HedgeStep::Never => hedge_at = None,
        }
    };
    marks.raced();
    let attempt = Attempt {
        deadline: plan.deadline(),
        traced: plan.traced().then_some(plan.attempt()),
        context: plan.hedge_context().clone(),
        waited: plan.hedge_wait(),
        race: Some((true, Arc::clone(&marks))),
    };
    let mut second = Box::pin(attempt_once(
        op,
        hedge_input,
        index,
        options,
        attempt,
        parent,
        progress,
    ));
    let (mut first_over, mut second_over) = (false, false);
    loop {
        let (which, result) = std::future::poll_fn(|cx| {
            if !first_over {
                if let Poll::Ready(result) = first.as_mut().poll(cx) {
                    return Poll::Ready((Racer::First, result));
                }
            }
            if !second_over {
                if let Poll::Ready(result) = second.as_mut().poll(cx) {
                    return Poll::Ready((Racer::Hedge, result));
                }
            }
            Poll::Pending
        })
        .await;
        match which {
            Racer::First => first_over = true,
            Racer::Hedge => second_over = true,
        }
        if let Raced::Over(step) = plan.raced(which, result, Now::LAZY) {
            // The attempt still running lost: its future is dropped on return.
            if !first_over {
                marks.lost(false);
            }
            if !second_over {
                marks.lost(true);
            }
            return step;
        }
    }
}

/// The step after a race that is over.
fn over<I>(raced: Raced<I>) -> Step<I> {
    match raced {
        Raced::Over(step) => step,
        Raced::Wait => unreachable!("an attempt that raced nothing ends the race"),
    }
}

/// One attempt of the body: a future dropped at the deadline, recorded as one event.
async fn attempt_once<O: AsyncCallee + ?Sized>(
    op: &O,
    input: O::Input,
    index: Option<usize>,
    options: &crate::options::ExecutionOptions,
    attempt: Attempt,
    parent: Option<trace::Parent>,
    progress: Option<Arc<crate::progress::BatchProgress>>,
) -> Result<O::Output, XcsError> {
    let name = op.name();
    let Attempt {
        deadline,
        traced,
        context,
        waited,
        race,
    } = attempt;
    let meter = context.meter.clone();
    let event = traced.map(|n| {
        let event = trace::begin_async(name, index, parent.as_ref()).attempt(n);
        match race {
            Some((is_hedge, marks)) => event.racing(is_hedge, marks),
            None => event,
        }
    });
    let cancel = CancelFlag::child_of(context.cancel.clone());
    let inner = CallContext {
        deadline: deadline.map(|(at, _)| at),
        timeout: deadline.map(|(_, t)| t),
        cancel: Some(Arc::clone(&cancel)),
        claims: context.claims.clone(),
        meter: context.meter.clone(),
        budget: context.budget.clone(),
    };
    let body_parent = event.as_ref().map(trace::AsyncEvent::parent).or(parent);
    // The body's future is made inside the wrapper, so even work done before its first
    // `.await` sees the options.
    let body = WithOptions::adopt(
        Arc::new(Ambient {
            options: *options,
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
    let result = plan::on_time(result, deadline, name, index, Now::LAZY);
    if let Some(event) = event {
        event
            .charged(meter.and_then(|meter| meter.recorded()), waited)
            .finish(outcome_of(&result));
    }
    result
}
