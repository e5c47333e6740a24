//! `vmap` and `pmap`: one operator over a batch of inputs, steered by the execution options.
//!
//! Both read the caller's effective options *at call time* (scope over global) and carry them to
//! every thread that runs an item, together with the caller's deadline and a cancellation flag
//! for the batch. How a batch runs follows from the options:
//!
//! | situation | where items run |
//! |---|---|
//! | `use_parallel = false`, one item, or one worker | in order, on the caller's thread |
//! | `vmap`, parallel | the compute pool with `max_workers` threads (rayon work-stealing) |
//! | `pmap`, parallel | exactly `num_workers` spare threads pulling items in order |
//! | under a deadline | spare threads; the caller waits no longer than the deadline |
//! | `device_strategy` naming a registered backend | that backend |
//!
//! `vmap` is for CPU-bound items: rayon's adaptive splitting makes a batch of tiny items cost
//! what a hand-written `par_iter` costs. `pmap` is for I/O-bound items (model calls, network):
//! each of its workers takes the next unstarted item, so slow items balance across workers and
//! the wall time is close to `items / workers × latency`.
//!
//! Failure stops the batch early: once an item fails, items after it that have not started are
//! not started. Items before it still run (one of them may fail too), so the call reports the
//! failing item with the lowest index however the items were scheduled. Items already running
//! finish; their results are dropped. Panics are caught per item.
//! [`VMap::call_settled`] and [`PMap::call_settled`] run every item and return each outcome.

use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::call::{self, DetachedBody};
use crate::deadline::{self, CallContext, CancelFlag};
use crate::device::{self, Backend, BatchJob};
use crate::error::XcsError;
use crate::operator::Operator;
use crate::options::ExecutionOptions;
use crate::pool;
use crate::scope::{self, get_execution_options};
use crate::trace::{self, Outcome};

/// `op` over a batch, in parallel where the options allow: the batch form of an operator.
///
/// The result is itself an [`Operator`] with `Input = Vec<O::Input>` and
/// `Output = Vec<O::Output>`, in input order; it nests (`vmap(vmap(op))`).
///
/// Items run in parallel when the effective `use_parallel` is true and the batch has more than
/// one item, on at most `max_workers` threads (unset: one per CPU), otherwise in order on the
/// caller's thread.
///
/// ```
/// use xcs::{Operator, XcsError, execution_options, vmap};
///
/// struct Square;
/// impl Operator for Square {
///     type Input = u64;
///     type Output = u64;
///     fn forward(&self, x: u64) -> Result<u64, XcsError> { Ok(x * x) }
///     fn name(&self) -> &str { "square" }
/// }
///
/// let squares = execution_options!(max_workers = 2 => vmap(Square).call(vec![1, 2, 3]))?;
/// assert_eq!(squares, vec![1, 4, 9]);
/// # Ok::<(), XcsError>(())
/// ```
pub fn vmap<O: Operator>(op: O) -> VMap<O> {
    let name = format!("vmap({})", op.name());
    VMap {
        op: Arc::new(op),
        name,
    }
}

/// `op` over a batch on exactly `num_workers` workers (`0`: one per CPU): for I/O-bound
/// operators, where more workers than cores pay off.
///
/// `max_workers` does not apply to `pmap` (its worker count is explicit), but
/// `use_parallel = false` still makes it run in order on the caller's thread, so one switch
/// turns off all parallelism for debugging.
///
/// ```
/// use std::time::Duration;
/// use xcs::{Operator, XcsError, pmap};
///
/// struct Fetch;
/// impl Operator for Fetch {
///     type Input = u32;
///     type Output = String;
///     fn forward(&self, id: u32) -> Result<String, XcsError> {
///         std::thread::sleep(Duration::from_millis(5)); // an I/O wait
///         Ok(format!("doc-{id}"))
///     }
///     fn name(&self) -> &str { "fetch" }
/// }
///
/// let docs = pmap(Fetch, 8).call((0..8).collect())?;
/// assert_eq!(docs[7], "doc-7");
/// # Ok::<(), XcsError>(())
/// ```
pub fn pmap<O: Operator>(op: O, num_workers: usize) -> PMap<O> {
    let name = format!("pmap({})", op.name());
    PMap {
        op: Arc::new(op),
        name,
        workers: num_workers,
    }
}

/// The batch form of an operator, made by [`vmap`].
pub struct VMap<O> {
    op: Arc<O>,
    name: String,
}

/// The batch form of an operator on a fixed number of workers, made by [`pmap`].
pub struct PMap<O> {
    op: Arc<O>,
    name: String,
    workers: usize,
}

impl<O> Clone for VMap<O> {
    fn clone(&self) -> Self {
        VMap {
            op: Arc::clone(&self.op),
            name: self.name.clone(),
        }
    }
}

impl<O> Clone for PMap<O> {
    fn clone(&self) -> Self {
        PMap {
            op: Arc::clone(&self.op),
            name: self.name.clone(),
            workers: self.workers,
        }
    }
}

impl<O: Operator> std::fmt::Debug for VMap<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VMap")
            .field("operator", &self.op.name())
            .finish()
    }
}

impl<O: Operator> std::fmt::Debug for PMap<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PMap")
            .field("operator", &self.op.name())
            .field("num_workers", &self.workers)
            .finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    VMap,
    PMap(usize),
}

impl<O: Operator> VMap<O> {
    /// The operator applied to each item.
    pub fn inner(&self) -> &O {
        &self.op
    }

    /// Runs every item, even after others fail, and returns each item's own outcome in input
    /// order (a deadline still applies: items unfinished at the deadline are
    /// [`XcsError::Timeout`]).
    ///
    /// ```
    /// use xcs::{Operator, XcsError, vmap};
    /// struct Parse;
    /// impl Operator for Parse {
    ///     type Input = String;
    ///     type Output = i64;
    ///     fn forward(&self, s: String) -> Result<i64, XcsError> {
    ///         s.parse().map_err(|e| XcsError::operator("parse", e))
    ///     }
    ///     fn name(&self) -> &str { "parse" }
    /// }
    /// let outcomes = vmap(Parse).call_settled(vec!["1".into(), "x".into(), "3".into()]);
    /// assert!(outcomes[0].is_ok() && outcomes[1].is_err() && outcomes[2].is_ok());
    /// ```
    pub fn call_settled(&self, inputs: Vec<O::Input>) -> Vec<Result<O::Output, XcsError>> {
        let len = inputs.len();
        settle(
            run_traced(&self.op, &self.name, Kind::VMap, inputs, true),
            self.op.name(),
            len,
        )
    }
}

impl<O: Operator> PMap<O> {
    /// The operator applied to each item.
    pub fn inner(&self) -> &O {
        &self.op
    }

    /// The worker count this `pmap` was made with (`0`: one per CPU).
    pub fn num_workers(&self) -> usize {
        self.workers
    }

    /// Runs every item, even after others fail, and returns each item's own outcome in input
    /// order (items unfinished at a deadline are [`XcsError::Timeout`]).
    pub fn call_settled(&self, inputs: Vec<O::Input>) -> Vec<Result<O::Output, XcsError>> {
        let len = inputs.len();
        settle(
            run_traced(&self.op, &self.name, Kind::PMap(self.workers), inputs, true),
            self.op.name(),
            len,
        )
    }
}

impl<O: Operator> Operator for VMap<O> {
    type Input = Vec<O::Input>;
    type Output = Vec<O::Output>;

    fn forward(&self, inputs: Self::Input) -> Result<Self::Output, XcsError> {
        collect(run(&self.op, Kind::VMap, inputs, false), self.op.name())
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn call(&self, inputs: Self::Input) -> Result<Self::Output, XcsError> {
        collect(
            run_traced(&self.op, &self.name, Kind::VMap, inputs, false),
            self.op.name(),
        )
    }

    fn __xcs_cache_support(&self) -> Option<crate::cache::CacheSupport<Self::Input, Self::Output>> {
        // Items are cached one by one through the inner operator.
        None
    }
}

impl<O: Operator> Operator for PMap<O> {
    type Input = Vec<O::Input>;
    type Output = Vec<O::Output>;

    fn forward(&self, inputs: Self::Input) -> Result<Self::Output, XcsError> {
        collect(
            run(&self.op, Kind::PMap(self.workers), inputs, false),
            self.op.name(),
        )
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn call(&self, inputs: Self::Input) -> Result<Self::Output, XcsError> {
        collect(
            run_traced(
                &self.op,
                &self.name,
                Kind::PMap(self.workers),
                inputs,
                false,
            ),
            self.op.name(),
        )
    }

    fn __xcs_cache_support(&self) -> Option<crate::cache::CacheSupport<Self::Input, Self::Output>> {
        None
    }
}

/// One item's outcome in a batch: its output, its error, or `Err(None)` when it never finished
/// or never started. The error is boxed so a slot is barely larger than the output: a batch of
/// 100 000 small outputs moves 16-byte slots, not 80-byte ones.
type Slot<T> = Result<T, Option<Box<XcsError>>>;

const NOT_RUN: Option<Box<XcsError>> = None;

/// What a batch produced: each item's slot and the timeout, if the deadline cut the batch
/// short.
struct Ran<T> {
    slots: Vec<Slot<T>>,
    timeout: Option<Duration>,
}

/// The call's result: all outputs, or the error of the lowest-index item that failed (a
/// timeout for the first item the deadline left unfinished).
fn collect<T>(ran: Result<Ran<T>, XcsError>, operator: &str) -> Result<Vec<T>, XcsError> {
    let ran = ran?;
    let mut outputs = Vec::with_capacity(ran.slots.len());
    let mut first_skipped = None;
    for (index, slot) in ran.slots.into_iter().enumerate() {
        match slot {
            Ok(output) => outputs.push(output),
            Err(Some(error)) => return Err(error.at_index(index)),
            Err(None) => match ran.timeout {
                Some(timeout) => return Err(call::timeout_error(operator, Some(index), timeout)),
                None => {
                    first_skipped.get_or_insert(index);
                }
            },
        }
    }
    match first_skipped {
        // Items were skipped because a batch this one runs inside gave up.
        Some(index) => Err(call::timeout_error(
            operator,
            Some(index),
            deadline::current().timeout.unwrap_or_default(),
        )),
        None => Ok(outputs),
    }
}

fn settle<T>(
    ran: Result<Ran<T>, XcsError>,
    operator: &str,
    len: usize,
) -> Vec<Result<T, XcsError>> {
    match ran {
        Ok(ran) => {
            let timeout = ran
                .timeout
                .or_else(|| deadline::current().timeout)
                .unwrap_or_default();
            ran.slots
                .into_iter()
                .enumerate()
                .map(|(index, slot)| match slot {
                    Ok(output) => Ok(output),
                    Err(Some(error)) => Err(error.at_index(index)),
                    Err(None) => Err(call::timeout_error(operator, Some(index), timeout)),
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

/// [`run`] recorded as one event when tracing is on (the top-level call of a batch).
fn run_traced<O: Operator>(
    op: &Arc<O>,
    name: &str,
    kind: Kind,
    inputs: Vec<O::Input>,
    settled: bool,
) -> Result<Ran<O::Output>, XcsError> {
    if !get_execution_options().trace_execution {
        return run(op, kind, inputs, settled);
    }
    let recorder = trace::begin(name, None);
    let ran = run(op, kind, inputs, settled);
    recorder.finish(match &ran {
        Err(XcsError::Timeout { .. }) => Outcome::Timeout,
        Err(_) => Outcome::Error,
        Ok(ran) if ran.timeout.is_some() => Outcome::Timeout,
        Ok(ran) if ran.slots.iter().all(Result::is_ok) => Outcome::Ok,
        Ok(_) => Outcome::Error,
    });
    ran
}

/// Everything an item needs, shared by the threads that run items.
struct Plan<O: Operator> {
    op: Arc<O>,
    options: ExecutionOptions,
    /// What items run under: the batch's deadline and its cancellation flag.
    context: CallContext,
    stop: Arc<CancelFlag>,
    settled: bool,
    /// The lowest index of an item that failed so far (`usize::MAX`: none). Items after it that
    /// have not started are not started; items before it still run, so the call reports the
    /// lowest-index failing item whatever order the items happened to run in.
    failed_at: AtomicUsize,
    /// The event items are recorded under, when tracing: the batch call (or the item) that is
    /// open on the caller's thread.
    trace_parent: Option<trace::Parent>,
}

impl<O: Operator> Plan<O> {
    /// Whether the whole batch was given up (its deadline passed, or the call it runs inside
    /// gave up): items not yet started stay unstarted.
    fn given_up(&self) -> bool {
        self.stop.is_cancelled() || self.context.deadline.is_some_and(|at| Instant::now() >= at)
    }

    /// Whether item `index`, not yet started, should stay unstarted: the batch was given up or
    /// an item before it failed.
    fn skips(&self, index: usize) -> bool {
        index > self.failed_at.load(Ordering::Acquire) || self.given_up()
    }

    /// Carries the caller's options, deadline and (when tracing) trace parent to the current
    /// thread, until the guards drop.
    fn adopt(
        &self,
    ) -> (
        scope::ScopeGuard,
        deadline::ContextGuard,
        Option<trace::InheritGuard>,
    ) {
        (
            scope::pin(self.options),
            deadline::enter(self.context.clone()),
            self.trace_parent.as_ref().map(trace::inherit),
        )
    }

    /// Runs item `index` on the current thread (whose options and context are already set).
    fn run_item(&self, index: usize, input: O::Input) -> Slot<O::Output> {
        let detach = || -> DetachedBody<O::Input, O::Output> {
            let op = Arc::clone(&self.op);
            Box::new(move |input| op.forward(input))
        };
        // The item runs under the batch's options (pinned on this thread) and deadline. The
        // result is matched where it lands, not copied whole first: a 64-byte `Result` reloaded
        // right after the body stored it stalled the pipeline (store-forwarding) on every item.
        match call::invoke_under(
            &*self.op,
            input,
            Some(index),
            Some(&detach),
            &self.options,
            self.context.deadline.is_some() || self.options.timeout_seconds.is_some(),
        ) {
            Ok(output) => Ok(output),
            Err(error) => {
                if !self.settled {
                    self.failed_at.fetch_min(index, Ordering::AcqRel);
                }
                Err(Some(Box::new(error)))
            }
        }
    }
}

/// Runs a batch; see the module docs for which path it takes.
fn run<O: Operator>(
    op: &Arc<O>,
    kind: Kind,
    inputs: Vec<O::Input>,
    settled: bool,
) -> Result<Ran<O::Output>, XcsError> {
    let options = get_execution_options();
    let context = deadline::current();
    let now = Instant::now();
    let deadline = call::deadline_for(&options, &context, now);
    if let Some((at, timeout)) = deadline {
        if now >= at {
            return Err(call::timeout_error(op.name(), None, timeout));
        }
    }
    let backend = device::resolve(options.device_strategy)?;
    let len = inputs.len();
    let workers = if options.use_parallel {
        match kind {
            Kind::VMap => options
                .max_workers
                .map_or_else(pool::cpu_count, NonZeroUsize::get),
            Kind::PMap(0) => pool::cpu_count(),
            Kind::PMap(n) => n,
        }
    } else {
        1
    };
    let enforce = call::must_enforce(deadline, &context);
    let stop = CancelFlag::child_of(context.cancel.clone());
    let plan = Arc::new(Plan {
        op: Arc::clone(op),
        options,
        context: CallContext {
            deadline: deadline.map(|(at, _)| at),
            timeout: deadline.map(|(_, t)| t),
            cancel: Some(Arc::clone(&stop)),
        },
        stop,
        settled,
        failed_at: AtomicUsize::new(usize::MAX),
        trace_parent: if options.trace_execution {
            trace::current_parent()
        } else {
            None
        },
    });

    if let Some(backend) = backend {
        return Ok(on_backend(&plan, backend, inputs, workers, enforce));
    }
    let threads = workers.min(len);
    // Under a deadline, items may be abandoned mid-body. They then run on spare threads, never
    // on a compute pool whose threads later calls count on, and the caller waits no longer than
    // the deadline. (In order under an enclosing deadline, the caller's thread is itself one
    // the enclosing call can abandon, so it runs the items.)
    if len > 0 && deadline.is_some() && (enforce || threads > 1) {
        return Ok(on_spare_threads(&plan, inputs, threads.max(1), true));
    }
    if threads <= 1 {
        return Ok(in_order(&plan, inputs));
    }
    match kind {
        Kind::PMap(_) => Ok(on_spare_threads(&plan, inputs, threads, false)),
        // The pool is sized by the option, not the batch, so batches of varying length share
        // one pool instead of building one per length.
        Kind::VMap => Ok(on_compute_pool(&plan, inputs, workers)),
    }
}

/// Items in order on the caller's thread.
fn in_order<O: Operator>(plan: &Plan<O>, inputs: Vec<O::Input>) -> Ran<O::Output> {
    let _context = deadline::enter(plan.context.clone());
    let len = inputs.len();
    let mut slots: Vec<Slot<O::Output>> = Vec::with_capacity(len);
    for (index, input) in inputs.into_iter().enumerate() {
        if plan.skips(index) {
            break;
        }
        slots.push(plan.run_item(index, input));
    }
    slots.resize_with(len, || Err(NOT_RUN));
    Ran {
        slots,
        timeout: None,
    }
}

/// Items on the compute pool with `threads` workers, by rayon's work-stealing.
fn on_compute_pool<O: Operator>(
    plan: &Plan<O>,
    inputs: Vec<O::Input>,
    threads: usize,
) -> Ran<O::Output> {
    let Some(pool) = pool::compute_pool(threads) else {
        return in_order(plan, inputs);
    };
    let slots = pool.install(|| {
        inputs
            .into_par_iter()
            .enumerate()
            .map_init(
                // Once per chunk of work a thread takes, not per item: carry the caller's
                // options and deadline to this thread.
                || plan.adopt(),
                |_, (index, input)| {
                    if plan.skips(index) {
                        return Err(NOT_RUN);
                    }
                    plan.run_item(index, input)
                },
            )
            .collect()
    });
    Ran {
        slots,
        timeout: None,
    }
}

enum Message<T> {
    Item(usize, Slot<T>),
    /// The backend running the batch failed outside any item (it panicked).
    Failed(XcsError),
    Done,
}

/// Inputs waiting to be taken by whichever thread runs them.
struct Queue<I> {
    inputs: Vec<Mutex<Option<I>>>,
    next: AtomicUsize,
}

impl<I> Queue<I> {
    fn new(inputs: Vec<I>) -> Self {
        Queue {
            inputs: inputs.into_iter().map(|i| Mutex::new(Some(i))).collect(),
            next: AtomicUsize::new(0),
        }
    }

    fn take(&self, index: usize) -> Option<I> {
        self.inputs
            .get(index)?
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn take_next(&self) -> Option<(usize, I)> {
        loop {
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            if index >= self.inputs.len() {
                return None;
            }
            if let Some(input) = self.take(index) {
                return Some((index, input));
            }
        }
    }
}

/// Waits for item results until `expected_done` senders have finished or the deadline passes
/// (when `enforce`).
fn gather<O: Operator>(
    plan: &Plan<O>,
    receiver: mpsc::Receiver<Message<O::Output>>,
    len: usize,
    expected_done: usize,
    enforce: bool,
) -> Ran<O::Output> {
    let mut slots: Vec<Slot<O::Output>> = Vec::with_capacity(len);
    slots.resize_with(len, || Err(NOT_RUN));
    let mut done = 0;
    let mut timeout = None;
    let mut failure = None;
    while done < expected_done {
        let message = match (enforce, plan.context.deadline) {
            (true, Some(at)) => receiver.recv_timeout(at.saturating_duration_since(Instant::now())),
            _ => receiver.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match message {
            Ok(Message::Item(index, result)) => slots[index] = result,
            Ok(Message::Done) => done += 1,
            Ok(Message::Failed(error)) => failure = Some(error),
            Err(RecvTimeoutError::Timeout) => {
                // Give up: unstarted items stay unstarted, running ones are abandoned on their
                // threads and told so through `cancelled()`.
                plan.stop.cancel();
                timeout = plan.context.timeout;
                break;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    if timeout.is_none() {
        // Results that raced the last `Done`.
        while let Ok(message) = receiver.try_recv() {
            match message {
                Message::Item(index, result) => slots[index] = result,
                Message::Failed(error) => failure = Some(error),
                Message::Done => {}
            }
        }
    }
    // A backend failure is the outcome of the first item it left without one.
    if let Some(error) = failure {
        if let Some(slot) = slots.iter_mut().find(|slot| matches!(slot, Err(None))) {
            *slot = Err(Some(Box::new(error)));
        }
    }
    Ran { slots, timeout }
}

/// Items on `threads` spare threads, each taking the next unstarted item; the caller waits,
/// until the deadline when it must enforce one.
fn on_spare_threads<O: Operator>(
    plan: &Arc<Plan<O>>,
    inputs: Vec<O::Input>,
    threads: usize,
    enforce: bool,
) -> Ran<O::Output> {
    let len = inputs.len();
    let queue = Arc::new(Queue::new(inputs));
    let (sender, receiver) = mpsc::channel();
    for _ in 0..threads {
        let plan = Arc::clone(plan);
        let queue = Arc::clone(&queue);
        let sender = sender.clone();
        let worker = Box::new(move || {
            let adopted = plan.adopt();
            while !plan.given_up() {
                let Some((index, input)) = queue.take_next() else {
                    break;
                };
                // Indices only grow: once one is skipped, the rest of this worker's are too.
                if plan.skips(index) {
                    break;
                }
                let result = plan.run_item(index, input);
                if sender.send(Message::Item(index, result)).is_err() {
                    break;
                }
            }
            // Back on the idle list before the caller hears we are done, so its next call
            // reuses this thread.
            drop(adopted);
            pool::release_this_thread();
            let _ = sender.send(Message::Done);
        });
        if let Err(worker) = pool::run_on_spare(worker) {
            // No thread to be had: work on the caller's thread instead.
            worker();
        }
    }
    drop(sender);
    gather(plan, receiver, len, threads, enforce)
}

/// Items handed to a registered backend.
fn on_backend<O: Operator>(
    plan: &Arc<Plan<O>>,
    backend: Arc<dyn Backend>,
    inputs: Vec<O::Input>,
    workers: usize,
    enforce: bool,
) -> Ran<O::Output> {
    let len = inputs.len();
    let queue = Arc::new(Queue::new(inputs));
    let (sender, receiver) = mpsc::channel();
    let task: Arc<dyn Fn(usize) + Send + Sync> = {
        let plan = Arc::clone(plan);
        let sender = sender.clone();
        Arc::new(move |index| {
            if plan.skips(index) {
                return;
            }
            let Some(input) = queue.take(index) else {
                return;
            };
            let _adopted = plan.adopt();
            let _ = sender.send(Message::Item(index, plan.run_item(index, input)));
        })
    };
    let job = BatchJob::new(len, workers, plan.options.device_strategy, task);
    let operator = plan.op.name().to_owned();
    let hand_over = move || {
        // A panicking backend must not unwind into the caller either.
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| backend.run(&job))) {
            let _ = sender.send(Message::Failed(XcsError::Panicked {
                operator,
                index: None,
                message: format!(
                    "the `{}` backend panicked: {}",
                    job.strategy(),
                    call::panic_message(&*payload)
                ),
            }));
        }
        drop(job);
        pool::release_this_thread();
        let _ = sender.send(Message::Done);
    };
    if enforce {
        if let Err(hand_over) = pool::run_on_spare(Box::new(hand_over)) {
            hand_over();
        }
    } else {
        hand_over();
    }
    gather(plan, receiver, len, 1, enforce)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct AddOne;
    impl Operator for AddOne {
        type Input = u32;
        type Output = u32;
        fn forward(&self, x: u32) -> Result<u32, XcsError> {
            if x == 13 {
                return Err(XcsError::operator("add_one", "unlucky"));
            }
            Ok(x + 1)
        }
        fn name(&self) -> &str {
            "add_one"
        }
    }

    #[test]
    fn keeps_order_on_every_path() {
        let inputs: Vec<u32> = (0..100).filter(|x| *x != 13).collect();
        let expected: Vec<u32> = inputs.iter().map(|x| x + 1).collect();
        assert_eq!(vmap(AddOne).call(inputs.clone()).unwrap(), expected);
        assert_eq!(pmap(AddOne, 3).call(inputs.clone()).unwrap(), expected);
        let sequential = OptionsPatch::new().use_parallel(false);
        let out = crate::with_options(&sequential, || vmap(AddOne).call(inputs.clone()));
        assert_eq!(out.unwrap(), expected);
    }

    #[test]
    fn reports_lowest_failing_index() {
        let err = vmap(AddOne).call((10..20).collect()).unwrap_err();
        assert_eq!(err.index(), Some(3));
        let settled = pmap(AddOne, 2).call_settled(vec![1, 13, 2]);
        assert!(settled[0].is_ok() && settled[1].is_err() && settled[2].is_ok());
    }

    use crate::OptionsPatch;
}
