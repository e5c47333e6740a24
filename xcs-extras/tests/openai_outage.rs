//! A provider outage against the repository's mock server: `xcs::fallback` over two
//! `xcs::openai::Chat` clients, with a circuit breaker on the primary's resource. While the
//! primary's server answers every request with a 503, the batch completes from the secondary
//! and the breaker keeps all but a few requests from reaching the primary; once the primary
//! recovers and the cooldown has passed, one trial request closes the circuit and the primary
//! answers again. Observed from both sides: `resource_stats` and the servers' counters.

#[path = "../examples/common/llm_server.rs"]
mod llm_server;

use std::time::{Duration, Instant};

use llm_server::{Knobs, MockServer};
use xcs::openai::{Chat, ChatRequest};
use xcs::{
    AsyncOperator, CircuitState, ResourceLimits, execution_options, fallback, resource_stats,
    set_resource_limits, vmap,
};

const PRIMARY: &str = "outage-test-primary";
const SECONDARY: &str = "outage-test-secondary";
const OPEN_AFTER: usize = 3;
const WORKERS: usize = 4;

fn client(server: &MockServer, name: &str, model: &str, resource: &str) -> Chat {
    Chat::new()
        .base_url(server.base_url())
        .model(model)
        .resource(resource)
        .named(name)
}

fn questions(n: usize) -> Vec<ChatRequest> {
    (0..n)
        .map(|i| ChatRequest::user(format!("question {i}")).max_tokens(8))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_batch_outlasts_an_outage_and_the_breaker_closes_after_it() {
    let primary_server = MockServer::start(Knobs::default()).await.unwrap();
    let secondary_server = MockServer::start(Knobs::default()).await.unwrap();
    let primary = client(&primary_server, "primary", "primary-model", PRIMARY);
    let secondary = client(&secondary_server, "secondary", "secondary-model", SECONDARY);
    let cooldown = Duration::from_millis(500);
    set_resource_limits(
        PRIMARY,
        &ResourceLimits::new()
            .open_after_failures(OPEN_AFTER)
            .cooldown_seconds(cooldown.as_secs_f64()),
    )
    .unwrap();
    let op = fallback(primary, secondary);

    // The outage: every request to the primary is a 503.
    primary_server.set_outage(true);
    let begun = Instant::now();
    let replies = execution_options!(max_workers = WORKERS, max_retries = 1 => {
        vmap(op.clone()).call(questions(60))
    })
    .await
    .unwrap();
    let took = begun.elapsed();
    assert_eq!(replies.len(), 60);
    assert!(replies.iter().all(|r| r.model == "secondary-model"));
    assert_eq!(secondary_server.snapshot().completed, 60);
    let down = primary_server.settled(Duration::from_secs(10)).await;
    let stats = resource_stats(PRIMARY).unwrap();
    // Every request that reached the primary was a 503; the breaker refused the others at once.
    assert_eq!(down.outage, down.started);
    assert!(stats.refused_open > 0, "{stats:?}");
    // Before the circuit opened: the failures that opened it and what was in flight then (each
    // item tries twice); after: at most one trial per cooldown.
    let trials = (took.as_secs_f64() / cooldown.as_secs_f64()).ceil() as usize + 1;
    assert!(
        down.started <= OPEN_AFTER + 2 * WORKERS + trials,
        "{down:?} in {took:?}"
    );
    assert!(down.started + stats.refused_open as usize >= 60);
    assert!(matches!(
        stats.circuit,
        CircuitState::Open { .. } | CircuitState::HalfOpen { .. }
    ));

    // The primary recovers; after the cooldown, the next call is the trial and closes it.
    primary_server.set_outage(false);
    let waiting = Instant::now();
    while matches!(
        resource_stats(PRIMARY).unwrap().circuit,
        CircuitState::Open { .. }
    ) {
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "never half-open"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = primary_server.snapshot();
    let reply = op.call(ChatRequest::user("are you back?")).await.unwrap();
    assert_eq!(reply.model, "primary-model");
    let stats = resource_stats(PRIMARY).unwrap();
    assert_eq!(
        (stats.circuit, stats.consecutive_failures),
        (CircuitState::Closed, 0)
    );
    let after = primary_server.snapshot().since(&before);
    assert_eq!((after.started, after.completed, after.failed), (1, 1, 0));

    // Closed: the primary answers a whole batch again.
    let replies = execution_options!(max_workers = WORKERS => vmap(op.clone()).call(questions(20)))
        .await
        .unwrap();
    assert!(replies.iter().all(|r| r.model == "primary-model"));
    assert_eq!(primary_server.snapshot().since(&before).completed, 21);
    assert_eq!(secondary_server.snapshot().completed, 60);
}

/// Without a breaker, the fallback still completes the batch, but every item asks the primary
/// (and its retries) first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_breaker_every_item_asks_the_primary_first() {
    let primary_server = MockServer::start(Knobs::default()).await.unwrap();
    let secondary_server = MockServer::start(Knobs::default()).await.unwrap();
    let primary = client(
        &primary_server,
        "primary",
        "primary-model",
        "outage-test-nobreaker",
    );
    let secondary = client(&secondary_server, "secondary", "secondary-model", SECONDARY);
    primary_server.set_outage(true);
    let op = fallback(primary, secondary);
    let replies = execution_options!(max_workers = WORKERS, max_retries = 1 => {
        vmap(op).call(questions(10))
    })
    .await
    .unwrap();
    assert!(replies.iter().all(|r| r.model == "secondary-model"));
    let down = primary_server.settled(Duration::from_secs(10)).await;
    assert_eq!((down.started, down.outage), (20, 20));
    assert_eq!(
        AsyncOperator::name(&fallback(
            client(&primary_server, "a", "m", "r"),
            client(&primary_server, "b", "m", "r")
        )),
        "fallback(a, b)"
    );
}
