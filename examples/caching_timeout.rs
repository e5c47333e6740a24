//! Caching and timeouts.
//!
//! - `enable_caching = true`: a call with an input seen before returns the stored output without
//!   running the body again (errors are never stored).
//! - `timeout_seconds`: a deadline for the whole call. At the deadline the call returns
//!   `XcsError::Timeout`, even while an item hangs; bodies that loop can stop early by checking
//!   `xcs::cancelled()`.
//!
//! Run with `cargo run --example caching_timeout`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use xcs::prelude::*;

static BODY_RUNS: AtomicUsize = AtomicUsize::new(0);

/// An expensive lookup (pretend it is a paid model call).
#[xcs::operator]
fn embed(text: String) -> Vec<u64> {
    BODY_RUNS.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(50));
    text.bytes().map(u64::from).collect()
}

/// Item 2 hangs for two seconds, ignoring any deadline; the others are quick.
#[xcs::operator]
fn flaky_fetch(id: u32) -> u32 {
    if id == 2 {
        std::thread::sleep(Duration::from_secs(2));
    }
    id * 10
}

/// A long loop that checks `xcs::cancelled()` and gives up once its call has.
#[xcs::operator]
fn polite_search(budget_ms: u64) -> u64 {
    let start = Instant::now();
    let mut steps = 0;
    while start.elapsed() < Duration::from_millis(budget_ms) && !xcs::cancelled() {
        std::thread::sleep(Duration::from_millis(5));
        steps += 1;
    }
    steps
}

fn main() -> Result<(), XcsError> {
    println!("— caching —");
    execution_options!(enable_caching = true => {
        for attempt in 1..=3 {
            let start = Instant::now();
            let out = Embed.call(EmbedInputs { text: "hello".into() })?;
            println!(
                "call {attempt}: {out:?} in {:>5.1} ms",
                start.elapsed().as_secs_f64() * 1e3
            );
        }
        Ok::<(), XcsError>(())
    })?;
    let stats = xcs::cache_stats();
    println!(
        "the body ran {} time(s); cache: {} hit(s), {} miss(es), {} entr(y/ies)",
        BODY_RUNS.load(Ordering::SeqCst),
        stats.hits,
        stats.misses,
        stats.entries
    );
    // Without the option, the body runs every time.
    Embed.call(EmbedInputs {
        text: "hello".into(),
    })?;
    println!(
        "without enable_caching: the body has now run {} time(s)",
        BODY_RUNS.load(Ordering::SeqCst)
    );
    xcs::clear_cache();

    println!("\n— timeouts —");
    let start = Instant::now();
    let result = execution_options!(timeout_seconds = 0.2 => {
        vmap(FlakyFetch).call(FlakyFetchInputs::batch(vec![0, 1, 2, 3])?)
    });
    println!(
        "vmap with one item hanging 2 s, timeout_seconds = 0.2: returned after {:.0} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    match result {
        Err(err) if err.is_timeout() => println!("  error: {err}"),
        other => println!("  unexpected: {other:?}"),
    }

    let start = Instant::now();
    let result = execution_options!(timeout_seconds = 0.1 => {
        PoliteSearch.call(PoliteSearchInputs { budget_ms: 5_000 })
    });
    println!(
        "a cooperative body with a 5 s budget, timeout_seconds = 0.1: {} after {:.0} ms",
        match &result {
            Ok(_) => "finished",
            Err(e) if e.is_timeout() => "timed out",
            Err(_) => "failed",
        },
        start.elapsed().as_secs_f64() * 1e3
    );

    // Without a deadline the same batch simply waits for the slow item.
    let start = Instant::now();
    let out = vmap(FlakyFetch).call(FlakyFetchInputs::batch(vec![0, 1, 3])?)?;
    println!(
        "no timeout, no hanging item: {out:?} in {:.0} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
