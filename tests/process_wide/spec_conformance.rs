//! Acceptance tests written from `SPEC.md` alone: every public name and behaviour the contract promises.
//!
//! Global options, the cache, the trace buffer and the backend registry are process-wide, so every test
//! takes `LOCK` and restores the defaults when it ends (even when it fails).

use crate::common;

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use xcs::prelude::*;
use xcs::{
    Axis, CacheStats, DeviceStrategy, ExecutionOptions, OptionsPatch, Scheduler, Trace, XcsError,
};

// ---------------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------------

/// Serializes the tests and restores the process-wide defaults on drop (also when a test panics).
struct Serial {
    _guard: MutexGuard<'static, ()>,
}

impl Drop for Serial {
    fn drop(&mut self) {
        reset_execution_options();
        xcs::clear_cache();
        let _ = xcs::take_trace();
    }
}

fn serial() -> Serial {
    let guard = common::global_lock();
    reset_execution_options();
    xcs::clear_cache();
    let _ = xcs::take_trace();
    Serial { _guard: guard }
}

fn nz(n: usize) -> Option<NonZeroUsize> {
    NonZeroUsize::new(n)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A gate that hung items wait on (at most 10 s) until the test releases it.
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    const fn new() -> Self {
        Gate {
            open: Mutex::new(false),
            cv: Condvar::new(),
        }
    }
    fn reset(&self) {
        *lock(&self.open) = false;
    }
    /// Returns `true` if released, `false` if the 10 s cap passed.
    fn wait(&self) -> bool {
        let guard = lock(&self.open);
        let (guard, _) = self
            .cv
            .wait_timeout_while(guard, Duration::from_secs(10), |open| !*open)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard
    }
    fn release(&self) {
        *lock(&self.open) = true;
        self.cv.notify_all();
    }
}

/// Waits (at most 10 s) until `cond` holds.
fn wait_until(cond: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// A rendezvous: each item enters, then waits (at most `cap`) until `target` items are inside at once.
/// Records the maximum number of items inside at once.
struct Rendezvous {
    state: Mutex<(usize, usize)>, // (inside now, max inside)
    cv: Condvar,
    target: usize,
    cap: Duration,
}

impl Rendezvous {
    fn new(target: usize, cap: Duration) -> Self {
        Rendezvous {
            state: Mutex::new((0, 0)),
            cv: Condvar::new(),
            target,
            cap,
        }
    }
    /// Returns whether `target` items were inside at once while this one waited.
    fn meet(&self) -> bool {
        let mut st = lock(&self.state);
        st.0 += 1;
        st.1 = st.1.max(st.0);
        self.cv.notify_all();
        let (mut st, _) = self
            .cv
            .wait_timeout_while(st, self.cap, |s| s.1 < self.target)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let met = st.1 >= self.target;
        st.0 -= 1;
        met
    }
    fn max_inside(&self) -> usize {
        lock(&self.state).1
    }
}

/// A hand-written operator around a closure.
struct FnOp<I, O> {
    name: &'static str,
    f: Box<dyn Fn(I) -> O + Send + Sync>,
}

impl<I: Send + 'static, O: Send + 'static> Operator for FnOp<I, O> {
    type Input = I;
    type Output = O;
    fn forward(&self, input: I) -> Result<O, XcsError> {
        Ok((self.f)(input))
    }
    fn name(&self) -> &str {
        self.name
    }
}

fn op<I, O>(name: &'static str, f: impl Fn(I) -> O + Send + Sync + 'static) -> FnOp<I, O> {
    FnOp {
        name,
        f: Box::new(f),
    }
}

/// The spec: every `Display` is one clear lowercase-led sentence (except `Invalid execution option: …`).
fn assert_lowercase_led(err: &XcsError) {
    let msg = err.to_string();
    let first = msg.chars().next().expect("empty error message");
    assert!(
        first.is_lowercase(),
        "error message not lowercase-led: {msg:?}"
    );
    assert!(
        !msg.contains('\n'),
        "error message is not one sentence: {msg:?}"
    );
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        String::new()
    }
}

// ---------------------------------------------------------------------------------------------------
// Operators used by the tests
// ---------------------------------------------------------------------------------------------------

/// Generates a string (the spec's own example).
#[xcs::operator]
fn generate(prompt: String, seed: u64) -> String {
    format!("{prompt}-{seed}")
}

#[xcs::operator(name = "Renamed")]
fn original_name(x: u64) -> u64 {
    x + 1
}

mod ops {
    /// A public operator in a module: the generated items share the function's visibility.
    #[xcs::operator]
    #[inline]
    pub fn shout(text: String) -> String {
        text.to_uppercase()
    }
}

#[xcs::operator]
fn parse_num(text: String) -> Result<i64, std::num::ParseIntError> {
    text.parse::<i64>()
}

#[xcs::operator]
fn io_fallible(x: u32) -> std::io::Result<u32> {
    if x == 0 {
        Err(std::io::Error::other("zero is not allowed"))
    } else {
        Ok(x * 2)
    }
}

#[xcs::operator]
fn boxed_fallible(x: u32) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
    if x == 0 {
        Err("zero again".into())
    } else {
        Ok(x)
    }
}

static FAIL_ON_RUNS: AtomicUsize = AtomicUsize::new(0);

#[xcs::operator]
fn fail_on(x: u64) -> Result<u64, String> {
    FAIL_ON_RUNS.fetch_add(1, Ordering::SeqCst);
    match x {
        20 => {
            thread::sleep(Duration::from_millis(100));
            Err("boom at twenty".to_string())
        }
        50 => Err("boom at fifty".to_string()),
        _ => Ok(x),
    }
}

#[xcs::operator]
fn probe_options(x: u64) -> (u64, Option<NonZeroUsize>, bool, bool) {
    let o = get_execution_options();
    (x, o.max_workers, o.use_parallel, o.enable_caching)
}

#[xcs::operator]
fn nested_probe(x: u64) -> Result<(u64, Option<NonZeroUsize>, bool, bool), XcsError> {
    ProbeOptions.call(ProbeOptionsInputs { x })
}

static SQUARE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[xcs::operator]
fn cached_square(x: u64) -> u64 {
    SQUARE_RUNS.fetch_add(1, Ordering::SeqCst);
    x * x
}

static CUBE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[xcs::operator]
fn cached_cube(x: u64) -> u64 {
    CUBE_RUNS.fetch_add(1, Ordering::SeqCst);
    x * x * x
}

static CONCAT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[xcs::operator]
fn cached_concat(prompt: String, seed: u64) -> String {
    CONCAT_RUNS.fetch_add(1, Ordering::SeqCst);
    format!("{prompt}{seed}")
}

static FLAKY_RUNS: AtomicUsize = AtomicUsize::new(0);

#[xcs::operator]
fn always_fails(x: u64) -> Result<u64, String> {
    FLAKY_RUNS.fetch_add(1, Ordering::SeqCst);
    Err(format!("no luck for {x}"))
}

static FLOAT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[xcs::operator]
fn sum_floats(xs: Vec<f64>) -> f64 {
    FLOAT_RUNS.fetch_add(1, Ordering::SeqCst);
    xs.iter().sum()
}

#[xcs::operator]
fn traced_op(x: u64) -> u64 {
    x + 100
}

static GEN_GATE: Gate = Gate::new();
static GEN_HANG_DONE: AtomicBool = AtomicBool::new(false);

#[xcs::operator]
fn hang_gen(x: u64) -> u64 {
    GEN_GATE.wait();
    GEN_HANG_DONE.store(true, Ordering::SeqCst);
    x
}

static INNER_RAN: AtomicBool = AtomicBool::new(false);
static OUTER_DONE: AtomicBool = AtomicBool::new(false);
static OUTER_INNER_RESULT: Mutex<Option<String>> = Mutex::new(None);

struct HandInner;

impl Operator for HandInner {
    type Input = u64;
    type Output = u64;
    fn forward(&self, input: u64) -> Result<u64, XcsError> {
        INNER_RAN.store(true, Ordering::SeqCst);
        Ok(input)
    }
    fn name(&self) -> &str {
        "hand_inner"
    }
}

/// Sleeps past the deadline (without cooperating), then calls a hand-written operator by plain borrow.
#[xcs::operator]
fn sleepy_outer(x: u64) -> u64 {
    thread::sleep(Duration::from_millis(400));
    let inner = HandInner;
    let res = inner.call(x);
    *lock(&OUTER_INNER_RESULT) = Some(match &res {
        Ok(v) => format!("ok {v}"),
        Err(XcsError::Timeout { .. }) => "timeout".to_string(),
        Err(e) => format!("other error: {e}"),
    });
    OUTER_DONE.store(true, Ordering::SeqCst);
    x
}

/// A hand-written operator whose body hangs on a gate.
struct HangOp {
    gate: Arc<Gate>,
    started: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
    hang_on: Option<u64>, // `None`: every item hangs
}

impl Operator for HangOp {
    type Input = u64;
    type Output = u64;
    fn forward(&self, input: u64) -> Result<u64, XcsError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        if self.hang_on.is_none_or(|h| h == input) {
            self.gate.wait();
        }
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(input)
    }
    fn name(&self) -> &str {
        "hang_op"
    }
}

fn hang_op(hang_on: Option<u64>) -> (HangOp, Arc<Gate>, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let gate = Arc::new(Gate::new());
    let started = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let op = HangOp {
        gate: gate.clone(),
        started: started.clone(),
        finished: finished.clone(),
        hang_on,
    };
    (op, gate, started, finished)
}

struct Double;

impl Operator for Double {
    type Input = u64;
    type Output = u64;
    fn forward(&self, input: u64) -> Result<u64, XcsError> {
        Ok(input * 2)
    }
    fn name(&self) -> &str {
        "double"
    }
}

static DOUBLE: Double = Double;

// ---------------------------------------------------------------------------------------------------
// §1 Layout / prelude
// ---------------------------------------------------------------------------------------------------

mod prelude_only {
    // Only the prelude: macros, `Operator`, `vmap`, `pmap` and the option functions.
    use xcs::prelude::*;

    pub fn run() {
        let before = get_execution_options();
        let inside = execution_options!(max_workers = 3 => get_execution_options());
        assert_eq!(inside.max_workers, std::num::NonZeroUsize::new(3));
        let global = set_execution_options!(enable_caching = true);
        assert!(global.enable_caching);
        reset_execution_options();
        assert_eq!(get_execution_options(), before);
        let patch = xcs::OptionsPatch::from_pairs([("use_parallel", "false")]).unwrap();
        assert!(!with_options(&patch, || get_execution_options().use_parallel));
        let _ = set_global_options(&patch);
        assert!(!get_execution_options().use_parallel);
        reset_execution_options();
        let out = vmap(super::Double).call(vec![1, 2]).unwrap();
        assert_eq!(out, vec![2, 4]);
        let out = pmap(super::Double, 2).call(vec![3]).unwrap();
        assert_eq!(out, vec![6]);
        assert_eq!(super::Double.name(), "double");
    }
}

#[test]
fn prelude_brings_macros_operator_executors_and_option_functions() {
    let _s = serial();
    prelude_only::run();
}

#[test]
fn root_reexports_exist() {
    let _s = serial();
    let _: fn() -> Option<Instant> = xcs::deadline;
    let _: fn() -> bool = xcs::cancelled;
    let _: Trace = xcs::take_trace();
    let _: CacheStats = xcs::cache_stats();
    xcs::clear_cache();
    let _: xcs::VMap<Double> = xcs::vmap(Double);
    let _: xcs::PMap<Double> = xcs::pmap(Double, 1);
    let _: ExecutionOptions = xcs::get_execution_options();
    xcs::reset_execution_options();
    let _: Result<OptionsPatch, XcsError> =
        xcs::OptionsPatch::from_pairs(Vec::<(&str, &str)>::new());
    let _: Option<Scheduler> = ExecutionOptions::default().scheduler;
    let _: Axis<u64> = 1u64.into();
}

// ---------------------------------------------------------------------------------------------------
// §2 Options
// ---------------------------------------------------------------------------------------------------

#[test]
fn execution_options_defaults_and_derives() {
    let _s = serial();
    let d = ExecutionOptions::default();
    assert!(d.use_parallel);
    assert_eq!(d.max_workers, None);
    assert_eq!(d.device_strategy, DeviceStrategy::Auto);
    assert!(!d.enable_caching);
    assert!(!d.trace_execution);
    assert_eq!(d.timeout_seconds, None);
    assert_eq!(d.scheduler, None);
    fn clone_of<T: Clone>(t: &T) -> T {
        t.clone()
    }
    assert_eq!(clone_of(&d), d);
    assert!(!format!("{d:?}").is_empty());
    assert_eq!(get_execution_options(), ExecutionOptions::default());
    assert_eq!(DeviceStrategy::default(), DeviceStrategy::Auto);
}

#[test]
fn macro_literal_forms() {
    let _s = serial();
    let o = execution_options!(
        use_parallel = false,
        max_workers = 4,
        device_strategy = "cpu",
        enable_caching = true,
        trace_execution = true,
        timeout_seconds = 1.5
        => get_execution_options()
    );
    assert!(!o.use_parallel);
    assert_eq!(o.max_workers, nz(4));
    assert_eq!(o.device_strategy, DeviceStrategy::Cpu);
    assert!(o.enable_caching);
    assert!(o.trace_execution);
    assert_eq!(o.timeout_seconds, Some(Duration::from_millis(1500)));

    let o = execution_options!(timeout_seconds = 2 => get_execution_options());
    assert_eq!(o.timeout_seconds, Some(Duration::from_secs(2)));
    let o = execution_options!(device_strategy = "gpu" => get_execution_options());
    assert_eq!(o.device_strategy, DeviceStrategy::Gpu);
    let o = execution_options!(device_strategy = "auto" => get_execution_options());
    assert_eq!(o.device_strategy, DeviceStrategy::Auto);

    set_execution_options!(max_workers = 5, timeout_seconds = 3);
    let o =
        execution_options!(max_workers = None, timeout_seconds = None => get_execution_options());
    assert_eq!(o.max_workers, None);
    assert_eq!(o.timeout_seconds, None);
}

#[test]
fn scheduler_literals_set_use_parallel() {
    let _s = serial();
    for o in [
        execution_options!(scheduler = "sequential" => get_execution_options()),
        execution_options!(scheduler = "topological" => get_execution_options()),
    ] {
        assert!(!o.use_parallel);
        assert!(o.scheduler.is_some());
    }
    set_execution_options!(use_parallel = false);
    for o in [
        execution_options!(scheduler = "parallel" => get_execution_options()),
        execution_options!(scheduler = "wave" => get_execution_options()),
        execution_options!(scheduler = "auto" => get_execution_options()),
    ] {
        assert!(o.use_parallel);
        assert!(o.scheduler.is_some());
    }
    // Consistent combinations are fine.
    let o = execution_options!(scheduler = "sequential", use_parallel = false => get_execution_options());
    assert!(!o.use_parallel);
    let o =
        execution_options!(scheduler = "parallel", use_parallel = true => get_execution_options());
    assert!(o.use_parallel);
}

#[test]
fn from_pairs_parses_every_option() {
    let _s = serial();
    let patch = OptionsPatch::from_pairs([
        ("use_parallel", "false"),
        ("max_workers", "8"),
        ("device_strategy", "cpu"),
        ("enable_caching", "true"),
        ("trace_execution", "true"),
        ("timeout_seconds", "2.5"),
    ])
    .unwrap();
    let o = with_options(&patch, get_execution_options);
    assert!(!o.use_parallel);
    assert_eq!(o.max_workers, nz(8));
    assert_eq!(o.device_strategy, DeviceStrategy::Cpu);
    assert!(o.enable_caching);
    assert!(o.trace_execution);
    assert_eq!(o.timeout_seconds, Some(Duration::from_millis(2500)));
    // Outside the scope nothing leaked.
    assert_eq!(get_execution_options(), ExecutionOptions::default());

    let patch = OptionsPatch::from_pairs([("scheduler", "sequential")]).unwrap();
    let o = with_options(&patch, get_execution_options);
    assert!(!o.use_parallel);
    assert!(o.scheduler.is_some());
    let patch =
        OptionsPatch::from_pairs([("scheduler", "sequential"), ("use_parallel", "false")]).unwrap();
    assert!(!with_options(&patch, get_execution_options).use_parallel);
    let patch = OptionsPatch::from_pairs([("timeout_seconds", "3")]).unwrap();
    assert_eq!(
        with_options(&patch, get_execution_options).timeout_seconds,
        Some(Duration::from_secs(3))
    );
}

#[test]
fn from_pairs_accepts_owned_string_pairs() {
    let _s = serial();
    let config: HashMap<String, String> = [("max_workers".to_string(), "2".to_string())]
        .into_iter()
        .collect();
    let patch = OptionsPatch::from_pairs(config).unwrap();
    assert_eq!(
        with_options(&patch, get_execution_options).max_workers,
        nz(2)
    );
}

#[test]
fn from_pairs_unknown_name_is_invalid_option_with_exact_message() {
    let _s = serial();
    let err = OptionsPatch::from_pairs([("max_worker", "8")]).unwrap_err();
    assert!(matches!(err, XcsError::InvalidOption { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "Invalid execution option: max_worker; did you mean `max_workers`?"
    );

    let err = OptionsPatch::from_pairs([("frobnicate_everything", "1")]).unwrap_err();
    assert!(matches!(err, XcsError::InvalidOption { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "Invalid execution option: frobnicate_everything"
    );
}

#[test]
fn from_pairs_bad_values_are_invalid_value() {
    let _s = serial();
    for (name, value) in [
        ("max_workers", "abc"),
        ("max_workers", "0"),
        ("use_parallel", "maybe"),
        ("timeout_seconds", "-1"),
        ("timeout_seconds", "0"),
        ("device_strategy", "quantum"),
        ("scheduler", "fifo"),
        ("enable_caching", "yes please"),
    ] {
        let err = OptionsPatch::from_pairs([(name, value)]).unwrap_err();
        assert!(
            matches!(err, XcsError::InvalidValue { .. }),
            "{name}={value}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(name),
            "{msg:?} does not name the option {name}"
        );
        assert!(
            msg.contains(value),
            "{msg:?} does not name the value {value}"
        );
        assert_lowercase_led(&err);
    }
}

#[test]
fn from_pairs_contradicting_scheduler_is_invalid_value() {
    let _s = serial();
    for pairs in [
        [("scheduler", "sequential"), ("use_parallel", "true")],
        [("use_parallel", "false"), ("scheduler", "parallel")],
    ] {
        let err = OptionsPatch::from_pairs(pairs).unwrap_err();
        assert!(matches!(err, XcsError::InvalidValue { .. }), "{err:?}");
    }
}

#[test]
fn from_env_reads_xcs_variables() {
    let _s = serial();
    // SAFETY: every test holds `LOCK`, and no other thread of this binary reads the environment now.
    unsafe {
        std::env::set_var("XCS_MAX_WORKERS", "8");
        std::env::set_var("XCS_USE_PARALLEL", "false");
    }
    let patch = OptionsPatch::from_env();
    unsafe {
        std::env::remove_var("XCS_MAX_WORKERS");
        std::env::remove_var("XCS_USE_PARALLEL");
    }
    let patch = patch.expect("valid XCS_ variables");
    let o = with_options(&patch, get_execution_options);
    assert_eq!(o.max_workers, nz(8));
    assert!(!o.use_parallel);
    // Options not named in the environment are inherited.
    assert!(!o.enable_caching);
}

#[test]
fn from_env_bad_value_is_invalid_value() {
    let _s = serial();
    unsafe {
        std::env::set_var("XCS_MAX_WORKERS", "lots");
    }
    let res = OptionsPatch::from_env();
    unsafe {
        std::env::remove_var("XCS_MAX_WORKERS");
    }
    let err = res.unwrap_err();
    assert!(matches!(err, XcsError::InvalidValue { .. }), "{err:?}");
    assert!(err.to_string().contains("max_workers") || err.to_string().contains("MAX_WORKERS"));
}

// ---------------------------------------------------------------------------------------------------
// §3 Scopes and global settings
// ---------------------------------------------------------------------------------------------------

#[test]
fn scope_yields_value_and_restores() {
    let _s = serial();
    let v = execution_options!(max_workers = 2 => {
        let a = 40;
        a + 2
    });
    assert_eq!(v, 42);
    assert_eq!(get_execution_options(), ExecutionOptions::default());

    // Nested scopes: inner sets only what it names.
    execution_options!(max_workers = 2, enable_caching = true => {
        execution_options!(max_workers = 3 => {
            let o = get_execution_options();
            assert_eq!(o.max_workers, nz(3));
            assert!(o.enable_caching);
        });
        let o = get_execution_options();
        assert_eq!(o.max_workers, nz(2));
        assert!(o.enable_caching);
    });
    assert_eq!(get_execution_options(), ExecutionOptions::default());
}

fn early_return() -> u32 {
    execution_options!(max_workers = 2 => {
        if get_execution_options().max_workers == NonZeroUsize::new(2) {
            return 7;
        }
        0
    })
}

fn question_mark(text: &str) -> Result<u64, std::num::ParseIntError> {
    let n = execution_options!(max_workers = 2 => {
        let n: u64 = text.parse()?;
        n
    });
    Ok(n)
}

#[test]
fn scope_is_inline_return_question_break_borrows() {
    let _s = serial();
    assert_eq!(early_return(), 7);
    assert_eq!(get_execution_options(), ExecutionOptions::default());

    assert_eq!(question_mark("12"), Ok(12));
    assert!(question_mark("x").is_err());
    assert_eq!(get_execution_options(), ExecutionOptions::default());

    let mut i = 0;
    loop {
        execution_options!(use_parallel = false => {
            i += 1;
            if i == 3 {
                break;
            }
            continue;
        });
    }
    assert_eq!(i, 3);
    assert_eq!(get_execution_options(), ExecutionOptions::default());

    // Borrows: a mutable borrow inside, and a borrow of a local returned out of the scope.
    let mut items = Vec::new();
    execution_options!(max_workers = 2 => items.push(1));
    let text = String::from("hello world");
    let word: &str = execution_options!(max_workers = 2 => &text[..5]);
    assert_eq!(word, "hello");
    assert_eq!(items, vec![1]);
}

#[test]
fn scope_restores_after_panic() {
    let _s = serial();
    let r = catch_unwind(|| {
        execution_options!(max_workers = 2, use_parallel = false => {
            panic!("inside the scope");
        })
    });
    assert!(r.is_err());
    assert_eq!(get_execution_options(), ExecutionOptions::default());
}

#[test]
fn set_execution_options_returns_new_globals() {
    let _s = serial();
    let g = set_execution_options!(max_workers = 3, enable_caching = true);
    assert_eq!(g.max_workers, nz(3));
    assert!(g.enable_caching);
    assert_eq!(get_execution_options(), g);
    // Merges: a second update keeps what the first set.
    let g = set_execution_options!(trace_execution = true);
    assert_eq!(g.max_workers, nz(3));
    assert!(g.trace_execution);
    // Inside a scope it still returns the global options, not the scope's.
    let g = execution_options!(use_parallel = false => set_execution_options!(timeout_seconds = 4));
    assert!(g.use_parallel);
    assert_eq!(g.timeout_seconds, Some(Duration::from_secs(4)));
    reset_execution_options();
    assert_eq!(get_execution_options(), ExecutionOptions::default());
}

#[test]
fn set_global_options_runtime_form() {
    let _s = serial();
    let patch = OptionsPatch::from_pairs([("max_workers", "6")]).unwrap();
    let _ = set_global_options(&patch);
    assert_eq!(get_execution_options().max_workers, nz(6));
    // A global update is visible from another thread at once.
    let other = thread::spawn(get_execution_options).join().unwrap();
    assert_eq!(other.max_workers, nz(6));
    reset_execution_options();
    assert_eq!(get_execution_options().max_workers, None);
}

#[test]
fn scopes_are_per_thread_and_global_updates_respect_active_scopes() {
    let _s = serial();
    // A scope never leaks into another thread.
    execution_options!(max_workers = 2, use_parallel = false => {
        let other = thread::spawn(get_execution_options).join().unwrap();
        assert_eq!(other, ExecutionOptions::default());
    });

    // Thread B holds a scope; the main thread updates the globals meanwhile.
    let (in_scope_tx, in_scope_rx) = std::sync::mpsc::channel();
    let (updated_tx, updated_rx) = std::sync::mpsc::channel::<()>();
    let b = thread::spawn(move || {
        execution_options!(max_workers = 2 => {
            in_scope_tx.send(()).unwrap();
            updated_rx.recv_timeout(Duration::from_secs(10)).unwrap();
            get_execution_options()
        })
    });
    in_scope_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    set_execution_options!(max_workers = 5, enable_caching = true);
    updated_tx.send(()).unwrap();
    let seen = b.join().unwrap();
    assert_eq!(seen.max_workers, nz(2), "the scope's own option wins");
    assert!(seen.enable_caching, "the global update is visible at once");
}

#[test]
fn non_literal_values_of_fitting_types() {
    let _s = serial();
    let n: usize = 3;
    let o = execution_options!(max_workers = n => get_execution_options());
    assert_eq!(o.max_workers, nz(3));
    let nzv = NonZeroUsize::new(4).unwrap();
    let o = execution_options!(max_workers = nzv => get_execution_options());
    assert_eq!(o.max_workers, nz(4));
    let maybe: Option<usize> = Some(5);
    let o = execution_options!(max_workers = maybe => get_execution_options());
    assert_eq!(o.max_workers, nz(5));
    let none: Option<NonZeroUsize> = None;
    let o = execution_options!(max_workers = none => get_execution_options());
    assert_eq!(o.max_workers, None);

    let flag = false;
    let o = execution_options!(use_parallel = flag, enable_caching = !flag, trace_execution = flag => {
        get_execution_options()
    });
    assert!(!o.use_parallel);
    assert!(o.enable_caching);
    assert!(!o.trace_execution);

    let secs: f64 = 0.25;
    let o = execution_options!(timeout_seconds = secs => get_execution_options());
    assert_eq!(o.timeout_seconds, Some(Duration::from_millis(250)));
    let d = Duration::from_secs(7);
    let o = execution_options!(timeout_seconds = d => get_execution_options());
    assert_eq!(o.timeout_seconds, Some(d));
    let od: Option<Duration> = None;
    let o = execution_options!(timeout_seconds = od => get_execution_options());
    assert_eq!(o.timeout_seconds, None);
    let of: Option<f64> = Some(1.0);
    let o = execution_options!(timeout_seconds = of => get_execution_options());
    assert_eq!(o.timeout_seconds, Some(Duration::from_secs(1)));

    let ds = DeviceStrategy::Cpu;
    let o = execution_options!(device_strategy = ds => get_execution_options());
    assert_eq!(o.device_strategy, DeviceStrategy::Cpu);
    let named = DeviceStrategy::named("my-accelerator");
    let o = execution_options!(device_strategy = named => get_execution_options());
    assert_eq!(o.device_strategy, named);

    let sched = execution_options!(scheduler = "sequential" => get_execution_options())
        .scheduler
        .unwrap();
    let o = execution_options!(scheduler = sched => get_execution_options());
    assert!(!o.use_parallel);
    assert!(o.scheduler.is_some());

    let g = set_execution_options!(max_workers = n, use_parallel = flag);
    assert_eq!(g.max_workers, nz(3));
    assert!(!g.use_parallel);
}

#[test]
fn invalid_runtime_values_panic_naming_the_option() {
    let _s = serial();
    let zero: usize = 0;
    let err = catch_unwind(|| execution_options!(max_workers = zero => ())).unwrap_err();
    assert!(panic_message(err).contains("max_workers"));
    assert_eq!(get_execution_options(), ExecutionOptions::default());

    let negative: f64 = -1.0;
    let err = catch_unwind(|| execution_options!(timeout_seconds = negative => ())).unwrap_err();
    assert!(panic_message(err).contains("timeout_seconds"));

    let zero_secs: f64 = 0.0;
    let err = catch_unwind(|| set_execution_options!(timeout_seconds = zero_secs)).unwrap_err();
    assert!(panic_message(err).contains("timeout_seconds"));
    assert_eq!(get_execution_options(), ExecutionOptions::default());

    let on = true;
    let sched = execution_options!(scheduler = "sequential" => get_execution_options())
        .scheduler
        .unwrap();
    let err = catch_unwind(|| execution_options!(scheduler = sched, use_parallel = on => ()))
        .unwrap_err();
    let msg = panic_message(err);
    assert!(
        msg.contains("scheduler") || msg.contains("use_parallel"),
        "{msg:?}"
    );
}

// ---------------------------------------------------------------------------------------------------
// §4 Operators
// ---------------------------------------------------------------------------------------------------

#[test]
fn operator_macro_keeps_function_and_adds_struct_and_inputs() {
    let _s = serial();
    assert_eq!(generate("hi".to_string(), 3), "hi-3");
    let g = Generate;
    assert_eq!(g.name(), "generate");
    let out = g
        .call(GenerateInputs {
            prompt: "p".to_string(),
            seed: 9,
        })
        .unwrap();
    assert_eq!(out, "p-9");
    let out = g
        .forward(GenerateInputs {
            prompt: "q".to_string(),
            seed: 1,
        })
        .unwrap();
    assert_eq!(out, "q-1");

    fn assert_types<O: Operator<Input = GenerateInputs, Output = String>>(_: &O) {}
    assert_types(&g);

    // `name = "…"` overrides the struct's name.
    assert_eq!(original_name(1), 2);
    assert_eq!(Renamed.call(RenamedInputs { x: 1 }).unwrap(), 2);

    // Visibility: a `pub fn` in a module gives public generated items.
    assert_eq!(ops::shout("abc".to_string()), "ABC");
    let out = ops::Shout
        .call(ops::ShoutInputs {
            text: "x".to_string(),
        })
        .unwrap();
    assert_eq!(out, "X");
    assert_eq!(ops::Shout.name(), "shout");
}

#[test]
fn inputs_batch_broadcast_and_batched() {
    let _s = serial();
    let items = GenerateInputs::batch(vec!["a".to_string(), "b".to_string()], 7u64).unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].prompt, "a");
    assert_eq!(items[1].prompt, "b");
    assert!(items.iter().all(|i| i.seed == 7));

    let items = GenerateInputs::batch("same".to_string(), vec![1u64, 2, 3]).unwrap();
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|i| i.prompt == "same"));
    assert_eq!(
        items.iter().map(|i| i.seed).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );

    let items =
        GenerateInputs::batch(vec!["x".to_string(), "y".to_string()], vec![1u64, 2]).unwrap();
    assert_eq!(items[1].prompt, "y");
    assert_eq!(items[1].seed, 2);

    // No batched argument: one item.
    let items = GenerateInputs::batch("one".to_string(), 1u64).unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].prompt, "one");

    // An empty batched argument: an empty batch.
    let items = GenerateInputs::batch(Vec::<String>::new(), 1u64).unwrap();
    assert!(items.is_empty());

    // Explicit `Axis` values work too.
    let a: Axis<String> = vec!["m".to_string()].into();
    let b: Axis<u64> = 5u64.into();
    let items = GenerateInputs::batch(a, b).unwrap();
    assert_eq!(items.len(), 1);

    // And the batch feeds `vmap`, in order.
    let items = GenerateInputs::batch(
        vec!["a".to_string(), "b".to_string(), "c".to_string()],
        0u64,
    )
    .unwrap();
    assert_eq!(
        vmap(Generate).call(items).unwrap(),
        vec!["a-0", "b-0", "c-0"]
    );
}

#[test]
fn inputs_batch_size_mismatch() {
    let _s = serial();
    let err = GenerateInputs::batch(vec!["a".to_string(), "b".to_string()], vec![1u64, 2, 3])
        .expect_err("mismatch");
    assert!(matches!(err, XcsError::BatchSizeMismatch { .. }), "{err:?}");
    assert_lowercase_led(&err);
    // An empty batched argument against a non-empty one is a mismatch as well.
    let err = GenerateInputs::batch(Vec::<String>::new(), vec![1u64]).expect_err("mismatch");
    assert!(matches!(err, XcsError::BatchSizeMismatch { .. }), "{err:?}");
}

#[test]
fn fallible_operator_maps_error_to_operator_variant() {
    let _s = serial();
    assert_eq!(
        ParseNum
            .call(ParseNumInputs {
                text: "41".to_string()
            })
            .unwrap(),
        41i64
    );
    let err = ParseNum
        .call(ParseNumInputs {
            text: "nope".to_string(),
        })
        .unwrap_err();
    assert!(matches!(err, XcsError::Operator { .. }), "{err:?}");
    assert!(err.to_string().contains("parse_num"), "{err}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the source is carried"
    );
    assert_lowercase_led(&err);

    // The function itself keeps its own signature.
    assert!(parse_num("x".to_string()).is_err());

    // Aliases such as `io::Result<T>`.
    assert_eq!(IoFallible.call(IoFallibleInputs { x: 2 }).unwrap(), 4u32);
    let err = IoFallible.call(IoFallibleInputs { x: 0 }).unwrap_err();
    assert!(matches!(err, XcsError::Operator { .. }), "{err:?}");
    let source = std::error::Error::source(&err).expect("source");
    assert!(source.to_string().contains("zero is not allowed"));

    // A boxed error.
    assert_eq!(
        BoxedFallible.call(BoxedFallibleInputs { x: 3 }).unwrap(),
        3u32
    );
    let err = BoxedFallible
        .call(BoxedFallibleInputs { x: 0 })
        .unwrap_err();
    assert!(matches!(err, XcsError::Operator { .. }), "{err:?}");
}

#[test]
fn operator_impls_for_arc_and_static_ref() {
    let _s = serial();
    fn run<O: Operator<Input = u64, Output = u64>>(o: O, x: u64) -> u64 {
        o.call(x).unwrap()
    }
    assert_eq!(run(Arc::new(Double), 2), 4);
    assert_eq!(run(&DOUBLE, 3), 6);
    assert_eq!(Arc::new(Double).name(), "double");
    assert_eq!(vmap(Arc::new(Double)).call(vec![1, 2]).unwrap(), vec![2, 4]);
    assert_eq!(vmap(&DOUBLE).call(vec![5]).unwrap(), vec![10]);
    assert_eq!(pmap(&DOUBLE, 2).call(vec![1, 2, 3]).unwrap(), vec![2, 4, 6]);
    fn is_operator<O: Operator>() {}
    is_operator::<Arc<Double>>();
    is_operator::<&'static Double>();
    is_operator::<xcs::VMap<Double>>();
    is_operator::<xcs::PMap<Double>>();
}

// ---------------------------------------------------------------------------------------------------
// §5 Executors: vmap / pmap
// ---------------------------------------------------------------------------------------------------

#[test]
fn vmap_and_pmap_keep_order_and_nest() {
    let _s = serial();
    let slow_first = op("slow_first", |x: u64| {
        thread::sleep(Duration::from_millis(if x < 3 { 30 } else { 0 }));
        x * 10
    });
    let slow_first = Arc::new(slow_first);
    let inputs: Vec<u64> = (0..12).collect();
    let expected: Vec<u64> = inputs.iter().map(|x| x * 10).collect();
    assert_eq!(
        vmap(slow_first.clone()).call(inputs.clone()).unwrap(),
        expected
    );
    assert_eq!(
        pmap(slow_first.clone(), 3).call(inputs.clone()).unwrap(),
        expected
    );
    assert_eq!(
        pmap(slow_first.clone(), 0).call(inputs.clone()).unwrap(),
        expected
    );
    execution_options!(use_parallel = false => {
        assert_eq!(vmap(slow_first.clone()).call(inputs.clone()).unwrap(), expected);
    });

    let nested = vmap(vmap(Double));
    assert_eq!(
        nested.call(vec![vec![1, 2], vec![], vec![3]]).unwrap(),
        vec![vec![2, 4], vec![], vec![6]]
    );
    let nested = pmap(vmap(Double), 2);
    assert_eq!(
        nested.call(vec![vec![1], vec![2, 3]]).unwrap(),
        vec![vec![2], vec![4, 6]]
    );
    assert_eq!(vmap(Double).call(vec![]).unwrap(), Vec::<u64>::new());
}

#[test]
fn vmap_runs_in_parallel_on_at_most_max_workers() {
    let _s = serial();
    let rv = Arc::new(Rendezvous::new(2, Duration::from_secs(2)));
    let threads = Arc::new(Mutex::new(HashSet::<ThreadId>::new()));
    let (rv2, th2) = (rv.clone(), threads.clone());
    let item = op("meet2", move |_: u64| {
        lock(&th2).insert(thread::current().id());
        let met = rv2.meet();
        thread::sleep(Duration::from_millis(10));
        met
    });
    let out = execution_options!(max_workers = 2 => vmap(item).call((0..8).collect()).unwrap());
    assert!(out[0] && out[1], "two items ran at once: {out:?}");
    assert_eq!(
        rv.max_inside(),
        2,
        "never more than max_workers items at once"
    );
    assert!(
        lock(&threads).len() <= 2,
        "at most max_workers worker threads"
    );
}

#[test]
fn vmap_sequential_on_caller_thread_when_not_parallel_or_single_item() {
    let _s = serial();
    let caller = thread::current().id();
    let where_ = op("where", |_: u64| thread::current().id());
    let where_ = Arc::new(where_);
    let ids = execution_options!(use_parallel = false => vmap(where_.clone()).call((0..6).collect()).unwrap());
    assert!(
        ids.iter().all(|id| *id == caller),
        "use_parallel = false runs on the caller's thread"
    );
    let ids = vmap(where_.clone()).call(vec![1]).unwrap();
    assert_eq!(
        ids,
        vec![caller],
        "a one-item batch runs on the caller's thread"
    );
    let ids = execution_options!(use_parallel = false => pmap(where_.clone(), 3).call((0..6).collect()).unwrap());
    assert!(
        ids.iter().all(|id| *id == caller),
        "pmap with use_parallel = false is sequential"
    );
    // Sequential means one item at a time.
    let active = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let (a2, m2) = (active.clone(), max.clone());
    let counting = op("counting", move |_: u64| {
        let now = a2.fetch_add(1, Ordering::SeqCst) + 1;
        m2.fetch_max(now, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(5));
        a2.fetch_sub(1, Ordering::SeqCst);
    });
    execution_options!(use_parallel = false => pmap(counting, 4).call((0..8).collect()).unwrap());
    assert_eq!(max.load(Ordering::SeqCst), 1);
}

#[test]
fn pmap_uses_exactly_num_workers_ignoring_max_workers() {
    let _s = serial();
    let rv = Arc::new(Rendezvous::new(3, Duration::from_secs(2)));
    let threads = Arc::new(Mutex::new(HashSet::<ThreadId>::new()));
    let (rv2, th2) = (rv.clone(), threads.clone());
    let item = op("meet3", move |_: u64| {
        lock(&th2).insert(thread::current().id());
        let met = rv2.meet();
        thread::sleep(Duration::from_millis(10));
        met
    });
    let out = execution_options!(max_workers = 1 => pmap(item, 3).call((0..9).collect()).unwrap());
    assert!(
        out[0] && out[1] && out[2],
        "three items ran at once: {out:?}"
    );
    assert_eq!(rv.max_inside(), 3, "never more than num_workers at once");
    assert!(
        lock(&threads).len() <= 3,
        "exactly num_workers worker threads"
    );
}

#[test]
fn vmap_compute_pools_are_reused() {
    let _s = serial();
    let threads = Arc::new(Mutex::new(HashSet::<ThreadId>::new()));
    let th2 = threads.clone();
    let item = Arc::new(op("record_thread_vmap", move |_: u64| {
        lock(&th2).insert(thread::current().id());
        thread::sleep(Duration::from_millis(5));
    }));
    for _ in 0..20 {
        execution_options!(max_workers = 3 => vmap(item.clone()).call((0..12).collect()).unwrap());
    }
    let n = lock(&threads).len();
    assert!(
        n <= 3,
        "vmap calls with max_workers = 3 share one pool of 3 workers, saw {n} threads"
    );
}

/// Spec §5: "Worker pools are created once per worker count and reused; no call builds a thread
/// pool." `pmap` runs on reusable spare threads; each puts itself back on the idle list before its
/// caller hears it is done, so back-to-back calls run on the same 5 threads. (Before that fix,
/// a call that followed at once could find no idle thread and start new ones.)
#[test]
fn pmap_calls_reuse_their_workers() {
    let _s = serial();
    let threads = Arc::new(Mutex::new(HashSet::<ThreadId>::new()));
    let th2 = threads.clone();
    let item = Arc::new(op("record_thread_pmap", move |_: u64| {
        lock(&th2).insert(thread::current().id());
        thread::sleep(Duration::from_millis(2));
    }));
    for _ in 0..50 {
        pmap(item.clone(), 5).call((0..20).collect()).unwrap();
    }
    let n = lock(&threads).len();
    assert!(
        n <= 5,
        "pmap(…, 5) calls share one pool of 5 workers, saw {n} threads"
    );
}

#[test]
fn items_see_the_callers_effective_options() {
    let _s = serial();
    let out = execution_options!(max_workers = 3, enable_caching = true => {
        vmap(ProbeOptions).call(ProbeOptionsInputs::batch(vec![1u64, 2, 3, 4]).unwrap()).unwrap()
    });
    assert_eq!(out.len(), 4);
    for (_, mw, par, cache) in &out {
        assert_eq!(*mw, nz(3));
        assert!(*par);
        assert!(*cache);
    }
    // A nested operator call inside a batch item sees the outer scope, through pmap too.
    let out = execution_options!(max_workers = 7, enable_caching = true => {
        // Fresh inputs: the ones above are cached now (with the options they saw then).
        pmap(NestedProbe, 2).call((11..=14).map(|x| NestedProbeInputs { x }).collect()).unwrap()
    });
    for (_, mw, _, cache) in &out {
        assert_eq!(*mw, nz(7));
        assert!(*cache);
    }
    let out = execution_options!(max_workers = 5 => {
        vmap(vmap(ProbeOptions)).call(vec![vec![ProbeOptionsInputs { x: 1 }, ProbeOptionsInputs { x: 2 }], vec![
            ProbeOptionsInputs { x: 3 },
        ]])
        .unwrap()
    });
    assert!(out.iter().flatten().all(|(_, mw, _, _)| *mw == nz(5)));
}

#[test]
fn error_of_lowest_index_failing_item() {
    let _s = serial();
    // Item 5 fails at once; item 2 fails later: the call reports item 2.
    let inputs: Vec<FailOnInputs> = [1u64, 2, 20, 4, 5, 50, 7, 8]
        .iter()
        .map(|&x| FailOnInputs { x })
        .collect();
    let err = execution_options!(max_workers = 8 => vmap(FailOn).call(inputs)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("twenty") || format!("{err:?}").contains("twenty"),
        "{msg}"
    );
    assert!(msg.contains('2'), "the item index is in the message: {msg}");
    assert!(matches!(err, XcsError::Operator { .. }), "{err:?}");
    assert_lowercase_led(&err);

    let inputs: Vec<FailOnInputs> = [1u64, 2, 20, 4, 5, 50]
        .iter()
        .map(|&x| FailOnInputs { x })
        .collect();
    let err = pmap(FailOn, 6).call(inputs).unwrap_err();
    assert!(err.to_string().contains('2'), "{err}");
    assert!(format!("{err}{err:?}").contains("twenty"), "{err:?}");
}

#[test]
fn items_not_started_after_a_failure_are_not_started() {
    let _s = serial();
    FAIL_ON_RUNS.store(0, Ordering::SeqCst);
    let inputs: Vec<FailOnInputs> = [1u64, 50, 3, 4, 5]
        .iter()
        .map(|&x| FailOnInputs { x })
        .collect();
    let err = execution_options!(use_parallel = false => vmap(FailOn).call(inputs)).unwrap_err();
    assert!(matches!(err, XcsError::Operator { .. }));
    assert_eq!(
        FAIL_ON_RUNS.load(Ordering::SeqCst),
        2,
        "items after the failing one never ran"
    );
}

#[test]
fn panics_become_panicked_and_runtime_stays_usable() {
    let _s = serial();
    let boom = Arc::new(op("boom", |x: u64| {
        if x == 2 {
            panic!("kaboom in item");
        }
        x
    }));
    let r = catch_unwind(AssertUnwindSafe(|| vmap(boom.clone()).call(vec![1, 2, 3])));
    let err = r
        .expect("a panic never unwinds through the caller")
        .unwrap_err();
    assert!(matches!(err, XcsError::Panicked { .. }), "{err:?}");
    assert!(err.to_string().contains("kaboom in item"), "{err}");
    assert_lowercase_led(&err);

    let r = catch_unwind(AssertUnwindSafe(|| pmap(boom.clone(), 2).call(vec![2, 1])));
    let err = r.expect("no unwinding").unwrap_err();
    assert!(matches!(err, XcsError::Panicked { .. }), "{err:?}");

    let r = catch_unwind(AssertUnwindSafe(
        || execution_options!(use_parallel = false => vmap(boom.clone()).call(vec![1, 2])),
    ));
    let err = r.expect("no unwinding when sequential").unwrap_err();
    assert!(matches!(err, XcsError::Panicked { .. }), "{err:?}");

    // Still usable.
    assert_eq!(
        vmap(boom.clone()).call(vec![1, 3, 4]).unwrap(),
        vec![1, 3, 4]
    );
    assert_eq!(pmap(boom.clone(), 2).call(vec![5, 6]).unwrap(), vec![5, 6]);
    assert_eq!(get_execution_options(), ExecutionOptions::default());
}

#[test]
fn call_settled_returns_every_outcome() {
    let _s = serial();
    let inputs = || {
        [1u64, 20, 3, 50]
            .iter()
            .map(|&x| FailOnInputs { x })
            .collect::<Vec<_>>()
    };
    for results in [
        vmap(FailOn).call_settled(inputs()),
        pmap(FailOn, 2).call_settled(inputs()),
    ] {
        assert_eq!(results.len(), 4);
        assert_eq!(results[0].as_ref().unwrap(), &1);
        assert!(matches!(results[1], Err(XcsError::Operator { .. })));
        assert_eq!(results[2].as_ref().unwrap(), &3);
        assert!(matches!(results[3], Err(XcsError::Operator { .. })));
    }
    let boom = op("boom_settled", |x: u64| {
        if x == 1 {
            panic!("settled panic");
        }
        x
    });
    let results = vmap(boom).call_settled(vec![0, 1, 2]);
    assert!(results[0].is_ok() && results[2].is_ok());
    assert!(matches!(results[1], Err(XcsError::Panicked { .. })));
}

// ---------------------------------------------------------------------------------------------------
// §5 Timeouts
// ---------------------------------------------------------------------------------------------------

#[test]
fn vmap_timeout_returns_promptly_while_an_item_hangs() {
    let _s = serial();
    let (hop, gate, _started, finished) = hang_op(Some(3));
    let start = Instant::now();
    let res = execution_options!(timeout_seconds = 0.3 => vmap(hop).call(vec![1, 2, 3, 4]));
    let hung = finished.load(Ordering::SeqCst) < 4;
    let elapsed = start.elapsed();
    gate.release();
    let err = res.unwrap_err();
    assert!(matches!(err, XcsError::Timeout { .. }), "{err:?}");
    assert!(hung, "the call returned while the item was still blocked");
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    assert_lowercase_led(&err);
}

#[test]
fn pmap_timeout_and_later_call_gets_full_worker_count() {
    let _s = serial();
    let (hop, gate, started, finished) = hang_op(None);
    let res = execution_options!(timeout_seconds = 0.3 => pmap(hop, 2).call(vec![1, 2]));
    assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    assert_eq!(finished.load(Ordering::SeqCst), 0, "both items still hang");

    // Both workers of the 2-pool are blocked, yet a later 2-worker call gets two workers.
    let rv = Arc::new(Rendezvous::new(2, Duration::from_secs(5)));
    let rv2 = rv.clone();
    let meet = op("meet_after_timeout", move |_: u64| rv2.meet());
    let out = pmap(meet, 2).call(vec![0, 1]).unwrap();
    let still_hung = finished.load(Ordering::SeqCst) == 0;
    gate.release();
    assert!(still_hung);
    assert_eq!(
        out,
        vec![true, true],
        "the later call had its full worker count"
    );
    assert!(wait_until(
        || finished.load(Ordering::SeqCst) == started.load(Ordering::SeqCst)
    ));
}

#[test]
fn timeout_items_not_started_are_never_started() {
    let _s = serial();
    let (hop, gate, started, finished) = hang_op(Some(1));
    let res = execution_options!(use_parallel = false, timeout_seconds = 0.3 => {
        vmap(hop).call(vec![1, 2, 3])
    });
    let hung = finished.load(Ordering::SeqCst) == 0;
    gate.release();
    assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    assert!(hung, "returned while item 0 hung");
    assert!(wait_until(|| finished.load(Ordering::SeqCst) >= 1));
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "items after the deadline never start"
    );
}

#[test]
fn operator_call_timeout_generated_arc_and_static_ref() {
    let _s = serial();
    // A generated operator.
    GEN_GATE.reset();
    GEN_HANG_DONE.store(false, Ordering::SeqCst);
    let res = execution_options!(timeout_seconds = 0.2 => HangGen.call(HangGenInputs { x: 1 }));
    let hung = !GEN_HANG_DONE.load(Ordering::SeqCst);
    GEN_GATE.release();
    assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    assert!(
        hung,
        "generated operator: returned at the deadline while forward hung"
    );
    assert!(wait_until(|| GEN_HANG_DONE.load(Ordering::SeqCst)));

    // An `Arc<O>` of a hand-written operator (called through the `Arc<HangOp>` impl).
    let (hop, gate, _, finished2) = hang_op(None);
    let arc = Arc::new(hop);
    let res = execution_options!(timeout_seconds = 0.2 => <Arc<HangOp> as Operator>::call(&arc, 1));
    let hung = finished2.load(Ordering::SeqCst) == 0;
    gate.release();
    assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    assert!(hung, "Arc<O>: returned at the deadline while forward hung");
    assert!(wait_until(|| finished2.load(Ordering::SeqCst) == 1));

    // A `&'static O`.
    let (hop, gate, _, finished) = hang_op(None);
    let leaked: &'static HangOp = Box::leak(Box::new(hop));
    let res = execution_options!(timeout_seconds = 0.2 => <&'static HangOp as Operator>::call(&leaked, 1));
    let hung = finished.load(Ordering::SeqCst) == 0;
    gate.release();
    assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    assert!(
        hung,
        "&'static O: returned at the deadline while forward hung"
    );
    assert!(wait_until(|| finished.load(Ordering::SeqCst) == 1));
}

#[test]
fn borrowed_hand_written_operator_returns_timeout_when_forward_finishes_late() {
    let _s = serial();
    let (hop, gate, _, finished) = hang_op(None);
    let releaser = {
        let gate = gate.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(500));
            gate.release();
        })
    };
    let res = execution_options!(timeout_seconds = 0.1 => hop.call(1));
    releaser.join().unwrap();
    assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    assert_eq!(finished.load(Ordering::SeqCst), 1);
}

#[test]
fn borrowed_hand_written_operator_cooperates_through_cancelled() {
    let _s = serial();
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let saw = saw_cancel.clone();
    let coop = op("cooperative", move |_: u64| {
        let start = Instant::now();
        while !xcs::cancelled() && start.elapsed() < Duration::from_secs(10) {
            thread::sleep(Duration::from_millis(5));
        }
        saw.store(xcs::cancelled(), Ordering::SeqCst);
        1u64
    });
    assert!(!xcs::cancelled());
    let res = execution_options!(timeout_seconds = 0.2 => coop.call(0));
    assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    assert!(
        saw_cancel.load(Ordering::SeqCst),
        "the body saw cancelled() become true"
    );
}

#[test]
fn borrowed_hand_written_operator_refuses_to_start_after_the_shared_deadline() {
    let _s = serial();
    INNER_RAN.store(false, Ordering::SeqCst);
    OUTER_DONE.store(false, Ordering::SeqCst);
    *lock(&OUTER_INNER_RESULT) = None;
    let res =
        execution_options!(timeout_seconds = 0.1 => SleepyOuter.call(SleepyOuterInputs { x: 1 }));
    let returned_early = !OUTER_DONE.load(Ordering::SeqCst);
    assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    assert!(
        returned_early,
        "the generated operator's call returned at the deadline"
    );
    assert!(wait_until(|| OUTER_DONE.load(Ordering::SeqCst)));
    assert!(
        !INNER_RAN.load(Ordering::SeqCst),
        "the nested borrowed call refused to start after the deadline"
    );
    assert_eq!(lock(&OUTER_INNER_RESULT).as_deref(), Some("timeout"));
}

#[test]
fn deadline_and_cancelled_and_nested_calls_share_the_outer_deadline() {
    let _s = serial();
    let no_deadline = op("no_deadline", |_: u64| (xcs::deadline(), xcs::cancelled()));
    assert_eq!(no_deadline.call(0).unwrap(), (None, false));

    let inner = Arc::new(op("inner_deadline", |_: u64| xcs::deadline()));
    let outer = op("outer_deadline", move |_: u64| {
        let mine = xcs::deadline();
        thread::sleep(Duration::from_millis(20));
        let nested = inner.call(0).unwrap();
        (mine, nested, xcs::cancelled())
    });
    let outer = Arc::new(outer);
    let before = Instant::now();
    let out =
        execution_options!(timeout_seconds = 5 => vmap(outer.clone()).call(vec![0, 1, 2]).unwrap());
    let first = out[0].0.expect("a deadline is in force inside the call");
    assert!(first > before && first <= before + Duration::from_secs(6));
    for (mine, nested, cancelled) in &out {
        assert_eq!(*mine, Some(first), "all items share the call's deadline");
        assert_eq!(
            *nested,
            Some(first),
            "a nested call shares the outer deadline"
        );
        assert!(!cancelled);
    }
    // Same through `Operator::call` directly.
    let (mine, nested, _) = execution_options!(timeout_seconds = 5 => outer.call(0).unwrap());
    assert!(mine.is_some());
    assert_eq!(mine, nested);
}

// ---------------------------------------------------------------------------------------------------
// §5 Caching
// ---------------------------------------------------------------------------------------------------

#[test]
fn caching_returns_stored_output_and_counts() {
    let _s = serial();
    xcs::clear_cache();
    assert_eq!(xcs::cache_stats().entries, 0);
    SQUARE_RUNS.store(0, Ordering::SeqCst);
    let before = xcs::cache_stats();
    let CacheStats {
        hits: h0,
        misses: m0,
        ..
    } = before;
    execution_options!(enable_caching = true => {
        assert_eq!(CachedSquare.call(CachedSquareInputs { x: 3 }).unwrap(), 9);
        assert_eq!(CachedSquare.call(CachedSquareInputs { x: 3 }).unwrap(), 9);
        assert_eq!(CachedSquare.call(CachedSquareInputs { x: 4 }).unwrap(), 16);
    });
    assert_eq!(
        SQUARE_RUNS.load(Ordering::SeqCst),
        2,
        "the repeated input did not run forward"
    );
    let CacheStats {
        hits,
        misses,
        entries,
        ..
    } = xcs::cache_stats();
    assert_eq!(hits - h0, 1);
    assert_eq!(misses - m0, 2);
    assert_eq!(entries, 2);

    // Caching off: forward runs every time.
    CachedSquare.call(CachedSquareInputs { x: 3 }).unwrap();
    assert_eq!(SQUARE_RUNS.load(Ordering::SeqCst), 3);

    // clear_cache empties it.
    xcs::clear_cache();
    assert_eq!(xcs::cache_stats().entries, 0);
    execution_options!(enable_caching = true => CachedSquare.call(CachedSquareInputs { x: 3 }).unwrap());
    assert_eq!(SQUARE_RUNS.load(Ordering::SeqCst), 4);
}

#[test]
fn caching_keeps_operators_apart_and_handles_multi_argument_inputs() {
    let _s = serial();
    SQUARE_RUNS.store(0, Ordering::SeqCst);
    CUBE_RUNS.store(0, Ordering::SeqCst);
    CONCAT_RUNS.store(0, Ordering::SeqCst);
    execution_options!(enable_caching = true => {
        assert_eq!(CachedSquare.call(CachedSquareInputs { x: 2 }).unwrap(), 4);
        assert_eq!(CachedCube.call(CachedCubeInputs { x: 2 }).unwrap(), 8);
        assert_eq!(CachedCube.call(CachedCubeInputs { x: 2 }).unwrap(), 8);
        let i = || CachedConcatInputs { prompt: "a".to_string(), seed: 1 };
        assert_eq!(CachedConcat.call(i()).unwrap(), "a1");
        assert_eq!(CachedConcat.call(i()).unwrap(), "a1");
    });
    assert_eq!(SQUARE_RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(CUBE_RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(CONCAT_RUNS.load(Ordering::SeqCst), 1);
}

#[test]
fn caching_hand_written_operator_with_hashable_input() {
    let _s = serial();
    let runs = Arc::new(AtomicUsize::new(0));
    let r2 = runs.clone();
    let counted = op("counted_hand_written", move |x: u64| {
        r2.fetch_add(1, Ordering::SeqCst);
        x + 1
    });
    execution_options!(enable_caching = true => {
        assert_eq!(counted.call(5).unwrap(), 6);
        assert_eq!(counted.call(5).unwrap(), 6);
    });
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "u64 is Hash + Eq and u64 is Clone"
    );
}

#[test]
fn errors_are_not_cached_and_unhashable_inputs_run_uncached() {
    let _s = serial();
    FLAKY_RUNS.store(0, Ordering::SeqCst);
    FLOAT_RUNS.store(0, Ordering::SeqCst);
    execution_options!(enable_caching = true => {
        assert!(AlwaysFails.call(AlwaysFailsInputs { x: 1 }).is_err());
        assert!(AlwaysFails.call(AlwaysFailsInputs { x: 1 }).is_err());
        assert_eq!(SumFloats.call(SumFloatsInputs { xs: vec![1.0, 2.0] }).unwrap(), 3.0);
        assert_eq!(SumFloats.call(SumFloatsInputs { xs: vec![1.0, 2.0] }).unwrap(), 3.0);
    });
    assert_eq!(
        FLAKY_RUNS.load(Ordering::SeqCst),
        2,
        "errors are not cached"
    );
    assert_eq!(
        FLOAT_RUNS.load(Ordering::SeqCst),
        2,
        "unhashable input runs uncached"
    );
}

// ---------------------------------------------------------------------------------------------------
// §5 Tracing
// ---------------------------------------------------------------------------------------------------

#[test]
fn trace_records_calls_and_items() {
    let _s = serial();
    let _ = xcs::take_trace();
    execution_options!(trace_execution = true => {
        TracedOp.call(TracedOpInputs { x: 1 }).unwrap();
        vmap(TracedOp).call((0..3).map(|x| TracedOpInputs { x }).collect()).unwrap();
    });
    let trace: Trace = xcs::take_trace();
    assert!(
        trace.events().len() >= 4,
        "one call + three items: {}",
        trace.events().len()
    );
    assert!(format!("{:?}", trace.events()).contains("traced_op"));
    let summary = trace.summary();
    assert!(format!("{summary:?}").contains("traced_op"));

    let chrome = trace.to_chrome_json();
    let value: serde_json::Value = serde_json::from_str(&chrome.to_string()).expect("valid JSON");
    let events = value
        .as_array()
        .or_else(|| value.get("traceEvents").and_then(|v| v.as_array()))
        .expect("Chrome trace-event format: an array or {\"traceEvents\": [...]}");
    assert!(events.len() >= 4);
    assert!(
        events
            .iter()
            .all(|e| e.get("ph").is_some() && e.get("name").is_some())
    );
    assert!(chrome.to_string().contains("traced_op"));

    // Taken: the buffer is now empty.
    assert!(xcs::take_trace().events().is_empty());
}

#[test]
fn trace_off_records_nothing() {
    let _s = serial();
    let _ = xcs::take_trace();
    TracedOp.call(TracedOpInputs { x: 1 }).unwrap();
    vmap(TracedOp)
        .call((0..3).map(|x| TracedOpInputs { x }).collect())
        .unwrap();
    assert!(xcs::take_trace().events().is_empty());
}

#[test]
fn trace_outcomes_include_error_timeout_and_cache_hit() {
    let _s = serial();
    let _ = xcs::take_trace();
    execution_options!(trace_execution = true, enable_caching = true => {
        CachedSquare.call(CachedSquareInputs { x: 11 }).unwrap();
        CachedSquare.call(CachedSquareInputs { x: 11 }).unwrap();
        let _ = AlwaysFails.call(AlwaysFailsInputs { x: 1 });
    });
    let (hop, gate, _, _) = hang_op(None);
    let res =
        execution_options!(trace_execution = true, timeout_seconds = 0.1 => Arc::new(hop).call(1));
    gate.release();
    assert!(res.is_err());
    let trace = xcs::take_trace();
    let dbg = format!("{:?}", trace.events()).to_lowercase();
    assert!(dbg.contains("cache"), "cache hit outcome: {dbg}");
    assert!(dbg.contains("err"), "error outcome: {dbg}");
    assert!(
        dbg.contains("timeout") || dbg.contains("timed"),
        "timeout outcome: {dbg}"
    );
    assert!(dbg.contains("ok"), "ok outcome: {dbg}");
}

mod span_recorder {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    pub struct Recorder {
        pub spans: Arc<Mutex<Vec<(String, String)>>>,
        pub next: AtomicU64,
    }

    impl Subscriber for Recorder {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, attrs: &Attributes<'_>) -> Id {
            let m = attrs.metadata();
            super::lock(&self.spans).push((m.target().to_string(), m.name().to_string()));
            Id::from_u64(self.next.fetch_add(1, Ordering::SeqCst) + 1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
}

#[test]
fn trace_emits_tracing_spans_with_target_xcs() {
    let _s = serial();
    let spans = Arc::new(Mutex::new(Vec::new()));
    let recorder = span_recorder::Recorder {
        spans: spans.clone(),
        next: AtomicU64::new(0),
    };
    tracing::subscriber::with_default(recorder, || {
        execution_options!(trace_execution = true => TracedOp.call(TracedOpInputs { x: 1 }).unwrap());
    });
    let spans = lock(&spans).clone();
    assert!(
        spans
            .iter()
            .any(|(target, _)| target == "xcs" || target.starts_with("xcs")),
        "spans: {spans:?}"
    );
    let _ = xcs::take_trace();
}

// ---------------------------------------------------------------------------------------------------
// §5 Devices
// ---------------------------------------------------------------------------------------------------

#[test]
fn device_auto_and_cpu_use_the_builtin_backend() {
    let _s = serial();
    for ds in [DeviceStrategy::Auto, DeviceStrategy::Cpu] {
        let out =
            execution_options!(device_strategy = ds => vmap(Double).call(vec![1, 2, 3]).unwrap());
        assert_eq!(out, vec![2, 4, 6]);
        let out = execution_options!(device_strategy = ds => pmap(Double, 2).call(vec![1, 2, 3]).unwrap());
        assert_eq!(out, vec![2, 4, 6]);
    }
}

#[test]
fn device_unavailable_without_registered_backend() {
    let _s = serial();
    let err =
        execution_options!(device_strategy = "gpu" => vmap(Double).call(vec![1, 2])).unwrap_err();
    assert!(matches!(err, XcsError::DeviceUnavailable { .. }), "{err:?}");
    assert!(err.to_string().to_lowercase().contains("gpu"), "{err}");
    assert_lowercase_led(&err);

    let err = execution_options!(device_strategy = "gpu" => pmap(Double, 2).call(vec![1, 2]))
        .unwrap_err();
    assert!(matches!(err, XcsError::DeviceUnavailable { .. }), "{err:?}");

    let strategy = DeviceStrategy::named("no-such-backend-xyz");
    let err = execution_options!(device_strategy = strategy => vmap(Double).call(vec![1, 2]))
        .unwrap_err();
    assert!(matches!(err, XcsError::DeviceUnavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-backend-xyz"), "{err}");

    let patch = OptionsPatch::from_pairs([("device_strategy", "gpu")]).unwrap();
    let err = with_options(&patch, || vmap(Double).call(vec![1])).unwrap_err();
    assert!(matches!(err, XcsError::DeviceUnavailable { .. }), "{err:?}");
}

// ---------------------------------------------------------------------------------------------------
// §6 Errors
// ---------------------------------------------------------------------------------------------------

#[test]
fn xcs_error_is_a_std_error_with_struct_variants() {
    let _s = serial();
    fn is_error<E: std::error::Error + Send + Sync + 'static>() {}
    is_error::<XcsError>();
    let err = OptionsPatch::from_pairs([("max_workers", "x")]).unwrap_err();
    let described = match &err {
        XcsError::InvalidOption { .. } => "invalid option",
        XcsError::InvalidValue { .. } => "invalid value",
        XcsError::BatchSizeMismatch { .. } => "batch size mismatch",
        XcsError::Operator { .. } => "operator",
        XcsError::Panicked { .. } => "panicked",
        XcsError::Timeout { .. } => "timeout",
        XcsError::DeviceUnavailable { .. } => "device unavailable",
        _ => "other",
    };
    assert_eq!(described, "invalid value");
}

// ---------------------------------------------------------------------------------------------------
// §3 / §4 Compile-time checks (a scratch crate that depends on `xcs` alone, checked with cargo)
// ---------------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------------
// Behaviour the spec promises whose API names it leaves to the docs (written after reading the docs)
// ---------------------------------------------------------------------------------------------------

#[test]
fn trace_events_carry_name_index_thread_timing_and_outcome() {
    let _s = serial();
    let _ = xcs::take_trace();
    execution_options!(trace_execution = true, enable_caching = true => {
        TracedOp.call(TracedOpInputs { x: 10 }).unwrap();
        vmap(TracedOp).call((0..3).map(|x| TracedOpInputs { x }).collect()).unwrap();
        TracedOp.call(TracedOpInputs { x: 10 }).unwrap();
    });
    let trace = xcs::take_trace();
    let ours: Vec<&xcs::TraceEvent> = trace
        .events()
        .iter()
        .filter(|e| e.operator == "traced_op")
        .collect();
    assert_eq!(ours.len(), 5, "{ours:#?}");
    let mut indices: Vec<usize> = ours.iter().filter_map(|e| e.index).collect();
    indices.sort_unstable();
    assert_eq!(
        indices,
        vec![0, 1, 2],
        "every vmap item is recorded with its index"
    );
    assert!(ours.iter().all(|e| !e.thread.is_empty()));
    assert_eq!(
        ours.iter()
            .filter(|e| e.outcome == xcs::Outcome::CacheHit)
            .count(),
        1
    );
    let summary = trace.summary();
    let stats = summary.get("traced_op").expect("per-operator stats");
    assert_eq!(stats.count, 5);
    assert!(stats.total >= stats.max && stats.max >= stats.mean);
    assert_eq!(stats.count_of(xcs::Outcome::CacheHit), 1);
}

#[test]
fn cache_is_bounded_with_lru_eviction() {
    let _s = serial();
    xcs::clear_cache();
    let cap = xcs::DEFAULT_CACHE_CAPACITY as u64;
    assert_eq!(
        xcs::cache_stats().capacity,
        cap as usize,
        "the documented default"
    );
    SQUARE_RUNS.store(0, Ordering::SeqCst);
    execution_options!(enable_caching = true => {
        for x in 0..cap {
            CachedSquare.call(CachedSquareInputs { x }).unwrap();
        }
        CachedSquare.call(CachedSquareInputs { x: 0 }).unwrap(); // touch 0: 1 is now the LRU
        CachedSquare.call(CachedSquareInputs { x: cap }).unwrap(); // evicts 1
        assert_eq!(xcs::cache_stats().entries, cap as usize);
        let runs = SQUARE_RUNS.load(Ordering::SeqCst);
        CachedSquare.call(CachedSquareInputs { x: 0 }).unwrap();
        assert_eq!(SQUARE_RUNS.load(Ordering::SeqCst), runs, "0 was recently used: still cached");
        CachedSquare.call(CachedSquareInputs { x: 1 }).unwrap();
        assert_eq!(SQUARE_RUNS.load(Ordering::SeqCst), runs + 1, "1 was the LRU entry: evicted");
    });
    xcs::clear_cache();
}

#[test]
fn default_vmap_workers_and_pmap_zero_are_one_per_cpu() {
    let _s = serial();
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    for use_pmap in [false, true] {
        let rv = Arc::new(Rendezvous::new(cpus, Duration::from_secs(2)));
        let rv2 = rv.clone();
        let item = op("meet_cpus", move |_: u64| rv2.meet());
        let inputs: Vec<u64> = (0..(2 * cpus as u64).max(2)).collect();
        let out = if use_pmap {
            pmap(item, 0).call(inputs)
        } else {
            vmap(item).call(inputs)
        }
        .unwrap();
        assert!(
            out.iter().take(cpus).all(|m| *m),
            "pmap={use_pmap}: {out:?}"
        );
        assert_eq!(rv.max_inside(), cpus, "pmap={use_pmap}: one worker per CPU");
    }
}

#[test]
fn abandoned_vmap_items_see_cancelled() {
    let _s = serial();
    let saw = Arc::new(AtomicUsize::new(0));
    let saw2 = saw.clone();
    let coop = op("coop_items", move |_: u64| {
        let start = Instant::now();
        while !xcs::cancelled() && start.elapsed() < Duration::from_secs(10) {
            thread::sleep(Duration::from_millis(5));
        }
        if xcs::cancelled() {
            saw2.fetch_add(1, Ordering::SeqCst);
        }
    });
    let res =
        execution_options!(max_workers = 2, timeout_seconds = 0.2 => vmap(coop).call(vec![0, 1]));
    assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    assert!(
        wait_until(|| saw.load(Ordering::SeqCst) == 2),
        "both running items saw cancelled()"
    );
}

struct OwnThreads {
    batches: Arc<AtomicUsize>,
}

impl xcs::Backend for OwnThreads {
    fn run(&self, job: &xcs::BatchJob) {
        self.batches.fetch_add(1, Ordering::SeqCst);
        let runner = job.item_runner();
        let handles: Vec<_> = (0..job.len())
            .map(|i| {
                let runner = runner.clone();
                thread::spawn(move || runner(i))
            })
            .collect();
        for h in handles {
            let _ = h.join();
        }
    }
}

#[test]
fn registered_backends_run_batches_with_the_callers_options() {
    let _s = serial();
    let batches = Arc::new(AtomicUsize::new(0));
    xcs::register_backend(
        "spec-own-threads",
        OwnThreads {
            batches: batches.clone(),
        },
    )
    .unwrap();
    let strategy = DeviceStrategy::named("spec-own-threads");
    let out = execution_options!(device_strategy = strategy, max_workers = 6 => {
        vmap(ProbeOptions).call((21..=23).map(|x| ProbeOptionsInputs { x }).collect())
    });
    // While registered, the DeviceUnavailable message lists the registered backends.
    let err =
        execution_options!(device_strategy = "gpu" => vmap(Double).call(vec![1])).unwrap_err();
    let gpu = xcs::register_backend(
        "gpu",
        OwnThreads {
            batches: batches.clone(),
        },
    )
    .unwrap();
    let via_gpu =
        execution_options!(device_strategy = "gpu" => pmap(Double, 2).call(vec![1, 2, 3]));
    xcs::unregister_backend("gpu");
    xcs::unregister_backend("spec-own-threads");
    assert!(gpu.is_none());

    let out = out.unwrap();
    assert_eq!(
        out.iter().map(|t| t.0).collect::<Vec<_>>(),
        vec![21, 22, 23],
        "order kept"
    );
    assert!(
        out.iter().all(|t| t.1 == nz(6)),
        "items on the backend's threads see the caller's options"
    );
    assert!(matches!(err, XcsError::DeviceUnavailable { .. }));
    assert!(err.to_string().contains("spec-own-threads"), "{err}");
    assert_eq!(
        via_gpu.unwrap(),
        vec![2, 4, 6],
        "Gpu uses the backend registered as \"gpu\""
    );
    assert_eq!(batches.load(Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------------------------------------------
// More edge cases of §5
// ---------------------------------------------------------------------------------------------------

#[test]
fn parallel_failure_does_not_start_later_items_with_one_worker() {
    let _s = serial();
    FAIL_ON_RUNS.store(0, Ordering::SeqCst);
    let inputs: Vec<FailOnInputs> = [50u64, 2, 3, 4, 5, 6]
        .iter()
        .map(|&x| FailOnInputs { x })
        .collect();
    let err = pmap(FailOn, 1).call(inputs).unwrap_err();
    assert!(matches!(err, XcsError::Operator { .. }));
    assert!(
        err.to_string().contains('0'),
        "index 0 in the message: {err}"
    );
    assert_eq!(
        FAIL_ON_RUNS.load(Ordering::SeqCst),
        1,
        "a single worker never starts items after the failure"
    );
}

#[test]
fn pmap_timeout_with_one_worker_never_starts_the_rest() {
    let _s = serial();
    let (hop, gate, started, finished) = hang_op(Some(1));
    let res = execution_options!(timeout_seconds = 0.3 => pmap(hop, 1).call(vec![1, 2, 3]));
    let hung = finished.load(Ordering::SeqCst) == 0;
    gate.release();
    assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    assert!(hung);
    assert!(wait_until(|| finished.load(Ordering::SeqCst) >= 1));
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "items not started before the deadline never start"
    );
}

#[test]
fn vmap_timeout_then_full_worker_count_for_the_same_max_workers() {
    let _s = serial();
    let (hop, gate, _, finished) = hang_op(None);
    let res =
        execution_options!(max_workers = 2, timeout_seconds = 0.3 => vmap(hop).call(vec![1, 2]));
    assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    let rv = Arc::new(Rendezvous::new(2, Duration::from_secs(5)));
    let rv2 = rv.clone();
    let meet = op("meet_vmap_after_timeout", move |_: u64| rv2.meet());
    let out = execution_options!(max_workers = 2 => vmap(meet).call(vec![0, 1]));
    let still_hung = finished.load(Ordering::SeqCst) == 0;
    gate.release();
    assert!(still_hung);
    assert_eq!(out.unwrap(), vec![true, true]);
    assert!(wait_until(|| finished.load(Ordering::SeqCst) == 2));
}

#[test]
fn single_item_vmap_and_repeated_call_timeouts_return_promptly() {
    let _s = serial();
    let (hop, gate, _, finished) = hang_op(None);
    let hop = Arc::new(hop);
    let res = execution_options!(timeout_seconds = 0.2 => vmap(hop.clone()).call(vec![1]));
    assert!(
        matches!(res, Err(XcsError::Timeout { .. })),
        "single item: {res:?}"
    );
    // Several abandoned `call`s in a row, then a call that fits in its deadline still succeeds.
    for _ in 0..3 {
        let res = execution_options!(timeout_seconds = 0.1 => hop.call(1));
        assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    }
    let quick = execution_options!(timeout_seconds = 5 => Arc::new(Double).call(21));
    let hung = finished.load(Ordering::SeqCst) == 0;
    gate.release();
    assert!(hung);
    assert_eq!(quick.unwrap(), 42);
    assert_eq!(
        execution_options!(timeout_seconds = 5 => Double.call(4)).unwrap(),
        8
    );
    assert_eq!(
        execution_options!(timeout_seconds = 5 => Generate.call(GenerateInputs {
            prompt: "t".to_string(),
            seed: 0,
        }))
        .unwrap(),
        "t-0"
    );
    assert!(wait_until(|| finished.load(Ordering::SeqCst) == 4));
}

#[test]
fn nested_vmap_inside_an_item_shares_the_deadline() {
    let _s = serial();
    let (hop, gate, started, finished) = hang_op(Some(7));
    let hop = Arc::new(hop);
    let inner = vmap(hop.clone());
    let outer = op("outer_nesting", move |xs: Vec<u64>| inner.call(xs));
    let res = execution_options!(use_parallel = false, timeout_seconds = 0.3 => {
        vmap(outer).call(vec![vec![1, 7, 3], vec![4, 5]])
    });
    let hung = finished.load(Ordering::SeqCst) == 1;
    gate.release();
    assert!(hung, "returned while the inner item hung");
    // The outer call reports a timeout (possibly wrapped by the inner one: both are timeouts).
    assert!(matches!(res, Err(XcsError::Timeout { .. })), "{res:?}");
    assert!(wait_until(
        || finished.load(Ordering::SeqCst) == started.load(Ordering::SeqCst)
    ));
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        started.load(Ordering::SeqCst),
        2,
        "inner item 3 and the second outer item never start"
    );
}

#[test]
fn macros_accept_trailing_commas_and_suffixed_literals() {
    let _s = serial();
    let o = execution_options!(max_workers = 4usize, timeout_seconds = 2.0f64, => get_execution_options());
    assert_eq!(o.max_workers, nz(4));
    assert_eq!(o.timeout_seconds, Some(Duration::from_secs(2)));
    let o = set_execution_options!(max_workers = 3,);
    assert_eq!(o.max_workers, nz(3));
}

#[test]
fn with_options_restores_after_panic_and_items_see_global_updates() {
    let _s = serial();
    let patch = OptionsPatch::from_pairs([("max_workers", "2")]).unwrap();
    let r = catch_unwind(|| with_options(&patch, || panic!("inside with_options")));
    assert!(r.is_err());
    assert_eq!(get_execution_options(), ExecutionOptions::default());

    set_execution_options!(max_workers = 4);
    let out = vmap(ProbeOptions)
        .call((31..=34).map(|x| ProbeOptionsInputs { x }).collect())
        .unwrap();
    assert!(out.iter().all(|t| t.1 == nz(4)));
    set_execution_options!(max_workers = 5);
    let out = vmap(ProbeOptions)
        .call((41..=44).map(|x| ProbeOptionsInputs { x }).collect())
        .unwrap();
    assert!(
        out.iter().all(|t| t.1 == nz(5)),
        "a global update is visible at once to the workers"
    );
}

#[test]
fn tracing_off_creates_no_xcs_spans() {
    let _s = serial();
    let spans = Arc::new(Mutex::new(Vec::new()));
    let recorder = span_recorder::Recorder {
        spans: spans.clone(),
        next: AtomicU64::new(0),
    };
    tracing::subscriber::with_default(recorder, || {
        TracedOp.call(TracedOpInputs { x: 1 }).unwrap();
        vmap(TracedOp).call(vec![TracedOpInputs { x: 2 }]).unwrap();
    });
    let spans = lock(&spans).clone();
    assert!(
        spans.iter().all(|(target, _)| !target.starts_with("xcs")),
        "{spans:?}"
    );
}

#[derive(Debug, PartialEq)]
struct NotClone(u64);

#[test]
fn hashable_input_with_non_clone_output_runs_uncached() {
    let _s = serial();
    let runs = Arc::new(AtomicUsize::new(0));
    let r2 = runs.clone();
    let o = op("non_clone_output", move |x: u64| {
        r2.fetch_add(1, Ordering::SeqCst);
        NotClone(x)
    });
    execution_options!(enable_caching = true => {
        assert_eq!(o.call(1).unwrap(), NotClone(1));
        assert_eq!(o.call(1).unwrap(), NotClone(1));
    });
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}
