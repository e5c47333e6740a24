//! `#[xcs::operator(resource = "…", estimate = path)]`: what the generated operators (sync and
//! async, from a function or on a hand-written impl block) say their resource is and what they
//! estimate a call to use.

use xcs::{Operator, Usage, XcsError};

/// A token a word, and a tenth of a cent a token.
fn guess(input: &SummarizeInputs) -> Usage {
    let words = input.text.split_whitespace().count() as u64;
    Usage {
        input_tokens: words,
        output_tokens: input.max_words,
        cost: 0.001 * (words + input.max_words) as f64,
    }
}

#[xcs::operator(resource = "openai", estimate = guess)]
fn summarize(text: String, max_words: u64) -> String {
    text.split_whitespace()
        .take(max_words as usize)
        .collect::<Vec<_>>()
        .join(" ")
}

#[xcs::operator(resource = "local-llm")]
fn echo(text: String) -> String {
    text
}

#[xcs::operator]
fn plain(x: u32) -> u32 {
    x
}

mod estimates {
    use xcs::Usage;

    /// Reached by a path with several segments.
    pub fn of_prompt(input: &super::AskInputs) -> Usage {
        Usage {
            input_tokens: input.prompt.len() as u64,
            ..Usage::default()
        }
    }
}

#[xcs::operator(estimate = estimates::of_prompt)]
fn ask(prompt: String) -> Result<String, XcsError> {
    Ok(prompt)
}

#[test]
fn sync_operators_say_their_resource_and_estimate() {
    let input = SummarizeInputs::new("one two three".to_owned(), 2);
    assert_eq!(Summarize.resource(), Some("openai"));
    assert_eq!(
        Summarize.estimate(&input),
        Usage {
            input_tokens: 3,
            output_tokens: 2,
            cost: 0.005
        }
    );
    // The operator still runs as before.
    assert_eq!(Summarize.call(input).unwrap(), "one two");

    // A resource without an estimate: zero.
    assert_eq!(Echo.resource(), Some("local-llm"));
    assert_eq!(Echo.estimate(&EchoInputs::new("x".into())), Usage::ZERO);
    // An estimate without a resource.
    assert_eq!(Ask.resource(), None);
    assert_eq!(Ask.estimate(&AskInputs::new("four".into())).input_tokens, 4);
    // Neither: the traits' defaults.
    assert_eq!(Plain.resource(), None);
    assert_eq!(Plain.estimate(&PlainInputs::new(1)), Usage::ZERO);
    // Through the `Operator` impls of `Arc` and `&'static`.
    let shared = std::sync::Arc::new(Summarize);
    assert_eq!(shared.resource(), Some("openai"));
    static STATIC: Summarize = Summarize;
    let by_ref: &'static Summarize = &STATIC;
    assert_eq!(Operator::resource(&by_ref), Some("openai"));
}

#[derive(Clone, Debug, PartialEq)]
struct Request {
    prompt: String,
}

fn request_estimate(request: &Request) -> Usage {
    Usage {
        input_tokens: request.prompt.len() as u64,
        output_tokens: 16,
        cost: 0.0,
    }
}

struct Chat;

#[xcs::operator(resource = "openai", estimate = request_estimate)]
impl Operator for Chat {
    type Input = Request;
    type Output = String;
    fn forward(&self, request: Request) -> Result<String, XcsError> {
        Ok(request.prompt)
    }
    fn name(&self) -> &str {
        "chat"
    }
}

struct OwnResource;

/// The block writes `resource` itself; the attribute adds only the estimate.
#[xcs::operator(estimate = request_estimate)]
impl Operator for OwnResource {
    type Input = Request;
    type Output = String;
    fn forward(&self, request: Request) -> Result<String, XcsError> {
        Ok(request.prompt)
    }
    fn name(&self) -> &str {
        "own_resource"
    }
    fn resource(&self) -> Option<&str> {
        Some("by-hand")
    }
}

#[test]
fn impl_blocks_get_them_too() {
    let request = Request {
        prompt: "hello".into(),
    };
    assert_eq!(Chat.resource(), Some("openai"));
    assert_eq!(Chat.estimate(&request).tokens(), 5 + 16);
    assert_eq!(Chat.call(request.clone()).unwrap(), "hello");
    assert_eq!(OwnResource.resource(), Some("by-hand"));
    assert_eq!(OwnResource.estimate(&request).output_tokens, 16);
}

#[cfg(feature = "tokio")]
mod async_operators {
    use xcs::{AsyncOperator, Usage, XcsError};

    fn fetch_estimate(input: &FetchInputs) -> Usage {
        Usage {
            input_tokens: input.url.len() as u64,
            output_tokens: 0,
            cost: 0.25,
        }
    }

    #[xcs::operator(resource = "http", estimate = fetch_estimate)]
    async fn fetch(url: String) -> Result<usize, XcsError> {
        tokio::task::yield_now().await;
        Ok(url.len())
    }

    #[xcs::operator]
    async fn idle(n: u8) -> u8 {
        n
    }

    struct Stream;

    // The signature is the trait's: `fn(&Self::Input) -> Usage`, and the input is a `String`.
    #[allow(clippy::ptr_arg)]
    fn stream_estimate(prompt: &String) -> Usage {
        Usage {
            output_tokens: prompt.len() as u64,
            ..Usage::default()
        }
    }

    #[xcs::operator(resource = "openai", estimate = stream_estimate)]
    impl AsyncOperator for Stream {
        type Input = String;
        type Output = String;
        async fn forward(&self, prompt: String) -> Result<String, XcsError> {
            Ok(prompt)
        }
        fn name(&self) -> &str {
            "stream"
        }
    }

    #[test]
    fn async_operators_say_their_resource_and_estimate() {
        let input = FetchInputs::new("https://x".into());
        assert_eq!(AsyncOperator::resource(&Fetch), Some("http"));
        assert_eq!(
            AsyncOperator::estimate(&Fetch, &input),
            Usage {
                input_tokens: 9,
                output_tokens: 0,
                cost: 0.25
            }
        );
        assert_eq!(AsyncOperator::resource(&Idle), None);
        assert_eq!(
            AsyncOperator::estimate(&Idle, &IdleInputs::new(1)),
            Usage::ZERO
        );
        assert_eq!(AsyncOperator::resource(&Stream), Some("openai"));
        assert_eq!(
            AsyncOperator::estimate(&Stream, &"abc".to_owned()).output_tokens,
            3
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(runtime.block_on(Fetch.call(input)).unwrap(), 9);
    }
}
