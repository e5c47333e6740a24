//! `device_strategy`: batches go to the backend the strategy names, or fail clearly.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};

use common::{
    Double, Probe, ProbeOptions, ProbeOptionsInputs, assert_lowercase_led, global_lock, nz, serial,
};
use xcs::prelude::*;
use xcs::{Backend, BatchJob, DeviceStrategy};

/// Runs items in reverse order on a thread of its own, recording what it was given.
#[derive(Default)]
struct Recording {
    batches: AtomicUsize,
    items: AtomicUsize,
    threads: Mutex<Vec<ThreadId>>,
}

impl Backend for Recording {
    fn run(&self, job: &BatchJob) {
        self.batches.fetch_add(1, Ordering::SeqCst);
        self.items.fetch_add(job.len(), Ordering::SeqCst);
        let runner = job.item_runner();
        let len = job.len();
        let thread = std::thread::spawn(move || {
            for index in (0..len).rev() {
                runner(index);
            }
            std::thread::current().id()
        });
        self.threads.lock().unwrap().push(thread.join().unwrap());
    }
}

fn strategy(strategy: DeviceStrategy) -> OptionsPatch {
    OptionsPatch::new().device_strategy(strategy)
}

#[test]
fn a_registered_gpu_backend_receives_the_batch() {
    let _lock = global_lock();
    let backend = Arc::new(Recording::default());
    xcs::register_backend("gpu", backend.clone()).unwrap();
    let (op, record) = Probe::new(0);
    let patch = strategy(DeviceStrategy::Gpu).enable_caching(false);
    let (out, outer) = with_options(&patch, || {
        (
            vmap(op).call((0..5).collect()),
            xcs::get_execution_options(),
        )
    });
    xcs::unregister_backend("gpu");
    assert_eq!(out.unwrap(), vec![0, 10, 20, 30, 40]);
    assert_eq!(backend.batches.load(Ordering::SeqCst), 1);
    assert_eq!(backend.items.load(Ordering::SeqCst), 5);
    // Items ran on the backend's thread, in the backend's order, under the caller's options.
    let backend_thread = backend.threads.lock().unwrap()[0];
    assert_eq!(
        record.threads.lock().unwrap().iter().collect::<Vec<_>>(),
        vec![&backend_thread]
    );
    assert_eq!(*record.order.lock().unwrap(), vec![4, 3, 2, 1, 0]);
    assert!(record.seen.lock().unwrap().iter().all(|o| *o == outer));
}

#[test]
fn gpu_without_a_backend_is_unavailable() {
    let _lock = global_lock();
    xcs::unregister_backend("gpu");
    let (op, record) = Probe::new(0);
    let err =
        with_options(&strategy(DeviceStrategy::Gpu), || vmap(op).call(vec![1, 2])).unwrap_err();
    match &err {
        XcsError::DeviceUnavailable {
            strategy,
            registered,
        } => {
            assert_eq!(strategy, "gpu");
            assert!(registered.contains(&"cpu".to_string()));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("`gpu`"), "{err}");
    assert_eq!(record.started.load(Ordering::SeqCst), 0);
}

#[test]
fn named_strategies_use_their_backend() {
    let _lock = global_lock();
    let tpu = Arc::new(Recording::default());
    xcs::register_backend("tpu", tpu.clone()).unwrap();
    // A registered name also parses from configuration.
    let patch = OptionsPatch::from_pairs([("device_strategy", "tpu")]).unwrap();
    let (op, _) = Probe::new(0);
    let out = with_options(&patch, || vmap(op).call(vec![1, 2, 3])).unwrap();
    assert_eq!(out, vec![10, 20, 30]);
    assert_eq!(tpu.batches.load(Ordering::SeqCst), 1);
    xcs::unregister_backend("tpu");
    let (op, _) = Probe::new(0);
    let err = with_options(&strategy(DeviceStrategy::named("tpu")), || {
        vmap(op).call(vec![1])
    })
    .unwrap_err();
    assert!(matches!(err, XcsError::DeviceUnavailable { .. }));
    assert!(OptionsPatch::from_pairs([("device_strategy", "tpu")]).is_err());
}

#[test]
fn cpu_and_auto_use_the_built_in_backend() {
    let _lock = global_lock();
    assert!(xcs::register_backend("cpu", Recording::default()).is_err());
    // A registered GPU backend is not used unless the strategy asks for it.
    let gpu = Arc::new(Recording::default());
    xcs::register_backend("gpu", gpu.clone()).unwrap();
    for s in [DeviceStrategy::Auto, DeviceStrategy::Cpu] {
        let (op, record) = Probe::new(0);
        let out = with_options(&strategy(s), || vmap(op).call((0..6).collect())).unwrap();
        assert_eq!(out, vec![0, 10, 20, 30, 40, 50]);
        assert_eq!(record.started.load(Ordering::SeqCst), 6);
    }
    xcs::unregister_backend("gpu");
    assert_eq!(gpu.batches.load(Ordering::SeqCst), 0);
}

#[test]
fn settled_batches_report_an_unavailable_device_for_every_item() {
    let _lock = global_lock();
    xcs::unregister_backend("gpu");
    let (op, _) = Probe::new(0);
    let outcomes = with_options(&strategy(DeviceStrategy::Gpu), || {
        vmap(op).call_settled(vec![1, 2, 3])
    });
    assert_eq!(outcomes.len(), 3);
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Err(XcsError::DeviceUnavailable { .. })))
    );
}

/// Runs the first item, then panics.
struct Faulty;

impl Backend for Faulty {
    fn run(&self, job: &BatchJob) {
        job.run_item(0);
        panic!("device lost");
    }
}

#[test]
fn a_panicking_backend_fails_the_batch_without_unwinding() {
    let _lock = global_lock();
    xcs::register_backend("faulty", Faulty).unwrap();
    let (op, record) = Probe::new(0);
    let err = with_options(&strategy(DeviceStrategy::named("faulty")), || {
        vmap(op).call(vec![1, 2, 3])
    })
    .unwrap_err();
    xcs::unregister_backend("faulty");
    match &err {
        XcsError::Panicked { message, index, .. } => {
            assert!(message.contains("device lost"), "{message}");
            assert_eq!(*index, Some(1));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(record.started.load(Ordering::SeqCst), 1);
}

/// An async batch under a strategy whose backend cannot run it (backends receive sync batches)
/// fails, naming why, instead of running on the caller's runtime; an unregistered strategy is
/// still `DeviceUnavailable`, and `auto`/`cpu` run it.
#[cfg(feature = "tokio")]
#[test]
fn async_batches_never_run_elsewhere_under_a_named_strategy() {
    use xcs::{AsyncOperator, pmap};

    struct Halve;
    impl AsyncOperator for Halve {
        type Input = u64;
        type Output = u64;
        async fn forward(&self, x: u64) -> Result<u64, XcsError> {
            tokio::task::yield_now().await;
            Ok(x / 2)
        }
        fn name(&self) -> &str {
            "halve"
        }
    }

    let _lock = global_lock();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cluster = Arc::new(Recording::default());
    let named = Arc::new(Recording::default());
    xcs::register_backend("cluster", cluster.clone()).unwrap();
    xcs::register_backend("async-test-device", named.clone()).unwrap();
    let strategies = [
        DeviceStrategy::named("cluster"),
        DeviceStrategy::named("async-test-device"),
    ];
    runtime.block_on(async {
        for chosen in strategies {
            let patch = strategy(chosen);
            let vmapped =
                xcs::with_options_async(&patch, async { vmap(Halve).call(vec![2, 4]).await }).await;
            let pmapped =
                xcs::with_options_async(&patch, async { pmap(Halve, 2).call(vec![2, 4]).await })
                    .await;
            for (result, batch) in [(vmapped, "vmap(halve)"), (pmapped, "pmap(halve)")] {
                match result {
                    Err(error @ XcsError::DeviceUnsupported { .. }) => {
                        let text = error.to_string();
                        assert!(
                            text.contains(chosen.as_str()) && text.contains(batch),
                            "{text}"
                        );
                        assert!(text.contains("async batch"), "{text}");
                    }
                    other => panic!("{chosen}: {other:?}"),
                }
            }
        }
        // Unregistered: unavailable, as for sync batches.
        let gone = strategy(DeviceStrategy::named("async-test-unregistered"));
        let result =
            xcs::with_options_async(&gone, async { vmap(Halve).call(vec![2]).await }).await;
        assert!(
            matches!(result, Err(XcsError::DeviceUnavailable { .. })),
            "{result:?}"
        );
        // The built-in backend runs async batches on this runtime.
        for builtin in [DeviceStrategy::Auto, DeviceStrategy::Cpu] {
            let result = xcs::with_options_async(&strategy(builtin), async {
                vmap(Halve).call(vec![2, 4]).await
            })
            .await;
            assert_eq!(result.unwrap(), [1, 2]);
        }
    });
    xcs::unregister_backend("cluster");
    xcs::unregister_backend("async-test-device");
    // Neither backend was handed anything, and nothing ran elsewhere.
    assert_eq!(cluster.batches.load(Ordering::SeqCst), 0);
    assert_eq!(named.batches.load(Ordering::SeqCst), 0);
}

#[test]
fn device_auto_and_cpu_use_the_builtin_backend() {
    let _s = serial();
    for ds in [DeviceStrategy::Auto, DeviceStrategy::Cpu] {
        let out =
            execution_options!(device_strategy = ds => vmap(Double).call(vec![1, 2, 3]).unwrap());
        assert_eq!(out, vec![2, 4, 6]);
        let out = execution_options!(device_strategy = ds => pmap(Double, 2).call(vec![1, 2, 3]).unwrap());
        assert_eq!(out, vec![2, 4, 6]);
    }
}

#[test]
fn device_unavailable_without_registered_backend() {
    let _s = serial();
    let err =
        execution_options!(device_strategy = "gpu" => vmap(Double).call(vec![1, 2])).unwrap_err();
    assert!(matches!(err, XcsError::DeviceUnavailable { .. }), "{err:?}");
    assert!(err.to_string().to_lowercase().contains("gpu"), "{err}");
    assert_lowercase_led(&err);

    let err = execution_options!(device_strategy = "gpu" => pmap(Double, 2).call(vec![1, 2]))
        .unwrap_err();
    assert!(matches!(err, XcsError::DeviceUnavailable { .. }), "{err:?}");

    let strategy = DeviceStrategy::named("no-such-backend-xyz");
    let err = execution_options!(device_strategy = strategy => vmap(Double).call(vec![1, 2]))
        .unwrap_err();
    assert!(matches!(err, XcsError::DeviceUnavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-backend-xyz"), "{err}");

    let patch = OptionsPatch::from_pairs([("device_strategy", "gpu")]).unwrap();
    let err = with_options(&patch, || vmap(Double).call(vec![1])).unwrap_err();
    assert!(matches!(err, XcsError::DeviceUnavailable { .. }), "{err:?}");
}

struct OwnThreads {
    batches: Arc<AtomicUsize>,
}

impl xcs::Backend for OwnThreads {
    fn run(&self, job: &xcs::BatchJob) {
        self.batches.fetch_add(1, Ordering::SeqCst);
        let runner = job.item_runner();
        let handles: Vec<_> = (0..job.len())
            .map(|i| {
                let runner = runner.clone();
                thread::spawn(move || runner(i))
            })
            .collect();
        for h in handles {
            let _ = h.join();
        }
    }
}

#[test]
fn registered_backends_run_batches_with_the_callers_options() {
    let _s = serial();
    let batches = Arc::new(AtomicUsize::new(0));
    xcs::register_backend(
        "own-threads",
        OwnThreads {
            batches: batches.clone(),
        },
    )
    .unwrap();
    let strategy = DeviceStrategy::named("own-threads");
    let out = execution_options!(device_strategy = strategy, max_workers = 6 => {
        vmap(ProbeOptions).call((21..=23).map(|x| ProbeOptionsInputs { x }).collect())
    });
    // While registered, the DeviceUnavailable message lists the registered backends.
    let err =
        execution_options!(device_strategy = "gpu" => vmap(Double).call(vec![1])).unwrap_err();
    let gpu = xcs::register_backend(
        "gpu",
        OwnThreads {
            batches: batches.clone(),
        },
    )
    .unwrap();
    let via_gpu =
        execution_options!(device_strategy = "gpu" => pmap(Double, 2).call(vec![1, 2, 3]));
    xcs::unregister_backend("gpu");
    xcs::unregister_backend("own-threads");
    assert!(gpu.is_none());

    let out = out.unwrap();
    assert_eq!(
        out.iter().map(|t| t.0).collect::<Vec<_>>(),
        vec![21, 22, 23],
        "order kept"
    );
    assert!(
        out.iter().all(|t| t.1 == nz(6)),
        "items on the backend's threads see the caller's options"
    );
    assert!(matches!(err, XcsError::DeviceUnavailable { .. }));
    assert!(err.to_string().contains("own-threads"), "{err}");
    assert_eq!(
        via_gpu.unwrap(),
        vec![2, 4, 6],
        "Gpu uses the backend registered as \"gpu\""
    );
    assert_eq!(batches.load(Ordering::SeqCst), 2);
}
