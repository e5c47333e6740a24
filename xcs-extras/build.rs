//! Writes `$OUT_DIR/readme_http.md`: the README's examples that need this package's
//! dev-dependencies (reqwest), for `src/lib.rs` to compile as doctests.
//!
//! The root package runs the README's other examples as doctests. These are fenced
//! `rust,ignore` there, so that it skips them, with a line starting with [`MARKER`] (an HTML
//! comment, invisible where the README is rendered) right above the fence; here the fence becomes
//! `rust,no_run`.

use std::env;
use std::error::Error;
use std::fs;
use std::path::PathBuf;

/// Marks the next code block of the README as compiled by this package.
const MARKER: &str = "<!-- xcs-extras:";

fn main() -> Result<(), Box<dyn Error>> {
    let readme = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../README.md");
    println!("cargo::rerun-if-changed={}", readme.display());
    let text = fs::read_to_string(&readme)?;
    let mut out = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if !line.starts_with(MARKER) {
            continue;
        }
        match lines.next() {
            Some("```rust,ignore") => out.push_str("```rust,no_run\n"),
            other => {
                return Err(format!(
                    "README: {MARKER} … --> is followed by {other:?}, not a ```rust,ignore fence"
                )
                .into());
            }
        }
        for line in lines.by_ref() {
            out.push_str(line);
            out.push('\n');
            if line == "```" {
                break;
            }
        }
        out.push('\n');
    }
    if out.is_empty() {
        return Err(format!("README: no block marked {MARKER} … -->").into());
    }
    fs::write(
        PathBuf::from(env::var("OUT_DIR")?).join("readme_http.md"),
        out,
    )?;
    Ok(())
}
