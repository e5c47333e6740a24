use std::path::Path;

use super::*;
use crate::error::XcsError;

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
        OptionKind::Tokens => "1000",
        OptionKind::Cost => "0.25",
        OptionKind::Hedge => "p95",
    }
}

#[test]
fn defaults_are_the_table_defaults() {
    let checked = defaults_parse_back();
    assert_eq!(checked.len(), OPTIONS.len());
    for (name, parses_back) in checked {
        assert!(
            parses_back,
            "the table's default of `{name}` is not its default"
        );
    }
    // The way a user would write them.
    let shown: Vec<&str> = OPTIONS.iter().map(|spec| spec.default).collect();
    assert_eq!(
        shown,
        [
            "true", "None", "\"auto\"", "false", "false", "None", "None", "0", "None", "None",
            "false", "None", "None", "None"
        ]
    );
}

#[test]
fn call_policy_is_caching_tracing_retries_or_a_rate_limit() {
    let defaults = ExecutionOptions::DEFAULT;
    assert!(!defaults.has_call_policy());
    let with = |patch: OptionsPatch| defaults.patched(&patch).has_call_policy();
    assert!(with(OptionsPatch::new().enable_caching(true)));
    assert!(with(OptionsPatch::new().trace_execution(true)));
    assert!(with(OptionsPatch::new().max_retries(1)));
    assert!(with(OptionsPatch::new().rate_limit(Some(5.0)).unwrap()));
    assert!(with(OptionsPatch::new().token_budget(Some(100)).unwrap()));
    assert!(with(OptionsPatch::new().cost_budget(Some(0.5)).unwrap()));
    // The others are not per-call work (a deadline is checked apart).
    let dir = CacheDir::new("/tmp/xcs-policy").unwrap();
    assert!(!with(
        OptionsPatch::new()
            .use_parallel(false)
            .max_workers(NonZeroUsize::new(2))
            .device_strategy(DeviceStrategy::Cpu)
            .timeout(Some(Duration::from_secs(1)))
            .unwrap()
            .scheduler(Some(Scheduler::Sequential))
            .unwrap()
            .max_retries(0)
            .cache_dir(Some(dir))
            .show_progress(true)
            .token_budget(None)
            .unwrap()
            .cost_budget(None)
            .unwrap()
    ));
}

#[test]
fn device_names_parse_without_a_registry() {
    let spec = lookup("device_strategy").unwrap();
    // Any name reads as a strategy here; `from_pairs` checks the registry.
    assert_eq!(
        parse_device(spec, "quantum").unwrap(),
        DeviceStrategy::named("quantum")
    );
    assert_eq!(parse_device(spec, "GPU").unwrap(), DeviceStrategy::Gpu);
    assert!(parse_device(spec, "").is_err());
    assert!(value_err("device_strategy", ""));
}

#[test]
fn macro_setters_check_what_the_builder_checks() {
    let mut patch = OptionsPatch::new().use_parallel(true);
    let contradiction = std::panic::catch_unwind(move || {
        patch.__set_scheduler(Some(Scheduler::Sequential));
    });
    assert!(contradiction.is_err());
    let mut patch = OptionsPatch::new();
    patch.__set_timeout_seconds(Some(Duration::from_millis(5)));
    patch.__set_rate_limit(Some(2.0));
    let options = ExecutionOptions::default().patched(&patch);
    assert_eq!(options.timeout_seconds, Some(Duration::from_millis(5)));
    assert_eq!(options.rate_limit, Some(2.0));
}

/// Scopes copy the options several times on every entry: they must not grow.
#[cfg(target_pointer_width = "64")]
#[test]
fn options_stay_small() {
    // 80 bytes before the two budgets (an `Option<u64>` and an `Option<f64>`, 16 bytes each);
    // `hedge_after` is 4 bytes.
    assert!(std::mem::size_of::<ExecutionOptions>() <= 112);
    assert_eq!(std::mem::size_of::<Option<crate::options::Hedge>>(), 4);
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
        ("token_budget", "5000"),
        ("cost_budget", "1.25"),
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
    assert_eq!(options.token_budget, Some(5000));
    assert_eq!(options.cost_budget, Some(1.25));
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
fn budgets_parse() {
    for (raw, tokens) in [
        ("1", Some(1)),
        (" 30000 ", Some(30_000)),
        ("none", None),
        ("18446744073709551616", Some(u64::MAX)),
    ] {
        let patch = OptionsPatch::from_pairs([("token_budget", raw)]).unwrap();
        assert_eq!(
            ExecutionOptions::default().patched(&patch).token_budget,
            tokens,
            "{raw:?}"
        );
    }
    for bad in ["0", "-1", "1.5", "1e3", "lots", ""] {
        assert!(value_err("token_budget", bad), "tokens {bad:?}");
    }
    for (raw, cost) in [("2", Some(2.0)), ("0.05", Some(0.05)), ("None", None)] {
        let patch = OptionsPatch::from_pairs([("cost_budget", raw)]).unwrap();
        assert_eq!(
            ExecutionOptions::default().patched(&patch).cost_budget,
            cost
        );
    }
    for bad in ["0", "0.0", "-0.5", "NaN", "inf", "1e400", "cheap", ""] {
        assert!(value_err("cost_budget", bad), "cost {bad:?}");
    }
    match OptionsPatch::new().token_budget(Some(0)) {
        Err(XcsError::InvalidValue { option, .. }) => assert_eq!(option, "token_budget"),
        other => panic!("{other:?}"),
    }
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        match OptionsPatch::new().cost_budget(Some(bad)) {
            Err(XcsError::InvalidValue { option, .. }) => assert_eq!(option, "cost_budget"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    let vars = [("XCS_TOKEN_BUDGET", "800"), ("XCS_COST_BUDGET", "3")];
    let options = ExecutionOptions::default().patched(&OptionsPatch::from_vars(vars).unwrap());
    assert_eq!(options.token_budget, Some(800));
    assert_eq!(options.cost_budget, Some(3.0));
}

/// A nested scope can only narrow a budget: the smaller of the two stays, and `None` (no
/// limit) never widens one in force.
#[test]
fn budgets_narrow_in_scopes() {
    let tokens = |budget: Option<u64>| OptionsPatch::new().token_budget(budget).unwrap();
    let cost = |budget: Option<f64>| OptionsPatch::new().cost_budget(budget).unwrap();
    let outer = ExecutionOptions::default()
        .patched(&tokens(Some(100)))
        .patched(&cost(Some(1.0)));
    assert_eq!(outer.token_budget, Some(100));
    assert_eq!(outer.cost_budget, Some(1.0));
    for (inner, expected) in [
        (Some(1000), Some(100)),
        (None, Some(100)),
        (Some(10), Some(10)),
    ] {
        assert_eq!(
            outer.patched(&tokens(inner)).token_budget,
            expected,
            "{inner:?}"
        );
    }
    for (inner, expected) in [
        (Some(5.0), Some(1.0)),
        (None, Some(1.0)),
        (Some(0.5), Some(0.5)),
    ] {
        assert_eq!(
            outer.patched(&cost(inner)).cost_budget,
            expected,
            "{inner:?}"
        );
    }
    // Without a budget in force, a scope's budget is the budget.
    assert_eq!(
        ExecutionOptions::default()
            .patched(&tokens(Some(1000)))
            .token_budget,
        Some(1000)
    );
    // Merging patches narrows the same way, so applying the merge is applying one after the
    // other.
    for (lower, upper) in [
        (tokens(Some(100)), tokens(Some(1000))),
        (tokens(Some(100)), tokens(None)),
        (tokens(None), tokens(Some(10))),
        (tokens(Some(100)).merged(&cost(Some(2.0))), cost(Some(3.0))),
        (OptionsPatch::new(), cost(Some(3.0))),
    ] {
        let merged = lower.merged(&upper);
        assert_eq!(
            outer.patched(&merged),
            outer.patched(&lower).patched(&upper)
        );
        assert_eq!(
            ExecutionOptions::default().patched(&merged),
            ExecutionOptions::default().patched(&lower).patched(&upper)
        );
    }
    assert_eq!(
        ExecutionOptions::default()
            .patched(&tokens(Some(100)).merged(&tokens(Some(1000))))
            .token_budget,
        Some(100)
    );
    // Every other option still takes the newer setting.
    let mut newer = outer;
    OptionsPatch::new().max_retries(3).apply_to(&mut newer);
    assert_eq!(newer.max_retries, 3);
}

/// A global update replaces a budget like any other option: it may widen or clear it.
#[test]
fn global_updates_replace_budgets() {
    let mut global = ExecutionOptions::default();
    let tokens = |budget: Option<u64>| OptionsPatch::new().token_budget(budget).unwrap();
    tokens(Some(100)).apply_as_global(&mut global);
    assert_eq!(global.token_budget, Some(100));
    tokens(Some(1000)).apply_as_global(&mut global);
    assert_eq!(global.token_budget, Some(1000));
    OptionsPatch::new()
        .cost_budget(Some(2.0))
        .unwrap()
        .apply_as_global(&mut global);
    tokens(None).apply_as_global(&mut global);
    assert_eq!(global.token_budget, None);
    assert_eq!(global.cost_budget, Some(2.0));
    // And a scope on top of it narrows it.
    assert_eq!(
        global
            .patched(&OptionsPatch::new().cost_budget(Some(9.0)).unwrap())
            .cost_budget,
        Some(2.0)
    );
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
        OptionsPatch::from_pairs([("max_workers", "None"), ("timeout_seconds", "none")]).unwrap();
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
        OptionsPatch::from_vars([("XCS_SHOW_PROGRESS", "true"), ("XCS_CACHE_DIR", "/c")]).unwrap();
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

#[test]
fn hedge_after_parses_its_forms() {
    use std::time::Duration;
    let patch = OptionsPatch::from_pairs([("hedge_after", "p95")]).unwrap();
    let options = ExecutionOptions::default().patched(&patch);
    assert_eq!(options.hedge_after, crate::options::Hedge::quantile(95));
    let patch = OptionsPatch::from_pairs([("hedge_after", " 0.25 ")]).unwrap();
    let options = options.patched(&patch);
    assert_eq!(
        options.hedge_after,
        crate::options::Hedge::after(Duration::from_millis(250))
    );
    let patch = OptionsPatch::from_pairs([("hedge_after", "none")]).unwrap();
    assert_eq!(options.patched(&patch).hedge_after, None);
    for bad in ["p100", "p5", "fast", "0", "-1", "p", "p9x", "inf"] {
        match OptionsPatch::from_pairs([("hedge_after", bad)]) {
            Err(XcsError::InvalidValue { option, value, .. }) => {
                assert_eq!((option.as_str(), value.as_str()), ("hedge_after", bad));
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    // A scope overrides it like any plain option.
    let outer = OptionsPatch::new().hedge_after(crate::options::Hedge::quantile(50));
    let inner = OptionsPatch::new().hedge_after(None);
    let options = ExecutionOptions::default().patched(&outer).patched(&inner);
    assert_eq!(options.hedge_after, None);
    assert!(
        ExecutionOptions::default()
            .patched(&outer)
            .has_call_policy()
    );
}
