//! Partial updates of the options: what a scope or a global update sets.

use std::ffi::OsStr;
use std::time::Duration;

use super::list::lookup_expected;
use super::list::{OptionSpec, lookup, suggest};
use super::parse::rate_limit_from;
use super::{ExecutionOptions, OptionsPatch};
use crate::error::XcsError;

impl OptionsPatch {
    /// Checks that a `scheduler` in this patch does not contradict its `use_parallel`.
    pub(super) fn check_consistent(&self) -> Result<(), XcsError> {
        if let (Some(use_parallel), Some(Some(scheduler))) = (self.use_parallel, self.scheduler) {
            if scheduler.use_parallel() != use_parallel {
                return Err(XcsError::InvalidValue {
                    option: "scheduler".to_owned(),
                    value: scheduler.as_str().to_owned(),
                    expected: format!(
                        "a scheduler that agrees with `use_parallel = {use_parallel}` \
                         (\"{scheduler}\" means `use_parallel = {}`)",
                        scheduler.use_parallel()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Checks that a `timeout_seconds` in this patch is not zero: a deadline that has passed
    /// before the call starts is always a mistake.
    pub(super) fn check_timeout(&self) -> Result<(), XcsError> {
        if self.timeout_seconds == Some(Some(Duration::ZERO)) {
            return Err(XcsError::InvalidValue {
                option: "timeout_seconds".to_owned(),
                value: "0".to_owned(),
                expected: lookup_expected("timeout_seconds"),
            });
        }
        Ok(())
    }

    /// Checks that a `rate_limit` in this patch is a finite number greater than 0.
    pub(super) fn check_rate_limit(&self) -> Result<(), XcsError> {
        if let Some(Some(rate)) = self.rate_limit {
            if rate_limit_from(rate).is_none() {
                return Err(XcsError::InvalidValue {
                    option: "rate_limit".to_owned(),
                    value: rate.to_string(),
                    expected: lookup_expected("rate_limit"),
                });
            }
        }
        Ok(())
    }

    /// Whether the patch sets nothing.
    pub fn is_empty(&self) -> bool {
        *self == OptionsPatch::new()
    }

    /// This patch with `other` applied on top (`other` wins where both set an option).
    pub fn merged(mut self, other: &OptionsPatch) -> OptionsPatch {
        self.take_plain(other);
        // `use_parallel` and `scheduler` go together: the newer statement of either wins, and a
        // scheduler left over from below that contradicts a newer `use_parallel` is dropped.
        if other.use_parallel.is_some() || other.scheduler.is_some() {
            if let Some(use_parallel) = other.use_parallel {
                self.use_parallel = Some(use_parallel);
                if other.scheduler.is_none() {
                    if let Some(Some(old)) = self.scheduler {
                        if old.use_parallel() != use_parallel {
                            self.scheduler = Some(None);
                        }
                    }
                }
            }
            if let Some(scheduler) = other.scheduler {
                self.scheduler = Some(scheduler);
                if let Some(s) = scheduler {
                    self.use_parallel = Some(s.use_parallel());
                }
            }
        }
        self
    }

    /// Applies this patch to `options`: what it sets replaces what was there.
    #[inline]
    pub fn apply_to(&self, options: &mut ExecutionOptions) {
        self.apply_plain(options);
        if let Some(use_parallel) = self.use_parallel {
            options.use_parallel = use_parallel;
            // A newer `use_parallel` overrides an inherited legacy scheduler that says otherwise.
            if options
                .scheduler
                .is_some_and(|s| s.use_parallel() != use_parallel)
            {
                options.scheduler = None;
            }
        }
        if let Some(scheduler) = self.scheduler {
            options.scheduler = scheduler;
            if let Some(s) = scheduler {
                options.use_parallel = s.use_parallel();
            }
        }
    }
}

/// Reads options by name from configuration, one `(name, value)` pair at a time: every name
/// known and given once, every value one its option can take. A value naming a backend is read
/// as a [`DeviceStrategy`](super::DeviceStrategy) here and left to the caller to check against
/// the backends registered (the options know no registry).
pub(crate) struct Parser {
    patch: OptionsPatch,
    seen: Vec<&'static str>,
}

impl Parser {
    /// A parser that has read nothing.
    pub(crate) fn new() -> Parser {
        Parser {
            patch: OptionsPatch::new(),
            seen: Vec::new(),
        }
    }

    /// Reads one pair; returns the option's row.
    ///
    /// # Errors
    /// [`XcsError::InvalidOption`] for an unknown name, [`XcsError::InvalidValue`] for a name
    /// read before or a value the option cannot take.
    pub(crate) fn set(&mut self, name: &str, value: &str) -> Result<&'static OptionSpec, XcsError> {
        let spec = lookup(name).ok_or_else(|| XcsError::invalid_option(name))?;
        if self.seen.contains(&spec.name) {
            return Err(XcsError::InvalidValue {
                option: spec.name.to_owned(),
                value: value.to_owned(),
                expected: "the option only once".to_owned(),
            });
        }
        self.seen.push(spec.name);
        self.patch.set_parsed(spec, value)?;
        Ok(spec)
    }

    /// The patch of every pair read.
    ///
    /// # Errors
    /// [`XcsError::InvalidValue`] for a `scheduler` contradicting `use_parallel`.
    pub(crate) fn finish(self) -> Result<OptionsPatch, XcsError> {
        self.patch.check_consistent()?;
        Ok(self.patch)
    }
}

/// The `(option, value)` pairs of the `XCS_<OPTION>` variables among `vars`, sorted, for
/// [`Parser`]: the names lower-cased without their prefix, kept when they name an option or are
/// near one (a likely misspelling, which the parser then reports).
///
/// # Errors
/// [`XcsError::InvalidOption`] for a variable near an option whose name is not valid Unicode,
/// [`XcsError::InvalidValue`] for a kept variable whose value is not.
pub(crate) fn env_pairs<I, K, V>(vars: I) -> Result<Vec<(String, String)>, XcsError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    const PREFIX: &str = "XCS_";
    let mut pairs: Vec<(String, Result<String, String>)> = Vec::new();
    let mut not_unicode: Vec<String> = Vec::new();
    for (key, value) in vars {
        let (key, value) = (key.as_ref(), value.as_ref());
        // Checked on the raw bytes, so a name that is not Unicode cannot hide an option.
        if !key.as_encoded_bytes().starts_with(PREFIX.as_bytes()) {
            continue;
        }
        let Some(key) = key.to_str() else {
            let lossy = key.to_string_lossy();
            let option = lossy.strip_prefix(PREFIX).unwrap_or(&lossy);
            let option = option.to_ascii_lowercase();
            if suggest(&option).is_some() {
                not_unicode.push(option);
            }
            continue;
        };
        let option = key.strip_prefix(PREFIX).unwrap_or(key).to_ascii_lowercase();
        // Another program's variable: neither an option nor a likely misspelling of one.
        if lookup(&option).is_none() && suggest(&option).is_none() {
            continue;
        }
        let value = match value.to_str() {
            Some(value) => Ok(value.to_owned()),
            None => Err(value.to_string_lossy().into_owned()),
        };
        pairs.push((option, value));
    }
    // Deterministic error reporting whatever order the environment lists variables in.
    if let Some(name) = not_unicode.iter().min() {
        return Err(XcsError::invalid_option(name));
    }
    pairs.sort();
    let mut valid = Vec::with_capacity(pairs.len());
    for (option, value) in pairs {
        match value {
            Ok(value) => valid.push((option, value)),
            Err(lossy) => {
                return Err(XcsError::InvalidValue {
                    option,
                    value: lossy,
                    expected: "a value that is valid Unicode".to_owned(),
                });
            }
        }
    }
    Ok(valid)
}
