//! Items abandoned at a deadline: counted, warned about, and capped with a typed
//! error. One test: the count is process-wide.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::watchdog;
use xcs::{Operator, OptionsPatch, XcsError, pmap, vmap, with_options};

/// Hangs until its gate opens (a never-returning model call).
struct Hang(Arc<AtomicBool>);
impl Operator for Hang {
    type Input = u64;
    type Output = u64;
    fn forward(&self, x: u64) -> Result<u64, XcsError> {
        while !self.0.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(x)
    }
    fn name(&self) -> &str {
        "hang"
    }
}

/// Records the `xcs` warnings (their `abandoned` field).
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<u64>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Abandoned(Option<u64>);
        impl tracing::field::Visit for Abandoned {
            fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                if field.name() == "abandoned" {
                    self.0 = Some(value);
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let meta = event.metadata();
        if meta.target() == "xcs" && *meta.level() == tracing::Level::WARN {
            let mut abandoned = Abandoned(None);
            event.record(&mut abandoned);
            if let Some(n) = abandoned.0 {
                self.0.lock().unwrap().push(n);
            }
        }
    }
}

#[test]
fn abandoned_items_are_counted_and_capped() {
    let _lock = common::global_lock();
    // The caller that gives up warns, on its own thread.
    let warnings = Warnings::default();
    let _subscriber = {
        use tracing_subscriber::layer::SubscriberExt;
        tracing::subscriber::set_default(tracing_subscriber::registry().with(warnings.clone()))
    };
    let gate = Arc::new(AtomicBool::new(false));
    let timeout = OptionsPatch::new()
        .timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let previous = xcs::set_abandoned_limit(6);
    watchdog("abandoned items", Duration::from_secs(60), || {
        assert_eq!(xcs::abandoned_items(), 0);
        // Two hung items per call: three calls reach the limit of six.
        for round in 0..3 {
            let err = with_options(&timeout, || {
                pmap(Hang(Arc::clone(&gate)), 2).call(vec![1, 2])
            });
            assert!(err.unwrap_err().is_timeout());
            assert_eq!(xcs::abandoned_items(), 2 * (round + 1));
        }
        assert_eq!(xcs::thread_stats().abandoned, 6);
        assert_eq!(
            *warnings.0.lock().unwrap(),
            vec![2, 2, 2],
            "one warning per give-up"
        );
        // At the limit, calls that enforce a deadline refuse to start…
        let err =
            with_options(&timeout, || vmap(Hang(Arc::clone(&gate))).call(vec![1])).unwrap_err();
        assert!(
            matches!(
                err,
                XcsError::AbandonedLimit {
                    abandoned: 6,
                    limit: 6,
                    ..
                }
            ),
            "{err}"
        );
        let err = with_options(&timeout, || Arc::new(Hang(Arc::clone(&gate))).call(1)).unwrap_err();
        assert!(matches!(err, XcsError::AbandonedLimit { .. }), "{err}");
        gate.store(true, Ordering::SeqCst);
        // The hung items return; the count goes back to zero, and calls start again.
        while xcs::abandoned_items() > 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = with_options(&timeout, || {
            pmap(Hang(Arc::clone(&gate)), 2).call(vec![1, 2])
        });
        assert_eq!(out.unwrap(), vec![1, 2]);
    });
    xcs::set_abandoned_limit(previous);
}
