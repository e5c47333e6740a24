//! Shared test operators and helpers.
#![allow(dead_code)]

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use xcs::{ExecutionOptions, Operator, XcsError, get_execution_options};

/// Serializes the tests of one binary that touch process-wide state: the global options, the
/// memory cache (its entries, bounds and counters), the trace buffer, the backend registry.
pub fn global_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records which threads ran items, in which order, and under which options.
#[derive(Default)]
pub struct Recorder {
    pub threads: Mutex<HashSet<ThreadId>>,
    pub order: Mutex<Vec<u64>>,
    pub seen: Mutex<Vec<ExecutionOptions>>,
    pub started: AtomicUsize,
}

impl Recorder {
    pub fn distinct_threads(&self) -> usize {
        self.threads.lock().unwrap().len()
    }
}

/// Sleeps `input` milliseconds... no: sleeps `sleep` per item and records where it ran.
pub struct Probe {
    pub record: Arc<Recorder>,
    pub sleep: Duration,
    pub fail_on: Option<u64>,
    pub panic_on: Option<u64>,
    /// If set, each item waits (until a shared deadline) for this many distinct threads to be
    /// running items, so parallelism is observed even on a loaded machine.
    pub rendezvous: Option<(usize, std::time::Instant)>,
}

impl Probe {
    pub fn new(sleep_ms: u64) -> (Probe, Arc<Recorder>) {
        let record = Arc::new(Recorder::default());
        (
            Probe {
                record: Arc::clone(&record),
                sleep: Duration::from_millis(sleep_ms),
                fail_on: None,
                panic_on: None,
                rendezvous: None,
            },
            record,
        )
    }
}

impl Operator for Probe {
    type Input = u64;
    type Output = u64;

    fn forward(&self, input: u64) -> Result<u64, XcsError> {
        self.record.started.fetch_add(1, Ordering::SeqCst);
        self.record
            .threads
            .lock()
            .unwrap()
            .insert(std::thread::current().id());
        self.record.order.lock().unwrap().push(input);
        self.record
            .seen
            .lock()
            .unwrap()
            .push(xcs::get_execution_options());
        if let Some((threads, until)) = self.rendezvous {
            while self.record.distinct_threads() < threads && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if !self.sleep.is_zero() {
            std::thread::sleep(self.sleep);
        }
        if self.fail_on == Some(input) {
            return Err(XcsError::operator("probe", format!("item {input} failed")));
        }
        if self.panic_on == Some(input) {
            panic!("probe panicked on {input}");
        }
        Ok(input * 10)
    }

    fn name(&self) -> &str {
        "probe"
    }
}

/// A gate items wait on until the test opens it.
#[derive(Default)]
pub struct Gate {
    open: Mutex<bool>,
    cond: Condvar,
}

impl Gate {
    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cond.notify_all();
    }

    /// Waits until open or `limit` passes (so a broken test cannot hang forever).
    pub fn wait(&self, limit: Duration) {
        let guard = self.open.lock().unwrap();
        let _ = self
            .cond
            .wait_timeout_while(guard, limit, |open| !*open)
            .unwrap();
    }
}

/// An operator whose items hang on a gate; counts starts and finishes.
pub struct Hang {
    pub gate: Arc<Gate>,
    pub started: Arc<AtomicUsize>,
    pub finished: Arc<AtomicUsize>,
    /// Items with an input below this hang; others return at once.
    pub hang_below: u64,
}

impl Hang {
    pub fn new(hang_below: u64) -> Hang {
        Hang {
            gate: Arc::new(Gate::default()),
            started: Arc::new(AtomicUsize::new(0)),
            finished: Arc::new(AtomicUsize::new(0)),
            hang_below,
        }
    }
}

impl Operator for Hang {
    type Input = u64;
    type Output = u64;

    fn forward(&self, input: u64) -> Result<u64, XcsError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        if input < self.hang_below {
            self.gate.wait(Duration::from_secs(20));
        }
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(input)
    }

    fn name(&self) -> &str {
        "hang"
    }
}

/// Waits until `counter` reaches `value` (or 10 s pass); returns whether it did.
pub fn wait_for(counter: &AtomicUsize, value: usize) -> bool {
    let start = std::time::Instant::now();
    while counter.load(Ordering::SeqCst) < value {
        if start.elapsed() > Duration::from_secs(10) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// Runs `f`; aborts the whole process if it has not returned within `limit`.
pub fn watchdog<R>(what: &str, limit: Duration, f: impl FnOnce() -> R) -> R {
    let done = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&done);
    let label = what.to_owned();
    std::thread::spawn(move || {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if flag.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("watchdog: `{label}` did not finish within {limit:?}: deadlock");
        std::process::abort();
    });
    let out = f();
    done.store(true, Ordering::SeqCst);
    out
}

/// The threads this process has now, as the kernel counts them.
pub fn process_threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Counts items running at once, and the most at once.
#[derive(Default)]
pub struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
    total: AtomicUsize,
}

impl Gauge {
    pub fn entered(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }
    pub fn enter(&self) -> GaugeGuard<'_> {
        self.total.fetch_add(1, Ordering::SeqCst);
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        GaugeGuard(self)
    }
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

pub struct GaugeGuard<'a>(&'a Gauge);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Each item waits (until a shared deadline) for `target` items to have been running at once.
pub struct Meet {
    pub gauge: Arc<Gauge>,
    pub target: usize,
    pub until: Instant,
}
impl Operator for Meet {
    type Input = u64;
    type Output = u64;
    fn forward(&self, x: u64) -> Result<u64, XcsError> {
        let _running = self.gauge.enter();
        while self.gauge.peak() < self.target && Instant::now() < self.until {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(x)
    }
    fn name(&self) -> &str {
        "meet"
    }
}

/// Runs test `test` of module `module` (the caller's `module_path!()`) of this test binary again,
/// alone, in a child process with the environment variables `envs` set, and returns what it
/// printed on standard output and on standard error. Panics, showing both, when the child fails
/// (a crash included): a child that aborts fails the test instead of the whole test binary.
pub fn rerun(module: &str, test: &str, envs: &[(&str, &std::ffi::OsStr)]) -> (String, String) {
    // libtest names a test by its path below the crate root: `topic::test`, or `test` alone in a
    // test binary of one file.
    let test = match module.split_once("::") {
        Some((_crate, below)) => format!("{below}::{test}"),
        None => test.to_owned(),
    };
    let out = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", &test, "--nocapture", "--test-threads=1"])
        .envs(envs.iter().copied())
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "the child running {test} with {envs:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// What the one global `tracing` subscriber of this test binary saw (a process has at most one,
/// and batch items run on pool threads, which a thread-local default would not reach).
#[derive(Default)]
pub struct Seen {
    /// The target, name and `operator` field of every new span, from every thread.
    pub spans: Mutex<Vec<(String, String, String)>>,
    /// The message of every warning of target `xcs`.
    pub warnings: Mutex<Vec<String>>,
}

impl Seen {
    /// The `xcs` warnings seen so far that contain `needle`.
    pub fn warnings_mentioning(&self, needle: &str) -> Vec<String> {
        let all = self.warnings.lock().unwrap_or_else(PoisonError::into_inner);
        all.iter().filter(|w| w.contains(needle)).cloned().collect()
    }
}

/// Installs the global subscriber on first use; what it has seen.
pub fn global_subscriber() -> &'static Seen {
    static SEEN: std::sync::OnceLock<&'static Seen> = std::sync::OnceLock::new();
    SEEN.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let seen: &'static Seen = Box::leak(Box::default());
        let subscriber = tracing_subscriber::registry().with(SeenLayer(seen));
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test binary");
        seen
    })
}

struct SeenLayer(&'static Seen);

/// Keeps the field named `name` of a span or event, as text.
struct Field<'a> {
    name: &'static str,
    value: &'a mut String,
}

impl tracing::field::Visit for Field<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == self.name {
            *self.value = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == self.name {
            value.clone_into(self.value);
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SeenLayer {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut operator = String::new();
        attrs.record(&mut Field {
            name: "operator",
            value: &mut operator,
        });
        let operator = operator.trim_matches('"').to_owned();
        let meta = attrs.metadata();
        self.0
            .spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((meta.target().to_owned(), meta.name().to_owned(), operator));
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        if meta.target() == "xcs" && *meta.level() == tracing::Level::WARN {
            let mut message = String::new();
            event.record(&mut Field {
                name: "message",
                value: &mut message,
            });
            self.0
                .warnings
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(message);
        }
    }
}

/// Holds [`global_lock`] for a test, with the global options at their defaults, the memory cache
/// and the trace buffer empty; restores that on drop (also when the test fails).
pub struct Serial {
    _guard: MutexGuard<'static, ()>,
}

impl Drop for Serial {
    fn drop(&mut self) {
        xcs::reset_execution_options();
        xcs::clear_cache();
        let _ = xcs::take_trace();
    }
}

/// Takes [`global_lock`] with the process-wide defaults in force (see [`Serial`]).
pub fn serial() -> Serial {
    let guard = global_lock();
    xcs::reset_execution_options();
    xcs::clear_cache();
    let _ = xcs::take_trace();
    Serial { _guard: guard }
}

/// `max_workers` as the options hold it.
pub fn nz(n: usize) -> Option<NonZeroUsize> {
    NonZeroUsize::new(n)
}

/// Locks `m`, poisoned or not.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A latch that hung items wait on (at most 10 s) until the test releases it; unlike [`Gate`],
/// it can be a `static`.
pub struct Latch {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Latch {
    pub const fn new() -> Self {
        Latch {
            open: Mutex::new(false),
            cv: Condvar::new(),
        }
    }
    pub fn reset(&self) {
        *lock(&self.open) = false;
    }
    /// Returns `true` if released, `false` if the 10 s cap passed.
    pub fn wait(&self) -> bool {
        let guard = lock(&self.open);
        let (guard, _) = self
            .cv
            .wait_timeout_while(guard, Duration::from_secs(10), |open| !*open)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard
    }
    pub fn release(&self) {
        *lock(&self.open) = true;
        self.cv.notify_all();
    }
}

/// Waits (at most 10 s) until `cond` holds.
pub fn wait_until(cond: impl Fn() -> bool) -> bool {
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
pub struct Rendezvous {
    state: Mutex<(usize, usize)>, // (inside now, max inside)
    cv: Condvar,
    target: usize,
    cap: Duration,
}

impl Rendezvous {
    pub fn new(target: usize, cap: Duration) -> Self {
        Rendezvous {
            state: Mutex::new((0, 0)),
            cv: Condvar::new(),
            target,
            cap,
        }
    }
    /// Returns whether `target` items were inside at once while this one waited.
    pub fn meet(&self) -> bool {
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
    pub fn max_inside(&self) -> usize {
        lock(&self.state).1
    }
}

/// A hand-written operator around a closure.
pub struct FnOp<I, O> {
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

pub fn op<I, O>(name: &'static str, f: impl Fn(I) -> O + Send + Sync + 'static) -> FnOp<I, O> {
    FnOp {
        name,
        f: Box::new(f),
    }
}

/// Every `Display` of an error is one clear lowercase-led sentence (except
/// `Invalid execution option: …`).
pub fn assert_lowercase_led(err: &XcsError) {
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

pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        String::new()
    }
}

// Operators that tests of several topics use.

/// The options an item sees: its input, `max_workers`, `use_parallel`, `enable_caching`.
#[xcs::operator]
pub fn probe_options(x: u64) -> (u64, Option<NonZeroUsize>, bool, bool) {
    let o = get_execution_options();
    (x, o.max_workers, o.use_parallel, o.enable_caching)
}

/// [`probe_options`] called from inside an operator.
#[xcs::operator]
pub fn nested_probe(x: u64) -> Result<(u64, Option<NonZeroUsize>, bool, bool), XcsError> {
    ProbeOptions.call(ProbeOptionsInputs { x })
}

/// The bodies [`fail_on`] ran.
pub static FAIL_ON_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Fails on 20 (after 100 ms) and on 50 (at once).
#[xcs::operator]
pub fn fail_on(x: u64) -> Result<u64, String> {
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

/// The bodies [`cached_square`] ran.
pub static SQUARE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[xcs::operator]
pub fn cached_square(x: u64) -> u64 {
    SQUARE_RUNS.fetch_add(1, Ordering::SeqCst);
    x * x
}

/// The bodies [`always_fails`] ran.
pub static FLAKY_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Always fails.
#[xcs::operator]
pub fn always_fails(x: u64) -> Result<u64, String> {
    FLAKY_RUNS.fetch_add(1, Ordering::SeqCst);
    Err(format!("no luck for {x}"))
}

/// A hand-written operator whose body hangs on a latch.
pub struct HangOp {
    pub gate: Arc<Latch>,
    pub started: Arc<AtomicUsize>,
    pub finished: Arc<AtomicUsize>,
    pub hang_on: Option<u64>, // `None`: every item hangs
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

/// A [`HangOp`] (every item hangs with `None`), its latch, and its started and finished counts.
pub fn hang_op(hang_on: Option<u64>) -> (HangOp, Arc<Latch>, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let gate = Arc::new(Latch::new());
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

/// Doubles its input (hand-written).
pub struct Double;

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

/// A `&'static` operator.
pub static DOUBLE: Double = Double;

/// Generates a string.
#[xcs::operator]
pub fn generate(prompt: String, seed: u64) -> String {
    format!("{prompt}-{seed}")
}
