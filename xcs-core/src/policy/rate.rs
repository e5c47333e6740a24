//! `rate_limit`: calls of one operator (by name) start at most `r` per second, process-wide,
//! with no burst — consecutive starts are at least `1/r` apart.
//!
//! Each start is a *reservation*: under one lock, a call takes the next free slot
//! (`max(now, previous slot + 1/r)`) and then waits for it. Reservations are first come, first
//! served, so waiting callers cannot starve each other, and a call checks its slot against its
//! deadline *before* reserving it: a call that could not start in time returns a timeout at once
//! without taking a slot from anyone. (`governor`'s GCRA gives the same spacing, but it has no
//! reservation that can be refused by a deadline, and its async waiting brings its own timer;
//! the whole rule is these few lines.)

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Per operator name: the next free slot, and when the last call really started.
#[derive(Clone, Copy)]
struct Slots {
    next: Instant,
    last_start: Option<Instant>,
}

static SLOTS: Mutex<Option<HashMap<String, Slots>>> = Mutex::new(None);

/// Why a call may not start.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TooLate;

/// Reserves the next start of `operator` under `rate` (calls per second): the instant the call
/// may start, or [`TooLate`] if that is after `deadline` (then nothing is reserved).
pub(crate) fn reserve(
    operator: &str,
    rate: f64,
    deadline: Option<Instant>,
) -> Result<Instant, TooLate> {
    let interval = interval(rate);
    let now = Instant::now();
    let mut slots = SLOTS.lock().unwrap_or_else(PoisonError::into_inner);
    let slots = slots.get_or_insert_with(HashMap::new);
    let (start, next) = take_slot(slots.get(operator).map(|s| s.next), interval, now, deadline)?;
    slots
        .entry(operator.to_owned())
        .and_modify(|s| s.next = next)
        .or_insert(Slots {
            next,
            last_start: None,
        });
    Ok(start)
}

/// The reservation rule on one clock: with `next` the next free slot (if any) and `now` the time,
/// the start a call gets (`max(now, next)`) and the slot after it (`interval` later), or
/// [`TooLate`] if that start is after `deadline` (then the caller takes nothing).
pub(crate) fn take_slot(
    next: Option<Instant>,
    interval: Duration,
    now: Instant,
    deadline: Option<Instant>,
) -> Result<(Instant, Instant), TooLate> {
    let start = next.filter(|at| *at > now).unwrap_or(now);
    if deadline.is_some_and(|at| start > at) {
        return Err(TooLate);
    }
    Ok((start, start.checked_add(interval).unwrap_or(start)))
}

/// Called when a reserved slot has come: records the start, or says how much longer to wait
/// because the previous call started late (a thread or timer woke late), so that the starts
/// themselves — not only the slots — are at least `1/rate` apart.
pub(crate) fn confirm(operator: &str, rate: f64) -> Option<Duration> {
    let interval = interval(rate);
    let now = Instant::now();
    let mut slots = SLOTS.lock().unwrap_or_else(PoisonError::into_inner);
    let slot = slots.get_or_insert_with(HashMap::new).get_mut(operator)?;
    if let Some(earliest) = slot.last_start.and_then(|last| last.checked_add(interval)) {
        if earliest > now {
            return Some(earliest - now);
        }
    }
    slot.last_start = Some(now);
    None
}

/// Sleeps the current thread until `at`, precisely: the OS sleep until shortly before, then
/// yielding until it is time. (A plain sleep wakes up to a millisecond late; every late start
/// would delay the next one by as much, and the rate would drift below `r`.)
pub(crate) fn sleep_until(at: Instant) {
    // A virtual machine's timers overshoot by up to a millisecond or two.
    const SPIN: Duration = Duration::from_millis(2);
    let left = at.saturating_duration_since(Instant::now());
    if left > SPIN {
        std::thread::sleep(left - SPIN);
    }
    while Instant::now() < at {
        std::thread::yield_now();
    }
}

/// `1/rate`, for any finite rate > 0 (options guarantee that); absurdly small rates are capped
/// at one start a year rather than overflowing.
pub(crate) fn interval(rate: f64) -> Duration {
    const YEAR: f64 = 365.0 * 24.0 * 3600.0;
    if rate.is_finite() && rate > 0.0 {
        Duration::from_secs_f64((1.0 / rate).min(YEAR))
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_the_later_of_now_and_the_next_free_one() {
        let now = Instant::now();
        let step = Duration::from_millis(100);
        assert_eq!(take_slot(None, step, now, None), Ok((now, now + step)));
        // A free slot in the past does not hold a call back.
        let past = now.checked_sub(step).unwrap_or(now);
        assert_eq!(
            take_slot(Some(past), step, now, None),
            Ok((now, now + step))
        );
        let later = now + step;
        assert_eq!(
            take_slot(Some(later), step, now, None),
            Ok((later, later + step))
        );
        // Past the deadline: refused.
        assert_eq!(take_slot(Some(later), step, now, Some(now)), Err(TooLate));
        assert_eq!(
            take_slot(Some(later), step, now, Some(later)),
            Ok((later, later + step))
        );
    }

    #[test]
    fn reservations_are_spaced_and_refused_past_the_deadline() {
        let name = "rate_unit_test";
        let a = reserve(name, 10.0, None).unwrap();
        let b = reserve(name, 10.0, None).unwrap();
        assert!(b.duration_since(a) >= Duration::from_millis(100));
        // The next slot is ~200 ms out: a deadline 50 ms away is refused, and takes nothing.
        let soon = Some(Instant::now() + Duration::from_millis(50));
        assert_eq!(reserve(name, 10.0, soon), Err(TooLate));
        let c = reserve(name, 10.0, None).unwrap();
        assert!(c.duration_since(b) >= Duration::from_millis(100));
        assert!(c.duration_since(b) < Duration::from_millis(150));
    }

    #[test]
    fn names_are_independent() {
        let a = reserve("rate_unit_a", 1.0, None).unwrap();
        let b = reserve("rate_unit_b", 1.0, None).unwrap();
        assert!(b.duration_since(a) < Duration::from_millis(500));
    }
}
