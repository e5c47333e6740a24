//! What a batch is, whichever driver runs it: the items' shared plan and the batch rules.
//!
//! The rules, written once here and used by every driver:
//!
//! - **Options**: the caller's effective options are read once, at call time, and every item
//!   runs under exactly them ([`Plan::adopt`] pins them on whichever thread runs the item).
//! - **Lowest-index error**: once an item fails, items *after* it that have not started are
//!   not started; items before it still run (one of them may fail too), so the call reports the
//!   failing item with the lowest index however the items were scheduled ([`Plan::skips`]).
//! - **Given up**: after the batch's deadline, or once the call it runs inside gave up, no item
//!   starts.
//! - **Outcomes**: [`collect`] gives the outputs in input order or the lowest-index error;
//!   [`settle`] gives every item's own outcome. An item that never ran is a timeout when a
//!   deadline cut the batch short and [`XcsError::Cancelled`] otherwise — never a bogus timeout.
//! - **Panics**: bodies are guarded per item; values the runtime discards (outputs of a failed
//!   batch, inputs of skipped items) are dropped with their `Drop` panics caught.
//! - **Trace**: [`run_traced`] records the batch call; items are recorded by the call path
//!   under the batch as their parent.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::ambient;
use crate::call::{self, DetachedBody};
use crate::deadline::{self, CallContext, CancelFlag};
use crate::error::XcsError;
use crate::operator::Operator;
use crate::options::ExecutionOptions;
use crate::policy;
use crate::progress::{BatchProgress, ProgressOutcome};
use crate::scope::get_execution_options;
use crate::trace::{self, Outcome};
use crate::util::{self, drop_quietly};

/// Which transform made the batch.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    VMap,
    /// `pmap` with its worker count (`0`: one per CPU).
    PMap(usize),
}

/// One item's outcome: its output, its error, or `Err(None)` when it never ran. The error is
/// boxed so a slot is barely larger than the output.
pub(crate) type Slot<T> = Result<T, Option<Box<XcsError>>>;

/// The slot of an item that never ran.
pub(crate) const NOT_RUN: Option<Box<XcsError>> = None;

/// The outcomes of a run of consecutive items.
pub(crate) enum Part<T> {
    /// Every item succeeded (the common case: no per-item wrapping to undo).
    Ok(Vec<T>),
    /// Some items failed or did not run.
    Slots(Vec<Slot<T>>),
    /// `len` items whose outcome never arrived (a deadline cut them off).
    Missing(usize),
}

impl<T> Part<T> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Part::Ok(v) => v.len(),
            Part::Slots(v) => v.len(),
            Part::Missing(n) => *n,
        }
    }

    fn succeeded(&self) -> bool {
        match self {
            Part::Ok(_) => true,
            Part::Slots(v) => v.iter().all(Result::is_ok),
            Part::Missing(n) => *n == 0,
        }
    }
}

/// What a batch produced: its parts in input order, and the timeout if the deadline cut the
/// batch short.
pub(crate) struct Ran<T> {
    pub(crate) parts: Vec<Part<T>>,
    pub(crate) timeout: Option<Duration>,
}

/// The first item (lowest index) that failed or never ran.
enum FirstFailure<'a> {
    Failed(&'a XcsError),
    NotRun,
}

impl<T> Ran<T> {
    /// The item with the lowest index that failed or never ran: the one [`collect`] reports.
    fn first_failure(&self) -> Option<FirstFailure<'_>> {
        for part in &self.parts {
            match part {
                Part::Ok(_) => {}
                Part::Missing(0) => {}
                Part::Missing(_) => return Some(FirstFailure::NotRun),
                Part::Slots(slots) => {
                    for slot in slots {
                        match slot {
                            Ok(_) => {}
                            Err(Some(error)) => return Some(FirstFailure::Failed(error)),
                            Err(None) => return Some(FirstFailure::NotRun),
                        }
                    }
                }
            }
        }
        None
    }

    /// Whether an item failed with an error that `what` picks.
    fn any_error(&self, what: impl Fn(&XcsError) -> bool) -> bool {
        self.parts.iter().any(|part| match part {
            Part::Slots(slots) => slots.iter().any(|s| matches!(s, Err(Some(e)) if what(e))),
            _ => false,
        })
    }

    /// Whether every item succeeded.
    pub(crate) fn succeeded(&self) -> bool {
        self.timeout.is_none() && self.parts.iter().all(Part::succeeded)
    }

    fn all_ok(&self) -> bool {
        self.timeout.is_none() && self.parts.iter().all(|p| matches!(p, Part::Ok(_)))
    }

    fn len(&self) -> usize {
        self.parts.iter().map(Part::len).sum()
    }

    /// Every slot in input order (the slow path: something failed or did not run).
    fn into_slots(self) -> Vec<Slot<T>> {
        let mut slots = Vec::with_capacity(self.len());
        for part in self.parts {
            match part {
                Part::Ok(v) => slots.extend(v.into_iter().map(Ok)),
                Part::Slots(v) => slots.extend(v),
                Part::Missing(n) => slots.extend((0..n).map(|_| Err(NOT_RUN))),
            }
        }
        slots
    }
}

/// The error for item `index`, which never ran.
fn not_run(operator: &str, index: usize, timeout: Option<Duration>) -> XcsError {
    let timeout = timeout.or_else(|| deadline::current().timeout);
    match timeout {
        Some(timeout) => util::timeout_error(operator, Some(index), timeout),
        None => XcsError::Cancelled {
            operator: operator.to_owned(),
            index: Some(index),
        },
    }
}

/// The call's result: every output in input order, or the error of the lowest-index item that
/// failed (or never ran).
pub(crate) fn collect<T>(
    ran: Result<Ran<T>, XcsError>,
    operator: &str,
) -> Result<Vec<T>, XcsError> {
    let ran = ran?;
    if ran.all_ok() {
        let len = ran.len();
        let mut parts = ran.parts.into_iter().map(|part| match part {
            Part::Ok(v) => v,
            _ => unreachable!("checked by all_ok"),
        });
        let mut outputs = parts.next().unwrap_or_default();
        // Grown once (not at all when the first part kept the batch's allocation).
        outputs.reserve_exact(len - outputs.len());
        for mut part in parts {
            outputs.append(&mut part);
        }
        return Ok(outputs);
    }
    let timeout = ran.timeout;
    let mut outputs = Vec::with_capacity(ran.len());
    let mut slots = ran.into_slots().into_iter().enumerate();
    let mut failure = None;
    for (index, slot) in slots.by_ref() {
        match slot {
            Ok(output) => outputs.push(output),
            Err(Some(error)) => {
                failure = Some(error.at_index(index));
                break;
            }
            Err(None) => {
                failure = Some(not_run(operator, index, timeout));
                break;
            }
        }
    }
    match failure {
        None => Ok(outputs),
        Some(error) => {
            // The other items' outputs are discarded: their `Drop` must not unwind into the
            // caller.
            drop_quietly(outputs);
            drop_quietly(slots);
            Err(error)
        }
    }
}

/// Every item's own outcome, in input order.
pub(crate) fn settle<T>(
    ran: Result<Ran<T>, XcsError>,
    operator: &str,
    len: usize,
) -> Vec<Result<T, XcsError>> {
    match ran {
        Ok(ran) => {
            let timeout = ran.timeout;
            ran.into_slots()
                .into_iter()
                .enumerate()
                .map(|(index, slot)| match slot {
                    Ok(output) => Ok(output),
                    Err(Some(error)) => Err(error.at_index(index)),
                    Err(None) => Err(not_run(operator, index, timeout)),
                })
                .collect()
        }
        // The batch could not start at all (no backend, deadline already passed): every item
        // gets that error.
        Err(error) => (0..len)
            .map(|index| Err(error.describe_again().at_index(index)))
            .collect(),
    }
}

/// `run` recorded as one event when tracing is on (the top-level call of a batch).
pub(crate) fn run_traced<T>(
    name: &str,
    run: impl FnOnce() -> Result<Ran<T>, XcsError>,
) -> Result<Ran<T>, XcsError> {
    if !get_execution_options().trace_execution {
        return run();
    }
    let recorder = trace::begin(name, None);
    let ran = run();
    recorder.finish(trace_outcome(&ran));
    ran
}

/// How a batch call is recorded in the trace.
pub(crate) fn trace_outcome<T>(ran: &Result<Ran<T>, XcsError>) -> Outcome {
    match ran {
        Err(XcsError::Timeout { .. }) => Outcome::Timeout,
        Err(_) => Outcome::Error,
        // What `collect` reports: the lowest-index item that failed or never ran.
        Ok(ran) => match ran.first_failure() {
            None => Outcome::Ok,
            Some(FirstFailure::Failed(error)) if error.is_timeout() => Outcome::Timeout,
            Some(FirstFailure::NotRun) if ran.timeout.is_some() => Outcome::Timeout,
            Some(_) => Outcome::Error,
        },
    }
}

/// Everything an item needs, shared by the threads (or futures) that run items.
pub(crate) struct Plan<O> {
    pub(crate) op: Arc<O>,
    pub(crate) options: ExecutionOptions,
    /// What items run under: the batch's deadline and its cancellation flag.
    pub(crate) context: CallContext,
    pub(crate) stop: Arc<CancelFlag>,
    settled: bool,
    /// The lowest index of an item that failed so far (`usize::MAX`: none).
    failed_at: AtomicUsize,
    /// The event items are recorded under, when tracing.
    trace_parent: Option<trace::Parent>,
    /// The batch's progress report, with `show_progress`.
    pub(crate) progress: Option<Arc<BatchProgress>>,
    /// Whether items are only their bodies: no call policy, no deadline, no progress report
    /// (then an item is its body with panics caught, and the checks are made once per batch).
    lean: bool,
}

impl<O> Plan<O> {
    /// The plan of a batch of `len` items of `operator` (named for its progress bar).
    pub(crate) fn new(
        op: &Arc<O>,
        operator: &str,
        len: usize,
        options: ExecutionOptions,
        timing: &Timing,
        settled: bool,
    ) -> Self {
        let stop = CancelFlag::child_of(timing.parent.cancel.clone());
        let progress = BatchProgress::start(operator, len, &options);
        let lean = !policy::needs_plan(&options, timing.deadline.is_some()) && progress.is_none();
        Plan {
            op: Arc::clone(op),
            options,
            context: CallContext {
                deadline: timing.deadline.map(|(at, _)| at),
                timeout: timing.deadline.map(|(_, t)| t),
                cancel: Some(Arc::clone(&stop)),
                claims: timing.parent.claims.clone(),
                meter: timing.parent.meter.clone(),
                budget: timing.parent.budget.clone(),
            },
            stop,
            settled,
            failed_at: AtomicUsize::new(usize::MAX),
            trace_parent: if options.trace_execution {
                trace::current_parent()
            } else {
                None
            },
            progress,
            lean,
        }
    }

    /// Reports item `index` finished, to the progress bar and hook (with `show_progress`).
    #[inline]
    pub(crate) fn report(&self, index: usize, ok: bool) {
        if let Some(progress) = &self.progress {
            progress.item(index, ok);
        }
    }

    /// Concludes a batch that a driver has run: when the first item without an outcome was left
    /// unstarted and the batch's deadline has passed, the batch timed out (whichever of the
    /// deadline check and an item start happened first: a call cut by its deadline returns
    /// `Timeout`, never `Cancelled`). Then the progress report is finished.
    pub(crate) fn conclude<T>(&self, ran: &mut Ran<T>) {
        if ran.timeout.is_none()
            && self.context.deadline.is_some_and(|at| Instant::now() >= at)
            && matches!(ran.first_failure(), Some(FirstFailure::NotRun))
        {
            ran.timeout = Some(self.context.timeout.unwrap_or_default());
        }
        self.finish_progress(ran);
    }

    /// Finishes the progress report with the batch's outcome.
    fn finish_progress<T>(&self, ran: &Ran<T>) {
        if let Some(progress) = &self.progress {
            progress.finish(
                if ran.timeout.is_some() || ran.any_error(XcsError::is_timeout) {
                    ProgressOutcome::Timeout
                } else if ran.succeeded() {
                    ProgressOutcome::Ok
                } else if ran.any_error(|e| matches!(e, XcsError::Panicked { .. })) {
                    ProgressOutcome::Panicked
                } else {
                    ProgressOutcome::Error
                },
            );
        }
    }

    /// The batch's deadline, if it has one.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.context.deadline
    }

    /// Whether the whole batch was given up (its deadline passed, or the call it runs inside
    /// gave up): items not yet started stay unstarted.
    pub(crate) fn given_up(&self) -> bool {
        self.stop.is_cancelled() || self.context.deadline.is_some_and(|at| Instant::now() >= at)
    }

    /// Whether item `index`, not yet started, should stay unstarted.
    #[inline]
    pub(crate) fn skips(&self, index: usize) -> bool {
        self.failed_before(index) || self.given_up()
    }

    /// Whether an item before `index` has failed: the batch's answer is that error (or an
    /// earlier one), so item `index` is not needed, whether or not it started.
    #[inline]
    pub(crate) fn failed_before(&self, index: usize) -> bool {
        index > self.failed_at.load(Ordering::Acquire)
    }

    /// Carries the caller's options, deadline and (when tracing) trace parent to the current
    /// thread, until the guards drop.
    pub(crate) fn adopt(&self) -> ambient::Entered {
        ambient::enter(
            self.options,
            &self.context,
            self.trace_parent.as_ref(),
            self.progress.as_ref(),
        )
    }

    /// On the caller's own thread (its options and trace parent are the batch's already): the
    /// batch's deadline context and progress report, until the guards drop.
    pub(crate) fn adopt_on_caller(
        &self,
    ) -> (deadline::ContextGuard, Option<crate::progress::EnterGuard>) {
        ambient::enter_on_caller(&self.context, self.progress.as_ref())
    }

    /// Records that item `index` failed (unless settled): later unstarted items stay unstarted.
    pub(crate) fn note_failure(&self, index: usize) {
        if !self.settled {
            self.failed_at.fetch_min(index, Ordering::AcqRel);
        }
    }

    /// The trace parent of the batch's items, if tracing.
    #[cfg_attr(not(any(feature = "tokio", feature = "nats")), allow(dead_code))]
    pub(crate) fn trace_parent(&self) -> Option<&trace::Parent> {
        self.trace_parent.as_ref()
    }

    /// Sets the trace parent of the batch's items (async batches record their own event).
    #[cfg(feature = "tokio")]
    pub(crate) fn with_trace_parent(mut self, parent: Option<trace::Parent>) -> Self {
        self.trace_parent = parent;
        self
    }
}

impl<O: Operator> Plan<O> {
    /// Runs item `index` on the current thread (whose options and context are already set).
    #[inline]
    pub(crate) fn run_item(&self, index: usize, input: O::Input) -> Slot<O::Output> {
        let detach = || -> DetachedBody<O::Input, O::Output> {
            let op = Arc::clone(&self.op);
            Box::new(move |input| op.forward(input))
        };
        match call::invoke_under(
            &*self.op,
            input,
            Some(index),
            Some(&detach),
            &self.options,
            self.context.deadline.is_some() || self.options.timeout_seconds.is_some(),
        ) {
            Ok(output) => {
                self.report(index, true);
                Ok(output)
            }
            Err(error) => {
                self.note_failure(index);
                self.report(index, false);
                Err(Some(Box::new(error)))
            }
        }
    }

    /// [`run_items`](Self::run_items) for a batch whose items are only their bodies and that
    /// stops at its first failure: the outputs are collected in place, into the inputs' own
    /// buffer when their layouts allow (as a hand-written `into_iter().map(f).collect()` does;
    /// a fresh vector of outputs costs its page faults). The items after the first failure are
    /// not started, and dropped where they are: only for inputs whose drop does nothing.
    fn run_lean_items(&self, start: usize, inputs: Vec<O::Input>) -> Part<O::Output> {
        let len = inputs.len();
        let name = self.op.name();
        let mut index = start;
        let mut miss = None;
        let outputs: Vec<O::Output> = inputs
            .into_iter()
            .map_while(|input| {
                if self.skips(index) {
                    drop_quietly(input);
                    miss = Some(Err(NOT_RUN));
                    return None;
                }
                match util::guarded(name, Some(index), || self.op.forward(input)) {
                    Ok(output) => {
                        index += 1;
                        Some(output)
                    }
                    Err(error) => {
                        self.note_failure(index);
                        miss = Some(Err(Some(Box::new(error))));
                        None
                    }
                }
            })
            .collect();
        let Some(miss) = miss else {
            return Part::Ok(outputs);
        };
        let mut slots: Vec<Slot<O::Output>> = Vec::with_capacity(len);
        let ran = outputs.len();
        slots.extend(outputs.into_iter().map(Ok));
        slots.push(miss);
        slots.extend((ran + 1..len).map(|_| Err(NOT_RUN)));
        Part::Slots(slots)
    }

    /// Runs the items `start..` of `inputs` in order on this thread, skipping those the rules
    /// say not to start.
    pub(crate) fn run_items(&self, start: usize, inputs: Vec<O::Input>) -> Part<O::Output> {
        let len = inputs.len();
        // In place only when dropping the unstarted inputs cannot run user code: `collect`
        // drops them itself, where a panicking `Drop` would not be caught.
        if policy::lean(self.lean, self.op.resource())
            && !self.settled
            && !std::mem::needs_drop::<O::Input>()
        {
            return self.run_lean_items(start, inputs);
        }
        let mut outputs = Vec::with_capacity(len);
        let mut items = inputs.into_iter();
        let mut index = start;
        // Fast path: every item succeeds.
        let mut first_miss = None;
        for input in items.by_ref() {
            if self.skips(index) {
                drop_quietly(input);
                first_miss = Some(Err(NOT_RUN));
                break;
            }
            match self.run_item(index, input) {
                Ok(output) => outputs.push(output),
                Err(error) => {
                    first_miss = Some(Err(error));
                    break;
                }
            }
            index += 1;
        }
        let Some(miss) = first_miss else {
            return Part::Ok(outputs);
        };
        let mut slots: Vec<Slot<O::Output>> = Vec::with_capacity(len);
        slots.extend(outputs.into_iter().map(Ok));
        slots.push(miss);
        for input in items {
            index += 1;
            if self.skips(index) {
                drop_quietly(input);
                slots.push(Err(NOT_RUN));
            } else {
                slots.push(self.run_item(index, input));
            }
        }
        Part::Slots(slots)
    }
}

/// When a call starting now must finish, and whether it must enforce that itself.
pub(crate) struct Timing {
    /// The call's deadline and the timeout it comes from.
    pub(crate) deadline: Option<(Instant, Duration)>,
    /// The context of the call this one runs inside.
    pub(crate) parent: CallContext,
    /// Whether no enclosing call returns by the deadline, so this one must return at it.
    pub(crate) enforce: bool,
}

impl Timing {
    /// The timing of a call of `operator` starting now under `options`, or the timeout error if
    /// its deadline has passed already.
    pub(crate) fn now(operator: &str, options: &ExecutionOptions) -> Result<Timing, XcsError> {
        Timing::with_parent(operator, options, deadline::current())
    }

    /// The timing of a call made inside `parent` (read where the call was made).
    pub(crate) fn with_parent(
        operator: &str,
        options: &ExecutionOptions,
        parent: CallContext,
    ) -> Result<Timing, XcsError> {
        let now = Instant::now();
        let deadline = policy::deadline::deadline_for(options, &parent, &mut now.into());
        if let Some((at, timeout)) = deadline {
            if now >= at || parent.is_cancelled() {
                return Err(util::timeout_error(operator, None, timeout));
            }
        }
        let enforce = policy::deadline::must_enforce(deadline, &parent);
        Ok(Timing {
            deadline,
            parent,
            enforce,
        })
    }
}
