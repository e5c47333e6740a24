use xcs::{ExecutionOptions, set_execution_options};

fn main() {
    // The call still has type `ExecutionOptions`: only the option error is reported.
    let global: ExecutionOptions = set_execution_options!(max_workers = 0, trace_execution = true);
    let _ = global.trace_execution;
}
