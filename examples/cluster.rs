//! A batch across worker processes (feature `nats`): starts (or joins) a local NATS server,
//! spawns two worker processes of itself, runs a CPU-bound batch across them and prints which
//! process ran what.
//!
//! ```text
//! cargo run --features nats --example cluster                          # starts a nats-server
//! NATS_URL=nats://127.0.0.1:4222 cargo run --features nats --example cluster  # joins one
//! ```
//!
//! What to take away: one binary, two roles — `xcs::cluster::serve_if_worker` at the top of
//! `main` makes the processes `LocalWorkers` starts serve the operators they may run; the caller
//! registers a `NatsBackend` and selects it with `device_strategy` — the `vmap` call itself does
//! not change (sync or async), outputs come back in input order, and errors name the item they
//! belong to.

#[path = "common/cluster.rs"]
mod local_cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::time::{Duration, Instant};

use xcs::cluster::{LocalWorkers, NatsBackend, Registry};
use xcs::prelude::*;

/// CPU-bound work: counts the primes below `n` by trial division, and says which process ran
/// it. Its input and output are serde types, so it can travel.
#[xcs::operator]
fn count_primes(n: u64) -> (u64, u32) {
    let mut count = 0;
    for k in 2..n {
        let mut d = 2;
        while d * d <= k && k % d != 0 {
            d += 1;
        }
        if d * d > k {
            count += 1;
        }
    }
    (count, std::process::id())
}

/// An operator the workers do not serve.
#[xcs::operator]
fn digit_sum(n: u64) -> u64 {
    n.to_string().bytes().map(|b| u64::from(b - b'0')).sum()
}

/// Simulated I/O: waits `ms` milliseconds without holding a thread, then says which process
/// waited. An async operator: workers run its items as futures, no thread per item.
#[xcs::operator]
async fn fetch(id: u64, ms: u64) -> (u64, u32) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    (id, std::process::id())
}

fn main() -> Result<(), Box<dyn Error>> {
    // Started as a worker (by `LocalWorkers` below): serve `count_primes` and `fetch` (and
    // nothing else) until this example ends; never returns.
    xcs::cluster::serve_if_worker(Registry::new().with(CountPrimes).with_async(Fetch));

    // Dropped in reverse order: the workers stop before the server.
    let server = local_cluster::Server::start_or_join()?;
    let backend = NatsBackend::connect(server.url())?;
    // Two workers of this very executable, killed and reaped when `workers` is dropped.
    let workers = LocalWorkers::start(2, server.url())?;
    workers.wait_for(&backend, Duration::from_secs(20))?;
    let how = if server.is_local() {
        "started here"
    } else {
        "joined through NATS_URL"
    };
    println!(
        "nats-server at {} ({how}); this process is pid {}",
        server.url(),
        std::process::id()
    );
    for worker in backend.workers()? {
        println!(
            "  worker pid {}: {} slots, serves {}",
            worker.pid,
            worker.slots,
            worker.operators.join(", ")
        );
    }

    // From here on, `device_strategy = "cluster"` sends a batch's items to the workers.
    xcs::register_backend("cluster", backend)?;
    // 32 items of ~20 ms each (in a release build).
    let ns: Vec<u64> = (0..32).map(|i| 150_000 + 2_000 * i).collect();
    let inputs = || CountPrimesInputs::batch(ns.clone());

    let start = Instant::now();
    let remote =
        execution_options!(device_strategy = "cluster" => vmap(CountPrimes).call(inputs()?))?;
    let remote_time = start.elapsed();
    let mut by_pid: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (index, (_, pid)) in remote.iter().enumerate() {
        by_pid.entry(*pid).or_default().push(index);
    }
    println!("\n32 items on the cluster: {remote_time:.2?}");
    for (pid, indices) in &by_pid {
        println!(
            "  pid {pid} ran {:2} items: {}",
            indices.len(),
            ranges(indices)
        );
    }

    let start = Instant::now();
    let local = execution_options!(device_strategy = "cpu" => vmap(CountPrimes).call(inputs()?))?;
    println!("the same 32 items in this process: {:.2?}", start.elapsed());
    let counts =
        |outputs: &[(u64, u32)]| outputs.iter().map(|(count, _)| *count).collect::<Vec<_>>();
    if counts(&remote) != counts(&local) {
        return Err("the cluster and the local batch disagree".into());
    }
    println!(
        "  same outputs, in the same order (first: {} primes below {})",
        local[0].0, ns[0]
    );

    // Tracing travels: the workers' events come back into this process's trace, each item
    // under its index in the caller's batch.
    let _ = xcs::take_trace();
    execution_options!(device_strategy = "cluster", trace_execution = true => {
        vmap(CountPrimes).call(CountPrimesInputs::batch(vec![20_000u64; 8])?)
    })?;
    // Item events, by thread name (`<worker id>/<thread>`): which items, on how many threads.
    let mut per_worker: BTreeMap<String, (Vec<usize>, BTreeSet<u64>)> = BTreeMap::new();
    for event in xcs::take_trace()
        .iter()
        .filter(|e| e.operator == "count_primes")
    {
        if let Some(index) = event.index {
            let (indices, threads) = per_worker.entry(event.thread.clone()).or_default();
            indices.push(index);
            threads.insert(event.thread_id);
        }
    }
    println!("\ntrace_execution = true, 8 items: the item events came back from the workers");
    for (thread, (mut indices, threads)) in per_worker {
        indices.sort_unstable();
        println!(
            "  {thread}: items {} ({} threads)",
            ranges(&indices),
            threads.len()
        );
    }

    // Async operators travel too: 1 000 items of 50 ms of simulated I/O, awaited on this
    // runtime without blocking it; the workers run them as futures.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let start = Instant::now();
    let fetched = runtime.block_on(execution_options!(device_strategy = "cluster" => async {
        vmap(Fetch).call(FetchInputs::batch((0..1_000u64).collect::<Vec<u64>>(), 50u64)?).await
    }))?;
    let pids: BTreeSet<u32> = fetched.iter().map(|(_, pid)| *pid).collect();
    println!(
        "\n1 000 async items of 50 ms on the cluster: {:.2?} (on pids {pids:?}; in input order: {})",
        start.elapsed(),
        fetched
            .iter()
            .enumerate()
            .all(|(i, (id, _))| *id == i as u64)
    );

    // An operator no worker serves fails clearly, at once: no silent local fallback.
    let error = execution_options!(device_strategy = "cluster" => {
        vmap(DigitSum).call(DigitSumInputs::batch(vec![1u64, 2, 3])?)
    })
    .expect_err("no worker serves digit_sum");
    println!("\nan operator no worker serves:\n  error: {error}");
    Ok(())
}

/// `[0, 1, 2, 5, 6]` as `0-2, 5-6`.
fn ranges(indices: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let mut j = i;
        while j + 1 < indices.len() && indices[j + 1] == indices[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            indices[i].to_string()
        } else {
            format!("{}-{}", indices[i], indices[j])
        });
        i = j + 1;
    }
    parts.join(", ")
}
