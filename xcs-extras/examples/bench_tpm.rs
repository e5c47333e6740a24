//! How close to a provider's token limit a batch of model calls runs, and how many of its
//! requests are turned away, under three client-side strategies.
//!
//! The in-process mock server (`examples/common/llm_server.rs`) enforces 1 200 requests and
//! 600 000 tokens a minute per API key as OpenAI does (token buckets holding about a second of
//! each; a request counts its prompt's characters / 4 plus `max_tokens` at admission; over the
//! limit: a 429 with `Retry-After`, `retry-after-ms` and `x-ratelimit-*`). The batch: a few
//! hundred requests of varied size (prompts of 100–4 000 tokens, `max_tokens` 100–500), so the
//! token limit, not the request limit, is the one that binds. Each strategy gets a fresh server.
//!
//! - (a) the OpenAI cookbook's parallel processor (`api_request_parallel_processor.py`), written
//!   by hand: two client-side buckets of a minute's capacity at the limits, a request sent when
//!   both hold enough, and every send paused for 15 s after a 429 (failed requests go back in
//!   the queue). The floor;
//! - (b) `vmap` at `max_workers = 64` under the per-operator `rate_limit` option, tuned by hand to
//!   95 % of what the token limit allows at this workload's mean request size, with
//!   `max_retries` for the 429s that still come;
//! - (c) `vmap` at `max_workers = 64` with the endpoint's resource limited to the provider's
//!   limits (`set_resource_limits`): admission by each request's estimate.
//!
//! Reported: the requests answered (each strategy stops sending at twice the time the batch
//! takes at the limit), the share of the token limit sustained (tokens the server admitted ÷
//! wall time ÷ 10 000 tokens/s) and the share of requests answered 429.
//!
//! `cargo run --release -p xcs-extras --example bench_tpm` (about a minute a strategy);
//! `-- --quick` for a smoke run of a few seconds (a small batch, the cookbook's pause cut to 2 s).
//! `-- a`, `-- b`, `-- c` run only those rows.

#[path = "common/llm_server.rs"]
mod llm_server;

use std::collections::VecDeque;
use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use llm_server::{Knobs, Limits, MockServer, tokens_of};
use tokio::task::JoinSet;
use xcs::openai::{Chat, ChatRequest};
use xcs::{AsyncOperator, ResourceLimits, execution_options, set_resource_limits, vmap};

const RPM: u64 = 1_200;
const TPM: u64 = 600_000;
const MAX_WORKERS: usize = 64;

/// A deterministic workload: `n` requests, prompts of 100–4 000 tokens, `max_tokens` 100–500.
fn workload(n: usize) -> Vec<ChatRequest> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |range: std::ops::RangeInclusive<u64>| {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let x = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
        range.start() + x % (range.end() - range.start() + 1)
    };
    (0..n)
        .map(|i| {
            let prompt_tokens = next(100..=4_000) as usize;
            let max_tokens = next(100..=500) as u32;
            // Four characters a token, as the server counts.
            let mut prompt = format!("{i:>7} ");
            prompt.push_str(&"tok ".repeat(prompt_tokens - 2));
            ChatRequest::user(prompt).max_tokens(max_tokens)
        })
        .collect()
}

/// What the server admits for a request: what both it and the client estimate count.
fn tokens_needed(request: &ChatRequest) -> u64 {
    request
        .messages
        .iter()
        .map(|m| tokens_of(&m.content))
        .sum::<u64>()
        + u64::from(request.max_tokens.unwrap_or(0))
}

async fn server() -> Result<MockServer, Box<dyn Error>> {
    Ok(MockServer::start(Knobs {
        latency: Duration::from_millis(150),
        jitter: Duration::from_millis(100),
        reply: Arc::new(|_: &llm_server::ChatRequest| "ok".to_owned()),
        limits: Some(Limits::new(RPM, TPM)),
        ..Knobs::default()
    })
    .await?)
}

/// One strategy's run.
struct Row {
    label: String,
    wall: Duration,
    answered: usize,
    asked: usize,
    seen: llm_server::Snapshot,
}

/// (a) The cookbook's parallel processor, by hand (sending nothing new after `until`).
async fn cookbook(
    chat: Chat,
    requests: Vec<ChatRequest>,
    pause: Duration,
    until: Instant,
) -> usize {
    const MAX_ATTEMPTS: u32 = 5;
    let (rpm, tpm) = (RPM as f64, TPM as f64);
    let mut queue: VecDeque<(ChatRequest, u32)> =
        requests.into_iter().map(|r| (r, MAX_ATTEMPTS)).collect();
    let mut retries: VecDeque<(ChatRequest, u32)> = VecDeque::new();
    let (mut requests_left, mut tokens_left) = (rpm, tpm);
    let mut last_update = Instant::now();
    let mut last_429: Option<Instant> = None;
    let mut in_flight = JoinSet::new();
    let mut next: Option<(ChatRequest, u32)> = None;
    let mut answered = 0;
    loop {
        if next.is_none() {
            next = retries.pop_front().or_else(|| queue.pop_front());
        }
        let now = Instant::now();
        let elapsed = now.duration_since(last_update).as_secs_f64();
        requests_left = (requests_left + rpm * elapsed / 60.0).min(rpm);
        tokens_left = (tokens_left + tpm * elapsed / 60.0).min(tpm);
        last_update = now;
        if let Some((request, _)) = next.as_ref().filter(|_| now < until) {
            let need = tokens_needed(request) as f64;
            if requests_left >= 1.0 && tokens_left >= need && in_flight.len() < MAX_WORKERS {
                requests_left -= 1.0;
                tokens_left -= need;
                if let Some((request, attempts)) = next.take() {
                    let chat = chat.clone();
                    in_flight.spawn(async move {
                        let outcome = chat.call(request.clone()).await;
                        (request, attempts, outcome)
                    });
                }
            }
        }
        while let Some(done) = in_flight.try_join_next() {
            let Ok((request, attempts, outcome)) = done else {
                continue;
            };
            match outcome {
                Ok(_) => answered += 1,
                Err(error) => {
                    if error.is_rate_limited() {
                        last_429 = Some(Instant::now());
                    }
                    if attempts > 1 && error.is_retryable() {
                        retries.push_back((request, attempts - 1));
                    }
                }
            }
        }
        let nothing_left = next.is_none() && queue.is_empty() && retries.is_empty();
        if (nothing_left || Instant::now() >= until) && in_flight.is_empty() {
            return answered;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        // After a 429, everyone waits until `pause` has passed since it.
        if let Some(at) = last_429 {
            let since = at.elapsed();
            if since < pause {
                tokio::time::sleep(pause - since).await;
            }
        }
    }
}

async fn run_row(
    label: String,
    requests: &[ChatRequest],
    strategy: impl AsyncFnOnce(Chat, Vec<ChatRequest>) -> usize,
) -> Result<Row, Box<dyn Error>> {
    let server = server().await?;
    let chat = Chat::new().base_url(server.base_url()).model("mock-tpm");
    let start = Instant::now();
    let answered = strategy(chat, requests.to_vec()).await;
    let wall = start.elapsed();
    let seen = server.snapshot();
    server.shutdown().await;
    Ok(Row {
        label,
        wall,
        answered,
        asked: requests.len(),
        seen,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let (n, pause) = if quick {
        (10, Duration::from_secs(2))
    } else {
        (250, Duration::from_secs(15))
    };
    let requests = workload(n);
    let total: u64 = requests.iter().map(tokens_needed).sum();
    let mean = total as f64 / n as f64;
    let per_second = TPM as f64 / 60.0;
    // (b)'s hand tuning: 95 % of the request rate the token limit allows at the mean size.
    let rate = 0.95 * per_second / mean;
    let at_limit = total as f64 / per_second;
    // Each strategy stops sending at twice what the batch takes at the limit.
    let limit = Duration::from_secs_f64(2.0 * at_limit);
    println!(
        "{n} requests, {total} tokens (mean {mean:.0}) against {RPM} RPM and {TPM} TPM \
         ({per_second:.0} tokens/s): at the limit, {at_limit:.1} s; each strategy stops \
         sending after {:.0} s",
        limit.as_secs_f64()
    );

    // `-- a`, `-- b`, `-- c`: only those rows (each takes a minute or two).
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let runs = |row: &str| only.is_empty() || only.iter().any(|o| o == row);
    let mut rows = Vec::new();
    if runs("a") {
        rows.push(
            run_row(
                format!("(a) cookbook by hand, {} s pause", pause.as_secs()),
                &requests,
                async |chat, requests| {
                    cookbook(chat, requests, pause, Instant::now() + limit).await
                },
            )
            .await?,
        );
    }
    if runs("b") {
        rows.push(
            run_row(
                format!("(b) rate_limit = {rate:.2}/s"),
                &requests,
                async |chat, requests| {
                    let outcomes = execution_options!(
                        max_workers = MAX_WORKERS, rate_limit = rate, max_retries = 8,
                        timeout_seconds = limit => async {
                            vmap(chat).call_settled_async(requests).await
                        }
                    )
                    .await;
                    outcomes.iter().filter(|o| o.is_ok()).count()
                },
            )
            .await?,
        );
    }
    if runs("c") {
        rows.push(
            run_row(
                "(c) resource limits".to_owned(),
                &requests,
                async |chat, requests| {
                    let limits = ResourceLimits::new()
                        .requests_per_minute(RPM as f64)
                        .tokens_per_minute(TPM as f64)
                        .max_in_flight(MAX_WORKERS);
                    if let Some(resource) = AsyncOperator::resource(&chat)
                        && let Err(error) = set_resource_limits(resource, &limits)
                    {
                        eprintln!("set_resource_limits: {error}");
                        return 0;
                    }
                    let outcomes = execution_options!(
                    max_workers = MAX_WORKERS, max_retries = 8, timeout_seconds = limit => async {
                        vmap(chat).call_settled_async(requests).await
                    }
                )
                .await;
                    outcomes.iter().filter(|o| o.is_ok()).count()
                },
            )
            .await?,
        );
    }

    println!(
        "\n| strategy | wall | answered | tokens/s | % of the token limit | 429s | % of requests 429 |"
    );
    println!("|---|---|---|---|---|---|---|");
    for row in &rows {
        let rate = row.seen.tokens as f64 / row.wall.as_secs_f64();
        println!(
            "| {} | {:.1} s | {}/{} | {:.0} | {:.0} % | {} | {:.1} % |",
            row.label,
            row.wall.as_secs_f64(),
            row.answered,
            row.asked,
            rate,
            100.0 * rate / per_second,
            row.seen.rate_limited,
            100.0 * row.seen.rate_limited as f64 / row.seen.started.max(1) as f64,
        );
    }
    if rows.iter().any(|row| row.answered == 0) {
        return Err("a strategy answered nothing".into());
    }
    Ok(())
}
