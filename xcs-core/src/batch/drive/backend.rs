//! Items handed to a registered device backend, which decides where and in what order they
//! run; each item still goes through the batch rules of [`crate::batch::plan`].

use std::sync::{Arc, Mutex, PoisonError};

use super::lanes::{Blocks, Run};
use crate::batch::plan::{Part, Plan, Ran};
use crate::call::{drop_quietly, panic_message};
use crate::device::{Backend, BatchJob};
use crate::error::XcsError;
use crate::operator::Operator;

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
            let job = BatchJob::new(len, workers, strategy, task);
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
