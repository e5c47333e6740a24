//! The cache step of a call, shared by sync and async calls: what happens once the memory
//! cache has given this call the claim on its input (the store is asked, the body runs holding
//! the claim, the result is stored), written once. The two call paths differ only in how they
//! wait.

use std::time::Duration;

use crate::cache::{self, CacheKey, CacheSupport, Claim, Lookup};
use crate::deadline::CallContext;
use crate::error::XcsError;
use crate::options::ExecutionOptions;
use crate::persist::{self, PersistSupport};
use crate::trace::Outcome;
use crate::util::{self, drop_quietly};

/// What a call does once the memory cache has answered for its input.
pub(crate) enum Claimed<I, O> {
    /// The call is answered without its body: its result, and how the trace records it.
    Answered(Result<O, XcsError>, Outcome),
    /// The body runs with the input, holding the claim on it when the cache gave one.
    Run(I, Option<Held<I, O>>),
}

/// What [`at_once`] found.
pub(crate) enum AtOnce<O> {
    /// The call is answered without a plan: its result, and how the trace records it.
    Answered(Result<O, XcsError>, Outcome),
    /// Not answered at once: the plan goes on from the lookup, with this key already made.
    Keyed(CacheKey),
}

/// The cache step of a cached call that nothing comes before (no deadline applies, so
/// admission has nothing to refuse), taken before a plan is made: an output the memory cache
/// holds answers the call at once, as the plan's lookup would (a hit, or the panic of the
/// input's `Hash` or the output's `Clone`). Anything else — nothing stored, the key in flight
/// — is the plan's, given the key (see `CallPlan::keyed`). The input stays the caller's.
#[inline]
pub(crate) fn at_once<I: 'static, O: Send + 'static>(
    support: &CacheSupport<I, O>,
    operator: &str,
    index: Option<usize>,
    input: &I,
) -> AtOnce<O> {
    let key = match support.key(operator, input) {
        Ok(key) => key,
        Err(message) => {
            return AtOnce::Answered(Err(panicked(operator, index, message)), Outcome::Panicked);
        }
    };
    match cache::peek(support, &key) {
        Some(Lookup::Hit(output)) => AtOnce::Answered(Ok(output), Outcome::CacheHit),
        Some(Lookup::Panicked(message)) => {
            AtOnce::Answered(Err(panicked(operator, index, message)), Outcome::Panicked)
        }
        _ => AtOnce::Keyed(key),
    }
}

/// A panic in user code the cache step ran (the input's `Hash`, the output's `Clone`).
fn panicked(operator: &str, index: Option<usize>, message: String) -> XcsError {
    XcsError::Panicked {
        operator: operator.to_owned(),
        index,
        message,
    }
}

/// The cache step after the lookup, the same for sync calls, async calls and items sent to
/// another process (which differ only in how they wait for the lookup): a hit answers; a claim
/// asks the `cache_dir` store, then holds on for the body; a lookup that timed out or panicked
/// is the call's error. `timeout` is the one the call's deadline comes from.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) fn after_lookup<I: 'static, O: Send + 'static>(
    lookup: Lookup<O>,
    options: &ExecutionOptions,
    operator: &str,
    index: Option<usize>,
    support: CacheSupport<I, O>,
    persist: Option<PersistSupport<I, O>>,
    input: I,
    timeout: Duration,
) -> Claimed<I, O> {
    match lookup {
        Lookup::Hit(hit) => {
            drop_quietly(input);
            Claimed::Answered(Ok(hit), Outcome::CacheHit)
        }
        Lookup::Compute(claim) => {
            let held = Held::new(options, operator, support, claim, persist, &input);
            let mut kept = Some(input);
            match (held.stored(&mut kept), kept) {
                (Some(stored), _) => Claimed::Answered(Ok(stored), Outcome::CacheHit),
                (None, Some(input)) => {
                    cache::count_miss();
                    Claimed::Run(input, Some(held))
                }
                // `stored` takes the input only when it answers.
                (None, None) => unreachable!("the store kept the input without answering"),
            }
        }
        Lookup::Uncached => {
            cache::count_miss();
            Claimed::Run(input, None)
        }
        Lookup::TimedOut => {
            drop_quietly(input);
            Claimed::Answered(
                Err(util::timeout_error(operator, index, timeout)),
                Outcome::Timeout,
            )
        }
        Lookup::Panicked(message) => {
            drop_quietly(input);
            Claimed::Answered(Err(panicked(operator, index, message)), Outcome::Panicked)
        }
    }
}

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

    /// The write of a successful output to the `cache_dir` store, if the call has a place
    /// there.
    pub(crate) fn write(&self, output: &O) -> Option<persist::Write> {
        self.slot.as_ref()?.write(output)
    }

    /// [`write`](Self::write) then [`finish`](Self::finish), in one go (for a result that came
    /// back from another process).
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn write_and_finish(
        self,
        result: Result<O, XcsError>,
        operator: &str,
        index: Option<usize>,
    ) -> Result<O, XcsError> {
        if let Ok(output) = &result {
            if let Some(write) = self.write(output) {
                write.run();
            }
        }
        self.finish(result, operator, index)
    }

    /// Stores a successful result in memory (it is on disk already, if it goes there: see
    /// [`write`](Self::write)), then releases the claim, waking the callers that waited. A
    /// panicking `Clone` of the output fails the call.
    pub(crate) fn finish(
        self,
        result: Result<O, XcsError>,
        operator: &str,
        index: Option<usize>,
    ) -> Result<O, XcsError> {
        let output = result?;
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
    cloner: Option<crate::policy::retry::CloneInput<I>>,
    retried_by_items: bool,
    operator: &str,
) -> Option<crate::policy::retry::CloneInput<I>> {
    if options.max_retries == 0 {
        return None;
    }
    if cloner.is_none() && !retried_by_items {
        crate::warn::warn_not_retried(operator, std::any::type_name::<I>());
    }
    cloner
}
