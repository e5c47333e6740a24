//! The request and reply of [`Chat`](super::Chat): plain serde types that are cache keys and
//! cached values, and the JSON shapes they are sent and read as.
//!
//! Written here rather than taken from a client crate: a cache key must be `Hash + Eq` with its
//! floats compared by value, which generated OpenAI types are not; and the wire shapes read
//! only what every compatible server sends, so a server's extra or missing fields do not fail a
//! reply.

use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use crate::Usage;

/// One message of a conversation.
///
/// ```
/// use xcs::openai::Message;
/// let m = Message::user("What is the capital of France?");
/// assert_eq!(m.role, "user");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant` (or any role the server knows, such as `developer`).
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A message with this role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Message {
        Message::new("system", content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Message {
        Message::new("user", content)
    }

    /// An `assistant` message (an earlier reply, for a multi-turn conversation).
    pub fn assistant(content: impl Into<String>) -> Message {
        Message::new("assistant", content)
    }
}

/// A chat-completions request: the input of [`Chat`](super::Chat), and its cache key — every
/// field counts, so two requests that differ only in `temperature` are two cache entries.
///
/// Build one with [`ChatRequest::new`] and the builder methods, or with a struct literal
/// (`..ChatRequest::default()`). Fields left `None` (or an empty `stop`) are not sent, so the
/// server's defaults apply. The floating-point fields compare and hash by value, with `-0.0`
/// equal to `0.0` (a NaN equals itself here, so any request can be a key).
///
/// ```
/// use xcs::openai::{ChatRequest, Message};
/// let request = ChatRequest::new([Message::user("Say hi")])
///     .model("gpt-4o-mini")
///     .max_tokens(20)
///     .temperature(0.0);
/// assert_eq!(request.max_tokens, Some(20));
/// assert_ne!(request, request.clone().temperature(0.7));
/// ```
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The model; empty: the [`Chat`](super::Chat)'s default model.
    #[serde(default)]
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// The most tokens the reply may have (`max_tokens` on the wire).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Sampling temperature (0 to 2).
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling: the probability mass the tokens are drawn from (0 to 1).
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Sequences where the reply stops (up to 4 for OpenAI).
    #[serde(default)]
    pub stop: Vec<String>,
    /// A seed, for servers that sample reproducibly with one.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Penalizes tokens by how often they already appeared (-2 to 2).
    #[serde(default)]
    pub frequency_penalty: Option<f32>,
    /// Penalizes tokens that already appeared (-2 to 2).
    #[serde(default)]
    pub presence_penalty: Option<f32>,
    /// `Some(true)`: ask for a JSON object (`response_format: {"type": "json_object"}`).
    #[serde(default)]
    pub json_mode: Option<bool>,
}

impl ChatRequest {
    /// A request for these messages, every other field unset.
    pub fn new(messages: impl IntoIterator<Item = Message>) -> ChatRequest {
        ChatRequest {
            messages: messages.into_iter().collect(),
            ..ChatRequest::default()
        }
    }

    /// A request of one `user` message.
    ///
    /// ```
    /// let r = xcs::openai::ChatRequest::user("hi");
    /// assert_eq!(r.messages[0].role, "user");
    /// ```
    pub fn user(prompt: impl Into<String>) -> ChatRequest {
        ChatRequest::new([Message::user(prompt)])
    }

    /// The same request for `model`.
    #[must_use]
    pub fn model(mut self, model: impl Into<String>) -> ChatRequest {
        self.model = model.into();
        self
    }

    /// The same request with a token limit for the reply.
    #[must_use]
    pub fn max_tokens(mut self, max_tokens: u32) -> ChatRequest {
        self.max_tokens = Some(max_tokens);
        self
    }

    /// The same request with a sampling temperature.
    #[must_use]
    pub fn temperature(mut self, temperature: f32) -> ChatRequest {
        self.temperature = Some(temperature);
        self
    }

    /// The same request with a seed.
    #[must_use]
    pub fn seed(mut self, seed: i64) -> ChatRequest {
        self.seed = Some(seed);
        self
    }

    /// The number of characters of every message's content: what the token estimate is made
    /// of (about four characters a token).
    pub fn prompt_chars(&self) -> u64 {
        self.messages
            .iter()
            .map(|m| m.content.chars().count() as u64)
            .sum()
    }

    /// The request as sent: `model` filled in with `default_model` when empty.
    pub(crate) fn wire<'a>(&'a self, default_model: &'a str) -> WireRequest<'a> {
        WireRequest {
            model: if self.model.is_empty() {
                default_model
            } else {
                &self.model
            },
            messages: &self.messages,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            stop: &self.stop,
            seed: self.seed,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            response_format: self.json_mode.filter(|on| *on).map(|_| ResponseFormat {
                kind: "json_object",
            }),
        }
    }

    /// Every field, floats as canonical bits: what `Eq` and `Hash` compare.
    #[allow(clippy::type_complexity)]
    fn key(
        &self,
    ) -> (
        (&str, &[Message], Option<u32>, Option<u32>, Option<u32>),
        (
            &[String],
            Option<i64>,
            Option<u32>,
            Option<u32>,
            Option<bool>,
        ),
    ) {
        (
            (
                &self.model,
                &self.messages,
                self.max_tokens,
                self.temperature.map(float_bits),
                self.top_p.map(float_bits),
            ),
            (
                &self.stop,
                self.seed,
                self.frequency_penalty.map(float_bits),
                self.presence_penalty.map(float_bits),
                self.json_mode,
            ),
        )
    }
}

/// A float as bits, `-0.0` as `0.0` and every NaN as one NaN: equal values, equal bits.
fn float_bits(value: f32) -> u32 {
    if value == 0.0 {
        0
    } else if value.is_nan() {
        f32::NAN.to_bits()
    } else {
        value.to_bits()
    }
}

impl PartialEq for ChatRequest {
    fn eq(&self, other: &ChatRequest) -> bool {
        self.key() == other.key()
    }
}

impl Eq for ChatRequest {}

impl Hash for ChatRequest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

/// The reply of [`Chat`](super::Chat): the first choice's text, why it ended, and the usage the
/// server reported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatReply {
    /// The text of the first choice (empty when the server sent none, as with a tool call).
    pub text: String,
    /// Why the reply ended: `stop`, `length` (it hit `max_tokens`), `tool_calls`,
    /// `content_filter`… `None` when the server did not say.
    pub finish_reason: Option<String>,
    /// The model that answered, as the server names it (empty when it did not say).
    pub model: String,
    /// Tokens (and, with [`Chat::price`](super::Chat::price), cost) the server reported; `None`
    /// when the reply had no `usage`.
    #[serde(with = "option_usage")]
    pub usage: Option<Usage>,
}

/// `Option<Usage>` through serde (`Usage` itself has no serde impls).
mod option_usage {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::Usage;

    #[derive(Serialize, Deserialize)]
    struct Plain {
        input_tokens: u64,
        output_tokens: u64,
        cost: f64,
    }

    pub(super) fn serialize<S: Serializer>(
        usage: &Option<Usage>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        usage
            .map(|u| Plain {
                input_tokens: u.input_tokens,
                output_tokens: u.output_tokens,
                cost: u.cost,
            })
            .serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Usage>, D::Error> {
        Ok(Option::<Plain>::deserialize(deserializer)?.map(|p| Usage {
            input_tokens: p.input_tokens,
            output_tokens: p.output_tokens,
            cost: p.cost,
        }))
    }
}

/// The JSON body sent to `/chat/completions`.
#[derive(Serialize)]
pub(crate) struct WireRequest<'a> {
    model: &'a str,
    messages: &'a [Message],
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat>,
}

#[derive(Serialize)]
struct ResponseFormat {
    #[serde(rename = "type")]
    kind: &'static str,
}

/// The part of a chat-completions response that is read (other fields are ignored).
#[derive(Deserialize)]
pub(crate) struct WireResponse {
    #[serde(default)]
    pub(crate) model: Option<String>,
    pub(crate) choices: Vec<WireChoice>,
    #[serde(default)]
    pub(crate) usage: Option<WireUsage>,
}

#[derive(Deserialize)]
pub(crate) struct WireChoice {
    pub(crate) message: WireMessage,
    #[serde(default)]
    pub(crate) finish_reason: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct WireMessage {
    #[serde(default)]
    pub(crate) content: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub(crate) prompt_tokens: u64,
    #[serde(default)]
    pub(crate) completion_tokens: u64,
}

/// An error body: `{"error": {"message": "…"}}` (OpenAI and most compatible servers), or
/// `{"error": "…"}`, or `{"message": "…"}`.
#[derive(Deserialize)]
pub(crate) struct WireError {
    #[serde(default)]
    error: Option<WireErrorDetail>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireErrorDetail {
    Object {
        #[serde(default)]
        message: Option<String>,
    },
    Text(String),
}

impl WireError {
    /// The message the body carries, if it is an error body with one.
    pub(crate) fn message(body: &[u8]) -> Option<String> {
        let parsed: WireError = serde_json::from_slice(body).ok()?;
        let message = match parsed.error {
            Some(WireErrorDetail::Object { message }) => message,
            Some(WireErrorDetail::Text(text)) => Some(text),
            None => None,
        }
        .or(parsed.message)?;
        let message = message.trim();
        (!message.is_empty()).then(|| message.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn requests_that_differ_in_any_field_are_different_keys() {
        let base = ChatRequest::user("hi").model("m").max_tokens(5);
        let variants = [
            base.clone(),
            base.clone().temperature(0.0),
            base.clone().temperature(0.5),
            base.clone().model("other"),
            base.clone().max_tokens(6),
            base.clone().seed(1),
            ChatRequest {
                top_p: Some(0.9),
                ..base.clone()
            },
            ChatRequest {
                stop: vec!["\n".into()],
                ..base.clone()
            },
            ChatRequest {
                json_mode: Some(true),
                ..base.clone()
            },
            ChatRequest {
                messages: vec![Message::system("hi")],
                ..base.clone()
            },
        ];
        let set: HashSet<_> = variants.iter().cloned().collect();
        assert_eq!(set.len(), variants.len());
        assert!(set.contains(&base.clone().temperature(0.5)));
    }

    #[test]
    fn negative_zero_and_nan_are_keys_like_any_value() {
        let a = ChatRequest::user("x").temperature(0.0);
        let b = ChatRequest::user("x").temperature(-0.0);
        assert_eq!(a, b);
        let nan = ChatRequest::user("x").temperature(f32::NAN);
        assert_eq!(nan, nan.clone());
        let set: HashSet<_> = [a, b, nan.clone(), nan].into_iter().collect();
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn the_wire_form_leaves_unset_fields_out_and_fills_the_model() {
        let request = ChatRequest::user("hi").max_tokens(7);
        let json = serde_json::to_value(request.wire("dflt")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "model": "dflt",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 7
            })
        );
        let full = ChatRequest {
            stop: vec!["END".into()],
            json_mode: Some(true),
            seed: Some(3),
            ..ChatRequest::user("hi").model("m").temperature(0.5)
        };
        let json = serde_json::to_value(full.wire("dflt")).unwrap();
        assert_eq!(json["model"], "m");
        assert_eq!(json["stop"], serde_json::json!(["END"]));
        assert_eq!(json["seed"], 3);
        assert_eq!(json["temperature"], 0.5);
        assert_eq!(json["response_format"]["type"], "json_object");
    }

    #[test]
    fn error_messages_are_read_from_the_usual_shapes() {
        let message = |body: &str| WireError::message(body.as_bytes());
        assert_eq!(
            message(r#"{"error":{"message":"bad key","type":"invalid_request_error"}}"#),
            Some("bad key".into())
        );
        assert_eq!(
            message(r#"{"error":"model not found"}"#),
            Some("model not found".into())
        );
        assert_eq!(message(r#"{"message":"nope"}"#), Some("nope".into()));
        assert_eq!(message(r#"{"error":{"message":""}}"#), None);
        assert_eq!(message("<html>oops</html>"), None);
    }

    #[test]
    fn replies_round_trip_through_the_cache_codec() {
        let reply = ChatReply {
            text: "hello".into(),
            finish_reason: Some("stop".into()),
            model: "m".into(),
            usage: Some(Usage {
                input_tokens: 3,
                output_tokens: 1,
                cost: 0.5,
            }),
        };
        let bytes = crate::codec::encode(&reply).unwrap();
        let back: ChatReply = crate::codec::decode_owned(&bytes).unwrap();
        assert_eq!(back, reply);
        let none = ChatReply {
            usage: None,
            ..reply
        };
        let bytes = crate::codec::encode(&none).unwrap();
        assert_eq!(crate::codec::decode_owned::<ChatReply>(&bytes), Some(none));
    }
}
