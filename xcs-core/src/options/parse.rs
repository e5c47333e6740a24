//! The value parsers every route shares: configuration, the environment and the macros.

use std::num::NonZeroUsize;
use std::time::Duration;

use super::list::OptionSpec;
use super::values::{CacheDir, DeviceStrategy, Hedge, Scheduler};
use crate::error::XcsError;

pub(super) fn invalid(spec: &OptionSpec, value: &str) -> XcsError {
    XcsError::InvalidValue {
        option: spec.name.to_owned(),
        value: value.to_owned(),
        expected: spec.expected.to_owned(),
    }
}

pub(super) fn is_none_word(value: &str) -> bool {
    value.eq_ignore_ascii_case("none") || value.eq_ignore_ascii_case("null")
}

/// Parses a boolean: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off` (any case).
pub fn parse_bool(spec: &OptionSpec, value: &str) -> Result<bool, XcsError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(spec, value)),
    }
}

/// Parses a worker count: an integer of at least 1, or `none`. A count too large for a `usize`
/// reads as `usize::MAX` (no batch could tell the two apart).
pub fn parse_workers(spec: &OptionSpec, value: &str) -> Result<Option<NonZeroUsize>, XcsError> {
    if is_none_word(value) {
        return Ok(None);
    }
    match value.parse::<NonZeroUsize>() {
        Ok(n) => Ok(Some(n)),
        Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => Ok(Some(NonZeroUsize::MAX)),
        Err(_) => Err(invalid(spec, value)),
    }
}

/// Parses a timeout in seconds: a finite number > 0 (integer or float), or `none`.
pub fn parse_timeout(spec: &OptionSpec, value: &str) -> Result<Option<Duration>, XcsError> {
    if is_none_word(value) {
        return Ok(None);
    }
    let seconds: f64 = value.parse().map_err(|_| invalid(spec, value))?;
    timeout_from_secs(seconds)
        .map(Some)
        .ok_or_else(|| invalid(spec, value))
}

/// A timeout of `seconds`, if that is a valid one (finite, > 0, representable).
pub fn timeout_from_secs(seconds: f64) -> Option<Duration> {
    if !seconds.is_finite() || seconds <= 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
}

/// Parses a device strategy: `auto`, `cpu`, `gpu` (any case), or any other non-empty name, read
/// as [`DeviceStrategy::named`]. Whether a backend is registered under that name is not the
/// options' to know: [`OptionsPatch::from_pairs`](super::OptionsPatch::from_pairs) checks it
/// against the registry, and a batch run under an unregistered one fails with
/// [`XcsError::DeviceUnavailable`].
pub fn parse_device(spec: &OptionSpec, value: &str) -> Result<DeviceStrategy, XcsError> {
    if value.is_empty() {
        return Err(invalid(spec, value));
    }
    Ok(DeviceStrategy::named(value))
}

/// Parses a legacy scheduler name, or `none`.
pub fn parse_scheduler(spec: &OptionSpec, value: &str) -> Result<Option<Scheduler>, XcsError> {
    if is_none_word(value) {
        return Ok(None);
    }
    Scheduler::from_name(value)
        .map(Some)
        .ok_or_else(|| invalid(spec, value))
}

/// Parses a retry count: an integer from 0 to `u32::MAX`.
pub fn parse_retries(spec: &OptionSpec, value: &str) -> Result<u32, XcsError> {
    value.parse::<u32>().map_err(|_| invalid(spec, value))
}

/// Parses a rate in calls per second: a finite number > 0 (integer or float), or `none`.
pub fn parse_rate(spec: &OptionSpec, value: &str) -> Result<Option<f64>, XcsError> {
    if is_none_word(value) {
        return Ok(None);
    }
    let rate: f64 = value.parse().map_err(|_| invalid(spec, value))?;
    rate_limit_from(rate)
        .map(Some)
        .ok_or_else(|| invalid(spec, value))
}

/// `per_second`, if it is a valid `rate_limit` (finite and greater than 0).
pub fn rate_limit_from(per_second: f64) -> Option<f64> {
    (per_second.is_finite() && per_second > 0.0).then_some(per_second)
}

/// Parses a token budget: an integer of at least 1, or `none`. A budget too large for a `u64`
/// reads as `u64::MAX` (no run could tell the two apart).
pub fn parse_token_budget(spec: &OptionSpec, value: &str) -> Result<Option<u64>, XcsError> {
    if is_none_word(value) {
        return Ok(None);
    }
    match value.parse::<u64>() {
        Ok(0) => Err(invalid(spec, value)),
        Ok(n) => Ok(Some(n)),
        Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => Ok(Some(u64::MAX)),
        Err(_) => Err(invalid(spec, value)),
    }
}

/// Parses a cost budget: a finite number > 0 (integer or float), or `none`.
pub fn parse_cost_budget(spec: &OptionSpec, value: &str) -> Result<Option<f64>, XcsError> {
    if is_none_word(value) {
        return Ok(None);
    }
    let cost: f64 = value.parse().map_err(|_| invalid(spec, value))?;
    cost_budget_from(cost)
        .map(Some)
        .ok_or_else(|| invalid(spec, value))
}

/// `cost`, if it is a valid `cost_budget` (finite and greater than 0).
pub fn cost_budget_from(cost: f64) -> Option<f64> {
    (cost.is_finite() && cost > 0.0).then_some(cost)
}

/// Parses a hedging rule: `p50` … `p99` (any case), a finite number of seconds > 0, or `none`
/// (see [`Hedge::parse`]).
pub fn parse_hedge(spec: &OptionSpec, value: &str) -> Result<Option<Hedge>, XcsError> {
    if is_none_word(value) {
        return Ok(None);
    }
    Hedge::parse(value)
        .map(Some)
        .ok_or_else(|| invalid(spec, value))
}

/// Parses a cache directory: a non-empty path, or `none`.
pub fn parse_cache_dir(spec: &OptionSpec, value: &str) -> Result<Option<CacheDir>, XcsError> {
    if is_none_word(value) {
        return Ok(None);
    }
    CacheDir::new(value)
        .map(Some)
        .map_err(|_| invalid(spec, value))
}

// Made here, beside the table it suggests from, so that the error type needs no option table.
impl XcsError {
    /// An unknown option name, with the nearest valid option as a suggestion.
    pub fn invalid_option(name: &str) -> XcsError {
        XcsError::InvalidOption {
            name: name.to_owned(),
            suggestion: super::suggest(name),
        }
    }
}
