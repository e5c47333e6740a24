//! `xcs::openai::Chat` against an OpenAI-compatible server that nobody here wrote: fakellm
//! (PyPI `fakellm==0.3.5`, a FastAPI mock of the OpenAI and Anthropic APIs whose answers come
//! from rules in a YAML file). `.ci/run` installs it and sets `FAKELLM` to its executable; else
//! it must be on `PATH` (`pip install fakellm==0.3.5`). Each test starts its own server on a
//! free port, as a child process killed when the test ends.
//!
//! fakellm answers a request with the first rule that matches (prompt text, model, headers);
//! with none, a "deterministic echo" that hashes the whole request body, which shows which
//! fields were sent. Its errors are a status and an OpenAI-style JSON error, without headers.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use xcs::openai::{Chat, ChatError, ChatRequest, Message};
use xcs::{AsyncOperator, ResourceLimits, XcsError, execution_options, vmap};

/// The rules the server answers by.
const CONFIG: &str = r#"version: 1
defaults:
  fallback: deterministic_echo
rules:
  - name: authorized
    when:
      messages_contain: "who am i"
      header.authorization: "Bearer sk-xcs-compat"
    respond:
      content: "an authorized caller"
  - name: greeting
    when:
      messages_contain: "hello"
    respond:
      content: "Hi there from fakellm."
  - name: tool
    when:
      messages_contain: "[[tool]]"
    respond:
      tool_calls:
        - name: web_search
          arguments: {query: "xcs"}
  - name: rate_limited
    when:
      messages_contain: "[[429]]"
    respond:
      status: 429
      error: "Rate limit exceeded (mock)"
  - name: server_error
    when:
      messages_contain: "[[500]]"
    respond:
      status: 500
      error: "Internal error (mock)"
  - name: bad_request
    when:
      messages_contain: "[[400]]"
    respond:
      status: 400
      error: "Invalid request (mock)"
  - name: unauthorized
    when:
      messages_contain: "[[401]]"
    respond:
      status: 401
      error: "Incorrect API key provided (mock)"
  - name: large_model
    when:
      model_matches: "compat-large*"
    respond:
      content: "large model answer"
"#;

/// A running fakellm, stopped (and its directory removed) on drop.
struct Fakellm {
    child: Child,
    dir: PathBuf,
    base_url: String,
}

/// Where the fakellm executable is: `FAKELLM`, else `fakellm` on `PATH`.
fn executable() -> PathBuf {
    if let Some(path) = std::env::var_os("FAKELLM").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("fakellm"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "these tests need fakellm, an OpenAI-compatible mock server: \
                 `pip install fakellm==0.3.5` (as .ci/run does), then put it on PATH or set \
                 FAKELLM to its path"
            )
        })
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

impl Fakellm {
    fn start() -> Fakellm {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "xcs-fakellm-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        std::fs::write(dir.join("fakellm.yaml"), CONFIG).expect("the config file");
        let program = executable();
        // A port found free may be taken before the server binds it: then try another.
        let mut last_log = String::new();
        for _ in 0..3 {
            let port = free_port();
            let log = std::fs::File::create(dir.join("server.log")).expect("the log file");
            let child = Command::new(&program)
                .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--config", "fakellm.yaml"])
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("the log file"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
            let mut server = Fakellm {
                child,
                dir: dir.clone(),
                base_url: format!("http://127.0.0.1:{port}/v1"),
            };
            if server.ready(port) {
                return server;
            }
            last_log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            let _ = server.child.kill();
            let _ = server.child.wait();
            std::mem::forget(server); // keep the directory for the next try
        }
        let _ = std::fs::remove_dir_all(&dir);
        panic!("fakellm did not start; its output:\n{last_log}")
    }

    /// Waits (at most 30 s) until the server accepts connections; `false` if it exited.
    fn ready(&mut self, port: u16) -> bool {
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn chat(&self, resource: &str) -> Chat {
        Chat::new()
            .base_url(&self.base_url)
            .model("compat-small")
            .resource(format!("{}#{resource}", self.base_url))
    }

    /// The server's count of requests, per rule (`<fallthrough>`: none matched).
    async fn requests(&self, rule: &str) -> u64 {
        let url = self.base_url.replace("/v1", "/_fakellm/stats");
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let stats: serde_json::Value = http.get(url).send().await.unwrap().json().await.unwrap();
        stats["by_rule"][rule].as_u64().unwrap_or(0)
    }
}

impl Drop for Fakellm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(Path::new(&self.dir));
    }
}

fn chat_error(error: &XcsError) -> &ChatError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(inner) = cause {
        if let Some(found) = inner.downcast_ref::<ChatError>() {
            return found;
        }
        cause = inner.source();
    }
    panic!("no ChatError in {error:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_replies_have_the_shapes_a_third_party_server_speaks() {
    let server = Fakellm::start();
    let chat = server.chat("shapes");

    let reply = chat
        .call(ChatRequest::new([
            Message::system("You are terse."),
            Message::user("hello"),
        ]))
        .await
        .unwrap();
    assert_eq!(reply.text, "Hi there from fakellm.");
    assert_eq!(reply.finish_reason.as_deref(), Some("stop"));
    // The default model was sent (and echoed back).
    assert_eq!(reply.model, "compat-small");
    let usage = reply.usage.expect("fakellm reports usage");
    assert!(usage.input_tokens >= 1, "{usage:?}");
    assert!(usage.output_tokens >= 1, "{usage:?}");

    // A model named by the client's default matches the server's model rule.
    let large = chat.clone().model("compat-large-1");
    let reply = large.call(ChatRequest::user("anything")).await.unwrap();
    assert_eq!(reply.text, "large model answer");

    // The API key is sent as a bearer token.
    let who = ChatRequest::user("who am i");
    let keyed = chat.clone().api_key("sk-xcs-compat");
    assert_eq!(
        keyed.call(who.clone()).await.unwrap().text,
        "an authorized caller"
    );
    assert_ne!(chat.call(who).await.unwrap().text, "an authorized caller");

    // A tool call: no text, and the reason.
    let reply = chat
        .call(ChatRequest::user("[[tool]] search"))
        .await
        .unwrap();
    assert_eq!(reply.text, "");
    assert_eq!(reply.finish_reason.as_deref(), Some("tool_calls"));

    // The fallback echo hashes the whole body: every optional field reaches the server.
    let base = ChatRequest::user("echo this").max_tokens(16);
    let echo = |request: ChatRequest| {
        let chat = chat.clone();
        async move { chat.call(request).await.unwrap().text }
    };
    let plain = echo(base.clone()).await;
    assert!(
        plain.starts_with("[mock response for compat-small"),
        "{plain}"
    );
    assert_eq!(echo(base.clone()).await, plain);
    let variants = [
        base.clone().temperature(0.5),
        base.clone().seed(42),
        base.clone().max_tokens(17),
        ChatRequest {
            top_p: Some(0.5),
            ..base.clone()
        },
        ChatRequest {
            stop: vec!["END".into()],
            ..base.clone()
        },
        ChatRequest {
            json_mode: Some(true),
            ..base.clone()
        },
    ];
    for variant in variants {
        assert_ne!(echo(variant.clone()).await, plain, "{variant:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn its_errors_map_to_rate_limited_retryable_and_permanent() {
    let server = Fakellm::start();

    // A 429 without headers: rate-limited, with the default wait.
    let error = server
        .chat("429")
        .call(ChatRequest::user("[[429]]"))
        .await
        .unwrap_err();
    assert!(error.is_rate_limited(), "{error}");
    assert_eq!(error.retry_hint(), Some(Duration::from_secs(1)));

    // A 500: retryable, and retried.
    let chat = server.chat("errors");
    let error = execution_options!(max_retries = 2 => async {
        chat.call(ChatRequest::user("[[500]]")).await
    })
    .await
    .unwrap_err();
    assert!(error.is_retryable(), "{error}");
    match chat_error(&error) {
        ChatError::Status {
            status, message, ..
        } => assert_eq!((*status, message.as_str()), (500, "Internal error (mock)")),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.requests("server_error").await, 3);

    // 400 and 401: permanent (never retried), with the provider's message.
    for (prompt, status, message) in [
        ("[[400]]", 400, "Invalid request (mock)"),
        ("[[401]]", 401, "Incorrect API key provided (mock)"),
    ] {
        let error = execution_options!(max_retries = 2 => async {
            chat.call(ChatRequest::user(prompt)).await
        })
        .await
        .unwrap_err();
        assert!(!error.is_retryable(), "{error}");
        match chat_error(&error) {
            ChatError::Status {
                status: got,
                message: text,
                ..
            } => assert_eq!((*got, text.as_str()), (status, message)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(server.requests("bad_request").await, 1);
    assert_eq!(server.requests("unauthorized").await, 1);

    // A path the server does not serve: its 404 is permanent too.
    let error = Chat::new()
        .base_url(server.base_url.replace("/v1", "/nowhere"))
        .call(ChatRequest::user("hi"))
        .await
        .unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert!(matches!(
        chat_error(&error),
        ChatError::Status { status: 404, .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_retried_batch_on_a_resource_asks_each_request_once() {
    let server = Fakellm::start();
    let chat = server.chat("batch");
    let requests: Vec<ChatRequest> = (0..24)
        .map(|i| ChatRequest::user(format!("question {i}")).max_tokens(32))
        .collect();
    // The resource's limits hold the batch to 4 requests at once, 50 a second.
    let resource = AsyncOperator::resource(&chat).unwrap().to_owned();
    let limits = ResourceLimits::new()
        .requests_per_minute(3_000.0)
        .max_in_flight(4);
    xcs::set_resource_limits(&resource, &limits).unwrap();
    let before = xcs::cache_stats();
    let run = || {
        let chat = chat.clone();
        let requests = requests.clone();
        execution_options!(
            max_workers = 8, enable_caching = true, max_retries = 2, timeout_seconds = 60 => async {
                vmap(chat).call(requests).await
            }
        )
    };
    let first = run().await.unwrap();
    assert_eq!(first.len(), 24);
    for (i, reply) in first.iter().enumerate() {
        assert!(
            reply.text.starts_with("[mock response for compat-small"),
            "{i}: {reply:?}"
        );
    }
    assert_eq!(server.requests("<fallthrough>").await, 24);
    let stats = xcs::resource_stats(&resource).unwrap();
    assert_eq!(stats.requests, 24);
    assert!(
        stats.input_tokens >= 24 && stats.output_tokens >= 24,
        "{stats:?}"
    );

    // Again: every answer from the cache, none from the server.
    let second = run().await.unwrap();
    assert_eq!(second, first);
    assert_eq!(server.requests("<fallthrough>").await, 24);
    let after = xcs::cache_stats();
    assert!(after.hits - before.hits >= 24, "{before:?} → {after:?}");
    assert_eq!(xcs::resource_stats(&resource).unwrap().requests, 24);
    assert_eq!(
        AsyncOperator::resource(&chat),
        Some(format!("{}#batch", server.base_url)).as_deref()
    );
}
