//! The execution options: their table, their typed form, and partial updates of them.
//!
//! Every option is described exactly once, in [`OPTIONS`]. The run-time parser
//! ([`OptionsPatch::from_pairs`], [`OptionsPatch::from_env`]) and the compile-time checks of the
//! `execution_options!` macros both read that table and share the value parsers below, so the
//! names, the accepted values and the error messages cannot drift apart.
//!
//! [`ExecutionOptions`] is `Copy`: reading the effective options is a plain copy out of a
//! thread-local, with no allocation and no reference count to touch.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
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
    /// A retry count: an integer ≥ 0 that fits a `u32`.
    Retries,
    /// A rate in calls per second: a finite number > 0 (integer or float), or none.
    Rate,
    /// A directory path: a non-empty string, or none.
    Directory,
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
        // Names `MAX_WORKERS`; a unit test keeps the two in step.
        doc: "the most items of a batch running at once (unset: one per CPU; a sync batch uses at most 1024 threads)",
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
    OptionSpec {
        name: "max_retries",
        kind: OptionKind::Retries,
        default: "0",
        expected: "an integer from 0 to 4294967295",
        doc: "how many more times a call whose body fails with a retryable error runs",
    },
    OptionSpec {
        name: "rate_limit",
        kind: OptionKind::Rate,
        default: "None",
        expected: "a finite number of calls per second greater than 0, or `None`",
        doc: "the most calls of one operator started per second, process-wide",
    },
    OptionSpec {
        name: "cache_dir",
        kind: OptionKind::Directory,
        default: "None",
        expected: "a non-empty directory path, or `None`",
        doc: "a directory where `enable_caching` also keeps results, across processes",
    },
    OptionSpec {
        name: "show_progress",
        kind: OptionKind::Bool,
        default: "false",
        expected: "`true` or `false`",
        doc: "draw a progress bar for every batch on standard error",
    },
];

/// The most threads a sync batch runs its items on, whatever `max_workers` (or `pmap`'s worker
/// count) asks: a sync batch under a larger `max_workers` runs at most this many items at once.
///
/// `max_workers` itself takes any count of at least 1 (literals in the macros,
/// [`OptionsPatch::from_pairs`], [`OptionsPatch::from_env`] and values computed at run time
/// alike), and [`ExecutionOptions::max_workers`] holds it as given. Only the threads are
/// clamped: an async batch has no thread per item and keeps `max_workers` items in flight,
/// however many.
///
/// ```
/// use std::num::NonZeroUsize;
/// use xcs::{MAX_WORKERS, OptionsPatch, ExecutionOptions};
/// assert!(MAX_WORKERS >= 1024);
/// let patch = OptionsPatch::from_pairs([("max_workers", "5000")]).unwrap();
/// let options = ExecutionOptions::default().patched(&patch);
/// assert_eq!(options.max_workers, NonZeroUsize::new(5000));
/// ```
pub const MAX_WORKERS: usize = 1024;

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

/// The backend name the cluster registers under by convention (SPEC §11): the one named
/// backend the option macros accept as a literal (`device_strategy = "cluster"`), resolved like
/// [`DeviceStrategy::named`] when a batch runs.
pub const CLUSTER_BACKEND: &str = "cluster";

/// The interned name of a device backend (see [`DeviceStrategy::named`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendName(&'static String);

impl BackendName {
    /// The name as a string.
    pub fn as_str(self) -> &'static str {
        self.0.as_str()
    }
}

impl fmt::Debug for BackendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.as_str(), f)
    }
}

impl fmt::Display for BackendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Interned backend names. Each distinct name is leaked once; the set of names a program uses
/// is small and fixed, and interning keeps `DeviceStrategy` (and so `ExecutionOptions`) `Copy`.
/// Interned names. A thin `&'static String` (not a `&'static str`) keeps `DeviceStrategy`, and so
/// `ExecutionOptions`, small: they are copied on every scope entry.
static INTERNED: Mutex<BTreeMap<&'static str, &'static String>> = Mutex::new(BTreeMap::new());

fn intern(name: &str) -> &'static String {
    let mut set = INTERNED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(existing) = set.get(name) {
        return existing;
    }
    let leaked: &'static String = Box::leak(Box::new(name.to_owned()));
    set.insert(leaked.as_str(), leaked);
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

/// The directory of the persistent cache (the `cache_dir` option).
///
/// A `CacheDir` is `Copy`, so that [`ExecutionOptions`] stays `Copy`: each distinct path is
/// interned once for the life of the process (programs use a handful of cache directories), and a
/// `CacheDir` is a reference to that one copy. It is never empty. The path is kept as given: a
/// relative path is resolved against the current directory when the cache is opened.
///
/// ```
/// use xcs::CacheDir;
/// let dir = CacheDir::new("/var/cache/my-app")?;
/// assert_eq!(dir, CacheDir::new(std::path::PathBuf::from("/var/cache/my-app"))?);
/// assert_eq!(dir.as_path(), std::path::Path::new("/var/cache/my-app"));
/// assert_eq!(dir.to_string(), "/var/cache/my-app");
/// assert!(CacheDir::new("").is_err());
/// # Ok::<(), xcs::XcsError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheDir(&'static PathBuf);

/// Interned cache directories, as [`INTERNED`] for backend names (thin pointers, for the same
/// reason).
static INTERNED_PATHS: Mutex<BTreeMap<&'static Path, &'static PathBuf>> =
    Mutex::new(BTreeMap::new());

impl CacheDir {
    /// The cache directory at `path`.
    ///
    /// # Errors
    /// [`XcsError::InvalidValue`] for `cache_dir` if `path` is empty.
    pub fn new(path: impl AsRef<Path>) -> Result<CacheDir, XcsError> {
        let path = path.as_ref();
        if path.as_os_str().is_empty() {
            return Err(XcsError::InvalidValue {
                option: "cache_dir".to_owned(),
                value: String::new(),
                expected: lookup_expected("cache_dir"),
            });
        }
        let mut set = INTERNED_PATHS
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = set.get(path) {
            return Ok(CacheDir(existing));
        }
        let leaked: &'static PathBuf = Box::leak(Box::new(path.to_path_buf()));
        set.insert(leaked.as_path(), leaked);
        Ok(CacheDir(leaked))
    }

    /// The directory's path.
    pub fn as_path(self) -> &'static Path {
        self.0.as_path()
    }
}

impl AsRef<Path> for CacheDir {
    fn as_ref(&self) -> &Path {
        self.0.as_path()
    }
}

impl fmt::Debug for CacheDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

/// The path as [`Path::display`] shows it (invalid Unicode replaced).
impl fmt::Display for CacheDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.display(), f)
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
    /// at most [`MAX_WORKERS`] threads.
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

/// Parses a cache directory: a non-empty path, or `none`.
pub fn parse_cache_dir(spec: &OptionSpec, value: &str) -> Result<Option<CacheDir>, XcsError> {
    if is_none_word(value) {
        return Ok(None);
    }
    CacheDir::new(value)
        .map(Some)
        .map_err(|_| invalid(spec, value))
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
            OptionsPatch::from_pairs([(spec.name, sample(spec.kind))]).expect(spec.name);
        }
    }

    /// A valid value of each kind, as configuration would spell it.
    fn sample(kind: OptionKind) -> &'static str {
        match kind {
            OptionKind::Bool => "true",
            OptionKind::Workers => "3",
            OptionKind::Device => "cpu",
            OptionKind::Timeout => "1.5",
            OptionKind::Scheduler => "parallel",
            OptionKind::Retries => "2",
            OptionKind::Rate => "0.5",
            OptionKind::Directory => "/tmp/xcs-cache",
        }
    }

    #[test]
    fn defaults_are_the_table_defaults() {
        let defaults = ExecutionOptions::default();
        let shown = |name: &str| match name {
            "use_parallel" => defaults.use_parallel.to_string(),
            "max_workers" => format!("{:?}", defaults.max_workers),
            "device_strategy" => format!("{:?}", defaults.device_strategy.as_str()),
            "enable_caching" => defaults.enable_caching.to_string(),
            "trace_execution" => defaults.trace_execution.to_string(),
            "timeout_seconds" => format!("{:?}", defaults.timeout_seconds),
            "scheduler" => format!("{:?}", defaults.scheduler),
            "max_retries" => defaults.max_retries.to_string(),
            "rate_limit" => format!("{:?}", defaults.rate_limit),
            "cache_dir" => format!("{:?}", defaults.cache_dir),
            "show_progress" => defaults.show_progress.to_string(),
            other => panic!("no default checked for `{other}`"),
        };
        for spec in OPTIONS {
            assert_eq!(shown(spec.name), spec.default, "{}", spec.name);
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
            ("max_retries", "3"),
            ("rate_limit", "20"),
            ("cache_dir", " /tmp/xcs cache "),
            ("show_progress", "on"),
        ])
        .unwrap();
        let options = ExecutionOptions::default().patched(&patch);
        assert!(!options.use_parallel);
        assert_eq!(options.max_workers, NonZeroUsize::new(4));
        assert_eq!(options.device_strategy, DeviceStrategy::Cpu);
        assert!(options.enable_caching && options.trace_execution);
        assert_eq!(options.timeout_seconds, Some(Duration::from_millis(2500)));
        assert_eq!(options.max_retries, 3);
        assert_eq!(options.rate_limit, Some(20.0));
        assert_eq!(
            options.cache_dir.map(CacheDir::as_path),
            Some(Path::new("/tmp/xcs cache"))
        );
        assert!(options.show_progress);
    }

    #[test]
    fn max_workers_takes_any_count_of_at_least_one() {
        let spec = lookup("max_workers").unwrap();
        assert!(
            spec.doc.contains(&MAX_WORKERS.to_string()),
            "the doc names the thread bound: {}",
            spec.doc
        );
        let read = |value: &str| {
            OptionsPatch::from_pairs([("max_workers", value)])
                .map(|patch| ExecutionOptions::default().patched(&patch).max_workers)
        };
        for (value, expected) in [
            ("1", 1),
            ("1024", 1024),
            ("1025", 1025),
            ("5000", 5000),
            ("1000000", 1_000_000),
            (" 7 ", 7),
        ] {
            assert_eq!(read(value).unwrap(), NonZeroUsize::new(expected), "{value}");
        }
        // Beyond `usize`: as many as a `usize` can say.
        for huge in [
            usize::MAX.to_string(),
            "18446744073709551616".to_owned(),
            "99999999999999999999999999".to_owned(),
        ] {
            assert_eq!(read(&huge).unwrap(), Some(NonZeroUsize::MAX), "{huge}");
        }
        let vars = [("XCS_MAX_WORKERS", "5000")];
        let patch = OptionsPatch::from_vars(vars).unwrap();
        assert_eq!(
            ExecutionOptions::default().patched(&patch).max_workers,
            NonZeroUsize::new(5000)
        );
        // Values that only exist at run time are kept as given too.
        let written = ExecutionOptions {
            max_workers: NonZeroUsize::new(MAX_WORKERS * 2),
            ..ExecutionOptions::DEFAULT
        };
        for (patch, expected) in [
            (OptionsPatch::from_options(&written), MAX_WORKERS * 2),
            (
                OptionsPatch::new().max_workers(NonZeroUsize::new(usize::MAX)),
                usize::MAX,
            ),
            (
                {
                    let mut patch = OptionsPatch::new();
                    patch.__set_max_workers(NonZeroUsize::new(MAX_WORKERS + 1));
                    patch
                },
                MAX_WORKERS + 1,
            ),
        ] {
            assert_eq!(
                ExecutionOptions::default().patched(&patch).max_workers,
                NonZeroUsize::new(expected)
            );
        }
    }

    #[test]
    fn max_retries_parse() {
        for (raw, n) in [("0", 0), ("3", 3), (" 7 ", 7), ("4294967295", u32::MAX)] {
            let patch = OptionsPatch::from_pairs([("max_retries", raw)]).unwrap();
            assert_eq!(ExecutionOptions::default().patched(&patch).max_retries, n);
        }
        for bad in ["-1", "1.5", "three", "", "4294967296", "none"] {
            assert!(value_err("max_retries", bad), "retries {bad:?}");
        }
        let patch = OptionsPatch::new().max_retries(5);
        assert_eq!(ExecutionOptions::default().patched(&patch).max_retries, 5);
    }

    #[test]
    fn rate_limit_parse() {
        for (raw, rate) in [("2", Some(2.0)), ("0.25", Some(0.25)), ("None", None)] {
            let patch = OptionsPatch::from_pairs([("rate_limit", raw)]).unwrap();
            assert_eq!(ExecutionOptions::default().patched(&patch).rate_limit, rate);
        }
        for bad in ["0", "0.0", "-1", "NaN", "inf", "-inf", "1e400", "fast", ""] {
            assert!(value_err("rate_limit", bad), "rate {bad:?}");
        }
        let ok = OptionsPatch::new().rate_limit(Some(10.0)).unwrap();
        assert_eq!(
            ExecutionOptions::default().patched(&ok).rate_limit,
            Some(10.0)
        );
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            match OptionsPatch::new().rate_limit(Some(bad)) {
                Err(XcsError::InvalidValue { option, .. }) => assert_eq!(option, "rate_limit"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let unset = OptionsPatch::new().rate_limit(None).unwrap();
        assert!(!unset.is_empty());
    }

    #[test]
    fn cache_dir_parse() {
        let patch = OptionsPatch::from_pairs([("cache_dir", "relative/dir")]).unwrap();
        let dir = ExecutionOptions::default()
            .patched(&patch)
            .cache_dir
            .unwrap();
        assert_eq!(dir.as_path(), Path::new("relative/dir"));
        let unset = OptionsPatch::from_pairs([("cache_dir", "none")]).unwrap();
        assert_eq!(
            ExecutionOptions::default()
                .patched(&patch)
                .patched(&unset)
                .cache_dir,
            None
        );
        for bad in ["", "   "] {
            assert!(value_err("cache_dir", bad), "cache dir {bad:?}");
        }
        let patch = OptionsPatch::new().cache_dir(Some(dir));
        assert_eq!(
            ExecutionOptions::default().patched(&patch).cache_dir,
            Some(dir)
        );
    }

    #[test]
    fn cache_dirs_intern() {
        let a = CacheDir::new("/tmp/xcs-intern").unwrap();
        let b = CacheDir::new(std::path::PathBuf::from("/tmp/xcs-intern")).unwrap();
        assert_eq!(a, b);
        assert!(std::ptr::eq(a.as_path(), b.as_path()), "one copy per path");
        assert_ne!(a, CacheDir::new("/tmp/xcs-other").unwrap());
        assert_eq!(a.to_string(), "/tmp/xcs-intern");
        assert_eq!(format!("{a:?}"), "\"/tmp/xcs-intern\"");
        let as_ref: &Path = a.as_ref();
        assert_eq!(as_ref, Path::new("/tmp/xcs-intern"));
        match CacheDir::new("") {
            Err(XcsError::InvalidValue { option, .. }) => assert_eq!(option, "cache_dir"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn show_progress_parse() {
        let patch = OptionsPatch::from_pairs([("show_progress", "yes")]).unwrap();
        assert!(ExecutionOptions::default().patched(&patch).show_progress);
        assert!(value_err("show_progress", "sometimes"));
        let patch = OptionsPatch::new().show_progress(true);
        assert!(ExecutionOptions::default().patched(&patch).show_progress);
    }

    #[test]
    fn new_options_merge_and_round_trip() {
        let dir = CacheDir::new("/tmp/xcs-merge").unwrap();
        let lower = OptionsPatch::new()
            .max_retries(1)
            .rate_limit(Some(1.0))
            .unwrap()
            .cache_dir(Some(dir));
        let upper = OptionsPatch::new()
            .max_retries(4)
            .show_progress(true)
            .rate_limit(None)
            .unwrap();
        let merged = lower.merged(&upper);
        let options = ExecutionOptions::default().patched(&merged);
        assert_eq!(options.max_retries, 4);
        assert_eq!(options.rate_limit, None);
        assert_eq!(options.cache_dir, Some(dir));
        assert!(options.show_progress);
        assert_eq!(
            ExecutionOptions::default().patched(&OptionsPatch::from_options(&options)),
            options
        );
        assert_eq!(
            ExecutionOptions::default().patched(&lower).patched(&upper),
            options
        );
    }

    #[test]
    fn rejects_bad_values() {
        for bad in ["NaN", "-2", "0", "inf", "-inf", "abc", "", "1e400"] {
            assert!(value_err("timeout_seconds", bad), "timeout {bad:?}");
        }
        for bad in [
            "0",
            "-1",
            "four",
            "1.5",
            "",
            "00",
            "-99999999999999999999999",
        ] {
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
        assert_eq!(
            err.to_string(),
            "Invalid execution option: max_workrs; did you mean `max_workers`?"
        );
        // Plain string pairs work too.
        let patch =
            OptionsPatch::from_vars([("XCS_SHOW_PROGRESS", "true"), ("XCS_CACHE_DIR", "/c")])
                .unwrap();
        let options = ExecutionOptions::default().patched(&patch);
        assert!(options.show_progress);
        assert_eq!(
            options.cache_dir.map(CacheDir::as_path),
            Some(Path::new("/c"))
        );
    }

    #[cfg(unix)]
    #[test]
    fn env_vars_that_are_not_unicode_are_errors() {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;
        let name = OsString::from_vec(b"XCS_MAX_WORKERS\xff".to_vec());
        match OptionsPatch::from_vars([(name, OsString::from("2"))]) {
            Err(XcsError::InvalidOption { name, suggestion }) => {
                assert_eq!(name, "max_workers\u{FFFD}");
                assert_eq!(suggestion, Some("max_workers"));
            }
            other => panic!("{other:?}"),
        }
        let value = OsString::from_vec(b"/tmp/\xffcache".to_vec());
        match OptionsPatch::from_vars([(OsString::from("XCS_CACHE_DIR"), value)]) {
            Err(err @ XcsError::InvalidValue { .. }) => {
                assert_eq!(
                    err.to_string(),
                    "invalid value `/tmp/\u{FFFD}cache` for execution option `cache_dir`: \
                     expected a value that is valid Unicode"
                );
            }
            other => panic!("{other:?}"),
        }
        // Variables outside the prefix are not ours, whatever their bytes.
        let theirs = OsString::from_vec(b"OTHER_\xff".to_vec());
        let value = OsString::from_vec(b"\xff".to_vec());
        assert!(
            OptionsPatch::from_vars([(theirs, value)])
                .unwrap()
                .is_empty()
        );
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
