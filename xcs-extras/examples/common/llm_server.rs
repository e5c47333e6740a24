//! A mock OpenAI-compatible chat-completions server, run in-process on 127.0.0.1 (port 0), so
//! the model examples, their test and their benchmark run offline, in seconds, and can look at
//! what a client really did from the server's side.
//!
//! Shared by `examples/llm_pipeline.rs`, `examples/bench_http.rs` and `tests/llm_server.rs`,
//! each of which includes this file with `#[path = …] mod llm_server;` (cargo does not build
//! `examples/common/` as an example of its own).
//!
//! It serves `POST /v1/chat/completions` (base URL `http://127.0.0.1:PORT/v1`, as OpenAI's
//! `https://api.openai.com/v1`) and counts, in [`Stats`]:
//! - requests started (the handler ran), in flight (a gauge, with its peak) and completed (the
//!   handler returned a response, whatever its status);
//! - requests whose client went away first: axum drops a handler's future when its connection
//!   closes, and a drop guard in the handler counts a drop before the end as a disconnect. That
//!   is how a test proves that a cancelled client call is really gone, not left running;
//! - 500s and 429s sent.
//!
//! What each request gets is decided by [`Knobs`]: a latency (plus a jitter), some slow answers,
//! some 500s, optionally some 429s with `Retry-After` (off by default), and a reply. Chance is
//! deterministic: a request's roll is a hash of its model, its messages and how many times the
//! server has seen exactly that request before, so a run is reproducible and a retried request
//! gets a fresh roll. Markers in the prompt force a behaviour: `[[hang]]` never answers (until
//! the server shuts down), `[[fail]]` is a 500, `[[slow]]` takes `slow_latency`, `[[429]]` is a
//! 429.
#![allow(dead_code)] // Each includer uses only part of it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::RETRY_AFTER;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// A chat message as the server reads it.
#[derive(Clone, Debug, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// The part of a chat-completions request the server reads (other fields are ignored).
#[derive(Clone, Debug, Deserialize)]
pub struct ChatRequest {
    /// The model asked for.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
}

impl ChatRequest {
    /// The content of the last `user` message (empty if none).
    pub fn prompt(&self) -> &str {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map_or("", |m| m.content.as_str())
    }

    /// The content of the first `system` message, if any.
    pub fn system(&self) -> Option<&str> {
        self.messages
            .iter()
            .find(|m| m.role == "system")
            .map(|m| m.content.as_str())
    }
}

/// Writes the assistant's reply to a request.
pub type Reply = Arc<dyn Fn(&ChatRequest) -> String + Send + Sync>;

/// The default reply: `echo: ` and the last user message.
pub fn echo_reply() -> Reply {
    Arc::new(|request: &ChatRequest| format!("echo: {}", request.prompt()))
}

/// How the server answers. `Knobs::default()` answers every request at once with
/// [`echo_reply`]; set the fields that matter to you.
#[derive(Clone)]
pub struct Knobs {
    /// Every answer waits this long...
    pub latency: Duration,
    /// ...plus a deterministic share of this.
    pub jitter: Duration,
    /// The fraction of requests (0.0..=1.0) that take `slow_latency` instead.
    pub slow_rate: f64,
    /// How long a slow answer takes.
    pub slow_latency: Duration,
    /// The fraction of requests answered with a 500 (after their latency).
    pub failure_rate: f64,
    /// The fraction of requests answered at once with a 429 and `Retry-After`. Off (0.0) by
    /// default.
    pub rate_limited_rate: f64,
    /// The `Retry-After` of a 429, in whole seconds (rounded up).
    pub retry_after: Duration,
    /// The reply to a request that succeeds.
    pub reply: Reply,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            slow_rate: 0.0,
            slow_latency: Duration::from_secs(5),
            failure_rate: 0.0,
            rate_limited_rate: 0.0,
            retry_after: Duration::from_secs(1),
            reply: echo_reply(),
        }
    }
}

/// What the server has seen. Every field only grows, except `in_flight`.
#[derive(Default, Debug)]
pub struct Stats {
    started: AtomicUsize,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    completed: AtomicUsize,
    disconnected: AtomicUsize,
    failed: AtomicUsize,
    rate_limited: AtomicUsize,
}

/// A copy of [`Stats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Requests whose handler started.
    pub started: usize,
    /// Requests started and not yet answered or dropped.
    pub in_flight: usize,
    /// The most requests ever in flight at once.
    pub peak: usize,
    /// Requests answered (any status).
    pub completed: usize,
    /// Requests whose client disconnected before the answer: the handler's future was dropped.
    pub disconnected: usize,
    /// 500s sent.
    pub failed: usize,
    /// 429s sent.
    pub rate_limited: usize,
}

impl Snapshot {
    /// What happened between `earlier` and `self` (the gauge and its peak are `self`'s).
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot {
            started: self.started - earlier.started,
            in_flight: self.in_flight,
            peak: self.peak,
            completed: self.completed - earlier.completed,
            disconnected: self.disconnected - earlier.disconnected,
            failed: self.failed - earlier.failed,
            rate_limited: self.rate_limited - earlier.rate_limited,
        }
    }
}

impl Stats {
    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            started: self.started.load(Ordering::SeqCst),
            in_flight: self.in_flight.load(Ordering::SeqCst),
            peak: self.peak.load(Ordering::SeqCst),
            completed: self.completed.load(Ordering::SeqCst),
            disconnected: self.disconnected.load(Ordering::SeqCst),
            failed: self.failed.load(Ordering::SeqCst),
            rate_limited: self.rate_limited.load(Ordering::SeqCst),
        }
    }

    /// Starts measuring the peak again from the current gauge.
    pub fn reset_peak(&self) {
        self.peak
            .store(self.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    fn enter(self: &Arc<Self>) -> InFlight {
        self.started.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        InFlight {
            stats: Arc::clone(self),
            answered: false,
        }
    }
}

/// Held by a handler while it runs: dropped after the answer, or — when the client has gone —
/// when axum drops the handler's future before it finishes.
struct InFlight {
    stats: Arc<Stats>,
    answered: bool,
}

impl InFlight {
    fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let counter = if self.answered {
            &self.stats.completed
        } else {
            &self.stats.disconnected
        };
        counter.fetch_add(1, Ordering::SeqCst);
        self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running mock server. Dropping it (or [`shutdown`](MockServer::shutdown)) stops it: hung
/// requests are answered with a 503 and connections close.
pub struct MockServer {
    base_url: String,
    stats: Arc<Stats>,
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

struct Shared {
    knobs: Knobs,
    stats: Arc<Stats>,
    /// How many times each request (by hash) has been seen.
    seen: Mutex<HashMap<u64, u64>>,
    shutdown: watch::Receiver<bool>,
}

impl MockServer {
    /// Starts a server on 127.0.0.1 (a free port) on the current tokio runtime.
    pub async fn start(knobs: Knobs) -> std::io::Result<MockServer> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(Stats::default());
        let (shutdown, receiver) = watch::channel(false);
        let shared = Arc::new(Shared {
            knobs,
            stats: Arc::clone(&stats),
            seen: Mutex::default(),
            shutdown: receiver.clone(),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .with_state(shared);
        // Small request/response pairs: no Nagle delay on the answers.
        let listener = listener.tap_io(|stream| {
            let _ = stream.set_nodelay(true);
        });
        let mut signal = receiver;
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = signal.wait_for(|stop| *stop).await;
        });
        let task = tokio::spawn(async move {
            if let Err(error) = server.await {
                eprintln!("mock LLM server stopped: {error}");
            }
        });
        Ok(MockServer {
            base_url: format!("http://{addr}/v1"),
            stats,
            shutdown,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT/v1`: what `OPENAI_BASE_URL` would be for a real server.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The live counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        self.stats.snapshot()
    }

    /// Polls (every millisecond, for at most `limit`) until no request is in flight; returns the
    /// counters then. The server notices a client's disconnect a moment after the client drops
    /// its request, so a check right after a cancelled call should wait for it this way.
    pub async fn settled(&self, limit: Duration) -> Snapshot {
        let until = Instant::now() + limit;
        loop {
            let now = self.stats.snapshot();
            if now.in_flight == 0 || Instant::now() >= until {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Stops the server and waits until it has stopped.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// What one request gets.
enum Fate {
    Answer(Duration),
    Fail(Duration),
    RateLimited,
    Hang,
}

impl Shared {
    fn fate(&self, request: &ChatRequest) -> Fate {
        let mut hash = Fnv::default();
        hash.write(request.model.as_bytes());
        for message in &request.messages {
            hash.write(message.role.as_bytes());
            hash.write(message.content.as_bytes());
        }
        let key = hash.0;
        let attempt = {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            let count = seen.entry(key).or_insert(0);
            *count += 1;
            *count
        };
        // Independent rolls in 0.0..1.0 from the request and its attempt number.
        let roll = |salt: u64| {
            let mut h = Fnv(key);
            h.write(&attempt.to_le_bytes());
            h.write(&salt.to_le_bytes());
            (h.finish_mixed() >> 11) as f64 / (1u64 << 53) as f64
        };
        let prompt = request.prompt();
        let knobs = &self.knobs;
        if prompt.contains("[[hang]]") {
            return Fate::Hang;
        }
        if prompt.contains("[[429]]") || roll(1) < knobs.rate_limited_rate {
            return Fate::RateLimited;
        }
        let latency = if prompt.contains("[[slow]]") || roll(2) < knobs.slow_rate {
            knobs.slow_latency
        } else {
            knobs.latency + knobs.jitter.mul_f64(roll(3))
        };
        if prompt.contains("[[fail]]") || roll(4) < knobs.failure_rate {
            Fate::Fail(latency)
        } else {
            Fate::Answer(latency)
        }
    }
}

#[derive(Serialize)]
struct Completion {
    id: String,
    object: &'static str,
    created: u64,
    model: String,
    choices: [Choice; 1],
    usage: Usage,
}

#[derive(Serialize)]
struct Choice {
    index: u32,
    message: AssistantMessage,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct AssistantMessage {
    role: &'static str,
    content: String,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: usize,
    completion_tokens: usize,
    total_tokens: usize,
}

fn error_body(message: &str, kind: &str) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "error": { "message": message, "type": kind } }))
}

async fn chat(State(shared): State<Arc<Shared>>, Json(request): Json<ChatRequest>) -> Response {
    let guard = shared.stats.enter();
    let response = match shared.fate(&request) {
        Fate::Hang => {
            // Never answers: only the client's disconnect (which drops this future) or the
            // server's shutdown ends it.
            let mut shutdown = shared.shutdown.clone();
            let _ = shutdown.wait_for(|stop| *stop).await;
            (
                StatusCode::SERVICE_UNAVAILABLE,
                error_body("the server is shutting down", "server_error"),
            )
                .into_response()
        }
        Fate::RateLimited => {
            shared.stats.rate_limited.fetch_add(1, Ordering::SeqCst);
            let seconds = shared.knobs.retry_after.as_secs_f64().ceil() as u64;
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(RETRY_AFTER, seconds.to_string())],
                error_body("rate limit reached, retry later", "rate_limit_error"),
            )
                .into_response()
        }
        Fate::Fail(latency) => {
            tokio::time::sleep(latency).await;
            shared.stats.failed.fetch_add(1, Ordering::SeqCst);
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                error_body("the model failed (mock)", "server_error"),
            )
                .into_response()
        }
        Fate::Answer(latency) => {
            tokio::time::sleep(latency).await;
            let content = (shared.knobs.reply)(&request);
            let prompt_tokens = request
                .messages
                .iter()
                .map(|m| m.content.split_whitespace().count())
                .sum();
            let completion_tokens = content.split_whitespace().count();
            let id = shared.stats.started.load(Ordering::Relaxed);
            Json(Completion {
                id: format!("chatcmpl-mock-{id}"),
                object: "chat.completion",
                created: 0,
                model: request.model,
                choices: [Choice {
                    index: 0,
                    message: AssistantMessage {
                        role: "assistant",
                        content,
                    },
                    finish_reason: "stop",
                }],
                usage: Usage {
                    prompt_tokens,
                    completion_tokens,
                    total_tokens: prompt_tokens + completion_tokens,
                },
            })
            .into_response()
        }
    };
    guard.answered();
    response
}

/// 64-bit FNV-1a: a stable hash (the standard library's may change between releases), so the
/// same request gets the same fate on every machine.
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Adds `bytes`, then a separator, so `("ab", "c")` and `("a", "bc")` differ.
    pub fn write(&mut self, bytes: &[u8]) {
        for byte in bytes.iter().chain(&[0xff]) {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The hash, its bits mixed (splitmix64's finalizer) so that every bit is usable.
    pub fn finish_mixed(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A stable hash of `text` (for replies that should look varied but be reproducible).
pub fn stable_hash(text: &str) -> u64 {
    let mut hash = Fnv::default();
    hash.write(text.as_bytes());
    hash.finish_mixed()
}

/// `n` prompts `prefix 0`, `prefix 1`, … (handy for tests and benchmarks).
pub fn prompts(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix} {i}")).collect()
}
