//! Items abandoned at a deadline (SPEC §5): counted, warned about, and capped with a typed
//! error. One test: the count is process-wide.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

#[test]
fn abandoned_items_are_counted_and_capped() {
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
