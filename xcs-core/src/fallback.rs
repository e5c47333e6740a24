//! [`fallback`]: a second operator for when the first one is down.
//!
//! A model call fails for two kinds of reasons: the provider is down or overloaded (a 5xx, a
//! reset connection, a 429 that retries did not outlast, an open circuit breaker), or the request
//! itself is wrong (a 400, a content filter) — or the caller's own deadline passed. Only the
//! first kind is worth asking another provider: the second would fail there too, and after the
//! deadline nobody waits for the answer. So the fallback runs its secondary exactly on the
//! errors `max_retries` would retry ([`XcsError::is_retryable`]) and on
//! [`XcsError::CircuitOpen`].
//!
//! Each part runs through its own `call`, so its retries, cache, resource and breaker apply to
//! it; the fallback itself adds none of them (its parts cache and retry, so it does not, and a
//! retry of the fallback would multiply its parts' retries). Its call shares one deadline with
//! its parts: a `timeout_seconds` in force bounds the primary, its retries and the secondary
//! together.

use std::sync::{Arc, OnceLock};

use crate::cache::CacheSupport;
use crate::error::XcsError;
use crate::operator::Operator;

/// Runs `primary`, and `secondary` on the same input when `primary` fails with a retryable
/// error (after its own retries) or [`XcsError::CircuitOpen`]. Permanent errors
/// ([`XcsError::permanent`]), panics, the caller's own [`XcsError::Timeout`] and every other
/// error are returned as they are.
///
/// The result is an [`Operator`] when both are operators, and an
/// `AsyncOperator` (feature `tokio`) when both are async operators, with their common
/// `Input` (which must be `Clone`: the secondary gets a copy) and `Output`. It nests:
/// `fallback(a, fallback(b, c))` tries `a`, then `b`, then `c`. Its name is
/// `fallback(<primary>, <secondary>)`; under `trace_execution`, its event's
/// [`answered_by`](crate::TraceEvent::answered_by) names the operator that answered.
///
/// ```
/// use xcs::{Operator, XcsError, fallback};
///
/// struct Down;
/// impl Operator for Down {
///     type Input = String;
///     type Output = String;
///     fn forward(&self, _: String) -> Result<String, XcsError> {
///         Err(XcsError::operator("down", "503 Service Unavailable"))
///     }
///     fn name(&self) -> &str { "down" }
/// }
///
/// struct Echo;
/// impl Operator for Echo {
///     type Input = String;
///     type Output = String;
///     fn forward(&self, prompt: String) -> Result<String, XcsError> { Ok(prompt) }
///     fn name(&self) -> &str { "echo" }
/// }
///
/// let op = fallback(Down, Echo);
/// assert_eq!(op.name(), "fallback(down, echo)");
/// assert_eq!(op.call("hi".to_string())?, "hi");
/// // Batches too: each item falls back on its own.
/// assert_eq!(xcs::vmap(op).call(vec!["a".into(), "b".into()])?, ["a", "b"]);
/// # Ok::<(), XcsError>(())
/// ```
pub fn fallback<P, S>(primary: P, secondary: S) -> Fallback<P, S> {
    Fallback {
        parts: Arc::new(Parts {
            primary,
            secondary,
            name: OnceLock::new(),
        }),
    }
}

/// An operator that runs a primary operator and, when it fails with a retryable error or an
/// open circuit, a secondary one. Made by [`fallback`].
///
/// ```
/// use xcs::{Fallback, Operator, XcsError, fallback};
///
/// struct Len;
/// impl Operator for Len {
///     type Input = String;
///     type Output = usize;
///     fn forward(&self, s: String) -> Result<usize, XcsError> { Ok(s.len()) }
///     fn name(&self) -> &str { "len" }
/// }
///
/// let op: Fallback<Len, Len> = fallback(Len, Len);
/// let copy = op.clone();
/// assert_eq!(copy.call("four".into())?, 4);
/// assert_eq!(op.primary().name(), "len");
/// # Ok::<(), XcsError>(())
/// ```
pub struct Fallback<P, S> {
    parts: Arc<Parts<P, S>>,
}

struct Parts<P, S> {
    primary: P,
    secondary: S,
    name: OnceLock<String>,
}

impl<P, S> Clone for Fallback<P, S> {
    fn clone(&self) -> Self {
        Fallback {
            parts: Arc::clone(&self.parts),
        }
    }
}

impl<P, S> std::fmt::Debug for Fallback<P, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fallback")
            .field("name", &self.parts.name.get())
            .finish_non_exhaustive()
    }
}

impl<P, S> Fallback<P, S> {
    /// The operator tried first.
    ///
    /// ```
    /// # use xcs::{Operator, XcsError};
    /// # struct Len;
    /// # impl Operator for Len {
    /// #     type Input = String;
    /// #     type Output = usize;
    /// #     fn forward(&self, s: String) -> Result<usize, XcsError> { Ok(s.len()) }
    /// #     fn name(&self) -> &str { "len" }
    /// # }
    /// let op = xcs::fallback(Len, Len);
    /// assert_eq!(op.primary().name(), "len");
    /// ```
    pub fn primary(&self) -> &P {
        &self.parts.primary
    }

    /// The operator tried when the primary fails with a retryable error or an open circuit.
    ///
    /// ```
    /// # use xcs::{Operator, XcsError};
    /// # struct Len;
    /// # impl Operator for Len {
    /// #     type Input = String;
    /// #     type Output = usize;
    /// #     fn forward(&self, s: String) -> Result<usize, XcsError> { Ok(s.len()) }
    /// #     fn name(&self) -> &str { "len" }
    /// # }
    /// let op = xcs::fallback(Len, xcs::fallback(Len, Len));
    /// assert_eq!(op.secondary().name(), "fallback(len, len)");
    /// ```
    pub fn secondary(&self) -> &S {
        &self.parts.secondary
    }
}

/// Whether the secondary runs after the primary failed with `error`.
fn falls_back(error: &XcsError) -> bool {
    error.is_retryable() || matches!(error, XcsError::CircuitOpen { .. })
}

/// Records `operator` as the answerer on the running call's trace event, when tracing.
fn answered(operator: &str) {
    if crate::scope::get_execution_options().trace_execution {
        crate::trace::note_answer(operator);
    }
}

/// The call's answer once the primary (`primary`) returned `result`: its output, or an error
/// the secondary does not cure. `None`: the secondary runs.
fn after_primary<O>(result: Result<O, XcsError>, primary: &str) -> Option<Result<O, XcsError>> {
    match result {
        Ok(output) => {
            answered(primary);
            Some(Ok(output))
        }
        Err(error) if falls_back(&error) => {
            crate::util::drop_quietly(error);
            None
        }
        Err(error) => Some(Err(error)),
    }
}

/// The call's answer when the secondary (`secondary`) returned `result`.
fn after_secondary<O>(result: Result<O, XcsError>, secondary: &str) -> Result<O, XcsError> {
    if result.is_ok() {
        answered(secondary);
    }
    result
}

impl<P, S> Parts<P, S> {
    /// `fallback(primary, secondary)`, made once.
    fn name(&self, primary: &str, secondary: &str) -> &str {
        self.name
            .get_or_init(|| format!("fallback({primary}, {secondary})"))
    }
}

impl<P, S> Operator for Fallback<P, S>
where
    P: Operator,
    P::Input: Clone,
    S: Operator<Input = P::Input, Output = P::Output>,
{
    type Input = P::Input;
    type Output = P::Output;

    fn forward(&self, input: Self::Input) -> Result<Self::Output, XcsError> {
        let Parts {
            primary, secondary, ..
        } = &*self.parts;
        if let Some(answer) = after_primary(primary.call(input.clone()), primary.name()) {
            return answer;
        }
        after_secondary(secondary.call(input), secondary.name())
    }

    fn name(&self) -> &str {
        self.parts
            .name(self.parts.primary.name(), self.parts.secondary.name())
    }

    /// An owned handle (the parts are shared): returns at the deadline even if a part hangs.
    fn call(&self, input: Self::Input) -> Result<Self::Output, XcsError> {
        crate::operator::call_owned(self.clone(), input)
    }

    fn persist_support(&self) -> Option<crate::PersistSupport<Self::Input, Self::Output>> {
        // The parts persist their own results.
        None
    }

    fn __xcs_cache_support(&self) -> Option<CacheSupport<Self::Input, Self::Output>> {
        // The parts cache their own results, each under its own key.
        None
    }

    fn __xcs_clone_input(&self) -> Option<crate::operator::CloneInput<Self::Input>> {
        None
    }

    fn __xcs_retried_by_items(&self) -> bool {
        // The parts retry; a retry of the whole would multiply theirs.
        true
    }
}

#[cfg(feature = "tokio")]
impl<P, S> crate::operator::AsyncOperator for Fallback<P, S>
where
    P: crate::operator::AsyncOperator,
    P::Input: Clone,
    S: crate::operator::AsyncOperator<Input = P::Input, Output = P::Output>,
{
    type Input = P::Input;
    type Output = P::Output;

    fn forward(
        &self,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, XcsError>> + Send {
        let Parts {
            primary, secondary, ..
        } = &*self.parts;
        async move {
            if let Some(answer) = after_primary(primary.call(input.clone()).await, primary.name()) {
                return answer;
            }
            after_secondary(secondary.call(input).await, secondary.name())
        }
    }

    fn name(&self) -> &str {
        self.parts
            .name(self.parts.primary.name(), self.parts.secondary.name())
    }

    fn persist_support(&self) -> Option<crate::PersistSupport<Self::Input, Self::Output>> {
        None
    }

    fn __xcs_cache_support(&self) -> Option<CacheSupport<Self::Input, Self::Output>> {
        None
    }

    fn __xcs_clone_input(&self) -> Option<crate::operator::CloneInput<Self::Input>> {
        None
    }

    fn __xcs_retried_by_items(&self) -> bool {
        true
    }
}
