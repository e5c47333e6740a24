//! Drawing: the bars on standard error, their styles, and what a finished bar says.

use std::fmt;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use indicatif::{
    HumanCount, HumanDuration, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState,
    ProgressStyle,
};

use super::tally::Tally;
use super::{BatchProgress, MAX_BARS, ProgressOutcome};

// ---------------------------------------------------------------------------------------------
// Bars.

/// The bars on screen, shared by every batch.
pub(super) fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(|| {
        MultiProgress::with_draw_target(stderr_target(std::io::stderr().is_terminal()))
    })
}

/// Where bars go: standard error when it is a terminal (indicatif also hides bars when `TERM`
/// is `dumb`), nowhere otherwise.
pub(super) fn stderr_target(is_terminal: bool) -> ProgressDrawTarget {
    if is_terminal {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// Serializes adding bars to and removing them from the screen: indicatif panics when a bar is
/// inserted after one that was removed, so a child checks its parent's bar is attached under
/// this lock. Taken once per batch start and finish, never per item.
pub(super) static LAYOUT: Mutex<usize> = Mutex::new(0);

/// How often the outermost bar redraws on its own, for elapsed time and ETA.
const TICK: Duration = Duration::from_millis(100);
/// Redraws closer together than this make the stride (items between redraws) double...
pub(super) const FAST_REDRAW: u64 = 4_000_000; // ns
/// ... and further apart than this make it halve.
pub(super) const SLOW_REDRAW: u64 = 100_000_000; // ns
/// The longest stride, minus one (a bit mask).
pub(super) const MAX_MASK: usize = (1 << 20) - 1;

/// The width of the operator column.
const NAME_WIDTH: usize = 20;

struct Styles {
    running: ProgressStyle,
    ok: ProgressStyle,
    bad: ProgressStyle,
    stopped: ProgressStyle,
}

fn styles() -> &'static Styles {
    static STYLES: OnceLock<Styles> = OnceLock::new();
    STYLES.get_or_init(|| {
        let style = |template: &str| {
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("━╸─")
                .with_key("rate", rate)
        };
        Styles {
            running: style(RUNNING),
            ok: style(FINISHED_OK),
            bad: style(FINISHED_BAD),
            stopped: style(FINISHED_STOPPED),
        }
    })
}

/// A live bar: `{failed}` and `{rate}` are ours (see [`add_bar`] and [`rate`]).
const RUNNING: &str = "{prefix:.bold} {bar:30.cyan/blue} {human_pos:>7}/{human_len:<7} \
                       {failed:.red}{usage}{rate} · {elapsed} · ETA {eta}";
/// A finished outermost bar: the message is the [`summary`].
const FINISHED_OK: &str =
    "{prefix:.bold} {bar:30.green/blue} {human_pos:>7}/{human_len:<7} {msg:.green}";
const FINISHED_BAD: &str =
    "{prefix:.bold} {bar:30.red/blue} {human_pos:>7}/{human_len:<7} {msg:.red}";
const FINISHED_STOPPED: &str =
    "{prefix:.bold} {bar:30.yellow/blue} {human_pos:>7}/{human_len:<7} {msg:.yellow}";

/// The `{rate}` of a bar: items per second, with a decimal below ten.
fn rate(state: &ProgressState, out: &mut dyn fmt::Write) {
    let _ = out.write_str(&format_rate(state.per_sec()));
}

fn format_rate(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec <= 0.0 {
        "-/s".to_owned()
    } else if per_sec < 10.0 {
        format!("{per_sec:.1}/s")
    } else {
        format!("{}/s", HumanCount(per_sec.round() as u64))
    }
}

/// A drawn bar of a batch.
pub(super) struct Bar {
    pub(super) bar: ProgressBar,
    multi: MultiProgress,
    /// Whether the bar belongs to a batch started inside another's item (it is removed when
    /// done) rather than an outermost one (it stays, finished).
    nested: bool,
    /// Whether the bar is still in `multi`; changed under [`LAYOUT`].
    attached: AtomicBool,
}

impl BatchProgress {
    pub(super) fn finish_bar(
        &self,
        bar: &Bar,
        done: usize,
        failed: usize,
        outcome: ProgressOutcome,
    ) {
        bar.bar.disable_steady_tick();
        bar.bar.set_position(done as u64);
        let mut live = LAYOUT.lock().unwrap_or_else(PoisonError::into_inner);
        *live = live.saturating_sub(1);
        if bar.nested {
            bar.bar.finish_and_clear();
            if bar.attached.swap(false, Ordering::Relaxed) {
                bar.multi.remove(&bar.bar);
            }
            return;
        }
        drop(live);
        let styles = styles();
        // Green: all done. Yellow: done with failures (a settled batch), or stopped by a
        // deadline or an enclosing call. Red: failed.
        let style = match outcome {
            ProgressOutcome::Ok if failed == 0 => &styles.ok,
            ProgressOutcome::Ok | ProgressOutcome::Timeout | ProgressOutcome::Cancelled => {
                &styles.stopped
            }
            _ => &styles.bad,
        };
        bar.bar.set_style(style.clone());
        let mut message = summary(outcome, done, failed, self.started.elapsed());
        let usage = self.tally.usage();
        if !usage.is_zero() {
            message.push_str(" · ");
            message.push_str(&format_usage(usage));
        }
        bar.bar.abandon_with_message(message);
    }
}

/// A batch's usage on its bar: `12.3k tokens · cost 0.0123`.
fn format_usage(usage: crate::Usage) -> String {
    let tokens = format!("{} tokens", HumanCount(usage.tokens()));
    if usage.cost > 0.0 {
        format!("{tokens} · cost {:.4}", usage.cost)
    } else {
        tokens
    }
}

/// What a finished outermost bar says after its count.
fn summary(outcome: ProgressOutcome, done: usize, failed: usize, elapsed: Duration) -> String {
    let took = HumanDuration(elapsed);
    let secs = elapsed.as_secs_f64();
    let rate = format_rate(if secs > 0.0 { done as f64 / secs } else { 0.0 });
    let failed = if failed > 0 {
        format!(", {} failed", HumanCount(failed as u64))
    } else {
        String::new()
    };
    match outcome {
        ProgressOutcome::Ok => format!("✔ done{failed} in {took:#} · {rate}"),
        ProgressOutcome::Error => format!("✘ error{failed} after {took:#}"),
        ProgressOutcome::Timeout => format!("✘ timed out{failed} after {took:#}"),
        ProgressOutcome::Panicked => format!("✘ panicked{failed} after {took:#}"),
        ProgressOutcome::Cancelled => format!("✘ cancelled{failed} after {took:#}"),
    }
}

/// A bar for a new batch, below its parent's if it has one; `None` when bars are hidden or
/// [`MAX_BARS`] are live.
pub(super) fn add_bar(
    screen: &MultiProgress,
    parent: Option<&BatchProgress>,
    depth: usize,
    operator: &str,
    total: usize,
    tally: &Arc<Tally>,
) -> Option<Bar> {
    let parent_bar = parent.and_then(|parent| parent.bar.as_ref());
    let multi = parent_bar.map_or(screen, |bar| &bar.multi);
    if multi.is_hidden() {
        return None;
    }
    let prefix = if depth == 0 {
        format!("{operator:<NAME_WIDTH$}")
    } else {
        // ` └ inner`, `   └ innermost`: two columns per level.
        let indent = " ".repeat(2 * depth - 1);
        let width = NAME_WIDTH.saturating_sub(2 * depth + 1);
        format!("{indent}└ {operator:<width$}")
    };
    let counted = Arc::clone(tally);
    let charged = Arc::clone(tally);
    let style = styles()
        .running
        .clone()
        .with_key(
            "failed",
            move |_: &ProgressState, out: &mut dyn fmt::Write| {
                let (_, failed) = counted.totals();
                if failed > 0 {
                    let _ = out.write_str(&format!("{} failed · ", HumanCount(failed as u64)));
                }
            },
        )
        .with_key(
            "usage",
            move |_: &ProgressState, out: &mut dyn fmt::Write| {
                let usage = charged.usage();
                if !usage.is_zero() {
                    let _ = out.write_str(&format_usage(usage));
                    let _ = out.write_str(" · ");
                }
            },
        );
    let mut live = LAYOUT.lock().unwrap_or_else(PoisonError::into_inner);
    if *live >= MAX_BARS {
        return None;
    }
    *live += 1;
    // Added hidden and untouched, so it draws nothing before the `MultiProgress` owns it.
    let fresh = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::hidden())
        .with_prefix(prefix);
    let bar = match parent_bar {
        Some(parent) if parent.attached.load(Ordering::Relaxed) => {
            multi.insert_after(&parent.bar, fresh)
        }
        _ => multi.add(fresh),
    };
    drop(live);
    // Styled once in the `MultiProgress`, so colours follow standard error's.
    bar.set_style(style);
    let nested = parent.is_some();
    if nested {
        bar.tick();
    } else {
        // On screen at once, then redrawn by its own ticker.
        bar.force_draw();
        bar.enable_steady_tick(TICK);
    }
    Some(Bar {
        bar,
        multi: multi.clone(),
        nested,
        attached: AtomicBool::new(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse() {
        for template in [RUNNING, FINISHED_OK, FINISHED_BAD, FINISHED_STOPPED] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
        assert_eq!(format_rate(0.0), "-/s");
        assert_eq!(format_rate(2.54), "2.5/s");
        assert_eq!(format_rate(12_345.6), "12,346/s");
        assert_eq!(
            summary(ProgressOutcome::Ok, 10, 2, Duration::from_secs(5)),
            "✔ done, 2 failed in 5s · 2.0/s"
        );
    }
}
