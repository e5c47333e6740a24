//! Conversions of non-literal macro arguments into option values.
//!
//! `execution_options!(max_workers = n => …)` accepts any value whose type fits: for
//! `max_workers` a `usize`, `NonZeroUsize`, or an `Option` of either; for `timeout_seconds` an
//! `f64`, `f32`, `u64`, `Duration` or an `Option` of them; for `max_retries` a `u32`; for
//! `rate_limit` an `f64` or `Option<f64>`; for `cache_dir` a `&str`, `String`, `&Path`, `PathBuf`,
//! [`CacheDir`] or an `Option` of them; for `token_budget` a `u64`, `u32`, `usize`, `NonZeroU64`
//! or an `Option` of them; for `cost_budget` an `f64`, `f32` or an `Option` of either; for
//! `hedge_after` a [`Hedge`], `Duration`, `f64` (seconds), `&str` (`"p95"`) or an `Option` of
//! them. Literals are checked by the macro at compile time; these
//! traits check the rest at run time and panic with a message naming the option, as the macros
//! document under `# Panics`. Untrusted values should go through
//! [`OptionsPatch::from_pairs`](crate::OptionsPatch::from_pairs) instead, which returns errors.
//!
//! `set_resource_limits!` converts its non-literal values here too: a rate per minute from an
//! `f64`, `f32`, `u32`, `u64` or `usize`, a count from a `usize`, `u32`, `u64` or
//! `NonZeroUsize`, and the resource's name from a `&str`.
//!
//! A value of another type is a compile error that names the option and the types it takes
//! (`#[diagnostic::on_unimplemented]`), not one about these traits.

use std::num::{NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::options::{
    CacheDir, DeviceStrategy, Hedge, Scheduler, cost_budget_from, rate_limit_from,
    timeout_from_secs,
};

/// A value `max_workers` can be set from.
#[diagnostic::on_unimplemented(
    message = "`max_workers` takes a `usize`, `NonZeroUsize` or `Option` of them, not `{Self}`",
    label = "expected a worker count",
    note = "convert other integers with `usize::try_from(value)`; parse configuration with `OptionsPatch::from_pairs`"
)]
pub trait IntoMaxWorkers {
    /// The worker count, or `None` for one per CPU. Panics on 0; any other count is kept (a
    /// sync batch uses at most [`MAX_WORKERS`](crate::options::MAX_WORKERS) threads).
    fn into_max_workers(self) -> Option<NonZeroUsize>;
}

impl IntoMaxWorkers for NonZeroUsize {
    fn into_max_workers(self) -> Option<NonZeroUsize> {
        Some(self)
    }
}

impl IntoMaxWorkers for usize {
    #[track_caller]
    fn into_max_workers(self) -> Option<NonZeroUsize> {
        match NonZeroUsize::new(self) {
            Some(n) => n.into_max_workers(),
            None => panic!("execution option `max_workers` may not be 0"),
        }
    }
}

#[diagnostic::do_not_recommend]
impl<T: IntoMaxWorkers> IntoMaxWorkers for Option<T> {
    #[track_caller]
    fn into_max_workers(self) -> Option<NonZeroUsize> {
        self.and_then(IntoMaxWorkers::into_max_workers)
    }
}

/// A value `timeout_seconds` can be set from.
#[diagnostic::on_unimplemented(
    message = "`timeout_seconds` takes an `f64`, `f32`, `u64`, `Duration` or `Option` of them, not `{Self}`",
    label = "expected a number of seconds or a `Duration`",
    note = "convert other numbers with `f64::from(value)`; parse configuration with `OptionsPatch::from_pairs`"
)]
pub trait IntoTimeout {
    /// The timeout, or `None` for no deadline. Panics on a value that is not > 0 and finite.
    fn into_timeout(self) -> Option<Duration>;
}

#[track_caller]
fn bad_timeout(shown: &dyn std::fmt::Display) -> ! {
    panic!(
        "execution option `timeout_seconds` must be a finite number of seconds greater than 0, got {shown}"
    )
}

impl IntoTimeout for f64 {
    #[track_caller]
    fn into_timeout(self) -> Option<Duration> {
        match timeout_from_secs(self) {
            Some(d) => Some(d),
            None => bad_timeout(&self),
        }
    }
}

impl IntoTimeout for f32 {
    #[track_caller]
    fn into_timeout(self) -> Option<Duration> {
        f64::from(self).into_timeout()
    }
}

impl IntoTimeout for u64 {
    #[track_caller]
    fn into_timeout(self) -> Option<Duration> {
        if self == 0 {
            bad_timeout(&self)
        }
        Some(Duration::from_secs(self))
    }
}

impl IntoTimeout for Duration {
    #[track_caller]
    fn into_timeout(self) -> Option<Duration> {
        if self.is_zero() {
            bad_timeout(&"0s")
        }
        Some(self)
    }
}

#[diagnostic::do_not_recommend]
impl<T: IntoTimeout> IntoTimeout for Option<T> {
    #[track_caller]
    fn into_timeout(self) -> Option<Duration> {
        self.and_then(IntoTimeout::into_timeout)
    }
}

/// A value `scheduler` can be set from.
#[diagnostic::on_unimplemented(
    message = "`scheduler` takes a `Scheduler` or `Option<Scheduler>`, not `{Self}`",
    label = "expected a `Scheduler`",
    note = "look a name up with `Scheduler::from_name`"
)]
pub trait IntoScheduler {
    /// The scheduler, or `None` to unset it.
    fn into_scheduler(self) -> Option<Scheduler>;
}

impl IntoScheduler for Scheduler {
    fn into_scheduler(self) -> Option<Scheduler> {
        Some(self)
    }
}

impl IntoScheduler for Option<Scheduler> {
    fn into_scheduler(self) -> Option<Scheduler> {
        self
    }
}

/// A value `max_retries` can be set from.
#[diagnostic::on_unimplemented(
    message = "`max_retries` takes a `u32`, not `{Self}`",
    label = "expected a retry count",
    note = "convert other integers with `u32::try_from(value)`; parse configuration with `OptionsPatch::from_pairs`"
)]
pub trait IntoMaxRetries {
    /// The retry count.
    fn into_max_retries(self) -> u32;
}

impl IntoMaxRetries for u32 {
    fn into_max_retries(self) -> u32 {
        self
    }
}

/// A value `rate_limit` can be set from.
#[diagnostic::on_unimplemented(
    message = "`rate_limit` takes an `f64` (calls per second) or `Option<f64>`, not `{Self}`",
    label = "expected calls per second",
    note = "convert other numbers with `f64::from(value)`; parse configuration with `OptionsPatch::from_pairs`"
)]
pub trait IntoRateLimit {
    /// Calls per second, or `None` for no limit. Panics on a value that is not > 0 and finite.
    fn into_rate_limit(self) -> Option<f64>;
}

impl IntoRateLimit for f64 {
    #[track_caller]
    fn into_rate_limit(self) -> Option<f64> {
        match rate_limit_from(self) {
            Some(rate) => Some(rate),
            None => panic!(
                "execution option `rate_limit` must be a finite number of calls per second greater than 0, got {self}"
            ),
        }
    }
}

impl IntoRateLimit for Option<f64> {
    #[track_caller]
    fn into_rate_limit(self) -> Option<f64> {
        self.and_then(IntoRateLimit::into_rate_limit)
    }
}

/// A value `cache_dir` can be set from.
#[diagnostic::on_unimplemented(
    message = "`cache_dir` takes a `&str`, `String`, `&Path`, `PathBuf`, `CacheDir` or `Option` of them, not `{Self}`",
    label = "expected a directory path",
    note = "build other paths with `CacheDir::new(path)?`"
)]
pub trait IntoCacheDir {
    /// The cache directory, or `None` for the memory cache only. Panics on an empty path.
    fn into_cache_dir(self) -> Option<CacheDir>;
}

#[track_caller]
fn cache_dir_at(path: &Path) -> Option<CacheDir> {
    match CacheDir::new(path) {
        Ok(dir) => Some(dir),
        Err(_) => panic!("execution option `cache_dir` may not be an empty path"),
    }
}

impl IntoCacheDir for CacheDir {
    fn into_cache_dir(self) -> Option<CacheDir> {
        Some(self)
    }
}

impl IntoCacheDir for &str {
    #[track_caller]
    fn into_cache_dir(self) -> Option<CacheDir> {
        cache_dir_at(Path::new(self))
    }
}

impl IntoCacheDir for String {
    #[track_caller]
    fn into_cache_dir(self) -> Option<CacheDir> {
        cache_dir_at(Path::new(&self))
    }
}

impl IntoCacheDir for &String {
    #[track_caller]
    fn into_cache_dir(self) -> Option<CacheDir> {
        cache_dir_at(Path::new(self))
    }
}

impl IntoCacheDir for &Path {
    #[track_caller]
    fn into_cache_dir(self) -> Option<CacheDir> {
        cache_dir_at(self)
    }
}

impl IntoCacheDir for PathBuf {
    #[track_caller]
    fn into_cache_dir(self) -> Option<CacheDir> {
        cache_dir_at(&self)
    }
}

impl IntoCacheDir for &PathBuf {
    #[track_caller]
    fn into_cache_dir(self) -> Option<CacheDir> {
        cache_dir_at(self)
    }
}

#[diagnostic::do_not_recommend]
impl<T: IntoCacheDir> IntoCacheDir for Option<T> {
    #[track_caller]
    fn into_cache_dir(self) -> Option<CacheDir> {
        self.and_then(IntoCacheDir::into_cache_dir)
    }
}

/// A value `token_budget` can be set from.
#[diagnostic::on_unimplemented(
    message = "`token_budget` takes a `u64`, `u32`, `usize`, `NonZeroU64` or `Option` of them, not `{Self}`",
    label = "expected a number of tokens",
    note = "convert other integers with `u64::try_from(value)`; parse configuration with `OptionsPatch::from_pairs`"
)]
pub trait IntoTokenBudget {
    /// The budget in tokens, or `None` for no limit. Panics on 0.
    fn into_token_budget(self) -> Option<u64>;
}

impl IntoTokenBudget for u64 {
    #[track_caller]
    fn into_token_budget(self) -> Option<u64> {
        if self == 0 {
            panic!("execution option `token_budget` may not be 0");
        }
        Some(self)
    }
}

impl IntoTokenBudget for NonZeroU64 {
    fn into_token_budget(self) -> Option<u64> {
        Some(self.get())
    }
}

impl IntoTokenBudget for u32 {
    #[track_caller]
    fn into_token_budget(self) -> Option<u64> {
        u64::from(self).into_token_budget()
    }
}

impl IntoTokenBudget for usize {
    #[track_caller]
    fn into_token_budget(self) -> Option<u64> {
        // A `usize` beyond `u64` (on no target today) is as good as no limit.
        u64::try_from(self).unwrap_or(u64::MAX).into_token_budget()
    }
}

#[diagnostic::do_not_recommend]
impl<T: IntoTokenBudget> IntoTokenBudget for Option<T> {
    #[track_caller]
    fn into_token_budget(self) -> Option<u64> {
        self.and_then(IntoTokenBudget::into_token_budget)
    }
}

/// A value `cost_budget` can be set from.
#[diagnostic::on_unimplemented(
    message = "`cost_budget` takes an `f64`, `f32` or `Option` of either, not `{Self}`",
    label = "expected an amount of money",
    note = "convert other numbers with `f64::from(value)`; parse configuration with `OptionsPatch::from_pairs`"
)]
pub trait IntoCostBudget {
    /// The budget, or `None` for no limit. Panics on a value that is not > 0 and finite.
    fn into_cost_budget(self) -> Option<f64>;
}

impl IntoCostBudget for f64 {
    #[track_caller]
    fn into_cost_budget(self) -> Option<f64> {
        match cost_budget_from(self) {
            Some(cost) => Some(cost),
            None => panic!(
                "execution option `cost_budget` must be a finite number greater than 0, got {self}"
            ),
        }
    }
}

impl IntoCostBudget for f32 {
    #[track_caller]
    fn into_cost_budget(self) -> Option<f64> {
        f64::from(self).into_cost_budget()
    }
}

#[diagnostic::do_not_recommend]
impl<T: IntoCostBudget> IntoCostBudget for Option<T> {
    #[track_caller]
    fn into_cost_budget(self) -> Option<f64> {
        self.and_then(IntoCostBudget::into_cost_budget)
    }
}

/// `token_budget` from a non-literal value. Panics on 0.
#[track_caller]
pub fn token_budget(value: impl IntoTokenBudget) -> Option<u64> {
    value.into_token_budget()
}

/// `cost_budget` from a non-literal value. Panics on a value that is not > 0 and finite.
#[track_caller]
pub fn cost_budget(value: impl IntoCostBudget) -> Option<f64> {
    value.into_cost_budget()
}

/// A value `hedge_after` can be set from.
#[diagnostic::on_unimplemented(
    message = "`hedge_after` takes a `Hedge`, `Duration`, `f64` (seconds), `&str` (\"p95\") or `Option` of them, not `{Self}`",
    label = "expected a hedging delay or quantile",
    note = "build one with `xcs::Hedge::after` or `xcs::Hedge::quantile`; parse configuration with `OptionsPatch::from_pairs`"
)]
pub trait IntoHedge {
    /// The hedging rule, or `None` for no hedging. Panics on a zero, negative or non-finite
    /// delay and on a quantile outside `"p50"` … `"p99"`.
    fn into_hedge(self) -> Option<Hedge>;
}

#[track_caller]
fn bad_hedge(shown: &dyn std::fmt::Display) -> ! {
    panic!(
        "execution option `hedge_after` must be a number of seconds greater than 0 or a quantile from \"p50\" to \"p99\", got {shown}"
    )
}

impl IntoHedge for Hedge {
    fn into_hedge(self) -> Option<Hedge> {
        Some(self)
    }
}

impl IntoHedge for Duration {
    #[track_caller]
    fn into_hedge(self) -> Option<Hedge> {
        match Hedge::after(self) {
            Some(hedge) => Some(hedge),
            None => bad_hedge(&"0s"),
        }
    }
}

impl IntoHedge for f64 {
    #[track_caller]
    fn into_hedge(self) -> Option<Hedge> {
        match timeout_from_secs(self).and_then(Hedge::after) {
            Some(hedge) => Some(hedge),
            None => bad_hedge(&self),
        }
    }
}

impl IntoHedge for &str {
    #[track_caller]
    fn into_hedge(self) -> Option<Hedge> {
        match Hedge::parse(self) {
            Some(hedge) => Some(hedge),
            None => bad_hedge(&format_args!("{self:?}")),
        }
    }
}

#[diagnostic::do_not_recommend]
impl<T: IntoHedge> IntoHedge for Option<T> {
    #[track_caller]
    fn into_hedge(self) -> Option<Hedge> {
        self.and_then(IntoHedge::into_hedge)
    }
}

/// `hedge_after` from a value (the macros pass literals through here too, checked already).
/// Panics on an invalid one.
#[track_caller]
pub fn hedge_after(value: impl IntoHedge) -> Option<Hedge> {
    value.into_hedge()
}

/// A value a per-minute resource limit (`requests_per_minute`, `tokens_per_minute`) can be set
/// from.
#[diagnostic::on_unimplemented(
    message = "a per-minute resource limit takes an `f64`, `f32`, `u32`, `u64` or `usize`, not `{Self}`",
    label = "expected a number per minute",
    note = "convert other numbers with `f64::from(value)`; parse configuration with `ResourceLimits::from_pairs`"
)]
pub trait IntoPerMinute {
    /// The number per minute, as given (checked by [`limit_per_minute`]).
    fn into_per_minute(self) -> f64;
}

impl IntoPerMinute for f64 {
    fn into_per_minute(self) -> f64 {
        self
    }
}

impl IntoPerMinute for f32 {
    fn into_per_minute(self) -> f64 {
        f64::from(self)
    }
}

impl IntoPerMinute for u32 {
    fn into_per_minute(self) -> f64 {
        f64::from(self)
    }
}

impl IntoPerMinute for u64 {
    fn into_per_minute(self) -> f64 {
        self as f64
    }
}

impl IntoPerMinute for usize {
    fn into_per_minute(self) -> f64 {
        self as f64
    }
}

/// A value a counting resource limit (`max_in_flight`) can be set from.
#[diagnostic::on_unimplemented(
    message = "a counting resource limit takes a `usize`, `u32`, `u64` or `NonZeroUsize`, not `{Self}`",
    label = "expected a count",
    note = "convert other integers with `usize::try_from(value)`; parse configuration with `ResourceLimits::from_pairs`"
)]
pub trait IntoLimitCount {
    /// The count, as given (checked by [`limit_count`]).
    fn into_limit_count(self) -> usize;
}

impl IntoLimitCount for usize {
    fn into_limit_count(self) -> usize {
        self
    }
}

impl IntoLimitCount for NonZeroUsize {
    fn into_limit_count(self) -> usize {
        self.get()
    }
}

impl IntoLimitCount for u32 {
    fn into_limit_count(self) -> usize {
        usize::try_from(self).unwrap_or(usize::MAX)
    }
}

impl IntoLimitCount for u64 {
    fn into_limit_count(self) -> usize {
        usize::try_from(self).unwrap_or(usize::MAX)
    }
}

/// The resource limit `limit` (a rate per minute) from a non-literal value. Panics on a value
/// that is not > 0 and finite.
#[track_caller]
pub fn limit_per_minute(value: impl IntoPerMinute, limit: &str) -> f64 {
    let value = value.into_per_minute();
    match crate::resource_table::per_minute_from(value) {
        Some(value) => value,
        None => {
            panic!("resource limit `{limit}` must be a finite number greater than 0, got {value}")
        }
    }
}

/// The resource limit `limit` (a count) from a non-literal value. Panics on 0.
#[track_caller]
pub fn limit_count(value: impl IntoLimitCount, limit: &str) -> usize {
    match value.into_limit_count() {
        0 => panic!("resource limit `{limit}` may not be 0"),
        n => n,
    }
}

/// A value a resource limit in seconds (`cooldown_seconds`) can be set from.
#[diagnostic::on_unimplemented(
    message = "a resource limit in seconds takes an `f64`, `f32`, `u32`, `u64` or `Duration`, not `{Self}`",
    label = "expected a number of seconds",
    note = "convert other numbers with `f64::from(value)`; parse configuration with `ResourceLimits::from_pairs`"
)]
pub trait IntoLimitSeconds {
    /// The number of seconds, as given (checked by [`limit_seconds`]).
    fn into_limit_seconds(self) -> f64;
}

impl IntoLimitSeconds for f64 {
    fn into_limit_seconds(self) -> f64 {
        self
    }
}

impl IntoLimitSeconds for f32 {
    fn into_limit_seconds(self) -> f64 {
        f64::from(self)
    }
}

impl IntoLimitSeconds for u32 {
    fn into_limit_seconds(self) -> f64 {
        f64::from(self)
    }
}

impl IntoLimitSeconds for u64 {
    fn into_limit_seconds(self) -> f64 {
        self as f64
    }
}

impl IntoLimitSeconds for Duration {
    fn into_limit_seconds(self) -> f64 {
        self.as_secs_f64()
    }
}

/// The resource limit `limit` (a number of seconds) from a non-literal value. Panics on a value
/// that is not > 0 and finite.
#[track_caller]
pub fn limit_seconds(value: impl IntoLimitSeconds, limit: &str) -> f64 {
    let value = value.into_limit_seconds();
    match crate::resource_table::per_minute_from(value) {
        Some(value) => value,
        None => {
            panic!(
                "resource limit `{limit}` must be a finite number of seconds greater than 0, got {value}"
            )
        }
    }
}

/// A counting resource limit from a literal the macro has checked to be at least 1 but that
/// may not fit a `usize` of the target: a larger count reads as `usize::MAX`.
pub const fn limit_count_literal(value: u128) -> usize {
    if value > usize::MAX as u128 {
        usize::MAX
    } else {
        value as usize
    }
}

/// The resource name of `set_resource_limits!` from a non-literal value. Panics on an empty
/// name.
#[track_caller]
pub fn resource_name(name: &str) -> &str {
    if name.is_empty() {
        panic!("`set_resource_limits!` needs a non-empty resource name");
    }
    name
}

/// `max_workers` from a non-literal value. Panics on 0; any other count is kept.
#[track_caller]
pub fn max_workers(value: impl IntoMaxWorkers) -> Option<NonZeroUsize> {
    value.into_max_workers()
}

/// `max_workers` from a literal the macro has checked to be at least 1 but that may not fit a
/// `usize` of the target: a larger count reads as `usize::MAX`.
pub const fn max_workers_literal(value: u128) -> Option<NonZeroUsize> {
    let n = if value > usize::MAX as u128 {
        usize::MAX
    } else {
        value as usize
    };
    NonZeroUsize::new(n)
}

/// `timeout_seconds` from a non-literal value. Panics on a value that is not > 0 and finite.
#[track_caller]
pub fn timeout_seconds(value: impl IntoTimeout) -> Option<Duration> {
    value.into_timeout()
}

/// `scheduler` from a non-literal value.
pub fn scheduler(value: impl IntoScheduler) -> Option<Scheduler> {
    value.into_scheduler()
}

/// `device_strategy` from a non-literal value.
pub fn device_strategy(value: DeviceStrategy) -> DeviceStrategy {
    value
}

/// A boolean option from a non-literal value.
pub fn flag(value: bool) -> bool {
    value
}

/// `max_retries` from a non-literal value.
pub fn max_retries(value: impl IntoMaxRetries) -> u32 {
    value.into_max_retries()
}

/// `rate_limit` from a non-literal value. Panics on a value that is not > 0 and finite.
#[track_caller]
pub fn rate_limit(value: impl IntoRateLimit) -> Option<f64> {
    value.into_rate_limit()
}

/// `cache_dir` from a non-literal value (and from a literal the macro has checked). Panics on an
/// empty path.
#[track_caller]
pub fn cache_dir(value: impl IntoCacheDir) -> Option<CacheDir> {
    value.into_cache_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_fitting_types() {
        assert_eq!(max_workers(3usize), NonZeroUsize::new(3));
        assert_eq!(max_workers(None::<usize>), None);
        assert_eq!(max_workers(NonZeroUsize::new(2)), NonZeroUsize::new(2));
        assert_eq!(timeout_seconds(0.5), Some(Duration::from_millis(500)));
        assert_eq!(
            timeout_seconds(Some(Duration::from_secs(1))),
            Some(Duration::from_secs(1))
        );
        assert_eq!(timeout_seconds(None::<f64>), None);
    }

    #[test]
    fn max_workers_of_any_size_are_kept() {
        assert_eq!(max_workers(usize::MAX), Some(NonZeroUsize::MAX));
        assert_eq!(max_workers(NonZeroUsize::MAX), Some(NonZeroUsize::MAX));
        assert_eq!(
            max_workers(Some(1_000_000usize)),
            NonZeroUsize::new(1_000_000)
        );
        assert_eq!(max_workers(5000usize), NonZeroUsize::new(5000));
        assert_eq!(max_workers_literal(5000), NonZeroUsize::new(5000));
        assert_eq!(max_workers_literal(u128::MAX), Some(NonZeroUsize::MAX));
    }

    #[test]
    fn converts_the_new_options() {
        assert_eq!(max_retries(3u32), 3);
        assert_eq!(rate_limit(2.5), Some(2.5));
        assert_eq!(rate_limit(Some(1.0)), Some(1.0));
        assert_eq!(rate_limit(None), None);
        let dir = CacheDir::new("/tmp/xcs-convert").unwrap();
        assert_eq!(cache_dir(dir), Some(dir));
        assert_eq!(cache_dir("/tmp/xcs-convert"), Some(dir));
        let owned = String::from("/tmp/xcs-convert");
        assert_eq!(cache_dir(&owned), Some(dir));
        assert_eq!(cache_dir(owned), Some(dir));
        let path_buf = PathBuf::from("/tmp/xcs-convert");
        assert_eq!(cache_dir(&path_buf), Some(dir));
        assert_eq!(cache_dir(path_buf), Some(dir));
        assert_eq!(cache_dir(Path::new("/tmp/xcs-convert")), Some(dir));
        assert_eq!(cache_dir(Some("/tmp/xcs-convert")), Some(dir));
        assert_eq!(cache_dir(None::<PathBuf>), None);
    }

    #[test]
    #[should_panic(expected = "execution option `rate_limit` must be a finite number")]
    fn zero_rate_panics() {
        let _ = rate_limit(0.0);
    }

    #[test]
    #[should_panic(expected = "execution option `rate_limit` must be a finite number")]
    fn infinite_rate_panics() {
        let _ = rate_limit(Some(f64::INFINITY));
    }

    #[test]
    #[should_panic(expected = "execution option `rate_limit` must be a finite number")]
    fn nan_rate_panics() {
        let _ = rate_limit(f64::NAN);
    }

    #[test]
    fn converts_budgets() {
        assert_eq!(token_budget(100u64), Some(100));
        assert_eq!(token_budget(7u32), Some(7));
        assert_eq!(token_budget(9usize), Some(9));
        assert_eq!(token_budget(NonZeroU64::new(3)), Some(3));
        assert_eq!(token_budget(None::<u64>), None);
        assert_eq!(cost_budget(0.5), Some(0.5));
        assert_eq!(cost_budget(2.0f32), Some(2.0));
        assert_eq!(cost_budget(Some(1.5)), Some(1.5));
        assert_eq!(cost_budget(None::<f64>), None);
    }

    #[test]
    fn converts_resource_limits() {
        assert_eq!(limit_per_minute(500u32, "requests_per_minute"), 500.0);
        assert_eq!(limit_per_minute(0.5f32, "requests_per_minute"), 0.5);
        assert_eq!(limit_per_minute(30_000u64, "tokens_per_minute"), 30_000.0);
        assert_eq!(limit_per_minute(7usize, "tokens_per_minute"), 7.0);
        assert_eq!(limit_count(64usize, "max_in_flight"), 64);
        assert_eq!(limit_count(8u32, "max_in_flight"), 8);
        assert_eq!(limit_count(9u64, "max_in_flight"), 9);
        assert_eq!(limit_count(NonZeroUsize::MIN, "max_in_flight"), 1);
        assert_eq!(limit_count_literal(u128::MAX), usize::MAX);
        assert_eq!(limit_seconds(30u32, "cooldown_seconds"), 30.0);
        assert_eq!(
            limit_seconds(Duration::from_millis(250), "cooldown_seconds"),
            0.25
        );
        assert_eq!(limit_count(5usize, "open_after_failures"), 5);
        assert_eq!(resource_name("openai"), "openai");
    }

    #[test]
    #[should_panic(
        expected = "resource limit `tokens_per_minute` must be a finite number greater than 0, got NaN"
    )]
    fn nan_limit_panics() {
        let _ = limit_per_minute(f64::NAN, "tokens_per_minute");
    }

    #[test]
    #[should_panic(
        expected = "resource limit `requests_per_minute` must be a finite number greater than 0, got -1"
    )]
    fn negative_limit_panics() {
        let _ = limit_per_minute(-1.0, "requests_per_minute");
    }

    #[test]
    #[should_panic(expected = "resource limit `max_in_flight` may not be 0")]
    fn zero_count_panics() {
        let _ = limit_count(0usize, "max_in_flight");
    }

    #[test]
    #[should_panic(expected = "`set_resource_limits!` needs a non-empty resource name")]
    fn empty_resource_name_panics() {
        let _ = resource_name("");
    }

    #[test]
    fn hedge_after_takes_its_forms() {
        let quarter = Hedge::after(Duration::from_millis(250));
        assert_eq!(hedge_after(0.25), quarter);
        assert_eq!(hedge_after(Duration::from_millis(250)), quarter);
        assert_eq!(hedge_after(Some("p95")), Hedge::quantile(95));
        assert_eq!(hedge_after(quarter), quarter);
        assert_eq!(hedge_after(None::<f64>), None);
    }

    #[test]
    #[should_panic(expected = "execution option `hedge_after` must be a number of seconds")]
    fn a_bad_hedge_panics() {
        let _ = hedge_after("p100");
    }

    #[test]
    #[should_panic(expected = "execution option `token_budget` may not be 0")]
    fn zero_token_budget_panics() {
        let _ = token_budget(Some(0u64));
    }

    #[test]
    #[should_panic(
        expected = "execution option `cost_budget` must be a finite number greater than 0, got -0.5"
    )]
    fn negative_cost_budget_panics() {
        let _ = cost_budget(-0.5);
    }

    #[test]
    #[should_panic(expected = "execution option `cost_budget` must be a finite number")]
    fn nan_cost_budget_panics() {
        let _ = cost_budget(f64::NAN);
    }

    #[test]
    #[should_panic(expected = "execution option `cache_dir` may not be an empty path")]
    fn empty_cache_dir_panics() {
        let _ = cache_dir(String::new());
    }

    #[test]
    #[should_panic(expected = "`max_workers` may not be 0")]
    fn zero_workers_panics() {
        let _ = max_workers(0usize);
    }

    #[test]
    #[should_panic(expected = "`timeout_seconds` must be")]
    fn nan_timeout_panics() {
        let _ = timeout_seconds(f64::NAN);
    }
}
