//! Items handed to a registered device backend, which decides where and in what order they
//! run; each item still goes through the batch rules of [`crate::batch::plan`].
//!
//! A backend that runs items in another process takes them as bytes through
//! [`RemoteItems`]: the caller's side ([`Remote`]) keeps the rules that are the caller's — the
//! cache (hits never leave the process, misses hold their single-flight claim until the result
//! comes back), skipping items the rules say not to start, progress and failure reporting —
//! and each item's outcome lands in the same slot a local run would fill.

use std::sync::{Arc, Mutex, PoisonError};

use super::lanes::{Blocks, Run};
use crate::batch::plan::{Part, Plan, Ran};
use crate::cache;
use crate::device::{About, Backend, BatchJob, Outgoing, RemoteItems, RemoteSide, Signature};
use crate::error::XcsError;
use crate::operator::Operator;
use crate::options::ExecutionOptions;
use crate::persist::PersistSupport;
use crate::policy::deadline::Now;
use crate::policy::plan::{CallPlan, Charge, Sent, Step, Supports};
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
            signature: Signature {
                operator: plan.op.name().to_owned(),
                version: persist.version_number(),
                input_type: std::any::type_name::<O::Input>().to_owned(),
                output_type: std::any::type_name::<O::Output>().to_owned(),
            },
        });
        RemoteItems::new(side)
    })
}

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
        let mut call = CallPlan::new(
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
        let mut step = call.start(now);
        loop {
            step = match step {
                Step::Lookup => {
                    let (support, key, at, held) = call.lookup_request();
                    let lookup = cache::lookup(support, key, at, held);
                    call.looked_up(lookup, Now::LAZY)
                }
                Step::Run(input) => {
                    *self.held[index]
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(call.into_sent());
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
        if plan.skips(index) {
            return Outgoing::Settled;
        }
        let Some(mut inputs) = self.run.take_input(index) else {
            return Outgoing::Settled;
        };
        let Some(input) = inputs.pop() else {
            return Outgoing::Settled;
        };
        // The caller admits the item (its resource, its budget) and answers it from the cache
        // if it can; the worker runs it without admitting it again.
        let input = if plan.options.enable_caching
            || plan.op.resource().is_some()
            || plan.context.budget.is_some()
            || crate::policy::budget::global().is_some()
        {
            match self.cached(index, input) {
                Some(input) => input,
                None => return Outgoing::Settled,
            }
        } else {
            input
        };
        let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.persist.encode_input(&input)
        }));
        drop_quietly(input);
        match encoded {
            Ok(Some(bytes)) => Outgoing::Input(bytes),
            Ok(None) => {
                self.complete_with(
                    index,
                    Err(self.cluster_error(index, "its input cannot be serialized")),
                );
                Outgoing::Settled
            }
            Err(payload) => {
                let error = util::panicked(plan.op.name(), Some(index), payload);
                self.complete_with(index, Err(error));
                Outgoing::Settled
            }
        }
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
        let output = result.and_then(|bytes| {
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
        });
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
}

impl<O: Operator> Remote<O> {
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
