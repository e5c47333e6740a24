//! The cache step of a call, shared by sync and async calls: what happens once the memory
//! cache has given this call the claim on its input (the store is asked, the body runs holding
//! the claim, the result is stored), written once. The two call paths differ only in how they
//! wait.

use crate::cache::{self, CacheSupport, Claim};
use crate::call::drop_quietly;
use crate::deadline::CallContext;
use crate::error::XcsError;
use crate::options::ExecutionOptions;
use crate::persist::{self, PersistSupport};

/// A call that holds the claim on its input: where its result goes.
pub(crate) struct Held<I, O> {
    support: CacheSupport<I, O>,
    claim: Claim,
    slot: Option<persist::Slot<O>>,
}

impl<I: 'static, O: Send + 'static> Held<I, O> {
    /// The claim of a call of `operator` with `input`, and its place in the `cache_dir` store if
    /// the options and the operator ask for one.
    pub(crate) fn new(
        options: &ExecutionOptions,
        operator: &str,
        support: CacheSupport<I, O>,
        claim: Claim,
        persist: Option<PersistSupport<I, O>>,
        input: &I,
    ) -> Self {
        Held {
            support,
            slot: persist::slot(options, operator, persist, input),
            claim,
        }
    }

    /// The output stored on disk, if there is one: then the call is answered without its body
    /// (the input is dropped, the memory cache filled; a panicking `Clone` only skips that).
    pub(crate) fn stored(&self, input: &mut Option<I>) -> Option<O> {
        let stored = self.slot.as_ref()?.get()?;
        drop_quietly(input.take());
        let _ = cache::insert(&self.support, self.claim.key(), &stored);
        Some(stored)
    }

    /// The context the body runs under: the caller's, holding this claim too, so nested calls
    /// (on any thread) never wait for it.
    pub(crate) fn context(&self, context: CallContext) -> CallContext {
        CallContext {
            claims: context.claims.push(self.claim.key()),
            ..context
        }
    }

    /// Where an async call writes to disk, off the runtime's threads.
    #[cfg(feature = "tokio")]
    pub(crate) fn slot(&self) -> Option<&persist::Slot<O>> {
        self.slot.as_ref()
    }

    /// Stores a successful result in memory (and on disk, unless `on_disk` is false: an async
    /// call has written it already), then releases the claim, waking the callers that waited.
    /// A panicking `Clone` of the output fails the call.
    pub(crate) fn finish(
        self,
        result: Result<O, XcsError>,
        on_disk: bool,
        operator: &str,
        index: Option<usize>,
    ) -> Result<O, XcsError> {
        let output = result?;
        if on_disk {
            if let Some(slot) = &self.slot {
                slot.put(&output);
            }
        }
        match cache::insert(&self.support, self.claim.key(), &output) {
            Ok(()) => Ok(output),
            Err(message) => {
                drop_quietly(output);
                Err(XcsError::Panicked {
                    operator: operator.to_owned(),
                    index,
                    message,
                })
            }
        }
        // `self.claim` drops here, after the output is stored.
    }
}

/// How a call copies its input for retries: `None` when `max_retries` is 0 or the input cannot
/// be copied (warned once, unless the operator is a batch, whose items retry one by one).
pub(crate) fn input_cloner<I>(
    options: &ExecutionOptions,
    cloner: Option<crate::operator::CloneInput<I>>,
    retried_by_items: bool,
    operator: &str,
) -> Option<crate::operator::CloneInput<I>> {
    if options.max_retries == 0 {
        return None;
    }
    if cloner.is_none() && !retried_by_items {
        crate::call::warn_not_retried(operator);
    }
    cloner
}
