//! Compile-time behaviour of the macros (trybuild).
//!
//! - `tests/ui/options/fail/` (`execution_options!`, `set_execution_options!`),
//!   `tests/ui/operator/fail/` (`#[xcs::operator]`) and `tests/ui/resource/fail/`
//!   (`set_resource_limits!`): one mistake per file, with the exact messages and spans a user
//!   sees in the `.stderr` next to it.
//! - `tests/ui/options/pass/`, `tests/ui/operator/pass/` and `tests/ui/resource/pass/`: what
//!   must compile, and run.
//! - `tests/ui/operator/fail_tokio/` and `fail_no_tokio/`: the async-operator cases whose messages
//!   depend on the `tokio` feature; the second set runs with
//!   `cargo test -p xcs-ui --no-default-features --test ui` (trybuild passes this package's
//!   features on, and they turn xcs's on).
//!
//! After an intended change of a message, regenerate the snapshots with
//! `TRYBUILD=overwrite cargo test -p xcs-ui --test ui` and read the diff. Run some cases only with
//! `cargo test -p xcs-ui --test ui -- ui trybuild=options/fail/` (any part of a case's path; the
//! `ui` keeps libtest from filtering out the test itself).
//!
//! The cases are built against xcs without `persist` (see Cargo.toml): the project trybuild
//! builds them in has its own target directory, so every dependency here is compiled twice.
//!
//! Why one test and two `TestCases`: trybuild checks a run that has only compile-fail cases with
//! a single `cargo check --keep-going` over all of them, but as soon as a run has a pass case it
//! cleans and builds every case on its own, one after another (and each run pays for its own
//! project set-up). So every fail case of both macros goes in the first run, and the pass cases,
//! few files of many cases each, in the second.
//!
//! Only run on stable: compiler messages around ours differ between toolchains.

#[rustversion::stable]
#[test]
fn ui() {
    {
        let fail = trybuild::TestCases::new();
        fail.compile_fail("tests/ui/options/fail/*.rs");
        fail.compile_fail("tests/ui/operator/fail/*.rs");
        fail.compile_fail("tests/ui/resource/fail/*.rs");
        // What an async operator needs: cases whose messages differ without the feature.
        #[cfg(feature = "tokio")]
        fail.compile_fail("tests/ui/operator/fail_tokio/*.rs");
        #[cfg(not(feature = "tokio"))]
        fail.compile_fail("tests/ui/operator/fail_no_tokio/*.rs");
        // Runs here, when dropped.
    }
    let pass = trybuild::TestCases::new();
    pass.pass("tests/ui/options/pass/*.rs");
    pass.pass("tests/ui/operator/pass/*.rs");
    pass.pass("tests/ui/resource/pass/*.rs");
}
