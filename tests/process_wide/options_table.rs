//! The option table is the one source of names: the macros' checks (as their UI snapshots show)
//! and the run-time parser agree on it.

use crate::common;

use xcs::{
    ExecutionOptions, OPTIONS, OptionKind, OptionsPatch, execution_options, get_execution_options,
};

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
