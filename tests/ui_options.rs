//! Compile-time behaviour of `execution_options!` and `set_execution_options!`.
//!
//! Every file in `ui/options/fail/` is one mistake and its `.stderr` snapshot the exact message
//! and span a user sees; `ui/options/pass/` holds forms that must keep compiling (and running).
//! After an intended change of a message, regenerate the snapshots with
//! `TRYBUILD=overwrite cargo test --test ui_options` and read the diff.
//!
//! Only run on stable: compiler messages around ours differ between toolchains.

use xcs::{
    ExecutionOptions, OPTIONS, OptionKind, OptionsPatch, execution_options, get_execution_options,
};

#[rustversion::stable]
#[test]
fn ui_options() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/options/pass/*.rs");
    cases.compile_fail("tests/ui/options/fail/*.rs");
}

/// The compile-time checks and the run-time parser read the same table: every name the macros
/// accept parses at run time, the macros' list of valid names (in the snapshot of
/// `unknown_option_lists_the_table`) is the table's, and one macro call naming every option
/// gives the options `from_pairs` gives for the same values.
#[test]
fn macros_and_run_time_parser_agree_on_names() {
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
        };
        OptionsPatch::from_pairs([(spec.name, sample)])
            .unwrap_or_else(|err| panic!("`{}` rejected at run time: {err}", spec.name));
    }
    let snapshot = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/ui/options/fail/unknown_option_lists_the_table.stderr"
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
