//! Async batches: every item is a future polled in the caller's task. No thread per item, no
//! detached task: when the batch's deadline passes, the batch future drops every in-flight item
//! future before it returns, so nothing the batch started keeps running.
//!
//! The batch rules are [`crate::batch::plan`]'s: items start in index order, an item after a
//! failed one is not started, at most `limit` items are in flight, and outcomes are gathered
//! into the same [`Ran`] as sync batches.
//!
//! # How items are polled
//!
//! An item starts with a first poll right where the batch starts it, in one reused box and with a
//! reused waker. An item that finishes then (a body with nothing to wait for, a cache hit, an
//! error before any `.await`) never joins the in-flight set: no task, no waker of its own, and on
//! the lean call path no allocation at all. An item that returns `Pending` keeps its box and joins
//! a `FuturesUnordered` behind the waker it registered (a [`Relay`]): it is polled again only once
//! woken, like any future there, so it is never polled more often than it asks to be. Outputs of
//! items that finish in index order go straight into the output vector; from the first item that
//! finishes out of order or fails on, outcomes are gathered as slots.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::StreamExt;
use futures_util::future::Either;
use futures_util::stream::FuturesUnordered;
use futures_util::task::AtomicWaker;

use super::remote;
use crate::ambient::Ambient;
use crate::batch::plan::{Kind, NOT_RUN, Part, Plan, Ran, Slot, Timing};
use crate::call_async;
use crate::device;
use crate::error::XcsError;
use crate::operator::AsyncOperator;
use crate::pool;
use crate::scoped::WithOptions;
use crate::util::drop_quietly;

/// Runs an async batch under `ambient` (the caller's options, read at call time).
pub(crate) async fn run<O: AsyncOperator>(
    op: &Arc<O>,
    kind: Kind,
    inputs: Vec<O::Input>,
    settled: bool,
    ambient: Ambient,
) -> Result<Ran<O::Output>, XcsError> {
    let options = ambient.options;
    let timing = Timing::with_parent(op.name(), &options, ambient.context.clone())?;
    // Async batches run as futures on the caller's runtime, or on a backend that runs async
    // batches; never silently here under a strategy that names a backend (see the module docs
    // of `device`).
    let batch_name = || match kind {
        Kind::VMap => format!("vmap({})", op.name()),
        Kind::PMap(_) => format!("pmap({})", op.name()),
    };
    let backend = device::async_backend(options.device_strategy, batch_name)?;
    let len = inputs.len();
    let limit = if options.use_parallel {
        match kind {
            Kind::VMap => options.max_workers.map_or(len, |n| n.get()),
            Kind::PMap(0) => pool::cpu_count(),
            Kind::PMap(n) => n,
        }
    } else {
        1
    }
    // No thread per item: `max_workers` items in flight, however many (no clamp to the
    // thread bound of sync batches).
    .max(1);
    let plan = Arc::new(
        Plan::new(op, op.name(), len, options, &timing, settled).with_trace_parent(ambient.parent),
    );
    // What every item runs under, shared by all of them.
    let items = Arc::new(Ambient {
        options: plan.options,
        context: plan.context.clone(),
        parent: plan.trace_parent().cloned(),
        progress: plan.progress.clone(),
    });
    // Items run elsewhere: each goes through the call path here, its body a trip to the backend.
    let remote = match backend {
        None => None,
        Some(backend) => {
            let Some(persist) = op.persist_support() else {
                return Err(XcsError::DeviceUnsupported {
                    strategy: options.device_strategy.as_str().to_owned(),
                    operator: batch_name(),
                    reason: "its items run in another process, and its input and output are \
                             not serializable: give the operator serde types (or implement \
                             `persist_support`)"
                        .to_owned(),
                });
            };
            let unwanted = {
                let plan = Arc::clone(&plan);
                Arc::new(move |index: usize| plan.skips(index))
            };
            let sink = backend
                .open
                .open(device::RemoteBatch {
                    signature: device::Signature::of::<O::Input, O::Output>(
                        op.name(),
                        persist.version_number(),
                    ),
                    strategy: options.device_strategy.as_str().to_owned(),
                    options: plan.options,
                    deadline: plan.deadline(),
                    len,
                    trace_parent: plan.trace_parent().cloned(),
                    unwanted,
                })
                .await?;
            Some((sink, persist))
        }
    };
    let mut outcomes = Outcomes::new(len);
    let mut pending = inputs.into_iter().enumerate();
    let work = {
        let (plan, op, ambient) = (&plan, &*plan.op, &items);
        let remote = remote.as_ref();
        let lean = call_async::is_lean(ambient);
        let (outcomes, pending) = (&mut outcomes, &mut pending);
        let mut in_flight = FuturesUnordered::new();
        let mut stopped = false;
        // The box and waker of the next item's first poll, reused until an item keeps them.
        let mut current: Pin<Box<Option<_>>> = Box::pin(None);
        let mut relay = Relay::new();
        let mut waker = Waker::from(Arc::clone(&relay));
        let mut finish = move |index: usize, result: Result<O::Output, XcsError>| {
            plan.report(index, result.is_ok());
            outcomes.record(
                index,
                result.map_err(|error| {
                    plan.note_failure(index);
                    Some(Box::new(error))
                }),
            );
        };
        poll_fn(move |cx| {
            loop {
                while !stopped && in_flight.len() < limit {
                    let Some((index, input)) = pending.next() else {
                        stopped = true;
                        break;
                    };
                    if plan.skips(index) {
                        drop_quietly(input);
                        stopped = true;
                        break;
                    }
                    current.set(Some(match remote {
                        None => {
                            Either::Left(call_async::invoke_item(op, input, index, ambient, lean))
                        }
                        Some((sink, persist)) => Either::Right(remote::item(
                            op, input, index, ambient, sink, *persist, lean,
                        )),
                    }));
                    match poll_item(current.as_mut(), &mut Context::from_waker(&waker)) {
                        Poll::Ready(result) => {
                            current.set(None);
                            finish(index, result);
                        }
                        Poll::Pending => {
                            // The item keeps its box and the relay it registered.
                            let item = std::mem::replace(&mut current, Box::pin(None));
                            let kept = std::mem::replace(&mut relay, Relay::new());
                            waker = Waker::from(Arc::clone(&relay));
                            in_flight.push(Started {
                                index,
                                item,
                                relay: Some(kept),
                            });
                        }
                    }
                }
                // Items held back to fill a chunk go now.
                if let Some((sink, _)) = remote {
                    sink.flush();
                }
                match in_flight.poll_next_unpin(cx) {
                    Poll::Ready(Some((index, result))) => finish(index, result),
                    // Nothing in flight and nothing more to start.
                    Poll::Ready(None) => return Poll::Ready(()),
                    Poll::Pending => {
                        // Trips the items in flight submitted as they were polled (a retry,
                        // a hedge) go now: nothing else may wake this batch before they answer.
                        if let Some((sink, _)) = remote {
                            sink.flush();
                        }
                        return Poll::Pending;
                    }
                }
            }
        })
    };
    // Every item is polled inside this one future: the items' options, context, trace parent
    // and progress are entered once per poll of the batch, not once per item.
    let work = WithOptions::adopt(Arc::clone(&items), work);
    let finished = match plan.deadline() {
        Some(at) => tokio::time::timeout_at(at.into(), work).await.is_ok(),
        None => {
            work.await;
            true
        }
    };
    // Inputs never started are dropped here, their `Drop` panics caught.
    drop_quietly(pending);
    let timeout = if finished {
        None
    } else {
        plan.stop.cancel();
        Some(plan.context.timeout.unwrap_or_default())
    };
    let mut ran = Ran {
        parts: outcomes.into_parts(),
        timeout,
    };
    plan.conclude(&mut ran);
    Ok(ran)
}

/// Polls an item's future (present until it finishes).
fn poll_item<F: Future>(item: Pin<&mut Option<F>>, cx: &mut Context<'_>) -> Poll<F::Output> {
    match item.as_pin_mut() {
        Some(future) => future.poll(cx),
        None => Poll::Pending,
    }
}

/// The waker an item registered on its first poll, before it joined the in-flight set: a wake
/// is remembered, and passed on to the item's waker in the set once it has one.
struct Relay {
    woken: AtomicBool,
    waker: AtomicWaker,
}

impl Relay {
    fn new() -> Arc<Relay> {
        Arc::new(Relay {
            woken: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        })
    }
}

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// An item that returned `Pending` on its first poll, in the in-flight set.
struct Started<F> {
    index: usize,
    item: Pin<Box<Option<F>>>,
    /// Until the item is polled again: the waker it registered.
    relay: Option<Arc<Relay>>,
}

impl<F: Future> Future for Started<F> {
    type Output = (usize, F::Output);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(relay) = &this.relay {
            relay.waker.register(cx.waker());
            if !relay.woken.swap(false, Ordering::AcqRel) {
                return Poll::Pending;
            }
            // Polled from now on with the set's waker, which the item registers instead.
            this.relay = None;
        }
        match poll_item(this.item.as_mut(), cx) {
            Poll::Ready(result) => {
                this.item.set(None);
                Poll::Ready((this.index, result))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The items' outcomes: outputs of items that finished in index order without failing, then,
/// from the first item that did not, a slot per item.
struct Outcomes<T> {
    len: usize,
    /// The outputs of items `0..done.len()`.
    done: Vec<T>,
    /// The slots of items `done.len()..len`, once one of them finished out of order or failed.
    rest: Option<Vec<Option<Slot<T>>>>,
}

impl<T> Outcomes<T> {
    fn new(len: usize) -> Self {
        Outcomes {
            len,
            done: Vec::with_capacity(len),
            rest: None,
        }
    }

    #[inline]
    fn record(&mut self, index: usize, slot: Slot<T>) {
        let start = self.done.len();
        match (&mut self.rest, slot) {
            (None, Ok(output)) if index == start => self.done.push(output),
            (rest, slot) => {
                let (len, done) = (self.len, &mut self.done);
                let rest = rest.get_or_insert_with(|| {
                    // The room reserved for outputs in order is not needed any more.
                    done.shrink_to_fit();
                    (start..len).map(|_| None).collect()
                });
                rest[index - start] = Some(slot);
            }
        }
    }

    fn into_parts(self) -> Vec<Part<T>> {
        let missing = self.len - self.done.len();
        let mut parts = vec![Part::Ok(self.done)];
        match self.rest {
            None if missing > 0 => parts.push(Part::Missing(missing)),
            None => {}
            Some(rest) if rest.iter().all(|slot| matches!(slot, Some(Ok(_)))) => {
                parts.push(Part::Ok(rest.into_iter().flatten().flatten().collect()));
            }
            Some(rest) => parts.push(Part::Slots(
                rest.into_iter()
                    .map(|slot| slot.unwrap_or(Err(NOT_RUN)))
                    .collect(),
            )),
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;
    use crate::batch::plan::collect;
    use std::num::NonZeroUsize;

    use crate::options::OptionsPatch;
    use crate::{get_execution_options, vmap, with_options_async};

    /// Returns `Pending` until its waker has been woken (at once, or from another thread after
    /// `delay`), then `()`; counts its polls.
    struct Later {
        polls: Arc<AtomicUsize>,
        fired: Option<Arc<AtomicBool>>,
        delay: Option<Duration>,
    }

    impl Future for Later {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if let Some(fired) = &self.fired {
                return match fired.load(Ordering::SeqCst) {
                    true => Poll::Ready(()),
                    false => Poll::Pending,
                };
            }
            let fired = Arc::new(AtomicBool::new(false));
            self.fired = Some(Arc::clone(&fired));
            let waker = cx.waker().clone();
            let wake = move || {
                fired.store(true, Ordering::SeqCst);
                waker.wake();
            };
            match self.delay {
                None => wake(),
                Some(delay) => {
                    std::thread::spawn(move || {
                        std::thread::sleep(delay);
                        wake();
                    });
                }
            }
            Poll::Pending
        }
    }

    /// Odd items wait (every third of them for another thread), even ones finish at once;
    /// items from `fail_at` on fail.
    struct Mixed {
        polls: Arc<AtomicUsize>,
        started: Arc<AtomicUsize>,
        fail_at: u64,
    }

    impl AsyncOperator for Mixed {
        type Input = u64;
        type Output = u64;

        async fn forward(&self, x: u64) -> Result<u64, XcsError> {
            self.started.fetch_add(1, Ordering::SeqCst);
            // The batch's options are in force on every poll, first or later.
            assert_eq!(get_execution_options().max_retries, 0);
            if x % 2 == 1 {
                let delay = (x % 3 == 0).then(|| Duration::from_millis(1 + x % 7));
                Later {
                    polls: Arc::clone(&self.polls),
                    fired: None,
                    delay,
                }
                .await;
                assert_eq!(get_execution_options().max_retries, 0);
            }
            if x >= self.fail_at {
                return Err(XcsError::permanent("mixed", format!("item {x}")));
            }
            Ok(x * 10)
        }

        fn name(&self) -> &str {
            "mixed"
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap()
    }

    #[test]
    fn items_finishing_at_once_or_later_keep_input_order_and_are_polled_when_woken() {
        runtime().block_on(async {
            for workers in [1, 3, 1000] {
                let (polls, started) = (Arc::default(), Arc::default());
                let op = vmap(Mixed {
                    polls: Arc::clone(&polls),
                    started: Arc::clone(&started),
                    fail_at: u64::MAX,
                });
                let patch = OptionsPatch::new().max_workers(NonZeroUsize::new(workers));
                let out = with_options_async(&patch, async { op.call((0..200).collect()).await })
                    .await
                    .unwrap();
                assert_eq!(out, (0..200).map(|x| x * 10).collect::<Vec<_>>());
                // Each waiting item is polled twice: once to start, once after its wake.
                assert_eq!(polls.load(Ordering::SeqCst), 200);
                assert_eq!(started.load(Ordering::SeqCst), 200);
            }
        });
    }

    #[test]
    fn the_lowest_failing_index_wins_and_later_items_do_not_start() {
        runtime().block_on(async {
            let (polls, started) = (Arc::default(), Arc::default());
            let op = vmap(Mixed {
                polls,
                started: Arc::clone(&started),
                fail_at: 6,
            });
            // In order, one at a time: nothing after the failing item starts.
            let patch = OptionsPatch::new().use_parallel(false);
            let error = with_options_async(&patch, async { op.call((0..50).collect()).await })
                .await
                .unwrap_err();
            assert!(error.to_string().contains("item 6"), "{error}");
            assert_eq!(started.load(Ordering::SeqCst), 7);
            // All in flight: item 6 finishes first, yet 7 (which waits) fails too and is later.
            let error = op.call((0..50).collect()).await.unwrap_err();
            assert!(error.to_string().contains("item 6"), "{error}");
            // Settled: every item's own outcome.
            let outcomes = op.call_settled_async((0..10).collect()).await;
            assert_eq!(outcomes.len(), 10);
            for (x, outcome) in outcomes.iter().enumerate() {
                assert_eq!(outcome.is_ok(), x < 6, "{x}: {outcome:?}");
            }
        });
    }

    #[test]
    fn outcomes_in_order_out_of_order_failed_and_missing() {
        let ok = |parts: Vec<Part<u32>>| {
            collect(
                Ok(Ran {
                    parts,
                    timeout: None,
                }),
                "op",
            )
        };
        // In order: one part, no slots.
        let mut outcomes = Outcomes::new(3);
        (0..3).for_each(|i| outcomes.record(i, Ok(i as u32)));
        let parts = outcomes.into_parts();
        assert!(matches!(&parts[..], [Part::Ok(v)] if v.len() == 3));
        // Out of order, all fine: still outputs only.
        let mut outcomes = Outcomes::new(4);
        for i in [0, 2, 3, 1] {
            outcomes.record(i, Ok(i as u32));
        }
        let parts = outcomes.into_parts();
        assert!(matches!(&parts[..], [Part::Ok(a), Part::Ok(b)] if a.len() == 1 && b.len() == 3));
        assert_eq!(ok(parts).unwrap(), vec![0, 1, 2, 3]);
        // A failure, and an item that never ran.
        let mut outcomes = Outcomes::new(4);
        outcomes.record(0, Ok(0));
        outcomes.record(2, Ok(2));
        outcomes.record(1, Err(Some(Box::new(XcsError::permanent("op", "no")))));
        let error = ok(outcomes.into_parts()).unwrap_err();
        assert!(error.to_string().contains("no"), "{error}");
        // Cut short in order: the rest are missing.
        let mut outcomes = Outcomes::new(4);
        outcomes.record(0, Ok(0));
        let parts = outcomes.into_parts();
        assert_eq!(parts.iter().map(Part::len).sum::<usize>(), 4);
        assert!(matches!(
            ok(parts),
            Err(XcsError::Cancelled { index: Some(1), .. })
        ));
    }
}
