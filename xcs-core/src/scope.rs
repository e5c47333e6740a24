//! Where the effective options come from: a process-wide global setting under a per-thread stack
//! of scopes.
//!
//! Reading the options is the hot path (every operator call does it), so each thread keeps its
//! effective options ready in a thread-local, tagged with the generation of the global options it
//! was computed from. A read is an atomic load, a compare and a copy: no lock and no allocation.
//! Only after a global update does a thread take the global read lock, once, to recompute.
//!
//! Entering a scope pushes its patch on the thread's stack and marks the cached options stale;
//! the returned [`FrameGuard`] pops it when dropped (marking them stale again), so the previous
//! options come back on every exit path, unwinding included. The options are worked out again —
//! the patches above the last pinned frame applied to the global options — on the first read
//! after a change, so a scope costs a push and a pop, and what it costs to read is paid once per
//! change, only when something reads. The guard is `!Send`: a scope belongs to the thread that
//! opened it.
//!
//! Work that an executor runs on a caller's behalf must see the caller's options, but thread
//! locals do not cross threads. Executors therefore capture the caller's effective options and
//! re-establish them on the worker with [`pin`]: a frame that replaces, rather than patches, what
//! lies below it.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use crate::options::{ExecutionOptions, OptionsPatch};

/// The global options: defaults with every `set_execution_options!` merged in.
static GLOBAL: RwLock<ExecutionOptions> = RwLock::new(ExecutionOptions::DEFAULT);

/// Bumped after every global update, so threads know their cached options are stale.
static GENERATION: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy)]
enum Frame {
    /// A scope: sets what the patch names, inherits the rest.
    Patch(OptionsPatch),
    /// A worker running on a caller's behalf: exactly the caller's effective options.
    Pinned(ExecutionOptions),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lazy {
    Unknown,
    No,
    Yes,
}

struct ThreadScopes {
    /// The effective options, valid while `valid` is set and `generation` matches
    /// [`GENERATION`].
    effective: Cell<ExecutionOptions>,
    /// Whether `effective` was worked out from the frames as they are now. Entering or leaving
    /// a scope only clears it: the options are worked out again when next read, so a scope that
    /// reads nothing costs a push and a pop.
    valid: Cell<bool>,
    /// Whether `effective` asks for per-call work (caching, tracing, a timeout), worked out on
    /// first use after each change: the one bit the fast path of an operator call needs.
    per_call_work: Cell<Lazy>,
    /// Whether this thread works for a call with a deadline (kept beside `per_call_work` so
    /// the fast path reads one thread-local).
    under_deadline: Cell<bool>,
    /// Whether the thread had a tokio runtime context when `per_call_work` was last worked out
    /// (such a thread's sync calls take the slow path, which warns about them).
    #[cfg(feature = "tokio")]
    on_runtime: Cell<bool>,
    /// The global generation `effective` was worked out under.
    generation: Cell<u64>,
    /// The global options as of `global_generation`, so that working the options out again
    /// takes the global lock only after a global update.
    global: Cell<ExecutionOptions>,
    global_generation: Cell<u64>,
    frames: RefCell<Vec<Frame>>,
}

thread_local! {
    static SCOPES: ThreadScopes = const {
        ThreadScopes {
            effective: Cell::new(ExecutionOptions::DEFAULT),
            valid: Cell::new(true),
            per_call_work: Cell::new(Lazy::Unknown),
            under_deadline: Cell::new(false),
            #[cfg(feature = "tokio")]
            on_runtime: Cell::new(false),
            generation: Cell::new(0),
            global: Cell::new(ExecutionOptions::DEFAULT),
            global_generation: Cell::new(0),
            frames: RefCell::new(Vec::new()),
        }
    };
}

fn read_global() -> ExecutionOptions {
    *GLOBAL.read().unwrap_or_else(PoisonError::into_inner)
}

impl ThreadScopes {
    /// Works the effective options out from the global ones and this thread's frames.
    #[cold]
    #[inline(never)]
    fn refresh(&self) -> ExecutionOptions {
        let generation = GENERATION.load(Ordering::Acquire);
        let frames = self.frames.borrow();
        let start = frames
            .iter()
            .rposition(|frame| matches!(frame, Frame::Pinned(_)));
        let mut options = match start.map(|i| &frames[i]) {
            Some(Frame::Pinned(options)) => *options,
            _ => {
                if self.global_generation.get() != generation {
                    self.global.set(read_global());
                    self.global_generation.set(generation);
                }
                self.global.get()
            }
        };
        for frame in &frames[start.map_or(0, |i| i + 1)..] {
            if let Frame::Patch(patch) = frame {
                patch.apply_to(&mut options);
            }
        }
        self.effective.set(options);
        self.valid.set(true);
        self.per_call_work.set(Lazy::Unknown);
        self.generation.set(generation);
        options
    }

    /// The frames changed: the options are worked out again when next read.
    #[inline]
    fn invalidate(&self) {
        self.valid.set(false);
        self.per_call_work.set(Lazy::Unknown);
    }

    #[inline]
    fn is_current(&self) -> bool {
        self.valid.get() && self.generation.get() == GENERATION.load(Ordering::Acquire)
    }

    #[inline]
    fn current(&self) -> ExecutionOptions {
        if self.is_current() {
            self.effective.get()
        } else {
            self.refresh()
        }
    }

    /// [`current`](Self::current), written straight into `out`.
    #[inline(always)]
    fn read_into(&self, out: &mut ExecutionOptions) {
        if self.is_current() {
            *out = self.effective.get();
        } else {
            *out = self.refresh();
        }
    }

    #[inline]
    fn push(&self, frame: Frame) -> FrameGuard {
        let mut frames = self.frames.borrow_mut();
        let depth = frames.len();
        frames.push(frame);
        drop(frames);
        self.invalidate();
        FrameGuard {
            depth,
            _not_send: PhantomData,
        }
    }
}

/// The effective execution options of the calling thread: defaults ← global ← outer scopes ←
/// inner scope. On a worker running a batch item, the options of the caller of the batch.
///
/// ```
/// use xcs::{execution_options, get_execution_options};
/// assert!(get_execution_options().use_parallel);
/// execution_options!(use_parallel = false => {
///     assert!(!get_execution_options().use_parallel);
/// });
/// assert!(get_execution_options().use_parallel);
/// ```
#[inline]
pub fn get_execution_options() -> ExecutionOptions {
    // Written through a place rather than returned from the closure: a 56-byte value returned
    // through the thread-local accessor's `Result` was re-packed through the stack with loads
    // that stalled on the stores just made (store-forwarding), tripling the cost of this read.
    // The cell is copied straight into that place too (`read_into`): through `current`'s
    // return value it went through one more stack copy (7.8-8.2 ns -> 6.6-7.3 ns, measured
    // side by side).
    let mut options = ExecutionOptions::DEFAULT;
    SCOPES.with(|scopes| scopes.read_into(&mut options));
    options
}

/// The process-wide global options, without this thread's scopes.
pub fn get_global_options() -> ExecutionOptions {
    read_global()
}

/// Restores the previous options when dropped: pops the frame [`enter`] or [`pin`] pushed.
#[must_use = "the scope ends when the guard is dropped"]
pub(crate) struct FrameGuard {
    depth: usize,
    /// Scopes belong to the thread that opened them.
    _not_send: PhantomData<*const ()>,
}

impl Drop for FrameGuard {
    #[inline]
    fn drop(&mut self) {
        // Thread-locals may already be gone if the guard is dropped during thread teardown;
        // there is nothing left to restore then.
        let _ = SCOPES.try_with(|scopes| {
            scopes.frames.borrow_mut().truncate(self.depth);
            scopes.invalidate();
        });
    }
}

/// Pushes a frame with `patch` on this thread's scope stack until the guard is dropped: the
/// options part of a scope (`ambient::enter` opens a whole scope, budget included).
#[inline]
pub(crate) fn enter(patch: OptionsPatch) -> FrameGuard {
    SCOPES.with(|scopes| scopes.push(Frame::Patch(patch)))
}

/// Runs on this thread with exactly `options` in force (a worker taking on a caller's options)
/// until the guard is dropped; global updates do not show through a pinned frame.
pub(crate) fn pin(options: ExecutionOptions) -> FrameGuard {
    SCOPES.with(|scopes| scopes.push(Frame::Pinned(options)))
}

/// Merges `patch` into the process-wide global options and returns the new global options.
/// Visible at once to every thread, except where a thread's active scope overrides an option.
///
/// ```standalone_crate
/// // (Run in a process of its own: it changes the process-wide options.)
/// use xcs::{set_global_options, reset_execution_options, OptionsPatch};
/// let global = set_global_options(&OptionsPatch::from_pairs([("max_workers", "8")])?);
/// assert_eq!(global.max_workers.map(|n| n.get()), Some(8));
/// reset_execution_options();
/// # Ok::<(), xcs::XcsError>(())
/// ```
pub fn set_global_options(patch: &OptionsPatch) -> ExecutionOptions {
    let mut global = GLOBAL.write().unwrap_or_else(PoisonError::into_inner);
    patch.apply_as_global(&mut global);
    let updated = *global;
    crate::policy::budget::set_global_from(&updated);
    GENERATION.fetch_add(1, Ordering::Release);
    updated
}

/// Restores the global options to their defaults (scopes that are open stay in force).
///
/// ```standalone_crate
/// // (Run in a process of its own: it changes the process-wide options.)
/// use xcs::{get_global_options, reset_execution_options, set_execution_options, ExecutionOptions};
/// set_execution_options!(trace_execution = true);
/// reset_execution_options();
/// assert_eq!(get_global_options(), ExecutionOptions::default());
/// ```
pub fn reset_execution_options() {
    let mut global = GLOBAL.write().unwrap_or_else(PoisonError::into_inner);
    *global = ExecutionOptions::DEFAULT;
    crate::policy::budget::set_global_from(&global);
    GENERATION.fetch_add(1, Ordering::Release);
}

/// Whether an operator call on this thread has per-call work to do: the effective options ask
/// for caching, tracing or a timeout, the thread works under a deadline, or (feature `tokio`)
/// it had a tokio runtime context when this was last worked out (after each change of its
/// options). `false` lets a call skip reading the full options.
#[inline(always)]
pub(crate) fn per_call_work() -> bool {
    // The fast path: a few inline instructions (a profile showed an out-of-line thread-local
    // access here costing the plain call a tenth of its time).
    SCOPES.with(|scopes| {
        if scopes.under_deadline.get() {
            return true;
        }
        let known = scopes.per_call_work.get();
        if known != Lazy::Unknown && scopes.generation.get() == GENERATION.load(Ordering::Acquire) {
            return known == Lazy::Yes;
        }
        scopes.work_out_per_call_work()
    })
}

impl ThreadScopes {
    /// [`per_call_work`] after a change: worked out and kept until the next one.
    #[cold]
    #[inline(never)]
    fn work_out_per_call_work(&self) -> bool {
        let options = self.current();
        #[allow(unused_mut)]
        let mut work = crate::policy::needs_plan(&options, false);
        // Asked here, where the answer is kept, so the fast path pays nothing for it.
        #[cfg(feature = "tokio")]
        {
            let on_runtime = crate::warn::runtime_thread::ask_tokio();
            self.on_runtime.set(on_runtime);
            work |= on_runtime;
        }
        self.per_call_work
            .set(if work { Lazy::Yes } else { Lazy::No });
        work
    }
}

/// Records whether this thread now works under a deadline; returns the previous state.
pub(crate) fn set_under_deadline(under: bool) -> bool {
    SCOPES.with(|scopes| scopes.under_deadline.replace(under))
}

/// Whether the thread had a tokio runtime context when [`per_call_work`] last worked its answer
/// out.
#[cfg(feature = "tokio")]
pub(crate) fn on_runtime() -> bool {
    SCOPES.with(|scopes| scopes.on_runtime.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroUsize;

    #[test]
    fn scopes_nest_and_restore() {
        let outer = OptionsPatch::new().max_workers(NonZeroUsize::new(2));
        let inner = OptionsPatch::new().use_parallel(false);
        let base = get_execution_options();
        {
            let _a = enter(outer);
            assert_eq!(get_execution_options().max_workers, NonZeroUsize::new(2));
            {
                let _b = enter(inner);
                let now = get_execution_options();
                assert!(!now.use_parallel);
                assert_eq!(now.max_workers, NonZeroUsize::new(2));
            }
            assert!(get_execution_options().use_parallel == base.use_parallel);
        }
        assert_eq!(get_execution_options(), base);
    }

    #[test]
    fn pinned_frames_hide_what_is_below() {
        let _a = enter(OptionsPatch::new().enable_caching(true));
        let pinned = ExecutionOptions::DEFAULT;
        {
            let _p = pin(pinned);
            assert!(!get_execution_options().enable_caching);
            let _b = enter(OptionsPatch::new().trace_execution(true));
            assert!(get_execution_options().trace_execution);
            // A refresh (as after a global update) keeps the pin.
            SCOPES.with(ThreadScopes::refresh);
            assert!(!get_execution_options().enable_caching);
            assert!(get_execution_options().trace_execution);
        }
        assert!(get_execution_options().enable_caching);
    }

    #[test]
    fn per_call_work_follows_scopes_and_deadlines() {
        assert!(!per_call_work());
        {
            let _a = enter(OptionsPatch::new().enable_caching(true));
            assert!(per_call_work());
            {
                let _b = enter(OptionsPatch::new().enable_caching(false));
                assert!(!per_call_work());
            }
            assert!(per_call_work());
        }
        assert!(!per_call_work());
        let before = set_under_deadline(true);
        assert!(per_call_work());
        set_under_deadline(before);
        assert!(!per_call_work());
    }

    #[test]
    fn guard_restores_after_panic() {
        let before = get_execution_options();
        let result = std::panic::catch_unwind(|| {
            let _g = enter(OptionsPatch::new().use_parallel(false));
            panic!("boom");
        });
        assert!(result.is_err());
        assert_eq!(get_execution_options(), before);
    }
}
