//! The table of options: their names, kinds, defaults and documentation.

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
