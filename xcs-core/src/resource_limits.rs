//! [`ResourceLimits`]: the limits of a shared resource, as a value (built, parsed from
//! configuration, checked). The registry that applies them is `resource`; the limiter that
//! follows them, `policy::resource`; the circuit breaker, `policy::breaker`.

use crate::error::XcsError;

/// The limits of a shared resource: how many calls may start per minute, how many tokens they
/// may use per minute, how many may run at once, and when its circuit breaker opens. Unset
/// fields do not limit.
///
/// Starts are spread so that in any window of `t` seconds at most `limit × t / 60 + limit / 60`
/// requests (and tokens, by the calls' estimates) are admitted; a call waits for its turn (its
/// deadline counts), and a call that cannot start before its deadline is a timeout.
///
/// ```
/// use xcs::ResourceLimits;
/// let limits = ResourceLimits::new()
///     .requests_per_minute(500.0)
///     .tokens_per_minute(30_000.0)
///     .max_in_flight(64);
/// assert_eq!(limits.max_in_flight, Some(64));
/// assert!(limits.check().is_ok());
/// xcs::set_resource_limits("openai", &limits)?;
/// # Ok::<(), xcs::XcsError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ResourceLimits {
    /// Calls (bodies) started per minute: a finite number > 0.
    pub requests_per_minute: Option<f64>,
    /// Tokens (input and output, by each call's estimate, settled by what it recorded) per
    /// minute: a finite number > 0.
    pub tokens_per_minute: Option<f64>,
    /// Calls admitted and not finished at once: at least 1.
    pub max_in_flight: Option<usize>,
    /// The circuit breaker: after this many consecutive retryable failures of the resource's
    /// calls, its calls fail at once with [`XcsError::CircuitOpen`] for
    /// [`cooldown_seconds`](ResourceLimits::cooldown_seconds); then one trial call is admitted,
    /// whose success closes the circuit. At least 1; unset: no breaker.
    pub open_after_failures: Option<usize>,
    /// How long an open circuit stays open before a trial call is admitted, in seconds: a
    /// finite number > 0 (at most a year is kept). Unset: 30 s (only used when
    /// `open_after_failures` is set).
    pub cooldown_seconds: Option<f64>,
}

/// The names [`ResourceLimits::from_pairs`] reads.
const NAMES: [&str; 5] = [
    "requests_per_minute",
    "tokens_per_minute",
    "max_in_flight",
    "open_after_failures",
    "cooldown_seconds",
];

impl ResourceLimits {
    /// No limit set.
    ///
    /// ```
    /// assert_eq!(xcs::ResourceLimits::new(), xcs::ResourceLimits::default());
    /// ```
    pub const fn new() -> Self {
        ResourceLimits {
            requests_per_minute: None,
            tokens_per_minute: None,
            max_in_flight: None,
            open_after_failures: None,
            cooldown_seconds: None,
        }
    }

    /// These limits with `requests_per_minute` set (not checked here: see
    /// [`check`](ResourceLimits::check)).
    ///
    /// ```
    /// let limits = xcs::ResourceLimits::new().requests_per_minute(500.0);
    /// assert_eq!(limits.requests_per_minute, Some(500.0));
    /// ```
    pub const fn requests_per_minute(mut self, v: f64) -> Self {
        self.requests_per_minute = Some(v);
        self
    }

    /// These limits with `tokens_per_minute` set (not checked here).
    ///
    /// ```
    /// let limits = xcs::ResourceLimits::new().tokens_per_minute(30_000.0);
    /// assert_eq!(limits.tokens_per_minute, Some(30_000.0));
    /// ```
    pub const fn tokens_per_minute(mut self, v: f64) -> Self {
        self.tokens_per_minute = Some(v);
        self
    }

    /// These limits with `max_in_flight` set (not checked here).
    ///
    /// ```
    /// let limits = xcs::ResourceLimits::new().max_in_flight(8);
    /// assert_eq!(limits.max_in_flight, Some(8));
    /// ```
    pub const fn max_in_flight(mut self, v: usize) -> Self {
        self.max_in_flight = Some(v);
        self
    }

    /// These limits with `open_after_failures` set (not checked here): the circuit breaker opens
    /// after that many consecutive retryable failures.
    ///
    /// ```
    /// let limits = xcs::ResourceLimits::new().open_after_failures(5).cooldown_seconds(30.0);
    /// assert_eq!(limits.open_after_failures, Some(5));
    /// ```
    pub const fn open_after_failures(mut self, v: usize) -> Self {
        self.open_after_failures = Some(v);
        self
    }

    /// These limits with `cooldown_seconds` set (not checked here): how long an open circuit
    /// refuses calls before it admits a trial call.
    ///
    /// ```
    /// let limits = xcs::ResourceLimits::new().cooldown_seconds(2.5);
    /// assert_eq!(limits.cooldown_seconds, Some(2.5));
    /// ```
    pub const fn cooldown_seconds(mut self, v: f64) -> Self {
        self.cooldown_seconds = Some(v);
        self
    }

    /// The cooldown of the circuit breaker: `cooldown_seconds` (at most a year), or 30 s when
    /// unset.
    ///
    /// ```
    /// use std::time::Duration;
    /// let limits = xcs::ResourceLimits::new().cooldown_seconds(0.5);
    /// assert_eq!(limits.cooldown(), Duration::from_millis(500));
    /// assert_eq!(xcs::ResourceLimits::new().cooldown(), Duration::from_secs(30));
    /// ```
    pub fn cooldown(&self) -> std::time::Duration {
        match self.cooldown_seconds {
            Some(seconds) => std::time::Duration::try_from_secs_f64(seconds)
                .unwrap_or(MAX_COOLDOWN)
                .min(MAX_COOLDOWN),
            None => DEFAULT_COOLDOWN,
        }
    }

    /// Limits from `(name, value)` pairs (a configuration file, the environment), checked.
    /// Names: `requests_per_minute`, `tokens_per_minute`, `cooldown_seconds` (numbers, `_`
    /// between digits allowed), `max_in_flight`, `open_after_failures` (integers).
    ///
    /// # Errors
    /// [`XcsError::InvalidOption`] for an unknown name (with the nearest valid one as a
    /// suggestion); [`XcsError::InvalidValue`] for a value that is not a number, is zero,
    /// negative or not finite, or a name given twice.
    ///
    /// ```
    /// use xcs::{ResourceLimits, XcsError};
    /// let limits = ResourceLimits::from_pairs([("requests_per_minute", "500"), ("max_in_flight", "64")])?;
    /// assert_eq!(limits, ResourceLimits::new().requests_per_minute(500.0).max_in_flight(64));
    ///
    /// match ResourceLimits::from_pairs([("request_per_minute", "500")]) {
    ///     Err(XcsError::InvalidOption { suggestion, .. }) => {
    ///         assert_eq!(suggestion, Some("requests_per_minute"))
    ///     }
    ///     other => panic!("unexpected {other:?}"),
    /// }
    /// assert!(matches!(
    ///     ResourceLimits::from_pairs([("max_in_flight", "0")]),
    ///     Err(XcsError::InvalidValue { .. })
    /// ));
    /// # Ok::<(), XcsError>(())
    /// ```
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self, XcsError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut limits = ResourceLimits::new();
        let mut seen = [false; NAMES.len()];
        for (name, value) in pairs {
            let (name, value) = (name.as_ref(), value.as_ref());
            let index = NAMES
                .iter()
                .position(|known| *known == name)
                .ok_or_else(|| XcsError::InvalidOption {
                    name: name.to_owned(),
                    suggestion: suggest(name),
                })?;
            if seen[index] {
                return Err(XcsError::InvalidValue {
                    option: name.to_owned(),
                    value: value.to_owned(),
                    expected: "the limit only once".to_owned(),
                });
            }
            seen[index] = true;
            let digits = without_digit_separators(value.trim());
            let bad = || invalid(NAMES[index], value);
            match index {
                0 => limits.requests_per_minute = Some(digits.parse().map_err(|_| bad())?),
                1 => limits.tokens_per_minute = Some(digits.parse().map_err(|_| bad())?),
                2 => limits.max_in_flight = Some(digits.parse().map_err(|_| bad())?),
                3 => limits.open_after_failures = Some(digits.parse().map_err(|_| bad())?),
                _ => limits.cooldown_seconds = Some(digits.parse().map_err(|_| bad())?),
            }
        }
        limits.check()?;
        Ok(limits)
    }

    /// Checks every limit that is set: rates and the cooldown finite and > 0, `max_in_flight`
    /// and `open_after_failures` at least 1.
    ///
    /// # Errors
    /// [`XcsError::InvalidValue`] naming the first field that is not.
    ///
    /// ```
    /// use xcs::{ResourceLimits, XcsError};
    /// assert!(ResourceLimits::new().tokens_per_minute(1e6).check().is_ok());
    /// match ResourceLimits::new().requests_per_minute(-1.0).check() {
    ///     Err(XcsError::InvalidValue { option, .. }) => assert_eq!(option, "requests_per_minute"),
    ///     other => panic!("unexpected {other:?}"),
    /// }
    /// ```
    pub fn check(&self) -> Result<(), XcsError> {
        let rate_ok = |v: f64| v.is_finite() && v > 0.0;
        if let Some(v) = self.requests_per_minute.filter(|v| !rate_ok(*v)) {
            return Err(invalid(NAMES[0], &v.to_string()));
        }
        if let Some(v) = self.tokens_per_minute.filter(|v| !rate_ok(*v)) {
            return Err(invalid(NAMES[1], &v.to_string()));
        }
        if self.max_in_flight == Some(0) {
            return Err(invalid(NAMES[2], "0"));
        }
        if self.open_after_failures == Some(0) {
            return Err(invalid(NAMES[3], "0"));
        }
        if let Some(v) = self.cooldown_seconds.filter(|v| !rate_ok(*v)) {
            return Err(invalid(NAMES[4], &v.to_string()));
        }
        Ok(())
    }
}

/// The cooldown of a circuit breaker whose `cooldown_seconds` is not set.
pub(crate) const DEFAULT_COOLDOWN: std::time::Duration = std::time::Duration::from_secs(30);

/// The longest cooldown: a year (any longer one is as good as forever, and stays representable
/// as an instant).
const MAX_COOLDOWN: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// The error for `value` of the limit `name`.
fn invalid(name: &str, value: &str) -> XcsError {
    let expected = if name == NAMES[2] {
        "an integer of at least 1 (calls at once)"
    } else if name == NAMES[3] {
        "an integer of at least 1 (consecutive failures)"
    } else if name == NAMES[4] {
        "a finite number of seconds greater than 0"
    } else {
        "a finite number greater than 0 (per minute)"
    };
    XcsError::InvalidValue {
        option: name.to_owned(),
        value: value.to_owned(),
        expected: expected.to_owned(),
    }
}

/// The limit name nearest to `name`, if one is near enough to be a likely typo.
fn suggest(name: &str) -> Option<&'static str> {
    let lowered = name.to_ascii_lowercase();
    NAMES
        .iter()
        .map(|known| {
            (
                strsim::normalized_damerau_levenshtein(&lowered, known),
                *known,
            )
        })
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, known)| known)
}

/// `value` without the `_` that sit between two digits (`30_000`).
fn without_digit_separators(value: &str) -> String {
    let bytes = value.as_bytes();
    value
        .char_indices()
        .filter(|&(i, c)| {
            c != '_'
                || !(i > 0
                    && bytes[i - 1].is_ascii_digit()
                    && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
        })
        .map(|(_, c)| c)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_parser_reads_the_macro_table() {
        let table: Vec<&str> = crate::resource_table::LIMITS
            .iter()
            .map(|spec| spec.name)
            .collect();
        assert_eq!(NAMES.to_vec(), table);
        for name in NAMES {
            let limits = ResourceLimits::from_pairs([(name, "5")]).unwrap();
            assert_ne!(limits, ResourceLimits::new(), "{name}");
        }
        assert_eq!(
            ResourceLimits::from_pairs([("open_after_failures", "5"), ("cooldown_seconds", "1.5")])
                .unwrap(),
            ResourceLimits::new()
                .open_after_failures(5)
                .cooldown_seconds(1.5)
        );
        for (name, value) in [
            ("open_after_failures", "0"),
            ("open_after_failures", "2.5"),
            ("cooldown_seconds", "0"),
            ("cooldown_seconds", "-3"),
            ("cooldown_seconds", "inf"),
        ] {
            match ResourceLimits::from_pairs([(name, value)]) {
                Err(XcsError::InvalidValue { option, .. }) => assert_eq!(option, name),
                other => panic!("{name} = {value}: {other:?}"),
            }
        }
        assert_eq!(
            ResourceLimits::new().cooldown_seconds(1e300).cooldown(),
            MAX_COOLDOWN
        );
    }
}
