use super::bar::{LAYOUT, stderr_target};
use super::*;
use std::collections::BTreeSet;
use std::hint::black_box;
use std::io::IsTerminal;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{MutexGuard, PoisonError};
use std::time::Duration;

use indicatif::{HumanCount, ProgressDrawTarget, TermLike};

/// The hook and the live-bar count are process-wide: tests that use them take turns.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Installs a hook that records every event until dropped.
struct Recorder {
    events: Arc<Mutex<Vec<ProgressEvent>>>,
}

impl Recorder {
    fn install() -> Self {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        set_progress_hook(move |event| sink.lock().unwrap().push(event.clone()));
        Recorder { events }
    }

    fn of(&self, batch: u64) -> Vec<ProgressEvent> {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter(|e| e.batch() == batch)
            .cloned()
            .collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        clear_progress_hook();
    }
}

fn on() -> ExecutionOptions {
    ExecutionOptions {
        show_progress: true,
        ..ExecutionOptions::default()
    }
}

fn hidden() -> MultiProgress {
    MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
}

fn started(batch: u64, parent: Option<u64>, operator: &str, total: usize) -> ProgressEvent {
    ProgressEvent::Started {
        batch,
        parent,
        operator: operator.to_owned(),
        total,
    }
}

fn item(batch: u64, index: usize, ok: bool, done: usize, failed: usize) -> ProgressEvent {
    ProgressEvent::Item {
        batch,
        index,
        ok,
        done,
        failed,
    }
}

fn finished(batch: u64, done: usize, failed: usize, outcome: ProgressOutcome) -> ProgressEvent {
    ProgressEvent::Finished {
        batch,
        done,
        failed,
        outcome,
    }
}

#[test]
fn handles_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<BatchProgress>();
    send_sync::<Arc<BatchProgress>>();
    send_sync::<ProgressEvent>();
}

#[test]
fn off_is_none_and_silent() {
    let _serial = serial();
    let recorder = Recorder::install();
    assert!(BatchProgress::start("quiet", 3, &ExecutionOptions::default()).is_none());
    assert!(recorder.events.lock().unwrap().is_empty());
}

#[test]
fn hook_sees_started_items_finished() {
    let _serial = serial();
    let recorder = Recorder::install();
    let progress = BatchProgress::start_in(&hidden(), "double", 3);
    let id = progress.id();
    progress.item(1, true);
    progress.item(0, false);
    progress.item(2, true);
    progress.finish(ProgressOutcome::Error);
    // Only the first finish counts, and items after it are not reported.
    progress.finish(ProgressOutcome::Ok);
    progress.item(3, true);
    drop(progress);
    assert_eq!(
        recorder.of(id),
        vec![
            started(id, None, "double", 3),
            item(id, 1, true, 1, 0),
            item(id, 0, false, 2, 1),
            item(id, 2, true, 3, 1),
            finished(id, 3, 1, ProgressOutcome::Error),
        ]
    );
}

#[test]
fn hook_fires_for_batches_that_draw_nothing() {
    let _serial = serial();
    let recorder = Recorder::install();
    // What standard error that is not a terminal gets: a hidden target, so no bar at all.
    assert!(stderr_target(false).is_hidden());
    let screen = MultiProgress::with_draw_target(stderr_target(false));
    assert!(screen.is_hidden());
    let progress = BatchProgress::start_in(&screen, "quiet", 2);
    assert!(progress.bar.is_none());
    progress.item(0, true);
    progress.item(1, true);
    progress.finish(ProgressOutcome::Ok);
    assert_eq!(recorder.of(progress.id()).len(), 4);

    // And the process-wide screen follows standard error.
    if !std::io::stderr().is_terminal() {
        assert!(multi().is_hidden());
        let progress = BatchProgress::start("quiet", 2, &on()).expect("show_progress is on");
        assert!(progress.bar.is_none());
        progress.finish(ProgressOutcome::Ok);
        assert_eq!(recorder.of(progress.id()).len(), 2);
    }
}

#[test]
fn nested_batches_name_their_parent() {
    let _serial = serial();
    let recorder = Recorder::install();
    let screen = hidden();
    let outer = BatchProgress::start_in(&screen, "outer", 2);
    // A worker thread runs items of `outer`; batches it starts meanwhile are children.
    let (inner_id, deepest_id, after_id) = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let (inner_id, deepest_id);
                {
                    let _outer = enter(&outer);
                    let inner = BatchProgress::start_in(&screen, "inner", 1);
                    assert_eq!(inner.depth, 1);
                    {
                        let _inner = enter(&inner);
                        let deepest = BatchProgress::start_in(&screen, "deepest", 1);
                        assert_eq!(deepest.depth, 2);
                        deepest.finish(ProgressOutcome::Ok);
                        deepest_id = deepest.id();
                    }
                    inner.finish(ProgressOutcome::Ok);
                    inner_id = inner.id();
                }
                // Once the guards are gone, a batch on this thread is outermost again.
                let after = BatchProgress::start_in(&screen, "after", 1);
                assert_eq!(after.depth, 0);
                (inner_id, deepest_id, after.id())
            })
            .join()
            .unwrap()
    });
    outer.finish(ProgressOutcome::Ok);
    assert_eq!(
        recorder.of(inner_id)[0],
        started(inner_id, Some(outer.id()), "inner", 1)
    );
    assert_eq!(
        recorder.of(deepest_id)[0],
        started(deepest_id, Some(inner_id), "deepest", 1)
    );
    assert_eq!(
        recorder.of(after_id)[0],
        started(after_id, None, "after", 1)
    );
    // `after` was dropped unfinished, outside a panic: cancelled.
    assert_eq!(
        recorder.of(after_id)[1],
        finished(after_id, 0, 0, ProgressOutcome::Cancelled)
    );
    // The main thread never entered `outer`.
    assert!(current().is_none());
}

#[test]
fn dropped_unfinished_during_a_panic_finishes_as_panicked() {
    let _serial = serial();
    let recorder = Recorder::install();
    let id = AtomicU64::new(0);
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let progress = BatchProgress::start_in(&hidden(), "boom", 3);
        id.store(progress.id(), Ordering::Relaxed);
        let _entered = enter(&progress);
        progress.item(0, true);
        panic!("an item blew up");
    }));
    assert!(result.is_err());
    let id = id.load(Ordering::Relaxed);
    assert_eq!(
        recorder.of(id).last(),
        Some(&finished(id, 1, 0, ProgressOutcome::Panicked))
    );
    assert!(
        current().is_none(),
        "the guard popped its frame while unwinding"
    );
}

#[test]
fn concurrent_items_count_exactly() {
    let _serial = serial();
    let recorder = Recorder::install();
    const THREADS: usize = 4;
    const PER_THREAD: usize = 25_000;
    let progress = BatchProgress::start_in(&hidden(), "many", THREADS * PER_THREAD);
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let progress = &progress;
            scope.spawn(move || {
                let _entered = enter(progress);
                for i in 0..PER_THREAD {
                    let index = thread * PER_THREAD + i;
                    progress.item(index, index % 7 != 0);
                }
            });
        }
    });
    progress.finish(ProgressOutcome::Ok);
    let failures = (0..THREADS * PER_THREAD).filter(|i| i % 7 == 0).count();
    let events = recorder.of(progress.id());
    assert_eq!(
        events.last(),
        Some(&finished(
            progress.id(),
            THREADS * PER_THREAD,
            failures,
            ProgressOutcome::Ok
        ))
    );
    let mut dones = BTreeSet::new();
    let mut indices = BTreeSet::new();
    let mut most_failed = 0;
    for event in &events {
        if let ProgressEvent::Item {
            index,
            done,
            failed,
            ..
        } = *event
        {
            dones.insert(done);
            indices.insert(index);
            most_failed = most_failed.max(failed);
        }
    }
    // Every item reported once, each with its own count.
    assert_eq!(dones, (1..=THREADS * PER_THREAD).collect());
    assert_eq!(indices, (0..THREADS * PER_THREAD).collect());
    assert_eq!(most_failed, failures);
}

#[test]
fn lanes_count_exactly_without_a_hook() {
    let _serial = serial();
    const THREADS: usize = 4;
    const PER_THREAD: usize = 25_000;
    let (term, screen) = virtual_screen();
    let progress = BatchProgress::start_in(&screen, "lanes", THREADS * PER_THREAD + 10);
    assert!(!progress.reports);
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let progress = &progress;
            scope.spawn(move || {
                for i in 0..PER_THREAD {
                    // Entering again and again (as an async driver does around each poll)
                    // keeps counting in the thread's one lane.
                    let _entered = (i % 1000 == 0).then(|| enter(progress));
                    let _entered = enter(progress);
                    let index = thread * PER_THREAD + i;
                    progress.item(index, index % 7 != 0);
                }
            });
        }
        // A thread that never entered counts in the shared counters.
        scope.spawn(|| (0..10).for_each(|i| progress.item(THREADS * PER_THREAD + i, false)));
    });
    let failures = (0..THREADS * PER_THREAD).filter(|i| i % 7 == 0).count() + 10;
    assert_eq!(
        progress.tally.totals(),
        (THREADS * PER_THREAD + 10, failures)
    );
    assert_eq!(progress.tally.lanes.lock().unwrap().len(), THREADS);
    progress.finish(ProgressOutcome::Ok);
    let lines = term.lines();
    assert!(lines[0].contains("100,010/100,010"), "{lines:#?}");
    assert!(lines[0].contains(&format!("✔ done, {} failed", HumanCount(failures as u64))));
    // Reports after the finish change nothing.
    let _entered = enter(&progress);
    progress.item(0, false);
    assert_eq!(term.lines(), lines);
}

#[test]
fn a_hook_hears_only_batches_started_after_it() {
    let _serial = serial();
    let before = BatchProgress::start_in(&hidden(), "before", 2);
    let recorder = Recorder::install();
    before.item(0, true);
    before.finish(ProgressOutcome::Ok);
    assert!(recorder.of(before.id()).is_empty());
    let after = BatchProgress::start_in(&hidden(), "after", 1);
    clear_progress_hook();
    after.item(0, true);
    after.finish(ProgressOutcome::Ok);
    // Cleared: nothing after `Started`.
    assert_eq!(
        recorder.of(after.id()),
        vec![started(after.id(), None, "after", 1)]
    );
}

#[test]
fn a_panicking_hook_does_not_break_the_batch() {
    let _serial = serial();
    set_progress_hook(|event| {
        if matches!(event, ProgressEvent::Item { .. }) {
            panic!("the hook is broken");
        }
    });
    let progress = BatchProgress::start_in(&hidden(), "sturdy", 2);
    progress.item(0, true);
    progress.item(1, true);
    progress.finish(ProgressOutcome::Ok);
    clear_progress_hook();
    assert_eq!(progress.tally.totals(), (2, 0));
    assert!(progress.tally.is_finished());
}

#[test]
fn the_hook_may_run_batches_itself() {
    let _serial = serial();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    set_progress_hook(move |event| {
        sink.lock().unwrap().push(event.clone());
        if let ProgressEvent::Started { operator, .. } = event {
            if operator == "outer" {
                let inside = BatchProgress::start_in(&hidden(), "from the hook", 1);
                inside.item(0, true);
                inside.finish(ProgressOutcome::Ok);
            }
        }
    });
    let outer = BatchProgress::start_in(&hidden(), "outer", 1);
    outer.finish(ProgressOutcome::Ok);
    clear_progress_hook();
    let operators: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match event {
            ProgressEvent::Started { operator, .. } => Some(operator.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(operators, ["outer", "from the hook"]);
}

/// A terminal that keeps what is on screen, for checking what the bars look like. What it
/// shows changes at each `flush` (the end of a frame), so a test never sees half a frame
/// drawn by the outermost bar's ticker thread.
#[derive(Clone, Debug, Default)]
struct VirtualTerm(Arc<Mutex<Screen>>);

#[derive(Debug, Default)]
struct Screen {
    rows: Vec<Vec<char>>,
    row: usize,
    col: usize,
    escape: bool,
    shown: Vec<String>,
}

const WIDTH: u16 = 140;

impl VirtualTerm {
    /// The non-blank lines on screen at the end of the last frame, colours removed.
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().shown.clone()
    }

    fn with(&self, f: impl FnOnce(&mut Screen)) -> std::io::Result<()> {
        f(&mut self.0.lock().unwrap());
        Ok(())
    }
}

impl Screen {
    fn put(&mut self, text: &str) {
        for ch in text.chars() {
            if self.escape {
                self.escape = !ch.is_ascii_alphabetic();
                continue;
            }
            match ch {
                '\x1b' => self.escape = true,
                '\r' => self.col = 0,
                '\n' => {
                    self.row += 1;
                    self.col = 0;
                }
                _ => {
                    if self.col >= usize::from(WIDTH) {
                        self.row += 1;
                        self.col = 0;
                    }
                    self.cell(ch);
                    self.col += 1;
                }
            }
        }
    }

    fn cell(&mut self, ch: char) {
        if self.rows.len() <= self.row {
            self.rows.resize(self.row + 1, Vec::new());
        }
        let row = &mut self.rows[self.row];
        if row.len() <= self.col {
            row.resize(self.col + 1, ' ');
        }
        row[self.col] = ch;
    }
}

impl TermLike for VirtualTerm {
    fn width(&self) -> u16 {
        WIDTH
    }
    fn height(&self) -> u16 {
        50
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.with(|s| s.row = s.row.saturating_sub(n))
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.with(|s| s.row += n)
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.with(|s| s.col += n)
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.with(|s| s.col = s.col.saturating_sub(n))
    }
    fn write_line(&self, line: &str) -> std::io::Result<()> {
        self.with(|s| s.put(&format!("{line}\n")))
    }
    fn write_str(&self, text: &str) -> std::io::Result<()> {
        self.with(|s| s.put(text))
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.with(|s| {
            if let Some(row) = s.rows.get_mut(s.row) {
                row.clear();
            }
            s.col = 0;
        })
    }
    fn flush(&self) -> std::io::Result<()> {
        self.with(|s| {
            s.shown = s
                .rows
                .iter()
                .map(|row| row.iter().collect::<String>().trim_end().to_owned())
                .filter(|line| !line.is_empty())
                .collect();
        })
    }
}

fn virtual_screen() -> (VirtualTerm, MultiProgress) {
    let term = VirtualTerm::default();
    let multi =
        MultiProgress::with_draw_target(ProgressDrawTarget::term_like(Box::new(term.clone())));
    (term, multi)
}

#[test]
fn nested_bars_sit_below_their_parent_and_go_away() {
    let _serial = serial();
    let (term, screen) = virtual_screen();
    let outer = BatchProgress::start_in(&screen, "outer", 4);
    assert!(outer.bar.as_ref().is_some_and(|bar| !bar.bar.is_hidden()));
    outer.item(0, true);
    {
        let _entered = enter(&outer);
        let inner = BatchProgress::start_in(&screen, "inner", 2);
        inner.item(0, false);
        let lines = term.lines();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0].starts_with("outer "), "{lines:#?}");
        assert!(lines[1].starts_with(" └ inner "), "{lines:#?}");
        assert!(
            lines[1].contains("1/2") && lines[1].contains("1 failed"),
            "{lines:#?}"
        );
        inner.finish(ProgressOutcome::Ok);
        let lines = term.lines();
        assert_eq!(
            lines.len(),
            1,
            "the finished inner bar is cleared: {lines:#?}"
        );
    }
    for index in 1..4 {
        outer.item(index, true);
    }
    outer.finish(ProgressOutcome::Ok);
    let lines = term.lines();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].starts_with("outer "), "{lines:#?}");
    assert!(
        lines[0].contains("4/4") && lines[0].contains("✔ done in"),
        "{lines:#?}"
    );
    // The outermost bar stays on screen, finished, when its batch is gone.
    drop(outer);
    assert_eq!(term.lines(), lines);
}

#[test]
fn a_timed_out_bar_keeps_its_count_and_says_so() {
    let _serial = serial();
    let (term, screen) = virtual_screen();
    let progress = BatchProgress::start_in(&screen, "slow", 10);
    progress.item(0, true);
    progress.item(1, false);
    progress.finish(ProgressOutcome::Timeout);
    let lines = term.lines();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("2/10"), "{lines:#?}");
    assert!(
        lines[0].contains("✘ timed out, 1 failed after"),
        "{lines:#?}"
    );
}

#[test]
fn at_most_max_bars_are_drawn() {
    let _serial = serial();
    let recorder = Recorder::install();
    let (_term, screen) = virtual_screen();
    let batches: Vec<_> = (0..MAX_BARS + 2)
        .map(|i| BatchProgress::start_in(&screen, &format!("batch {i}"), 1))
        .collect();
    let drawn = batches.iter().filter(|b| b.bar.is_some()).count();
    assert_eq!(drawn, MAX_BARS);
    // Batches without a bar still report.
    let last = batches.last().expect("batches");
    assert!(last.bar.is_none());
    assert_eq!(recorder.of(last.id()).len(), 1);
    // Finishing one makes room.
    batches[0].finish(ProgressOutcome::Ok);
    let another = BatchProgress::start_in(&screen, "another", 1);
    assert!(another.bar.is_some());
    drop(another);
    drop(batches);
    assert_eq!(*LAYOUT.lock().unwrap(), 0);
}

/// Busy work of about `n` × a few nanoseconds that the optimiser cannot remove.
fn work(n: u64) -> u64 {
    let mut x = black_box(n);
    for i in 0..n {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    x
}

/// Runs `items` items of `work(spin)` on `threads` threads, taking blocks of 256 from a
/// shared counter as the batch drivers do.
fn run(threads: usize, items: usize, spin: u64) -> Duration {
    run_items(threads, items, spin, None, false)
}

/// [`run`], reporting each item to `progress`, from threads that `entered` it or not.
fn run_with(
    threads: usize,
    items: usize,
    spin: u64,
    progress: &Arc<BatchProgress>,
    entered: bool,
) -> Duration {
    run_items(threads, items, spin, Some(progress), entered)
}

fn run_items(
    threads: usize,
    items: usize,
    spin: u64,
    progress: Option<&Arc<BatchProgress>>,
    entered: bool,
) -> Duration {
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let _entered = progress.filter(|_| entered).map(enter);
                loop {
                    let first = next.fetch_add(256, Ordering::Relaxed);
                    if first >= items {
                        break;
                    }
                    for index in first..(first + 256).min(items) {
                        let ok = black_box(work(spin)) != 1;
                        if let Some(progress) = progress {
                            progress.item(index, ok);
                        }
                    }
                }
            });
        }
    });
    start.elapsed()
}

/// `cargo test -p xcs-core --release --lib progress::tests::item_cost -- --ignored --nocapture`
///
/// Prints what `item()` costs per call (bar hidden: no terminal), on threads that entered
/// the batch and on threads that did not, then the slowdown of 100 000 items of about 100 ns
/// run on two threads as the drivers run them. Minimums of many runs, as the machine may be
/// busy with other work.
#[test]
#[ignore = "a benchmark: run it on purpose, in release mode"]
fn item_cost() {
    let _serial = serial();
    const CALLS: usize = 4_000_000;
    let best = |runs: usize, mut f: Box<dyn FnMut() -> Duration + '_>| {
        (0..runs).map(|_| f()).min().unwrap_or_default()
    };
    let ns = |elapsed: Duration, calls: usize| elapsed.as_nanos() as f64 / calls as f64;

    for (threads, entered) in [(1, true), (1, false), (2, true), (2, false)] {
        let without = best(5, Box::new(|| run(threads, CALLS, 0)));
        let with = best(
            5,
            Box::new(|| {
                let progress = BatchProgress::start_in(&hidden(), "bench", CALLS);
                let took = run_with(threads, CALLS, 0, &progress, entered);
                progress.finish(ProgressOutcome::Ok);
                took
            }),
        );
        println!(
            "item(), bar hidden, {threads} thread(s), {}: {:.1} ns per item",
            if entered {
                "entered (lanes)"
            } else {
                "not entered (shared counter)"
            },
            ns(with.saturating_sub(without), CALLS / threads),
        );
    }

    // About 100 ns of work per item.
    let spin = {
        let probe = 200_000;
        let took = best(
            5,
            Box::new(|| {
                let start = Instant::now();
                black_box(work(probe));
                start.elapsed()
            }),
        );
        ((100.0 * probe as f64) / took.as_nanos() as f64).max(1.0) as u64
    };
    const ITEMS: usize = 100_000;
    let per_item = ns(best(20, Box::new(|| run(1, ITEMS, spin))), ITEMS);
    println!("work per item: {per_item:.0} ns");
    for threads in [1, 2] {
        // The noise floor: the same run twice.
        let (mut a, mut b) = (Duration::MAX, Duration::MAX);
        for _ in 0..100 {
            a = a.min(run(threads, ITEMS, spin));
            b = b.min(run(threads, ITEMS, spin));
        }
        println!(
            "100 000 items on {threads} thread(s), no progress twice: {:.3}x",
            b.as_secs_f64() / a.as_secs_f64()
        );
        for (label, drawn) in [("hidden", false), ("drawn (virtual terminal)", true)] {
            let (mut base, mut with) = (Duration::MAX, Duration::MAX);
            for _ in 0..100 {
                base = base.min(run(threads, ITEMS, spin));
                let screen = if drawn { virtual_screen().1 } else { hidden() };
                let progress = BatchProgress::start_in(&screen, "bench", ITEMS);
                with = with.min(run_with(threads, ITEMS, spin, &progress, true));
                progress.finish(ProgressOutcome::Ok);
            }
            println!(
                "100 000 items on {threads} thread(s), bar {label}: {:.2} ms without progress, \
                 {:.2} ms with ({:.3}x)",
                base.as_secs_f64() * 1e3,
                with.as_secs_f64() * 1e3,
                with.as_secs_f64() / base.as_secs_f64()
            );
        }
    }
}

/// What the bars look like on a real terminal:
/// `script -q -c 'cargo test -p xcs-core progress::tests::demo -- --ignored --nocapture' /dev/null`
#[test]
#[ignore = "draws on standard error for a person to look at"]
fn demo_on_a_terminal() {
    let _serial = serial();
    // Start below the test harness's `test … ...`.
    eprintln!();
    let outer = BatchProgress::start("score", 12, &on()).expect("show_progress is on");
    let _entered = enter(&outer);
    for index in 0..12 {
        let inner = BatchProgress::start("rerank", 40, &on()).expect("show_progress is on");
        for inner_index in 0..40 {
            std::thread::sleep(Duration::from_millis(10));
            inner.item(inner_index, (inner_index + index) % 17 != 0);
        }
        inner.finish(ProgressOutcome::Ok);
        outer.item(index, index % 5 != 4);
    }
    outer.finish(ProgressOutcome::Ok);
}
