//! The circuit breaker of one resource, on an explicit clock: when a call is refused at once,
//! what each call's outcome does to the circuit. No locks, no threads, no waiting here:
//! `resource.rs` holds a [`Breaker`] per resource behind a lock, admits through it and reports
//! each attempt's outcome to it, so every rule below is tested by feeding instants.
//!
//! # The rules
//!
//! - **Closed** (the start): every call is admitted. A retryable failure
//!   ([`Report::Failure`]) adds one to the consecutive failures; a success resets them to 0.
//!   When they reach `open_after_failures`, the circuit **opens** until `now + cooldown`.
//! - **Open** until `t`: every call is refused before `t` (the call fails at once with
//!   `CircuitOpen`, its body never runs).
//! - **Half-open**, from `t` on: exactly one call is admitted, the *trial*; the others are
//!   refused while it is in flight. Its success closes the circuit (failures back to 0); any
//!   other outcome (a failure, a permanent error, a panic, a timeout, a rate-limited answer)
//!   opens it again until `now + cooldown`. A trial admitted but never run (its deadline came
//!   while it waited for its start, its future was dropped) gives its place back: the next call
//!   is the trial.
//! - **What counts**: only retryable failures that are not rate-limited answers. A rate-limited
//!   answer is the resource's pause's business (the provider is up and said "slower"), a
//!   permanent error (a bad request) says nothing about the provider's health, a panic is the
//!   body's own fault and a timeout is the caller's deadline: these leave the count as it is
//!   (outside a trial).
//! - **Generations**: each time the circuit opens or a trial is admitted, the generation moves
//!   on. An outcome is counted only if its call was admitted in the current generation, so
//!   calls admitted before the circuit opened, finishing while it is open or half-open, neither
//!   close nor re-open it; only the trial decides.
//!
//! Items sent to a cluster's workers are admitted here too (an open circuit refuses them before
//! they are sent; workers run them without admitting them again), and how each ended is counted
//! here when its result comes back: the caller's breaker decides for the whole cluster.
//!
//! # Invariants
//!
//! - At most one trial is in flight at a time, and only while half-open.
//! - While open (before `t`), nothing is admitted.
//! - The consecutive failures stop counting once the circuit opens (kept for the stats while it
//!   is open), and are 0 after it closes.
//! - Without `open_after_failures` the breaker admits everything and counts nothing.

use std::time::{Duration, Instant};

use crate::error::XcsError;

/// Where the circuit stands, as [`resource_stats`](crate::resource_stats) shows it.
///
/// ```
/// use xcs::{CircuitState, ResourceLimits};
/// xcs::set_resource_limits("breaker-doc", &ResourceLimits::new().open_after_failures(3))?;
/// let stats = xcs::resource_stats("breaker-doc").unwrap();
/// assert_eq!(stats.circuit, CircuitState::Closed);
/// assert_eq!(stats.consecutive_failures, 0);
/// # Ok::<(), xcs::XcsError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CircuitState {
    /// Calls are admitted (also the state of a resource without a breaker).
    #[default]
    Closed,
    /// Calls are refused with [`XcsError::CircuitOpen`] until `until`.
    Open {
        /// When one trial call will be admitted.
        until: Instant,
    },
    /// The cooldown is over: one trial call is admitted, whose success closes the circuit.
    HalfOpen {
        /// Whether the trial call is in flight (then other calls are refused).
        trial_in_flight: bool,
    },
}

/// What a call's attempt ended with, for the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Report {
    /// The body returned its output.
    Success,
    /// The body failed with a retryable error (not a rate-limited answer).
    Failure,
    /// Anything else: a permanent error, a panic, a timeout, a rate-limited answer.
    Other,
}

impl Report {
    /// How the breaker counts `result`.
    pub(crate) fn of<T>(result: &Result<T, XcsError>) -> Report {
        match result {
            Ok(_) => Report::Success,
            Err(error) => Report::of_error(error),
        }
    }

    /// How the breaker counts a failure with `error`.
    pub(crate) fn of_error(error: &XcsError) -> Report {
        if error.is_retryable() && !error.is_rate_limited() {
            Report::Failure
        } else {
            Report::Other
        }
    }
}

/// An admitted call's place in the breaker: the generation it was admitted in, and whether it
/// is the trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket {
    generation: u64,
    trial: bool,
}

#[cfg(test)]
impl Ticket {
    /// Whether this call is the half-open circuit's one trial.
    pub(crate) fn is_trial(&self) -> bool {
        self.trial
    }
}

/// What [`Breaker::admit`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The call may go on (to the limiter): report its outcome with the ticket.
    Admit(Ticket),
    /// The circuit is open: refused. `Some(t)`: a trial is admitted from `t`; `None`: the trial
    /// is in flight.
    Refuse(Option<Instant>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { trial: bool },
}

/// One resource's circuit breaker. See the module docs.
#[derive(Clone, Debug)]
pub(crate) struct Breaker {
    /// `open_after_failures` (`None`: no breaker).
    open_after: Option<u64>,
    cooldown: Duration,
    state: State,
    failures: u64,
    generation: u64,
}

impl Breaker {
    /// A closed breaker that opens after `open_after` consecutive failures (`None`: never) and
    /// stays open for `cooldown`.
    pub(crate) fn new(open_after: Option<usize>, cooldown: Duration) -> Breaker {
        Breaker {
            open_after: open_after.map(|n| n as u64),
            cooldown,
            state: State::Closed,
            failures: 0,
            generation: 0,
        }
    }

    /// Whether the breaker can ever refuse a call.
    pub(crate) fn is_on(&self) -> bool {
        self.open_after.is_some()
    }

    /// New settings; the state is kept (a lower threshold applies from the next failure, a new
    /// cooldown from the next opening).
    pub(crate) fn configure(&mut self, open_after: Option<usize>, cooldown: Duration) {
        self.open_after = open_after.map(|n| n as u64);
        self.cooldown = cooldown;
    }

    /// Decides whether a call may go on at `now`. Never waits.
    pub(crate) fn admit(&mut self, now: Instant) -> Verdict {
        let ticket = |generation, trial| Verdict::Admit(Ticket { generation, trial });
        if !self.is_on() {
            return ticket(self.generation, false);
        }
        match self.state {
            State::Closed => ticket(self.generation, false),
            State::Open { until } if now < until => Verdict::Refuse(Some(until)),
            State::Open { .. } | State::HalfOpen { trial: false } => {
                self.generation += 1;
                self.state = State::HalfOpen { trial: true };
                ticket(self.generation, true)
            }
            State::HalfOpen { trial: true } => Verdict::Refuse(None),
        }
    }

    /// Whether a call would be refused at `now` (as [`admit`](Breaker::admit) would, without
    /// taking the trial): `Some(until)` if so.
    pub(crate) fn refuses(&self, now: Instant) -> Option<Option<Instant>> {
        match self.state {
            State::Open { until } if self.is_on() && now < until => Some(Some(until)),
            State::HalfOpen { trial: true } if self.is_on() => Some(None),
            _ => None,
        }
    }

    /// The call admitted with `ticket` ended with `report` at `now`.
    pub(crate) fn report(&mut self, ticket: Ticket, report: Report, now: Instant) {
        let Some(open_after) = self.open_after else {
            return;
        };
        if ticket.generation != self.generation {
            // Admitted before the circuit last opened (or before the trial): it decides nothing.
            return;
        }
        match (self.state, ticket.trial) {
            (State::HalfOpen { trial: true }, true) => match report {
                Report::Success => self.close(),
                Report::Failure | Report::Other => self.open(now),
            },
            (State::Closed, false) => match report {
                Report::Success => self.failures = 0,
                Report::Failure => {
                    self.failures += 1;
                    if self.failures >= open_after {
                        self.open(now);
                    }
                }
                Report::Other => {}
            },
            _ => {}
        }
    }

    /// The call admitted with `ticket` never ran: a trial gives its place back.
    pub(crate) fn release(&mut self, ticket: Ticket) {
        if ticket.trial
            && ticket.generation == self.generation
            && self.state == (State::HalfOpen { trial: true })
        {
            self.state = State::HalfOpen { trial: false };
        }
    }

    /// Where the circuit stands at `now`.
    pub(crate) fn state(&self, now: Instant) -> CircuitState {
        match self.state {
            State::Closed => CircuitState::Closed,
            State::Open { until } if now < until => CircuitState::Open { until },
            State::Open { .. } => CircuitState::HalfOpen {
                trial_in_flight: false,
            },
            State::HalfOpen { trial } => CircuitState::HalfOpen {
                trial_in_flight: trial,
            },
        }
    }

    /// The consecutive retryable failures counted so far (kept while open).
    pub(crate) fn failures(&self) -> u64 {
        self.failures
    }

    fn open(&mut self, now: Instant) {
        self.generation += 1;
        let until = now.checked_add(self.cooldown).unwrap_or(now);
        self.state = State::Open { until };
    }

    fn close(&mut self) {
        self.generation += 1;
        self.failures = 0;
        self.state = State::Closed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(30);

    #[track_caller]
    fn admitted(verdict: Verdict) -> Ticket {
        match verdict {
            Verdict::Admit(ticket) => ticket,
            other => panic!("expected admission, got {other:?}"),
        }
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn without_a_threshold_everything_passes_and_nothing_counts() {
        let mut b = Breaker::new(None, COOLDOWN);
        let t0 = Instant::now();
        for _ in 0..100 {
            let t = admitted(b.admit(t0));
            assert!(!t.is_trial());
            b.report(t, Report::Failure, t0);
        }
        assert_eq!((b.state(t0), b.failures()), (CircuitState::Closed, 0));
        assert!(!b.is_on());
    }

    #[test]
    fn consecutive_failures_open_the_circuit_until_the_cooldown_ends() {
        let mut b = Breaker::new(Some(3), COOLDOWN);
        let t0 = Instant::now();
        for _ in 0..2 {
            let t = admitted(b.admit(t0));
            b.report(t, Report::Failure, t0);
        }
        // A success resets the count: two more failures do not open it.
        let t = admitted(b.admit(t0));
        b.report(t, Report::Success, t0);
        assert_eq!(b.failures(), 0);
        for _ in 0..2 {
            let t = admitted(b.admit(t0));
            b.report(t, Report::Failure, t0);
        }
        assert_eq!((b.state(t0), b.failures()), (CircuitState::Closed, 2));
        // Other outcomes leave the count alone.
        let t = admitted(b.admit(t0));
        b.report(t, Report::Other, t0);
        assert_eq!(b.failures(), 2);
        // The third consecutive failure opens it.
        let t1 = secs(t0, 1);
        let t = admitted(b.admit(t1));
        b.report(t, Report::Failure, t1);
        let until = t1 + COOLDOWN;
        assert_eq!(b.state(t1), CircuitState::Open { until });
        assert_eq!(b.failures(), 3);
        assert_eq!(b.refuses(t1), Some(Some(until)));
        assert_eq!(b.admit(t1), Verdict::Refuse(Some(until)));
        assert_eq!(
            b.admit(until - Duration::from_nanos(1)),
            Verdict::Refuse(Some(until))
        );
        // At `until`, it is half-open.
        assert_eq!(
            b.state(until),
            CircuitState::HalfOpen {
                trial_in_flight: false
            }
        );
    }

    #[test]
    fn half_open_admits_exactly_one_trial_whose_success_closes() {
        let mut b = Breaker::new(Some(1), COOLDOWN);
        let t0 = Instant::now();
        let t = admitted(b.admit(t0));
        b.report(t, Report::Failure, t0);
        let until = t0 + COOLDOWN;
        let trial = admitted(b.admit(until));
        assert!(trial.is_trial());
        // Everyone else is refused while the trial is in flight, however long it takes.
        for s in [0, 1, 1000] {
            assert_eq!(b.admit(secs(until, s)), Verdict::Refuse(None));
        }
        assert_eq!(
            b.state(until),
            CircuitState::HalfOpen {
                trial_in_flight: true
            }
        );
        b.report(trial, Report::Success, secs(until, 2));
        assert_eq!((b.state(until), b.failures()), (CircuitState::Closed, 0));
        let t = admitted(b.admit(secs(until, 2)));
        assert!(!t.is_trial());
    }

    #[test]
    fn a_trial_that_does_not_succeed_opens_again() {
        for report in [Report::Failure, Report::Other] {
            let mut b = Breaker::new(Some(2), COOLDOWN);
            let t0 = Instant::now();
            for _ in 0..2 {
                let t = admitted(b.admit(t0));
                b.report(t, Report::Failure, t0);
            }
            let half = t0 + COOLDOWN;
            let trial = admitted(b.admit(half));
            let ended = secs(half, 5);
            b.report(trial, report, ended);
            assert_eq!(
                b.state(ended),
                CircuitState::Open {
                    until: ended + COOLDOWN
                },
                "{report:?}"
            );
            assert_eq!(b.admit(ended), Verdict::Refuse(Some(ended + COOLDOWN)));
        }
    }

    #[test]
    fn a_trial_that_never_ran_gives_its_place_back() {
        let mut b = Breaker::new(Some(1), COOLDOWN);
        let t0 = Instant::now();
        let t = admitted(b.admit(t0));
        b.report(t, Report::Failure, t0);
        let half = t0 + COOLDOWN;
        let trial = admitted(b.admit(half));
        b.release(trial);
        assert_eq!(
            b.state(half),
            CircuitState::HalfOpen {
                trial_in_flight: false
            }
        );
        // The next call is the trial; releasing a stale ticket again changes nothing.
        let next = admitted(b.admit(half));
        assert!(next.is_trial());
        b.release(trial);
        assert_eq!(b.refuses(half), Some(None));
        assert_eq!(b.admit(half), Verdict::Refuse(None));
        b.report(next, Report::Success, half);
        assert_eq!(b.state(half), CircuitState::Closed);
        // A released ticket of a closed circuit is nothing.
        let t = admitted(b.admit(half));
        b.release(t);
        assert_eq!(b.state(half), CircuitState::Closed);
    }

    #[test]
    fn calls_admitted_before_the_circuit_opened_decide_nothing() {
        let mut b = Breaker::new(Some(2), COOLDOWN);
        let t0 = Instant::now();
        // Four calls in flight at once; two fail and open the circuit.
        let tickets: Vec<_> = (0..4).map(|_| admitted(b.admit(t0))).collect();
        b.report(tickets[0], Report::Failure, t0);
        b.report(tickets[1], Report::Failure, t0);
        let until = t0 + COOLDOWN;
        // A late success and a late failure of the same generation: the circuit stays open.
        b.report(tickets[2], Report::Success, secs(t0, 1));
        b.report(tickets[3], Report::Failure, secs(t0, 2));
        assert_eq!(b.state(secs(t0, 2)), CircuitState::Open { until });
        assert_eq!(b.failures(), 2);
        // Neither do they during the trial.
        let trial = admitted(b.admit(until));
        b.report(tickets[2], Report::Success, until);
        assert_eq!(
            b.state(until),
            CircuitState::HalfOpen {
                trial_in_flight: true
            }
        );
        b.report(trial, Report::Success, until);
        assert_eq!(b.state(until), CircuitState::Closed);
    }

    #[test]
    fn outcomes_are_judged_by_their_errors() {
        assert_eq!(Report::of(&Ok::<_, XcsError>(1)), Report::Success);
        let failure: Result<(), _> = Err(XcsError::operator("chat", "503"));
        assert_eq!(Report::of(&failure), Report::Failure);
        for other in [
            XcsError::permanent("chat", "400"),
            XcsError::rate_limited("chat", None),
            XcsError::Timeout {
                operator: "chat".into(),
                index: None,
                timeout: Duration::from_secs(1),
            },
            XcsError::Panicked {
                operator: "chat".into(),
                index: None,
                message: "boom".into(),
            },
        ] {
            assert_eq!(Report::of(&Err::<(), _>(other)), Report::Other);
        }
    }

    #[test]
    fn new_settings_keep_the_state() {
        let mut b = Breaker::new(Some(5), COOLDOWN);
        let t0 = Instant::now();
        for _ in 0..3 {
            let t = admitted(b.admit(t0));
            b.report(t, Report::Failure, t0);
        }
        b.configure(Some(4), Duration::from_secs(1));
        let t = admitted(b.admit(t0));
        b.report(t, Report::Failure, t0);
        assert_eq!(
            b.state(t0),
            CircuitState::Open {
                until: t0 + Duration::from_secs(1)
            }
        );
    }
}
