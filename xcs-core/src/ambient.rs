//! What a call runs under — its options, its deadline context (deadline, cancellation, the cache
//! claims of the calls around it), its trace parent and the progress report of its batch — as
//! one value.
//!
//! Each of those is kept per thread (so a body, and every call it makes, sees them without
//! being passed anything), but work moves: batch items run on other threads, async calls on
//! whichever thread polls them, chunks on other processes. So work made in one place captures an
//! [`Ambient`] once where it is made and [`enter`](Ambient::enter)s it wherever it runs, and
//! every such place — a batch's lanes and jobs, a detached call, a blocking task, the poll of an
//! async call, a cluster worker — does it with this code, so none carries a subset by mistake.
//!
//! Invariant: everything a thread-local of xcs holds about the call being worked for is in
//! [`Ambient`], and [`Entered`] restores all of it, in reverse order of entry, when dropped.

use std::sync::Arc;

use crate::deadline::{self, CallContext, ContextGuard};
use crate::options::ExecutionOptions;
use crate::options::OptionsPatch;
use crate::progress::{self, BatchProgress};
use crate::scope::{self, FrameGuard};
use crate::trace::{self, InheritGuard, Parent};

/// What a call runs under; see the module docs.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ambient {
    /// The effective options (entered as a pinned frame: exactly these, whatever is below).
    pub(crate) options: ExecutionOptions,
    /// The deadline, cancellation flag and cache claims of the enclosing call.
    pub(crate) context: CallContext,
    /// The trace event work is recorded under, when tracing.
    pub(crate) parent: Option<Parent>,
    /// The progress report of the batch the work belongs to (nested batches start under it).
    pub(crate) progress: Option<Arc<BatchProgress>>,
}

impl Ambient {
    /// The calling thread's, now. (Progress frames are carried by the batches that open them.)
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn capture() -> Ambient {
        let options = scope::get_execution_options();
        Ambient {
            options,
            context: deadline::current(),
            parent: if options.trace_execution {
                trace::current_parent()
            } else {
                None
            },
            progress: None,
        }
    }

    /// Puts this in force on the current thread until the guard drops.
    pub(crate) fn enter(&self) -> Entered {
        enter(
            self.options,
            &self.context,
            self.parent.as_ref(),
            self.progress.as_ref(),
        )
    }
}

/// Puts the parts of an [`Ambient`] in force on the current thread until the guard drops (for
/// holders that keep the parts apart, such as a batch's plan).
pub(crate) fn enter(
    options: ExecutionOptions,
    context: &CallContext,
    parent: Option<&Parent>,
    progress: Option<&Arc<BatchProgress>>,
) -> Entered {
    Entered {
        _progress: progress.map(progress::enter),
        _parent: parent.map(trace::inherit),
        _context: deadline::enter(context.clone()),
        _options: scope::pin(options),
    }
}

/// On the thread that made a batch, whose options and trace parent are the batch's already: the
/// batch's deadline context and progress report, until the guard drops.
pub(crate) fn enter_on_caller(
    context: &CallContext,
    progress: Option<&Arc<BatchProgress>>,
) -> (ContextGuard, Option<progress::EnterGuard>) {
    (
        deadline::enter(context.clone()),
        progress.map(progress::enter),
    )
}

/// An [`Ambient`] in force; dropping it restores what was there, innermost first.
#[must_use = "the ambient is left when the guard drops"]
pub(crate) struct Entered {
    // Held only to be dropped, in declaration order: the reverse of `enter`'s.
    _options: FrameGuard,
    _context: ContextGuard,
    _parent: Option<InheritGuard>,
    _progress: Option<progress::EnterGuard>,
}

/// A scope: `patch`'s options in force on this thread, and the budget account it opened if it
/// sets a budget, until the guard drops. Returned by [`enter_scope`] and held by the code
/// `execution_options!` expands to.
#[must_use = "the scope ends when the guard is dropped"]
pub struct ScopeGuard {
    // Dropped in declaration order: the budget scope, then the options' frame.
    _budget: Option<deadline::BudgetGuard>,
    _options: FrameGuard,
}

impl std::fmt::Debug for ScopeGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopeGuard").finish_non_exhaustive()
    }
}

/// Enters a scope with `patch` in force on this thread until the guard is dropped. A patch that
/// sets `token_budget` or `cost_budget` also opens a budget account shared by every call inside
/// the scope (see `policy::budget`).
#[inline]
pub fn enter_scope(patch: OptionsPatch) -> ScopeGuard {
    let options = scope::enter(patch);
    ScopeGuard {
        _budget: crate::policy::budget::opened_by(&patch)
            .map(|(tokens, cost)| deadline::open_budget(tokens, cost)),
        _options: options,
    }
}

/// Runs `f` with `patch` in force on this thread, restoring the previous options afterwards
/// (also if `f` panics). The run-time counterpart of `execution_options!`, for patches built from
/// configuration.
///
/// ```
/// use xcs::{with_options, get_execution_options, OptionsPatch};
/// let patch = OptionsPatch::from_pairs([("enable_caching", "true")])?;
/// let cached = with_options(&patch, || get_execution_options().enable_caching);
/// assert!(cached);
/// assert!(!get_execution_options().enable_caching);
/// # Ok::<(), xcs::XcsError>(())
/// ```
pub fn with_options<R>(patch: &OptionsPatch, f: impl FnOnce() -> R) -> R {
    let _guard = enter_scope(*patch);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::OptionsPatch;
    use std::time::{Duration, Instant};

    #[test]
    fn entering_carries_everything_and_leaving_restores_it() {
        let before = scope::get_execution_options();
        let ambient = {
            let _scope = enter_scope(OptionsPatch::new().enable_caching(true));
            let _context = deadline::enter(CallContext {
                deadline: Some(Instant::now() + Duration::from_secs(60)),
                timeout: Some(Duration::from_secs(60)),
                cancel: None,
                claims: Default::default(),
                meter: None,
                budget: None,
            });
            Ambient::capture()
        };
        assert!(crate::deadline().is_none());
        let on_another_thread = std::thread::spawn(move || {
            let _in = ambient.enter();
            (
                scope::get_execution_options().enable_caching,
                crate::deadline().is_some(),
            )
        })
        .join()
        .unwrap();
        assert_eq!(on_another_thread, (true, true));
        {
            let _in = Ambient::default().enter();
            assert_eq!(scope::get_execution_options(), ExecutionOptions::DEFAULT);
        }
        assert_eq!(scope::get_execution_options(), before);
        assert!(crate::deadline().is_none());
    }
}
