//! The legacy `scheduler` option, kept for code written against the Python API. Its only effect
//! is on `use_parallel`: `"sequential"` and `"topological"` mean `use_parallel = false`;
//! `"parallel"`, `"wave"` and `"auto"` mean `use_parallel = true`. New code should say
//! `use_parallel` directly.
//!
//! Run with `cargo run --example legacy_scheduler`.

use std::collections::HashSet;
use std::sync::Mutex;

use xcs::prelude::*;

static THREADS: Mutex<Option<HashSet<std::thread::ThreadId>>> = Mutex::new(None);

/// Records which thread ran it.
#[xcs::operator]
fn step(x: u32) -> u32 {
    THREADS
        .lock()
        .unwrap()
        .get_or_insert_with(HashSet::new)
        .insert(std::thread::current().id());
    std::thread::sleep(std::time::Duration::from_millis(2));
    x + 1
}

fn report(label: &str) -> Result<(), XcsError> {
    let o = get_execution_options();
    vmap(Step).call(StepInputs::batch((0..8).collect::<Vec<u32>>())?)?;
    let threads = THREADS.lock().unwrap().take().map_or(0, |t| t.len());
    println!(
        "{label:<36} scheduler = {:<19} use_parallel = {:<5}  8 items ran on {threads} thread(s)",
        format!("{:?}", o.scheduler.map(|s| s.as_str())),
        o.use_parallel
    );
    Ok(())
}

fn main() -> Result<(), XcsError> {
    report("defaults")?;
    // Legacy approach (still works).
    execution_options!(scheduler = "sequential" => report("scheduler = \"sequential\""))?;
    execution_options!(scheduler = "topological" => report("scheduler = \"topological\""))?;
    execution_options!(scheduler = "wave" => report("scheduler = \"wave\""))?;
    // Modern approach (preferred).
    execution_options!(use_parallel = false => report("use_parallel = false"))?;
    // A newer `use_parallel` in an inner scope wins over an outer legacy scheduler.
    execution_options!(scheduler = "sequential" => {
        execution_options!(use_parallel = true => report("sequential, then use_parallel = true"))
    })?;

    // Together in one call they must agree. With literals a contradiction is a compile error
    // (`execution_options!(scheduler = "sequential", use_parallel = true => …)` does not build);
    // from configuration it is an `InvalidValue`.
    let err = OptionsPatch::from_pairs([("scheduler", "sequential"), ("use_parallel", "true")])
        .unwrap_err();
    println!("\nfrom_pairs(scheduler = sequential, use_parallel = true):\n  error: {err}");
    let err = OptionsPatch::from_pairs([("scheduler", "fifo")]).unwrap_err();
    println!("from_pairs(scheduler = fifo):\n  error: {err}");
    Ok(())
}
