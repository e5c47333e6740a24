//! Async operators against a real HTTP server (the in-process mock of
//! `examples/common/llm_server.rs`): what the *server* sees when xcs bounds, orders and cancels
//! model calls.

#[path = "../examples/common/llm_server.rs"]
mod llm_server;
#[path = "../examples/common/openai.rs"]
mod openai;

use std::sync::Arc;
use std::time::Duration;

use llm_server::{Knobs, MockServer, prompts};
use openai::{ChatClient, ChatError, Endpoint, Message};
use xcs::{AsyncOperator, XcsError, execution_options, pmap, vmap};

/// One chat completion per prompt: the operator an LLM application writes by hand.
struct Chat {
    client: ChatClient,
    model: String,
}

impl Chat {
    fn new(server: &MockServer) -> Arc<Chat> {
        Arc::new(Chat {
            client: ChatClient::new(server.base_url(), None).unwrap(),
            model: "mock-1".into(),
        })
    }
}

impl AsyncOperator for Chat {
    type Input = String;
    type Output = String;

    async fn forward(&self, prompt: String) -> Result<String, XcsError> {
        self.client
            .complete(&self.model, &[Message::user(prompt)])
            .await
            .map_err(|error| error.into_xcs("chat"))
    }

    fn name(&self) -> &str {
        "chat"
    }
}

/// How long the server may take to notice clients that went away (it sees the connection
/// close a moment after the client drops the request). A bound on the wait, not on xcs.
const OBSERVE: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_batch_leaves_no_request_running_at_the_server() {
    let server = MockServer::start(Knobs::default()).await.unwrap();
    let chat = Chat::new(&server);
    // Open the 32 connections first, so the hung requests below reach the server at once.
    pmap(Arc::clone(&chat), 32)
        .call(prompts("warm", 32))
        .await
        .unwrap();
    let before = server.snapshot();
    server.stats().reset_peak();

    let hung: Vec<String> = (0..64).map(|i| format!("[[hang]] {i}")).collect();
    let err = execution_options!(timeout_seconds = 0.2 => async {
        pmap(Arc::clone(&chat), 32).call(hung).await
    })
    .await
    .unwrap_err();
    assert!(err.is_timeout(), "{err}");

    // Every request the call started is gone at the server: its handler was dropped because the
    // client closed the connection, none is still in flight, none was answered.
    let after = poll_until(&server, before, |seen| {
        seen.in_flight == 0 && seen.started == 32 && seen.disconnected == 32
    })
    .await;
    assert_eq!(after.started, 32, "{after:?}");
    assert_eq!(after.disconnected, 32, "{after:?}");
    assert_eq!(after.completed, 0, "{after:?}");
    assert_eq!(after.in_flight, 0, "{after:?}");
    // The 32 after them were never sent.
    assert_eq!(after.peak, 32, "{after:?}");

    // The client is still usable afterwards.
    let again = chat.call("after".into()).await.unwrap();
    assert_eq!(again, "echo: after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_timed_out_call_is_gone_at_the_server_too() {
    let server = MockServer::start(Knobs::default()).await.unwrap();
    let chat = Chat::new(&server);
    let before = server.snapshot();
    let err = execution_options!(timeout_seconds = 0.2 => async {
        chat.call("[[hang]] alone".into()).await
    })
    .await
    .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let after = poll_until(&server, before, |seen| {
        seen.in_flight == 0 && seen.disconnected == 1
    })
    .await;
    assert_eq!((after.started, after.disconnected), (1, 1), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_workers_bounds_requests_at_the_server_and_answers_keep_their_order() {
    // Varied latencies, so answers come back out of order.
    let server = MockServer::start(Knobs {
        latency: Duration::from_millis(5),
        jitter: Duration::from_millis(30),
        ..Knobs::default()
    })
    .await
    .unwrap();
    let chat = Chat::new(&server);
    let questions = prompts("question", 24);
    let answers = execution_options!(max_workers = 4 => async {
        vmap(Arc::clone(&chat)).call(questions.clone()).await
    })
    .await
    .unwrap();
    let expected: Vec<String> = questions.iter().map(|q| format!("echo: {q}")).collect();
    assert_eq!(answers, expected);
    let seen = server.snapshot();
    assert_eq!(seen.started, 24);
    assert!(
        (1..=4).contains(&seen.peak),
        "max_workers = 4, yet {} requests were in flight at the server",
        seen.peak
    );

    // pmap's own count, ignoring max_workers.
    server.stats().reset_peak();
    let answers = execution_options!(max_workers = 2 => async {
        pmap(Arc::clone(&chat), 6).call(questions.clone()).await
    })
    .await
    .unwrap();
    assert_eq!(answers, expected);
    assert!((1..=6).contains(&server.snapshot().peak));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_reach_the_caller_with_their_index_and_retry_after() {
    let server = MockServer::start(Knobs {
        retry_after: Duration::from_secs(3),
        ..Knobs::default()
    })
    .await
    .unwrap();
    let chat = Chat::new(&server);
    let inputs = vec!["fine".into(), "[[fail]] no".into(), "fine too".into()];
    let err = vmap(Arc::clone(&chat)).call(inputs).await.unwrap_err();
    assert_eq!(err.index(), Some(1), "{err}");
    assert!(err.to_string().contains("500"), "{err}");

    let settled = vmap(Arc::clone(&chat))
        .call_settled_async(vec!["a".into(), "[[429]] b".into()])
        .await;
    assert_eq!(settled[0].as_deref().ok(), Some("echo: a"));
    assert!(settled[1].is_err());

    // The client reads `Retry-After`, for the retry policy to honour.
    let direct = chat
        .client
        .complete("mock-1", &[Message::user("[[429]] c")])
        .await
        .unwrap_err();
    match direct {
        ChatError::Status {
            status,
            retry_after,
            ..
        } => {
            assert_eq!(status.as_u16(), 429);
            assert_eq!(retry_after, Some(Duration::from_secs(3)));
        }
        other => panic!("expected a 429, got {other}"),
    }
    let seen = server.snapshot();
    assert_eq!((seen.failed, seen.rate_limited), (1, 2), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_answers_a_repeated_prompt_without_a_request() {
    let server = MockServer::start(Knobs::default()).await.unwrap();
    let chat = Chat::new(&server);
    let questions = prompts("cached", 8);
    for _ in 0..2 {
        execution_options!(enable_caching = true => async {
            vmap(Arc::clone(&chat)).call(questions.clone()).await
        })
        .await
        .unwrap();
    }
    assert_eq!(server.snapshot().started, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_wait_for_retry_after_and_stop_at_max_retries_over_http() {
    let server = MockServer::start(Knobs {
        retry_after: Duration::from_secs(1),
        ..Knobs::default()
    })
    .await
    .unwrap();
    let chat = Chat::new(&server);
    // `[[429]]` is always turned away: one attempt and two retries, each after `Retry-After`.
    let started = std::time::Instant::now();
    let err = execution_options!(max_retries = 2 => async {
        chat.call("[[429]] busy".to_string()).await
    })
    .await
    .unwrap_err();
    assert!(
        err.is_retryable() && err.retry_hint() == Some(Duration::from_secs(1)),
        "{err}"
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(server.snapshot().rate_limited, 3);
    // A plain prompt goes through on the first attempt.
    let ok = execution_options!(max_retries = 2 => async { chat.call("hi".to_string()).await });
    assert!(ok.await.is_ok());
    assert_eq!(server.snapshot().started, 4);
}

/// Polls the server's counters (since `before`) until `done` holds or [`OBSERVE`] has passed.
async fn poll_until(
    server: &MockServer,
    before: llm_server::Snapshot,
    done: impl Fn(&llm_server::Snapshot) -> bool,
) -> llm_server::Snapshot {
    let until = std::time::Instant::now() + OBSERVE;
    loop {
        let seen = server.snapshot().since(&before);
        if done(&seen) || std::time::Instant::now() >= until {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The model examples find a real server through the ecosystem's variables (`OPENAI_BASE_URL`,
/// `OPENAI_API_KEY`, `OPENAI_MODEL`), and use the mock without `OPENAI_BASE_URL`.
#[test]
fn the_examples_read_the_openai_variables() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    };
    let endpoint = Endpoint::from_lookup(env(&[
        ("OPENAI_BASE_URL", "http://localhost:11434/v1"),
        ("OPENAI_API_KEY", "sk-test"),
        ("OPENAI_MODEL", "llama3.2, qwen3"),
    ]))
    .expect("OPENAI_BASE_URL names a server");
    assert_eq!(endpoint.base_url, "http://localhost:11434/v1");
    assert_eq!(endpoint.api_key.as_deref(), Some("sk-test"));
    assert_eq!(endpoint.models, ["llama3.2", "qwen3"]);
    // A base URL alone: no key, the default model.
    let endpoint =
        Endpoint::from_lookup(env(&[("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")])).unwrap();
    assert_eq!(endpoint.api_key, None);
    assert_eq!(endpoint.models, [openai::DEFAULT_MODEL]);
    assert!(endpoint.client().is_ok());
    // No `OPENAI_BASE_URL` (the names of old are not read): the mock server.
    let old = env(&[
        ("XCS_LLM_BASE_URL", "http://localhost:11434/v1"),
        ("XCS_LLM_API_KEY", "sk-test"),
    ]);
    assert_eq!(Endpoint::from_lookup(old), None);
    assert_eq!(
        Endpoint::from_lookup(env(&[("OPENAI_BASE_URL", " ")])),
        None
    );
}
