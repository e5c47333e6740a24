//! Shared resources: what several operators use and a provider limits (an API key, an endpoint,
//! a local model server), limited process-wide by name.
//!
//! The public side is [`ResourceLimits`], [`set_resource_limits`], [`resource_stats`] and
//! [`ResourceStats`]. The call plan uses the rest: [`resource`] finds a name's [`Resource`] (a
//! per-thread cache of the last few makes that a string comparison), [`Resource::admit`] decides
//! when a call's body may start (the rules are in `policy/resource.rs`, on an explicit clock)
//! and hands out a [`Permit`], which the call settles when its body is over.
//!
//! A resource nobody limited (and no provider asked to slow down) takes a lock-free path:
//! admission only counts.
//!
//! Waiting is the caller's: after [`Admission::Admitted`] with a start in the future it sleeps
//! (or awaits a timer) until then and asks [`Permit::confirm`]; after [`Admission::Full`] it
//! waits on the [`Listener`] (blocking, or as a future) and asks [`Resource::admit`] again. The
//! listener is registered under the resource's lock, so the release it waits for cannot slip in
//! between the refusal and the wait. It is an `event-listener` listener: the one primitive that
//! both blocks a thread until a deadline and is a future on any runtime.
//!
//! The resource's circuit breaker (the rules are in `policy/breaker.rs`) sits before the
//! limiter: while it is open, [`Resource::admit`] answers [`Admission::Open`] and the call fails
//! at once. An admitted call's permit carries its breaker ticket: the plan reports the
//! attempt's outcome with [`Permit::report`]; a permit dropped or settled unreported (the
//! attempt never ran) gives a trial's place back.
//!
//! [`ResourceStats::waiting`] counts itself: a permit whose start is in the future counts until
//! [`Permit::confirm`] says go (or it is settled or dropped), and a [`Listener`] counts while it
//! lives. The plan has nothing to add.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use event_listener::{Event, EventListener, Listener as _};

use crate::error::XcsError;
pub use crate::policy::breaker::CircuitState;
use crate::policy::breaker::{Breaker, Report, Ticket, Verdict};
use crate::policy::resource::{Decision, Limiter};
pub use crate::resource_limits::ResourceLimits;
use crate::usage::Usage;

/// Sets (merges) the limits of the resource `name`, process-wide: the fields of `limits` that
/// are set replace the resource's; the others are kept. Calls admitted from then on follow them
/// (a call already admitted keeps its start).
///
/// # Errors
/// [`XcsError::InvalidValue`] for an empty name or a limit that
/// [`ResourceLimits::check`] refuses (then nothing changes).
///
/// ```
/// use xcs::ResourceLimits;
/// xcs::set_resource_limits("openai", &ResourceLimits::new().requests_per_minute(500.0))?;
/// xcs::set_resource_limits("openai", &ResourceLimits::new().max_in_flight(64))?;
/// let limits = xcs::resource_stats("openai").unwrap().limits;
/// assert_eq!(limits.requests_per_minute, Some(500.0));
/// assert_eq!(limits.max_in_flight, Some(64));
/// assert!(xcs::set_resource_limits("", &ResourceLimits::new()).is_err());
/// # Ok::<(), xcs::XcsError>(())
/// ```
pub fn set_resource_limits(name: &str, limits: &ResourceLimits) -> Result<(), XcsError> {
    if name.is_empty() {
        return Err(XcsError::InvalidValue {
            option: "resource".to_owned(),
            value: String::new(),
            expected: "a non-empty resource name".to_owned(),
        });
    }
    limits.check()?;
    resource(name).merge(limits, Instant::now());
    Ok(())
}

/// What a resource has admitted and used so far, and its limits: `None` for a name never
/// limited nor used.
///
/// ```
/// use xcs::ResourceLimits;
/// assert_eq!(xcs::resource_stats("a resource nobody named"), None);
/// xcs::set_resource_limits("local-llm", &ResourceLimits::new().max_in_flight(4))?;
/// let stats = xcs::resource_stats("local-llm").unwrap();
/// assert_eq!(stats.requests, 0);
/// assert_eq!(stats.in_flight, 0);
/// assert_eq!(stats.limits.max_in_flight, Some(4));
/// assert_eq!(stats.rate_factor, 1.0);
/// # Ok::<(), xcs::XcsError>(())
/// ```
pub fn resource_stats(name: &str) -> Option<ResourceStats> {
    let resource = registry().as_ref()?.get(name).copied()?;
    Some(resource.stats(Instant::now()))
}

/// What [`resource_stats`] reports about one resource.
///
/// ```
/// use xcs::ResourceLimits;
/// xcs::set_resource_limits("embeddings", &ResourceLimits::new().tokens_per_minute(1e6))?;
/// let stats = xcs::resource_stats("embeddings").unwrap();
/// assert_eq!(stats.limits.tokens_per_minute, Some(1e6));
/// assert_eq!((stats.rate_limited, stats.waiting, stats.paused_until), (0, 0, None));
/// # Ok::<(), xcs::XcsError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ResourceStats {
    /// Calls (bodies) admitted so far.
    pub requests: u64,
    /// Input tokens the finished calls recorded.
    pub input_tokens: u64,
    /// Output tokens the finished calls recorded.
    pub output_tokens: u64,
    /// Tokens of the finished calls that recorded nothing: their estimates.
    pub estimated_tokens: u64,
    /// The cost the finished calls recorded.
    pub cost: f64,
    /// Answers that said "rate limited" ([`XcsError::rate_limited`]).
    pub rate_limited: u64,
    /// Calls waiting for their start (for a free slot, or for their turn).
    pub waiting: usize,
    /// Calls admitted and not finished (waiting for their reserved start or running).
    pub in_flight: usize,
    /// The limits in force.
    pub limits: ResourceLimits,
    /// The factor the configured rates are multiplied by now: 1, or less after a rate-limited
    /// answer (halved, recovering linearly over 60 s).
    pub rate_factor: f64,
    /// Until when every call of the resource pauses after a rate-limited answer, if that is
    /// still ahead.
    pub paused_until: Option<Instant>,
    /// Where its circuit breaker stands (`Closed` without one).
    pub circuit: CircuitState,
    /// The consecutive retryable failures its circuit breaker has counted (kept while the
    /// circuit is open; 0 without a breaker).
    pub consecutive_failures: u64,
    /// Calls refused at once because the circuit was open.
    pub refused_open: u64,
}

/// One named resource: its limiter and its counters.
pub(crate) struct Resource {
    name: Box<str>,
    /// No limit set and no pause asked for: admission only counts, without the lock.
    fast: AtomicBool,
    in_flight: AtomicUsize,
    waiting: AtomicUsize,
    requests: AtomicU64,
    rate_limited: AtomicU64,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    estimated_tokens: AtomicU64,
    /// The bits of an `f64`.
    cost: AtomicU64,
    limiter: Mutex<Limiter>,
    /// Whether the breaker can refuse (`open_after_failures` set): read before its lock.
    guarded: AtomicBool,
    breaker: Mutex<Breaker>,
    refused_open: AtomicU64,
    /// The name, shared by the errors of refused calls.
    shared_name: std::sync::Arc<str>,
    /// Notified when an admitted call finishes (a slot frees) or the limits change.
    freed: Event,
}

/// What [`Resource::admit`] decided.
pub(crate) enum Admission {
    /// Admitted: the body may start at `start` (now, or later: a reserved turn of the request
    /// and token buckets, or the end of a pause after a rate-limited answer). The permit holds
    /// an in-flight slot and the token reservation; at `start`, ask [`Permit::confirm`].
    /// A start in the future counts the call as waiting until `confirm` says go (or the permit
    /// is settled or dropped).
    Admitted {
        /// Settles the call when its body is over.
        permit: Permit,
        /// When the body may start.
        start: Instant,
    },
    /// `max_in_flight` calls are admitted and not finished: wait on the listener (until the
    /// deadline), then ask again. The call counts as waiting while the listener lives.
    Full(Listener),
    /// The circuit breaker is open: the call fails at once. `until`: when a trial is admitted
    /// (`None`: a trial is in flight).
    Open {
        /// The resource's name.
        resource: std::sync::Arc<str>,
        /// When the cooldown ends.
        until: Option<Instant>,
    },
    /// The call cannot start before its deadline (its turn comes later, or no slot is free and
    /// the deadline has come): a timeout. Nothing was reserved.
    TooLate,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Admission::Admitted { start, .. } => f
                .debug_struct("Admitted")
                .field("start", start)
                .finish_non_exhaustive(),
            Admission::Full(_) => f.write_str("Full"),
            Admission::TooLate => f.write_str("TooLate"),
            Admission::Open { until, .. } => f
                .debug_struct("Open")
                .field("until", until)
                .finish_non_exhaustive(),
        }
    }
}

impl Resource {
    fn new(name: &str) -> Resource {
        Resource {
            name: name.into(),
            fast: AtomicBool::new(true),
            in_flight: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            input_tokens: AtomicU64::new(0),
            output_tokens: AtomicU64::new(0),
            estimated_tokens: AtomicU64::new(0),
            cost: AtomicU64::new(0.0_f64.to_bits()),
            limiter: Mutex::new(Limiter::new(ResourceLimits::new(), Instant::now())),
            guarded: AtomicBool::new(false),
            breaker: Mutex::new(Breaker::new(None, ResourceLimits::new().cooldown())),
            refused_open: AtomicU64::new(0),
            shared_name: name.into(),
            freed: Event::new(),
        }
    }

    /// The resource's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, Limiter> {
        self.limiter.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn breaker(&self) -> MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the circuit breaker would refuse a call at `now` (without taking a trial), and
    /// the error's fields if so.
    pub(crate) fn refusal(&self, now: Instant) -> Option<(std::sync::Arc<str>, Option<Instant>)> {
        if !self.guarded.load(Ordering::SeqCst) {
            return None;
        }
        let until = self.breaker().refuses(now)?;
        Some((std::sync::Arc::clone(&self.shared_name), until))
    }

    /// Asks the circuit breaker (when one is set) whether a call may go on at `now`.
    fn pass_breaker(&self, now: Instant) -> Result<Option<Ticket>, Admission> {
        if !self.guarded.load(Ordering::SeqCst) {
            return Ok(None);
        }
        match self.breaker().admit(now) {
            Verdict::Admit(ticket) => Ok(Some(ticket)),
            Verdict::Refuse(until) => {
                self.refused_open.fetch_add(1, Ordering::Relaxed);
                Err(Admission::Open {
                    resource: std::sync::Arc::clone(&self.shared_name),
                    until,
                })
            }
        }
    }

    /// Decides the admission of one body start estimated at `tokens` (input and output), at
    /// `now`, for a call that must start by `deadline`. Never waits.
    pub(crate) fn admit(
        &'static self,
        tokens: u64,
        now: Instant,
        deadline: Option<Instant>,
    ) -> Admission {
        if self.fast.load(Ordering::SeqCst) {
            // Counted first, then checked again: limits set in between either see this call in
            // flight, or this call sees them and takes the way below.
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            if self.fast.load(Ordering::SeqCst) {
                self.requests.fetch_add(1, Ordering::Relaxed);
                let permit = Permit::new(self, tokens, now, None, false);
                return Admission::Admitted { permit, start: now };
            }
            // Undone under the lock (a caller refused as full meanwhile is woken).
            let limiter = self.lock();
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            drop(limiter);
            self.freed.notify_additional(1);
        }
        let ticket = match self.pass_breaker(now) {
            Ok(ticket) => ticket,
            Err(open) => return open,
        };
        // A trial refused by the limiter gives its place back (it asks again after its wait).
        let give_back = |ticket: Option<Ticket>| {
            if let Some(ticket) = ticket {
                self.breaker().release(ticket);
            }
        };
        let mut limiter = self.lock();
        let in_flight = self.in_flight.load(Ordering::SeqCst);
        match limiter.admit(tokens, in_flight, now, deadline) {
            Decision::Start { start, shift } => {
                // Counted before the lock is released: the next caller must see this slot taken.
                self.in_flight.fetch_add(1, Ordering::SeqCst);
                drop(limiter);
                self.requests.fetch_add(1, Ordering::Relaxed);
                let waiting = start > now;
                if waiting {
                    self.waiting.fetch_add(1, Ordering::Relaxed);
                }
                let mut permit = Permit::new(self, tokens, start, Some(shift), waiting);
                permit.ticket = ticket;
                Admission::Admitted { permit, start }
            }
            Decision::Full => {
                // Registered before the lock is released: a release after this notifies it.
                let inner = self.freed.listen();
                drop(limiter);
                give_back(ticket);
                self.waiting.fetch_add(1, Ordering::Relaxed);
                Admission::Full(Listener {
                    inner,
                    _waiting: Waiting(self),
                })
            }
            Decision::TooLate => {
                let counted = limiter.limits().max_in_flight.is_some();
                drop(limiter);
                give_back(ticket);
                // This caller may have been woken for a free slot it will not take: pass the
                // wake-up on.
                if counted {
                    self.freed.notify_additional(1);
                }
                Admission::TooLate
            }
        }
    }

    /// Merges `limits` (checked) at `now`.
    fn merge(&self, limits: &ResourceLimits, now: Instant) {
        let mut limiter = self.lock();
        limiter.merge(limits, now);
        let merged = limiter.limits();
        {
            let mut breaker = self.breaker();
            breaker.configure(merged.open_after_failures, merged.cooldown());
            self.guarded.store(breaker.is_on(), Ordering::SeqCst);
        }
        self.fast.store(!limiter.restricts(), Ordering::SeqCst);
        drop(limiter);
        // Waiters ask again under the new limits (a larger `max_in_flight` lets some in).
        self.freed.notify(usize::MAX);
    }

    fn stats(&self, now: Instant) -> ResourceStats {
        let limiter = self.lock();
        let (limits, rate_factor, paused_until) = (
            limiter.limits(),
            limiter.factor(now),
            limiter.paused_until(now),
        );
        drop(limiter);
        let (circuit, consecutive_failures) = {
            let breaker = self.breaker();
            (breaker.state(now), breaker.failures())
        };
        ResourceStats {
            requests: self.requests.load(Ordering::Relaxed),
            input_tokens: self.input_tokens.load(Ordering::Relaxed),
            output_tokens: self.output_tokens.load(Ordering::Relaxed),
            estimated_tokens: self.estimated_tokens.load(Ordering::Relaxed),
            cost: f64::from_bits(self.cost.load(Ordering::Relaxed)),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::SeqCst),
            limits,
            rate_factor,
            paused_until,
            circuit,
            consecutive_failures,
            refused_open: self.refused_open.load(Ordering::Relaxed),
        }
    }

    /// Adds what a finished call used to the totals.
    fn count_usage(&self, estimate: u64, actual: Option<Usage>) {
        match actual {
            Some(usage) => {
                let usage = usage.sanitized();
                if usage.input_tokens != 0 {
                    self.input_tokens
                        .fetch_add(usage.input_tokens, Ordering::Relaxed);
                }
                if usage.output_tokens != 0 {
                    self.output_tokens
                        .fetch_add(usage.output_tokens, Ordering::Relaxed);
                }
                if usage.cost != 0.0 {
                    // Never fails: the closure always returns `Some`.
                    let _ = self
                        .cost
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                            Some((f64::from_bits(bits) + usage.cost).to_bits())
                        });
                }
            }
            None if estimate != 0 => {
                self.estimated_tokens.fetch_add(estimate, Ordering::Relaxed);
            }
            None => {}
        }
    }
}

/// An admitted call's hold on its resource: an in-flight slot and its token reservation.
/// [`settle`](Permit::settle) it when the body is over; dropped without that (a cancelled
/// future, a panic), it releases its slot and keeps its estimate charged.
pub(crate) struct Permit {
    resource: &'static Resource,
    /// The call's estimate (tokens), reserved at admission.
    tokens: u64,
    /// The start it was given.
    start: Instant,
    /// The limiter's pause total at admission; `None`: admitted without the limiter.
    shift: Option<Duration>,
    /// Counted in the resource's `waiting` until it starts.
    waiting: AtomicBool,
    /// Settled: the drop has nothing left to do.
    settled: bool,
    /// Its place in the circuit breaker, until its outcome is reported.
    ticket: Option<Ticket>,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("resource", &self.resource.name())
            .field("tokens", &self.tokens)
            .field("start", &self.start)
            .finish_non_exhaustive()
    }
}

impl Permit {
    fn new(
        resource: &'static Resource,
        tokens: u64,
        start: Instant,
        shift: Option<Duration>,
        waiting: bool,
    ) -> Permit {
        Permit {
            resource,
            tokens,
            start,
            shift,
            waiting: AtomicBool::new(waiting),
            settled: false,
            ticket: None,
        }
    }

    /// The attempt's body ended with `report` at `now`: the circuit breaker counts it (a
    /// success closes, a retryable failure counts, a trial that does not succeed re-opens).
    pub(crate) fn report(&mut self, report: Report, now: Instant) {
        if let Some(ticket) = self.ticket.take() {
            self.resource.breaker().report(ticket, report, now);
        }
    }

    /// A permit whose outcome was never reported: a trial gives its place back.
    fn give_back(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.resource.breaker().release(ticket);
        }
    }

    /// At the reserved start (`now`): whether a pause began since the reservation (a
    /// rate-limited answer to another caller). `Some(at)`: wait until `at` and ask again;
    /// `None`: start now (the call stops counting as waiting).
    pub(crate) fn confirm(&self, now: Instant) -> Option<Instant> {
        let later = if self.shift.is_none() && self.resource.fast.load(Ordering::SeqCst) {
            None
        } else {
            let limiter = self.resource.lock();
            let shift = self.shift.unwrap_or_else(|| limiter.shift());
            limiter.confirm(self.start, shift, now)
        };
        if later.is_none() {
            self.stop_waiting();
        }
        later
    }

    fn stop_waiting(&self) {
        // A load first: most permits never waited, and a swap costs a locked instruction.
        if self.waiting.load(Ordering::Relaxed) && self.waiting.swap(false, Ordering::Relaxed) {
            self.resource.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The body answered "rate limited, retry after `wait`" at `now`
    /// ([`XcsError::is_rate_limited`], `wait` = [`XcsError::retry_hint`]): every caller of the
    /// resource pauses until `now + wait`, and its admitted rates halve (once for a burst of
    /// such answers), recovering linearly over 60 s.
    pub(crate) fn rate_limited(&self, wait: Duration, now: Instant) {
        self.resource.rate_limited.fetch_add(1, Ordering::Relaxed);
        let mut limiter = self.resource.lock();
        let shift = self.shift.unwrap_or_else(|| limiter.shift());
        let moved = limiter.shift().saturating_sub(shift);
        let started = self.start.checked_add(moved).unwrap_or(self.start);
        limiter.rate_limited(started, wait, now);
        self.resource.fast.store(false, Ordering::SeqCst);
    }

    /// The call's body is over (success or failure): releases the in-flight slot (one waiter
    /// is woken) and settles the tokens: `actual` (what the call recorded) replaces the
    /// estimate in the totals, and what it used beyond its estimate is charged to the token
    /// bucket (a provider's window keeps what it admitted: nothing is refunded there); `None`
    /// keeps the estimate.
    pub(crate) fn settle(mut self, actual: Option<Usage>) {
        self.settled = true;
        self.give_back();
        self.release(actual);
    }

    fn release(&self, actual: Option<Usage>) {
        let resource = self.resource;
        self.stop_waiting();
        resource.count_usage(self.tokens, actual);
        if self.shift.is_some() || !resource.fast.load(Ordering::SeqCst) {
            // Under the lock: a caller refused as full either sees this release or has its
            // listener registered before the notification.
            let mut limiter = resource.lock();
            resource.in_flight.fetch_sub(1, Ordering::SeqCst);
            if let Some(actual) = actual.filter(|_| self.shift.is_some()) {
                let actual = actual.tokens();
                if actual != self.tokens {
                    limiter.settle(self.tokens, actual, Instant::now());
                }
            }
            drop(limiter);
            resource.freed.notify_additional(1);
        } else {
            resource.in_flight.fetch_sub(1, Ordering::SeqCst);
            // Limits set since the check above: a caller may be waiting for this slot.
            if !resource.fast.load(Ordering::SeqCst) {
                drop(resource.lock());
                resource.freed.notify_additional(1);
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.give_back();
        if !self.settled {
            self.release(None);
        }
    }
}

/// Counts a call as waiting while it lives.
struct Waiting(&'static Resource);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a call refused as full waits on: notified when an admitted call of the resource
/// finishes (or the limits change). Blocking with [`wait`](Listener::wait), or awaited as a
/// future (on any runtime; no thread is blocked). Either way, ask
/// [`Resource::admit`] again afterwards: another caller may have taken the slot.
pub(crate) struct Listener {
    inner: EventListener,
    _waiting: Waiting,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("resource", &self._waiting.0.name())
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// Blocks this thread until notified, or until `deadline` has passed.
    pub(crate) fn wait(self, deadline: Option<Instant>) {
        match deadline {
            Some(at) => {
                let _ = self.inner.wait_deadline(at);
            }
            None => self.inner.wait(),
        }
    }
}

impl Future for Listener {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

/// Every resource named so far. Entries are never removed (a program names a few resources),
/// so each is leaked once and lives as long as the process: the plan and the permits hold a
/// plain `&'static Resource`, threads cache it, and no reference count is touched per call.
type Registry = HashMap<Box<str>, &'static Resource>;

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

fn registry() -> MutexGuard<'static, Option<Registry>> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How many resources each thread remembers.
const RECENT: usize = 4;

thread_local! {
    /// The resources this thread used last, and the slot to fill next.
    static RECENT_RESOURCES: RefCell<([Option<&'static Resource>; RECENT], usize)> =
        const { RefCell::new(([const { None }; RECENT], 0)) };
}

/// The resource named `name`, created (unlimited) on first use so that its stats exist. A
/// string comparison against this thread's last few resources, most of the time.
pub(crate) fn resource(name: &str) -> &'static Resource {
    let cached = RECENT_RESOURCES.try_with(|recent| {
        let recent = recent.borrow();
        recent
            .0
            .iter()
            .flatten()
            .find(|r| *r.name == *name)
            .copied()
    });
    if let Ok(Some(found)) = cached {
        return found;
    }
    let found = {
        let mut registry = registry();
        let registry = registry.get_or_insert_with(HashMap::new);
        match registry.get(name) {
            Some(found) => *found,
            None => {
                let created: &'static Resource = Box::leak(Box::new(Resource::new(name)));
                registry.insert(name.into(), created);
                created
            }
        }
    };
    let _ = RECENT_RESOURCES.try_with(|recent| {
        let (slots, next) = &mut *recent.borrow_mut();
        slots[*next] = Some(found);
        *next = (*next + 1) % RECENT;
    });
    found
}

/// What a call of an operator with a resource costs the call plan, for `bench_report`: finds
/// `name`, admits one call at `now` and settles it; whether it was admitted.
pub fn bench_round_trip(name: &str, now: Instant) -> bool {
    match resource(name).admit(0, now, None) {
        Admission::Admitted { permit, .. } => {
            permit.settle(None);
            true
        }
        Admission::Full(_) | Admission::TooLate | Admission::Open { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A name no other test uses.
    fn unique(tag: &str) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        format!(
            "resource_test_{tag}_{}",
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    }

    #[track_caller]
    fn admitted(admission: Admission) -> (Permit, Instant) {
        match admission {
            Admission::Admitted { permit, start } => (permit, start),
            other => panic!("expected admission, got {other:?}"),
        }
    }

    #[test]
    fn what_the_drivers_hold_crosses_threads_and_tasks() {
        fn check<T: Send + Sync>() {}
        check::<Resource>();
        check::<Permit>();
        check::<Listener>();
        check::<Admission>();
        // Awaited in place (`select!`, a poll loop) without pinning.
        fn unpin<T: Unpin + Future<Output = ()>>() {}
        unpin::<Listener>();
    }

    #[test]
    fn the_registry_gives_one_resource_per_name() {
        let name = unique("registry");
        assert_eq!(resource_stats(&name), None);
        let a = resource(&name);
        assert!(std::ptr::eq(a, resource(&name)));
        assert_eq!(a.name(), name);
        // Through the global map too, from another thread.
        let other = std::thread::spawn({
            let name = name.clone();
            move || resource(&name)
        })
        .join()
        .unwrap();
        assert!(std::ptr::eq(a, other));
        // More names than the per-thread cache holds still resolve to the same resources.
        let names: Vec<String> = (0..2 * RECENT).map(|_| unique("many")).collect();
        let first: Vec<_> = names.iter().map(|n| resource(n)).collect();
        for (n, r) in names.iter().zip(&first) {
            assert!(std::ptr::eq(*r, resource(n)));
        }
        // Used, so it has stats.
        assert_eq!(resource_stats(&name).map(|s| s.requests), Some(0));
        assert!(!std::ptr::eq(a, resource(&unique("else"))));
    }

    #[test]
    fn an_unlimited_resource_admits_at_once_and_counts() {
        let name = unique("unlimited");
        let r = resource(&name);
        let now = Instant::now();
        let (p1, s1) = admitted(r.admit(10, now, Some(now)));
        let (p2, s2) = admitted(r.admit(0, now, None));
        assert_eq!((s1, s2), (now, now));
        let stats = resource_stats(&name).unwrap();
        assert_eq!((stats.requests, stats.in_flight, stats.waiting), (2, 2, 0));
        p1.settle(Some(Usage {
            input_tokens: 7,
            output_tokens: 3,
            cost: 0.5,
        }));
        drop(p2);
        let stats = resource_stats(&name).unwrap();
        assert_eq!(stats.in_flight, 0);
        assert_eq!((stats.input_tokens, stats.output_tokens), (7, 3));
        assert_eq!(stats.cost, 0.5);
        assert_eq!(stats.limits, ResourceLimits::new());
    }

    #[test]
    fn a_dropped_permit_keeps_its_estimate_and_frees_its_slot() {
        let name = unique("dropped");
        set_resource_limits(
            &name,
            &ResourceLimits::new()
                .tokens_per_minute(600.0)
                .max_in_flight(1),
        )
        .unwrap();
        let r = resource(&name);
        let now = Instant::now();
        let (permit, start) = admitted(r.admit(10, now, None));
        assert_eq!(start, now);
        assert!(matches!(r.admit(0, now, None), Admission::Full(_)));
        // No slot and the deadline has come: too late, not full.
        assert!(matches!(r.admit(0, now, Some(now)), Admission::TooLate));
        drop(permit);
        let stats = resource_stats(&name).unwrap();
        assert_eq!((stats.in_flight, stats.estimated_tokens), (0, 10));
        // The 10-token capacity is spent: the next call of 10 waits a second.
        let (permit, start) = admitted(r.admit(10, now, None));
        assert!(start > now);
        assert_eq!(resource_stats(&name).unwrap().waiting, 1);
        assert_eq!(permit.confirm(start), None);
        assert_eq!(resource_stats(&name).unwrap().waiting, 0);
        // Used 0 tokens: nothing comes back to the window (a provider keeps counting them), so
        // the next 10 wait another second.
        permit.settle(Some(Usage::ZERO));
        let (_permit, at) = admitted(r.admit(10, start, None));
        assert!(at > start);
    }

    #[test]
    fn limits_are_checked_and_merged() {
        let name = unique("merge");
        assert!(matches!(
            set_resource_limits("", &ResourceLimits::new()),
            Err(XcsError::InvalidValue { option, .. }) if option == "resource"
        ));
        for (bad, field) in [
            (
                ResourceLimits::new().requests_per_minute(0.0),
                "requests_per_minute",
            ),
            (
                ResourceLimits::new().requests_per_minute(f64::NAN),
                "requests_per_minute",
            ),
            (
                ResourceLimits::new().tokens_per_minute(-5.0),
                "tokens_per_minute",
            ),
            (
                ResourceLimits::new().tokens_per_minute(f64::INFINITY),
                "tokens_per_minute",
            ),
            (ResourceLimits::new().max_in_flight(0), "max_in_flight"),
        ] {
            match set_resource_limits(&name, &bad) {
                Err(XcsError::InvalidValue { option, .. }) => assert_eq!(option, field),
                other => panic!("{bad:?}: unexpected {other:?}"),
            }
        }
        // Refused limits changed nothing (and created nothing).
        assert_eq!(resource_stats(&name), None);
        set_resource_limits(&name, &ResourceLimits::new().requests_per_minute(100.0)).unwrap();
        set_resource_limits(
            &name,
            &ResourceLimits::new()
                .tokens_per_minute(5.0)
                .max_in_flight(2),
        )
        .unwrap();
        set_resource_limits(&name, &ResourceLimits::new().requests_per_minute(50.0)).unwrap();
        assert_eq!(
            resource_stats(&name).unwrap().limits,
            ResourceLimits::new()
                .requests_per_minute(50.0)
                .tokens_per_minute(5.0)
                .max_in_flight(2)
        );
    }

    #[test]
    fn pairs_are_parsed_and_errors_name_what_is_wrong() {
        let limits = ResourceLimits::from_pairs([
            ("requests_per_minute", "500"),
            ("tokens_per_minute", "30_000"),
            ("max_in_flight", " 64 "),
        ])
        .unwrap();
        assert_eq!(
            limits,
            ResourceLimits::new()
                .requests_per_minute(500.0)
                .tokens_per_minute(30_000.0)
                .max_in_flight(64)
        );
        assert_eq!(
            ResourceLimits::from_pairs(Vec::<(String, String)>::new()).unwrap(),
            ResourceLimits::new()
        );
        assert_eq!(
            ResourceLimits::from_pairs([("requests_per_minute", "0.5")])
                .unwrap()
                .requests_per_minute,
            Some(0.5)
        );
        match ResourceLimits::from_pairs([("max_inflight", "3")]) {
            Err(XcsError::InvalidOption { name, suggestion }) => {
                assert_eq!(name, "max_inflight");
                assert_eq!(suggestion, Some("max_in_flight"));
            }
            other => panic!("unexpected {other:?}"),
        }
        match ResourceLimits::from_pairs([("colour", "blue")]) {
            Err(XcsError::InvalidOption { suggestion, .. }) => assert_eq!(suggestion, None),
            other => panic!("unexpected {other:?}"),
        }
        for (name, value) in [
            ("requests_per_minute", "fast"),
            ("requests_per_minute", "-1"),
            ("requests_per_minute", "inf"),
            ("tokens_per_minute", "NaN"),
            ("tokens_per_minute", "_5"),
            ("max_in_flight", "1.5"),
            ("max_in_flight", "0"),
            ("max_in_flight", "-2"),
        ] {
            match ResourceLimits::from_pairs([(name, value)]) {
                Err(XcsError::InvalidValue { option, .. }) => assert_eq!(option, name, "{value}"),
                other => panic!("{name} = {value}: unexpected {other:?}"),
            }
        }
        match ResourceLimits::from_pairs([("max_in_flight", "1"), ("max_in_flight", "2")]) {
            Err(XcsError::InvalidValue {
                option, expected, ..
            }) => {
                assert_eq!(option, "max_in_flight");
                assert!(expected.contains("once"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_rate_limited_answer_pauses_the_other_callers() {
        let name = unique("paused");
        let r = resource(&name);
        let now = Instant::now();
        let (permit, _) = admitted(r.admit(0, now, None));
        permit.rate_limited(Duration::from_secs(2), now);
        let stats = resource_stats(&name).unwrap();
        assert_eq!(stats.rate_limited, 1);
        assert_eq!(stats.paused_until, Some(now + Duration::from_secs(2)));
        assert_eq!(stats.rate_factor, 0.5);
        permit.settle(None);
        // Even unlimited, the next caller waits for the pause; a deadline before it is refused.
        let (next, start) = admitted(r.admit(0, now, None));
        assert_eq!(start, now + Duration::from_secs(2));
        assert_eq!(resource_stats(&name).unwrap().waiting, 1);
        assert!(matches!(
            r.admit(0, now, Some(now + Duration::from_secs(1))),
            Admission::TooLate
        ));
        assert_eq!(next.confirm(start), None);
    }

    /// 8 threads × 200 calls with `max_in_flight = 3`, each waiting on its listener when full:
    /// never more than 3 in flight, and every call gets through.
    #[test]
    fn max_in_flight_holds_under_contention() {
        const THREADS: usize = 8;
        const CALLS: usize = 200;
        let name = unique("stress");
        set_resource_limits(&name, &ResourceLimits::new().max_in_flight(3)).unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        for _ in 0..THREADS {
            let (name, running, most, done) = (
                name.clone(),
                Arc::clone(&running),
                Arc::clone(&most),
                done_tx.clone(),
            );
            std::thread::spawn(move || {
                for i in 0..CALLS {
                    let r = resource(&name);
                    let permit = loop {
                        match r.admit(0, Instant::now(), None) {
                            Admission::Admitted { permit, .. } => break permit,
                            Admission::Full(listener) => listener.wait(None),
                            Admission::TooLate | Admission::Open { .. } => {
                                unreachable!("no deadline, no breaker")
                            }
                        }
                    };
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    if i % 3 == 0 {
                        std::thread::yield_now();
                    }
                    running.fetch_sub(1, Ordering::SeqCst);
                    if i % 2 == 0 {
                        permit.settle(None);
                    } else {
                        drop(permit);
                    }
                }
                let _ = done.send(());
            });
        }
        // The watchdog: a lost wake-up would hang a thread forever.
        for _ in 0..THREADS {
            done_rx
                .recv_timeout(Duration::from_secs(60))
                .expect("a thread is stuck waiting for a slot");
        }
        assert!(most.load(Ordering::SeqCst) <= 3);
        let stats = resource_stats(&name).unwrap();
        assert_eq!(stats.requests, (THREADS * CALLS) as u64);
        assert_eq!((stats.in_flight, stats.waiting), (0, 0));
    }

    /// The listener as a future: a task refused as full is woken by a release on another
    /// thread, without blocking a runtime thread.
    #[tokio::test(flavor = "current_thread")]
    async fn a_full_resource_wakes_an_awaiting_task() {
        let name = unique("async");
        set_resource_limits(&name, &ResourceLimits::new().max_in_flight(1)).unwrap();
        let r = resource(&name);
        let (held, _) = admitted(r.admit(0, Instant::now(), None));
        let Admission::Full(listener) = r.admit(0, Instant::now(), None) else {
            panic!("expected the resource to be full");
        };
        assert_eq!(resource_stats(&name).unwrap().waiting, 1);
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            held.settle(None);
        });
        tokio::time::timeout(Duration::from_secs(30), listener)
            .await
            .expect("the release wakes the listener");
        assert_eq!(resource_stats(&name).unwrap().waiting, 0);
        let (_permit, _) = admitted(r.admit(0, Instant::now(), None));
        releaser.join().unwrap();
    }

    #[test]
    fn a_blocking_wait_ends_at_the_deadline() {
        let name = unique("deadline");
        set_resource_limits(&name, &ResourceLimits::new().max_in_flight(1)).unwrap();
        let r = resource(&name);
        let (_held, _) = admitted(r.admit(0, Instant::now(), None));
        let Admission::Full(listener) = r.admit(0, Instant::now(), None) else {
            panic!("expected the resource to be full");
        };
        let begin = Instant::now();
        listener.wait(Some(begin + Duration::from_millis(30)));
        assert!(begin.elapsed() >= Duration::from_millis(30));
    }
}
