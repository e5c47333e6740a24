//! The `Operator` trait: the unit of work xcs runs, batches and schedules.
//!
//! An operator separates its *body* ([`Operator::forward`]) from how it is *run*
//! ([`Operator::call`]): `call` reads the effective execution options and applies the deadline,
//! the cache and the trace around the body. Implementors write `forward` and `name`; callers use
//! `call`.

use std::sync::Arc;

use crate::cache::CacheSupport;
use crate::call::DetachedBody;
use crate::error::{BoxError, XcsError};
use crate::policy::plan::Supports;

/// Copies an input for another attempt (see `max_retries`).
#[doc(hidden)]
pub use crate::policy::retry::CloneInput;

/// Every operator is what the sync driver calls.
impl<O: Operator + ?Sized> crate::call::Callee for O {
    type Input = <O as Operator>::Input;
    type Output = <O as Operator>::Output;

    #[inline]
    fn name(&self) -> &str {
        Operator::name(self)
    }

    #[inline]
    fn forward(&self, input: Self::Input) -> Result<Self::Output, XcsError> {
        Operator::forward(self, input)
    }

    fn cache_support(&self) -> Option<CacheSupport<Self::Input, Self::Output>> {
        self.__xcs_cache_support()
    }

    fn supports(&self) -> Supports<Self::Input, Self::Output> {
        Supports {
            persist: self.persist_support(),
            clone_input: self.__xcs_clone_input(),
            retried_by_items: self.__xcs_retried_by_items(),
        }
    }
    #[inline]
    fn resource(&self) -> Option<&str> {
        Operator::resource(self)
    }

    #[inline]
    fn estimate(&self, input: &Self::Input) -> crate::Usage {
        Operator::estimate(self, input)
    }
}

/// Every async operator is what the async driver calls.
#[cfg(feature = "tokio")]
impl<O: AsyncOperator + ?Sized> crate::call_async::AsyncCallee for O {
    type Input = <O as AsyncOperator>::Input;
    type Output = <O as AsyncOperator>::Output;

    #[inline]
    fn name(&self) -> &str {
        AsyncOperator::name(self)
    }

    #[inline]
    fn forward(
        &self,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, XcsError>> + Send {
        AsyncOperator::forward(self, input)
    }

    fn cache_support(&self) -> Option<CacheSupport<Self::Input, Self::Output>> {
        self.__xcs_cache_support()
    }

    fn supports(&self) -> Supports<Self::Input, Self::Output> {
        Supports {
            persist: self.persist_support(),
            clone_input: self.__xcs_clone_input(),
            retried_by_items: self.__xcs_retried_by_items(),
        }
    }
    #[inline]
    fn resource(&self) -> Option<&str> {
        AsyncOperator::resource(self)
    }

    #[inline]
    fn estimate(&self, input: &Self::Input) -> crate::Usage {
        AsyncOperator::estimate(self, input)
    }
}

/// `Operator::call` for an operator the runtime may move to a worker (generated operators,
/// `Arc<O>`, `&'static O`): returns at the deadline even if the body hangs.
pub fn call_owned<O: Operator + Clone>(op: O, input: O::Input) -> Result<O::Output, XcsError> {
    let detach = || -> DetachedBody<O::Input, O::Output> {
        let op = op.clone();
        Box::new(move |input| Operator::forward(&op, input))
    };
    crate::call::invoke(&op, input, None, Some(&detach))
}

/// Wraps the error of a generated operator's body.
pub fn operator_error(operator: &str, error: impl Into<BoxError>) -> XcsError {
    XcsError::operator(operator, error)
}

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
///
/// # Hand-written operators with `#[xcs::operator]`
/// The same list bounds what a hand-written operator's input can be for `max_retries` (it is
/// copied for another attempt) and `cache_dir`. Put `#[xcs::operator]` on the
/// `impl Operator for T { … }` block to lift it: any `Clone` input is then retried, any
/// `Hash + Eq` input with a `Clone` output cached, and serde types persisted — a request struct
/// or a tuple included. The block is kept as written.
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

    /// The resource this operator's calls use (an API key, an endpoint, a local model server),
    /// if any: every call waits for it before its body starts, under the limits set with
    /// [`set_resource_limits`](crate::set_resource_limits), and is charged to it. `None` (the
    /// default): no resource. `#[xcs::operator(resource = "…")]` sets it.
    fn resource(&self) -> Option<&str> {
        None
    }

    /// What a call with `input` is expected to use, charged to its resource and budget when it
    /// is admitted; when the call ends, what its body recorded with
    /// [`record_usage`](crate::record_usage) replaces it (a call that records nothing keeps
    /// its estimate). Zero by default. `#[xcs::operator(estimate = path)]` sets it.
    fn estimate(&self, input: &Self::Input) -> crate::Usage {
        let _ = input;
        crate::Usage::ZERO
    }

    /// How this operator's results persist in a `cache_dir` store (with `enable_caching`), or
    /// `None` for the memory cache only. The default covers inputs and outputs of common
    /// standard types; override it to opt in with serde types:
    /// `Some(PersistSupport::serde())` (see [`PersistSupport`](crate::PersistSupport)).
    fn persist_support(&self) -> Option<crate::PersistSupport<Self::Input, Self::Output>> {
        crate::PersistSupport::for_std_types()
    }

    /// How to cache this operator's calls, if its input can be a cache key and its output can be
    /// cloned; `None` warns once per operator type (the runtime asks only under
    /// `enable_caching`). Not part of the stable API: generated operators override it; the
    /// default covers inputs and outputs of common standard types, keyed by `Self`'s type.
    #[doc(hidden)]
    fn __xcs_cache_support(&self) -> Option<CacheSupport<Self::Input, Self::Output>> {
        CacheSupport::for_hand_written::<Self>(self.name())
    }

    /// How to copy an input for another attempt under `max_retries`, if it can be copied. Not
    /// part of the stable API: generated operators override it; the default covers the common
    /// standard types.
    #[doc(hidden)]
    fn __xcs_clone_input(&self) -> Option<crate::operator::CloneInput<Self::Input>> {
        crate::cache::std_cloner::<Self::Input>()
    }

    /// Whether retries apply to this operator's items rather than to it (batches).
    #[doc(hidden)]
    fn __xcs_retried_by_items(&self) -> bool {
        false
    }

    /// The operator's version, part of every persistent cache key: `#[xcs::operator(version =
    /// N)]` sets it (bumped when the body's results change); 0 by default. Not part of the
    /// stable API.
    #[doc(hidden)]
    fn __xcs_version(&self) -> u32 {
        0
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
        call_owned(Arc::clone(self), input)
    }

    fn __xcs_cache_support(&self) -> Option<CacheSupport<Self::Input, Self::Output>> {
        (**self).__xcs_cache_support()
    }

    fn __xcs_clone_input(&self) -> Option<crate::operator::CloneInput<Self::Input>> {
        (**self).__xcs_clone_input()
    }

    fn __xcs_retried_by_items(&self) -> bool {
        (**self).__xcs_retried_by_items()
    }

    fn persist_support(&self) -> Option<crate::PersistSupport<Self::Input, Self::Output>> {
        (**self).persist_support()
    }

    fn __xcs_version(&self) -> u32 {
        (**self).__xcs_version()
    }

    fn resource(&self) -> Option<&str> {
        (**self).resource()
    }

    fn estimate(&self, input: &Self::Input) -> crate::Usage {
        (**self).estimate(input)
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
        call_owned(*self, input)
    }

    fn __xcs_cache_support(&self) -> Option<CacheSupport<Self::Input, Self::Output>> {
        (**self).__xcs_cache_support()
    }

    fn __xcs_clone_input(&self) -> Option<crate::operator::CloneInput<Self::Input>> {
        (**self).__xcs_clone_input()
    }

    fn __xcs_retried_by_items(&self) -> bool {
        (**self).__xcs_retried_by_items()
    }

    fn persist_support(&self) -> Option<crate::PersistSupport<Self::Input, Self::Output>> {
        (**self).persist_support()
    }

    fn __xcs_version(&self) -> u32 {
        (**self).__xcs_version()
    }

    fn resource(&self) -> Option<&str> {
        (**self).resource()
    }

    fn estimate(&self, input: &Self::Input) -> crate::Usage {
        (**self).estimate(input)
    }
}

/// An operator whose body is async: a model call over HTTP, a database query, anything that
/// waits on I/O. Runs on the caller's tokio runtime, with no thread per call.
///
/// `call` applies the effective options as [`Operator::call`] does: the deadline (the body's
/// future is dropped at it, so nothing keeps running), caching, tracing. The options in force
/// when `call` is *called* stay in force inside the body whenever it is polled, on whichever
/// runtime thread, before and after every `.await`.
///
/// Write one by hand, or put `#[xcs::operator]` on an `async fn`.
///
/// ```
/// use xcs::{AsyncOperator, XcsError};
///
/// struct Echo;
///
/// impl AsyncOperator for Echo {
///     type Input = String;
///     type Output = String;
///     async fn forward(&self, input: String) -> Result<String, XcsError> {
///         tokio::task::yield_now().await;
///         Ok(input)
///     }
///     fn name(&self) -> &str {
///         "echo"
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), XcsError> {
/// assert_eq!(Echo.call("hi".to_string()).await?, "hi");
/// let all = xcs::vmap(Echo).call(vec!["a".into(), "b".into()]).await?;
/// assert_eq!(all, vec!["a", "b"]);
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub trait AsyncOperator: Send + Sync + 'static {
    /// What one call takes.
    type Input: Send + 'static;
    /// What one call returns.
    type Output: Send + 'static;

    /// The body. Called by [`call`](AsyncOperator::call).
    fn forward(
        &self,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, XcsError>> + Send;

    /// The operator's name, used in errors, traces and cache keys.
    fn name(&self) -> &str;

    /// Runs [`forward`](AsyncOperator::forward) under the effective execution options (read
    /// now, when `call` is called): deadline, caching, tracing. A panic in the body comes back
    /// as [`XcsError::Panicked`].
    fn call(
        &self,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, XcsError>> + Send {
        crate::call_async::call(self, input)
    }

    /// The resource this operator's calls use; see [`Operator::resource`].
    fn resource(&self) -> Option<&str> {
        None
    }

    /// What a call with `input` is expected to use; see [`Operator::estimate`].
    fn estimate(&self, input: &Self::Input) -> crate::Usage {
        let _ = input;
        crate::Usage::ZERO
    }

    /// How this operator's results persist in a `cache_dir` store; see
    /// [`Operator::persist_support`].
    fn persist_support(&self) -> Option<crate::PersistSupport<Self::Input, Self::Output>> {
        crate::PersistSupport::for_std_types()
    }

    /// How to cache this operator's calls; see [`Operator::__xcs_cache_support`].
    #[doc(hidden)]
    fn __xcs_cache_support(&self) -> Option<CacheSupport<Self::Input, Self::Output>> {
        CacheSupport::for_hand_written::<Self>(self.name())
    }

    /// How to copy an input for another attempt; see [`Operator::__xcs_clone_input`].
    #[doc(hidden)]
    fn __xcs_clone_input(&self) -> Option<crate::operator::CloneInput<Self::Input>> {
        crate::cache::std_cloner::<Self::Input>()
    }

    /// Whether retries apply to this operator's items rather than to it (batches).
    #[doc(hidden)]
    fn __xcs_retried_by_items(&self) -> bool {
        false
    }

    /// The operator's version; see [`Operator::__xcs_version`].
    #[doc(hidden)]
    fn __xcs_version(&self) -> u32 {
        0
    }
}

#[cfg(feature = "tokio")]
impl<O: AsyncOperator> AsyncOperator for Arc<O> {
    type Input = O::Input;
    type Output = O::Output;

    fn forward(
        &self,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, XcsError>> + Send {
        (**self).forward(input)
    }

    fn name(&self) -> &str {
        (**self).name()
    }

    fn __xcs_cache_support(&self) -> Option<CacheSupport<Self::Input, Self::Output>> {
        (**self).__xcs_cache_support()
    }

    fn __xcs_clone_input(&self) -> Option<crate::operator::CloneInput<Self::Input>> {
        (**self).__xcs_clone_input()
    }

    fn __xcs_retried_by_items(&self) -> bool {
        (**self).__xcs_retried_by_items()
    }

    fn persist_support(&self) -> Option<crate::PersistSupport<Self::Input, Self::Output>> {
        (**self).persist_support()
    }

    fn __xcs_version(&self) -> u32 {
        (**self).__xcs_version()
    }

    fn resource(&self) -> Option<&str> {
        (**self).resource()
    }

    fn estimate(&self, input: &Self::Input) -> crate::Usage {
        (**self).estimate(input)
    }
}

#[cfg(feature = "tokio")]
impl<O: AsyncOperator> AsyncOperator for &'static O {
    type Input = O::Input;
    type Output = O::Output;

    fn forward(
        &self,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, XcsError>> + Send {
        (**self).forward(input)
    }

    fn name(&self) -> &str {
        (**self).name()
    }

    fn __xcs_cache_support(&self) -> Option<CacheSupport<Self::Input, Self::Output>> {
        (**self).__xcs_cache_support()
    }

    fn __xcs_clone_input(&self) -> Option<crate::operator::CloneInput<Self::Input>> {
        (**self).__xcs_clone_input()
    }

    fn __xcs_retried_by_items(&self) -> bool {
        (**self).__xcs_retried_by_items()
    }

    fn persist_support(&self) -> Option<crate::PersistSupport<Self::Input, Self::Output>> {
        (**self).persist_support()
    }

    fn __xcs_version(&self) -> u32 {
        (**self).__xcs_version()
    }

    fn resource(&self) -> Option<&str> {
        (**self).resource()
    }

    fn estimate(&self, input: &Self::Input) -> crate::Usage {
        (**self).estimate(input)
    }
}

/// A sync operator as an [`AsyncOperator`]: each call runs on tokio's blocking threads
/// (`spawn_blocking`), never on the runtime's worker threads, under the caller's options. Made
/// by [`blocking`].
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub struct Blocking<O> {
    op: Arc<O>,
}

#[cfg(feature = "tokio")]
impl<O> Clone for Blocking<O> {
    fn clone(&self) -> Self {
        Blocking {
            op: Arc::clone(&self.op),
        }
    }
}

#[cfg(feature = "tokio")]
impl<O: Operator> std::fmt::Debug for Blocking<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blocking")
            .field("operator", &self.op.name())
            .finish()
    }
}

/// Turns a sync operator into an [`AsyncOperator`] that runs it off the runtime's worker
/// threads, so CPU-bound batches can be awaited from async code (`vmap(blocking(op))`).
///
/// At a deadline the caller gets [`XcsError::Timeout`] at once; the sync body cannot be
/// stopped from outside, so it finishes on its blocking thread (told through
/// [`cancelled`](crate::cancelled)) and its result is dropped.
///
/// ```
/// use xcs::{AsyncOperator, Operator, XcsError, blocking, vmap};
///
/// struct Square;
/// impl Operator for Square {
///     type Input = u64;
///     type Output = u64;
///     fn forward(&self, x: u64) -> Result<u64, XcsError> { Ok(x * x) }
///     fn name(&self) -> &str { "square" }
/// }
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), XcsError> {
/// let squares = vmap(blocking(Square)).call(vec![1, 2, 3]).await?;
/// assert_eq!(squares, vec![1, 4, 9]);
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub fn blocking<O: Operator>(op: O) -> Blocking<O> {
    Blocking { op: Arc::new(op) }
}

#[cfg(feature = "tokio")]
impl<O: Operator> AsyncOperator for Blocking<O> {
    type Input = O::Input;
    type Output = O::Output;

    fn forward(
        &self,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, XcsError>> + Send {
        run_blocking(Arc::clone(&self.op), input)
    }

    fn name(&self) -> &str {
        self.op.name()
    }

    fn __xcs_cache_support(&self) -> Option<CacheSupport<Self::Input, Self::Output>> {
        // The sync operator's `call` inside caches, with its own key.
        None
    }

    fn __xcs_clone_input(&self) -> Option<crate::operator::CloneInput<Self::Input>> {
        None
    }

    fn __xcs_retried_by_items(&self) -> bool {
        // The sync operator's `call` inside retries.
        true
    }

    fn persist_support(&self) -> Option<crate::PersistSupport<Self::Input, Self::Output>> {
        // The sync operator's `call` inside persists.
        None
    }

    fn __xcs_version(&self) -> u32 {
        Operator::__xcs_version(&*self.op)
    }
}

/// `blocking(op)`'s body: `op.call(input)` on tokio's blocking threads under the options in
/// force now (the item's, when called from a batch).
#[cfg(feature = "tokio")]
fn run_blocking<O: Operator>(
    op: Arc<O>,
    input: O::Input,
) -> impl Future<Output = Result<O::Output, XcsError>> + Send {
    let ambient = crate::ambient::Ambient::capture();
    let name = Operator::name(&*op).to_owned();
    async move {
        let task = tokio::task::spawn_blocking(move || {
            let _in = ambient.enter();
            // A blocking thread: where a sync call belongs.
            crate::warn::runtime_thread::sanctioned(|| Operator::call(&*op, input))
        });
        match task.await {
            Ok(result) => result,
            Err(error) => Err(XcsError::Panicked {
                operator: name,
                index: None,
                message: format!("the blocking task failed: {error}"),
            }),
        }
    }
}
