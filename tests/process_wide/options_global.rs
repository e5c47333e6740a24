//! Global options (process-wide) reaching batches on other threads. Kept in its own test binary
//! so that no other test reads options while these change them.

use crate::common;

use common::{Probe, global_lock};
use xcs::{ExecutionOptions, Operator, OptionsPatch, vmap};

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
