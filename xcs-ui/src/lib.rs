//! Nothing to use: this package holds the compile-time tests of the xcs macros (`tests/ui.rs`).
//! The library only carries the `tokio` feature into the projects trybuild builds the cases in.

#![forbid(unsafe_code)]
