//! What `trace_execution` records: one event per operator call and per `vmap`/`pmap` item.
//!
//! A compound AI system spends its time in a few slow operators spread over many threads, and
//! the question is always *which item, on which thread, and why so long*. Two audiences want the
//! answer, so every event goes two ways:
//!
//! - a [`tracing`] span with target `xcs` (named `call` or `item`, fields `operator`, `index`
//!   and, once known, `outcome`), for the subscriber an application already runs — logs,
//!   OpenTelemetry, `tokio-console`-style tools — with no xcs-specific glue;
//! - an in-memory [`Trace`], drained with [`take_trace`], for the common case of "run it and look":
//!   [`Trace::summary`] prints a per-operator table, and [`Trace::to_chrome_json`] writes the
//!   Chrome trace-event format that <https://ui.perfetto.dev> and `chrome://tracing` open as a
//!   timeline with one row per thread.
//!
//! Recording is opt-in and per scope: with `trace_execution` off (the default) the runtime never
//! enters this module, so an untraced call pays one flag check. With it on, an event costs a span,
//! two `Instant` reads, two small allocations and one short critical section.
//!
//! # Design
//!
//! - **One process-wide buffer.** Batch items run on pool workers the caller does not own, so a
//!   per-thread or per-scope trace would lose them. Events are appended under a mutex held only to
//!   push (or, in [`take_trace`], to swap the buffer out), so many recording threads and a racing
//!   `take_trace` neither lose events nor deadlock: every event lands in exactly one `Trace`.
//! - **Bounded.** A forgotten `trace_execution = true` in a long-running service must not grow
//!   without limit: the buffer keeps at most [`TRACE_CAPACITY`] events, dropping the oldest first
//!   and counting them in [`Trace::dropped`].
//! - **Nesting follows the work.** Each thread keeps a stack of its open events; a new event's
//!   [`parent`](TraceEvent::parent) is the innermost one open on the same thread (a call inside a
//!   batch item is the item's child). A batch that hands items to worker threads hands them its
//!   own event too, so items recorded there are children of the batch call, and their `tracing`
//!   spans nest under its span. The timeline still shows one row per thread.
//! - **Times are offsets** from a process-wide epoch (the first traced event), so events from
//!   different threads and successive `take_trace`s share one clock.
//! - **Panics are recorded.** The in-flight record finishes on drop, so an item that unwinds still
//!   appears, with [`Outcome::Panicked`].

mod chrome;
mod event;
mod record;
#[cfg(feature = "nats")]
mod remote;
mod summary;

pub use event::{HedgeMark, Outcome, Trace, TraceEvent};
#[cfg(feature = "tokio")]
pub(crate) use record::RaceMarks;
pub use record::take_trace;
pub(crate) use record::{
    AsyncEvent, InheritGuard, Parent, begin, begin_async, current_parent, inherit, note_answer,
};
#[cfg(feature = "nats")]
pub(crate) use remote::{adopt_remote, detached_root, root_id, since_epoch, take_under};
pub use summary::{OperatorStats, TraceSummary};

/// The most events the in-memory trace holds between two [`take_trace`] calls.
///
/// When it is full, each new event evicts the oldest one, and [`Trace::dropped`] counts the
/// evicted events. A million events is a few hundred megabytes at worst (operator and thread
/// names are stored per event) and minutes of a busy pipeline; take the trace more often to keep
/// everything.
pub const TRACE_CAPACITY: usize = 1_000_000;

/// What the unit tests of this module's files share.
#[cfg(test)]
mod test_support {
    use std::sync::{Mutex, MutexGuard, PoisonError};
    use std::time::Duration;

    use super::{Outcome, Trace, TraceEvent};

    /// Tests that take the process-wide buffer run one at a time; each also filters events by
    /// operator names unique to it, because the runtime's own tests may record concurrently.
    static LOCK: Mutex<()> = Mutex::new(());

    pub(super) fn lock() -> MutexGuard<'static, ()> {
        LOCK.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn mine(trace: Trace, prefix: &str) -> Vec<TraceEvent> {
        trace
            .into_events()
            .into_iter()
            .filter(|e| e.operator.starts_with(prefix))
            .collect()
    }

    pub(super) fn event(
        operator: &str,
        index: Option<usize>,
        ms: u64,
        outcome: Outcome,
    ) -> TraceEvent {
        TraceEvent {
            id: 0,
            parent: None,
            depth: 0,
            operator: operator.to_owned(),
            index,
            thread: "t".to_owned(),
            thread_id: 1,
            start: Duration::ZERO,
            duration: Duration::from_millis(ms),
            outcome,
            attempt: 1,
            usage: None,
            resource_wait: Duration::ZERO,
            answered_by: None,
            hedge: None,
        }
    }
}
