//! A worker process: answers discovery, takes chunks of the operators its registry names from
//! the queue group, runs them under the caller's options and sends the outcomes back.
//!
//! A chunk is acknowledged at once and a heartbeat follows every 200 ms until its outcomes are
//! sent, so a caller tells a busy worker from a dead one. At most one chunk of a sync operator
//! per CPU runs at a time (the others wait, heartbeating); each runs as a settled `vmap` on the
//! worker's pool. A chunk of an async operator runs as a settled async `vmap` on the worker's
//! tokio runtime: no thread per item, and no CPU slot held while its items wait.
//!
//! A caller cancels chunks on `<prefix>.cancel`, naming each by its nonce (which only it and
//! the worker know; signed too under a cluster key): an async chunk is dropped at once — every
//! item future with it — and a sync chunk's items see [`cancelled()`](crate::cancelled). A
//! cancellation may also name single items of a chunk (its nonce and their index), which stop
//! while the chunk's others go on: an async item's future is dropped, a sync item sees
//! `cancelled()` (each runs with a cancellation flag of its own).
//!
//! A request only narrows what the worker allows ([`WorkerLimits`]): the chunks (and bytes)
//! it holds are bounded, and one more is answered `Busy` (the caller sends it again later or to
//! another worker); a chunk runs for at most the worker's cap, with or without a deadline; and a
//! request's rate limit spaces that chunk's calls alone, never the process-wide limiter.
//! Every reply echoes the request's nonce, and is signed when the worker has a cluster key; a
//! worker with a key ignores requests not signed with it, without answering.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{Notify, Semaphore};

use super::connect::{self, HEARTBEAT};
use super::limits::WorkerLimits;
use super::registry::{Registry, Work};
use super::stops::ItemStops;
use super::wire::{
    self, Cancel, Context, HelloAnswer, ItemResult, Nonce, Reply, ReplyMessage, Request, WireError,
    WireEvent, WorkerInfo,
};
use crate::ambient::Ambient;
use crate::deadline::{CallContext, CancelFlag};
use crate::error::XcsError;
use crate::pool;
use crate::scope::get_execution_options;
use crate::trace;

/// The chunks a worker holds now.
struct Queue {
    limits: WorkerLimits,
    chunks: AtomicUsize,
    bytes: AtomicUsize,
}

/// How a running chunk is stopped when its caller cancels it.
struct Stop {
    /// Seen by the chunk's sync items through `xcs::cancelled()`.
    flag: Arc<CancelFlag>,
    /// Wakes the task of an async chunk, which then drops its items.
    notify: Arc<Notify>,
    /// The items cancelled one by one (an async chunk's item futures are dropped), and how
    /// many the chunk has.
    items: Arc<ItemStops>,
    count: usize,
}

/// The chunks running on this worker, by nonce.
type Running = Arc<Mutex<HashMap<Nonce, Stop>>>;

/// A chunk's entry in [`Running`], removed when dropped.
struct Registered {
    running: Running,
    nonce: Nonce,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.nonce);
    }
}

/// Stops the chunks a cancellation names (those running here; others are ignored).
fn cancel(key: Option<&[u8]>, running: &Running, message: &async_nats::Message) {
    let context = Context::Cancel {
        subject: message.subject.as_str(),
    };
    let Some(body) = wire::open(key, &context, &message.payload) else {
        return;
    };
    let Ok(cancel) = Cancel::read(body) else {
        return;
    };
    let running = running.lock().unwrap_or_else(PoisonError::into_inner);
    for nonce in &cancel.nonces {
        if let Some(stop) = running.get(nonce) {
            stop.flag.cancel();
            stop.notify.notify_one();
        }
    }
    for (nonce, index) in &cancel.items {
        if let Some(stop) = running.get(nonce) {
            stop.items.cancel([*index], stop.count);
        }
    }
}

/// A chunk's place in the [`Queue`], given back when dropped.
struct Ticket {
    queue: Arc<Queue>,
    bytes: usize,
}

impl Queue {
    /// A place for a chunk of `bytes`, or why there is none.
    fn admit(queue: &Arc<Queue>, bytes: usize) -> Result<Ticket, String> {
        let chunks = queue.chunks.load(Ordering::SeqCst);
        let held = queue.bytes.load(Ordering::SeqCst);
        if chunks >= queue.limits.chunks {
            return Err(format!(
                "the worker holds {chunks} chunks already (at most {})",
                queue.limits.chunks
            ));
        }
        if chunks > 0 && held.saturating_add(bytes) > queue.limits.bytes {
            return Err(format!(
                "the worker holds {held} bytes of chunks already (at most {})",
                queue.limits.bytes
            ));
        }
        queue.chunks.fetch_add(1, Ordering::SeqCst);
        queue.bytes.fetch_add(bytes, Ordering::SeqCst);
        Ok(Ticket {
            queue: Arc::clone(queue),
            bytes,
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.queue.chunks.fetch_sub(1, Ordering::SeqCst);
        self.queue.bytes.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

/// Serves the operators of `registry` to callers of the cluster at `url` until the connection
/// ends for good (credentials: see the [module docs](super)); blocks the calling thread. For a
/// worker binary's `main`:
///
/// ```no_run
/// #[xcs::operator]
/// fn embed(text: String) -> Vec<f32> {
///     text.bytes().map(f32::from).collect()
/// }
///
/// fn main() -> Result<(), xcs::XcsError> {
///     let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
///     xcs::cluster::serve(&url, xcs::cluster::Registry::new().with(Embed))
/// }
/// ```
///
/// # Errors
/// [`XcsError::Connect`] when the server cannot be reached or refuses the credentials, or when
/// the connection closes.
pub fn serve(url: &str, registry: Registry) -> Result<(), XcsError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Chunks run on the runtime's blocking threads: numbered, so a merged trace tells them
        // apart.
        .thread_name_fn(|| {
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("xcs-worker-{n}")
        })
        .enable_all()
        .build()
        .map_err(|e| XcsError::Connect {
            url: connect::strip_userinfo(url),
            reason: format!("cannot start the worker's runtime: {e}"),
        })?;
    runtime.block_on(serve_async(url, registry))
}

/// [`serve`] for a caller already on a tokio runtime (with the time and I/O drivers enabled).
///
/// # Errors
/// As [`serve`].
pub async fn serve_async(url: &str, registry: Registry) -> Result<(), XcsError> {
    let shown = connect::strip_userinfo(url);
    let closed = |reason: String| XcsError::Connect {
        url: shown.clone(),
        reason,
    };
    let options = registry.cluster_options().clone();
    let client = connect::connect(url, "xcs worker", options.inbox_prefix_set()).await?;
    let pid = std::process::id();
    let info = WorkerInfo {
        protocol: wire::PROTOCOL,
        id: format!("{}-{pid}", host_name()),
        pid,
        slots: u32::try_from(pool::cpu_count()).unwrap_or(u32::MAX),
        operators: registry.signatures(),
        keyed: options.has_cluster_key(),
    };
    let mut hello = client
        .subscribe(options.hello_subject())
        .await
        .map_err(|e| closed(e.to_string()))?;
    let mut cancels = client
        .subscribe(options.cancel_subject())
        .await
        .map_err(|e| closed(e.to_string()))?;
    let running: Running = Arc::default();
    let mut cancels_open = true;
    let subjects: BTreeSet<String> = registry.names().map(|n| options.run_subject(n)).collect();
    let mut subscriptions = Vec::new();
    for subject in subjects {
        subscriptions.push(
            client
                .queue_subscribe(subject, options.queue_group())
                .await
                .map_err(|e| closed(e.to_string()))?,
        );
    }
    client.flush().await.map_err(|e| closed(e.to_string()))?;
    let mut work = futures_util::stream::select_all(subscriptions);
    let queue = Arc::new(Queue {
        limits: registry.worker_limits().clone(),
        chunks: AtomicUsize::new(0),
        bytes: AtomicUsize::new(0),
    });
    let registry = Arc::new(registry);
    let slots = Arc::new(Semaphore::new(pool::cpu_count()));
    let key: Option<Arc<[u8]>> = options.key().map(Into::into);
    loop {
        tokio::select! {
            message = hello.next() => match message {
                Some(message) => {
                    if let Some(reply) = &message.reply {
                        let answer = answer_hello(key.as_deref(), &info, &message.payload, reply);
                        let _ = client.publish(reply.clone(), Bytes::from(answer)).await;
                    }
                }
                None => break,
            },
            message = cancels.next(), if cancels_open => match message {
                Some(message) => cancel(key.as_deref(), &running, &message),
                // Not allowed to read cancellations: chunks run to their end.
                None => cancels_open = false,
            },
            message = work.next(), if !registry.is_empty() => match message {
                Some(message) => {
                    let chunk = Chunk {
                        client: client.clone(),
                        key: key.clone(),
                        worker: info.id.clone(),
                        running: Arc::clone(&running),
                    };
                    match Queue::admit(&queue, message.payload.len()) {
                        Ok(ticket) => {
                            tokio::spawn(chunk.handle(
                                Arc::clone(&registry),
                                message,
                                Arc::clone(&slots),
                                ticket,
                            ));
                        }
                        Err(reason) => {
                            tokio::spawn(chunk.busy(message, reason));
                        }
                    }
                }
                None => break,
            },
        }
    }
    Err(closed("the connection to the server closed".into()))
}

/// The answer to a discovery request: signed when the worker has a key and the request was
/// signed with it; otherwise unsigned (a caller without the key, or with another one, learns
/// from it that the workers need one).
fn answer_hello(key: Option<&[u8]>, info: &WorkerInfo, payload: &[u8], reply: &str) -> Vec<u8> {
    let authentic = wire::open(key, &Context::Hello { reply }, payload);
    let nonce = wire::decode_hello(authentic.unwrap_or(payload)).map_or([0; 16], |h| h.nonce);
    let body = wire::encode(&HelloAnswer {
        nonce,
        info: info.clone(),
    });
    match authentic {
        Some(_) => wire::seal(key, &Context::HelloAnswer { reply }, body),
        None => body,
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned())
}

/// What a chunk's task needs of the worker.
struct Chunk {
    client: async_nats::Client,
    key: Option<Arc<[u8]>>,
    worker: String,
    running: Running,
}

/// A request that is authentic (signed with the worker's key, when it has one): its reply
/// subject, its body, and its first fields. `Err`: what to answer (with the request's nonce if it
/// has one); `None` inside: answer nothing.
type Opened<'a> =
    Result<(async_nats::Subject, &'a [u8], wire::RequestHead), Option<(Nonce, String)>>;

impl Chunk {
    fn open<'a>(&self, message: &'a async_nats::Message) -> Opened<'a> {
        let Some(reply) = message.reply.clone() else {
            return Err(None);
        };
        let context = Context::Request {
            subject: message.subject.as_str(),
            reply: reply.as_str(),
        };
        // Not signed with this worker's key: not a request of this cluster's callers.
        let Some(body) = wire::open(self.key.as_deref(), &context, &message.payload) else {
            return Err(None);
        };
        let head = match wire::decode_head(body) {
            Ok(head) => head,
            Err(reason) => return Err(Some(([0; 16], reason))),
        };
        if head.protocol != wire::PROTOCOL {
            return Err(Some((
                head.nonce,
                format!(
                    "the caller speaks protocol {} but this worker speaks {} (built from another \
                     version of xcs)",
                    head.protocol,
                    wire::PROTOCOL
                ),
            )));
        }
        if head.signed && self.key.is_none() {
            return Err(Some((
                head.nonce,
                format!(
                    "worker {} has no cluster key, and the caller signs its requests with one: \
                     give the workers the same key",
                    self.worker
                ),
            )));
        }
        Ok((reply, body, head))
    }

    /// Where the replies about `message` go, marked with `nonce`.
    fn replier(&self, message: &async_nats::Message, nonce: Nonce) -> Option<Replier> {
        Some(Replier {
            client: self.client.clone(),
            reply: message.reply.clone()?,
            nonce,
            key: self.key.clone(),
        })
    }

    /// Answers a chunk the queue has no room for.
    async fn busy(self, message: async_nats::Message, reason: String) {
        match self.open(&message) {
            Ok((reply, _, head)) => {
                let replier = Replier {
                    client: self.client.clone(),
                    reply,
                    nonce: head.nonce,
                    key: self.key.clone(),
                };
                replier.send(Reply::Busy { reason }).await;
            }
            Err(Some((nonce, reason))) => {
                if let Some(replier) = self.replier(&message, nonce) {
                    replier.send(Reply::Refused { reason }).await;
                }
            }
            Err(None) => {}
        }
    }

    /// Answers one chunk.
    async fn handle(
        self,
        registry: Arc<Registry>,
        message: async_nats::Message,
        slots: Arc<Semaphore>,
        _ticket: Ticket,
    ) {
        let received_at = trace::since_epoch();
        let (reply, body, head) = match self.open(&message) {
            Ok(opened) => opened,
            Err(Some((nonce, reason))) => {
                if let Some(replier) = self.replier(&message, nonce) {
                    replier.send(Reply::Refused { reason }).await;
                }
                return;
            }
            Err(None) => return,
        };
        let client = self.client.clone();
        let worker = self.worker.clone();
        let replier = Replier {
            client: client.clone(),
            reply,
            nonce: head.nonce,
            key: self.key.clone(),
        };
        let send = |message: Reply| {
            let replier = replier.clone();
            async move { replier.send(message).await }
        };
        let request = match wire::decode::<Request>(body)
            .and_then(|request| wire::check(&request).map(|()| request))
        {
            Ok(request) => request,
            Err(reason) => return send(Reply::Refused { reason }).await,
        };
        let name = &request.signature.operator;
        let Some(entry) = registry.get(name).cloned() else {
            let served: Vec<&str> = registry.names().collect();
            return send(Reply::Refused {
                reason: format!(
                    "worker {worker} does not serve an operator named `{name}` (it serves: {})",
                    served.join(", ")
                ),
            })
            .await;
        };
        if entry.signature() != &request.signature {
            return send(Reply::Refused {
                reason: format!(
                    "worker {worker} was built from another version of the program: its `{name}` \
                     is {}, the caller's is {}",
                    entry.signature(),
                    request.signature
                ),
            })
            .await;
        }
        let max_time = registry.worker_limits().chunk_time();
        let (mut options, rate) = match request.options.apply(get_execution_options(), max_time) {
            Ok(applied) => applied,
            Err(reason) => return send(Reply::Refused { reason }).await,
        };
        // An async chunk without a deadline of the caller's is capped as a whole (below), not
        // item by item: its items then take the lean path when nothing else applies.
        let capped = entry.is_async() && request.options.timeout.is_none();
        if capped {
            options.timeout_seconds = None;
        }
        let stop = Stop {
            flag: CancelFlag::child_of(None),
            notify: Arc::new(Notify::new()),
            items: Arc::default(),
            count: request.items.len(),
        };
        let (flag, notify) = (Arc::clone(&stop.flag), Arc::clone(&stop.notify));
        let item_stops = Arc::clone(&stop.items);
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(head.nonce, stop);
        let _registered = Registered {
            running: Arc::clone(&self.running),
            nonce: head.nonce,
        };
        send(Reply::Accepted {
            worker: worker.clone(),
        })
        .await;
        let heartbeat = tokio::spawn({
            let replier = replier.clone();
            async move {
                loop {
                    tokio::time::sleep(HEARTBEAT).await;
                    replier.send(Reply::Working).await;
                }
            }
        });
        let _heartbeat = AbortOnDrop(heartbeat);
        let items = request.items;
        let count = items.len();
        // Exactly the caller's options, under the chunk's trace root, with the chunk's
        // cancellation; no deadline or progress of this process (the options' timeout is the
        // chunk's).
        let root = trace::detached_root();
        let ambient = Ambient {
            options,
            context: CallContext {
                cancel: Some(flag),
                ..CallContext::default()
            },
            parent: Some(root.clone()),
            ..Ambient::default()
        };
        let work = {
            let _in = ambient.enter();
            entry.prepare(items, rate, item_stops)
        };
        // The items are read (their inputs borrowed from the message until now): what the queue
        // holds of the chunk is what they became.
        drop(message);
        let budget = wire::budget(client.server_info().max_payload);
        let ran = match work {
            Work::Async(mut future, mut streamed) => {
                // Outcomes go back as items finish; cancelled, the future — and every item
                // future in it — is dropped here.
                let cap = tokio::time::sleep(max_time);
                tokio::pin!(cap);
                let mut results = loop {
                    tokio::select! {
                        biased;
                        () = notify.notified() => return,
                        () = &mut cap, if capped => {
                            return send(Reply::Refused {
                                reason: format!(
                                    "the chunk ran longer than the worker allows ({max_time:?})"
                                ),
                            })
                            .await;
                        }
                        Some(first) = streamed.recv() => {
                            let mut ready = vec![first];
                            while let Ok(more) = streamed.try_recv() {
                                ready.push(more);
                            }
                            send_results(&replier, budget, ready).await;
                        }
                        results = &mut future => break results,
                    }
                };
                while let Ok(more) = streamed.try_recv() {
                    results.push(more);
                }
                let events = if options.trace_execution {
                    trace::take_under(trace::root_id(&root))
                } else {
                    Vec::new()
                };
                Ok((results, events, trace::root_id(&root)))
            }
            Work::Sync(run) => {
                let Ok(_permit) = slots.acquire_owned().await else {
                    return;
                };
                tokio::task::spawn_blocking(move || {
                    let results = {
                        let _in = ambient.enter();
                        // The worker's blocking threads are where sync items belong: not a sync
                        // call made from async code.
                        crate::warn::runtime_thread::sanctioned(run)
                    };
                    let events = if options.trace_execution {
                        trace::take_under(trace::root_id(&root))
                    } else {
                        Vec::new()
                    };
                    (results, events, trace::root_id(&root))
                })
                .await
            }
        };
        drop(_heartbeat);
        let (results, events, root) = match ran {
            Ok(ran) => ran,
            Err(error) => {
                return send(Reply::Refused {
                    reason: format!(
                        "the worker failed running the chunk of {count} items: {error}"
                    ),
                })
                .await;
            }
        };
        send_results(&replier, budget, results).await;
        let mut trace = Vec::new();
        let mut size = 0;
        for event in &events {
            size += 64 + event.operator.len() + event.thread.len();
            if size > budget {
                break;
            }
            trace.push(WireEvent::from_event(event));
        }
        send(Reply::Finished {
            received_at,
            root,
            trace,
        })
        .await;
        let _ = client.flush().await;
    }
}

/// Sends `results` in messages under the server's limit (`budget`); an output too large for any
/// message fails its item.
async fn send_results(replier: &Replier, budget: usize, results: Vec<ItemResult>) {
    let mut batch: Vec<ItemResult> = Vec::new();
    let mut size = 0;
    for mut result in results {
        // The index and the usage take at most 48 bytes.
        let mut len = match &result.result {
            Ok(bytes) => bytes.0.len(),
            Err(_) => 256,
        } + 48;
        if len > budget {
            result.result = Err(WireError::Cluster {
                reason: format!(
                    "its output ({len} bytes) is larger than the server's message limit"
                ),
            });
            len = 256;
        }
        if size + len > budget && !batch.is_empty() {
            replier
                .send(Reply::Results(std::mem::take(&mut batch)))
                .await;
            size = 0;
        }
        size += len;
        batch.push(result);
    }
    if !batch.is_empty() {
        replier.send(Reply::Results(batch)).await;
    }
}

/// Aborts a task when dropped (a chunk's heartbeat, on every way out of the chunk).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where the messages about one chunk go, and how they are marked as answers to it.
#[derive(Clone)]
struct Replier {
    client: async_nats::Client,
    reply: async_nats::Subject,
    nonce: Nonce,
    key: Option<Arc<[u8]>>,
}

impl Replier {
    async fn send(&self, reply: Reply) {
        let body = wire::encode(&ReplyMessage {
            nonce: self.nonce,
            reply,
        });
        let context = Context::Reply {
            reply: self.reply.as_str(),
        };
        let sealed = wire::seal(self.key.as_deref(), &context, body);
        let _ = self
            .client
            .publish(self.reply.clone(), Bytes::from(sealed))
            .await;
    }
}
