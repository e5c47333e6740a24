//! Options inside async code: a future wrapper that puts options in force around every `poll`.
//!
//! A scope is per thread, and an async task moves between threads at every `.await`, while
//! sibling futures joined in one task are polled on the same thread in turns. So a scope must
//! never be held across `.await`: [`WithOptions`] enters its options (and, for batch items and
//! calls, the caller's deadline context and trace parent) at the start of each `poll` and leaves
//! them before `poll` returns — what tokio's `LocalKey::scope` and tracing's `Instrument` do.
//! Nothing leaks into a sibling future or another task, and everything the wrapped future calls
//! while being polled inherits the options.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::ambient::Ambient;
use crate::options::OptionsPatch;
use crate::scope;

/// What a [`WithOptions`] puts in force around each poll.
#[derive(Clone, Debug)]
pub(crate) enum Entry {
    /// A scope setting only what the patch names (over whatever is in force where it is
    /// polled), with the budget account it opened when it was made, if it sets a budget.
    Patch(OptionsPatch, Option<Arc<crate::policy::budget::Budget>>),
    /// Exactly what a caller runs under (batch items, calls), shared by every item of a batch.
    Adopt(Arc<Ambient>),
}

pin_project! {
    /// A future with execution options in force whenever it is polled. Made by
    /// [`with_options_async`] and by `execution_options!(… => async { … })`.
    #[must_use = "futures do nothing unless polled"]
    pub struct WithOptions<F> {
        entry: Entry,
        #[pin]
        inner: F,
    }
}

impl<F> WithOptions<F> {
    pub(crate) fn adopt(ambient: Arc<Ambient>, inner: F) -> Self {
        WithOptions {
            entry: Entry::Adopt(ambient),
            inner,
        }
    }
}

impl<F: std::fmt::Debug> std::fmt::Debug for WithOptions<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithOptions")
            .field("entry", &self.entry)
            .field("inner", &self.inner)
            .finish()
    }
}

impl<F: Future> Future for WithOptions<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        match this.entry {
            Entry::Patch(patch, budget) => {
                let _scope = scope::enter(*patch);
                let _budget = budget.clone().map(crate::deadline::enter_budget);
                this.inner.poll(cx)
            }
            Entry::Adopt(ambient) => {
                let _in = ambient.enter();
                this.inner.poll(cx)
            }
        }
    }
}

/// `future` with `patch` in force whenever it is polled: the async counterpart of
/// [`with_options`](crate::with_options), for patches built from configuration. The patch
/// applies over the options in force where the future is polled, only while it is polled: a
/// sibling future joined with it, or another task, never sees it.
///
/// ```
/// use xcs::{OptionsPatch, get_execution_options, with_options_async};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), xcs::XcsError> {
/// let patch = OptionsPatch::from_pairs([("max_workers", "3")])?;
/// let inside = with_options_async(&patch, async {
///     tokio::task::yield_now().await;
///     get_execution_options().max_workers.map(|n| n.get())
/// });
/// let outside = async { get_execution_options().max_workers };
/// let (inside, outside) = tokio::join!(inside, outside);
/// assert_eq!((inside, outside), (Some(3), None));
/// # Ok(())
/// # }
/// ```
pub fn with_options_async<F: Future>(patch: &OptionsPatch, future: F) -> WithOptions<F> {
    WithOptions {
        entry: Entry::Patch(
            *patch,
            crate::policy::budget::opened_by(patch)
                .map(|(tokens, cost)| crate::deadline::child_budget(tokens, cost)),
        ),
        inner: future,
    }
}
