//! `vmap` and `pmap` against what a user could write by hand, in the same run.
//!
//! | figure | floor | target |
//! |---|---|---|
//! | vmap, 100 000 items of ~100 ns work, parallel | hand-written rayon `par_iter` | ≤ 1.2× |
//! | vmap sequential (`use_parallel = false`) | plain loop | ≤ 1.2× |
//! | vmap, 100 000 items of ~40 ns work, parallel | hand-written rayon `par_iter` | ≤ 1.15× |
//! | vmap sequential, 100 000 items of ~40 ns | plain loop | ≤ 1.15× |
//! | 8-item batches, `max_workers = 4`, repeated | a pre-built rayon pool's `install` + `par_iter` | ≤ 2× |
//! | pmap, 64 items sleeping 20 ms, 16 workers | ideal 80 ms (n / workers × latency) | ≤ 1.1× |

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{Nap, Spin, seeds, spin};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rayon::prelude::*;
use xcs::{Operator, execution_options, pmap, vmap};

const ITEMS: usize = 100_000;

fn large_batches(c: &mut Criterion) {
    large_batches_of(c, "vmap 100k x 100ns", common::rounds_100ns());
    // The per-item and per-block overhead of the batch drivers shows on small items.
    large_batches_of(c, "vmap 100k x 40ns", common::rounds_40ns());
}

fn large_batches_of(c: &mut Criterion, name: &str, rounds: u32) {
    let op = vmap(Spin { rounds });
    let mut group = c.benchmark_group(name);
    group.sample_size(20);

    group.bench_function("parallel: rayon par_iter (floor)", |b| {
        b.iter_batched(
            || seeds(ITEMS),
            |inputs| {
                inputs
                    .into_par_iter()
                    .map(|seed| spin(seed, rounds))
                    .collect::<Vec<u64>>()
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("parallel: vmap", |b| {
        b.iter_batched(
            || seeds(ITEMS),
            |inputs| op.call(inputs).expect("spin cannot fail"),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("sequential: plain loop (floor)", |b| {
        b.iter_batched(
            || seeds(ITEMS),
            |inputs| {
                inputs
                    .into_iter()
                    .map(|seed| spin(seed, rounds))
                    .collect::<Vec<u64>>()
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("sequential: vmap, use_parallel = false", |b| {
        execution_options!(use_parallel = false => b.iter_batched(
            || seeds(ITEMS),
            |inputs| op.call(inputs).expect("spin cannot fail"),
            BatchSize::LargeInput,
        ))
    });
    group.finish();
}

fn small_batches(c: &mut Criterion) {
    let rounds = common::rounds_100ns();
    let op = vmap(Spin { rounds });
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .expect("a 4-thread pool");
    let mut group = c.benchmark_group("8-item batches, 4 workers");

    group.bench_function("pre-built rayon pool install + par_iter (floor)", |b| {
        b.iter_batched(
            || seeds(8),
            |inputs| {
                pool.install(|| {
                    inputs
                        .into_par_iter()
                        .map(|seed| spin(seed, rounds))
                        .collect::<Vec<u64>>()
                })
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("vmap, max_workers = 4", |b| {
        execution_options!(max_workers = 4 => b.iter_batched(
            || seeds(8),
            |inputs| op.call(inputs).expect("spin cannot fail"),
            BatchSize::SmallInput,
        ))
    });
    group.finish();
}

fn io_bound(c: &mut Criterion) {
    let latency = Duration::from_millis(20);
    let op = pmap(Nap { latency }, 16);
    let mut group = c.benchmark_group("pmap 64 x 20ms sleep, 16 workers (ideal 80 ms)");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    group.bench_function("pmap", |b| {
        b.iter(|| black_box(op.call(seeds(64)).expect("nap cannot fail")))
    });
    group.finish();
}

criterion_group!(benches, large_batches, small_batches, io_bound);
criterion_main!(benches);
