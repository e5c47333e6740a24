//! Conversions of non-literal macro arguments into option values.
//!
//! `execution_options!(max_workers = n => …)` accepts any value whose type fits (`usize`,
//! `NonZeroUsize`, or an `Option` of either; for timeouts `f64`, `u64`, `Duration` or an `Option`
//! of them). Literals are checked by the macro at compile time; these traits check the rest at
//! run time and panic with a message naming the option, as the macros document under `# Panics`.
//! Untrusted values should go through [`OptionsPatch::from_pairs`](crate::OptionsPatch::from_pairs)
//! instead, which returns errors.

use std::num::NonZeroUsize;
use std::time::Duration;

use crate::options::{DeviceStrategy, Scheduler, timeout_from_secs};

/// A value `max_workers` can be set from.
pub trait IntoMaxWorkers {
    /// The worker count, or `None` for one per CPU. Panics on 0.
    fn into_max_workers(self) -> Option<NonZeroUsize>;
}

impl IntoMaxWorkers for NonZeroUsize {
    fn into_max_workers(self) -> Option<NonZeroUsize> {
        Some(self)
    }
}

impl IntoMaxWorkers for usize {
    #[track_caller]
    fn into_max_workers(self) -> Option<NonZeroUsize> {
        match NonZeroUsize::new(self) {
            Some(n) => Some(n),
            None => panic!("execution option `max_workers` may not be 0"),
        }
    }
}

impl<T: IntoMaxWorkers> IntoMaxWorkers for Option<T> {
    #[track_caller]
    fn into_max_workers(self) -> Option<NonZeroUsize> {
        self.and_then(IntoMaxWorkers::into_max_workers)
    }
}

/// A value `timeout_seconds` can be set from.
pub trait IntoTimeout {
    /// The timeout, or `None` for no deadline. Panics on a value that is not > 0 and finite.
    fn into_timeout(self) -> Option<Duration>;
}

#[track_caller]
fn bad_timeout(shown: &dyn std::fmt::Display) -> ! {
    panic!(
        "execution option `timeout_seconds` must be a finite number of seconds greater than 0, got {shown}"
    )
}

impl IntoTimeout for f64 {
    #[track_caller]
    fn into_timeout(self) -> Option<Duration> {
        match timeout_from_secs(self) {
            Some(d) => Some(d),
            None => bad_timeout(&self),
        }
    }
}

impl IntoTimeout for f32 {
    #[track_caller]
    fn into_timeout(self) -> Option<Duration> {
        f64::from(self).into_timeout()
    }
}

impl IntoTimeout for u64 {
    #[track_caller]
    fn into_timeout(self) -> Option<Duration> {
        if self == 0 {
            bad_timeout(&self)
        }
        Some(Duration::from_secs(self))
    }
}

impl IntoTimeout for Duration {
    #[track_caller]
    fn into_timeout(self) -> Option<Duration> {
        if self.is_zero() {
            bad_timeout(&"0s")
        }
        Some(self)
    }
}

impl<T: IntoTimeout> IntoTimeout for Option<T> {
    #[track_caller]
    fn into_timeout(self) -> Option<Duration> {
        self.and_then(IntoTimeout::into_timeout)
    }
}

/// A value `scheduler` can be set from.
pub trait IntoScheduler {
    /// The scheduler, or `None` to unset it.
    fn into_scheduler(self) -> Option<Scheduler>;
}

impl IntoScheduler for Scheduler {
    fn into_scheduler(self) -> Option<Scheduler> {
        Some(self)
    }
}

impl IntoScheduler for Option<Scheduler> {
    fn into_scheduler(self) -> Option<Scheduler> {
        self
    }
}

/// `max_workers` from a non-literal value. Panics on 0.
#[track_caller]
pub fn max_workers(value: impl IntoMaxWorkers) -> Option<NonZeroUsize> {
    value.into_max_workers()
}

/// `timeout_seconds` from a non-literal value. Panics on a value that is not > 0 and finite.
#[track_caller]
pub fn timeout_seconds(value: impl IntoTimeout) -> Option<Duration> {
    value.into_timeout()
}

/// `scheduler` from a non-literal value.
pub fn scheduler(value: impl IntoScheduler) -> Option<Scheduler> {
    value.into_scheduler()
}

/// `device_strategy` from a non-literal value.
pub fn device_strategy(value: DeviceStrategy) -> DeviceStrategy {
    value
}

/// A boolean option from a non-literal value.
pub fn flag(value: bool) -> bool {
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_fitting_types() {
        assert_eq!(max_workers(3usize), NonZeroUsize::new(3));
        assert_eq!(max_workers(None::<usize>), None);
        assert_eq!(max_workers(NonZeroUsize::new(2)), NonZeroUsize::new(2));
        assert_eq!(timeout_seconds(0.5), Some(Duration::from_millis(500)));
        assert_eq!(
            timeout_seconds(Some(Duration::from_secs(1))),
            Some(Duration::from_secs(1))
        );
        assert_eq!(timeout_seconds(None::<f64>), None);
    }

    #[test]
    #[should_panic(expected = "`max_workers` may not be 0")]
    fn zero_workers_panics() {
        let _ = max_workers(0usize);
    }

    #[test]
    #[should_panic(expected = "`timeout_seconds` must be")]
    fn nan_timeout_panics() {
        let _ = timeout_seconds(f64::NAN);
    }
}
