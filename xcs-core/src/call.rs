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

use crate::ambient::Ambient;
use crate::cache::{self, CacheSupport};
use crate::deadline::{self, CallContext, CancelFlag};
use crate::error::XcsError;
use crate::options::ExecutionOptions;
use crate::policy::deadline::Now;
use crate::policy::plan::{HedgeStep, Raced, Racer};
use crate::policy::{
    self,
    memo::{self, AtOnce},
    plan::{CallPlan, Charge, Step, Supports, outcome_of},
};
use crate::pool::{self, Crew, Job};
use crate::scope::{self, get_execution_options};
use crate::trace;
use crate::trace::{HedgeMark, Outcome};
use crate::util::{drop_quietly, guarded, timeout_error};

/// A body that can be moved to another thread: the owned half of a detachable call.
pub(crate) type DetachedBody<I, O> = Box<dyn FnOnce(I) -> Result<O, XcsError> + Send + 'static>;

/// Makes a [`DetachedBody`] for one call.
pub(crate) type Detach<'a, I, O> = &'a dyn Fn() -> DetachedBody<I, O>;

/// What the sync driver needs of an operator. Every [`Operator`](crate::Operator) is one (a
/// blanket impl beside the trait), so the driver does not depend on the trait that calls it.
pub(crate) trait Callee: Send + Sync {
    type Input: Send + 'static;
    type Output: Send + 'static;
    fn name(&self) -> &str;
    fn forward(&self, input: Self::Input) -> Result<Self::Output, XcsError>;
    /// How the operator's input is keyed in the memory cache, if it can be.
    fn cache_support(&self) -> Option<CacheSupport<Self::Input, Self::Output>>;
    /// What else the operator offers the call plan.
    fn supports(&self) -> Supports<Self::Input, Self::Output>;
    /// The resource the operator's calls use, if any.
    fn resource(&self) -> Option<&str>;
    /// What a call with `input` is expected to use.
    fn estimate(&self, input: &Self::Input) -> crate::Usage;
}

/// Default `Operator::call`: the operator is only borrowed, so a deadline is checked, not
/// enforced.
pub(crate) fn call_borrowed<O: Callee + ?Sized>(
    op: &O,
    input: O::Input,
) -> Result<O::Output, XcsError> {
    invoke(op, input, None, None)
}

/// One operator call (or one batch item, with `index`) under the effective options.
pub(crate) fn invoke<O: Callee + ?Sized>(
    op: &O,
    input: O::Input,
    index: Option<usize>,
    detach: Option<Detach<'_, O::Input, O::Output>>,
) -> Result<O::Output, XcsError> {
    // The common case reads one flag, not the whole options.
    if policy::lean(!scope::per_call_work(), op.resource()) {
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
pub(crate) fn invoke_under<O: Callee + ?Sized>(
    op: &O,
    input: O::Input,
    index: Option<usize>,
    detach: Option<Detach<'_, O::Input, O::Output>>,
    options: &ExecutionOptions,
    timed: bool,
) -> Result<O::Output, XcsError> {
    if policy::lean(!policy::needs_plan(options, timed), op.resource()) {
        return guarded(op.name(), index, || op.forward(input));
    }
    invoke_with(op, input, index, detach, options, timed)
}

#[cold]
fn invoke_with<O: Callee + ?Sized>(
    op: &O,
    input: O::Input,
    index: Option<usize>,
    detach: Option<Detach<'_, O::Input, O::Output>>,
    options: &ExecutionOptions,
    timed: bool,
) -> Result<O::Output, XcsError> {
    let name = op.name();
    // Asked only when caching is on: an operator whose input cannot be keyed is warned about
    // then, and only then.
    let cache = options.enable_caching.then(|| op.cache_support()).flatten();
    // A cached call with no deadline is answered from the memory cache before a plan is made.
    let mut key = None;
    if let (Some(support), false, true) = (&cache, timed, options.enable_caching) {
        match memo::at_once(support, name, index, &input) {
            AtOnce::Answered(result, outcome) => {
                drop_quietly(input);
                if options.trace_execution {
                    trace::begin(name, index).finish(outcome);
                }
                return result;
            }
            AtOnce::Keyed(made) => key = Some(made),
        }
    }
    // Only calls under a deadline, caching (the claims held up the chain) or a budget (the
    // account of the scope) read the context.
    let context = if timed || options.enable_caching || policy::budget::applies(options) {
        deadline::current()
    } else {
        CallContext::default()
    };
    let now = Now::LAZY;
    let more = || op.supports();
    let estimate = |input: &O::Input| op.estimate(input);
    let charge = Charge {
        resource: op.resource(),
        estimate: Some(&estimate),
    };
    let mut plan = CallPlan::new(
        name, index, options, cache, &more, charge, context, input, now,
    );
    if let Some(key) = key {
        plan.keyed(key);
    }
    let mut step = plan.start(now);
    // The claim of a cached call is this thread's while its body runs.
    let mut claims = None;
    loop {
        step = match step {
            Step::Lookup => {
                let (support, key, at, held) = plan.lookup_request();
                let lookup = cache::lookup(support, key, at, held);
                plan.looked_up(lookup, Now::LAZY)
            }
            Step::Sleep => {
                let until = plan.until();
                policy::rate::sleep_until(until);
                plan.woke(Now::LAZY)
            }
            Step::Wait => {
                let listener = plan.take_listener();
                listener.wait(plan.deadline().map(|(at, _)| at));
                plan.woke(Now::LAZY)
            }
            // Hedging races a second attempt against this one, both on threads of their own
            // (the call can abandon its body: it owns the operator); an attempt that will not be
            // hedged runs as any other.
            Step::Run(input)
                if options.hedge_after.is_some()
                    && detach.is_some()
                    && plan.hedge_at(Instant::now()).is_some() =>
            {
                if claims.is_none() && plan.holds_claim() {
                    claims = Some(deadline::enter(plan.body_context().clone()));
                }
                match detach {
                    Some(make) => race(name, index, make, input, &mut plan),
                    None => unreachable!("guarded above"),
                }
            }
            Step::Run(input) => {
                if claims.is_none() && plan.holds_claim() {
                    claims = Some(deadline::enter(plan.body_context().clone()));
                }
                // An attempt with a meter of its own records its usage there, on this thread
                // too.
                let _metered = plan
                    .body_context()
                    .meter
                    .is_some()
                    .then(|| deadline::enter(plan.body_context().clone()));
                let recorder = plan
                    .traced()
                    .then(|| trace::begin(name, index).attempt(plan.attempt()));
                let result = attempt_once(op, input, index, detach, &plan);
                let result = plan.on_time(result, Now::LAZY);
                if let Some(recorder) = recorder {
                    recorder
                        .charged(plan.attempt_usage(), plan.resource_wait())
                        .finish(outcome_of(&result));
                }
                plan.ran(result, Now::LAZY)
            }
            Step::Write => {
                let write = plan.take_write();
                write.run();
                plan.written()
            }
            Step::Done => {
                let (result, event) = plan.outcome();
                if let Some(outcome) = event {
                    trace::begin(name, index).finish(outcome);
                }
                return result;
            }
        };
    }
}

/// One attempt of the body, under the call's deadline (enforced here when no enclosing call
/// does: then the body runs on a thread of its own when the operator can be moved there, and
/// the call returns at the deadline).
fn attempt_once<O: Callee + ?Sized>(
    op: &O,
    input: O::Input,
    index: Option<usize>,
    detach: Option<Detach<'_, O::Input, O::Output>>,
    plan: &CallPlan<'_, O::Input, O::Output>,
) -> Result<O::Output, XcsError> {
    let name = op.name();
    let context = plan.body_context();
    match plan.deadline() {
        Some((at, timeout)) if plan.enforces() => match detach {
            Some(make) => run_detached(name, index, make(), input, plan, at, timeout),
            None => {
                let _context = deadline::enter(CallContext {
                    deadline: Some(at),
                    timeout: Some(timeout),
                    cancel: Some(CancelFlag::child_of(context.cancel.clone())),
                    claims: context.claims.clone(),
                    meter: context.meter.clone(),
                    budget: context.budget.clone(),
                });
                guarded(name, index, || op.forward(input))
            }
        },
        _ => guarded(name, index, || op.forward(input)),
    }
}

/// Runs `body` on a job (a thread of its own) under the caller's options and a deadline
/// context, and waits for it until the deadline. A body still running then is abandoned: its
/// thread finishes it in the background (counted by `abandoned_items`), `cancelled()` tells it
/// to stop, and its result is dropped.
fn run_detached<I: Send + 'static, O: Send + 'static>(
    name: &str,
    index: Option<usize>,
    body: DetachedBody<I, O>,
    input: I,
    plan: &CallPlan<'_, I, O>,
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
    let context = plan.body_context();
    let cancel = CancelFlag::child_of(context.cancel.clone());
    // The body's thread runs under the caller's options, this call's deadline and the trace
    // event of this attempt.
    let ambient = detached_ambient(plan, context, Some((at, timeout)), &cancel);
    let crew = Arc::new(Crew::default());
    let (sender, receiver) = mpsc::sync_channel(1);
    let owned_name = name.to_owned();
    crew.enlist_job();
    let done = Arc::clone(&crew);
    let job = Job::new(move || {
        let entered = ambient.enter();
        let result = guarded(&owned_name, index, || body(input));
        drop(entered);
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

/// One attempt of a body running on a job of its own, for a race.
struct Running {
    cancel: Arc<CancelFlag>,
    crew: Arc<Crew>,
    /// Its event: the two attempts' events are siblings, children of what the call runs in,
    /// so neither is kept open on the caller's thread (where the other would nest in it).
    recorder: Option<trace::AsyncEvent>,
    over: bool,
}

/// What a body run on a job of its own runs under: the caller's options, `context` with the
/// call's `deadline` and the attempt's own `cancel` flag, and the trace event of this attempt.
fn detached_ambient<I: 'static, O: Send + 'static>(
    plan: &CallPlan<'_, I, O>,
    context: &CallContext,
    deadline: Option<(Instant, Duration)>,
    cancel: &Arc<CancelFlag>,
) -> Ambient {
    Ambient {
        options: *plan.options(),
        context: CallContext {
            deadline: deadline.map(|(at, _)| at),
            timeout: deadline.map(|(_, timeout)| timeout),
            cancel: Some(cancel.clone()),
            claims: context.claims.clone(),
            meter: context.meter.clone(),
            budget: context.budget.clone(),
        },
        parent: plan.traced().then(trace::current_parent).flatten(),
        progress: None,
    }
}

/// Starts `body` on a job (as [`run_detached`] does) under `context` and the call's deadline;
/// its result comes back on `results`, tagged `which`; its event (when tracing) is a child of
/// `parent`. `Err`: too many abandoned bodies already.
#[allow(clippy::too_many_arguments)]
fn spawn_attempt<I: Send + 'static, O: Send + 'static>(
    name: &str,
    index: Option<usize>,
    body: DetachedBody<I, O>,
    input: I,
    plan: &CallPlan<'_, I, O>,
    (context, parent): (&CallContext, Option<&trace::Parent>),
    which: Racer,
    results: &mpsc::Sender<(Racer, Result<O, XcsError>)>,
) -> Result<Running, XcsError> {
    if let Err((abandoned, limit)) = pool::check_abandoned() {
        drop_quietly(input);
        return Err(XcsError::AbandonedLimit {
            operator: name.to_owned(),
            abandoned,
            limit,
        });
    }
    let recorder = plan
        .traced()
        .then(|| trace::begin_async(name, index, parent).attempt(plan.attempt()));
    let cancel = CancelFlag::child_of(context.cancel.clone());
    let mut ambient = detached_ambient(plan, context, plan.deadline(), &cancel);
    ambient.parent = recorder.as_ref().map(trace::AsyncEvent::parent);
    let crew = Arc::new(Crew::default());
    let sender = results.clone();
    let owned_name = name.to_owned();
    crew.enlist_job();
    let done = Arc::clone(&crew);
    let job = Job::new(move || {
        let entered = ambient.enter();
        let result = guarded(&owned_name, index, || body(input));
        drop(entered);
        // The caller may have moved on already; then nobody wants the result.
        if let Err(mpsc::SendError((_, unwanted))) = sender.send((which, result)) {
            drop_quietly(unwanted);
        }
    })
    .then(move || {
        done.leave(false);
    });
    if let Err(job) = pool::spawn(job) {
        job.run_here();
    }
    Ok(Running {
        cancel,
        crew,
        recorder,
        over: false,
    })
}

/// One attempt under `hedge_after` with an owned body: the attempt on a job of its own, and
/// from the instant the plan names, its hedge on another; the first success answers, and the
/// other attempt is abandoned with `cancelled()` set (recorded as cancelled). Returns at the
/// deadline, abandoning both, as [`run_detached`] does. Returns the plan's next step.
fn race<I: Send + 'static, O: Send + 'static>(
    name: &str,
    index: Option<usize>,
    make: Detach<'_, I, O>,
    input: I,
    plan: &mut CallPlan<'_, I, O>,
) -> Step<I> {
    let (results, received) = mpsc::channel();
    let context = plan.body_context().clone();
    let parent = plan.traced().then(trace::current_parent).flatten();
    let first = match spawn_attempt(
        name,
        index,
        make(),
        input,
        plan,
        (&context, parent.as_ref()),
        Racer::First,
        &results,
    ) {
        Ok(running) => running,
        Err(error) => return settled(plan.raced(Racer::First, Err(error), Now::LAZY)),
    };
    let mut attempts = [Some(first), None];
    let mut hedge_at = plan.hedge_at(Instant::now());
    let deadline = plan.deadline();
    loop {
        let wake = match (hedge_at, deadline) {
            (Some(a), Some((b, _))) => Some(a.min(b)),
            (a, b) => a.or(b.map(|(at, _)| at)),
        };
        let message = match wake {
            Some(at) => received.recv_timeout(at.saturating_duration_since(Instant::now())),
            None => received
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match message {
            Ok((which, result)) => {
                let result = plan.on_time(result, Now::LAZY);
                let raced = attempts[1].is_some();
                let slot = usize::from(which == Racer::Hedge);
                if let Some(running) = attempts[slot].as_mut() {
                    running.over = true;
                    if let Some(recorder) = running.recorder.take() {
                        let usage = match which {
                            Racer::First => plan.attempt_usage(),
                            Racer::Hedge => plan.hedge_usage(),
                        };
                        let wait = match which {
                            Racer::First => plan.resource_wait(),
                            Racer::Hedge => plan.hedge_wait(),
                        };
                        recorder
                            .charged(usage, wait)
                            .hedged(raced.then_some(HedgeMark {
                                is_hedge: which == Racer::Hedge,
                                won: result.is_ok(),
                            }))
                            .finish(outcome_of(&result));
                    }
                }
                if let Raced::Over(step) = plan.raced(which, result, Now::LAZY) {
                    abandon_running(name, &mut attempts, plan, Outcome::Cancelled);
                    return step;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout)
                if deadline.is_some_and(|(at, _)| Instant::now() >= at) =>
            {
                // The deadline: the attempts still running are abandoned and time out.
                let timeout = deadline.map_or(Duration::ZERO, |(_, t)| t);
                let pending: Vec<Racer> = [Racer::First, Racer::Hedge]
                    .into_iter()
                    .zip(&attempts)
                    .filter(|(_, running)| running.as_ref().is_some_and(|r| !r.over))
                    .map(|(which, _)| which)
                    .collect();
                abandon_running(name, &mut attempts, plan, Outcome::Timeout);
                for which in pending {
                    let error = timeout_error(name, index, timeout);
                    if let Raced::Over(step) = plan.raced(which, Err(error), Now::LAZY) {
                        return step;
                    }
                }
                unreachable!("a race with nothing running is over");
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if attempts[1].is_some() || hedge_at.is_none_or(|at| Instant::now() < at) {
                    continue;
                }
                match plan.hedge(Instant::now()) {
                    HedgeStep::Run(copy) => {
                        hedge_at = None;
                        let context = plan.hedge_context().clone();
                        match spawn_attempt(
                            name,
                            index,
                            make(),
                            copy,
                            plan,
                            (&context, parent.as_ref()),
                            Racer::Hedge,
                            &results,
                        ) {
                            Ok(running) => attempts[1] = Some(running),
                            Err(error) => {
                                // Not started: it failed at once, and the first goes on.
                                if let Raced::Over(step) =
                                    plan.raced(Racer::Hedge, Err(error), Now::LAZY)
                                {
                                    abandon_running(name, &mut attempts, plan, Outcome::Cancelled);
                                    return step;
                                }
                            }
                        }
                    }
                    HedgeStep::Later(at) => hedge_at = Some(at),
                    HedgeStep::Never => hedge_at = None,
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                unreachable!("the race keeps a sender of its own")
            }
        }
    }
}

/// Abandons the attempts of a race still running (`cancelled()` set, their threads counted as
/// abandoned), recording them with `outcome`.
fn abandon_running<I: 'static, O: Send + 'static>(
    name: &str,
    attempts: &mut [Option<Running>; 2],
    plan: &CallPlan<'_, I, O>,
    outcome: Outcome,
) {
    let raced = attempts[1].is_some();
    for (slot, attempt) in attempts.iter_mut().enumerate() {
        let Some(running) = attempt.as_mut().filter(|r| !r.over) else {
            continue;
        };
        running.over = true;
        running.cancel.cancel();
        running.crew.abandon(name);
        if let Some(recorder) = running.recorder.take() {
            let usage = if slot == 0 {
                plan.attempt_usage()
            } else {
                plan.hedge_usage()
            };
            recorder
                .charged(usage, Duration::ZERO)
                .hedged(raced.then_some(HedgeMark {
                    is_hedge: slot == 1,
                    won: false,
                }))
                .finish(outcome);
        }
    }
}

/// The step after a race that is over.
fn settled<I>(raced: Raced<I>) -> Step<I> {
    match raced {
        Raced::Over(step) => step,
        Raced::Wait => unreachable!("an attempt that raced nothing ends the race"),
    }
}
