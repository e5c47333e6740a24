//! `hedge_after` with `xcs::openai::Chat` against the repository's mock server
//! (`examples/common/llm_server.rs`): the hedge answers a slow request, the loser's connection
//! closes (seen at the server), and no item is sent more than twice.

#[path = "../examples/common/llm_server.rs"]
mod llm_server;

use std::time::{Duration, Instant};

use llm_server::{Knobs, MockServer};
use xcs::openai::{Chat, ChatRequest};
use xcs::{AsyncOperator, execution_options, vmap};

fn chat(server: &MockServer, resource: &str) -> Chat {
    Chat::new()
        .base_url(server.base_url())
        .model("mock-default")
        .resource(format!("{}#{resource}", server.base_url()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hedge_answers_and_the_losers_connection_closes() {
    let server = MockServer::start(Knobs {
        latency: Duration::from_millis(5),
        slow_latency: Duration::from_secs(30),
        ..Knobs::default()
    })
    .await
    .unwrap();
    let chat = chat(&server, "hedge_one");
    let started = Instant::now();
    // The first sending would take 30 s; the hedge, sent after 100 ms, answers.
    let reply = execution_options!(hedge_after = 0.1 => async {
        chat.call(ChatRequest::user("[[slow-first]] hello")).await
    })
    .await
    .unwrap();
    assert_eq!(reply.text, "echo: [[slow-first]] hello");
    assert!(started.elapsed() >= Duration::from_millis(100));
    // At the server: two requests, one answered, the other's client gone.
    let seen = server.settled(Duration::from_secs(10)).await;
    assert_eq!(
        (
            seen.started,
            seen.completed,
            seen.disconnected,
            seen.in_flight
        ),
        (2, 1, 1, 0)
    );
    let closed = server.stats().loser_close_delays();
    assert_eq!(closed.len(), 1, "{:?}", server.stats().timeline());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_items_are_hedged_at_most_once_each() {
    let server = MockServer::start(Knobs::heavy_tail(Duration::from_millis(10), 0.1))
        .await
        .unwrap();
    let chat = chat(&server, "hedge_batch");
    let items = 60;
    let warm_up = 20;
    let replies = execution_options!(hedge_after = "p90", max_workers = 8 => async {
        // Latencies to take the quantile from.
        for i in 0..warm_up {
            chat.call(ChatRequest::user(format!("warm {i}"))).await?;
        }
        let requests: Vec<_> = (0..items)
            .map(|i| ChatRequest::user(format!("item {i}")))
            .collect();
        vmap(chat.clone()).call(requests).await
    })
    .await
    .unwrap();
    assert_eq!(replies.len(), items);
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.text, format!("echo: item {i}"));
    }
    let seen = server.settled(Duration::from_secs(10)).await;
    // The slow items were hedged (which requests are slow is fixed by their content), and
    // never more than once: at most two sendings of each.
    assert!(seen.started > warm_up + items, "{seen:?}");
    assert!(seen.disconnected >= 1, "{seen:?}");
    assert!(seen.started <= warm_up + 2 * items, "{seen:?}");
    // Every sending was answered or cut off; none is left running.
    assert_eq!(seen.completed + seen.disconnected, seen.started);
    assert_eq!(seen.in_flight, 0);
}
