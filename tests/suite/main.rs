//! The integration tests of `xcs`, one module per topic, in one test binary: its tests run in
//! parallel in one process. Where a new test goes:
//!
//! - `operator`: `#[xcs::operator]` on a function (the generated struct, inputs and `batch`,
//!   fallible bodies) and the `Operator` impls for `Arc` and `&'static`; `operator_async`: the
//!   same on an `async fn`; `operator_impl`: the attribute on a hand-written `impl` block;
//!   `operator_resource`: its `resource = "…"` and `estimate = path` arguments;
//!   `macros_operator_rename`: the generated code does not depend on names in the user's scope.
//! - `batch_executors`: `vmap` and `pmap` steered by the options (workers, order, errors, panics,
//!   settled outcomes); `batch_device`: `device_strategy` and registered backends.
//! - `async_ops`: async operators and batches on a tokio runtime; `drivers_agree`: the sync and
//!   async drivers run one call plan (the same scenario gives the same results and trace events).
//! - `cache`: `enable_caching` and the memory cache; `cache_persistent`: `cache_dir`, the store
//!   shared by processes; `cache_store_trust`: what the store refuses to trust.
//! - `timeouts`: `timeout_seconds`, `deadline()` and `cancelled()`; `retries`: `max_retries` and
//!   `rate_limit`; `hedging`: `hedge_after`; `trace`: `trace_execution` and the `tracing` spans; `progress`:
//!   `show_progress`; `warnings`: where the once-per-operator warnings go.
//! - `resources`: resources shared by operators (`set_resource_limits`, rate-limited answers,
//!   `resource_stats`); `budgets`: usage, estimates, `token_budget` and `cost_budget`;
//!   `resilience`: circuit breakers (`open_after_failures`, `cooldown_seconds`) and `fallback`.
//!
//! Tests that use process-wide state — the memory cache (its entries, bounds and counters), the
//! trace buffer, the backend registry, the global `tracing` subscriber's records — hold
//! `common::global_lock()`. No test here changes the global options, counts the process's
//! threads or abandoned items, or depends on which threads the shared pools hand out: those tests
//! are in `tests/process_wide/`. A test that needs a
//! process of its own (a store opened afresh, its standard error, no subscriber) runs one of its
//! module's tests again in a child process with `common::rerun`.

#[path = "../common/mod.rs"]
mod common;

mod async_ops;
mod batch_device;
mod batch_executors;
mod budgets;
mod cache;
mod cache_persistent;
mod cache_store_trust;
mod drivers_agree;
mod hedging;
mod macros_operator_rename;
mod operator;
mod operator_async;
mod operator_impl;
mod operator_resource;
mod progress;
mod resilience;
mod resources;
mod retries;
mod timeouts;
mod trace;
mod warnings;
