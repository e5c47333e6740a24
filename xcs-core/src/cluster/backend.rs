//! The caller's side: a device backend that sends a batch's items, in chunks, to the workers
//! of a NATS queue group and settles each item with the outcome that comes back.
//!
//! The dispatch loop runs on the thread that runs the batch (the caller's, or a job when the
//! caller enforces a deadline); the connection lives on a one-thread tokio runtime of the
//! backend's own, so a batch called from async code never blocks that code's runtime in a way
//! it could deadlock on. Per batch:
//!
//! 1. Discovery (cached for a second, and bounded: 2 s for a first answer, then 500 ms at most):
//!    the workers answer `<prefix>.hello` with the operators they serve, echoing its nonce. None: every item fails with [`XcsError::DeviceUnavailable`] at once; none that
//!    serves this operator, or only workers built from another version of it:
//!    [`XcsError::Cluster`] with the reason.
//! 2. Chunks of about a quarter of a fair share per worker slot (smaller when the message size
//!    limit asks), at most as many in flight as the workers have slots. `max_workers`, when
//!    set, bounds the items running at once across the cluster (that many chunks at most, each
//!    running its share at once); `use_parallel = false` runs one chunk at a time, its items
//!    in order. Items are taken when their chunk is formed, so an item after a failed one is not
//!    sent (unless the call is settled), and cache hits never leave the process.
//! 3. Each chunk is sent to `<prefix>.run.<operator>` with a reply subject of its own. The
//!    worker acknowledges it, reports every 200 ms while it works, and sends the outcomes. A
//!    chunk not heard of within the heartbeat timeout went to a worker that died: it is sent
//!    again (its unsettled items only) for another worker to take, up to
//!    [`ClusterOptions::max_attempts`] times, always within the caller's deadline. "No
//!    responders" on a chunk's first attempt (the last worker left) fails what is left with
//!    `DeviceUnavailable`; on a chunk sent again (the server restarted, the workers may be
//!    reconnecting) it is sent once more after a pause, as another attempt, and fails with
//!    `DeviceUnavailable` only when the attempts run out. A hung worker (stopped, not dead)
//!    goes silent like a dead one: its chunks go to another worker, and its late answers
//!    settle nothing twice. A worker whose queue is full answers `Busy`: the chunk is sent again
//!    after a pause (100 ms, doubling), as another attempt. Replies that are not authentic
//!    answers (see the [module docs](super)) are dropped.
//! 4. At the deadline (or when the caller gives up) the loop ends; items without an outcome are
//!    reported by the batch rules (timed out or cancelled). The workers got the remaining
//!    deadline with the chunk and stop on their own.
//!
//! Items nobody needs any more are cancelled on the workers as soon as that is known: a chunk
//! whose items still out are all unwanted by name (its nonce), single items of a chunk that goes
//! on by its nonce and their index in it. A sync batch's items after one that failed are
//! unwanted (the batch's answer is that error); an async batch's items are its trips, and a
//! trip is unwanted once nobody awaits it — a hedge's loser, an item whose future was dropped —
//! or its item is. An async item's hedge (or retry) is another trip, sent at once: first in the
//! next chunk, which goes out even when every chunk's place is taken.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};

// Maps keyed by item index, touched several times per item: foldhash, not SipHash (the keys
// are the caller's own indices; a worker's reply only looks them up).
use foldhash::{HashMap, HashMapExt};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};

use super::connect::{self, ClusterOptions};
use super::wire::{
    self, Cancel, Context, Hello, HelloAnswer, Item, Nonce, Reply, ReplyMessage, Request,
    WireEvent, WireOptions, WireSignature, WorkerInfo,
};
use crate::device::{
    self, AsyncBackend, Backend, BatchJob, OpenRemote, Opening, Outgoing, RemoteBatch, RemoteHedge,
    RemoteHedging, RemoteItems, RemoteOutcome, RemoteSink,
};
use crate::error::XcsError;
use crate::options::ExecutionOptions;
use crate::trace::{self, HedgeMark};
use crate::usage::Usage;

/// A device backend that runs batches on the worker processes of a NATS cluster (see the
/// [module docs](super)). Register it under a name and select it with `device_strategy`:
///
/// ```no_run
/// use xcs::cluster::NatsBackend;
/// use xcs::{Operator, execution_options, vmap};
///
/// #[xcs::operator]
/// fn score(x: u64) -> u64 {
///     x * 3
/// }
///
/// xcs::register_backend("cluster", NatsBackend::connect("nats://127.0.0.1:4222")?)?;
/// let inputs = ScoreInputs::batch(vec![1u64, 2, 3])?;
/// let scores = execution_options!(device_strategy = "cluster" => vmap(Score).call(inputs))?;
/// assert_eq!(scores, [3, 6, 9]);
/// # Ok::<(), xcs::XcsError>(())
/// ```
#[derive(Clone)]
pub struct NatsBackend {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    client: async_nats::Client,
    options: ClusterOptions,
    url: String,
    /// The last discovery, and when.
    workers: Mutex<Option<(Instant, Arc<Found>)>>,
    /// Whether a discovery is being asked in the background (see `discover_async`).
    refreshing: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping a runtime may happen on any thread, also inside another runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A worker found by [`NatsBackend::workers`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSummary {
    /// The worker's id (host and process id).
    pub id: String,
    /// Its process id.
    pub pid: u32,
    /// How many chunks it runs at once.
    pub slots: usize,
    /// The names of the operators it serves.
    pub operators: Vec<String>,
}

/// How long a discovery stays fresh.
const DISCOVERY_TTL: Duration = Duration::from_secs(1);

/// How long an async batch may start on a discovery that is no longer fresh (one that found
/// workers), while a fresh one is asked in the background.
const DISCOVERY_STALE: Duration = Duration::from_secs(10);

/// How long discovery waits for a first answer.
const FIRST_ANSWER: Duration = Duration::from_secs(2);

/// Discovery ends this long after the first answer, or after this long without one more,
/// whichever comes first (so it never lasts more than `FIRST_ANSWER + DISCOVERY_WINDOW`,
/// however fast answers keep coming), or at `MAX_ANSWERS` answers.
const DISCOVERY_WINDOW: Duration = Duration::from_millis(500);
const DISCOVERY_QUIET: Duration = Duration::from_millis(50);
const MAX_ANSWERS: usize = 4096;

/// What a discovery found.
#[derive(Default, Debug)]
struct Found {
    /// The workers whose answers are authentic (under a cluster key: signed with it).
    workers: Vec<WorkerInfo>,
    /// Answers that were not: unsigned or signed with another key (only under a key).
    unsigned: usize,
    /// Workers that take only signed requests (only without a key).
    keyed: usize,
}

impl NatsBackend {
    /// Connects to the NATS server at `url` with the default [`ClusterOptions`]. Credentials
    /// come from the URL (`nats://user:password@host:port`, `nats://token@host:port`) or the
    /// environment; see the [module docs](super).
    ///
    /// # Errors
    /// [`XcsError::Connect`] when the server cannot be reached or refuses the credentials.
    pub fn connect(url: &str) -> Result<NatsBackend, XcsError> {
        NatsBackend::connect_with(url, ClusterOptions::default())
    }

    /// Connects with `options` (the subject prefix must match the workers').
    ///
    /// # Errors
    /// As [`connect`](NatsBackend::connect).
    pub fn connect_with(url: &str, options: ClusterOptions) -> Result<NatsBackend, XcsError> {
        let shown = connect::strip_userinfo(url);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("xcs-nats")
            .enable_all()
            .build()
            .map_err(|e| XcsError::Connect {
                url: shown.clone(),
                reason: format!("cannot start the client's runtime: {e}"),
            })?;
        let handle = runtime.handle().clone();
        let owned = url.to_owned();
        let prefix = options.inbox_prefix_set().map(str::to_owned);
        let client = on(&handle, async move {
            connect::connect(&owned, "xcs caller", prefix.as_deref()).await
        })
        .ok_or_else(|| XcsError::Connect {
            url: shown.clone(),
            reason: "the client's runtime stopped".into(),
        })??;
        Ok(NatsBackend {
            inner: Arc::new(Inner {
                runtime: Some(runtime),
                handle,
                client,
                options,
                url: shown,
                workers: Mutex::new(None),
                refreshing: AtomicBool::new(false),
            }),
        })
    }

    /// The workers listening now (asked afresh).
    ///
    /// # Errors
    /// [`XcsError::Connect`] when the connection to the server is lost.
    pub fn workers(&self) -> Result<Vec<WorkerSummary>, XcsError> {
        let found = self.discover(true)?;
        Ok(found
            .workers
            .iter()
            .map(|w| WorkerSummary {
                id: w.id.clone(),
                pid: w.pid,
                slots: w.slots as usize,
                operators: w.operators.iter().map(|s| s.operator.clone()).collect(),
            })
            .collect())
    }

    /// The error of items whose answers cannot come: the connection is gone.
    fn lost(&self) -> impl Fn(usize) -> XcsError + use<> {
        let url = self.inner.url.clone();
        move |_| XcsError::Connect {
            url: url.clone(),
            reason: "the connection to the server is lost".into(),
        }
    }

    /// The last discovery, if it is fresh (and found some).
    fn cached(&self) -> Option<Arc<Found>> {
        self.cached_within(DISCOVERY_TTL)
    }

    /// The last discovery, if it is younger than `age` (and found some).
    fn cached_within(&self, age: Duration) -> Option<Arc<Found>> {
        let cached = self
            .inner
            .workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match &*cached {
            Some((at, found)) if at.elapsed() < age && !found.workers.is_empty() => {
                Some(Arc::clone(found))
            }
            _ => None,
        }
    }

    /// Keeps `found` as the last discovery.
    fn keep(&self, found: Result<Found, String>) -> Result<Arc<Found>, XcsError> {
        let found = Arc::new(found.map_err(|reason| XcsError::Connect {
            url: self.inner.url.clone(),
            reason,
        })?);
        *self
            .inner
            .workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), Arc::clone(&found)));
        Ok(found)
    }

    /// The workers, from the last discovery if it is fresh (and found some).
    fn discover(&self, fresh: bool) -> Result<Arc<Found>, XcsError> {
        if let Some(found) = self.cached().filter(|_| !fresh) {
            return Ok(found);
        }
        let found = on(&self.inner.handle, self.ask())
            .unwrap_or_else(|| Err("the client's runtime stopped".into()));
        self.keep(found)
    }

    /// [`discover`](Self::discover) from async code: the question is asked on the backend's
    /// runtime and awaited.
    ///
    /// A discovery that is no longer fresh but found workers a short while ago
    /// ([`DISCOVERY_STALE`]) serves at once while a fresh one is asked in the background: a batch
    /// does not wait for the discovery's quiet period (tens of milliseconds) every second. Had
    /// every worker gone since, the batch's first chunk learns it from the server and its items
    /// fail with the same [`XcsError::DeviceUnavailable`].
    async fn discover_async(&self) -> Result<Arc<Found>, XcsError> {
        if let Some(found) = self.cached() {
            return Ok(found);
        }
        if let Some(found) = self.cached_within(DISCOVERY_STALE) {
            if !self.inner.refreshing.swap(true, AtomicOrdering::AcqRel) {
                let backend = self.clone();
                self.inner.handle.spawn(async move {
                    let found = backend.ask().await;
                    // A failed discovery keeps the last one until it is too old.
                    let _ = backend.keep(found);
                    backend
                        .inner
                        .refreshing
                        .store(false, AtomicOrdering::Release);
                });
            }
            return Ok(found);
        }
        let found = self
            .inner
            .handle
            .spawn(self.ask())
            .await
            .unwrap_or_else(|_| Err("the client's runtime stopped".into()));
        self.keep(found)
    }

    /// Asks the workers who they are (run on the backend's runtime).
    fn ask(&self) -> impl Future<Output = Result<Found, String>> + Send + 'static + use<> {
        let inner = &self.inner;
        let client = inner.client.clone();
        let subject = inner.options.hello_subject();
        let key: Option<Arc<[u8]>> = inner.options.key().map(Into::into);
        async move {
            let nonce = wire::nonce().ok_or("the operating system gave no random bytes")?;
            let inbox = client.new_inbox();
            let mut answers = client
                .subscribe(inbox.clone())
                .await
                .map_err(|e| e.to_string())?;
            let hello = wire::seal(
                key.as_deref(),
                &Context::Hello { reply: &inbox },
                wire::encode(&Hello {
                    protocol: wire::PROTOCOL,
                    nonce,
                }),
            );
            client
                .publish_with_reply(subject, inbox.clone(), Bytes::from(hello))
                .await
                .map_err(|e| e.to_string())?;
            client.flush().await.map_err(|e| e.to_string())?;
            let mut found = Found::default();
            // The first answer (or the server's "no responders") comes at once; the others
            // within a short quiet period after it, and never after the window.
            let mut wait = FIRST_ANSWER;
            let mut until: Option<tokio::time::Instant> = None;
            let mut answered = 0;
            while let Ok(Some(message)) = tokio::time::timeout(wait, answers.next()).await {
                if message.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                    break;
                }
                answered += 1;
                let context = Context::HelloAnswer { reply: &inbox };
                match wire::open(key.as_deref(), &context, &message.payload) {
                    Some(body) => {
                        if let Ok(answer) = wire::decode::<HelloAnswer>(body) {
                            if same(&answer.nonce, &nonce) {
                                if answer.info.keyed && key.is_none() {
                                    found.keyed += 1;
                                } else {
                                    found.workers.push(answer.info);
                                }
                            }
                        }
                    }
                    None => {
                        if wire::decode::<HelloAnswer>(&message.payload)
                            .is_ok_and(|answer| same(&answer.nonce, &nonce))
                        {
                            found.unsigned += 1;
                        }
                    }
                }
                let now = tokio::time::Instant::now();
                let end = *until.get_or_insert(now + DISCOVERY_WINDOW);
                if answered >= MAX_ANSWERS || now >= end {
                    break;
                }
                wait = DISCOVERY_QUIET.min(end - now);
            }
            let _ = answers.unsubscribe().await;
            Ok::<_, String>(found)
        }
    }
}

/// Whether two nonces are equal, in time that does not depend on where they differ.
fn same(a: &Nonce, b: &Nonce) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl std::fmt::Debug for NatsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBackend")
            .field("url", &self.inner.url)
            .field("prefix", &self.inner.options.subject_prefix())
            .finish_non_exhaustive()
    }
}

/// Runs `future` on the backend's runtime and waits for it on this thread (`None`: the runtime
/// is gone). Never called on the backend's own runtime threads.
fn on<F>(handle: &tokio::runtime::Handle, future: F) -> Option<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (sender, receiver) = mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = sender.send(future.await);
    });
    receiver.recv().ok()
}

impl Backend for NatsBackend {
    fn run(&self, job: &BatchJob) {
        if job.is_empty() {
            return;
        }
        let Some(remote) = job.remote() else {
            for index in 0..job.len() {
                job.fail_item(
                    index,
                    XcsError::Cluster {
                        operator: job.operator().to_owned(),
                        index: Some(index),
                        reason: "its input and output are not serializable: give the operator \
                                 serde types (or implement `Operator::persist_support`)"
                            .into(),
                    },
                );
            }
            return;
        };
        let signature = WireSignature::from(remote.signature());
        let workers = match self.discover(false) {
            Ok(workers) => workers,
            Err(error) => return fail_all(job, remote, &|_| error.describe_again()),
        };
        let serving = match serving_in(&workers, &signature, job.operator(), || {
            job.strategy().as_str().to_owned()
        }) {
            Ok(serving) => serving,
            Err(error) => {
                return fail_all(job, remote, &|index| error.describe_again().at_index(index));
            }
        };
        let side = SyncSide {
            job,
            remote,
            hedging: remote.hedging().map(|items| Hedging::new(items, job.len())),
        };
        Dispatch::new(self, &side, &job.options(), signature, serving).run(&side);
    }

    fn __xcs_async(&self) -> Option<AsyncBackend> {
        Some(AsyncBackend {
            open: Arc::new(self.clone()),
        })
    }
}

impl OpenRemote for NatsBackend {
    fn open(&self, batch: RemoteBatch) -> Opening {
        let backend = self.clone();
        Box::pin(async move { backend.open_async(batch).await })
    }
}

impl NatsBackend {
    /// Starts an async batch: discovery (failing at once as a sync batch's items do), then a
    /// dispatch task on the backend's runtime that the batch's items are submitted to.
    async fn open_async(&self, batch: RemoteBatch) -> Result<Arc<dyn RemoteSink>, XcsError> {
        let signature = WireSignature::from(&batch.signature);
        let found = self.discover_async().await?;
        let serving = serving_in(&found, &signature, &batch.signature.operator, || {
            batch.strategy.clone()
        })?;
        let (sender, submissions) = tokio::sync::mpsc::unbounded_channel();
        // Items go to the task a chunk's worth at a time (or at a flush).
        let batch_len = chunk_len(batch.len, serving.1);
        let backend = self.clone();
        self.inner.handle.spawn(async move {
            dispatch_async(backend, batch, signature, serving, submissions).await;
        });
        Ok(Arc::new(Sink {
            sender,
            held: Mutex::new(Vec::new()),
            batch_len,
            dirty: AtomicBool::new(false),
            trips: AtomicUsize::new(0),
        }))
    }
}

/// How many items of a batch of `len` go in one chunk, when its workers have `slots` slots in
/// all: four chunks per slot.
fn chunk_len(len: usize, slots: usize) -> usize {
    (len / (4 * slots.max(1))).clamp(1, wire::MAX_ITEMS)
}

/// A trip of an item to run (its index, the trip's number: a hedged item makes two), and where
/// its outcome goes.
type Submitted = (
    usize,
    usize,
    Vec<u8>,
    tokio::sync::oneshot::Sender<RemoteOutcome>,
);

/// What an async batch sends its dispatch task.
enum Submission {
    /// Trips of items to run, in the order they were submitted.
    Items(Vec<Submitted>),
    /// Everything the batch can submit for now is there: partial chunks may go.
    Flush,
}

/// An async batch's way to its dispatch task. Dropped with the batch: the task then cancels
/// what is still out and ends.
///
/// Items are held here and go to the task together, a chunk's worth at a time or when the batch
/// flushes: one message and at most one wake-up of the task for many items, not one each.
struct Sink {
    sender: tokio::sync::mpsc::UnboundedSender<Submission>,
    /// Items submitted and not sent to the task yet.
    held: Mutex<Vec<Submitted>>,
    /// How many held items go to the task without waiting for a flush.
    batch_len: usize,
    /// Whether items came since the last flush.
    dirty: AtomicBool,
    /// The number of the next trip: each submission is one, answered on its own.
    trips: AtomicUsize,
}

impl RemoteSink for Sink {
    fn submit(
        &self,
        index: usize,
        input: Vec<u8>,
    ) -> tokio::sync::oneshot::Receiver<RemoteOutcome> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let trip = self.trips.fetch_add(1, AtomicOrdering::Relaxed);
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.push((index, trip, input, sender));
        self.dirty.store(true, AtomicOrdering::Release);
        if held.len() >= self.batch_len {
            let items = std::mem::replace(&mut *held, Vec::with_capacity(self.batch_len));
            drop(held);
            // A task that is gone drops the senders: the items see it.
            let _ = self.sender.send(Submission::Items(items));
        }
        receiver
    }

    fn flush(&self) {
        if !self.dirty.swap(false, AtomicOrdering::AcqRel) {
            return;
        }
        let items = std::mem::take(&mut *self.held.lock().unwrap_or_else(PoisonError::into_inner));
        if !items.is_empty() {
            let _ = self.sender.send(Submission::Items(items));
        }
        let _ = self.sender.send(Submission::Flush);
    }
}

/// Where a trip's outcome goes: its item's index, and the item's future waiting for it.
type Waiter = (usize, tokio::sync::oneshot::Sender<RemoteOutcome>);

/// An async batch's side: the items' futures, waiting for their outcomes. Its items are
/// trips, keyed by their number: a hedged item makes two, each answered (or cancelled) on its
/// own.
struct AsyncSide {
    batch: RemoteBatch,
    waiting: Mutex<HashMap<usize, Waiter>>,
}

impl AsyncSide {
    /// Whether nobody waits for trip `trip`: its future was dropped (the trip lost a hedge's
    /// race, or the item is gone), or the batch says so of its item.
    fn unwanted(&self, trip: usize) -> bool {
        let waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        match waiting.get(&trip) {
            Some((index, sender)) => sender.is_closed() || (self.batch.unwanted)(*index),
            None => true,
        }
    }

    /// Settles every item waiting with `error(index)`.
    fn fail_waiting(&self, error: &dyn Fn(usize) -> XcsError) {
        let waiting: Vec<_> = self
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        for (_, (index, sender)) in waiting {
            let _ = sender.send(RemoteOutcome {
                result: Err(error(index)),
                usage: None,
            });
        }
    }
}

impl Side for AsyncSide {
    fn operator(&self) -> &str {
        &self.batch.signature.operator
    }

    fn strategy(&self) -> String {
        self.batch.strategy.clone()
    }

    fn deadline(&self) -> Option<Instant> {
        self.batch.deadline
    }

    /// The caller applies the rate limit and the retries (each attempt admitted here) and
    /// records the items' trace events: a chunk carries none of them.
    fn wire_options(
        &self,
        timeout: Option<Duration>,
        workers: usize,
        per_chunk: Option<usize>,
    ) -> WireOptions {
        let options = ExecutionOptions {
            max_retries: 0,
            rate_limit: None,
            // Each item's event is recorded here, with its usage and its wait for the resource.
            trace_execution: false,
            ..self.batch.options
        };
        WireOptions::from_caller(&options, timeout, workers, per_chunk)
    }

    /// Trip `trip`'s outcome; an error names the trip's item.
    fn complete(&self, trip: usize, result: Result<Vec<u8>, XcsError>, usage: Option<Usage>) {
        let waiter = self
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&trip);
        if let Some((index, sender)) = waiter {
            let result = result.map_err(|error| error.at_index(index));
            let _ = sender.send(RemoteOutcome { result, usage });
        }
    }

    fn is_settled(&self, index: usize) -> bool {
        !self
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&index)
    }

    fn trace_parent(&self) -> Option<trace::Parent> {
        self.batch.trace_parent.clone()
    }
}

/// How often a batch's dispatch looks for items nobody awaits any more (and for workers gone
/// silent).
const SWEEP: Duration = Duration::from_millis(20);

/// How long an async batch's dispatch task waits for something to happen before it sweeps.
const TICK: Duration = Duration::from_millis(100);

/// An async batch's dispatch task, on the backend's runtime: items come from the batch, go out
/// in chunks (full ones at once, the rest when the batch flushes), and their outcomes go back to
/// the items' futures. Chunks whose items nobody awaits any more are cancelled; when the batch is
/// dropped, everything still out is.
async fn dispatch_async(
    backend: NatsBackend,
    batch: RemoteBatch,
    signature: WireSignature,
    serving: (usize, usize),
    mut submissions: tokio::sync::mpsc::UnboundedReceiver<Submission>,
) {
    let len = batch.len;
    let options = batch.options;
    let side = AsyncSide {
        batch,
        waiting: Mutex::new(HashMap::new()),
    };
    let mut dispatch = Dispatch::new(&backend, &side, &options, signature, serving);
    // Async items hold no CPU while they wait: every chunk of the batch may be out at once
    // (four per worker slot), within what a worker holds by default (eight per CPU). The
    // caller keeps at most `max_workers` items in flight itself: a chunk runs all it carries.
    if options.use_parallel {
        dispatch.in_flight = dispatch.slots.max(1) * 4;
        dispatch.per_chunk = None;
    }
    let inner = &backend.inner;
    let lost = backend.lost();
    let mut subscription = match inner
        .client
        .subscribe(format!("{}.>", dispatch.inbox))
        .await
    {
        Ok(subscription) => subscription,
        Err(_) => {
            // Every item that comes fails: the connection is gone.
            while let Some(submission) = submissions.recv().await {
                if let Submission::Items(items) = submission {
                    for (index, _, _, sender) in items {
                        let _ = sender.send(RemoteOutcome {
                            result: Err(lost(index)),
                            usage: None,
                        });
                    }
                }
            }
            return;
        }
    };
    let chunk_len = chunk_len(len, dispatch.slots);
    let budget = wire::budget(inner.client.server_info().max_payload);
    let heartbeat = inner.options.heartbeat();
    let mut pending: std::collections::VecDeque<(usize, Vec<u8>)> = Default::default();
    let mut flush = false;
    let mut open = true;
    // Why items that come now fail at once: no worker listens, or the connection is gone.
    let mut failing: Option<Box<dyn Fn(usize) -> XcsError + Send>> = None;
    let mut next_chunk = 0u64;
    let mut swept = Instant::now();
    let mut listening = true;
    // Which items made a trip already: a later trip of one (its hedge, or a retry) goes out at
    // once, first in line and even when every chunk's place is taken (its first trip's chunk
    // may hold that place until the hedge has won). `urgent`: how many such trips lead `pending`.
    let mut seen = vec![false; len];
    let mut urgent = 0usize;
    // Wakes the task when nothing else does, for the sweeps; one timer for the whole batch.
    let tick = tokio::time::sleep(TICK);
    tokio::pin!(tick);
    loop {
        let mut sent = false;
        // Chunks while there is room: full ones, or what is there once the batch flushed.
        while !pending.is_empty()
            && (urgent > 0
                || (dispatch.flights.len() < dispatch.in_flight
                    && (flush || pending.len() >= chunk_len)))
        {
            let mut items = HashMap::with_capacity(chunk_len.min(pending.len()));
            let mut bytes = 0;
            while items.len() < chunk_len {
                let Some((index, input)) = pending.pop_front() else {
                    break;
                };
                let was_urgent = urgent > 0;
                urgent = urgent.saturating_sub(1);
                // Not sent when nobody waits for it (an earlier item failed): not started.
                if side.unwanted(index) {
                    side.complete(
                        index,
                        Err(XcsError::Cancelled {
                            operator: side.operator().to_owned(),
                            index: Some(index),
                        }),
                        None,
                    );
                    continue;
                }
                let size = input.len() + 16;
                if size > budget {
                    side.complete(
                        index,
                        Err(XcsError::Cluster {
                            operator: side.operator().to_owned(),
                            index: Some(index),
                            reason: format!(
                                "its input ({size} bytes) is larger than the server's message \
                                 limit"
                            ),
                        }),
                        None,
                    );
                    continue;
                }
                if bytes + size > budget && !items.is_empty() {
                    pending.push_front((index, input));
                    urgent += usize::from(was_urgent);
                    break;
                }
                bytes += size;
                items.insert(index, input);
            }
            if items.is_empty() {
                continue;
            }
            let id = next_chunk;
            next_chunk += 1;
            dispatch.flights.insert(id, Flight::new(items));
            dispatch.send(id);
            sent = true;
        }
        if sent {
            // The chunks go out now, not once the batch stops submitting: the publications
            // and the connection run on this runtime's thread too.
            tokio::task::yield_now().await;
        }
        if pending.is_empty() {
            flush = false;
        }
        if !open && dispatch.flights.is_empty() {
            break;
        }
        tokio::select! {
            submission = submissions.recv(), if open => {
                // Everything the batch submitted so far, at once.
                let mut next = Some(submission);
                while let Some(submission) = next.take() {
                    match submission {
                        Some(Submission::Items(items)) => match &failing {
                            Some(error) => {
                                for (index, _, _, sender) in items {
                                    let _ = sender.send(RemoteOutcome {
                                        result: Err(error(index)),
                                        usage: None,
                                    });
                                }
                            }
                            None => {
                                let mut waiting = side
                                    .waiting
                                    .lock()
                                    .unwrap_or_else(PoisonError::into_inner);
                                for (index, trip, input, sender) in items {
                                    waiting.insert(trip, (index, sender));
                                    match seen.get_mut(index) {
                                        Some(seen) if !*seen => {
                                            *seen = true;
                                            pending.push_back((trip, input));
                                        }
                                        _ => {
                                            pending.push_front((trip, input));
                                            urgent += 1;
                                        }
                                    }
                                }
                            }
                        },
                        Some(Submission::Flush) => flush = true,
                        None => {
                            // The batch is gone (done, dropped, or past its deadline).
                            open = false;
                            pending.clear();
                            urgent = 0;
                            dispatch.cancel_all();
                            break;
                        }
                    }
                    next = match submissions.try_recv() {
                        Ok(submission) => Some(Some(submission)),
                        Err(tokio::sync::mpsc::error::TryRecvError::Empty) => None,
                        Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => Some(None),
                    };
                }
            },
            message = subscription.next(), if listening => match message {
                Some(message) => {
                    let mut no_workers = dispatch.receive(message);
                    while !no_workers {
                        match subscription.next().now_or_never() {
                            Some(Some(message)) => no_workers = dispatch.receive(message),
                            _ => break,
                        }
                    }
                    if no_workers {
                        let strategy = side.strategy();
                        failing = Some(Box::new(move |_| unavailable_in(strategy.clone())));
                    }
                }
                None => {
                    // The connection closed for good: nothing more will come.
                    listening = false;
                    failing = Some(Box::new(backend.lost()));
                }
            },
            () = &mut tick => {
                tick.as_mut().reset(tokio::time::Instant::now() + TICK);
            }
        }
        if let Some(error) = &failing {
            // What is out or held back will not be answered either.
            pending.clear();
            urgent = 0;
            dispatch.flights.clear();
            side.fail_waiting(&**error);
        }
        // Swept now and then, not on every message: it looks at every item out. Silent
        // workers are looked for as often (a heartbeat's timeout is far longer).
        if swept.elapsed() >= SWEEP {
            swept = Instant::now();
            dispatch.cancel_unwanted(&|index| side.unwanted(index));
            dispatch.check_heartbeats(heartbeat);
        }
    }
    let _ = subscription.unsubscribe().await;
}

/// The workers of `found` that serve `signature` (their number and slots), or why none does:
/// [`XcsError::DeviceUnavailable`] (under `strategy`) when no worker answered,
/// [`XcsError::Cluster`] with the reason otherwise.
fn serving_in(
    found: &Found,
    signature: &WireSignature,
    operator: &str,
    strategy: impl FnOnce() -> String,
) -> Result<(usize, usize), XcsError> {
    let refused = |reason: String| XcsError::Cluster {
        operator: operator.to_owned(),
        index: None,
        reason,
    };
    match serving(&found.workers, signature) {
        Ok(serving) => Ok(serving),
        Err(Unavailable::NoWorkers) if found.keyed > 0 => Err(refused(format!(
            "{} workers answered, but they take only requests signed with a cluster key and \
             this caller has none (`ClusterOptions::cluster_key`, or `{}`)",
            found.keyed,
            connect::KEY_VARIABLE
        ))),
        Err(Unavailable::NoWorkers) if found.unsigned > 0 => Err(refused(format!(
            "{} workers answered, but none with this caller's cluster key: give the callers \
             and the workers the same key",
            found.unsigned
        ))),
        Err(Unavailable::NoWorkers) => Err(unavailable_in(strategy())),
        Err(Unavailable::Refused(reason)) => Err(refused(reason)),
    }
}

/// The error of an item that found no worker.
fn unavailable(job: &BatchJob) -> XcsError {
    unavailable_in(job.strategy().as_str().to_owned())
}

/// The error of an item of a batch under `strategy` that found no worker.
fn unavailable_in(strategy: String) -> XcsError {
    XcsError::DeviceUnavailable {
        strategy,
        registered: device::registered_backends(),
    }
}

/// Fails every item that has to be sent with `error(index)`: items the cache answers are
/// answered, items the batch rules skip stay unstarted.
fn fail_all(job: &BatchJob, remote: &RemoteItems, error: &dyn Fn(usize) -> XcsError) {
    fail_from(job, remote, 0, error);
}

/// [`fail_all`] for the items from `start` on.
fn fail_from(
    job: &BatchJob,
    remote: &RemoteItems,
    start: usize,
    error: &dyn Fn(usize) -> XcsError,
) {
    for index in start..job.len() {
        if let Outgoing::Input(_) = remote.take(index) {
            remote.complete(index, Err(error(index)));
        }
    }
}

enum Unavailable {
    NoWorkers,
    Refused(String),
}

/// The workers that serve `signature`: their number and slots.
fn serving(
    workers: &[WorkerInfo],
    signature: &WireSignature,
) -> Result<(usize, usize), Unavailable> {
    if workers.is_empty() {
        return Err(Unavailable::NoWorkers);
    }
    let name = &signature.operator;
    let by_name: Vec<&WorkerInfo> = workers
        .iter()
        .filter(|w| w.operators.iter().any(|s| &s.operator == name))
        .collect();
    if by_name.is_empty() {
        let mut served: Vec<&str> = workers
            .iter()
            .flat_map(|w| w.operators.iter().map(|s| s.operator.as_str()))
            .collect();
        served.sort_unstable();
        served.dedup();
        return Err(Unavailable::Refused(format!(
            "none of the {} workers serves an operator named `{name}` (they serve: {})",
            workers.len(),
            if served.is_empty() {
                "nothing".to_owned()
            } else {
                served.join(", ")
            }
        )));
    }
    let matching: Vec<&&WorkerInfo> = by_name
        .iter()
        .filter(|w| w.protocol == wire::PROTOCOL && w.operators.iter().any(|s| s == signature))
        .collect();
    if matching.is_empty() {
        let theirs = by_name
            .iter()
            .flat_map(|w| w.operators.iter().filter(|s| &s.operator == name))
            .map(ToString::to_string)
            .next()
            .unwrap_or_default();
        return Err(Unavailable::Refused(format!(
            "the workers were built from another version of the program: their `{name}` is \
             {theirs}, this program's is {signature}"
        )));
    }
    let slots = matching.iter().map(|w| w.slots.max(1) as usize).sum();
    Ok((matching.len(), slots))
}

/// The first pause before a chunk a worker was too busy for is sent again (doubled on each
/// attempt, up to half the heartbeat timeout).
const BUSY_PAUSE: Duration = Duration::from_millis(100);

/// How long a sync batch whose hedged items all have their outcome waits for the chunks still
/// out (their losers were cancelled; their finished items' trace events are on the way).
const LOSERS_GRACE: Duration = Duration::from_millis(250);

impl Flight {
    /// A chunk of `inputs` (by key), not sent yet.
    fn new(inputs: HashMap<usize, Vec<u8>>) -> Flight {
        Flight {
            attempts: Vec::new(),
            nonces: Vec::new(),
            answered: false,
            retry_at: None,
            note: None,
            inputs,
            heard: Instant::now(),
            sent_at: Duration::ZERO,
            worker: String::new(),
            usage: HashMap::new(),
            unheard: false,
        }
    }
}

/// A chunk sent out and not finished.
struct Flight {
    /// The keys of each attempt's items (see [`Side`]), in the order they were sent.
    attempts: Vec<Vec<usize>>,
    /// The nonce of each attempt: a reply about the attempt must carry it.
    nonces: Vec<Nonce>,
    /// Whether an authentic reply about the last attempt came.
    answered: bool,
    /// When to send the chunk again: a worker answered `Busy`.
    retry_at: Option<Instant>,
    /// Why the chunk may go unanswered: an unsigned refusal (under a cluster key), or the
    /// reason of the last `Busy`.
    note: Option<String>,
    /// The serialized inputs, by key, kept to send the chunk again.
    inputs: HashMap<usize, Vec<u8>>,
    heard: Instant,
    /// When the last attempt was sent, on the trace clock.
    sent_at: Duration,
    worker: String,
    /// What the items reported recording, for their trace events.
    usage: HashMap<usize, Usage>,
    /// Whether the last attempt found no worker listening.
    unheard: bool,
}

/// The caller's side of a batch on the cluster: where outcomes go. A sync batch's is its
/// [`BatchJob`] and [`RemoteItems`]; an async batch's is the items' futures waiting for them.
/// What it settles are keys: a sync batch's item indices, an async batch's trips (a hedged item
/// makes two). A chunk names its items by their keys.
trait Side: Sync {
    fn operator(&self) -> &str;
    /// The strategy that selected the backend (for `DeviceUnavailable`).
    fn strategy(&self) -> String;
    fn deadline(&self) -> Option<Instant>;
    /// The options a chunk carries, with `timeout` left, shared by `workers` workers, `per_chunk`
    /// items at once at most.
    fn wire_options(
        &self,
        timeout: Option<Duration>,
        workers: usize,
        per_chunk: Option<usize>,
    ) -> WireOptions;
    /// The outcome of item (or trip) `index`, with what its body recorded on the worker.
    fn complete(&self, index: usize, result: Result<Vec<u8>, XcsError>, usage: Option<Usage>);
    fn is_settled(&self, index: usize) -> bool;
    fn trace_parent(&self) -> Option<trace::Parent>;
    /// The item in the batch a key names (the key itself unless trips are keyed apart).
    fn item_of(&self, key: usize) -> usize {
        key
    }
    /// For a trip of a hedged item: its part in the race, and whether it lost while out (then
    /// it was cancelled).
    fn race_of(&self, _key: usize) -> Option<(HedgeMark, bool)> {
        None
    }
}

/// A sync batch's side.
struct SyncSide<'a> {
    job: &'a BatchJob,
    remote: &'a RemoteItems,
    /// The items' hedging, when the batch hedges them: keys `0..len` are then the items' first
    /// trips and `len..2 * len` their hedges.
    hedging: Option<Hedging<'a>>,
}

/// A sync batch's hedged items (see [`RemoteHedging`]): which trips have their outcome, and
/// which lost a race while still out.
struct Hedging<'a> {
    items: Box<dyn RemoteHedging + 'a>,
    len: usize,
    /// Whether each trip has its outcome (first trips, then hedges).
    reported: Vec<AtomicBool>,
    /// Whether each item's hedge was sent.
    hedged: Vec<AtomicBool>,
    /// Whether each trip lost its race while out (it is cancelled).
    lost: Vec<AtomicBool>,
    /// The trips that lost since the dispatch last looked: to cancel on their workers.
    losers: Mutex<Vec<usize>>,
}

impl<'a> Hedging<'a> {
    fn new(items: Box<dyn RemoteHedging + 'a>, len: usize) -> Self {
        let flags = |n: usize| (0..n).map(|_| AtomicBool::new(false)).collect();
        Hedging {
            items,
            len,
            reported: flags(2 * len),
            hedged: flags(len),
            lost: flags(2 * len),
            losers: Mutex::new(Vec::new()),
        }
    }

    fn flag(flags: &[AtomicBool], at: usize) -> bool {
        flags
            .get(at)
            .is_some_and(|f| f.load(AtomicOrdering::Acquire))
    }
}

impl SyncSide<'_> {
    /// The item a key names.
    fn item(&self, key: usize) -> usize {
        match &self.hedging {
            Some(hedging) if hedging.len > 0 => key % hedging.len,
            _ => key,
        }
    }

    /// Item `index`, to send (through its hedging, when the batch hedges).
    fn take(&self, index: usize) -> Outgoing {
        match &self.hedging {
            Some(hedging) => hedging.items.take(index),
            None => self.remote.take(index),
        }
    }

    /// Whether the item of `key` is no longer needed: an earlier item failed.
    fn unwanted(&self, key: usize) -> bool {
        self.remote.unwanted(self.item(key))
    }

    /// After item `index`'s first trip went out: when to ask for its hedge.
    fn hedge_at(&self, index: usize) -> Option<Instant> {
        self.hedging.as_ref()?.items.hedge_at(index)
    }

    /// Item `index`'s hedge is due: its input to send (as trip `len + index`), a later instant
    /// to ask again, or no hedge.
    fn hedge(&self, index: usize) -> RemoteHedge {
        let Some(hedging) = &self.hedging else {
            return RemoteHedge::Never;
        };
        if self.remote.is_settled(index) {
            return RemoteHedge::Never;
        }
        let hedge = hedging.items.hedge(index);
        if let (RemoteHedge::Send(_), Some(sent)) = (&hedge, hedging.hedged.get(index)) {
            sent.store(true, AtomicOrdering::Release);
        }
        hedge
    }

    /// Whether trip `key` lost its race while out (it was cancelled).
    fn lost(&self, key: usize) -> bool {
        self.hedging
            .as_ref()
            .is_some_and(|hedging| Hedging::flag(&hedging.lost, key))
    }

    /// The trips that lost a race since last asked (still out: to cancel).
    fn losers(&self) -> Vec<usize> {
        match &self.hedging {
            Some(hedging) => std::mem::take(
                &mut *hedging
                    .losers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            ),
            None => Vec::new(),
        }
    }
}

impl Side for SyncSide<'_> {
    fn operator(&self) -> &str {
        self.job.operator()
    }

    fn strategy(&self) -> String {
        self.job.strategy().as_str().to_owned()
    }

    fn deadline(&self) -> Option<Instant> {
        self.job.deadline()
    }

    fn wire_options(
        &self,
        timeout: Option<Duration>,
        workers: usize,
        per_chunk: Option<usize>,
    ) -> WireOptions {
        WireOptions::from_caller(&self.job.options(), timeout, workers, per_chunk)
    }

    fn complete(&self, key: usize, result: Result<Vec<u8>, XcsError>, usage: Option<Usage>) {
        let Some(hedging) = &self.hedging else {
            return self.remote.complete_with_usage(key, result, usage);
        };
        // One outcome per trip (a chunk sent again may answer twice).
        if hedging
            .reported
            .get(key)
            .is_none_or(|reported| reported.swap(true, AtomicOrdering::AcqRel))
        {
            return;
        }
        let (index, hedge) = (self.item(key), key >= hedging.len);
        let result = result.map_err(|error| error.at_index(index));
        if hedging.items.complete(index, hedge, result, usage)
            && Hedging::flag(&hedging.hedged, index)
        {
            // The race is over: the other trip, still out, lost.
            let other = if hedge { index } else { hedging.len + index };
            if !Hedging::flag(&hedging.reported, other) {
                if let Some(lost) = hedging.lost.get(other) {
                    lost.store(true, AtomicOrdering::Release);
                }
                hedging
                    .losers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(other);
            }
        }
    }

    fn is_settled(&self, key: usize) -> bool {
        match &self.hedging {
            Some(hedging) => {
                Hedging::flag(&hedging.reported, key) || self.remote.is_settled(self.item(key))
            }
            None => self.remote.is_settled(key),
        }
    }

    fn trace_parent(&self) -> Option<trace::Parent> {
        self.remote.trace_parent()
    }

    fn item_of(&self, key: usize) -> usize {
        self.item(key)
    }

    fn race_of(&self, key: usize) -> Option<(HedgeMark, bool)> {
        let hedging = self.hedging.as_ref()?;
        let index = self.item(key);
        if !Hedging::flag(&hedging.hedged, index) {
            return None;
        }
        let is_hedge = key >= hedging.len;
        let won = self.remote.is_settled(index)
            && !Hedging::flag(&hedging.lost, key)
            && hedging.items.hedge_won(index) == is_hedge;
        Some((
            HedgeMark { is_hedge, won },
            Hedging::flag(&hedging.lost, key),
        ))
    }
}

/// One batch on the cluster.
struct Dispatch<'a> {
    backend: &'a NatsBackend,
    side: &'a dyn Side,
    signature: WireSignature,
    workers: usize,
    slots: usize,
    /// How many chunks may be out at once, and how many items of each may run at once.
    in_flight: usize,
    per_chunk: Option<usize>,
    inbox: String,
    flights: HashMap<u64, Flight>,
}

impl<'a> Dispatch<'a> {
    fn new(
        backend: &'a NatsBackend,
        side: &'a dyn Side,
        options: &ExecutionOptions,
        signature: WireSignature,
        (workers, slots): (usize, usize),
    ) -> Self {
        // `max_workers`, when set, bounds the items running at once across the cluster: that
        // many chunks out at most, each running its share at once. Unset, every worker slot
        // takes a chunk and runs it on all its CPUs.
        let (in_flight, per_chunk) = match options.max_workers {
            _ if !options.use_parallel => (1, Some(1)),
            Some(n) => {
                let chunks = slots.min(n.get()).max(1);
                (chunks, Some((n.get() / chunks).max(1)))
            }
            None => (slots.max(1), None),
        };
        Dispatch {
            backend,
            side,
            signature,
            workers,
            slots,
            in_flight,
            per_chunk,
            inbox: backend.inner.client.new_inbox(),
            flights: HashMap::new(),
        }
    }

    fn run(mut self, side: &SyncSide<'_>) {
        let (job, remote) = (side.job, side.remote);
        let inner = &self.backend.inner;
        let (sender, replies) = mpsc::channel::<async_nats::Message>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let client = inner.client.clone();
        let subject = format!("{}.>", self.inbox);
        // Subscribed before the first chunk goes out.
        let Some(Ok(mut subscription)) =
            on(
                &inner.handle,
                async move { client.subscribe(subject).await },
            )
        else {
            return fail_all(job, remote, &self.backend.lost());
        };
        inner.handle.spawn(async move {
            let mut stopped = stopped;
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    message = subscription.next() => match message {
                        Some(message) => if sender.send(message).is_err() { break },
                        None => break,
                    },
                }
            }
            let _ = subscription.unsubscribe().await;
        });
        self.dispatch(side, &replies);
        // Given up (the deadline, or the call it belongs to): the workers stop what is out.
        self.cancel_all();
        let _ = stop.send(());
    }

    fn dispatch(&mut self, side: &SyncSide<'_>, replies: &mpsc::Receiver<async_nats::Message>) {
        let job = side.job;
        let len = job.len();
        let in_flight_limit = self.in_flight;
        let chunk_len = (len / (4 * self.slots.max(1))).clamp(1, wire::MAX_ITEMS);
        let budget = wire::budget(self.backend.inner.client.server_info().max_payload);
        let heartbeat = self.backend.inner.options.heartbeat();
        let mut cursor = 0;
        let mut carry: Option<(usize, Vec<u8>)> = None;
        let mut next_chunk = 0u64;
        let mut no_workers = false;
        let mut swept = Instant::now();
        // Hedged items (`hedge_after`): when each item's hedge is due, and since when every trip
        // out has its outcome (the losers' chunks are then waited for a moment at most).
        let mut due: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
        let mut settled_since: Option<Instant> = None;
        loop {
            if job.is_given_up() {
                return;
            }
            // Send chunks while there is room.
            while !no_workers
                && self.flights.len() < in_flight_limit
                && (cursor < len || carry.is_some())
            {
                let mut items: Vec<(usize, Vec<u8>)> = carry.take().into_iter().collect();
                // Held back for the message size, and not needed since: an earlier item failed.
                if items
                    .first()
                    .is_some_and(|&(index, _)| side.unwanted(index))
                {
                    for (index, _) in items.drain(..) {
                        self.side.complete(
                            index,
                            Err(XcsError::Cancelled {
                                operator: job.operator().to_owned(),
                                index: Some(index),
                            }),
                            None,
                        );
                    }
                }
                let mut bytes: usize = items.iter().map(|(_, b)| b.len() + 16).sum();
                while cursor < len && items.len() < chunk_len {
                    let index = cursor;
                    cursor += 1;
                    let Outgoing::Input(input) = side.take(index) else {
                        continue;
                    };
                    let size = input.len() + 16;
                    if size > budget {
                        self.side.complete(
                            index,
                            Err(XcsError::Cluster {
                                operator: job.operator().to_owned(),
                                index: Some(index),
                                reason: format!(
                                    "its input ({size} bytes) is larger than the server's \
                                     message limit"
                                ),
                            }),
                            None,
                        );
                        continue;
                    }
                    if bytes + size > budget && !items.is_empty() {
                        carry = Some((index, input));
                        break;
                    }
                    bytes += size;
                    items.push((index, input));
                }
                if items.is_empty() {
                    continue;
                }
                let id = next_chunk;
                next_chunk += 1;
                let indices: Vec<usize> = match side.hedging {
                    Some(_) => items.iter().map(|&(index, _)| index).collect(),
                    None => Vec::new(),
                };
                self.flights
                    .insert(id, Flight::new(items.into_iter().collect()));
                self.send(id);
                for index in indices {
                    if let Some(at) = side.hedge_at(index) {
                        due.push(Reverse((at, index)));
                    }
                }
            }
            // Hedges that are due: each a trip of its own, sent at once.
            let now = Instant::now();
            while let Some(&Reverse((at, index))) = due.peek() {
                if at > now || no_workers {
                    break;
                }
                due.pop();
                match side.hedge(index) {
                    RemoteHedge::Send(input) => {
                        let id = next_chunk;
                        next_chunk += 1;
                        let key = len + index;
                        self.flights
                            .insert(id, Flight::new(HashMap::from_iter([(key, input)])));
                        self.send(id);
                    }
                    RemoteHedge::Later(at) => due.push(Reverse((at, index))),
                    RemoteHedge::Never => {}
                }
            }
            if self.flights.is_empty() && cursor >= len && carry.is_none() {
                return;
            }
            // Hedging: once every trip out has its outcome and each chunk still out holds a
            // loser (cancelled, and soon done; its finished items' trace events come with it),
            // those chunks are waited for a moment, not for a loser that ignores its
            // cancellation.
            if side.hedging.is_some() && cursor >= len && carry.is_none() {
                let over = self.flights.values().all(|flight| {
                    flight.inputs.keys().all(|&key| side.is_settled(key))
                        && flight.inputs.keys().any(|&key| side.lost(key))
                });
                if !over {
                    settled_since = None;
                } else if settled_since.get_or_insert(now).elapsed() >= LOSERS_GRACE {
                    return;
                }
            }
            if no_workers && self.flights.is_empty() {
                self.fail_rest(side, &mut cursor, &mut carry, &|_| unavailable(job));
                return;
            }
            let mut wait = Duration::from_millis(100);
            if let Some(&Reverse((at, _))) = due.peek() {
                wait = wait.min(at.saturating_duration_since(now));
            }
            if let Some(deadline) = job.deadline() {
                if now >= deadline {
                    return;
                }
                wait = wait.min(deadline - now);
            }
            match replies.recv_timeout(wait) {
                Ok(message) => {
                    no_workers |= self.receive(message);
                    while let Ok(message) = replies.try_recv() {
                        no_workers |= self.receive(message);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // What is out will not come back either.
                    let lost = self.backend.lost();
                    for flight in self.flights.values() {
                        for &key in flight.inputs.keys() {
                            self.side.complete(key, Err(lost(key)), None);
                        }
                    }
                    self.flights.clear();
                    self.fail_rest(side, &mut cursor, &mut carry, &lost);
                    return;
                }
            }
            if no_workers {
                self.fail_rest(side, &mut cursor, &mut carry, &|_| unavailable(job));
            }
            // A hedged item's race is over: the trip that lost, still out, stops on its worker.
            let losers = side.losers();
            if !losers.is_empty() {
                self.cancel_trips(&losers);
            }
            // After an item failed, what is out for the items after it is not needed (the
            // batch's answer is that error, or an earlier one): the workers stop it. Items not
            // sent yet stay unsent (`take` skips them).
            if swept.elapsed() >= SWEEP && !job.is_given_up() {
                swept = Instant::now();
                self.cancel_unwanted(&|key| side.unwanted(key));
            }
            self.check_heartbeats(heartbeat);
        }
    }

    /// Fails the items not sent yet with `error`.
    fn fail_rest(
        &mut self,
        side: &SyncSide<'_>,
        cursor: &mut usize,
        carry: &mut Option<(usize, Vec<u8>)>,
        error: &dyn Fn(usize) -> XcsError,
    ) {
        if let Some((index, _)) = carry.take() {
            self.side.complete(index, Err(error(index)), None);
        }
        for index in *cursor..side.job.len() {
            if let Outgoing::Input(_) = side.take(index) {
                self.side.complete(index, Err(error(index)), None);
            }
        }
        *cursor = side.job.len();
    }

    /// Tells the workers to stop the trips `keys` (items of chunks that go on).
    fn cancel_trips(&self, keys: &[usize]) {
        let mut items = Vec::new();
        for flight in self.flights.values() {
            for &key in keys.iter().filter(|key| flight.inputs.contains_key(key)) {
                items.extend(flight.nonces.iter().map(|&nonce| (nonce, key as u64)));
            }
        }
        if !items.is_empty() {
            self.cancel(Vec::new(), items);
        }
    }

    /// Tells the workers to stop the chunks sent with `nonces` (signed under a cluster key). A
    /// worker that holds none of them ignores the message.
    fn cancel_nonces(&self, nonces: Vec<Nonce>) {
        self.cancel(nonces, Vec::new());
    }

    /// Tells the workers to stop the chunks sent with `nonces`, and the `items` of chunks that
    /// go on (each named by its chunk's nonce and its index in the chunk).
    fn cancel(&self, nonces: Vec<Nonce>, items: Vec<(Nonce, u64)>) {
        let inner = &self.backend.inner;
        let subject = inner.options.cancel_subject();
        let key = inner.options.key();
        let chunks = nonces
            .chunks(wire::MAX_CANCEL)
            .map(|part| (part.to_vec(), Vec::new()));
        let items = items
            .chunks(wire::MAX_CANCEL)
            .map(|part| (Vec::new(), part.to_vec()));
        for (nonces, items) in chunks.chain(items) {
            let body = wire::encode(&Cancel {
                protocol: wire::PROTOCOL,
                nonces,
                items,
            });
            let payload = wire::seal(key, &Context::Cancel { subject: &subject }, body);
            let client = inner.client.clone();
            let subject = subject.clone();
            inner.handle.spawn(async move {
                let _ = client.publish(subject, Bytes::from(payload)).await;
                let _ = client.flush().await;
            });
        }
    }

    /// Cancels every chunk still out (each attempt of it): nobody waits for them any more.
    fn cancel_all(&mut self) {
        let nonces: Vec<Nonce> = self
            .flights
            .drain()
            .flat_map(|(_, flight)| flight.nonces)
            .collect();
        if !nonces.is_empty() {
            self.cancel_nonces(nonces);
        }
    }

    /// Cancels the items nobody waits for any more (`unwanted`), settling them as cancelled: a
    /// chunk whose items still without an outcome are all unwanted is cancelled whole; in a
    /// chunk that goes on, the unwanted items are cancelled one by one (a hedged item's losing
    /// trip: a worker drops such an async item; a sync one sees `cancelled()`).
    fn cancel_unwanted(&mut self, unwanted: &dyn Fn(usize) -> bool) {
        let side = self.side;
        let mut whole = Vec::new();
        let mut items = Vec::new();
        let mut stopped = Vec::new();
        for (&id, flight) in &self.flights {
            let mut open = 0;
            for &key in flight.inputs.keys() {
                if !side.is_settled(key) {
                    open += 1;
                    if unwanted(key) {
                        stopped.push(key);
                    }
                }
            }
            if stopped.is_empty() {
                continue;
            }
            if stopped.len() == open {
                whole.push(id);
            } else {
                for nonce in &flight.nonces {
                    items.extend(stopped.iter().map(|&key| (*nonce, key as u64)));
                }
            }
            for key in stopped.drain(..) {
                side.complete(
                    key,
                    Err(XcsError::Cancelled {
                        operator: side.operator().to_owned(),
                        index: Some(key),
                    }),
                    None,
                );
            }
        }
        let mut nonces = Vec::new();
        for id in whole {
            if let Some(flight) = self.flights.remove(&id) {
                nonces.extend(flight.nonces);
            }
        }
        if !nonces.is_empty() || !items.is_empty() {
            self.cancel(nonces, items);
        }
    }

    /// Sends (again) the unsettled items of chunk `id`.
    fn send(&mut self, id: u64) {
        let side = self.side;
        let Some(flight) = self.flights.get_mut(&id) else {
            return;
        };
        let mut indices: Vec<usize> = flight
            .inputs
            .keys()
            .copied()
            .filter(|&index| !side.is_settled(index))
            .collect();
        indices.sort_unstable();
        if indices.is_empty() {
            self.flights.remove(&id);
            return;
        }
        let attempt = flight.attempts.len();
        let timeout = side
            .deadline()
            .map(|at| at.saturating_duration_since(Instant::now()));
        let Some(nonce) = wire::nonce() else {
            for index in indices {
                side.complete(
                    index,
                    Err(XcsError::Cluster {
                        operator: side.operator().to_owned(),
                        index: Some(index),
                        reason: "the operating system gave no random bytes for the chunk's nonce"
                            .into(),
                    }),
                    None,
                );
            }
            self.flights.remove(&id);
            return;
        };
        let key = self.backend.inner.options.key();
        let request = Request {
            protocol: wire::PROTOCOL,
            nonce,
            signed: key.is_some(),
            signature: self.signature.clone(),
            options: side.wire_options(timeout, self.workers, self.per_chunk),
            items: indices
                .iter()
                .map(|&index| Item {
                    index: index as u64,
                    input: &flight.inputs[&index],
                })
                .collect(),
        };
        let body = wire::encode(&request);
        drop(request);
        flight.attempts.push(indices);
        flight.nonces.push(nonce);
        flight.answered = false;
        flight.unheard = false;
        flight.retry_at = None;
        flight.heard = Instant::now();
        flight.sent_at = trace::since_epoch();
        let inner = &self.backend.inner;
        let client = inner.client.clone();
        let subject = inner.options.run_subject(&self.signature.operator);
        let reply = format!("{}.{id}.{attempt}", self.inbox);
        let context = Context::Request {
            subject: &subject,
            reply: &reply,
        };
        let payload = Bytes::from(wire::seal(key, &context, body));
        inner.handle.spawn(async move {
            let _ = client.publish_with_reply(subject, reply, payload).await;
        });
    }

    /// Handles one reply; `true` when it says no worker is listening. A reply that is not an
    /// authentic answer about a chunk of this batch — not signed with the cluster key when
    /// there is one, or without the nonce the chunk was sent with — is dropped: it settles
    /// nothing, fails nothing, and its outcomes are never cached.
    fn receive(&mut self, message: async_nats::Message) -> bool {
        let mut tokens = message.subject.as_str().rsplit('.');
        let attempt = tokens.next().and_then(|t| t.parse::<usize>().ok());
        let id = tokens.next().and_then(|t| t.parse::<u64>().ok());
        let (Some(id), Some(attempt)) = (id, attempt) else {
            return false;
        };
        let side = self.side;
        let operator = side.operator().to_owned();
        let Some(flight) = self.flights.get_mut(&id) else {
            return false;
        };
        let Some(&nonce) = flight.nonces.get(attempt) else {
            return false;
        };
        if message.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
            // The server's answer to the last attempt, before any worker's.
            if attempt + 1 != flight.nonces.len() || flight.answered {
                return false;
            }
            if attempt > 0 {
                // A chunk sent again (its worker went silent: it died, hung, or the server
                // restarted): the workers may be reconnecting. Sent again after a pause, as
                // another attempt; when the attempts run out, no worker listens.
                let tries = u32::try_from(flight.attempts.len()).unwrap_or(u32::MAX);
                let pause = (BUSY_PAUSE * 2u32.saturating_pow(tries.saturating_sub(1)).min(16))
                    .min(self.backend.inner.options.heartbeat() / 2);
                flight.retry_at = Some(Instant::now() + pause);
                flight.unheard = true;
                flight.note = Some("no worker was listening".into());
                return false;
            }
            let pending: Vec<usize> = flight.inputs.keys().copied().collect();
            for index in pending {
                side.complete(index, Err(unavailable_in(side.strategy())), None);
            }
            self.flights.remove(&id);
            return true;
        }
        let key = self.backend.inner.options.key();
        let context = Context::Reply {
            reply: message.subject.as_str(),
        };
        let Some(body) = wire::open(key, &context, &message.payload) else {
            // Under a key: a worker without it refuses the chunk unsigned. Not an answer, but
            // the reason the chunk may never get one.
            if let Ok(ReplyMessage {
                nonce: got,
                reply: Reply::Refused { reason },
            }) = wire::decode::<ReplyMessage>(&message.payload)
            {
                if same(&got, &nonce) {
                    flight.note = Some(format!(
                        "a worker answered without this caller's cluster key: {reason}"
                    ));
                }
            }
            return false;
        };
        let reply = match wire::decode::<ReplyMessage>(body) {
            Ok(message) if same(&message.nonce, &nonce) => message.reply,
            _ => return false,
        };
        flight.heard = Instant::now();
        if attempt + 1 == flight.nonces.len() {
            flight.answered = true;
        }
        match reply {
            Reply::Accepted { worker } => flight.worker = worker,
            Reply::Working => {}
            Reply::Results(results) => {
                for result in results {
                    let Ok(index) = usize::try_from(result.index) else {
                        continue;
                    };
                    // Only items of this chunk: a worker cannot settle other items.
                    if !flight.inputs.contains_key(&index) {
                        continue;
                    }
                    let outcome = result
                        .result
                        .map(|bytes| bytes.0)
                        .map_err(|e| e.into_error(&operator, index, &flight.worker));
                    let usage = result.usage.map(wire::WireUsage::into_usage);
                    if let Some(usage) = usage {
                        flight.usage.insert(index, usage);
                    }
                    side.complete(index, outcome, usage);
                }
            }
            Reply::Finished {
                received_at,
                root,
                trace,
            } => {
                if !trace.is_empty() {
                    let sent = flight.attempts.get(attempt).cloned().unwrap_or_default();
                    let shift = flight.sent_at.as_nanos() as i128 - received_at.as_nanos() as i128;
                    adopt_trace(
                        side,
                        side.trace_parent(),
                        &flight.worker,
                        &sent,
                        root,
                        shift,
                        trace,
                        &flight.usage,
                    );
                }
                // Items the worker did not report (it should report all) are not waited for.
                self.flights.remove(&id);
            }
            Reply::Busy { reason } => {
                // Sent again after a pause, to this worker or another: an attempt like any.
                let tries = u32::try_from(flight.attempts.len()).unwrap_or(u32::MAX);
                let pause = (BUSY_PAUSE * 2u32.saturating_pow(tries.saturating_sub(1)).min(16))
                    .min(self.backend.inner.options.heartbeat() / 2);
                flight.retry_at = Some(Instant::now() + pause);
                flight.note = Some(format!("the workers were busy: {reason}"));
            }
            Reply::Refused { reason } => {
                let pending: Vec<usize> = flight.inputs.keys().copied().collect();
                for index in pending {
                    side.complete(
                        index,
                        Err(XcsError::Cluster {
                            operator: operator.clone(),
                            index: Some(index),
                            reason: reason.clone(),
                        }),
                        None,
                    );
                }
                self.flights.remove(&id);
            }
        }
        false
    }

    /// Sends again the chunks whose worker went silent; fails those sent too often.
    fn check_heartbeats(&mut self, timeout: Duration) {
        let now = Instant::now();
        let silent: Vec<u64> = self
            .flights
            .iter()
            .filter(|(_, f)| {
                f.retry_at
                    .map_or(f.heard.elapsed() > timeout, |at| at <= now)
            })
            .map(|(&id, _)| id)
            .collect();
        let max = self.backend.inner.options.attempts() as usize;
        for id in silent {
            let Some(flight) = self.flights.get(&id) else {
                continue;
            };
            if flight.attempts.len() >= max && flight.unheard {
                // The last attempts found no worker listening.
                let pending: Vec<usize> = flight.inputs.keys().copied().collect();
                for index in pending {
                    self.side
                        .complete(index, Err(unavailable_in(self.side.strategy())), None);
                }
                self.flights.remove(&id);
            } else if flight.attempts.len() >= max {
                let pending: Vec<usize> = flight.inputs.keys().copied().collect();
                let attempts = flight.attempts.len();
                let reason = match (&flight.note, flight.retry_at) {
                    (Some(note), Some(_)) => format!("{note} ({attempts} attempts)"),
                    (note, _) => format!(
                        "the workers that took its chunk stopped answering ({attempts} \
                         attempts){}",
                        note.as_ref().map(|n| format!("; {n}")).unwrap_or_default()
                    ),
                };
                for index in pending {
                    self.side.complete(
                        index,
                        Err(XcsError::Cluster {
                            operator: self.side.operator().to_owned(),
                            index: Some(index),
                            reason: reason.clone(),
                        }),
                        None,
                    );
                }
                self.flights.remove(&id);
            } else if flight.retry_at.is_some() {
                self.send(id);
            } else {
                tracing::warn!(
                    target: "xcs",
                    operator = self.side.operator(),
                    chunk = id,
                    "a cluster worker stopped answering; sending its chunk to another worker"
                );
                self.send(id);
            }
        }
    }
}

/// Records a worker's trace events under the batch: item events get their index in the batch
/// (`sent`: the chunk's keys, in order; `side` says which item each names). Each item event
/// carries the usage its trip reported (`usage`, by key), and a hedged item's its part in the
/// race (a trip that lost while out ends cancelled).
#[allow(clippy::too_many_arguments)]
fn adopt_trace(
    side: &dyn Side,
    parent: Option<trace::Parent>,
    worker: &str,
    sent: &[usize],
    root: u64,
    shift: i128,
    mut events: Vec<WireEvent>,
    usage: &HashMap<usize, Usage>,
) {
    let positions: Vec<Option<u64>> = events.iter().map(WireEvent::index).collect();
    let items: Vec<usize> = sent.iter().map(|&key| side.item_of(key)).collect();
    let batches = remap_items(&mut events, root, &items);
    let number = worker.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }) >> 33
        | 1;
    let events = events
        .into_iter()
        .zip(positions)
        .map(|(e, position)| {
            let key = e
                .parent()
                .filter(|p| batches.contains(p))
                .and(position)
                .and_then(|p| sent.get(usize::try_from(p).ok()?))
                .copied();
            let used = key.and_then(|key| usage.get(&key)).copied();
            let mut event = e.into_event(worker, number, shift, used);
            if let Some((mut mark, lost)) = key.and_then(|key| side.race_of(key)) {
                mark.won &= event.outcome == trace::Outcome::Ok;
                event.hedge = Some(mark);
                if lost {
                    event.outcome = trace::Outcome::Cancelled;
                }
            }
            event
        })
        .collect();
    trace::adopt_remote(parent.as_ref(), root, events);
}

/// The worker's batch events hang from its root; their items' indices are positions in the
/// chunk, made indices in the caller's batch (`sent`: the chunk's items, in order).
/// Returns the ids of the batch events (those whose children are the chunk's items).
fn remap_items(
    events: &mut [WireEvent],
    root: u64,
    sent: &[usize],
) -> std::collections::HashSet<u64> {
    // A set: the merge is linear in the events.
    let batches: std::collections::HashSet<u64> = events
        .iter()
        .filter(|e| e.parent() == Some(root))
        .map(WireEvent::id)
        .collect();
    for event in events.iter_mut() {
        if event.parent().is_some_and(|p| batches.contains(&p)) {
            event.remap_index(|position| {
                usize::try_from(position)
                    .ok()
                    .and_then(|p| sent.get(p))
                    .map(|&i| i as u64)
            });
        }
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signature(operator: &str, version: u32) -> WireSignature {
        WireSignature {
            operator: operator.into(),
            version,
            input_type: "u64".into(),
            output_type: "u64".into(),
        }
    }

    fn worker(id: &str, slots: u32, operators: Vec<WireSignature>) -> WorkerInfo {
        WorkerInfo {
            protocol: wire::PROTOCOL,
            id: id.into(),
            pid: 1,
            slots,
            operators,
            keyed: false,
        }
    }

    #[test]
    fn merging_a_workers_trace_is_linear_in_its_events() {
        // 100 000 batch events under the root, each with an item event: a merge that looked
        // each parent up in a list would take ~10^10 steps.
        let n = 100_000u64;
        let root = 1;
        let mut events = Vec::new();
        for b in 0..n {
            events.push(WireEvent::for_test(10 + b, Some(root), None));
            events.push(WireEvent::for_test(10 + n + b, Some(10 + b), Some(b % 3)));
        }
        events.push(WireEvent::for_test(5, Some(u64::MAX), Some(0)));
        let sent = [40, 41, 42];
        remap_items(&mut events, root, &sent);
        for pair in events[..2 * n as usize].chunks(2) {
            assert_eq!(pair[0].index(), None);
            assert!([40, 41, 42].contains(&pair[1].index().unwrap()));
        }
        // An item event not under a batch event keeps its index.
        assert_eq!(events.last().unwrap().index(), Some(0));
    }

    #[test]
    fn nonces_compare_whole() {
        let a = [3u8; 16];
        let mut b = a;
        assert!(same(&a, &b));
        b[15] ^= 1;
        assert!(!same(&a, &b));
    }

    #[test]
    fn workers_are_matched_on_the_whole_signature() {
        let wanted = signature("score", 1);
        assert!(matches!(serving(&[], &wanted), Err(Unavailable::NoWorkers)));
        let others = [worker("a", 2, vec![signature("embed", 0)])];
        match serving(&others, &wanted) {
            Err(Unavailable::Refused(reason)) => {
                assert!(
                    reason.contains("`score`") && reason.contains("embed"),
                    "{reason}"
                );
            }
            _ => panic!("a worker without the operator serves it"),
        }
        let older = [worker("a", 2, vec![signature("score", 0)])];
        match serving(&older, &wanted) {
            Err(Unavailable::Refused(reason)) => {
                assert!(
                    reason.contains("another version") && reason.contains("v0"),
                    "{reason}"
                );
            }
            _ => panic!("another version serves it"),
        }
        let mut newer_protocol = worker("b", 4, vec![wanted.clone()]);
        newer_protocol.protocol += 1;
        assert!(serving(&[newer_protocol], &wanted).is_err());
        let mixed = [
            worker("a", 2, vec![signature("score", 0)]),
            worker("b", 4, vec![wanted.clone()]),
            worker("c", 0, vec![wanted.clone(), signature("embed", 0)]),
        ];
        assert!(matches!(serving(&mixed, &wanted), Ok((2, 5))));
    }
}
