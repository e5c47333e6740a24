//! Global options (process-wide) reaching batches on other threads. Kept in its own test binary
//! so that no other test reads options while these change them.

mod common;

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
