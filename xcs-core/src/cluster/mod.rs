//! Batches on many machines: a device backend that sends a batch's items to worker processes
//! through a [NATS](https://nats.io) server (feature `nats`).
//!
//! - **Callers** register a [`NatsBackend`] under a name and select it with
//!   `device_strategy`: `register_backend("cluster", NatsBackend::connect(url)?)`, then
//!   `execution_options!(device_strategy = "cluster" => vmap(op).call(inputs))`. Nothing else
//!   in the pipeline changes.
//! - **Workers** are the user's own binary: [`serve`]`(url, `[`Registry`]`::new().with(op))` runs
//!   the operators it lists by name, and nothing else. Any number of workers may join or leave
//!   at any time; NATS queue groups share the chunks among them.
//! - **One binary, two roles**: [`serve_if_worker`]`(registry)` at the top of `main` serves (and
//!   exits) when the process was started as a worker by [`LocalWorkers`], which starts N workers
//!   of the current executable and stops them when dropped — scaling out on one machine needs no
//!   second program.
//!
//! What travels: the items, in chunks, each with its index in the batch; the caller's options
//! that matter on the worker (what is left of the deadline, `trace_execution` — the worker's
//! events are merged into the caller's trace —, `max_retries`, `rate_limit` — divided among
//! the workers that serve the operator, so the cluster as a whole keeps it; a worker spaces the
//! chunk's calls by it without touching its process-wide limiter —, `use_parallel`
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
//! Every subject starts with a prefix ([`ClusterOptions::prefix`], default `xcs`). Who may
//! publish and subscribe where (grant each user only this, with NATS permissions):
//!
//! | subject | who publishes | who subscribes |
//! |---|---|---|
//! | `<prefix>.hello` | callers (discovery) | every worker |
//! | `<prefix>.cancel` | callers (chunks they gave up) | every worker |
//! | `<prefix>.run.<operator>` | callers (chunks) | workers, queue group `<prefix>.workers` only |
//! | `<inbox prefix>.>` | workers, only as replies (`allow_responses`) | the one caller whose prefix it is ([`ClusterOptions::inbox_prefix`]) |
//!
//! **Threat model.** Workers are trusted with the answers they compute; any other client of the
//! server may be hostile. A caller accepts an outcome only
//! as an answer to a chunk it sent:
//!
//! - Each attempt of each chunk carries a fresh nonce (128 bits from the operating system's
//!   random source); every reply about it (`Accepted`, `Working`, `Results`, `Finished`,
//!   `Refused`, `Busy`) echoes it, and goes to a reply subject naming the chunk and the attempt.
//!   The caller keeps (chunk, attempt, nonce) and drops every reply that does not match exactly
//!   — garbage, forgeries, and a worker's genuine answer to someone else's chunk that named this
//!   caller's inbox. A dropped reply settles nothing, fails nothing and is never cached. Only the
//!   server's own "no responders" for the latest attempt, before any worker answered, fails a
//!   chunk without a nonce (the server sends it only to the client that published).
//! - The nonce is a secret from clients that can read neither the chunks nor the replies: with
//!   the permissions above, that is every other client. Discovery answers echo a nonce too.
//! - Without such permissions, a shared **cluster key** ([`ClusterOptions::cluster_key`], or
//!   `XCS_CLUSTER_KEY`) signs every request and reply with HMAC-SHA256 over the whole message
//!   (nonce included) and the subjects it travels on (the request's subject and reply subject,
//!   the reply's subject), with a distinct tag per message kind, verified in constant time.
//!   Workers ignore requests not signed with it, without answering; callers drop replies not
//!   signed with it. A keyed caller finding only workers without its key (or the reverse) fails
//!   at once with [`XcsError::Cluster`](crate::XcsError) saying so. A client without the key can
//!   still read traffic, take chunks from the queue group and drop them, or delay replies:
//!   the key buys integrity, permissions buy confidentiality and availability.
//!
//! Workers run only the operators their registry names, decode every message with size and
//! depth limits, and answer a malformed or hostile message by refusing that chunk (or failing
//! that item) — never by stopping. A request only narrows what a worker allows
//! ([`WorkerLimits`]): bounded chunks and bytes held (one more is answered `Busy`, which the
//! caller treats as "send again later or to another worker", counting against its attempts and
//! deadline), a cap on a chunk's time (10 minutes by default, also without a deadline), and a
//! request's `rate_limit` applied through state private to that chunk. Discovery is bounded:
//! 2 s for a first answer, then at most 500 ms (and 4096 answers) however fast answers come.
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
//! # Resources and budgets across the cluster
//!
//! A resource's limits (`set_resource_limits!`) and a scope's budgets hold for the caller and
//! all its workers together, never multiplied by the number of workers. The design: **the caller
//! is the single admitter.** Each item is admitted to its operator's resource (and charged its
//! estimate against the budget) on the caller before it is sent, exactly as a local call is;
//! the permit and the reservation are held until the item's result comes back, and settled then
//! with what the body recorded on the worker ([`record_usage`](crate::record_usage) there),
//! which travels back with the item's outcome — fixed-size, and checked when read. Workers run
//! items without their operator's resource (they came admitted) and hold no budget. The usage
//! shows in the caller's [`spent`](crate::spent), [`resource_stats`](crate::resource_stats) and
//! trace events. Why this design: the caller already holds every item's place in the batch and
//! its deadline, so admitting there needs no shared state between processes — each item is one
//! NATS request/reply, and no worker has to agree with another (no home-made consensus, no
//! lease to expire when a worker dies: a dead worker's chunk is sent again under the permits
//! already held). The cost: a worker's calls beyond the caller's items (another program using
//! the same provider) are not counted, and a sync chunk is formed as fast as its items are
//! admitted.
//!
//! # Async batches and cancellation
//!
//! Workers serve async operators too ([`Registry::with_async`]): a chunk of them runs as an
//! async batch on the worker's tokio runtime, with no thread per item. An async batch
//! (`vmap(op).call(inputs).await`) under the cluster's strategy sends its items to the workers
//! and is awaited without blocking a thread: each item goes through the caller's call path —
//! cache, budget, resource, rate limit, retries, deadline, trace — whose body is the trip to a
//! worker, so its rate limit and retries are applied by the caller (a chunk carries neither), and
//! what the body recorded with [`record_usage`](crate::record_usage) on the worker comes back
//! with its outcome and is charged here. The items are gathered into chunks (of the same size as
//! a sync batch's) by a task on the backend's runtime.
//!
//! Dropping the caller's future, its deadline (the batch's or an item's), or an earlier item's
//! failure (outside `call_settled_async`) cancels the chunks already sent whose items nobody
//! awaits any more: a message on `<prefix>.cancel` names them by their nonces (a secret of the
//! caller and the worker, and signed under a cluster key), and the worker drops the async chunk
//! — every item future in it — or sets [`cancelled()`](crate::cancelled) for a sync chunk's
//! items. Items not sent yet are not started. A sync batch cancels what is still out when it
//! gives up (its deadline, or the call it belongs to), and, after an item failed (outside
//! `call_settled`), the chunks whose items still out all come after it.
//!
//! Under `hedge_after`, a batch's items are hedged as local ones are, by the call plan on the
//! caller (the hedge's delay, its admission — an open circuit means no hedge — its charge, its
//! trace marks): the hedge is a second trip to the cluster, sent at once; the first success
//! answers, and the losing trip is cancelled on its worker on its own (the cancellation names
//! that item of its chunk) while the chunk's other items go on: an async item's future is
//! dropped there, a sync item sees [`cancelled()`](crate::cancelled). An async item goes
//! through the async call path, whose body is the trip; a sync item's plan is kept from its
//! admission to its outcome, and its trips are the hedge's attempts (the workers' trace events
//! of both carry the race's marks). A sync hedge's chunk waits for a free slot on a worker as
//! any sync chunk does.

mod backend;
mod connect;
mod limits;
mod local;
mod registry;
mod stops;
mod wire;
mod worker;

pub use backend::{NatsBackend, WorkerSummary};
pub use connect::{ClusterOptions, DEFAULT_PREFIX, KEY_VARIABLE};
pub use limits::WorkerLimits;
pub use local::{LocalWorkers, WORKER_VARIABLE, serve_if_worker};
pub use registry::Registry;
pub use wire::RemoteFailure;
pub use worker::{serve, serve_async};
