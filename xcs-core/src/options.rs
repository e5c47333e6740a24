//! The execution options: their table, their typed form, and partial updates of them.
//!
//! Every option is described exactly once, in [`OPTIONS`]. The run-time parser
//! ([`OptionsPatch::from_pairs`], [`OptionsPatch::from_env`]) and the compile-time checks of the
//! `execution_options!` macros both read that table and share the value parsers below, so the
//! names, the accepted values and the error messages cannot drift apart.
//!
//! [`ExecutionOptions`] is `Copy`: reading the effective options is a plain copy out of a
//! thread-local, with no allocation and no reference count to touch.

use std::collections::BTreeSet;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::error::XcsError;

/// The kind of value an option takes; decides which parser and which literal forms apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionKind {
    /// `true` / `false`.
    Bool,
    /// A worker count: an integer ≥ 1, or none.
    Workers,
    /// A [`DeviceStrategy`] name.
    Device,
    /// A number of seconds > 0 (integer or float), or none.
    Timeout,
    /// A legacy [`Scheduler`] name.
    Scheduler,
}

/// One row of the option table.
#[derive(Debug)]
pub struct OptionSpec {
    /// The option's name, as written in the macros, in `from_pairs` and (upper-cased, with an
    /// `XCS_` prefix) in the environment.
    pub name: &'static str,
    /// What kind of value it takes.
    pub kind: OptionKind,
    /// Its default, as a user would write it.
    pub default: &'static str,
    /// What a valid value looks like, for error messages.
    pub expected: &'static str,
    /// One line of documentation.
    pub doc: &'static str,
}

/// The table of every execution option. The single source of truth for names.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "use_parallel",
        kind: OptionKind::Bool,
        default: "true",
        expected: "`true` or `false`",
        doc: "run batch items in parallel where possible",
    },
    OptionSpec {
        name: "max_workers",
        kind: OptionKind::Workers,
        default: "None",
        expected: "an integer of at least 1, or `None`",
        doc: "the most worker threads a `vmap` may use (unset: one per CPU)",
    },
    OptionSpec {
        name: "device_strategy",
        kind: OptionKind::Device,
        default: "\"auto\"",
        expected: "\"auto\", \"cpu\", \"gpu\" or the name of a registered backend",
        doc: "which backend runs batches",
    },
    OptionSpec {
        name: "enable_caching",
        kind: OptionKind::Bool,
        default: "false",
        expected: "`true` or `false`",
        doc: "memoize operator calls by input",
    },
    OptionSpec {
        name: "trace_execution",
        kind: OptionKind::Bool,
        default: "false",
        expected: "`true` or `false`",
        doc: "record every operator call and batch item",
    },
    OptionSpec {
        name: "timeout_seconds",
        kind: OptionKind::Timeout,
        default: "None",
        expected: "a finite number of seconds greater than 0, or `None`",
        doc: "a deadline for the whole call",
    },
    OptionSpec {
        name: "scheduler",
        kind: OptionKind::Scheduler,
        default: "None",
        expected: "\"sequential\", \"topological\", \"parallel\", \"wave\", \"auto\" or `None`",
        doc: "legacy: \"sequential\"/\"topological\" mean `use_parallel = false`, the others `true`",
    },
];

/// Looks an option up by name.
pub fn lookup(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|spec| spec.name == name)
}

/// The valid option names, in table order, as a backticked, comma-separated list.
pub fn valid_names() -> String {
    OPTIONS
        .iter()
        .map(|spec| format!("`{}`", spec.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The option whose name is nearest to `name`, if one is near enough to be a likely typo.
pub fn suggest(name: &str) -> Option<&'static str> {
    let lowered = name.to_ascii_lowercase();
    if let Some(spec) = lookup(&lowered) {
        return Some(spec.name);
    }
    let mut best: Option<(f64, &'static str)> = None;
    for spec in OPTIONS {
        let mut score = strsim::normalized_damerau_levenshtein(&lowered, spec.name);
        // `workers` for `max_workers`, `timeout` for `timeout_seconds`: a whole word of the name.
        if lowered.len() >= 4 && spec.name.split('_').any(|word| word == lowered) {
            score = score.max(0.9);
        }
        if score >= 0.6 && best.is_none_or(|(b, _)| score > b) {
            best = Some((score, spec.name));
        }
    }
    best.map(|(_, name)| name)
}

/// Where batches run. `Auto` and `Cpu` use the built-in CPU backend; `Gpu` and named strategies
/// need a backend registered under that name.
///
/// A `DeviceStrategy` is `Copy`: named strategies are interned once per distinct name, so
/// options carrying one stay cheap to read and copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeviceStrategy {
    /// Let the runtime pick (the CPU backend unless a future backend claims the work).
    #[default]
    Auto,
    /// The built-in CPU backend.
    Cpu,
    /// The backend registered under `"gpu"`.
    Gpu,
    /// The backend registered under this name; build it with [`DeviceStrategy::named`].
    Named(BackendName),
}

/// The interned name of a device backend (see [`DeviceStrategy::named`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendName(&'static str);

impl BackendName {
    /// The name as a string.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Debug for BackendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl fmt::Display for BackendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Interned backend names. Each distinct name is leaked once; the set of names a program uses
/// is small and fixed, and interning keeps `DeviceStrategy` (and so `ExecutionOptions`) `Copy`.
static INTERNED: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

fn intern(name: &str) -> &'static str {
    let mut set = INTERNED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(existing) = set.get(name) {
        return existing;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}

impl DeviceStrategy {
    /// A strategy by name: `"auto"`, `"cpu"` and `"gpu"` (any case) give the built-in variants;
    /// any other name selects the backend registered under it.
    ///
    /// ```
    /// use xcs::DeviceStrategy;
    /// assert_eq!(DeviceStrategy::named("CPU"), DeviceStrategy::Cpu);
    /// assert_eq!(DeviceStrategy::named("tpu").as_str(), "tpu");
    /// ```
    pub fn named(name: &str) -> DeviceStrategy {
        match Self::builtin(name) {
            Some(strategy) => strategy,
            None => DeviceStrategy::Named(BackendName(intern(name))),
        }
    }

    /// The built-in strategy of that name, if it is one (`"auto"`, `"cpu"`, `"gpu"`, any case).
    pub fn builtin(name: &str) -> Option<DeviceStrategy> {
        match name.to_ascii_lowercase().as_str() {
            "auto" => Some(DeviceStrategy::Auto),
            "cpu" => Some(DeviceStrategy::Cpu),
            "gpu" => Some(DeviceStrategy::Gpu),
            _ => None,
        }
    }

    /// The strategy's name: `"auto"`, `"cpu"`, `"gpu"` or the backend name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStrategy::Auto => "auto",
            DeviceStrategy::Cpu => "cpu",
            DeviceStrategy::Gpu => "gpu",
            DeviceStrategy::Named(name) => name.0,
        }
    }
}

impl fmt::Display for DeviceStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The legacy `scheduler` option. It survives for code written against the Python API; its only
/// effect is on `use_parallel`, as [`Scheduler::use_parallel`] says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheduler {
    /// `"sequential"`: `use_parallel = false`.
    Sequential,
    /// `"topological"`: `use_parallel = false`.
    Topological,
    /// `"parallel"`: `use_parallel = true`.
    Parallel,
    /// `"wave"`: `use_parallel = true`.
    Wave,
    /// `"auto"`: `use_parallel = true`.
    Auto,
}

impl Scheduler {
    /// Every scheduler, in the order the docs list them.
    pub const ALL: [Scheduler; 5] = [
        Scheduler::Sequential,
        Scheduler::Topological,
        Scheduler::Parallel,
        Scheduler::Wave,
        Scheduler::Auto,
    ];

    /// The scheduler of that name (any case), if it is one.
    pub fn from_name(name: &str) -> Option<Scheduler> {
        let lowered = name.to_ascii_lowercase();
        Self::ALL.into_iter().find(|s| s.as_str() == lowered)
    }

    /// The scheduler's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheduler::Sequential => "sequential",
            Scheduler::Topological => "topological",
            Scheduler::Parallel => "parallel",
            Scheduler::Wave => "wave",
            Scheduler::Auto => "auto",
        }
    }

    /// The `use_parallel` this scheduler stands for.
    ///
    /// ```
    /// use xcs::Scheduler;
    /// assert!(!Scheduler::Sequential.use_parallel());
    /// assert!(Scheduler::Wave.use_parallel());
    /// ```
    pub fn use_parallel(self) -> bool {
        !matches!(self, Scheduler::Sequential | Scheduler::Topological)
    }
}

impl fmt::Display for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The effective execution options: what a call runs under.
///
/// Read them with [`get_execution_options`](crate::get_execution_options); change them with
/// `execution_options!` (scoped), `set_execution_options!` (global) or an [`OptionsPatch`].
/// Every value this struct can hold through the public constructors is valid: worker counts are
/// non-zero, timeouts are positive, and `scheduler` never contradicts `use_parallel`.
///
/// ```
/// use xcs::ExecutionOptions;
/// let defaults = ExecutionOptions::default();
/// assert!(defaults.use_parallel);
/// assert_eq!(defaults.max_workers, None);
/// assert_eq!(defaults.timeout_seconds, None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct ExecutionOptions {
    /// Run batch items in parallel where possible. Default `true`.
    pub use_parallel: bool,
    /// The most worker threads a `vmap` may use; `None` means one per CPU. Default `None`.
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
    };

    /// These options with `patch` applied on top (what a scope does).
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
        }
    }

    /// Parses `(name, value)` pairs from configuration. Names are the option names of the table
    /// (`use_parallel`, `max_workers`, …); values are strings as a config file or command line
    /// would hold them (`"true"`, `"8"`, `"0.5"`, `"cpu"`, `"none"`).
    ///
    /// # Errors
    /// [`XcsError::InvalidOption`] for an unknown name, [`XcsError::InvalidValue`] for a value
    /// the option cannot take, a name given twice, or a `scheduler` contradicting `use_parallel`.
    /// On error nothing is applied anywhere.
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
    /// Any other variable starting with `XCS_` is an unknown option, so a misspelt variable is
    /// reported instead of silently ignored.
    ///
    /// # Errors
    /// As [`from_pairs`](OptionsPatch::from_pairs), with the name as the option name
    /// (lower-cased, prefix removed); a variable whose value is not Unicode is an
    /// [`XcsError::InvalidValue`].
    pub fn from_env() -> Result<OptionsPatch, XcsError> {
        Self::from_vars(std::env::vars_os())
    }

    /// [`from_env`](OptionsPatch::from_env) over an explicit list of variables (for tests and
    /// for environments captured elsewhere).
    pub fn from_vars<I>(vars: I) -> Result<OptionsPatch, XcsError>
    where
        I: IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    {
        let mut pairs = Vec::new();
        for (key, value) in vars {
            let Some(key) = key.to_str() else { continue };
            let Some(option) = key.strip_prefix("XCS_") else {
                continue;
            };
            let option = option.to_ascii_lowercase();
            let value = value.into_string().map_err(|raw| XcsError::InvalidValue {
                option: option.clone(),
                value: raw.to_string_lossy().into_owned(),
                expected: "a value that is valid Unicode".to_owned(),
            })?;
            pairs.push((option, value));
        }
        // Deterministic error reporting whatever order the environment lists variables in.
        pairs.sort();
        Self::from_pairs(pairs)
    }

    fn set_parsed(&mut self, spec: &'static OptionSpec, raw: &str) -> Result<(), XcsError> {
        let value = raw.trim();
        match spec.name {
            "use_parallel" => self.use_parallel = Some(parse_bool(spec, value)?),
            "enable_caching" => self.enable_caching = Some(parse_bool(spec, value)?),
            "trace_execution" => self.trace_execution = Some(parse_bool(spec, value)?),
            "max_workers" => self.max_workers = Some(parse_workers(spec, value)?),
            "timeout_seconds" => self.timeout_seconds = Some(parse_timeout(spec, value)?),
            "device_strategy" => self.device_strategy = Some(parse_device(spec, value)?),
            "scheduler" => self.scheduler = Some(parse_scheduler(spec, value)?),
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

    /// Sets `max_workers` (`None`: one per CPU).
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
            timeout_seconds
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
    pub fn apply_to(&self, options: &mut ExecutionOptions) {
        if let Some(v) = self.max_workers {
            options.max_workers = v;
        }
        if let Some(v) = self.device_strategy {
            options.device_strategy = v;
        }
        if let Some(v) = self.enable_caching {
            options.enable_caching = v;
        }
        if let Some(v) = self.trace_execution {
            options.trace_execution = v;
        }
        if let Some(v) = self.timeout_seconds {
            options.timeout_seconds = v;
        }
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
}

fn lookup_expected(name: &str) -> String {
    lookup(name).map_or_else(String::new, |spec| spec.expected.to_owned())
}

fn invalid(spec: &OptionSpec, value: &str) -> XcsError {
    XcsError::InvalidValue {
        option: spec.name.to_owned(),
        value: value.to_owned(),
        expected: spec.expected.to_owned(),
    }
}

fn is_none_word(value: &str) -> bool {
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

/// Parses a worker count: an integer ≥ 1, or `none`.
pub fn parse_workers(spec: &OptionSpec, value: &str) -> Result<Option<NonZeroUsize>, XcsError> {
    if is_none_word(value) {
        return Ok(None);
    }
    value
        .parse::<NonZeroUsize>()
        .map(Some)
        .map_err(|_| invalid(spec, value))
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

/// Parses a device strategy: `auto`, `cpu`, `gpu`, or the name of a registered backend.
pub fn parse_device(spec: &OptionSpec, value: &str) -> Result<DeviceStrategy, XcsError> {
    if let Some(strategy) = DeviceStrategy::builtin(value) {
        return Ok(strategy);
    }
    if crate::device::is_registered(value) {
        return Ok(DeviceStrategy::named(value));
    }
    Err(invalid(spec, value))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn value_err(name: &str, value: &str) -> bool {
        matches!(
            OptionsPatch::from_pairs([(name, value)]),
            Err(XcsError::InvalidValue { .. })
        )
    }

    #[test]
    fn table_names_are_unique_and_parse() {
        for (i, spec) in OPTIONS.iter().enumerate() {
            assert!(OPTIONS[..i].iter().all(|other| other.name != spec.name));
            let sample = match spec.kind {
                OptionKind::Bool => "true",
                OptionKind::Workers => "3",
                OptionKind::Device => "cpu",
                OptionKind::Timeout => "1.5",
                OptionKind::Scheduler => "parallel",
            };
            OptionsPatch::from_pairs([(spec.name, sample)]).expect(spec.name);
        }
    }

    #[test]
    fn parses_every_option() {
        let patch = OptionsPatch::from_pairs([
            ("use_parallel", "false"),
            ("max_workers", "4"),
            ("device_strategy", "cpu"),
            ("enable_caching", "yes"),
            ("trace_execution", "1"),
            ("timeout_seconds", "2.5"),
        ])
        .unwrap();
        let options = ExecutionOptions::default().patched(&patch);
        assert!(!options.use_parallel);
        assert_eq!(options.max_workers, NonZeroUsize::new(4));
        assert_eq!(options.device_strategy, DeviceStrategy::Cpu);
        assert!(options.enable_caching && options.trace_execution);
        assert_eq!(options.timeout_seconds, Some(Duration::from_millis(2500)));
    }

    #[test]
    fn rejects_bad_values() {
        for bad in ["NaN", "-2", "0", "inf", "-inf", "abc", "", "1e400"] {
            assert!(value_err("timeout_seconds", bad), "timeout {bad:?}");
        }
        for bad in ["0", "-1", "four", "1.5", ""] {
            assert!(value_err("max_workers", bad), "workers {bad:?}");
        }
        for bad in ["maybe", "2", "tru", ""] {
            assert!(value_err("use_parallel", bad), "bool {bad:?}");
        }
        assert!(value_err("device_strategy", "quantum"));
        assert!(value_err("scheduler", "fifo"));
    }

    #[test]
    fn none_words_unset() {
        let patch =
            OptionsPatch::from_pairs([("max_workers", "None"), ("timeout_seconds", "none")])
                .unwrap();
        let options = ExecutionOptions::default().patched(&patch);
        assert_eq!(options.max_workers, None);
        assert_eq!(options.timeout_seconds, None);
    }

    #[test]
    fn unknown_names_are_typed_with_suggestion() {
        let err = OptionsPatch::from_pairs([("invalid_option", "true")]).unwrap_err();
        assert_eq!(err.to_string(), "Invalid execution option: invalid_option");
        let err = OptionsPatch::from_pairs([("max_worker", "2")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid execution option: max_worker; did you mean `max_workers`?"
        );
        assert_eq!(suggest("workers"), Some("max_workers"));
        assert_eq!(suggest("timeout"), Some("timeout_seconds"));
        assert_eq!(suggest("zzz"), None);
    }

    #[test]
    fn duplicates_are_rejected() {
        assert!(value_err2([("max_workers", "2"), ("max_workers", "3")]));
    }

    fn value_err2<const N: usize>(pairs: [(&str, &str); N]) -> bool {
        matches!(
            OptionsPatch::from_pairs(pairs),
            Err(XcsError::InvalidValue { .. })
        )
    }

    #[test]
    fn scheduler_maps_and_contradiction_is_rejected() {
        let seq = OptionsPatch::from_pairs([("scheduler", "sequential")]).unwrap();
        assert!(!ExecutionOptions::default().patched(&seq).use_parallel);
        let wave = OptionsPatch::from_pairs([("scheduler", "wave"), ("use_parallel", "true")]);
        assert!(
            ExecutionOptions::default()
                .patched(&wave.unwrap())
                .use_parallel
        );
        assert!(value_err2([
            ("scheduler", "sequential"),
            ("use_parallel", "true")
        ]));
    }

    #[test]
    fn newer_use_parallel_drops_contradicting_scheduler() {
        let base = ExecutionOptions::default().patched(
            &OptionsPatch::new()
                .scheduler(Some(Scheduler::Sequential))
                .unwrap(),
        );
        assert_eq!(base.scheduler, Some(Scheduler::Sequential));
        let inner = base.patched(&OptionsPatch::new().use_parallel(true));
        assert!(inner.use_parallel);
        assert_eq!(inner.scheduler, None);
        let merged = OptionsPatch::new()
            .scheduler(Some(Scheduler::Topological))
            .unwrap()
            .merged(&OptionsPatch::new().use_parallel(true));
        assert_eq!(ExecutionOptions::default().patched(&merged), inner);
    }

    #[test]
    fn env_vars_are_read_and_checked() {
        use std::ffi::OsString;
        let vars = |list: &[(&str, &str)]| {
            list.iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect::<Vec<_>>()
        };
        let patch =
            OptionsPatch::from_vars(vars(&[("XCS_MAX_WORKERS", "8"), ("PATH", "/bin")])).unwrap();
        assert_eq!(
            ExecutionOptions::default().patched(&patch).max_workers,
            NonZeroUsize::new(8)
        );
        let err = OptionsPatch::from_vars(vars(&[("XCS_MAX_WORKRS", "8")])).unwrap_err();
        assert!(matches!(err, XcsError::InvalidOption { .. }));
    }

    #[test]
    fn device_names_intern() {
        let a = DeviceStrategy::named("tpu-x");
        let b = DeviceStrategy::named("tpu-x");
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "tpu-x");
        assert_eq!(DeviceStrategy::named("GPU"), DeviceStrategy::Gpu);
    }
}
