//! The cluster's figures (feature `nats`), each beside its floor — the same batch as a local
//! `vmap` — in one run, with the workers on this machine:
//!
//! - **overhead**: tiny items (a `u64` in, a `u64` out), ns per item on the cluster (1 worker)
//!   vs local: what sending items through NATS costs;
//! - **throughput**: CPU-bound items (~20 ms each), items/s with 1 and 2 worker processes vs
//!   local. Workers on the same machine share its cores, so this measures what the cluster path
//!   loses, not what more machines gain.
//! - **async**: the async cluster path (an async `vmap` awaited on the caller, its items futures
//!   on the workers' runtimes): tiny async items, ns per item vs a local async `vmap`; and
//!   10 000 items of 20 ms simulated I/O (a timer) on 2 workers vs local, items/s, with every
//!   item in flight at once and under `max_workers = 200`.
//!
//! ```text
//! cargo run --release --features nats --example bench_cluster            # the real figures
//! cargo run --release --features nats --example bench_cluster -- --quick # a smoke run (CI)
//! cargo run --release --features nats --example bench_cluster -- --async # the async rows only
//! ```
//!
//! `NATS_URL` joins a running server instead of starting one. Timings are reported, never
//! asserted; each figure alternates samples of the floor and of the cluster and reports medians.

#[path = "common/cluster.rs"]
mod local_cluster;

#[path = "../xcs-extras/benches/common/mod.rs"]
mod common;

use std::error::Error;
use std::time::{Duration, Instant};

use xcs::DeviceStrategy;
use xcs::cluster::{LocalWorkers, NatsBackend, Registry};
use xcs::prelude::*;

/// The tiny item.
#[xcs::operator]
fn bump(x: u64) -> u64 {
    x.wrapping_add(1)
}

/// The tiny async item.
#[xcs::operator]
async fn bump_async(x: u64) -> u64 {
    x.wrapping_add(1)
}

/// Simulated I/O: a timer of `ms` milliseconds, no thread held.
#[xcs::operator]
async fn wait_io(x: u64, ms: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    x
}

/// The CPU-bound item: `rounds` steps of the benches' arithmetic loop.
#[xcs::operator]
fn spin(seed: u64, rounds: u32) -> u64 {
    common::spin(seed, rounds)
}

fn main() -> Result<(), Box<dyn Error>> {
    // Started as a worker (by `LocalWorkers` below): serve, never return.
    xcs::cluster::serve_if_worker(
        Registry::new()
            .with(Bump)
            .with(Spin)
            .with_async(BumpAsync)
            .with_async(WaitIo),
    );
    let quick = std::env::args().any(|a| a == "--quick");
    let only_async = std::env::args().any(|a| a == "--async");
    // (tiny items, samples; CPU-bound items, item time, samples)
    let (tiny, tiny_samples, heavy, item_time, heavy_samples) = if quick {
        (2_000, 3, 8, Duration::from_millis(2), 1)
    } else {
        (20_000, 9, 64, Duration::from_millis(20), 5)
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rounds = common::rounds_for(item_time);

    let server = local_cluster::Server::start_or_join()?;
    let backend = NatsBackend::connect(server.url())?;
    let mut workers = LocalWorkers::new(server.url());
    workers.spawn(1)?;
    workers.wait_for(&backend, Duration::from_secs(20))?;
    xcs::register_backend("cluster", backend.clone())?;
    let (cpu, cluster) = (DeviceStrategy::Cpu, DeviceStrategy::named("cluster"));

    let tiny_inputs = BumpInputs::batch((0..tiny).collect::<Vec<u64>>())?;
    let run_tiny = |strategy: DeviceStrategy| {
        let inputs = tiny_inputs.clone();
        let start = Instant::now();
        let out = execution_options!(device_strategy = strategy => vmap(Bump).call(inputs));
        assert_eq!(out.expect("the tiny batch runs").len(), tiny as usize);
        start.elapsed().as_nanos() as f64 / tiny as f64
    };
    let heavy_inputs = SpinInputs::batch((0..heavy).collect::<Vec<u64>>(), rounds)?;
    let run_heavy = |strategy: DeviceStrategy| {
        let inputs = heavy_inputs.clone();
        let start = Instant::now();
        let out = execution_options!(device_strategy = strategy => vmap(Spin).call(inputs));
        assert_eq!(out.expect("the CPU-bound batch runs").len(), heavy as usize);
        heavy as f64 / start.elapsed().as_secs_f64()
    };

    let mut sync_figures = None;
    if !only_async {
        eprint!("measuring: overhead… ");
        let tiny_figures = alternate(tiny_samples, || run_tiny(cpu), || run_tiny(cluster));
        eprint!("throughput, 1 worker… ");
        let one_worker = alternate(heavy_samples, || run_heavy(cpu), || run_heavy(cluster));
        sync_figures = Some((tiny_figures, one_worker));
    }
    workers.spawn(1)?;
    workers.wait_for(&backend, Duration::from_secs(20))?;
    let mut two_workers = None;
    if !only_async {
        eprintln!("2 workers…");
        two_workers = Some(alternate(
            heavy_samples,
            || run_heavy(cpu),
            || run_heavy(cluster),
        ));
    }

    // The async path, awaited on a runtime of the caller's own.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (io_items, io_ms) = if quick { (1_000, 20) } else { (10_000, 20) };
    let tiny_async_inputs = BumpAsyncInputs::batch((0..tiny).collect::<Vec<u64>>())?;
    let run_tiny_async = |strategy: DeviceStrategy| {
        let inputs = tiny_async_inputs.clone();
        let start = Instant::now();
        let out = runtime.block_on(execution_options!(device_strategy = strategy => async {
            vmap(BumpAsync).call(inputs).await
        }));
        assert_eq!(out.expect("the tiny async batch runs").len(), tiny as usize);
        start.elapsed().as_nanos() as f64 / tiny as f64
    };
    let io_inputs = WaitIoInputs::batch((0..io_items).collect::<Vec<u64>>(), io_ms)?;
    let run_io = |strategy: DeviceStrategy, max_workers: Option<usize>| {
        let inputs = io_inputs.clone();
        let start = Instant::now();
        let out = runtime.block_on(async {
            let patch = xcs::OptionsPatch::new()
                .device_strategy(strategy)
                .max_workers(max_workers.and_then(std::num::NonZeroUsize::new));
            xcs::with_options_async(&patch, async { vmap(WaitIo).call(inputs).await }).await
        });
        assert_eq!(out.expect("the I/O batch runs").len(), io_items as usize);
        io_items as f64 / start.elapsed().as_secs_f64()
    };
    eprint!("async: overhead… ");
    let tiny_async = alternate(
        tiny_samples,
        || run_tiny_async(cpu),
        || run_tiny_async(cluster),
    );
    eprint!("I/O, all in flight… ");
    let io_all = alternate(
        heavy_samples,
        || run_io(cpu, None),
        || run_io(cluster, None),
    );
    eprintln!("I/O, max_workers = 200…");
    let io_200 = alternate(
        heavy_samples,
        || run_io(cpu, Some(200)),
        || run_io(cluster, Some(200)),
    );

    println!(
        "xcs bench_cluster{}: {cores} CPUs, {} build",
        if quick {
            " (--quick: smoke run, noisy)"
        } else {
            ""
        },
        if cfg!(debug_assertions) {
            "DEBUG (use --release for real figures)"
        } else {
            "release"
        },
    );
    println!(
        "nats-server {}; the workers run on this machine\n",
        if server.is_local() {
            "started here"
        } else {
            "at NATS_URL"
        }
    );
    println!(
        "{:<40} {:>14} {:>14} {:>8}",
        "figure", "local vmap", "cluster", "ratio"
    );
    let row = |figure: String, (local, cluster): (f64, f64), show: fn(f64) -> String| {
        let ratio = cluster / local;
        println!(
            "{figure:<40} {:>14} {:>14} {ratio:>7.2}×",
            show(local),
            show(cluster)
        );
    };
    let per_item = |ns: f64| match ns {
        ns if ns < 1e3 => format!("{ns:.0} ns/item"),
        ns => format!("{:.2} µs/item", ns / 1e3),
    };
    let per_second = |rate: f64| format!("{rate:.1} items/s");
    let item = format!("{:.0} ms", item_time.as_secs_f64() * 1e3);
    if let (Some((tiny_figures, one_worker)), Some(two_workers)) = (sync_figures, two_workers) {
        row(
            format!("overhead: {tiny} tiny items, 1 worker"),
            tiny_figures,
            per_item,
        );
        row(
            format!("throughput: {heavy} × {item} items, 1 worker"),
            one_worker,
            per_second,
        );
        row(
            format!("throughput: {heavy} × {item} items, 2 workers"),
            two_workers,
            per_second,
        );
    }
    row(
        format!("async overhead: {tiny} tiny items, 2 workers"),
        tiny_async,
        per_item,
    );
    row(
        format!("async I/O: {io_items} × {io_ms} ms, all in flight"),
        io_all,
        per_second,
    );
    row(
        format!("async I/O: {io_items} × {io_ms} ms, max_workers 200"),
        io_200,
        per_second,
    );
    println!(
        "\nratio = cluster / local: the overhead's cost per item, the throughput's speedup (ideal \
         here:\n{cores} cores / {item} = {:.0} items/s)",
        cores as f64 / item_time.as_secs_f64()
    );
    Ok(())
}

/// Medians of `samples` runs of `floor` and of `measured`, alternated (so a busy moment hits
/// both), after one warm-up run of each.
fn alternate(
    samples: usize,
    mut floor: impl FnMut() -> f64,
    mut measured: impl FnMut() -> f64,
) -> (f64, f64) {
    floor();
    measured();
    let (mut a, mut b): (Vec<f64>, Vec<f64>) = (0..samples).map(|_| (floor(), measured())).unzip();
    (common::median(&mut a), common::median(&mut b))
}
