//! Measures xcs against the best a user could write by hand, side by side in one run, and prints
//! the table that `BENCHMARKS.md` records.
//!
//! ```text
//! cargo run --release --example bench_report            # the real figures, well under a minute
//! cargo run --release --example bench_report -- --quick # a smoke run (CI): seconds, noisy
//! cargo run --release --example bench_report -- cache    # only the sections whose name matches
//! ```
//!
//! `BENCH_REPORT_QUICK=1` does what `--quick` does (not an `XCS_` variable: those are execution
//! options, and `OptionsPatch::from_env` rejects unknown ones).
//!
//! Each figure alternates samples of the floor and of xcs (so a busy moment hits both) and
//! reports medians. The criterion benches in `xcs-extras/benches/` measure the same workloads in more depth.
//! Timings are only reported, never asserted: the exit status is 0 whether targets are met or not.

#[path = "../xcs-extras/benches/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{HangsOnce, Nap, Spin, seeds, spin};
use futures_util::StreamExt;
use rayon::prelude::*;
use xcs::{
    AsyncOperator, Operator, XcsError, execution_options, get_execution_options, pmap, vmap,
};

/// How much to measure: the full run, or a quick smoke run.
#[derive(Clone, Copy)]
struct Effort {
    /// Samples per side of a figure (the median is reported).
    samples: usize,
    /// Multiplier for loop counts of the nanosecond figures.
    scale: f64,
}

impl Effort {
    fn iters(self, full: u64) -> u64 {
        ((full as f64 * self.scale) as u64).max(1)
    }
}

/// What a figure must reach.
#[derive(Clone, Copy)]
enum Target {
    /// Measured minus floor at most this many ns.
    NetAtMostNs(f64),
    /// Measured at most this many ns.
    AtMostNs(f64),
    /// Measured / floor at most this.
    RatioAtMost(f64),
    /// Measured / floor below this.
    RatioBelow(f64),
    /// Measured / floor within the noise of the floor (at least ±5 %).
    WithinNoise,
}

/// Measures one section of the table, appending its rows.
type Section = fn(Effort, &mut Vec<Row>);

struct Row {
    figure: &'static str,
    floor_name: &'static str,
    /// Median time of one unit (call, item loop, scope), ns.
    measured: f64,
    /// Median time of the floor's unit, ns (`None`: no floor).
    floor: Option<f64>,
    target: Target,
    /// Relative spread (interquartile range / median) of the floor's samples.
    floor_spread: f64,
    note: String,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        self.floor.map(|floor| self.measured / floor)
    }

    fn noise_band(&self) -> f64 {
        self.floor_spread.max(0.05)
    }

    fn met(&self) -> bool {
        match (self.target, self.floor) {
            (Target::NetAtMostNs(max), Some(floor)) => self.measured - floor <= max,
            (Target::NetAtMostNs(max), None) | (Target::AtMostNs(max), _) => self.measured <= max,
            (Target::RatioAtMost(max), Some(floor)) => self.measured / floor <= max,
            (Target::RatioBelow(max), Some(floor)) => self.measured / floor < max,
            (Target::WithinNoise, Some(floor)) => self.measured / floor <= 1.0 + self.noise_band(),
            (_, None) => false,
        }
    }

    fn target_text(&self) -> String {
        match self.target {
            Target::NetAtMostNs(max) => format!("≤ {max} ns net"),
            Target::AtMostNs(max) => format!("≤ {}", fmt_ns(max)),
            Target::RatioAtMost(max) => format!("≤ {max}×"),
            Target::RatioBelow(max) => format!("< {} %", max * 100.0),
            Target::WithinNoise => format!("≤ {:.2}× (noise)", 1.0 + self.noise_band()),
        }
    }

    fn ratio_text(&self) -> String {
        match (self.target, self.floor) {
            (Target::NetAtMostNs(_), Some(floor)) => {
                format!("net {}", fmt_ns(self.measured - floor))
            }
            (Target::RatioBelow(_), Some(_)) => {
                format!("{:.2} %", self.ratio().unwrap_or_default() * 100.0)
            }
            (_, Some(_)) => format!("{:.2}×", self.ratio().unwrap_or_default()),
            (_, None) => "—".to_owned(),
        }
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.1} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1_000_000_000.0 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.3} s", ns / 1e9)
    }
}

/// Interquartile range over median of sorted `samples`.
fn spread(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n < 4 {
        return 0.0;
    }
    let (q1, q3) = (sorted[n / 4], sorted[(3 * n) / 4]);
    let mid = sorted[n / 2];
    if mid > 0.0 { (q3 - q1) / mid } else { 0.0 }
}

/// Nanoseconds per unit: `run(units)` does `units` units of work and returns the time they took
/// (so setup can stay outside the clock).
fn sample(units: u64, run: &mut impl FnMut(u64) -> Duration) -> f64 {
    run(units).as_nanos() as f64 / units as f64
}

/// Medians (ns per unit) of `floor` and `subject`, sampled alternately, and the floor's spread.
fn paired(
    effort: Effort,
    units: u64,
    floor: impl FnMut(u64) -> Duration,
    subject: impl FnMut(u64) -> Duration,
) -> (f64, f64, f64) {
    paired_units(effort, (units, units), floor, subject)
}

/// [`paired`] with a different number of units per sample for the floor and the subject.
fn paired_units(
    effort: Effort,
    (floor_units, subject_units): (u64, u64),
    mut floor: impl FnMut(u64) -> Duration,
    mut subject: impl FnMut(u64) -> Duration,
) -> (f64, f64, f64) {
    // Warm up both: pools, spare threads, caches.
    sample(floor_units.min(10), &mut floor);
    sample(subject_units.min(10), &mut subject);
    let mut floors = Vec::with_capacity(effort.samples);
    let mut subjects = Vec::with_capacity(effort.samples);
    for _ in 0..effort.samples {
        floors.push(sample(floor_units, &mut floor));
        subjects.push(sample(subject_units, &mut subject));
    }
    let floor_median = common::median(&mut floors);
    let floor_spread = spread(&floors);
    (floor_median, common::median(&mut subjects), floor_spread)
}

/// Fastest times (ns per unit) of `floor` and `subject` over `runs` runs each, run alternately,
/// and the floor's spread: for per-item overheads of a few ns, which a busy moment on a shared
/// machine would hide in a median.
fn paired_fastest(
    runs: usize,
    units: u64,
    mut floor: impl FnMut(u64) -> Duration,
    mut subject: impl FnMut(u64) -> Duration,
) -> (f64, f64, f64) {
    sample(units, &mut floor);
    sample(units, &mut subject);
    let mut floors = Vec::with_capacity(runs);
    let mut subjects = Vec::with_capacity(runs);
    for _ in 0..runs {
        floors.push(sample(units, &mut floor));
        subjects.push(sample(units, &mut subject));
    }
    floors.sort_by(f64::total_cmp);
    subjects.sort_by(f64::total_cmp);
    (floors[0], subjects[0], spread(&floors))
}

/// Times `units` runs of `f`.
fn timed(units: u64, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..units {
        f();
    }
    start.elapsed()
}

/// Times `units` runs of `f`, each on a fresh input made outside the clock.
fn timed_with<I>(units: u64, mut input: impl FnMut() -> I, mut f: impl FnMut(I)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..units {
        let input = input();
        let start = Instant::now();
        f(input);
        total += start.elapsed();
    }
    total
}

fn scope_rows(effort: Effort, rows: &mut Vec<Row>) {
    let units = effort.iters(2_000_000);
    let (floor, measured, floor_spread) = paired(
        effort,
        units,
        |n| timed(n, || black_box(())),
        |n| {
            timed(
                n,
                || execution_options!(max_workers = 4, enable_caching = true => black_box(())),
            )
        },
    );
    rows.push(Row {
        figure: "scope enter + exit (`execution_options!`)",
        floor_name: "empty loop",
        measured,
        floor: Some(floor),
        target: Target::NetAtMostNs(20.0),
        floor_spread,
        note: "a scope setting two options".to_owned(),
    });

    let (_, measured, _) = paired(
        effort,
        units,
        |n| timed(n, || black_box(())),
        |n| {
            execution_options!(max_workers = 4, enable_caching = true => {
                timed(n, || {
                    black_box(get_execution_options());
                })
            })
        },
    );
    rows.push(Row {
        figure: "`get_execution_options()` in a scope",
        floor_name: "—",
        measured,
        floor: None,
        target: Target::AtMostNs(10.0),
        floor_spread: 0.0,
        note: "loop overhead included".to_owned(),
    });
}

fn vmap_rows(effort: Effort, rows: &mut Vec<Row>) {
    const ITEMS: usize = 100_000;
    let rounds = common::rounds_100ns();
    let op = vmap(Spin { rounds });

    let (floor, measured, floor_spread) = paired(
        effort,
        2,
        |n| {
            timed_with(
                n,
                || seeds(ITEMS),
                |inputs| {
                    black_box(
                        inputs
                            .into_par_iter()
                            .map(|seed| spin(seed, rounds))
                            .collect::<Vec<u64>>(),
                    );
                },
            )
        },
        |n| {
            timed_with(
                n,
                || seeds(ITEMS),
                |inputs| {
                    black_box(op.call(inputs).expect("spin cannot fail"));
                },
            )
        },
    );
    rows.push(Row {
        figure: "vmap, 100 000 items of ~100 ns work, parallel",
        floor_name: "hand-written rayon `par_iter`",
        measured,
        floor: Some(floor),
        target: Target::RatioAtMost(1.2),
        floor_spread,
        note: format!("per batch; {} threads", rayon::current_num_threads()),
    });

    let (floor, measured, floor_spread) = paired(
        effort,
        2,
        |n| {
            timed_with(
                n,
                || seeds(ITEMS),
                |inputs| {
                    black_box(
                        inputs
                            .into_iter()
                            .map(|seed| spin(seed, rounds))
                            .collect::<Vec<u64>>(),
                    );
                },
            )
        },
        |n| {
            execution_options!(use_parallel = false => timed_with(
                n,
                || seeds(ITEMS),
                |inputs| {
                    black_box(op.call(inputs).expect("spin cannot fail"));
                },
            ))
        },
    );
    rows.push(Row {
        figure: "vmap sequential (`use_parallel = false`)",
        floor_name: "plain loop",
        measured,
        floor: Some(floor),
        target: Target::RatioAtMost(1.2),
        floor_spread,
        note: "per batch of 100 000".to_owned(),
    });

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .expect("a 4-thread pool");
    let (floor, measured, floor_spread) = paired(
        effort,
        effort.iters(2_000),
        |n| {
            timed_with(
                n,
                || seeds(8),
                |inputs| {
                    black_box(pool.install(|| {
                        inputs
                            .into_par_iter()
                            .map(|seed| spin(seed, rounds))
                            .collect::<Vec<u64>>()
                    }));
                },
            )
        },
        |n| {
            execution_options!(max_workers = 4 => timed_with(
                n,
                || seeds(8),
                |inputs| {
                    black_box(op.call(inputs).expect("spin cannot fail"));
                },
            ))
        },
    );
    rows.push(Row {
        figure: "8-item batches, `max_workers = 4`, repeated",
        floor_name: "a pre-built rayon pool's `install` + `par_iter`",
        measured,
        floor: Some(floor),
        target: Target::RatioAtMost(2.0),
        floor_spread,
        note: "per batch".to_owned(),
    });
}

/// `vmap` over 100 000 items of ~40 ns against the hand-written loops: the per-item and
/// per-block overhead of the batch drivers, each side the fastest of 31 interleaved runs.
fn vmap_small_rows(effort: Effort, rows: &mut Vec<Row>) {
    const ITEMS: usize = 100_000;
    let runs = if effort.samples < 15 { 3 } else { 31 };
    let rounds = common::rounds_40ns();
    let op = vmap(Spin { rounds });

    let (floor, measured, floor_spread) = paired_fastest(
        runs,
        1,
        |n| {
            timed_with(
                n,
                || seeds(ITEMS),
                |inputs| {
                    black_box(
                        inputs
                            .into_par_iter()
                            .map(|seed| spin(seed, rounds))
                            .collect::<Vec<u64>>(),
                    );
                },
            )
        },
        |n| {
            timed_with(
                n,
                || seeds(ITEMS),
                |inputs| {
                    black_box(op.call(inputs).expect("spin cannot fail"));
                },
            )
        },
    );
    rows.push(Row {
        figure: "vmap, 100 000 items of ~40 ns work, parallel",
        floor_name: "hand-written rayon `par_iter`",
        measured,
        floor: Some(floor),
        target: Target::RatioAtMost(1.15),
        floor_spread,
        note: format!("per batch; fastest of {runs} interleaved runs"),
    });

    let (floor, measured, floor_spread) = paired_fastest(
        runs,
        1,
        |n| {
            timed_with(
                n,
                || seeds(ITEMS),
                |inputs| {
                    black_box(
                        inputs
                            .into_iter()
                            .map(|seed| spin(seed, rounds))
                            .collect::<Vec<u64>>(),
                    );
                },
            )
        },
        |n| {
            execution_options!(use_parallel = false => timed_with(
                n,
                || seeds(ITEMS),
                |inputs| {
                    black_box(op.call(inputs).expect("spin cannot fail"));
                },
            ))
        },
    );
    rows.push(Row {
        figure: "vmap sequential, 100 000 items of ~40 ns",
        floor_name: "plain loop",
        measured,
        floor: Some(floor),
        target: Target::RatioAtMost(1.15),
        floor_spread,
        note: format!("per batch; fastest of {runs} interleaved runs"),
    });
}

fn pmap_row(effort: Effort, rows: &mut Vec<Row>) {
    let latency = Duration::from_millis(20);
    let (items, workers) = (64, 16);
    let op = pmap(Nap { latency }, workers);
    // Start the spare threads once, as a long-running program would have.
    let _ = op.call(seeds(items));
    let mut samples: Vec<f64> = (0..effort.samples.clamp(3, 7))
        .map(|_| {
            let start = Instant::now();
            black_box(op.call(seeds(items)).expect("nap cannot fail"));
            start.elapsed().as_nanos() as f64
        })
        .collect();
    let ideal = (items / workers) as f64 * latency.as_nanos() as f64;
    rows.push(Row {
        figure: "pmap, 64 items sleeping 20 ms, 16 workers",
        floor_name: "ideal 80 ms (n / workers × latency)",
        measured: common::median(&mut samples),
        floor: Some(ideal),
        target: Target::RatioAtMost(1.1),
        floor_spread: 0.0,
        note: "per call".to_owned(),
    });
}

/// `vmap` of sleeping sync items under an explicit `max_workers` above the CPU count: the guide's
/// "more [workers] for I/O-bound tasks". Against the ideal, with `pmap(op, 16)` sampled
/// alternately beside it.
fn max_workers_row(effort: Effort, rows: &mut Vec<Row>) {
    let latency = Duration::from_millis(20);
    let (items, workers) = (64, 16);
    let op = vmap(Nap { latency });
    let beside = pmap(Nap { latency }, workers);
    let run_vmap = || {
        let start = Instant::now();
        black_box(
            execution_options!(max_workers = 16 => op.call(seeds(items))).expect("nap cannot fail"),
        );
        start.elapsed().as_nanos() as f64
    };
    let run_pmap = || {
        let start = Instant::now();
        black_box(beside.call(seeds(items)).expect("nap cannot fail"));
        start.elapsed().as_nanos() as f64
    };
    // Start the spare threads once, as a long-running program would have.
    run_vmap();
    run_pmap();
    let (mut measured, mut pmapped): (Vec<f64>, Vec<f64>) = (0..effort.samples.clamp(3, 7))
        .map(|_| (run_vmap(), run_pmap()))
        .unzip();
    let ideal = (items / workers) as f64 * latency.as_nanos() as f64;
    rows.push(Row {
        figure: "vmap + max_workers = 16, 64 sync items sleeping 20 ms",
        floor_name: "ideal 80 ms (n / workers × latency)",
        measured: common::median(&mut measured),
        floor: Some(ideal),
        target: Target::RatioAtMost(1.05),
        floor_spread: 0.0,
        note: format!(
            "per call; `pmap(op, 16)` beside it: {}",
            fmt_ns(common::median(&mut pmapped))
        ),
    });
}

fn timeout_row(effort: Effort, rows: &mut Vec<Row>) {
    let op = vmap(HangsOnce {
        hang_at: 3,
        hang: Duration::from_millis(500),
    });
    let mut samples: Vec<f64> = (0..effort.samples.clamp(2, 5))
        .map(|_| {
            let start = Instant::now();
            let result = execution_options!(timeout_seconds = 0.1 => op.call(seeds(8)));
            let took = start.elapsed().as_nanos() as f64;
            assert!(
                matches!(&result, Err(e) if e.is_timeout()),
                "expected a timeout, got {result:?}"
            );
            took
        })
        .collect();
    let worst = samples.iter().copied().fold(0.0, f64::max);
    rows.push(Row {
        figure: "timeout 0.1 s with one item hanging 0.5 s",
        floor_name: "deadline (0.1 s)",
        measured: common::median(&mut samples),
        floor: Some(100e6),
        target: Target::AtMostNs(120e6),
        floor_spread: 0.0,
        note: format!("worst {}", fmt_ns(worst)),
    });
}

/// An async item that awaits a timer (an I/O wait), counting live futures.
struct AsyncNap {
    wait: Duration,
    alive: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl AsyncOperator for AsyncNap {
    type Input = u64;
    type Output = u64;
    async fn forward(&self, x: u64) -> Result<u64, XcsError> {
        use std::sync::atomic::Ordering;
        struct Alive<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Alive<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.alive.fetch_add(1, Ordering::SeqCst);
        let _alive = Alive(&self.alive);
        tokio::time::sleep(self.wait).await;
        Ok(x)
    }
    fn name(&self) -> &str {
        "async_nap"
    }
}

/// An async item that does nothing: the per-item overhead.
struct AsyncNoop;

impl AsyncOperator for AsyncNoop {
    type Input = u64;
    type Output = u64;
    async fn forward(&self, x: u64) -> Result<u64, XcsError> {
        Ok(x)
    }
    fn name(&self) -> &str {
        "async_noop"
    }
}

/// Medians of alternating samples of `floor` and `subject` (each returns its own duration).
fn alternate(
    samples: usize,
    mut floor: impl FnMut() -> Duration,
    mut subject: impl FnMut() -> Duration,
) -> (f64, f64, f64) {
    floor();
    subject();
    let mut floors = Vec::with_capacity(samples);
    let mut subjects = Vec::with_capacity(samples);
    for _ in 0..samples {
        floors.push(floor().as_nanos() as f64);
        subjects.push(subject().as_nanos() as f64);
    }
    let spread = spread(&floors);
    (
        common::median(&mut floors),
        common::median(&mut subjects),
        spread,
    )
}

fn async_rows(effort: Effort, rows: &mut Vec<Row>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let alive = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));

    // 1 000 items of 20 ms at 64 in flight.
    let nap = vmap(AsyncNap {
        wait: Duration::from_millis(20),
        alive: alive.clone(),
    });
    let samples = effort.samples.clamp(1, 5);
    let (floor, measured, floor_spread) = alternate(
        samples,
        || {
            runtime.block_on(async {
                let start = Instant::now();
                let out: Vec<u64> = futures_util::stream::iter(0..1000u64)
                    .map(|x| async move {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        x
                    })
                    .buffer_unordered(64)
                    .collect()
                    .await;
                black_box(out);
                start.elapsed()
            })
        },
        || {
            runtime.block_on(async {
                let start = Instant::now();
                let out = execution_options!(max_workers = 64 => async {
                    nap.call((0..1000).collect()).await
                })
                .await;
                black_box(out.expect("naps cannot fail"));
                start.elapsed()
            })
        },
    );
    rows.push(Row {
        figure: "async vmap, 1 000 items awaiting 20 ms, 64 in flight",
        floor_name: "`buffer_unordered(64)`",
        measured,
        floor: Some(floor),
        target: Target::RatioAtMost(1.05),
        floor_spread,
        note: "per batch; ideal 320 ms".to_owned(),
    });

    // 100 000 no-op items: the per-item overhead, against the faster of two floors.
    let noop = vmap(AsyncNoop);
    let n = if effort.scale < 1.0 { 10_000 } else { 100_000 };
    let per_item = |d: Duration| Duration::from_nanos((d.as_nanos() / n as u128) as u64);
    let samples = effort.samples.clamp(1, 7);
    let (buffered, measured, spread_a) = alternate(
        samples,
        || {
            runtime.block_on(async {
                let start = Instant::now();
                let out: Vec<u64> = futures_util::stream::iter(0..n)
                    .map(|x| async move { x })
                    .buffer_unordered(n as usize)
                    .collect()
                    .await;
                black_box(out);
                per_item(start.elapsed())
            })
        },
        || {
            runtime.block_on(async {
                let inputs: Vec<u64> = (0..n).collect();
                let start = Instant::now();
                black_box(noop.call(inputs).await.expect("no-ops cannot fail"));
                per_item(start.elapsed())
            })
        },
    );
    let (join_set, _, spread_b) = alternate(
        samples,
        || {
            runtime.block_on(async {
                let start = Instant::now();
                let mut set = tokio::task::JoinSet::new();
                for x in 0..n {
                    set.spawn(async move { x });
                }
                let out = set.join_all().await;
                black_box(out);
                per_item(start.elapsed())
            })
        },
        || Duration::ZERO,
    );
    let (floor, floor_name, floor_spread) = if buffered <= join_set {
        (
            buffered,
            "`buffer_unordered` (faster than a `JoinSet`)",
            spread_a,
        )
    } else {
        (
            join_set,
            "a `JoinSet` (faster than `buffer_unordered`)",
            spread_b,
        )
    };
    rows.push(Row {
        figure: "async vmap, 100 000 no-op items",
        floor_name,
        measured,
        floor: Some(floor),
        target: Target::RatioAtMost(1.5),
        floor_spread,
        note: format!(
            "per item; buffer_unordered {}, JoinSet {}",
            fmt_ns(buffered),
            fmt_ns(join_set)
        ),
    });

    // A timeout with every item hung: returns at the deadline with no future alive.
    let hung = vmap(AsyncNap {
        wait: Duration::from_secs(3600),
        alive: alive.clone(),
    });
    let mut worst_alive = 0;
    let mut samples: Vec<f64> = (0..effort.samples.clamp(2, 5))
        .map(|_| {
            runtime.block_on(async {
                let start = Instant::now();
                let result = execution_options!(timeout_seconds = 0.1 => async {
                    hung.call((0..32).collect()).await
                })
                .await;
                let took = start.elapsed().as_nanos() as f64;
                assert!(matches!(&result, Err(e) if e.is_timeout()), "{result:?}");
                worst_alive = worst_alive.max(alive.load(std::sync::atomic::Ordering::SeqCst));
                took
            })
        })
        .collect();
    rows.push(Row {
        figure: "async timeout 0.1 s, 32 items hung",
        floor_name: "deadline (0.1 s)",
        measured: common::median(&mut samples),
        floor: Some(100e6),
        target: Target::AtMostNs(110e6),
        floor_spread: 0.0,
        note: format!("{worst_alive} futures alive after return"),
    });
}

fn rate_rows(effort: Effort, rows: &mut Vec<Row>) {
    /// Named per row: rate limits are per operator name, and one row's last slot must not
    /// delay the next row's first call.
    struct Tick(&'static str);
    impl Operator for Tick {
        type Input = u64;
        type Output = u64;
        fn forward(&self, x: u64) -> Result<u64, XcsError> {
            Ok(x)
        }
        fn name(&self) -> &str {
            self.0
        }
    }
    for (rate, figure) in [
        (10.0, "rate_limit = 10: interval between starts"),
        (100.0, "rate_limit = 100: interval between starts"),
        (1000.0, "rate_limit = 1000: interval between starts"),
    ] {
        // About one second of starts (a tenth in a quick run).
        let calls = ((rate * effort.scale.min(1.0)) as u64).max(3);
        let start = Instant::now();
        execution_options!(rate_limit = rate => {
            for x in 0..calls {
                black_box(Tick(figure).call(x).ok());
            }
        });
        let interval = start.elapsed().as_nanos() as f64 / (calls - 1) as f64;
        rows.push(Row {
            figure,
            floor_name: "1/r",
            measured: interval,
            floor: Some(1e9 / rate),
            target: Target::RatioAtMost(1.05),
            floor_spread: 0.0,
            note: format!("observed {:.1} calls/s over {calls} calls", 1e9 / interval),
        });
    }
}

fn progress_row(effort: Effort, rows: &mut Vec<Row>) {
    let rounds = common::rounds_100ns();
    let op = vmap(Spin { rounds });
    let (floor, measured, floor_spread) = paired_units(
        effort,
        (1, 1),
        |n| {
            timed_with(
                n,
                || seeds(100_000),
                |inputs| {
                    black_box(op.call(inputs).ok());
                },
            )
        },
        |n| {
            execution_options!(show_progress = true => timed_with(
                n,
                || seeds(100_000),
                |inputs| {
                    black_box(op.call(inputs).ok());
                },
            ))
        },
    );
    rows.push(Row {
        figure: "vmap 100 000 × ~100 ns with `show_progress`",
        floor_name: "the same without",
        measured,
        floor: Some(floor),
        target: Target::RatioAtMost(1.05),
        floor_spread,
        note: "per batch; bar hidden (stderr not a terminal) or drawn".to_owned(),
    });
}

fn cache_row(effort: Effort, rows: &mut Vec<Row>) {
    let op = Spin {
        rounds: common::rounds_10us(),
    };
    let (floor, measured, floor_spread) = execution_options!(enable_caching = true => {
        let _ = op.call(42); // the miss that stores the entry
        paired_units(
            effort,
            (effort.iters(400), effort.iters(200_000)),
            |n| timed(n, || {
                black_box(op.forward(black_box(42)).ok());
            }),
            |n| timed(n, || {
                black_box(op.call(black_box(42)).ok());
            }),
        )
    });
    rows.push(Row {
        figure: "cache hit vs a 10 µs body",
        floor_name: "body",
        measured,
        floor: Some(floor),
        target: Target::RatioBelow(0.01),
        floor_spread,
        note: "`Operator::call` answered from the cache".to_owned(),
    });
}

fn tracing_row(effort: Effort, rows: &mut Vec<Row>) {
    let rounds = common::rounds_100ns();
    let op = Spin { rounds };
    let (floor, measured, floor_spread) = execution_options!(trace_execution = false => paired(
        effort,
        effort.iters(500_000),
        |n| timed(n, || {
            black_box(spin(black_box(42), rounds));
        }),
        |n| timed(n, || {
            black_box(op.call(black_box(42)).ok());
        }),
    ));
    rows.push(Row {
        figure: "tracing off vs no tracing code",
        floor_name: "the body called directly",
        measured,
        floor: Some(floor),
        target: Target::WithinNoise,
        floor_spread,
        note: "`Operator::call` of a ~100 ns body".to_owned(),
    });
}

/// What the call plan adds for an operator with a resource nobody limited: finding the resource
/// by name, admitting the call and settling it (the clock read outside, as the plan reuses its
/// own).
fn resource_row(effort: Effort, rows: &mut Vec<Row>) {
    let now = Instant::now();
    let round_trip = xcs::__private::resource_round_trip;
    assert!(
        round_trip("bench_report", now),
        "an unlimited resource admits"
    );
    let runs = if effort.samples < 15 { 3 } else { 31 };
    let (floor, measured, floor_spread) = paired_fastest(
        runs,
        effort.iters(200_000),
        |n| timed(n, || black_box(())),
        |n| {
            timed(n, || {
                black_box(round_trip(black_box("bench_report"), now));
            })
        },
    );
    rows.push(Row {
        figure: "resource lookup + admit + settle, unlimited",
        floor_name: "empty loop",
        measured,
        floor: Some(floor),
        target: Target::NetAtMostNs(50.0),
        floor_spread,
        note: format!("one thread; fastest of {runs} interleaved runs"),
    });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick")
        || std::env::var_os("BENCH_REPORT_QUICK").is_some_and(|v| v != "0");
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let effort = if quick {
        Effort {
            samples: 3,
            scale: 0.02,
        }
    } else {
        Effort {
            samples: 15,
            scale: 1.0,
        }
    };
    let started = Instant::now();
    let rounds = common::rounds_100ns();
    let item = {
        let n = 200_000;
        let start = Instant::now();
        for seed in 0..n {
            black_box(spin(black_box(seed), rounds));
        }
        start.elapsed().as_nanos() as f64 / n as f64
    };
    println!(
        "xcs bench_report{}: {} CPUs, {} build; work item = {rounds} rounds ≈ {}",
        if quick {
            " (--quick: smoke run, noisy)"
        } else {
            ""
        },
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        if cfg!(debug_assertions) {
            "DEBUG (use --release for real figures)"
        } else {
            "release"
        },
        fmt_ns(item),
    );
    println!();

    let mut rows = Vec::new();
    let sections: [(&str, Section); 12] = [
        ("scopes", scope_rows),
        ("vmap", vmap_rows),
        ("small_items", vmap_small_rows),
        ("pmap", pmap_row),
        ("max_workers", max_workers_row),
        ("timeout", timeout_row),
        ("cache", cache_row),
        ("tracing", tracing_row),
        ("async", async_rows),
        ("rate", rate_rows),
        ("progress", progress_row),
        ("resource", resource_row),
    ];
    for (name, run) in sections {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        eprint!("measuring {name}… ");
        let start = Instant::now();
        run(effort, &mut rows);
        eprintln!("{:.1} s", start.elapsed().as_secs_f64());
    }
    eprintln!();

    println!("| figure | measured | floor | ratio | target | result | note |");
    println!("|---|---|---|---|---|---|---|");
    for row in &rows {
        let floor = match row.floor {
            Some(ns) => format!("{} ({})", row.floor_name, fmt_ns(ns)),
            None => row.floor_name.to_owned(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.figure,
            fmt_ns(row.measured),
            floor,
            row.ratio_text(),
            row.target_text(),
            if row.met() { "MET" } else { "MISSED" },
            row.note,
        );
    }
    let met = rows.iter().filter(|r| r.met()).count();
    println!();
    println!(
        "{met} of {} targets met in {:.1} s.",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
}
