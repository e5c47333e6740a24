//! What the hook hears: [`ProgressEvent`]s, and how a batch ended ([`ProgressOutcome`]).

use std::fmt;

use crate::error::XcsError;

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

/// One step of a batch's progress, as passed to the hook installed with
/// [`set_progress_hook`](crate::set_progress_hook).
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
}
