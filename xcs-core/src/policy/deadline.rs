//! `timeout_seconds`: the deadline a call must meet, and who enforces it.
//!
//! A call's deadline is its own `timeout_seconds` from when it starts, capped by the deadline of
//! the call it runs inside: an inner call can shorten a deadline, never extend it. The outermost
//! call that sets a deadline *enforces* it (returns at it even if its body hangs); calls nested
//! inside share it and only check it, unless their own ends earlier.

use std::time::{Duration, Instant};

use crate::deadline::CallContext;
use crate::options::ExecutionOptions;

/// The time now, read from the clock only if something asks (a call with no deadline, rate
/// limit or retry never reads it), or given (tests drive the policies on a clock of their own).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Now(Option<Instant>);

impl Now {
    /// Read from the clock when first asked.
    pub(crate) const LAZY: Now = Now(None);

    /// The time, read once.
    #[inline]
    pub(crate) fn get(&mut self) -> Instant {
        *self.0.get_or_insert_with(Instant::now)
    }

    /// This time if it is known, else `earlier`'s (which may not be known either).
    #[inline]
    pub(crate) fn or(self, earlier: Now) -> Now {
        Now(self.0.or(earlier.0))
    }
}

impl From<Instant> for Now {
    fn from(now: Instant) -> Now {
        Now(Some(now))
    }
}

/// The deadline a call starting now must meet, and the timeout it comes from: its own
/// `timeout_seconds` from now, capped by the deadline of the call it runs inside.
pub(crate) fn deadline_for(
    options: &ExecutionOptions,
    context: &CallContext,
    now: &mut Now,
) -> Option<(Instant, Duration)> {
    let own = options
        .timeout_seconds
        .and_then(|t| now.get().checked_add(t).map(|at| (at, t)));
    let inherited = context.deadline.zip(context.timeout);
    match (own, inherited) {
        (Some(own), Some(inherited)) => Some(if own.0 < inherited.0 { own } else { inherited }),
        (own, inherited) => own.or(inherited),
    }
}

/// Whether a call with `deadline` must enforce it itself (no enclosing call returns by then).
pub(crate) fn must_enforce(deadline: Option<(Instant, Duration)>, context: &CallContext) -> bool {
    match (deadline, context.deadline) {
        (Some((at, _)), Some(enclosing)) => at < enclosing,
        (Some(_), None) => true,
        (None, _) => false,
    }
}
