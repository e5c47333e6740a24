//! Small helpers every layer may use: a leaf module that imports nothing of xcs but the error
//! type and the warnings.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use crate::error::XcsError;

/// The error of a call cut by its deadline.
pub(crate) fn timeout_error(operator: &str, index: Option<usize>, timeout: Duration) -> XcsError {
    XcsError::Timeout {
        operator: operator.to_owned(),
        index,
        timeout,
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic payload is not a string".to_owned()
    }
}

/// The message of a caught panic, with where it happened; the payload is dropped quietly.
pub(crate) fn panic_text(payload: Box<dyn Any + Send>, during: &str) -> String {
    let message = panic_message(&*payload);
    drop_quietly(payload);
    format!("{message} ({during})")
}

/// Runs `body`, turning a panic into [`XcsError::Panicked`].
#[inline]
pub(crate) fn guarded<T>(
    operator: &str,
    index: Option<usize>,
    body: impl FnOnce() -> Result<T, XcsError>,
) -> Result<T, XcsError> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(payload) => Err(panicked(operator, index, payload)),
    }
}

/// The error for a caught panic; the payload is dropped with its own `Drop` panics caught.
#[cold]
pub(crate) fn panicked(
    operator: &str,
    index: Option<usize>,
    payload: Box<dyn Any + Send>,
) -> XcsError {
    let message = crate::warn::panic_hint(panic_message(&*payload));
    drop_quietly(payload);
    XcsError::Panicked {
        operator: operator.to_owned(),
        index,
        message,
    }
}

/// Drops a value the runtime discards (an output nobody will read, a panic payload), so that a
/// panicking `Drop` cannot unwind into the caller. A panic payload whose own `Drop` panics in
/// turn is leaked rather than dropped.
pub(crate) fn drop_quietly<T>(value: T) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(value))) {
        if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            std::mem::forget(again);
        }
    }
}
