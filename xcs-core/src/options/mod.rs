//! The execution options: their table, their typed form, and partial updates of them.
//!
//! Every option is described exactly once, in [`OPTIONS`]. The run-time parser
//! ([`OptionsPatch::from_pairs`], [`OptionsPatch::from_env`]) and the compile-time checks of the
//! `execution_options!` macros both read that table and share the value parsers below, so the
//! names, the accepted values and the error messages cannot drift apart.
//!
//! [`ExecutionOptions`] is `Copy`: reading the effective options is a plain copy out of a
//! thread-local, with no allocation and no reference count to touch.

use std::num::NonZeroUsize;
use std::time::Duration;

mod list;
mod parse;
mod patch;
#[cfg(test)]
mod tests;
mod values;

pub use list::*;
pub use parse::*;
pub use patch::OptionsPatch;
pub use values::*;

/// The effective execution options: what a call runs under.
///
/// Read them with [`get_execution_options`](crate::get_execution_options); change them with
/// `execution_options!` (scoped), `set_execution_options!` (global) or an [`OptionsPatch`].
/// Every value this struct can hold through the public constructors is valid: worker counts are
/// at least 1, timeouts are positive, rate limits are finite and positive,
/// cache directories are non-empty, and `scheduler` never contradicts `use_parallel`.
///
/// ```
/// use xcs::ExecutionOptions;
/// let defaults = ExecutionOptions::default();
/// assert!(defaults.use_parallel);
/// assert_eq!(defaults.max_workers, None);
/// assert_eq!(defaults.timeout_seconds, None);
/// assert_eq!(defaults.max_retries, 0);
/// assert_eq!(defaults.rate_limit, None);
/// assert_eq!(defaults.cache_dir, None);
/// assert!(!defaults.show_progress);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct ExecutionOptions {
    /// Run batch items in parallel where possible. Default `true`.
    pub use_parallel: bool,
    /// The most items of a batch running at once, at every level of nesting; `None` means one
    /// per CPU. Any count of at least 1: an explicit count above the CPU count runs that many
    /// items at once (for items that wait on I/O); a sync batch uses at most [`MAX_WORKERS`]
    /// threads, an async batch keeps this many items in flight however large. Default `None`.
    pub max_workers: Option<NonZeroUsize>,
    /// Which backend runs batches. Default [`DeviceStrategy::Auto`].
    pub device_strategy: DeviceStrategy,
    /// Memoize operator calls by input. Default `false`.
    pub enable_caching: bool,
    /// Record every operator call and batch item. Default `false`.
    pub trace_execution: bool,
    /// A deadline for each whole call. Default `None`.
    pub timeout_seconds: Option<Duration>,
    /// The legacy scheduler, if one was set. Default `None`.
    pub scheduler: Option<Scheduler>,
    /// How many more times a call (each item of a batch on its own) runs after its body fails
    /// with a retryable error. Default `0`.
    pub max_retries: u32,
    /// The most calls of one operator (by name) started per second, process-wide; always finite
    /// and greater than 0. `None`: no limit. Default `None`.
    pub rate_limit: Option<f64>,
    /// A directory where `enable_caching` also keeps results, shared across processes. `None`:
    /// the memory cache only. Default `None`.
    pub cache_dir: Option<CacheDir>,
    /// Draw a progress bar for every batch on standard error. Default `false`.
    pub show_progress: bool,
}

impl ExecutionOptions {
    /// The defaults, usable in `const` context.
    pub const DEFAULT: ExecutionOptions = ExecutionOptions {
        use_parallel: true,
        max_workers: None,
        device_strategy: DeviceStrategy::Auto,
        enable_caching: false,
        trace_execution: false,
        timeout_seconds: None,
        scheduler: None,
        max_retries: 0,
        rate_limit: None,
        cache_dir: None,
        show_progress: false,
    };

    /// Whether a call under these options does more than run its body (besides a deadline):
    /// caching, tracing, retries or a rate limit. `false` is the fast path.
    #[inline]
    pub(crate) fn has_call_policy(&self) -> bool {
        self.enable_caching
            || self.trace_execution
            || self.max_retries > 0
            || self.rate_limit.is_some()
    }

    /// These options with `patch` applied on top (what a scope does).
    #[inline]
    pub fn patched(mut self, patch: &OptionsPatch) -> ExecutionOptions {
        patch.apply_to(&mut self);
        self
    }
}

impl Default for ExecutionOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}
