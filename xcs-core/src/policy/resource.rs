//! The decisions of one resource's limiter, on an explicit clock: when a call may start, what a
//! rate-limited answer does to everyone else, what a finished call gives back. No locks, no
//! threads, no waiting here: `resource.rs` holds a [`Limiter`] behind its lock and does the
//! waiting, so every rule below is tested by feeding instants.
//!
//! # The rules
//!
//! - **Requests**: a bucket that refills continuously at `requests_per_minute / 60` per second and
//!   holds at most one second's worth (`requests_per_minute / 60`, at least 1); each start takes
//!   one. So in any window of `t` seconds at most `limit × t / 60 + limit / 60` calls start
//!   (`limit × t / 60 + 1` for a limit under 60 a minute: one call can always start).
//! - **Tokens**: the same, weighted by the call's estimate (its input and output tokens). The
//!   estimate is reserved at admission, as providers count a request's tokens (its prompt and
//!   its `max_tokens`) when they admit it; when the call ends, what it recorded beyond its
//!   estimate is charged too, but a call that used less gets nothing back: a provider does not
//!   refund its window either, and a client that did would run ahead of it into 429s (measured:
//!   refunding the unused `max_tokens` of every reply turned 0 429s into several a minute, each
//!   halving the rates). Stats and budgets do count what was recorded. A call estimated at more than the
//!   bucket holds is admitted when the bucket is full and leaves it in debt: the calls after it
//!   wait until the debt is repaid (refusing it would make it impossible forever).
//! - **Committed reservations**: admission takes from the buckets at once, even for a start in
//!   the future: each bucket is brought to the start it hands out and charged there, so its
//!   clock runs along the starts (never more than its capacity at any of them), and the next
//!   caller's start is computed after them. Later callers get later starts (first come, first
//!   served) and nobody races for the next turn (no thundering herd when the rate allows one).
//! - **Deadlines**: a call whose earliest start is after its deadline is refused, and takes
//!   nothing (others keep their starts); so is one that finds no free slot (below) when its
//!   deadline has come.
//! - **In flight**: with `max_in_flight`, a call is refused with [`Decision::Full`] while that
//!   many admitted calls have not finished (reserved starts included); the caller waits for one
//!   to finish and asks again (whoever asks first after a release gets the slot).
//! - **Rate-limited answers** (a 429): every caller pauses until `now + wait` (reservations
//!   already made move later by as much as the pause grew, and the buckets do not refill
//!   during it), and the admitted rates (and the buckets' capacities) are multiplied by a
//!   *factor* that halves, then recovers linearly to 1 over the 60 s after the pause. A second
//!   429 during the recovery halves the current factor again, down to [`MIN_FACTOR`]. A 429 from
//!   a call that started before the last halving is the same overload seen again: it extends the
//!   pause but does not halve again (one burst of 429s from the calls in flight halves once).
//! - **New limits** merge into the old ones; a bucket whose limit changes keeps how full it was
//!   (its level is rescaled), and one that appears starts full.
//!
//! # Why not `governor`
//!
//! `governor` (GCRA) answers "may one cell (or `n`) pass *now*, and if not, when might it?":
//! `check`/`check_n` take nothing when they say no, so every waiter polls again after its delay
//! and they race (its docs advise jitter against the thundering herd) — no committed,
//! first-come reservation of a future start that a deadline can refuse up front. `check_n`
//! rejects an `n` above the burst size outright (`InsufficientCapacity`), where a large token
//! estimate must still be admitted; its quota is fixed when the limiter is built, so there is no
//! pause and no halved rate recovering over time. The whole rule
//! fits in this file.

use std::time::{Duration, Instant};

use crate::resource_limits::ResourceLimits;

/// The lowest factor repeated rate-limited answers can bring a resource's rates to.
pub(crate) const MIN_FACTOR: f64 = 1.0 / 64.0;

/// How long the rates take to recover from a halving, after the pause.
pub(crate) const RECOVERY: Duration = Duration::from_secs(60);

const RECOVERY_SECS: f64 = RECOVERY.as_secs_f64();

/// What [`Limiter::admit`] decided.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Decision {
    /// The call may start at `start`; `shift` is the pause total at admission (see
    /// [`Limiter::confirm`]).
    Start {
        /// When the call may start.
        start: Instant,
        /// [`Limiter::shift`] when it was admitted.
        shift: Duration,
    },
    /// `max_in_flight` calls are admitted and not finished (and the deadline is still ahead).
    Full,
    /// The earliest start is after the deadline (or no slot is free and the deadline has come);
    /// nothing was reserved.
    TooLate,
}

/// A resource's limits and the state of its buckets and pause.
#[derive(Clone, Debug)]
pub(crate) struct Limiter {
    limits: ResourceLimits,
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    /// The rate factor after a rate-limited answer; `None`: the configured rates.
    adapt: Option<Adapt>,
    /// Until when every caller pauses (the latest rate-limited answer's wait).
    paused_until: Option<Instant>,
    /// How much all pauses together moved reservations later: a permit made when it was `s`
    /// starts `shift - s` later than reserved.
    shift: Duration,
    /// The latest start handed out (no later caller starts before it).
    last_start: Option<Instant>,
    /// When the factor was last halved.
    halved_at: Option<Instant>,
}

/// The factor after a halving: `floor` until `from` (the end of the pause), then rising linearly
/// to 1 over [`RECOVERY`].
#[derive(Clone, Copy, Debug)]
struct Adapt {
    floor: f64,
    from: Instant,
}

impl Adapt {
    /// The factor at `at`.
    fn factor(&self, at: Instant) -> f64 {
        let x = signed_secs(at, self.from);
        if x <= 0.0 {
            self.floor
        } else if x >= RECOVERY_SECS {
            1.0
        } else {
            self.floor + (1.0 - self.floor) * x / RECOVERY_SECS
        }
    }

    /// The integral of the factor from `from` to `from + x` seconds (negative `x`: minus the
    /// integral back to it).
    fn integral(&self, x: f64) -> f64 {
        let f0 = self.floor;
        if x <= 0.0 {
            f0 * x
        } else if x < RECOVERY_SECS {
            f0 * x + (1.0 - f0) * x * x / (2.0 * RECOVERY_SECS)
        } else {
            f0 * RECOVERY_SECS + (1.0 - f0) * RECOVERY_SECS / 2.0 + (x - RECOVERY_SECS)
        }
    }

    /// The `x` whose [`integral`](Adapt::integral) is `y` (the integral is increasing).
    fn inverse(&self, y: f64) -> f64 {
        let f0 = self.floor;
        let ramp_end = self.integral(RECOVERY_SECS);
        if y <= 0.0 {
            y / f0
        } else if y < ramp_end {
            // (1 - f0) / 120 · x² + f0 · x = y
            let a = (1.0 - f0) / (2.0 * RECOVERY_SECS);
            if a <= f64::EPSILON {
                y / f0
            } else {
                (-f0 + (f0 * f0 + 4.0 * a * y).sqrt()) / (2.0 * a)
            }
        } else {
            RECOVERY_SECS + (y - ramp_end)
        }
    }
}

/// A continuously refilling bucket whose level may go below zero (reservations ahead).
#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// The configured limit, per minute.
    per_minute: f64,
    /// Units available at `at`.
    level: f64,
    /// When `level` was computed: now, the latest start reserved, or the end of a pause (the
    /// last two may be in the future; the bucket does not refill before then).
    at: Instant,
}

impl Bucket {
    fn full(per_minute: f64, now: Instant) -> Bucket {
        Bucket {
            per_minute,
            level: capacity(per_minute, 1.0),
            at: now,
        }
    }

    /// Units per second at factor 1.
    fn rate(&self) -> f64 {
        self.per_minute / 60.0
    }

    /// Brings the level to `now` (nothing if the bucket is paused past `now`).
    fn refill(&mut self, now: Instant, adapt: Option<&Adapt>) {
        if now <= self.at {
            return;
        }
        let (gained, factor) = match adapt {
            None => (self.rate() * (now - self.at).as_secs_f64(), 1.0),
            Some(adapt) => {
                let integral = adapt.integral(signed_secs(now, adapt.from))
                    - adapt.integral(signed_secs(self.at, adapt.from));
                (self.rate() * integral, adapt.factor(now))
            }
        };
        self.level = (self.level + gained).min(capacity(self.per_minute, factor));
        self.at = now;
    }

    /// The earliest instant (at or after `now`, refilled to `now`) when `units` may be taken:
    /// when the level reaches `units`, or the capacity for more than it holds.
    fn earliest(&self, units: f64, now: Instant, adapt: Option<&Adapt>) -> Instant {
        let t0 = now.max(self.at);
        let factor = adapt.map_or(1.0, |a| a.factor(t0));
        let need = units.min(capacity(self.per_minute, factor));
        let deficit = need - self.level;
        if deficit <= 0.0 {
            return t0;
        }
        let rate = self.rate();
        if rate.is_nan() || rate <= 0.0 {
            return far_future(t0);
        }
        match adapt {
            None => add_secs(t0, deficit / rate),
            Some(adapt) => {
                let y = adapt.integral(signed_secs(t0, adapt.from)) + deficit / rate;
                let at = from_signed_secs(adapt.from, adapt.inverse(y));
                at.max(t0)
            }
        }
    }

    /// Rescales to a new limit: the level keeps its fraction of the capacity.
    fn rescale(&mut self, per_minute: f64, now: Instant, adapt: Option<&Adapt>) {
        self.refill(now, adapt);
        let factor = adapt.map_or(1.0, |a| a.factor(now));
        let old = capacity(self.per_minute, factor);
        let new = capacity(per_minute, factor);
        self.level = (self.level * new / old).min(new);
        self.per_minute = per_minute;
    }
}

/// How much of one second's worth of a limit a bucket holds. A request reaches the provider a
/// little after it starts here; while the provider's bucket is full, the refill of that delay is
/// lost to it but not to a client bucket charged at the start, so a full-sized client bucket
/// runs ahead of the provider's by the delay's refill, for good (measured: 28 tokens of a
/// 10 000-token-a-second limit, about 3 ms, and a 429 that halved the rates). Holding 5 % less
/// absorbs delays up to 50 ms; the rate is unchanged.
#[cfg(not(test))]
pub(crate) const BURST: f64 = 0.95;

/// The unit tests below drive the buckets' arithmetic in whole seconds' worth.
#[cfg(test)]
pub(crate) const BURST: f64 = 1.0;

/// [`BURST`] of one second's worth of a per-minute limit at `factor`, at least one unit.
fn capacity(per_minute: f64, factor: f64) -> f64 {
    (per_minute / 60.0 * factor * BURST).max(1.0)
}

/// `at - origin` in seconds, negative when `at` is earlier.
fn signed_secs(at: Instant, origin: Instant) -> f64 {
    if at >= origin {
        (at - origin).as_secs_f64()
    } else {
        -(origin - at).as_secs_f64()
    }
}

fn from_signed_secs(origin: Instant, secs: f64) -> Instant {
    if secs >= 0.0 {
        add_secs(origin, secs)
    } else {
        Duration::try_from_secs_f64(-secs)
            .ok()
            .and_then(|d| origin.checked_sub(d))
            .unwrap_or(origin)
    }
}

/// `at + secs`, saturating far in the future for absurd values.
fn add_secs(at: Instant, secs: f64) -> Instant {
    Duration::try_from_secs_f64(secs)
        .ok()
        .and_then(|d| at.checked_add(d))
        .unwrap_or_else(|| far_future(at))
}

/// An instant no deadline reaches: about a century after `at`.
fn far_future(at: Instant) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    at.checked_add(CENTURY).unwrap_or(at)
}

impl Limiter {
    /// A limiter with `limits` (checked by the caller), its buckets full at `now`.
    pub(crate) fn new(limits: ResourceLimits, now: Instant) -> Limiter {
        Limiter {
            limits,
            requests: limits.requests_per_minute.map(|v| Bucket::full(v, now)),
            tokens: limits.tokens_per_minute.map(|v| Bucket::full(v, now)),
            adapt: None,
            paused_until: None,
            shift: Duration::ZERO,
            last_start: None,
            halved_at: None,
        }
    }

    /// The limits in force.
    pub(crate) fn limits(&self) -> ResourceLimits {
        self.limits
    }

    /// Whether admission can ever hold a call back: some limit is set, or a pause was asked for.
    pub(crate) fn restricts(&self) -> bool {
        self.limits != ResourceLimits::new() || self.paused_until.is_some()
    }

    /// The factor the configured rates are multiplied by at `now` (1: the configured rates).
    pub(crate) fn factor(&self, now: Instant) -> f64 {
        self.adapt.map_or(1.0, |a| a.factor(now))
    }

    /// Until when callers pause, if that is after `now`.
    pub(crate) fn paused_until(&self, now: Instant) -> Option<Instant> {
        self.paused_until.filter(|at| *at > now)
    }

    /// How much pauses have moved reservations later so far.
    pub(crate) fn shift(&self) -> Duration {
        self.shift
    }

    /// Merges `limits` (its fields that are set replace the current ones) at `now`.
    pub(crate) fn merge(&mut self, limits: &ResourceLimits, now: Instant) {
        let adapt = self.adapt;
        if let Some(v) = limits.requests_per_minute {
            self.limits.requests_per_minute = Some(v);
            match &mut self.requests {
                Some(bucket) => bucket.rescale(v, now, adapt.as_ref()),
                None => self.requests = Some(Bucket::full(v, now)),
            }
        }
        if let Some(v) = limits.tokens_per_minute {
            self.limits.tokens_per_minute = Some(v);
            match &mut self.tokens {
                Some(bucket) => bucket.rescale(v, now, adapt.as_ref()),
                None => self.tokens = Some(Bucket::full(v, now)),
            }
        }
        if let Some(v) = limits.max_in_flight {
            self.limits.max_in_flight = Some(v);
        }
        // The breaker's limits are kept here too (the registry's breaker follows them).
        if let Some(v) = limits.open_after_failures {
            self.limits.open_after_failures = Some(v);
        }
        if let Some(v) = limits.cooldown_seconds {
            self.limits.cooldown_seconds = Some(v);
        }
    }

    /// Decides the admission of one call estimated at `tokens`, with `in_flight` calls admitted
    /// and not finished, at `now`, for a call that must start by `deadline`. On
    /// [`Decision::Start`] the reservation is made; otherwise nothing changes (but the buckets'
    /// refill to `now`).
    pub(crate) fn admit(
        &mut self,
        tokens: u64,
        in_flight: usize,
        now: Instant,
        deadline: Option<Instant>,
    ) -> Decision {
        if self
            .limits
            .max_in_flight
            .is_some_and(|max| in_flight >= max)
        {
            // No slot, and no time left to wait for one.
            if deadline.is_some_and(|at| at <= now) {
                return Decision::TooLate;
            }
            return Decision::Full;
        }
        let adapt = self.adapt;
        let adapt = adapt.as_ref();
        let mut start = now;
        if let Some(until) = self.paused_until {
            start = start.max(until);
        }
        if let Some(last) = self.last_start {
            start = start.max(last);
        }
        if let Some(bucket) = &mut self.requests {
            bucket.refill(now, adapt);
            start = start.max(bucket.earliest(1.0, now, adapt));
        }
        let tokens = tokens as f64;
        if let Some(bucket) = &mut self.tokens {
            bucket.refill(now, adapt);
            start = start.max(bucket.earliest(tokens, now, adapt));
        }
        if deadline.is_some_and(|at| start > at) {
            return Decision::TooLate;
        }
        // Taken at the start, not now: a bucket that refills meanwhile still holds no more
        // than its capacity then (starts only move forward, so the buckets' clocks do too).
        if let Some(bucket) = &mut self.requests {
            bucket.refill(start, adapt);
            bucket.level -= 1.0;
        }
        if let Some(bucket) = &mut self.tokens {
            bucket.refill(start, adapt);
            bucket.level -= tokens;
        }
        if start > now {
            self.last_start = Some(start);
        }
        Decision::Start {
            start,
            shift: self.shift,
        }
    }

    /// At `now`, for a call admitted to start at `start` when the pause total was `shift`: the
    /// instant it must still wait for (pauses begun since moved it later), or `None` to start.
    pub(crate) fn confirm(&self, start: Instant, shift: Duration, now: Instant) -> Option<Instant> {
        let moved = self.shift.saturating_sub(shift);
        let mut at = start.checked_add(moved).unwrap_or(start);
        // Moved, or still paused: not before the pause's end either.
        if let Some(until) = self
            .paused_until
            .filter(|until| moved > Duration::ZERO || *until > now)
        {
            at = at.max(until);
        }
        (at > now).then_some(at)
    }

    /// A call that started at `started` was answered "rate limited, retry after `wait`" at
    /// `now`: every caller pauses until `now + wait`, and (unless the call started before the
    /// last halving) the rates are halved.
    pub(crate) fn rate_limited(&mut self, started: Instant, wait: Duration, now: Instant) {
        let adapt = self.adapt;
        for bucket in [&mut self.requests, &mut self.tokens].into_iter().flatten() {
            bucket.refill(now, adapt.as_ref());
        }
        let until = now.checked_add(wait).unwrap_or(now);
        let paused_to = self.paused_until.map_or(now, |at| at.max(now));
        if until > paused_to {
            let extension = until - paused_to;
            self.shift += extension;
            self.paused_until = Some(until);
            for bucket in [&mut self.requests, &mut self.tokens].into_iter().flatten() {
                bucket.at = bucket.at.max(now) + extension;
            }
            if let Some(last) = self.last_start.filter(|at| *at > now) {
                self.last_start = Some(last + extension);
            }
            // A recovery that has not begun begins after the longer pause.
            if let Some(adapt) = self.adapt.as_mut().filter(|a| a.from >= now) {
                adapt.from = adapt.from.max(until);
            }
        }
        let stale = self.halved_at.is_some_and(|at| started < at);
        if stale {
            return;
        }
        let floor = (self.factor(now) / 2.0).max(MIN_FACTOR);
        let from = self.paused_until.map_or(now, |at| at.max(now));
        let adapt = Adapt { floor, from };
        self.adapt = Some(adapt);
        self.halved_at = Some(now);
        for bucket in [&mut self.requests, &mut self.tokens].into_iter().flatten() {
            bucket.level = bucket.level.min(capacity(bucket.per_minute, floor));
        }
    }

    /// A call admitted with an estimate of `estimate` tokens ended having used `actual`, at
    /// `now`: the token bucket is charged what it used beyond its estimate (nothing comes back
    /// for less; see the module docs).
    pub(crate) fn settle(&mut self, estimate: u64, actual: u64, now: Instant) {
        let over = actual.saturating_sub(estimate);
        if over == 0 {
            return;
        }
        let adapt = self.adapt;
        if let Some(bucket) = &mut self.tokens {
            bucket.refill(now, adapt.as_ref());
            let factor = adapt.map_or(1.0, |a| a.factor(now.max(bucket.at)));
            let level = bucket.level - over as f64;
            bucket.level = level.min(capacity(bucket.per_minute, factor));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn limits(rpm: Option<f64>, tpm: Option<f64>, max: Option<usize>) -> ResourceLimits {
        let mut limits = ResourceLimits::new();
        if let Some(v) = rpm {
            limits = limits.requests_per_minute(v);
        }
        if let Some(v) = tpm {
            limits = limits.tokens_per_minute(v);
        }
        if let Some(v) = max {
            limits = limits.max_in_flight(v);
        }
        limits
    }

    /// The start of an admitted call (panics otherwise: a test's expectation).
    #[track_caller]
    fn start(decision: Decision) -> Instant {
        match decision {
            Decision::Start { start, .. } => start,
            other => panic!("expected a start, got {other:?}"),
        }
    }

    /// `a` and `b` within a microsecond (the limiter computes in floating-point seconds).
    #[track_caller]
    fn near(a: Instant, b: Instant) {
        let gap = if a > b { a - b } else { b - a };
        assert!(gap < Duration::from_micros(1), "{a:?} vs {b:?}");
    }

    #[test]
    fn an_unlimited_resource_admits_at_once() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(ResourceLimits::new(), t0);
        assert!(!limiter.restricts());
        for i in 0..1_000 {
            assert_eq!(
                limiter.admit(1_000_000, i, t0, Some(t0)),
                Decision::Start {
                    start: t0,
                    shift: Duration::ZERO
                }
            );
        }
    }

    #[test]
    fn requests_burst_one_seconds_worth_then_spread_at_the_rate() {
        let t0 = Instant::now();
        // 600 per minute: 10 per second, a capacity of 10.
        let mut limiter = Limiter::new(limits(Some(600.0), None, None), t0);
        for _ in 0..10 {
            assert_eq!(start(limiter.admit(0, 0, t0, None)), t0);
        }
        // Then one every 100 ms, committed in order.
        for i in 1..=5 {
            near(
                start(limiter.admit(0, 0, t0, None)),
                t0 + secs(0.1 * i as f64),
            );
        }
        // A second after, the reservations are repaid and 5 slots refilled.
        let t1 = t0 + secs(1.0);
        for _ in 0..5 {
            assert_eq!(start(limiter.admit(0, 0, t1, None)), t1);
        }
        near(start(limiter.admit(0, 0, t1, None)), t1 + secs(0.1));
    }

    #[test]
    fn a_small_limit_still_admits_one_request() {
        let t0 = Instant::now();
        // 30 per minute: half a request per second, a capacity of one.
        let mut limiter = Limiter::new(limits(Some(30.0), None, None), t0);
        assert_eq!(start(limiter.admit(0, 0, t0, None)), t0);
        near(start(limiter.admit(0, 0, t0, None)), t0 + secs(2.0));
        near(start(limiter.admit(0, 0, t0, None)), t0 + secs(4.0));
    }

    /// Any window of `t` seconds holds at most `limit × t / 60 + limit / 60` starts (and
    /// tokens), whatever the arrivals.
    #[test]
    fn starts_in_any_window_stay_within_the_limit() {
        let t0 = Instant::now();
        let (rpm, tpm) = (120.0, 6_000.0);
        let mut limiter = Limiter::new(limits(Some(rpm), Some(tpm), None), t0);
        let mut starts: Vec<(Instant, u64)> = Vec::new();
        // Arrivals in bursts with gaps, estimates of varying size (some over the 100-token
        // capacity), a made-up but deterministic sequence.
        let mut arrival = t0;
        let mut seed = 7_u64;
        for _ in 0..400 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let gap_ms = (seed >> 33) % 700;
            arrival += Duration::from_millis(if gap_ms < 500 { 0 } else { gap_ms });
            let tokens = (seed >> 20) % 150;
            starts.push((start(limiter.admit(tokens, 0, arrival, None)), tokens));
        }
        starts.sort_by_key(|(at, _)| *at);
        for i in 0..starts.len() {
            for j in i..starts.len() {
                let t = (starts[j].0 - starts[i].0).as_secs_f64();
                let count = (j - i + 1) as f64;
                assert!(
                    count <= rpm * t / 60.0 + rpm / 60.0 + 1e-6,
                    "{count} starts in {t} s"
                );
                // Tokens: the window's estimates, less the last one (a call over the capacity
                // may take the bucket into debt; every earlier one was within the bound).
                let tokens: u64 = starts[i..j].iter().map(|(_, n)| n).sum();
                assert!(
                    tokens as f64 <= tpm * t / 60.0 + tpm / 60.0 + 1e-6,
                    "{tokens} tokens in {t} s"
                );
            }
        }
    }

    #[test]
    fn tokens_are_reserved_and_a_call_over_the_capacity_leaves_a_debt() {
        let t0 = Instant::now();
        // 6000 tokens per minute: 100 per second, a capacity of 100.
        let mut limiter = Limiter::new(limits(None, Some(6_000.0), None), t0);
        assert_eq!(start(limiter.admit(60, 0, t0, None)), t0);
        // 40 left: 50 more are 100 ms away.
        near(start(limiter.admit(50, 0, t0, None)), t0 + secs(0.1));
        // The bucket is now at -10; a 250-token call waits for it to be full (110 more,
        // 1.1 s), then leaves it at -150.
        near(start(limiter.admit(250, 0, t0, None)), t0 + secs(1.1));
        // The next call, even of zero tokens, waits for the debt: 1.5 s after that.
        near(start(limiter.admit(0, 0, t0, None)), t0 + secs(2.6));
    }

    #[test]
    fn a_start_after_the_deadline_is_refused_and_reserves_nothing() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(limits(Some(60.0), None, None), t0);
        assert_eq!(start(limiter.admit(0, 0, t0, Some(t0))), t0);
        // The next slot is 1 s away.
        let soon = Some(t0 + secs(0.5));
        assert_eq!(limiter.admit(0, 0, t0, soon), Decision::TooLate);
        assert_eq!(limiter.admit(0, 0, t0, soon), Decision::TooLate);
        // The refusals took nothing: the next caller still gets the slot 1 s away.
        near(start(limiter.admit(0, 0, t0, None)), t0 + secs(1.0));
        // A deadline exactly at the start is met.
        let t = start(limiter.admit(0, 0, t0, Some(t0 + secs(2.0))));
        near(t, t0 + secs(2.0));
    }

    #[test]
    fn reservations_are_first_come_first_served() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(limits(Some(60.0), Some(600.0), None), t0);
        let mut previous = t0;
        for i in 0..50 {
            // Mixed estimates, arriving a little apart: each start is no earlier than the last.
            let now = t0 + Duration::from_millis(i * 30);
            let at = start(limiter.admit((i % 7) * 20, 0, now, None));
            assert!(at >= previous);
            previous = at;
        }
    }

    #[test]
    fn max_in_flight_refuses_when_full() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(limits(None, None, Some(2)), t0);
        assert_eq!(start(limiter.admit(0, 0, t0, None)), t0);
        assert_eq!(start(limiter.admit(0, 1, t0, None)), t0);
        assert_eq!(limiter.admit(0, 2, t0, None), Decision::Full);
        assert_eq!(
            limiter.admit(0, 5, t0, Some(t0 + secs(1.0))),
            Decision::Full
        );
        // Full with the deadline come: no time left to wait for a slot.
        assert_eq!(limiter.admit(0, 2, t0, Some(t0)), Decision::TooLate);
    }

    #[test]
    fn a_rate_limited_answer_pauses_everyone_and_halves_the_rate() {
        let t0 = Instant::now();
        // 60 per minute: 1 per second, capacity 1.
        let mut limiter = Limiter::new(limits(Some(60.0), None, None), t0);
        assert_eq!(start(limiter.admit(0, 0, t0, None)), t0);
        let reserved = start(limiter.admit(0, 0, t0, None));
        near(reserved, t0 + secs(1.0));
        let shift = limiter.shift();
        // At 0.5 s, the first call is told to wait 2 s.
        let t1 = t0 + secs(0.5);
        limiter.rate_limited(t0, secs(2.0), t1);
        let until = t1 + secs(2.0);
        assert_eq!(limiter.paused_until(t1), Some(until));
        assert_eq!(limiter.factor(t1), 0.5);
        // The reserved call moves later by the pause (2 s, to 3 s).
        near(
            limiter.confirm(reserved, shift, reserved).unwrap_or(t0),
            t0 + secs(3.0),
        );
        assert_eq!(limiter.confirm(reserved, shift, t0 + secs(3.0)), None);
        // A new call during the pause starts after the moved one (whose start, 3 s, emptied the
        // bucket, which did not refill during the pause), one request later at the halved rate
        // rising from 0.5/s at the pause's end (2.5 s): ∫ f = 0.5 x + x² / 240 over x seconds.
        let integral = |x: f64| 0.5 * x + x * x / 240.0;
        let y = integral(0.5) + 1.0;
        let x = (-0.5 + (0.25_f64 + 4.0 / 240.0 * y).sqrt()) / (2.0 / 240.0);
        near(start(limiter.admit(0, 0, t1, None)), until + secs(x));
        // A deadline before the pause's end is refused.
        assert_eq!(
            limiter.admit(0, 0, t1, Some(t1 + secs(1.0))),
            Decision::TooLate
        );
    }

    #[test]
    fn the_rate_recovers_linearly_over_a_minute_and_halves_again() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(limits(Some(600.0), None, None), t0);
        limiter.rate_limited(t0, secs(1.0), t0);
        let from = t0 + secs(1.0);
        assert_eq!(limiter.factor(from), 0.5);
        assert!((limiter.factor(from + secs(30.0)) - 0.75).abs() < 1e-9);
        assert_eq!(limiter.factor(from + RECOVERY), 1.0);
        assert_eq!(limiter.factor(from + secs(600.0)), 1.0);
        // A call started after the halving, answered 429 at 30 s into the recovery: the
        // current factor (0.75) halves.
        let t1 = from + secs(30.0);
        limiter.rate_limited(t1, secs(1.0), t1);
        assert!((limiter.factor(t1) - 0.375).abs() < 1e-9);
        // Repeated answers stop at the floor.
        let mut now = t1;
        for _ in 0..20 {
            now += Duration::from_millis(1);
            limiter.rate_limited(now, secs(1.0), now);
        }
        assert_eq!(limiter.factor(now), MIN_FACTOR);
    }

    #[test]
    fn a_burst_of_rate_limited_answers_from_calls_in_flight_halves_once() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(limits(Some(600.0), None, None), t0);
        let t1 = t0 + secs(0.2);
        // Ten calls started at t0, all answered 429 at about t1.
        for i in 0..10 {
            limiter.rate_limited(t0, secs(1.0), t1 + Duration::from_millis(i));
        }
        assert_eq!(limiter.factor(t1), 0.5);
        // Their pauses extend the pause to the last one's end.
        assert_eq!(
            limiter.paused_until(t1),
            Some(t1 + Duration::from_millis(9) + secs(1.0))
        );
    }

    #[test]
    fn during_recovery_admission_follows_the_rising_rate() {
        let t0 = Instant::now();
        // 60 per minute, halved at t0 with no pause: the factor is 0.5 at t0 and 1 at t0 + 60 s.
        let mut limiter = Limiter::new(limits(Some(60.0), None, None), t0);
        limiter.rate_limited(t0, Duration::ZERO, t0);
        assert_eq!(start(limiter.admit(0, 0, t0, None)), t0);
        // The next whole request needs ∫ f = 1 from t0: 0.5 x + x² / 240 = 1, x ≈ 1.9846 s.
        let expected = (-0.5 + (0.25_f64 + 4.0 / 240.0).sqrt()) / (2.0 / 240.0);
        near(start(limiter.admit(0, 0, t0, None)), t0 + secs(expected));
        // Long after the recovery, the full rate again (the bucket holds one, it is full).
        let later = t0 + secs(120.0);
        assert_eq!(start(limiter.admit(0, 0, later, None)), later);
        near(start(limiter.admit(0, 0, later, None)), later + secs(1.0));
    }

    #[test]
    fn settling_charges_an_overrun_and_refunds_nothing() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(limits(None, Some(6_000.0), None), t0);
        assert_eq!(start(limiter.admit(100, 0, t0, None)), t0);
        // Used only 30 of the 100 reserved: nothing comes back (the provider keeps counting
        // the 100), so the next 10 wait for the refill.
        limiter.settle(100, 30, t0);
        near(start(limiter.admit(10, 0, t0, None)), t0 + secs(0.1));
        // A call that used 200 more than estimated puts the bucket 2 s further in debt.
        limiter.settle(0, 200, t0);
        near(start(limiter.admit(0, 0, t0, None)), t0 + secs(2.1));
    }

    #[test]
    fn merging_limits_keeps_the_others_and_rescales_the_buckets() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(limits(Some(600.0), None, Some(4)), t0);
        // Half the 10-request capacity used.
        for _ in 0..5 {
            limiter.admit(0, 0, t0, None);
        }
        limiter.merge(&limits(Some(1_200.0), Some(60_000.0), None), t0);
        assert_eq!(
            limiter.limits(),
            limits(Some(1_200.0), Some(60_000.0), Some(4))
        );
        // Still half full: 10 of the new 20 start at once, then one every 50 ms. The first
        // takes all of the new token bucket, which starts full (1000 tokens).
        assert_eq!(start(limiter.admit(1_000, 0, t0, None)), t0);
        for _ in 0..9 {
            assert_eq!(start(limiter.admit(0, 0, t0, None)), t0);
        }
        near(start(limiter.admit(0, 0, t0, None)), t0 + secs(0.05));
        assert_eq!(limiter.admit(0, 4, t0, None), Decision::Full);
        limiter.merge(&limits(None, None, Some(8)), t0);
        assert!(matches!(
            limiter.admit(0, 4, t0, None),
            Decision::Start { .. }
        ));
        // Lowering a limit scales a debt too: the wait in seconds stays about the same.
        limiter.merge(&limits(Some(60.0), None, None), t0);
        let at = start(limiter.admit(0, 0, t0, None));
        assert!(at > t0);
    }
}
