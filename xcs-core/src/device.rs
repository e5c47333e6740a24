//! Device backends: what `device_strategy` chooses between.
//!
//! A backend receives whole batches. The built-in CPU backend (for `Auto` and `Cpu`) runs them
//! on the runtime's worker pools. `Gpu` and named strategies go to a backend registered under
//! that name with [`register_backend`]; when none is registered the batch fails with
//! [`XcsError::DeviceUnavailable`] instead of silently
//! running somewhere else.
//!
//! A backend decides *where and how* the items run (its own threads, a device queue, in
//! order); the runtime keeps deciding *what* an item does: each [`BatchJob::run_item`] applies
//! the caller's options, deadline, cache, trace and panic handling, and stores the item's result.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Instant;

use crate::error::XcsError;
use crate::options::{DeviceStrategy, ExecutionOptions};

/// Something that runs batches: a GPU queue, a remote worker, a test double.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use xcs::{Backend, BatchJob};
///
/// /// Runs every item in order on the calling thread, counting batches.
/// struct InOrder(AtomicUsize);
///
/// impl Backend for InOrder {
///     fn run(&self, job: &BatchJob) {
///         self.0.fetch_add(1, Ordering::SeqCst);
///         for index in 0..job.len() {
///             job.run_item(index);
///         }
///     }
/// }
///
/// xcs::register_backend("in-order", InOrder(AtomicUsize::new(0)))?;
/// assert!(xcs::registered_backends().contains(&"in-order".to_string()));
/// # xcs::unregister_backend("in-order");
/// # Ok::<(), xcs::XcsError>(())
/// ```
pub trait Backend: Send + Sync + 'static {
    /// Runs the items of `job`, each at most once, and returns when every item has run (or was
    /// skipped because the batch was given up). Items that are never run are reported as
    /// cancelled.
    fn run(&self, job: &BatchJob);

    /// How this backend runs async batches, if it can (the cluster's does); `None`: an async
    /// batch under its strategy fails with [`XcsError::DeviceUnsupported`]. Not part of the
    /// stable API.
    #[doc(hidden)]
    fn __xcs_async(&self) -> Option<AsyncBackend> {
        None
    }
}

/// A batch handed to a [`Backend`]: `len` items, each run by [`run_item`](BatchJob::run_item)
/// here, or — through [`remote`](BatchJob::remote) — sent to another process as bytes.
pub struct BatchJob {
    len: usize,
    workers: usize,
    strategy: DeviceStrategy,
    task: Arc<dyn Fn(usize) + Send + Sync>,
    about: About,
}

/// What a backend may read about the batch it runs.
pub(crate) struct About {
    pub(crate) operator: String,
    pub(crate) options: ExecutionOptions,
    pub(crate) deadline: Option<Instant>,
    pub(crate) given_up: Arc<dyn Fn() -> bool + Send + Sync>,
    pub(crate) fail: Arc<dyn Fn(usize, XcsError) + Send + Sync>,
    /// The items as bytes, made on the first [`BatchJob::remote`].
    pub(crate) remote: OnceLock<Option<RemoteItems>>,
    pub(crate) make_remote: Box<dyn Fn() -> Option<RemoteItems> + Send + Sync>,
}

impl BatchJob {
    pub(crate) fn new(
        len: usize,
        workers: usize,
        strategy: DeviceStrategy,
        task: Arc<dyn Fn(usize) + Send + Sync>,
        about: About,
    ) -> Self {
        BatchJob {
            len,
            workers,
            strategy,
            task,
            about,
        }
    }

    /// The name of the operator the items run.
    pub fn operator(&self) -> &str {
        &self.about.operator
    }

    /// The options the caller's items run under (read once, when the batch was called).
    pub fn options(&self) -> ExecutionOptions {
        self.about.options
    }

    /// When the batch must be finished, if it has a deadline: items still running then are
    /// reported as timed out, and items not started must not start.
    pub fn deadline(&self) -> Option<Instant> {
        self.about.deadline
    }

    /// Whether the batch was given up (its deadline passed, or the call it belongs to gave up):
    /// a backend should start nothing more.
    pub fn is_given_up(&self) -> bool {
        (self.about.given_up)()
    }

    /// Settles item `index` with `error` without running it: an item this backend cannot run
    /// (no device, no worker). Items that ran or were settled already are left alone.
    pub fn fail_item(&self, index: usize, error: XcsError) {
        if index < self.len {
            (self.about.fail)(index, error);
        }
    }

    /// The items as bytes, for a backend that runs them in another process: `None` when the
    /// operator's input and output are not serializable (see
    /// [`Operator::persist_support`](crate::Operator::persist_support)).
    pub fn remote(&self) -> Option<&RemoteItems> {
        self.about
            .remote
            .get_or_init(|| (self.about.make_remote)())
            .as_ref()
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch has no items.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many items the caller allows to run at once (1 under `use_parallel = false`).
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The strategy that selected this backend.
    pub fn strategy(&self) -> DeviceStrategy {
        self.strategy
    }

    /// Runs item `index` (on any thread) under the caller's options; stores its result. Items
    /// out of range, already run, or of a batch that was given up are ignored.
    pub fn run_item(&self, index: usize) {
        if index < self.len {
            (self.task)(index);
        }
    }

    /// A handle on the item task that can outlive `&self` (for backends that hand items to
    /// their own threads).
    pub fn item_runner(&self) -> Arc<dyn Fn(usize) + Send + Sync> {
        Arc::clone(&self.task)
    }
}

/// The items of a batch as bytes: what a backend that runs them in another process (a cluster
/// worker, a remote accelerator) sends and receives. The caller keeps the batch rules: an item
/// [`take`](RemoteItems::take)n is looked up in the cache first (hits never leave the process),
/// skipped when the rules say not to start it, and otherwise serialized; its result comes back
/// through [`complete`](RemoteItems::complete), which decodes it, caches it and reports it.
///
/// ```
/// use xcs::{Backend, BatchJob, DeviceStrategy, Operator, Outgoing, XcsError, execution_options, vmap};
///
/// struct Identity;
/// impl Operator for Identity {
///     type Input = u64;
///     type Output = u64;
///     fn forward(&self, x: u64) -> Result<u64, XcsError> {
///         Ok(x)
///     }
///     fn name(&self) -> &str {
///         "identity_remote_doc"
///     }
/// }
///
/// /// Sends every item "elsewhere" and answers it with its own bytes (an identity device).
/// struct Echo;
/// impl Backend for Echo {
///     fn run(&self, job: &BatchJob) {
///         let Some(remote) = job.remote() else {
///             for index in 0..job.len() {
///                 job.fail_item(index, XcsError::operator(job.operator(), "not serializable"));
///             }
///             return;
///         };
///         assert_eq!(remote.signature().operator, "identity_remote_doc");
///         for index in 0..job.len() {
///             if let Outgoing::Input(bytes) = remote.take(index) {
///                 remote.complete(index, Ok(bytes));
///             }
///             assert!(remote.is_settled(index));
///         }
///     }
/// }
///
/// xcs::register_backend("echo", Echo)?;
/// let echoed = execution_options!(device_strategy = DeviceStrategy::named("echo") => {
///     vmap(Identity).call(vec![1, 2, 3])
/// })?;
/// assert_eq!(echoed, [1, 2, 3]);
/// # xcs::unregister_backend("echo");
/// # Ok::<(), XcsError>(())
/// ```
#[derive(Clone)]
pub struct RemoteItems {
    side: Arc<dyn RemoteSide>,
}

/// The caller's side of items run elsewhere (implemented by the batch driver).
pub(crate) trait RemoteSide: Send + Sync {
    fn signature(&self) -> &Signature;
    fn take(&self, index: usize) -> Outgoing;
    fn complete(&self, index: usize, result: Result<Vec<u8>, XcsError>) {
        self.complete_with_usage(index, result, None);
    }
    /// [`complete`](RemoteSide::complete), with what the item's body recorded where it ran.
    fn complete_with_usage(
        &self,
        index: usize,
        result: Result<Vec<u8>, XcsError>,
        usage: Option<crate::Usage>,
    );
    fn is_settled(&self, index: usize) -> bool;
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    fn trace_parent(&self) -> Option<crate::trace::Parent>;
    /// Whether item `index` is no longer needed: an earlier item failed (see
    /// [`RemoteItems::unwanted`]).
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    fn unwanted(&self, index: usize) -> bool;
    /// The items' hedging, when the batch hedges them (see [`RemoteItems::hedging`]).
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    fn hedging(&self) -> Option<Box<dyn RemoteHedging + '_>>;
}

/// A sync batch's items hedged by the caller (`hedge_after`) while they run elsewhere: each
/// item's call plan is kept from its admission to its outcome, and decides its hedge as for a
/// local item — the delay, the hedge's admission, the race. Items are taken through it instead
/// of [`RemoteItems::take`], and their outcomes given to it instead of
/// [`RemoteItems::complete`]: each attempt's (`hedge`: whether it is the hedge's).
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) trait RemoteHedging: Send + Sync {
    /// Item `index`, to send: as [`RemoteItems::take`].
    fn take(&self, index: usize) -> Outgoing;
    /// After item `index` was sent: when to ask for its hedge, if it may have one.
    fn hedge_at(&self, index: usize) -> Option<Instant>;
    /// That instant has come and item `index` is still out: its hedge's admission.
    fn hedge(&self, index: usize) -> RemoteHedge;
    /// An attempt of item `index` ended; `true` when the item is settled now (the other
    /// attempt, if one is out, lost: cancel it).
    fn complete(
        &self,
        index: usize,
        hedge: bool,
        result: Result<Vec<u8>, XcsError>,
        usage: Option<crate::Usage>,
    ) -> bool;
    /// Whether the hedge of item `index` answered it.
    fn hedge_won(&self, index: usize) -> bool;
}

/// What to do about an item's hedge ([`RemoteHedging::hedge`]).
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) enum RemoteHedge {
    /// Send this input again, as the hedge.
    Send(Vec<u8>),
    /// Ask again at this instant.
    Later(Instant),
    /// No hedge for this item.
    Never,
}

/// What [`RemoteItems::take`] gives for an item.
#[derive(Debug)]
pub enum Outgoing {
    /// The serialized input: run it elsewhere and [`complete`](RemoteItems::complete) it.
    Input(Vec<u8>),
    /// Nothing to send: the item was answered here (a cache hit, an input that cannot be
    /// serialized) or must not start (an earlier item failed, the batch was given up), or it
    /// was taken before.
    Settled,
}

/// What identifies an operator across processes: its name, the version its results are kept
/// under ([`PersistSupport::version`](crate::PersistSupport::version)) and the names of its
/// input and output types. Two builds of a program agree on it when they run the same operator
/// on the same types.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Signature {
    /// The operator's name.
    pub operator: String,
    /// The version its results are kept under.
    pub version: u32,
    /// `std::any::type_name` of its input.
    pub input_type: String,
    /// `std::any::type_name` of its output.
    pub output_type: String,
}

impl Signature {
    /// The signature of operator `operator` (results kept under `version`) from `I` to `O`.
    pub(crate) fn of<I, O>(operator: &str, version: u32) -> Signature {
        Signature {
            operator: operator.to_owned(),
            version,
            input_type: std::any::type_name::<I>().to_owned(),
            output_type: std::any::type_name::<O>().to_owned(),
        }
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` v{} ({} -> {})",
            self.operator, self.version, self.input_type, self.output_type
        )
    }
}

impl RemoteItems {
    pub(crate) fn new(side: Arc<dyn RemoteSide>) -> Self {
        RemoteItems { side }
    }

    /// The operator's identity, for the other side to check.
    pub fn signature(&self) -> &Signature {
        self.side.signature()
    }

    /// Item `index`, to send: see [`Outgoing`]. Consults the cache, which may wait for a
    /// concurrent identical call; call it where blocking is allowed.
    pub fn take(&self, index: usize) -> Outgoing {
        self.side.take(index)
    }

    /// Delivers item `index`'s result: the serialized output, or its error. A second result for
    /// the same item (a chunk that ran twice) is ignored.
    pub fn complete(&self, index: usize, result: Result<Vec<u8>, XcsError>) {
        self.side.complete(index, result);
    }

    /// [`complete`](RemoteItems::complete), with what the item's body recorded where it ran:
    /// it settles the item's resource permit and budget reservation, taken here when the item
    /// was taken.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn complete_with_usage(
        &self,
        index: usize,
        result: Result<Vec<u8>, XcsError>,
        usage: Option<crate::Usage>,
    ) {
        self.side.complete_with_usage(index, result, usage);
    }

    /// Whether item `index` has its outcome already.
    pub fn is_settled(&self, index: usize) -> bool {
        self.side.is_settled(index)
    }

    /// The trace event remote events are recorded under.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn trace_parent(&self) -> Option<crate::trace::Parent> {
        self.side.trace_parent()
    }

    /// Whether item `index` is no longer needed, started or not: an item before it failed, so
    /// the batch's answer is that error (never in a settled batch). A backend stops such items
    /// where they run.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn unwanted(&self, index: usize) -> bool {
        self.side.unwanted(index)
    }

    /// The items' hedging, when `hedge_after` applies to them (set, and the operator's input can
    /// be copied); `None` otherwise.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn hedging(&self) -> Option<Box<dyn RemoteHedging + '_>> {
        self.side.hedging()
    }
}

impl fmt::Debug for RemoteItems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteItems")
            .field("signature", self.signature())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for BatchJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchJob")
            .field("len", &self.len)
            .field("workers", &self.workers)
            .field("strategy", &self.strategy)
            .finish_non_exhaustive()
    }
}

static BACKENDS: RwLock<BTreeMap<String, Arc<dyn Backend>>> = RwLock::new(BTreeMap::new());

/// Registers `backend` under `name` (case-insensitive; `"gpu"` serves `DeviceStrategy::Gpu`),
/// replacing and returning any backend registered under it before. Takes a backend by value,
/// an `Arc` of one, or an `Arc<dyn Backend>`. The names `"auto"` and `"cpu"` belong to the
/// built-in CPU backend and cannot be taken.
///
/// # Errors
/// [`XcsError::InvalidValue`] for `"auto"`, `"cpu"` or an empty name; nothing is registered.
pub fn register_backend<B: Backend>(
    name: &str,
    backend: B,
) -> Result<Option<Arc<dyn Backend>>, XcsError> {
    let key = name.trim().to_ascii_lowercase();
    if key.is_empty() || key == "auto" || key == "cpu" {
        return Err(XcsError::InvalidValue {
            option: "device_strategy".to_owned(),
            value: name.to_owned(),
            expected: "a backend name other than \"auto\" and \"cpu\" (built in)".to_owned(),
        });
    }
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let mut backends = BACKENDS.write().unwrap_or_else(PoisonError::into_inner);
    Ok(backends.insert(key, backend))
}

/// A shared backend is a backend.
impl<B: Backend + ?Sized> Backend for Arc<B> {
    fn run(&self, job: &BatchJob) {
        (**self).run(job);
    }

    fn __xcs_async(&self) -> Option<AsyncBackend> {
        (**self).__xcs_async()
    }
}

/// Removes the backend registered under `name`, returning it.
pub fn unregister_backend(name: &str) -> Option<Arc<dyn Backend>> {
    let key = name.trim().to_ascii_lowercase();
    BACKENDS
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&key)
}

/// The names of the registered backends, sorted, the built-in `"cpu"` first.
pub fn registered_backends() -> Vec<String> {
    let backends = BACKENDS.read().unwrap_or_else(PoisonError::into_inner);
    std::iter::once("cpu".to_owned())
        .chain(backends.keys().cloned())
        .collect()
}

pub(crate) fn is_registered(name: &str) -> bool {
    let key = name.trim().to_ascii_lowercase();
    BACKENDS
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .contains_key(&key)
}

/// Where an async batch of `batch` (`vmap(…)`/`pmap(…)`) runs under `strategy`: `Ok(None)` on
/// the caller's runtime, which is the built-in backend's place; otherwise on the registered
/// backend, when it runs async batches. A backend that runs sync batches only fails the batch
/// with the reason: running it locally instead would silently ignore the strategy.
#[cfg(feature = "tokio")]
pub(crate) fn async_backend(
    strategy: DeviceStrategy,
    batch: impl FnOnce() -> String,
) -> Result<Option<AsyncBackend>, XcsError> {
    let Some(backend) = resolve(strategy)? else {
        return Ok(None);
    };
    match backend.__xcs_async() {
        Some(remote) => Ok(Some(remote)),
        None => Err(XcsError::DeviceUnsupported {
            strategy: strategy.as_str().to_owned(),
            operator: batch(),
            reason: "it is an async batch, and the backend registered for the strategy runs \
                     sync batches only; run it under `device_strategy = \"auto\"` to await \
                     its items on this runtime (a sync operator's batch reaches the backend \
                     from async code as `xcs::blocking(vmap(op))`)"
                .to_owned(),
        }),
    }
}

/// How a backend runs async batches (see [`Backend::__xcs_async`]). Not part of the stable API.
#[doc(hidden)]
#[derive(Clone)]
pub struct AsyncBackend {
    #[cfg(feature = "tokio")]
    pub(crate) open: Arc<dyn OpenRemote>,
}

// What the async driver (`batch::drive::remote`) and a backend that runs async batches (the
// cluster's) agree on.

/// What a backend learns about an async batch it is to run.
#[cfg_attr(not(feature = "nats"), allow(dead_code))] // Read by the cluster's backend.
#[cfg(feature = "tokio")]
pub(crate) struct RemoteBatch {
    pub(crate) signature: Signature,
    /// The strategy that selected the backend.
    pub(crate) strategy: String,
    /// The caller's options, read when the batch was called.
    pub(crate) options: ExecutionOptions,
    pub(crate) deadline: Option<Instant>,
    pub(crate) len: usize,
    /// Where the workers' trace events go, when tracing.
    pub(crate) trace_parent: Option<crate::trace::Parent>,
    /// Whether nobody needs item `index` any more (an earlier item failed, the batch gave up):
    /// its chunk may be cancelled.
    pub(crate) unwanted: Arc<dyn Fn(usize) -> bool + Send + Sync>,
}

/// An item's outcome, from where it ran.
#[cfg(feature = "tokio")]
pub(crate) struct RemoteOutcome {
    /// The serialized output, or the item's error.
    pub(crate) result: Result<Vec<u8>, XcsError>,
    /// What its body recorded with `xcs::record_usage`.
    pub(crate) usage: Option<crate::Usage>,
}

/// Where an async batch's items go: one per batch, made by [`OpenRemote::open`].
#[cfg(feature = "tokio")]
pub(crate) trait RemoteSink: Send + Sync {
    /// Sends item `index` (its serialized input) out; its outcome comes on the receiver.
    /// Dropping the receiver says that nobody waits for it any more.
    fn submit(&self, index: usize, input: Vec<u8>)
    -> tokio::sync::oneshot::Receiver<RemoteOutcome>;
    /// The batch has submitted everything it can for now: items held back to fill a chunk go.
    fn flush(&self);
}

/// What [`OpenRemote::open`] returns: the sink, once the backend found where items run.
#[cfg(feature = "tokio")]
pub(crate) type Opening =
    std::pin::Pin<Box<dyn Future<Output = Result<Arc<dyn RemoteSink>, XcsError>> + Send>>;

/// A backend's way of running async batches.
#[cfg(feature = "tokio")]
pub(crate) trait OpenRemote: Send + Sync {
    /// Opens `batch`: finds where its items can run (failing at once when nowhere) and returns
    /// the sink they go to.
    fn open(&self, batch: RemoteBatch) -> Opening;
}

impl fmt::Debug for AsyncBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncBackend").finish_non_exhaustive()
    }
}

/// The backend a strategy selects: `Ok(None)` for the built-in CPU backend.
pub(crate) fn resolve(strategy: DeviceStrategy) -> Result<Option<Arc<dyn Backend>>, XcsError> {
    let name = match strategy {
        DeviceStrategy::Auto | DeviceStrategy::Cpu => return Ok(None),
        other => other.as_str(),
    };
    let backends = BACKENDS.read().unwrap_or_else(PoisonError::into_inner);
    match backends.get(&name.to_ascii_lowercase()) {
        Some(backend) => Ok(Some(Arc::clone(backend))),
        None => Err(XcsError::DeviceUnavailable {
            strategy: name.to_owned(),
            registered: std::iter::once("cpu".to_owned())
                .chain(backends.keys().cloned())
                .collect(),
        }),
    }
}
