//! # xcs
//!
//! Run *operators* — the building blocks of compound AI systems: LLM calls, scorers, ensembles,
//! plain functions — under precise, scoped **execution options**, and over batches with the
//! [`vmap`] and [`pmap`] transforms.
//!
//! ```
//! use xcs::prelude::*;
//!
//! #[xcs::operator]
//! fn score(answer: String, weight: u64) -> u64 {
//!     answer.len() as u64 * weight
//! }
//!
//! let batch = ScoreInputs::batch(vec!["a".to_string(), "bcd".to_string()], 2)?;
//! let scores = execution_options!(use_parallel = true, max_workers = 2 => {
//!     vmap(Score).call(batch)
//! })?;
//! assert_eq!(scores, vec![2, 6]);
//! # Ok::<(), xcs::XcsError>(())
//! ```
//!
//! Options are checked by the compiler where they are literals (a misspelt name or an
//! out-of-range value is a compile error) and by [`OptionsPatch::from_pairs`] where they come
//! from configuration (a typed [`XcsError`], never a panic).
//!
//! # Where to start
//!
//! - **Options** ([`ExecutionOptions`]): `use_parallel`, `max_workers`, `device_strategy`,
//!   `enable_caching`, `trace_execution`, `timeout_seconds`, `max_retries`, `rate_limit`,
//!   `cache_dir`, `show_progress`, `token_budget`, `cost_budget`, `hedge_after` and the legacy `scheduler`. Scope them
//!   with [`execution_options!`], set process-wide defaults with [`set_execution_options!`], read
//!   them with [`get_execution_options`]; from configuration, build an [`OptionsPatch`] and use
//!   [`with_options`] or [`set_global_options`].
//! - **Operators** ([`Operator`]): write `forward` and `name` by hand, or put [`operator`] on a
//!   function. [`Operator::call`] applies the options: deadline, cache, trace. Put [`operator`]
//!   on a hand-written `impl Operator`/`impl AsyncOperator` block too: any `Clone` input is then
//!   retried, any `Hash + Eq` one cached, serde types persisted.
//! - **Batches**: [`vmap`] for CPU-bound items (at most `max_workers` at once), [`pmap`] for
//!   I/O-bound ones (exactly `num_workers`). Both carry the caller's options to every worker, and
//!   nest without deadlocks and with bounded threads ([`thread_stats`], [`abandoned_items`]).
//! - **Async** (feature `tokio`): `AsyncOperator`, async `vmap`/`pmap`, `blocking`,
//!   `with_options_async` and `execution_options!(… => async { … })`.
//! - **What options do**: [`deadline`] / [`cancelled`] for bodies that cooperate with
//!   `timeout_seconds`; [`cache_stats`] / [`clear_cache`] for `enable_caching`; [`take_trace`]
//!   for `trace_execution`; [`register_backend`] for `device_strategy`; [`clear_cache_dir`] and
//!   [`PersistSupport`] for `cache_dir`; [`set_progress_hook`] for `show_progress`.
//! - **Clusters** (feature `nats`): `cluster::NatsBackend` runs batches on worker processes
//!   started with `cluster::serve`, through a NATS server.
//! - **A model client** (feature `openai`; `openai-tls` for HTTPS): `openai::Chat`, an async
//!   operator for OpenAI-compatible chat-completions endpoints.
//! - **Errors**: every failure is an [`XcsError`] variant.
#![forbid(unsafe_code)]
// docs.rs (nightly rustdoc, `--cfg docsrs`): each feature-gated item says which feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

extern crate self as xcs;

#[doc(inline)]
pub use xcs_core::{
    Axis, Backend, BatchJob, BoxError, CacheDir, CacheSize, CacheStats, DEFAULT_CACHE_CAPACITY,
    DEFAULT_CACHE_MAX_BYTES, DeviceStrategy, ExecutionOptions, MAX_WORKERS, Operator,
    OperatorStats, OptionsPatch, Outcome, PMap, PersistSupport, Scheduler, TRACE_CAPACITY, Trace,
    TraceEvent, TraceSummary, Usage, VMap, XcsError, cache_stats, cancelled, clear_cache,
    clear_cache_dir, deadline, get_execution_options, get_global_options, pmap, record_usage,
    register_backend, registered_backends, reset_execution_options, set_cache_capacity,
    set_cache_max_bytes, set_global_options, spent, take_trace, unregister_backend, vmap,
    with_options,
};

#[doc(inline)]
pub use xcs_core::{Fallback, fallback};

#[doc(inline)]
pub use xcs_core::{
    CircuitState, ResourceLimits, ResourceStats, resource_stats, set_resource_limits,
};

#[doc(inline)]
pub use xcs_core::{Hedge, HedgeMark};

#[doc(inline)]
pub use xcs_core::{
    DEFAULT_ABANDONED_LIMIT, IDLE_TIMEOUT, ThreadStats, abandoned_items, set_abandoned_limit,
    thread_stats,
};

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[doc(inline)]
pub use xcs_core::{AsyncOperator, Blocking, WithOptions, blocking, with_options_async};

#[doc(inline)]
pub use xcs_core::options::{OPTIONS, OptionKind, OptionSpec};

#[doc(inline)]
pub use xcs_core::{LIMITS, LimitKind, LimitSpec};

#[doc(inline)]
pub use xcs_core::{
    MAX_BARS, ProgressEvent, ProgressOutcome, clear_progress_hook, set_progress_hook,
};

#[doc(inline)]
pub use xcs_core::{Outgoing, RemoteItems, Signature};

/// Batches on worker processes through a NATS server (feature `nats`).
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use xcs_core::cluster;

/// A model client: an async operator for OpenAI-compatible chat-completions endpoints (feature
/// `openai`).
#[cfg(feature = "openai")]
#[cfg_attr(docsrs, doc(cfg(feature = "openai")))]
pub use xcs_core::openai;

pub use xcs_macros::{execution_options, operator, set_execution_options, set_resource_limits};

/// The macros, [`Operator`] (and `AsyncOperator`), [`vmap`], [`pmap`], the option functions,
/// the cache and trace readers, and [`fallback`].
pub mod prelude {
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub use crate::AsyncOperator;
    pub use crate::fallback;
    pub use crate::{
        ExecutionOptions, Operator, OptionsPatch, XcsError, execution_options,
        get_execution_options, pmap, reset_execution_options, set_execution_options,
        set_global_options, set_resource_limits, vmap, with_options,
    };
    pub use crate::{cache_stats, clear_cache, take_trace};
}

/// What code generated by the macros needs. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use xcs_core::__private::*;
}

/// The README's examples, compiled and run as doctests so they stay true. The README shows the
/// default features (its async examples need `tokio`).
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "tokio"))]
pub struct ReadmeDoctests;
