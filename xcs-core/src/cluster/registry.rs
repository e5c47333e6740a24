//! The operators a worker serves, by name, and how one chunk of a caller's batch runs on it.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::connect::ClusterOptions;
use super::limits::WorkerLimits;
use super::stops::ItemStops;
use super::wire::{ByteBuf, Item, ItemResult, WireError, WireSignature, WireUsage};
use crate::batch::vmap;
use crate::codec;
use crate::deadline::CancelFlag;
use crate::device::Signature;
use crate::error::XcsError;
use crate::operator::{AsyncOperator, Operator};
use crate::usage::{Meter, Usage};

/// The operators a worker process serves, by name: a worker runs these and nothing else.
/// Sync operators ([`with`](Registry::with)) run on the worker's blocking threads, async ones
/// ([`with_async`](Registry::with_async)) as futures on its tokio runtime (no thread per item).
///
/// ```
/// use xcs::cluster::Registry;
///
/// #[xcs::operator]
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// // `#[xcs::operator]` makes the operator `Square` of `square`.
/// let registry = Registry::new().with(Square);
/// assert_eq!(registry.names().collect::<Vec<_>>(), ["square"]);
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    entries: BTreeMap<String, Arc<dyn Entry>>,
    options: ClusterOptions,
    limits: WorkerLimits,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("operators", &self.entries.keys().collect::<Vec<_>>())
            .field("options", &self.options)
            .field("limits", &self.limits)
            .finish()
    }
}

impl Registry {
    /// An empty registry, with the default [`ClusterOptions`].
    pub fn new() -> Self {
        Registry::default()
    }

    /// Serves `op` under its name (replacing an operator registered under the same name). Its
    /// input must deserialize and its output serialize (serde); callers send items of it when
    /// their side serializes too (generated operators with serde parameters and output do).
    #[must_use]
    pub fn with<O>(mut self, op: O) -> Self
    where
        O: Operator,
        O::Input: DeserializeOwned,
        O::Output: Serialize,
    {
        let version = op.persist_support().map_or(0, |p| p.version_number());
        let signature =
            WireSignature::from(&Signature::of::<O::Input, O::Output>(op.name(), version));
        self.entries.insert(
            signature.operator.clone(),
            Arc::new(Served {
                op: Arc::new(op),
                signature,
            }),
        );
        self
    }

    /// Serves the async operator `op` under its name (replacing an operator registered under
    /// the same name): a chunk of its items runs as an async `vmap` on the worker's tokio
    /// runtime, with no thread per item, and is dropped — every item future with it — when the
    /// caller cancels the chunk. Its input must deserialize and its output serialize (serde).
    ///
    /// ```
    /// use xcs::cluster::Registry;
    ///
    /// #[xcs::operator]
    /// async fn fetch(id: u64) -> String {
    ///     format!("page {id}")
    /// }
    ///
    /// let registry = Registry::new().with_async(Fetch);
    /// assert_eq!(registry.names().collect::<Vec<_>>(), ["fetch"]);
    /// ```
    #[must_use]
    pub fn with_async<O>(mut self, op: O) -> Self
    where
        O: AsyncOperator,
        O::Input: DeserializeOwned,
        O::Output: Serialize,
    {
        let version = op.persist_support().map_or(0, |p| p.version_number());
        let signature = WireSignature::from(&Signature::of::<O::Input, O::Output>(
            AsyncOperator::name(&op),
            version,
        ));
        self.entries.insert(
            signature.operator.clone(),
            Arc::new(AsyncServed {
                op: Arc::new(op),
                signature,
            }),
        );
        self
    }

    /// The same, with `options` (the subject prefix, which must match the callers').
    #[must_use]
    pub fn options(mut self, options: ClusterOptions) -> Self {
        self.options = options;
        self
    }

    /// The same, with `limits` on what callers' chunks may take of this worker.
    #[must_use]
    pub fn limits(mut self, limits: WorkerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The names of the operators served, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn cluster_options(&self) -> &ClusterOptions {
        &self.options
    }

    pub(crate) fn worker_limits(&self) -> &WorkerLimits {
        &self.limits
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<dyn Entry>> {
        self.entries.get(name)
    }

    pub(crate) fn signatures(&self) -> Vec<WireSignature> {
        self.entries
            .values()
            .map(|e| e.signature().clone())
            .collect()
    }
}

/// What a chunk's items run as.
pub(crate) enum Work {
    /// Work for a blocking thread (a sync operator), run with the caller's options in force.
    Sync(Box<dyn FnOnce() -> Vec<ItemResult> + Send>),
    /// A future for the worker's runtime (an async operator): dropping it drops every item.
    /// Items' outcomes come on the receiver as they finish; the future gives those that did not
    /// come that way (inputs that did not decode, items that panicked or timed out).
    Async(
        Pin<Box<dyn Future<Output = Vec<ItemResult>> + Send>>,
        tokio::sync::mpsc::UnboundedReceiver<ItemResult>,
    ),
}

/// A served operator, with its types erased.
pub(crate) trait Entry: Send + Sync {
    fn signature(&self) -> &WireSignature;
    /// Whether its [`Work`] is a future (an async operator).
    fn is_async(&self) -> bool {
        false
    }
    /// The chunk's items as [`Work`], each item's outcome settled: one item's failure does not
    /// stop the others. Called with the caller's options in force (an async batch reads them
    /// now). `rate`: the request's rate limit, applied to this chunk alone. Items run without
    /// their operator's resource: the caller admitted them (see the module docs of `cluster`).
    /// `stops`: the items the caller cancels one by one (an async item's future is dropped).
    fn prepare(&self, items: Vec<Item<'_>>, rate: Option<f64>, stops: Arc<ItemStops>) -> Work;
}

/// A chunk's items, read: the inputs that decoded, and the outcomes of those that did not.
struct Decoded<I> {
    indices: Vec<u64>,
    inputs: Vec<I>,
    /// The position in the chunk of each input in `inputs`.
    positions: Vec<usize>,
    results: Vec<Option<Outcome>>,
}

type Outcome = (Result<ByteBuf, WireError>, Option<WireUsage>);

/// An item's outcome as it goes back on the wire: its serialized output and what it recorded,
/// or its error.
fn wire_outcome<T: Serialize>(outcome: Result<(T, Option<Usage>), XcsError>) -> Outcome {
    match outcome {
        Ok((output, usage)) => (
            match codec::encode(&output) {
                Some(bytes) => Ok(ByteBuf(bytes)),
                None => Err(WireError::Cluster {
                    reason: "the worker could not serialize the item's output".into(),
                }),
            },
            usage.map(WireUsage::from_usage),
        ),
        Err(error) => (Err(WireError::from_error(&error)), None),
    }
}

impl<I: DeserializeOwned> Decoded<I> {
    /// Reads `items`: each its index and its serialized input.
    fn read<'b>(
        items: impl ExactSizeIterator<Item = (u64, &'b [u8])> + Clone,
        input_type: &str,
    ) -> Self {
        let mut decoded = Decoded {
            indices: items.clone().map(|(index, _)| index).collect(),
            inputs: Vec::with_capacity(items.len()),
            positions: Vec::with_capacity(items.len()),
            results: Vec::with_capacity(items.len()),
        };
        for (position, (_, input)) in items.enumerate() {
            match codec::decode_owned::<I>(input) {
                Some(input) => {
                    decoded.inputs.push(input);
                    decoded.positions.push(position);
                    decoded.results.push(None);
                }
                None => decoded.results.push(Some((
                    Err(WireError::Cluster {
                        reason: format!(
                            "the worker could not read the item's input as `{input_type}`"
                        ),
                    }),
                    None,
                ))),
            }
        }
        decoded
    }
}

/// The items' outcomes, with what each recorded.
fn finish<T: Serialize>(
    indices: Vec<u64>,
    positions: Vec<usize>,
    mut results: Vec<Option<Outcome>>,
    outcomes: Vec<Result<(T, Option<Usage>), XcsError>>,
) -> Vec<ItemResult> {
    for (position, outcome) in positions.into_iter().zip(outcomes) {
        results[position] = Some(wire_outcome(outcome));
    }
    indices
        .into_iter()
        .zip(results)
        .map(|(index, result)| {
            let (result, usage) = result.unwrap_or((Err(WireError::Cancelled), None));
            ItemResult {
                index,
                result,
                usage,
            }
        })
        .collect()
}

struct Served<O> {
    op: Arc<O>,
    signature: WireSignature,
}

impl<O> Entry for Served<O>
where
    O: Operator,
    O::Input: DeserializeOwned,
    O::Output: Serialize,
{
    fn signature(&self) -> &WireSignature {
        &self.signature
    }

    fn prepare(&self, items: Vec<Item<'_>>, rate: Option<f64>, stops: Arc<ItemStops>) -> Work {
        let op = Arc::clone(&self.op);
        let input_type = self.signature.input_type.clone();
        // Read on the blocking thread, from a copy the work owns.
        let items: Vec<(u64, Vec<u8>)> = items
            .into_iter()
            .map(|item| (item.index, item.input.to_vec()))
            .collect();
        Work::Sync(Box::new(move || {
            let Decoded {
                indices,
                inputs,
                positions,
                results,
            } = Decoded::<O::Input>::read(
                items
                    .iter()
                    .map(|(index, input)| (*index, input.as_slice())),
                &input_type,
            );
            let inputs: Vec<_> = inputs
                .into_iter()
                .zip(&positions)
                .map(|(input, &position)| {
                    Arc::new(Tagged {
                        index: indices[position],
                        input: Mutex::new(Some(input)),
                    })
                })
                .collect();
            // The caller's options are in force already: the worker entered them.
            let outcomes = match rate {
                Some(rate) => vmap(Metered {
                    op: PrivateRate {
                        op,
                        clock: RateClock::new(rate),
                    },
                    stops,
                })
                .call_settled(inputs),
                None => vmap(Metered { op, stops }).call_settled(inputs),
            };
            finish(indices, positions, results, outcomes)
        }))
    }
}

struct AsyncServed<O> {
    op: Arc<O>,
    signature: WireSignature,
}

impl<O> Entry for AsyncServed<O>
where
    O: AsyncOperator,
    O::Input: DeserializeOwned,
    O::Output: Serialize,
{
    fn signature(&self) -> &WireSignature {
        &self.signature
    }

    fn is_async(&self) -> bool {
        true
    }

    fn prepare(&self, items: Vec<Item<'_>>, rate: Option<f64>, stops: Arc<ItemStops>) -> Work {
        // Read here, from the message: the work holds the inputs, not their bytes.
        let Decoded {
            indices,
            inputs,
            positions,
            results,
        } = Decoded::<O::Input>::read(
            items.iter().map(|item| (item.index, item.input)),
            &self.signature.input_type,
        );
        let (stream, streamed) = tokio::sync::mpsc::unbounded_channel();
        let reported: Arc<Vec<AtomicBool>> =
            Arc::new(positions.iter().map(|_| AtomicBool::new(false)).collect());
        let index_of: Arc<Vec<u64>> = Arc::new(positions.iter().map(|&p| indices[p]).collect());
        // Made here, where the caller's options are in force: the batch reads them now.
        let batch = vmap(AsyncMetered {
            op: Arc::clone(&self.op),
            clock: rate.map(RateClock::new),
            stream,
            reported: Arc::clone(&reported),
            index_of,
            stops,
        })
        .call_settled_async(inputs.into_iter().enumerate().collect());
        Work::Async(
            Box::pin(async move {
                let outcomes = batch.await;
                // What the items did not report themselves (they panicked, timed out, or were
                // cancelled by the chunk's deadline), and the inputs that did not decode.
                let mut results = results;
                for (position, (&at, outcome)) in positions.iter().zip(outcomes).enumerate() {
                    if reported[position].load(AtomicOrdering::Acquire) {
                        continue;
                    }
                    results[at] = Some(match outcome {
                        Err(error) => (Err(WireError::from_error(&error)), None),
                        // Every item that ends without an error reported itself.
                        Ok(()) => (Err(WireError::Cancelled), None),
                    });
                }
                indices
                    .into_iter()
                    .zip(results)
                    .filter_map(|(index, result)| {
                        result.map(|(result, usage)| ItemResult {
                            index,
                            result,
                            usage,
                        })
                    })
                    .collect()
            }),
            streamed,
        )
    }
}

/// A sync chunk's item on a worker: its index in the request (which a cancellation of the item
/// names) and its input, shared by the attempts the worker's retries make — each takes a copy,
/// the last one the input.
struct Tagged<I> {
    index: u64,
    input: Mutex<Option<I>>,
}

/// A copy of a shared item (the input's copies are made by [`Metered`], which knows how).
fn share<T>(item: &Arc<T>) -> Arc<T> {
    Arc::clone(item)
}

/// `op` on a worker: no resource of its own (the caller admitted the item), and what its body
/// records with [`record_usage`](crate::record_usage) returned with its output, to travel back.
/// Each item runs with a cancellation flag of its own, set when the caller cancels the item
/// alone (`stops`).
struct Metered<O> {
    op: O,
    stops: Arc<ItemStops>,
}

impl<O: Operator> Operator for Metered<O> {
    type Input = Arc<Tagged<O::Input>>;
    type Output = (O::Output, Option<Usage>);

    fn forward(&self, item: Self::Input) -> Result<Self::Output, XcsError> {
        let (index, input) = match Arc::try_unwrap(item) {
            Ok(item) => (
                item.index,
                item.input
                    .into_inner()
                    .unwrap_or_else(PoisonError::into_inner),
            ),
            // Another attempt may follow: this one runs on a copy (offered only when the
            // operator can copy its input).
            Err(shared) => {
                let input = shared.input.lock().unwrap_or_else(PoisonError::into_inner);
                let copy = self
                    .op
                    .__xcs_clone_input()
                    .and_then(|clone| input.as_ref().map(clone));
                (shared.index, copy)
            }
        };
        let Some(input) = input else {
            return Err(XcsError::Cluster {
                operator: self.op.name().to_owned(),
                index: None,
                reason: "the worker has no copy of the item's input for another attempt".into(),
            });
        };
        let meter = Meter::new();
        let mut context = crate::deadline::current();
        context.meter = Some(Arc::clone(&meter));
        let flag = CancelFlag::child_of(context.cancel.take());
        let _watched = self.stops.watch(index, &flag);
        context.cancel = Some(flag);
        let output = {
            let _in = crate::deadline::enter(context);
            self.op.forward(input)
        }?;
        Ok((output, meter.recorded()))
    }

    fn name(&self) -> &str {
        self.op.name()
    }

    fn __xcs_cache_support(&self) -> Option<crate::cache::CacheSupport<Self::Input, Self::Output>> {
        // A worker never caches (the caller does).
        None
    }

    fn __xcs_clone_input(&self) -> Option<crate::operator::CloneInput<Self::Input>> {
        self.op
            .__xcs_clone_input()
            .map(|_| share::<Tagged<O::Input>> as crate::operator::CloneInput<Self::Input>)
    }

    fn __xcs_retried_by_items(&self) -> bool {
        self.op.__xcs_retried_by_items()
    }

    fn __xcs_version(&self) -> u32 {
        self.op.__xcs_version()
    }
}

/// [`Metered`] for an async operator, with the request's rate limit (if any) on a clock of the
/// chunk's own.
/// Each item reports its outcome as soon as it has one (on `stream`, marked in `reported`), so
/// the caller hears of a failure, and the chunk's other results, without waiting for the chunk.
struct AsyncMetered<O> {
    op: Arc<O>,
    clock: Option<RateClock>,
    stream: tokio::sync::mpsc::UnboundedSender<ItemResult>,
    /// Whether the item at each position reported its outcome.
    reported: Arc<Vec<AtomicBool>>,
    /// The caller's index of the item at each position.
    index_of: Arc<Vec<u64>>,
    /// The items the caller cancelled one by one: their futures are dropped.
    stops: Arc<ItemStops>,
}

impl<O: AsyncOperator> AsyncMetered<O>
where
    O::Output: Serialize,
{
    async fn run(&self, input: O::Input) -> Result<(O::Output, Option<Usage>), XcsError> {
        if let Some(clock) = &self.clock {
            let start = clock.slot(AsyncOperator::name(&*self.op))?;
            tokio::time::sleep_until(start.into()).await;
        }
        let meter = Meter::new();
        // Polled inside the chunk's batch, whose options, context and trace parent are in
        // force already: only the item's meter is added to the context, on every poll.
        let mut body = std::pin::pin!(self.op.forward(input));
        let output = std::future::poll_fn(|cx| {
            let mut context = crate::deadline::current();
            context.meter = Some(Arc::clone(&meter));
            let _in = crate::deadline::enter(context);
            body.as_mut().poll(cx)
        })
        .await?;
        Ok((output, meter.recorded()))
    }
}

impl<O: AsyncOperator> AsyncOperator for AsyncMetered<O>
where
    O::Output: Serialize,
{
    type Input = (usize, O::Input);
    type Output = ();

    async fn forward(&self, (position, input): (usize, O::Input)) -> Result<(), XcsError> {
        let index = self.index_of.get(position).copied();
        // Cancelled on its own (a hedge's losing trip): the body's future is dropped.
        let outcome = match index {
            Some(index) => {
                tokio::select! {
                    biased;
                    () = self.stops.stopped(index) => (Err(WireError::Cancelled), None),
                    ran = self.run(input) => wire_outcome(ran),
                }
            }
            None => wire_outcome(self.run(input).await),
        };
        let (result, usage) = outcome;
        if let (Some(reported), Some(index)) = (self.reported.get(position), index) {
            reported.store(true, AtomicOrdering::Release);
            let _ = self.stream.send(ItemResult {
                index,
                result,
                usage,
            });
        }
        Ok(())
    }

    fn name(&self) -> &str {
        AsyncOperator::name(&*self.op)
    }

    fn __xcs_cache_support(&self) -> Option<crate::cache::CacheSupport<Self::Input, Self::Output>> {
        // A worker never caches (the caller does).
        None
    }

    fn __xcs_clone_input(&self) -> Option<crate::operator::CloneInput<Self::Input>> {
        // The caller retries async items (a chunk carries no retries).
        None
    }

    fn __xcs_version(&self) -> u32 {
        AsyncOperator::__xcs_version(&*self.op)
    }
}

/// A request's rate limit on a clock of one chunk's own: the options' `rate_limit` would reserve
/// starts in the process-wide, per-operator limiter every caller of this worker shares: a
/// request asking for one call a year would hold the operator for everyone.
struct RateClock {
    interval: Duration,
    /// When the next attempt may start.
    next: Mutex<Option<Instant>>,
}

impl RateClock {
    fn new(rate: f64) -> Self {
        RateClock {
            interval: crate::policy::rate::interval(rate),
            next: Mutex::new(None),
        }
    }

    /// When the next attempt of `operator` may start: the process-wide limiter's rule, on this
    /// clock — a start past the deadline is refused at once, without taking the slot.
    fn slot(&self, operator: &str) -> Result<Instant, XcsError> {
        let now = Instant::now();
        let deadline = crate::deadline::deadline();
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        match crate::policy::rate::take_slot(*next, self.interval, now, deadline) {
            Ok((start, after)) => {
                *next = Some(after);
                Ok(start)
            }
            Err(_) => Err(XcsError::Timeout {
                operator: operator.to_owned(),
                index: None,
                timeout: deadline.map_or(Duration::ZERO, |at| at.saturating_duration_since(now)),
            }),
        }
    }
}

/// A sync `op` with a request's rate limit: its attempts start at least an interval apart.
struct PrivateRate<O> {
    op: Arc<O>,
    clock: RateClock,
}

impl<O: Operator> Operator for PrivateRate<O> {
    type Input = O::Input;
    type Output = O::Output;

    fn forward(&self, input: O::Input) -> Result<O::Output, XcsError> {
        let start = self.clock.slot(self.op.name())?;
        crate::policy::rate::sleep_until(start);
        self.op.forward(input)
    }

    fn name(&self) -> &str {
        self.op.name()
    }

    fn __xcs_cache_support(&self) -> Option<crate::cache::CacheSupport<Self::Input, Self::Output>> {
        // A worker never caches (the caller does).
        None
    }

    fn __xcs_clone_input(&self) -> Option<crate::operator::CloneInput<O::Input>> {
        self.op.__xcs_clone_input()
    }

    fn __xcs_retried_by_items(&self) -> bool {
        self.op.__xcs_retried_by_items()
    }

    fn __xcs_version(&self) -> u32 {
        self.op.__xcs_version()
    }
}
