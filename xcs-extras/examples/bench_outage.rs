//! What a circuit breaker buys a batch during a provider outage: the item latencies of one batch
//! of model calls under `xcs::fallback(primary, secondary)`, while the primary's server answers
//! every request with a 503.
//!
//! Two in-process mock servers (`examples/common/llm_server.rs`), each answering after 20 ms;
//! 200 requests under `vmap` at `max_workers = 16`, `max_retries = 3`. Rows, each on fresh
//! resources:
//!
//! - `healthy`: no outage, the primary answers everything (the reference);
//! - `outage, retries only`: the primary down, no breaker: every item spends its retries
//!   (backoffs of about 0.1, 0.2 and 0.4 s) on the primary before the secondary answers;
//! - `outage, breaker`: the primary down, `open_after_failures = 5`, `cooldown_seconds = 30` on
//!   its resource: after five failures its calls are refused at once (a retry waiting in its
//!   backoff is refused too) and the secondary answers at once.
//!
//! Reported per row: the items' latency (p50, p99, max; each item's trace event, from its start
//! to its answer), the batch's wall time and the requests each server saw.
//!
//! `cargo run --release -p xcs-extras --example bench_outage`; `-- --quick` runs 64 items.

#[path = "common/llm_server.rs"]
mod llm_server;

use std::error::Error;
use std::time::{Duration, Instant};

use llm_server::{Knobs, MockServer};
use xcs::openai::{Chat, ChatRequest};
use xcs::{
    AsyncOperator, ResourceLimits, execution_options, fallback, resource_stats,
    set_resource_limits, take_trace, vmap,
};

const WORKERS: usize = 16;
const LATENCY: Duration = Duration::from_millis(20);

struct Row {
    label: &'static str,
    p50: Duration,
    p99: Duration,
    max: Duration,
    wall: Duration,
    primary_requests: usize,
    secondary_requests: usize,
    refused: u64,
}

/// The `q` quantile of sorted `values` (nearest rank).
fn quantile(values: &[Duration], q: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

async fn run(
    label: &'static str,
    items: usize,
    outage: bool,
    breaker: bool,
    round: usize,
) -> Result<Row, Box<dyn Error>> {
    let knobs = Knobs {
        latency: LATENCY,
        ..Knobs::default()
    };
    let primary_server = MockServer::start(knobs.clone()).await?;
    let secondary_server = MockServer::start(knobs).await?;
    primary_server.set_outage(outage);
    let primary_resource = format!("bench-outage-primary-{round}");
    if breaker {
        set_resource_limits(
            &primary_resource,
            &ResourceLimits::new()
                .open_after_failures(5)
                .cooldown_seconds(30.0),
        )?;
    }
    let primary = Chat::new()
        .base_url(primary_server.base_url())
        .model("primary")
        .resource(primary_resource.clone())
        .named("primary");
    let secondary = Chat::new()
        .base_url(secondary_server.base_url())
        .model("secondary")
        .resource(format!("bench-outage-secondary-{round}"))
        .named("secondary");
    let op = fallback(primary, secondary);
    let name = AsyncOperator::name(&op).to_owned();
    let requests: Vec<ChatRequest> = (0..items)
        .map(|i| ChatRequest::user(format!("question {i} of round {round}")).max_tokens(16))
        .collect();
    take_trace();
    let begun = Instant::now();
    let replies = execution_options!(
        max_workers = WORKERS,
        max_retries = 3,
        trace_execution = true => vmap(op).call(requests)
    )
    .await?;
    let wall = begun.elapsed();
    assert_eq!(replies.len(), items);
    let mut latencies: Vec<Duration> = take_trace()
        .into_events()
        .into_iter()
        .filter(|e| e.operator == name && e.index.is_some())
        .map(|e| e.duration)
        .collect();
    latencies.sort();
    assert_eq!(latencies.len(), items, "one trace event per item");
    let row = Row {
        label,
        p50: quantile(&latencies, 0.50),
        p99: quantile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or_default(),
        wall,
        primary_requests: primary_server.snapshot().started,
        secondary_requests: secondary_server.snapshot().started,
        refused: resource_stats(&primary_resource).map_or(0, |s| s.refused_open),
    };
    primary_server.shutdown().await;
    secondary_server.shutdown().await;
    Ok(row)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let quick = std::env::args().any(|a| a == "--quick");
    let items = if quick { 64 } else { 200 };
    let rows = [
        run("healthy", items, false, false, 0).await?,
        run("outage, retries only", items, true, false, 1).await?,
        run("outage, breaker", items, true, true, 2).await?,
    ];
    println!(
        "{items} items, max_workers = {WORKERS}, max_retries = 3, servers answering after {} \
         (fallback(primary, secondary) in every row)\n",
        ms(LATENCY)
    );
    println!(
        "{:<22} {:>8} {:>8} {:>8} {:>9} {:>10} {:>10} {:>8}",
        "row", "p50", "p99", "max", "wall", "primary", "secondary", "refused"
    );
    for row in &rows {
        println!(
            "{:<22} {:>8} {:>8} {:>8} {:>9} {:>10} {:>10} {:>8}",
            row.label,
            ms(row.p50),
            ms(row.p99),
            ms(row.max),
            ms(row.wall),
            row.primary_requests,
            row.secondary_requests,
            row.refused
        );
    }
    let healthy = &rows[0];
    let breaker = &rows[2];
    println!(
        "\nthe breaker adds {} to p99 over the healthy batch (target: at most 1 s)",
        ms(breaker.p99.saturating_sub(healthy.p99))
    );
    // Every item was answered: by the secondary during the outage.
    assert_eq!(rows[1].secondary_requests, items);
    assert_eq!(breaker.secondary_requests, items);
    Ok(())
}
