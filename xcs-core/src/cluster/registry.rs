//! The operators a worker serves, by name, and how one chunk of a caller's batch runs on it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::connect::ClusterOptions;
use super::limits::WorkerLimits;
use super::wire::{ByteBuf, Item, ItemResult, WireError, WireSignature};
use crate::batch::vmap;
use crate::codec;
use crate::error::XcsError;
use crate::operator::Operator;

/// The operators a worker process serves, by name: a worker runs these and nothing else.
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
        let signature = WireSignature {
            operator: op.name().to_owned(),
            version,
            input_type: std::any::type_name::<O::Input>().to_owned(),
            output_type: std::any::type_name::<O::Output>().to_owned(),
        };
        self.entries.insert(
            signature.operator.clone(),
            Arc::new(Served {
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

/// A served operator, with its types erased.
pub(crate) trait Entry: Send + Sync {
    fn signature(&self) -> &WireSignature;
    /// Runs the chunk's items under the options in force (on this thread and the pool's: the
    /// worker enters the caller's), each item's outcome settled: one item's failure does not
    /// stop the others. `rate`: the request's rate limit, applied to this chunk alone.
    fn run(&self, items: Vec<Item>, rate: Option<f64>) -> Vec<ItemResult>;
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

    fn run(&self, items: Vec<Item>, rate: Option<f64>) -> Vec<ItemResult> {
        let mut results: Vec<Option<Result<ByteBuf, WireError>>> = Vec::with_capacity(items.len());
        let mut inputs = Vec::with_capacity(items.len());
        let mut positions = Vec::with_capacity(items.len());
        let indices: Vec<u64> = items.iter().map(|item| item.index).collect();
        for (position, item) in items.into_iter().enumerate() {
            match codec::decode_owned::<O::Input>(&item.input) {
                Some(input) => {
                    inputs.push(input);
                    positions.push(position);
                    results.push(None);
                }
                None => results.push(Some(Err(WireError::Cluster {
                    reason: format!(
                        "the worker could not read the item's input as `{}`",
                        self.signature.input_type
                    ),
                }))),
            }
        }
        let outcomes = {
            // The caller's options are in force already: the worker entered them.
            match rate {
                Some(rate) => vmap(PrivateRate {
                    op: Arc::clone(&self.op),
                    interval: crate::policy::rate::interval(rate),
                    next: Mutex::new(None),
                })
                .call_settled(inputs),
                None => vmap(Arc::clone(&self.op)).call_settled(inputs),
            }
        };
        for (position, outcome) in positions.into_iter().zip(outcomes) {
            results[position] = Some(match outcome {
                Ok(output) => match codec::encode(&output) {
                    Some(bytes) => Ok(ByteBuf(bytes)),
                    None => Err(WireError::Cluster {
                        reason: "the worker could not serialize the item's output".into(),
                    }),
                },
                Err(error) => Err(WireError::from_error(&error)),
            });
        }
        indices
            .into_iter()
            .zip(results)
            .map(|(index, result)| ItemResult {
                index,
                result: result.unwrap_or(Err(WireError::Cancelled)),
            })
            .collect()
    }
}

/// `op` with a request's rate limit: its attempts start at least `interval` apart, by a clock of
/// this chunk's own. The options' `rate_limit` would reserve starts in the process-wide,
/// per-operator limiter every caller of this worker shares: a request asking for one call a
/// year would hold the operator for everyone.
struct PrivateRate<O> {
    op: Arc<O>,
    interval: Duration,
    /// When the next attempt may start.
    next: Mutex<Option<Instant>>,
}

impl<O: Operator> Operator for PrivateRate<O> {
    type Input = O::Input;
    type Output = O::Output;

    fn forward(&self, input: O::Input) -> Result<O::Output, XcsError> {
        let now = Instant::now();
        let deadline = crate::deadline::deadline();
        let start = {
            let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
            // The process-wide limiter's rule, on this chunk's clock: a start past the deadline
            // is refused at once, without taking the slot.
            match crate::policy::rate::take_slot(*next, self.interval, now, deadline) {
                Ok((start, after)) => {
                    *next = Some(after);
                    start
                }
                Err(_) => {
                    return Err(XcsError::Timeout {
                        operator: self.op.name().to_owned(),
                        index: None,
                        timeout: deadline
                            .map_or(Duration::ZERO, |at| at.saturating_duration_since(now)),
                    });
                }
            }
        };
        crate::policy::rate::sleep_until(start);
        self.op.forward(input)
    }

    fn name(&self) -> &str {
        self.op.name()
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
