//! Placeholder of the resource API (replaced by h-res): the items `set_resource_limits!` and
//! `#[xcs::operator(resource = …)]` are written against, with trivial bodies.

use crate::error::XcsError;

/// The limits of one resource (placeholder).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ResourceLimits {
    /// Requests admitted per minute.
    pub requests_per_minute: Option<f64>,
    /// Tokens admitted per minute.
    pub tokens_per_minute: Option<f64>,
    /// Bodies running at once.
    pub max_in_flight: Option<usize>,
}

impl ResourceLimits {
    /// No limits.
    pub const fn new() -> Self {
        ResourceLimits {
            requests_per_minute: None,
            tokens_per_minute: None,
            max_in_flight: None,
        }
    }

    /// Sets `requests_per_minute`.
    pub const fn requests_per_minute(mut self, v: f64) -> Self {
        self.requests_per_minute = Some(v);
        self
    }

    /// Sets `tokens_per_minute`.
    pub const fn tokens_per_minute(mut self, v: f64) -> Self {
        self.tokens_per_minute = Some(v);
        self
    }

    /// Sets `max_in_flight`.
    pub const fn max_in_flight(mut self, v: usize) -> Self {
        self.max_in_flight = Some(v);
        self
    }

    /// Limits from `(name, value)` pairs.
    ///
    /// # Errors
    /// [`XcsError::InvalidValue`] for an unknown name or a bad value.
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self, XcsError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut limits = ResourceLimits::new();
        for (name, value) in pairs {
            let (name, value) = (name.as_ref(), value.as_ref().trim());
            let invalid = || XcsError::InvalidValue {
                option: name.to_owned(),
                value: value.to_owned(),
                expected: "a valid limit".to_owned(),
            };
            match name {
                "requests_per_minute" => {
                    limits.requests_per_minute = Some(value.parse().map_err(|_| invalid())?)
                }
                "tokens_per_minute" => {
                    limits.tokens_per_minute = Some(value.parse().map_err(|_| invalid())?)
                }
                "max_in_flight" => {
                    limits.max_in_flight = Some(value.parse().map_err(|_| invalid())?)
                }
                _ => return Err(invalid()),
            }
        }
        limits.check()?;
        Ok(limits)
    }

    /// Checks every limit.
    ///
    /// # Errors
    /// [`XcsError::InvalidValue`] for a rate that is not finite and > 0, or a count of 0.
    pub fn check(&self) -> Result<(), XcsError> {
        let bad_rate = |rate: Option<f64>| rate.is_some_and(|r| !(r.is_finite() && r > 0.0));
        if bad_rate(self.requests_per_minute)
            || bad_rate(self.tokens_per_minute)
            || self.max_in_flight == Some(0)
        {
            return Err(XcsError::InvalidValue {
                option: "resource limits".to_owned(),
                value: format!("{self:?}"),
                expected: "rates > 0 and a count ≥ 1".to_owned(),
            });
        }
        Ok(())
    }
}

/// Sets (merges) the limits of resource `name`, process-wide (placeholder: checks and forgets).
///
/// # Errors
/// [`XcsError::InvalidValue`] for an empty name or invalid limits.
pub fn set_resource_limits(name: &str, limits: &ResourceLimits) -> Result<(), XcsError> {
    if name.is_empty() {
        return Err(XcsError::InvalidValue {
            option: "resource".to_owned(),
            value: String::new(),
            expected: "a non-empty resource name".to_owned(),
        });
    }
    limits.check()
}
