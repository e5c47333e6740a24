//! The batches a thread works for: a thread-local stack of frames, so that a batch started
//! inside an item finds its parent, and items count in the thread's own lane.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::{Arc, PoisonError};

use super::BatchProgress;
use super::tally::Lane;

// ---------------------------------------------------------------------------------------------
// The batch a thread works for.

/// A batch this thread works for, and where it counts that batch's items.
pub(super) struct Frame {
    pub(super) progress: Arc<BatchProgress>,
    /// `None` for a batch counted in its shared counters (the hook hears about it).
    pub(super) lane: Option<Arc<Lane>>,
}

thread_local! {
    /// The batches this thread works for, innermost last.
    pub(super) static CURRENT: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
    /// The lane this thread last counted in, by batch: entering the same batch again (an async
    /// driver enters around every poll) reuses it instead of registering another.
    static LAST_LANE: RefCell<Option<(u64, Arc<Lane>)>> = const { RefCell::new(None) };
}

/// The batch this thread works for, if any.
pub(super) fn current() -> Option<Arc<BatchProgress>> {
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
