//! Scopes and global options, observed through the macros and the run-time API: what a nested
//! scope sees, what comes back on every exit path, what other threads see.
//!
//! Global options are process-wide and tests in one binary run in parallel, so every test here
//! holds `common::global_lock` (through [`serial`]) and leaves the global defaults behind it.

use crate::common;

use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::MutexGuard;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use xcs::{
    DeviceStrategy, ExecutionOptions, OptionsPatch, Scheduler, XcsError, execution_options,
    get_execution_options, get_global_options, reset_execution_options, set_execution_options,
    set_global_options, with_options,
};

/// Holds the lock for the test, with the global defaults in force; restores them at the end,
/// also when the test fails.
struct Serial {
    _lock: MutexGuard<'static, ()>,
}

impl Drop for Serial {
    fn drop(&mut self) {
        reset_execution_options();
    }
}

fn serial() -> Serial {
    let guard = common::global_lock();
    reset_execution_options();
    Serial { _lock: guard }
}

fn workers(n: usize) -> Option<NonZeroUsize> {
    NonZeroUsize::new(n)
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
