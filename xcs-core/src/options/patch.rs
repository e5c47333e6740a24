//! Partial updates of the options: what a scope or a global update sets.

use std::ffi::OsStr;
use std::time::Duration;

use super::list::lookup_expected;
use super::list::{OptionSpec, lookup, suggest};
use super::parse::{cost_budget_from, rate_limit_from};
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
            return Err(rejected("timeout_seconds", "0".to_owned()));
        }
        Ok(())
    }

    /// Checks that a `rate_limit` in this patch is a finite number greater than 0.
    pub(super) fn check_rate_limit(&self) -> Result<(), XcsError> {
        if let Some(Some(rate)) = self.rate_limit {
            if rate_limit_from(rate).is_none() {
                return Err(rejected("rate_limit", rate.to_string()));
            }
        }
        Ok(())
    }

    /// The budgets this patch sets, if any: `Some(limit)` (the limit may be `None`) for each
    /// of `token_budget` and `cost_budget` it names.
    pub(crate) fn budgets(&self) -> (Option<Option<u64>>, Option<Option<f64>>) {
        (self.token_budget, self.cost_budget)
    }

    /// Checks that a `token_budget` in this patch is not 0.
    pub(super) fn check_token_budget(&self) -> Result<(), XcsError> {
        if self.token_budget == Some(Some(0)) {
            return Err(rejected("token_budget", "0".to_owned()));
        }
        Ok(())
    }

    /// Checks that a `cost_budget` in this patch is a finite number greater than 0.
    pub(super) fn check_cost_budget(&self) -> Result<(), XcsError> {
        if let Some(Some(cost)) = self.cost_budget {
            if cost_budget_from(cost).is_none() {
                return Err(rejected("cost_budget", cost.to_string()));
            }
        }
        Ok(())
    }

    /// Whether the patch sets nothing.
    pub fn is_empty(&self) -> bool {
        *self == OptionsPatch::new()
    }

    /// This patch with `other` applied on top: `other` wins where both set an option, except
    /// for the budgets (`token_budget`, `cost_budget`), where the narrower of the two wins, as
    /// when a scope opens inside another. Applying the result is applying `self`, then `other`.
    pub fn merged(mut self, other: &OptionsPatch) -> OptionsPatch {
        self.take_unlinked(other);
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

    /// Applies this patch to `options` as a scope does: what it sets replaces what was there,
    /// except the budgets (`token_budget`, `cost_budget`), which it can only narrow: the smaller
    /// of the two stays, `None` counting as no limit.
    ///
    /// ```
    /// use xcs::{ExecutionOptions, OptionsPatch};
    /// let outer = ExecutionOptions::default().patched(&OptionsPatch::new().token_budget(Some(100))?);
    /// let wider = OptionsPatch::new().token_budget(Some(1000))?;
    /// let unset = OptionsPatch::new().token_budget(None)?;
    /// let narrower = OptionsPatch::new().token_budget(Some(10))?;
    /// assert_eq!(outer.patched(&wider).token_budget, Some(100));
    /// assert_eq!(outer.patched(&unset).token_budget, Some(100));
    /// assert_eq!(outer.patched(&narrower).token_budget, Some(10));
    /// # Ok::<(), xcs::XcsError>(())
    /// ```
    #[inline]
    pub fn apply_to(&self, options: &mut ExecutionOptions) {
        self.apply_unlinked(options);
        self.apply_linked(options);
    }

    /// Applies this patch to the global `options`, as `set_execution_options!` and
    /// `set_global_options` do: what it sets replaces what was there, the budgets included (a
    /// global update may widen or clear a global budget).
    #[inline]
    pub(crate) fn apply_as_global(&self, options: &mut ExecutionOptions) {
        self.replace_unlinked(options);
        self.apply_linked(options);
    }

    /// Applies `use_parallel` and `scheduler`, which go together.
    #[inline]
    fn apply_linked(&self, options: &mut ExecutionOptions) {
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

/// A limit that a nested scope can only narrow: `narrowed(outer, inner)` is the tighter of
/// the two, `None` meaning no limit.
pub(super) trait Narrow: Copy {
    /// The narrower of `self` (in force) and `inner` (the newer setting).
    fn narrowed(self, inner: Self) -> Self;
}

impl Narrow for Option<u64> {
    #[inline]
    fn narrowed(self, inner: Self) -> Self {
        match (self, inner) {
            (Some(outer), Some(inner)) => Some(outer.min(inner)),
            (outer, None) => outer,
            (None, inner) => inner,
        }
    }
}

impl Narrow for Option<f64> {
    #[inline]
    fn narrowed(self, inner: Self) -> Self {
        match (self, inner) {
            (Some(outer), Some(inner)) => Some(outer.min(inner)),
            (outer, None) => outer,
            (None, inner) => inner,
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

/// `value` is not what `option` accepts: the error names what it expects.
fn rejected(option: &'static str, value: String) -> XcsError {
    XcsError::InvalidValue {
        option: option.to_owned(),
        value,
        expected: lookup_expected(option),
    }
}
