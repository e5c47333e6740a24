//! Partial updates of the options: what a scope or a global update sets.

use std::ffi::OsStr;
use std::num::NonZeroUsize;
use std::time::Duration;

use super::ExecutionOptions;
use super::list::{OptionSpec, lookup, suggest};
use super::parse::*;
use super::values::{CacheDir, DeviceStrategy, Scheduler};
use crate::error::XcsError;

/// A partial set of options: what a scope or a global update sets. Options it leaves unset are
/// inherited from the level below (defaults ← global ← outer scopes ← inner scope).
///
/// Build one from configuration with [`from_pairs`](OptionsPatch::from_pairs) or
/// [`from_env`](OptionsPatch::from_env) (every name and value checked, errors typed), or in code
/// with the builder methods.
///
/// ```
/// use xcs::{OptionsPatch, with_options, get_execution_options};
/// let patch = OptionsPatch::from_pairs([("use_parallel", "false"), ("max_workers", "2")])?;
/// with_options(&patch, || {
///     let options = get_execution_options();
///     assert!(!options.use_parallel);
///     assert_eq!(options.max_workers.map(|n| n.get()), Some(2));
/// });
/// # Ok::<(), xcs::XcsError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OptionsPatch {
    use_parallel: Option<bool>,
    max_workers: Option<Option<NonZeroUsize>>,
    device_strategy: Option<DeviceStrategy>,
    enable_caching: Option<bool>,
    trace_execution: Option<bool>,
    timeout_seconds: Option<Option<Duration>>,
    scheduler: Option<Option<Scheduler>>,
    max_retries: Option<u32>,
    rate_limit: Option<Option<f64>>,
    cache_dir: Option<Option<CacheDir>>,
    show_progress: Option<bool>,
}

impl OptionsPatch {
    /// A patch that sets nothing.
    pub const fn new() -> OptionsPatch {
        OptionsPatch {
            use_parallel: None,
            max_workers: None,
            device_strategy: None,
            enable_caching: None,
            trace_execution: None,
            timeout_seconds: None,
            scheduler: None,
            max_retries: None,
            rate_limit: None,
            cache_dir: None,
            show_progress: None,
        }
    }

    /// A patch that sets every option to the value it has in `options`.
    pub const fn from_options(options: &ExecutionOptions) -> OptionsPatch {
        OptionsPatch {
            use_parallel: Some(options.use_parallel),
            max_workers: Some(options.max_workers),
            device_strategy: Some(options.device_strategy),
            enable_caching: Some(options.enable_caching),
            trace_execution: Some(options.trace_execution),
            timeout_seconds: Some(options.timeout_seconds),
            scheduler: Some(options.scheduler),
            max_retries: Some(options.max_retries),
            rate_limit: Some(options.rate_limit),
            cache_dir: Some(options.cache_dir),
            show_progress: Some(options.show_progress),
        }
    }

    /// Parses `(name, value)` pairs from configuration. Names are the option names of the table
    /// (`use_parallel`, `max_workers`, …); values are strings as a config file or command line
    /// would hold them (`"true"`, `"8"`, `"0.5"`, `"cpu"`, `"/var/cache/app"`, `"none"`).
    /// Surrounding whitespace is ignored; `"none"` and `"null"` (any case) unset the options
    /// that take `None` (write a directory named `none` as `./none`).
    ///
    /// # Errors
    /// [`XcsError::InvalidOption`] for an unknown name, [`XcsError::InvalidValue`] for a value
    /// the option cannot take (`max_workers = 0` included), a name given
    /// twice, or a `scheduler` contradicting `use_parallel`. On error nothing is applied
    /// anywhere.
    ///
    /// ```
    /// use xcs::{OptionsPatch, XcsError};
    /// let err = OptionsPatch::from_pairs([("use_paralel", "true")]).unwrap_err();
    /// assert_eq!(err.to_string(), "Invalid execution option: use_paralel; did you mean `use_parallel`?");
    /// assert!(matches!(
    ///     OptionsPatch::from_pairs([("timeout_seconds", "NaN")]),
    ///     Err(XcsError::InvalidValue { .. })
    /// ));
    /// ```
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<OptionsPatch, XcsError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut patch = OptionsPatch::new();
        let mut seen: Vec<&'static str> = Vec::new();
        for (name, value) in pairs {
            let (name, value) = (name.as_ref(), value.as_ref());
            let spec = lookup(name).ok_or_else(|| XcsError::invalid_option(name))?;
            if seen.contains(&spec.name) {
                return Err(XcsError::InvalidValue {
                    option: spec.name.to_owned(),
                    value: value.to_owned(),
                    expected: "the option only once".to_owned(),
                });
            }
            seen.push(spec.name);
            patch.set_parsed(spec, value)?;
        }
        patch.check_consistent()?;
        Ok(patch)
    }

    /// Reads `XCS_<OPTION>` environment variables (`XCS_USE_PARALLEL`, `XCS_MAX_WORKERS`, …).
    ///
    /// The environment is shared with other programs, so an `XCS_` variable that names no
    /// option is ignored (a program's own `XCS_SOMETHING` does not stop it reading its options
    /// here) — unless it is a likely misspelling of one (`XCS_MAX_WORKRS`, `XCS_TIMEOUT`: near
    /// an option by the rule of the "did you mean" suggestion), which is an error, not silently
    /// ignored.
    ///
    /// # Errors
    /// As [`from_pairs`](OptionsPatch::from_pairs), with the name as the option name
    /// (lower-cased, prefix removed): [`XcsError::InvalidOption`] with its suggestion for a
    /// likely misspelling. A variable whose name starts with `XCS_`, is near an option and is
    /// not valid Unicode is an [`XcsError::InvalidOption`] (the invalid bytes shown as
    /// `\u{FFFD}`); an option's variable whose value is not valid Unicode is an
    /// [`XcsError::InvalidValue`].
    pub fn from_env() -> Result<OptionsPatch, XcsError> {
        Self::from_vars(std::env::vars_os())
    }

    /// [`from_env`](OptionsPatch::from_env) over an explicit list of variables (for tests and
    /// for environments captured elsewhere): `(name, value)` pairs of anything that is an
    /// [`OsStr`], such as the [`OsString`](std::ffi::OsString)s of [`std::env::vars_os`] or
    /// plain `&str`s. Variables not starting with `XCS_`, and `XCS_` variables not near any
    /// option, are ignored.
    ///
    /// ```
    /// use xcs::{ExecutionOptions, OptionsPatch, XcsError};
    /// let vars = [("XCS_MAX_RETRIES", "3"), ("HOME", "/root"), ("XCS_API_TOKEN", "t0k3n")];
    /// let patch = OptionsPatch::from_vars(vars)?;
    /// assert_eq!(ExecutionOptions::default().patched(&patch).max_retries, 3);
    /// // A likely misspelling is an error, with the suggestion.
    /// let err = OptionsPatch::from_vars([("XCS_MAX_RETRIE", "3")]).unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "Invalid execution option: max_retrie; did you mean `max_retries`?"
    /// );
    /// # Ok::<(), XcsError>(())
    /// ```
    ///
    /// # Errors
    /// As [`from_env`](OptionsPatch::from_env).
    pub fn from_vars<I, K, V>(vars: I) -> Result<OptionsPatch, XcsError>
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
        Self::from_pairs(valid)
    }

    fn set_parsed(&mut self, spec: &'static OptionSpec, raw: &str) -> Result<(), XcsError> {
        let value = raw.trim();
        match spec.name {
            "use_parallel" => self.use_parallel = Some(parse_bool(spec, value)?),
            "enable_caching" => self.enable_caching = Some(parse_bool(spec, value)?),
            "trace_execution" => self.trace_execution = Some(parse_bool(spec, value)?),
            "show_progress" => self.show_progress = Some(parse_bool(spec, value)?),
            "max_workers" => self.max_workers = Some(parse_workers(spec, value)?),
            "timeout_seconds" => self.timeout_seconds = Some(parse_timeout(spec, value)?),
            "device_strategy" => self.device_strategy = Some(parse_device(spec, value)?),
            "scheduler" => self.scheduler = Some(parse_scheduler(spec, value)?),
            "max_retries" => self.max_retries = Some(parse_retries(spec, value)?),
            "rate_limit" => self.rate_limit = Some(parse_rate(spec, value)?),
            "cache_dir" => self.cache_dir = Some(parse_cache_dir(spec, value)?),
            _ => return Err(XcsError::invalid_option(spec.name)),
        }
        Ok(())
    }

    /// Checks that a `scheduler` in this patch does not contradict its `use_parallel`.
    fn check_consistent(&self) -> Result<(), XcsError> {
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

    /// Sets `use_parallel`.
    pub fn use_parallel(mut self, value: bool) -> Self {
        self.use_parallel = Some(value);
        self
    }

    /// Sets `max_workers` (`None`: one per CPU). Any count is kept as given; a sync batch uses
    /// at most [`MAX_WORKERS`](super::MAX_WORKERS) threads.
    pub fn max_workers(mut self, value: Option<NonZeroUsize>) -> Self {
        self.max_workers = Some(value);
        self
    }

    /// Sets `device_strategy`.
    pub fn device_strategy(mut self, value: DeviceStrategy) -> Self {
        self.device_strategy = Some(value);
        self
    }

    /// Sets `enable_caching`.
    pub fn enable_caching(mut self, value: bool) -> Self {
        self.enable_caching = Some(value);
        self
    }

    /// Sets `trace_execution`.
    pub fn trace_execution(mut self, value: bool) -> Self {
        self.trace_execution = Some(value);
        self
    }

    /// Sets `timeout_seconds` (`None`: no deadline).
    ///
    /// # Errors
    /// [`XcsError::InvalidValue`] for a zero duration: a deadline that has passed before the call
    /// starts is always a mistake.
    pub fn timeout(mut self, value: Option<Duration>) -> Result<Self, XcsError> {
        if value == Some(Duration::ZERO) {
            return Err(XcsError::InvalidValue {
                option: "timeout_seconds".to_owned(),
                value: "0".to_owned(),
                expected: lookup_expected("timeout_seconds"),
            });
        }
        self.timeout_seconds = Some(value);
        Ok(self)
    }

    /// Sets the legacy `scheduler`.
    ///
    /// # Errors
    /// [`XcsError::InvalidValue`] if this patch already sets a `use_parallel` the scheduler
    /// contradicts.
    pub fn scheduler(mut self, value: Option<Scheduler>) -> Result<Self, XcsError> {
        self.scheduler = Some(value);
        self.check_consistent()?;
        Ok(self)
    }

    /// Sets `max_retries`: how many more times a call whose body fails with a retryable error
    /// runs (`0`: never again).
    pub fn max_retries(mut self, value: u32) -> Self {
        self.max_retries = Some(value);
        self
    }

    /// Sets `rate_limit`, in calls started per second (`None`: no limit).
    ///
    /// # Errors
    /// [`XcsError::InvalidValue`] for a rate that is not a finite number greater than 0.
    pub fn rate_limit(mut self, value: Option<f64>) -> Result<Self, XcsError> {
        if let Some(rate) = value {
            if rate_limit_from(rate).is_none() {
                return Err(XcsError::InvalidValue {
                    option: "rate_limit".to_owned(),
                    value: rate.to_string(),
                    expected: lookup_expected("rate_limit"),
                });
            }
        }
        self.rate_limit = Some(value);
        Ok(self)
    }

    /// Sets `cache_dir` (`None`: the memory cache only); build the directory with
    /// [`CacheDir::new`].
    pub fn cache_dir(mut self, value: Option<CacheDir>) -> Self {
        self.cache_dir = Some(value);
        self
    }

    /// Sets `show_progress`.
    pub fn show_progress(mut self, value: bool) -> Self {
        self.show_progress = Some(value);
        self
    }

    /// Whether the patch sets nothing.
    pub fn is_empty(&self) -> bool {
        *self == OptionsPatch::new()
    }

    /// This patch with `other` applied on top (`other` wins where both set an option).
    pub fn merged(mut self, other: &OptionsPatch) -> OptionsPatch {
        macro_rules! take {
            ($($field:ident),*) => {$( if other.$field.is_some() { self.$field = other.$field; } )*};
        }
        take!(
            max_workers,
            device_strategy,
            enable_caching,
            trace_execution,
            timeout_seconds,
            max_retries,
            rate_limit,
            cache_dir,
            show_progress
        );
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
        macro_rules! set {
            ($($field:ident),*) => {$( if let Some(v) = self.$field { options.$field = v; } )*};
        }
        set!(
            max_workers,
            device_strategy,
            enable_caching,
            trace_execution,
            timeout_seconds,
            max_retries,
            rate_limit,
            cache_dir,
            show_progress
        );
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

    /// Unchecked setters for the macros, which validate at compile time or through
    /// [`crate::__private::convert`].
    #[doc(hidden)]
    pub fn __set_use_parallel(&mut self, v: bool) {
        self.use_parallel = Some(v);
    }
    #[doc(hidden)]
    pub fn __set_max_workers(&mut self, v: Option<NonZeroUsize>) {
        self.max_workers = Some(v);
    }
    #[doc(hidden)]
    pub fn __set_device_strategy(&mut self, v: DeviceStrategy) {
        self.device_strategy = Some(v);
    }
    #[doc(hidden)]
    pub fn __set_enable_caching(&mut self, v: bool) {
        self.enable_caching = Some(v);
    }
    #[doc(hidden)]
    pub fn __set_trace_execution(&mut self, v: bool) {
        self.trace_execution = Some(v);
    }
    #[doc(hidden)]
    pub fn __set_timeout_seconds(&mut self, v: Option<Duration>) {
        self.timeout_seconds = Some(v);
    }
    /// Sets the scheduler; panics (naming the option) if this patch's `use_parallel` contradicts
    /// it, which the macros only allow for non-literal values.
    #[doc(hidden)]
    pub fn __set_scheduler(&mut self, v: Option<Scheduler>) {
        self.scheduler = Some(v);
        if let Err(err) = self.check_consistent() {
            panic!("{err}");
        }
    }
    #[doc(hidden)]
    pub fn __set_max_retries(&mut self, v: u32) {
        self.max_retries = Some(v);
    }
    /// The value has been checked (finite, > 0) by the macro or by `convert::rate_limit`.
    #[doc(hidden)]
    pub fn __set_rate_limit(&mut self, v: Option<f64>) {
        self.rate_limit = Some(v);
    }
    #[doc(hidden)]
    pub fn __set_cache_dir(&mut self, v: Option<CacheDir>) {
        self.cache_dir = Some(v);
    }
    #[doc(hidden)]
    pub fn __set_show_progress(&mut self, v: bool) {
        self.show_progress = Some(v);
    }
}
