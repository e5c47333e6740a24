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
//!
//! With `OPENAI_BASE_URL` set (and `OPENAI_API_KEY`, `OPENAI_MODEL` as for `llm_pipeline`), the
//! same comparison runs against that server instead; mind its rate limits and bill.

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
use openai::{ChatClient, ChatError, Endpoint, Message};
use xcs::{AsyncOperator, XcsError, pmap};

const REQUESTS: usize = 200;
const IN_FLIGHT: usize = 32;
const LATENCY: Duration = Duration::from_millis(50);
const MODEL: &str = "mock-1";

/// One chat completion per prompt.
struct Chat {
    client: ChatClient,
    model: String,
}

impl AsyncOperator for Chat {
    type Input = String;
    type Output = String;

    async fn forward(&self, prompt: String) -> Result<String, XcsError> {
        self.client
            .complete(&self.model, &[Message::user(prompt)])
            .await
            .map_err(|error| XcsError::operator("chat", error))
    }

    fn name(&self) -> &str {
        "chat"
    }
}

/// The hand-written floor: the same requests through `buffer_unordered`, answers in input order,
/// the first failure (by index) reported.
async fn by_hand(
    client: &ChatClient,
    model: &str,
    prompts: Vec<String>,
) -> Result<Vec<String>, ChatError> {
    let mut answers: Vec<Option<String>> = vec![None; prompts.len()];
    let mut first_error: Option<(usize, ChatError)> = None;
    let mut done = stream::iter(prompts.into_iter().enumerate())
        .map(|(index, prompt)| async move {
            (
                index,
                client.complete(model, &[Message::user(prompt)]).await,
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
    // A real server from the environment, or the mock of known latency.
    let endpoint = Endpoint::from_env();
    let server = match &endpoint {
        Some(_) => None,
        None => Some(
            MockServer::start(Knobs {
                latency: LATENCY,
                ..Knobs::default()
            })
            .await?,
        ),
    };
    let (client, model) = match (&endpoint, &server) {
        (Some(endpoint), _) => (endpoint.client()?, endpoint.models[0].clone()),
        (None, Some(server)) => (ChatClient::new(server.base_url(), None)?, MODEL.to_owned()),
        (None, None) => return Err("no server to send requests to".into()),
    };
    let op = Arc::new(Chat {
        client: client.clone(),
        model: model.clone(),
    });
    let prompts = prompts("question", REQUESTS);
    // The mock echoes; a real model's answers are only counted.
    let expected: Option<Vec<String>> = server
        .is_some()
        .then(|| prompts.iter().map(|p| format!("echo: {p}")).collect());

    // Warm-up: open the connections and fault the code in, for both.
    pmap(Arc::clone(&op), IN_FLIGHT)
        .call(prompts.clone())
        .await?;
    by_hand(&client, &model, prompts.clone()).await?;

    let mut xcs = Samples::new("xcs: pmap(op, 32).call(prompts).await");
    let mut hand = Samples::new("reqwest + buffer_unordered(32)");
    for round in 0..rounds {
        // Alternate which goes first, so neither always gets the warmer moment.
        for which in [round % 2, 1 - round % 2] {
            let inputs = prompts.clone();
            if let Some(server) = &server {
                server.stats().reset_peak();
            }
            let start = Instant::now();
            let (answers, samples) = if which == 0 {
                (
                    pmap(Arc::clone(&op), IN_FLIGHT).call(inputs).await?,
                    &mut xcs,
                )
            } else {
                (by_hand(&client, &model, inputs).await?, &mut hand)
            };
            samples.times.push(start.elapsed());
            if let Some(server) = &server {
                samples.peaks.push(server.snapshot().peak);
            }
            let right = match &expected {
                Some(expected) => answers == *expected,
                None => answers.len() == REQUESTS,
            };
            if !right {
                return Err(format!("{}: wrong or misordered answers", samples.label).into());
            }
        }
    }

    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    match &endpoint {
        Some(endpoint) => println!(
            "{REQUESTS} HTTP requests to `{model}` at {}, {IN_FLIGHT} in flight, {rounds} rounds, \
             {build} build:",
            endpoint.base_url
        ),
        None => {
            let floor = LATENCY * REQUESTS.div_ceil(IN_FLIGHT) as u32;
            println!(
                "{REQUESTS} HTTP requests × {} ms at the server, {IN_FLIGHT} in flight \
                 (floor {:.0} ms), {rounds} rounds, {build} build:",
                LATENCY.as_millis(),
                ms(floor),
            );
        }
    }
    for samples in [&xcs, &hand] {
        let peak = match samples.peaks.iter().copied().max() {
            Some(peak) => format!("   peak in flight at the server {peak}"),
            None => String::new(),
        };
        println!(
            "  {:<40} median {:>6.1} ms   min {:>6.1} ms{peak}",
            samples.label,
            ms(samples.median()),
            ms(samples.min()),
        );
    }
    let ratio = xcs.median().as_secs_f64() / hand.median().as_secs_f64();
    println!("  ratio xcs / hand-written (medians): {ratio:.3}");
    if let Some(server) = server {
        server.shutdown().await;
    }
    Ok(())
}
