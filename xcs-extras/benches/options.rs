//! Scopes: entering and leaving one, and reading the effective options inside one.
//!
//! | figure | floor | target |
//! |---|---|---|
//! | scope enter + exit (`execution_options!`) | empty loop | ≤ 20 ns |
//! | `get_execution_options()` in a scope | — | ≤ 10 ns |

use std::hint::black_box;
use std::num::NonZeroUsize;

use criterion::{Criterion, criterion_group, criterion_main};
use xcs::{OptionsPatch, execution_options, get_execution_options, with_options};

fn scopes(c: &mut Criterion) {
    let mut group = c.benchmark_group("scope");
    group.bench_function("empty loop (floor)", |b| b.iter(|| black_box(())));
    group.bench_function("execution_options! enter+exit", |b| {
        b.iter(|| execution_options!(max_workers = 4, enable_caching = true => black_box(())))
    });
    let patch = OptionsPatch::new()
        .max_workers(NonZeroUsize::new(4))
        .enable_caching(true);
    group.bench_function("with_options enter+exit", |b| {
        b.iter(|| with_options(&patch, || black_box(())))
    });
    group.bench_function("nested scopes (3 deep) enter+exit", |b| {
        b.iter(|| {
            execution_options!(max_workers = 4 => {
                execution_options!(enable_caching = true => {
                    execution_options!(use_parallel = false => black_box(()))
                })
            })
        })
    });
    group.finish();

    let mut group = c.benchmark_group("get_execution_options");
    group.bench_function("outside any scope", |b| {
        b.iter(|| black_box(get_execution_options()))
    });
    group.bench_function("in a scope", |b| {
        execution_options!(max_workers = 4, enable_caching = true => {
            b.iter(|| black_box(get_execution_options()))
        })
    });
    group.finish();
}

criterion_group!(benches, scopes);
criterion_main!(benches);
