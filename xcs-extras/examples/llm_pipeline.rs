//! A model pipeline on async operators, over HTTP: for each question, three drafters (models or
//! personas) write an answer at once, a judge model picks the best, over a batch of questions,
//! with `max_workers`, `timeout_seconds` and `enable_caching` in force.
//!
//! The operators are hand-written `AsyncOperator`s holding a shared chat client (one
//! `reqwest::Client`, one connection pool) and a model name; the client is
//! `examples/common/openai.rs`, an OpenAI-compatible chat-completions client.
//!
//! By default the example starts its own OpenAI-compatible server in-process
//! (`examples/common/llm_server.rs`, on 127.0.0.1): answers take 60–200 ms, a few are very slow
//! and a few fail, deterministically, so the run is offline, reproducible and takes a few seconds.
//! To use a real server instead:
//!
//! ```text
//! OPENAI_BASE_URL=http://localhost:11434/v1 OPENAI_MODEL=llama3.2 cargo run --example llm_pipeline
//! ```
//!
//! The variables are the ones the OpenAI SDKs read: `OPENAI_BASE_URL` is the API's base (vLLM:
//! `http://localhost:8000/v1`, Ollama: `http://localhost:11434/v1`), `OPENAI_API_KEY` a bearer
//! token if the server wants one, and `OPENAI_MODEL` one model, or several separated by commas
//! (the drafters take them in turn; the judge uses the first). This build talks plain HTTP: see
//! `openai.rs` for `https://`.
//!
//! Run with `cargo run --example llm_pipeline`.

#[path = "common/llm_server.rs"]
mod llm_server;
#[path = "common/openai.rs"]
mod openai;

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use llm_server::{ChatRequest, Knobs, MockServer, stable_hash};
use openai::{ChatClient, ChatError, Endpoint, Message};
use xcs::{AsyncOperator, XcsError, cache_stats, execution_options};

/// How a drafter answers: a name and its system prompt.
const PERSONAS: [(&str, &str); 3] = [
    ("concise", "Answer in one short sentence."),
    (
        "careful",
        "Answer accurately and say what the answer assumes.",
    ),
    ("friendly", "Answer warmly, for a curious ten-year-old."),
];

const QUESTIONS: [&str; 12] = [
    "What is the capital of France?",
    "At what temperature does water boil at sea level?",
    "Which is the largest planet of the solar system?",
    "Who wrote Pride and Prejudice?",
    "How fast does light travel in a vacuum?",
    "What is the chemical symbol for gold?",
    "How many continents are there?",
    "Who painted the Mona Lisa?",
    "What is the smallest prime number?",
    "What is the tallest mountain on Earth?",
    "At what temperature does water freeze in Fahrenheit?",
    "What does Rust's borrow checker prevent?",
];

// ---------------------------------------------------------------------------------------------
// The operators.

/// Counts model calls on the client side: sent, in flight (with peak), and cancelled (the call's
/// future was dropped, as at a deadline, before the answer came).
#[derive(Default)]
struct Meter {
    sent: AtomicUsize,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    cancelled: AtomicUsize,
}

/// Held while a call runs; dropped unfinished means cancelled.
struct Sending<'a> {
    meter: &'a Meter,
    finished: bool,
}

impl Meter {
    fn send(&self) -> Sending<'_> {
        self.sent.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        Sending {
            meter: self,
            finished: false,
        }
    }

    fn take(&self) -> (usize, usize, usize) {
        let peak = self.in_flight.load(Ordering::SeqCst);
        (
            self.sent.swap(0, Ordering::SeqCst),
            self.peak.swap(peak, Ordering::SeqCst),
            self.cancelled.swap(0, Ordering::SeqCst),
        )
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.meter.cancelled.fetch_add(1, Ordering::SeqCst);
        }
        self.meter.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What every operator shares: the client, the meter.
struct Backend {
    client: ChatClient,
    meter: Meter,
}

impl Backend {
    async fn ask(
        &self,
        operator: &str,
        model: &str,
        messages: &[Message],
    ) -> Result<String, XcsError> {
        let mut sending = self.meter.send();
        let answer = self.client.complete(model, messages).await;
        sending.finished = true;
        // 429s wait for their `Retry-After`, 500s are retried, other 4xx are permanent.
        answer.map_err(|error| error.into_xcs(operator))
    }
}

/// One drafter: a model and a persona. `Input`/`Output` are `String`s, so under
/// `enable_caching` xcs can key calls by the question (the name tells drafters apart).
struct Draft {
    backend: Arc<Backend>,
    model: String,
    system: &'static str,
    name: String,
}

impl AsyncOperator for Draft {
    type Input = String;
    type Output = String;

    async fn forward(&self, question: String) -> Result<String, XcsError> {
        let messages = [Message::system(self.system), Message::user(question)];
        self.backend.ask(&self.name, &self.model, &messages).await
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// The judge: `[question, answer 1, answer 2, …]` in, the index of the best answer out.
struct Judge {
    backend: Arc<Backend>,
    model: String,
}

const JUDGE_SYSTEM: &str = "You are a strict judge of answers. Reply with the number of the best \
                            answer and nothing else.";

impl AsyncOperator for Judge {
    type Input = Vec<String>;
    type Output = usize;

    async fn forward(&self, input: Vec<String>) -> Result<usize, XcsError> {
        let Some((question, answers)) = input.split_first() else {
            return Err(XcsError::operator("judge", "nothing to judge"));
        };
        let mut prompt = format!("Question: {question}\n\nAnswers:\n");
        for (i, answer) in answers.iter().enumerate() {
            prompt.push_str(&format!("{}. {}\n", i + 1, answer.replace('\n', " ")));
        }
        prompt.push_str("\nWhich answer is best? Reply with its number only.");
        let messages = [Message::system(JUDGE_SYSTEM), Message::user(prompt)];
        let reply = self.backend.ask("judge", &self.model, &messages).await?;
        // The first number in range; models sometimes add words around it.
        reply
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|digits| digits.parse::<usize>().ok())
            .find(|n| (1..=answers.len()).contains(n))
            .map(|n| n - 1)
            .ok_or_else(|| XcsError::operator("judge", format!("no answer number in {reply:?}")))
    }

    fn name(&self) -> &str {
        "judge"
    }
}

/// What the pipeline returns for one question.
struct Verdict {
    answer: String,
    /// The drafter whose answer won.
    by: String,
    /// `drafts ok / drafts asked`.
    drafts: (usize, usize),
    /// Drafters that gave no answer, and why.
    missing: Vec<String>,
}

/// The whole pipeline for one question, itself an operator so `vmap` can run it over a batch.
struct Pipeline {
    drafts: Vec<Draft>,
    judge: Judge,
    /// The deadline of each model call (the batch has its own, longer one).
    per_call: Duration,
}

impl AsyncOperator for Pipeline {
    type Input = String;
    type Output = Verdict;

    async fn forward(&self, question: String) -> Result<Verdict, XcsError> {
        // Every drafter at once, each under its own deadline: a slow one is dropped (its request
        // cancelled) without holding the others up.
        let per_call = self.per_call;
        let drafted = join_all(self.drafts.iter().map(|draft| {
            let question = question.clone();
            execution_options!(timeout_seconds = per_call => async move {
                draft.call(question).await
            })
        }))
        .await;
        let mut candidates = Vec::new();
        let mut missing = Vec::new();
        let mut first_error = None;
        for (draft, outcome) in self.drafts.iter().zip(drafted) {
            match outcome {
                Ok(answer) => candidates.push((draft.name.clone(), answer)),
                Err(error) => {
                    missing.push(why(&error));
                    first_error.get_or_insert(error);
                }
            }
        }
        let asked = self.drafts.len();
        let best = match candidates.len() {
            0 => {
                return Err(
                    first_error.unwrap_or_else(|| XcsError::operator("pipeline", "no drafter"))
                );
            }
            // One answer needs no judge.
            1 => 0,
            _ => {
                let mut input = vec![question];
                input.extend(candidates.iter().map(|(_, answer)| answer.clone()));
                execution_options!(timeout_seconds = per_call => async {
                    self.judge.call(input).await
                })
                .await?
            }
        };
        let drafts = (candidates.len(), asked);
        let (by, answer) = candidates.swap_remove(best);
        Ok(Verdict {
            answer,
            by,
            drafts,
            missing,
        })
    }

    fn name(&self) -> &str {
        "pipeline"
    }
}

/// Why a call failed, in a few words: `concise/mock-small timed out`, `judge: HTTP 500`.
fn why(error: &XcsError) -> String {
    match error {
        XcsError::Timeout { operator, .. } => format!("{operator} timed out"),
        XcsError::Operator {
            operator, source, ..
        } => match source.downcast_ref::<ChatError>() {
            Some(ChatError::Status { status, .. }) => {
                format!("{operator}: HTTP {}", status.as_u16())
            }
            _ => format!("{operator}: {source}"),
        },
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// The mock server's replies: what the stand-in "models" know.

const FACTS: [(&str, &str); 12] = [
    ("France", "Paris is the capital of France"),
    ("boil", "water boils at 100 °C (212 °F) at sea level"),
    ("planet", "Jupiter is the largest planet"),
    ("Pride", "Jane Austen wrote Pride and Prejudice"),
    ("light", "light travels at about 299,792 km/s in a vacuum"),
    ("gold", "the symbol for gold is Au"),
    ("continents", "there are seven continents"),
    ("Mona Lisa", "Leonardo da Vinci painted the Mona Lisa"),
    ("prime", "2 is the smallest prime number"),
    (
        "mountain",
        "Mount Everest, at 8,849 m, is the tallest mountain",
    ),
    ("freeze", "water freezes at 32 °F"),
    (
        "borrow checker",
        "it prevents dangling references and data races, at compile time",
    ),
];

/// A mock model: drafts in the persona's style, or plays the judge (a pick that depends only on
/// the prompt, so runs are reproducible).
fn mock_reply(request: &ChatRequest) -> String {
    let prompt = request.prompt();
    let system = request.system().unwrap_or_default();
    if system == JUDGE_SYSTEM {
        let answers = prompt
            .lines()
            .filter(|line| {
                line.split_once(". ")
                    .is_some_and(|(n, _)| n.parse::<u32>().is_ok())
            })
            .count()
            .max(1);
        return format!("{}", 1 + stable_hash(prompt) % answers as u64);
    }
    let fact = FACTS
        .iter()
        .find(|(key, _)| prompt.contains(key))
        .map_or("I am not sure", |(_, fact)| fact);
    let (first, rest) = fact.split_at(1);
    let sentence = format!("{}{rest}", first.to_uppercase());
    match PERSONAS.iter().position(|(_, text)| *text == system) {
        Some(0) => format!("{sentence}."),
        Some(1) => format!("{sentence}, by the usual definitions ({}).", request.model),
        _ => format!("Great question! {sentence}."),
    }
}

// ---------------------------------------------------------------------------------------------

/// Where the models are: the in-process mock, or a real server from the environment.
struct Target {
    base_url: String,
    api_key: Option<String>,
    models: Vec<String>,
    mock: Option<MockServer>,
}

async fn target() -> Result<Target, Box<dyn Error>> {
    if let Some(endpoint) = Endpoint::from_env() {
        return Ok(Target {
            base_url: endpoint.base_url,
            api_key: endpoint.api_key,
            models: endpoint.models,
            mock: None,
        });
    }
    let mock = MockServer::start(Knobs {
        latency: Duration::from_millis(60),
        jitter: Duration::from_millis(140),
        slow_rate: 0.08,
        slow_latency: Duration::from_secs(10),
        failure_rate: 0.06,
        // Some requests are turned away with a 429 and `Retry-After: 1`: `max_retries` waits
        // and sends them again.
        rate_limited_rate: 0.06,
        retry_after: Duration::from_secs(1),
        reply: Arc::new(mock_reply),
    })
    .await?;
    Ok(Target {
        base_url: mock.base_url().to_owned(),
        api_key: None,
        models: vec![
            "mock-small".into(),
            "mock-medium".into(),
            "mock-large".into(),
        ],
        mock: Some(mock),
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let target = target().await?;
    let backend = Arc::new(Backend {
        client: ChatClient::new(&target.base_url, target.api_key.clone())?,
        meter: Meter::default(),
    });
    // A mock answers in milliseconds; real models take seconds. (Long enough for a 429's
    // one-second `Retry-After` and a retry: `max_retries` never waits past the deadline.)
    let (per_call, whole_batch) = if target.mock.is_some() {
        (Duration::from_millis(2500), Duration::from_secs(10))
    } else {
        (Duration::from_secs(60), Duration::from_secs(600))
    };
    let pipeline = Arc::new(Pipeline {
        drafts: PERSONAS
            .iter()
            .enumerate()
            .map(|(i, (persona, system))| {
                let model = target.models[i % target.models.len()].clone();
                Draft {
                    backend: Arc::clone(&backend),
                    name: format!("{persona}/{model}"),
                    model,
                    system,
                }
            })
            .collect(),
        judge: Judge {
            backend: Arc::clone(&backend),
            model: target.models[0].clone(),
        },
        per_call,
    });
    let questions: Vec<String> = QUESTIONS.iter().map(|q| q.to_string()).collect();

    match &target.mock {
        Some(mock) => println!(
            "models: in-process mock server at {} (60–200 ms an answer, some very slow, some \
             failing; set OPENAI_BASE_URL for a real one)",
            mock.base_url()
        ),
        None => println!(
            "models: {} at {}",
            target.models.join(", "),
            target.base_url
        ),
    }
    println!(
        "pipeline: {} drafters + 1 judge per question, {} questions; max_workers = 4 questions \
         at once, timeout_seconds = {} per model call and {} for the batch, enable_caching = true\n",
        pipeline.drafts.len(),
        questions.len(),
        per_call.as_secs_f64(),
        whole_batch.as_secs_f64(),
    );

    for pass in [
        "first pass",
        "second pass (same questions: what the cache can answer)",
    ] {
        let server_before = target.mock.as_ref().map(MockServer::snapshot);
        if let Some(mock) = &target.mock {
            mock.stats().reset_peak();
        }
        let cache_before = cache_stats();
        let start = Instant::now();
        // `call_settled_async`: every question's own outcome, so one failed question does not
        // take the others down.
        // Failed model calls (500s, 429s) run again up to twice; every model starts at most 40
        // calls a second; tracing counts the retries.
        let _ = xcs::take_trace();
        let outcomes = execution_options!(
            max_workers = 4, timeout_seconds = whole_batch, enable_caching = true,
            max_retries = 2, rate_limit = 40, trace_execution = true => async {
                xcs::vmap(Arc::clone(&pipeline)).call_settled_async(questions.clone()).await
            }
        )
        .await;
        let retries: usize = xcs::take_trace().summary().iter().map(|s| s.retries).sum();
        let wall = start.elapsed();

        println!("== {pass}");
        if pass == "first pass" {
            for (i, (question, outcome)) in questions.iter().zip(&outcomes).enumerate() {
                println!("{:>2}. {question}", i + 1);
                match outcome {
                    Ok(verdict) => {
                        println!("    → {}  [{}]", verdict.answer, verdict.by);
                        let (ok, asked) = verdict.drafts;
                        if ok < asked {
                            println!(
                                "      ({ok}/{asked} drafts: {})",
                                verdict.missing.join("; ")
                            );
                        }
                    }
                    Err(error) => println!("    ✗ no answer: {}", why(error)),
                }
            }
        }
        let answered = outcomes.iter().filter(|o| o.is_ok()).count();
        let (sent, peak, cancelled) = backend.meter.take();
        let cache = cache_stats();
        println!(
            "{answered}/{} answered in {:.2} s; {sent} model calls, peak {peak} in flight, \
             {cancelled} cancelled at their deadline",
            questions.len(),
            wall.as_secs_f64(),
        );
        if let (Some(mock), Some(before)) = (&target.mock, server_before) {
            let seen = mock.settled(Duration::from_secs(1)).await.since(&before);
            println!(
                "server saw: {} requests, peak {} in flight, {} answered ({} of them 500s, {} \
                 429s), {} cancelled by the client (it disconnected)",
                seen.started,
                seen.peak,
                seen.completed,
                seen.failed,
                seen.rate_limited,
                seen.disconnected
            );
        }
        let (hits, misses) = (
            cache.hits - cache_before.hits,
            cache.misses - cache_before.misses,
        );
        println!("retries: {retries} (max_retries = 2; 429s waited for their Retry-After)");
        println!("cache: {hits} hits, {misses} misses\n");
        if answered == 0 {
            return Err("no question was answered".into());
        }
    }
    if let Some(mock) = target.mock {
        mock.shutdown().await;
    }
    Ok(())
}
