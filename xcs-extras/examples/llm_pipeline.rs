//! A model pipeline on async operators, over HTTP: for each question, three drafters (models or
//! personas) write an answer at once, a judge model picks the best, over a batch of questions,
//! with `max_workers`, `timeout_seconds` and `enable_caching` in force.
//!
//! Every model call is an `xcs::openai::Chat` (feature `openai`): an async operator whose input
//! is the whole chat request (the cache key) and whose output is the reply with its usage; 429s
//! wait for their `Retry-After`, 5xx are retried, other 4xx fail at once. The drafters are
//! `Chat`s with a model and a name each; the pipeline around them is a hand-written
//! `AsyncOperator`.
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
//! (the drafters take them in turn; the judge uses the first). `https://` needs the
//! `openai-tls` feature of xcs (`--features xcs/openai-tls`).
//!
//! Run with `cargo run --example llm_pipeline`.

#[path = "common/llm_server.rs"]
mod llm_server;

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use llm_server::{ChatRequest as ServerRequest, Knobs, MockServer, stable_hash};
use xcs::openai::{Chat, ChatError, ChatRequest, Message};
use xcs::{AsyncOperator, Outcome, Usage, XcsError, cache_stats, execution_options};

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

const JUDGE_SYSTEM: &str = "You are a strict judge of answers. Reply with the number of the best \
                            answer and nothing else.";

// ---------------------------------------------------------------------------------------------
// The pipeline.

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
    /// One `Chat` per drafter (its name says persona and model), with its system prompt.
    drafts: Vec<(Chat, &'static str)>,
    judge: Chat,
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
        let drafted = join_all(self.drafts.iter().map(|(chat, system)| {
            let request = ChatRequest::new([Message::system(*system), Message::user(&question)])
                .max_tokens(200);
            execution_options!(timeout_seconds = per_call => async move {
                chat.call(request).await
            })
        }))
        .await;
        let mut candidates = Vec::new();
        let mut missing = Vec::new();
        let mut first_error = None;
        for ((chat, _), outcome) in self.drafts.iter().zip(drafted) {
            match outcome {
                Ok(reply) => candidates.push((chat.name().to_owned(), reply.text)),
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
                let answers: Vec<&str> = candidates.iter().map(|(_, a)| a.as_str()).collect();
                execution_options!(timeout_seconds = per_call => async {
                    self.judge(&question, &answers).await
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

impl Pipeline {
    /// Asks the judge which answer is best; its index.
    async fn judge(&self, question: &str, answers: &[&str]) -> Result<usize, XcsError> {
        let mut prompt = format!("Question: {question}\n\nAnswers:\n");
        for (i, answer) in answers.iter().enumerate() {
            prompt.push_str(&format!("{}. {}\n", i + 1, answer.replace('\n', " ")));
        }
        prompt.push_str("\nWhich answer is best? Reply with its number only.");
        let request =
            ChatRequest::new([Message::system(JUDGE_SYSTEM), Message::user(prompt)]).max_tokens(5);
        let reply = self.judge.call(request).await?.text;
        // The first number in range; models sometimes add words around it.
        reply
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|digits| digits.parse::<usize>().ok())
            .find(|n| (1..=answers.len()).contains(n))
            .map(|n| n - 1)
            .ok_or_else(|| XcsError::operator("judge", format!("no answer number in {reply:?}")))
    }
}

/// Why a call failed, in a few words: `concise/mock-small timed out`, `judge: HTTP 500`.
fn why(error: &XcsError) -> String {
    match error {
        XcsError::Timeout { operator, .. } => format!("{operator} timed out"),
        XcsError::Operator {
            operator, source, ..
        } if error.is_rate_limited() => format!("{operator}: HTTP 429"),
        XcsError::Operator {
            operator, source, ..
        } => match source.downcast_ref::<ChatError>() {
            Some(ChatError::Status { status, .. }) => format!("{operator}: HTTP {status}"),
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
fn mock_reply(request: &ServerRequest) -> String {
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
    /// A client of the server (no default model: each operator sets its own).
    chat: Chat,
    models: Vec<String>,
    mock: Option<MockServer>,
}

async fn target() -> Result<Target, Box<dyn Error>> {
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if set("OPENAI_BASE_URL").is_some() {
        let models: Vec<String> = set("OPENAI_MODEL")
            .unwrap_or_else(|| "gpt-4o-mini".to_owned())
            .split(',')
            .map(|model| model.trim().to_owned())
            .filter(|model| !model.is_empty())
            .collect();
        return Ok(Target {
            chat: Chat::from_env(),
            models,
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
        ..Knobs::default()
    })
    .await?;
    Ok(Target {
        chat: Chat::new().base_url(mock.base_url()),
        models: ["mock-small", "mock-medium", "mock-large"]
            .map(String::from)
            .to_vec(),
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
    let models = &target.models;
    if models.is_empty() {
        return Err("OPENAI_MODEL names no model".into());
    }
    // A mock answers in milliseconds; real models take seconds. (Long enough for a 429's
    // one-second `Retry-After` and a retry: `max_retries` never waits past the deadline.)
    let (per_call, whole_batch) = if target.mock.is_some() {
        (Duration::from_millis(2500), Duration::from_secs(10))
    } else {
        (Duration::from_secs(60), Duration::from_secs(600))
    };
    // Clones of one `Chat` share its connection pool (and, by default, its resource).
    let pipeline = Arc::new(Pipeline {
        drafts: PERSONAS
            .iter()
            .enumerate()
            .map(|(i, (persona, system))| {
                let model = &models[i % models.len()];
                let chat = target
                    .chat
                    .clone()
                    .model(model)
                    .named(format!("{persona}/{model}"));
                (chat, *system)
            })
            .collect(),
        judge: target.chat.clone().model(&models[0]).named("judge"),
        per_call,
    });
    let questions: Vec<String> = QUESTIONS.iter().map(|q| q.to_string()).collect();

    match &target.mock {
        Some(mock) => println!(
            "models: in-process mock server at {} (60–200 ms an answer, some very slow, some \
             failing; set OPENAI_BASE_URL for a real one)",
            mock.base_url()
        ),
        None => println!("models: {} at {}", models.join(", "), target.chat.base()),
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
        let wall = start.elapsed();
        // The model calls, from the trace: every attempt of every `Chat` (cache hits are not
        // calls), its retries, those cut at their deadline, and the tokens the replies reported.
        let summary = xcs::take_trace().summary();
        let models: Vec<_> = summary
            .iter()
            .filter(|s| s.operator != "pipeline")
            .collect();
        let calls: usize = models
            .iter()
            .map(|s| s.count - s.count_of(Outcome::CacheHit))
            .sum();
        let retries: usize = summary.iter().map(|s| s.retries).sum();
        let timed_out: usize = models.iter().map(|s| s.count_of(Outcome::Timeout)).sum();
        let tokens = models.iter().fold(Usage::ZERO, |sum, s| sum + s.usage);

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
        let cache = cache_stats();
        println!(
            "{answered}/{} answered in {:.2} s; {calls} model calls, {timed_out} cancelled at \
             their deadline; {tokens}",
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
