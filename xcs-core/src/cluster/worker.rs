//! A worker process: answers discovery, takes chunks of the operators its registry names from
//! the queue group, runs them under the caller's options and sends the outcomes back.
//!
//! A chunk is acknowledged at once and a heartbeat follows every 200 ms until its outcomes are
//! sent, so a caller tells a busy worker from a dead one. At most one chunk per CPU runs at a
//! time (the others wait, heartbeating); each runs as a settled `vmap` on the worker's pool.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::Semaphore;

use super::connect::{self, HEARTBEAT};
use super::registry::Registry;
use super::wire::{self, ItemResult, Reply, Request, WireError, WireEvent, WorkerInfo};
use crate::error::XcsError;
use crate::pool;
use crate::scope::get_execution_options;
use crate::trace;

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
    let client = connect::connect(url, "xcs worker").await?;
    let options = registry.cluster_options().clone();
    let pid = std::process::id();
    let info = WorkerInfo {
        protocol: wire::PROTOCOL,
        id: format!("{}-{pid}", host_name()),
        pid,
        slots: u32::try_from(pool::cpu_count()).unwrap_or(u32::MAX),
        operators: registry.signatures(),
    };
    let mut hello = client
        .subscribe(options.hello_subject())
        .await
        .map_err(|e| closed(e.to_string()))?;
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
    let registry = Arc::new(registry);
    let slots = Arc::new(Semaphore::new(pool::cpu_count()));
    let info_bytes = Bytes::from(wire::encode(&info));
    loop {
        tokio::select! {
            message = hello.next() => match message {
                Some(message) => {
                    if let Some(reply) = message.reply {
                        let _ = client.publish(reply, info_bytes.clone()).await;
                    }
                }
                None => break,
            },
            message = work.next(), if !registry.is_empty() => match message {
                Some(message) => {
                    tokio::spawn(handle(
                        client.clone(),
                        Arc::clone(&registry),
                        message,
                        Arc::clone(&slots),
                        info.id.clone(),
                    ));
                }
                None => break,
            },
        }
    }
    Err(closed("the connection to the server closed".into()))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned())
}

/// Answers one chunk.
async fn handle(
    client: async_nats::Client,
    registry: Arc<Registry>,
    message: async_nats::Message,
    slots: Arc<Semaphore>,
    worker: String,
) {
    let Some(reply) = message.reply else {
        return;
    };
    let received_at = trace::since_epoch();
    let replier = Replier {
        client: client.clone(),
        reply,
    };
    let send = |message: Reply| {
        let replier = replier.clone();
        async move { replier.send(message).await }
    };
    let request = match wire::decode::<Request>(&message.payload)
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
                "worker {worker} was built from another version of the program: its `{name}` is \
                 {}, the caller's is {}",
                entry.signature(),
                request.signature
            ),
        })
        .await;
    }
    let options = match request.options.apply(get_execution_options()) {
        Ok(options) => options,
        Err(reason) => return send(Reply::Refused { reason }).await,
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
    let Ok(_permit) = slots.acquire_owned().await else {
        heartbeat.abort();
        return;
    };
    let items = request.items;
    let count = items.len();
    let ran = tokio::task::spawn_blocking(move || {
        let root = trace::detached_root();
        let results = {
            let _under = trace::inherit(&root);
            entry.run(items, options)
        };
        let events = if options.trace_execution {
            trace::take_under(trace::root_id(&root))
        } else {
            Vec::new()
        };
        (results, events, trace::root_id(&root))
    })
    .await;
    heartbeat.abort();
    let (results, events, root) = match ran {
        Ok(ran) => ran,
        Err(error) => {
            return send(Reply::Refused {
                reason: format!("the worker failed running the chunk of {count} items: {error}"),
            })
            .await;
        }
    };
    // Outcomes in messages under the server's limit; an output too large for any message fails
    // its item.
    let budget = wire::budget(client.server_info().max_payload);
    let mut batch: Vec<ItemResult> = Vec::new();
    let mut size = 0;
    for mut result in results {
        let mut len = match &result.result {
            Ok(bytes) => bytes.0.len(),
            Err(_) => 256,
        } + 16;
        if len > budget {
            result.result = Err(WireError::Cluster {
                reason: format!(
                    "its output ({len} bytes) is larger than the server's message limit"
                ),
            });
            len = 256;
        }
        if size + len > budget && !batch.is_empty() {
            send(Reply::Results(std::mem::take(&mut batch))).await;
            size = 0;
        }
        size += len;
        batch.push(result);
    }
    if !batch.is_empty() {
        send(Reply::Results(batch)).await;
    }
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

/// Where the messages about one chunk go.
#[derive(Clone)]
struct Replier {
    client: async_nats::Client,
    reply: async_nats::Subject,
}

impl Replier {
    async fn send(&self, message: Reply) {
        let _ = self
            .client
            .publish(self.reply.clone(), Bytes::from(wire::encode(&message)))
            .await;
    }
}
