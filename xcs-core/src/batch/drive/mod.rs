//! How a batch's items run: on the caller's thread, with help from compute lanes, on jobs, or
//! on a registered backend.
//!
//! | situation | who runs the items | the caller waits for |
//! |---|---|---|
//! | `use_parallel = false`, one item, or a limit of one | the caller, in order | nothing |
//! | `vmap`, `limit` at most one per CPU | the caller, plus up to `limit − 1` offered compute lanes | items already started |
//! | `vmap`, `limit` above the CPU count | the caller, plus up to `limit − 1` offered jobs | items already started, and the offered jobs that were taken up |
//! | `vmap` inside a call with a deadline (not its own) | the caller, in order | nothing |
//! | `pmap(op, n)` | `n` jobs | its jobs (until the deadline, if any) |
//! | the batch enforces a deadline | `limit` jobs | its jobs, until the deadline |
//! | `device_strategy` names a backend | the backend | the backend (until the deadline when enforcing) |
//!
//! A deadline is *enforced* by the outermost call that sets it (or a nested call whose own
//! deadline is earlier): that call runs its items on jobs and returns at the deadline. Items
//! abandoned then hold only jobs, which the abandoning call counts. That is why a `vmap` nested
//! inside such a call does not take compute slots: a hung item there would hold a slot that no
//! call counts, and every later batch would have one CPU fewer.
//!
//! `limit` is `max_workers` (unset: one per CPU) for `vmap` and `n` (`0`: one per CPU) for
//! `pmap`, capped by the batch's length and by [`MAX_WORKERS`](crate::pool::MAX_WORKERS). Every
//! lane runs one item at a time, so a batch never has more than `limit` items running at once,
//! at every level of nesting and under a deadline too, and never starts more threads than it
//! has items.
//!
//! An explicit `max_workers` above the CPU count (items that wait on I/O) runs that many items
//! at once: more workers than the compute lanes could ever give, so its workers beyond the
//! caller are jobs, started at once on threads of their own as `pmap`'s are, and take no
//! compute slot (items that mostly wait would otherwise hold the slots that compute-bound
//! batches run on). They are *offered* jobs ([`pool::offer_job`](crate::pool)): the caller
//! offers one and starts on the items; the first helper that joins while items are left
//! offers the rest the batch can use. When the caller has taken every item, it withdraws the
//! offers no thread has taken up yet (those threads are idle again at once) and waits only for
//! those taken up. So a batch of small items costs one thread wake-up, not `limit − 1`, and a
//! batch of waiting items has all its workers two wake-ups after it starts. A `max_workers` of
//! at most one per CPU keeps to the compute lanes, which a compute-bound batch may have to wait
//! for: such a batch runs *at most* `limit` items at once.
//!
//! # Why composition cannot deadlock
//!
//! The invariants, each kept by one piece of code:
//!
//! 1. **Nobody waits for work that has not started.** A caller waits only for blocks that a
//!    lane has taken (a lane takes a block only while running) and for jobs, which
//!    [`pool::spawn`](crate::pool) starts at once on a thread of their own. The offered jobs
//!    of a `vmap` above the CPU count are waited for only once a thread has taken them up
//!    (they are running then); the others are withdrawn. Offered compute lanes may wait for a
//!    free slot, but nobody waits for them: the caller drains its own batch.
//! 2. **A thread only runs work of the batches on its own stack.** A waiting caller does not
//!    steal unrelated items (as a work-stealing pool would): so an item can never end up
//!    waiting, deeper on the same stack, for something its own frame below holds — a cache
//!    claim, a lock, the caller's own return.
//! 3. **Waits point strictly deeper.** An item runs at depth `d + 1` of the batch it belongs
//!    to; a caller at depth `d` waits only for started items at depth `d + 1`, which run on
//!    threads that are themselves executing, or waiting at depth `d + 2`, and so on. Nesting
//!    is finite, so every chain of waits ends at a thread running user code. (A cache waiter
//!    waits for the claim's owner, which is never one of its own ancestors: the call path
//!    checks the claims held up its chain and runs uncached instead.)
//! 4. **Every user-code panic is caught where it happens** (item bodies, the `Drop` of values
//!    the runtime discards, panic payloads), and a block always records an outcome, so no
//!    waiter misses a result.
//!
//! 5. **Items run elsewhere wait on nothing here.** A backend that sends items to another
//!    process ([`RemoteItems`](crate::RemoteItems), the cluster) waits on its own thread for
//!    answers that its own I/O runtime delivers; that runtime never waits for xcs work. The
//!    cache claims it holds for items sent out are released when their answer arrives, when
//!    they are given up, or when the batch ends — so a cache waiter's chain still ends.
//!
//! Deadlines bound every wait: a caller under a deadline stops waiting at it, gives the batch
//! up (unstarted items stay unstarted) and abandons the items still running, which are counted
//! until they return (see [`abandoned_items`](crate::abandoned_items)).

mod backend;
#[cfg(feature = "tokio")]
pub(crate) mod future;
mod lanes;
#[cfg(feature = "tokio")]
pub(crate) mod remote;

use std::num::NonZeroUsize;
use std::sync::Arc;

use self::lanes::{Blocks, Helpers};
use super::plan::{Kind, Plan, Ran, Timing};
use crate::device;
use crate::error::XcsError;
use crate::operator::Operator;
use crate::pool;
use crate::scope::get_execution_options;

/// Runs a batch; see the module docs for who runs what.
pub(crate) fn run<O: Operator>(
    op: &Arc<O>,
    kind: Kind,
    inputs: Vec<O::Input>,
    settled: bool,
) -> Result<Ran<O::Output>, XcsError> {
    let options = get_execution_options();
    let timing = Timing::now(op.name(), &options)?;
    let backend = device::resolve(options.device_strategy)?;
    let len = inputs.len();
    let limit = if options.use_parallel {
        match kind {
            Kind::VMap => options
                .max_workers
                .map_or_else(pool::cpu_count, NonZeroUsize::get),
            Kind::PMap(0) => pool::cpu_count(),
            Kind::PMap(n) => n,
        }
    } else {
        1
    }
    .min(pool::MAX_WORKERS);
    if timing.enforce && len > 0 {
        if let Err((abandoned, limit)) = pool::check_abandoned() {
            return Err(XcsError::AbandonedLimit {
                operator: op.name().to_owned(),
                abandoned,
                limit,
            });
        }
    }
    let plan = Arc::new(Plan::new(op, op.name(), len, options, &timing, settled));
    let mut ran = drive(&plan, kind, backend, inputs, limit, timing.enforce);
    plan.conclude(&mut ran);
    Ok(ran)
}

/// Who runs the items; see the module docs.
fn drive<O: Operator>(
    plan: &Arc<Plan<O>>,
    kind: Kind,
    backend: Option<Arc<dyn crate::device::Backend>>,
    inputs: Vec<O::Input>,
    limit: usize,
    enforce: bool,
) -> Ran<O::Output> {
    let plan = Arc::clone(plan);
    let len = inputs.len();
    if let Some(backend) = backend {
        return backend::run(plan, backend, inputs, limit, enforce);
    }
    if len == 0 {
        return Ran {
            parts: Vec::new(),
            timeout: None,
        };
    }
    let lanes = limit.min(len);
    if enforce {
        return lanes::on_jobs(plan, inputs, lanes);
    }
    match kind {
        Kind::PMap(_) if lanes > 1 => lanes::on_jobs(plan, inputs, lanes),
        // Under a deadline an item may be abandoned; only jobs, which the abandoning call
        // counts, may hold it, never a compute slot that later batches count on.
        Kind::VMap if lanes > 1 && plan.deadline().is_none() => {
            let helpers = if lanes > pool::cpu_count() {
                // An explicit `max_workers` above the CPU count: all of them at once.
                Helpers::Jobs(lanes - 1)
            } else {
                Helpers::Lanes(lanes - 1)
            };
            lanes::with_caller(plan, inputs, Blocks::Guided(lanes), helpers)
        }
        _ => in_order(&plan, inputs),
    }
}

/// Items in order on the caller's thread.
fn in_order<O: Operator>(plan: &Plan<O>, inputs: Vec<O::Input>) -> Ran<O::Output> {
    let _in = plan.adopt_on_caller();
    Ran {
        parts: vec![plan.run_items(0, inputs)],
        timeout: None,
    }
}
