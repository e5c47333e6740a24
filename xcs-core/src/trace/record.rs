//! Recording: the process-wide buffer, each thread's open events, and the records of sync and
//! async calls that fill them.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use super::{HedgeMark, Outcome, TRACE_CAPACITY, Trace, TraceEvent};

/// The process-wide buffer: events in the order they finished, bounded by a capacity.
#[derive(Default)]
pub(super) struct Buffer {
    pub(super) events: VecDeque<TraceEvent>,
    dropped: u64,
}

impl Buffer {
    pub(super) fn push(&mut self, event: TraceEvent, capacity: usize) {
        while self.events.len() >= capacity.max(1) {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(event);
    }

    fn take(&mut self) -> Trace {
        let mut events = Vec::from(std::mem::take(&mut self.events));
        // Pushed in finish order; children finish before their parents.
        events.sort_by_key(|e| (e.start, e.id));
        Trace {
            events,
            dropped: std::mem::take(&mut self.dropped),
        }
    }
}

static BUFFER: Mutex<Buffer> = Mutex::new(Buffer {
    events: VecDeque::new(),
    dropped: 0,
});

/// The buffer, even if a thread panicked while holding the lock (the buffer is always in a
/// consistent state between statements, so a poisoned lock holds nothing broken).
pub(super) fn buffer() -> MutexGuard<'static, Buffer> {
    BUFFER.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) static EPOCH: OnceLock<Instant> = OnceLock::new();
pub(super) static NEXT_EVENT_ID: AtomicU64 = AtomicU64::new(1);
static NEXT_THREAD_ID: AtomicU64 = AtomicU64::new(1);

/// What a thread records about itself, computed once per thread.
struct ThreadInfo {
    id: u64,
    name: String,
    /// Ids of this thread's open events, innermost last.
    open: RefCell<Vec<u64>>,
    /// The event this thread works under when it has none open itself: the batch call that
    /// handed it work on another thread (see [`inherit`]), and the depth its events start at.
    inherited: Cell<Option<(u64, usize)>>,
}

thread_local! {
    static THREAD: ThreadInfo = ThreadInfo {
        id: NEXT_THREAD_ID.fetch_add(1, Ordering::Relaxed),
        name: std::thread::current().name().unwrap_or("<unnamed>").to_owned(),
        open: RefCell::new(Vec::new()),
        inherited: Cell::new(None),
    };
}

/// The event (and `tracing` span) that work handed to another thread belongs under.
#[derive(Clone, Debug)]
pub(crate) struct Parent {
    pub(super) id: u64,
    pub(super) child_depth: usize,
    pub(super) span: tracing::Span,
}

/// The innermost event open on this thread, for the executor to hand to its workers; `None`
/// when nothing is being recorded here.
pub(crate) fn current_parent() -> Option<Parent> {
    let (id, child_depth) = THREAD
        .try_with(|thread| {
            let open = thread.open.borrow();
            let inherited = thread.inherited.get();
            match open.last() {
                Some(&id) => Some((id, open.len() + inherited.map_or(0, |(_, depth)| depth))),
                None => inherited,
            }
        })
        .ok()
        .flatten()?;
    Some(Parent {
        id,
        child_depth,
        span: tracing::Span::current(),
    })
}

/// Makes this (worker) thread's events children of `parent` until the guard is dropped: in the
/// in-memory trace (`parent` / `depth`) and as `tracing` spans (the parent's span is entered
/// here too, so spans opened on the worker nest under it).
pub(crate) fn inherit(parent: &Parent) -> InheritGuard {
    let previous = THREAD
        .try_with(|thread| {
            thread
                .inherited
                .replace(Some((parent.id, parent.child_depth)))
        })
        .ok()
        .flatten();
    InheritGuard {
        previous,
        _span: parent.span.clone().entered(),
    }
}

/// Restores what the thread inherited before; see [`inherit`].
pub(crate) struct InheritGuard {
    previous: Option<(u64, usize)>,
    _span: tracing::span::EnteredSpan,
}

impl Drop for InheritGuard {
    fn drop(&mut self) {
        let previous = self.previous;
        let _ = THREAD.try_with(|thread| thread.inherited.set(previous));
    }
}

/// Takes everything recorded so far, leaving the in-memory trace empty.
///
/// Safe to call while other threads record: each event ends up in exactly one `Trace`, and an
/// event still running when this is called lands in the next one. The events come ordered by
/// start time. At most [`TRACE_CAPACITY`] events are kept between two calls; see
/// [`Trace::dropped`].
///
/// ```standalone_crate
/// use xcs::{Operator, XcsError, execution_options};
///
/// struct Double;
/// impl Operator for Double {
///     type Input = u64;
///     type Output = u64;
///     fn forward(&self, input: u64) -> Result<u64, XcsError> {
///         Ok(input * 2)
///     }
///     fn name(&self) -> &str {
///         "double_take_trace_doc"
///     }
/// }
///
/// execution_options!(trace_execution = true => Double.call(21))?;
/// let trace = xcs::take_trace();
/// let event = trace.iter().find(|e| e.operator == "double_take_trace_doc").unwrap();
/// assert_eq!(event.outcome, xcs::Outcome::Ok);
/// assert_eq!(event.index, None);
/// # Ok::<(), XcsError>(())
/// ```
pub fn take_trace() -> Trace {
    buffer().take()
}

/// An event being recorded: the span is entered and the event is open on this thread until
/// [`finish`](Recorder::finish) or drop (which records [`Outcome::Panicked`]).
#[must_use = "dropping a Recorder records the event as panicked; call `finish`"]
pub(crate) struct Recorder {
    id: u64,
    parent: Option<u64>,
    depth: usize,
    operator: String,
    index: Option<usize>,
    begun: Instant,
    start: Duration,
    outcome: Option<Outcome>,
    attempt: u32,
    usage: Option<crate::Usage>,
    resource_wait: Duration,
    span: tracing::span::EnteredSpan,
    /// Begun and finished on one thread (the open-event stack is thread-local).
    _not_send: PhantomData<*const ()>,
}

/// The `tracing` span of a call (`index: None`) or a batch item of `operator`, under the span
/// current on this thread; `outcome` and `attempt` are recorded when known.
fn span_of(operator: &str, index: Option<usize>) -> tracing::Span {
    match index {
        None => tracing::info_span!(
            target: "xcs",
            "call",
            operator,
            index = tracing::field::Empty,
            outcome = tracing::field::Empty,
            attempt = tracing::field::Empty,
        ),
        Some(i) => tracing::info_span!(
            target: "xcs",
            "item",
            operator,
            index = i,
            outcome = tracing::field::Empty,
            attempt = tracing::field::Empty,
        ),
    }
}

/// Starts recording a call (`index: None`) or a batch item (`index: Some(i)`) of `operator`,
/// entering its `tracing` span on the current thread.
pub(crate) fn begin(operator: &str, index: Option<usize>) -> Recorder {
    let span = span_of(operator, index);
    let id = NEXT_EVENT_ID.fetch_add(1, Ordering::Relaxed);
    let (parent, depth) = THREAD
        .try_with(|thread| {
            let mut open = thread.open.borrow_mut();
            let (parent, depth) = match (open.last(), thread.inherited.get()) {
                (Some(&parent), inherited) => {
                    (Some(parent), open.len() + inherited.map_or(0, |(_, d)| d))
                }
                (None, Some((parent, depth))) => (Some(parent), depth),
                (None, None) => (None, 0),
            };
            open.push(id);
            (parent, depth)
        })
        .unwrap_or((None, 0));
    let epoch = *EPOCH.get_or_init(Instant::now);
    let begun = Instant::now();
    Recorder {
        id,
        parent,
        depth,
        operator: operator.to_owned(),
        index,
        begun,
        start: begun.saturating_duration_since(epoch),
        outcome: None,
        attempt: 1,
        usage: None,
        resource_wait: Duration::ZERO,
        span: span.entered(),
        _not_send: PhantomData,
    }
}

impl Recorder {
    /// Marks the event as attempt `attempt` of its call (retries are 2, 3, …).
    pub(crate) fn attempt(mut self, attempt: u32) -> Self {
        if attempt > 1 {
            self.attempt = attempt;
            self.span.record("attempt", attempt);
        }
        self
    }

    /// What the attempt recorded and how long it waited for its resource.
    pub(crate) fn charged(mut self, usage: Option<crate::Usage>, resource_wait: Duration) -> Self {
        self.usage = usage;
        self.resource_wait = resource_wait;
        self
    }

    /// Ends the event with `outcome` and records it.
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
        // Drop records it.
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let duration = self.begun.elapsed();
        let outcome = self.outcome.unwrap_or(Outcome::Panicked);
        self.span.record("outcome", outcome.as_str());
        let id = self.id;
        let (thread, thread_id) = THREAD
            .try_with(|thread| {
                let mut open = thread.open.borrow_mut();
                if let Some(pos) = open.iter().rposition(|&open_id| open_id == id) {
                    open.remove(pos);
                }
                (thread.name.clone(), thread.id)
            })
            .unwrap_or_else(|_| ("<exiting>".to_owned(), 0));
        let event = TraceEvent {
            id,
            parent: self.parent,
            depth: self.depth,
            operator: std::mem::take(&mut self.operator),
            index: self.index,
            thread,
            thread_id,
            start: self.start,
            duration,
            outcome,
            attempt: self.attempt,
            usage: self.usage,
            resource_wait: self.resource_wait,
            answered_by: take_answer(id),
            // The attempts of a hedged call are recorded as `AsyncEvent`s.
            hedge: None,
        };
        buffer().push(event, TRACE_CAPACITY);
        // The span is exited when `self.span` drops, after the event is recorded.
    }
}

/// An event of an async call or item, or of one of the two racing attempts of a hedged sync
/// call: begun on one thread, possibly finished on another, or beside another open event of
/// the same call, so it keeps no place on any thread's open-event stack. While its future is polled, the poll-scoped
/// wrapper makes it the parent of what is recorded on the polling thread ([`AsyncEvent::parent`]).
pub(crate) struct AsyncEvent {
    id: u64,
    parent: Option<u64>,
    depth: usize,
    operator: String,
    index: Option<usize>,
    begun: Instant,
    start: Duration,
    span: tracing::Span,
    outcome: Option<Outcome>,
    attempt: u32,
    usage: Option<crate::Usage>,
    resource_wait: Duration,
    /// For an attempt that may race a hedge: whether it is the hedge, and the marks the two
    /// attempts share.
    race: Option<(bool, std::sync::Arc<RaceMarks>)>,
    /// Without `race`: the mark set by [`AsyncEvent::hedged`].
    hedge: Option<HedgeMark>,
}

/// What the two attempts of a hedged async call share, so that each one's event says, when it
/// ends (finished or dropped), whether the call was raced and whether it lost.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
#[derive(Debug, Default)]
pub(crate) struct RaceMarks(std::sync::atomic::AtomicU8);

#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
impl RaceMarks {
    const RACED: u8 = 1;
    const FIRST_LOST: u8 = 2;
    const HEDGE_LOST: u8 = 4;

    /// The hedge has started: both attempts are marked.
    pub(crate) fn raced(&self) {
        self.0.fetch_or(Self::RACED, Ordering::SeqCst);
    }

    /// The attempt (`is_hedge`) lost: it is about to be dropped.
    pub(crate) fn lost(&self, is_hedge: bool) {
        let bit = if is_hedge {
            Self::HEDGE_LOST
        } else {
            Self::FIRST_LOST
        };
        self.0.fetch_or(bit, Ordering::SeqCst);
    }

    /// Whether the call was raced, and whether the attempt `is_hedge` lost.
    fn read(&self, is_hedge: bool) -> (bool, bool) {
        let marks = self.0.load(Ordering::SeqCst);
        let bit = if is_hedge {
            Self::HEDGE_LOST
        } else {
            Self::FIRST_LOST
        };
        (marks & Self::RACED != 0, marks & bit != 0)
    }
}

/// Starts recording an async call (`index: None`) or item under `parent` (the event open where
/// the call was made, if any).
pub(crate) fn begin_async(
    operator: &str,
    index: Option<usize>,
    parent: Option<&Parent>,
) -> AsyncEvent {
    let span = {
        let _in_parent = parent.map(|p| p.span.clone().entered());
        span_of(operator, index)
    };
    let epoch = *EPOCH.get_or_init(Instant::now);
    let begun = Instant::now();
    AsyncEvent {
        id: NEXT_EVENT_ID.fetch_add(1, Ordering::Relaxed),
        parent: parent.map(|p| p.id),
        depth: parent.map_or(0, |p| p.child_depth),
        operator: operator.to_owned(),
        index,
        begun,
        start: begun.saturating_duration_since(epoch),
        span,
        outcome: None,
        attempt: 1,
        usage: None,
        resource_wait: Duration::ZERO,
        race: None,
        hedge: None,
    }
}

impl AsyncEvent {
    /// Marks the event as one of the two attempts of a hedged call, known when it ends (the
    /// sync driver's race); see [`racing`](Self::racing) for a mark known only then.
    pub(crate) fn hedged(mut self, mark: Option<HedgeMark>) -> Self {
        self.hedge = mark;
        self
    }

    /// Marks the event as an attempt that may race a hedge (`is_hedge`: it is the hedge).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn racing(mut self, is_hedge: bool, marks: std::sync::Arc<RaceMarks>) -> Self {
        self.race = Some((is_hedge, marks));
        self
    }

    /// Marks the event as attempt `attempt` of its call.
    pub(crate) fn attempt(mut self, attempt: u32) -> Self {
        if attempt > 1 {
            self.attempt = attempt;
            self.span.record("attempt", attempt);
        }
        self
    }

    /// This event as the parent of what runs inside it.
    pub(crate) fn parent(&self) -> Parent {
        Parent {
            id: self.id,
            child_depth: self.depth + 1,
            span: self.span.clone(),
        }
    }

    /// Ends the event with `outcome` and records it.
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
    }

    /// What the attempt recorded and how long it waited for its resource.
    pub(crate) fn charged(mut self, usage: Option<crate::Usage>, resource_wait: Duration) -> Self {
        self.usage = usage;
        self.resource_wait = resource_wait;
        self
    }
}

impl Drop for AsyncEvent {
    /// Records the event; one dropped unfinished (its future was dropped at a deadline, or
    /// panicked) is recorded as a timeout or a panic.
    fn drop(&mut self) {
        let race = self
            .race
            .as_ref()
            .map(|(is_hedge, marks)| (*is_hedge, marks.read(*is_hedge)));
        let lost = race.is_some_and(|(_, (_, lost))| lost);
        let outcome = self.outcome.unwrap_or(if std::thread::panicking() {
            Outcome::Panicked
        } else if lost {
            Outcome::Cancelled
        } else {
            Outcome::Timeout
        });
        let hedge = match race {
            Some(race) => Some(race)
                .filter(|(_, (raced, _))| *raced)
                .map(|(is_hedge, _)| HedgeMark {
                    is_hedge,
                    won: outcome == Outcome::Ok,
                }),
            None => self.hedge,
        };
        self.span.record("outcome", outcome.as_str());
        let (thread, thread_id) = THREAD
            .try_with(|thread| (thread.name.clone(), thread.id))
            .unwrap_or_else(|_| ("<exiting>".to_owned(), 0));
        let event = TraceEvent {
            id: self.id,
            parent: self.parent,
            depth: self.depth,
            operator: std::mem::take(&mut self.operator),
            index: self.index,
            thread,
            thread_id,
            start: self.start,
            duration: self.begun.elapsed(),
            outcome,
            attempt: self.attempt,
            usage: self.usage,
            resource_wait: self.resource_wait,
            answered_by: take_answer(self.id),
            hedge,
        };
        buffer().push(event, TRACE_CAPACITY);
    }
}

/// Which operator answered the call of an open event (noted by a fallback's body), until the
/// event is recorded: `(event id, operator)`.
static ANSWERS: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());

/// How many notes [`ANSWERS`] holds: events read it before taking the lock.
static ANSWERS_HELD: AtomicU64 = AtomicU64::new(0);

/// The most notes kept: a note whose event was recorded first (a body abandoned at its
/// deadline) is never taken, so the oldest go.
const MAX_ANSWERS: usize = 1024;

fn answers() -> MutexGuard<'static, Vec<(u64, String)>> {
    ANSWERS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Notes that `operator` answered the call whose event is the innermost one open here (the
/// running body's own event): it becomes that event's [`TraceEvent::answered_by`]. Nothing
/// when no event is open.
pub(crate) fn note_answer(operator: &str) {
    let Some(parent) = current_parent() else {
        return;
    };
    let mut answers = answers();
    if answers.len() >= MAX_ANSWERS {
        answers.remove(0);
    } else {
        ANSWERS_HELD.fetch_add(1, Ordering::SeqCst);
    }
    answers.push((parent.id, operator.to_owned()));
}

/// The answer noted for event `id`, if any (taken).
fn take_answer(id: u64) -> Option<String> {
    if ANSWERS_HELD.load(Ordering::SeqCst) == 0 {
        return None;
    }
    let mut answers = answers();
    let at = answers.iter().rposition(|(event, _)| *event == id)?;
    ANSWERS_HELD.fetch_sub(1, Ordering::SeqCst);
    Some(answers.remove(at).1)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{event, lock, mine};
    use super::*;
    use std::fmt;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn records_names_indices_threads_and_outcomes() {
        let _guard = lock();
        begin("rec_call", None).finish(Outcome::Ok);
        begin("rec_item", Some(3)).finish(Outcome::Error);
        begin("rec_cached", None).finish(Outcome::CacheHit);
        std::thread::Builder::new()
            .name("rec-worker".into())
            .spawn(|| begin("rec_timeout", Some(0)).finish(Outcome::Timeout))
            .unwrap()
            .join()
            .unwrap();
        let events = mine(take_trace(), "rec_");
        assert_eq!(events.len(), 4, "{events:#?}");
        let by = |name: &str| events.iter().find(|e| e.operator == name).unwrap();

        let call = by("rec_call");
        assert_eq!((call.index, call.outcome), (None, Outcome::Ok));
        assert_eq!(call.label(), "rec_call");
        let item = by("rec_item");
        assert_eq!((item.index, item.outcome), (Some(3), Outcome::Error));
        assert_eq!(item.label(), "rec_item[3]");
        assert!(item.is_item());
        assert_eq!(by("rec_cached").outcome, Outcome::CacheHit);
        let other = by("rec_timeout");
        assert_eq!(other.outcome, Outcome::Timeout);
        assert_eq!(other.thread, "rec-worker");
        assert_ne!(other.thread_id, call.thread_id);
        assert_eq!(call.thread_id, item.thread_id);
        assert!(call.thread_id >= 1);
        assert!(call.start <= item.start, "ordered by start");
        assert!(call.id < item.id);
        for e in &events {
            assert_eq!((e.parent, e.depth), (None, 0));
        }
    }

    #[test]
    fn unnamed_threads_are_labelled() {
        let _guard = lock();
        std::thread::spawn(|| begin("unnamed_op", None).finish(Outcome::Ok))
            .join()
            .unwrap();
        let events = mine(take_trace(), "unnamed_op");
        assert_eq!(events[0].thread, "<unnamed>");
    }

    #[test]
    fn nesting_gives_parents_and_depths() {
        let _guard = lock();
        let outer = begin("nest_vmap", None);
        let item = begin("nest_item", Some(0));
        begin("nest_inner", None).finish(Outcome::Ok);
        item.finish(Outcome::Ok);
        begin("nest_item", Some(1)).finish(Outcome::Ok);
        outer.finish(Outcome::Ok);
        begin("nest_after", None).finish(Outcome::Ok);

        let events = mine(take_trace(), "nest_");
        let labels: Vec<String> = events.iter().map(TraceEvent::label).collect();
        assert_eq!(
            labels,
            [
                "nest_vmap",
                "nest_item[0]",
                "nest_inner",
                "nest_item[1]",
                "nest_after"
            ]
        );
        let [vmap, item0, inner, item1, after] = &events[..] else {
            unreachable!()
        };
        assert_eq!((vmap.parent, vmap.depth), (None, 0));
        assert_eq!((item0.parent, item0.depth), (Some(vmap.id), 1));
        assert_eq!((inner.parent, inner.depth), (Some(item0.id), 2));
        assert_eq!((item1.parent, item1.depth), (Some(vmap.id), 1));
        assert_eq!((after.parent, after.depth), (None, 0));
        assert!(vmap.end() >= item1.end() && item0.end() >= inner.end());
    }

    #[test]
    fn dropping_without_finish_records_panicked() {
        let _guard = lock();
        let result = std::panic::catch_unwind(|| {
            let _outer = begin("panic_outer", None);
            let _item = begin("panic_item", Some(7));
            panic!("boom");
        });
        assert!(result.is_err());
        let events = mine(take_trace(), "panic_");
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| e.outcome == Outcome::Panicked));
        // The open-event stack unwound too: a new event is a root again.
        begin("panic_after", None).finish(Outcome::Ok);
        let after = mine(take_trace(), "panic_after");
        assert_eq!((after[0].parent, after[0].depth), (None, 0));
    }

    #[test]
    fn concurrent_recording_with_racing_take_loses_nothing() {
        const THREADS: usize = 6;
        const PER_THREAD: usize = 2_000;
        let _guard = lock();
        let done = Arc::new(AtomicBool::new(false));
        let taker = {
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !done.load(Ordering::Acquire) {
                    seen.extend(mine(take_trace(), "conc_"));
                    std::thread::yield_now();
                }
                seen
            })
        };
        let recorders: Vec<_> = (0..THREADS)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..PER_THREAD {
                        let outer = begin("conc_call", None);
                        begin("conc_item", Some(t * PER_THREAD + i)).finish(Outcome::Ok);
                        outer.finish(Outcome::Ok);
                    }
                })
            })
            .collect();
        for r in recorders {
            r.join().unwrap();
        }
        done.store(true, Ordering::Release);
        let mut seen = taker.join().unwrap();
        seen.extend(mine(take_trace(), "conc_"));

        assert_eq!(seen.len(), 2 * THREADS * PER_THREAD);
        let mut indices: Vec<usize> = seen.iter().filter_map(|e| e.index).collect();
        indices.sort_unstable();
        assert_eq!(indices, (0..THREADS * PER_THREAD).collect::<Vec<_>>());
        let mut ids: Vec<u64> = seen.iter().map(|e| e.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), seen.len(), "every event exactly once");
    }

    #[test]
    fn full_buffer_drops_oldest_and_counts() {
        let mut buffer = Buffer::default();
        for i in 0..5 {
            let mut e = event("cap_op", Some(i), 1, Outcome::Ok);
            e.id = i as u64;
            e.start = Duration::from_millis(i as u64);
            buffer.push(e, 3);
        }
        let trace = buffer.take();
        assert_eq!(trace.dropped(), 2);
        let kept: Vec<Option<usize>> = trace.iter().map(|e| e.index).collect();
        assert_eq!(kept, [Some(2), Some(3), Some(4)]);
        let again = buffer.take();
        assert!(again.is_empty() && again.dropped() == 0);
    }

    #[test]
    fn spans_have_target_xcs_and_fields() {
        use std::fmt::Write as _;
        use tracing::field::{Field, Visit};
        use tracing::span::{Attributes, Id, Record};
        use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

        #[derive(Clone, Default)]
        struct Capture(Arc<Mutex<Vec<String>>>);
        struct Fields<'a>(&'a mut String);
        impl Visit for Fields<'_> {
            fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
                let _ = write!(self.0, " {}={:?}", field.name(), value);
            }
            fn record_str(&mut self, field: &Field, value: &str) {
                let _ = write!(self.0, " {}={}", field.name(), value);
            }
        }
        impl<S: tracing::Subscriber> Layer<S> for Capture {
            fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
                let meta = attrs.metadata();
                let mut line = format!("new {} {}", meta.target(), meta.name());
                attrs.record(&mut Fields(&mut line));
                self.0.lock().unwrap().push(line);
            }
            fn on_record(&self, _: &Id, values: &Record<'_>, _: Context<'_, S>) {
                let mut line = "record".to_owned();
                values.record(&mut Fields(&mut line));
                self.0.lock().unwrap().push(line);
            }
        }

        let capture = Capture::default();
        let subscriber = tracing_subscriber::registry().with(capture.clone());
        let _guard = lock();
        tracing::subscriber::with_default(subscriber, || {
            let outer = begin("span_call", None);
            begin("span_item", Some(4)).finish(Outcome::Error);
            outer.finish(Outcome::Ok);
        });
        let _ = mine(take_trace(), "span_");
        let lines = capture.0.lock().unwrap().clone();
        assert_eq!(
            lines,
            [
                "new xcs call operator=span_call",
                "new xcs item operator=span_item index=4",
                "record outcome=error",
                "record outcome=ok",
            ]
        );
    }
}
