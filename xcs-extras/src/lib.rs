//! Nothing to use: this package holds the examples, test and benchmarks of xcs whose
//! dependencies (axum, reqwest, criterion) `cargo test` at the root should not compile.
//!
//! The library only runs the README's examples that need reqwest as doctests (`build.rs`
//! extracts them): `cargo test -p xcs-extras --doc`.

#![forbid(unsafe_code)]

/// The README's HTTP examples, compiled as doctests so that they stay true.
#[doc = include_str!(concat!(env!("OUT_DIR"), "/readme_http.md"))]
#[cfg(doctest)]
pub struct ReadmeHttpDoctests;
