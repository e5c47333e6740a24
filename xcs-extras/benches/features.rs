//! What the optional features cost: a deadline, a cache hit, and tracing switched off.
//!
//! | figure | floor | target |
//! |---|---|---|
//! | timeout 0.1 s with one item hanging 0.5 s | deadline | returns ≤ 0.12 s |
//! | cache hit vs a 10 µs body | body | < 1 % of it |
//! | tracing off vs no tracing code | — | within noise |

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{HangsOnce, Spin, seeds, spin};
use criterion::{Criterion, criterion_group, criterion_main};
use xcs::{Operator, execution_options, vmap};

fn timeout(c: &mut Criterion) {
    let op = vmap(HangsOnce {
        hang_at: 3,
        hang: Duration::from_millis(500),
    });
    let mut group = c.benchmark_group("timeout 0.1 s, one item hangs 0.5 s");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    group.bench_function("vmap returns at", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let result = execution_options!(timeout_seconds = 0.1 => op.call(seeds(8)));
                total += start.elapsed();
                assert!(matches!(result, Err(e) if e.is_timeout()));
            }
            total
        })
    });
    group.finish();
}

fn cache(c: &mut Criterion) {
    let op = Spin {
        rounds: common::rounds_10us(),
    };
    let mut group = c.benchmark_group("cache hit vs 10 us body");
    group.bench_function("body (floor)", |b| {
        b.iter(|| black_box(op.forward(black_box(42))))
    });
    group.bench_function("call, enable_caching = true, hit", |b| {
        execution_options!(enable_caching = true => {
            let _ = op.call(42); // the miss that fills the entry
            b.iter(|| black_box(op.call(black_box(42))))
        })
    });
    group.finish();
}

fn tracing_off(c: &mut Criterion) {
    let rounds = common::rounds_100ns();
    let op = Spin { rounds };
    let mut group = c.benchmark_group("tracing off, 100 ns body");
    group.bench_function("the body, no tracing code (floor)", |b| {
        b.iter(|| black_box(spin(black_box(42), rounds)))
    });
    group.bench_function("Operator::call, trace_execution = false", |b| {
        execution_options!(trace_execution = false => {
            b.iter(|| black_box(op.call(black_box(42))))
        })
    });
    group.finish();
}

criterion_group!(benches, timeout, cache, tracing_off);
criterion_main!(benches);
