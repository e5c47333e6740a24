//! `xcs::openai::Chat` replies in a `cache_dir` store: a binary of its own, since it empties the
//! process's memory cache (which the other tests' cache counts would see).

#[path = "../examples/common/llm_server.rs"]
mod llm_server;

use llm_server::{Knobs, MockServer};
use xcs::openai::{Chat, ChatRequest};
use xcs::{AsyncOperator, execution_options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_persist_in_a_cache_dir() {
    let server = MockServer::start(Knobs::default()).await.unwrap();
    let chat = Chat::new()
        .base_url(server.base_url())
        .model("mock-default");
    let dir = std::env::temp_dir().join(format!("xcs-openai-persist-{}", std::process::id()));
    let request = ChatRequest::user("keep me").max_tokens(8).temperature(0.2);
    let ask = |request: ChatRequest| {
        let (chat, dir) = (chat.clone(), dir.clone());
        execution_options!(enable_caching = true, cache_dir = dir => async move {
            chat.call(request).await
        })
    };
    let first = ask(request.clone()).await.unwrap();
    // The memory cache forgotten, the store still answers.
    xcs::clear_cache();
    let second = ask(request.clone()).await.unwrap();
    assert_eq!(second, first);
    assert_eq!(server.snapshot().started, 1);
    assert_eq!(xcs::cache_stats().persistent_hits, 1);
    // Another temperature is another entry, in the store too.
    xcs::clear_cache();
    ask(request.temperature(0.3)).await.unwrap();
    assert_eq!(server.snapshot().started, 2);
    let _ = std::fs::remove_dir_all(&dir);
}
