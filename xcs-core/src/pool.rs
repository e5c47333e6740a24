//! The threads that batches and deadline-enforcing calls run on.
//!
//! One elastic set of reusable threads serves every batch. A thread takes one of two kinds of
//! work, and the difference between them is what makes composition safe:
//!
//! - **Jobs** (`spawn`) must run: `pmap` workers, the lanes of a batch that enforces a
//!   deadline, a call body that may be abandoned at its deadline. A job goes to an idle thread
//!   or to a new one at once, never into a queue, so whoever waits for a job waits for work that
//!   is already running. An *offered* job (`offer_job`: the workers of a `vmap` under an
//!   explicit `max_workers` above the CPU count) is handed over the same way, but its owner may
//!   withdraw it until the thread takes it up; the owner then puts the thread back on the idle
//!   list itself (the thread, when it wakes, drops the withdrawn work without running it, which
//!   cannot block, before it takes its next task), and waits only for offers taken up.
//! - **Lanes** (`offer`) are optional help for a `vmap`: each takes items of its batch until
//!   none are left. At most `cpu_count()` lanes run at once in the whole process (the *compute
//!   slots*); a lane offered when every slot is taken waits in a queue for the next free slot,
//!   and a lane that starts after its batch has no items left returns at once. Nobody ever
//!   waits for an offered lane: the batch's caller takes the batch's items itself, so a batch
//!   completes even if none of its lanes is ever run.
//!
//! Threads that have been idle for [`IDLE_TIMEOUT`] exit. The threads xcs holds are therefore:
//! at most one per compute slot running lanes, plus the jobs running now (the `pmap` workers in
//! use, the workers of `vmap`s above the CPU count and the lanes of deadline-enforcing batches,
//! each bounded by its batch's length and by [`MAX_WORKERS`]), plus
//! threads still running items that a call abandoned at its deadline — counted by
//! [`abandoned_items`] and capped by [`set_abandoned_limit`] — plus idle threads for at most
//! [`IDLE_TIMEOUT`]. [`thread_stats`] reads these counts.
//!
//! A thread puts itself back on the idle list *before* it reports a finished job to whoever
//! waits for it, so a caller that starts its next batch at once finds its threads idle and
//! reuses them instead of starting new ones.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

/// How long an idle thread waits for work before it exits.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most threads a sync batch uses, whatever `max_workers` or `pmap`'s count say.
pub(crate) use crate::options::MAX_WORKERS;

/// The default of [`set_abandoned_limit`].
pub const DEFAULT_ABANDONED_LIMIT: usize = 256;

/// One worker per CPU (what `max_workers = None` and `pmap(op, 0)` mean, and the number of
/// compute slots).
pub(crate) fn cpu_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Work that must run now, on a thread of its own. `then` runs after the thread is back on the
/// idle list (report completion there).
pub(crate) struct Job {
    work: Box<dyn FnOnce() + Send>,
    then: Option<Box<dyn FnOnce() + Send>>,
}

impl Job {
    pub(crate) fn new(work: impl FnOnce() + Send + 'static) -> Self {
        Job {
            work: Box::new(work),
            then: None,
        }
    }

    /// Runs `then` once the thread that ran `work` is idle again.
    pub(crate) fn then(mut self, then: impl FnOnce() + Send + 'static) -> Self {
        self.then = Some(Box::new(then));
        self
    }

    /// Runs the job on the current thread (when no thread could be had).
    pub(crate) fn run_here(self) {
        run_quietly(self.work);
        if let Some(then) = self.then {
            run_quietly(then);
        }
    }
}

/// Optional help for a batch: see the module docs.
pub(crate) trait Lane: Send + Sync {
    /// Whether the batch still has items no one has taken.
    fn has_work(&self) -> bool;
    /// Takes and runs items until none are left. Returns [`SlotKept::No`] when the batch gave
    /// up on this lane meanwhile (the slot was then freed for others already).
    fn run_lane(&self) -> SlotKept;
}

/// Whether a lane still held its compute slot when it returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotKept {
    Yes,
    No,
}

enum Task {
    Job(Job),
    Lane(Weak<dyn Lane>),
    Offer(Offer),
}

/// A job its owner may withdraw until the thread it was handed to takes it up.
struct Offer {
    claim: Arc<AtomicU8>,
    /// Returns whether `then` is to run.
    work: Box<dyn FnOnce() -> bool + Send>,
    then: Box<dyn FnOnce() + Send>,
}

/// [`Offer::claim`]: handed to a thread, not yet taken up or withdrawn.
const OFFERED: u8 = 0;
/// The thread took the offer up: it runs.
const TAKEN: u8 = 1;
/// The owner withdrew the offer and put the thread back on the idle list.
const WITHDRAWN: u8 = 2;

/// An offer made with [`offer_job`], until it is taken up or withdrawn.
pub(crate) struct Withdrawable {
    claim: Arc<AtomicU8>,
    thread: Idle,
}

impl Withdrawable {
    /// Withdraws the offer unless its thread has taken it up already (then `false`: the work
    /// runs, or has run). A withdrawn offer's thread is idle again at once: the next job may
    /// take it while it is still waking up (it drops the withdrawn work without running it,
    /// which cannot block, and then takes the next).
    pub(crate) fn withdraw(self) -> bool {
        if self
            .claim
            .compare_exchange(OFFERED, WITHDRAWN, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        state().idle.push(self.thread);
        true
    }
}

struct Idle {
    id: usize,
    sender: Sender<Task>,
}

struct State {
    /// Idle threads, most recently idle last (taken first: warm caches, few distinct threads).
    idle: Vec<Idle>,
    /// Lanes waiting for a compute slot, newest last (taken first: the newest batch is usually
    /// the innermost one, whose completion frees the others).
    pending: Vec<Weak<dyn Lane>>,
    /// Compute slots in use.
    compute: usize,
}

static STATE: Mutex<State> = Mutex::new(State {
    idle: Vec::new(),
    pending: Vec::new(),
    compute: 0,
});
static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static STARTED: AtomicUsize = AtomicUsize::new(0);
static ABANDONED: AtomicUsize = AtomicUsize::new(0);
static ABANDONED_LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_ABANDONED_LIMIT);

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `f`, swallowing a panic (and a panic of the panic payload's own `Drop`). Every piece of
/// user code the pool runs catches its own panics; this is the last line of defence that keeps
/// a reusable thread alive.
fn run_quietly(f: impl FnOnce()) {
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        crate::util::drop_quietly(payload);
    }
}

/// Runs `job` now on an idle thread or a new one. Returns it if the OS refused a thread, so
/// the caller can run it itself.
pub(crate) fn spawn(job: Job) -> Result<(), Job> {
    let mut task = Task::Job(job);
    loop {
        let idle = state().idle.pop();
        match idle {
            Some(thread) => match thread.sender.send(task) {
                Ok(()) => return Ok(()),
                // That thread has just exited; try the next.
                Err(mpsc::SendError(returned)) => task = returned,
            },
            None => {
                return start_thread(task).map(drop).map_err(|task| match task {
                    Task::Job(job) => job,
                    Task::Lane(_) | Task::Offer(_) => unreachable!("a job was handed in"),
                });
            }
        }
    }
}

/// Offers a job that may help but that nobody needs: it is handed at once to an idle thread
/// or a new one, as [`spawn`]'s are, and runs when that thread takes it up unless its owner
/// [withdraws](Withdrawable::withdraw) it first. `work` returns whether `then` runs (after
/// the thread is back on the idle list, as for [`Job::then`]). `None`: no thread could be had.
pub(crate) fn offer_job(
    work: impl FnOnce() -> bool + Send + 'static,
    then: impl FnOnce() + Send + 'static,
) -> Option<Withdrawable> {
    let claim = Arc::new(AtomicU8::new(OFFERED));
    let mut task = Task::Offer(Offer {
        claim: Arc::clone(&claim),
        work: Box::new(work),
        then: Box::new(then),
    });
    loop {
        let idle = state().idle.pop();
        match idle {
            Some(thread) => match thread.sender.send(task) {
                Ok(()) => return Some(Withdrawable { claim, thread }),
                Err(mpsc::SendError(returned)) => task = returned,
            },
            None => {
                let thread = start_thread(task).ok()?;
                return Some(Withdrawable { claim, thread });
            }
        }
    }
}

/// Offers `lane` a compute slot: it runs now if one is free, later if one frees up while its
/// batch still has untaken items, or never. Nobody waits for it.
pub(crate) fn offer(lane: Weak<dyn Lane>) {
    let mut state = state();
    if state.compute >= cpu_count() {
        if state.pending.len() >= 64 {
            // Lanes of finished batches: drop them rather than let the queue grow.
            state
                .pending
                .retain(|lane| lane.upgrade().is_some_and(|l| l.has_work()));
        }
        state.pending.push(lane);
        return;
    }
    state.compute += 1;
    dispatch_lane(state, lane);
}

/// Hands `lane` (whose compute slot is already counted) to an idle or new thread.
fn dispatch_lane(mut state: MutexGuard<'static, State>, lane: Weak<dyn Lane>) {
    let mut task = Task::Lane(lane);
    while let Some(thread) = state.idle.pop() {
        match thread.sender.send(task) {
            Ok(()) => return,
            Err(mpsc::SendError(returned)) => task = returned,
        }
    }
    drop(state);
    if start_thread(task).is_err() {
        // No thread to be had: the batch's caller does the work; free the slot.
        release_slots(1);
    }
}

/// Frees `n` compute slots and hands them to waiting lanes that still have work.
fn release_slots(n: usize) {
    let mut state = state();
    state.compute = state.compute.saturating_sub(n);
    while state.compute < cpu_count() {
        let Some(lane) = next_pending(&mut state) else {
            return;
        };
        state.compute += 1;
        dispatch_lane(state, lane);
        state = self::state();
    }
}

fn next_pending(state: &mut State) -> Option<Weak<dyn Lane>> {
    while let Some(lane) = state.pending.pop() {
        if lane.upgrade().is_some_and(|l| l.has_work()) {
            return Some(lane);
        }
    }
    None
}

/// Starts a thread running `first`; returns its handle (for an owner that may put it back on
/// the idle list).
fn start_thread(first: Task) -> Result<Idle, Task> {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (sender, receiver) = mpsc::channel::<Task>();
    let own = sender.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("xcs-worker-{id}"))
        .spawn(move || thread_loop(id, own, receiver));
    if spawned.is_err() {
        return Err(first);
    }
    LIVE.fetch_add(1, Ordering::Relaxed);
    STARTED.fetch_add(1, Ordering::Relaxed);
    // The thread owns its receiver until it exits, and it only exits once off the idle list
    // with an empty channel, so this send cannot fail.
    sender.send(first).map_err(|mpsc::SendError(task)| task)?;
    Ok(Idle { id, sender })
}

fn thread_loop(id: usize, sender: Sender<Task>, receiver: Receiver<Task>) {
    let go_idle = |state: &mut State| {
        state.idle.push(Idle {
            id,
            sender: sender.clone(),
        })
    };
    loop {
        let task = match receiver.recv_timeout(IDLE_TIMEOUT) {
            Ok(task) => task,
            Err(RecvTimeoutError::Timeout) => {
                let mut state = state();
                if let Some(pos) = state.idle.iter().position(|t| t.id == id) {
                    state.idle.remove(pos);
                    break;
                }
                // Someone took this thread just now and is sending it work.
                drop(state);
                match receiver.recv() {
                    Ok(task) => task,
                    Err(_) => break,
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match task {
            Task::Job(job) => {
                run_quietly(job.work);
                go_idle(&mut state());
                if let Some(then) = job.then {
                    run_quietly(then);
                }
            }
            Task::Offer(offer) => {
                if offer
                    .claim
                    .compare_exchange(OFFERED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    let mut report = false;
                    let work = offer.work;
                    run_quietly(|| report = work());
                    go_idle(&mut state());
                    if report {
                        run_quietly(offer.then);
                    }
                } else {
                    // Withdrawn: the owner has put this thread back on the idle list already.
                    run_quietly(move || drop(offer));
                }
            }
            Task::Lane(first) => {
                let mut lane = Some(first);
                while let Some(current) = lane.take() {
                    let kept = match current.upgrade() {
                        Some(live) => {
                            let mut kept = SlotKept::Yes;
                            run_quietly(|| kept = live.run_lane());
                            kept
                        }
                        None => SlotKept::Yes,
                    };
                    let mut state = state();
                    if kept == SlotKept::Yes {
                        lane = next_pending(&mut state);
                        if lane.is_none() {
                            state.compute = state.compute.saturating_sub(1);
                        }
                    }
                    if lane.is_none() {
                        go_idle(&mut state);
                    }
                }
            }
        }
    }
    LIVE.fetch_sub(1, Ordering::Relaxed);
}

/// The threads working for one call, and how far its items have got: what its caller waits
/// for, and what it abandons at a deadline.
#[derive(Default)]
pub(crate) struct Crew {
    state: Mutex<CrewState>,
    changed: Condvar,
}

/// See [`Crew`].
#[derive(Default, Debug)]
pub(crate) struct CrewState {
    /// Units of work finished (blocks of items, for batches).
    pub(crate) done: usize,
    /// Jobs ([`spawn`]) working for the call now.
    pub(crate) jobs: usize,
    /// Offered lanes working for the call now.
    pub(crate) lanes: usize,
    /// The caller gave up: whoever still works for it is abandoned.
    pub(crate) abandoned: bool,
    /// The caller takes no more help ([`Crew::close`]).
    closed: bool,
    /// Offered jobs ([`offer_job`]) the caller found taken up, which report when done.
    pub(crate) offers_taken: usize,
    /// Offered jobs that reported ([`Crew::offer_done`]).
    pub(crate) offers_done: usize,
    /// Threads waiting in [`Crew::wait`] (changes are signalled only when one waits).
    waiting: usize,
}

impl Crew {
    fn lock(&self) -> MutexGuard<'_, CrewState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An offered lane starts working for the call; `false` if the call was given up already
    /// (then it must not start).
    pub(crate) fn join_lane(&self) -> bool {
        let mut state = self.lock();
        if state.abandoned {
            return false;
        }
        state.lanes += 1;
        true
    }

    /// A job will work for the call: counted before it is handed to a thread, so a caller
    /// waiting for the call's jobs waits for it too. (Jobs start at once: see [`spawn`].)
    pub(crate) fn enlist_job(&self) {
        self.lock().jobs += 1;
    }

    /// Whether an offered job ([`offer_job`]) taken up now may work for the call: `false` once
    /// the call takes no more help or was given up.
    pub(crate) fn takes_help(&self) -> bool {
        let state = self.lock();
        !(state.abandoned || state.closed)
    }

    /// The call takes no more help: offered jobs taken up from now on do nothing.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
    }

    /// The caller found an offered job taken up (its withdrawal failed): it will report with
    /// [`Crew::offer_done`], and the caller waits for that.
    pub(crate) fn offer_taken(&self) {
        self.lock().offers_taken += 1;
    }

    /// A taken-up offered job is done (its thread is idle again).
    pub(crate) fn offer_done(&self) {
        let mut state = self.lock();
        state.offers_done += 1;
        self.signal(state);
    }

    /// Whether the caller gave up.
    pub(crate) fn is_abandoned(&self) -> bool {
        self.lock().abandoned
    }

    /// A job or lane stops working for the call. For a lane: whether it still holds its compute
    /// slot (it does not if the call abandoned it).
    pub(crate) fn leave(&self, lane: bool) -> SlotKept {
        let mut state = self.lock();
        if lane {
            state.lanes -= 1;
        } else {
            state.jobs -= 1;
        }
        let kept = if state.abandoned {
            ABANDONED.fetch_sub(1, Ordering::Relaxed);
            SlotKept::No
        } else {
            SlotKept::Yes
        };
        self.signal(state);
        kept
    }

    /// One more unit of work finished.
    pub(crate) fn finish_one(&self) {
        let mut state = self.lock();
        state.done += 1;
        self.signal(state);
    }

    /// Wakes the waiters after a change, if any waits (a notification is a system call even
    /// when nobody waits; a batch of small blocks finishes many).
    fn signal(&self, state: MutexGuard<'_, CrewState>) {
        let waiting = state.waiting > 0;
        drop(state);
        if waiting {
            self.changed.notify_all();
        }
    }

    /// Waits until `ready` holds, or until `deadline` passes (then `false`). Waiting is safe
    /// only for work that is already running: see the module docs of `batch::drive`.
    pub(crate) fn wait(
        &self,
        deadline: Option<Instant>,
        ready: impl Fn(&CrewState) -> bool,
    ) -> bool {
        let mut state = self.lock();
        state.waiting += 1;
        let ready = loop {
            if ready(&state) {
                break true;
            }
            match deadline {
                None => {
                    state = self
                        .changed
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner)
                }
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break false;
                    }
                    state = self
                        .changed
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        };
        state.waiting -= 1;
        ready
    }

    /// The caller gives up: everyone still working for the call is abandoned. Counted in
    /// [`abandoned_items`] until they finish; lanes give their compute slots back at once.
    pub(crate) fn abandon(&self, operator: &str) {
        let mut state = self.lock();
        if state.abandoned {
            return;
        }
        state.abandoned = true;
        let (jobs, lanes) = (state.jobs, state.lanes);
        let left = jobs + lanes;
        // Counted before the lock is released: a worker that finishes now sees `abandoned`
        // and takes itself off the count, which must already include it.
        let total = ABANDONED.fetch_add(left, Ordering::Relaxed) + left;
        drop(state);
        if left > 0 {
            tracing::warn!(
                target: "xcs",
                operator,
                abandoned = left,
                total,
                "`{operator}` gave up at its deadline with {left} item(s) still running; \
                 {total} abandoned item(s) now hold a thread each"
            );
        }
        if lanes > 0 {
            release_slots(lanes);
        }
    }
}

/// Threads still running work that a call abandoned at its deadline (a hung item holds its
/// thread until it returns). Calls that enforce a deadline fail with
/// [`XcsError::AbandonedLimit`](crate::XcsError::AbandonedLimit) while this is at the limit
/// ([`set_abandoned_limit`]).
///
/// ```
/// assert_eq!(xcs::abandoned_items(), 0);
/// ```
pub fn abandoned_items() -> usize {
    ABANDONED.load(Ordering::Relaxed)
}

/// Sets how many abandoned items ([`abandoned_items`]) may hold threads before calls that
/// enforce a deadline refuse to start (default [`DEFAULT_ABANDONED_LIMIT`]); returns the
/// previous limit.
///
/// ```
/// let before = xcs::set_abandoned_limit(16);
/// assert_eq!(before, xcs::DEFAULT_ABANDONED_LIMIT);
/// xcs::set_abandoned_limit(before);
/// ```
pub fn set_abandoned_limit(limit: usize) -> usize {
    ABANDONED_LIMIT.swap(limit, Ordering::Relaxed)
}

/// `Err((abandoned, limit))` when abandoned items have reached the limit.
pub(crate) fn check_abandoned() -> Result<(), (usize, usize)> {
    let (abandoned, limit) = (
        ABANDONED.load(Ordering::Relaxed),
        ABANDONED_LIMIT.load(Ordering::Relaxed),
    );
    if abandoned >= limit {
        Err((abandoned, limit))
    } else {
        Ok(())
    }
}

/// What the runtime's threads are doing, from [`thread_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThreadStats {
    /// Threads xcs has now (working or idle).
    pub live: usize,
    /// Of those, idle ones (they exit after [`IDLE_TIMEOUT`]).
    pub idle: usize,
    /// Compute slots in use (at most [`compute_slots`](ThreadStats::compute_slots)).
    pub compute: usize,
    /// The number of compute slots: one per CPU.
    pub compute_slots: usize,
    /// Abandoned items still holding a thread ([`abandoned_items`]).
    pub abandoned: usize,
    /// Threads started since the process began.
    pub started: usize,
}

/// A snapshot of the runtime's threads; see the module docs of the pool for the bounds.
///
/// ```
/// let stats = xcs::thread_stats();
/// assert!(stats.compute <= stats.compute_slots);
/// ```
pub fn thread_stats() -> ThreadStats {
    let state = state();
    ThreadStats {
        live: LIVE.load(Ordering::Relaxed),
        idle: state.idle.len(),
        compute: state.compute,
        compute_slots: cpu_count(),
        abandoned: ABANDONED.load(Ordering::Relaxed),
        started: STARTED.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn jobs_run_and_report_after_going_idle() {
        let (tx, rx) = mpsc::channel();
        for i in 0..4 {
            let tx = tx.clone();
            let job = Job::new(|| {}).then(move || tx.send(i).unwrap());
            assert!(spawn(job).is_ok());
        }
        let mut got: Vec<i32> = rx.iter().take(4).collect();
        got.sort();
        assert_eq!(got, vec![0, 1, 2, 3]);
    }

    struct Flag(AtomicBool);
    impl Lane for Flag {
        fn has_work(&self) -> bool {
            !self.0.load(Ordering::SeqCst)
        }
        fn run_lane(&self) -> SlotKept {
            self.0.store(true, Ordering::SeqCst);
            SlotKept::Yes
        }
    }

    #[test]
    fn offered_lanes_run_when_a_slot_is_free() {
        let lane: Arc<dyn Lane> = Arc::new(Flag(AtomicBool::new(false)));
        offer(Arc::downgrade(&lane));
        let until = Instant::now() + Duration::from_secs(30);
        while lane.has_work() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!lane.has_work());
        assert!(thread_stats().compute <= cpu_count());
    }

    /// An offer withdrawn in time never runs and its thread is idle again at once; one taken
    /// up first runs (and reports) exactly once. Whichever happens, the threads are reused.
    #[test]
    fn offers_run_once_or_never_and_withdrawn_threads_are_reused() {
        const OFFERS: usize = 2_000;
        let ran = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let mut taken = 0;
        let mut threads = std::collections::HashSet::new();
        for _ in 0..OFFERS {
            let ran = Arc::clone(&ran);
            let tx = tx.clone();
            let Some(offer) = offer_job(
                move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                    true
                },
                move || tx.send(()).unwrap(),
            ) else {
                panic!("no thread could be had");
            };
            threads.insert(offer.thread.id);
            if !offer.withdraw() {
                taken += 1;
                // A taken offer reports after its thread is idle again.
                rx.recv_timeout(Duration::from_secs(60)).unwrap();
            }
        }
        assert_eq!(ran.load(Ordering::SeqCst), taken);
        // Other tests of this binary use the pool too; this one alone needs one thread at a
        // time (a withdrawn one is idle at once, a taken one before it reports).
        assert!(
            threads.len() < OFFERS / 2,
            "{} threads for {OFFERS} offers",
            threads.len()
        );
    }

    /// A job that finishes while its call is being abandoned takes itself off the abandoned
    /// count only after the call put it there: the count never wraps below zero.
    #[test]
    fn a_job_leaving_during_abandon_never_underflows_the_count() {
        for _ in 0..2_000 {
            let crew = Arc::new(Crew::default());
            crew.enlist_job();
            let leaver = {
                let crew = crew.clone();
                std::thread::spawn(move || crew.leave(false))
            };
            crew.abandon("race");
            leaver.join().unwrap();
            assert!(abandoned_items() < usize::MAX / 2);
        }
    }
}
