//! Batches on many machines: a device backend that sends a batch's items to worker processes
//! through a [NATS](https://nats.io) server (feature `nats`, SPEC §11).
//!
//! - **Callers** register a [`NatsBackend`] under a name and select it with
//!   `device_strategy`: `register_backend("cluster", NatsBackend::connect(url)?)`, then
//!   `execution_options!(device_strategy = "cluster" => vmap(op).call(inputs))`. Nothing else
//!   in the pipeline changes.
//! - **Workers** are the user's own binary: [`serve`]`(url, `[`Registry`]`::new().with(op))` runs
//!   the operators it lists by name, and nothing else. Any number of workers may join or leave
//!   at any time; NATS queue groups share the chunks among them.
//!
//! What travels: the items, in chunks, each with its index in the batch; the caller's options
//! that matter on the worker (what is left of the deadline, `trace_execution` — the worker's
//! events are merged into the caller's trace —, `max_retries`, `rate_limit` — divided among
//! the workers that serve the operator, so the cluster as a whole keeps it —, `use_parallel`
//! and `max_workers`). Caching stays with the caller: hits never leave the process, and
//! results are stored when they come back. Errors are per item, as in a local batch; a worker
//! that dies mid-chunk has its chunk sent again to another worker within the deadline.
//!
//! Inputs and outputs travel serialized (postcard, as in the persistent cache): the operator's
//! input and output must be serde types (generated operators with serde parameters and output
//! qualify; hand-written ones implement
//! [`Operator::persist_support`](crate::Operator::persist_support)). Caller and worker check
//! each other's signature — operator name, version, input and output type names — so a worker
//! built from another version of the program refuses the chunk with a clear error.
//!
//! # Subjects and security
//!
//! Every subject starts with a prefix ([`ClusterOptions::prefix`], default `xcs`):
//!
//! | subject | who publishes | who subscribes |
//! |---|---|---|
//! | `<prefix>.hello` | callers (discovery) | every worker |
//! | `<prefix>.run.<operator>` | callers (chunks) | workers, queue group `<prefix>.workers` |
//! | `_INBOX.>` | workers (replies) | callers |
//!
//! With NATS permissions, allow only callers to publish to `<prefix>.>` and only workers to
//! subscribe to it; callers must subscribe to `_INBOX.>` for their replies. Workers run only the
//! operators their registry names, decode every message with size limits, and answer a
//! malformed or hostile message by refusing that chunk — never by stopping.
//!
//! Credentials come from the URL or the environment, as the NATS tools take them:
//!
//! | where | meaning |
//! |---|---|
//! | `nats://user:password@host:4222` | user and password (percent-encoded) |
//! | `nats://token@host:4222` | a token |
//! | `tls://host:4222` | TLS required |
//! | `NATS_USER`, `NATS_PASSWORD` | user and password (when the URL has none) |
//! | `NATS_TOKEN` | a token (when the URL has none) |
//! | `NATS_NKEY` | an nkey seed, or the path of a file holding one |
//! | `NATS_CREDS` | a credentials file (JWT and nkey) |
//! | `NATS_CA` | a root certificate for TLS (turns TLS on) |
//! | `NATS_CERT`, `NATS_KEY` | a client certificate and its key (turns TLS on) |
//!
//! # Chunks and failures
//!
//! See [`NatsBackend`] for how a batch is cut into chunks and what happens when a worker dies,
//! none listens (every item fails with [`XcsError::DeviceUnavailable`](crate::XcsError) at
//! once), or none serves the operator ([`XcsError::Cluster`](crate::XcsError)).
//!
//! Async batches (`vmap(op).call(inputs).await`) run their items as futures in the caller's
//! task whatever the device strategy; a cluster batch is a sync call (from async code, run it
//! with `blocking(vmap(op))`).

mod backend;
mod connect;
mod registry;
mod wire;
mod worker;

pub use backend::{NatsBackend, WorkerSummary};
pub use connect::{ClusterOptions, DEFAULT_PREFIX, KEY_VARIABLE};
pub use registry::Registry;
pub use wire::RemoteFailure;
pub use worker::{WorkerLimits, serve, serve_async};
