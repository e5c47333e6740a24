//! Single flight: concurrent calls with one input run the body once, and a wait that would
//! close a cycle through the callers' claims ([`ClaimChain`]) runs uncached instead.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Instant;

use super::key::{CacheKey, CacheSupport};
use super::memory::{answer, stored};

/// A stored output as the lookup's answer.
fn hit<I, O: Send + 'static>(
    support: &CacheSupport<I, O>,
    found: Arc<dyn Any + Send + Sync>,
) -> Lookup<O> {
    match answer(support, found) {
        Ok(output) => Lookup::Hit(output),
        Err(message) => Lookup::Panicked(message),
    }
}

/// The claims a call's ancestors hold: the keys of the enclosing cached calls whose bodies it
/// runs inside, on this thread or (through batches) on another. Cheap to clone and to extend (a
/// persistent list: each call adds one link in front of its parent's chain).
#[derive(Clone, Default, Debug)]
pub(crate) struct ClaimChain(Option<Arc<ChainLink>>);

#[derive(Debug)]
struct ChainLink {
    key: CacheKey,
    parent: ClaimChain,
}

impl ClaimChain {
    /// No claims: a call that runs inside no cached call.
    pub(crate) const fn new() -> Self {
        ClaimChain(None)
    }

    /// This chain with `key` added: what the body of the call that claimed `key` runs under.
    #[must_use]
    pub(crate) fn push(&self, key: CacheKey) -> ClaimChain {
        ClaimChain(Some(Arc::new(ChainLink {
            key,
            parent: self.clone(),
        })))
    }

    /// Whether an ancestor holds the claim on `key`.
    pub(crate) fn contains(&self, key: &CacheKey) -> bool {
        let mut link = self.0.as_deref();
        while let Some(current) = link {
            if current.key == *key {
                return true;
            }
            link = current.parent.0.as_deref();
        }
        false
    }

    fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

/// What the cache says about an input.
pub(crate) enum Lookup<O> {
    /// Seen before: the stored output.
    Hit(O),
    /// Not stored: this caller runs the body (and should [`insert`] a success). Callers asking
    /// for the same key meanwhile wait for it instead of running the body too; they are woken
    /// when the claim is dropped. The body runs under the caller's chain with
    /// [`Claim::key`] pushed.
    Compute(Claim),
    /// Not stored, and computed by a call that is waiting (perhaps through other waiters) for
    /// this caller's ancestors: waiting would deadlock. This caller runs the body without
    /// caching its output.
    Uncached,
    /// Another caller was computing this key and `deadline` passed while waiting for it.
    TimedOut,
    /// The stored output's `Clone` panicked: the panic message.
    Panicked(String),
}

/// A computation in flight: waiters sleep on it until its claim is dropped.
#[derive(Default)]
struct Flight {
    done: Mutex<bool>,
    woken: Condvar,
    /// Wakes async waiters, which must not block a thread on the condition variable.
    #[cfg(feature = "tokio")]
    woken_async: tokio::sync::Notify,
}

/// The right (and duty) to compute one key; see [`Lookup::Compute`].
pub(crate) struct Claim {
    key: CacheKey,
    flight: Arc<Flight>,
}

impl Claim {
    /// The claimed key: push it onto the chain the body runs under.
    pub(crate) fn key(&self) -> CacheKey {
        self.key
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        with_flights(|flights| flights.running.remove(&self.key));
        *self
            .flight
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.flight.woken.notify_all();
        #[cfg(feature = "tokio")]
        self.flight.woken_async.notify_waiters();
    }
}

/// A caller waiting for a claim: what it waits for, and the claims its ancestors hold (which
/// cannot finish until it does).
struct Waiter {
    held: ClaimChain,
    waits_for: CacheKey,
}

#[derive(Default)]
struct Flights {
    running: HashMap<CacheKey, Arc<Flight>>,
    waiting: HashMap<u64, Waiter>,
    next_waiter: u64,
}

impl Flights {
    /// Whether a caller whose ancestors hold `held` would close a cycle by waiting for `key`:
    /// whether `key`'s computation waits, directly or through other waiters, for one of them.
    fn would_deadlock(&self, held: &ClaimChain, key: &CacheKey) -> bool {
        if held.is_empty() {
            return false;
        }
        let mut todo = vec![*key];
        let mut seen = Vec::new();
        while let Some(blocked) = todo.pop() {
            if held.contains(&blocked) {
                return true;
            }
            if seen.contains(&blocked) {
                continue;
            }
            seen.push(blocked);
            // `blocked` cannot finish before the waiters running inside its body.
            todo.extend(
                self.waiting
                    .values()
                    .filter(|waiter| waiter.held.contains(&blocked))
                    .map(|waiter| waiter.waits_for),
            );
        }
        false
    }
}

static FLIGHTS: Mutex<Option<Flights>> = Mutex::new(None);

fn with_flights<R>(f: impl FnOnce(&mut Flights) -> R) -> R {
    let mut flights = FLIGHTS.lock().unwrap_or_else(PoisonError::into_inner);
    f(flights.get_or_insert_with(Flights::default))
}

/// A registered waiter; unregistered when dropped.
struct Waiting(u64);

impl Drop for Waiting {
    fn drop(&mut self) {
        with_flights(|flights| flights.waiting.remove(&self.0));
    }
}

/// What [`lookup`] found under the flights lock.
enum Found {
    Stored(Arc<dyn Any + Send + Sync>),
    Claimed(Claim),
    Uncached,
    Wait(Arc<Flight>, Waiting),
}

/// Looks `key` up; on a miss, either claims the computation or waits (until `deadline`) for
/// the caller computing it, so that concurrent calls with one input run the body once. `held`
/// is the chain of claims the caller's ancestors hold: a wait that would close a cycle through
/// them returns [`Lookup::Uncached`] instead.
pub(crate) fn lookup<I, O: Send + 'static>(
    support: &CacheSupport<I, O>,
    key: &CacheKey,
    deadline: Option<Instant>,
    held: &ClaimChain,
) -> Lookup<O> {
    loop {
        let (flight, waiting) = match find(support, key, held) {
            Ok(answer) => return answer,
            Err(wait) => wait,
        };
        let done = flight.done.lock().unwrap_or_else(PoisonError::into_inner);
        let (done, timed_out) = match deadline {
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                let (done, result) = flight
                    .woken
                    .wait_timeout_while(done, left, |done| !*done)
                    .unwrap_or_else(PoisonError::into_inner);
                (done, result.timed_out())
            }
            None => (
                flight
                    .woken
                    .wait_while(done, |done| !*done)
                    .unwrap_or_else(PoisonError::into_inner),
                false,
            ),
        };
        drop(done);
        drop(waiting);
        if timed_out {
            return Lookup::TimedOut;
        }
        // The computation finished (stored, or failed and left the key free): look again.
    }
}

/// [`lookup`] for async callers: the wait is an `.await` on the flight, never a blocked thread.
#[cfg(feature = "tokio")]
pub(crate) async fn lookup_async<I, O: Send + 'static>(
    support: &CacheSupport<I, O>,
    key: &CacheKey,
    deadline: Option<Instant>,
    held: &ClaimChain,
) -> Lookup<O> {
    loop {
        let (flight, waiting) = match find(support, key, held) {
            Ok(answer) => return answer,
            Err(wait) => wait,
        };
        {
            let notified = flight.woken_async.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before checking, so a claim dropped in between still wakes us.
            notified.as_mut().enable();
            let done = *flight.done.lock().unwrap_or_else(PoisonError::into_inner);
            if !done {
                match deadline {
                    Some(at) => {
                        if tokio::time::timeout_at(at.into(), notified).await.is_err() {
                            drop(waiting);
                            return Lookup::TimedOut;
                        }
                    }
                    None => notified.await,
                }
            }
        }
        drop(waiting);
    }
}

/// A look at `key` that never waits and never claims: the answer when the memory cache holds
/// one (a hit, or the panic of the output's `Clone`), `None` otherwise (stored nowhere, or in
/// flight: [`lookup`] decides then).
#[inline]
pub(crate) fn peek<I, O: Send + 'static>(
    support: &CacheSupport<I, O>,
    key: &CacheKey,
) -> Option<Lookup<O>> {
    stored(key).map(|found| hit(support, found))
}

/// One look at `key`: an answer, or the flight to wait for (and the registration that lets
/// other callers see this one waiting).
fn find<I, O: Send + 'static>(
    support: &CacheSupport<I, O>,
    key: &CacheKey,
    held: &ClaimChain,
) -> Result<Lookup<O>, (Arc<Flight>, Waiting)> {
    if let Some(found) = stored(key) {
        return Ok(hit(support, found));
    }
    // Re-checked under the flights lock: a claim inserts its output before it leaves the
    // running map, so a key is either stored, in flight, or free to claim.
    let found = with_flights(|flights| {
        if let Some(found) = stored(key) {
            return Found::Stored(found);
        }
        let Some(flight) = flights.running.get(key).map(Arc::clone) else {
            let flight = Arc::new(Flight::default());
            flights.running.insert(*key, Arc::clone(&flight));
            return Found::Claimed(Claim { key: *key, flight });
        };
        if flights.would_deadlock(held, key) {
            return Found::Uncached;
        }
        let id = flights.next_waiter;
        flights.next_waiter += 1;
        flights.waiting.insert(
            id,
            Waiter {
                held: held.clone(),
                waits_for: *key,
            },
        );
        Found::Wait(flight, Waiting(id))
    });
    match found {
        Found::Stored(found) => Ok(hit(support, found)),
        Found::Claimed(claim) => Ok(Lookup::Compute(claim)),
        Found::Uncached => Ok(Lookup::Uncached),
        Found::Wait(flight, waiting) => Err((flight, waiting)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::memory::insert;
    use super::super::test_support::{key_of, support};
    use super::*;

    #[test]
    fn chains_know_their_ancestors() {
        let (a, b, c) = (key_of("a"), key_of("b"), key_of("c"));
        let root = ClaimChain::new();
        let ab = root.push(a).push(b);
        assert!(ab.contains(&a) && ab.contains(&b) && !ab.contains(&c));
        assert!(!root.contains(&a));
        // Persistent: the parent is unchanged.
        let ac = root.push(a).push(c);
        assert!(ac.contains(&c) && !ac.contains(&b));
    }

    /// A key claimed by an ancestor is not waited for: the nested call runs uncached.
    #[test]
    fn a_key_held_by_an_ancestor_runs_uncached() {
        let support = support();
        let key = support.key("ancestor-test", &"x".to_string()).unwrap();
        let Lookup::Compute(claim) = lookup(&support, &key, None, &ClaimChain::new()) else {
            panic!("the first lookup claims");
        };
        let inside = ClaimChain::new().push(claim.key());
        assert!(matches!(
            lookup(&support, &key, None, &inside),
            Lookup::Uncached
        ));
        // A caller outside the claim's body still waits, and gets the output.
        let outside =
            std::thread::spawn(
                move || match lookup(&support, &key, None, &ClaimChain::new()) {
                    Lookup::Hit(found) => found,
                    _ => panic!("expected a hit"),
                },
            );
        while !with_flights(|f| f.waiting.values().any(|w| w.waits_for == key)) {
            std::thread::yield_now();
        }
        insert(&support, key, &42).unwrap();
        drop(claim);
        assert_eq!(outside.join().unwrap(), 42);
    }

    /// Two claims whose bodies each wait for the other's key: the second wait would close the
    /// cycle and runs uncached instead.
    #[test]
    fn a_wait_that_closes_a_cycle_runs_uncached() {
        let support = support();
        let a = support.key("cycle-test", &"a".to_string()).unwrap();
        let b = support.key("cycle-test", &"b".to_string()).unwrap();
        let Lookup::Compute(claim_a) = lookup(&support, &a, None, &ClaimChain::new()) else {
            panic!("claims a");
        };
        let Lookup::Compute(claim_b) = lookup(&support, &b, None, &ClaimChain::new()) else {
            panic!("claims b");
        };
        // Inside a's body (another thread): wait for b.
        let under_a = ClaimChain::new().push(claim_a.key());
        let waiter = std::thread::spawn(move || {
            matches!(lookup(&support, &b, None, &under_a), Lookup::Hit(7))
        });
        while !with_flights(|f| f.waiting.values().any(|w| w.waits_for == b)) {
            std::thread::yield_now();
        }
        // Inside b's body: waiting for a would wait for ourselves.
        let under_b = ClaimChain::new().push(claim_b.key());
        assert!(matches!(
            lookup(&support, &a, None, &under_b),
            Lookup::Uncached
        ));
        insert(&support, b, &7).unwrap();
        drop(claim_b);
        assert!(waiter.join().unwrap());
        drop(claim_a);
    }
}
