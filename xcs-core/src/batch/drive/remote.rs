//! Async batch items run in another process: the async driver's ([`super::future`]) side of a
//! backend that runs async batches (the cluster's), whose side is `device`'s `OpenRemote` and
//! [`RemoteSink`].
//!
//! Each item goes through the async call path as a local item does — the caller's cache,
//! budget, resource, rate limit, retries, deadline and trace (see `policy::plan`) — and only its
//! body differs: it sends the serialized input to the backend's [`RemoteSink`] and awaits the
//! outcome, without blocking a thread. So the caller is the one place where an item is admitted
//! to its operator's resource and budget, each attempt once, and what the item's body recorded
//! where it ran comes back with its outcome and is recorded here, where it settles the permit,
//! the reservation and the trace event. Dropping an item's future (its deadline, the batch's
//! deadline, the batch future dropped) tells the backend that nobody waits for it any more.
//! Under `hedge_after` an item is hedged as a local one is, by the same call path: each trip
//! to the backend is a submission of its own, and the one that loses the race is dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::ambient::Ambient;
use crate::cache::CacheSupport;
use crate::call_async::{self, AsyncCallee};
use crate::device::RemoteSink;
use crate::error::XcsError;
use crate::operator::AsyncOperator;
use crate::persist::PersistSupport;
use crate::policy::plan::Supports;
use crate::usage::Usage;
use crate::util::{self, drop_quietly};

/// An item of an async batch run through `sink`: the async call path, whose body is the trip to
/// where the item runs. `lean`: no policy applies to the batch's items (see
/// [`call_async::is_lean`]); then an item without a resource is its trip alone, as a local lean
/// item is its body alone.
pub(crate) fn item<'a, O: AsyncOperator>(
    op: &'a O,
    input: O::Input,
    index: usize,
    ambient: &Arc<Ambient>,
    sink: &'a Arc<dyn RemoteSink>,
    persist: PersistSupport<O::Input, O::Output>,
    lean: bool,
) -> Pin<Box<dyn Future<Output = Result<O::Output, XcsError>> + Send + 'a>> {
    let callee = Remoted {
        op,
        index,
        sink,
        persist,
        caching: ambient.options.enable_caching,
    };
    if lean && AsyncOperator::resource(op).is_none() {
        // Submitted now, as the lean local item's body starts at its first poll.
        return Box::pin(callee.trip(input));
    }
    // Hedged as a local item is (`hedge_after`): the hedge is a second trip, answered on its
    // own, and the losing trip's future is dropped, which cancels it where it runs.
    let ambient = Arc::clone(ambient);
    Box::pin(async move { call_async::invoke_with(&callee, input, Some(index), ambient).await })
}

/// An operator whose body runs elsewhere; everything else is the operator's.
struct Remoted<'a, O: AsyncOperator> {
    op: &'a O,
    index: usize,
    sink: &'a Arc<dyn RemoteSink>,
    persist: PersistSupport<O::Input, O::Output>,
    /// Whether the batch caches (the operator is asked how only then).
    caching: bool,
}

impl<'a, O: AsyncOperator> Remoted<'a, O> {
    /// The body: sends the input now and awaits the outcome (a future that borrows nothing).
    fn trip(
        &self,
        input: O::Input,
    ) -> impl Future<Output = Result<O::Output, XcsError>> + Send + use<'a, O> {
        let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.persist.encode_input(&input)
        }));
        drop_quietly(input);
        let sent = match encoded {
            Ok(Some(bytes)) => Ok(self.sink.submit(self.index, bytes)),
            Ok(None) => Err(self.cluster_error("its input cannot be serialized")),
            Err(payload) => Err(util::panicked(
                AsyncOperator::name(self.op),
                Some(self.index),
                payload,
            )),
        };
        let persist = self.persist;
        let (operator, index) = (self.op, self.index);
        async move {
            let outcome = sent?.await.map_err(|_| {
                cluster_error(
                    operator,
                    index,
                    "the backend stopped before the item's outcome came",
                )
            })?;
            if let Some(usage) = outcome.usage {
                crate::record_usage(usage);
            }
            let bytes = outcome.result?;
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                persist.decode_output(&bytes)
            }))
            .ok()
            .flatten()
            .ok_or_else(|| {
                cluster_error(
                    operator,
                    index,
                    "the worker's output does not decode as its output type",
                )
            })
        }
    }

    fn cluster_error(&self, reason: &str) -> XcsError {
        cluster_error(self.op, self.index, reason)
    }
}

/// Item `index` of `op` failed on its way: `reason`.
fn cluster_error<O: AsyncOperator>(op: &O, index: usize, reason: &str) -> XcsError {
    XcsError::Cluster {
        operator: AsyncOperator::name(op).to_owned(),
        index: Some(index),
        reason: reason.to_owned(),
    }
}

impl<O: AsyncOperator> AsyncCallee for Remoted<'_, O> {
    type Input = O::Input;
    type Output = O::Output;

    fn name(&self) -> &str {
        AsyncOperator::name(self.op)
    }

    fn forward(
        &self,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, XcsError>> + Send {
        self.trip(input)
    }

    fn cache_support(&self) -> Option<CacheSupport<Self::Input, Self::Output>> {
        if !self.caching {
            return None;
        }
        self.op.__xcs_cache_support()
    }

    fn supports(&self) -> Supports<Self::Input, Self::Output> {
        Supports {
            persist: Some(self.persist),
            clone_input: self.op.__xcs_clone_input(),
            retried_by_items: self.op.__xcs_retried_by_items(),
        }
    }

    fn resource(&self) -> Option<&str> {
        AsyncOperator::resource(self.op)
    }

    fn estimate(&self, input: &Self::Input) -> Usage {
        AsyncOperator::estimate(self.op, input)
    }
}
