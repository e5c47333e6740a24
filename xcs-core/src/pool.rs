//! The threads batches run on.
//!
//! Two kinds, for two jobs:
//!
//! - **Compute pools** (rayon): one pool per worker count, built on first use and kept for the
//!   life of the process. Building a pool costs 50 µs–1 ms; reusing one costs a few µs, so no
//!   call ever builds one after the first with its worker count. `vmap` runs CPU-bound batches
//!   here with rayon's work-stealing, which is the floor a hand-written `par_iter` sets.
//!
//! - **Spare threads**: an elastic set of reusable threads for work that may block or be
//!   abandoned (`pmap` items, anything under a deadline). A caller that gives up at its deadline
//!   leaves a hung item on its thread; that thread is simply not idle, and the next call takes
//!   other idle threads or starts new ones, so abandoned work can never make a later call wait
//!   or run with fewer workers. Idle threads wait for work and exit after
//!   [`SPARE_IDLE_TIMEOUT`] unused.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use rayon::ThreadPool;

/// How long a spare thread waits for work before it exits.
pub(crate) const SPARE_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One worker per CPU (what `max_workers = None` and `pmap(op, 0)` mean).
pub(crate) fn cpu_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

static POOLS: Mutex<Option<HashMap<usize, Arc<ThreadPool>>>> = Mutex::new(None);
static POOLS_BUILT: AtomicUsize = AtomicUsize::new(0);

/// The compute pool with `workers` threads, built on first use. `None` if the OS refused the
/// threads (the caller then runs the batch on its own thread).
pub(crate) fn compute_pool(workers: usize) -> Option<Arc<ThreadPool>> {
    let workers = workers.max(1);
    let mut pools = POOLS.lock().unwrap_or_else(PoisonError::into_inner);
    let pools = pools.get_or_insert_with(HashMap::new);
    if let Some(pool) = pools.get(&workers) {
        return Some(Arc::clone(pool));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .thread_name(move |i| format!("xcs-compute-{workers}-{i}"))
        .build()
        .ok()?;
    POOLS_BUILT.fetch_add(1, Ordering::Relaxed);
    let pool = Arc::new(pool);
    pools.insert(workers, Arc::clone(&pool));
    Some(pool)
}

/// How many compute pools have been built so far (for tests of pool reuse).
#[doc(hidden)]
pub fn compute_pools_built() -> usize {
    POOLS_BUILT.load(Ordering::Relaxed)
}

/// The worker counts of the compute pools built so far, ascending (for tests of pool reuse).
#[doc(hidden)]
pub fn compute_pool_sizes() -> Vec<usize> {
    let pools = POOLS.lock().unwrap_or_else(PoisonError::into_inner);
    let mut sizes: Vec<usize> = pools.iter().flat_map(|map| map.keys().copied()).collect();
    sizes.sort_unstable();
    sizes
}

type Job = Box<dyn FnOnce() + Send + 'static>;

struct Spare {
    id: usize,
    sender: Sender<Job>,
}

static IDLE: Mutex<Vec<Spare>> = Mutex::new(Vec::new());
static SPARE_IDS: AtomicUsize = AtomicUsize::new(0);
static SPARES_STARTED: AtomicUsize = AtomicUsize::new(0);

/// How many spare threads have been started so far (for tests of reuse and replacement).
#[doc(hidden)]
pub fn spare_threads_started() -> usize {
    SPARES_STARTED.load(Ordering::Relaxed)
}

/// Runs `job` on an idle spare thread, or a new one. Returns the job if no thread could be
/// started, so the caller can run it itself.
pub(crate) fn run_on_spare(job: Job) -> Result<(), Job> {
    let mut job = job;
    loop {
        let idle = IDLE.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match idle {
            Some(spare) => match spare.sender.send(job) {
                Ok(()) => return Ok(()),
                // That thread has exited; try the next.
                Err(mpsc::SendError(returned)) => job = returned,
            },
            None => return start_spare(job),
        }
    }
}

fn start_spare(first: Job) -> Result<(), Job> {
    let id = SPARE_IDS.fetch_add(1, Ordering::Relaxed);
    let (sender, receiver) = mpsc::channel::<Job>();
    let own_sender = sender.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("xcs-worker-{id}"))
        .spawn(move || spare_loop(id, own_sender, receiver));
    if spawned.is_err() {
        // The OS refused a thread; hand the job back so the caller can run it itself.
        return Err(first);
    }
    SPARES_STARTED.fetch_add(1, Ordering::Relaxed);
    // The thread owns the receiver until it has drained its channel, so this cannot fail.
    sender.send(first).map_err(|mpsc::SendError(job)| job)
}

thread_local! {
    /// On a spare thread running a job: how to put the thread back on the idle list, taken by
    /// whichever of [`release_this_thread`] and the end of the job comes first.
    static RELEASE: RefCell<Option<Spare>> = const { RefCell::new(None) };
}

/// Puts the current spare thread back on the idle list now, before its job has returned.
///
/// A job calls this just before it tells its caller it is done: otherwise a caller that starts
/// its next call at once finds the thread still busy and starts another, and repeated calls
/// would not reuse their workers. The next job waits in this thread's channel for the few
/// instructions the current one has left. Does nothing on other threads.
pub(crate) fn release_this_thread() {
    if let Some(spare) = RELEASE.with(|release| release.borrow_mut().take()) {
        IDLE.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(spare);
    }
}

fn spare_loop(id: usize, sender: Sender<Job>, receiver: Receiver<Job>) {
    let run = |job: Job| {
        RELEASE.with(|release| {
            *release.borrow_mut() = Some(Spare {
                id,
                sender: sender.clone(),
            });
        });
        // Jobs catch their own panics; this is a last line of defence so one bad job cannot
        // take a reusable thread down with it.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        release_this_thread();
    };
    loop {
        match receiver.recv_timeout(SPARE_IDLE_TIMEOUT) {
            Ok(job) => run(job),
            Err(RecvTimeoutError::Timeout) => {
                let mut idle = IDLE.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(pos) = idle.iter().position(|s| s.id == id) {
                    idle.remove(pos);
                    return;
                }
                // Someone took this thread just now and is about to send a job: wait for it.
                drop(idle);
                match receiver.recv() {
                    Ok(job) => run(job),
                    Err(_) => return,
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_pools_are_reused() {
        let a = compute_pool(3).unwrap();
        let b = compute_pool(3).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.current_num_threads(), 3);
    }

    #[test]
    fn spare_threads_run_jobs() {
        let (tx, rx) = mpsc::channel();
        for i in 0..4 {
            let tx = tx.clone();
            assert!(run_on_spare(Box::new(move || tx.send(i).unwrap())).is_ok());
        }
        let mut got: Vec<i32> = rx.iter().take(4).collect();
        got.sort();
        assert_eq!(got, vec![0, 1, 2, 3]);
    }
}
