//! `hedge_after`: when a call's attempt has run too long, a second attempt on a copy of its
//! input races it, and the first success answers the call.
//!
//! The rules, decided by the call plan and carried out by the drivers:
//!
//! - **When.** A fixed delay, or a quantile of the operator's own latency: each operator (by
//!   name) keeps the latencies of its last [`WINDOW`] successful calls made under
//!   `hedge_after` (from the start of the attempt that succeeded, or of the attempt its hedge
//!   raced, to the answer), and no quantile hedges before [`MIN_OBSERVATIONS`] of them. The
//!   delay is set when an attempt starts (an attempt that starts before the quantile is known is
//!   not hedged); one that ends at or past the deadline hedges nothing.
//! - **At most one hedge per call** (per batch item), retries included: once a hedge has
//!   started (or its admission has been refused), no later attempt of the call is hedged.
//! - **Admission.** A hedge is an attempt like any other: it reserves its own estimate against
//!   the budget, waits for its rate slot and for its resource's start (racing the first attempt
//!   meanwhile), and is charged what it records. It never waits for a place in flight: a
//!   resource with none free, a budget that cannot hold another estimate, or a rate slot past
//!   the deadline means no hedge (hedging a saturated provider only adds to its queue).
//! - **The race.** The first success answers the call and the other attempt is cancelled (an
//!   async body is dropped; a sync body is abandoned on its thread with
//!   [`cancelled`](crate::cancelled) set, as at a deadline); what it recorded by then is charged,
//!   and a loser that recorded nothing is charged its estimate (its request was made). An attempt
//!   that fails while the other runs waits for the other's outcome: only when both have failed
//!   does the call go on — with the first attempt's error, retried under `max_retries` like any
//!   failure, unhedged.
//! - **Who can hedge.** Async calls, and sync calls whose body the driver can abandon (an owned
//!   handle: see `timeout_seconds`); a batch hedges its items, never itself. An input that
//!   cannot be copied is not hedged (warned once per operator).
//!
//! Latencies are only kept for calls under `hedge_after`: without it, nothing here runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use crate::options::Hedge;

/// How many recent latencies an operator keeps.
pub(crate) const WINDOW: usize = 256;

/// How many successful calls an operator needs before a quantile hedges.
pub(crate) const MIN_OBSERVATIONS: usize = 20;

/// The last [`WINDOW`] latencies of one operator.
#[derive(Debug, Default)]
pub(crate) struct Latencies {
    samples: Vec<Duration>,
    /// Where the next sample goes once the window is full.
    next: usize,
}

impl Latencies {
    /// Keeps `latency`, forgetting the oldest beyond the window.
    pub(crate) fn push(&mut self, latency: Duration) {
        if self.samples.len() < WINDOW {
            self.samples.push(latency);
        } else {
            self.samples[self.next] = latency;
            self.next = (self.next + 1) % WINDOW;
        }
    }

    /// The `percent` quantile of what is kept; `None` before [`MIN_OBSERVATIONS`].
    pub(crate) fn quantile(&self, percent: u8) -> Option<Duration> {
        quantile(&self.samples, percent)
    }
}

/// The `percent` quantile (nearest rank: the smallest sample with at least `percent` % of the
/// samples at or below it) of `samples`, in any order; `None` with fewer than
/// [`MIN_OBSERVATIONS`] samples.
pub(crate) fn quantile(samples: &[Duration], percent: u8) -> Option<Duration> {
    if samples.len() < MIN_OBSERVATIONS {
        return None;
    }
    let percent = usize::from(percent.min(100));
    let rank = (percent * samples.len()).div_ceil(100).max(1);
    let mut sorted = samples.to_vec();
    let (_, nth, _) = sorted.select_nth_unstable(rank - 1);
    Some(*nth)
}

type Observed = HashMap<Box<str>, Arc<Mutex<Latencies>>>;

/// Every operator's latencies, by name.
static OBSERVED: RwLock<Option<Observed>> = RwLock::new(None);

fn latencies_of(name: &str) -> Arc<Mutex<Latencies>> {
    if let Some(found) = OBSERVED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(|observed| observed.get(name))
    {
        return Arc::clone(found);
    }
    let mut observed = OBSERVED.write().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(
        observed
            .get_or_insert_with(HashMap::new)
            .entry(name.into())
            .or_default(),
    )
}

/// A successful call of operator `name` took `latency`.
pub(crate) fn observe(name: &str, latency: Duration) {
    latencies_of(name)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(latency);
}

/// How long a call of `name` runs before it is hedged under `rule`; `None`: not (yet).
pub(crate) fn delay(name: &str, rule: Hedge) -> Option<Duration> {
    if let Some(delay) = rule.delay() {
        return Some(delay);
    }
    let percent = rule.quantile_percent()?;
    latencies_of(name)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .quantile(percent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn no_quantile_before_enough_observations() {
        let samples: Vec<_> = (1..MIN_OBSERVATIONS as u64).map(ms).collect();
        assert_eq!(quantile(&samples, 50), None);
        let samples: Vec<_> = (1..=MIN_OBSERVATIONS as u64).map(ms).collect();
        assert_eq!(quantile(&samples, 50), Some(ms(10)));
    }

    #[test]
    fn nearest_rank_quantiles() {
        // 1..=100 ms, shuffled: the p-th quantile is p ms.
        let mut samples: Vec<_> = (1..=100).map(ms).collect();
        samples.reverse();
        samples.swap(3, 70);
        for p in [50, 90, 95, 99] {
            assert_eq!(quantile(&samples, p), Some(ms(u64::from(p))), "p{p}");
        }
        // 95 fast calls and 5 slow ones: p95 is fast, p99 slow.
        let mut skewed = vec![ms(10); 95];
        skewed.extend([ms(1000); 5]);
        assert_eq!(quantile(&skewed, 95), Some(ms(10)));
        assert_eq!(quantile(&skewed, 99), Some(ms(1000)));
    }

    #[test]
    fn the_window_keeps_the_latest() {
        let mut latencies = Latencies::default();
        for _ in 0..WINDOW {
            latencies.push(ms(1000));
        }
        assert_eq!(latencies.quantile(50), Some(ms(1000)));
        for _ in 0..WINDOW {
            latencies.push(ms(5));
        }
        assert_eq!(latencies.samples.len(), WINDOW);
        assert_eq!(latencies.quantile(99), Some(ms(5)));
    }

    #[test]
    fn delays_by_rule_and_operator() {
        let name = "hedge_unit_delays";
        assert_eq!(delay(name, Hedge::after(ms(30)).unwrap()), Some(ms(30)));
        let p90 = Hedge::quantile(90).unwrap();
        assert_eq!(delay(name, p90), None);
        for n in 1..=20 {
            observe(name, ms(n));
        }
        assert_eq!(delay(name, p90), Some(ms(18)));
        assert_eq!(delay("hedge_unit_other", p90), None);
    }
}
