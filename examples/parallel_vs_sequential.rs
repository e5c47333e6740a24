//! Parallel vs sequential: the same `vmap` runs its items on worker threads by default and in
//! order on the caller's thread under `use_parallel = false` (the switch to flip when
//! debugging). The results are the same either way.
//!
//! Run with `cargo run --release --example parallel_vs_sequential`.

use std::collections::HashSet;
use std::sync::Mutex;
use std::thread::ThreadId;
use std::time::Instant;

use xcs::prelude::*;

/// The threads that ran an item since the last `take_threads`.
static THREADS: Mutex<Option<HashSet<ThreadId>>> = Mutex::new(None);

fn take_threads() -> usize {
    THREADS.lock().unwrap().take().map_or(0, |t| t.len())
}

/// CPU-bound work: a few million steps of a hash, per item.
#[xcs::operator]
fn crunch(seed: u64) -> u64 {
    THREADS
        .lock()
        .unwrap()
        .get_or_insert_with(HashSet::new)
        .insert(std::thread::current().id());
    (0..2_000_000u64).fold(seed, |h, i| (h ^ i).wrapping_mul(0x0100_0000_01b3))
}

fn run(label: &str, seeds: &[u64]) -> Result<Vec<u64>, XcsError> {
    let inputs = CrunchInputs::batch(seeds.to_vec())?;
    let start = Instant::now();
    let out = vmap(Crunch).call(inputs)?;
    println!(
        "{label:<24} {:>4} items  {:>7.1} ms  on {} thread(s)",
        seeds.len(),
        start.elapsed().as_secs_f64() * 1e3,
        take_threads()
    );
    Ok(out)
}

fn main() -> Result<(), XcsError> {
    let inputs: Vec<u64> = (0..16).collect();
    println!(
        "{} CPUs available\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let parallel = execution_options!(use_parallel = true => run("use_parallel = true", &inputs))?;
    let sequential =
        execution_options!(use_parallel = false => run("use_parallel = false", &inputs))?;
    // A one-item batch always runs on the caller's thread: nothing to gain from a pool.
    run("one item (parallel)", &inputs[..1])?;

    assert_eq!(parallel, sequential);
    println!("\nsame results either way: {}", parallel == sequential);
    Ok(())
}
