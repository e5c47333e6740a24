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

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The most events the in-memory trace holds between two [`take_trace`] calls.
///
/// When it is full, each new event evicts the oldest one, and [`Trace::dropped`] counts the
/// evicted events. A million events is a few hundred megabytes at worst (operator and thread
/// names are stored per event) and minutes of a busy pipeline; take the trace more often to keep
/// everything.
pub const TRACE_CAPACITY: usize = 1_000_000;

/// How a recorded call or batch item ended.
///
/// [`as_str`](Outcome::as_str) and `Display` give the lowercase, machine-friendly names used in
/// the summary table and the Chrome trace: `ok`, `error`, `timeout`, `cache_hit`, `panicked`.
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
}

impl Outcome {
    /// Every outcome, in the order the summary table lists them.
    pub const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::Error,
        Outcome::Timeout,
        Outcome::CacheHit,
        Outcome::Panicked,
    ];

    /// The lowercase name: `"ok"`, `"error"`, `"timeout"`, `"cache_hit"` or `"panicked"`.
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
        }
    }

    const fn slot(self) -> usize {
        match self {
            Outcome::Ok => 0,
            Outcome::Error => 1,
            Outcome::Timeout => 2,
            Outcome::CacheHit => 3,
            Outcome::Panicked => 4,
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
/// process was recorded), so events of different threads and of successive [`take_trace`] calls
/// can be compared directly.
#[derive(Clone, Debug, PartialEq, Eq)]
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
}

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

/// Events drained from the in-memory trace by [`take_trace`], ordered by start time.
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
    events: Vec<TraceEvent>,
    dropped: u64,
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

    /// How many events were evicted, oldest first, because more than [`TRACE_CAPACITY`] were
    /// recorded between two [`take_trace`] calls.
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

    /// The trace in the [Chrome trace-event format], which <https://ui.perfetto.dev> ("Open trace
    /// file") and `chrome://tracing` open as a timeline.
    ///
    /// The object form, `{"traceEvents": […], "displayTimeUnit": "ms"}`: one complete event
    /// (`"ph": "X"`) per recorded event, with `name` = [`TraceEvent::label`], `cat` = `"xcs"`,
    /// `ts`/`dur` in microseconds, `pid` 1, `tid` = [`TraceEvent::thread_id`] and `args` holding
    /// the operator, index, outcome, id, parent and depth; plus one `thread_name` metadata event
    /// (`"ph": "M"`) per thread so the timeline's rows carry the thread names. `otherData`
    /// records the number of [dropped](Trace::dropped) events.
    ///
    /// [Chrome trace-event format]: https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU
    pub fn to_chrome_json(&self) -> String {
        self.chrome_value().to_string()
    }

    /// Writes [`to_chrome_json`](Trace::to_chrome_json) to `path`, creating or truncating it.
    ///
    /// # Errors
    /// Any error creating or writing the file.
    pub fn write_chrome_json(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.to_chrome_json())
    }

    fn chrome_value(&self) -> Value {
        let mut threads: BTreeMap<u64, &str> = BTreeMap::new();
        for event in &self.events {
            threads.entry(event.thread_id).or_insert(&event.thread);
        }
        let mut trace_events = Vec::with_capacity(self.events.len() + threads.len() + 1);
        trace_events.push(json!({
            "name": "process_name", "ph": "M", "pid": 1, "tid": 0,
            "args": { "name": "xcs" },
        }));
        for (tid, name) in &threads {
            trace_events.push(json!({
                "name": "thread_name", "ph": "M", "pid": 1, "tid": tid,
                "args": { "name": name },
            }));
        }
        for event in &self.events {
            trace_events.push(json!({
                "name": event.label(),
                "cat": "xcs",
                "ph": "X",
                "ts": micros(event.start),
                "dur": micros(event.duration),
                "pid": 1,
                "tid": event.thread_id,
                "args": {
                    "operator": event.operator,
                    "index": event.index,
                    "outcome": event.outcome.as_str(),
                    "id": event.id,
                    "parent": event.parent,
                    "depth": event.depth,
                    "attempt": event.attempt,
                },
            }));
        }
        json!({
            "traceEvents": trace_events,
            "displayTimeUnit": "ms",
            "otherData": { "producer": "xcs", "dropped": self.dropped },
        })
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

fn micros(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1_000.0
}

/// Statistics of one operator's events in a [`TraceSummary`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OperatorStats {
    /// The operator's name.
    pub operator: String,
    /// How many events (calls and batch items).
    pub count: usize,
    /// How many of them were batch items.
    pub items: usize,
    /// How many of them were retries (attempts after the first).
    pub retries: usize,
    /// The sum of their durations.
    pub total: Duration,
    /// `total / count`.
    pub mean: Duration,
    /// The longest duration.
    pub max: Duration,
    outcomes: [usize; Outcome::ALL.len()],
}

impl OperatorStats {
    fn new(operator: &str) -> Self {
        OperatorStats {
            operator: operator.to_owned(),
            count: 0,
            items: 0,
            retries: 0,
            total: Duration::ZERO,
            mean: Duration::ZERO,
            max: Duration::ZERO,
            outcomes: [0; Outcome::ALL.len()],
        }
    }

    /// How many events ended with `outcome`.
    pub fn count_of(&self, outcome: Outcome) -> usize {
        self.outcomes[outcome.slot()]
    }

    /// `(outcome, count)` for every [`Outcome`], zeros included, in [`Outcome::ALL`] order.
    pub fn outcomes(&self) -> impl Iterator<Item = (Outcome, usize)> + '_ {
        Outcome::ALL.into_iter().map(|o| (o, self.count_of(o)))
    }
}

/// Per-operator statistics of a [`Trace`], ordered by total time, largest first (ties: by name).
///
/// `Display` prints an aligned table, one row per operator:
///
/// ```text
/// operator         count  retries     total      mean       max  ok  error  timeout  cache_hit  panicked
/// vmap(generate)       1        0  40.112ms  40.112ms  40.112ms   1      0        0          0         0
/// generate            10        2  38.901ms   3.890ms   7.003ms   8      2        0          0         0
/// ```
///
/// `count` counts every attempt; `retries` how many of them were attempts after the first
/// (under `max_retries`), so `count - retries` is the number of calls and items.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceSummary {
    operators: Vec<OperatorStats>,
}

impl TraceSummary {
    fn of(events: &[TraceEvent]) -> Self {
        let mut by_name: HashMap<&str, OperatorStats> = HashMap::new();
        for event in events {
            let stats = by_name
                .entry(&event.operator)
                .or_insert_with(|| OperatorStats::new(&event.operator));
            stats.count += 1;
            stats.items += usize::from(event.is_item());
            stats.retries += usize::from(event.attempt > 1);
            stats.total += event.duration;
            stats.max = stats.max.max(event.duration);
            stats.outcomes[event.outcome.slot()] += 1;
        }
        let mut operators: Vec<OperatorStats> = by_name.into_values().collect();
        for stats in &mut operators {
            stats.mean = mean(stats.total, stats.count);
        }
        operators.sort_by(|a, b| {
            b.total
                .cmp(&a.total)
                .then_with(|| a.operator.cmp(&b.operator))
        });
        TraceSummary { operators }
    }

    /// The statistics of the operator named `operator`, if it has events.
    pub fn get(&self, operator: &str) -> Option<&OperatorStats> {
        self.operators.iter().find(|s| s.operator == operator)
    }

    /// Iterates over the operators, largest total time first.
    pub fn iter(&self) -> std::slice::Iter<'_, OperatorStats> {
        self.operators.iter()
    }

    /// The number of operators.
    pub fn len(&self) -> usize {
        self.operators.len()
    }

    /// Whether there are no operators (the trace was empty).
    pub fn is_empty(&self) -> bool {
        self.operators.is_empty()
    }
}

impl<'a> IntoIterator for &'a TraceSummary {
    type Item = &'a OperatorStats;
    type IntoIter = std::slice::Iter<'a, OperatorStats>;

    fn into_iter(self) -> Self::IntoIter {
        self.operators.iter()
    }
}

fn mean(total: Duration, count: usize) -> Duration {
    match u128::try_from(count) {
        Ok(n) if n > 0 => {
            let nanos = total.as_nanos() / n;
            Duration::new(
                u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX),
                (nanos % 1_000_000_000) as u32,
            )
        }
        _ => Duration::ZERO,
    }
}

impl fmt::Display for TraceSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DURATION_WIDTH: usize = 10;
        let name_width = self
            .operators
            .iter()
            .map(|s| s.operator.chars().count())
            .chain(["operator".len()])
            .max()
            .unwrap_or(0);
        write!(
            f,
            "{:<name_width$}  {:>5}  {:>7}  {:>DURATION_WIDTH$}  {:>DURATION_WIDTH$}  \
             {:>DURATION_WIDTH$}",
            "operator", "count", "retries", "total", "mean", "max"
        )?;
        for outcome in Outcome::ALL {
            write!(f, "  {outcome}")?;
        }
        for stats in &self.operators {
            write!(
                f,
                "\n{:<name_width$}  {:>5}  {:>7}  {:>DURATION_WIDTH$}  {:>DURATION_WIDTH$}  \
                 {:>DURATION_WIDTH$}",
                stats.operator,
                stats.count,
                stats.retries,
                HumanDuration(stats.total),
                HumanDuration(stats.mean),
                HumanDuration(stats.max),
            )?;
            for (outcome, count) in stats.outcomes() {
                let width = outcome.as_str().len();
                write!(f, "  {count:>width$}")?;
            }
        }
        Ok(())
    }
}

/// A duration with three decimals in the largest unit that keeps it ≥ 1: `1.250s`, `40.112ms`,
/// `7.003µs`, `830ns`.
struct HumanDuration(Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        let text = if nanos >= 1_000_000_000 {
            format!("{:.3}s", self.0.as_secs_f64())
        } else if nanos >= 1_000_000 {
            format!("{:.3}ms", nanos as f64 / 1e6)
        } else if nanos >= 1_000 {
            format!("{:.3}µs", nanos as f64 / 1e3)
        } else {
            format!("{nanos}ns")
        };
        f.pad(&text)
    }
}

/// The process-wide buffer: events in the order they finished, bounded by a capacity.
#[derive(Default)]
struct Buffer {
    events: VecDeque<TraceEvent>,
    dropped: u64,
}

impl Buffer {
    fn push(&mut self, event: TraceEvent, capacity: usize) {
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
fn buffer() -> MutexGuard<'static, Buffer> {
    BUFFER.lock().unwrap_or_else(PoisonError::into_inner)
}

static EPOCH: OnceLock<Instant> = OnceLock::new();
static NEXT_EVENT_ID: AtomicU64 = AtomicU64::new(1);
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
    id: u64,
    child_depth: usize,
    span: tracing::Span,
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
        };
        buffer().push(event, TRACE_CAPACITY);
        // The span is exited when `self.span` drops, after the event is recorded.
    }
}

/// An event of an async call or item: begun on one thread, possibly finished on another, so it
/// keeps no place on any thread's open-event stack. While its future is polled, the poll-scoped
/// wrapper makes it the parent of what is recorded on the polling thread ([`AsyncEvent::parent`]).
#[cfg(feature = "tokio")]
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
}

/// Starts recording an async call (`index: None`) or item under `parent` (the event open where
/// the call was made, if any).
#[cfg(feature = "tokio")]
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
    }
}

#[cfg(feature = "tokio")]
impl AsyncEvent {
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
}

#[cfg(feature = "tokio")]
impl Drop for AsyncEvent {
    /// Records the event; one dropped unfinished (its future was dropped at a deadline, or
    /// panicked) is recorded as a timeout or a panic.
    fn drop(&mut self) {
        let outcome = self.outcome.unwrap_or(if std::thread::panicking() {
            Outcome::Panicked
        } else {
            Outcome::Timeout
        });
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
        };
        buffer().push(event, TRACE_CAPACITY);
    }
}

/// A parent for events recorded here on behalf of another process (a cluster worker running a
/// caller's chunk): it is no event itself; [`take_under`] later takes what was recorded under it.
#[cfg(feature = "nats")]
pub(crate) fn detached_root() -> Parent {
    Parent {
        id: NEXT_EVENT_ID.fetch_add(1, Ordering::Relaxed),
        child_depth: 0,
        span: tracing::Span::none(),
    }
}

/// The id of a [`detached_root`].
#[cfg(feature = "nats")]
pub(crate) fn root_id(root: &Parent) -> u64 {
    root.id
}

/// Removes from the in-memory trace and returns every event recorded under `root` (at any
/// depth), in the order they finished.
#[cfg(feature = "nats")]
pub(crate) fn take_under(root: u64) -> Vec<TraceEvent> {
    let mut buffer = buffer();
    let parents: HashMap<u64, Option<u64>> =
        buffer.events.iter().map(|e| (e.id, e.parent)).collect();
    let under = |mut parent: Option<u64>| {
        while let Some(id) = parent {
            if id == root {
                return true;
            }
            parent = parents.get(&id).copied().flatten();
        }
        false
    };
    let (taken, kept): (Vec<TraceEvent>, Vec<TraceEvent>) =
        buffer.events.drain(..).partition(|e| under(e.parent));
    buffer.events = kept.into();
    taken
}

/// Records events another process recorded under its root `root` as if they had happened here
/// under `parent`: fresh ids, parents and depths rewritten, `start` already on this process's
/// clock.
#[cfg(feature = "nats")]
pub(crate) fn adopt_remote(parent: Option<&Parent>, root: u64, events: Vec<TraceEvent>) {
    let ids: HashMap<u64, u64> = events
        .iter()
        .map(|e| (e.id, NEXT_EVENT_ID.fetch_add(1, Ordering::Relaxed)))
        .collect();
    let depth = parent.map_or(0, |p| p.child_depth);
    let mut buffer = buffer();
    for mut event in events {
        event.id = ids[&event.id];
        event.parent = match event.parent {
            Some(id) if id == root => parent.map(|p| p.id),
            Some(id) => ids.get(&id).copied(),
            None => parent.map(|p| p.id),
        };
        event.depth += depth;
        buffer.push(event, TRACE_CAPACITY);
    }
}

/// The time since this process's trace epoch (what [`TraceEvent::start`] is measured from).
#[cfg(feature = "nats")]
pub(crate) fn since_epoch() -> Duration {
    EPOCH.get_or_init(Instant::now).elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    /// Tests that take the process-wide buffer run one at a time; each also filters events by
    /// operator names unique to it, because the runtime's own tests may record concurrently.
    static LOCK: Mutex<()> = Mutex::new(());

    fn lock() -> MutexGuard<'static, ()> {
        LOCK.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn mine(trace: Trace, prefix: &str) -> Vec<TraceEvent> {
        trace
            .into_events()
            .into_iter()
            .filter(|e| e.operator.starts_with(prefix))
            .collect()
    }

    fn event(operator: &str, index: Option<usize>, ms: u64, outcome: Outcome) -> TraceEvent {
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
        }
    }

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
    fn summary_numbers() {
        let trace = Trace {
            events: vec![
                event("sum_a", Some(0), 10, Outcome::Ok),
                event("sum_a", Some(1), 30, Outcome::Error),
                event("sum_a", None, 20, Outcome::Ok),
                event("sum_b", None, 100, Outcome::CacheHit),
                event("sum_c", None, 1, Outcome::Timeout),
            ],
            dropped: 0,
        };
        let summary = trace.summary();
        let order: Vec<&str> = summary.iter().map(|s| s.operator.as_str()).collect();
        assert_eq!(order, ["sum_b", "sum_a", "sum_c"]);
        assert_eq!(summary.len(), 3);
        let a = summary.get("sum_a").unwrap();
        assert_eq!((a.count, a.items), (3, 2));
        assert_eq!(a.total, Duration::from_millis(60));
        assert_eq!(a.mean, Duration::from_millis(20));
        assert_eq!(a.max, Duration::from_millis(30));
        assert_eq!(a.count_of(Outcome::Ok), 2);
        assert_eq!(a.count_of(Outcome::Error), 1);
        assert_eq!(a.count_of(Outcome::Panicked), 0);
        assert_eq!(summary.get("sum_b").unwrap().count_of(Outcome::CacheHit), 1);
        assert_eq!(summary.get("sum_c").unwrap().count_of(Outcome::Timeout), 1);
        assert!(summary.get("nope").is_none());
        assert!(Trace::default().summary().is_empty());

        let table = summary.to_string();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("operator"));
        assert!(lines[0].contains("  count  retries  "), "{table}");
        assert!(lines[0].ends_with("ok  error  timeout  cache_hit  panicked"));
        assert!(lines[1].starts_with("sum_b   "));
        assert!(lines[2].contains("20.000ms") && lines[2].contains("60.000ms"));
        // Aligned: every row as wide as the header (chars, `µ` included).
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width), "{table}");
    }

    #[test]
    fn human_durations() {
        let show = |d| HumanDuration(d).to_string();
        assert_eq!(show(Duration::from_nanos(830)), "830ns");
        assert_eq!(show(Duration::from_nanos(7_003)), "7.003µs");
        assert_eq!(show(Duration::from_micros(40_112)), "40.112ms");
        assert_eq!(show(Duration::from_millis(1_250)), "1.250s");
        assert_eq!(
            mean(Duration::from_secs(3), 2),
            Duration::from_millis(1_500)
        );
        assert_eq!(mean(Duration::from_secs(3), 0), Duration::ZERO);
    }

    #[test]
    fn chrome_json_parses_back() {
        let _guard = lock();
        let outer = begin("chrome_vmap", None);
        begin("chrome \"quoted\"", Some(2)).finish(Outcome::Error);
        outer.finish(Outcome::Ok);
        std::thread::Builder::new()
            .name("chrome-worker".into())
            .spawn(|| begin("chrome_other", Some(0)).finish(Outcome::Ok))
            .unwrap()
            .join()
            .unwrap();
        let events = mine(take_trace(), "chrome");
        let trace = Trace { events, dropped: 3 };

        let value: Value = serde_json::from_str(&trace.to_chrome_json()).unwrap();
        assert_eq!(value["displayTimeUnit"], "ms");
        assert_eq!(value["otherData"]["dropped"], 3);
        let all = value["traceEvents"].as_array().unwrap();
        let complete: Vec<&Value> = all.iter().filter(|e| e["ph"] == "X").collect();
        assert_eq!(complete.len(), 3);
        let item = complete
            .iter()
            .find(|e| e["name"] == "chrome \"quoted\"[2]")
            .unwrap();
        assert_eq!(item["cat"], "xcs");
        assert_eq!(item["pid"], 1);
        assert_eq!(item["args"]["index"], 2);
        assert_eq!(item["args"]["outcome"], "error");
        assert_eq!(item["args"]["depth"], 1);
        assert!(item["ts"].as_f64().unwrap() >= 0.0);
        assert!(item["dur"].as_f64().unwrap() >= 0.0);
        let vmap = complete
            .iter()
            .find(|e| e["name"] == "chrome_vmap")
            .unwrap();
        assert_eq!(vmap["args"]["index"], Value::Null);
        assert_eq!(item["args"]["parent"], vmap["args"]["id"]);
        assert_eq!(item["tid"], vmap["tid"]);

        let names: Vec<(&Value, &Value)> = all
            .iter()
            .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
            .map(|e| (&e["tid"], &e["args"]["name"]))
            .collect();
        assert_eq!(names.len(), 2, "one per thread: {names:?}");
        let other = complete
            .iter()
            .find(|e| e["name"] == "chrome_other[0]")
            .unwrap();
        assert!(names.contains(&(&other["tid"], &Value::from("chrome-worker"))));

        let path = std::env::temp_dir().join(format!("xcs-trace-{}.json", std::process::id()));
        trace.write_chrome_json(&path).unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(written, trace.to_chrome_json());
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
