//! What xcs costs on real HTTP: 200 chat requests that each take 50 ms at the server, 32 in
//! flight, against the in-process mock server of `examples/common/llm_server.rs`.
//!
//! Two clients of the same `reqwest::Client`, in the same run, rounds interleaved:
//! - xcs: an `AsyncOperator` around the request, `pmap(op, 32).call(prompts).await`;
//! - by hand: `futures::stream::iter(prompts).map(request).buffer_unordered(32)`, answers put
//!   back in input order.
//!
//! The floor is ⌈200 / 32⌉ × 50 ms = 350 ms; both should be within a few percent of it and of
//! each other. `cargo run --release --example bench_http [-- --rounds N]` (default 5 rounds).

#[path = "common/llm_server.rs"]
mod llm_server;
#[path = "common/openai.rs"]
mod openai;

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream;
use llm_server::{Knobs, MockServer, prompts};
use openai::{ChatClient, ChatError, Message};
use xcs::{AsyncOperator, XcsError, pmap};

const REQUESTS: usize = 200;
const IN_FLIGHT: usize = 32;
const LATENCY: Duration = Duration::from_millis(50);
const MODEL: &str = "mock-1";

/// One chat completion per prompt.
struct Chat {
    client: ChatClient,
}

impl AsyncOperator for Chat {
    type Input = String;
    type Output = String;

    async fn forward(&self, prompt: String) -> Result<String, XcsError> {
        self.client
            .complete(MODEL, &[Message::user(prompt)])
            .await
            .map_err(|error| XcsError::operator("chat", error))
    }

    fn name(&self) -> &str {
        "chat"
    }
}

/// The hand-written floor: the same requests through `buffer_unordered`, answers in input order,
/// the first failure (by index) reported.
async fn by_hand(client: &ChatClient, prompts: Vec<String>) -> Result<Vec<String>, ChatError> {
    let mut answers: Vec<Option<String>> = vec![None; prompts.len()];
    let mut first_error: Option<(usize, ChatError)> = None;
    let mut done = stream::iter(prompts.into_iter().enumerate())
        .map(|(index, prompt)| async move {
            (
                index,
                client.complete(MODEL, &[Message::user(prompt)]).await,
            )
        })
        .buffer_unordered(IN_FLIGHT);
    while let Some((index, answer)) = done.next().await {
        match answer {
            Ok(text) => answers[index] = Some(text),
            Err(error) if first_error.as_ref().is_none_or(|(i, _)| index < *i) => {
                first_error = Some((index, error));
            }
            Err(_) => {}
        }
    }
    match first_error {
        Some((_, error)) => Err(error),
        None => Ok(answers.into_iter().flatten().collect()),
    }
}

struct Samples {
    label: &'static str,
    times: Vec<Duration>,
    peaks: Vec<usize>,
}

impl Samples {
    fn new(label: &'static str) -> Samples {
        Samples {
            label,
            times: Vec::new(),
            peaks: Vec::new(),
        }
    }

    fn median(&self) -> Duration {
        let mut sorted = self.times.clone();
        sorted.sort();
        sorted[sorted.len() / 2]
    }

    fn min(&self) -> Duration {
        self.times.iter().copied().min().unwrap_or_default()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn rounds_from_args() -> Result<usize, Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let mut rounds = 5;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => {
                rounds = args
                    .next()
                    .ok_or("--rounds needs a number")?
                    .parse::<usize>()?
                    .max(1);
            }
            other => return Err(format!("unknown argument `{other}` (try --rounds N)").into()),
        }
    }
    Ok(rounds)
}

fn main() -> Result<(), Box<dyn Error>> {
    let rounds = rounds_from_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(rounds))
}

async fn run(rounds: usize) -> Result<(), Box<dyn Error>> {
    let server = MockServer::start(Knobs {
        latency: LATENCY,
        ..Knobs::default()
    })
    .await?;
    let client = ChatClient::new(server.base_url(), None)?;
    let op = Arc::new(Chat {
        client: client.clone(),
    });
    let prompts = prompts("question", REQUESTS);
    let expected: Vec<String> = prompts.iter().map(|p| format!("echo: {p}")).collect();

    // Warm-up: open the connections and fault the code in, for both.
    pmap(Arc::clone(&op), IN_FLIGHT)
        .call(prompts.clone())
        .await?;
    by_hand(&client, prompts.clone()).await?;

    let mut xcs = Samples::new("xcs: pmap(op, 32).call(prompts).await");
    let mut hand = Samples::new("reqwest + buffer_unordered(32)");
    for round in 0..rounds {
        // Alternate which goes first, so neither always gets the warmer moment.
        for which in [round % 2, 1 - round % 2] {
            let inputs = prompts.clone();
            server.stats().reset_peak();
            let start = Instant::now();
            let (answers, samples) = if which == 0 {
                (
                    pmap(Arc::clone(&op), IN_FLIGHT).call(inputs).await?,
                    &mut xcs,
                )
            } else {
                (by_hand(&client, inputs).await?, &mut hand)
            };
            samples.times.push(start.elapsed());
            samples.peaks.push(server.snapshot().peak);
            if answers != expected {
                return Err(format!("{}: wrong or misordered answers", samples.label).into());
            }
        }
    }

    let floor = LATENCY * REQUESTS.div_ceil(IN_FLIGHT) as u32;
    println!(
        "{REQUESTS} HTTP requests × {} ms at the server, {IN_FLIGHT} in flight \
         (floor {:.0} ms), {rounds} rounds, {} build:",
        LATENCY.as_millis(),
        ms(floor),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    for samples in [&xcs, &hand] {
        let peak = samples.peaks.iter().copied().max().unwrap_or(0);
        println!(
            "  {:<40} median {:>6.1} ms   min {:>6.1} ms   peak in flight at the server {peak}",
            samples.label,
            ms(samples.median()),
            ms(samples.min()),
        );
    }
    let ratio = xcs.median().as_secs_f64() / hand.median().as_secs_f64();
    println!("  ratio xcs / hand-written (medians): {ratio:.3}");
    server.shutdown().await;
    Ok(())
}
