//! The messages callers and workers exchange, and how they are read: postcard (the format the
//! persistent cache uses), one protocol version, and limits on everything a message can ask a
//! worker to allocate. A message that does not decode, or breaks a limit, is refused with a
//! reason; it never stops the process that received it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::device::Signature;
use crate::error::XcsError;
use crate::options::{DeviceStrategy, ExecutionOptions};
use crate::trace::{Outcome, TraceEvent};

/// The protocol version: a caller and a worker that speak different ones refuse each other's
/// messages with a clear reason.
/// Version 2: per-chunk nonces echoed in every reply, optional signatures, `Busy`.
/// Version 3: each item's recorded usage travels with its outcome; callers cancel chunks.
/// Version 4: a cancellation may name items of a chunk (a hedged item's losing trip).
pub(crate) const PROTOCOL: u32 = 4;

/// An unguessable per-chunk (and per-attempt, per-discovery) value: 128 random bits.
pub(crate) type Nonce = [u8; 16];

/// A fresh nonce from the operating system's random source (`None`: it failed).
pub(crate) fn nonce() -> Option<Nonce> {
    let mut nonce = [0u8; 16];
    getrandom::getrandom(&mut nonce).ok()?;
    Some(nonce)
}

/// The length of a signature (HMAC-SHA256) appended to a message under a cluster key.
pub(crate) const TAG: usize = 32;

/// What a signature covers besides the message: its kind and the subjects it travels on, so a
/// signed message cannot be replayed as another kind or towards another reply subject.
pub(crate) enum Context<'a> {
    /// A chunk, published to `subject` with replies to `reply`.
    Request { subject: &'a str, reply: &'a str },
    /// A worker's reply, published to `reply`.
    Reply { reply: &'a str },
    /// A discovery request, with answers to `reply`.
    Hello { reply: &'a str },
    /// A worker's answer to discovery, published to `reply`.
    HelloAnswer { reply: &'a str },
    /// A caller's cancellation of chunks it sent, published to `subject`.
    Cancel { subject: &'a str },
}

fn mac(key: &[u8], context: &Context<'_>, body: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    use hmac::Mac;
    let (kind, parts): (u8, [&str; 2]) = match context {
        Context::Request { subject, reply } => (1, [subject, reply]),
        Context::Reply { reply } => (2, ["", reply]),
        Context::Hello { reply } => (3, ["", reply]),
        Context::HelloAnswer { reply } => (4, ["", reply]),
        Context::Cancel { subject } => (5, [subject, ""]),
    };
    // HMAC takes keys of any length.
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(b"xcs-cluster/2\0");
    mac.update(&[kind]);
    for part in parts {
        mac.update(&(part.len() as u64).to_le_bytes());
        mac.update(part.as_bytes());
    }
    mac.update(body);
    mac
}

/// `body` as it is sent: followed by its signature when there is a `key`.
pub(crate) fn seal(key: Option<&[u8]>, context: &Context<'_>, mut body: Vec<u8>) -> Vec<u8> {
    use hmac::Mac;
    if let Some(key) = key {
        let tag = mac(key, context, &body).finalize().into_bytes();
        body.extend_from_slice(&tag);
    }
    body
}

/// The body of a message as received, if it is authentic: with a `key`, its signature must be
/// there and right (checked in constant time); without one, every message passes.
pub(crate) fn open<'a>(
    key: Option<&[u8]>,
    context: &Context<'_>,
    bytes: &'a [u8],
) -> Option<&'a [u8]> {
    use hmac::Mac;
    let Some(key) = key else {
        return Some(bytes);
    };
    let split = bytes.len().checked_sub(TAG)?;
    let (body, tag) = bytes.split_at(split);
    mac(key, context, body).verify_slice(tag).ok()?;
    Some(body)
}

/// The most items one chunk may carry.
pub(crate) const MAX_ITEMS: usize = 1 << 20;

/// The longest operator or type name a message may carry.
pub(crate) const MAX_NAME: usize = 4096;

/// How a worker is known to callers (its answer to the discovery subject).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct WorkerInfo {
    pub(crate) protocol: u32,
    /// Unique per worker process: host, process id and a random part.
    pub(crate) id: String,
    pub(crate) pid: u32,
    /// How many chunks it runs at once (its CPUs).
    pub(crate) slots: u32,
    pub(crate) operators: Vec<WireSignature>,
    /// Whether it takes only requests signed with a cluster key.
    pub(crate) keyed: bool,
}

/// A discovery request: answers must echo the nonce.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct Hello {
    pub(crate) protocol: u32,
    pub(crate) nonce: Nonce,
}

/// A worker's answer to a discovery request.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct HelloAnswer {
    pub(crate) nonce: Nonce,
    pub(crate) info: WorkerInfo,
}

/// [`Signature`] on the wire.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct WireSignature {
    pub(crate) operator: String,
    pub(crate) version: u32,
    pub(crate) input_type: String,
    pub(crate) output_type: String,
}

impl From<&Signature> for WireSignature {
    fn from(s: &Signature) -> Self {
        WireSignature {
            operator: s.operator.clone(),
            version: s.version,
            input_type: s.input_type.clone(),
            output_type: s.output_type.clone(),
        }
    }
}

impl std::fmt::Display for WireSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "v{} ({} -> {})",
            self.version, self.input_type, self.output_type
        )
    }
}

/// The caller's options that travel with a chunk.
///
/// The fields are the protocol: their order and types are what a worker decodes, so a change to
/// them is a new [`PROTOCOL`]. The options marked `wire: carry` in the list of options
/// (`options/list.rs`) are fields here under their own names and are copied both ways by
/// `carry_from`/`carry_into`, which `option_list!` writes; the ones marked `wire: own` (the
/// deadline, the rate limit and the worker count, which a chunk narrows) are written below by
/// hand; every other option stays on the worker, at the value its row gives.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct WireOptions {
    /// What is left of the caller's deadline when the chunk is sent.
    pub(crate) timeout: Option<Duration>,
    pub(crate) trace_execution: bool,
    pub(crate) max_retries: u32,
    /// The caller's rate limit, divided among the workers that serve the operator.
    pub(crate) rate_limit: Option<f64>,
    pub(crate) use_parallel: bool,
    pub(crate) max_workers: Option<u64>,
}

/// Writes `WireOptions::carry_from` and `carry_into` from the rows of the list of options.
macro_rules! wire_options {
    ($(
        $(#[$field_doc:meta])*
        $name:ident: $ty:ty = $default:expr => {
            kind: $kind:ident,
            default: $shown:literal,
            expected: $expected:literal,
            doc: $doc:literal,
            parse: $parse:path,
            $(#[$setter_doc:meta])*
            setter: $setter:ident $(checked_by $check:path)?,
            macro_setter: $macro_setter:ident,
            merge: $merge:ident,
            $(call_policy: $policy:expr,)?
            wire: $wire:ident $(($worker:expr))?,
        },
    )*) => {
        impl WireOptions {
            /// Sets the options that travel from the caller's `options`.
            fn carry_from(&mut self, options: &ExecutionOptions) {
                $(wire_row!(from $wire, self, options, $name);)*
            }

            /// Sets on a worker's `options` the options that travel, and the worker's own
            /// value of those that do not.
            fn carry_into(&self, options: &mut ExecutionOptions) {
                $(wire_row!(into $wire $(($worker))?, self, options, $name);)*
            }
        }
    };
}

/// One option's part in `carry_from` (`from`) or `carry_into` (`into`), by its `wire` rule.
macro_rules! wire_row {
    (from carry, $wire:ident, $options:ident, $name:ident) => {
        $wire.$name = $options.$name
    };
    (from $rule:ident $(($worker:expr))?, $wire:ident, $options:ident, $name:ident) => {};
    (into carry, $wire:ident, $options:ident, $name:ident) => {
        $options.$name = $wire.$name
    };
    (into worker($worker:expr), $wire:ident, $options:ident, $name:ident) => {
        $options.$name = $worker
    };
    (into own, $wire:ident, $options:ident, $name:ident) => {};
}

crate::options::option_list!(wire_options);

impl WireOptions {
    /// The options a chunk of a batch run under `options` carries, with `timeout` left, the
    /// rate limit shared by `workers` workers, and `per_chunk` items of it at once at most.
    pub(crate) fn from_caller(
        options: &ExecutionOptions,
        timeout: Option<Duration>,
        workers: usize,
        per_chunk: Option<usize>,
    ) -> Self {
        let mut wire = WireOptions {
            timeout,
            rate_limit: options.rate_limit.map(|r| r / workers.max(1) as f64),
            max_workers: per_chunk.map(|n| n as u64),
            ..WireOptions::default()
        };
        wire.carry_from(options);
        wire
    }

    /// The options a worker runs the chunk under: its own, with the caller's on top — but a
    /// request only narrows what the worker allows: its time is at most `max_time` (also when
    /// it carries no deadline), and its rate limit is returned apart, for the worker to apply
    /// through state private to this chunk (the options' own `rate_limit` is the process-wide,
    /// per-operator limiter other callers share, and is left unset). The worker never caches
    /// (the caller did), never shows progress, and runs on its CPUs.
    pub(crate) fn apply(
        &self,
        mut base: ExecutionOptions,
        max_time: Duration,
    ) -> Result<(ExecutionOptions, Option<f64>), String> {
        if let Some(rate) = self.rate_limit {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(format!("invalid rate limit {rate}"));
            }
        }
        self.carry_into(&mut base);
        base.timeout_seconds = Some(self.timeout.map_or(max_time, |t| t.min(max_time)));
        base.rate_limit = None;
        base.max_workers = self
            .max_workers
            .and_then(|n| usize::try_from(n.min(crate::options::MAX_WORKERS as u64)).ok())
            .and_then(std::num::NonZeroUsize::new);
        Ok((base, self.rate_limit))
    }
}

/// A chunk of a batch: consecutive or not, each item with its index in the caller's batch. Its
/// items' inputs are borrowed: from the caller's items when it is written, from the message when
/// it is read (no copy of each input either way).
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Request<'a> {
    pub(crate) protocol: u32,
    /// Echoed in every reply about this chunk: the caller drops replies without it.
    pub(crate) nonce: Nonce,
    /// Whether the caller signed the request (and so drops unsigned replies).
    pub(crate) signed: bool,
    pub(crate) signature: WireSignature,
    pub(crate) options: WireOptions,
    #[serde(borrow)]
    pub(crate) items: Vec<Item<'a>>,
}

/// One item of a chunk: what the caller knows it by and its serialized input.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Item<'a> {
    /// What the caller knows the item by: its index in the batch, or the number of its trip
    /// (a hedged item makes two); a cancellation of the item names it so.
    pub(crate) index: u64,
    #[serde(with = "serde_bytes", borrow)]
    pub(crate) input: &'a [u8],
}

/// The first fields of a [`Request`], read without the items.
#[derive(Deserialize, Debug)]
pub(crate) struct RequestHead {
    pub(crate) protocol: u32,
    pub(crate) nonce: Nonce,
    pub(crate) signed: bool,
}

/// A reply as sent: the chunk's nonce, then what it says.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct ReplyMessage {
    pub(crate) nonce: Nonce,
    pub(crate) reply: Reply,
}

/// What a worker sends back about a chunk, in order: `Accepted`, `Working` while it runs,
/// `Results` (one or more, each under the size limit) and `Finished`; or `Refused`, or `Busy`
/// (its queue is full: send the chunk again later or to another worker).
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Reply {
    Accepted {
        worker: String,
    },
    Working,
    Results(Vec<ItemResult>),
    Finished {
        /// The worker's trace clock when the chunk arrived (to put its events on the caller's).
        received_at: Duration,
        /// The worker's id of the (non-event) parent its events were recorded under.
        root: u64,
        trace: Vec<WireEvent>,
    },
    Refused {
        reason: String,
    },
    Busy {
        reason: String,
    },
}

/// One item's outcome.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct ItemResult {
    pub(crate) index: u64,
    pub(crate) result: Result<ByteBuf, WireError>,
    /// What the item's body recorded with `xcs::record_usage`, if anything.
    pub(crate) usage: Option<WireUsage>,
}

/// [`Usage`](crate::Usage) on the wire: fixed-size, and checked when read (a cost that is
/// negative or not finite counts as 0, as a body's own record would).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub(crate) struct WireUsage {
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) cost: f64,
}

impl WireUsage {
    pub(crate) fn from_usage(usage: crate::Usage) -> Self {
        WireUsage {
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cost: usage.cost,
        }
    }

    /// The usage it reports, sanitized.
    pub(crate) fn into_usage(self) -> crate::Usage {
        crate::Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cost: self.cost,
        }
        .sanitized()
    }
}

/// The most chunks and items one cancellation may name, together.
pub(crate) const MAX_CANCEL: usize = 4096;

/// A caller's cancellation of chunks it sent (published to `<prefix>.cancel`, which every
/// worker reads): each chunk is named by the nonce of its attempt, which only the caller and the
/// worker that took it know, so nobody else can cancel it. `items` stops single items of a
/// chunk (the chunk's nonce, and the item's index in it) while its other items go on.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Cancel {
    pub(crate) protocol: u32,
    pub(crate) nonces: Vec<Nonce>,
    pub(crate) items: Vec<(Nonce, u64)>,
}

impl Cancel {
    /// Reads a cancellation: of this protocol, naming at most [`MAX_CANCEL`] chunks and items.
    pub(crate) fn read(body: &[u8]) -> Result<Cancel, String> {
        let cancel = decode::<Cancel>(body)?;
        if cancel.protocol != PROTOCOL {
            return Err(format!(
                "a cancellation of protocol {} (this worker speaks {PROTOCOL})",
                cancel.protocol
            ));
        }
        let named = cancel.nonces.len().saturating_add(cancel.items.len());
        if named > MAX_CANCEL {
            return Err(format!(
                "a cancellation naming {named} chunks and items (at most {MAX_CANCEL})"
            ));
        }
        Ok(cancel)
    }
}

/// Bytes on the wire.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct ByteBuf(#[serde(with = "serde_bytes")] pub(crate) Vec<u8>);

/// An item's error on the wire.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) enum WireError {
    Operator { message: String },
    Panicked { message: String },
    Timeout { timeout: Duration },
    Cancelled,
    Cluster { reason: String },
}

impl WireError {
    /// How a worker reports `error`.
    pub(crate) fn from_error(error: &XcsError) -> WireError {
        match error {
            XcsError::Panicked { message, .. } => WireError::Panicked {
                message: message.clone(),
            },
            XcsError::Timeout { timeout, .. } => WireError::Timeout { timeout: *timeout },
            XcsError::Cancelled { .. } => WireError::Cancelled,
            XcsError::Cluster { reason, .. } => WireError::Cluster {
                reason: reason.clone(),
            },
            XcsError::Operator { source, .. } => WireError::Operator {
                message: source.to_string(),
            },
            other => WireError::Operator {
                message: other.to_string(),
            },
        }
    }

    /// The caller's error for item `index` of `operator`, which failed on `worker`.
    pub(crate) fn into_error(self, operator: &str, index: usize, worker: &str) -> XcsError {
        let operator = operator.to_owned();
        let index = Some(index);
        match self {
            WireError::Operator { message } => XcsError::Operator {
                operator,
                index,
                source: Box::new(RemoteFailure {
                    message,
                    worker: worker.to_owned(),
                }),
            },
            WireError::Panicked { message } => XcsError::Panicked {
                operator,
                index,
                message,
            },
            WireError::Timeout { timeout } => XcsError::Timeout {
                operator,
                index,
                timeout,
            },
            WireError::Cancelled => XcsError::Cancelled { operator, index },
            WireError::Cluster { reason } => XcsError::Cluster {
                operator,
                index,
                reason,
            },
        }
    }
}

/// The error an operator's body returned on a worker: its message, and the worker.
#[derive(Debug, Clone)]
pub struct RemoteFailure {
    message: String,
    worker: String,
}

impl RemoteFailure {
    /// The body's error message, as the worker displayed it.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The worker it ran on.
    pub fn worker(&self) -> &str {
        &self.worker
    }
}

impl std::fmt::Display for RemoteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (on worker {})", self.message, self.worker)
    }
}

impl std::error::Error for RemoteFailure {}

/// A trace event on the wire.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct WireEvent {
    id: u64,
    parent: Option<u64>,
    depth: u32,
    operator: String,
    index: Option<u64>,
    thread: String,
    thread_id: u64,
    start: Duration,
    duration: Duration,
    outcome: u8,
    attempt: u32,
}

impl WireEvent {
    pub(crate) fn from_event(e: &TraceEvent) -> Self {
        WireEvent {
            id: e.id,
            parent: e.parent,
            depth: u32::try_from(e.depth).unwrap_or(u32::MAX),
            operator: e.operator.clone(),
            index: e.index.map(|i| i as u64),
            thread: e.thread.clone(),
            thread_id: e.thread_id,
            start: e.start,
            duration: e.duration,
            outcome: Outcome::ALL
                .iter()
                .position(|o| *o == e.outcome)
                .unwrap_or(0) as u8,
            attempt: e.attempt,
        }
    }

    /// The event as recorded by the caller: on its clock (`shift` added to `start`), on a
    /// thread named after the worker.
    /// `usage`: what the item reported recording, for an item event.
    pub(crate) fn into_event(
        self,
        worker: &str,
        worker_number: u64,
        shift: i128,
        usage: Option<crate::Usage>,
    ) -> TraceEvent {
        let start = (self.start.as_nanos() as i128 + shift).max(0);
        TraceEvent {
            id: self.id,
            parent: self.parent,
            depth: self.depth as usize,
            operator: self.operator,
            index: self.index.and_then(|i| usize::try_from(i).ok()),
            thread: format!("{worker}/{}", self.thread),
            thread_id: (worker_number << 32) | (self.thread_id & 0xffff_ffff),
            start: Duration::from_nanos(u64::try_from(start).unwrap_or(u64::MAX)),
            duration: self.duration,
            outcome: Outcome::ALL
                .get(self.outcome as usize)
                .copied()
                .unwrap_or(Outcome::Error),
            attempt: self.attempt,
            usage,
            resource_wait: Duration::ZERO,
            answered_by: None,
            // Workers do not hedge: hedging is the caller's decision.
            hedge: None,
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    #[cfg(test)]
    pub(crate) fn for_test(id: u64, parent: Option<u64>, index: Option<u64>) -> Self {
        WireEvent {
            id,
            parent,
            depth: 1,
            operator: "op".into(),
            index,
            thread: "t".into(),
            thread_id: 0,
            start: Duration::ZERO,
            duration: Duration::ZERO,
            outcome: 0,
            attempt: 1,
        }
    }

    pub(crate) fn index(&self) -> Option<u64> {
        self.index
    }

    pub(crate) fn parent(&self) -> Option<u64> {
        self.parent
    }

    pub(crate) fn remap_index(&mut self, map: impl Fn(u64) -> Option<u64>) {
        if let Some(index) = self.index {
            self.index = map(index);
        }
    }
}

/// How many bytes of items (or outcomes) one message may carry under the server's
/// `max_payload`: the rest is room for the message's other fields.
pub(crate) fn budget(max_payload: usize) -> usize {
    max_payload
        .saturating_sub(max_payload / 8 + 512 + MAX_NAME.min(max_payload / 4))
        .max(256)
}

/// Serializes a message.
pub(crate) fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Every message type here serializes: no maps with non-string keys, no failing impls.
    postcard::to_allocvec(message).unwrap_or_default()
}

/// Reads a message, or says why it is not one.
pub(crate) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    crate::codec::decode(bytes).map_err(|e| format!("malformed message: {e}"))
}

/// Reads the first fields of a request (its protocol, nonce, and whether it is signed) without
/// its items.
pub(crate) fn decode_head(bytes: &[u8]) -> Result<RequestHead, String> {
    postcard::take_from_bytes::<RequestHead>(bytes)
        .map(|(head, _)| head)
        .map_err(|e| format!("malformed message: {e}"))
}

/// Reads a discovery request, with or without a signature after it (a worker answers one not
/// signed with its key too, unsigned, so that the caller learns why it is not served).
pub(crate) fn decode_hello(bytes: &[u8]) -> Result<Hello, String> {
    postcard::take_from_bytes::<Hello>(bytes)
        .map(|(hello, _)| hello)
        .map_err(|e| format!("malformed message: {e}"))
}

/// Checks a request against the limits; the reason it breaks one.
pub(crate) fn check(request: &Request) -> Result<(), String> {
    if request.protocol != PROTOCOL {
        return Err(format!(
            "the caller speaks protocol {} but this worker speaks {PROTOCOL} (built from another \
             version of xcs)",
            request.protocol
        ));
    }
    if request.items.len() > MAX_ITEMS {
        return Err(format!(
            "{} items in one chunk (at most {MAX_ITEMS})",
            request.items.len()
        ));
    }
    let s = &request.signature;
    if [&s.operator, &s.input_type, &s.output_type]
        .iter()
        .any(|name| name.len() > MAX_NAME)
    {
        return Err(format!("a name longer than {MAX_NAME} bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request<'static> {
        Request {
            protocol: PROTOCOL,
            nonce: [7; 16],
            signed: false,
            signature: WireSignature {
                operator: "op".into(),
                version: 1,
                input_type: "u64".into(),
                output_type: "u64".into(),
            },
            options: WireOptions::from_caller(&ExecutionOptions::DEFAULT, None, 1, None),
            items: vec![Item {
                index: 7,
                input: &[1, 2, 3],
            }],
        }
    }

    #[test]
    fn requests_round_trip() {
        let bytes = encode(&request());
        let back: Request = decode(&bytes).unwrap();
        assert_eq!(back.items[0].index, 7);
        assert_eq!(back.items[0].input, [1, 2, 3]);
        assert_eq!(back.signature.operator, "op");
        check(&back).unwrap();
    }

    #[test]
    fn garbage_and_truncated_messages_are_refused_not_panics() {
        let bytes = encode(&request());
        for len in 0..bytes.len() {
            assert!(decode::<Request>(&bytes[..len]).is_err(), "prefix {len}");
        }
        // A length prefix that claims far more than the message holds.
        let mut huge = bytes.clone();
        huge.truncate(1);
        huge.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(decode::<Request>(&huge).is_err());
        for seed in 0..200u32 {
            let noise: Vec<u8> = (0..64u32)
                .map(|i| (seed.wrapping_mul(2_654_435_761).wrapping_add(i * 40_503) >> 7) as u8)
                .collect();
            let _ = decode::<Request>(&noise);
            let _ = decode::<Reply>(&noise);
        }
    }

    #[test]
    fn other_protocols_and_oversized_names_are_refused() {
        let mut r = request();
        r.protocol = PROTOCOL + 1;
        assert!(check(&r).unwrap_err().contains("protocol"));
        let mut r = request();
        r.signature.input_type = "x".repeat(MAX_NAME + 1);
        assert!(check(&r).is_err());
    }

    /// The options' fields are the protocol: the order and types version 2 decodes.
    #[test]
    fn options_keep_their_wire_layout() {
        let wire = WireOptions {
            timeout: Some(Duration::from_millis(1500)),
            trace_execution: true,
            max_retries: 3,
            rate_limit: Some(2.5),
            use_parallel: false,
            max_workers: Some(7),
        };
        let version_2 = (
            Some(Duration::from_millis(1500)),
            true,
            3u32,
            Some(2.5f64),
            false,
            Some(7u64),
        );
        assert_eq!(encode(&wire), encode(&version_2));
        let mut caller = ExecutionOptions::DEFAULT;
        caller.trace_execution = true;
        caller.max_retries = 3;
        caller.use_parallel = false;
        caller.rate_limit = Some(5.0);
        let sent = WireOptions::from_caller(&caller, wire.timeout, 2, Some(7));
        assert_eq!(sent, wire);
    }

    #[test]
    fn worker_options_never_cache_and_stay_on_the_cpu() {
        let mut caller = ExecutionOptions::DEFAULT;
        caller.enable_caching = true;
        caller.trace_execution = true;
        caller.max_retries = 3;
        caller.rate_limit = Some(10.0);
        let wire = WireOptions::from_caller(&caller, Some(Duration::from_secs(2)), 2, Some(3));
        let mut base = ExecutionOptions::DEFAULT;
        base.device_strategy = crate::options::DeviceStrategy::Gpu;
        let (applied, rate) = wire.apply(base, Duration::from_secs(600)).unwrap();
        assert!(!applied.enable_caching);
        assert!(applied.trace_execution);
        assert_eq!(applied.max_retries, 3);
        // The rate travels apart: never into the process-wide limiter.
        assert_eq!(applied.rate_limit, None);
        assert_eq!(rate, Some(5.0));
        assert_eq!(applied.timeout_seconds, Some(Duration::from_secs(2)));
        assert_eq!(applied.device_strategy, crate::options::DeviceStrategy::Cpu);
        assert_eq!(applied.max_workers.map(|n| n.get()), Some(3));
        let mut bad = wire;
        bad.rate_limit = Some(f64::NAN);
        assert!(bad.apply(ExecutionOptions::DEFAULT, Duration::MAX).is_err());
        // Without a deadline, the worker's cap is the deadline; a longer one is cut to it.
        let mut unbounded = wire;
        unbounded.timeout = None;
        let cap = Duration::from_secs(3);
        let (applied, _) = unbounded.apply(ExecutionOptions::DEFAULT, cap).unwrap();
        assert_eq!(applied.timeout_seconds, Some(cap));
        unbounded.timeout = Some(Duration::from_secs(3600));
        let (applied, _) = unbounded.apply(ExecutionOptions::DEFAULT, cap).unwrap();
        assert_eq!(applied.timeout_seconds, Some(cap));
    }

    #[test]
    fn signatures_bind_the_key_the_kind_and_the_subjects() {
        let key = Some(&b"k1"[..]);
        let context = Context::Reply {
            reply: "_INBOX.a.0.0",
        };
        let sealed = seal(key, &context, b"body".to_vec());
        assert_eq!(sealed.len(), 4 + TAG);
        assert_eq!(open(key, &context, &sealed), Some(&b"body"[..]));
        // Another key, another subject, another kind, a changed byte, or no signature: refused.
        assert_eq!(open(Some(b"k2"), &context, &sealed), None);
        assert_eq!(
            open(
                key,
                &Context::Reply {
                    reply: "_INBOX.b.0.0"
                },
                &sealed
            ),
            None
        );
        assert_eq!(
            open(
                key,
                &Context::HelloAnswer {
                    reply: "_INBOX.a.0.0"
                },
                &sealed
            ),
            None
        );
        let mut changed = sealed.clone();
        changed[0] ^= 1;
        assert_eq!(open(key, &context, &changed), None);
        assert_eq!(open(key, &context, b"body"), None);
        assert_eq!(open(key, &context, b""), None);
        // Without a key nothing is added or checked.
        assert_eq!(seal(None, &context, b"body".to_vec()), b"body");
        assert_eq!(open(None, &context, b"body"), Some(&b"body"[..]));
    }

    #[test]
    fn nonces_differ_and_a_request_head_reads_alone() {
        let (a, b) = (nonce().unwrap(), nonce().unwrap());
        assert_ne!(a, b);
        let mut r = request();
        r.nonce = a;
        r.signed = true;
        let bytes = encode(&r);
        let (head, _) = postcard::take_from_bytes::<RequestHead>(&bytes).unwrap();
        assert_eq!(
            (head.protocol, head.nonce, head.signed),
            (PROTOCOL, a, true)
        );
    }

    #[test]
    fn errors_keep_their_kind_across_the_wire() {
        let timeout = XcsError::Timeout {
            operator: "op".into(),
            index: Some(0),
            timeout: Duration::from_millis(5),
        };
        let wire: WireError = decode(&encode(&WireError::from_error(&timeout))).unwrap();
        assert!(matches!(
            wire.into_error("op", 9, "w"),
            XcsError::Timeout { index: Some(9), .. }
        ));
        let failed = XcsError::operator("op", "boom");
        let back = WireError::from_error(&failed).into_error("op", 3, "w1");
        assert!(back.to_string().contains("boom"), "{back}");
        assert!(back.is_retryable());
    }

    #[test]
    fn cancellations_are_read_within_their_limits() {
        let cancel = Cancel {
            protocol: PROTOCOL,
            nonces: vec![[1; 16]],
            items: vec![([2; 16], 5), ([2; 16], 9)],
        };
        let read = Cancel::read(&encode(&cancel)).unwrap();
        assert_eq!(read.nonces, cancel.nonces);
        assert_eq!(read.items, cancel.items);
        let too_many = Cancel {
            protocol: PROTOCOL,
            nonces: vec![[1; 16]; 2],
            items: vec![([2; 16], 0); MAX_CANCEL - 1],
        };
        assert!(
            Cancel::read(&encode(&too_many))
                .unwrap_err()
                .contains("at most")
        );
        let older = Cancel {
            protocol: 3,
            ..cancel
        };
        assert!(
            Cancel::read(&encode(&older))
                .unwrap_err()
                .contains("protocol")
        );
        // A length that claims more items than the message holds, and noise: errors, never a
        // panic or a large allocation.
        let mut huge = encode(&Cancel {
            protocol: PROTOCOL,
            nonces: Vec::new(),
            items: Vec::new(),
        });
        huge.pop();
        huge.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(Cancel::read(&huge).is_err());
        for seed in 0..200u32 {
            let noise: Vec<u8> = (0..48u32)
                .map(|i| (seed.wrapping_mul(2_654_435_761).wrapping_add(i * 40_503) >> 9) as u8)
                .collect();
            let _ = Cancel::read(&noise);
        }
    }
}
