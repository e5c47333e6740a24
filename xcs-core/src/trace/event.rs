//! What a trace holds: [`TraceEvent`]s with their [`Outcome`], gathered in a [`Trace`].

use std::fmt;
use std::time::Duration;

use super::TraceSummary;

/// How a recorded call or batch item ended.
///
/// [`as_str`](Outcome::as_str) and `Display` give the lowercase, machine-friendly names used in
/// the summary table and the Chrome trace: `ok`, `error`, `timeout`, `cache_hit`, `panicked`,
/// `cancelled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Outcome {
    /// Returned its output.
    Ok,
    /// Returned an error (other than a timeout or a panic).
    Error,
    /// Hit its deadline (`timeout_seconds`).
    Timeout,
    /// Answered from the cache (`enable_caching`) without running the body.
    CacheHit,
    /// Panicked, or was abandoned while unwinding.
    Panicked,
    /// Stopped because another attempt of the same call answered first: the attempt that lost
    /// a hedged call's race (`hedge_after`; see [`TraceEvent::hedge`]).
    Cancelled,
}

impl Outcome {
    /// Every outcome, in the order the summary table lists them.
    pub const ALL: [Outcome; 6] = [
        Outcome::Ok,
        Outcome::Error,
        Outcome::Timeout,
        Outcome::CacheHit,
        Outcome::Panicked,
        Outcome::Cancelled,
    ];

    /// The lowercase name: `"ok"`, `"error"`, `"timeout"`, `"cache_hit"`, `"panicked"` or
    /// `"cancelled"`.
    ///
    /// ```
    /// assert_eq!(xcs::Outcome::CacheHit.as_str(), "cache_hit");
    /// assert_eq!(xcs::Outcome::Ok.to_string(), "ok");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::CacheHit => "cache_hit",
            Outcome::Panicked => "panicked",
            Outcome::Cancelled => "cancelled",
        }
    }

    pub(super) const fn slot(self) -> usize {
        match self {
            Outcome::Ok => 0,
            Outcome::Error => 1,
            Outcome::Timeout => 2,
            Outcome::CacheHit => 3,
            Outcome::Panicked => 4,
            Outcome::Cancelled => 5,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One recorded operator call or batch item.
///
/// Times are offsets from the process-wide trace epoch (the moment the first event of the
/// process was recorded), so events of different threads and of successive
/// [`take_trace`](crate::take_trace) calls can be compared directly.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct TraceEvent {
    /// A process-unique id, increasing in the order events began.
    pub id: u64,
    /// The id of the innermost event open on the same thread when this one began, if any: a call
    /// inside a batch item is that item's child.
    pub parent: Option<u64>,
    /// How many events were open on the same thread when this one began (`0` for a root).
    pub depth: usize,
    /// The operator's name ([`Operator::name`](crate::Operator::name)).
    pub operator: String,
    /// The item's index in its batch, for `vmap`/`pmap` items; `None` for a call.
    pub index: Option<usize>,
    /// The name of the thread it ran on, or `"<unnamed>"`.
    pub thread: String,
    /// A small number identifying the thread it ran on: stable for the life of the thread,
    /// assigned in the order threads first record an event, starting at 1.
    pub thread_id: u64,
    /// When it began, as an offset from the trace epoch.
    pub start: Duration,
    /// How long it ran.
    pub duration: Duration,
    /// How it ended.
    pub outcome: Outcome,
    /// Which attempt of the call this is: `1`, or more for the retries of `max_retries`.
    pub attempt: u32,
    /// What the attempt's body recorded with [`record_usage`](crate::record_usage), if it
    /// recorded anything.
    pub usage: Option<crate::Usage>,
    /// How long the attempt waited for its operator's resource before its body started (zero
    /// without a resource).
    pub resource_wait: Duration,
    /// For a [`fallback`](crate::fallback) call: the name of the operator that answered (its
    /// primary, or its secondary after the primary failed); `None` for other events and for a
    /// fallback that neither answered.
    pub answered_by: Option<String>,
    /// For the two attempts of a hedged call (`hedge_after`), which one this is and whether it
    /// answered the call; `None` for an attempt that raced no other.
    pub hedge: Option<HedgeMark>,
}

/// An attempt's part in a hedged call (`hedge_after`): the call's attempt and its hedge race,
/// and the first success answers the call; the other ends [`Outcome::Cancelled`] (or with its
/// own failure).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct HedgeMark {
    /// Whether this attempt is the hedge (the second one, started after the delay).
    pub is_hedge: bool,
    /// Whether this attempt's answer is the call's.
    pub won: bool,
}

// Every cost a trace holds is finite (usage is sanitized when recorded), so equality is an
// equivalence.
impl Eq for TraceEvent {}

impl TraceEvent {
    /// When it ended, as an offset from the trace epoch.
    pub fn end(&self) -> Duration {
        self.start + self.duration
    }

    /// Whether it is a batch item (has an index) rather than a call.
    pub fn is_item(&self) -> bool {
        self.index.is_some()
    }

    /// The operator's name, followed by `[index]` for a batch item: `generate[3]`.
    pub fn label(&self) -> String {
        match self.index {
            Some(i) => format!("{}[{i}]", self.operator),
            None => self.operator.clone(),
        }
    }
}

/// Events drained from the in-memory trace by [`take_trace`](crate::take_trace), ordered by
/// start time.
///
/// ```standalone_crate
/// use xcs::{Operator, XcsError, execution_options};
///
/// struct Shout;
/// impl Operator for Shout {
///     type Input = String;
///     type Output = String;
///     fn forward(&self, input: String) -> Result<String, XcsError> {
///         Ok(input.to_uppercase())
///     }
///     fn name(&self) -> &str {
///         "shout_trace_doc"
///     }
/// }
///
/// execution_options!(trace_execution = true => {
///     xcs::vmap(Shout).call(vec!["a".into(), "b".into()])
/// })?;
///
/// let trace = xcs::take_trace();
/// let items: Vec<_> = trace
///     .iter()
///     .filter(|e| e.operator == "shout_trace_doc" && e.index.is_some())
///     .collect();
/// assert_eq!(items.len(), 2);
/// println!("{}", trace.summary());
/// // trace.write_chrome_json("trace.json")?; then open it in https://ui.perfetto.dev
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    pub(super) events: Vec<TraceEvent>,
    pub(super) dropped: u64,
}

impl Trace {
    /// The events, ordered by start time (ties: the order they began).
    pub fn events(&self) -> &[TraceEvent] {
        &self.events
    }

    /// The events, by value.
    pub fn into_events(self) -> Vec<TraceEvent> {
        self.events
    }

    /// Iterates over the events in start order.
    pub fn iter(&self) -> std::slice::Iter<'_, TraceEvent> {
        self.events.iter()
    }

    /// The number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether there are no events.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// How many events were evicted, oldest first, because more than
    /// [`TRACE_CAPACITY`](crate::TRACE_CAPACITY) were recorded between two
    /// [`take_trace`](crate::take_trace) calls.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Per-operator statistics: count, total, mean and max duration, and how many of each
    /// [`Outcome`]. Its `Display` is an aligned table.
    ///
    /// Events are grouped by operator name, batch items together with calls (an item is counted
    /// under the name it was recorded with). Totals add up durations, so an operator whose events
    /// run in parallel can show more total time than the wall clock.
    pub fn summary(&self) -> TraceSummary {
        TraceSummary::of(&self.events)
    }
}

impl<'a> IntoIterator for &'a Trace {
    type Item = &'a TraceEvent;
    type IntoIter = std::slice::Iter<'a, TraceEvent>;

    fn into_iter(self) -> Self::IntoIter {
        self.events.iter()
    }
}

impl IntoIterator for Trace {
    type Item = TraceEvent;
    type IntoIter = std::vec::IntoIter<TraceEvent>;

    fn into_iter(self) -> Self::IntoIter {
        self.events.into_iter()
    }
}
