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

mod bar;
mod event;
mod frame;
mod hook;
mod tally;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use indicatif::MultiProgress;

use crate::options::ExecutionOptions;

use bar::{Bar, FAST_REDRAW, MAX_MASK, SLOW_REDRAW, add_bar, multi};
use frame::{CURRENT, current};
use hook::{HOOKED, emit};
use tally::{FINISHED, Tally, bump};

pub use event::{ProgressEvent, ProgressOutcome};
pub(crate) use frame::{EnterGuard, enter};

/// Charges `usage` (what a call recorded) to the batch this thread works for, if any, and to
/// the batches around it.
pub(crate) fn charge_current(usage: crate::Usage) {
    if let Some(progress) = current() {
        progress.charge(usage);
    }
}
pub use hook::{clear_progress_hook, set_progress_hook};

/// The most progress bars drawn at once; batches started beyond it run without a bar (the
/// hook still hears about them).
///
/// A terminal shows a few dozen lines, and `vmap(vmap(op))` over many CPUs would otherwise
/// scroll a bar per running inner batch past the one that matters, the outermost.
pub const MAX_BARS: usize = 16;

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
            usage: Mutex::new(crate::Usage::ZERO),
            parent: parent.as_ref().map(|parent| Arc::clone(&parent.tally)),
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

    /// Adds usage a call of the batch recorded (shown on its bar and its parents').
    pub(crate) fn charge(&self, usage: crate::Usage) {
        self.tally.charge(usage);
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
