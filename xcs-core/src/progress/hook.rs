//! The one process-wide hook that hears every [`ProgressEvent`], and how a report reaches it
//! without a lock.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::ProgressEvent;

// ---------------------------------------------------------------------------------------------
// The hook.

type Hook = dyn Fn(&ProgressEvent) + Send + Sync;

static HOOK: RwLock<Option<Arc<Hook>>> = RwLock::new(None);
/// Whether a hook is installed: the one load an unhooked report pays.
pub(super) static HOOKED: AtomicBool = AtomicBool::new(false);
/// Bumped on every change of [`HOOK`], so threads know their cached copy is stale.
static HOOK_VERSION: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's copy of the hook, valid while the version matches [`HOOK_VERSION`]: a
    /// report reads it without the lock and without touching the hook's reference count.
    static HOOK_CACHE: RefCell<(u64, Option<Arc<Hook>>)> = const { RefCell::new((0, None)) };
}

/// Installs `hook`, replacing any previous one: from now on it is called with every
/// [`ProgressEvent`] of every batch run with `show_progress = true` that starts while a hook is
/// installed, whether or not standard error is a terminal. (A batch already running when the
/// first hook is installed is not reported: its events would lack the count of the items before.)
///
/// This is how programs without a terminal follow progress: a GUI updates its own bar, a test
/// checks what ran, a service forwards events to its dashboard (send them on a channel from the
/// hook to handle them elsewhere). Like [`std::panic::set_hook`], there is one hook per process.
///
/// The hook runs on the thread that reports: for `Item` events, the worker that ran the item,
/// so it is called from several threads at once and should be quick (a channel send, an atomic
/// update). It may run batches itself. A panic in the hook is caught and ignored (after the
/// panic hook has printed it), so it cannot break the batch that reported. Events already being
/// delivered when the hook is replaced or cleared may still reach the old hook; once a hook is
/// cleared, no further events are built.
///
/// Reporting to a hook costs more per item than drawing a bar: every `Item` event carries the
/// exact count so far, so the items of a reported batch share one atomic counter, and the hook
/// runs once per item.
///
/// See [`ProgressEvent`] for an example.
pub fn set_progress_hook(hook: impl Fn(&ProgressEvent) + Send + Sync + 'static) {
    replace_hook(Some(Arc::new(hook)));
}

/// Removes the hook installed with [`set_progress_hook`], if any. Progress bars are not
/// affected.
pub fn clear_progress_hook() {
    replace_hook(None);
}

fn replace_hook(hook: Option<Arc<Hook>>) {
    let mut slot = HOOK.write().unwrap_or_else(PoisonError::into_inner);
    HOOKED.store(hook.is_some(), Ordering::Release);
    let old = std::mem::replace(&mut *slot, hook);
    HOOK_VERSION.fetch_add(1, Ordering::Release);
    drop(slot);
    // The old hook (and whatever it captured) drops outside the lock.
    drop(old);
}

/// Delivers the event `make` builds to the hook, if one is installed (`make` runs only then).
#[inline]
pub(super) fn emit(make: impl FnOnce() -> ProgressEvent) {
    if HOOKED.load(Ordering::Acquire) {
        emit_slow(make);
    }
}

#[cold]
fn emit_slow(make: impl FnOnce() -> ProgressEvent) {
    let deliver = |hook: &Hook, event: &ProgressEvent| {
        // The default panic hook has printed the panic; the batch goes on.
        let _ = panic::catch_unwind(AssertUnwindSafe(|| hook(event)));
    };
    let mut make = Some(make);
    let delivered = HOOK_CACHE.try_with(|cache| {
        let version = HOOK_VERSION.load(Ordering::Acquire);
        if let Ok(mut cached) = cache.try_borrow_mut() {
            if cached.0 != version {
                let fresh = {
                    let slot = HOOK.read().unwrap_or_else(PoisonError::into_inner);
                    (HOOK_VERSION.load(Ordering::Acquire), slot.clone())
                };
                let stale = std::mem::replace(&mut *cached, fresh);
                drop(cached);
                // Whatever the old hook captured drops with no lock held and the cache free.
                drop(stale);
            }
        }
        // A hook that reports from inside itself (it ran a batch) finds the cache borrowed, and
        // reads the same cached hook again; only refreshing it has to wait.
        match cache.try_borrow() {
            Ok(cached) => {
                if let (Some(hook), Some(make)) = (cached.1.as_deref(), make.take()) {
                    deliver(hook, &make());
                }
                true
            }
            Err(_) => false,
        }
    });
    if delivered != Ok(true) {
        // The thread is exiting (its cache is gone): read the hook under the lock.
        let hook = HOOK.read().unwrap_or_else(PoisonError::into_inner).clone();
        if let (Some(hook), Some(make)) = (hook, make.take()) {
            deliver(&*hook, &make());
        }
    }
}
