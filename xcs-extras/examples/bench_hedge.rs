//! What `hedge_after` does to a heavy tail: the p99 latency of a batch's items, the extra
//! requests it costs, and how soon a hedged call's loser lets go of its connection.
//!
//! The in-process mock server (`examples/common/llm_server.rs`) answers every request after
//! 20 ms, except 5 % of them, which take ten times as long ([`Knobs::heavy_tail`]; which ones is
//! fixed by each request's content and how many times it was sent, so both runs see the same
//! slow requests, and a request sent again gets a fresh roll). A batch of 400 chat requests
//! (`xcs::openai::Chat`) runs as a `vmap` at `max_workers = 32`, each item timed from its start
//! to its answer, twice, each time against a fresh server:
//!
//! - without hedging;
//! - with `hedge_after = "p95"` (after 40 warm-up calls, so that the quantile is known).
//!
//! Reported for each: the items' p50, p99 and max latency, how many items took over 100 ms
//! (five times the server's latency); the requests the server saw beyond
//! one per item (hedges); and, for hedged items, how long after the winner's answer the loser's
//! connection closed (seen at the server: the handler's future dropped).
//!
//! `cargo run --release -p xcs-extras --example bench_hedge`; `-- --quick` for a smoke run of a
//! second or two (100 items).

#[path = "common/llm_server.rs"]
mod llm_server;

use std::error::Error;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use llm_server::{Knobs, MockServer};
use xcs::openai::{Chat, ChatReply, ChatRequest};
use xcs::{AsyncOperator, Hedge, XcsError, execution_options, vmap};

const LATENCY: Duration = Duration::from_millis(20);
const SLOW_FRACTION: f64 = 0.05;
const MAX_WORKERS: usize = 32;
const WARM_UP: usize = 40;

/// A chat call timed from its start to its answer, hedged by `rule` (the batch itself is not:
/// the rule applies to each item's call).
struct Timed {
    chat: Chat,
    rule: Option<Hedge>,
    latencies: Mutex<Vec<Duration>>,
}

impl AsyncOperator for Timed {
    type Input = ChatRequest;
    type Output = ChatReply;

    async fn forward(&self, request: ChatRequest) -> Result<ChatReply, XcsError> {
        let started = Instant::now();
        let reply = execution_options!(hedge_after = self.rule => async {
            self.chat.call(request).await
        })
        .await?;
        self.latencies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(started.elapsed());
        Ok(reply)
    }

    fn name(&self) -> &str {
        "timed_chat"
    }
}

/// The `q` quantile (nearest rank) of `sorted`.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

struct Run {
    p50: Duration,
    p99: Duration,
    max: Duration,
    /// Items that took more than five times the server's latency.
    slow: usize,
    extra: f64,
    closes: Vec<Duration>,
    wall: Duration,
}

async fn run(items: usize, rule: Option<Hedge>) -> Result<Run, Box<dyn Error>> {
    let server = MockServer::start(Knobs::heavy_tail(LATENCY, SLOW_FRACTION)).await?;
    let chat = Chat::new()
        .base_url(server.base_url())
        .model("mock-default")
        .resource(format!("{}#bench_hedge", server.base_url()));
    // The same warm-up for both runs: the quantile needs recent latencies.
    execution_options!(hedge_after = rule, max_workers = MAX_WORKERS => async {
        let warm: Vec<_> = (0..WARM_UP)
            .map(|i| ChatRequest::user(format!("warm-up {i}")))
            .collect();
        vmap(chat.clone()).call(warm).await
    })
    .await?;
    server.settled(Duration::from_secs(5)).await;
    let before = server.snapshot();
    let timed = Arc::new(Timed {
        chat,
        rule,
        latencies: Mutex::new(Vec::with_capacity(items)),
    });
    let requests: Vec<_> = (0..items)
        .map(|i| ChatRequest::user(format!("item {i}: what is {i} squared?")))
        .collect();
    let started = Instant::now();
    let replies = execution_options!(max_workers = MAX_WORKERS => async {
        vmap(Arc::clone(&timed)).call(requests).await
    })
    .await?;
    let wall = started.elapsed();
    assert_eq!(replies.len(), items);
    let seen = server.settled(Duration::from_secs(5)).await.since(&before);
    let mut latencies = timed
        .latencies
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    latencies.sort();
    let mut closes = server.stats().loser_close_delays();
    closes.sort();
    server.shutdown().await;
    Ok(Run {
        p50: quantile(&latencies, 0.50),
        p99: quantile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or_default(),
        slow: latencies.iter().filter(|l| **l > LATENCY * 5).count(),
        extra: (seen.started as f64 - items as f64) / items as f64,
        closes,
        wall,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    let quick = std::env::args().any(|a| a == "--quick");
    let items = if quick { 100 } else { 400 };
    println!(
        "heavy tail: {} per answer, {:.0} % of requests 10x slower; {items} items, max_workers = {MAX_WORKERS}",
        ms(LATENCY),
        SLOW_FRACTION * 100.0
    );
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:>6} {:>8} {:>10}",
        "run", "p50", "p99", "max", "slow", "extra", "wall"
    );
    let mut rows = Vec::new();
    for (label, rule) in [
        ("no hedging", None),
        ("hedge_after = \"p95\"", Hedge::quantile(95)),
    ] {
        let r = run(items, rule).await?;
        println!(
            "{label:<22} {:>10} {:>10} {:>10} {:>6} {:>7.1}% {:>10}",
            ms(r.p50),
            ms(r.p99),
            ms(r.max),
            r.slow,
            r.extra * 100.0,
            ms(r.wall)
        );
        rows.push(r);
    }
    let (plain, hedged) = (&rows[0], &rows[1]);
    let cut = 1.0 - hedged.p99.as_secs_f64() / plain.p99.as_secs_f64().max(f64::MIN_POSITIVE);
    println!(
        "p99 cut by {:.0} % for {:.1} % extra requests",
        cut * 100.0,
        hedged.extra * 100.0
    );
    if hedged.closes.is_empty() {
        println!("no loser connection closed (no hedge lost a race)");
    } else {
        println!(
            "loser connections closed after the winner's answer: {} of them, median {}, p99 {}, max {}",
            hedged.closes.len(),
            ms(quantile(&hedged.closes, 0.5)),
            ms(quantile(&hedged.closes, 0.99)),
            ms(hedged.closes.last().copied().unwrap_or_default()),
        );
    }
    Ok(())
}
