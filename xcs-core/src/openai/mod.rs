//! A model client: [`Chat`], an [`AsyncOperator`] for any OpenAI-compatible chat-completions
//! endpoint (OpenAI, vLLM, Ollama, llama.cpp's server, LiteLLM…). Feature `openai`.
//!
//! Its input is a whole [`ChatRequest`] (the cache key under `enable_caching`, and what
//! `cache_dir` persists), its output a [`ChatReply`] (text, finish reason, usage). Every option
//! applies as to any async operator: `timeout_seconds` cancels the HTTP request at the deadline,
//! `max_retries` retries what the server says is worth retrying, and the calls share a resource
//! (one per base URL unless [`Chat::resource`] names another), so limits set for it hold across
//! every `Chat` on that endpoint.
//!
//! How answers map to errors:
//!
//! | answer | error |
//! |---|---|
//! | 429 | [`XcsError::rate_limited`], waiting what `retry-after-ms`, else `Retry-After` (seconds or an HTTP date), else `x-ratelimit-reset-requests`/`-tokens` ask |
//! | 408, 409, 5xx; connection failures, transport timeouts | retryable ([`XcsError::retry_after`] when a `Retry-After` came with it) |
//! | any other 4xx | [`XcsError::permanent`], carrying the provider's message |
//! | 2xx that is not a chat completion, or a body over 8 MiB | permanent, showing the body's first bytes |
//!
//! The failure itself is a [`ChatError`], the error's source.
//!
//! A reply's `usage` is recorded with [`record_usage`](crate::record_usage) (a reply without one
//! records nothing, so the estimate stands); the estimate
//! ([`AsyncOperator::estimate`]) is the prompt's characters / 4 as input tokens and
//! `max_tokens` as output tokens, costed with [`Chat::price`] when one is set.
//!
//! HTTPS needs the feature `openai-tls` (reqwest's rustls, with the operating system's certificate
//! store); plain `http://` (a local server) works without it.

mod errors;
mod types;

use std::hash::Hash;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use crate::cache::CacheSupport;
use crate::{AsyncOperator, PersistSupport, Usage, XcsError};

pub use errors::{ChatError, parse_openai_duration, parse_retry_after, parse_retry_after_ms};
pub use types::{ChatReply, ChatRequest, Message};

/// The base URL when neither [`Chat::base_url`] nor `OPENAI_BASE_URL` names one.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// The most bytes of an answer's body [`Chat`] reads (8 MiB); a larger one is a permanent
/// error.
pub const MAX_BODY_BYTES: usize = 8 << 20;

/// The most bytes of an error answer's body read for its message.
const MAX_ERROR_BODY_BYTES: usize = 64 << 10;

/// How long connecting may take before the attempt fails (retryably). The call's own deadline
/// (`timeout_seconds`) bounds the whole request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An OpenAI-compatible chat-completions client, as an [`AsyncOperator`] from [`ChatRequest`]
/// to [`ChatReply`].
///
/// Cheap to clone: clones share one connection pool. Build one with [`Chat::from_env`] (the
/// variables the OpenAI SDKs read) or [`Chat::new`], then the builder methods.
///
/// ```no_run
/// use xcs::openai::{Chat, ChatRequest};
/// use xcs::prelude::*;
///
/// # #[tokio::main] async fn main() -> Result<(), XcsError> {
/// let chat = Chat::from_env().model("gpt-4o-mini").price(0.15e-6, 0.6e-6);
/// let reply = chat.call(ChatRequest::user("Capital of France?").max_tokens(20)).await?;
/// println!("{} ({:?})", reply.text, reply.usage);
///
/// // A batch: 8 requests in flight, 429s and 5xx retried, answers cached by whole request.
/// let requests: Vec<ChatRequest> =
///     ["Largest planet?", "Smallest prime?"].map(ChatRequest::user).to_vec();
/// let replies = execution_options!(max_workers = 8, max_retries = 3, enable_caching = true => async {
///     vmap(chat.clone()).call(requests).await
/// })
/// .await?;
/// # let _ = replies; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Chat {
    name: String,
    base_url: String,
    api_key: Option<String>,
    model: String,
    /// The resource: the base URL's, unless [`Chat::resource`] named one.
    resource: String,
    resource_named: bool,
    price: Option<(f64, f64)>,
    /// Built at the first request (for the base URL then set), shared by clones.
    http: Arc<OnceLock<Result<reqwest::Client, String>>>,
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "…"))
            .field("model", &self.model)
            .field("resource", &self.resource)
            .field("price", &self.price)
            .finish()
    }
}

impl Default for Chat {
    fn default() -> Self {
        Chat::new()
    }
}

impl Chat {
    /// A client for [`DEFAULT_BASE_URL`], without an API key or a default model, named `chat`.
    pub fn new() -> Chat {
        Chat {
            name: "chat".to_owned(),
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: None,
            model: String::new(),
            resource: resource_of(DEFAULT_BASE_URL),
            resource_named: false,
            price: None,
            http: Arc::default(),
        }
    }

    /// A client for `OPENAI_BASE_URL` (default [`DEFAULT_BASE_URL`]) with the key
    /// `OPENAI_API_KEY` (if set), the variables the OpenAI SDKs read. Empty values count as
    /// unset.
    pub fn from_env() -> Chat {
        Chat::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Chat::from_env) with the variables read through `var`.
    ///
    /// ```
    /// use xcs::openai::Chat;
    /// let chat = Chat::from_lookup(|name| match name {
    ///     "OPENAI_BASE_URL" => Some("http://localhost:11434/v1/".to_owned()),
    ///     _ => None,
    /// });
    /// assert_eq!(chat.base(), "http://localhost:11434/v1");
    /// ```
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Chat {
        let set = |name: &str| {
            var(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        let mut chat = Chat::new();
        if let Some(base) = set("OPENAI_BASE_URL") {
            chat = chat.base_url(base);
        }
        if let Some(key) = set("OPENAI_API_KEY") {
            chat = chat.api_key(key);
        }
        chat
    }

    /// The same client for the API at `base_url` (e.g. `http://localhost:8000/v1`; requests go
    /// to `{base_url}/chat/completions`).
    #[must_use]
    pub fn base_url(mut self, base_url: impl Into<String>) -> Chat {
        self.base_url = base_url.into().trim().trim_end_matches('/').to_owned();
        if !self.resource_named {
            self.resource = resource_of(&self.base_url);
        }
        // The connection pool is built for a base URL (loopback bypasses proxies).
        self.http = Arc::default();
        self
    }

    /// The same client sending `api_key` as a bearer token.
    #[must_use]
    pub fn api_key(mut self, api_key: impl Into<String>) -> Chat {
        self.api_key = Some(api_key.into());
        self
    }

    /// The same client with a default model, used by requests whose `model` is empty.
    #[must_use]
    pub fn model(mut self, model: impl Into<String>) -> Chat {
        self.model = model.into();
        self
    }

    /// The same client using the resource `resource` (whose limits are set with
    /// `set_resource_limits`). Default: the base URL (scheme and host in lower case, no trailing
    /// `/`), so every `Chat` on one endpoint shares its limits. (This builder shadows the
    /// trait's getter in method calls: read it with `AsyncOperator::resource(&chat)`.)
    ///
    /// ```
    /// use xcs::AsyncOperator;
    /// use xcs::openai::Chat;
    /// let chat = Chat::new().base_url("HTTP://LocalHost:8000/v1/");
    /// assert_eq!(AsyncOperator::resource(&chat), Some("http://localhost:8000/v1"));
    /// let named = chat.resource("local-vllm");
    /// assert_eq!(AsyncOperator::resource(&named), Some("local-vllm"));
    /// ```
    #[must_use]
    pub fn resource(mut self, resource: impl Into<String>) -> Chat {
        self.resource = resource.into();
        self.resource_named = true;
        self
    }

    /// The same client pricing tokens: `cost = input_tokens × input_per_token + output_tokens ×
    /// output_per_token` in estimates and recorded usage (for `cost_budget`). Default: no cost.
    #[must_use]
    pub fn price(mut self, input_per_token: f64, output_per_token: f64) -> Chat {
        self.price = Some((input_per_token, output_per_token));
        self
    }

    /// The same client under another operator name (in errors, traces, and cache keys: clients
    /// whose requests may leave `model` empty and whose default models differ should have
    /// different names when they cache). Default: `chat`.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Chat {
        self.name = name.into();
        self
    }

    /// The base URL requests go to.
    pub fn base(&self) -> &str {
        &self.base_url
    }

    /// The default model (empty: none).
    pub fn default_model(&self) -> &str {
        &self.model
    }

    /// What `usage` costs at the configured price (0 without one).
    fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        self.price.map_or(0.0, |(per_in, per_out)| {
            input_tokens as f64 * per_in + output_tokens as f64 * per_out
        })
    }

    fn client(&self) -> Result<&reqwest::Client, XcsError> {
        match self.http.get_or_init(|| build_client(&self.base_url)) {
            Ok(client) => Ok(client),
            Err(message) => Err(XcsError::permanent(
                &self.name,
                ChatError::Config(message.clone()),
            )),
        }
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatReply, XcsError> {
        let name = self.name.as_str();
        let http = self.client()?;
        let body = serde_json::to_vec(&request.wire(&self.model))
            .map_err(|e| XcsError::permanent(name, ChatError::Config(e.to_string())))?;
        let mut builder = http
            .post(format!("{}/chat/completions", self.base_url))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key);
        }
        let mut response = builder
            .send()
            .await
            .map_err(|e| errors::transport_error(name, &e))?;
        let status = response.status();
        if !status.is_success() {
            let headers = response.headers().clone();
            let (body, _) = read_body(&mut response, MAX_ERROR_BODY_BYTES, false)
                .await
                .map_err(|e| errors::transport_error(name, &e))?;
            return Err(errors::status_error(
                name,
                status.as_u16(),
                &headers,
                &body,
                SystemTime::now(),
            ));
        }
        let (body, complete) = read_body(&mut response, MAX_BODY_BYTES, true)
            .await
            .map_err(|e| errors::transport_error(name, &e))?;
        if !complete {
            return Err(XcsError::permanent(
                name,
                ChatError::TooLarge {
                    limit: MAX_BODY_BYTES,
                },
            ));
        }
        let bad = |reason: String| {
            XcsError::permanent(
                name,
                ChatError::BadBody {
                    reason,
                    start: errors::start_of(&body),
                },
            )
        };
        let parsed: types::WireResponse =
            serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
        let usage = parsed.usage.map(|u| Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
            cost: self.cost(u.prompt_tokens, u.completion_tokens),
        });
        let Some(choice) = parsed.choices.into_iter().next() else {
            return Err(bad("no choices".to_owned()));
        };
        if let Some(usage) = usage {
            crate::record_usage(usage);
        }
        Ok(ChatReply {
            text: choice.message.content.unwrap_or_default(),
            finish_reason: choice.finish_reason,
            model: parsed.model.unwrap_or_default(),
            usage,
        })
    }
}

/// Reads at most `limit` bytes of the body; `false` when there was more (then, unless
/// `whole`, what was read is kept and the rest left unread).
async fn read_body(
    response: &mut reqwest::Response,
    limit: usize,
    whole: bool,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    if whole
        && response
            .content_length()
            .is_some_and(|len| len > limit as u64)
    {
        return Ok((Vec::new(), false));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            let room = limit - body.len();
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

/// The base URL as a resource name: scheme and host lower-cased, no trailing `/`.
fn resource_of(base_url: &str) -> String {
    match reqwest::Url::parse(base_url) {
        Ok(url) => url.as_str().trim_end_matches('/').to_owned(),
        Err(_) => base_url.trim_end_matches('/').to_owned(),
    }
}

/// The connection pool for `base_url`, or why there cannot be one.
fn build_client(base_url: &str) -> Result<reqwest::Client, String> {
    let url = reqwest::Url::parse(base_url).map_err(|e| {
        format!(
            "base URL `{base_url}` is not a URL ({e}): write `http://host:port/v1` or `https://…`"
        )
    })?;
    let mut builder = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
    match url.scheme() {
        "http" => {}
        "https" => {
            #[cfg(not(feature = "openai-tls"))]
            return Err(format!(
                "base URL `{base_url}` needs TLS, which this build leaves out: enable the \
                 `openai-tls` feature of xcs, or use an `http://` endpoint"
            ));
        }
        other => return Err(format!("base URL `{base_url}`: unknown scheme `{other}`")),
    }
    if matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")) {
        // A proxy from the environment must not capture loopback traffic.
        builder = builder.no_proxy();
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

impl AsyncOperator for Chat {
    type Input = ChatRequest;
    type Output = ChatReply;

    async fn forward(&self, request: ChatRequest) -> Result<ChatReply, XcsError> {
        self.complete(&request).await
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn resource(&self) -> Option<&str> {
        Some(&self.resource)
    }

    fn estimate(&self, request: &ChatRequest) -> Usage {
        let input_tokens = request.prompt_chars().div_ceil(4);
        let output_tokens = request.max_tokens.map_or(0, u64::from);
        Usage {
            input_tokens,
            output_tokens,
            cost: self.cost(input_tokens, output_tokens),
        }
    }

    fn persist_support(&self) -> Option<PersistSupport<ChatRequest, ChatReply>> {
        Some(PersistSupport::serde().version(1))
    }

    #[doc(hidden)]
    fn __xcs_cache_support(&self) -> Option<CacheSupport<ChatRequest, ChatReply>> {
        Some(
            CacheSupport::new::<Chat>(
                |request: &ChatRequest, hasher: &mut dyn std::hash::Hasher| {
                    let mut hasher = hasher;
                    request.hash(&mut hasher);
                },
                ChatReply::clone,
            )
            .with_output_bytes(|reply| {
                std::mem::size_of::<ChatReply>()
                    + reply.text.len()
                    + reply.model.len()
                    + reply.finish_reason.as_ref().map_or(0, String::len)
            }),
        )
    }

    #[doc(hidden)]
    fn __xcs_clone_input(&self) -> Option<crate::operator::CloneInput<ChatRequest>> {
        Some(ChatRequest::clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resource_is_the_normalized_base_url() {
        assert_eq!(
            resource_of("HTTP://LocalHost:8000/v1/"),
            "http://localhost:8000/v1"
        );
        assert_eq!(
            resource_of("https://api.openai.com/v1"),
            "https://api.openai.com/v1"
        );
        assert_eq!(resource_of("not a url/"), "not a url");
        let chat = Chat::new();
        assert_eq!(AsyncOperator::resource(&chat), Some(DEFAULT_BASE_URL));
        // A named resource survives a later base URL.
        let named = Chat::new().resource("pool").base_url("http://h/v1");
        assert_eq!(AsyncOperator::resource(&named), Some("pool"));
    }

    #[test]
    fn only_http_and_https_urls_get_a_client() {
        assert!(build_client("http://127.0.0.1:1/v1").is_ok());
        assert!(build_client("ftp://host/v1").is_err());
        assert!(build_client("host:8000/v1").is_err());
        let https = build_client("https://api.openai.com/v1");
        assert_eq!(https.is_ok(), cfg!(feature = "openai-tls"), "{https:?}");
        if let Err(message) = https {
            assert!(message.contains("openai-tls"), "{message}");
        }
    }

    #[test]
    fn the_estimate_is_characters_over_four_plus_max_tokens_at_the_price() {
        let chat = Chat::new().price(1.0, 10.0);
        let request = ChatRequest::new([Message::system("abcd"), Message::user("é")]);
        assert_eq!(
            chat.estimate(&request),
            Usage {
                input_tokens: 2,
                output_tokens: 0,
                cost: 2.0
            }
        );
        assert_eq!(chat.estimate(&request.max_tokens(3)).output_tokens, 3);
    }

    #[test]
    fn debug_hides_the_api_key() {
        let shown = format!("{:?}", Chat::new().api_key("sk-secret"));
        assert!(!shown.contains("sk-secret"), "{shown}");
    }
}
