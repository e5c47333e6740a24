//! Deadlines and cancellation of the call a thread is working for.
//!
//! A `timeout_seconds` in force turns a call into a deadline; everything that call runs on its
//! behalf (batch items on workers, nested operator calls) works under the same deadline, and an
//! inner call can only shorten it, never extend it. Each thread knows the context it works for,
//! so long-running bodies can ask [`cancelled`] and stop early, and executors can decide whether
//! an enclosing call already enforces the deadline (then a nested call need not hand its work
//! to another thread to return on time).

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::policy::budget::Budget;

/// A cancellation flag, chained to the flag of the call it runs inside.
#[derive(Debug, Default)]
pub(crate) struct CancelFlag {
    set: AtomicBool,
    parent: Option<Arc<CancelFlag>>,
}

impl CancelFlag {
    pub(crate) fn child_of(parent: Option<Arc<CancelFlag>>) -> Arc<CancelFlag> {
        Arc::new(CancelFlag {
            set: AtomicBool::new(false),
            parent,
        })
    }

    pub(crate) fn cancel(&self) {
        self.set.store(true, Ordering::Release);
    }

    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        let mut flag = Some(self);
        while let Some(f) = flag {
            if f.set.load(Ordering::Acquire) {
                return true;
            }
            flag = f.parent.as_deref();
        }
        false
    }
}

/// What a thread is working for: the deadline and cancellation flag of the enclosing call.
#[derive(Clone, Debug, Default)]
pub(crate) struct CallContext {
    /// The deadline an enclosing call enforces (returns at), if any.
    pub(crate) deadline: Option<Instant>,
    /// The timeout that produced `deadline`, for error messages.
    pub(crate) timeout: Option<Duration>,
    /// Set when the enclosing call gave up (deadline, or a failed batch item).
    pub(crate) cancel: Option<Arc<CancelFlag>>,
    /// The cache claims held by the calls this work runs inside: a cached call never waits for
    /// one of them (it would wait for itself).
    pub(crate) claims: crate::cache::ClaimChain,
    /// Where [`record_usage`](crate::record_usage) charges the usage of the call being worked
    /// for, if that call accounts for usage.
    pub(crate) meter: Option<Arc<crate::usage::Meter>>,
    /// The innermost budget scope the work runs in, if any (see `policy::budget`).
    pub(crate) budget: Option<Arc<Budget>>,
}

impl CallContext {
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c.is_cancelled())
            || self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

thread_local! {
    static CONTEXT: RefCell<CallContext> = const {
        RefCell::new(CallContext {
            deadline: None,
            timeout: None,
            cancel: None,
            claims: crate::cache::ClaimChain::new(),
            meter: None,
            budget: None,
        })
    };
}

/// The context this thread works for.
pub(crate) fn current() -> CallContext {
    CONTEXT.with(|c| c.borrow().clone())
}

/// The meter of the call this thread works for, if it accounts for usage.
pub(crate) fn current_meter() -> Option<Arc<crate::usage::Meter>> {
    CONTEXT.with(|c| c.borrow().meter.clone())
}

/// The innermost budget scope this thread works in.
pub(crate) fn budget() -> Option<Arc<Budget>> {
    CONTEXT.with(|c| c.borrow().budget.clone())
}

/// Makes `budget` this thread's budget scope, returning the one it replaces.
pub(crate) fn swap_budget(budget: Option<Arc<Budget>>) -> Option<Arc<Budget>> {
    CONTEXT
        .try_with(|c| std::mem::replace(&mut c.borrow_mut().budget, budget))
        .ok()
        .flatten()
}

/// The budget calls on this thread are admitted against: the innermost scope's (kept in the
/// call context, so the ambient carries it to other threads and tasks), else the global one.
pub(crate) fn current_budget() -> Option<Arc<Budget>> {
    budget().or_else(crate::policy::budget::global)
}

/// Restores the previous budget scope when dropped.
#[derive(Debug)]
#[must_use = "the budget scope is left when the guard drops"]
pub(crate) struct BudgetGuard {
    previous: Option<Option<Arc<Budget>>>,
}

impl Drop for BudgetGuard {
    fn drop(&mut self) {
        if let Some(previous) = self.previous.take() {
            swap_budget(previous);
        }
    }
}

/// Makes `budget` this thread's budget scope until the guard drops.
pub(crate) fn enter_budget(budget: Arc<Budget>) -> BudgetGuard {
    BudgetGuard {
        previous: Some(swap_budget(Some(budget))),
    }
}

/// A new account of `tokens` and `cost` inside the current one, not yet entered (a future
/// enters it on every poll).
pub(crate) fn child_budget(tokens: Option<u64>, cost: Option<f64>) -> Arc<Budget> {
    Budget::new(tokens, cost, current_budget())
}

/// Opens a new budget scope of `tokens` and `cost` inside the current one, until the guard
/// drops.
pub(crate) fn open_budget(tokens: Option<u64>, cost: Option<f64>) -> BudgetGuard {
    enter_budget(child_budget(tokens, cost))
}

/// What the innermost budget scope has spent so far: the calls inside it that have ended (their
/// recorded usage, or their estimates when they recorded nothing). Zero outside any budget.
///
/// ```
/// use xcs::{Operator, Usage, XcsError, execution_options};
///
/// struct Model;
/// impl Operator for Model {
///     type Input = u64;
///     type Output = ();
///     fn forward(&self, tokens: u64) -> Result<(), XcsError> {
///         xcs::record_usage(Usage { input_tokens: tokens, output_tokens: 0, cost: 0.0 });
///         Ok(())
///     }
///     fn name(&self) -> &str { "model" }
/// }
///
/// assert_eq!(xcs::spent(), Usage::default());
/// execution_options!(token_budget = 100 => {
///     Model.call(30)?;
///     Model.call(20)?;
///     assert_eq!(xcs::spent().input_tokens, 50);
///     Ok::<(), XcsError>(())
/// })?;
/// # Ok::<(), XcsError>(())
/// ```
pub fn spent() -> crate::Usage {
    current_budget().map_or(crate::Usage::ZERO, |budget| budget.spent())
}

/// Charges `usage` to the call whose body is running here (on whichever thread or task runs
/// it): its resource's token count, its budget and its trace event. Calls add up; when the call
/// ends, what it recorded replaces its estimate. Outside a call that accounts for usage (no
/// resource, no budget, no trace), it does nothing.
///
/// ```
/// use xcs::{Operator, Usage, XcsError, execution_options};
///
/// struct Model;
/// impl Operator for Model {
///     type Input = String;
///     type Output = usize;
///     fn forward(&self, prompt: String) -> Result<usize, XcsError> {
///         xcs::record_usage(Usage { input_tokens: prompt.len() as u64, output_tokens: 1, cost: 0.0 });
///         Ok(prompt.len())
///     }
///     fn name(&self) -> &str { "model" }
/// }
///
/// let spent = execution_options!(token_budget = 1_000 => {
///     Model.call("hello".to_owned())?;
///     xcs::spent()
/// });
/// assert_eq!(spent.tokens(), 6);
/// # Ok::<(), XcsError>(())
/// ```
pub fn record_usage(usage: crate::Usage) {
    if let Some(meter) = current_meter() {
        meter.record(usage);
    }
}

/// Whether this thread works under a deadline at all. (The fast path of a call reads the same
/// fact from `scope::per_call_work`, which `enter` keeps in step, to touch one thread-local.)
#[inline]
pub(crate) fn has_deadline() -> bool {
    CONTEXT.with(|c| c.borrow().deadline.is_some())
}

/// Restores the previous context when dropped.
pub(crate) struct ContextGuard {
    previous: Option<CallContext>,
    was_under_deadline: bool,
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        if let Some(previous) = self.previous.take() {
            let _ = CONTEXT.try_with(|c| *c.borrow_mut() = previous);
            crate::scope::set_under_deadline(self.was_under_deadline);
        }
    }
}

/// Makes `context` this thread's context until the guard is dropped.
pub(crate) fn enter(context: CallContext) -> ContextGuard {
    let was_under_deadline = crate::scope::set_under_deadline(context.deadline.is_some());
    let previous = CONTEXT.with(|c| std::mem::replace(&mut *c.borrow_mut(), context));
    ContextGuard {
        previous: Some(previous),
        was_under_deadline,
    }
}

/// The deadline of the call this thread is working for, if a `timeout_seconds` is in force for
/// it. Long-running operator bodies can pace themselves by it.
///
/// ```
/// use xcs::{Operator, XcsError, execution_options};
///
/// struct Remaining;
/// impl Operator for Remaining {
///     type Input = ();
///     type Output = bool;
///     fn forward(&self, _: ()) -> Result<bool, XcsError> {
///         Ok(xcs::deadline().is_some())
///     }
///     fn name(&self) -> &str { "remaining" }
/// }
///
/// assert!(!Remaining.call(())?);
/// assert!(execution_options!(timeout_seconds = 5 => Remaining.call(()))?);
/// # Ok::<(), XcsError>(())
/// ```
pub fn deadline() -> Option<Instant> {
    CONTEXT.with(|c| c.borrow().deadline)
}

/// Whether the call this thread is working for has been given up: its deadline has passed, or
/// the batch it belongs to has failed or timed out. Bodies that loop or wait should check it and
/// return early; their result would be discarded anyway.
///
/// ```
/// assert!(!xcs::cancelled());
/// ```
pub fn cancelled() -> bool {
    CONTEXT.with(|c| c.borrow().is_cancelled())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_chain_to_parents() {
        let parent = CancelFlag::child_of(None);
        let child = CancelFlag::child_of(Some(parent.clone()));
        assert!(!child.is_cancelled());
        parent.cancel();
        assert!(child.is_cancelled());
    }

    #[test]
    fn contexts_restore() {
        assert!(!cancelled());
        {
            let _g = enter(CallContext {
                deadline: Some(Instant::now()),
                timeout: Some(Duration::from_millis(1)),
                cancel: None,
                claims: Default::default(),
                meter: None,
                budget: None,
            });
            assert!(cancelled());
            assert!(deadline().is_some());
        }
        assert!(!cancelled());
        assert!(deadline().is_none());
    }

    #[test]
    fn scopes_nest_and_restore() {
        let scoped = budget;
        assert!(scoped().is_none());
        {
            let _outer = open_budget(Some(10), None);
            let outer = scoped().unwrap();
            {
                let _inner = open_budget(Some(5), None);
                let inner = scoped().unwrap();
                assert!(Arc::ptr_eq(inner.parent().unwrap(), &outer));
            }
            assert!(Arc::ptr_eq(&scoped().unwrap(), &outer));
        }
        assert!(scoped().is_none());
    }
}
