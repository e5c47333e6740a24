//! The one error type of xcs.
//!
//! Every failure a user can cause, from a misspelt option in a config file to an operator that
//! hangs past its deadline, is an [`XcsError`] variant with the facts needed to act on it. The
//! runtime never panics on bad input; panics inside operator bodies are caught at the batch or
//! call boundary and come back as [`XcsError::Panicked`].

use std::error::Error as StdError;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A boxed error from an operator body.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Everything that can go wrong in xcs.
///
/// ```
/// use xcs::{OptionsPatch, XcsError};
/// match OptionsPatch::from_pairs([("invalid_option", "true")]) {
///     Err(XcsError::InvalidOption { name, .. }) => assert_eq!(name, "invalid_option"),
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XcsError {
    /// An option name that is not in the table. The message is exactly
    /// ``Invalid execution option: <name>``, followed by ``; did you mean `<option>`?`` where one
    /// is close.
    #[error("Invalid execution option: {name}{}", DidYouMean(*suggestion))]
    InvalidOption {
        /// The name as given.
        name: String,
        /// The nearest valid option, if one is close.
        suggestion: Option<&'static str>,
    },

    /// A value an option cannot take (or an option given twice, or a `scheduler` that
    /// contradicts `use_parallel`).
    #[error("invalid value `{value}` for execution option `{option}`: expected {expected}")]
    InvalidValue {
        /// The option.
        option: String,
        /// The value as given.
        value: String,
        /// What the option accepts.
        expected: String,
    },

    /// Batched arguments of one operator call with different lengths.
    #[error(
        "batched arguments have different lengths: `{first}` has {} but `{other}` has {}",
        Items(*first_len),
        Items(*other_len)
    )]
    BatchSizeMismatch {
        /// The first batched argument.
        first: String,
        /// Its length.
        first_len: usize,
        /// The argument whose length differs.
        other: String,
        /// Its length.
        other_len: usize,
    },

    /// An operator body returned an error.
    #[error("operator `{operator}` failed{}: {source}", AtItem(*index))]
    Operator {
        /// The operator's name.
        operator: String,
        /// The batch item it failed on, when it ran as part of a batch.
        index: Option<usize>,
        /// What the body returned.
        #[source]
        source: BoxError,
    },

    /// An operator body panicked; the panic was caught and did not unwind into the caller.
    #[error("operator `{operator}` panicked{}: {message}", AtItem(*index))]
    Panicked {
        /// The operator's name.
        operator: String,
        /// The batch item it panicked on, when it ran as part of a batch.
        index: Option<usize>,
        /// The panic message (or a note that the payload was not a string).
        message: String,
    },

    /// The call's deadline (`timeout_seconds`) passed before it finished.
    #[error("operator `{operator}` timed out after {}{}", Seconds(*timeout), AtItem(*index))]
    Timeout {
        /// The operator whose call timed out.
        operator: String,
        /// The batch item that was still running or never started, when known.
        index: Option<usize>,
        /// The timeout that was in force.
        timeout: Duration,
    },

    /// The `device_strategy` in force has no registered backend, or its backend has nothing
    /// to run the batch on (a cluster with no worker listening): then `registered` names it.
    #[error("{}", Unavailable(strategy, registered))]
    DeviceUnavailable {
        /// The strategy asked for.
        strategy: String,
        /// The names of the backends that are registered.
        registered: Vec<String>,
    },

    /// The item never ran because the call it belongs to gave up first (an enclosing batch
    /// failed or timed out, or a backend returned without running it).
    #[error("operator `{operator}` was cancelled{}: the call it belongs to gave up", AtItem(*index))]
    Cancelled {
        /// The operator.
        operator: String,
        /// The batch item, when known.
        index: Option<usize>,
    },

    /// An item could not run on a cluster of worker processes (`xcs::cluster`, feature `nats`):
    /// no worker serves the operator, the workers were built from another version of it, its
    /// input or output cannot be sent, or a message was refused.
    #[error("operator `{operator}` cannot run on the cluster{}: {reason}", AtItem(*index))]
    Cluster {
        /// The operator.
        operator: String,
        /// The batch item, when known.
        index: Option<usize>,
        /// Why.
        reason: String,
    },

    /// A connection to a cluster's message server (`xcs::cluster`, feature `nats`) could not be
    /// made: the server is not reachable, refused the credentials, or the URL is malformed.
    #[error("cannot connect to the cluster at `{url}`: {reason}")]
    Connect {
        /// The server's URL, without credentials.
        url: String,
        /// What went wrong.
        reason: String,
    },

    /// A call that enforces a deadline was refused because too many items abandoned at earlier
    /// deadlines still hold threads (see [`abandoned_items`](crate::abandoned_items) and
    /// [`set_abandoned_limit`](crate::set_abandoned_limit)).
    #[error(
        "operator `{operator}` was not started: {abandoned} items abandoned at earlier deadlines \
         still hold threads (limit {limit}, see `xcs::set_abandoned_limit`)"
    )]
    AbandonedLimit {
        /// The operator whose call was refused.
        operator: String,
        /// Abandoned items holding threads now.
        abandoned: usize,
        /// The limit in force.
        limit: usize,
    },

    /// The persistent cache in a `cache_dir` could not be used (it cannot be created, is
    /// read-only or corrupt, or the disk is full). Calls never fail with this: they fall back to
    /// the memory cache. [`clear_cache_dir`](crate::clear_cache_dir) reports it.
    #[error("cannot use the persistent cache in `{}`: {reason}", dir.display())]
    CacheStore {
        /// The cache directory.
        dir: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// The backend registered for the `device_strategy` in force cannot run this batch (an
    /// async batch, whose items are futures, under a backend that receives sync batches): the
    /// batch fails instead of running somewhere else.
    #[error("device strategy `{strategy}` cannot run `{operator}`: {reason}")]
    DeviceUnsupported {
        /// The strategy asked for.
        strategy: String,
        /// The batch (`vmap(…)` or `pmap(…)`).
        operator: String,
        /// Why, and what to do instead.
        reason: String,
    },

    /// A call was refused because its estimated usage does not fit in what remains of a budget
    /// (`token_budget` or `cost_budget`) of the scope it runs in (what was spent and what calls
    /// in flight have reserved). Never retried.
    #[error(
        "operator `{operator}` would exceed the {budget} of {limit}{}: {spent} spent, and its estimate does not fit in what remains",
        AtItem(*index)
    )]
    BudgetExceeded {
        /// The operator that was refused.
        operator: String,
        /// The batch item it was, when it ran as part of a batch.
        index: Option<usize>,
        /// Which budget: `"token_budget"` or `"cost_budget"`.
        budget: &'static str,
        /// The budget's limit (tokens, or cost).
        limit: f64,
        /// What the scope had spent when the call was refused (in the budget's unit).
        spent: f64,
    },

    /// A call was refused without running because the circuit breaker of its operator's
    /// resource is open: its last `open_after_failures` calls failed with retryable errors (see
    /// [`ResourceLimits::open_after_failures`](crate::ResourceLimits::open_after_failures)).
    /// Never retried by `max_retries`; [`fallback`](crate::fallback) runs its second operator
    /// on it.
    #[error(
        "operator `{operator}` was not run{}: the circuit of resource `{resource}` is open{}",
        AtItem(*index),
        Closes(*until)
    )]
    CircuitOpen {
        /// The operator whose call was refused.
        operator: String,
        /// The batch item it was, when it ran as part of a batch.
        index: Option<usize>,
        /// The resource whose circuit is open.
        resource: std::sync::Arc<str>,
        /// When the cooldown ends and one trial call will be admitted; `None` when it has ended
        /// and a trial call is in flight (its success closes the circuit).
        until: Option<std::time::Instant>,
    },
}

impl XcsError {
    /// Wraps an operator body's error.
    pub fn operator(operator: impl Into<String>, source: impl Into<BoxError>) -> XcsError {
        XcsError::Operator {
            operator: operator.into(),
            index: None,
            source: source.into(),
        }
    }

    /// An operator failure that retrying cannot fix (a bad request, an exhausted quota): with
    /// `max_retries`, it is returned at once instead of retried. Still an
    /// [`XcsError::Operator`]; its `source` shows and chains to `source`.
    ///
    /// ```
    /// use xcs::XcsError;
    /// let error = XcsError::permanent("chat", "insufficient_quota");
    /// assert!(!error.is_retryable());
    /// assert!(XcsError::operator("chat", "connection reset").is_retryable());
    /// ```
    pub fn permanent(operator: impl Into<String>, source: impl Into<BoxError>) -> XcsError {
        XcsError::Operator {
            operator: operator.into(),
            index: None,
            source: Box::new(Permanent(source.into())),
        }
    }

    /// A retryable operator failure that says how long to wait before trying again (an HTTP
    /// 429 or 503 with `Retry-After`): a retry waits at least `wait`. Still an
    /// [`XcsError::Operator`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use xcs::XcsError;
    /// let error = XcsError::retry_after("chat", Duration::from_secs(2), "429 Too Many Requests");
    /// assert!(error.is_retryable());
    /// assert_eq!(error.retry_hint(), Some(Duration::from_secs(2)));
    /// ```
    pub fn retry_after(
        operator: impl Into<String>,
        wait: Duration,
        source: impl Into<BoxError>,
    ) -> XcsError {
        XcsError::Operator {
            operator: operator.into(),
            index: None,
            source: Box::new(RetryAfter {
                wait,
                source: source.into(),
            }),
        }
    }

    /// The provider said "too many requests" (an HTTP 429): a retryable failure that also tells
    /// the call's resource to back off. Every caller of the resource the failing call runs under
    /// (see [`Operator::resource`](crate::Operator::resource)) waits until `retry_after` has
    /// passed (1 s when the provider did not say), and the resource's admitted rates are halved,
    /// recovering linearly to the configured limits over 60 s. A retry of the call itself waits
    /// at least as long. Still an [`XcsError::Operator`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use xcs::XcsError;
    /// let error = XcsError::rate_limited("chat", Some(Duration::from_secs(3)));
    /// assert!(error.is_retryable());
    /// assert!(error.is_rate_limited());
    /// assert_eq!(error.retry_hint(), Some(Duration::from_secs(3)));
    /// assert_eq!(XcsError::rate_limited("chat", None).retry_hint(), Some(Duration::from_secs(1)));
    /// ```
    pub fn rate_limited(operator: impl Into<String>, retry_after: Option<Duration>) -> XcsError {
        let wait = retry_after.unwrap_or(DEFAULT_RATE_LIMITED_WAIT);
        XcsError::Operator {
            operator: operator.into(),
            index: None,
            source: Box::new(RetryAfter {
                wait,
                source: Box::new(RateLimited { wait }),
            }),
        }
    }

    /// Whether this error was made with [`rate_limited`](XcsError::rate_limited): the provider
    /// asked its callers to slow down.
    pub fn is_rate_limited(&self) -> bool {
        match self {
            XcsError::Operator { source, .. } => source
                .downcast_ref::<RetryAfter>()
                .is_some_and(|r| r.source.is::<RateLimited>()),
            _ => false,
        }
    }

    /// Whether `max_retries` retries this error: every [`XcsError::Operator`] except those made
    /// with [`permanent`](XcsError::permanent). Panics, timeouts and configuration errors are
    /// never retried.
    pub fn is_retryable(&self) -> bool {
        match self {
            XcsError::Operator { source, .. } => !source.is::<Permanent>(),
            _ => false,
        }
    }

    /// The wait an error made with [`retry_after`](XcsError::retry_after) asks for.
    pub fn retry_hint(&self) -> Option<Duration> {
        match self {
            XcsError::Operator { source, .. } => {
                source.downcast_ref::<RetryAfter>().map(|r| r.wait)
            }
            _ => None,
        }
    }

    /// The batch item this error is about, if it records one.
    pub fn index(&self) -> Option<usize> {
        match self {
            XcsError::Operator { index, .. }
            | XcsError::Panicked { index, .. }
            | XcsError::Timeout { index, .. }
            | XcsError::Cancelled { index, .. }
            | XcsError::Cluster { index, .. }
            | XcsError::BudgetExceeded { index, .. }
            | XcsError::CircuitOpen { index, .. } => *index,
            _ => None,
        }
    }

    /// This error, recorded as having happened in batch item `item` (the outermost batch that
    /// reports an error sets it, so the index is always one the caller can look up).
    pub fn at_index(mut self, item: usize) -> XcsError {
        match &mut self {
            XcsError::Operator { index, .. }
            | XcsError::Panicked { index, .. }
            | XcsError::Timeout { index, .. }
            | XcsError::Cancelled { index, .. }
            | XcsError::Cluster { index, .. }
            | XcsError::BudgetExceeded { index, .. }
            | XcsError::CircuitOpen { index, .. } => *index = Some(item),
            _ => {}
        }
        self
    }

    /// A copy of this error for reporting it more than once. Every field is kept, except that
    /// an operator's source error (which need not be `Clone`) is carried over as its message.
    pub fn describe_again(&self) -> XcsError {
        match self {
            XcsError::InvalidOption { name, suggestion } => XcsError::InvalidOption {
                name: name.clone(),
                suggestion: *suggestion,
            },
            XcsError::InvalidValue {
                option,
                value,
                expected,
            } => XcsError::InvalidValue {
                option: option.clone(),
                value: value.clone(),
                expected: expected.clone(),
            },
            XcsError::BatchSizeMismatch {
                first,
                first_len,
                other,
                other_len,
            } => XcsError::BatchSizeMismatch {
                first: first.clone(),
                first_len: *first_len,
                other: other.clone(),
                other_len: *other_len,
            },
            XcsError::Operator {
                operator,
                index,
                source,
            } => XcsError::Operator {
                operator: operator.clone(),
                index: *index,
                source: source.to_string().into(),
            },
            XcsError::Panicked {
                operator,
                index,
                message,
            } => XcsError::Panicked {
                operator: operator.clone(),
                index: *index,
                message: message.clone(),
            },
            XcsError::Timeout {
                operator,
                index,
                timeout,
            } => XcsError::Timeout {
                operator: operator.clone(),
                index: *index,
                timeout: *timeout,
            },
            XcsError::DeviceUnavailable {
                strategy,
                registered,
            } => XcsError::DeviceUnavailable {
                strategy: strategy.clone(),
                registered: registered.clone(),
            },
            XcsError::Cancelled { operator, index } => XcsError::Cancelled {
                operator: operator.clone(),
                index: *index,
            },
            XcsError::Cluster {
                operator,
                index,
                reason,
            } => XcsError::Cluster {
                operator: operator.clone(),
                index: *index,
                reason: reason.clone(),
            },
            XcsError::Connect { url, reason } => XcsError::Connect {
                url: url.clone(),
                reason: reason.clone(),
            },
            XcsError::AbandonedLimit {
                operator,
                abandoned,
                limit,
            } => XcsError::AbandonedLimit {
                operator: operator.clone(),
                abandoned: *abandoned,
                limit: *limit,
            },
            XcsError::CacheStore { dir, reason } => XcsError::CacheStore {
                dir: dir.clone(),
                reason: reason.clone(),
            },
            XcsError::DeviceUnsupported {
                strategy,
                operator,
                reason,
            } => XcsError::DeviceUnsupported {
                strategy: strategy.clone(),
                operator: operator.clone(),
                reason: reason.clone(),
            },
            XcsError::BudgetExceeded {
                operator,
                index,
                budget,
                limit,
                spent,
            } => XcsError::BudgetExceeded {
                operator: operator.clone(),
                index: *index,
                budget,
                limit: *limit,
                spent: *spent,
            },
            XcsError::CircuitOpen {
                operator,
                index,
                resource,
                until,
            } => XcsError::CircuitOpen {
                operator: operator.clone(),
                index: *index,
                resource: resource.clone(),
                until: *until,
            },
        }
    }

    /// Whether this is a [`XcsError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, XcsError::Timeout { .. })
    }
}

/// The source of an error made with [`XcsError::permanent`]: shows as, and chains to, the
/// wrapped error.
#[derive(Debug)]
struct Permanent(BoxError);

impl fmt::Display for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl StdError for Permanent {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.0)
    }
}

/// The source of an error made with [`XcsError::retry_after`].
#[derive(Debug)]
struct RetryAfter {
    wait: Duration,
    source: BoxError,
}

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl StdError for RetryAfter {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

/// How long callers of a resource pause after a rate-limited answer that did not say.
pub(crate) const DEFAULT_RATE_LIMITED_WAIT: Duration = Duration::from_secs(1);

/// The source of an error made with [`XcsError::rate_limited`].
#[derive(Debug)]
struct RateLimited {
    wait: Duration,
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limited by the provider (retry after {})",
            Seconds(self.wait)
        )
    }
}

impl StdError for RateLimited {}

struct DidYouMean(Option<&'static str>);

impl fmt::Display for DidYouMean {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(name) => write!(f, "; did you mean `{name}`?"),
            None => Ok(()),
        }
    }
}

struct AtItem(Option<usize>);

impl fmt::Display for AtItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(index) => write!(f, " on batch item {index}"),
            None => Ok(()),
        }
    }
}

/// When an open circuit admits its trial call, as the rest of a sentence.
struct Closes(Option<std::time::Instant>);

impl fmt::Display for Closes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(at) => {
                let left = at.saturating_duration_since(std::time::Instant::now());
                // Whole milliseconds: the time left, not the clock's noise.
                let left = Duration::from_millis(left.as_millis().try_into().unwrap_or(u64::MAX));
                write!(f, " for another {}", Seconds(left))
            }
            None => f.write_str(" until its trial call succeeds"),
        }
    }
}

struct Items(usize);

impl fmt::Display for Items {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            1 => f.write_str("1 item"),
            n => write!(f, "{n} items"),
        }
    }
}

struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0.as_secs_f64())
    }
}

/// Why a device strategy cannot run a batch.
struct Unavailable<'a>(&'a str, &'a [String]);

impl fmt::Display for Unavailable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Unavailable(strategy, registered) = *self;
        if registered
            .iter()
            .any(|name| name.eq_ignore_ascii_case(strategy))
        {
            write!(
                f,
                "device strategy `{strategy}` is unavailable: its backend has no worker to run the \
                 batch (no worker is listening)"
            )
        } else {
            write!(
                f,
                "no backend is registered for device strategy `{strategy}` (registered backends: {})",
                List(registered)
            )
        }
    }
}

struct List<'a>(&'a [String]);

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, name) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "`{name}`")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_stay_small() {
        // Every `Result<_, XcsError>` on the call paths carries it: a bigger largest variant
        // costs every call its copies (a measured regression once). Box what does not fit.
        assert!(
            std::mem::size_of::<XcsError>() <= 80,
            "{}",
            std::mem::size_of::<XcsError>()
        );
    }

    #[test]
    fn messages_read_well() {
        let err = XcsError::operator("judge", "bad score").at_index(3);
        assert_eq!(
            err.to_string(),
            "operator `judge` failed on batch item 3: bad score"
        );
        assert!(err.source().is_some());
        let err = XcsError::Timeout {
            operator: "vmap(slow)".into(),
            index: None,
            timeout: Duration::from_millis(100),
        };
        assert_eq!(
            err.to_string(),
            "operator `vmap(slow)` timed out after 0.1s"
        );
        let err = XcsError::DeviceUnavailable {
            strategy: "gpu".into(),
            registered: vec!["cpu".into()],
        };
        assert_eq!(
            err.to_string(),
            "no backend is registered for device strategy `gpu` (registered backends: `cpu`)"
        );
        let err = XcsError::CacheStore {
            dir: "/tmp/cache".into(),
            reason: "the disk is full".into(),
        };
        assert_eq!(
            err.to_string(),
            "cannot use the persistent cache in `/tmp/cache`: the disk is full"
        );
    }

    #[test]
    fn a_circuit_open_error_names_its_resource_and_is_not_retried() {
        let err = XcsError::CircuitOpen {
            operator: "chat".into(),
            index: None,
            resource: "openai".into(),
            until: Some(std::time::Instant::now() + Duration::from_secs(60)),
        }
        .at_index(2);
        let text = err.to_string();
        assert!(
            text.starts_with(
                "operator `chat` was not run on batch item 2: the circuit of resource `openai` \
                 is open for another "
            ),
            "{text}"
        );
        assert!(!err.is_retryable());
        assert_eq!(err.index(), Some(2));
        assert!(matches!(
            err.describe_again(),
            XcsError::CircuitOpen { resource, index: Some(2), .. } if &*resource == "openai"
        ));
        let err = XcsError::CircuitOpen {
            operator: "chat".into(),
            index: None,
            resource: "openai".into(),
            until: None,
        };
        assert_eq!(
            err.to_string(),
            "operator `chat` was not run: the circuit of resource `openai` is open until its \
             trial call succeeds"
        );
    }

    #[test]
    fn errors_are_send_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<XcsError>();
    }
}
