//! `vmap` and `pmap`: one operator over a batch.
//!
//! - `vmap` is for CPU-bound items: it runs them on at most `max_workers` threads (one per CPU
//!   when unset), or in order under `use_parallel = false`.
//! - `pmap(op, n)` is for I/O-bound items (model calls, HTTP): exactly `n` workers, usually more
//!   than there are CPUs, each taking the next item, so the wall time approaches
//!   `items / n × latency`.
//!
//! Both keep the input order, nest, and carry the caller's options to their workers.
//!
//! Run with `cargo run --release --example vmap_pmap`.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use xcs::prelude::*;

static THREADS: Mutex<Option<HashSet<std::thread::ThreadId>>> = Mutex::new(None);

fn note_thread() {
    THREADS
        .lock()
        .unwrap()
        .get_or_insert_with(HashSet::new)
        .insert(std::thread::current().id());
}

fn threads_used() -> usize {
    THREADS.lock().unwrap().take().map_or(0, |t| t.len())
}

/// A small "model": scores a prompt by hashing it with a seed (CPU-bound).
#[xcs::operator]
fn hash_model(prompt: String, seed: u64) -> u64 {
    note_thread();
    let mut h = seed;
    for _ in 0..50_000 {
        for b in prompt.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h % 1000
}

/// A remote call: 25 ms of waiting, no CPU.
#[xcs::operator]
fn remote_lookup(id: u32) -> String {
    note_thread();
    std::thread::sleep(Duration::from_millis(25));
    format!("doc-{id}")
}

fn timed<T>(label: &str, run: impl FnOnce() -> Result<T, XcsError>) -> Result<T, XcsError> {
    let start = Instant::now();
    let out = run()?;
    println!(
        "  {label:<42} {:>6.1} ms on {} thread(s)",
        start.elapsed().as_secs_f64() * 1e3,
        threads_used()
    );
    Ok(out)
}

fn main() -> Result<(), XcsError> {
    // One prompt broadcast to every item, one seed per item: an ensemble of 8 samples.
    let seeds: Vec<u64> = (1..=8).collect();
    let batch = || HashModelInputs::batch("What is the capital of France?", seeds.clone());

    // Warm up: the first batch with a worker count builds its pool, once per process.
    vmap(HashModel).call(batch()?)?;
    threads_used();

    println!("vmap: 8 CPU-bound samples of one prompt");
    let parallel = timed("default (one worker per CPU)", || {
        vmap(HashModel).call(batch()?)
    })?;
    timed(
        "max_workers = 1",
        || execution_options!(max_workers = 1 => vmap(HashModel).call(batch()?)),
    )?;
    let sequential = timed(
        "use_parallel = false",
        || execution_options!(use_parallel = false => vmap(HashModel).call(batch()?)),
    )?;
    assert_eq!(parallel, sequential);
    println!("  scores (same on every path): {parallel:?}");

    println!("\npmap: 32 remote lookups of 25 ms each");
    let ids = || RemoteLookupInputs::batch((0..32).collect::<Vec<u32>>());
    timed("vmap (CPU-sized pool)", || vmap(RemoteLookup).call(ids()?))?;
    timed("pmap, 8 workers", || pmap(RemoteLookup, 8).call(ids()?))?;
    let docs = timed("pmap, 32 workers", || pmap(RemoteLookup, 32).call(ids()?))?;
    timed(
        "pmap, 32 workers, use_parallel = false",
        || execution_options!(use_parallel = false => pmap(RemoteLookup, 32).call(ids()?)),
    )?;
    println!("  first results, in input order: {:?}", &docs[..3]);

    // Nesting: a batch of batches.
    println!("\nvmap(vmap(op)): 3 prompts × 4 seeds");
    let grid = ["alpha", "beta", "gamma"]
        .into_iter()
        .map(|p| HashModelInputs::batch(p, vec![1, 2, 3, 4]))
        .collect::<Result<Vec<_>, _>>()?;
    let scores = timed("nested", || vmap(vmap(HashModel)).call(grid))?;
    for (prompt, row) in ["alpha", "beta", "gamma"].iter().zip(&scores) {
        println!("  {prompt:<6} {row:?}");
    }
    Ok(())
}
