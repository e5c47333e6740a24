//! The integration tests that need the process to themselves: they change the global options,
//! count the process's threads or abandoned items, depend on which threads the shared pools hand
//! out, or check that no item is abandoned anywhere. Every test holds `common::global_lock()`, so
//! they run one at a time. Where a new test goes:
//!
//! - `options`: the option table, parsing (`from_pairs`, `from_env`), scopes and the global
//!   settings; `macros_options_rename`: the option macros' expansion does not depend on names in
//!   the caller's scope.
//! - `batch_threads`: the threads batches use (counts, pools reused across calls, one compute
//!   lane per CPU); `batch_offers`: what a `vmap` above the CPU count keeps when it offers its
//!   helpers as jobs (threads reused, `max_workers` items at once); `batch_composition`: any nesting of batches completes (the randomized stress
//!   test: `COMPOSITION_CASES`).
//! - `timeouts_abandoned`: items abandoned at a deadline, counted and capped.
//!
//! Every other test goes in `tests/suite/`.

#[path = "../common/mod.rs"]
mod common;

mod batch_composition;
mod batch_offers;
mod batch_threads;
mod macros_options_rename;
mod options;
mod timeouts_abandoned;
