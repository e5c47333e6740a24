//! Compile-time behaviour of `execution_options!` and `set_execution_options!`.
//!
//! Every file in `ui/options/fail/` is one mistake and its `.stderr` snapshot the exact message
//! and span a user sees; `ui/options/pass/` holds forms that must keep compiling (and running).
//! After an intended change of a message, regenerate the snapshots with
//! `TRYBUILD=overwrite cargo test --test ui_options` and read the diff.
//!
//! Only run on stable: compiler messages around ours differ between toolchains.

#[rustversion::stable]
#[test]
fn ui_options() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/options/pass/*.rs");
    cases.compile_fail("tests/ui/options/fail/*.rs");
}
