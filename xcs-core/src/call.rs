//! STUB
use crate::error::XcsError;
use crate::operator::Operator;

pub(crate) fn call_borrowed<O: Operator + ?Sized>(
    op: &O,
    input: O::Input,
) -> Result<O::Output, XcsError> {
    op.forward(input)
}

/// Runs a call on an operator the runtime may move to a worker.
pub fn call_owned<O: Operator + Clone>(op: O, input: O::Input) -> Result<O::Output, XcsError> {
    op.forward(input)
}

/// Wraps a generated operator's error.
pub fn operator_error(operator: &str, error: impl Into<crate::error::BoxError>) -> XcsError {
    XcsError::operator(operator, error)
}
