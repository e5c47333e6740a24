//! Async operators: options across `.await`, in-flight bounds, real cancellation.
#![cfg(feature = "tokio")]

use crate::common;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::Gauge;
use xcs::{
    AsyncOperator, Operator, OptionsPatch, XcsError, blocking, execution_options,
    get_execution_options, pmap, vmap, with_options_async,
};

/// Counts live futures: created by `forward`, gone when dropped (finished or cancelled).
#[derive(Default)]
struct Alive(AtomicUsize);

struct Tracked<'a>(&'a Alive);
impl<'a> Tracked<'a> {
    fn new(alive: &'a Alive) -> Self {
        alive.0.fetch_add(1, Ordering::SeqCst);
        Tracked(alive)
    }
}
impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sleeps `ms` (awaiting, not blocking), counting items in flight and live futures.
struct Nap {
    ms: u64,
    gauge: Arc<Gauge>,
    alive: Arc<Alive>,
    seen: Arc<std::sync::Mutex<Vec<Option<usize>>>>,
}

impl Nap {
    fn new(ms: u64) -> Nap {
        Nap {
            ms,
            gauge: Arc::default(),
            alive: Arc::default(),
            seen: Arc::default(),
        }
    }
}

impl AsyncOperator for Nap {
    type Input = u64;
    type Output = u64;
    async fn forward(&self, x: u64) -> Result<u64, XcsError> {
        let _alive = Tracked::new(&self.alive);
        let _running = self.gauge.enter();
        let before = get_execution_options().max_workers.map(NonZeroUsize::get);
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        // Possibly on another runtime thread now: the options are still the caller's.
        let after = get_execution_options().max_workers.map(NonZeroUsize::get);
        assert_eq!(before, after);
        self.seen.lock().unwrap().push(after);
        if x == 100_013 {
            return Err(XcsError::operator("nap", "unlucky"));
        }
        if x == 100_066 {
            panic!("nap panicked");
        }
        Ok(x * 2)
    }
    fn name(&self) -> &str {
        "nap"
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

#[test]
fn in_flight_is_bounded_by_max_workers_pmap_and_use_parallel() {
    rt().block_on(async {
        let op = Arc::new(Nap::new(5));
        let out = execution_options!(max_workers = 3 => async {
            vmap(Arc::clone(&op)).call((0..12).collect()).await
        })
        .await
        .unwrap();
        assert_eq!(out, (0..12).map(|x| x * 2).collect::<Vec<_>>());
        assert_eq!(op.gauge.peak(), 3);
        assert!(op.seen.lock().unwrap().iter().all(|m| *m == Some(3)));

        let op = Arc::new(Nap::new(5));
        pmap(Arc::clone(&op), 4)
            .call((0..12).collect())
            .await
            .unwrap();
        assert_eq!(op.gauge.peak(), 4);

        let op = Arc::new(Nap::new(1));
        execution_options!(use_parallel = false => async {
            vmap(Arc::clone(&op)).call((0..6).collect()).await
        })
        .await
        .unwrap();
        assert_eq!(op.gauge.peak(), 1);

        // Unset max_workers: the whole batch in flight at once.
        let op = Arc::new(Nap::new(20));
        vmap(Arc::clone(&op)).call((0..50).collect()).await.unwrap();
        assert_eq!(op.gauge.peak(), 50);
    });
}

/// Each item waits at a barrier for every item of the batch (until a shared deadline); counts
/// the items that got through.
struct Meet {
    barrier: Arc<tokio::sync::Barrier>,
    until: tokio::time::Instant,
    met: Arc<AtomicUsize>,
    gauge: Arc<Gauge>,
}

impl AsyncOperator for Meet {
    type Input = u64;
    type Output = u64;
    async fn forward(&self, x: u64) -> Result<u64, XcsError> {
        let _running = self.gauge.enter();
        if tokio::time::timeout_at(self.until, self.barrier.wait())
            .await
            .is_ok()
        {
            self.met.fetch_add(1, Ordering::SeqCst);
        }
        Ok(x)
    }
    fn name(&self) -> &str {
        "meet"
    }
}

#[test]
fn max_workers_of_thousands_keeps_that_many_futures_in_flight() {
    const ITEMS: usize = 5000;
    let meet = || {
        Arc::new(Meet {
            barrier: Arc::new(tokio::sync::Barrier::new(ITEMS)),
            until: tokio::time::Instant::now() + Duration::from_secs(20),
            met: Arc::default(),
            gauge: Arc::default(),
        })
    };
    rt().block_on(async {
        // 5 000 requests at once: every item passes the barrier only if all are in flight.
        let op = meet();
        let out = execution_options!(max_workers = 5_000 => async {
            vmap(Arc::clone(&op)).call((0..ITEMS as u64).collect()).await
        })
        .await
        .unwrap();
        assert_eq!(out.len(), ITEMS);
        assert_eq!(op.met.load(Ordering::SeqCst), ITEMS);
        assert_eq!(op.gauge.peak(), ITEMS);

        // Larger counts, literal or computed at run time, are as good as the whole batch.
        let op = meet();
        execution_options!(max_workers = 1_000_000 => async {
            vmap(Arc::clone(&op)).call((0..ITEMS as u64).collect()).await
        })
        .await
        .unwrap();
        assert_eq!(op.met.load(Ordering::SeqCst), ITEMS);
        let op = meet();
        let patch = OptionsPatch::from_pairs([("max_workers", "5000")]).unwrap();
        with_options_async(&patch, async {
            vmap(Arc::clone(&op))
                .call((0..ITEMS as u64).collect())
                .await
        })
        .await
        .unwrap();
        assert_eq!(op.met.load(Ordering::SeqCst), ITEMS);
    });
}

#[test]
fn scopes_do_not_leak_into_siblings_or_other_tasks() {
    rt().block_on(async {
        let inside = execution_options!(max_workers = 3 => async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            get_execution_options().max_workers.map(NonZeroUsize::get)
        });
        let sibling = async {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let during = get_execution_options().max_workers;
            tokio::time::sleep(Duration::from_millis(6)).await;
            (during, get_execution_options().max_workers)
        };
        let task = tokio::spawn(async {
            tokio::time::sleep(Duration::from_millis(3)).await;
            get_execution_options().max_workers
        });
        let (inside, sibling) = tokio::join!(inside, sibling);
        assert_eq!(inside, Some(3));
        assert_eq!(sibling, (None, None));
        assert_eq!(task.await.unwrap(), None);
        // The runtime form, and nesting: an inner patch adds to the outer one.
        let patch = OptionsPatch::new().enable_caching(true);
        let seen = with_options_async(&patch, async {
            execution_options!(max_workers = 2 => async {
                tokio::task::yield_now().await;
                get_execution_options()
            })
            .await
        })
        .await;
        assert!(seen.enable_caching);
        assert_eq!(seen.max_workers.map(NonZeroUsize::get), Some(2));
    });
}

#[test]
fn a_timeout_drops_every_in_flight_future_before_returning() {
    rt().block_on(async {
        let op = Arc::new(Nap::new(10_000));
        let err = execution_options!(timeout_seconds = 0.05, max_workers = 8 => async {
            vmap(Arc::clone(&op)).call((0..32).collect()).await
        })
        .await
        .unwrap_err();
        assert!(err.is_timeout(), "{err}");
        // Dropped, not detached: nothing the call started is alive when it returns.
        assert_eq!(op.alive.0.load(Ordering::SeqCst), 0);
        assert_eq!(op.gauge.peak(), 8);
        // A single call too.
        let err = execution_options!(timeout_seconds = 0.02 => async {
            op.call(1).await
        })
        .await
        .unwrap_err();
        assert!(err.is_timeout());
        assert_eq!(op.alive.0.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn errors_panics_and_settled_outcomes() {
    rt().block_on(async {
        let op = Arc::new(Nap::new(1));
        let err = vmap(Arc::clone(&op))
            .call(vec![1, 100_013, 2, 100_066])
            .await
            .unwrap_err();
        assert_eq!(err.index(), Some(1), "{err}");
        let err = pmap(Arc::clone(&op), 2)
            .call(vec![1, 100_066])
            .await
            .unwrap_err();
        assert!(
            matches!(err, XcsError::Panicked { index: Some(1), .. }),
            "{err}"
        );
        let settled = vmap(Arc::clone(&op))
            .call_settled_async(vec![1, 100_013, 100_066, 4])
            .await;
        assert!(settled[0].is_ok() && settled[3].is_ok());
        assert!(matches!(settled[1], Err(XcsError::Operator { .. })));
        assert!(matches!(settled[2], Err(XcsError::Panicked { .. })));
        // Unstarted items after a failure are not started: one at a time, the first fails.
        let op = Arc::new(Nap::new(1));
        let err = execution_options!(use_parallel = false => async {
            vmap(Arc::clone(&op)).call(vec![100_013, 1, 2, 3]).await
        })
        .await
        .unwrap_err();
        assert_eq!(err.index(), Some(0));
        assert_eq!(op.gauge.entered(), 1);
    });
}

#[test]
fn nested_async_batches_and_sync_operators_compose() {
    struct Row(Arc<Nap>);
    impl AsyncOperator for Row {
        type Input = u64;
        type Output = u64;
        async fn forward(&self, x: u64) -> Result<u64, XcsError> {
            let cells = pmap(Arc::clone(&self.0), 2).call(vec![x, x + 1]).await?;
            Ok(cells.iter().sum())
        }
        fn name(&self) -> &str {
            "row"
        }
    }
    struct Square;
    impl Operator for Square {
        type Input = u64;
        type Output = u64;
        fn forward(&self, x: u64) -> Result<u64, XcsError> {
            Ok(x * x)
        }
        fn name(&self) -> &str {
            "square"
        }
    }
    rt().block_on(async {
        let nap = Arc::new(Nap::new(2));
        let rows = vmap(Row(Arc::clone(&nap))).call(vec![0, 10]).await.unwrap();
        assert_eq!(rows, vec![2, 42]);
        let nested = vmap(vmap(Arc::clone(&nap)))
            .call(vec![vec![1, 2], vec![3]])
            .await
            .unwrap();
        assert_eq!(nested, vec![vec![2, 4], vec![6]]);
        let squares = vmap(blocking(Square)).call(vec![2, 3]).await.unwrap();
        assert_eq!(squares, vec![4, 9]);
        // Nested deadlines: the inner, shorter one fires; the outer one still holds.
        let err = execution_options!(timeout_seconds = 5 => async {
            execution_options!(timeout_seconds = 0.02 => async {
                Arc::new(Nap::new(10_000)).call(1).await
            })
            .await
        })
        .await
        .unwrap_err();
        assert!(err.is_timeout());
    });
}

#[test]
fn concurrent_identical_calls_run_the_body_once_without_blocking_a_thread() {
    // The memory cache is process-wide (its bounds included): with the binary's other users.
    let _lock = common::global_lock();
    // One thread: a waiter that blocked it would never let the body finish.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    common::watchdog("async single flight", Duration::from_secs(60), || {
        runtime.block_on(async {
            struct Counted(Arc<AtomicUsize>);
            impl AsyncOperator for Counted {
                type Input = u64;
                type Output = u64;
                async fn forward(&self, x: u64) -> Result<u64, XcsError> {
                    self.0.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok(x + 1)
                }
                fn name(&self) -> &str {
                    "counted_async"
                }
            }
            let bodies = Arc::new(AtomicUsize::new(0));
            let op = vmap(Counted(Arc::clone(&bodies)));
            let out = execution_options!(enable_caching = true => async {
                op.call(vec![7_000_001; 50]).await
            })
            .await
            .unwrap();
            assert_eq!(out, vec![7_000_002; 50]);
            assert_eq!(bodies.load(Ordering::SeqCst), 1);
        });
    });
}

/// Returns its input at once.
struct InstantAsync;

impl AsyncOperator for InstantAsync {
    type Input = u64;
    type Output = u64;

    async fn forward(&self, input: u64) -> Result<u64, XcsError> {
        Ok(input)
    }

    fn name(&self) -> &str {
        "instant_async"
    }
}

/// An async batch whose deadline passes before its items start is a timeout, never
/// `Cancelled`, whichever comes first of the deadline check and the start of an item.
#[tokio::test]
async fn an_async_batch_cut_by_its_deadline_is_always_a_timeout() {
    let patch = OptionsPatch::new()
        .timeout(Some(Duration::from_nanos(1)))
        .unwrap();
    for round in 0..5_000 {
        let errors = [
            with_options_async(&patch, async {
                vmap(InstantAsync).call(vec![1, 2, 3, 4]).await
            })
            .await
            .unwrap_err(),
            with_options_async(&patch, async {
                pmap(InstantAsync, 2).call(vec![1, 2, 3, 4]).await
            })
            .await
            .unwrap_err(),
        ];
        for error in errors {
            assert!(
                matches!(error, XcsError::Timeout { .. }),
                "round {round}: {error:?}"
            );
        }
    }
}

/// Two batches made in place and joined: each batch's future owns what it needs, so the
/// temporaries `vmap(a)` and `vmap(b)` may go before the futures are awaited.
#[test]
fn batches_made_in_place_can_be_joined() {
    rt().block_on(async {
        let (a, b) = (Arc::new(Nap::new(5)), Arc::new(Nap::new(5)));
        let (x, y) = (vec![1, 2, 3], vec![4, 5]);
        let (left, right) = tokio::join!(vmap(a).call(x), vmap(b).call(y));
        assert_eq!(left.unwrap(), [2, 4, 6]);
        assert_eq!(right.unwrap(), [8, 10]);
        // pmap and `call_settled_async` too, under the options in force when they are called.
        let (c, d) = (Arc::new(Nap::new(5)), Arc::new(Nap::new(5)));
        let (left, right) = execution_options!(max_workers = 1 => async {
            tokio::join!(
                pmap(c, 2).call(vec![7]),
                vmap(d).call_settled_async(vec![100_013, 8])
            )
        })
        .await;
        assert_eq!(left.unwrap(), [14]);
        assert!(right[0].is_err() && right[1].as_ref().is_ok_and(|v| *v == 16));
        // A sync operator's batch is still the sync `Operator::call`.
        struct Triple;
        impl Operator for Triple {
            type Input = u64;
            type Output = u64;
            fn forward(&self, x: u64) -> Result<u64, XcsError> {
                Ok(3 * x)
            }
            fn name(&self) -> &str {
                "triple"
            }
        }
        let sync: Result<Vec<u64>, XcsError> = vmap(Triple).call(vec![1, 2]);
        assert_eq!(sync.unwrap(), [3, 6]);
        let sync: Result<Vec<u64>, XcsError> = pmap(Triple, 2).call(vec![3]);
        assert_eq!(sync.unwrap(), [9]);
    });
}
