//! Batches compose: any nesting of `call`, `vmap` and `pmap` under any options completes, keeps
//! its bounds, and reports what the reference says. Every test runs under a watchdog that
//! aborts the process (naming the case) instead of letting a deadlock hang CI.

use crate::common;

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::Duration;

use common::{Gauge, watchdog};

use xcs::{Backend, BatchJob, Operator, OptionsPatch, XcsError, pmap, vmap, with_options};

fn workers(n: usize) -> OptionsPatch {
    OptionsPatch::new().max_workers(NonZeroUsize::new(n))
}

/// Silences the panics these tests cause on purpose; every other panic (a failed assertion)
/// is reported as usual.
fn quiet_panics() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            let on_purpose = payload.is::<Bomb>()
                || matches!(
                    message,
                    Some("a leaf panicked" | "grenade went off" | "the payload's drop panicked")
                );
            if !on_purpose {
                default(info);
            }
        }));
    });
}

// ---------------------------------------------------------------------------------------------
// Observation 1: vmap(Question) > pmap(Model, 2) > vmap(Leaf) with default options.

struct Leaf;
impl Operator for Leaf {
    type Input = u64;
    type Output = u64;
    fn forward(&self, x: u64) -> Result<u64, XcsError> {
        std::thread::sleep(Duration::from_millis(1));
        Ok(x * 2)
    }
    fn name(&self) -> &str {
        "leaf"
    }
}

struct Model;
impl Operator for Model {
    type Input = u64;
    type Output = u64;
    fn forward(&self, x: u64) -> Result<u64, XcsError> {
        Ok(vmap(Leaf).call((x..x + 4).collect())?.iter().sum())
    }
    fn name(&self) -> &str {
        "model"
    }
}

struct Question;
impl Operator for Question {
    type Input = u64;
    type Output = u64;
    fn forward(&self, x: u64) -> Result<u64, XcsError> {
        Ok(pmap(Model, 2).call(vec![x, x + 10])?.iter().sum())
    }
    fn name(&self) -> &str {
        "question"
    }
}

fn question_reference(x: u64) -> u64 {
    [x, x + 10]
        .iter()
        .map(|&m| (m..m + 4).map(|l| l * 2).sum::<u64>())
        .sum()
}

#[test]
fn vmap_of_pmap_of_vmap_completes_with_default_options() {
    let _lock = common::global_lock();
    watchdog("vmap > pmap > vmap", Duration::from_secs(60), || {
        for _ in 0..5 {
            let out = vmap(Question).call((0..4).collect()).unwrap();
            let expected: Vec<u64> = (0..4).map(question_reference).collect();
            assert_eq!(out, expected);
        }
    });
}

/// `pmap > vmap > pmap > vmap` under `max_workers = 2`.
struct Level(u32);
impl Operator for Level {
    type Input = u64;
    type Output = u64;
    fn forward(&self, x: u64) -> Result<u64, XcsError> {
        let items: Vec<u64> = (0..3).map(|i| x * 3 + i).collect();
        let out = match self.0 {
            0 => return Ok(x),
            level if level % 2 == 0 => pmap(Level(level - 1), 2).call(items)?,
            level => vmap(Level(level - 1)).call(items)?,
        };
        Ok(out.iter().sum())
    }
    fn name(&self) -> &str {
        "level"
    }
}

fn level_reference(level: u32, x: u64) -> u64 {
    if level == 0 {
        return x;
    }
    (0..3).map(|i| level_reference(level - 1, x * 3 + i)).sum()
}

#[test]
fn alternating_pmap_and_vmap_four_deep_under_two_workers() {
    let _lock = common::global_lock();
    watchdog("pmap > vmap > pmap > vmap", Duration::from_secs(60), || {
        let out = with_options(&workers(2), || pmap(Level(4), 2).call(vec![1, 2])).unwrap();
        assert_eq!(out, vec![level_reference(4, 1), level_reference(4, 2)]);
    });
}

// ---------------------------------------------------------------------------------------------
// Observation 2: caching + nested vmap + repeated inputs.

struct CachedOuter(Arc<AtomicUsize>);
impl Operator for CachedOuter {
    type Input = u64;
    type Output = u64;
    fn forward(&self, x: u64) -> Result<u64, XcsError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        let inner = vmap(Leaf).call((0..8).map(|i| x * 100 + i).collect())?;
        Ok(inner.iter().sum())
    }
    fn name(&self) -> &str {
        "cached_outer"
    }
}

#[test]
fn caching_with_nested_batches_and_repeated_inputs_completes() {
    let _lock = common::global_lock();
    let patch = workers(8).enable_caching(true);
    for trial in 0..10 {
        watchdog(
            &format!("cached nested vmap, trial {trial}"),
            Duration::from_secs(60),
            || {
                xcs::clear_cache();
                let bodies = Arc::new(AtomicUsize::new(0));
                let op = vmap(CachedOuter(Arc::clone(&bodies)));
                // 64 items, 16 distinct inputs; distinct per trial so nothing is cached yet.
                let inputs: Vec<u64> = (0..64).map(|i| trial * 1000 + i % 16).collect();
                let out = with_options(&patch, || op.call(inputs.clone())).unwrap();
                for (x, y) in inputs.iter().zip(&out) {
                    let expected: u64 = (0..8).map(|i| (x * 100 + i) * 2).sum();
                    assert_eq!(*y, expected);
                }
                // Single flight: each distinct input ran its body once.
                assert_eq!(bodies.load(Ordering::SeqCst), 16);
            },
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Observation 5: a backend run from a worker thread does not make later batches queue.

struct InOrder;
impl Backend for InOrder {
    fn run(&self, job: &BatchJob) {
        for index in 0..job.len() {
            job.run_item(index);
        }
    }
}

/// Waits until `n` items are inside at once (or a generous deadline passes).
struct Meet(Arc<Barrier>);
impl Operator for Meet {
    type Input = u64;
    type Output = bool;
    fn forward(&self, _: u64) -> Result<bool, XcsError> {
        self.0.wait();
        Ok(true)
    }
    fn name(&self) -> &str {
        "meet"
    }
}

struct ViaBackend;
impl Operator for ViaBackend {
    type Input = u64;
    type Output = u64;
    fn forward(&self, x: u64) -> Result<u64, XcsError> {
        let patch = OptionsPatch::new().device_strategy(xcs::DeviceStrategy::named("in-order-5"));
        Ok(with_options(&patch, || vmap(Leaf).call(vec![x, x]))?
            .iter()
            .sum())
    }
    fn name(&self) -> &str {
        "via_backend"
    }
}

#[test]
fn a_backend_on_a_worker_does_not_put_a_busy_worker_back_to_work() {
    let _lock = common::global_lock();
    xcs::register_backend("in-order-5", InOrder).unwrap();
    watchdog("backend on a worker", Duration::from_secs(60), || {
        for _ in 0..20 {
            assert_eq!(pmap(ViaBackend, 2).call(vec![1, 2]).unwrap(), vec![4, 8]);
            // Both items of a later pmap(_, 2) run at once: they meet at a barrier of two.
            let meet = pmap(Meet(Arc::new(Barrier::new(2))), 2);
            assert_eq!(meet.call(vec![0, 1]).unwrap(), vec![true, true]);
        }
    });
    xcs::unregister_backend("in-order-5");
}

// ---------------------------------------------------------------------------------------------
// Observation 8: panics in user code the runtime touches never unwind into the caller.

/// An output whose `Drop` panics.
#[derive(Debug)]
struct Grenade(#[allow(dead_code)] u64);
impl Drop for Grenade {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("grenade went off");
        }
    }
}

struct Throws;
impl Operator for Throws {
    type Input = u64;
    type Output = Grenade;
    fn forward(&self, x: u64) -> Result<Grenade, XcsError> {
        if x == 3 {
            return Err(XcsError::operator("throws", "item 3 fails"));
        }
        Ok(Grenade(x))
    }
    fn name(&self) -> &str {
        "throws"
    }
}

/// A panic payload whose own `Drop` panics.
struct Bomb;
impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("the payload's drop panicked");
    }
}

struct PanicsWithBomb;
impl Operator for PanicsWithBomb {
    type Input = u64;
    type Output = u64;
    fn forward(&self, x: u64) -> Result<u64, XcsError> {
        if x == 1 {
            std::panic::panic_any(Bomb);
        }
        Ok(x)
    }
    fn name(&self) -> &str {
        "panics_with_bomb"
    }
}

#[test]
fn discarded_outputs_and_panic_payloads_with_panicking_drops_are_contained() {
    let _lock = common::global_lock();
    quiet_panics();
    watchdog("panicking drops", Duration::from_secs(60), || {
        for parallel in [false, true] {
            let patch = OptionsPatch::new().use_parallel(parallel);
            // Outputs of items 0..3 are discarded when item 3 fails; their drops panic.
            let err = with_options(&patch, || vmap(Throws).call((0..8).collect())).unwrap_err();
            assert_eq!(err.index(), Some(3), "{err}");
            let err =
                with_options(&patch, || pmap(PanicsWithBomb, 2).call(vec![0, 1, 2])).unwrap_err();
            assert!(matches!(err, XcsError::Panicked { .. }), "{err}");
            let err =
                with_options(&patch, || vmap(PanicsWithBomb).call(vec![0, 1, 2])).unwrap_err();
            assert!(matches!(err, XcsError::Panicked { .. }), "{err}");
        }
        // Never a bogus timeout for a batch without a deadline.
        let settled = pmap(PanicsWithBomb, 3).call_settled(vec![0, 1, 2]);
        assert!(matches!(settled[1], Err(XcsError::Panicked { .. })));
        assert!(settled[0].is_ok() && settled[2].is_ok());
    });
}

// ---------------------------------------------------------------------------------------------
// The randomized composition stress test.

/// splitmix64: a tiny, good, dependency-free generator.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A node of a random tree of operators: the input packs a seed and the depth left.
struct Node {
    gauge: Arc<Gauge>,
}

#[derive(Debug)]
enum Shape {
    Leaf,
    Fails,
    Panics,
    Sleeps,
    Calls(Vec<u64>),
    VMap(Vec<u64>, OptionsPatch),
    PMap(Vec<u64>, usize, OptionsPatch),
}

const WORKER_CHOICES: [usize; 7] = [1, 2, 3, 8, 64, 1000, 1_000_000];

fn shape(x: u64) -> Shape {
    let (seed, depth) = (x >> 3, x & 7);
    let r = mix(seed);
    if depth == 0 || r % 10 < 3 {
        return match r % 97 {
            0 => Shape::Fails,
            1 => Shape::Panics,
            2..=8 => Shape::Sleeps,
            _ => Shape::Leaf,
        };
    }
    let width = 1 + (r >> 8) % 5;
    // Children repeat (`% distinct`) so caching sees the same input more than once.
    let distinct = 1 + (r >> 12) % width;
    let children: Vec<u64> = (0..width)
        .map(|i| (mix(seed ^ (i % distinct)) >> 4 << 3) | (depth - 1))
        .collect();
    let mut patch = OptionsPatch::new();
    if (r >> 16) % 3 == 0 {
        patch = patch.max_workers(NonZeroUsize::new(
            WORKER_CHOICES[((r >> 20) % WORKER_CHOICES.len() as u64) as usize],
        ));
    }
    if (r >> 24) % 4 == 0 {
        patch = patch.enable_caching((r >> 26) % 2 == 0);
    }
    if (r >> 28) % 5 == 0 {
        // A deadline that does not fire: the deadline paths, not timeouts.
        patch = patch.timeout(Some(Duration::from_secs(60))).unwrap();
    }
    if (r >> 32) % 11 == 0 {
        patch = patch.use_parallel(false);
    }
    match (r >> 36) % 3 {
        0 => Shape::Calls(children),
        1 => Shape::VMap(children, patch),
        _ => Shape::PMap(
            children,
            WORKER_CHOICES[((r >> 40) % WORKER_CHOICES.len() as u64) as usize] % 70,
            patch,
        ),
    }
}

/// What a node returns, computed without xcs: `None` for a failure anywhere below.
fn reference(x: u64) -> Option<u64> {
    match shape(x) {
        Shape::Leaf | Shape::Sleeps => Some(x % 1000),
        Shape::Fails | Shape::Panics => None,
        Shape::Calls(c) | Shape::VMap(c, _) | Shape::PMap(c, _, _) => c
            .into_iter()
            .map(reference)
            .try_fold(0u64, |acc, v| Some(acc.wrapping_add(v?))),
    }
}

impl Operator for Node {
    type Input = u64;
    type Output = u64;
    fn forward(&self, x: u64) -> Result<u64, XcsError> {
        let _running = self.gauge.enter();
        let child = || Node {
            gauge: Arc::clone(&self.gauge),
        };
        let outputs = match shape(x) {
            Shape::Leaf => return Ok(x % 1000),
            Shape::Sleeps => {
                std::thread::sleep(Duration::from_micros(300));
                return Ok(x % 1000);
            }
            Shape::Fails => return Err(XcsError::operator("node", "a leaf failed")),
            Shape::Panics => panic!("a leaf panicked"),
            Shape::Calls(children) => children
                .into_iter()
                .map(|c| child().call(c))
                .collect::<Result<Vec<_>, _>>()?,
            Shape::VMap(children, patch) => with_options(&patch, || vmap(child()).call(children))?,
            Shape::PMap(children, n, patch) => {
                with_options(&patch, || pmap(child(), n).call(children))?
            }
        };
        Ok(outputs.into_iter().fold(0u64, u64::wrapping_add))
    }
    fn name(&self) -> &str {
        "node"
    }
}

#[test]
fn random_compositions_complete_and_agree_with_the_reference() {
    let _lock = common::global_lock();
    quiet_panics();
    let cases: u64 = std::env::var("COMPOSITION_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let gauge = Arc::new(Gauge::default());
    let root = vmap(Node {
        gauge: Arc::clone(&gauge),
    });
    let (mut succeeded, mut failed) = (0, 0);
    for case in 0..cases {
        let r = mix(case ^ 0x5eed);
        // Four roots of depth 4 (so up to four levels of nesting below the root batch).
        let inputs: Vec<u64> = (0..4).map(|i| (mix(r ^ i) >> 4 << 3) | 4).collect();
        let mut patch = OptionsPatch::new().max_workers(NonZeroUsize::new(
            WORKER_CHOICES[(r % WORKER_CHOICES.len() as u64) as usize],
        ));
        if r % 3 == 0 {
            patch = patch.enable_caching(true);
        }
        if (r >> 8) % 4 == 0 {
            patch = patch.timeout(Some(Duration::from_secs(60))).unwrap();
        }
        let expected: Option<Vec<u64>> = inputs.iter().map(|&x| reference(x)).collect();
        let got = watchdog(
            &format!("stress case {case}"),
            Duration::from_secs(60),
            || with_options(&patch, || root.call(inputs.clone())),
        );
        match (expected, got) {
            (Some(expected), Ok(got)) => {
                succeeded += 1;
                assert_eq!(got, expected, "case {case}")
            }
            (None, Err(error)) => {
                failed += 1;
                assert!(
                    matches!(error, XcsError::Operator { .. } | XcsError::Panicked { .. }),
                    "case {case}: {error}"
                )
            }
            (expected, got) => panic!("case {case}: expected {expected:?}, got {got:?}"),
        }
        let stats = xcs::thread_stats();
        assert!(
            stats.compute <= stats.compute_slots,
            "case {case}: {stats:?}"
        );
        assert_eq!(stats.abandoned, 0, "case {case}: {stats:?}");
    }
    // Not vacuous: both outcomes occur, and the trees are deep and wide.
    let nodes = gauge.entered();
    eprintln!("{cases} cases: {succeeded} ok, {failed} failed, {nodes} operator calls");
    assert!(
        succeeded > cases / 10 && failed > cases / 10,
        "{succeeded} / {failed}"
    );
    assert!(nodes as u64 > cases * 20, "{nodes} calls");
}
