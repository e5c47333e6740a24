//! The list of options (the one place an option is declared) and the table read from it.

use super::OPTIONS;

/// The kind of value an option takes; decides which parser and which literal forms apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionKind {
    /// `true` / `false`.
    Bool,
    /// A worker count: an integer ≥ 1, or none.
    Workers,
    /// A [`DeviceStrategy`](super::DeviceStrategy) name.
    Device,
    /// A number of seconds > 0 (integer or float), or none.
    Timeout,
    /// A legacy [`Scheduler`](super::Scheduler) name.
    Scheduler,
    /// A retry count: an integer ≥ 0 that fits a `u32`.
    Retries,
    /// A rate in calls per second: a finite number > 0 (integer or float), or none.
    Rate,
    /// A directory path: a non-empty string, or none.
    Directory,
    /// A number of tokens: an integer ≥ 1, or none.
    Tokens,
    /// An amount of money: a finite number > 0 (integer or float), or none.
    Cost,
    /// A [`Hedge`](super::Hedge): a number of seconds > 0, `"p50"` … `"p99"`, or none.
    Hedge,
}

impl OptionKind {
    /// Whether an option of this kind also takes `None` (unset): `None` or `Some(…)` in the
    /// macros, `none` or `null` in configuration.
    #[doc(hidden)]
    pub const fn takes_none(self) -> bool {
        matches!(
            self,
            OptionKind::Workers
                | OptionKind::Timeout
                | OptionKind::Scheduler
                | OptionKind::Rate
                | OptionKind::Directory
                | OptionKind::Tokens
                | OptionKind::Cost
                | OptionKind::Hedge
        )
    }

    /// The function of `xcs::__private::convert` through which the macros pass a non-literal
    /// value of this kind (checked at run time, panicking with a message naming the option).
    #[doc(hidden)]
    pub const fn convert(self) -> &'static str {
        match self {
            OptionKind::Bool => "flag",
            OptionKind::Workers => "max_workers",
            OptionKind::Timeout => "timeout_seconds",
            OptionKind::Device => "device_strategy",
            OptionKind::Scheduler => "scheduler",
            OptionKind::Retries => "max_retries",
            OptionKind::Rate => "rate_limit",
            OptionKind::Directory => "cache_dir",
            OptionKind::Tokens => "token_budget",
            OptionKind::Cost => "cost_budget",
            OptionKind::Hedge => "hedge_after",
        }
    }
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

/// **The list of options.** Every option is one row here, and everything else about it follows
/// from that row: the field of [`ExecutionOptions`](super::ExecutionOptions) and its default, the
/// field of [`OptionsPatch`](super::OptionsPatch), its builder method and its hidden `__set_…`
/// method for the macros, merging and applying patches, the row of [`OPTIONS`] (which the
/// macros' compile-time checks read), parsing by name ([`OptionsPatch::from_pairs`](super::OptionsPatch::from_pairs),
/// [`OptionsPatch::from_env`](super::OptionsPatch::from_env)), whether a call under it has
/// per-call work, and what the cluster does with it.
///
/// `option_list!(then)` hands the rows to the macro `then`: `define_options!` (in
/// `generate.rs`) writes the items above from them, and the cluster's wire form (in
/// `cluster/wire.rs`) writes how each option travels to a worker.
///
/// # Adding an option
/// Add one row, in the order the option should be listed (the order of [`OPTIONS`], of the
/// macros' list of valid names, of `Debug`):
///
/// ```text
/// /// Doc of the `ExecutionOptions` field (say the default).
/// max_output_tokens: Option<u64> = None => {
///     kind: Tokens,                   // an `OptionKind`: which literals and parser apply
///     default: "None",                // the default as a user writes it (a unit test checks it)
///     expected: "an integer of at least 1, or `None`",  // for error messages
///     doc: "one line for the table",
///     parse: parse_token_budget,      // fn(&OptionSpec, &str) -> Result<type, XcsError>
///     /// Doc of the builder method.
///     setter: max_output_tokens,      // `OptionsPatch::max_output_tokens(self, value) -> Self`
///                                     // (`… checked_by f` makes it return `Result<Self, _>`,
///                                     // f: fn(&OptionsPatch) -> Result<(), XcsError>)
///     macro_setter: __set_max_output_tokens,  // always `__set_` + the name (the macros call it)
///     merge: plain,                   // `plain`: the newer setting wins; `narrow`: a scope
///                                     // takes the smaller of the two (an `Option` of a
///                                     // `Narrow` type, `None` = no limit; a global update
///                                     // still replaces); `linked`: written by hand in
///                                     // patch.rs (only use_parallel/scheduler)
///     call_policy: |v| v.is_some(),   // optional: when a call under this value has per-call
///                                     // work (it turns off the fast path of `has_call_policy`)
///     wire: carry,                    // to a cluster worker: `carry` (travels; add the field
///                                     // to `WireOptions` in protocol order and bump PROTOCOL),
///                                     // `worker(expr)` (the worker uses expr), or `own`
///                                     // (cluster/wire.rs handles it by hand)
/// },
/// ```
///
/// For a `bool` option that is all. An option of another existing [`OptionKind`] works the same
/// way, except that the macros convert its non-literal values with the kind's function in
/// `convert.rs`, whose messages name the option that kind was made for (`timeout_seconds`,
/// `rate_limit`, …): give the option a kind of its own when that would mislead. A new *kind* of
/// value needs: its variant in [`OptionKind`] (with its arms in [`OptionKind::takes_none`] and
/// [`OptionKind::convert`]), its parser in `parse.rs`, its literal check and expansion in
/// `xcs-macros/src/options/{validate,expand}.rs`, and its conversion in `convert.rs`. Two tests name every option on purpose and fail until the new one is added:
/// `tests/process_wide/options.rs` (one macro call setting them all) and the UI snapshot
/// `xcs-ui/tests/ui/options/fail/unknown_option_lists_the_table.stderr` (the list of valid
/// names). What the option *does* is code that reads `options.<name>` where it applies.
macro_rules! option_list {
    ($then:ident) => {
        $then! {
            /// Run batch items in parallel where possible. Default `true`.
            use_parallel: bool = true => {
                kind: Bool,
                default: "true",
                expected: "`true` or `false`",
                doc: "run batch items in parallel where possible",
                parse: parse_bool,
                /// Sets `use_parallel`.
                setter: use_parallel,
                macro_setter: __set_use_parallel,
                merge: linked,
                wire: carry,
            },
            /// The most items of a batch running at once, at every level of nesting; `None` means one
            /// per CPU. Any count of at least 1: an explicit count above the CPU count runs that many
            /// items at once (for items that wait on I/O); a sync batch uses at most [`MAX_WORKERS`]
            /// threads, an async batch keeps this many items in flight however large. Default `None`.
            max_workers: Option<NonZeroUsize> = None => {
                kind: Workers,
                default: "None",
                expected: "an integer of at least 1, or `None`",
                // Names `MAX_WORKERS`; a unit test keeps the two in step.
                doc: "the most items of a batch running at once (unset: one per CPU; a sync batch uses at most 1024 threads)",
                parse: parse_workers,
                /// Sets `max_workers` (`None`: one per CPU). Any count is kept as given; a sync batch uses
                /// at most [`MAX_WORKERS`] threads.
                setter: max_workers,
                macro_setter: __set_max_workers,
                merge: plain,
                wire: own,
            },
            /// Which backend runs batches. Default [`DeviceStrategy::Auto`].
            device_strategy: DeviceStrategy = DeviceStrategy::Auto => {
                kind: Device,
                default: "\"auto\"",
                expected: "\"auto\", \"cpu\", \"gpu\" or the name of a registered backend",
                doc: "which backend runs batches",
                parse: parse_device,
                /// Sets `device_strategy`.
                setter: device_strategy,
                macro_setter: __set_device_strategy,
                merge: plain,
                wire: worker(DeviceStrategy::Cpu),
            },
            /// Memoize operator calls by input. Default `false`.
            enable_caching: bool = false => {
                kind: Bool,
                default: "false",
                expected: "`true` or `false`",
                doc: "memoize operator calls by input",
                parse: parse_bool,
                /// Sets `enable_caching`.
                setter: enable_caching,
                macro_setter: __set_enable_caching,
                merge: plain,
                call_policy: |on: &bool| *on,
                wire: worker(false),
            },
            /// Record every operator call and batch item. Default `false`.
            trace_execution: bool = false => {
                kind: Bool,
                default: "false",
                expected: "`true` or `false`",
                doc: "record every operator call and batch item",
                parse: parse_bool,
                /// Sets `trace_execution`.
                setter: trace_execution,
                macro_setter: __set_trace_execution,
                merge: plain,
                call_policy: |on: &bool| *on,
                wire: carry,
            },
            /// A deadline for each whole call. Default `None`.
            timeout_seconds: Option<Duration> = None => {
                kind: Timeout,
                default: "None",
                expected: "a finite number of seconds greater than 0, or `None`",
                doc: "a deadline for the whole call",
                parse: parse_timeout,
                /// Sets `timeout_seconds` (`None`: no deadline).
                ///
                /// # Errors
                /// [`XcsError::InvalidValue`] for a zero duration: a deadline that has passed before the call
                /// starts is always a mistake.
                setter: timeout checked_by OptionsPatch::check_timeout,
                macro_setter: __set_timeout_seconds,
                merge: plain,
                wire: own,
            },
            /// The legacy scheduler, if one was set. Default `None`.
            scheduler: Option<Scheduler> = None => {
                kind: Scheduler,
                default: "None",
                expected: "\"sequential\", \"topological\", \"parallel\", \"wave\", \"auto\" or `None`",
                doc: "legacy: \"sequential\"/\"topological\" mean `use_parallel = false`, the others `true`",
                parse: parse_scheduler,
                /// Sets the legacy `scheduler`.
                ///
                /// # Errors
                /// [`XcsError::InvalidValue`] if this patch already sets a `use_parallel` the scheduler
                /// contradicts.
                setter: scheduler checked_by OptionsPatch::check_consistent,
                macro_setter: __set_scheduler,
                merge: linked,
                wire: worker(None),
            },
            /// How many more times a call (each item of a batch on its own) runs after its body fails
            /// with a retryable error. Default `0`.
            max_retries: u32 = 0 => {
                kind: Retries,
                default: "0",
                expected: "an integer from 0 to 4294967295",
                doc: "how many more times a call whose body fails with a retryable error runs",
                parse: parse_retries,
                /// Sets `max_retries`: how many more times a call whose body fails with a retryable error
                /// runs (`0`: never again).
                setter: max_retries,
                macro_setter: __set_max_retries,
                merge: plain,
                call_policy: |retries: &u32| *retries > 0,
                wire: carry,
            },
            /// The most calls of one operator (by name) started per second, process-wide; always finite
            /// and greater than 0. `None`: no limit. Default `None`.
            rate_limit: Option<f64> = None => {
                kind: Rate,
                default: "None",
                expected: "a finite number of calls per second greater than 0, or `None`",
                doc: "the most calls of one operator started per second, process-wide",
                parse: parse_rate,
                /// Sets `rate_limit`, in calls started per second (`None`: no limit).
                ///
                /// # Errors
                /// [`XcsError::InvalidValue`] for a rate that is not a finite number greater than 0.
                setter: rate_limit checked_by OptionsPatch::check_rate_limit,
                macro_setter: __set_rate_limit,
                merge: plain,
                call_policy: |rate: &Option<f64>| rate.is_some(),
                wire: own,
            },
            /// A directory where `enable_caching` also keeps results, shared across processes. `None`:
            /// the memory cache only. Default `None`.
            cache_dir: Option<CacheDir> = None => {
                kind: Directory,
                default: "None",
                expected: "a non-empty directory path, or `None`",
                doc: "a directory where `enable_caching` also keeps results, across processes",
                parse: parse_cache_dir,
                /// Sets `cache_dir` (`None`: the memory cache only); build the directory with
                /// [`CacheDir::new`].
                setter: cache_dir,
                macro_setter: __set_cache_dir,
                merge: plain,
                wire: worker(None),
            },
            /// Draw a progress bar for every batch on standard error. Default `false`.
            show_progress: bool = false => {
                kind: Bool,
                default: "false",
                expected: "`true` or `false`",
                doc: "draw a progress bar for every batch on standard error",
                parse: parse_bool,
                /// Sets `show_progress`.
                setter: show_progress,
                macro_setter: __set_show_progress,
                merge: plain,
                wire: worker(false),
            },
            /// The most tokens (input + output, see [`Usage::tokens`](crate::Usage::tokens)) that
            /// the calls under this scope may use together; `None`: no limit. Never 0. Default
            /// `None`.
            ///
            /// A budget can only be narrowed: a scope's `token_budget` applies on top of the one in
            /// force as the smaller of the two (`None` counting as no limit), so a nested scope that
            /// names a larger budget or `None` keeps the outer one. This holds wherever a patch is
            /// applied as a scope ([`ExecutionOptions::patched`](super::ExecutionOptions::patched),
            /// [`OptionsPatch::merged`](super::OptionsPatch::merged), `execution_options!`,
            /// `with_options`). A global update (`set_execution_options!`, `set_global_options`)
            /// replaces the global value instead, like every other option, and
            /// `reset_execution_options` clears it. Budgets stay with the caller: a cluster worker
            /// runs its chunk without one.
            token_budget: Option<u64> = None => {
                kind: Tokens,
                default: "None",
                expected: "an integer of at least 1, or `None`",
                doc: "the most tokens (input + output) the calls of a scope may use together; a nested scope can only narrow it",
                parse: parse_token_budget,
                /// Sets `token_budget` (`None`: no limit). Applied as a scope, it narrows the
                /// budget in force and never widens it.
                ///
                /// # Errors
                /// [`XcsError::InvalidValue`] for a budget of 0.
                setter: token_budget checked_by OptionsPatch::check_token_budget,
                macro_setter: __set_token_budget,
                merge: narrow,
                call_policy: |budget: &Option<u64>| budget.is_some(),
                wire: worker(None),
            },
            /// The most the calls under this scope may cost together (in the unit their
            /// [`Usage::cost`](crate::Usage::cost) is in); always finite and greater than 0.
            /// `None`: no limit. Default `None`.
            ///
            /// Narrowed, never widened, by a nested scope, and replaced by a global update, as
            /// [`token_budget`](ExecutionOptions::token_budget) is.
            cost_budget: Option<f64> = None => {
                kind: Cost,
                default: "None",
                expected: "a finite number greater than 0, or `None`",
                doc: "the most the calls of a scope may cost together; a nested scope can only narrow it",
                parse: parse_cost_budget,
                /// Sets `cost_budget` (`None`: no limit). Applied as a scope, it narrows the
                /// budget in force and never widens it.
                ///
                /// # Errors
                /// [`XcsError::InvalidValue`] for a budget that is not a finite number greater
                /// than 0.
                setter: cost_budget checked_by OptionsPatch::check_cost_budget,
                macro_setter: __set_cost_budget,
                merge: narrow,
                call_policy: |budget: &Option<f64>| budget.is_some(),
                wire: worker(None),
            },
            /// Hedged calls: when a call (each item of a batch on its own) has not finished after
            /// this delay — a fixed time, or a quantile of its operator's own latency over its
            /// recent successful calls (no hedging before 20 of them) — a second attempt on a copy
            /// of the same input starts, and the first success answers the call (the other
            /// attempt is cancelled: an async body is dropped, a sync body abandoned with
            /// [`cancelled`](crate::cancelled) set). At most one hedge per call, retries
            /// included. `None`: no hedging. Default `None`.
            ///
            /// It applies to async operators and to sync operators the call can abandon (an owned
            /// handle: generated operators, `Arc<O>`, `&'static O`, batch items), with inputs
            /// that can be copied (otherwise the call runs unhedged, warned once). A hedge is an
            /// attempt like any other: it waits for its rate slot and its resource and is charged
            /// to budgets. Hedging is the caller's decision: cluster workers run their items
            /// without it.
            hedge_after: Option<Hedge> = None => {
                kind: Hedge,
                default: "None",
                expected: "a number of seconds greater than 0, \"p50\" … \"p99\", or `None`",
                doc: "start a second attempt of a call still running after this delay (seconds) or quantile of its recent latency (\"p95\")",
                parse: parse_hedge,
                /// Sets `hedge_after` (`None`: no hedging); build the value with [`Hedge::after`],
                /// [`Hedge::quantile`] or [`Hedge::parse`].
                setter: hedge_after,
                macro_setter: __set_hedge_after,
                merge: plain,
                call_policy: |hedge: &Option<Hedge>| hedge.is_some(),
                wire: worker(None),
            },
        }
    };
}
pub(crate) use option_list;

/// The most threads a sync batch runs its items on, whatever `max_workers` (or `pmap`'s worker
/// count) asks: a sync batch under a larger `max_workers` runs at most this many items at once.
///
/// `max_workers` itself takes any count of at least 1 (literals in the macros,
/// [`OptionsPatch::from_pairs`](super::OptionsPatch::from_pairs), [`OptionsPatch::from_env`](super::OptionsPatch::from_env) and values computed at run time
/// alike), and [`ExecutionOptions::max_workers`](super::ExecutionOptions::max_workers) holds it as given. Only the threads are
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

/// What the option `name` accepts, for error messages ("" for an unknown name).
pub(super) fn lookup_expected(name: &str) -> String {
    lookup(name).map_or_else(String::new, |spec| spec.expected.to_owned())
}

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
