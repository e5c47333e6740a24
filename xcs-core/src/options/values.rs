//! The values of options that are more than a number or a flag: device strategies, cache
//! directories, the legacy scheduler and hedging rules.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use super::list::lookup_expected;
use crate::error::XcsError;

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

/// The backend name the cluster registers under by convention: the one named
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
/// A `CacheDir` is `Copy`, so that [`ExecutionOptions`](super::ExecutionOptions) stays `Copy`: each distinct path is
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

/// When a call is hedged (the `hedge_after` option): once it has run for a fixed time, or for a
/// quantile of its operator's own recent latency.
///
/// Every `Hedge` is valid: the delay is never zero, the quantile is from 50 to 99. Build one
/// with [`Hedge::after`], [`Hedge::quantile`] or [`Hedge::parse`] (the forms `from_pairs`
/// reads: a number of seconds, `"p50"` … `"p99"`). A delay is kept to the microsecond (rounded
/// up) and at most [`Hedge::MAX_DELAY`] (about 35 minutes; a longer one is that): a `Hedge` is
/// four bytes, so that the options, copied on every scope entry, stay small.
///
/// ```
/// use std::time::Duration;
/// use xcs::Hedge;
/// let fixed = Hedge::after(Duration::from_millis(250)).unwrap();
/// assert_eq!(fixed.delay(), Some(Duration::from_millis(250)));
/// let p95 = Hedge::parse("p95").unwrap();
/// assert_eq!((p95.quantile_percent(), p95.to_string()), (Some(95), "p95".to_owned()));
/// assert_eq!(Hedge::parse("0.5"), Hedge::after(Duration::from_millis(500)));
/// assert_eq!(fixed.to_string(), "0.25");
/// assert!(Hedge::quantile(100).is_none() && Hedge::after(Duration::ZERO).is_none());
/// assert!(Hedge::parse("p5").is_none() && Hedge::parse("fast").is_none());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hedge(std::num::NonZeroU32);

impl Hedge {
    /// The lowest quantile `hedge_after` takes (`"p50"`).
    pub const MIN_QUANTILE: u8 = 50;
    /// The highest quantile `hedge_after` takes (`"p99"`).
    pub const MAX_QUANTILE: u8 = 99;
    /// The longest fixed delay (2³¹ − 1 µs, about 35 minutes 47 seconds).
    pub const MAX_DELAY: std::time::Duration =
        std::time::Duration::from_micros(Self::QUANTILE as u64 - 1);

    /// The bit that marks a quantile; below it, a delay in microseconds.
    const QUANTILE: u32 = 1 << 31;

    /// Hedge a call once it has run for `delay`; `None` for a zero delay.
    pub const fn after(delay: std::time::Duration) -> Option<Hedge> {
        if delay.is_zero() {
            return None;
        }
        let micros = delay.as_nanos().div_ceil(1_000);
        let micros = if micros >= Self::QUANTILE as u128 {
            Self::QUANTILE - 1
        } else {
            micros as u32
        };
        match std::num::NonZeroU32::new(micros) {
            Some(micros) => Some(Hedge(micros)),
            None => None,
        }
    }

    /// Hedge a call once it has run longer than `percent` % of its operator's recent successful
    /// calls did; `None` unless `percent` is from 50 to 99.
    pub const fn quantile(percent: u8) -> Option<Hedge> {
        if percent < Self::MIN_QUANTILE || percent > Self::MAX_QUANTILE {
            return None;
        }
        match std::num::NonZeroU32::new(Self::QUANTILE | percent as u32) {
            Some(bits) => Some(Hedge(bits)),
            None => None,
        }
    }

    /// Reads the forms the option takes in configuration: `"p50"` … `"p99"` (any case), or a
    /// finite number of seconds greater than 0. Surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Option<Hedge> {
        let text = text.trim();
        if let Some(digits) = text.strip_prefix(['p', 'P']) {
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            return digits.parse::<u8>().ok().and_then(Hedge::quantile);
        }
        let seconds: f64 = text.parse().ok()?;
        super::timeout_from_secs(seconds).and_then(Hedge::after)
    }

    /// The fixed delay, if it is one.
    pub const fn delay(self) -> Option<std::time::Duration> {
        if self.0.get() & Self::QUANTILE == 0 {
            Some(std::time::Duration::from_micros(self.0.get() as u64))
        } else {
            None
        }
    }

    /// The quantile (50 to 99), if it is one.
    pub const fn quantile_percent(self) -> Option<u8> {
        if self.0.get() & Self::QUANTILE != 0 {
            Some((self.0.get() & 0xff) as u8)
        } else {
            None
        }
    }
}

/// `p95`, or the delay in seconds (`0.25`): a form [`Hedge::parse`] reads back.
impl fmt::Display for Hedge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.delay(), self.quantile_percent()) {
            (Some(delay), _) => write!(f, "{}", delay.as_secs_f64()),
            (None, Some(percent)) => write!(f, "p{percent}"),
            (None, None) => unreachable!("a hedge is a delay or a quantile"),
        }
    }
}

/// `Hedge("p95")`, `Hedge(250ms)`.
impl fmt::Debug for Hedge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.delay(), self.quantile_percent()) {
            (Some(delay), _) => write!(f, "Hedge({delay:?})"),
            (_, percent) => write!(f, "Hedge(\"p{}\")", percent.unwrap_or_default()),
        }
    }
}
