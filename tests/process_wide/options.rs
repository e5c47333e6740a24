//! The options: the option table the macros and the run-time parser share, parsing
//! (`from_pairs`, `from_env`, `from_vars`), and scopes and global options observed through the
//! macros and the run-time API: what a nested scope sees, what comes back on every exit path,
//! what other threads and later batches see.
//!
//! Global options are process-wide, so every test here holds `common::global_lock` (through
//! [`serial`] or directly) and leaves the global defaults behind it.

use crate::common;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    Double, Probe, ProbeOptions, ProbeOptionsInputs, assert_lowercase_led, global_lock, nz,
    panic_message, serial,
};
use xcs::{
    Axis, CacheStats, DeviceStrategy, ExecutionOptions, OPTIONS, Operator, OptionKind,
    OptionsPatch, Scheduler, Trace, XcsError, execution_options, get_execution_options,
    get_global_options, reset_execution_options, set_execution_options, set_global_options, vmap,
    with_options,
};

fn workers(n: usize) -> Option<NonZeroUsize> {
    NonZeroUsize::new(n)
}

/// The compile-time checks and the run-time parser read the same table: every name the macros
/// accept parses at run time, the macros' list of valid names (in the snapshot of
/// `unknown_option_lists_the_table`) is the table's, and one macro call naming every option
/// gives the options `from_pairs` gives for the same values.
#[test]
fn macros_and_run_time_parser_agree_on_names() {
    // Reads the options in force, which tests that set the global options change.
    let _lock = common::global_lock();
    for spec in OPTIONS {
        let sample = match spec.kind {
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
        };
        OptionsPatch::from_pairs([(spec.name, sample)])
            .unwrap_or_else(|err| panic!("`{}` rejected at run time: {err}", spec.name));
    }
    let snapshot = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/xcs-ui/tests/ui/options/fail/unknown_option_lists_the_table.stderr"
    ))
    .unwrap();
    let listed: Vec<&str> = snapshot
        .split("(valid options: ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("the snapshot lists the valid options")
        .split(", ")
        .map(|name| name.trim_matches('`'))
        .collect();
    let table: Vec<&str> = OPTIONS.iter().map(|spec| spec.name).collect();
    assert_eq!(listed, table);
    // Every option in the table is set by one macro call that names them all.
    let all = execution_options!(
        use_parallel = false,
        max_workers = 3,
        device_strategy = "cpu",
        enable_caching = true,
        trace_execution = true,
        timeout_seconds = 1.5,
        scheduler = "sequential",
        max_retries = 2,
        rate_limit = 0.5,
        cache_dir = "/tmp/xcs-cache",
        show_progress = true,
        token_budget = 1000,
        cost_budget = 0.25,
        hedge_after = "p95",
        => get_execution_options()
    );
    let pairs = [
        ("use_parallel", "false"),
        ("max_workers", "3"),
        ("device_strategy", "cpu"),
        ("enable_caching", "true"),
        ("trace_execution", "true"),
        ("timeout_seconds", "1.5"),
        ("scheduler", "sequential"),
        ("max_retries", "2"),
        ("rate_limit", "0.5"),
        ("cache_dir", "/tmp/xcs-cache"),
        ("show_progress", "true"),
        ("token_budget", "1000"),
        ("cost_budget", "0.25"),
        ("hedge_after", "p95"),
    ];
    let named: Vec<&str> = pairs.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        named, table,
        "the calls above name every option, in table order"
    );
    let parsed = OptionsPatch::from_pairs(pairs).unwrap();
    let expected = ExecutionOptions::default().patched(&parsed);
    assert_eq!(all, expected);
    assert_ne!(all, ExecutionOptions::default());
}

#[test]
fn global_options_reach_later_batches() {
    let _lock = global_lock();
    xcs::set_global_options(&OptionsPatch::new().use_parallel(false));
    let (op, record) = Probe::new(1);
    let result = std::thread::spawn(move || vmap(op).call((0..8).collect()))
        .join()
        .unwrap();
    xcs::reset_execution_options();
    result.unwrap();
    assert_eq!(record.distinct_threads(), 1);
    assert!(record.seen.lock().unwrap().iter().all(|o| !o.use_parallel));
    assert_eq!(xcs::get_global_options(), ExecutionOptions::default());
}

/// The environment is shared: another program's `XCS_` variables are ignored, next to real
/// options; a likely misspelling of an option stays an error with its suggestion.
#[test]
fn from_env_ignores_variables_that_are_not_near_an_option() {
    use std::num::NonZeroUsize;
    use xcs::XcsError;
    let theirs = [
        ("XCS_HOME", "/opt/xcs"),
        ("XCS_API_KEY", "secret"),
        ("XCS_LLM_BASE_URL", "http://localhost:11434/v1"),
        ("XCS_WORKER_ID", "3"),
        ("XCS_MAX_WORKERS", "4"),
    ];
    let patch = OptionsPatch::from_vars(theirs).unwrap();
    assert_eq!(
        ExecutionOptions::default().patched(&patch).max_workers,
        NonZeroUsize::new(4)
    );
    assert!(
        OptionsPatch::from_vars(theirs[..4].iter().copied())
            .unwrap()
            .is_empty()
    );
    for (near, option) in [
        ("XCS_MAX_WORKRS", "max_workers"),
        ("XCS_TIMEOUT", "timeout_seconds"),
        ("XCS_USE_PARALEL", "use_parallel"),
        ("XCS_ENABLE_CACHE", "enable_caching"),
    ] {
        match OptionsPatch::from_vars([(near, "1"), ("XCS_HOME", "/x")]) {
            Err(error @ XcsError::InvalidOption { .. }) => {
                let name = near.trim_start_matches("XCS_").to_ascii_lowercase();
                assert_eq!(
                    error.to_string(),
                    format!("Invalid execution option: {name}; did you mean `{option}`?")
                );
            }
            other => panic!("{near}: {other:?}"),
        }
    }
}

#[test]
fn nested_scopes_see_the_outer_options_and_restore_them() {
    let _serial = serial();
    let base = get_execution_options();
    assert_eq!(base, ExecutionOptions::default());
    execution_options!(max_workers = 2, enable_caching = true => {
        let outer = get_execution_options();
        assert_eq!(outer.max_workers, workers(2));
        execution_options!(use_parallel = false, max_workers = 3 => {
            let inner = get_execution_options();
            assert!(!inner.use_parallel);
            assert_eq!(inner.max_workers, workers(3));
            // Inherited from the outer scope: the inner one does not name it.
            assert!(inner.enable_caching);
        });
        assert_eq!(get_execution_options(), outer);
    });
    assert_eq!(get_execution_options(), base);
}

#[test]
fn a_scope_sets_only_what_it_names() {
    let _serial = serial();
    set_execution_options!(trace_execution = true, device_strategy = "cpu");
    let seen = execution_options!(timeout_seconds = 1.5 => get_execution_options());
    let expected = {
        let mut expected = get_global_options();
        expected.timeout_seconds = Some(Duration::from_millis(1500));
        expected
    };
    assert_eq!(seen, expected);
    assert!(seen.trace_execution);
    assert_eq!(seen.device_strategy, DeviceStrategy::Cpu);
}

#[test]
fn the_scope_yields_its_body_value() {
    let _serial = serial();
    let text = String::from("borrowed");
    let len = execution_options!(use_parallel = false => text.len());
    assert_eq!(len, 8);
    assert_eq!(execution_options!(=> 1 + 1), 2);
}

#[test]
fn options_are_restored_after_a_panic() {
    let _serial = serial();
    let result = catch_unwind(|| {
        execution_options!(use_parallel = false, max_workers = 1 => {
            assert!(!get_execution_options().use_parallel);
            panic!("boom");
        })
    });
    assert!(result.is_err());
    assert_eq!(get_execution_options(), ExecutionOptions::default());
}

#[test]
fn options_are_restored_after_question_mark() {
    let _serial = serial();
    fn parse(text: &str) -> Result<u32, std::num::ParseIntError> {
        let n = execution_options!(trace_execution = true => {
            assert!(get_execution_options().trace_execution);
            text.parse::<u32>()?
        });
        Ok(n)
    }
    assert!(parse("not a number").is_err());
    assert!(!get_execution_options().trace_execution);
    assert_eq!(parse("7"), Ok(7));
    assert!(!get_execution_options().trace_execution);
}

#[test]
fn options_are_restored_after_return_and_break() {
    let _serial = serial();
    fn early(leave: bool) -> bool {
        execution_options!(enable_caching = true => {
            if leave {
                return get_execution_options().enable_caching;
            }
        });
        false
    }
    assert!(early(true));
    assert!(!get_execution_options().enable_caching);
    assert!(!early(false));
    assert!(!get_execution_options().enable_caching);

    let mut seen = Vec::new();
    for i in 0..5 {
        execution_options!(max_workers = 4 => {
            seen.push(get_execution_options().max_workers);
            if i == 1 {
                break;
            }
        });
    }
    assert_eq!(seen, [workers(4), workers(4)]);
    assert_eq!(get_execution_options().max_workers, None);
}

#[test]
fn scopes_do_not_leak_into_other_threads() {
    let _serial = serial();
    execution_options!(use_parallel = false, max_workers = 2 => {
        let (in_thread, in_scope) = thread::scope(|s| {
            let other = s.spawn(get_execution_options).join().unwrap();
            (other, get_execution_options())
        });
        assert_eq!(in_thread, ExecutionOptions::default());
        assert!(!in_scope.use_parallel);
    });
}

#[test]
fn a_global_update_is_visible_to_other_threads_at_once() {
    let _serial = serial();
    let (to_worker, from_main) = mpsc::channel::<()>();
    let (to_main, from_worker) = mpsc::channel::<ExecutionOptions>();
    thread::scope(|s| {
        s.spawn(move || {
            // Read once before the update, so the worker has options cached.
            to_main.send(get_execution_options()).unwrap();
            from_main.recv().unwrap();
            to_main.send(get_execution_options()).unwrap();
        });
        assert!(from_worker.recv().unwrap().use_parallel);
        let global = set_execution_options!(use_parallel = false, max_workers = 6);
        to_worker.send(()).unwrap();
        let seen = from_worker.recv().unwrap();
        assert_eq!(seen, global);
        assert!(!seen.use_parallel);
        assert_eq!(seen.max_workers, workers(6));
    });
}

#[test]
fn a_scope_overrides_the_global_options_it_names() {
    let _serial = serial();
    execution_options!(max_workers = 2 => {
        set_execution_options!(max_workers = 8, enable_caching = true);
        let seen = get_execution_options();
        // Named by the scope: the scope wins. Not named: the new global shows through.
        assert_eq!(seen.max_workers, workers(2));
        assert!(seen.enable_caching);
    });
    assert_eq!(get_execution_options().max_workers, workers(8));
}

#[test]
fn set_execution_options_returns_the_new_global_options() {
    let _serial = serial();
    let first = set_execution_options!(max_workers = 3);
    assert_eq!(first.max_workers, workers(3));
    // Merged, not replaced: the earlier setting stays.
    let second = set_execution_options!(timeout_seconds = 2, scheduler = "sequential");
    assert_eq!(second.max_workers, workers(3));
    assert_eq!(second.timeout_seconds, Some(Duration::from_secs(2)));
    assert!(!second.use_parallel);
    assert_eq!(second, get_global_options());
    assert_eq!(second, get_execution_options());
}

/// A budget only narrows in a scope, the global one included, and the caller's narrowed budget
/// is what batch items see; a global update replaces the global budget (widening or clearing
/// it).
#[test]
fn budgets_narrow_in_scopes_and_global_updates_replace_them() {
    let _serial = serial();
    let global = set_execution_options!(token_budget = 100, cost_budget = 1.0);
    assert_eq!(
        (global.token_budget, global.cost_budget),
        (Some(100), Some(1.0))
    );
    let seen =
        execution_options!(token_budget = 1000, cost_budget = None => get_execution_options());
    assert_eq!(
        (seen.token_budget, seen.cost_budget),
        (Some(100), Some(1.0))
    );
    let (outer, inner, items) = execution_options!(token_budget = 50, cost_budget = 0.5 => {
        let outer = get_execution_options();
        let (inner, items) = execution_options!(token_budget = None, cost_budget = 2 => {
            let (op, record) = Probe::new(1);
            vmap(op).call((0..4).collect()).unwrap();
            let items = record.seen.lock().unwrap().clone();
            (get_execution_options(), items)
        });
        (outer, inner, items)
    });
    assert_eq!(
        (outer.token_budget, outer.cost_budget),
        (Some(50), Some(0.5))
    );
    assert_eq!(
        (inner.token_budget, inner.cost_budget),
        (Some(50), Some(0.5))
    );
    assert_eq!(items.len(), 4);
    assert!(
        items
            .iter()
            .all(|o| (o.token_budget, o.cost_budget) == (Some(50), Some(0.5)))
    );
    let global = set_execution_options!(token_budget = 1000);
    assert_eq!(
        (global.token_budget, global.cost_budget),
        (Some(1000), Some(1.0))
    );
    let global = set_global_options(&OptionsPatch::new().cost_budget(None).unwrap());
    assert_eq!(
        (global.token_budget, global.cost_budget),
        (Some(1000), None)
    );
    reset_execution_options();
    assert_eq!(get_global_options().token_budget, None);
}

#[test]
fn reset_restores_the_defaults() {
    let _serial = serial();
    set_execution_options!(
        use_parallel = false,
        trace_execution = true,
        max_workers = 1
    );
    assert_ne!(get_global_options(), ExecutionOptions::default());
    reset_execution_options();
    assert_eq!(get_global_options(), ExecutionOptions::default());
    assert_eq!(get_execution_options(), ExecutionOptions::default());
}

#[test]
fn with_options_is_the_run_time_form() {
    let _serial = serial();
    let patch =
        OptionsPatch::from_pairs([("max_workers", "5"), ("enable_caching", "true")]).unwrap();
    let seen = with_options(&patch, get_execution_options);
    assert_eq!(seen.max_workers, workers(5));
    assert!(seen.enable_caching);
    assert_eq!(get_execution_options(), ExecutionOptions::default());
    // The macro with the same settings gives the same options.
    let by_macro =
        execution_options!(max_workers = 5, enable_caching = true => get_execution_options());
    assert_eq!(by_macro, seen);
    // And `set_global_options` is the run-time form of `set_execution_options!`.
    assert_eq!(set_global_options(&patch), by_macro);
}

#[test]
fn run_time_parse_errors_leave_the_options_untouched() {
    let _serial = serial();
    set_execution_options!(max_workers = 2);
    let before = (get_global_options(), get_execution_options());
    let bad: [&[(&str, &str)]; 5] = [
        &[("max_workers", "4"), ("invalid_option", "true")],
        &[("use_parallel", "false"), ("max_workers", "0")],
        &[("timeout_seconds", "-1")],
        &[("scheduler", "sequential"), ("use_parallel", "true")],
        &[("max_workers", "3"), ("max_workers", "4")],
    ];
    for pairs in bad {
        let result = OptionsPatch::from_pairs(pairs.iter().copied());
        assert!(result.is_err(), "{pairs:?}");
        assert_eq!((get_global_options(), get_execution_options()), before);
    }
    let err = OptionsPatch::from_pairs([("invalid_option", "true")]).unwrap_err();
    assert_eq!(err.to_string(), "Invalid execution option: invalid_option");
    assert!(matches!(err, XcsError::InvalidOption { .. }));
}

#[test]
fn legacy_scheduler_sets_use_parallel() {
    let _serial = serial();
    let seen = execution_options!(scheduler = "sequential" => get_execution_options());
    assert!(!seen.use_parallel);
    assert_eq!(seen.scheduler, Some(Scheduler::Sequential));
    let seen = execution_options!(use_parallel = false => {
        execution_options!(scheduler = "wave" => get_execution_options())
    });
    assert!(seen.use_parallel);
    let parsed = OptionsPatch::from_pairs([("scheduler", "topological")]).unwrap();
    assert!(!with_options(&parsed, get_execution_options).use_parallel);
}

#[test]
fn invalid_run_time_values_panic_naming_the_option_and_change_nothing() {
    let _serial = serial();
    let zero = 0_usize;
    let message = |payload: Box<dyn std::any::Any + Send>| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    };
    let panicked = catch_unwind(|| execution_options!(max_workers = zero => ())).unwrap_err();
    assert!(message(panicked).contains("`max_workers` may not be 0"));
    let nan = f64::NAN;
    let panicked = catch_unwind(|| execution_options!(timeout_seconds = nan => ())).unwrap_err();
    assert!(message(panicked).contains("`timeout_seconds`"));
    let scheduler = Scheduler::Sequential;
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        set_execution_options!(use_parallel = true, scheduler = scheduler)
    }))
    .unwrap_err();
    assert!(message(panicked).contains("scheduler"));
    assert_eq!(get_execution_options(), ExecutionOptions::default());
    assert_eq!(get_global_options(), ExecutionOptions::default());
}

mod prelude_only {
    // Only the prelude: macros, `Operator`, `vmap`, `pmap` and the option functions.
    use xcs::prelude::*;

    pub fn run() {
        let before = get_execution_options();
        let inside = execution_options!(max_workers = 3 => get_execution_options());
        assert_eq!(inside.max_workers, std::num::NonZeroUsize::new(3));
        let global = set_execution_options!(enable_caching = true);
        assert!(global.enable_caching);
        reset_execution_options();
        assert_eq!(get_execution_options(), before);
        let patch = xcs::OptionsPatch::from_pairs([("use_parallel", "false")]).unwrap();
        assert!(!with_options(&patch, || get_execution_options().use_parallel));
        let _ = set_global_options(&patch);
        assert!(!get_execution_options().use_parallel);
        reset_execution_options();
        let out = vmap(super::Double).call(vec![1, 2]).unwrap();
        assert_eq!(out, vec![2, 4]);
        let out = pmap(super::Double, 2).call(vec![3]).unwrap();
        assert_eq!(out, vec![6]);
        assert_eq!(super::Double.name(), "double");
    }
}

#[test]
fn prelude_brings_macros_operator_executors_and_option_functions() {
    let _s = serial();
    prelude_only::run();
}

#[test]
fn root_reexports_exist() {
    let _s = serial();
    let _: fn() -> Option<Instant> = xcs::deadline;
    let _: fn() -> bool = xcs::cancelled;
    let _: Trace = xcs::take_trace();
    let _: CacheStats = xcs::cache_stats();
    xcs::clear_cache();
    let _: xcs::VMap<Double> = xcs::vmap(Double);
    let _: xcs::PMap<Double> = xcs::pmap(Double, 1);
    let _: ExecutionOptions = xcs::get_execution_options();
    xcs::reset_execution_options();
    let _: Result<OptionsPatch, XcsError> =
        xcs::OptionsPatch::from_pairs(Vec::<(&str, &str)>::new());
    let _: Option<Scheduler> = ExecutionOptions::default().scheduler;
    let _: Axis<u64> = 1u64.into();
}

#[test]
fn execution_options_defaults_and_derives() {
    let _s = serial();
    let d = ExecutionOptions::default();
    assert!(d.use_parallel);
    assert_eq!(d.max_workers, None);
    assert_eq!(d.device_strategy, DeviceStrategy::Auto);
    assert!(!d.enable_caching);
    assert!(!d.trace_execution);
    assert_eq!(d.timeout_seconds, None);
    assert_eq!(d.scheduler, None);
    fn clone_of<T: Clone>(t: &T) -> T {
        t.clone()
    }
    assert_eq!(clone_of(&d), d);
    assert!(!format!("{d:?}").is_empty());
    assert_eq!(get_execution_options(), ExecutionOptions::default());
    assert_eq!(DeviceStrategy::default(), DeviceStrategy::Auto);
}

#[test]
fn macro_literal_forms() {
    let _s = serial();
    let o = execution_options!(
        use_parallel = false,
        max_workers = 4,
        device_strategy = "cpu",
        enable_caching = true,
        trace_execution = true,
        timeout_seconds = 1.5
        => get_execution_options()
    );
    assert!(!o.use_parallel);
    assert_eq!(o.max_workers, nz(4));
    assert_eq!(o.device_strategy, DeviceStrategy::Cpu);
    assert!(o.enable_caching);
    assert!(o.trace_execution);
    assert_eq!(o.timeout_seconds, Some(Duration::from_millis(1500)));

    let o = execution_options!(timeout_seconds = 2 => get_execution_options());
    assert_eq!(o.timeout_seconds, Some(Duration::from_secs(2)));
    let o = execution_options!(device_strategy = "gpu" => get_execution_options());
    assert_eq!(o.device_strategy, DeviceStrategy::Gpu);
    let o = execution_options!(device_strategy = "auto" => get_execution_options());
    assert_eq!(o.device_strategy, DeviceStrategy::Auto);

    set_execution_options!(max_workers = 5, timeout_seconds = 3);
    let o =
        execution_options!(max_workers = None, timeout_seconds = None => get_execution_options());
    assert_eq!(o.max_workers, None);
    assert_eq!(o.timeout_seconds, None);
}

#[test]
fn scheduler_literals_set_use_parallel() {
    let _s = serial();
    for o in [
        execution_options!(scheduler = "sequential" => get_execution_options()),
        execution_options!(scheduler = "topological" => get_execution_options()),
    ] {
        assert!(!o.use_parallel);
        assert!(o.scheduler.is_some());
    }
    set_execution_options!(use_parallel = false);
    for o in [
        execution_options!(scheduler = "parallel" => get_execution_options()),
        execution_options!(scheduler = "wave" => get_execution_options()),
        execution_options!(scheduler = "auto" => get_execution_options()),
    ] {
        assert!(o.use_parallel);
        assert!(o.scheduler.is_some());
    }
    // Consistent combinations are fine.
    let o = execution_options!(scheduler = "sequential", use_parallel = false => get_execution_options());
    assert!(!o.use_parallel);
    let o =
        execution_options!(scheduler = "parallel", use_parallel = true => get_execution_options());
    assert!(o.use_parallel);
}

#[test]
fn from_pairs_parses_every_option() {
    let _s = serial();
    let patch = OptionsPatch::from_pairs([
        ("use_parallel", "false"),
        ("max_workers", "8"),
        ("device_strategy", "cpu"),
        ("enable_caching", "true"),
        ("trace_execution", "true"),
        ("timeout_seconds", "2.5"),
    ])
    .unwrap();
    let o = with_options(&patch, get_execution_options);
    assert!(!o.use_parallel);
    assert_eq!(o.max_workers, nz(8));
    assert_eq!(o.device_strategy, DeviceStrategy::Cpu);
    assert!(o.enable_caching);
    assert!(o.trace_execution);
    assert_eq!(o.timeout_seconds, Some(Duration::from_millis(2500)));
    // Outside the scope nothing leaked.
    assert_eq!(get_execution_options(), ExecutionOptions::default());

    let patch = OptionsPatch::from_pairs([("scheduler", "sequential")]).unwrap();
    let o = with_options(&patch, get_execution_options);
    assert!(!o.use_parallel);
    assert!(o.scheduler.is_some());
    let patch =
        OptionsPatch::from_pairs([("scheduler", "sequential"), ("use_parallel", "false")]).unwrap();
    assert!(!with_options(&patch, get_execution_options).use_parallel);
    let patch = OptionsPatch::from_pairs([("timeout_seconds", "3")]).unwrap();
    assert_eq!(
        with_options(&patch, get_execution_options).timeout_seconds,
        Some(Duration::from_secs(3))
    );
}

#[test]
fn from_pairs_accepts_owned_string_pairs() {
    let _s = serial();
    let config: HashMap<String, String> = [("max_workers".to_string(), "2".to_string())]
        .into_iter()
        .collect();
    let patch = OptionsPatch::from_pairs(config).unwrap();
    assert_eq!(
        with_options(&patch, get_execution_options).max_workers,
        nz(2)
    );
}

#[test]
fn from_pairs_unknown_name_is_invalid_option_with_exact_message() {
    let _s = serial();
    let err = OptionsPatch::from_pairs([("max_worker", "8")]).unwrap_err();
    assert!(matches!(err, XcsError::InvalidOption { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "Invalid execution option: max_worker; did you mean `max_workers`?"
    );

    let err = OptionsPatch::from_pairs([("frobnicate_everything", "1")]).unwrap_err();
    assert!(matches!(err, XcsError::InvalidOption { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "Invalid execution option: frobnicate_everything"
    );
}

#[test]
fn from_pairs_bad_values_are_invalid_value() {
    let _s = serial();
    for (name, value) in [
        ("max_workers", "abc"),
        ("max_workers", "0"),
        ("use_parallel", "maybe"),
        ("timeout_seconds", "-1"),
        ("timeout_seconds", "0"),
        ("device_strategy", "quantum"),
        ("scheduler", "fifo"),
        ("enable_caching", "yes please"),
    ] {
        let err = OptionsPatch::from_pairs([(name, value)]).unwrap_err();
        assert!(
            matches!(err, XcsError::InvalidValue { .. }),
            "{name}={value}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(name),
            "{msg:?} does not name the option {name}"
        );
        assert!(
            msg.contains(value),
            "{msg:?} does not name the value {value}"
        );
        assert_lowercase_led(&err);
    }
}

#[test]
fn from_pairs_contradicting_scheduler_is_invalid_value() {
    let _s = serial();
    for pairs in [
        [("scheduler", "sequential"), ("use_parallel", "true")],
        [("use_parallel", "false"), ("scheduler", "parallel")],
    ] {
        let err = OptionsPatch::from_pairs(pairs).unwrap_err();
        assert!(matches!(err, XcsError::InvalidValue { .. }), "{err:?}");
    }
}

#[test]
fn from_env_reads_xcs_variables() {
    let _s = serial();
    // SAFETY: every test of this binary holds `common::global_lock()`, and no other thread reads
    // the environment now.
    unsafe {
        std::env::set_var("XCS_MAX_WORKERS", "8");
        std::env::set_var("XCS_USE_PARALLEL", "false");
    }
    let patch = OptionsPatch::from_env();
    unsafe {
        std::env::remove_var("XCS_MAX_WORKERS");
        std::env::remove_var("XCS_USE_PARALLEL");
    }
    let patch = patch.expect("valid XCS_ variables");
    let o = with_options(&patch, get_execution_options);
    assert_eq!(o.max_workers, nz(8));
    assert!(!o.use_parallel);
    // Options not named in the environment are inherited.
    assert!(!o.enable_caching);
}

#[test]
fn from_env_bad_value_is_invalid_value() {
    let _s = serial();
    unsafe {
        std::env::set_var("XCS_MAX_WORKERS", "lots");
    }
    let res = OptionsPatch::from_env();
    unsafe {
        std::env::remove_var("XCS_MAX_WORKERS");
    }
    let err = res.unwrap_err();
    assert!(matches!(err, XcsError::InvalidValue { .. }), "{err:?}");
    assert!(err.to_string().contains("max_workers") || err.to_string().contains("MAX_WORKERS"));
}

#[test]
fn scope_yields_value_and_restores() {
    let _s = serial();
    let v = execution_options!(max_workers = 2 => {
        let a = 40;
        a + 2
    });
    assert_eq!(v, 42);
    assert_eq!(get_execution_options(), ExecutionOptions::default());

    // Nested scopes: inner sets only what it names.
    execution_options!(max_workers = 2, enable_caching = true => {
        execution_options!(max_workers = 3 => {
            let o = get_execution_options();
            assert_eq!(o.max_workers, nz(3));
            assert!(o.enable_caching);
        });
        let o = get_execution_options();
        assert_eq!(o.max_workers, nz(2));
        assert!(o.enable_caching);
    });
    assert_eq!(get_execution_options(), ExecutionOptions::default());
}

fn early_return() -> u32 {
    execution_options!(max_workers = 2 => {
        if get_execution_options().max_workers == NonZeroUsize::new(2) {
            return 7;
        }
        0
    })
}

fn question_mark(text: &str) -> Result<u64, std::num::ParseIntError> {
    let n = execution_options!(max_workers = 2 => {
        let n: u64 = text.parse()?;
        n
    });
    Ok(n)
}

#[test]
fn scope_is_inline_return_question_break_borrows() {
    let _s = serial();
    assert_eq!(early_return(), 7);
    assert_eq!(get_execution_options(), ExecutionOptions::default());

    assert_eq!(question_mark("12"), Ok(12));
    assert!(question_mark("x").is_err());
    assert_eq!(get_execution_options(), ExecutionOptions::default());

    let mut i = 0;
    loop {
        execution_options!(use_parallel = false => {
            i += 1;
            if i == 3 {
                break;
            }
            continue;
        });
    }
    assert_eq!(i, 3);
    assert_eq!(get_execution_options(), ExecutionOptions::default());

    // Borrows: a mutable borrow inside, and a borrow of a local returned out of the scope.
    let mut items = Vec::new();
    execution_options!(max_workers = 2 => items.push(1));
    let text = String::from("hello world");
    let word: &str = execution_options!(max_workers = 2 => &text[..5]);
    assert_eq!(word, "hello");
    assert_eq!(items, vec![1]);
}

#[test]
fn scope_restores_after_panic() {
    let _s = serial();
    let r = catch_unwind(|| {
        execution_options!(max_workers = 2, use_parallel = false => {
            panic!("inside the scope");
        })
    });
    assert!(r.is_err());
    assert_eq!(get_execution_options(), ExecutionOptions::default());
}

#[test]
fn set_execution_options_returns_new_globals() {
    let _s = serial();
    let g = set_execution_options!(max_workers = 3, enable_caching = true);
    assert_eq!(g.max_workers, nz(3));
    assert!(g.enable_caching);
    assert_eq!(get_execution_options(), g);
    // Merges: a second update keeps what the first set.
    let g = set_execution_options!(trace_execution = true);
    assert_eq!(g.max_workers, nz(3));
    assert!(g.trace_execution);
    // Inside a scope it still returns the global options, not the scope's.
    let g = execution_options!(use_parallel = false => set_execution_options!(timeout_seconds = 4));
    assert!(g.use_parallel);
    assert_eq!(g.timeout_seconds, Some(Duration::from_secs(4)));
    reset_execution_options();
    assert_eq!(get_execution_options(), ExecutionOptions::default());
}

#[test]
fn set_global_options_runtime_form() {
    let _s = serial();
    let patch = OptionsPatch::from_pairs([("max_workers", "6")]).unwrap();
    let _ = set_global_options(&patch);
    assert_eq!(get_execution_options().max_workers, nz(6));
    // A global update is visible from another thread at once.
    let other = thread::spawn(get_execution_options).join().unwrap();
    assert_eq!(other.max_workers, nz(6));
    reset_execution_options();
    assert_eq!(get_execution_options().max_workers, None);
}

#[test]
fn scopes_are_per_thread_and_global_updates_respect_active_scopes() {
    let _s = serial();
    // A scope never leaks into another thread.
    execution_options!(max_workers = 2, use_parallel = false => {
        let other = thread::spawn(get_execution_options).join().unwrap();
        assert_eq!(other, ExecutionOptions::default());
    });

    // Thread B holds a scope; the main thread updates the globals meanwhile.
    let (in_scope_tx, in_scope_rx) = std::sync::mpsc::channel();
    let (updated_tx, updated_rx) = std::sync::mpsc::channel::<()>();
    let b = thread::spawn(move || {
        execution_options!(max_workers = 2 => {
            in_scope_tx.send(()).unwrap();
            updated_rx.recv_timeout(Duration::from_secs(10)).unwrap();
            get_execution_options()
        })
    });
    in_scope_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    set_execution_options!(max_workers = 5, enable_caching = true);
    updated_tx.send(()).unwrap();
    let seen = b.join().unwrap();
    assert_eq!(seen.max_workers, nz(2), "the scope's own option wins");
    assert!(seen.enable_caching, "the global update is visible at once");
}

#[test]
fn non_literal_values_of_fitting_types() {
    let _s = serial();
    let n: usize = 3;
    let o = execution_options!(max_workers = n => get_execution_options());
    assert_eq!(o.max_workers, nz(3));
    let nzv = NonZeroUsize::new(4).unwrap();
    let o = execution_options!(max_workers = nzv => get_execution_options());
    assert_eq!(o.max_workers, nz(4));
    let maybe: Option<usize> = Some(5);
    let o = execution_options!(max_workers = maybe => get_execution_options());
    assert_eq!(o.max_workers, nz(5));
    let none: Option<NonZeroUsize> = None;
    let o = execution_options!(max_workers = none => get_execution_options());
    assert_eq!(o.max_workers, None);

    let flag = false;
    let o = execution_options!(use_parallel = flag, enable_caching = !flag, trace_execution = flag => {
        get_execution_options()
    });
    assert!(!o.use_parallel);
    assert!(o.enable_caching);
    assert!(!o.trace_execution);

    let secs: f64 = 0.25;
    let o = execution_options!(timeout_seconds = secs => get_execution_options());
    assert_eq!(o.timeout_seconds, Some(Duration::from_millis(250)));
    let d = Duration::from_secs(7);
    let o = execution_options!(timeout_seconds = d => get_execution_options());
    assert_eq!(o.timeout_seconds, Some(d));
    let od: Option<Duration> = None;
    let o = execution_options!(timeout_seconds = od => get_execution_options());
    assert_eq!(o.timeout_seconds, None);
    let of: Option<f64> = Some(1.0);
    let o = execution_options!(timeout_seconds = of => get_execution_options());
    assert_eq!(o.timeout_seconds, Some(Duration::from_secs(1)));

    let ds = DeviceStrategy::Cpu;
    let o = execution_options!(device_strategy = ds => get_execution_options());
    assert_eq!(o.device_strategy, DeviceStrategy::Cpu);
    let named = DeviceStrategy::named("my-accelerator");
    let o = execution_options!(device_strategy = named => get_execution_options());
    assert_eq!(o.device_strategy, named);

    let sched = execution_options!(scheduler = "sequential" => get_execution_options())
        .scheduler
        .unwrap();
    let o = execution_options!(scheduler = sched => get_execution_options());
    assert!(!o.use_parallel);
    assert!(o.scheduler.is_some());

    let g = set_execution_options!(max_workers = n, use_parallel = flag);
    assert_eq!(g.max_workers, nz(3));
    assert!(!g.use_parallel);
}

#[test]
fn invalid_runtime_values_panic_naming_the_option() {
    let _s = serial();
    let zero: usize = 0;
    let err = catch_unwind(|| execution_options!(max_workers = zero => ())).unwrap_err();
    assert!(panic_message(err).contains("max_workers"));
    assert_eq!(get_execution_options(), ExecutionOptions::default());

    let negative: f64 = -1.0;
    let err = catch_unwind(|| execution_options!(timeout_seconds = negative => ())).unwrap_err();
    assert!(panic_message(err).contains("timeout_seconds"));

    let zero_secs: f64 = 0.0;
    let err = catch_unwind(|| set_execution_options!(timeout_seconds = zero_secs)).unwrap_err();
    assert!(panic_message(err).contains("timeout_seconds"));
    assert_eq!(get_execution_options(), ExecutionOptions::default());

    let on = true;
    let sched = execution_options!(scheduler = "sequential" => get_execution_options())
        .scheduler
        .unwrap();
    let err = catch_unwind(|| execution_options!(scheduler = sched, use_parallel = on => ()))
        .unwrap_err();
    let msg = panic_message(err);
    assert!(
        msg.contains("scheduler") || msg.contains("use_parallel"),
        "{msg:?}"
    );
}

#[test]
fn macros_accept_trailing_commas_and_suffixed_literals() {
    let _s = serial();
    let o = execution_options!(max_workers = 4usize, timeout_seconds = 2.0f64, => get_execution_options());
    assert_eq!(o.max_workers, nz(4));
    assert_eq!(o.timeout_seconds, Some(Duration::from_secs(2)));
    let o = set_execution_options!(max_workers = 3,);
    assert_eq!(o.max_workers, nz(3));
}

#[test]
fn with_options_restores_after_panic_and_items_see_global_updates() {
    let _s = serial();
    let patch = OptionsPatch::from_pairs([("max_workers", "2")]).unwrap();
    let r = catch_unwind(|| with_options(&patch, || panic!("inside with_options")));
    assert!(r.is_err());
    assert_eq!(get_execution_options(), ExecutionOptions::default());

    set_execution_options!(max_workers = 4);
    let out = vmap(ProbeOptions)
        .call((31..=34).map(|x| ProbeOptionsInputs { x }).collect())
        .unwrap();
    assert!(out.iter().all(|t| t.1 == nz(4)));
    set_execution_options!(max_workers = 5);
    let out = vmap(ProbeOptions)
        .call((41..=44).map(|x| ProbeOptionsInputs { x }).collect())
        .unwrap();
    assert!(
        out.iter().all(|t| t.1 == nz(5)),
        "a global update is visible at once to the workers"
    );
}

#[test]
fn xcs_error_is_a_std_error_with_struct_variants() {
    let _s = serial();
    fn is_error<E: std::error::Error + Send + Sync + 'static>() {}
    is_error::<XcsError>();
    let err = OptionsPatch::from_pairs([("max_workers", "x")]).unwrap_err();
    let described = match &err {
        XcsError::InvalidOption { .. } => "invalid option",
        XcsError::InvalidValue { .. } => "invalid value",
        XcsError::BatchSizeMismatch { .. } => "batch size mismatch",
        XcsError::Operator { .. } => "operator",
        XcsError::Panicked { .. } => "panicked",
        XcsError::Timeout { .. } => "timeout",
        XcsError::DeviceUnavailable { .. } => "device unavailable",
        _ => "other",
    };
    assert_eq!(described, "invalid value");
}
