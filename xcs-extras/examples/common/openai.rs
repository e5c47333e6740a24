//! A minimal OpenAI-compatible chat-completions client (`POST {base}/chat/completions`) on
//! `reqwest` + `serde`: what `examples/llm_pipeline.rs`, `examples/bench_http.rs` and
//! `tests/llm_server.rs` wrap in `AsyncOperator`s. Included with `#[path = …] mod openai;`.
//!
//! It speaks to OpenAI, vLLM, Ollama (`http://localhost:11434/v1`), llama.cpp's server, or the
//! in-process mock of `llm_server.rs`; [`Endpoint::from_env`] reads where a real one is from the
//! ecosystem's variables (`OPENAI_BASE_URL`, `OPENAI_API_KEY`, `OPENAI_MODEL`). The examples build reqwest without TLS (plain HTTP to
//! local servers needs none); an `https://` base URL is refused with a message saying which
//! reqwest feature to enable.
#![allow(dead_code)] // Each includer uses only part of it.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use serde::{Deserialize, Serialize};

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Message {
        Message {
            role: "system".into(),
            content: content.into(),
        }
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Message {
        Message {
            role: "user".into(),
            content: content.into(),
        }
    }
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    messages: &'a [Message],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct Response {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: Reply,
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    content: Option<String>,
}

impl ChatError {
    /// As an xcs error of `operator`, classified for `max_retries`: a 429 or 503 with
    /// `Retry-After` waits at least that long, other 4xx (a bad request, a bad key, an exhausted
    /// quota) are permanent, everything else (5xx, connection errors) is retried.
    pub fn into_xcs(self, operator: &str) -> xcs::XcsError {
        match &self {
            ChatError::Status {
                retry_after: Some(wait),
                ..
            } => xcs::XcsError::retry_after(operator, *wait, self),
            ChatError::Status { status, .. } if status.is_client_error() => {
                xcs::XcsError::permanent(operator, self)
            }
            ChatError::Config(_) => xcs::XcsError::permanent(operator, self),
            _ => xcs::XcsError::operator(operator, self),
        }
    }
}

/// Why a completion failed.
#[derive(Debug)]
pub enum ChatError {
    /// The request could not be sent or its answer not read or decoded.
    Http(reqwest::Error),
    /// The server answered with an error status. `retry_after` is its `Retry-After` (in
    /// seconds), if any, as a 429 or 503 has.
    Status {
        /// The status code.
        status: StatusCode,
        /// How long the server asked us to wait.
        retry_after: Option<Duration>,
        /// The start of the body (servers explain their errors there).
        body: String,
    },
    /// The answer had no choice or no text.
    Empty,
    /// The base URL cannot be used.
    Config(String),
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatError::Http(error) => {
                // reqwest's message leaves out its causes (refused, reset, …): add them.
                write!(f, "request failed: {error}")?;
                let mut cause = std::error::Error::source(error);
                while let Some(inner) = cause {
                    write!(f, ": {inner}")?;
                    cause = inner.source();
                }
                Ok(())
            }
            ChatError::Status {
                status,
                retry_after,
                body,
            } => {
                write!(f, "server answered {status}")?;
                if let Some(wait) = retry_after {
                    write!(f, " (retry after {}s)", wait.as_secs())?;
                }
                if !body.is_empty() {
                    write!(f, ": {body}")?;
                }
                Ok(())
            }
            ChatError::Empty => f.write_str("the answer had no text"),
            ChatError::Config(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ChatError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ChatError::Http(error) => Some(error),
            _ => None,
        }
    }
}

impl From<reqwest::Error> for ChatError {
    fn from(error: reqwest::Error) -> Self {
        ChatError::Http(error)
    }
}

/// Where a real OpenAI-compatible server is, from the variables the OpenAI SDKs and most tools
/// read: `OPENAI_BASE_URL` (the API's base, e.g. `http://localhost:11434/v1` for Ollama,
/// `http://localhost:8000/v1` for vLLM), `OPENAI_API_KEY` (sent as a bearer token, if set) and
/// `OPENAI_MODEL` (one model, or several separated by commas; default [`DEFAULT_MODEL`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The API's base URL.
    pub base_url: String,
    /// The bearer token, if any.
    pub api_key: Option<String>,
    /// The models to use, at least one.
    pub models: Vec<String>,
}

/// The model used when `OPENAI_MODEL` is not set.
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";

impl Endpoint {
    /// The endpoint the environment names; `None` when `OPENAI_BASE_URL` is unset or empty
    /// (then the examples start their in-process mock server).
    pub fn from_env() -> Option<Endpoint> {
        Endpoint::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Endpoint::from_env) with the variables read through `var`.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Option<Endpoint> {
        let set = |name: &str| var(name).filter(|value| !value.trim().is_empty());
        let base_url = set("OPENAI_BASE_URL")?.trim().to_owned();
        let mut models: Vec<String> = set("OPENAI_MODEL")
            .unwrap_or_default()
            .split(',')
            .map(|model| model.trim().to_owned())
            .filter(|model| !model.is_empty())
            .collect();
        if models.is_empty() {
            models.push(DEFAULT_MODEL.to_owned());
        }
        Some(Endpoint {
            base_url,
            api_key: set("OPENAI_API_KEY"),
            models,
        })
    }

    /// A client for this endpoint.
    pub fn client(&self) -> Result<ChatClient, ChatError> {
        ChatClient::new(&self.base_url, self.api_key.clone())
    }
}

/// A chat-completions endpoint: one `reqwest::Client` (a connection pool; cheap to clone and
/// meant to be shared by every operator that talks to the server) and where to send requests.
#[derive(Clone, Debug)]
pub struct ChatClient {
    http: reqwest::Client,
    url: String,
    api_key: Option<String>,
}

impl ChatClient {
    /// A client for `base_url` (e.g. `http://127.0.0.1:8000/v1`), sending `api_key` as a bearer
    /// token if given.
    pub fn new(base_url: &str, api_key: Option<String>) -> Result<ChatClient, ChatError> {
        let base = base_url.trim_end_matches('/');
        let Some((scheme, rest)) = base.split_once("://") else {
            return Err(ChatError::Config(format!(
                "base URL `{base}` has no scheme: write `http://host:port/v1`"
            )));
        };
        if scheme == "https" {
            return Err(ChatError::Config(format!(
                "base URL `{base}` needs TLS, which this build of reqwest leaves out: add \
                 `\"rustls\"` to reqwest's features in the dev-dependencies of Cargo.toml, or \
                 use an `http://` endpoint"
            )));
        }
        let host = rest.split(['/', ':']).next().unwrap_or_default();
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        if matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
            // A proxy from the environment must not capture loopback traffic.
            builder = builder.no_proxy();
        }
        Ok(ChatClient {
            http: builder.build()?,
            url: format!("{base}/chat/completions"),
            api_key,
        })
    }

    /// Asks `model` to continue `messages`; returns the text of the first choice.
    ///
    /// Dropping the returned future cancels the request: reqwest closes its connection, and
    /// the server sees the client go away.
    pub async fn complete(&self, model: &str, messages: &[Message]) -> Result<String, ChatError> {
        self.complete_with(model, messages, None, None).await
    }

    /// [`complete`](Self::complete) with a temperature and a token limit.
    pub async fn complete_with(
        &self,
        model: &str,
        messages: &[Message],
        temperature: Option<f64>,
        max_tokens: Option<u32>,
    ) -> Result<String, ChatError> {
        let mut request = self.http.post(&self.url).json(&Request {
            model,
            messages,
            temperature,
            max_tokens,
        });
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let mut body = response.text().await.unwrap_or_default();
            let mut end = body.len().min(300);
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            body.truncate(end);
            return Err(ChatError::Status {
                status,
                retry_after,
                body,
            });
        }
        let answer: Response = response.json().await?;
        answer
            .choices
            .into_iter()
            .next()
            .and_then(|choice| choice.message.content)
            .ok_or(ChatError::Empty)
    }
}
