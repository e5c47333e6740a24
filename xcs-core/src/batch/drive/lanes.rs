//! Items taken from a shared queue by *lanes*: the batch's caller, offered compute lanes, and
//! jobs. See the module docs of [`super`] for when each takes part and why no wait can hang.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Instant;

use crate::batch::plan::{Part, Plan, Ran};
use crate::error::XcsError;
use crate::operator::Operator;
use crate::pool::{self, Crew, Job, Lane, SlotKept, Withdrawable};
use crate::util::{drop_quietly, panic_message};

/// A batch's items, cut into blocks that lanes take in index order.
pub(super) struct Run<O: Operator> {
    plan: Arc<Plan<O>>,
    blocks: Vec<Block<O>>,
    next: AtomicUsize,
    crew: Crew,
    offers: Mutex<Offers>,
}

/// The offered jobs helping the caller of a batch above the CPU count ([`Helpers::Jobs`]).
#[derive(Default)]
struct Offers {
    /// The caller has taken every block: no more offers.
    closed: bool,
    /// Offers made so far.
    made: usize,
    /// The most offers the batch may make.
    most: usize,
    /// Offers not yet known to be taken up (withdrawn when the caller is done).
    pending: Vec<Withdrawable>,
}

struct Block<O: Operator> {
    start: usize,
    len: usize,
    inputs: Mutex<Option<Vec<O::Input>>>,
    outcome: Mutex<Option<Part<O::Output>>>,
}

/// How the items are cut into blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Blocks {
    /// One item per block: every item is taken on its own (I/O-bound items, batches that may
    /// be abandoned at a deadline, where each finished item must be kept).
    Single,
    /// Guided self-scheduling for `lanes` lanes: each block is a quarter of a fair share of what
    /// is left, so early blocks amortise the queue and the last ones balance the tail.
    Guided(usize),
}

impl Blocks {
    fn sizes(self, len: usize) -> Vec<usize> {
        match self {
            Blocks::Single => vec![1; len],
            Blocks::Guided(lanes) => {
                let mut sizes = Vec::new();
                let mut left = len;
                while left > 0 {
                    let size = (left / (4 * lanes.max(1))).max(1);
                    sizes.push(size);
                    left -= size;
                }
                sizes
            }
        }
    }
}

impl<O: Operator> Run<O> {
    /// The blocks are cut off the end of `inputs`, so each later block's items are moved once
    /// and the first block keeps the inputs' own allocation (the whole batch's capacity): a
    /// lean item's outputs are collected in place there, and the batch's outputs are gathered
    /// into it without growing it.
    pub(super) fn new(plan: Arc<Plan<O>>, inputs: Vec<O::Input>, blocks: Blocks) -> Arc<Self> {
        let sizes = blocks.sizes(inputs.len());
        let mut head = inputs;
        let mut end = head.len();
        let mut blocks: Vec<Block<O>> = Vec::with_capacity(sizes.len());
        for &len in sizes.iter().rev() {
            end -= len;
            let items = if end == 0 {
                std::mem::take(&mut head)
            } else {
                head.split_off(end)
            };
            blocks.push(Block {
                start: end,
                len,
                inputs: Mutex::new(Some(items)),
                outcome: Mutex::new(None),
            });
        }
        blocks.reverse();
        Arc::new(Run {
            plan,
            blocks,
            next: AtomicUsize::new(0),
            crew: Crew::default(),
            offers: Mutex::default(),
        })
    }

    /// Takes and runs blocks until none are left (on a thread whose options and context are
    /// the batch's).
    fn drain(&self) {
        loop {
            let b = self.next.fetch_add(1, Ordering::AcqRel);
            if b >= self.blocks.len() {
                return;
            }
            self.run_block(b);
        }
    }

    /// Runs block `b` unless someone has taken it already, and records its outcome.
    pub(super) fn run_block(&self, b: usize) {
        let Some(block) = self.blocks.get(b) else {
            return;
        };
        let Some(inputs) = block
            .inputs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let part = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.plan.run_items(block.start, inputs)
        })) {
            Ok(part) => part,
            // Items catch their own panics; this is the runtime's own code failing. The block
            // still finishes, so nobody waits for it forever.
            Err(payload) => {
                let message = panic_message(&*payload);
                drop_quietly(payload);
                self.failed_part(block, message)
            }
        };
        *block.outcome.lock().unwrap_or_else(PoisonError::into_inner) = Some(part);
        self.crew.finish_one();
    }

    fn failed_part(&self, block: &Block<O>, message: String) -> Part<O::Output> {
        let error = XcsError::Panicked {
            operator: self.plan.op.name().to_owned(),
            index: Some(block.start),
            message,
        };
        Part::Slots(
            (0..block.len)
                .map(|_| Err(Some(Box::new(error.describe_again()))))
                .collect(),
        )
    }

    /// Starts `count` jobs that drain the batch.
    fn start_jobs(self: &Arc<Self>, count: usize) {
        for _ in 0..count {
            self.start_job(|run| {
                let _adopted = run.plan.adopt();
                run.drain();
            });
        }
    }

    /// Offers up to `count` more jobs to help the caller, no more than the batch has untaken
    /// blocks and may have helpers. The caller offers one; the first helper that joins (the
    /// batch outlasted a thread's wake-up) offers the rest the untaken blocks call for, before
    /// it takes a block. So a batch whose caller takes every block before the first helper
    /// wakes wakes one thread, not `most`, and one that lasts has all its helpers two wake-ups
    /// after it starts.
    fn offer_helpers(self: &Arc<Self>, count: usize) {
        let untaken = self
            .blocks
            .len()
            .saturating_sub(self.next.load(Ordering::Acquire));
        if untaken == 0 || count == 0 {
            return;
        }
        let mut offers = self.offers.lock().unwrap_or_else(PoisonError::into_inner);
        if offers.closed {
            return;
        }
        let count = count.min(untaken).min(offers.most - offers.made);
        for _ in 0..count {
            self.offer_one(&mut offers);
        }
    }

    fn offer_one(self: &Arc<Self>, offers: &mut Offers) {
        offers.made += 1;
        // Weak: an offer withdrawn unseen keeps nothing of the batch alive on its thread.
        let run = Arc::downgrade(self);
        let done = Arc::downgrade(self);
        let offered = pool::offer_job(
            move || {
                // Taken up: the caller waits for this report (it finds the offer taken when
                // it tries to withdraw it), so the batch is alive.
                let Some(run) = run.upgrade() else {
                    return false;
                };
                if run.crew.takes_help() {
                    let adopted = run.plan.adopt();
                    run.offer_helpers(usize::MAX);
                    run.drain();
                    drop(adopted);
                }
                true
            },
            move || {
                if let Some(run) = done.upgrade() {
                    run.crew.offer_done();
                }
            },
        );
        // No thread to be had: the caller takes the blocks itself.
        offers.pending.extend(offered);
    }

    /// The caller has taken every block: no more help. Offers not yet taken up are withdrawn
    /// (their threads are idle again at once); the caller then waits only for those taken up,
    /// which are running (items, or nothing once they see the call takes no more help) and
    /// report once their threads are idle again, for the next batch to reuse.
    fn close_offers(&self) {
        self.crew.close();
        let pending = {
            let mut offers = self.offers.lock().unwrap_or_else(PoisonError::into_inner);
            offers.closed = true;
            std::mem::take(&mut offers.pending)
        };
        for offer in pending {
            if !offer.withdraw() {
                self.crew.offer_taken();
            }
        }
    }

    /// Waits for every block (and every job), until the batch's deadline; then gathers the
    /// outcomes. Items still running at the deadline are abandoned.
    fn finish(&self) -> Ran<O::Output> {
        let total = self.blocks.len();
        let finished = self.crew.wait(self.plan.deadline(), |state| {
            state.done == total && state.jobs == 0 && state.offers_done == state.offers_taken
        });
        self.gather(!finished)
    }

    /// Waits for the jobs only (a backend decides which items run), until the deadline.
    pub(super) fn finish_jobs(&self) -> Ran<O::Output> {
        let finished = self
            .crew
            .wait(self.plan.deadline(), |state| state.jobs == 0);
        self.gather(!finished)
    }

    /// The outcomes so far, in input order; `timed_out`: the caller gives up on the rest.
    fn gather(&self, timed_out: bool) -> Ran<O::Output> {
        let mut timeout = if timed_out {
            // Unstarted items stay unstarted; running ones are told through `cancelled()` and
            // left to finish on their threads.
            self.plan.stop.cancel();
            self.crew.abandon(self.plan.op.name());
            Some(self.plan.context.timeout.unwrap_or_default())
        } else {
            None
        };
        let parts = self
            .blocks
            .iter()
            .map(|block| {
                block
                    .outcome
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
                    .unwrap_or(Part::Missing(block.len))
            })
            .collect::<Vec<_>>();
        // Items left without an outcome by a runner that stopped at the deadline itself (a
        // backend) were cut short by the deadline too.
        if timeout.is_none()
            && self.plan.deadline().is_some_and(|at| Instant::now() >= at)
            && parts.iter().any(|p| matches!(p, Part::Missing(_)))
        {
            timeout = Some(self.plan.context.timeout.unwrap_or_default());
        }
        Ran { parts, timeout }
    }

    /// Starts one job running `work` for this batch (counted in the caller's wait); runs it
    /// here if no thread could be had.
    pub(super) fn start_job(self: &Arc<Self>, work: impl FnOnce(&Run<O>) + Send + 'static) {
        self.crew.enlist_job();
        let run = Arc::clone(self);
        let done = Arc::clone(self);
        let job = Job::new(move || {
            if !run.crew.is_abandoned() {
                work(&run);
            }
        })
        .then(move || {
            done.crew.leave(false);
        });
        if let Err(job) = pool::spawn(job) {
            job.run_here();
        }
    }

    pub(super) fn plan(&self) -> &Plan<O> {
        &self.plan
    }

    /// The number of blocks (items, with [`Blocks::Single`]).
    pub(super) fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Takes the input of block `b` to run it elsewhere (`None`: it was taken already).
    pub(super) fn take_input(&self, b: usize) -> Option<Vec<O::Input>> {
        self.blocks
            .get(b)?
            .inputs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Settles item `index` (of a batch of single-item blocks) that ran elsewhere, reported as
    /// an item run here is; an outcome for an item that has one already (a chunk that ran twice)
    /// is dropped.
    pub(super) fn settle_item(&self, index: usize, result: Result<O::Output, XcsError>) {
        let part = match result {
            Ok(output) => {
                self.plan.report(index, true);
                Part::Ok(vec![output])
            }
            Err(error) => {
                self.plan.note_failure(index);
                self.plan.report(index, false);
                Part::Slots(vec![Err(Some(Box::new(error)))])
            }
        };
        self.settle(index, part);
    }

    /// Stores the outcome of block `b`; one for a block that has one already is dropped.
    fn settle(&self, b: usize, part: Part<O::Output>) {
        let Some(block) = self.blocks.get(b) else {
            drop_quietly(part);
            return;
        };
        let mut outcome = block.outcome.lock().unwrap_or_else(PoisonError::into_inner);
        if outcome.is_some() {
            drop(outcome);
            drop_quietly(part);
        } else {
            *outcome = Some(part);
            drop(outcome);
            self.crew.finish_one();
        }
    }

    /// Whether block `b` has its outcome.
    pub(super) fn is_settled(&self, b: usize) -> bool {
        self.blocks.get(b).is_none_or(|block| {
            block
                .outcome
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some()
        })
    }
}

impl<O: Operator> Lane for Run<O> {
    fn has_work(&self) -> bool {
        self.next.load(Ordering::Acquire) < self.blocks.len()
    }

    fn run_lane(&self) -> SlotKept {
        if !self.has_work() || !self.crew.join_lane() {
            return SlotKept::Yes;
        }
        let adopted = self.plan.adopt();
        self.drain();
        drop(adopted);
        self.crew.leave(true)
    }
}

/// Who helps the caller of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Helpers {
    /// Up to this many offered compute lanes, which may wait for a slot (nobody waits for them).
    Lanes(usize),
    /// Up to this many offered jobs ([`pool::offer_job`]), which start at once on threads of
    /// their own as `pmap`'s workers do: one offered by the caller, the rest by the first that
    /// joins while blocks are left. The caller waits for those that joined; the others are
    /// withdrawn.
    Jobs(usize),
}

/// The caller takes part: it drains the batch itself with `helpers` beside it, then waits for
/// the items they started (and for its jobs).
pub(super) fn with_caller<O: Operator>(
    plan: Arc<Plan<O>>,
    inputs: Vec<O::Input>,
    blocks: Blocks,
    helpers: Helpers,
) -> Ran<O::Output> {
    let run = Run::new(plan, inputs, blocks);
    match helpers {
        Helpers::Lanes(0) | Helpers::Jobs(0) => {}
        Helpers::Lanes(lanes) => {
            let weak: Weak<Run<O>> = Arc::downgrade(&run);
            let weak: Weak<dyn Lane> = weak;
            for _ in 0..lanes {
                pool::offer(weak.clone());
            }
        }
        Helpers::Jobs(jobs) => {
            // A deadline's abandon counts jobs and lanes, not offers: offers only help batches
            // without one (see `drive`).
            debug_assert!(run.plan.deadline().is_none());
            run.offers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .most = jobs;
            run.offer_helpers(1);
        }
    }
    {
        let _in = run.plan.adopt_on_caller();
        run.drain();
    }
    if matches!(helpers, Helpers::Jobs(_)) {
        run.close_offers();
    }
    run.finish()
}

/// `jobs` jobs run the items; the caller waits for them (until the deadline, if any).
pub(super) fn on_jobs<O: Operator>(
    plan: Arc<Plan<O>>,
    inputs: Vec<O::Input>,
    jobs: usize,
) -> Ran<O::Output> {
    let run = Run::new(plan, inputs, Blocks::Single);
    run.start_jobs(jobs.max(1));
    run.finish()
}
