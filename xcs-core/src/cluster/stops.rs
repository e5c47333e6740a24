//! Items of a running chunk that its caller cancelled one by one: a hedge's loser, while the
//! chunk's other items go on. A worker keeps one [`ItemStops`] per chunk; a cancellation that
//! names items of the chunk (by the index the request gave them) marks them here. Each async
//! item of the chunk races its body against [`ItemStops::stopped`], so a marked item's future
//! is dropped at once; each sync item runs with a cancellation flag of its own, [`watch`]ed
//! here, which a mark sets (its body sees [`cancelled()`](crate::cancelled)).
//!
//! [`watch`]: ItemStops::watch

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use crate::deadline::CancelFlag;

/// The items of one chunk cancelled so far, by their index in the request.
#[derive(Debug, Default)]
pub(crate) struct ItemStops {
    /// Whether any item was cancelled: until then, no item looks at `cancelled`.
    any: AtomicBool,
    cancelled: Mutex<HashSet<u64>>,
    /// Wakes the items waiting in [`stopped`](ItemStops::stopped) to look again.
    notify: Notify,
    /// The flags of the sync items running now, by index.
    flags: Mutex<HashMap<u64, Arc<CancelFlag>>>,
}

/// A sync item's flag, watched by its chunk's [`ItemStops`] until dropped.
pub(crate) struct Watched<'a> {
    stops: &'a ItemStops,
    index: u64,
}

impl Drop for Watched<'_> {
    fn drop(&mut self) {
        self.stops
            .flags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.index);
    }
}

impl ItemStops {
    /// Marks the items `indices` cancelled (at most as many as the chunk has: a caller can
    /// name only the indices its request gave) and wakes them.
    pub(crate) fn cancel(&self, indices: impl IntoIterator<Item = u64>, limit: usize) {
        {
            let mut cancelled = self
                .cancelled
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for index in indices {
                if cancelled.len() >= limit {
                    break;
                }
                cancelled.insert(index);
            }
            self.any.store(!cancelled.is_empty(), Ordering::Release);
            // Under the lock of `cancelled`: a sync item that starts now sees its mark in
            // `watch`, one running has its flag set here.
            let flags = self.flags.lock().unwrap_or_else(PoisonError::into_inner);
            for (index, flag) in flags.iter() {
                if cancelled.contains(index) {
                    flag.cancel();
                }
            }
        }
        self.notify.notify_waiters();
    }

    /// Watches `flag`, the cancellation flag sync item `index` runs with, until the guard
    /// drops: a cancellation of the item sets it (at once, if the item was cancelled already).
    pub(crate) fn watch(&self, index: u64, flag: &Arc<CancelFlag>) -> Watched<'_> {
        let cancelled = self
            .cancelled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cancelled.contains(&index) {
            flag.cancel();
        }
        self.flags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(index, Arc::clone(flag));
        Watched { stops: self, index }
    }

    /// Whether item `index` was cancelled.
    pub(crate) fn is_cancelled(&self, index: u64) -> bool {
        self.any.load(Ordering::Acquire)
            && self
                .cancelled
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&index)
    }

    /// Resolves once item `index` is cancelled (never, if it is not).
    pub(crate) async fn stopped(&self, index: u64) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before looking, so a cancellation between the look and the wait wakes it.
            notified.as_mut().enable();
            if self.is_cancelled(index) {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn only_the_named_items_stop() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let stops = Arc::new(ItemStops::default());
            let waiting = |index| {
                let stops = Arc::clone(&stops);
                tokio::spawn(async move { stops.stopped(index).await })
            };
            let (three, four) = (waiting(3), waiting(4));
            tokio::task::yield_now().await;
            stops.cancel([3, 9], 16);
            tokio::time::timeout(Duration::from_secs(5), three)
                .await
                .expect("item 3 stopped")
                .unwrap();
            assert!(stops.is_cancelled(9) && !stops.is_cancelled(4));
            // Item 4 still waits; one cancelled before it waits stops at once.
            assert!(!four.is_finished());
            tokio::time::timeout(Duration::from_secs(5), stops.stopped(9))
                .await
                .expect("item 9 was cancelled already");
            four.abort();
        });
    }

    #[test]
    fn a_sync_items_flag_is_set_when_it_is_cancelled() {
        let stops = ItemStops::default();
        let (running, other) = (CancelFlag::child_of(None), CancelFlag::child_of(None));
        let watched = stops.watch(2, &running);
        let _other = stops.watch(5, &other);
        stops.cancel([2], 8);
        assert!(running.is_cancelled() && !other.is_cancelled());
        drop(watched);
        // An item cancelled before it starts (a retry of it, say) starts cancelled.
        let later = CancelFlag::child_of(None);
        let _later = stops.watch(2, &later);
        assert!(later.is_cancelled());
    }

    #[test]
    fn a_cancellation_names_no_more_items_than_the_chunk_has() {
        let stops = ItemStops::default();
        stops.cancel(0..1_000_000, 8);
        assert!(stops.is_cancelled(7));
        assert!(!stops.is_cancelled(8));
    }
}
