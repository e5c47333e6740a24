//! The table of resource limits: the names `set_resource_limits!` takes, what each accepts, and
//! the nearest name for a misspelt one. The macro's compile-time checks read it (as the option
//! macros read [`OPTIONS`](crate::options::OPTIONS)), so a limit added here is known to the
//! macro at once; its literal check and conversion follow from its [`LimitKind`].

use crate::resource::{ResourceLimits, set_resource_limits};

/// The kind of value a resource limit takes; decides which literals the macro accepts and how
/// a non-literal value is converted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitKind {
    /// A rate per minute: a finite number > 0 (integer or float).
    PerMinute,
    /// A count: an integer ≥ 1.
    Count,
    /// A duration in seconds: a finite number > 0 (integer or float), or a `Duration`.
    Seconds,
}

impl LimitKind {
    /// The function of `xcs::__private::convert` through which the macro passes a non-literal
    /// value of this kind (checked at run time, panicking with a message naming the limit).
    #[doc(hidden)]
    pub const fn convert(self) -> &'static str {
        match self {
            LimitKind::PerMinute => "limit_per_minute",
            LimitKind::Count => "limit_count",
            LimitKind::Seconds => "limit_seconds",
        }
    }
}

/// One row of the table of resource limits.
#[derive(Debug)]
pub struct LimitSpec {
    /// The limit's name, as written in `set_resource_limits!` (and the builder method of
    /// [`ResourceLimits`] that sets it).
    pub name: &'static str,
    /// What kind of value it takes.
    pub kind: LimitKind,
    /// What a valid value looks like, for error messages.
    pub expected: &'static str,
    /// One line of documentation.
    pub doc: &'static str,
}

/// Every limit a resource takes, in the order the macro lists them.
///
/// ```
/// let names: Vec<&str> = xcs::LIMITS.iter().map(|limit| limit.name).collect();
/// assert_eq!(
///     names,
///     [
///         "requests_per_minute",
///         "tokens_per_minute",
///         "max_in_flight",
///         "open_after_failures",
///         "cooldown_seconds",
///     ]
/// );
/// ```
pub const LIMITS: &[LimitSpec] = &[
    LimitSpec {
        name: "requests_per_minute",
        kind: LimitKind::PerMinute,
        expected: "a finite number of requests per minute greater than 0",
        doc: "the most calls of the resource started per minute",
    },
    LimitSpec {
        name: "tokens_per_minute",
        kind: LimitKind::PerMinute,
        expected: "a finite number of tokens per minute greater than 0",
        doc: "the most tokens (input + output) the resource's calls use per minute",
    },
    LimitSpec {
        name: "max_in_flight",
        kind: LimitKind::Count,
        expected: "an integer of at least 1",
        doc: "the most bodies of the resource's calls running at once",
    },
    LimitSpec {
        name: "open_after_failures",
        kind: LimitKind::Count,
        expected: "an integer of at least 1",
        doc: "the consecutive retryable failures after which the resource's circuit opens",
    },
    LimitSpec {
        name: "cooldown_seconds",
        kind: LimitKind::Seconds,
        expected: "a finite number of seconds greater than 0",
        doc: "how long an open circuit refuses calls before it admits one trial call",
    },
];

impl LimitSpec {
    /// The limit called `name`.
    ///
    /// ```
    /// assert!(xcs::LimitSpec::named("max_in_flight").is_some());
    /// assert!(xcs::LimitSpec::named("max_inflight").is_none());
    /// ```
    pub fn named(name: &str) -> Option<&'static LimitSpec> {
        LIMITS.iter().find(|spec| spec.name == name)
    }

    /// The limit whose name is nearest to `name`, if one is near enough to be a likely typo.
    ///
    /// ```
    /// assert_eq!(xcs::LimitSpec::nearest("request_per_minute"), Some("requests_per_minute"));
    /// assert_eq!(xcs::LimitSpec::nearest("in_flight"), Some("max_in_flight"));
    /// assert_eq!(xcs::LimitSpec::nearest("colour"), None);
    /// ```
    pub fn nearest(name: &str) -> Option<&'static str> {
        let lowered = name.to_ascii_lowercase();
        if let Some(spec) = LimitSpec::named(&lowered) {
            return Some(spec.name);
        }
        let mut best: Option<(f64, &'static str)> = None;
        for spec in LIMITS {
            let mut score = strsim::normalized_damerau_levenshtein(&lowered, spec.name);
            // `in_flight` for `max_in_flight`: a part of the name.
            if lowered.len() >= 4 && spec.name.contains(lowered.as_str()) {
                score = score.max(0.9);
            }
            if score >= 0.6 && best.is_none_or(|(b, _)| score > b) {
                best = Some((score, spec.name));
            }
        }
        best.map(|(_, name)| name)
    }

    /// The valid limit names, in table order, as a backticked, comma-separated list.
    ///
    /// ```
    /// assert!(xcs::LimitSpec::valid_names().starts_with("`requests_per_minute`, "));
    /// ```
    pub fn valid_names() -> String {
        LIMITS
            .iter()
            .map(|spec| format!("`{}`", spec.name))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What `set_resource_limits!` expands to: the limits merged into resource `name`'s, or a panic
/// with the error (the macro has checked every literal; what is left to fail is a non-literal
/// value, which the conversions have checked already, or an empty non-literal name).
#[doc(hidden)]
#[track_caller]
pub fn apply_resource_limits(name: &str, limits: &ResourceLimits) {
    if let Err(error) = set_resource_limits(name, limits) {
        panic!("set_resource_limits!({name:?}, …): {error}");
    }
}

/// `value` as a limit of kind `PerMinute`, if it is one (finite and greater than 0).
pub(crate) fn per_minute_from(value: f64) -> Option<f64> {
    (value.is_finite() && value > 0.0).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_suggested() {
        for (i, spec) in LIMITS.iter().enumerate() {
            assert!(LIMITS[..i].iter().all(|other| other.name != spec.name));
            assert_eq!(LimitSpec::named(spec.name).map(|s| s.name), Some(spec.name));
            assert_eq!(LimitSpec::nearest(spec.name), Some(spec.name));
        }
        assert_eq!(
            LimitSpec::nearest("tokens_per_minut"),
            Some("tokens_per_minute")
        );
        assert_eq!(LimitSpec::nearest("MAX_IN_FLIGHT"), Some("max_in_flight"));
        assert_eq!(LimitSpec::nearest("timeout_seconds"), None);
        assert_eq!(
            LimitSpec::valid_names(),
            "`requests_per_minute`, `tokens_per_minute`, `max_in_flight`, \
             `open_after_failures`, `cooldown_seconds`"
        );
        assert_eq!(
            LimitSpec::nearest("open_after_failure"),
            Some("open_after_failures")
        );
        assert_eq!(LimitSpec::nearest("cooldown"), Some("cooldown_seconds"));
    }

    #[test]
    fn per_minute_values() {
        assert_eq!(per_minute_from(500.0), Some(500.0));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(per_minute_from(bad), None);
        }
    }
}
