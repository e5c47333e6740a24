//! How answers that are not a reply become [`XcsError`]s: the status classes, the waits a 429
//! asks for (from whichever header the server sends), and what a bad body shows. Pure
//! functions of the status, the headers and the body, so that they are tested without a server.

use std::fmt;
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::types::WireError;
use crate::XcsError;

/// The most bytes of a body an error shows.
pub(crate) const SHOWN_BYTES: usize = 200;

/// Why a chat completion failed: the source of the [`XcsError`] that
/// [`Chat`](super::Chat) returns (reach it with `std::error::Error::source` or
/// `XcsError::Operator { source, .. }` and `downcast_ref::<ChatError>()`).
///
/// A 429 is [`XcsError::rate_limited`] (test it with `is_rate_limited()`, read its wait
/// with `retry_hint()`); every other failure carries one of these.
#[derive(Debug)]
#[non_exhaustive]
pub enum ChatError {
    /// The server answered with an error status.
    Status {
        /// The HTTP status code.
        status: u16,
        /// The provider's message (`error.message` of its JSON body), else the start of the
        /// body.
        message: String,
        /// The wait the server asked for, if it sent one.
        retry_after: Option<Duration>,
    },
    /// The request could not be sent, or its answer not read: a refused or reset connection, a
    /// transport timeout.
    Transport(String),
    /// The server answered 2xx with a body that is not a chat completion.
    BadBody {
        /// Why it is not one.
        reason: String,
        /// The body's first bytes (at most 200), lossily as UTF-8.
        start: String,
    },
    /// The answer's body was larger than the client reads.
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The client is not configured for this request (a base URL it cannot use, an HTTPS URL
    /// in a build without TLS).
    Config(String),
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatError::Status {
                status,
                message,
                retry_after,
            } => {
                write!(f, "HTTP {status}")?;
                if let Some(reason) = StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                {
                    write!(f, " {reason}")?;
                }
                if let Some(wait) = retry_after {
                    write!(f, " (retry after {:.3} s)", wait.as_secs_f64())?;
                }
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            ChatError::Transport(message) => write!(f, "request failed: {message}"),
            ChatError::BadBody { reason, start } => {
                write!(
                    f,
                    "the answer is not a chat completion ({reason}); it starts {start:?}"
                )
            }
            ChatError::TooLarge { limit } => {
                write!(f, "the answer is larger than {limit} bytes")
            }
            ChatError::Config(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ChatError {}

/// The first [`SHOWN_BYTES`] bytes of `body`, lossily as text.
pub(crate) fn start_of(body: &[u8]) -> String {
    let end = body.len().min(SHOWN_BYTES);
    let mut text = String::from_utf8_lossy(&body[..end]).into_owned();
    if body.len() > end {
        text.push('…');
    }
    text
}

/// The error of an answer with a status other than 2xx.
///
/// - 429: [`XcsError::rate_limited`] with [`rate_limit_wait`] (the default wait when the
///   headers name none);
/// - 408, 409, 5xx: retryable, waiting at least a `Retry-After` when there is one;
/// - any other status (4xx; a 1xx or 3xx that reqwest did not follow): permanent.
pub(crate) fn status_error(
    operator: &str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> XcsError {
    if status == 429 {
        return XcsError::rate_limited(operator, rate_limit_wait(headers, now));
    }
    let retry_after = explicit_wait(headers, now);
    let error = ChatError::Status {
        status,
        message: WireError::message(body).unwrap_or_else(|| start_of(body).trim().to_owned()),
        retry_after,
    };
    let retryable = matches!(status, 408 | 409) || status >= 500;
    match (retryable, retry_after) {
        (true, Some(wait)) => XcsError::retry_after(operator, wait, error),
        (true, None) => XcsError::operator(operator, error),
        (false, _) => XcsError::permanent(operator, error),
    }
}

/// The error of a request that got no answer. Connection failures and transport timeouts are
/// retryable; a request that could not even be built (a malformed URL), or that redirects
/// without end, is permanent.
pub(crate) fn transport_error(operator: &str, error: &reqwest::Error) -> XcsError {
    let mut message = error.to_string();
    // reqwest's message leaves out its causes (refused, reset, …): add them.
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        cause = inner.source();
    }
    if error.is_builder() || error.is_redirect() {
        XcsError::permanent(operator, ChatError::Config(message))
    } else {
        XcsError::operator(operator, ChatError::Transport(message))
    }
}

/// What a 429 asks callers to wait: the server's explicit wait (`retry-after-ms`, which is
/// precise, else `Retry-After`), else the reset of the limit that ran out
/// (`x-ratelimit-reset-requests`, `x-ratelimit-reset-tokens`: the one whose
/// `x-ratelimit-remaining-*` is 0, or the larger when the headers do not say which). `None`: no
/// header says.
pub(crate) fn rate_limit_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(wait) = explicit_wait(headers, now) {
        return Some(wait);
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let exhausted = |kind: &str| {
        header(&format!("x-ratelimit-remaining-{kind}"))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|remaining| remaining <= 0.0)
    };
    let reset =
        |kind: &str| header(&format!("x-ratelimit-reset-{kind}")).and_then(parse_openai_duration);
    let (requests, tokens) = (reset("requests"), reset("tokens"));
    match (exhausted("requests"), exhausted("tokens")) {
        (Some(true), Some(false)) => requests.or(tokens),
        (Some(false), Some(true)) => tokens.or(requests),
        _ => requests.max(tokens),
    }
}

/// The server's explicit wait: `retry-after-ms` (the precise one, as the OpenAI SDKs read it
/// first), else `Retry-After`; `None` if neither is there and readable.
fn explicit_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let millis = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after_ms);
    millis.or_else(|| {
        headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now))
    })
}

/// The longest wait any header is trusted for: a server asking for more is capped to this
/// (a call's deadline bounds it anyway).
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

fn seconds(value: f64) -> Option<Duration> {
    (value.is_finite() && value >= 0.0)
        .then(|| Duration::from_secs_f64(value.min(MAX_WAIT.as_secs_f64())))
}

/// A `Retry-After` value: delta-seconds (`"2"`; a fraction such as `"1.5"` is accepted too) or
/// an HTTP date (`"Wed, 21 Oct 2015 07:28:00 GMT"`; a date in the past is no wait).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return seconds(secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default().min(MAX_WAIT))
}

/// A `retry-after-ms` value: milliseconds, possibly fractional.
pub fn parse_retry_after_ms(value: &str) -> Option<Duration> {
    seconds(value.trim().parse::<f64>().ok()? / 1000.0)
}

/// A duration as OpenAI's `x-ratelimit-reset-*` headers write it: numbers with units, in the
/// form Go prints durations (`"1s"`, `"6m0s"`, `"20ms"`, `"1h2m3.5s"`, `"0.5s"`; also `us`,
/// `µs` and `ns`). A bare number is seconds.
///
/// ```
/// use std::time::Duration;
/// use xcs::openai::parse_openai_duration;
/// assert_eq!(parse_openai_duration("6m0s"), Some(Duration::from_secs(360)));
/// assert_eq!(parse_openai_duration("20ms"), Some(Duration::from_millis(20)));
/// assert_eq!(parse_openai_duration("soon"), None);
/// ```
pub fn parse_openai_duration(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if let Ok(secs) = value.parse::<f64>() {
        return seconds(secs);
    }
    let mut total = 0.0f64;
    let mut rest = value;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_end == 0 {
            return None;
        }
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" | "μs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    seconds(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn chat_error(error: &XcsError) -> &ChatError {
        match error {
            XcsError::Operator { source, .. } => {
                let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
                while let Some(inner) = cause {
                    if let Some(chat) = inner.downcast_ref::<ChatError>() {
                        return chat;
                    }
                    cause = inner.source();
                }
                panic!("no ChatError in {error:?}")
            }
            other => panic!("not an operator error: {other:?}"),
        }
    }

    const NOW: Duration = Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + NOW
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("2", now()), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 1.5 ", now()),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now()),
            Some(Duration::from_secs(30))
        );
        // A date already past: no wait.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-3", now()), None);
        assert_eq!(parse_retry_after("later", now()), None);
        assert_eq!(parse_retry_after("1e400", now()), None);
        assert_eq!(parse_retry_after("99999999999", now()), Some(MAX_WAIT));
    }

    #[test]
    fn retry_after_ms_is_milliseconds() {
        assert_eq!(
            parse_retry_after_ms("250"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse_retry_after_ms("0.5"),
            Some(Duration::from_micros(500))
        );
        assert_eq!(parse_retry_after_ms("NaN"), None);
        assert_eq!(parse_retry_after_ms(""), None);
    }

    #[test]
    fn openai_durations_parse_in_go_form() {
        let d = parse_openai_duration;
        assert_eq!(d("1s"), Some(Duration::from_secs(1)));
        assert_eq!(d("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(d("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(d("1h2m3.5s"), Some(Duration::from_millis(3_723_500)));
        assert_eq!(d("0.5s"), Some(Duration::from_millis(500)));
        assert_eq!(d("150us"), Some(Duration::from_micros(150)));
        assert_eq!(d("7"), Some(Duration::from_secs(7)));
        for bad in ["", "s", "5x", "1.2.3s", "m5", "-1s", "1s2"] {
            assert_eq!(d(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_429_waits_for_what_its_headers_ask() {
        let wait = |pairs: &[(&str, &str)]| rate_limit_wait(&headers(pairs), now());
        assert_eq!(wait(&[("retry-after", "3")]), Some(Duration::from_secs(3)));
        assert_eq!(
            wait(&[("retry-after-ms", "1500")]),
            Some(Duration::from_millis(1500))
        );
        // Both explicit forms: the precise one (a server rounds `Retry-After` up to seconds).
        assert_eq!(
            wait(&[("retry-after", "1"), ("retry-after-ms", "20")]),
            Some(Duration::from_millis(20))
        );
        assert_eq!(
            wait(&[("retry-after", "2"), ("retry-after-ms", "junk")]),
            Some(Duration::from_secs(2))
        );
        // The explicit wait wins over the resets.
        assert_eq!(
            wait(&[("retry-after", "1"), ("x-ratelimit-reset-tokens", "6m0s")]),
            Some(Duration::from_secs(1))
        );
        // The limit that ran out.
        assert_eq!(
            wait(&[
                ("x-ratelimit-reset-requests", "20ms"),
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-tokens", "6s"),
                ("x-ratelimit-remaining-tokens", "1200"),
            ]),
            Some(Duration::from_millis(20))
        );
        assert_eq!(
            wait(&[
                ("x-ratelimit-reset-requests", "20ms"),
                ("x-ratelimit-remaining-requests", "10"),
                ("x-ratelimit-reset-tokens", "6s"),
                ("x-ratelimit-remaining-tokens", "0"),
            ]),
            Some(Duration::from_secs(6))
        );
        // Neither says which: the larger.
        assert_eq!(
            wait(&[
                ("x-ratelimit-reset-requests", "1s"),
                ("x-ratelimit-reset-tokens", "2.5s"),
            ]),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(wait(&[("x-ratelimit-reset-tokens", "bogus")]), None);
        assert_eq!(wait(&[]), None);
    }

    #[test]
    fn statuses_are_classified() {
        let empty = HeaderMap::new();
        let limited = status_error("chat", 429, &headers(&[("retry-after", "2")]), b"", now());
        assert!(limited.is_rate_limited());
        assert_eq!(limited.retry_hint(), Some(Duration::from_secs(2)));
        let limited = status_error("chat", 429, &empty, b"", now());
        assert!(limited.is_rate_limited() && limited.is_retryable());

        for status in [408, 409, 500, 502, 503, 504] {
            let error = status_error("chat", status, &empty, b"oops", now());
            assert!(error.is_retryable(), "{status}");
            assert!(!error.is_rate_limited());
            assert_eq!(error.retry_hint(), None);
        }
        let busy = status_error("chat", 503, &headers(&[("retry-after", "4")]), b"", now());
        assert!(busy.is_retryable() && !busy.is_rate_limited());
        assert_eq!(busy.retry_hint(), Some(Duration::from_secs(4)));

        let body = br#"{"error":{"message":"Invalid model 'x'","type":"invalid_request_error"}}"#;
        for status in [400, 401, 403, 404, 422, 304] {
            let error = status_error("chat", status, &empty, body, now());
            assert!(!error.is_retryable(), "{status}");
            match chat_error(&error) {
                ChatError::Status {
                    status: s, message, ..
                } => {
                    assert_eq!(*s, status);
                    assert_eq!(message, "Invalid model 'x'");
                }
                other => panic!("{other:?}"),
            }
            assert!(error.to_string().contains("Invalid model 'x'"), "{error}");
        }
        // Not JSON: the start of the text.
        let error = status_error("chat", 400, &empty, b"  plain words  ", now());
        match chat_error(&error) {
            ChatError::Status { message, .. } => assert_eq!(message, "plain words"),
            other => panic!("{other:?}"),
        }
        let long = vec![b'x'; 5000];
        let error = status_error("chat", 404, &empty, &long, now());
        match chat_error(&error) {
            ChatError::Status { message, .. } => {
                assert!(message.len() <= SHOWN_BYTES + '…'.len_utf8())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_start_of_a_body_is_bounded_and_lossy() {
        assert_eq!(start_of(b"abc"), "abc");
        let shown = start_of(&[b'a'; 1000]);
        assert_eq!(shown.chars().count(), SHOWN_BYTES + 1);
        assert!(shown.ends_with('…'));
        assert_eq!(start_of(&[0xff, b'a']), "\u{fffd}a");
    }
}
