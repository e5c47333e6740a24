//! Compile-time behaviour of `#[xcs::operator]`: every rejected signature is one case in
//! `tests/ui/operator/fail/` with the expected message next to it, and `tests/ui/operator/pass/`
//! holds what must compile. Regenerate the `.stderr` files with `TRYBUILD=overwrite` after a
//! deliberate change of a message, then read every one of them.

#[rustversion::stable]
#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/operator/fail/*.rs");
    t.pass("tests/ui/operator/pass/*.rs");
}
