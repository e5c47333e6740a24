//! `xcs::openai::Chat` against the repository's mock server (`examples/common/llm_server.rs`):
//! request and reply shapes, how every kind of failure maps to an `XcsError`, retries, usage,
//! the cache key, and the mock's own provider-like rate limiter.

#[path = "../examples/common/llm_server.rs"]
mod llm_server;

use std::time::{Duration, SystemTime};

use llm_server::{Knobs, Limits, MockServer};
use xcs::openai::{Chat, ChatError, ChatRequest, Message};
use xcs::{AsyncOperator, Usage, XcsError, execution_options, vmap};

/// A client of `server`, whose calls use a resource of their own (`resource`): a 429 may pause
/// its resource, and each case must not wait for another's.
fn chat(server: &MockServer, resource: &str) -> Chat {
    Chat::new()
        .base_url(server.base_url())
        .model("mock-default")
        .resource(format!("{}#{resource}", server.base_url()))
}

/// Held by the tests that read the process's trace, so that one does not take the other's
/// events.
static TRACE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The `ChatError` an error carries.
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
async fn a_request_and_its_reply_have_the_openai_shapes() {
    let server = MockServer::start(Knobs::default()).await.unwrap();
    let chat = chat(&server, "shapes");
    // The default model fills a request that names none.
    let reply = chat
        .call(ChatRequest::new([
            Message::system("be brief"),
            Message::user("hello there"),
        ]))
        .await
        .unwrap();
    assert_eq!(reply.text, "echo: hello there");
    assert_eq!(reply.model, "mock-default");
    assert_eq!(reply.finish_reason.as_deref(), Some("stop"));
    // Four characters a token, rounded up: "be brief" (8) + "hello there" (11).
    assert_eq!(
        reply.usage,
        Some(Usage {
            input_tokens: 2 + 3,
            output_tokens: 5, // "echo: hello there": 17 characters
            cost: 0.0
        })
    );
    // A model named in the request wins.
    let reply = chat
        .call(ChatRequest::user("hi").model("mock-large").max_tokens(5))
        .await
        .unwrap();
    assert_eq!(reply.model, "mock-large");
    // A reply without `usage` has none.
    let reply = chat
        .call(ChatRequest::user("[[no-usage]] hi"))
        .await
        .unwrap();
    assert_eq!(reply.usage, None);
    assert_eq!(
        AsyncOperator::resource(&Chat::new().base_url(server.base_url())),
        Some(server.base_url())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_waits_for_what_each_header_form_asks() {
    let server = MockServer::start(Knobs {
        retry_after: Duration::from_secs(3),
        ..Knobs::default()
    })
    .await
    .unwrap();
    let in_60s = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(60));
    let cases: [(&str, String); 5] = [
        ("retry-after seconds", "[[429]]".into()),
        (
            "retry-after-ms",
            "[[429]] [[header:retry-after-ms=1500]] [[header:retry-after=2]]".into(),
        ),
        (
            "retry-after date",
            format!("[[429]] [[header:retry-after={in_60s}]]"),
        ),
        (
            "reset of the exhausted limit",
            "[[429]] [[header:x-ratelimit-remaining-requests=0]] \
             [[header:x-ratelimit-reset-requests=20ms]] \
             [[header:x-ratelimit-remaining-tokens=900]] [[header:x-ratelimit-reset-tokens=6m0s]]"
                .into(),
        ),
        (
            "the larger reset",
            "[[429]] [[header:x-ratelimit-reset-requests=1s]] \
             [[header:x-ratelimit-reset-tokens=2.5s]]"
                .into(),
        ),
    ];
    let mut hints = Vec::new();
    for (i, (case, prompt)) in cases.iter().enumerate() {
        let chat = chat(&server, &format!("429-{i}"));
        let error = chat
            .call(ChatRequest::user(prompt.clone()))
            .await
            .unwrap_err();
        assert!(error.is_rate_limited(), "{case}: {error}");
        assert!(error.is_retryable(), "{case}: {error}");
        hints.push(error.retry_hint().unwrap_or_default());
    }
    assert_eq!(hints[0], Duration::from_secs(3));
    assert_eq!(hints[1], Duration::from_millis(1500));
    // An HTTP date has whole seconds, and a moment passed since it was written.
    assert!(
        (Duration::from_secs(30)..=Duration::from_secs(60)).contains(&hints[2]),
        "{:?}",
        hints[2]
    );
    assert_eq!(hints[3], Duration::from_millis(20));
    assert_eq!(hints[4], Duration::from_millis(2500));
    assert_eq!(server.snapshot().rate_limited, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_permanent_and_carry_the_providers_message() {
    let server = MockServer::start(Knobs::default()).await.unwrap();
    let chat = chat(&server, "4xx");
    for status in [400u16, 401, 404, 422] {
        let error = execution_options!(max_retries = 3 => async {
            chat.call(ChatRequest::user(format!("[[status:{status}]]")).model("gpt-x")).await
        })
        .await
        .unwrap_err();
        assert!(!error.is_retryable(), "{status}: {error}");
        match chat_error(&error) {
            ChatError::Status {
                status: got,
                message,
                ..
            } => {
                assert_eq!(*got, status);
                assert_eq!(message, &format!("mock error {status} for model gpt-x"));
            }
            other => panic!("{other:?}"),
        }
        assert!(error.to_string().contains("mock error"), "{error}");
    }
    // Never retried: one request each.
    assert_eq!(server.snapshot().started, 4);
    // 408 and 409 are worth another try.
    for status in [408u16, 409] {
        let error = chat
            .call(ChatRequest::user(format!("[[status:{status}]]")))
            .await
            .unwrap_err();
        assert!(error.is_retryable(), "{status}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_under_max_retries() {
    let server = MockServer::start(Knobs::default()).await.unwrap();
    let chat = chat(&server, "5xx").named("chat-5xx");
    let _traced = TRACE.lock().await;
    let _ = xcs::take_trace();
    let reply = execution_options!(max_retries = 2, trace_execution = true => async {
        chat.call(ChatRequest::user("[[fail-first:2]] persist")).await
    })
    .await
    .unwrap();
    assert_eq!(reply.text, "echo: [[fail-first:2]] persist");
    let seen = server.snapshot();
    assert_eq!((seen.started, seen.failed), (3, 2), "{seen:?}");
    let summary = xcs::take_trace().summary();
    let retries: usize = summary
        .iter()
        .filter(|s| s.operator == "chat-5xx")
        .map(|s| s.retries)
        .sum();
    assert_eq!(retries, 2);

    // Out of retries: the last error, still retryable, with the status.
    let error = execution_options!(max_retries = 1 => async {
        chat.call(ChatRequest::user("[[fail]] always")).await
    })
    .await
    .unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert!(matches!(
        chat_error(&error),
        ChatError::Status { status: 500, .. }
    ));
    assert_eq!(server.snapshot().started, 3 + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_a_completion_is_permanent_and_shows_its_start() {
    let server = MockServer::start(Knobs::default()).await.unwrap();
    let chat = chat(&server, "garbage");
    let error = execution_options!(max_retries = 3 => async {
        chat.call(ChatRequest::user("[[garbage]]")).await
    })
    .await
    .unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    match chat_error(&error) {
        ChatError::BadBody { start, .. } => {
            assert!(start.starts_with("<html><body>502 Bad Gateway"), "{start}")
        }
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains("<html><body>502"), "{error}");

    // A body over the limit is not read to its end.
    let error = chat.call(ChatRequest::user("[[huge]]")).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert!(
        matches!(chat_error(&error), ChatError::TooLarge { .. }),
        "{error}"
    );
    assert_eq!(server.snapshot().started, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_failures_are_retryable_and_bad_urls_are_permanent() {
    // A port nobody listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let chat = Chat::new().base_url(format!("http://127.0.0.1:{port}/v1"));
    let error = chat.call(ChatRequest::user("hi")).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert!(
        matches!(chat_error(&error), ChatError::Transport(_)),
        "{error}"
    );

    let error = Chat::new()
        .base_url("ftp://example.invalid/v1")
        .call(ChatRequest::user("hi"))
        .await
        .unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert!(
        matches!(chat_error(&error), ChatError::Config(_)),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_recorded_and_the_estimate_counts_characters_and_max_tokens() {
    let server = MockServer::start(Knobs::default()).await.unwrap();
    let chat = chat(&server, "usage").price(0.5, 2.0).named("chat-usage");
    let request = ChatRequest::user("x".repeat(40)).max_tokens(100);
    // 40 characters: 10 tokens in; `max_tokens` out.
    assert_eq!(
        chat.estimate(&request),
        Usage {
            input_tokens: 10,
            output_tokens: 100,
            cost: 10.0 * 0.5 + 100.0 * 2.0
        }
    );
    let traced = TRACE.lock().await;
    let _ = xcs::take_trace();
    let reply = execution_options!(trace_execution = true => async {
        chat.call(request.clone()).await
    })
    .await
    .unwrap();
    // "echo: " + 40 characters: 12 tokens.
    let expected = Usage {
        input_tokens: 10,
        output_tokens: 12,
        cost: 10.0 * 0.5 + 12.0 * 2.0,
    };
    assert_eq!(reply.usage, Some(expected));
    let trace = xcs::take_trace();
    let event = trace
        .events()
        .iter()
        .find(|e| e.operator == "chat-usage")
        .expect("a trace event of the call");
    assert_eq!(event.usage, Some(expected));
    drop(traced);

    // The resource counted it too; a reply without usage keeps its estimate.
    let resource = AsyncOperator::resource(&chat).unwrap().to_owned();
    let stats = xcs::resource_stats(&resource).expect("the resource was used");
    assert_eq!(stats.requests, 1);
    assert_eq!((stats.input_tokens, stats.output_tokens), (10, 12));
    assert_eq!(stats.cost, expected.cost);
    chat.call(ChatRequest::user("[[no-usage]] 16 characters.").max_tokens(3))
        .await
        .unwrap();
    let stats = xcs::resource_stats(&resource).unwrap();
    assert_eq!(stats.requests, 2);
    assert_eq!(stats.estimated_tokens, 7 + 3);

    // Under a budget, what was recorded is what was spent; a request whose estimate does not fit
    // in what is left is refused before it is sent (110 estimated, 120 − 22 left).
    let spent = execution_options!(token_budget = 120 => async {
        chat.call(request.clone().temperature(0.1)).await.unwrap();
        let refused = chat.call(request.clone().temperature(0.2)).await.unwrap_err();
        assert!(matches!(refused, XcsError::BudgetExceeded { .. }), "{refused}");
        xcs::spent()
    })
    .await;
    assert_eq!(spent, expected);
    assert_eq!(xcs::resource_stats(&resource).unwrap().requests, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_key_is_the_whole_request() {
    let server = MockServer::start(Knobs::default()).await.unwrap();
    let chat = chat(&server, "cache");
    let base = ChatRequest::user("cache me")
        .max_tokens(10)
        .temperature(0.0);
    let requests = vec![
        base.clone(),
        base.clone(),
        base.clone().temperature(0.7),
        base.clone().seed(7),
        base.clone().model("other"),
        ChatRequest {
            stop: vec!["\n".into()],
            ..base.clone()
        },
    ];
    let before = xcs::cache_stats();
    let first = execution_options!(enable_caching = true, max_workers = 1 => async {
        vmap(chat.clone()).call(requests.clone()).await
    })
    .await
    .unwrap();
    assert_eq!(
        server.snapshot().started,
        5,
        "one request per distinct request"
    );
    let again = execution_options!(enable_caching = true => async {
        vmap(chat.clone()).call(requests.clone()).await
    })
    .await
    .unwrap();
    assert_eq!(again, first);
    assert_eq!(
        server.snapshot().started,
        5,
        "the second pass came from the cache"
    );
    let after = xcs::cache_stats();
    assert!(after.hits - before.hits >= 7, "{before:?} → {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_rate_limits_per_key_with_openai_headers() {
    // One request and one token a second, buckets of 100 seconds' worth: 100 of each (a slow
    // refill, so that a loaded machine cannot refill what the test empties).
    let server = MockServer::start(Knobs {
        limits: Some(Limits {
            requests_per_minute: Some(60),
            tokens_per_minute: Some(60),
            burst: Duration::from_secs(100),
        }),
        ..Knobs::default()
    })
    .await
    .unwrap();
    let url = format!("{}/chat/completions", server.base_url());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let send = |key: &'static str, prompt: &str, max_tokens: u32| {
        http.post(&url)
            .bearer_auth(key)
            .json(&serde_json::json!({
                "model": "m",
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
            }))
            .send()
    };
    let first = send("key-a", "hello", 10).await.unwrap();
    assert_eq!(first.status(), 200);
    let h = first.headers();
    assert_eq!(h["x-ratelimit-limit-requests"], "60");
    assert_eq!(h["x-ratelimit-remaining-requests"], "99");
    assert_eq!(h["x-ratelimit-limit-tokens"], "60");
    // 100 − (2 prompt tokens + 10).
    assert_eq!(h["x-ratelimit-remaining-tokens"], "88");
    assert_eq!(h["x-ratelimit-reset-requests"], "1s");
    assert_eq!(h["x-ratelimit-reset-tokens"], "12s");

    // 1 + 95 tokens do not fit in what key-a has left: a 429 with every header.
    let second = send("key-a", "x", 95).await.unwrap();
    assert_eq!(second.status(), 429);
    let h = second.headers();
    // 8 tokens short, one a second: 8 s, less the moment since (in whole seconds, rounded up).
    let ms: u64 = h["retry-after-ms"].to_str().unwrap().parse().unwrap();
    assert!((1..=8000).contains(&ms), "{ms}");
    let seconds: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert_eq!(seconds, ms.div_ceil(1000));
    for name in ["requests", "tokens"] {
        for kind in ["limit", "remaining", "reset"] {
            assert!(
                h.contains_key(format!("x-ratelimit-{kind}-{name}")),
                "{kind}-{name}"
            );
        }
    }
    // Another key has buckets of its own.
    assert_eq!(send("key-b", "x", 95).await.unwrap().status(), 200);

    let seen = server.snapshot();
    assert_eq!((seen.started, seen.rate_limited), (3, 1), "{seen:?}");
    assert_eq!(seen.tokens, 12 + 96);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_of_the_mock_limiter_reaches_the_client_with_its_precise_wait() {
    // A bucket of one request, refilled in ten seconds.
    let server = MockServer::start(Knobs {
        limits: Some(Limits {
            requests_per_minute: Some(6),
            tokens_per_minute: None,
            burst: Duration::from_secs(10),
        }),
        ..Knobs::default()
    })
    .await
    .unwrap();
    let chat = chat(&server, "limiter").api_key("key-c");
    chat.call(ChatRequest::user("one")).await.unwrap();
    let error = chat.call(ChatRequest::user("two")).await.unwrap_err();
    assert!(error.is_rate_limited(), "{error}");
    let hint = error.retry_hint().unwrap();
    assert!(
        hint > Duration::ZERO && hint <= Duration::from_secs(10),
        "{hint:?}"
    );
    // The resource heard it: its callers pause, its rates are halved.
    let stats = xcs::resource_stats(AsyncOperator::resource(&chat).unwrap()).unwrap();
    assert_eq!(stats.rate_limited, 1);
    assert!(stats.rate_factor < 1.0, "{stats:?}");
}
