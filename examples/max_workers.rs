//! `max_workers`: how many items of a `vmap` run at once. Each item here waits 20 ms (as a
//! model call would), so the wall time shows the concurrency: 16 items take about
//! 16 / max_workers × 20 ms, above the CPU count too (the guide's rule: the number of cores for
//! compute-bound items, more for items that wait). `pmap` takes its worker count explicitly and
//! ignores `max_workers`.
//!
//! Run with `cargo run --example max_workers`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use xcs::prelude::*;

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// Waits 20 ms, recording how many items run at the same time.
#[xcs::operator]
fn wait_20ms(id: u32) -> u32 {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    PEAK.fetch_max(now, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(20));
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    id
}

fn measure(label: &str, run: impl FnOnce() -> Result<Vec<u32>, XcsError>) -> Result<(), XcsError> {
    PEAK.store(0, Ordering::SeqCst);
    let start = Instant::now();
    let out = run()?;
    println!(
        "{label:<38} {} items  {:>6.1} ms  at most {:>2} at once",
        out.len(),
        start.elapsed().as_secs_f64() * 1e3,
        PEAK.load(Ordering::SeqCst)
    );
    Ok(())
}

fn main() -> Result<(), XcsError> {
    let batch = || Wait20msInputs::batch((0..16).collect::<Vec<u32>>());
    println!(
        "{} CPUs; unset max_workers means one worker per CPU\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    measure("vmap, max_workers unset", || vmap(Wait20ms).call(batch()?))?;
    measure(
        "vmap, max_workers = 1",
        || execution_options!(max_workers = 1 => vmap(Wait20ms).call(batch()?)),
    )?;
    measure(
        "vmap, max_workers = 4",
        || execution_options!(max_workers = 4 => vmap(Wait20ms).call(batch()?)),
    )?;
    measure(
        "vmap, max_workers = 8",
        || execution_options!(max_workers = 8 => vmap(Wait20ms).call(batch()?)),
    )?;
    measure(
        "vmap, max_workers = 16",
        || execution_options!(max_workers = 16 => vmap(Wait20ms).call(batch()?)),
    )?;
    // A worker count from configuration (a non-literal value) works the same.
    let from_config: usize = "2".parse().expect("a number");
    measure(
        "vmap, max_workers = from_config (2)",
        || execution_options!(max_workers = from_config => vmap(Wait20ms).call(batch()?)),
    )?;
    measure(
        "pmap(op, 16) under max_workers = 2",
        || execution_options!(max_workers = 2 => pmap(Wait20ms, 16).call(batch()?)),
    )?;
    Ok(())
}
