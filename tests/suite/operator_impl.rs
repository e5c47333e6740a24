//! `#[xcs::operator]` on a hand-written `impl Operator`/`impl AsyncOperator` block: an operator
//! whose input is the user's own struct is retried, cached and persisted like a generated one.
//! Each capability is shown next to the same operator without the attribute, which runs once,
//! uncached. Also: the fingerprint of an operator's code in its persistent keys.

use crate::common;

use std::io;

use std::sync::MutexGuard;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};
use xcs::prelude::*;

/// A chat request: the user's own input type.
#[derive(Clone, Debug, Hash, PartialEq, Eq, Serialize, Deserialize)]
struct ChatRequest {
    prompt: String,
    max_tokens: u32,
}

fn request(prompt: &str) -> ChatRequest {
    ChatRequest {
        prompt: prompt.to_owned(),
        max_tokens: 16,
    }
}

/// The tests share the cache and its counters (and `clear_cache` empties it for everyone): one
/// at a time, with every test of the binary that uses them.
fn serial() -> MutexGuard<'static, ()> {
    common::global_lock()
}

#[cfg(any(feature = "persist", feature = "tokio"))]
fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("xcs-impl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Fails its first two runs with a retryable error (a provider's 429), then answers; counts its
/// runs. `$attr` is the attribute or nothing.
macro_rules! flaky {
    ($name:ident, $runs:ident, $label:literal $(, #[$attr:meta])?) => {
        static $runs: AtomicU32 = AtomicU32::new(0);

        struct $name;

        $(#[$attr])?
        impl Operator for $name {
            type Input = ChatRequest;
            type Output = String;

            fn forward(&self, input: ChatRequest) -> Result<String, XcsError> {
                if $runs.fetch_add(1, Ordering::SeqCst) < 2 {
                    return Err(XcsError::operator($label, io::Error::other("429 Too Many Requests")));
                }
                Ok(format!("{} ({} tokens)", input.prompt.to_uppercase(), input.max_tokens))
            }

            fn name(&self) -> &str {
                $label
            }
        }
    };
}

flaky!(Chat, CHAT_RUNS, "chat", #[xcs::operator]);
flaky!(PlainChat, PLAIN_CHAT_RUNS, "plain_chat");

#[test]
fn a_struct_input_is_retried() {
    let _serial = serial();
    let answer = execution_options!(max_retries = 3 => Chat.call(request("hi")));
    assert_eq!(answer.unwrap(), "HI (16 tokens)");
    assert_eq!(
        CHAT_RUNS.load(Ordering::SeqCst),
        3,
        "two failures, then the answer"
    );

    // Without the attribute, the first 429 is the call's error: the input cannot be copied.
    let plain = execution_options!(max_retries = 3 => PlainChat.call(request("hi")));
    assert!(matches!(plain, Err(XcsError::Operator { .. })), "{plain:?}");
    assert_eq!(PLAIN_CHAT_RUNS.load(Ordering::SeqCst), 1);
}

/// Counts its runs; answers at once. `$attr` is the attribute or nothing.
macro_rules! counted {
    ($name:ident, $runs:ident, $label:literal $(, #[$attr:meta])?) => {
        static $runs: AtomicU32 = AtomicU32::new(0);

        struct $name;

        $(#[$attr])?
        impl Operator for $name {
            type Input = ChatRequest;
            type Output = String;

            fn forward(&self, input: ChatRequest) -> Result<String, XcsError> {
                $runs.fetch_add(1, Ordering::SeqCst);
                Ok(input.prompt.repeat(2))
            }

            fn name(&self) -> &str {
                $label
            }
        }
    };
}

counted!(Echo, ECHO_RUNS, "echo", #[xcs::operator(version = 2)]);
counted!(PlainEcho, PLAIN_ECHO_RUNS, "plain_echo");

#[test]
fn a_struct_input_is_cached() {
    let _serial = serial();
    xcs::clear_cache();
    // Counted from here: another test of this file runs `Echo` too (before or after this one).
    let (echo_before, plain_before) = (
        ECHO_RUNS.load(Ordering::SeqCst),
        PLAIN_ECHO_RUNS.load(Ordering::SeqCst),
    );
    execution_options!(enable_caching = true => {
        assert_eq!(Echo.call(request("ab")).unwrap(), "abab");
        assert_eq!(Echo.call(request("ab")).unwrap(), "abab");
        assert_eq!(Echo.call(request("cd")).unwrap(), "cdcd");
    });
    assert_eq!(
        ECHO_RUNS.load(Ordering::SeqCst) - echo_before,
        2,
        "the repeated input came from the cache"
    );

    // Without the attribute, every call runs: the input cannot be hashed.
    execution_options!(enable_caching = true => {
        PlainEcho.call(request("ab")).unwrap();
        PlainEcho.call(request("ab")).unwrap();
    });
    assert_eq!(PLAIN_ECHO_RUNS.load(Ordering::SeqCst) - plain_before, 2);
}

#[cfg(feature = "persist")]
#[test]
fn a_struct_input_persists() {
    let _serial = serial();
    let dir = fresh_dir("sync");
    let before = ECHO_RUNS.load(Ordering::SeqCst);
    let call = || {
        execution_options!(enable_caching = true, cache_dir = dir.as_path() => {
            Echo.call(request("persisted"))
        })
    };
    xcs::clear_cache();
    assert_eq!(call().unwrap(), "persistedpersisted");
    // A fresh process: the memory cache is empty, the directory is not.
    xcs::clear_cache();
    let hits = xcs::cache_stats().persistent_hits;
    assert_eq!(call().unwrap(), "persistedpersisted");
    assert_eq!(xcs::cache_stats().persistent_hits, hits + 1);
    assert_eq!(
        ECHO_RUNS.load(Ordering::SeqCst),
        before + 1,
        "the body ran once"
    );
    // The version given to the attribute is the operator's.
    assert_eq!(Echo.persist_support().map(|s| s.version_number()), Some(2));
    assert!(PlainEcho.persist_support().is_none());
    let _ = xcs::clear_cache_dir(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An operator that borrows nothing from its caller but holds a client-like field: generic over
/// it, to show generic blocks work too.
struct Tagged<T> {
    tag: T,
}

#[xcs::operator]
impl<T: std::fmt::Display + Send + Sync + 'static> Operator for Tagged<T> {
    type Input = ChatRequest;
    type Output = String;

    fn forward(&self, input: ChatRequest) -> Result<String, XcsError> {
        Ok(format!("{}: {}", self.tag, input.prompt))
    }

    fn name(&self) -> &str {
        "tagged"
    }
}

#[test]
fn a_generic_block_gets_the_same() {
    let op = Tagged { tag: 7u8 };
    assert_eq!(op.call(request("x")).unwrap(), "7: x");
    assert!(op.persist_support().is_some());
}

#[cfg(feature = "tokio")]
mod async_operator {
    use super::*;

    static RUNS: AtomicU32 = AtomicU32::new(0);
    static PLAIN_RUNS: AtomicU32 = AtomicU32::new(0);

    /// A model call over HTTP, say: fails twice with a 429, then answers.
    struct Model;

    #[xcs::operator]
    impl AsyncOperator for Model {
        type Input = ChatRequest;
        type Output = String;

        async fn forward(&self, input: ChatRequest) -> Result<String, XcsError> {
            tokio::task::yield_now().await;
            if RUNS.fetch_add(1, Ordering::SeqCst) < 2 {
                return Err(XcsError::operator("model", io::Error::other("429")));
            }
            Ok(format!("model says {}", input.prompt))
        }

        fn name(&self) -> &str {
            "model"
        }
    }

    struct PlainModel;

    impl AsyncOperator for PlainModel {
        type Input = ChatRequest;
        type Output = String;

        async fn forward(&self, input: ChatRequest) -> Result<String, XcsError> {
            tokio::task::yield_now().await;
            PLAIN_RUNS.fetch_add(1, Ordering::SeqCst);
            Err(XcsError::operator(
                "plain_model",
                io::Error::other(format!("429 for {}", input.prompt)),
            ))
        }

        fn name(&self) -> &str {
            "plain_model"
        }
    }

    #[test]
    fn retried_cached_and_persisted() {
        // Held by this thread around the runtime, not across an `.await`.
        let _serial = serial();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run());
    }

    async fn run() {
        let dir = fresh_dir("async");
        xcs::clear_cache();
        let call = |prompt: &'static str| {
            execution_options!(
                max_retries = 3,
                enable_caching = true,
                cache_dir = dir.as_path()
                => async move { Model.call(request(prompt)).await }
            )
        };
        assert_eq!(call("hi").await.unwrap(), "model says hi");
        assert_eq!(RUNS.load(Ordering::SeqCst), 3, "retried twice");
        assert_eq!(call("hi").await.unwrap(), "model says hi");
        assert_eq!(RUNS.load(Ordering::SeqCst), 3, "answered from memory");
        xcs::clear_cache();
        let hits = xcs::cache_stats().persistent_hits;
        assert_eq!(call("hi").await.unwrap(), "model says hi");
        assert_eq!(RUNS.load(Ordering::SeqCst), 3, "answered from disk");
        if cfg!(feature = "persist") {
            assert_eq!(xcs::cache_stats().persistent_hits, hits + 1);
        }

        // Without the attribute: one attempt, no retry.
        let plain = execution_options!(max_retries = 3 => async {
            PlainModel.call(request("hi")).await
        })
        .await;
        assert!(plain.is_err());
        assert_eq!(PLAIN_RUNS.load(Ordering::SeqCst), 1);
        let _ = xcs::clear_cache_dir(&dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The same operator before and after a prompt edit: same name, types and version, so only the
/// fingerprint of its code tells their persistent entries apart.
mod prompt_v1 {
    use xcs::prelude::*;

    pub struct Ask;

    #[xcs::operator(version = 1)]
    impl Operator for Ask {
        type Input = String;
        type Output = String;

        fn forward(&self, question: String) -> Result<String, XcsError> {
            Ok(format!("Answer briefly: {question}"))
        }

        fn name(&self) -> &str {
            "ask"
        }
    }

    #[xcs::operator(version = 1)]
    pub fn summarize(text: String) -> String {
        format!("Summarize: {text}")
    }
}

mod prompt_v2 {
    use xcs::prelude::*;

    pub struct Ask;

    #[xcs::operator(version = 1)]
    impl Operator for Ask {
        type Input = String;
        type Output = String;

        fn forward(&self, question: String) -> Result<String, XcsError> {
            Ok(format!("Answer in detail: {question}"))
        }

        fn name(&self) -> &str {
            "ask"
        }
    }

    #[xcs::operator(version = 1)]
    pub fn summarize(text: String) -> String {
        format!("Summarize in one line: {text}")
    }
}

/// `prompt_v1` reformatted, with comments: the same code.
mod prompt_v1_reformatted {
    /// Summarizes.
    #[xcs::operator(version = 1)]
    pub fn summarize(text: String, // what to summarize
    ) -> String {
        // The prompt.
        format!("Summarize: {text}",)
    }
}

#[cfg(feature = "persist")]
#[test]
fn editing_the_body_makes_earlier_entries_misses() {
    let _serial = serial();
    let dir = fresh_dir("fingerprint");
    let ask = |v2: bool| {
        execution_options!(enable_caching = true, cache_dir = dir.as_path() => {
            if v2 {
                prompt_v2::Ask.call("why?".to_owned())
            } else {
                prompt_v1::Ask.call("why?".to_owned())
            }
        })
    };
    xcs::clear_cache();
    assert_eq!(ask(false).unwrap(), "Answer briefly: why?");
    xcs::clear_cache();
    // The edited prompt is not answered with the old body's entry.
    assert_eq!(ask(true).unwrap(), "Answer in detail: why?");
    xcs::clear_cache();
    // The old body still finds its own.
    let hits = xcs::cache_stats().persistent_hits;
    assert_eq!(ask(false).unwrap(), "Answer briefly: why?");
    assert_eq!(xcs::cache_stats().persistent_hits, hits + 1);
    let _ = xcs::clear_cache_dir(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn generated_operators_fingerprint_their_body() {
    let of = |support: Option<String>| support.expect("serde types persist");
    let v1 = of(prompt_v1::Summarize
        .persist_support()
        .map(|s| format!("{s:?}")));
    let v2 = of(prompt_v2::Summarize
        .persist_support()
        .map(|s| format!("{s:?}")));
    let reformatted = of(prompt_v1_reformatted::Summarize
        .persist_support()
        .map(|s| format!("{s:?}")));
    assert!(v1.contains("fingerprint"), "{v1}");
    assert_ne!(v1, v2, "a changed literal in the body changes the key");
    assert_eq!(v1, reformatted, "formatting and comments do not");
    // On impl blocks too.
    let ask_v1 = of(prompt_v1::Ask.persist_support().map(|s| format!("{s:?}")));
    let ask_v2 = of(prompt_v2::Ask.persist_support().map(|s| format!("{s:?}")));
    assert_ne!(ask_v1, ask_v2);
}
