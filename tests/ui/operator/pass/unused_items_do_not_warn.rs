//! Operators used only as functions, only as operators, or not at all, warn about nothing.
#![deny(warnings)]

#[xcs::operator]
fn used_as_function(x: u8) -> u8 {
    x
}

#[xcs::operator]
fn used_as_operator(x: u8) -> u8 {
    x
}

#[xcs::operator]
fn unused(x: u8) -> u8 {
    x
}

fn main() {
    use xcs::Operator;
    let _ = used_as_function(1);
    let _ = UsedAsOperator.call(UsedAsOperatorInputs::new(1));
}
