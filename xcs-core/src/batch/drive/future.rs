//! Async batches: every item is a future polled in the caller's task (a `FuturesUnordered`),
//! with at most `limit` in flight. No thread per item, no detached task: when the batch's
//! deadline passes, the batch future drops every in-flight item future before it returns, so
//! nothing the batch started keeps running.
//!
//! The batch rules are [`crate::batch::plan`]'s: items start in index order, an item after a
//! failed one is not started, outcomes are gathered into the same [`Ran`] as sync batches.

use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::batch::plan::{Kind, NOT_RUN, Part, Plan, Ran, Slot, Timing};
use crate::call::drop_quietly;
use crate::call_async;
use crate::device;
use crate::error::XcsError;
use crate::operator::AsyncOperator;
use crate::pool;
use crate::scoped::{Snapshot, WithOptions};

/// Runs an async batch under `snapshot` (the caller's options, read at call time).
pub(crate) async fn run<O: AsyncOperator>(
    op: &Arc<O>,
    kind: Kind,
    inputs: Vec<O::Input>,
    settled: bool,
    snapshot: Snapshot,
) -> Result<Ran<O::Output>, XcsError> {
    let options = snapshot.options;
    let timing = Timing::with_parent(op.name(), &options, snapshot.context.clone())?;
    // Async batches run as futures on the caller's runtime; a strategy naming a backend must
    // still be one that is registered (see the module docs of `device`).
    device::resolve(options.device_strategy)?;
    let len = inputs.len();
    let limit = if options.use_parallel {
        match kind {
            Kind::VMap => options.max_workers.map_or(len, |n| n.get()),
            Kind::PMap(0) => pool::cpu_count(),
            Kind::PMap(n) => n,
        }
    } else {
        1
    }
    .clamp(1, pool::MAX_WORKERS.max(len));
    let plan = Arc::new(
        Plan::new(op, op.name(), len, options, &timing, settled).with_trace_parent(snapshot.parent),
    );
    // What every item runs under, shared by all of them.
    let items = Arc::new(Snapshot {
        options: plan.options,
        context: plan.context.clone(),
        parent: plan.trace_parent().cloned(),
        progress: plan.progress.clone(),
    });
    let mut slots: Vec<Option<Slot<O::Output>>> = (0..len).map(|_| None).collect();
    let work = async {
        let mut pending = inputs.into_iter().enumerate();
        let mut in_flight = FuturesUnordered::new();
        let mut stopped = false;
        loop {
            while !stopped && in_flight.len() < limit {
                let Some((index, input)) = pending.next() else {
                    break;
                };
                if plan.skips(index) {
                    drop_quietly(input);
                    stopped = true;
                    break;
                }
                let (op, snapshot) = (&*plan.op, &items);
                // Waiting items stay small (their input and a few pointers); an item's call
                // future is made, boxed, when it is first polled, and freed when it finishes, so
                // a batch of 100 000 items does not hold 100 000 call futures at once. (The
                // options are entered once around the whole batch, below, not per item.)
                in_flight.push(async move {
                    let call = Box::pin(call_async::invoke_in(
                        op,
                        input,
                        Some(index),
                        snapshot,
                        true,
                    ));
                    (index, call.await)
                });
            }
            let Some((index, result)) = in_flight.next().await else {
                break;
            };
            plan.report(index, result.is_ok());
            slots[index] = Some(match result {
                Ok(output) => Ok(output),
                Err(error) => {
                    plan.note_failure(index);
                    Err(Some(Box::new(error)))
                }
            });
        }
        // Inputs never started are dropped here, their `Drop` panics caught.
        drop_quietly(pending);
    };
    // Every item is polled inside this one future: the items' options, context, trace parent
    // and progress are entered once per poll of the batch, not once per item.
    let work = WithOptions::adopt(Arc::clone(&items), work);
    let finished = match plan.deadline() {
        Some(at) => tokio::time::timeout_at(at.into(), work).await.is_ok(),
        None => {
            work.await;
            true
        }
    };
    let timeout = if finished {
        None
    } else {
        plan.stop.cancel();
        Some(plan.context.timeout.unwrap_or_default())
    };
    let slots = slots
        .into_iter()
        .map(|slot| slot.unwrap_or(Err(NOT_RUN)))
        .collect();
    let ran = Ran {
        parts: vec![Part::Slots(slots)],
        timeout,
    };
    plan.finish_progress(&ran);
    Ok(ran)
}
