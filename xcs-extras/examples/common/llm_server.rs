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
//! - 500s and 429s sent, and the tokens admitted by its rate limiter;
//! - when each request ended and how ([`Stats::timeline`]), so that a hedged call's loser can be
//!   seen to close its connection, and how soon after the winner's answer
//!   ([`Stats::loser_close_delays`]). [`Knobs::heavy_tail`] makes a few requests ten times slower.
//!
//! With [`Limits`] (off by default) it rate-limits as OpenAI does: a requests-per-minute and a
//! tokens-per-minute bucket per API key (the bearer token), refilled continuously, holding about
//! one second of each; a request needs one request and its tokens (the prompt's characters / 4
//! plus `max_tokens`, counted at admission as OpenAI does), and one that does not fit is a 429
//! with `Retry-After` (seconds, rounded up), `retry-after-ms`, and — on every answer — the
//! `x-ratelimit-limit-*`, `x-ratelimit-remaining-*` and `x-ratelimit-reset-*` headers for
//! `requests` and `tokens`. Every reply carries `usage` (prompt, completion, total tokens, four
//! characters a token).
//!
//! What each request gets is decided by [`Knobs`]: a latency (plus a jitter), some slow answers,
//! some 500s, optionally some 429s with `Retry-After` (off by default), and a reply. Chance is
//! deterministic: a request's roll is a hash of its model, its messages and how many times the
//! server has seen exactly that request before, so a run is reproducible and a retried request
//! gets a fresh roll. Markers in the prompt force a behaviour: `[[hang]]` never answers (until
//! the server shuts down), `[[fail]]` is a 500, `[[slow]]` takes `slow_latency` (`[[slow-first]]`:
//! only the first sending does), `[[429]]` is a
//! 429, `[[status:404]]` that status with an OpenAI-style JSON error, `[[garbage]]` a 200 whose
//! body is not JSON, `[[fail-first:N]]` a 500 to the first `N` sendings of the request, `[[huge]]` a 200 of 9 MiB, `[[no-usage]]` a reply without `usage`, and
//! `[[header:name=value]]` (any number) adds that header to the answer.
//!
//! An *outage* ([`MockServer::set_outage`], switchable while the server runs) answers every chat
//! request with a 503 after the usual latency, whatever its markers, as a provider that is down
//! does; the rate limiter is not consulted and the 503s count in `failed` and `outage`.
#![allow(dead_code)] // Each includer uses only part of it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::header::{AUTHORIZATION, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
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
    /// The most tokens the reply may have.
    #[serde(default)]
    pub max_tokens: Option<u64>,
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

    /// Tokens of the prompt: every message's characters / 4, rounded up.
    pub fn prompt_tokens(&self) -> u64 {
        self.messages.iter().map(|m| tokens_of(&m.content)).sum()
    }

    /// What admission charges: the prompt's tokens plus `max_tokens`.
    pub fn admission_tokens(&self) -> u64 {
        self.prompt_tokens() + self.max_tokens.unwrap_or(0)
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
    /// Provider-like rate limits per API key; `None` (the default): none.
    pub limits: Option<Limits>,
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
            limits: None,
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
    tokens: AtomicU64,
    outage: AtomicUsize,
    /// Whether the server is in an outage now.
    down: AtomicBool,
    /// When each request ended, and how (see [`Stats::timeline`]).
    ends: Mutex<Vec<End>>,
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
    /// Tokens the rate limiter admitted (prompt + `max_tokens` of every admitted request; 0
    /// without [`Limits`]).
    pub tokens: u64,
    /// 503s sent because of an outage ([`MockServer::set_outage`]; also counted in `failed`).
    pub outage: usize,
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
            tokens: self.tokens - earlier.tokens,
            outage: self.outage - earlier.outage,
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
            tokens: self.tokens.load(Ordering::SeqCst),
            outage: self.outage.load(Ordering::SeqCst),
        }
    }

    /// Starts measuring the peak again from the current gauge.
    pub fn reset_peak(&self) {
        self.peak
            .store(self.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    fn enter(self: &Arc<Self>, key: u64) -> InFlight {
        self.started.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        InFlight {
            stats: Arc::clone(self),
            answered: false,
            key,
        }
    }
}

/// Held by a handler while it runs: dropped after the answer, or — when the client has gone —
/// when axum drops the handler's future before it finishes.
struct InFlight {
    stats: Arc<Stats>,
    answered: bool,
    /// The request's [`request_key`].
    key: u64,
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
        self.stats.record_end(self.key, self.answered);
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
    limiter: Option<Limiter>,
    shutdown: watch::Receiver<bool>,
}

impl MockServer {
    /// Starts a server on 127.0.0.1 (a free port) on the current tokio runtime.
    pub async fn start(knobs: Knobs) -> std::io::Result<MockServer> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(Stats::default());
        let (shutdown, receiver) = watch::channel(false);
        let limiter = knobs.limits.map(Limiter::new);
        let shared = Arc::new(Shared {
            knobs,
            limiter,
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

    /// Starts (`true`) or ends (`false`) an outage: while it lasts, every chat request is
    /// answered with a 503 (after the usual latency). Takes effect for requests that start from
    /// now on.
    pub fn set_outage(&self, down: bool) {
        self.stats.down.store(down, Ordering::SeqCst);
    }

    /// Whether the server is in an outage.
    pub fn in_outage(&self) -> bool {
        self.stats.down.load(Ordering::SeqCst)
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
    /// `[[status:NNN]]`: that status, with an OpenAI-style JSON error.
    Status(StatusCode),
    /// `[[garbage]]`: a 200 whose body is not JSON.
    Garbage,
    /// `[[huge]]`: a 200 of 9 MiB.
    Huge,
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
        if let Some(status) = marker_value(prompt, "status")
            .and_then(|code| code.parse::<u16>().ok())
            .and_then(|code| StatusCode::from_u16(code).ok())
        {
            return Fate::Status(status);
        }
        if prompt.contains("[[garbage]]") {
            return Fate::Garbage;
        }
        if marker_value(prompt, "fail-first")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| attempt <= n)
        {
            return Fate::Fail(Duration::ZERO);
        }
        if prompt.contains("[[huge]]") {
            return Fate::Huge;
        }
        if prompt.contains("[[429]]") || roll(1) < knobs.rate_limited_rate {
            return Fate::RateLimited;
        }
        let slow_first = attempt == 1 && prompt.contains("[[slow-first]]");
        let latency = if prompt.contains("[[slow]]") || slow_first || roll(2) < knobs.slow_rate {
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
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
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
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

fn error_body(message: &str, kind: &str) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "error": { "message": message, "type": kind } }))
}

/// The value of the first `[[name:value]]` marker in `text`.
fn marker_value<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("[[{name}:");
    let start = text.find(&open)? + open.len();
    let len = text[start..].find("]]")?;
    Some(&text[start..start + len])
}

/// Every `[[header:name=value]]` marker of `text`, as a header.
fn marker_headers(text: &str) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = Vec::new();
    let mut rest = text;
    while let Some(value) = marker_value(rest, "header") {
        if let Some((name, value)) = value.split_once('=')
            && let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.trim().as_bytes()),
                HeaderValue::from_str(value.trim()),
            )
        {
            headers.push((name, value));
        }
        let Some(next) = rest.find("[[header:") else {
            break;
        };
        rest = &rest[next + 2..];
    }
    headers
}

/// The API key of a request: its bearer token (empty without one).
fn api_key(headers: &HeaderMap) -> String {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned()
}

async fn chat(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(request): Json<ChatRequest>,
) -> Response {
    let guard = shared.stats.enter(request_key(&request));
    if shared.stats.down.load(Ordering::SeqCst) {
        tokio::time::sleep(shared.knobs.latency).await;
        shared.stats.failed.fetch_add(1, Ordering::SeqCst);
        shared.stats.outage.fetch_add(1, Ordering::SeqCst);
        let response = (
            StatusCode::SERVICE_UNAVAILABLE,
            error_body("the model is down (mock outage)", "server_error"),
        )
            .into_response();
        guard.answered();
        return response;
    }
    let mut limit_headers = Vec::new();
    if let Some(limiter) = &shared.limiter {
        let tokens = request.admission_tokens();
        let admission = limiter.admit(&api_key(&headers), tokens, Instant::now());
        limit_headers = admission.headers;
        match admission.refused {
            None => {
                shared.stats.tokens.fetch_add(tokens, Ordering::SeqCst);
            }
            Some(wait) => {
                shared.stats.rate_limited.fetch_add(1, Ordering::SeqCst);
                let millis = (wait.as_secs_f64() * 1000.0).ceil() as u64;
                let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
                let mut response = (
                    StatusCode::TOO_MANY_REQUESTS,
                    [
                        (RETRY_AFTER, seconds.to_string()),
                        (
                            HeaderName::from_static("retry-after-ms"),
                            millis.to_string(),
                        ),
                    ],
                    error_body(
                        &format!(
                            "Rate limit reached for requests or tokens: please try again in \
                             {millis}ms."
                        ),
                        "rate_limit_error",
                    ),
                )
                    .into_response();
                response.headers_mut().extend(limit_headers);
                guard.answered();
                return response;
            }
        }
    }
    let prompt = request.prompt().to_owned();
    let mut response = match shared.fate(&request) {
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
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                error_body("rate limit reached, retry later", "rate_limit_error"),
            )
                .into_response();
            // Markers name the headers of this 429; without any, `Retry-After`.
            if !prompt.contains("[[header:") {
                response.headers_mut().insert(
                    RETRY_AFTER,
                    HeaderValue::from_str(&seconds.to_string())
                        .unwrap_or(HeaderValue::from_static("1")),
                );
            }
            response
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
        Fate::Status(status) => {
            if status.is_server_error() {
                shared.stats.failed.fetch_add(1, Ordering::SeqCst);
            }
            (
                status,
                error_body(
                    &format!("mock error {} for model {}", status.as_u16(), request.model),
                    "invalid_request_error",
                ),
            )
                .into_response()
        }
        Fate::Garbage => (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "text/html")],
            "<html><body>502 Bad Gateway (not JSON)</body></html>",
        )
            .into_response(),
        Fate::Huge => (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            vec![b' '; 9 << 20],
        )
            .into_response(),
        Fate::Answer(latency) => {
            tokio::time::sleep(latency).await;
            let content = (shared.knobs.reply)(&request);
            let prompt_tokens = request.prompt_tokens();
            let completion_tokens = tokens_of(&content);
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
                usage: (!prompt.contains("[[no-usage]]")).then_some(Usage {
                    prompt_tokens,
                    completion_tokens,
                    total_tokens: prompt_tokens + completion_tokens,
                }),
            })
            .into_response()
        }
    };
    response.headers_mut().extend(limit_headers);
    response.headers_mut().extend(marker_headers(&prompt));
    guard.answered();
    response
}

/// Tokens of a text: its characters / 4, rounded up (what OpenAI's guidance approximates).
pub fn tokens_of(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

// ---------------------------------------------------------------------------------------------
// The rate limiter.

/// Rate limits as a provider sets them, per API key. `None` limits nothing.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Requests per minute.
    pub requests_per_minute: Option<u64>,
    /// Tokens (prompt + `max_tokens`) per minute.
    pub tokens_per_minute: Option<u64>,
    /// How much of each limit a bucket holds: a burst of `limit × burst / 60 s` (OpenAI's is
    /// about a second's worth).
    pub burst: Duration,
}

impl Limits {
    /// `rpm` requests and `tpm` tokens a minute, with a one-second burst.
    pub fn new(rpm: u64, tpm: u64) -> Limits {
        Limits {
            requests_per_minute: Some(rpm),
            tokens_per_minute: Some(tpm),
            burst: Duration::from_secs(1),
        }
    }
}

/// A token bucket with continuous refill.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    limit_per_minute: u64,
    /// Refill per second.
    rate: f64,
    capacity: f64,
    level: f64,
    at: Instant,
}

impl Bucket {
    fn new(limit_per_minute: u64, burst: Duration, now: Instant) -> Bucket {
        let rate = limit_per_minute as f64 / 60.0;
        let capacity = (rate * burst.as_secs_f64()).max(1.0);
        Bucket {
            limit_per_minute,
            rate,
            capacity,
            level: capacity,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + elapsed * self.rate).min(self.capacity);
        self.at = now;
    }

    /// How long until `need` fits (a need above the capacity fits a full bucket).
    fn wait_for(&self, need: f64) -> Duration {
        let need = need.min(self.capacity);
        if self.level >= need || self.rate <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((need - self.level) / self.rate)
        }
    }

    /// `x-ratelimit-limit-*`, `-remaining-*`, `-reset-*` for `kind`.
    fn headers(&self, kind: &str, out: &mut Vec<(HeaderName, HeaderValue)>) {
        let reset = Duration::from_secs_f64(((self.capacity - self.level) / self.rate).max(0.0));
        for (name, value) in [
            ("limit", self.limit_per_minute.to_string()),
            (
                "remaining",
                (self.level.max(0.0).floor() as u64).to_string(),
            ),
            ("reset", go_duration(reset)),
        ] {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(format!("x-ratelimit-{name}-{kind}").as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                out.push((name, value));
            }
        }
    }
}

/// A duration as Go prints it, as OpenAI's reset headers do: `20ms`, `1.5s`, `6m0s`.
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 1.0 {
        format!("{}ms", (secs * 1000.0).ceil() as u64)
    } else if secs < 60.0 {
        let text = format!("{secs:.3}");
        format!("{}s", text.trim_end_matches('0').trim_end_matches('.'))
    } else {
        let whole = secs.ceil() as u64;
        format!("{}m{}s", whole / 60, whole % 60)
    }
}

/// The buckets of every API key.
struct Limiter {
    limits: Limits,
    keys: Mutex<HashMap<String, [Option<Bucket>; 2]>>,
}

/// What the limiter said about one request.
struct Admission {
    /// `None`: admitted; `Some(wait)`: refused, fits after `wait`.
    refused: Option<Duration>,
    /// The rate-limit headers of the answer.
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Limiter {
    fn new(limits: Limits) -> Limiter {
        Limiter {
            limits,
            keys: Mutex::default(),
        }
    }

    fn admit(&self, key: &str, tokens: u64, now: Instant) -> Admission {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let limits = self.limits;
        let buckets = keys.entry(key.to_owned()).or_insert_with(|| {
            [limits.requests_per_minute, limits.tokens_per_minute]
                .map(|limit| limit.map(|limit| Bucket::new(limit, limits.burst, now)))
        });
        let needs = [1.0, tokens as f64];
        let mut wait = Duration::ZERO;
        for (bucket, need) in buckets.iter_mut().zip(needs) {
            if let Some(bucket) = bucket {
                bucket.refill(now);
                wait = wait.max(bucket.wait_for(need));
            }
        }
        let refused = (!wait.is_zero()).then_some(wait);
        if refused.is_none() {
            for (bucket, need) in buckets.iter_mut().zip(needs) {
                if let Some(bucket) = bucket {
                    bucket.level -= need;
                }
            }
        }
        let mut headers = Vec::new();
        for (bucket, kind) in buckets.iter().zip(["requests", "tokens"]) {
            if let Some(bucket) = bucket {
                bucket.headers(kind, &mut headers);
            }
        }
        Admission { refused, headers }
    }
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

// ---------------------------------------------------------------------------------------------
// Heavy tails and hedged requests: when each request ended, and how.

/// How one request ended, as the server saw it: answered, or its client went away first (the
/// handler's future was dropped: its connection closed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct End {
    /// The request's [`request_key`]: the same for every sending of one request (a retry, a
    /// hedge).
    pub key: u64,
    /// `true`: answered; `false`: the client disconnected first.
    pub answered: bool,
    /// When.
    pub at: Instant,
}

/// A stable key of a request's content (model and messages): every sending of it has the same.
pub fn request_key(request: &ChatRequest) -> u64 {
    let mut hash = Fnv::default();
    hash.write(request.model.as_bytes());
    for message in &request.messages {
        hash.write(message.role.as_bytes());
        hash.write(message.content.as_bytes());
    }
    hash.finish_mixed()
}

impl Stats {
    fn record_end(&self, key: u64, answered: bool) {
        self.ends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(End {
                key,
                answered,
                at: Instant::now(),
            });
    }

    /// Every request that has ended, in the order they ended.
    pub fn timeline(&self) -> Vec<End> {
        self.ends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// For each request sent twice at once whose second sending was cut off (a hedged call's
    /// loser): how long after the winning answer its connection closed (zero when it closed
    /// first).
    pub fn loser_close_delays(&self) -> Vec<Duration> {
        let mut answered: HashMap<u64, Instant> = HashMap::new();
        let mut dropped: Vec<End> = Vec::new();
        for end in self.timeline() {
            if end.answered {
                answered.entry(end.key).or_insert(end.at);
            } else {
                dropped.push(end);
            }
        }
        dropped
            .iter()
            .filter_map(|end| {
                let won = answered.get(&end.key)?;
                Some(end.at.saturating_duration_since(*won))
            })
            .collect()
    }
}

impl Knobs {
    /// A heavy tail: every answer takes `latency`, except a `fraction` of requests (say 0.05)
    /// that take ten times as long. Which ones is decided by each request's content and how many
    /// times it has been sent (see [`Knobs`]): the same requests are slow on every run against a
    /// fresh server, and a request sent again (a retry, a hedge) gets a fresh roll.
    pub fn heavy_tail(latency: Duration, fraction: f64) -> Knobs {
        Knobs {
            latency,
            slow_rate: fraction,
            slow_latency: latency * 10,
            ..Knobs::default()
        }
    }
}
