//! STUB — being written by a helper. Interface used by the runtime:
//! `begin(operator, index) -> Recorder`, `Recorder::finish(outcome)`, `take_trace()`.

use std::time::Duration;

/// How a recorded call or item ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// Returned its output.
    Ok,
    /// Returned an error.
    Error,
    /// Hit its deadline.
    Timeout,
    /// Answered from the cache.
    CacheHit,
    /// Panicked.
    Panicked,
}

/// One recorded operator call or batch item.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TraceEvent {
    /// The operator's name.
    pub operator: String,
    /// The batch item index, for batch items.
    pub index: Option<usize>,
    /// How long it took.
    pub duration: Duration,
    /// How it ended.
    pub outcome: Outcome,
}

/// A recorded trace.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    events: Vec<TraceEvent>,
}

impl Trace {
    /// The events in the order they finished.
    pub fn events(&self) -> &[TraceEvent] {
        &self.events
    }
}

/// Records one event in progress.
pub(crate) struct Recorder {}

/// Starts recording a call (`index: None`) or a batch item.
pub(crate) fn begin(_operator: &str, _index: Option<usize>) -> Recorder {
    Recorder {}
}

impl Recorder {
    /// Ends the event with `outcome`.
    pub(crate) fn finish(self, _outcome: Outcome) {}
}

/// Takes everything recorded so far, leaving the recorder empty.
pub fn take_trace() -> Trace {
    Trace::default()
}
