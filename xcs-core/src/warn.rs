//! Warnings the runtime gives about how a program uses it (once per operator and topic): an
//! option that cannot apply to an operator, a sync operator called from async code.
//!
//! Each is something the runtime turns off or works around on the program's behalf, so it must
//! reach someone. A program that installed a `tracing` subscriber gets it there (target `xcs`,
//! level WARN, with an `operator` field), filtered and formatted as it chose; a program without
//! one — where `tracing` would drop the event unseen — gets it on standard error, as one line
//! starting with `xcs: warning: `.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::{PoisonError, RwLock};

/// The `(topic, operator)` pairs warned about so far.
static SEEN: RwLock<Option<HashMap<&'static str, HashSet<String>>>> = RwLock::new(None);

/// Whether this is the first time `topic` is reported for operator `name` in this process (for
/// warnings given once per operator). A repeated question takes a shared lock and allocates
/// nothing.
pub(crate) fn first_time(topic: &'static str, name: &str) -> bool {
    let seen = SEEN.read().unwrap_or_else(PoisonError::into_inner);
    if seen
        .as_ref()
        .and_then(|topics| topics.get(topic))
        .is_some_and(|names| names.contains(name))
    {
        return false;
    }
    drop(seen);
    SEEN.write()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(HashMap::new)
        .entry(topic)
        .or_default()
        .insert(name.to_owned())
}

/// Whether a `tracing` subscriber would receive an event from this thread now: a global
/// default or a scoped one (`tracing::subscriber::with_default`).
fn has_subscriber() -> bool {
    tracing::dispatcher::get_default(|dispatch| !dispatch.is::<tracing::subscriber::NoSubscriber>())
}

/// Gives the warning `message` about operator `name`: to the `tracing` subscriber if one is
/// installed, else on standard error (a failed write to it is ignored).
#[cold]
pub(crate) fn warn(name: &str, message: &str) {
    if has_subscriber() {
        tracing::warn!(target: "xcs", operator = name, "{message}");
    } else {
        let _ = writeln!(std::io::stderr().lock(), "xcs: warning: {message}");
    }
}

/// [`warn`]s once per `topic` and operator `name` in this process; `message` is only built the
/// first time.
pub(crate) fn warn_once(topic: &'static str, name: &str, message: impl FnOnce() -> String) {
    if first_time(topic, name) {
        warn(name, &message());
    }
}

/// A sync call on a thread that drives async tasks: a body that blocks stalls them, and one that
/// starts or drops a tokio runtime panics.
///
/// Asking tokio whether the thread has a runtime costs ~20 ns, several times a whole sync call,
/// so an operator call does not ask it: the thread's options cache asks it whenever it works
/// out whether calls have per-call work (on the thread's first call and after each change of
/// its options; see `scope::per_call_work`), and a thread with a runtime then takes the slow
/// path, which warns. A batch (a µs affair) asks tokio every time. Operators already warned
/// about on a thread are remembered there, so a sync operator called from async code over and
/// over pays a short scan, not a lock.
#[cfg(feature = "tokio")]
pub(crate) mod runtime_thread {
    use std::cell::{Cell, RefCell};

    /// The operators a thread remembers having warned about; beyond that, the process-wide set.
    const REMEMBERED: usize = 16;

    thread_local! {
        /// Set while xcs itself runs a sync call on a thread where blocking is allowed (the
        /// blocking threads of `xcs::blocking`), which must not be warned about.
        static SANCTIONED: Cell<bool> = const { Cell::new(false) };
        static WARNED: RefCell<Vec<Box<str>>> = const { RefCell::new(Vec::new()) };
    }

    /// Runs `f` as a sync call that is allowed to block although the thread has a runtime
    /// context.
    pub(crate) fn sanctioned<R>(f: impl FnOnce() -> R) -> R {
        struct Restore(bool);
        impl Drop for Restore {
            fn drop(&mut self) {
                SANCTIONED.with(|sanctioned| sanctioned.set(self.0));
            }
        }
        let _restore = Restore(SANCTIONED.with(|sanctioned| sanctioned.replace(true)));
        f()
    }

    /// What to do instead, appended to the warning and to the message of a panic that tokio
    /// raises for a runtime used from async code.
    pub(crate) const HINT: &str = "make it an async operator (an `async fn` or \
        `xcs::AsyncOperator`), or await `xcs::blocking(op)`, which runs it on tokio's blocking \
        threads";

    /// Whether the calling thread has a tokio runtime context (a worker or blocking thread, or
    /// inside `block_on`).
    #[cold]
    #[inline(never)]
    pub(crate) fn ask_tokio() -> bool {
        tokio::runtime::Handle::try_current().is_ok()
    }

    /// Warns (once per operator) when a sync batch `name` starts on a thread inside a tokio
    /// runtime.
    pub(crate) fn check<'a>(name: impl FnOnce() -> &'a str) {
        if ask_tokio() {
            warn_unless_sanctioned(name());
        }
    }

    /// Warns (once per operator) about a sync call of `name` on a thread with a runtime
    /// context, unless xcs runs it there on purpose.
    #[inline(never)]
    pub(crate) fn warn_unless_sanctioned(name: &str) {
        if SANCTIONED.with(Cell::get) {
            return;
        }
        let known = WARNED.with(|warned| {
            let Ok(mut warned) = warned.try_borrow_mut() else {
                return true;
            };
            if warned.iter().any(|seen| **seen == *name) {
                return true;
            }
            if warned.len() < REMEMBERED {
                warned.push(name.into());
            }
            false
        });
        if known {
            return;
        }
        super::warn_once("runtime thread", name, || {
            format!(
                "`{name}` is a sync operator called on a tokio runtime's thread (from async \
                 code): a body that blocks (sleeps, blocking I/O such as `reqwest::blocking`) \
                 holds up the runtime's other tasks, and one that starts or drops a runtime \
                 panics; {HINT}"
            )
        });
    }
}

/// The message of a caught panic, with the runtime-thread hint added when tokio panicked
/// because a runtime was started or dropped from async code.
pub(crate) fn panic_hint(message: String) -> String {
    #[cfg(feature = "tokio")]
    if message.contains("Cannot drop a runtime")
        || message.contains("Cannot start a runtime from within a runtime")
        || message.contains("Cannot block the current thread from within a runtime")
    {
        return format!(
            "{message} (the body blocked on a tokio runtime on a thread that drives async \
             tasks; for a sync operator called from async code, {})",
            runtime_thread::HINT
        );
    }
    message
}

/// Warns once per operator name that `max_retries` cannot apply: its input (of type
/// `input_type`) cannot be copied for another attempt.
pub(crate) fn warn_not_retried(name: &str, input_type: &str) {
    crate::warn::warn_once("retries", name, || {
        format!(
            "`{name}` runs without retries although `max_retries` is set: another attempt needs \
             a copy of its input `{input_type}`, and xcs cannot copy it. A hand-written \
             operator's input is copied only when it is a common standard type (integers, \
             `bool`, `char`, `String`, `()` or `Vec`s of them): put `#[xcs::operator]` on its \
             `impl Operator`/`impl AsyncOperator` block to copy any `Clone` input (and cache \
             any `Hash + Eq` one). A generated operator needs every parameter to be `Clone`"
        )
    });
}

/// Warns once per operator name that `hedge_after` cannot apply: its input (of type
/// `input_type`) cannot be copied for a second attempt.
pub(crate) fn warn_not_hedged(name: &str, input_type: &str) {
    crate::warn::warn_once("hedging", name, || {
        format!(
            "`{name}` runs without hedging although `hedge_after` is set: a hedge needs a copy \
             of its input `{input_type}`, and xcs cannot copy it. A hand-written operator's \
             input is copied only when it is a common standard type (integers, `bool`, `char`, \
             `String`, `()` or `Vec`s of them): put `#[xcs::operator]` on its `impl Operator`/\
             `impl AsyncOperator` block to copy any `Clone` input. A generated operator needs \
             every parameter to be `Clone`"
        )
    });
}
