//! Items of a running chunk that its caller cancelled one by one: a hedge's loser, while the
//! chunk's other items go on. A worker keeps one [`ItemStops`] per chunk; a cancellation that
//! names items of the chunk (by the index the request gave them) marks them here, and each
//! async item of the chunk races its body against [`ItemStops::stopped`], so a marked item's
//! future is dropped at once.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

/// The items of one chunk cancelled so far, by their index in the request.
#[derive(Debug, Default)]
pub(crate) struct ItemStops {
    cancelled: Mutex<HashSet<u64>>,
    /// Wakes the items waiting in [`stopped`](ItemStops::stopped) to look again.
    notify: Notify,
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
        }
        self.notify.notify_waiters();
    }

    /// Whether item `index` was cancelled.
    pub(crate) fn is_cancelled(&self, index: u64) -> bool {
        self.cancelled
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
    fn a_cancellation_names_no_more_items_than_the_chunk_has() {
        let stops = ItemStops::default();
        stops.cancel(0..1_000_000, 8);
        assert!(stops.is_cancelled(7));
        assert!(!stops.is_cancelled(8));
    }
}
