//! Items handed to a registered device backend, which decides where and in what order they
//! run; each item still goes through the batch rules of [`crate::batch::plan`].
//!
//! A backend that runs items in another process takes them as bytes through
//! [`RemoteItems`]: the caller's side ([`Remote`]) keeps the rules that are the caller's — the
//! cache (hits never leave the process, misses hold their single-flight claim until the result
//! comes back), skipping items the rules say not to start, progress and failure reporting —
//! and each item's outcome lands in the same slot a local run would fill.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::lanes::{Blocks, Run};
use crate::batch::plan::{Part, Plan, Ran};
use crate::cache;
use crate::device::{
    About, Backend, BatchJob, Outgoing, RemoteHedge, RemoteHedging, RemoteItems, RemoteSide,
    Signature,
};
use crate::error::XcsError;
use crate::operator::Operator;
use crate::options::ExecutionOptions;
use crate::persist::PersistSupport;
use crate::policy::deadline::Now;
use crate::policy::plan::{CallPlan, Charge, HedgeStep, Raced, Racer, Sent, Step, Supports};
use crate::trace;
use crate::util::{self, drop_quietly, panic_message};

/// Runs the batch on `backend`: on the caller's thread, or — when the caller enforces a
/// deadline — on a job, while the caller waits no longer than the deadline.
pub(super) fn run<O: Operator>(
    plan: Arc<Plan<O>>,
    backend: Arc<dyn Backend>,
    inputs: Vec<O::Input>,
    workers: usize,
    enforce: bool,
) -> Ran<O::Output> {
    let len = inputs.len();
    let strategy = plan.options.device_strategy;
    let run = Run::new(plan, inputs, Blocks::Single);
    let failure: Arc<Mutex<Option<String>>> = Arc::default();
    let hand_over = {
        let failure = Arc::clone(&failure);
        move |run: &Arc<Run<O>>| {
            let task = {
                let run = Arc::clone(run);
                Arc::new(move |index: usize| {
                    let _adopted = run.plan().adopt();
                    run.run_block(index);
                })
            };
            let job = BatchJob::new(len, workers, strategy, task, about(run));
            // A panicking backend must not unwind into the caller either.
            if let Err(payload) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| backend.run(&job)))
            {
                *failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(format!(
                    "the `{}` backend panicked: {}",
                    job.strategy(),
                    panic_message(&*payload)
                ));
                drop_quietly(payload);
            }
        }
    };
    let mut ran = if enforce {
        let own = Arc::clone(&run);
        run.start_job(move |_| hand_over(&own));
        run.finish_jobs()
    } else {
        hand_over(&run);
        run.finish_jobs()
    };
    // A backend failure is the outcome of the first item it left without one.
    let failure = failure
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(message) = failure {
        if let Some(part) = ran.parts.iter_mut().find(|p| matches!(p, Part::Missing(_))) {
            *part = Part::Slots(vec![Err(Some(Box::new(XcsError::Panicked {
                operator: run.plan().op.name().to_owned(),
                index: None,
                message,
            })))]);
        }
    }
    ran
}

/// What the backend may read about the batch, and its items as bytes when the operator's input
/// and output serialize.
fn about<O: Operator>(run: &Arc<Run<O>>) -> About {
    let plan = run.plan();
    let given_up = {
        let run = Arc::clone(run);
        Arc::new(move || run.plan().given_up())
    };
    // Made when a backend asks for it: local backends never pay for it.
    let make_remote = {
        let run = Arc::clone(run);
        Box::new(move || remote(&run))
    };
    let fail = {
        let run = Arc::clone(run);
        Arc::new(move |index: usize, error: XcsError| {
            if run.is_settled(index) {
                return;
            }
            drop_quietly(run.take_input(index));
            run.settle_item(index, Err(error));
        })
    };
    About {
        operator: plan.op.name().to_owned(),
        options: plan.options,
        deadline: plan.deadline(),
        given_up,
        fail,
        remote: std::sync::OnceLock::new(),
        make_remote,
    }
}

/// The batch's items as bytes, when the operator's input and output serialize.
fn remote<O: Operator>(run: &Arc<Run<O>>) -> Option<RemoteItems> {
    let plan = run.plan();
    plan.op.persist_support().map(|persist| {
        let side: Arc<dyn RemoteSide> = Arc::new(Remote {
            run: Arc::clone(run),
            persist,
            held: (0..run.len()).map(|_| Mutex::new(None)).collect(),
            frame: frame(plan, persist),
            signature: Signature::of::<O::Input, O::Output>(
                plan.op.name(),
                persist.version_number(),
            ),
        });
        RemoteItems::new(side)
    })
}

/// What the plans of hedged items borrow (see [`Hedged`]): made when the batch hedges its items
/// (`hedge_after` set, and the operator's input can be copied).
fn frame<O: Operator>(
    plan: &Plan<O>,
    persist: PersistSupport<O::Input, O::Output>,
) -> Option<Frame<O>> {
    plan.options.hedge_after?;
    // A batch hedges its items, not itself.
    if plan.op.__xcs_retried_by_items() {
        return None;
    }
    if plan.op.__xcs_clone_input().is_none() {
        crate::warn::warn_not_hedged(plan.op.name(), std::any::type_name::<O::Input>());
        return None;
    }
    let more = {
        let op = Arc::clone(&plan.op);
        move || Supports {
            persist: Some(persist),
            clone_input: op.__xcs_clone_input(),
            retried_by_items: false,
        }
    };
    let estimate = {
        let op = Arc::clone(&plan.op);
        move |input: &O::Input| op.estimate(input)
    };
    Some(Frame {
        // As an unhedged item's (see `Remote::cached`): the worker applies the rate limit and
        // the retries, the caller the deadline.
        options: ExecutionOptions {
            max_retries: 0,
            rate_limit: None,
            timeout_seconds: None,
            ..plan.options
        },
        more: Box::new(more),
        estimate: Box::new(estimate),
    })
}

/// The options a hedged item's plan runs under, and what the operator offers it.
struct Frame<O: Operator> {
    options: ExecutionOptions,
    more: Box<dyn Fn() -> Supports<O::Input, O::Output> + Send + Sync>,
    estimate: Box<Estimate<O>>,
}

/// How an operator estimates a call's usage.
type Estimate<O> = dyn Fn(&<O as Operator>::Input) -> crate::Usage + Send + Sync;

/// Where the cache claim, resource permit and budget reservation of an item sent out wait for
/// its result.
type HeldSlot<O> = Mutex<Option<Sent<<O as Operator>::Input, <O as Operator>::Output>>>;

/// The caller's side of items run in another process.
struct Remote<O: Operator> {
    run: Arc<Run<O>>,
    persist: PersistSupport<O::Input, O::Output>,
    /// What items sent out hold (cache claims, resource permits, budget reservations), settled
    /// when their result comes back.
    held: Vec<HeldSlot<O>>,
    signature: Signature,
    /// What hedged items' plans borrow, when the batch hedges them.
    frame: Option<Frame<O>>,
}

impl<O: Operator> Remote<O> {
    fn settle(&self, index: usize, result: Result<O::Output, XcsError>) {
        self.run.settle_item(index, result);
    }

    /// Answers `input` from the memory cache or the `cache_dir` store if it can; otherwise
    /// holds its claim (in `self.held`) and gives the input back to be sent. The call plan's
    /// admission and cache steps run here, as for a local call; the worker runs the rest
    /// (rate limit, retries, the body).
    fn cached(&self, index: usize, input: O::Input) -> Option<O::Input> {
        let plan = self.run.plan();
        let name = plan.op.name();
        let _adopted = plan.adopt();
        let persist = self.persist;
        let supports = move || Supports {
            persist: Some(persist),
            clone_input: None,
            retried_by_items: true,
        };
        let options = ExecutionOptions {
            max_retries: 0,
            rate_limit: None,
            timeout_seconds: None,
            ..plan.options
        };
        let now = Now::LAZY;
        // The caller admits the item against the operator's resource and the budget (by its
        // estimate) before it is sent.
        let estimate = |input: &O::Input| plan.op.estimate(input);
        let charge = Charge {
            resource: plan.op.resource(),
            estimate: Some(&estimate),
        };
        let call = CallPlan::new(
            name,
            Some(index),
            &options,
            // Asked only when caching (an operator that cannot be cached warns when asked).
            plan.options
                .enable_caching
                .then(|| plan.op.__xcs_cache_support())
                .flatten(),
            &supports,
            charge,
            plan.context.clone(),
            input,
            now,
        );
        self.admit(index, call, |call| {
            *self.held[index]
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(call.into_sent());
        })
    }

    /// Runs `call`'s steps up to its body: gives the input back to be sent, once `keep` has
    /// what the call holds; or settles the item (a cache hit, a refusal) and gives nothing.
    fn admit<'p>(
        &self,
        index: usize,
        mut call: CallPlan<'p, O::Input, O::Output>,
        keep: impl FnOnce(CallPlan<'p, O::Input, O::Output>),
    ) -> Option<O::Input> {
        let name = self.run.plan().op.name();
        let mut step = call.start(Now::LAZY);
        loop {
            step = match step {
                Step::Lookup => {
                    let (support, key, at, held) = call.lookup_request();
                    let lookup = cache::lookup(support, key, at, held);
                    call.looked_up(lookup, Now::LAZY)
                }
                Step::Run(input) => {
                    keep(call);
                    return Some(input);
                }
                Step::Done => {
                    let (result, event) = call.outcome();
                    if let Some(outcome) = event {
                        trace::begin(name, Some(index)).finish(outcome);
                    }
                    self.settle(index, result);
                    return None;
                }
                // Waits happen before the body only with a rate limit or a resource.
                Step::Sleep => {
                    let until = call.until();
                    crate::policy::rate::sleep_until(until);
                    call.woke(Now::LAZY)
                }
                Step::Wait => {
                    let listener = call.take_listener();
                    listener.wait(call.deadline().map(|(at, _)| at));
                    call.woke(Now::LAZY)
                }
                Step::Write => {
                    let write = call.take_write();
                    write.run();
                    call.written()
                }
            };
        }
    }
}

impl<O: Operator> RemoteSide for Remote<O> {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn take(&self, index: usize) -> Outgoing {
        let plan = self.run.plan();
        // The caller admits the item (its resource, its budget) and answers it from the cache
        // if it can; the worker runs it without admitting it again.
        let admits = plan.options.enable_caching
            || plan.op.resource().is_some()
            || plan.context.budget.is_some()
            || crate::policy::budget::global().is_some();
        self.take_with(index, |input| {
            if admits {
                self.cached(index, input)
            } else {
                Some(input)
            }
        })
    }

    fn complete_with_usage(
        &self,
        index: usize,
        result: Result<Vec<u8>, XcsError>,
        usage: Option<crate::Usage>,
    ) {
        if index >= self.held.len() || self.run.is_settled(index) {
            return;
        }
        let output = self.decode(index, result);
        self.complete_charged(index, output, usage);
    }

    fn is_settled(&self, index: usize) -> bool {
        self.run.is_settled(index)
    }

    fn trace_parent(&self) -> Option<trace::Parent> {
        self.run.plan().trace_parent().cloned()
    }

    fn unwanted(&self, index: usize) -> bool {
        self.run.plan().failed_before(index)
    }

    fn hedging(&self) -> Option<Box<dyn RemoteHedging + '_>> {
        let frame = self.frame.as_ref()?;
        Some(Box::new(Hedged {
            remote: self,
            frame,
            plans: (0..self.held.len()).map(|_| Mutex::new(None)).collect(),
            hedge_won: (0..self.held.len())
                .map(|_| AtomicBool::new(false))
                .collect(),
        }))
    }
}

impl<O: Operator> Remote<O> {
    /// Item `index`, to send: `admit` runs the caller's steps before the body (or settles the
    /// item and gives nothing back); the input that comes back is serialized.
    fn take_with(
        &self,
        index: usize,
        admit: impl FnOnce(O::Input) -> Option<O::Input>,
    ) -> Outgoing {
        let plan = self.run.plan();
        if plan.skips(index) {
            return Outgoing::Settled;
        }
        let Some(mut inputs) = self.run.take_input(index) else {
            return Outgoing::Settled;
        };
        let Some(input) = inputs.pop() else {
            return Outgoing::Settled;
        };
        let Some(input) = admit(input) else {
            return Outgoing::Settled;
        };
        match self.encode(index, &input) {
            Some(bytes) => {
                drop_quietly(input);
                Outgoing::Input(bytes)
            }
            None => {
                drop_quietly(input);
                Outgoing::Settled
            }
        }
    }

    /// `input` serialized; `None` when it cannot be (item `index` is settled with the reason).
    fn encode(&self, index: usize, input: &O::Input) -> Option<Vec<u8>> {
        let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.persist.encode_input(input)
        }));
        match encoded {
            Ok(Some(bytes)) => Some(bytes),
            Ok(None) => {
                self.complete_with(
                    index,
                    Err(self.cluster_error(index, "its input cannot be serialized")),
                );
                None
            }
            Err(payload) => {
                let error = util::panicked(self.run.plan().op.name(), Some(index), payload);
                self.complete_with(index, Err(error));
                None
            }
        }
    }

    /// An item's outcome as it came back, its output deserialized.
    fn decode(
        &self,
        index: usize,
        result: Result<Vec<u8>, XcsError>,
    ) -> Result<O::Output, XcsError> {
        result.and_then(|bytes| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.persist.decode_output(&bytes)
            }))
            .ok()
            .flatten()
            .ok_or_else(|| {
                self.cluster_error(
                    index,
                    "the worker's output does not decode as its output type",
                )
            })
        })
    }

    /// Settles item `index` with `result`, storing a success in the cache it was claimed in.
    fn complete_with(&self, index: usize, result: Result<O::Output, XcsError>) {
        self.complete_charged(index, result, None);
    }

    /// [`complete_with`](Self::complete_with) for an item whose body ran elsewhere and recorded
    /// `usage` there: its resource permit and budget reservation are settled with it.
    fn complete_charged(
        &self,
        index: usize,
        result: Result<O::Output, XcsError>,
        usage: Option<crate::Usage>,
    ) {
        let sent = self
            .held
            .get(index)
            .and_then(|held| held.lock().unwrap_or_else(PoisonError::into_inner).take());
        let name = self.run.plan().op.name();
        let result = match sent {
            Some(mut sent) => {
                sent.settle(&result, usage);
                match sent.held.take() {
                    Some(held) => held.write_and_finish(result, name, Some(index)),
                    None => result,
                }
            }
            None => result,
        };
        self.settle(index, result);
    }

    fn cluster_error(&self, index: usize, reason: &str) -> XcsError {
        XcsError::Cluster {
            operator: self.run.plan().op.name().to_owned(),
            index: Some(index),
            reason: reason.to_owned(),
        }
    }
}

/// A sync batch's items hedged by the caller while they run elsewhere (see
/// [`RemoteHedging`]): each item's call plan — admitted as an unhedged item's is, with its input
/// kept for a copy — decides the hedge (`CallPlan::hedge_at`, `hedge`) and the race
/// (`CallPlan::raced`), as for a local item; the attempts are trips to where the item runs.
struct Hedged<'r, O: Operator> {
    remote: &'r Remote<O>,
    frame: &'r Frame<O>,
    /// The plans of the items out, by index.
    plans: Vec<Mutex<Option<PlanOf<'r, O>>>>,
    /// Whether an item's hedge answered it.
    hedge_won: Vec<AtomicBool>,
}

impl<'r, O: Operator> Hedged<'r, O> {
    /// Item `index`'s plan, while it is out (`None` for an index outside the batch).
    fn plan(&self, index: usize) -> Option<std::sync::MutexGuard<'_, Option<PlanOf<'r, O>>>> {
        self.plans
            .get(index)
            .map(|slot| slot.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

type PlanOf<'r, O> = CallPlan<'r, <O as Operator>::Input, <O as Operator>::Output>;

impl<O: Operator> RemoteHedging for Hedged<'_, O> {
    fn take(&self, index: usize) -> Outgoing {
        if index >= self.plans.len() {
            return Outgoing::Settled;
        }
        let remote = self.remote;
        remote.take_with(index, |input| {
            let plan = remote.run.plan();
            let _adopted = plan.adopt();
            let frame = self.frame;
            let charge = Charge {
                resource: plan.op.resource(),
                estimate: Some(&*frame.estimate),
            };
            let call = CallPlan::new(
                plan.op.name(),
                Some(index),
                &frame.options,
                plan.options
                    .enable_caching
                    .then(|| plan.op.__xcs_cache_support())
                    .flatten(),
                &*frame.more,
                charge,
                plan.context.clone(),
                input,
                Now::LAZY,
            );
            remote.admit(index, call, |call| {
                if let Some(mut slot) = self.plan(index) {
                    *slot = Some(call);
                }
            })
        })
    }

    fn hedge_at(&self, index: usize) -> Option<Instant> {
        self.plan(index)?.as_mut()?.hedge_at(Instant::now())
    }

    fn hedge(&self, index: usize) -> RemoteHedge {
        let Some(mut slot) = self.plan(index) else {
            return RemoteHedge::Never;
        };
        let Some(call) = slot.as_mut() else {
            return RemoteHedge::Never;
        };
        let _adopted = self.remote.run.plan().adopt();
        match call.hedge(Instant::now()) {
            HedgeStep::Run(input) => {
                let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.remote.persist.encode_input(&input)
                }));
                drop_quietly(input);
                match encoded {
                    Ok(Some(bytes)) => RemoteHedge::Send(bytes),
                    // Serialized once already: the copy does too. If not, the hedge ends here.
                    _ => {
                        let failed = self
                            .remote
                            .cluster_error(index, "its input cannot be serialized");
                        let _ = call.raced(Racer::Hedge, Err(failed), Now::LAZY);
                        RemoteHedge::Never
                    }
                }
            }
            HedgeStep::Later(at) => RemoteHedge::Later(at),
            HedgeStep::Never => RemoteHedge::Never,
        }
    }

    fn complete(
        &self,
        index: usize,
        hedge: bool,
        result: Result<Vec<u8>, XcsError>,
        usage: Option<crate::Usage>,
    ) -> bool {
        let remote = self.remote;
        let Some(mut slot) = self.plan(index) else {
            return true;
        };
        let Some(call) = slot.as_mut() else {
            return remote.run.is_settled(index);
        };
        if remote.run.is_settled(index) {
            // Settled some other way (a failure of the batch's own): what the plan holds goes.
            *slot = None;
            return true;
        }
        let _adopted = remote.run.plan().adopt();
        // What the attempt recorded where it ran, on its meter here.
        let context = if hedge {
            call.hedge_context()
        } else {
            call.body_context()
        };
        if let (Some(meter), Some(usage)) = (&context.meter, usage) {
            meter.record(usage);
        }
        let which = if hedge { Racer::Hedge } else { Racer::First };
        let output = remote.decode(index, result);
        let won = output.is_ok();
        let mut step = match call.raced(which, output, Now::LAZY) {
            Raced::Wait => return false,
            Raced::Over(step) => step,
        };
        if let (true, Some(hedge_won)) = (hedge && won, self.hedge_won.get(index)) {
            hedge_won.store(true, Ordering::Release);
        }
        let name = remote.run.plan().op.name();
        loop {
            step = match step {
                Step::Write => {
                    let write = call.take_write();
                    write.run();
                    call.written()
                }
                Step::Done => {
                    let (result, event) = call.outcome();
                    if let Some(outcome) = event {
                        trace::begin(name, Some(index)).finish(outcome);
                    }
                    *slot = None;
                    drop(slot);
                    remote.settle(index, result);
                    return true;
                }
                // A plan without retries goes from the body to its write and its end only.
                Step::Lookup | Step::Sleep | Step::Wait | Step::Run(_) => {
                    if let Step::Run(input) = step {
                        drop_quietly(input);
                    }
                    *slot = None;
                    drop(slot);
                    remote.settle(
                        index,
                        Err(remote.cluster_error(index, "the item's call took a step it cannot")),
                    );
                    return true;
                }
            };
        }
    }

    fn hedge_won(&self, index: usize) -> bool {
        self.hedge_won
            .get(index)
            .is_some_and(|won| won.load(Ordering::Acquire))
    }
}
