//! One binary, two roles: a program that starts workers of itself, and the check at the top of
//! its `main` that makes such a process serve instead.

use std::ffi::OsString;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::backend::NatsBackend;
use super::registry::Registry;
use super::worker::serve;
use crate::error::XcsError;

/// The environment variable [`LocalWorkers`] sets to the server's URL in the workers it starts:
/// [`serve_if_worker`] serves when it is set.
pub const WORKER_VARIABLE: &str = "XCS_CLUSTER_WORKER_URL";

/// Serves `registry` and exits when this process was started as a worker by [`LocalWorkers`]
/// (the variable [`WORKER_VARIABLE`] holds the server's URL); does nothing otherwise. Put it at
/// the top of `main`, so that one binary is both the caller and its workers:
///
/// ```no_run
/// use xcs::cluster::{LocalWorkers, NatsBackend, Registry};
/// use xcs::prelude::*;
///
/// #[xcs::operator]
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn main() -> Result<(), xcs::XcsError> {
///     // A worker serves here and never returns; the caller goes on.
///     xcs::cluster::serve_if_worker(Registry::new().with(Square));
///
///     let url = "nats://127.0.0.1:4222";
///     let backend = NatsBackend::connect(url)?;
///     // Two workers of this very program, stopped when `workers` is dropped.
///     let workers = LocalWorkers::start(2, url)?;
///     workers.wait_for(&backend, std::time::Duration::from_secs(20))?;
///     xcs::register_backend("cluster", backend)?;
///     let squares = execution_options!(device_strategy = "cluster" => {
///         vmap(Square).call(SquareInputs::batch(vec![1u64, 2, 3])?)
///     })?;
///     assert_eq!(squares, [1, 4, 9]);
///     Ok(())
/// }
/// ```
///
/// A worker exits with status 0 when the process that started it goes away (its standard
/// input, a pipe from that process, closes), and with status 1, the reason on its standard
/// error, when it cannot serve (the server cannot be reached, or the connection closes).
pub fn serve_if_worker(registry: Registry) {
    let Some(url) = std::env::var_os(WORKER_VARIABLE) else {
        return;
    };
    let url = url.to_string_lossy().into_owned();
    // The starting process holds the other end of stdin: when it ends, however it ends, so does
    // this worker.
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    let result = serve(&url, registry);
    eprintln!("xcs worker {} stopped: {result:?}", std::process::id());
    std::process::exit(1);
}

/// Worker processes of the current executable ([`std::env::current_exe`]) on this machine, for
/// a program whose `main` starts with [`serve_if_worker`]. They are stopped — killed and
/// reaped — when this value is dropped, and exit on their own if this process ends first.
///
/// ```no_run
/// use std::time::Duration;
/// use xcs::cluster::{LocalWorkers, NatsBackend};
///
/// let backend = NatsBackend::connect("nats://127.0.0.1:4222")?;
/// let mut workers = LocalWorkers::new("nats://127.0.0.1:4222").env("RUST_LOG", "warn");
/// workers.spawn(4)?;
/// workers.wait_for(&backend, Duration::from_secs(20))?;
/// assert_eq!(workers.pids().len(), 4);
/// # Ok::<(), xcs::XcsError>(())
/// ```
#[derive(Debug)]
pub struct LocalWorkers {
    url: String,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    children: Vec<Child>,
}

impl LocalWorkers {
    /// No workers yet; those [`spawn`](LocalWorkers::spawn)ed serve at `url`.
    pub fn new(url: &str) -> Self {
        LocalWorkers {
            url: url.to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// `n` workers serving at `url`, started now.
    ///
    /// # Errors
    /// As [`spawn`](LocalWorkers::spawn).
    pub fn start(n: usize, url: &str) -> Result<Self, XcsError> {
        let mut workers = LocalWorkers::new(url);
        workers.spawn(n)?;
        Ok(workers)
    }

    /// The same, with `arg` passed to the workers started from now on (a test binary's
    /// `--exact <test>`, say).
    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// The same, with the variable `key` set to `value` in the workers started from now on.
    #[must_use]
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Starts `n` more workers.
    ///
    /// # Errors
    /// [`XcsError::Connect`] when the current executable cannot be found or started (the
    /// workers started before stay).
    pub fn spawn(&mut self, n: usize) -> Result<(), XcsError> {
        let failed = |reason: String| XcsError::Connect {
            url: super::connect::strip_userinfo(&self.url),
            reason,
        };
        let exe = std::env::current_exe()
            .map_err(|e| failed(format!("cannot find the current executable: {e}")))?;
        for _ in 0..n {
            let child = Command::new(&exe)
                .args(&self.args)
                .envs(self.envs.iter().map(|(k, v)| (k, v)))
                .env(WORKER_VARIABLE, &self.url)
                // Closed when this process ends: see `serve_if_worker`.
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| failed(format!("cannot start a worker process: {e}")))?;
            self.children.push(child);
        }
        Ok(())
    }

    /// Waits until `backend` sees every worker started here (at most `timeout`).
    ///
    /// # Errors
    /// [`XcsError::Connect`] when the connection is lost or the workers are not all seen in
    /// time.
    pub fn wait_for(&self, backend: &NatsBackend, timeout: Duration) -> Result<(), XcsError> {
        let until = Instant::now() + timeout;
        loop {
            let seen: Vec<u32> = backend.workers()?.iter().map(|w| w.pid).collect();
            if self.pids().iter().all(|pid| seen.contains(pid)) {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(XcsError::Connect {
                    url: super::connect::strip_userinfo(&self.url),
                    reason: format!(
                        "{} of the {} local workers did not come up within {timeout:?}",
                        self.pids().iter().filter(|pid| !seen.contains(pid)).count(),
                        self.children.len()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The workers' process ids, in the order they were started.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// How many workers were started here (and not stopped).
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// Stops every worker: kills and reaps it.
    pub fn stop(&mut self) {
        for mut child in self.children.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for LocalWorkers {
    fn drop(&mut self) {
        self.stop();
    }
}
