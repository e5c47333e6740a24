//! What `show_progress` shows: a live bar per `vmap` / `pmap` batch on standard error, and the
//! same progress as [`ProgressEvent`]s for programs that have no terminal to draw on.
//!
//! A batch of a thousand LLM calls takes minutes, and the first question of whoever started it
//! is *how far along is it, is anything failing, when will it be done*. With `show_progress = true`
//! every batch answers on standard error, the way `cargo` and `pip` do (operator, items done of
//! the total, failures, rate, elapsed time, ETA):
//!
//! ```text
//! score                ━━━━━━━━━━━━━━━╸──────────────       6/12      1 failed · 2.1/s · 3s · ETA 3s
//!  └ rerank            ━━━━━━━━━━━━━━━━━━━╸──────────      26/40      1 failed · 90/s · 0s · ETA 0s
//! ```
//!
//! (the inner bar of each item of `score` comes and goes below it), then, when it is done:
//!
//! ```text
//! score                ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━      12/12      ✔ done, 2 failed in 5s · 2.3/s
//! ```
//!
//! and a program (a GUI, a test, a service reporting to its own dashboard) gets the same facts
//! through [`set_progress_hook`], terminal or not.
//!
//! # Design
//!
//! - **Off costs one branch.** With `show_progress` off (the default) a batch never enters this
//!   module beyond one flag check.
//! - **On costs an atomic increment per item.** Items run by the million on many threads, at a
//!   hundred nanoseconds each for cheap operators, so reporting an item takes no lock and reads
//!   no clock: it bumps a shared counter (two when the item failed) and, only on every
//!   *stride*-th item, hands the count to the bar. The stride adapts to the pace (it doubles while
//!   redraws come faster than every few milliseconds and halves when they come slower than a
//!   tenth of a second), so a fast batch redraws a few hundred times a second at most and a slow
//!   one on every item. The outermost bar also ticks on its own ([indicatif]'s steady tick: one
//!   thread per drawn outermost bar) so elapsed time and ETA stay live while items are slow.
//! - **One screen, many bars.** Bars are drawn through one process-wide
//!   [`indicatif::MultiProgress`] so that concurrent and nested batches share standard error
//!   without tearing. A batch started inside an item of another batch is its *child*: its bar is
//!   inserted just below the parent's, indented, and removed when it finishes, so the inner
//!   batches of `vmap(vmap(op))` come and go under the outer bar instead of piling up; the
//!   outermost bar stays on screen, finished, with a summary. At most [`MAX_BARS`] bars are live
//!   at once; batches beyond that run without a bar (the hook still hears about them).
//! - **Nothing is drawn without a terminal.** When standard error is not a terminal
//!   ([`std::io::IsTerminal`], checked once, at the first batch), or `TERM` is `dumb`, the shared
//!   `MultiProgress` is hidden and batches create no bar at all, so logs and CI output stay
//!   clean and the per-item cost is the counter alone. The hook fires either way.
//! - **Always finished.** A bar finishes with a message naming the outcome: done, error,
//!   timeout, panic, or cancelled (an async batch whose future was dropped). If a panic unwinds
//!   through a batch, indicatif does not draw while the thread panics, so the screen catches up
//!   at the next redraw; the hook hears [`ProgressOutcome::Panicked`] at once.
//! - **Other output.** Lines written to standard error while bars are live (logs, `eprintln!`)
//!   may be overdrawn by the next redraw; write them between batches, or route logs to a file.

use std::cell::RefCell;
use std::fmt;
use std::io::IsTerminal;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use indicatif::{
    HumanCount, HumanDuration, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState,
    ProgressStyle,
};

use crate::error::XcsError;
use crate::options::ExecutionOptions;

/// The most progress bars drawn at once; batches started beyond it run without a bar (the
/// hook still hears about them).
///
/// A terminal shows a few dozen lines, and `vmap(vmap(op))` over many CPUs would otherwise
/// scroll a bar per running inner batch past the one that matters, the outermost.
pub const MAX_BARS: usize = 16;

/// How a batch ended, as reported by [`ProgressEvent::Finished`] and on its finished bar.
///
/// [`as_str`](ProgressOutcome::as_str) and `Display` give lowercase, machine-friendly names:
/// `ok`, `error`, `timeout`, `panicked`, `cancelled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProgressOutcome {
    /// The batch returned (a settled batch returns even when some of its items failed; the
    /// `failed` count says how many).
    Ok,
    /// The batch failed with an item's error.
    Error,
    /// The batch hit its deadline (`timeout_seconds`).
    Timeout,
    /// The batch failed because an item panicked, or a panic unwound through it.
    Panicked,
    /// The batch was given up before it finished: an enclosing call gave up, or the future of
    /// an async batch was dropped.
    Cancelled,
}

impl ProgressOutcome {
    /// The outcome's lowercase name: `ok`, `error`, `timeout`, `panicked` or `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProgressOutcome::Ok => "ok",
            ProgressOutcome::Error => "error",
            ProgressOutcome::Timeout => "timeout",
            ProgressOutcome::Panicked => "panicked",
            ProgressOutcome::Cancelled => "cancelled",
        }
    }

    /// The outcome of a batch that returned `result`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn of<T>(result: &Result<T, XcsError>) -> Self {
        match result {
            Ok(_) => ProgressOutcome::Ok,
            Err(XcsError::Timeout { .. }) => ProgressOutcome::Timeout,
            Err(XcsError::Panicked { .. }) => ProgressOutcome::Panicked,
            Err(XcsError::Cancelled { .. }) => ProgressOutcome::Cancelled,
            Err(_) => ProgressOutcome::Error,
        }
    }
}

impl fmt::Display for ProgressOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a batch's progress, as passed to the hook installed with [`set_progress_hook`].
///
/// Each batch run with `show_progress = true` reports one `Started`, one `Item` per item that
/// ran, and one `Finished`. Batches are numbered process-wide from 1; `parent` links a batch
/// started inside an item of another batch (the inner `vmap` of `vmap(vmap(op))`) to it.
///
/// `Item` events come from the threads that ran the items, so events of one batch may arrive
/// out of order; `done` counts the items reported so far *including this one*, so the largest
/// `done` seen is the progress. When a batch succeeds, all its `Item` events come before its
/// `Finished`; after an error or a timeout, an item that was still running may report just after
/// it (and items that finish later are not reported at all).
///
/// The enum and its variants are `#[non_exhaustive]`: match with `..`, as events may gain
/// variants and fields.
///
/// ```standalone_crate
/// use std::sync::mpsc;
/// use xcs::{Operator, ProgressEvent, XcsError, execution_options, vmap};
///
/// struct Double;
/// impl Operator for Double {
///     type Input = u64;
///     type Output = u64;
///     fn forward(&self, input: u64) -> Result<u64, XcsError> {
///         Ok(input * 2)
///     }
///     fn name(&self) -> &str {
///         "double"
///     }
/// }
///
/// // Forward events to wherever the program wants them: a channel, a GUI, a log.
/// let (tx, rx) = mpsc::channel();
/// xcs::set_progress_hook(move |event| {
///     let _ = tx.send(event.clone());
/// });
/// let out = execution_options!(show_progress = true => vmap(Double).call(vec![1, 2, 3]))?;
/// xcs::clear_progress_hook();
/// assert_eq!(out, vec![2, 4, 6]);
/// for event in rx.try_iter() {
///     match event {
///         ProgressEvent::Started { operator, total, .. } => println!("{operator}: {total} items"),
///         ProgressEvent::Item { done, failed, .. } => println!("{done} done, {failed} failed"),
///         ProgressEvent::Finished { outcome, .. } => println!("finished: {outcome}"),
///         _ => {}
///     }
/// }
/// # Ok::<(), XcsError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ProgressEvent {
    /// A batch started.
    #[non_exhaustive]
    Started {
        /// The batch's number, unique in the process.
        batch: u64,
        /// The batch whose item started this one, if any.
        parent: Option<u64>,
        /// The operator the batch maps (for `vmap(op)`, `op`'s name).
        operator: String,
        /// How many items the batch has.
        total: usize,
    },
    /// An item of a batch finished.
    #[non_exhaustive]
    Item {
        /// The batch.
        batch: u64,
        /// The item's index in the batch's input.
        index: usize,
        /// Whether the item succeeded.
        ok: bool,
        /// Items of the batch reported so far, this one included.
        done: usize,
        /// Failed items among them.
        failed: usize,
    },
    /// A batch finished.
    #[non_exhaustive]
    Finished {
        /// The batch.
        batch: u64,
        /// Items that ran and were reported (fewer than the total when the batch stopped early).
        done: usize,
        /// Failed items among them.
        failed: usize,
        /// How the batch ended.
        outcome: ProgressOutcome,
    },
}

impl ProgressEvent {
    /// The number of the batch the event is about.
    pub fn batch(&self) -> u64 {
        match *self {
            ProgressEvent::Started { batch, .. }
            | ProgressEvent::Item { batch, .. }
            | ProgressEvent::Finished { batch, .. } => batch,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The hook.

type Hook = dyn Fn(&ProgressEvent) + Send + Sync;

static HOOK: RwLock<Option<Arc<Hook>>> = RwLock::new(None);
/// Whether a hook is installed: the one load an unhooked report pays.
static HOOKED: AtomicBool = AtomicBool::new(false);
/// Bumped on every change of [`HOOK`], so threads know their cached copy is stale.
static HOOK_VERSION: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's copy of the hook, valid while the version matches [`HOOK_VERSION`]: a
    /// report reads it without the lock and without touching the hook's reference count.
    static HOOK_CACHE: RefCell<(u64, Option<Arc<Hook>>)> = const { RefCell::new((0, None)) };
}

/// Installs `hook`, replacing any previous one: from now on it is called with every
/// [`ProgressEvent`] of every batch run with `show_progress = true` that starts while a hook is
/// installed, whether or not standard error is a terminal. (A batch already running when the
/// first hook is installed is not reported: its events would lack the count of the items before.)
///
/// This is how programs without a terminal follow progress: a GUI updates its own bar, a test
/// checks what ran, a service forwards events to its dashboard (send them on a channel from the
/// hook to handle them elsewhere). Like [`std::panic::set_hook`], there is one hook per process.
///
/// The hook runs on the thread that reports: for `Item` events, the worker that ran the item,
/// so it is called from several threads at once and should be quick (a channel send, an atomic
/// update). It may run batches itself. A panic in the hook is caught and ignored (after the
/// panic hook has printed it), so it cannot break the batch that reported. Events already being
/// delivered when the hook is replaced or cleared may still reach the old hook; once a hook is
/// cleared, no further events are built.
///
/// Reporting to a hook costs more per item than drawing a bar: every `Item` event carries the
/// exact count so far, so the items of a reported batch share one atomic counter, and the hook
/// runs once per item.
///
/// See [`ProgressEvent`] for an example.
pub fn set_progress_hook(hook: impl Fn(&ProgressEvent) + Send + Sync + 'static) {
    replace_hook(Some(Arc::new(hook)));
}

/// Removes the hook installed with [`set_progress_hook`], if any. Progress bars are not
/// affected.
pub fn clear_progress_hook() {
    replace_hook(None);
}

fn replace_hook(hook: Option<Arc<Hook>>) {
    let mut slot = HOOK.write().unwrap_or_else(PoisonError::into_inner);
    HOOKED.store(hook.is_some(), Ordering::Release);
    let old = std::mem::replace(&mut *slot, hook);
    HOOK_VERSION.fetch_add(1, Ordering::Release);
    drop(slot);
    // The old hook (and whatever it captured) drops outside the lock.
    drop(old);
}

/// Delivers the event `make` builds to the hook, if one is installed (`make` runs only then).
#[inline]
fn emit(make: impl FnOnce() -> ProgressEvent) {
    if HOOKED.load(Ordering::Acquire) {
        emit_slow(make);
    }
}

#[cold]
fn emit_slow(make: impl FnOnce() -> ProgressEvent) {
    let deliver = |hook: &Hook, event: &ProgressEvent| {
        // The default panic hook has printed the panic; the batch goes on.
        let _ = panic::catch_unwind(AssertUnwindSafe(|| hook(event)));
    };
    let mut make = Some(make);
    let delivered = HOOK_CACHE.try_with(|cache| {
        let version = HOOK_VERSION.load(Ordering::Acquire);
        if let Ok(mut cached) = cache.try_borrow_mut() {
            if cached.0 != version {
                let fresh = {
                    let slot = HOOK.read().unwrap_or_else(PoisonError::into_inner);
                    (HOOK_VERSION.load(Ordering::Acquire), slot.clone())
                };
                let stale = std::mem::replace(&mut *cached, fresh);
                drop(cached);
                // Whatever the old hook captured drops with no lock held and the cache free.
                drop(stale);
            }
        }
        // A hook that reports from inside itself (it ran a batch) finds the cache borrowed, and
        // reads the same cached hook again; only refreshing it has to wait.
        match cache.try_borrow() {
            Ok(cached) => {
                if let (Some(hook), Some(make)) = (cached.1.as_deref(), make.take()) {
                    deliver(hook, &make());
                }
                true
            }
            Err(_) => false,
        }
    });
    if delivered != Ok(true) {
        // The thread is exiting (its cache is gone): read the hook under the lock.
        let hook = HOOK.read().unwrap_or_else(PoisonError::into_inner).clone();
        if let (Some(hook), Some(make)) = (hook, make.take()) {
            deliver(&*hook, &make());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bars.

/// The bars on screen, shared by every batch.
fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(|| {
        MultiProgress::with_draw_target(stderr_target(std::io::stderr().is_terminal()))
    })
}

/// Where bars go: standard error when it is a terminal (indicatif also hides bars when `TERM`
/// is `dumb`), nowhere otherwise.
fn stderr_target(is_terminal: bool) -> ProgressDrawTarget {
    if is_terminal {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// Serializes adding bars to and removing them from the screen: indicatif panics when a bar is
/// inserted after one that was removed, so a child checks its parent's bar is attached under
/// this lock. Taken once per batch start and finish, never per item.
static LAYOUT: Mutex<usize> = Mutex::new(0);

/// How often the outermost bar redraws on its own, for elapsed time and ETA.
const TICK: Duration = Duration::from_millis(100);
/// Redraws closer together than this make the stride (items between redraws) double...
const FAST_REDRAW: u64 = 4_000_000; // ns
/// ... and further apart than this make it halve.
const SLOW_REDRAW: u64 = 100_000_000; // ns
/// The longest stride, minus one (a bit mask).
const MAX_MASK: usize = (1 << 20) - 1;

/// The width of the operator column.
const NAME_WIDTH: usize = 20;

struct Styles {
    running: ProgressStyle,
    ok: ProgressStyle,
    bad: ProgressStyle,
    stopped: ProgressStyle,
}

fn styles() -> &'static Styles {
    static STYLES: OnceLock<Styles> = OnceLock::new();
    STYLES.get_or_init(|| {
        let style = |template: &str| {
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("━╸─")
                .with_key("rate", rate)
        };
        Styles {
            running: style(RUNNING),
            ok: style(FINISHED_OK),
            bad: style(FINISHED_BAD),
            stopped: style(FINISHED_STOPPED),
        }
    })
}

/// A live bar: `{failed}` and `{rate}` are ours (see [`add_bar`] and [`rate`]).
const RUNNING: &str = "{prefix:.bold} {bar:30.cyan/blue} {human_pos:>7}/{human_len:<7} \
                       {failed:.red}{rate} · {elapsed} · ETA {eta}";
/// A finished outermost bar: the message is the [`summary`].
const FINISHED_OK: &str =
    "{prefix:.bold} {bar:30.green/blue} {human_pos:>7}/{human_len:<7} {msg:.green}";
const FINISHED_BAD: &str =
    "{prefix:.bold} {bar:30.red/blue} {human_pos:>7}/{human_len:<7} {msg:.red}";
const FINISHED_STOPPED: &str =
    "{prefix:.bold} {bar:30.yellow/blue} {human_pos:>7}/{human_len:<7} {msg:.yellow}";

/// The `{rate}` of a bar: items per second, with a decimal below ten.
fn rate(state: &ProgressState, out: &mut dyn fmt::Write) {
    let _ = out.write_str(&format_rate(state.per_sec()));
}

fn format_rate(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec <= 0.0 {
        "-/s".to_owned()
    } else if per_sec < 10.0 {
        format!("{per_sec:.1}/s")
    } else {
        format!("{}/s", HumanCount(per_sec.round() as u64))
    }
}

/// A drawn bar of a batch.
struct Bar {
    bar: ProgressBar,
    multi: MultiProgress,
    /// Whether the bar belongs to a batch started inside another's item (it is removed when
    /// done) rather than an outermost one (it stays, finished).
    nested: bool,
    /// Whether the bar is still in `multi`; changed under [`LAYOUT`].
    attached: AtomicBool,
}

// ---------------------------------------------------------------------------------------------
// Batches.

/// Set in [`Tally::done`] when the batch has finished: later reports are ignored.
const FINISHED: usize = 1 << (usize::BITS - 1);

/// What a batch has counted.
///
/// Two threads bumping one counter per item fight over its cache line, which costs more than a
/// cheap item. So a thread that [entered](enter) the batch counts in its own [`Lane`], which only
/// it writes (a plain load and store, no locked instruction, no sharing), and the totals are
/// summed when needed: at a redraw, which is rare, and at the finish. Reports from threads that
/// did not enter, and every report of a batch the hook hears about (each `Item` event carries
/// the exact count so far), go to the shared counters instead.
struct Tally {
    /// Items counted here rather than in lanes, with [`FINISHED`] set once the batch finished.
    done: AtomicUsize,
    failed: AtomicUsize,
    /// One per thread that entered the batch.
    lanes: Mutex<Vec<Arc<Lane>>>,
}

/// A thread's own counts of one batch's items; written only by that thread.
#[repr(align(128))] // Its own cache line (two, for adjacent-line prefetch).
#[derive(Default)]
struct Lane {
    done: AtomicUsize,
    failed: AtomicUsize,
}

/// Adds one to a counter only the calling thread writes, returning the new value.
#[inline]
fn bump(counter: &AtomicUsize) -> usize {
    let value = counter.load(Ordering::Relaxed) + 1;
    counter.store(value, Ordering::Relaxed);
    value
}

impl Tally {
    /// Items done and failed so far.
    fn totals(&self) -> (usize, usize) {
        let mut done = self.done.load(Ordering::Acquire) & !FINISHED;
        let mut failed = self.failed.load(Ordering::Acquire);
        for lane in self
            .lanes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            done += lane.done.load(Ordering::Relaxed);
            failed += lane.failed.load(Ordering::Relaxed);
        }
        (done, failed)
    }

    fn is_finished(&self) -> bool {
        self.done.load(Ordering::Relaxed) & FINISHED != 0
    }
}

static NEXT_BATCH: AtomicU64 = AtomicU64::new(1);

/// The progress of one batch run with `show_progress = true`: its bar, if one is drawn, and its
/// reports to the hook.
///
/// # How drivers use it
///
/// ```text
/// let progress = BatchProgress::start(op.name(), inputs.len(), &options); // None when off
/// // On every thread that runs items of this batch (the caller's included), for as long as it
/// // runs them, so that batches started inside an item find their parent:
/// let _entered = progress.as_ref().map(progress::enter);
/// // After each item, on whichever thread ran it:
/// if let Some(p) = &progress { p.item(index, result.is_ok()) }
/// // Once the batch's outcome is known:
/// if let Some(p) = &progress { p.finish(ProgressOutcome::of(&result)) }
/// ```
///
/// The handle is an `Arc` and `Send + Sync`: keep a clone with the batch's shared state.
/// [`enter`] pushes a thread-local frame (its guard is `!Send`); async drivers enter around each
/// poll of an item's future, never across an `.await`. Reporting an item on a thread that
/// entered the batch is the cheap path (no shared write); reporting elsewhere also works (one
/// shared atomic increment).
///
/// `finish` counts what was reported before it: the driver's usual synchronisation (joining the
/// workers, or collecting their results) is what makes their reports visible to it. Items
/// reported after `finish` (items abandoned at a deadline that finish later) are ignored. If
/// the last handle drops before `finish` (a panic unwinding through the driver, an async batch
/// whose future was dropped), the batch finishes itself as `Panicked` (when the thread is
/// panicking) or `Cancelled`; a driver whose abandoned items keep a handle alive must therefore
/// call `finish` itself on timeout.
pub(crate) struct BatchProgress {
    id: u64,
    /// 0 for an outermost batch, one more than its parent's for a nested one.
    depth: usize,
    total: usize,
    /// Whether the hook hears about this batch: a hook was installed when it started. Its items
    /// are then counted in the shared counters, so that each event has the exact count.
    reports: bool,
    tally: Arc<Tally>,
    /// Redraw when a count `& mask == 0`; `mask + 1` is the stride, a power of two.
    mask: AtomicUsize,
    /// When the bar was last handed the count, in nanoseconds since `started`.
    last_redraw: AtomicU64,
    started: Instant,
    bar: Option<Bar>,
}

impl fmt::Debug for BatchProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (done, failed) = self.tally.totals();
        f.debug_struct("BatchProgress")
            .field("id", &self.id)
            .field("total", &self.total)
            .field("done", &done)
            .field("failed", &failed)
            .field("finished", &self.tally.is_finished())
            .field("drawn", &self.bar.is_some())
            .finish()
    }
}

impl BatchProgress {
    /// Starts reporting the progress of a batch of `total` items of `operator`; `None` (and
    /// nothing else happens) when `options.show_progress` is off.
    ///
    /// The batch's parent is the batch the calling thread works for (see [`enter`]). Reports
    /// `Started` to the hook, and adds a bar when standard error is a terminal.
    pub(crate) fn start(
        operator: &str,
        total: usize,
        options: &ExecutionOptions,
    ) -> Option<Arc<BatchProgress>> {
        if !options.show_progress {
            return None;
        }
        Some(Self::start_in(multi(), operator, total))
    }

    /// [`start`](Self::start) with the bars of outermost batches going to `screen`.
    fn start_in(screen: &MultiProgress, operator: &str, total: usize) -> Arc<BatchProgress> {
        let id = NEXT_BATCH.fetch_add(1, Ordering::Relaxed);
        let parent = current();
        let reports = HOOKED.load(Ordering::Acquire);
        if reports {
            emit(|| ProgressEvent::Started {
                batch: id,
                parent: parent.as_ref().map(|parent| parent.id),
                operator: operator.to_owned(),
                total,
            });
        }
        let tally = Arc::new(Tally {
            done: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            lanes: Mutex::new(Vec::new()),
        });
        let depth = parent.as_ref().map_or(0, |parent| parent.depth + 1);
        let bar = if total == 0 {
            None
        } else {
            add_bar(screen, parent.as_deref(), depth, operator, total, &tally)
        };
        Arc::new(BatchProgress {
            id,
            depth,
            total,
            reports,
            tally,
            mask: AtomicUsize::new(0),
            last_redraw: AtomicU64::new(0),
            started: Instant::now(),
            bar,
        })
    }

    /// The batch's number, as in its [`ProgressEvent`]s.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Reports that item `index` finished, successfully or not. Callable from any thread: on
    /// one that [entered](enter) the batch, a thread-local lookup and a private counter; on any
    /// other (or when the hook hears about this batch), an atomic increment or two. Now and then
    /// a redraw. Ignored once the batch finished.
    #[inline]
    pub(crate) fn item(&self, index: usize, ok: bool) {
        if !self.reports {
            if let Some(done) = self.item_in_lane(ok) {
                if self.bar.is_some() && done & self.mask.load(Ordering::Relaxed) == 0 {
                    self.redraw();
                }
                return;
            }
        }
        self.item_shared(index, ok);
    }

    /// Counts the item in the calling thread's lane for this batch; `None` when it has none.
    #[inline]
    fn item_in_lane(&self, ok: bool) -> Option<usize> {
        CURRENT
            .try_with(|stack| {
                let stack = stack.try_borrow().ok()?;
                let frame = stack
                    .iter()
                    .rev()
                    .find(|frame| std::ptr::eq(Arc::as_ptr(&frame.progress), self))?;
                let lane = frame.lane.as_ref()?;
                if !ok {
                    bump(&lane.failed);
                }
                Some(bump(&lane.done))
            })
            .ok()
            .flatten()
    }

    fn item_shared(&self, index: usize, ok: bool) {
        let previous = self.tally.done.fetch_add(1, Ordering::AcqRel);
        if previous & FINISHED != 0 {
            return;
        }
        let failed = if ok {
            None
        } else {
            Some(self.tally.failed.fetch_add(1, Ordering::AcqRel) + 1)
        };
        let done = previous + 1;
        if self.bar.is_some() && done & self.mask.load(Ordering::Relaxed) == 0 {
            self.redraw();
        }
        if self.reports {
            emit(|| ProgressEvent::Item {
                batch: self.id,
                index,
                ok,
                done,
                failed: failed.unwrap_or_else(|| self.tally.failed.load(Ordering::Acquire)),
            });
        }
    }

    /// Hands the count to the bar (indicatif decides whether to draw) and adapts the stride to
    /// how long it has been since the last time.
    #[cold]
    fn redraw(&self) {
        let Some(bar) = &self.bar else { return };
        if self.tally.is_finished() {
            return;
        }
        bar.bar.set_position(self.tally.totals().0 as u64);
        let now = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let gap = now.saturating_sub(self.last_redraw.swap(now, Ordering::Relaxed));
        let mask = self.mask.load(Ordering::Relaxed);
        if gap < FAST_REDRAW && mask < MAX_MASK {
            self.mask.store(mask << 1 | 1, Ordering::Relaxed);
        } else if gap > SLOW_REDRAW && mask > 0 {
            self.mask.store(mask >> 1, Ordering::Relaxed);
        }
    }

    /// Finishes the batch with `outcome`: its bar shows the outcome (a nested bar is removed),
    /// and the hook hears `Finished`. Only the first call counts; later items are ignored.
    pub(crate) fn finish(&self, outcome: ProgressOutcome) {
        if self.tally.done.fetch_or(FINISHED, Ordering::AcqRel) & FINISHED != 0 {
            return;
        }
        let (done, failed) = self.tally.totals();
        if let Some(bar) = &self.bar {
            self.finish_bar(bar, done, failed, outcome);
        }
        if self.reports {
            emit(|| ProgressEvent::Finished {
                batch: self.id,
                done,
                failed,
                outcome,
            });
        }
    }

    fn finish_bar(&self, bar: &Bar, done: usize, failed: usize, outcome: ProgressOutcome) {
        bar.bar.disable_steady_tick();
        bar.bar.set_position(done as u64);
        let mut live = LAYOUT.lock().unwrap_or_else(PoisonError::into_inner);
        *live = live.saturating_sub(1);
        if bar.nested {
            bar.bar.finish_and_clear();
            if bar.attached.swap(false, Ordering::Relaxed) {
                bar.multi.remove(&bar.bar);
            }
            return;
        }
        drop(live);
        let styles = styles();
        // Green: all done. Yellow: done with failures (a settled batch), or stopped by a
        // deadline or an enclosing call. Red: failed.
        let style = match outcome {
            ProgressOutcome::Ok if failed == 0 => &styles.ok,
            ProgressOutcome::Ok | ProgressOutcome::Timeout | ProgressOutcome::Cancelled => {
                &styles.stopped
            }
            _ => &styles.bad,
        };
        bar.bar.set_style(style.clone());
        bar.bar
            .abandon_with_message(summary(outcome, done, failed, self.started.elapsed()));
    }
}

impl Drop for BatchProgress {
    fn drop(&mut self) {
        // Not finished by the driver: a panic unwound through it, or its future was dropped.
        self.finish(if std::thread::panicking() {
            ProgressOutcome::Panicked
        } else {
            ProgressOutcome::Cancelled
        });
    }
}

/// What a finished outermost bar says after its count.
fn summary(outcome: ProgressOutcome, done: usize, failed: usize, elapsed: Duration) -> String {
    let took = HumanDuration(elapsed);
    let secs = elapsed.as_secs_f64();
    let rate = format_rate(if secs > 0.0 { done as f64 / secs } else { 0.0 });
    let failed = if failed > 0 {
        format!(", {} failed", HumanCount(failed as u64))
    } else {
        String::new()
    };
    match outcome {
        ProgressOutcome::Ok => format!("✔ done{failed} in {took:#} · {rate}"),
        ProgressOutcome::Error => format!("✘ error{failed} after {took:#}"),
        ProgressOutcome::Timeout => format!("✘ timed out{failed} after {took:#}"),
        ProgressOutcome::Panicked => format!("✘ panicked{failed} after {took:#}"),
        ProgressOutcome::Cancelled => format!("✘ cancelled{failed} after {took:#}"),
    }
}

/// A bar for a new batch, below its parent's if it has one; `None` when bars are hidden or
/// [`MAX_BARS`] are live.
fn add_bar(
    screen: &MultiProgress,
    parent: Option<&BatchProgress>,
    depth: usize,
    operator: &str,
    total: usize,
    tally: &Arc<Tally>,
) -> Option<Bar> {
    let parent_bar = parent.and_then(|parent| parent.bar.as_ref());
    let multi = parent_bar.map_or(screen, |bar| &bar.multi);
    if multi.is_hidden() {
        return None;
    }
    let prefix = if depth == 0 {
        format!("{operator:<NAME_WIDTH$}")
    } else {
        // ` └ inner`, `   └ innermost`: two columns per level.
        let indent = " ".repeat(2 * depth - 1);
        let width = NAME_WIDTH.saturating_sub(2 * depth + 1);
        format!("{indent}└ {operator:<width$}")
    };
    let tally = Arc::clone(tally);
    let style = styles().running.clone().with_key(
        "failed",
        move |_: &ProgressState, out: &mut dyn fmt::Write| {
            let (_, failed) = tally.totals();
            if failed > 0 {
                let _ = out.write_str(&format!("{} failed · ", HumanCount(failed as u64)));
            }
        },
    );
    let mut live = LAYOUT.lock().unwrap_or_else(PoisonError::into_inner);
    if *live >= MAX_BARS {
        return None;
    }
    *live += 1;
    // Added hidden and untouched, so it draws nothing before the `MultiProgress` owns it.
    let fresh = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::hidden())
        .with_prefix(prefix);
    let bar = match parent_bar {
        Some(parent) if parent.attached.load(Ordering::Relaxed) => {
            multi.insert_after(&parent.bar, fresh)
        }
        _ => multi.add(fresh),
    };
    drop(live);
    // Styled once in the `MultiProgress`, so colours follow standard error's.
    bar.set_style(style);
    let nested = parent.is_some();
    if nested {
        bar.tick();
    } else {
        // On screen at once, then redrawn by its own ticker.
        bar.force_draw();
        bar.enable_steady_tick(TICK);
    }
    Some(Bar {
        bar,
        multi: multi.clone(),
        nested,
        attached: AtomicBool::new(true),
    })
}

// ---------------------------------------------------------------------------------------------
// The batch a thread works for.

/// A batch this thread works for, and where it counts that batch's items.
struct Frame {
    progress: Arc<BatchProgress>,
    /// `None` for a batch counted in its shared counters (the hook hears about it).
    lane: Option<Arc<Lane>>,
}

thread_local! {
    /// The batches this thread works for, innermost last.
    static CURRENT: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
    /// The lane this thread last counted in, by batch: entering the same batch again (an async
    /// driver enters around every poll) reuses it instead of registering another.
    static LAST_LANE: RefCell<Option<(u64, Arc<Lane>)>> = const { RefCell::new(None) };
}

/// The batch this thread works for, if any.
fn current() -> Option<Arc<BatchProgress>> {
    CURRENT
        .try_with(|stack| {
            let stack = stack.try_borrow().ok()?;
            stack.last().map(|frame| Arc::clone(&frame.progress))
        })
        .ok()
        .flatten()
}

/// This thread's lane for `progress`: the last one if it was for the same batch, else a new one
/// registered with the batch.
fn lane_for(progress: &BatchProgress) -> Option<Arc<Lane>> {
    if progress.reports {
        return None;
    }
    let cached = LAST_LANE
        .try_with(|last| match &*last.borrow() {
            Some((batch, lane)) if *batch == progress.id => Some(Arc::clone(lane)),
            _ => None,
        })
        .ok()
        .flatten();
    if cached.is_some() {
        return cached;
    }
    let lane = Arc::new(Lane::default());
    progress
        .tally
        .lanes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Arc::clone(&lane));
    let _ = LAST_LANE.try_with(|last| *last.borrow_mut() = Some((progress.id, Arc::clone(&lane))));
    Some(lane)
}

/// Marks the calling thread as working for `progress` until the guard drops: a batch started
/// on this thread meanwhile is its child (its bar goes below this one's, its `Started` event
/// names this batch as `parent`), and items reported here are counted without touching memory
/// other threads write.
///
/// Drivers enter on every thread that runs items of the batch, the caller's included (a
/// sequential batch runs its items there), for as long as it runs them. Entering costs a
/// reference-count increment and a push on a thread-local stack, plus, the first time a thread
/// enters a batch, a lane registered under a short lock. Guards nest, and must be dropped on
/// the thread that made them, innermost first (they are `!Send`); async drivers enter around
/// each poll, never across an `.await`.
pub(crate) fn enter(progress: &Arc<BatchProgress>) -> EnterGuard {
    let lane = lane_for(progress);
    let depth = CURRENT
        .try_with(|stack| {
            let mut stack = stack.try_borrow_mut().ok()?;
            stack.push(Frame {
                progress: Arc::clone(progress),
                lane,
            });
            Some(stack.len() - 1)
        })
        .ok()
        .flatten();
    EnterGuard {
        depth,
        _not_send: PhantomData,
    }
}

/// Ends what [`enter`] began when dropped.
#[must_use = "the thread works for the batch only until the guard drops"]
pub(crate) struct EnterGuard {
    /// The stack's length before the push (`None`: the thread-local was gone).
    depth: Option<usize>,
    _not_send: PhantomData<*const ()>,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let Some(depth) = self.depth else { return };
        // Pop one at a time and drop outside the borrow: dropping the last handle on a batch
        // finishes it, which may call the hook, which may start batches on this thread.
        loop {
            let popped = CURRENT
                .try_with(|stack| {
                    let mut stack = stack.try_borrow_mut().ok()?;
                    if stack.len() > depth {
                        stack.pop()
                    } else {
                        None
                    }
                })
                .ok()
                .flatten();
            match popped {
                Some(frame) => drop(frame),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::hint::black_box;
    use std::sync::MutexGuard;

    use indicatif::TermLike;

    /// The hook and the live-bar count are process-wide: tests that use them take turns.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn serial() -> MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Installs a hook that records every event until dropped.
    struct Recorder {
        events: Arc<Mutex<Vec<ProgressEvent>>>,
    }

    impl Recorder {
        fn install() -> Self {
            let events = Arc::new(Mutex::new(Vec::new()));
            let sink = Arc::clone(&events);
            set_progress_hook(move |event| sink.lock().unwrap().push(event.clone()));
            Recorder { events }
        }

        fn of(&self, batch: u64) -> Vec<ProgressEvent> {
            let events = self.events.lock().unwrap();
            events
                .iter()
                .filter(|e| e.batch() == batch)
                .cloned()
                .collect()
        }
    }

    impl Drop for Recorder {
        fn drop(&mut self) {
            clear_progress_hook();
        }
    }

    fn on() -> ExecutionOptions {
        ExecutionOptions {
            show_progress: true,
            ..ExecutionOptions::default()
        }
    }

    fn hidden() -> MultiProgress {
        MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
    }

    fn started(batch: u64, parent: Option<u64>, operator: &str, total: usize) -> ProgressEvent {
        ProgressEvent::Started {
            batch,
            parent,
            operator: operator.to_owned(),
            total,
        }
    }

    fn item(batch: u64, index: usize, ok: bool, done: usize, failed: usize) -> ProgressEvent {
        ProgressEvent::Item {
            batch,
            index,
            ok,
            done,
            failed,
        }
    }

    fn finished(batch: u64, done: usize, failed: usize, outcome: ProgressOutcome) -> ProgressEvent {
        ProgressEvent::Finished {
            batch,
            done,
            failed,
            outcome,
        }
    }

    #[test]
    fn handles_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<BatchProgress>();
        send_sync::<Arc<BatchProgress>>();
        send_sync::<ProgressEvent>();
    }

    #[test]
    fn off_is_none_and_silent() {
        let _serial = serial();
        let recorder = Recorder::install();
        assert!(BatchProgress::start("quiet", 3, &ExecutionOptions::default()).is_none());
        assert!(recorder.events.lock().unwrap().is_empty());
    }

    #[test]
    fn hook_sees_started_items_finished() {
        let _serial = serial();
        let recorder = Recorder::install();
        let progress = BatchProgress::start_in(&hidden(), "double", 3);
        let id = progress.id();
        progress.item(1, true);
        progress.item(0, false);
        progress.item(2, true);
        progress.finish(ProgressOutcome::Error);
        // Only the first finish counts, and items after it are not reported.
        progress.finish(ProgressOutcome::Ok);
        progress.item(3, true);
        drop(progress);
        assert_eq!(
            recorder.of(id),
            vec![
                started(id, None, "double", 3),
                item(id, 1, true, 1, 0),
                item(id, 0, false, 2, 1),
                item(id, 2, true, 3, 1),
                finished(id, 3, 1, ProgressOutcome::Error),
            ]
        );
    }

    #[test]
    fn hook_fires_for_batches_that_draw_nothing() {
        let _serial = serial();
        let recorder = Recorder::install();
        // What standard error that is not a terminal gets: a hidden target, so no bar at all.
        assert!(stderr_target(false).is_hidden());
        let screen = MultiProgress::with_draw_target(stderr_target(false));
        assert!(screen.is_hidden());
        let progress = BatchProgress::start_in(&screen, "quiet", 2);
        assert!(progress.bar.is_none());
        progress.item(0, true);
        progress.item(1, true);
        progress.finish(ProgressOutcome::Ok);
        assert_eq!(recorder.of(progress.id()).len(), 4);

        // And the process-wide screen follows standard error.
        if !std::io::stderr().is_terminal() {
            assert!(multi().is_hidden());
            let progress = BatchProgress::start("quiet", 2, &on()).expect("show_progress is on");
            assert!(progress.bar.is_none());
            progress.finish(ProgressOutcome::Ok);
            assert_eq!(recorder.of(progress.id()).len(), 2);
        }
    }

    #[test]
    fn nested_batches_name_their_parent() {
        let _serial = serial();
        let recorder = Recorder::install();
        let screen = hidden();
        let outer = BatchProgress::start_in(&screen, "outer", 2);
        // A worker thread runs items of `outer`; batches it starts meanwhile are children.
        let (inner_id, deepest_id, after_id) = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let (inner_id, deepest_id);
                    {
                        let _outer = enter(&outer);
                        let inner = BatchProgress::start_in(&screen, "inner", 1);
                        assert_eq!(inner.depth, 1);
                        {
                            let _inner = enter(&inner);
                            let deepest = BatchProgress::start_in(&screen, "deepest", 1);
                            assert_eq!(deepest.depth, 2);
                            deepest.finish(ProgressOutcome::Ok);
                            deepest_id = deepest.id();
                        }
                        inner.finish(ProgressOutcome::Ok);
                        inner_id = inner.id();
                    }
                    // Once the guards are gone, a batch on this thread is outermost again.
                    let after = BatchProgress::start_in(&screen, "after", 1);
                    assert_eq!(after.depth, 0);
                    (inner_id, deepest_id, after.id())
                })
                .join()
                .unwrap()
        });
        outer.finish(ProgressOutcome::Ok);
        assert_eq!(
            recorder.of(inner_id)[0],
            started(inner_id, Some(outer.id()), "inner", 1)
        );
        assert_eq!(
            recorder.of(deepest_id)[0],
            started(deepest_id, Some(inner_id), "deepest", 1)
        );
        assert_eq!(
            recorder.of(after_id)[0],
            started(after_id, None, "after", 1)
        );
        // `after` was dropped unfinished, outside a panic: cancelled.
        assert_eq!(
            recorder.of(after_id)[1],
            finished(after_id, 0, 0, ProgressOutcome::Cancelled)
        );
        // The main thread never entered `outer`.
        assert!(current().is_none());
    }

    #[test]
    fn dropped_unfinished_during_a_panic_finishes_as_panicked() {
        let _serial = serial();
        let recorder = Recorder::install();
        let id = AtomicU64::new(0);
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            let progress = BatchProgress::start_in(&hidden(), "boom", 3);
            id.store(progress.id(), Ordering::Relaxed);
            let _entered = enter(&progress);
            progress.item(0, true);
            panic!("an item blew up");
        }));
        assert!(result.is_err());
        let id = id.load(Ordering::Relaxed);
        assert_eq!(
            recorder.of(id).last(),
            Some(&finished(id, 1, 0, ProgressOutcome::Panicked))
        );
        assert!(
            current().is_none(),
            "the guard popped its frame while unwinding"
        );
    }

    #[test]
    fn concurrent_items_count_exactly() {
        let _serial = serial();
        let recorder = Recorder::install();
        const THREADS: usize = 4;
        const PER_THREAD: usize = 25_000;
        let progress = BatchProgress::start_in(&hidden(), "many", THREADS * PER_THREAD);
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let progress = &progress;
                scope.spawn(move || {
                    let _entered = enter(progress);
                    for i in 0..PER_THREAD {
                        let index = thread * PER_THREAD + i;
                        progress.item(index, index % 7 != 0);
                    }
                });
            }
        });
        progress.finish(ProgressOutcome::Ok);
        let failures = (0..THREADS * PER_THREAD).filter(|i| i % 7 == 0).count();
        let events = recorder.of(progress.id());
        assert_eq!(
            events.last(),
            Some(&finished(
                progress.id(),
                THREADS * PER_THREAD,
                failures,
                ProgressOutcome::Ok
            ))
        );
        let mut dones = BTreeSet::new();
        let mut indices = BTreeSet::new();
        let mut most_failed = 0;
        for event in &events {
            if let ProgressEvent::Item {
                index,
                done,
                failed,
                ..
            } = *event
            {
                dones.insert(done);
                indices.insert(index);
                most_failed = most_failed.max(failed);
            }
        }
        // Every item reported once, each with its own count.
        assert_eq!(dones, (1..=THREADS * PER_THREAD).collect());
        assert_eq!(indices, (0..THREADS * PER_THREAD).collect());
        assert_eq!(most_failed, failures);
    }

    #[test]
    fn lanes_count_exactly_without_a_hook() {
        let _serial = serial();
        const THREADS: usize = 4;
        const PER_THREAD: usize = 25_000;
        let (term, screen) = virtual_screen();
        let progress = BatchProgress::start_in(&screen, "lanes", THREADS * PER_THREAD + 10);
        assert!(!progress.reports);
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let progress = &progress;
                scope.spawn(move || {
                    for i in 0..PER_THREAD {
                        // Entering again and again (as an async driver does around each poll)
                        // keeps counting in the thread's one lane.
                        let _entered = (i % 1000 == 0).then(|| enter(progress));
                        let _entered = enter(progress);
                        let index = thread * PER_THREAD + i;
                        progress.item(index, index % 7 != 0);
                    }
                });
            }
            // A thread that never entered counts in the shared counters.
            scope.spawn(|| (0..10).for_each(|i| progress.item(THREADS * PER_THREAD + i, false)));
        });
        let failures = (0..THREADS * PER_THREAD).filter(|i| i % 7 == 0).count() + 10;
        assert_eq!(
            progress.tally.totals(),
            (THREADS * PER_THREAD + 10, failures)
        );
        assert_eq!(progress.tally.lanes.lock().unwrap().len(), THREADS);
        progress.finish(ProgressOutcome::Ok);
        let lines = term.lines();
        assert!(lines[0].contains("100,010/100,010"), "{lines:#?}");
        assert!(lines[0].contains(&format!("✔ done, {} failed", HumanCount(failures as u64))));
        // Reports after the finish change nothing.
        let _entered = enter(&progress);
        progress.item(0, false);
        assert_eq!(term.lines(), lines);
    }

    #[test]
    fn a_hook_hears_only_batches_started_after_it() {
        let _serial = serial();
        let before = BatchProgress::start_in(&hidden(), "before", 2);
        let recorder = Recorder::install();
        before.item(0, true);
        before.finish(ProgressOutcome::Ok);
        assert!(recorder.of(before.id()).is_empty());
        let after = BatchProgress::start_in(&hidden(), "after", 1);
        clear_progress_hook();
        after.item(0, true);
        after.finish(ProgressOutcome::Ok);
        // Cleared: nothing after `Started`.
        assert_eq!(
            recorder.of(after.id()),
            vec![started(after.id(), None, "after", 1)]
        );
    }

    #[test]
    fn a_panicking_hook_does_not_break_the_batch() {
        let _serial = serial();
        set_progress_hook(|event| {
            if matches!(event, ProgressEvent::Item { .. }) {
                panic!("the hook is broken");
            }
        });
        let progress = BatchProgress::start_in(&hidden(), "sturdy", 2);
        progress.item(0, true);
        progress.item(1, true);
        progress.finish(ProgressOutcome::Ok);
        clear_progress_hook();
        assert_eq!(progress.tally.totals(), (2, 0));
        assert!(progress.tally.is_finished());
    }

    #[test]
    fn the_hook_may_run_batches_itself() {
        let _serial = serial();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        set_progress_hook(move |event| {
            sink.lock().unwrap().push(event.clone());
            if let ProgressEvent::Started { operator, .. } = event {
                if operator == "outer" {
                    let inside = BatchProgress::start_in(&hidden(), "from the hook", 1);
                    inside.item(0, true);
                    inside.finish(ProgressOutcome::Ok);
                }
            }
        });
        let outer = BatchProgress::start_in(&hidden(), "outer", 1);
        outer.finish(ProgressOutcome::Ok);
        clear_progress_hook();
        let operators: Vec<String> = events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|event| match event {
                ProgressEvent::Started { operator, .. } => Some(operator.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(operators, ["outer", "from the hook"]);
    }

    #[test]
    fn outcome_of_a_result() {
        let timeout = XcsError::Timeout {
            operator: "op".into(),
            index: None,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(ProgressOutcome::of(&Ok::<(), _>(())), ProgressOutcome::Ok);
        assert_eq!(
            ProgressOutcome::of::<()>(&Err(timeout)),
            ProgressOutcome::Timeout
        );
        let error = XcsError::operator("op", "bad input");
        assert_eq!(
            ProgressOutcome::of::<()>(&Err(error)),
            ProgressOutcome::Error
        );
        assert_eq!(ProgressOutcome::Panicked.to_string(), "panicked");
    }

    #[test]
    fn templates_parse() {
        for template in [RUNNING, FINISHED_OK, FINISHED_BAD, FINISHED_STOPPED] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
        assert_eq!(format_rate(0.0), "-/s");
        assert_eq!(format_rate(2.54), "2.5/s");
        assert_eq!(format_rate(12_345.6), "12,346/s");
        assert_eq!(
            summary(ProgressOutcome::Ok, 10, 2, Duration::from_secs(5)),
            "✔ done, 2 failed in 5s · 2.0/s"
        );
    }

    /// A terminal that keeps what is on screen, for checking what the bars look like. What it
    /// shows changes at each `flush` (the end of a frame), so a test never sees half a frame
    /// drawn by the outermost bar's ticker thread.
    #[derive(Clone, Debug, Default)]
    struct VirtualTerm(Arc<Mutex<Screen>>);

    #[derive(Debug, Default)]
    struct Screen {
        rows: Vec<Vec<char>>,
        row: usize,
        col: usize,
        escape: bool,
        shown: Vec<String>,
    }

    const WIDTH: u16 = 140;

    impl VirtualTerm {
        /// The non-blank lines on screen at the end of the last frame, colours removed.
        fn lines(&self) -> Vec<String> {
            self.0.lock().unwrap().shown.clone()
        }

        fn with(&self, f: impl FnOnce(&mut Screen)) -> std::io::Result<()> {
            f(&mut self.0.lock().unwrap());
            Ok(())
        }
    }

    impl Screen {
        fn put(&mut self, text: &str) {
            for ch in text.chars() {
                if self.escape {
                    self.escape = !ch.is_ascii_alphabetic();
                    continue;
                }
                match ch {
                    '\x1b' => self.escape = true,
                    '\r' => self.col = 0,
                    '\n' => {
                        self.row += 1;
                        self.col = 0;
                    }
                    _ => {
                        if self.col >= usize::from(WIDTH) {
                            self.row += 1;
                            self.col = 0;
                        }
                        self.cell(ch);
                        self.col += 1;
                    }
                }
            }
        }

        fn cell(&mut self, ch: char) {
            if self.rows.len() <= self.row {
                self.rows.resize(self.row + 1, Vec::new());
            }
            let row = &mut self.rows[self.row];
            if row.len() <= self.col {
                row.resize(self.col + 1, ' ');
            }
            row[self.col] = ch;
        }
    }

    impl TermLike for VirtualTerm {
        fn width(&self) -> u16 {
            WIDTH
        }
        fn height(&self) -> u16 {
            50
        }
        fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
            self.with(|s| s.row = s.row.saturating_sub(n))
        }
        fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
            self.with(|s| s.row += n)
        }
        fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
            self.with(|s| s.col += n)
        }
        fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
            self.with(|s| s.col = s.col.saturating_sub(n))
        }
        fn write_line(&self, line: &str) -> std::io::Result<()> {
            self.with(|s| s.put(&format!("{line}\n")))
        }
        fn write_str(&self, text: &str) -> std::io::Result<()> {
            self.with(|s| s.put(text))
        }
        fn clear_line(&self) -> std::io::Result<()> {
            self.with(|s| {
                if let Some(row) = s.rows.get_mut(s.row) {
                    row.clear();
                }
                s.col = 0;
            })
        }
        fn flush(&self) -> std::io::Result<()> {
            self.with(|s| {
                s.shown = s
                    .rows
                    .iter()
                    .map(|row| row.iter().collect::<String>().trim_end().to_owned())
                    .filter(|line| !line.is_empty())
                    .collect();
            })
        }
    }

    fn virtual_screen() -> (VirtualTerm, MultiProgress) {
        let term = VirtualTerm::default();
        let multi =
            MultiProgress::with_draw_target(ProgressDrawTarget::term_like(Box::new(term.clone())));
        (term, multi)
    }

    #[test]
    fn nested_bars_sit_below_their_parent_and_go_away() {
        let _serial = serial();
        let (term, screen) = virtual_screen();
        let outer = BatchProgress::start_in(&screen, "outer", 4);
        assert!(outer.bar.as_ref().is_some_and(|bar| !bar.bar.is_hidden()));
        outer.item(0, true);
        {
            let _entered = enter(&outer);
            let inner = BatchProgress::start_in(&screen, "inner", 2);
            inner.item(0, false);
            let lines = term.lines();
            assert_eq!(lines.len(), 2, "{lines:#?}");
            assert!(lines[0].starts_with("outer "), "{lines:#?}");
            assert!(lines[1].starts_with(" └ inner "), "{lines:#?}");
            assert!(
                lines[1].contains("1/2") && lines[1].contains("1 failed"),
                "{lines:#?}"
            );
            inner.finish(ProgressOutcome::Ok);
            let lines = term.lines();
            assert_eq!(
                lines.len(),
                1,
                "the finished inner bar is cleared: {lines:#?}"
            );
        }
        for index in 1..4 {
            outer.item(index, true);
        }
        outer.finish(ProgressOutcome::Ok);
        let lines = term.lines();
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].starts_with("outer "), "{lines:#?}");
        assert!(
            lines[0].contains("4/4") && lines[0].contains("✔ done in"),
            "{lines:#?}"
        );
        // The outermost bar stays on screen, finished, when its batch is gone.
        drop(outer);
        assert_eq!(term.lines(), lines);
    }

    #[test]
    fn a_timed_out_bar_keeps_its_count_and_says_so() {
        let _serial = serial();
        let (term, screen) = virtual_screen();
        let progress = BatchProgress::start_in(&screen, "slow", 10);
        progress.item(0, true);
        progress.item(1, false);
        progress.finish(ProgressOutcome::Timeout);
        let lines = term.lines();
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].contains("2/10"), "{lines:#?}");
        assert!(
            lines[0].contains("✘ timed out, 1 failed after"),
            "{lines:#?}"
        );
    }

    #[test]
    fn at_most_max_bars_are_drawn() {
        let _serial = serial();
        let recorder = Recorder::install();
        let (_term, screen) = virtual_screen();
        let batches: Vec<_> = (0..MAX_BARS + 2)
            .map(|i| BatchProgress::start_in(&screen, &format!("batch {i}"), 1))
            .collect();
        let drawn = batches.iter().filter(|b| b.bar.is_some()).count();
        assert_eq!(drawn, MAX_BARS);
        // Batches without a bar still report.
        let last = batches.last().expect("batches");
        assert!(last.bar.is_none());
        assert_eq!(recorder.of(last.id()).len(), 1);
        // Finishing one makes room.
        batches[0].finish(ProgressOutcome::Ok);
        let another = BatchProgress::start_in(&screen, "another", 1);
        assert!(another.bar.is_some());
        drop(another);
        drop(batches);
        assert_eq!(*LAYOUT.lock().unwrap(), 0);
    }

    /// Busy work of about `n` × a few nanoseconds that the optimiser cannot remove.
    fn work(n: u64) -> u64 {
        let mut x = black_box(n);
        for i in 0..n {
            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
        x
    }

    /// Runs `items` items of `work(spin)` on `threads` threads, taking blocks of 256 from a
    /// shared counter as the batch drivers do.
    fn run(threads: usize, items: usize, spin: u64) -> Duration {
        run_items(threads, items, spin, None, false)
    }

    /// [`run`], reporting each item to `progress`, from threads that `entered` it or not.
    fn run_with(
        threads: usize,
        items: usize,
        spin: u64,
        progress: &Arc<BatchProgress>,
        entered: bool,
    ) -> Duration {
        run_items(threads, items, spin, Some(progress), entered)
    }

    fn run_items(
        threads: usize,
        items: usize,
        spin: u64,
        progress: Option<&Arc<BatchProgress>>,
        entered: bool,
    ) -> Duration {
        let next = AtomicUsize::new(0);
        let start = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    let _entered = progress.filter(|_| entered).map(enter);
                    loop {
                        let first = next.fetch_add(256, Ordering::Relaxed);
                        if first >= items {
                            break;
                        }
                        for index in first..(first + 256).min(items) {
                            let ok = black_box(work(spin)) != 1;
                            if let Some(progress) = progress {
                                progress.item(index, ok);
                            }
                        }
                    }
                });
            }
        });
        start.elapsed()
    }

    /// `cargo test -p xcs-core --release --lib progress::tests::item_cost -- --ignored --nocapture`
    ///
    /// Prints what `item()` costs per call (bar hidden: no terminal), on threads that entered
    /// the batch and on threads that did not, then the slowdown of 100 000 items of about 100 ns
    /// run on two threads as the drivers run them. Minimums of many runs, as the machine may be
    /// busy with other work.
    #[test]
    #[ignore = "a benchmark: run it on purpose, in release mode"]
    fn item_cost() {
        let _serial = serial();
        const CALLS: usize = 4_000_000;
        let best = |runs: usize, mut f: Box<dyn FnMut() -> Duration + '_>| {
            (0..runs).map(|_| f()).min().unwrap_or_default()
        };
        let ns = |elapsed: Duration, calls: usize| elapsed.as_nanos() as f64 / calls as f64;

        for (threads, entered) in [(1, true), (1, false), (2, true), (2, false)] {
            let without = best(5, Box::new(|| run(threads, CALLS, 0)));
            let with = best(
                5,
                Box::new(|| {
                    let progress = BatchProgress::start_in(&hidden(), "bench", CALLS);
                    let took = run_with(threads, CALLS, 0, &progress, entered);
                    progress.finish(ProgressOutcome::Ok);
                    took
                }),
            );
            println!(
                "item(), bar hidden, {threads} thread(s), {}: {:.1} ns per item",
                if entered {
                    "entered (lanes)"
                } else {
                    "not entered (shared counter)"
                },
                ns(with.saturating_sub(without), CALLS / threads),
            );
        }

        // About 100 ns of work per item.
        let spin = {
            let probe = 200_000;
            let took = best(
                5,
                Box::new(|| {
                    let start = Instant::now();
                    black_box(work(probe));
                    start.elapsed()
                }),
            );
            ((100.0 * probe as f64) / took.as_nanos() as f64).max(1.0) as u64
        };
        const ITEMS: usize = 100_000;
        let per_item = ns(best(20, Box::new(|| run(1, ITEMS, spin))), ITEMS);
        println!("work per item: {per_item:.0} ns");
        for threads in [1, 2] {
            // The noise floor: the same run twice.
            let (mut a, mut b) = (Duration::MAX, Duration::MAX);
            for _ in 0..100 {
                a = a.min(run(threads, ITEMS, spin));
                b = b.min(run(threads, ITEMS, spin));
            }
            println!(
                "100 000 items on {threads} thread(s), no progress twice: {:.3}x",
                b.as_secs_f64() / a.as_secs_f64()
            );
            for (label, drawn) in [("hidden", false), ("drawn (virtual terminal)", true)] {
                let (mut base, mut with) = (Duration::MAX, Duration::MAX);
                for _ in 0..100 {
                    base = base.min(run(threads, ITEMS, spin));
                    let screen = if drawn { virtual_screen().1 } else { hidden() };
                    let progress = BatchProgress::start_in(&screen, "bench", ITEMS);
                    with = with.min(run_with(threads, ITEMS, spin, &progress, true));
                    progress.finish(ProgressOutcome::Ok);
                }
                println!(
                    "100 000 items on {threads} thread(s), bar {label}: {:.2} ms without progress, \
                     {:.2} ms with ({:.3}x)",
                    base.as_secs_f64() * 1e3,
                    with.as_secs_f64() * 1e3,
                    with.as_secs_f64() / base.as_secs_f64()
                );
            }
        }
    }

    /// What the bars look like on a real terminal:
    /// `script -q -c 'cargo test -p xcs-core progress::tests::demo -- --ignored --nocapture' /dev/null`
    #[test]
    #[ignore = "draws on standard error for a person to look at"]
    fn demo_on_a_terminal() {
        let _serial = serial();
        // Start below the test harness's `test … ...`.
        eprintln!();
        let outer = BatchProgress::start("score", 12, &on()).expect("show_progress is on");
        let _entered = enter(&outer);
        for index in 0..12 {
            let inner = BatchProgress::start("rerank", 40, &on()).expect("show_progress is on");
            for inner_index in 0..40 {
                std::thread::sleep(Duration::from_millis(10));
                inner.item(inner_index, (inner_index + index) % 17 != 0);
            }
            inner.finish(ProgressOutcome::Ok);
            outer.item(index, index % 5 != 4);
        }
        outer.finish(ProgressOutcome::Ok);
    }
}
