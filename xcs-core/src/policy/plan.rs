//! The call plan: the order of a call's policies, written once, as a state machine that never
//! waits.
//!
//! A driver makes a [`CallPlan`] for one call (or one batch item) and asks it what to do next;
//! each [`Step`] is either a decision the driver carries out in its own way of waiting — look the
//! input up in the memory cache, sleep until an instant, run the body once, write to the
//! `cache_dir` store — or the call's result. The sync driver (`call`: threads, condition
//! variables, jobs) and the async driver (`call_async`: `.await`s, dropped futures) run the same
//! plan and differ only in how they wait; the cluster caller's side runs its admission and cache
//! steps and sends [`Step::Run`] to a worker. Unit tests below drive the plan with no thread and
//! no runtime.
//!
//! The order (see the module docs of [`policy`](super)):
//!
//! ```text
//! admit (deadline) → cache lookup → store lookup ─┬─ hit ─────────────────────────────────────────────→ done
//!                                                 └─ miss → budget → [rate → resource → body → retry?]* → write → done
//! ```
//!
//! The budget admits the call once (its estimate against what remains); the resource admits
//! each attempt (each is a request to the provider). Each attempt's body records its usage on a
//! meter of its own ([`record_usage`](crate::record_usage)); the attempt's usage settles its
//! resource permit, the call's total settles its budget reservation.
//!
//! Hedging (`hedge_after`, rules in `policy::hedge`) races a second attempt against a running
//! one: a driver that can cancel an attempt asks [`CallPlan::hedge_at`] after [`Step::Run`], asks
//! [`CallPlan::hedge`] for the hedge's admission (the budget, rate and resource steps again, for
//! that attempt) when that instant comes, and reports each racing attempt's end to
//! [`CallPlan::raced`], which decides the winner and goes on as [`CallPlan::ran`] does.
//!
//! Adding a policy means one module in `policy/` with its rule, one state here, and one row in
//! the option list.

use std::time::{Duration, Instant};

use crate::cache::{CacheKey, CacheSupport, ClaimChain, Lookup};
use crate::deadline::CallContext;
use crate::error::XcsError;
use crate::options::ExecutionOptions;
use crate::persist::{PersistSupport, Write};
use crate::policy::budget::Reservation;
use crate::policy::deadline::Now;
use crate::policy::hedge;
use crate::policy::memo::{self, Claimed, Held};
use crate::policy::rate;
use crate::policy::retry::{self, CloneInput};
use crate::resource::{self, Admission, Listener, Permit, Resource};
use crate::trace::Outcome;
use crate::usage::{Meter, Usage};
use crate::util::{drop_quietly, timeout_error};

/// What an operator offers the plan besides its cache key: the same for
/// [`Operator`](crate::Operator)s and `AsyncOperator`s, asked only when the body is to run (a
/// cache hit needs none of it).
pub(crate) struct Supports<I, O> {
    /// How to store it in `cache_dir`, if its input and output serialize.
    pub(crate) persist: Option<PersistSupport<I, O>>,
    /// How to copy its input for another attempt.
    pub(crate) clone_input: Option<CloneInput<I>>,
    /// Whether it is a batch, whose items retry one by one.
    pub(crate) retried_by_items: bool,
}

/// What an operator is charged by: the resource its calls use and how to estimate a call's
/// usage (asked only when there is a resource or a budget to charge).
#[derive(Clone, Copy)]
pub(crate) struct Charge<'a, I> {
    /// The resource the operator's calls use, if any.
    pub(crate) resource: Option<&'a str>,
    /// A call's expected usage.
    pub(crate) estimate: Option<&'a (dyn Fn(&I) -> Usage + Sync)>,
}

#[cfg(test)]
impl<I> Charge<'_, I> {
    /// Nothing to charge: no resource, no estimate.
    pub(crate) const NONE: Self = Charge {
        resource: None,
        estimate: None,
    };
}

/// What the driver does next.
///
/// A step only names what to do; what it needs (an instant, a listener, a write, the result)
/// stays in the plan and is taken from it. A step is written by the plan and copied by the
/// driver's loop: kept small (the size of the input at most, returned in registers for small
/// inputs), it costs a call no store-forwarding stall on that copy, which a step carrying an
/// instant, a write or a result did (seen in `perf annotate` of a cache hit).
pub(crate) enum Step<I> {
    /// Ask the memory cache ([`CallPlan::lookup_request`]), waiting for a concurrent call with
    /// the same input until the deadline; then [`CallPlan::looked_up`].
    Lookup,
    /// Wait until [`CallPlan::until`] (a rate-limit slot, a resource's start, a retry
    /// backoff); then [`CallPlan::woke`].
    Sleep,
    /// Wait on [`CallPlan::take_listener`] for the resource to free a place (or for the
    /// deadline, whichever comes first); then [`CallPlan::woke`].
    Wait,
    /// Run attempt [`CallPlan::attempt`] of the body with this input, under
    /// [`CallPlan::deadline`] (enforced by the driver when [`CallPlan::enforces`]) and
    /// [`CallPlan::body_context`], recorded as one trace event when [`CallPlan::traced`]; then
    /// [`CallPlan::ran`].
    Run(I),
    /// Write [`CallPlan::take_write`] to the `cache_dir` store (off an async runtime's
    /// threads); then [`CallPlan::written`].
    Write,
    /// The call is over: [`CallPlan::outcome`] has its result.
    Done,
}

/// Where the plan stands.
enum State<O> {
    /// Not started: admission comes first.
    Admit,
    /// Waiting for the memory cache's answer.
    Looking,
    /// Slept until the reserved rate slot: the slot is confirmed (or the wait goes on).
    RateSlot,
    /// Slept until the start the resource admitted the attempt for: confirmed (a pause may
    /// have begun since).
    ResourceStart,
    /// Waited for the resource to free a place: admission is asked again.
    ResourceFull,
    /// The body runs.
    Running,
    /// Backing off before the next attempt.
    Backoff,
    /// A successful output being written to the store.
    Writing(O),
    /// Finished: the result, and (when the trace is on and the call ended without running its
    /// body) the outcome of the one event to record for it; taken by [`CallPlan::outcome`].
    Over(Option<(Result<O, XcsError>, Option<Outcome>)>),
}

/// One call's plan. See the module docs.
pub(crate) struct CallPlan<'a, I, O> {
    name: &'a str,
    index: Option<usize>,
    options: &'a ExecutionOptions,
    /// How to key the input in the memory cache, if it can be cached.
    cache: Option<CacheSupport<I, O>>,
    /// Asks the operator for the rest of what it offers; asked at most once.
    more: &'a (dyn Fn() -> Supports<I, O> + Sync),
    supports: Option<Supports<I, O>>,
    context: CallContext,
    deadline: Option<(Instant, Duration)>,
    enforce: bool,
    key: Option<CacheKey>,
    held: Option<Held<I, O>>,
    /// The input, kept while another attempt may need a copy (or until the first attempt).
    kept: Option<I>,
    /// How to copy the input for another attempt (worked out with `supports`).
    clone_input: Option<CloneInput<I>>,
    attempt: u32,
    state: State<O>,
    /// The resource the attempts use, if any (looked up at the first attempt).
    resource_name: Option<&'a str>,
    resource: Option<&'static Resource>,
    /// The current attempt's admission to the resource.
    permit: Option<Permit>,
    /// When the current attempt began waiting for its resource, and how long it waited.
    waiting_since: Option<Instant>,
    waited: Duration,
    /// How to estimate the call's usage, and the estimate once made.
    estimate_with: Option<&'a (dyn Fn(&I) -> Usage + Sync)>,
    estimate: Option<Usage>,
    /// The budget reservation of the call, once admitted.
    reservation: Option<Reservation>,
    /// What the attempts so far recorded, if any did.
    recorded: Option<Usage>,
    /// Whether a body has run (a call that never ran spends nothing of its budget).
    ran_body: bool,
    /// What the step asked for needs: the instant of [`Step::Sleep`], the listener of
    /// [`Step::Wait`], the write of [`Step::Write`].
    until: Option<Instant>,
    listener: Option<Listener>,
    write: Option<Write>,
    /// When the plan was made, if the clock was read then (for its deadline): admission reuses
    /// it rather than reading the clock again.
    made: Now,
    /// Hedging (`hedge_after`), once a driver has asked [`CallPlan::hedge_at`].
    race: Option<Box<Race>>,
}

impl<'a, I: 'static, O: Send + 'static> CallPlan<'a, I, O> {
    /// The plan of a call of `name` (item `index` of a batch) with `input`, made at `now` under
    /// `options` inside `context` (the caller's deadline, cancellation and cache claims).
    /// `cache` keys the input in the memory cache; `more` says what else the operator offers.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(crate) fn new(
        name: &'a str,
        index: Option<usize>,
        options: &'a ExecutionOptions,
        cache: Option<CacheSupport<I, O>>,
        more: &'a (dyn Fn() -> Supports<I, O> + Sync),
        charge: Charge<'a, I>,
        context: CallContext,
        input: I,
        now: impl Into<Now>,
    ) -> Self {
        let mut made = now.into();
        let deadline = super::deadline::deadline_for(options, &context, &mut made);
        let enforce = super::deadline::must_enforce(deadline, &context);
        CallPlan {
            name,
            index,
            options,
            cache,
            more,
            supports: None,
            context,
            deadline,
            enforce,
            key: None,
            held: None,
            kept: Some(input),
            clone_input: None,
            attempt: 1,
            state: State::Admit,
            resource_name: charge.resource,
            resource: None,
            permit: None,
            waiting_since: None,
            waited: Duration::ZERO,
            estimate_with: charge.estimate,
            estimate: None,
            reservation: None,
            recorded: None,
            ran_body: false,
            until: None,
            listener: None,
            write: None,
            made,
            race: None,
        }
    }

    /// The plan of a call whose cache key is made already (by
    /// [`memo::at_once`](crate::policy::memo::at_once)): its lookup uses `key`.
    #[inline]
    pub(crate) fn keyed(&mut self, key: CacheKey) {
        debug_assert!(matches!(self.state, State::Admit));
        self.key = Some(key);
    }

    /// The deadline the call must meet, and the timeout it comes from.
    #[inline]
    pub(crate) fn deadline(&self) -> Option<(Instant, Duration)> {
        self.deadline
    }

    /// Whether the driver enforces the deadline (returns at it even if the body hangs): no
    /// enclosing call returns by then.
    #[inline]
    pub(crate) fn enforces(&self) -> bool {
        self.enforce
    }

    /// The attempt [`Step::Run`] asks for (1, then 2, 3, … for retries).
    #[inline]
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The options the call runs under.
    #[inline]
    pub(crate) fn options(&self) -> &ExecutionOptions {
        self.options
    }

    /// Whether each attempt is a trace event.
    #[inline]
    pub(crate) fn traced(&self) -> bool {
        self.options.trace_execution
    }

    /// The context the body runs in: the caller's, holding this call's cache claim too, so
    /// nested calls (on any thread) never wait for it.
    #[inline]
    pub(crate) fn body_context(&self) -> &CallContext {
        &self.context
    }

    /// Whether the call holds the cache claim on its input (then its body runs in
    /// [`body_context`](Self::body_context), which holds it too).
    #[inline]
    pub(crate) fn holds_claim(&self) -> bool {
        self.held.is_some()
    }

    /// What [`Step::Lookup`] asks the memory cache.
    #[inline]
    pub(crate) fn lookup_request(
        &self,
    ) -> (&CacheSupport<I, O>, &CacheKey, Option<Instant>, &ClaimChain) {
        match (&self.cache, &self.key) {
            (Some(support), Some(key)) => (
                support,
                key,
                self.deadline.map(|(at, _)| at),
                &self.context.claims,
            ),
            _ => unreachable!("a lookup is asked for only with a cache key"),
        }
    }

    /// The first step. `now` is when the driver starts the call.
    #[inline]
    pub(crate) fn start(&mut self, now: impl Into<Now>) -> Step<I> {
        let mut now = now.into().or(self.made);
        debug_assert!(matches!(self.state, State::Admit));
        // Admission: a call that cannot start before its deadline is a timeout.
        if let Some((at, timeout)) = self.deadline {
            if now.get() >= at
                || self
                    .context
                    .cancel
                    .as_ref()
                    .is_some_and(|c| c.is_cancelled())
            {
                return self.done_early(Err(self.timeout(timeout)), Outcome::Timeout);
            }
        }
        if !self.options.enable_caching {
            return self.first_attempt(&mut now);
        }
        let Some(support) = &self.cache else {
            return self.first_attempt(&mut now);
        };
        if self.key.is_some() {
            // Made already (see `keyed`).
            self.state = State::Looking;
            return Step::Lookup;
        }
        let Some(input) = &self.kept else {
            unreachable!("the input is kept until the first attempt");
        };
        // A panic in the input's `Hash` is the call's error.
        match support.key(self.name, input) {
            Ok(key) => {
                self.key = Some(key);
                self.state = State::Looking;
                Step::Lookup
            }
            Err(message) => {
                let error = XcsError::Panicked {
                    operator: self.name.to_owned(),
                    index: self.index,
                    message,
                };
                self.done_early(Err(error), Outcome::Panicked)
            }
        }
    }

    /// The memory cache's answer to [`Step::Lookup`].
    #[inline]
    pub(crate) fn looked_up(&mut self, lookup: Lookup<O>, now: impl Into<Now>) -> Step<I> {
        let mut now = now.into();
        debug_assert!(matches!(self.state, State::Looking));
        let (Some(support), Some(input)) = (self.cache, self.kept.take()) else {
            unreachable!("a lookup is asked for only with a cache and the input");
        };
        // A hit needs nothing more of the operator; anything else may run the body.
        let persist = match lookup {
            Lookup::Hit(_) => None,
            _ => self.supports().persist,
        };
        let timeout = self.deadline.map_or(Duration::ZERO, |(_, t)| t);
        match memo::after_lookup(
            lookup,
            self.options,
            self.name,
            self.index,
            support,
            persist,
            input,
            timeout,
        ) {
            Claimed::Answered(result, outcome) => self.done_early(result, outcome),
            Claimed::Run(input, held) => {
                if let Some(held) = &held {
                    self.context = held.context(std::mem::take(&mut self.context));
                }
                self.held = held;
                self.kept = Some(input);
                self.first_attempt(&mut now)
            }
        }
    }

    /// The instant of [`Step::Sleep`] has come (`now`).
    pub(crate) fn woke(&mut self, now: impl Into<Now>) -> Step<I> {
        let mut now = now.into();
        // No attempt starts past the deadline, however late a wait ended (a loaded machine
        // oversleeps).
        if let Some((at, timeout)) = self.deadline {
            if now.get() >= at {
                return self.finish(Err(self.timeout(timeout)));
            }
        }
        match self.state {
            State::RateSlot => self.confirm_slot(&mut now),
            State::ResourceStart => match self.permit.as_ref().and_then(|p| p.confirm(now.get())) {
                Some(later) => self.sleep(later),
                None => self.start_attempt(&mut now),
            },
            State::ResourceFull => self.admit(&mut now),
            State::Backoff => {
                self.attempt += 1;
                self.next_attempt(&mut now)
            }
            _ => unreachable!("a wait is asked for only by limits and retries"),
        }
    }

    /// The body's result as the attempt's outcome, at `now`: a result that comes after the
    /// deadline is discarded for a timeout (a body that ignored its deadline ran too long). The
    /// drivers pass every attempt's result through here before recording it.
    #[inline]
    pub(crate) fn on_time(
        &self,
        result: Result<O, XcsError>,
        now: impl Into<Now>,
    ) -> Result<O, XcsError> {
        on_time(result, self.deadline, self.name, self.index, now)
    }

    /// The body's result for attempt [`attempt`](Self::attempt), at `now` (after
    /// [`on_time`](Self::on_time)).
    #[inline]
    pub(crate) fn ran(&mut self, result: Result<O, XcsError>, now: impl Into<Now>) -> Step<I> {
        let mut now = now.into();
        debug_assert!(matches!(self.state, State::Running));
        if let (Ok(_), Some(race)) = (&result, &self.race) {
            hedge::observe(self.name, now.get().saturating_duration_since(race.since));
        }
        let used = self.context.meter.take().and_then(|meter| meter.recorded());
        if let Some(used) = used {
            self.recorded = Some(self.recorded.unwrap_or_default() + used);
        }
        if let Some(mut permit) = self.permit.take() {
            permit.report(crate::policy::breaker::Report::of(&result), now.get());
            if let Err(error) = &result {
                if error.is_rate_limited() {
                    let wait = error
                        .retry_hint()
                        .unwrap_or(crate::error::DEFAULT_RATE_LIMITED_WAIT);
                    permit.rate_limited(wait, now.get());
                }
            }
            permit.settle(used);
        }
        match result {
            Err(error) if self.kept.is_some() => {
                // A retry that its resource's open circuit would refuse is not waited for.
                if error.is_retryable() && self.attempt <= self.options.max_retries {
                    if let Some((resource, until)) =
                        self.resource.and_then(|r| r.refusal(now.get()))
                    {
                        drop_quietly(error);
                        return self.circuit_open(resource, until);
                    }
                }
                let wait = retry::backoff(self.attempt, &error);
                let at = self.deadline.map(|(at, _)| at);
                if retry::should_retry(&error, self.attempt, self.options.max_retries, wait, at) {
                    self.state = State::Backoff;
                    self.sleep(now.get() + wait)
                } else {
                    self.finish(Err(error))
                }
            }
            result => self.finish(result),
        }
    }

    /// The write of [`Step::Write`] is done (or failed: a store fault is skipped).
    pub(crate) fn written(&mut self) -> Step<I> {
        let State::Writing(output) = std::mem::replace(&mut self.state, State::Over(None)) else {
            unreachable!("a write is asked for only with an output");
        };
        self.settle(Ok(output))
    }

    /// Starts attempt `self.attempt`: its rate slot first, if a rate limit is set.
    #[inline]
    fn next_attempt(&mut self, now: &mut Now) -> Step<I> {
        let Some(rate) = self.options.rate_limit else {
            return self.admit(now);
        };
        match rate::reserve(self.name, rate, self.deadline.map(|(at, _)| at)) {
            Ok(start) if start <= now.get() => self.confirm_slot(now),
            Ok(start) => {
                self.state = State::RateSlot;
                self.sleep(start)
            }
            Err(rate::TooLate) => {
                let timeout = self.deadline.map_or(Duration::ZERO, |(_, t)| t);
                self.finish(Err(self.timeout(timeout)))
            }
        }
    }

    /// At the reserved slot: starts the body, unless the limiter asks for a little more time.
    fn confirm_slot(&mut self, now: &mut Now) -> Step<I> {
        let rate = self.options.rate_limit.unwrap_or(f64::INFINITY);
        match rate::confirm(self.name, rate) {
            Some(wait) => {
                self.state = State::RateSlot;
                self.sleep(now.get() + wait)
            }
            None => self.admit(now),
        }
    }

    /// [`Step::Sleep`] until `at`.
    #[inline]
    fn sleep(&mut self, at: Instant) -> Step<I> {
        self.until = Some(at);
        Step::Sleep
    }

    /// The instant [`Step::Sleep`] waits for.
    #[inline]
    pub(crate) fn until(&self) -> Instant {
        match self.until {
            Some(at) => at,
            None => unreachable!("a sleep is asked for with its instant"),
        }
    }

    /// What [`Step::Wait`] waits on.
    pub(crate) fn take_listener(&mut self) -> Listener {
        match self.listener.take() {
            Some(listener) => listener,
            None => unreachable!("a wait is asked for with its listener"),
        }
    }

    /// What [`Step::Write`] writes.
    pub(crate) fn take_write(&mut self) -> Write {
        match self.write.take() {
            Some(write) => write,
            None => unreachable!("a write is asked for with its write"),
        }
    }

    /// The call's first attempt: the budget admits the call first.
    #[inline]
    fn first_attempt(&mut self, now: &mut Now) -> Step<I> {
        {
            let budget = self
                .context
                .budget
                .clone()
                .or_else(crate::policy::budget::global);
            if let Some(budget) = budget {
                let estimate = self.estimate();
                match budget.admit(estimate) {
                    Ok(reservation) => self.reservation = Some(reservation),
                    Err(refusal) => {
                        let error = refusal.into_error(self.name, self.index);
                        return self.done_early(Err(error), Outcome::Error);
                    }
                }
            }
        }
        self.next_attempt(now)
    }

    /// The call's estimate, made once (from the input, kept until the first attempt).
    fn estimate(&mut self) -> Usage {
        if let Some(estimate) = self.estimate {
            return estimate;
        }
        let estimate = match (self.estimate_with, &self.kept) {
            (Some(estimate), Some(input)) => estimate(input).sanitized(),
            _ => Usage::ZERO,
        };
        self.estimate = Some(estimate);
        estimate
    }

    /// Admission of the attempt by its resource, if it uses one.
    #[inline]
    fn admit(&mut self, now: &mut Now) -> Step<I> {
        let Some(name) = self.resource_name else {
            return self.run();
        };
        let tokens = self.estimate().tokens();
        let resource = *self
            .resource
            .get_or_insert_with(|| resource::resource(name));
        let at = now.get();
        self.waiting_since.get_or_insert(at);
        match resource.admit(tokens, at, self.deadline.map(|(at, _)| at)) {
            Admission::Admitted { permit, start } => {
                self.permit = Some(permit);
                if start <= at {
                    self.start_attempt(now)
                } else {
                    self.state = State::ResourceStart;
                    self.sleep(start)
                }
            }
            Admission::Full(listener) => {
                self.state = State::ResourceFull;
                self.listener = Some(listener);
                Step::Wait
            }
            Admission::TooLate => {
                let timeout = self.deadline.map_or(Duration::ZERO, |(_, t)| t);
                self.finish(Err(self.timeout(timeout)))
            }
            Admission::Open { resource, until } => self.circuit_open(resource, until),
        }
    }

    /// The resource's circuit is open: the call fails at once (after a failed attempt too: the
    /// open circuit is the news). A call refused before any body ran is one trace event.
    #[cold]
    fn circuit_open(&mut self, resource: std::sync::Arc<str>, until: Option<Instant>) -> Step<I> {
        let error = XcsError::CircuitOpen {
            operator: self.name.to_owned(),
            index: self.index,
            resource,
            until,
        };
        let step = self.finish(Err(error));
        if let State::Over(Some((_, event))) = &mut self.state {
            if self.options.trace_execution && !self.ran_body {
                *event = Some(Outcome::Error);
            }
        }
        step
    }

    /// The resource has admitted the attempt and its start has come.
    fn start_attempt(&mut self, now: &mut Now) -> Step<I> {
        if let Some(since) = self.waiting_since.take() {
            self.waited = now.get().saturating_duration_since(since);
        }
        self.run()
    }

    /// How long the current attempt waited for its resource.
    #[inline]
    pub(crate) fn resource_wait(&self) -> Duration {
        self.waited
    }

    /// What the current attempt has recorded so far (for its trace event, read before
    /// [`ran`](Self::ran)).
    #[inline]
    pub(crate) fn attempt_usage(&self) -> Option<Usage> {
        self.context
            .meter
            .as_ref()
            .and_then(|meter| meter.recorded())
    }

    /// What the operator offers besides its cache key, asked once.
    #[inline]
    fn supports(&mut self) -> &Supports<I, O> {
        if self.supports.is_none() {
            let supports = (self.more)();
            self.clone_input = memo::input_cloner(
                self.options,
                supports.clone_input,
                supports.retried_by_items,
                self.name,
            );
            self.supports = Some(supports);
        }
        match &self.supports {
            Some(supports) => supports,
            None => unreachable!("set above"),
        }
    }

    /// Hands the body its input: a copy while another attempt may follow, else the input.
    #[inline]
    fn run(&mut self) -> Step<I> {
        self.supports();
        let clone = match self.clone_input {
            Some(clone) if self.attempt <= self.options.max_retries => Some(clone),
            _ => self.hedge_cloner(),
        };
        let input = match (clone, &self.kept) {
            (Some(clone), Some(original)) => clone(original),
            _ => match self.kept.take() {
                Some(input) => input,
                None => return self.finish(Err(self.timeout(Duration::ZERO))),
            },
        };
        // An attempt that is charged for its usage (a resource, a budget, a trace) records it
        // on a meter of its own.
        self.ran_body = true;
        if self.resource_name.is_some()
            || self.reservation.is_some()
            || self.options.trace_execution
        {
            self.context.meter = Some(Meter::new());
        }
        self.state = State::Running;
        Step::Run(input)
    }

    /// The body is done with: the result goes to the store (a success, when the call holds a
    /// store slot), then to the memory cache, and the claim goes.
    #[inline]
    fn finish(&mut self, result: Result<O, XcsError>) -> Step<I> {
        drop_quietly(self.kept.take());
        // A place admitted for an attempt that will not run goes back to the resource.
        drop(self.permit.take());
        if let Some(reservation) = self.reservation.take() {
            // A call that never ran (its deadline came while it waited for a rate slot or its
            // resource) used nothing.
            reservation.settle(if self.ran_body {
                self.recorded
            } else {
                Some(Usage::ZERO)
            });
        }
        if let Some(recorded) = self.recorded {
            crate::progress::charge_current(recorded);
        }
        let write = match (&result, &self.held) {
            (Ok(output), Some(held)) => held.write(output),
            _ => None,
        };
        match (result, write) {
            (Ok(output), Some(write)) => {
                self.state = State::Writing(output);
                self.write = Some(write);
                Step::Write
            }
            (result, _) => self.settle(result),
        }
    }

    /// Stores a success in the memory cache (releasing the claim, so waiting callers wake).
    #[inline]
    fn settle(&mut self, result: Result<O, XcsError>) -> Step<I> {
        let result = match self.held.take() {
            Some(held) => held.finish(result, self.name, self.index),
            None => result,
        };
        self.state = State::Over(Some((result, None)));
        Step::Done
    }

    /// The call ends before its body runs.
    #[inline]
    fn done_early(&mut self, result: Result<O, XcsError>, outcome: Outcome) -> Step<I> {
        drop_quietly(self.kept.take());
        let event = self.options.trace_execution.then_some(outcome);
        self.state = State::Over(Some((result, event)));
        Step::Done
    }

    /// After [`Step::Done`]: the call's result, and when the trace is on and the call ended
    /// without running its body (a deadline already passed, a cache answer), the outcome of the
    /// one event to record for it.
    #[inline]
    pub(crate) fn outcome(&mut self) -> (Result<O, XcsError>, Option<Outcome>) {
        match std::mem::replace(&mut self.state, State::Over(None)) {
            State::Over(Some(outcome)) => outcome,
            _ => unreachable!("the outcome is asked for once, after `Step::Done`"),
        }
    }

    fn timeout(&self, timeout: Duration) -> XcsError {
        timeout_error(self.name, self.index, timeout)
    }

    /// The remote side's way out (after [`Step::Run`] for attempt 1 of a plan made without
    /// retries): what to hold until the result comes back from where the body runs — the cache
    /// claim, the attempt's resource permit and the call's budget reservation.
    pub(crate) fn into_sent(mut self) -> Sent<I, O> {
        Sent {
            held: self.held.take(),
            permit: self.permit.take(),
            reservation: self.reservation.take(),
        }
    }
}

/// What a call whose body runs in another process holds until its result comes back: its cache
/// claim, its resource permit and its budget reservation (made by [`CallPlan::into_sent`]).
/// Dropped unsettled, the permit goes back and the estimate is spent.
pub(crate) struct Sent<I, O> {
    pub(crate) held: Option<Held<I, O>>,
    permit: Option<Permit>,
    reservation: Option<Reservation>,
}

impl<I, O> Sent<I, O> {
    /// The body ran elsewhere, ended with `result` and recorded `usage` there (`None`:
    /// nothing, so the estimate stands): the resource's breaker counts the outcome as a local
    /// attempt's, and the permit and the reservation are settled.
    pub(crate) fn settle(&mut self, result: &Result<O, XcsError>, usage: Option<Usage>) {
        if let Some(mut permit) = self.permit.take() {
            permit.report(crate::policy::breaker::Report::of(result), Instant::now());
            permit.settle(usage);
        }
        if let Some(reservation) = self.reservation.take() {
            reservation.settle(usage);
        }
    }
}

/// Which of a hedged call's two attempts (see [`CallPlan::hedge_at`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Racer {
    /// The attempt [`Step::Run`] started.
    First,
    /// Its hedge, started by [`HedgeStep::Run`].
    Hedge,
}

/// What to do about a hedge whose delay has come ([`CallPlan::hedge`]).
pub(crate) enum HedgeStep<I> {
    /// Start the hedge with this input, under [`CallPlan::hedge_context`], racing the first
    /// attempt.
    Run(I),
    /// Admission goes on at this instant (a rate slot, a resource's start): wait for it or for
    /// the first attempt, whichever comes first, then ask [`CallPlan::hedge`] again.
    Later(Instant),
    /// No hedge for this call.
    Never,
}

/// What a racing attempt's end means ([`CallPlan::raced`]).
pub(crate) enum Raced<I> {
    /// The other attempt goes on: wait for it.
    Wait,
    /// The race is over: cancel the attempt still running, if any, and go on with the step.
    Over(Step<I>),
}

/// Where a hedge's admission stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HedgeStage {
    /// Not asked yet.
    Idle,
    /// Waiting for its rate slot.
    RateSlot,
    /// Admitted by its resource, waiting for the start it was given.
    ResourceStart,
    /// Running.
    Running,
    /// Over, or never to be: no more hedges for this call.
    Spent,
}

/// A call's hedging state (see `policy::hedge`).
struct Race {
    /// When the current attempt started (its latency is measured from there).
    since: Instant,
    stage: HedgeStage,
    /// The hedge's own budget reservation, resource permit and body context (its own meter).
    reservation: Option<Reservation>,
    permit: Option<Permit>,
    context: Option<CallContext>,
    /// When the hedge began its admission, and how long it waited for its resource.
    asked: Option<Instant>,
    waited: Duration,
    /// The first attempt's error, kept while the hedge runs.
    first_error: Option<XcsError>,
    /// What the hedge recorded, once it is over.
    recorded: Option<Usage>,
}

impl Race {
    fn new(since: Instant) -> Self {
        Race {
            since,
            stage: HedgeStage::Idle,
            reservation: None,
            permit: None,
            context: None,
            asked: None,
            waited: Duration::ZERO,
            first_error: None,
            recorded: None,
        }
    }

    /// No hedge after all (or no more): what admission held goes back unspent.
    fn give_up(&mut self) -> HedgeStage {
        drop(self.permit.take());
        if let Some(reservation) = self.reservation.take() {
            reservation.settle(Some(Usage::ZERO));
        }
        self.stage = HedgeStage::Spent;
        self.stage
    }

    /// The hedge is over (`ending`: how): its permit and reservation are settled by what it
    /// recorded (nothing: its estimate stays charged).
    fn settle(&mut self, ending: Ending<'_>, now: Instant) {
        let used = self
            .context
            .take()
            .and_then(|context| context.meter)
            .and_then(|meter| meter.recorded());
        self.recorded = used;
        // Charged on its own: the call's reservation settles by what its attempts recorded.
        if let Some(used) = used {
            crate::progress::charge_current(used);
        }
        if let Some(mut permit) = self.permit.take() {
            note_ending(&mut permit, ending, now);
            permit.settle(used);
        }
        if let Some(reservation) = self.reservation.take() {
            reservation.settle(used);
        }
        self.stage = HedgeStage::Spent;
    }
}

/// How a racing attempt ended, for its resource's breaker.
#[derive(Clone, Copy)]
enum Ending<'e> {
    /// It answered the call.
    Won,
    /// The other attempt answered first: cancelled, it says nothing of the provider.
    Lost,
    /// It failed with this error.
    Failed(&'e XcsError),
}

impl<'e> Ending<'e> {
    /// `Some(error)`: failed; `None`: lost.
    fn of(failure: Option<&'e XcsError>) -> Self {
        failure.map_or(Ending::Lost, Ending::Failed)
    }
}

/// A racing attempt is over: its success or failure counts for its resource's breaker as any
/// attempt's does (a loser's place goes back unreported), and a "rate limited" answer pauses
/// the resource.
fn note_ending(permit: &mut Permit, ending: Ending<'_>, now: Instant) {
    let error = match ending {
        Ending::Won => {
            permit.report(crate::policy::breaker::Report::Success, now);
            return;
        }
        Ending::Lost => return,
        Ending::Failed(error) => error,
    };
    permit.report(crate::policy::breaker::Report::of_error(error), now);
    if error.is_rate_limited() {
        let wait = error
            .retry_hint()
            .unwrap_or(crate::error::DEFAULT_RATE_LIMITED_WAIT);
        permit.rate_limited(wait, now);
    }
}

/// Hedging (`hedge_after`): a second attempt racing the current one; the rules are in
/// `policy::hedge`. A driver that can cancel an attempt asks [`hedge_at`](CallPlan::hedge_at)
/// after each [`Step::Run`]; at that instant it asks [`hedge`](CallPlan::hedge), and it reports
/// the end of each racing attempt to [`raced`](CallPlan::raced) (of an attempt that raced
/// nothing too, instead of [`ran`](CallPlan::ran)).
impl<I: 'static, O: Send + 'static> CallPlan<'_, I, O> {
    /// After [`Step::Run`] (whose attempt started at `now`): when to start a hedge of it, if one
    /// may start. Only asked by a driver that can cancel an attempt.
    pub(crate) fn hedge_at(&mut self, now: Instant) -> Option<Instant> {
        let rule = self.options.hedge_after?;
        let race = self.race.get_or_insert_with(|| Box::new(Race::new(now)));
        race.since = now;
        if race.stage != HedgeStage::Idle {
            return None;
        }
        let supports = self.supports.as_ref()?;
        // A batch hedges its items, not itself.
        if supports.retried_by_items {
            race.stage = HedgeStage::Spent;
            return None;
        }
        if supports.clone_input.is_none() {
            race.stage = HedgeStage::Spent;
            crate::warn::warn_not_hedged(self.name, std::any::type_name::<I>());
            return None;
        }
        self.kept.as_ref()?;
        let at = now.checked_add(hedge::delay(self.name, rule)?)?;
        match self.deadline {
            Some((deadline, _)) if at >= deadline => None,
            _ => Some(at),
        }
    }

    /// How to copy the input for a hedge that may still come.
    fn hedge_cloner(&self) -> Option<CloneInput<I>> {
        self.options.hedge_after?;
        let open = self
            .race
            .as_ref()
            .is_none_or(|race| race.stage == HedgeStage::Idle);
        let supports = self.supports.as_ref()?;
        (open && !supports.retried_by_items)
            .then_some(supports.clone_input)
            .flatten()
    }

    /// The instant of [`hedge_at`](Self::hedge_at) (or of [`HedgeStep::Later`]) has come
    /// (`now`) and the first attempt still runs: the hedge's admission, as an attempt's.
    pub(crate) fn hedge(&mut self, now: Instant) -> HedgeStep<I> {
        let Some(race) = self.race.as_deref_mut() else {
            return HedgeStep::Never;
        };
        if !matches!(self.state, State::Running)
            || self.deadline.is_some_and(|(at, _)| now >= at)
            || matches!(race.stage, HedgeStage::Running | HedgeStage::Spent)
        {
            race.give_up();
            return HedgeStep::Never;
        }
        let deadline = self.deadline.map(|(at, _)| at);
        let mut stage = race.stage;
        if stage == HedgeStage::Idle {
            race.asked = Some(now);
            // Its own estimate against the budget.
            let budget = self
                .context
                .budget
                .clone()
                .or_else(crate::policy::budget::global);
            if let Some(budget) = budget {
                let estimate = self.estimate.unwrap_or(Usage::ZERO);
                match budget.admit(estimate) {
                    Ok(reservation) => race.reservation = Some(reservation),
                    Err(_) => {
                        race.give_up();
                        return HedgeStep::Never;
                    }
                }
            }
            // Its rate slot.
            if let Some(rate) = self.options.rate_limit {
                match rate::reserve(self.name, rate, deadline) {
                    Ok(start) if start > now => {
                        race.stage = HedgeStage::RateSlot;
                        return HedgeStep::Later(start);
                    }
                    Ok(_) => stage = HedgeStage::RateSlot,
                    Err(rate::TooLate) => {
                        race.give_up();
                        return HedgeStep::Never;
                    }
                }
            }
        }
        if stage == HedgeStage::RateSlot {
            let rate = self.options.rate_limit.unwrap_or(f64::INFINITY);
            if let Some(wait) = rate::confirm(self.name, rate) {
                race.stage = HedgeStage::RateSlot;
                return HedgeStep::Later(now + wait);
            }
            stage = HedgeStage::Idle;
        }
        if stage == HedgeStage::Idle {
            // Its resource: a start now or later, never a wait for a place.
            if let Some(name) = self.resource_name {
                let tokens = self.estimate.unwrap_or(Usage::ZERO).tokens();
                let resource = *self
                    .resource
                    .get_or_insert_with(|| resource::resource(name));
                match resource.admit(tokens, now, deadline) {
                    Admission::Admitted { permit, start } => {
                        race.permit = Some(permit);
                        if start > now {
                            race.stage = HedgeStage::ResourceStart;
                            return HedgeStep::Later(start);
                        }
                    }
                    // No place, too late, or an open circuit: no hedge.
                    Admission::Full(_) | Admission::TooLate | Admission::Open { .. } => {
                        race.give_up();
                        return HedgeStep::Never;
                    }
                }
            }
        } else if stage == HedgeStage::ResourceStart {
            if let Some(later) = race.permit.as_ref().and_then(|p| p.confirm(now)) {
                return HedgeStep::Later(later);
            }
        }
        // Admitted: the hedge runs on a copy of the input, recording on a meter of its own.
        let clone = self.supports.as_ref().and_then(|s| s.clone_input);
        let (Some(clone), Some(original)) = (clone, &self.kept) else {
            race.give_up();
            return HedgeStep::Never;
        };
        let input = clone(original);
        let mut context = self.context.clone();
        if self.context.meter.is_some() {
            context.meter = Some(Meter::new());
        }
        race.context = Some(context);
        race.waited = race
            .asked
            .map_or(Duration::ZERO, |asked| now.saturating_duration_since(asked));
        race.stage = HedgeStage::Running;
        HedgeStep::Run(input)
    }

    /// The context the hedge's body runs in (the call's, with a meter of its own).
    pub(crate) fn hedge_context(&self) -> &CallContext {
        match self.race.as_ref().and_then(|race| race.context.as_ref()) {
            Some(context) => context,
            None => &self.context,
        }
    }

    /// How long the hedge waited for its resource.
    pub(crate) fn hedge_wait(&self) -> Duration {
        self.race
            .as_ref()
            .map_or(Duration::ZERO, |race| race.waited)
    }

    /// What the hedge has recorded so far (for its trace event).
    pub(crate) fn hedge_usage(&self) -> Option<Usage> {
        let race = self.race.as_ref()?;
        match &race.context {
            Some(context) => context.meter.as_ref().and_then(|meter| meter.recorded()),
            None => race.recorded,
        }
    }

    /// Whether a hedge races the first attempt now.
    pub(crate) fn hedge_running(&self) -> bool {
        self.race
            .as_ref()
            .is_some_and(|race| race.stage == HedgeStage::Running)
    }

    /// Attempt `which` of the race is over with `result`, at `now`. The first success answers
    /// the call (the other attempt is then the driver's to cancel: what it recorded so far is
    /// charged); a failure waits for the other attempt while it runs; two failures go on with
    /// the first attempt's error (retried as any failure, unhedged). Without a hedge running, the
    /// first attempt's result is [`ran`](Self::ran)'s.
    pub(crate) fn raced(
        &mut self,
        which: Racer,
        result: Result<O, XcsError>,
        now: impl Into<Now>,
    ) -> Raced<I> {
        let mut now = now.into();
        let running = self.hedge_running();
        let Some(race) = self.race.as_deref_mut().filter(|_| running) else {
            // No hedge runs: a hedge still being admitted is given up.
            if let Some(race) = self.race.as_deref_mut() {
                if race.stage != HedgeStage::Spent && race.stage != HedgeStage::Idle {
                    race.give_up();
                }
            }
            let result = match (which, result, self.race.as_deref_mut()) {
                (Racer::First, result, _) => result,
                // The hedge ended after the first attempt had failed: its error stands for the
                // call's only if the first left none.
                (Racer::Hedge, Ok(output), _) => Ok(output),
                (Racer::Hedge, Err(error), race) => match race.and_then(|r| r.first_error.take()) {
                    Some(first) => {
                        drop_quietly(error);
                        Err(first)
                    }
                    None => Err(error),
                },
            };
            return Raced::Over(self.ran(result, now));
        };
        match (which, result) {
            (Racer::First, Ok(output)) => {
                race.settle(Ending::Lost, now.get());
                Raced::Over(self.ran(Ok(output), now))
            }
            (Racer::Hedge, Ok(output)) => {
                race.settle(Ending::Won, now.get());
                let first_over = race.first_error.take().is_some();
                if !first_over {
                    // The first attempt loses: it is over, charged what it recorded so far.
                    self.end_first_attempt(None, &mut now);
                }
                Raced::Over(self.ran(Ok(output), now))
            }
            (Racer::First, Err(error)) => {
                self.end_first_attempt(Some(&error), &mut now);
                if let Some(race) = self.race.as_deref_mut() {
                    race.first_error = Some(error);
                }
                Raced::Wait
            }
            (Racer::Hedge, Err(error)) => {
                race.settle(Ending::Failed(&error), now.get());
                match self.race.as_deref_mut().and_then(|r| r.first_error.take()) {
                    // Both failed: the call goes on with the first attempt's error.
                    Some(first) => {
                        drop_quietly(error);
                        Raced::Over(self.ran(Err(first), now))
                    }
                    None => {
                        drop_quietly(error);
                        Raced::Wait
                    }
                }
            }
        }
    }

    /// The first attempt of a race is over before the race (it failed, or lost): its usage and
    /// its permit are settled now, so [`ran`](Self::ran) finds nothing left of them.
    fn end_first_attempt(&mut self, failure: Option<&XcsError>, now: &mut Now) {
        let used = self.context.meter.take().and_then(|meter| meter.recorded());
        if let Some(used) = used {
            self.recorded = Some(self.recorded.unwrap_or_default() + used);
        }
        if let Some(mut permit) = self.permit.take() {
            note_ending(&mut permit, Ending::of(failure), now.get());
            permit.settle(used);
        }
    }
}

/// [`CallPlan::on_time`], for a driver that reads the plan's deadline before it awaits the body.
pub(crate) fn on_time<O>(
    result: Result<O, XcsError>,
    deadline: Option<(Instant, Duration)>,
    operator: &str,
    index: Option<usize>,
    now: impl Into<Now>,
) -> Result<O, XcsError> {
    let mut now = now.into();
    match (result, deadline) {
        (Ok(output), Some((at, timeout))) if now.get() > at => {
            drop_quietly(output);
            Err(timeout_error(operator, index, timeout))
        }
        (result, _) => result,
    }
}

/// The outcome a trace event records for `result`.
pub(crate) fn outcome_of<T>(result: &Result<T, XcsError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ok,
        Err(XcsError::Timeout { .. }) => Outcome::Timeout,
        Err(XcsError::Panicked { .. }) => Outcome::Panicked,
        Err(_) => Outcome::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache;
    use std::hash::Hash;

    fn supports() -> Supports<u64, u64> {
        Supports {
            persist: None,
            clone_input: Some(|x: &u64| *x),
            retried_by_items: false,
        }
    }

    /// Drives `plan` like a driver would, with no thread and no clock but the one passed in:
    /// every sleep "happens" at once, lookups go to the memory cache (no one else holds a
    /// claim), and `body` answers each attempt. Returns the result, the attempts made, the
    /// sleeps asked for and the single event recorded.
    fn drive(
        mut plan: CallPlan<'_, u64, u64>,
        now: Instant,
        mut body: impl FnMut(u64, u32) -> Result<u64, XcsError>,
    ) -> (Result<u64, XcsError>, u32, Vec<Instant>, Option<Outcome>) {
        let mut attempts = 0;
        let mut sleeps = Vec::new();
        let mut step = plan.start(now);
        loop {
            step = match step {
                Step::Lookup => {
                    let (support, key, at, held) = plan.lookup_request();
                    let lookup = cache::lookup(support, key, at, held);
                    plan.looked_up(lookup, now)
                }
                Step::Sleep => {
                    let until = plan.until();
                    sleeps.push(until);
                    plan.woke(until)
                }
                // The place is free at once (no one else holds the resource here).
                Step::Wait => {
                    drop(plan.take_listener());
                    plan.woke(now)
                }
                Step::Run(input) => {
                    attempts += 1;
                    assert_eq!(plan.attempt(), attempts);
                    // The body records on the attempt's meter, as `record_usage` would.
                    let _in = crate::deadline::enter(plan.body_context().clone());
                    let result = body(input, plan.attempt());
                    plan.ran(result, now)
                }
                Step::Write => {
                    plan.take_write().run();
                    plan.written()
                }
                Step::Done => {
                    let (result, event) = plan.outcome();
                    return (result, attempts, sleeps, event);
                }
            };
        }
    }

    fn plan<'a>(
        options: &'a ExecutionOptions,
        name: &'a str,
        now: Instant,
    ) -> CallPlan<'a, u64, u64> {
        CallPlan::new(
            name,
            None,
            options,
            None,
            &supports,
            Charge::NONE,
            CallContext::default(),
            7,
            now,
        )
    }

    #[test]
    fn without_policies_the_body_runs_once() {
        let options = ExecutionOptions::DEFAULT;
        let now = Instant::now();
        let (result, attempts, sleeps, event) =
            drive(plan(&options, "plain", now), now, |x, _| Ok(x * 2));
        assert_eq!(result.unwrap(), 14);
        assert_eq!((attempts, sleeps.len(), event), (1, 0, None));
    }

    #[test]
    fn a_call_past_its_deadline_is_a_timeout_that_never_runs() {
        let options = ExecutionOptions {
            timeout_seconds: Some(Duration::from_millis(10)),
            trace_execution: true,
            ..ExecutionOptions::DEFAULT
        };
        let made = Instant::now();
        let later = made + Duration::from_secs(1);
        let (result, attempts, _, event) = drive(plan(&options, "late", made), later, |x, _| Ok(x));
        assert!(
            matches!(result, Err(XcsError::Timeout { .. })),
            "{result:?}"
        );
        assert_eq!((attempts, event), (0, Some(Outcome::Timeout)));
    }

    #[test]
    fn retryable_failures_run_again_after_a_backoff_up_to_max_retries() {
        let options = ExecutionOptions {
            max_retries: 2,
            ..ExecutionOptions::DEFAULT
        };
        let now = Instant::now();
        let (result, attempts, sleeps, _) = drive(plan(&options, "flaky", now), now, |_, n| {
            Err(XcsError::operator("flaky", format!("attempt {n}")))
        });
        assert_eq!(attempts, 3);
        assert_eq!(sleeps.len(), 2);
        assert!(
            sleeps
                .iter()
                .all(|at| *at >= now + retry::FIRST_BACKOFF / 2)
        );
        assert!(result.unwrap_err().to_string().contains("attempt 3"));

        // Succeeding on the second attempt stops there; a permanent error is never retried.
        let (result, attempts, _, _) = drive(plan(&options, "flaky", now), now, |x, n| {
            if n == 1 {
                Err(XcsError::operator("flaky", "once"))
            } else {
                Ok(x)
            }
        });
        assert_eq!((result.unwrap(), attempts), (7, 2));
        let (result, attempts, _, _) = drive(plan(&options, "flaky", now), now, |_, _| {
            Err(XcsError::permanent("flaky", "bad key"))
        });
        assert!(result.is_err());
        assert_eq!(attempts, 1);
    }

    #[test]
    fn a_retry_that_would_end_past_the_deadline_is_not_attempted() {
        let options = ExecutionOptions {
            max_retries: 5,
            timeout_seconds: Some(Duration::from_millis(50)),
            ..ExecutionOptions::DEFAULT
        };
        let now = Instant::now();
        let (result, attempts, sleeps, _) =
            drive(plan(&options, "slow_retry", now), now, |_, _| {
                Err(XcsError::retry_after(
                    "slow_retry",
                    Duration::from_secs(1),
                    "429",
                ))
            });
        assert!(result.is_err());
        assert_eq!((attempts, sleeps.len()), (1, 0));
    }

    #[test]
    fn rate_limited_attempts_wait_for_their_slots() {
        let options = ExecutionOptions {
            rate_limit: Some(10.0),
            ..ExecutionOptions::DEFAULT
        };
        let name = "plan_rate_test";
        let now = Instant::now();
        let (first, ..) = drive(plan(&options, name, now), now, |x, _| Ok(x));
        assert!(first.is_ok());
        // The second call's slot is at least 1/r after the first's.
        let (second, _, sleeps, _) = drive(plan(&options, name, now), now, |x, _| Ok(x));
        assert!(second.is_ok());
        assert!(
            sleeps
                .first()
                .is_some_and(|at| *at >= now + Duration::from_millis(90)),
            "{sleeps:?}"
        );
        // A slot past the deadline is refused at once: a timeout without running.
        let tight = ExecutionOptions {
            timeout_seconds: Some(Duration::from_millis(1)),
            ..options
        };
        let (third, attempts, _, _) = drive(plan(&tight, name, now), now, |x, _| Ok(x));
        assert!(matches!(third, Err(XcsError::Timeout { .. })), "{third:?}");
        assert_eq!(attempts, 0);
    }

    struct Keyed;

    fn keyed() -> Option<CacheSupport<u64, u64>> {
        fn hash(input: &u64, mut state: &mut dyn std::hash::Hasher) {
            input.hash(&mut state);
        }
        Some(CacheSupport::new::<Keyed>(hash, |o: &u64| *o))
    }

    #[test]
    fn a_cached_input_is_answered_without_its_body_and_traced_as_a_hit() {
        let options = ExecutionOptions {
            enable_caching: true,
            trace_execution: true,
            ..ExecutionOptions::DEFAULT
        };
        let now = Instant::now();
        let input = 0x5eed_u64 ^ now.elapsed().as_nanos() as u64;
        let make = || {
            CallPlan::new(
                "plan_cache",
                None,
                &options,
                keyed(),
                &supports,
                Charge::NONE,
                CallContext::default(),
                input,
                now,
            )
        };
        let (first, attempts, _, event) = drive(make(), now, |x, _| Ok(x + 1));
        assert_eq!((first.unwrap(), attempts, event), (input + 1, 1, None));
        let (second, attempts, _, event) = drive(make(), now, |_, _| unreachable!("cached"));
        assert_eq!(
            (second.unwrap(), attempts, event),
            (input + 1, 0, Some(Outcome::CacheHit))
        );
    }

    #[test]
    fn the_cache_step_taken_before_a_plan_answers_as_the_plan_would() {
        use crate::policy::memo::{AtOnce, at_once};
        let options = ExecutionOptions {
            enable_caching: true,
            ..ExecutionOptions::DEFAULT
        };
        let now = Instant::now();
        let input = 0xa70_u64 ^ now.elapsed().as_nanos() as u64;
        let Some(support) = keyed() else {
            unreachable!("u64 keys")
        };
        // Nothing stored: the plan goes on from the lookup with the key made, runs the body
        // and stores its output under that key.
        let AtOnce::Keyed(key) = at_once(&support, "plan_at_once", None, &input) else {
            panic!("nothing is stored yet");
        };
        let mut plan = CallPlan::new(
            "plan_at_once",
            None,
            &options,
            keyed(),
            &supports,
            Charge::NONE,
            CallContext::default(),
            input,
            now,
        );
        plan.keyed(key);
        let (first, attempts, _, _) = drive(plan, now, |x, _| Ok(x * 3));
        assert_eq!((first.unwrap(), attempts), (input * 3, 1));
        // Stored: answered at once, as the plan's own lookup answers.
        match at_once(&support, "plan_at_once", None, &input) {
            AtOnce::Answered(result, outcome) => {
                assert_eq!((result.unwrap(), outcome), (input * 3, Outcome::CacheHit));
            }
            AtOnce::Keyed(_) => panic!("the output is stored"),
        }
        let traced = ExecutionOptions {
            trace_execution: true,
            ..options
        };
        let plan = CallPlan::new(
            "plan_at_once",
            None,
            &traced,
            keyed(),
            &supports,
            Charge::NONE,
            CallContext::default(),
            input,
            now,
        );
        let (second, attempts, _, event) = drive(plan, now, |_, _| unreachable!("cached"));
        assert_eq!(
            (second.unwrap(), attempts, event),
            (input * 3, 0, Some(Outcome::CacheHit))
        );
    }

    #[test]
    fn a_budget_admits_by_estimate_and_settles_by_what_was_recorded() {
        use crate::policy::budget::Budget;
        let options = ExecutionOptions::DEFAULT;
        let budget = Budget::new(Some(100), None, None);
        let estimate = |x: &u64| Usage {
            input_tokens: *x,
            ..Usage::ZERO
        };
        let charge = Charge {
            resource: None,
            estimate: Some(&estimate),
        };
        let context = CallContext {
            budget: Some(std::sync::Arc::clone(&budget)),
            ..CallContext::default()
        };
        let now = Instant::now();
        let make = |input: u64| {
            CallPlan::new(
                "plan_budget",
                Some(3),
                &options,
                None,
                &supports,
                charge,
                context.clone(),
                input,
                now,
            )
        };
        // Estimated 60, recorded 30: 30 spent.
        let (result, attempts, ..) = drive(make(60), now, |x, _| {
            crate::deadline::record_usage(Usage {
                input_tokens: x / 2,
                ..Usage::ZERO
            });
            Ok(x)
        });
        assert_eq!((result.unwrap(), attempts), (60, 1));
        assert_eq!(budget.spent().tokens(), 30);
        // Estimated 80: does not fit in the 70 left; refused without running, named.
        let (result, attempts, ..) = drive(make(80), now, |_, _| unreachable!("refused"));
        assert_eq!(attempts, 0);
        match result {
            Err(XcsError::BudgetExceeded {
                budget,
                limit,
                spent,
                index,
                ..
            }) => {
                assert_eq!(budget, "token_budget");
                assert_eq!((limit, spent, index), (100.0, 30.0, Some(3)));
            }
            other => panic!("{other:?}"),
        }
        // Records nothing: its estimate is spent.
        let (result, ..) = drive(make(70), now, |x, _| Ok(x));
        assert!(result.is_ok());
        assert_eq!(budget.spent().tokens(), 100);
    }

    #[test]
    fn a_call_that_never_runs_spends_nothing_of_its_budget() {
        use crate::policy::budget::Budget;
        let budget = Budget::new(Some(100), None, None);
        let estimate = |_: &u64| Usage {
            input_tokens: 40,
            ..Usage::ZERO
        };
        let charge = Charge {
            resource: None,
            estimate: Some(&estimate),
        };
        let context = CallContext {
            budget: Some(std::sync::Arc::clone(&budget)),
            ..CallContext::default()
        };
        let name = "plan_budget_too_late";
        let now = Instant::now();
        let options = ExecutionOptions {
            rate_limit: Some(1.0),
            ..ExecutionOptions::DEFAULT
        };
        let first = CallPlan::new(
            name,
            None,
            &options,
            None,
            &supports,
            charge,
            context.clone(),
            1,
            now,
        );
        assert!(drive(first, now, |x, _| Ok(x)).0.is_ok());
        assert_eq!(budget.spent().tokens(), 40);
        // The next slot is a second away, past a 10 ms deadline: a timeout that never ran.
        let tight = ExecutionOptions {
            timeout_seconds: Some(Duration::from_millis(10)),
            ..options
        };
        let second = CallPlan::new(name, None, &tight, None, &supports, charge, context, 2, now);
        let (result, attempts, ..) = drive(second, now, |x, _| Ok(x));
        assert!(
            matches!(result, Err(XcsError::Timeout { .. })),
            "{result:?}"
        );
        assert_eq!(attempts, 0);
        assert_eq!(budget.spent().tokens(), 40);
    }

    /// A plan for a call of `name` with input 7 whose calls use the resource `name`.
    fn on_resource<'a>(
        name: &'a str,
        index: Option<usize>,
        options: &'a ExecutionOptions,
        now: Instant,
    ) -> CallPlan<'a, u64, u64> {
        CallPlan::new(
            name,
            index,
            options,
            None,
            &supports,
            Charge {
                resource: Some(name),
                estimate: None,
            },
            CallContext::default(),
            7,
            now,
        )
    }

    #[test]
    fn an_open_circuit_refuses_at_once_and_is_one_event() {
        let name = "plan_breaker_test";
        crate::resource::set_resource_limits(
            name,
            &crate::ResourceLimits::new().open_after_failures(2),
        )
        .unwrap();
        let options = ExecutionOptions {
            max_retries: 5,
            trace_execution: true,
            ..ExecutionOptions::DEFAULT
        };
        let now = Instant::now();
        let make = || on_resource(name, Some(4), &options, now);
        // The second failure opens the circuit: no third attempt is waited for.
        let (result, attempts, sleeps, _) =
            drive(make(), now, |_, _| Err(XcsError::operator(name, "503")));
        assert_eq!((attempts, sleeps.len()), (2, 1));
        match result {
            Err(XcsError::CircuitOpen {
                resource,
                index,
                until,
                ..
            }) => {
                assert_eq!((&*resource, index), (name, Some(4)));
                assert!(until.is_some_and(|at| at > now));
            }
            other => panic!("{other:?}"),
        }
        // The next call never runs: one event, an error.
        let (result, attempts, _, event) = drive(make(), now, |_, _| unreachable!("refused"));
        assert!(matches!(result, Err(XcsError::CircuitOpen { .. })));
        assert_eq!((attempts, event), (0, Some(Outcome::Error)));
    }

    #[test]
    fn a_winning_hedge_is_a_success_for_the_breaker() {
        let name = "plan_hedge_breaker_test";
        crate::resource::set_resource_limits(
            name,
            &crate::ResourceLimits::new().open_after_failures(4),
        )
        .unwrap();
        let options = hedged(Duration::from_millis(20));
        let now = Instant::now();
        let make = || on_resource(name, None, &options, now);
        let failures = || crate::resource_stats(name).unwrap().consecutive_failures;
        let fail = |_, _| Err(XcsError::operator(name, "503"));
        for _ in 0..2 {
            assert!(drive(make(), now, fail).0.is_err());
        }
        assert_eq!(failures(), 2);
        // The first attempt hangs; the hedge answers: a success, so the count starts again.
        let mut plan = make();
        assert!(matches!(plan.start(now), Step::Run(7)));
        let at = plan.hedge_at(now).unwrap();
        assert!(matches!(plan.hedge(at), HedgeStep::Run(7)));
        let raced = plan.raced(Racer::Hedge, Ok(1), at);
        assert_eq!(done(raced, &mut plan).unwrap(), 1);
        assert_eq!(failures(), 0);
        // The first attempt fails, then the hedge answers: one failure, then a success.
        for _ in 0..2 {
            assert!(drive(make(), now, fail).0.is_err());
        }
        let mut plan = make();
        assert!(matches!(plan.start(now), Step::Run(7)));
        let at = plan.hedge_at(now).unwrap();
        assert!(matches!(plan.hedge(at), HedgeStep::Run(7)));
        assert!(matches!(
            plan.raced(Racer::First, fail(7, 1), at),
            Raced::Wait
        ));
        assert_eq!(failures(), 3, "two calls, and the first attempt");
        let raced = plan.raced(Racer::Hedge, Ok(1), at);
        assert_eq!(done(raced, &mut plan).unwrap(), 1);
        assert_eq!(failures(), 0);
    }

    #[test]
    fn a_wait_that_ends_past_the_deadline_starts_no_attempt() {
        let options = ExecutionOptions {
            max_retries: 3,
            timeout_seconds: Some(Duration::from_millis(500)),
            ..ExecutionOptions::DEFAULT
        };
        let now = Instant::now();
        let mut plan = plan(&options, "plan_overslept", now);
        let Step::Run(input) = plan.start(now) else {
            panic!("the first attempt runs")
        };
        let step = plan.ran(Err(XcsError::operator("plan_overslept", "flaky")), now);
        assert!(matches!(step, Step::Sleep));
        // The backoff ended a second late, past the deadline: a timeout, no second attempt.
        assert!(matches!(
            plan.woke(now + Duration::from_secs(1)),
            Step::Done
        ));
        let (result, _) = plan.outcome();
        assert!(
            matches!(result, Err(XcsError::Timeout { .. })),
            "{result:?}"
        );
        assert_eq!(input, 7);
    }
    fn hedged(after: Duration) -> ExecutionOptions {
        ExecutionOptions {
            hedge_after: crate::options::Hedge::after(after),
            ..ExecutionOptions::DEFAULT
        }
    }

    fn done(raced: Raced<u64>, plan: &mut CallPlan<'_, u64, u64>) -> Result<u64, XcsError> {
        match raced {
            Raced::Over(Step::Done) => plan.outcome().0,
            Raced::Over(_) => panic!("the call goes on"),
            Raced::Wait => panic!("the race goes on"),
        }
    }

    #[test]
    fn a_hedge_starts_after_its_delay_and_the_first_success_answers() {
        let options = hedged(Duration::from_millis(50));
        let now = Instant::now();
        let mut plan = plan(&options, "plan_hedge_fixed", now);
        assert!(matches!(plan.start(now), Step::Run(7)));
        assert_eq!(plan.hedge_at(now), Some(now + Duration::from_millis(50)));
        let later = now + Duration::from_millis(50);
        assert!(matches!(plan.hedge(later), HedgeStep::Run(7)));
        assert!(plan.hedge_running());
        // The hedge answers first: the call's result.
        let raced = plan.raced(Racer::Hedge, Ok(70), later + Duration::from_millis(5));
        assert_eq!(done(raced, &mut plan).unwrap(), 70);

        // The first attempt answers before the delay: no hedge ever starts.
        let mut plan = super::tests::plan(&options, "plan_hedge_fixed", now);
        assert!(matches!(plan.start(now), Step::Run(7)));
        assert!(plan.hedge_at(now).is_some());
        let raced = plan.raced(Racer::First, Ok(1), now + Duration::from_millis(10));
        assert_eq!(done(raced, &mut plan).unwrap(), 1);
    }

    #[test]
    fn a_failure_waits_for_the_other_attempt_and_a_call_is_hedged_once() {
        let options = ExecutionOptions {
            max_retries: 1,
            ..hedged(Duration::from_millis(20))
        };
        let now = Instant::now();
        let mut plan = plan(&options, "plan_hedge_once", now);
        assert!(matches!(plan.start(now), Step::Run(7)));
        let at = plan.hedge_at(now).unwrap();
        assert!(matches!(plan.hedge(at), HedgeStep::Run(7)));
        // The first attempt fails: the hedge may still answer.
        let flaky = || Err(XcsError::operator("plan_hedge_once", "flaky"));
        assert!(matches!(plan.raced(Racer::First, flaky(), at), Raced::Wait));
        // It fails too: the call retries, after a backoff, unhedged.
        let Raced::Over(Step::Sleep) = plan.raced(Racer::Hedge, flaky(), at) else {
            panic!("a retry follows")
        };
        let woke = plan.until();
        assert!(matches!(plan.woke(woke), Step::Run(7)));
        assert_eq!(plan.attempt(), 2);
        assert_eq!(plan.hedge_at(woke), None);
        let raced = plan.raced(Racer::First, Ok(3), woke);
        assert_eq!(done(raced, &mut plan).unwrap(), 3);

        // A hedge that fails while the first attempt runs leaves the first to answer.
        let mut plan = super::tests::plan(&options, "plan_hedge_once", now);
        assert!(matches!(plan.start(now), Step::Run(7)));
        let at = plan.hedge_at(now).unwrap();
        assert!(matches!(plan.hedge(at), HedgeStep::Run(7)));
        assert!(matches!(plan.raced(Racer::Hedge, flaky(), at), Raced::Wait));
        let raced = plan.raced(Racer::First, Ok(5), at);
        assert_eq!(done(raced, &mut plan).unwrap(), 5);
    }

    #[test]
    fn a_quantile_hedges_only_after_twenty_successes() {
        let options = ExecutionOptions {
            hedge_after: crate::options::Hedge::quantile(95),
            ..ExecutionOptions::DEFAULT
        };
        let name = "plan_hedge_quantile";
        let now = Instant::now();
        for n in 0..hedge::MIN_OBSERVATIONS {
            let mut plan = plan(&options, name, now);
            assert!(matches!(plan.start(now), Step::Run(7)));
            assert_eq!(plan.hedge_at(now), None, "call {n}");
            let raced = plan.raced(Racer::First, Ok(7), now + Duration::from_millis(10));
            assert!(done(raced, &mut plan).is_ok());
        }
        let mut plan = plan(&options, name, now);
        assert!(matches!(plan.start(now), Step::Run(7)));
        assert_eq!(plan.hedge_at(now), Some(now + Duration::from_millis(10)));
    }

    #[test]
    fn no_hedge_without_a_copy_or_past_the_deadline() {
        fn uncopied() -> Supports<u64, u64> {
            Supports {
                persist: None,
                clone_input: None,
                retried_by_items: false,
            }
        }
        let options = hedged(Duration::from_millis(5));
        let now = Instant::now();
        let mut plan = CallPlan::new(
            "plan_hedge_uncopied",
            None,
            &options,
            None,
            &uncopied,
            Charge::NONE,
            CallContext::default(),
            7,
            now,
        );
        assert!(matches!(plan.start(now), Step::Run(7)));
        assert_eq!(plan.hedge_at(now), None);
        // A delay that ends past the deadline hedges nothing.
        let tight = ExecutionOptions {
            timeout_seconds: Some(Duration::from_millis(5)),
            ..hedged(Duration::from_millis(50))
        };
        let mut plan = super::tests::plan(&tight, "plan_hedge_tight", now);
        assert!(matches!(plan.start(now), Step::Run(7)));
        assert_eq!(plan.hedge_at(now), None);
    }

    #[test]
    fn a_hedge_is_admitted_and_charged_by_the_budget() {
        use crate::policy::budget::Budget;
        let options = hedged(Duration::from_millis(10));
        let budget = Budget::new(Some(100), None, None);
        let estimate = |x: &u64| Usage {
            input_tokens: *x,
            ..Usage::ZERO
        };
        let charge = Charge {
            resource: None,
            estimate: Some(&estimate),
        };
        let context = CallContext {
            budget: Some(std::sync::Arc::clone(&budget)),
            ..CallContext::default()
        };
        let now = Instant::now();
        let at = now + Duration::from_millis(10);
        let make = |input: u64| {
            CallPlan::new(
                "plan_hedge_budget",
                None,
                &options,
                None,
                &supports,
                charge,
                context.clone(),
                input,
                now,
            )
        };
        // Estimated 40 each: the hedge fits (80 of 100 reserved). It records 10 and wins; the
        // first attempt recorded nothing: its estimate is spent.
        let mut plan = make(40);
        assert!(matches!(plan.start(now), Step::Run(40)));
        assert_eq!(plan.hedge_at(now), Some(at));
        assert!(matches!(plan.hedge(at), HedgeStep::Run(40)));
        {
            let _in = crate::deadline::enter(plan.hedge_context().clone());
            crate::deadline::record_usage(Usage {
                input_tokens: 10,
                ..Usage::ZERO
            });
        }
        let raced = plan.raced(Racer::Hedge, Ok(1), at);
        assert!(done(raced, &mut plan).is_ok());
        assert_eq!(budget.spent().tokens(), 50);
        // Estimated 30 with 50 left: the call fits, a hedge would not: none starts.
        let mut plan = make(30);
        assert!(matches!(plan.start(now), Step::Run(30)));
        assert!(plan.hedge_at(now).is_some());
        assert!(matches!(plan.hedge(at), HedgeStep::Never));
        let raced = plan.raced(Racer::First, Ok(2), at);
        assert!(done(raced, &mut plan).is_ok());
        assert_eq!(budget.spent().tokens(), 80);
    }
}
