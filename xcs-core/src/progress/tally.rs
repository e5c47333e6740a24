//! What a batch has counted: shared counters, and one lane per thread that entered it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

// ---------------------------------------------------------------------------------------------
// Batches.

/// Set in [`Tally::done`] when the batch has finished: later reports are ignored.
pub(super) const FINISHED: usize = 1 << (usize::BITS - 1);

/// What a batch has counted.
///
/// Two threads bumping one counter per item fight over its cache line, which costs more than a
/// cheap item. So a thread that [entered](enter) the batch counts in its own [`Lane`], which only
/// it writes (a plain load and store, no locked instruction, no sharing), and the totals are
/// summed when needed: at a redraw, which is rare, and at the finish. Reports from threads that
/// did not enter, and every report of a batch the hook hears about (each `Item` event carries
/// the exact count so far), go to the shared counters instead.
pub(super) struct Tally {
    /// Items counted here rather than in lanes, with [`FINISHED`] set once the batch finished.
    pub(super) done: AtomicUsize,
    pub(super) failed: AtomicUsize,
    /// One per thread that entered the batch.
    pub(super) lanes: Mutex<Vec<Arc<Lane>>>,
    /// What the batch's calls recorded with `record_usage` (nested batches' included).
    pub(super) usage: Mutex<crate::Usage>,
    /// The tally of the batch this one runs inside, which is charged the same usage.
    pub(super) parent: Option<Arc<Tally>>,
}

/// A thread's own counts of one batch's items; written only by that thread.
#[repr(align(128))] // Its own cache line (two, for adjacent-line prefetch).
#[derive(Default)]
pub(super) struct Lane {
    pub(super) done: AtomicUsize,
    pub(super) failed: AtomicUsize,
}

/// Adds one to a counter only the calling thread writes, returning the new value.
#[inline]
pub(super) fn bump(counter: &AtomicUsize) -> usize {
    let value = counter.load(Ordering::Relaxed) + 1;
    counter.store(value, Ordering::Relaxed);
    value
}

impl Tally {
    /// Items done and failed so far.
    pub(super) fn totals(&self) -> (usize, usize) {
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

    /// Adds `usage` here and to every enclosing batch.
    pub(super) fn charge(&self, usage: crate::Usage) {
        let mut tally = Some(self);
        while let Some(t) = tally {
            *t.usage.lock().unwrap_or_else(PoisonError::into_inner) += usage;
            tally = t.parent.as_deref();
        }
    }

    /// What the batch's calls recorded so far.
    pub(super) fn usage(&self) -> crate::Usage {
        *self.usage.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn is_finished(&self) -> bool {
        self.done.load(Ordering::Relaxed) & FINISHED != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(parent: Option<Arc<Tally>>) -> Arc<Tally> {
        Arc::new(Tally {
            done: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            lanes: Mutex::new(Vec::new()),
            usage: Mutex::new(crate::Usage::ZERO),
            parent,
        })
    }

    #[test]
    fn usage_is_charged_to_the_batch_and_every_enclosing_one() {
        let outer = tally(None);
        let inner = tally(Some(Arc::clone(&outer)));
        let used = crate::Usage {
            input_tokens: 10,
            output_tokens: 5,
            cost: 0.5,
        };
        inner.charge(used);
        inner.charge(used);
        outer.charge(used);
        assert_eq!(inner.usage().tokens(), 30);
        assert_eq!(outer.usage().tokens(), 45);
        assert_eq!(outer.usage().cost, 1.5);
    }
}
