//! What a call used: tokens and cost, recorded by its body and charged to its resource, its
//! budget and its trace event.
//!
//! A call that goes through the call plan with something to charge (a resource, a budget, a
//! trace) gets a [`Meter`] in its body's context; `record_usage` (in `deadline`, beside that
//! context) adds to the meter of the call whose body is running on this thread or task. When the call ends, what it recorded replaces
//! its estimate (see [`Operator::estimate`](crate::Operator::estimate)).

use std::fmt;
use std::ops::{Add, AddAssign};
use std::sync::{Arc, Mutex, PoisonError};

/// Tokens and cost a call used (or is estimated to use).
///
/// A plain value: build it with a literal, add it up with `+`.
///
/// ```
/// use xcs::Usage;
/// let a = Usage { input_tokens: 100, output_tokens: 20, cost: 0.001 };
/// let b = Usage { input_tokens: 50, ..Usage::default() };
/// let sum = a + b;
/// assert_eq!(sum.input_tokens, 150);
/// assert_eq!(sum.tokens(), 170);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// Tokens of the prompt (the request).
    pub input_tokens: u64,
    /// Tokens of the reply.
    pub output_tokens: u64,
    /// What it cost, in whatever currency unit the operator reports (dollars, say).
    pub cost: f64,
}

impl Usage {
    /// No usage at all.
    pub const ZERO: Usage = Usage {
        input_tokens: 0,
        output_tokens: 0,
        cost: 0.0,
    };

    /// Input and output tokens together (what `token_budget` and `tokens_per_minute` count).
    ///
    /// ```
    /// let u = xcs::Usage { input_tokens: 3, output_tokens: 4, cost: 0.0 };
    /// assert_eq!(u.tokens(), 7);
    /// ```
    #[inline]
    pub fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// Whether this is no usage at all.
    ///
    /// ```
    /// assert!(xcs::Usage::default().is_zero());
    /// ```
    #[inline]
    pub fn is_zero(&self) -> bool {
        self.input_tokens == 0 && self.output_tokens == 0 && self.cost == 0.0
    }

    /// This usage with every part checked: a cost that is negative or not finite counts as 0
    /// (a body's arithmetic must not corrupt a budget).
    #[inline]
    pub(crate) fn sanitized(self) -> Usage {
        Usage {
            cost: if self.cost.is_finite() && self.cost > 0.0 {
                self.cost
            } else {
                0.0
            },
            ..self
        }
    }
}

impl Add for Usage {
    type Output = Usage;

    fn add(self, other: Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens.saturating_add(other.input_tokens),
            output_tokens: self.output_tokens.saturating_add(other.output_tokens),
            cost: self.cost + other.cost,
        }
    }
}

impl AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        *self = *self + other;
    }
}

impl fmt::Display for Usage {
    /// `1200 tokens (1000 in, 200 out), cost 0.0040`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} tokens ({} in, {} out)",
            self.tokens(),
            self.input_tokens,
            self.output_tokens
        )?;
        if self.cost != 0.0 {
            write!(f, ", cost {:.4}", self.cost)?;
        }
        Ok(())
    }
}

/// What one running call has recorded (shared by the threads and tasks its body runs on).
#[derive(Debug, Default)]
pub(crate) struct Meter {
    recorded: Mutex<Option<Usage>>,
}

impl Meter {
    pub(crate) fn new() -> Arc<Meter> {
        Arc::new(Meter::default())
    }

    /// Adds `usage` to what the call recorded.
    pub(crate) fn record(&self, usage: Usage) {
        let mut recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        *recorded = Some(recorded.unwrap_or_default() + usage.sanitized());
    }

    /// What the call recorded, if it recorded anything.
    pub(crate) fn recorded(&self) -> Option<Usage> {
        *self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
