//! `vmap` and `pmap`: one operator over a batch of inputs, steered by the execution options.
//!
//! Both read the caller's effective options *at call time* (scope over global) and carry them to
//! every thread that runs an item, together with the caller's deadline and a cancellation flag
//! for the batch. `vmap` is for CPU-bound items: it runs them on the caller's thread with help
//! from the process-wide compute lanes (one per CPU), at most `max_workers` at once; an explicit
//! `max_workers` above the CPU count (items that wait) starts the rest of its workers as `pmap`
//! does, so that many run at once. `pmap` is
//! for I/O-bound items: exactly `num_workers` workers each take the next unstarted item, so the
//! wall time is close to `items / workers × latency`.
//!
//! - [`plan`]: what a batch is and its rules (lowest-index error, unstarted items not started,
//!   settled outcomes, trace events), written once.
//! - [`drive`]: who runs the items, and why no composition of batches can deadlock.

pub(crate) mod drive;
pub(crate) mod plan;

use std::sync::{Arc, OnceLock};

use self::plan::{Kind, collect, run_traced, settle};
use crate::error::XcsError;
use crate::operator::Operator;

/// `op` over a batch, in parallel where the options allow: the batch form of an operator.
///
/// The result is itself an [`Operator`] with `Input = Vec<O::Input>` and
/// `Output = Vec<O::Output>`, in input order; it nests (`vmap(vmap(op))`).
///
/// Items run in parallel when the effective `use_parallel` is true and the batch has more than
/// one item, on at most `max_workers` threads (unset: one per CPU), otherwise in order on the
/// caller's thread. An explicit `max_workers` above the CPU count (for items that wait on I/O)
/// runs that many items at once, as `pmap(op, max_workers)` would; a sync batch uses at most
/// [`MAX_WORKERS`](crate::MAX_WORKERS) threads.
///
/// ```
/// use xcs::{Operator, XcsError, execution_options, vmap};
///
/// struct Square;
/// impl Operator for Square {
///     type Input = u64;
///     type Output = u64;
///     fn forward(&self, x: u64) -> Result<u64, XcsError> { Ok(x * x) }
///     fn name(&self) -> &str { "square" }
/// }
///
/// let squares = execution_options!(max_workers = 2 => vmap(Square).call(vec![1, 2, 3]))?;
/// assert_eq!(squares, vec![1, 4, 9]);
/// # Ok::<(), XcsError>(())
/// ```
///
/// `vmap` of an `AsyncOperator` (feature `tokio`) is an `AsyncOperator` too: its items
/// are futures polled in the caller's task, at most `max_workers` in flight (unset: the whole
/// batch).
pub fn vmap<O>(op: O) -> VMap<O> {
    VMap {
        op: Arc::new(op),
        name: OnceLock::new(),
    }
}

/// `op` over a batch on exactly `num_workers` workers (`0`: one per CPU): for I/O-bound
/// operators, where more workers than cores pay off.
///
/// `max_workers` does not apply to `pmap` (its worker count is explicit), but
/// `use_parallel = false` still makes it run in order on the caller's thread, so one switch
/// turns off all parallelism for debugging.
///
/// ```
/// use std::time::Duration;
/// use xcs::{Operator, XcsError, pmap};
///
/// struct Fetch;
/// impl Operator for Fetch {
///     type Input = u32;
///     type Output = String;
///     fn forward(&self, id: u32) -> Result<String, XcsError> {
///         std::thread::sleep(Duration::from_millis(5)); // an I/O wait
///         Ok(format!("doc-{id}"))
///     }
///     fn name(&self) -> &str { "fetch" }
/// }
///
/// let docs = pmap(Fetch, 8).call((0..8).collect())?;
/// assert_eq!(docs[7], "doc-7");
/// # Ok::<(), XcsError>(())
/// ```
///
/// `pmap` of an `AsyncOperator` (feature `tokio`) is an `AsyncOperator` too, with exactly
/// `num_workers` item futures in flight.
pub fn pmap<O>(op: O, num_workers: usize) -> PMap<O> {
    PMap {
        op: Arc::new(op),
        name: OnceLock::new(),
        workers: num_workers,
    }
}

/// The batch form of an operator, made by [`vmap`].
///
/// For an async operator, `call` returns a future that owns what it needs (a handle on the
/// operator, the inputs, the options read at call time) rather than borrowing the `VMap`, so a
/// batch made in place can be awaited later or joined with others:
///
/// ```
/// use xcs::{AsyncOperator, XcsError, vmap};
///
/// struct Echo;
/// impl AsyncOperator for Echo {
///     type Input = u32;
///     type Output = u32;
///     async fn forward(&self, x: u32) -> Result<u32, XcsError> { Ok(x) }
///     fn name(&self) -> &str { "echo" }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), XcsError> {
/// let (a, b) = tokio::join!(vmap(Echo).call(vec![1, 2]), vmap(Echo).call(vec![3]));
/// assert_eq!((a?, b?), (vec![1, 2], vec![3]));
/// # Ok(())
/// # }
/// ```
pub struct VMap<O> {
    op: Arc<O>,
    /// `vmap(<operator>)`, made on first use (from whichever operator trait `O` implements).
    name: OnceLock<String>,
}

/// The batch form of an operator on a fixed number of workers, made by [`pmap`].
///
/// As for [`VMap`], an async operator's `call` returns a future that does not borrow the `PMap`:
/// `tokio::join!(pmap(a, 8).call(x), pmap(b, 8).call(y))` compiles and runs both batches at once.
pub struct PMap<O> {
    op: Arc<O>,
    /// `pmap(<operator>)`, made on first use.
    name: OnceLock<String>,
    workers: usize,
}

impl<O> Clone for VMap<O> {
    fn clone(&self) -> Self {
        VMap {
            op: Arc::clone(&self.op),
            name: self.name.clone(),
        }
    }
}

impl<O> Clone for PMap<O> {
    fn clone(&self) -> Self {
        PMap {
            op: Arc::clone(&self.op),
            name: self.name.clone(),
            workers: self.workers,
        }
    }
}

impl<O: Operator> std::fmt::Debug for VMap<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VMap")
            .field("operator", &Operator::name(&*self.op))
            .finish()
    }
}

impl<O: Operator> std::fmt::Debug for PMap<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PMap")
            .field("operator", &Operator::name(&*self.op))
            .field("num_workers", &self.workers)
            .finish()
    }
}

impl<O> VMap<O> {
    /// The operator applied to each item.
    pub fn inner(&self) -> &O {
        &self.op
    }
}

impl<O: Operator> VMap<O> {
    /// Runs every item, even after others fail, and returns each item's own outcome in input
    /// order (a deadline still applies: items unfinished at the deadline are
    /// [`XcsError::Timeout`]).
    ///
    /// ```
    /// use xcs::{Operator, XcsError, vmap};
    /// struct Parse;
    /// impl Operator for Parse {
    ///     type Input = String;
    ///     type Output = i64;
    ///     fn forward(&self, s: String) -> Result<i64, XcsError> {
    ///         s.parse().map_err(|e| XcsError::operator("parse", e))
    ///     }
    ///     fn name(&self) -> &str { "parse" }
    /// }
    /// let outcomes = vmap(Parse).call_settled(vec!["1".into(), "x".into(), "3".into()]);
    /// assert!(outcomes[0].is_ok() && outcomes[1].is_err() && outcomes[2].is_ok());
    /// ```
    pub fn call_settled(&self, inputs: Vec<O::Input>) -> Vec<Result<O::Output, XcsError>> {
        let len = inputs.len();
        settle(
            run_traced(Operator::name(self), || {
                drive::run(&self.op, Kind::VMap, inputs, true)
            }),
            self.op.name(),
            len,
        )
    }
}

impl<O> PMap<O> {
    /// The operator applied to each item.
    pub fn inner(&self) -> &O {
        &self.op
    }

    /// The worker count this `pmap` was made with (`0`: one per CPU).
    pub fn num_workers(&self) -> usize {
        self.workers
    }
}

impl<O: Operator> PMap<O> {
    /// Runs every item, even after others fail, and returns each item's own outcome in input
    /// order (items unfinished at a deadline are [`XcsError::Timeout`]).
    pub fn call_settled(&self, inputs: Vec<O::Input>) -> Vec<Result<O::Output, XcsError>> {
        let len = inputs.len();
        settle(
            run_traced(Operator::name(self), || {
                drive::run(&self.op, Kind::PMap(self.workers), inputs, true)
            }),
            self.op.name(),
            len,
        )
    }
}

impl<O: Operator> Operator for VMap<O> {
    type Input = Vec<O::Input>;
    type Output = Vec<O::Output>;

    fn forward(&self, inputs: Self::Input) -> Result<Self::Output, XcsError> {
        collect(
            drive::run(&self.op, Kind::VMap, inputs, false),
            self.op.name(),
        )
    }

    fn name(&self) -> &str {
        self.name
            .get_or_init(|| format!("vmap({})", Operator::name(&*self.op)))
    }

    fn call(&self, inputs: Self::Input) -> Result<Self::Output, XcsError> {
        #[cfg(feature = "tokio")]
        crate::warn::runtime_thread::check(|| Operator::name(self));
        collect(
            run_traced(Operator::name(self), || {
                drive::run(&self.op, Kind::VMap, inputs, false)
            }),
            self.op.name(),
        )
    }

    fn __xcs_cache_support(&self) -> Option<crate::cache::CacheSupport<Self::Input, Self::Output>> {
        // Items are cached one by one through the inner operator.
        None
    }

    fn __xcs_clone_input(&self) -> Option<crate::operator::CloneInput<Self::Input>> {
        None
    }

    fn __xcs_retried_by_items(&self) -> bool {
        true
    }

    fn persist_support(&self) -> Option<crate::PersistSupport<Self::Input, Self::Output>> {
        // Items persist one by one through the inner operator.
        None
    }

    fn __xcs_version(&self) -> u32 {
        // A batch's results change when its operator's do.
        Operator::__xcs_version(&*self.op)
    }
}

impl<O: Operator> Operator for PMap<O> {
    type Input = Vec<O::Input>;
    type Output = Vec<O::Output>;

    fn forward(&self, inputs: Self::Input) -> Result<Self::Output, XcsError> {
        collect(
            drive::run(&self.op, Kind::PMap(self.workers), inputs, false),
            self.op.name(),
        )
    }

    fn name(&self) -> &str {
        self.name
            .get_or_init(|| format!("pmap({})", Operator::name(&*self.op)))
    }

    fn call(&self, inputs: Self::Input) -> Result<Self::Output, XcsError> {
        #[cfg(feature = "tokio")]
        crate::warn::runtime_thread::check(|| Operator::name(self));
        collect(
            run_traced(Operator::name(self), || {
                drive::run(&self.op, Kind::PMap(self.workers), inputs, false)
            }),
            self.op.name(),
        )
    }

    fn __xcs_cache_support(&self) -> Option<crate::cache::CacheSupport<Self::Input, Self::Output>> {
        None
    }

    fn __xcs_clone_input(&self) -> Option<crate::operator::CloneInput<Self::Input>> {
        None
    }

    fn __xcs_retried_by_items(&self) -> bool {
        true
    }

    fn persist_support(&self) -> Option<crate::PersistSupport<Self::Input, Self::Output>> {
        // Items persist one by one through the inner operator.
        None
    }

    fn __xcs_version(&self) -> u32 {
        // A batch's results change when its operator's do.
        Operator::__xcs_version(&*self.op)
    }
}

#[cfg(feature = "tokio")]
mod async_impls {
    //! `vmap` and `pmap` of async operators: the same rules, items as futures.

    use std::future::Future;
    use std::sync::Arc;

    use super::plan::{Kind, Ran, collect, settle, trace_outcome};
    use super::{PMap, VMap, drive};
    use crate::ambient::Ambient;
    use crate::error::XcsError;
    use crate::operator::AsyncOperator;
    use crate::trace;

    /// Runs an async batch, recorded as one event when tracing (its items are its children).
    async fn run_traced<O: AsyncOperator>(
        op: Arc<O>,
        name: String,
        kind: Kind,
        inputs: Vec<O::Input>,
        settled: bool,
        mut ambient: Ambient,
    ) -> Result<Ran<O::Output>, XcsError> {
        let event = ambient
            .options
            .trace_execution
            .then(|| trace::begin_async(&name, None, ambient.parent.as_ref()));
        if let Some(event) = &event {
            ambient.parent = Some(event.parent());
        }
        let ran = drive::future::run(&op, kind, inputs, settled, ambient).await;
        if let Some(event) = event {
            event.finish(trace_outcome(&ran));
        }
        ran
    }

    macro_rules! async_batch {
        ($ty:ident, $prefix:literal, $kind:expr) => {
            #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
            impl<O: AsyncOperator> AsyncOperator for $ty<O> {
                type Input = Vec<O::Input>;
                type Output = Vec<O::Output>;

                fn forward(
                    &self,
                    inputs: Self::Input,
                ) -> impl Future<Output = Result<Self::Output, XcsError>> + Send {
                    let ambient = Ambient::capture();
                    let op = Arc::clone(&self.op);
                    let kind = $kind(self);
                    async move {
                        let ran = drive::future::run(&op, kind, inputs, false, ambient).await;
                        collect(ran, op.name())
                    }
                }

                fn name(&self) -> &str {
                    self.name.get_or_init(|| {
                        format!(concat!($prefix, "({})"), AsyncOperator::name(&*self.op))
                    })
                }

                fn call(
                    &self,
                    inputs: Self::Input,
                ) -> impl Future<Output = Result<Self::Output, XcsError>> + Send {
                    self.call_detached(inputs)
                }

                fn __xcs_cache_support(
                    &self,
                ) -> Option<crate::cache::CacheSupport<Self::Input, Self::Output>> {
                    // Items are cached one by one through the inner operator.
                    None
                }

                fn __xcs_clone_input(&self) -> Option<crate::operator::CloneInput<Self::Input>> {
                    None
                }

                fn __xcs_retried_by_items(&self) -> bool {
                    true
                }

                fn persist_support(
                    &self,
                ) -> Option<crate::PersistSupport<Self::Input, Self::Output>> {
                    None
                }

                fn __xcs_version(&self) -> u32 {
                    // A batch's results change when its operator's do.
                    AsyncOperator::__xcs_version(&*self.op)
                }
            }

            #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
            impl<O: AsyncOperator> $ty<O> {
                /// Runs the async batch: [`AsyncOperator::call`], with a future that does not
                /// borrow `self` (it owns a handle on the operator), so a batch made in place
                /// can be awaited later or joined with others:
                /// `tokio::join!(vmap(a).call(x), vmap(b).call(y))`. The options are read now,
                /// when `call` is called. For a sync operator, `call` is [`Operator::call`]
                /// (this method applies only to async operators).
                ///
                /// [`Operator::call`]: crate::Operator::call
                pub fn call(
                    &self,
                    inputs: Vec<O::Input>,
                ) -> impl Future<Output = Result<Vec<O::Output>, XcsError>> + Send + use<O> {
                    self.call_detached(inputs)
                }

                fn call_detached(
                    &self,
                    inputs: Vec<O::Input>,
                ) -> impl Future<Output = Result<Vec<O::Output>, XcsError>> + Send + use<O> {
                    let ran = run_traced(
                        Arc::clone(&self.op),
                        AsyncOperator::name(self).to_owned(),
                        $kind(self),
                        inputs,
                        false,
                        Ambient::capture(),
                    );
                    let op = Arc::clone(&self.op);
                    async move { collect(ran.await, op.name()) }
                }

                /// Runs every item of an async batch, even after others fail, and returns each
                /// item's own outcome in input order (items unfinished at a deadline are
                /// [`XcsError::Timeout`]): the async form of `call_settled`. Like
                /// [`call`](Self::call), its future does not borrow `self`.
                pub fn call_settled_async(
                    &self,
                    inputs: Vec<O::Input>,
                ) -> impl Future<Output = Vec<Result<O::Output, XcsError>>> + Send + use<O> {
                    let len = inputs.len();
                    let ran = run_traced(
                        Arc::clone(&self.op),
                        AsyncOperator::name(self).to_owned(),
                        $kind(self),
                        inputs,
                        true,
                        Ambient::capture(),
                    );
                    let op = Arc::clone(&self.op);
                    async move { settle(ran.await, op.name(), len) }
                }
            }
        };
    }

    async_batch!(VMap, "vmap", |_: &VMap<O>| Kind::VMap);
    async_batch!(PMap, "pmap", |p: &PMap<O>| Kind::PMap(p.workers));
}

#[cfg(test)]
mod tests {
    use super::*;

    struct AddOne;
    impl Operator for AddOne {
        type Input = u32;
        type Output = u32;
        fn forward(&self, x: u32) -> Result<u32, XcsError> {
            if x == 13 {
                return Err(XcsError::operator("add_one", "unlucky"));
            }
            Ok(x + 1)
        }
        fn name(&self) -> &str {
            "add_one"
        }
    }

    #[test]
    fn keeps_order_on_every_path() {
        let inputs: Vec<u32> = (0..100).filter(|x| *x != 13).collect();
        let expected: Vec<u32> = inputs.iter().map(|x| x + 1).collect();
        assert_eq!(vmap(AddOne).call(inputs.clone()).unwrap(), expected);
        assert_eq!(pmap(AddOne, 3).call(inputs.clone()).unwrap(), expected);
        let sequential = OptionsPatch::new().use_parallel(false);
        let out = crate::with_options(&sequential, || vmap(AddOne).call(inputs.clone()));
        assert_eq!(out.unwrap(), expected);
    }

    #[test]
    fn reports_lowest_failing_index() {
        let err = vmap(AddOne).call((10..20).collect()).unwrap_err();
        assert_eq!(err.index(), Some(3));
        let settled = pmap(AddOne, 2).call_settled(vec![1, 13, 2]);
        assert!(settled[0].is_ok() && settled[1].is_err() && settled[2].is_ok());
    }

    use crate::OptionsPatch;
}
