//! Workloads shared by the criterion benches and the root package's `examples/bench_report.rs`
//! and `bench_cluster.rs` (which include this file with `#[path]`), so they measure exactly the
//! same items against the same floors.
#![allow(dead_code)] // Each bench uses only some of the workloads.

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use xcs::{Operator, XcsError};

/// A deterministic arithmetic item: `rounds` steps of a 64-bit LCG with an xor-shift. Each step
/// depends on the previous one, so the compiler can neither vectorise nor fold the loop.
#[inline]
pub fn spin(seed: u64, rounds: u32) -> u64 {
    let mut x = seed;
    for _ in 0..black_box(rounds) {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x ^= x >> 29;
    }
    x
}

/// How many rounds of [`spin`] take `target` on this machine (the fastest of a few tries, so a
/// busy moment during calibration does not shrink the item).
pub fn rounds_for(target: Duration) -> u32 {
    const PROBE: u32 = 200_000;
    let mut best = Duration::MAX;
    for _ in 0..7 {
        let start = Instant::now();
        black_box(spin(black_box(1), PROBE));
        best = best.min(start.elapsed());
    }
    let per_round = best.as_secs_f64() / f64::from(PROBE);
    ((target.as_secs_f64() / per_round).round() as u32).max(1)
}

/// Rounds for the ~100 ns item, calibrated once per process.
pub fn rounds_100ns() -> u32 {
    static ROUNDS: OnceLock<u32> = OnceLock::new();
    *ROUNDS.get_or_init(|| rounds_for(Duration::from_nanos(100)))
}

/// Rounds for the ~40 ns item (the per-item overhead figures), calibrated once per process.
pub fn rounds_40ns() -> u32 {
    static ROUNDS: OnceLock<u32> = OnceLock::new();
    *ROUNDS.get_or_init(|| rounds_for(Duration::from_nanos(40)))
}

/// Rounds for the ~10 µs body of the cache figure, calibrated once per process.
pub fn rounds_10us() -> u32 {
    static ROUNDS: OnceLock<u32> = OnceLock::new();
    *ROUNDS.get_or_init(|| rounds_for(Duration::from_micros(10)))
}

/// The CPU-bound item as an operator (hand-written, so the figures measure the runtime alone).
#[derive(Clone, Copy)]
pub struct Spin {
    pub rounds: u32,
}

impl Operator for Spin {
    type Input = u64;
    type Output = u64;

    fn forward(&self, seed: u64) -> Result<u64, XcsError> {
        Ok(spin(seed, self.rounds))
    }

    fn name(&self) -> &str {
        "spin"
    }
}

/// An I/O-like item: sleeps (a model call, a network round trip) and echoes its input.
#[derive(Clone, Copy)]
pub struct Nap {
    pub latency: Duration,
}

impl Operator for Nap {
    type Input = u64;
    type Output = u64;

    fn forward(&self, id: u64) -> Result<u64, XcsError> {
        std::thread::sleep(self.latency);
        Ok(id)
    }

    fn name(&self) -> &str {
        "nap"
    }
}

/// Item `hang_at` ignores the deadline and sleeps `hang`; the others return at once.
#[derive(Clone, Copy)]
pub struct HangsOnce {
    pub hang_at: u64,
    pub hang: Duration,
}

impl Operator for HangsOnce {
    type Input = u64;
    type Output = u64;

    fn forward(&self, id: u64) -> Result<u64, XcsError> {
        if id == self.hang_at {
            std::thread::sleep(self.hang);
        }
        Ok(id)
    }

    fn name(&self) -> &str {
        "hangs_once"
    }
}

/// `n` distinct item inputs.
pub fn seeds(n: usize) -> Vec<u64> {
    (0..n as u64).collect()
}

/// The median of `samples` (sorted in place): what the one-screen reports print.
pub fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    }
}
