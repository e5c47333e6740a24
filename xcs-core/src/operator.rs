//! The `Operator` trait: the unit of work xcs runs, batches and schedules.
//!
//! An operator separates its *body* ([`Operator::forward`]) from how it is *run*
//! ([`Operator::call`]): `call` reads the effective execution options and applies the deadline,
//! the cache and the trace around the body. Implementors write `forward` and `name`; callers use
//! `call`.

use std::sync::Arc;

use crate::cache::CacheSupport;
use crate::error::XcsError;

/// A unit of work: an LLM call, a scorer, an ensemble, a plain function.
///
/// Write one by hand, or let `#[xcs::operator]` generate one from a function.
///
/// ```
/// use xcs::{Operator, XcsError};
///
/// struct Double;
///
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
/// assert_eq!(Double.call(21)?, 42);
/// # Ok::<(), XcsError>(())
/// ```
///
/// # Deadlines
/// A `timeout_seconds` in force is a deadline for the whole `call`. Returning promptly at the
/// deadline while the body still runs needs an owned handle on the operator: generated
/// operators, `Arc<O>` and `&'static O` run `forward` on a worker and return
/// [`XcsError::Timeout`] at the deadline. A hand-written operator called through a plain borrow
/// (as `Double.call(…)` above) cannot be abandoned safely, so its `call` refuses to start after
/// the deadline, returns `Timeout` if `forward` finishes late, and the body can cooperate by
/// checking [`cancelled`](crate::cancelled). Wrap it in an `Arc` for a hard deadline.
///
/// Method syntax prefers the operator's own `call`: on a `handle: &'static O`, `handle.call(x)`
/// is `O::call` through a borrow. Pass the handle where an operator is expected (`vmap(handle)`)
/// or write `Operator::call(&handle, x)` to use the handle's deadline-enforcing `call`.
///
/// # Caching
/// Under `enable_caching`, `call` answers an input seen before from the cache, keyed by the
/// operator's type, its [`name`](Operator::name) and a fingerprint of the input: two operator
/// types never share entries. Operators of one type that behave differently per instance
/// (configuration fields) must return different names, or they share entries. A hand-written
/// operator is cached when its input and output are common standard types (integers, `bool`,
/// `char`, `String`, `&'static str`, `()` and `Vec`s of them); otherwise its calls run uncached,
/// and the first one logs a warning (target `xcs`).
pub trait Operator: Send + Sync + 'static {
    /// What one call takes.
    type Input: Send + 'static;
    /// What one call returns.
    type Output: Send + 'static;

    /// The body: computes the output of one input. Called by [`call`](Operator::call).
    fn forward(&self, input: Self::Input) -> Result<Self::Output, XcsError>;

    /// The operator's name, used in errors, traces and cache keys.
    fn name(&self) -> &str;

    /// Runs [`forward`](Operator::forward) under the effective execution options: deadline,
    /// caching and tracing. A panic in the body comes back as [`XcsError::Panicked`].
    fn call(&self, input: Self::Input) -> Result<Self::Output, XcsError> {
        crate::call::call_borrowed(self, input)
    }

    /// How to cache this operator's calls, if its input can be a cache key and its output can be
    /// cloned; `None` warns once per operator type (the runtime asks only under
    /// `enable_caching`). Not part of the stable API: generated operators override it; the
    /// default covers inputs and outputs of common standard types, keyed by `Self`'s type.
    #[doc(hidden)]
    fn __xcs_cache_support(&self) -> Option<CacheSupport<Self::Input, Self::Output>> {
        CacheSupport::for_hand_written::<Self>(self.name())
    }
}

impl<O: Operator> Operator for Arc<O> {
    type Input = O::Input;
    type Output = O::Output;

    fn forward(&self, input: Self::Input) -> Result<Self::Output, XcsError> {
        (**self).forward(input)
    }

    fn name(&self) -> &str {
        (**self).name()
    }

    /// Owned handle: returns at the deadline even if `forward` hangs.
    fn call(&self, input: Self::Input) -> Result<Self::Output, XcsError> {
        crate::call::call_owned(Arc::clone(self), input)
    }

    fn __xcs_cache_support(&self) -> Option<CacheSupport<Self::Input, Self::Output>> {
        (**self).__xcs_cache_support()
    }
}

impl<O: Operator> Operator for &'static O {
    type Input = O::Input;
    type Output = O::Output;

    fn forward(&self, input: Self::Input) -> Result<Self::Output, XcsError> {
        (**self).forward(input)
    }

    fn name(&self) -> &str {
        (**self).name()
    }

    /// Owned handle: returns at the deadline even if `forward` hangs.
    fn call(&self, input: Self::Input) -> Result<Self::Output, XcsError> {
        crate::call::call_owned(*self, input)
    }

    fn __xcs_cache_support(&self) -> Option<CacheSupport<Self::Input, Self::Output>> {
        (**self).__xcs_cache_support()
    }
}
