//! Procedural macros of xcs. Use them through the `xcs` crate, which documents them:
//! `execution_options!`, `set_execution_options!`, `set_resource_limits!` and `#[operator]`.
//!
//! Each entry point converts to `proc_macro2` and hands over to a module that parses what the
//! user wrote into a small AST, validates it (collecting every error), and expands it. Generated
//! code names the runtime only as `::xcs::__private::…`.
#![forbid(unsafe_code)]

use proc_macro::TokenStream;

mod errors;
mod operator;
mod options;
mod resource;

/// Evaluates an expression with execution options in force on this thread, then restores the
/// previous options.
///
/// ```text
/// execution_options!(name = value, name = value, … => expr)
/// ```
///
/// The options hold while `expr` runs and for everything it calls, including the items that
/// `vmap` and `pmap` run on worker threads on this thread's behalf; the macro yields `expr`'s
/// value. Options not named are inherited (defaults ← global ← outer scopes ← this scope).
/// `expr` may be a block. It is expanded inline, not in a closure, so `?`, `return`, `break`,
/// `continue` and borrows inside it behave as they would without the macro, and the previous
/// options come back on every way out: normal, `?`, `return`, `break`, panic. A trailing comma
/// is allowed and the list may be empty (`execution_options!(=> expr)`).
///
/// ```
/// use xcs::{execution_options, get_execution_options};
///
/// let workers = execution_options!(use_parallel = true, max_workers = 4 => {
///     // A nested scope sets only what it names.
///     execution_options!(use_parallel = false => {
///         let options = get_execution_options();
///         assert!(!options.use_parallel);
///         options.max_workers
///     })
/// });
/// assert_eq!(workers.map(|n| n.get()), Some(4));
/// assert_eq!(get_execution_options().max_workers, None); // restored
/// ```
///
/// `?` leaves the scope and the function, restoring the options on the way:
///
/// ```
/// use xcs::{execution_options, get_execution_options};
///
/// fn parse(text: &str) -> Result<u32, std::num::ParseIntError> {
///     let n: u32 = execution_options!(trace_execution = true => text.parse()?);
///     Ok(n)
/// }
/// assert!(parse("nope").is_err());
/// assert!(!get_execution_options().trace_execution);
/// ```
///
/// # Options
///
/// | option | literal forms | other values accepted (any expression of these types) |
/// |---|---|---|
/// | `use_parallel` | `true`, `false` | `bool` |
/// | `max_workers` | an integer ≥ 1, `None` | `usize`, `NonZeroUsize`, `Option` of either (any count ≥ 1; a sync batch uses at most `MAX_WORKERS` threads) |
/// | `device_strategy` | `"auto"`, `"cpu"`, `"gpu"` | `DeviceStrategy` (e.g. `DeviceStrategy::named("tpu")`) |
/// | `enable_caching` | `true`, `false` | `bool` |
/// | `trace_execution` | `true`, `false` | `bool` |
/// | `timeout_seconds` | a number > 0 (integer or float), `None` | `f64`, `f32`, `u64`, `Duration`, `Option` of them |
/// | `scheduler` | `"sequential"`, `"topological"`, `"parallel"`, `"wave"`, `"auto"`, `None` | `Scheduler`, `Option<Scheduler>` |
/// | `max_retries` | an integer ≥ 0 | `u32` |
/// | `rate_limit` | a number > 0 (integer or float), `None` | `f64`, `Option<f64>` |
/// | `cache_dir` | a non-empty string, `None` | `&str`, `String`, `&Path`, `PathBuf`, `CacheDir`, `Option` of them |
/// | `show_progress` | `true`, `false` | `bool` |
/// | `token_budget` | an integer ≥ 1, `None` | `u64`, `u32`, `usize`, `NonZeroU64`, `Option` of them |
/// | `cost_budget` | a number > 0 (integer or float), `None` | `f64`, `f32`, `Option` of either |
/// | `hedge_after` | a number of seconds > 0, `"p50"` … `"p99"`, `None` | `Hedge`, `Duration`, `f64`, `&str`, `Option` of them |
///
/// - `use_parallel`: run batch items in parallel where possible (default `true`).
/// - `max_workers`: the most items of a batch running at once, at every level; `None`: one per
///   CPU (default).
/// - `device_strategy`: which backend runs batches (default `"auto"`).
/// - `enable_caching`: memoize operator calls by input (default `false`).
/// - `trace_execution`: record every operator call and batch item (default `false`).
/// - `timeout_seconds`: a deadline for each whole call; `None`: no deadline (default).
/// - `scheduler`: legacy; `"sequential"` and `"topological"` mean `use_parallel = false`, the
///   others `use_parallel = true` (default `None`).
/// - `max_retries`: how many more times a call (or batch item) that failed retryably runs
///   (default `0`).
/// - `rate_limit`: the most calls of one operator started per second (default `None`).
/// - `cache_dir`: the directory of the persistent cache, with `enable_caching` (default `None`).
/// - `show_progress`: progress bars for batches (default `false`).
/// - `token_budget`: the most tokens (input + output) the calls of the scope may use together
///   (default `None`). A nested scope can only narrow a budget: it gets the smaller of its own
///   and the outer one, so `None` or a larger value there keeps the outer budget.
/// - `cost_budget`: the most the calls of the scope may cost together; narrowed like
///   `token_budget` (default `None`).
/// - `hedge_after`: start a second attempt of a call still running after this many seconds, or
///   after that quantile of its operator's recent latency (`"p95"`); the first success answers
///   (default `None`).
///
/// The expression may be an `async` block: the macro then yields a future with the options in
/// force whenever it is polled (`execution_options!(… => async { … }).await`). An `.await` in
/// the sync form is a compile error that names the async form.
///
/// Literals are checked when the program compiles. `None` is recognised by the token itself and
/// always means "unset", whatever the name `None` resolves to where the macro is called.
/// `Some(literal)` is checked like the literal, and parentheses around a literal are looked
/// through.
///
/// ```
/// use std::time::Duration;
/// use xcs::{DeviceStrategy, Scheduler, execution_options, get_execution_options};
///
/// let deadline = Duration::from_millis(250);
/// let strategy = DeviceStrategy::Cpu;
/// let options = execution_options!(
///     timeout_seconds = deadline,   // a `Duration`
///     device_strategy = strategy,   // a `DeviceStrategy`
///     scheduler = "sequential",     // a literal: also means `use_parallel = false`
///     enable_caching = 1 + 1 == 2,  // any `bool` expression
///     => get_execution_options()
/// );
/// assert_eq!(options.timeout_seconds, Some(deadline));
/// assert_eq!(options.scheduler, Some(Scheduler::Sequential));
/// assert!(!options.use_parallel && options.enable_caching);
/// ```
///
/// # Compile errors
///
/// Each mistake is a compile error at the offending token, and all the mistakes of one call are
/// reported together:
///
/// - an unknown option: ``Invalid execution option: use_paralel; did you mean `use_parallel`?
///   (valid options: …)``, at the name;
/// - an option given twice: ``duplicate execution option `max_workers` ``, at the second name;
/// - a literal of the wrong kind: ``expected `use_parallel` to be `true` or `false` ``, at the
///   value (also for `max_workers = "4"`, `device_strategy = 3`, `use_parallel = None`, …);
/// - a literal out of range: ``max_workers` may not be 0``, ``timeout_seconds` must be greater
///   than 0`` (also for negative numbers and `0.0`), ``timeout_seconds` must be finite``;
/// - an unknown `device_strategy` or `scheduler` name: ``unknown `scheduler` "fifo" (expected
///   "sequential", …)``, suggesting the nearest where one is close;
/// - a literal `scheduler` that contradicts a literal `use_parallel` of the same call;
/// - malformed syntax: a missing `=> expr`, `=`, name or value, or stray tokens.
///
/// ```compile_fail
/// xcs::execution_options!(use_paralel = true => ());
/// ```
///
/// ```compile_fail
/// xcs::execution_options!(max_workers = 0 => ());
/// ```
///
/// ```compile_fail
/// xcs::execution_options!(scheduler = "sequential", use_parallel = true => ());
/// ```
///
/// # Panics
///
/// A non-literal value is checked when the scope is entered, and an invalid one panics with a
/// message naming the option: a `max_workers` or `token_budget` of `0`, a `timeout_seconds`
/// that is not a finite number greater than 0 (or a zero `Duration`), a `rate_limit` or
/// `cost_budget` that is not a finite number greater than 0, a `hedge_after` that is neither a
/// delay greater than 0 nor a quantile from `"p50"` to `"p99"`, an empty `cache_dir`, or a
/// `scheduler` that contradicts a `use_parallel` of the same call. The options are unchanged then. For values from
/// configuration or users, use the fallible route instead:
/// [`OptionsPatch::from_pairs`](xcs_core::OptionsPatch::from_pairs) and
/// [`with_options`](xcs_core::with_options).
///
/// ```should_panic
/// # use xcs::execution_options;
/// let workers: usize = "0".parse().unwrap();
/// execution_options!(max_workers = workers => ()); // panics: `max_workers` may not be 0
/// ```
#[proc_macro]
pub fn execution_options(input: TokenStream) -> TokenStream {
    options::expand_scoped(input.into()).into()
}

/// Merges execution options into the process-wide global options and returns the new global
/// [`ExecutionOptions`](xcs_core::ExecutionOptions).
///
/// ```text
/// set_execution_options!(name = value, name = value, …)
/// ```
///
/// Options not named keep their global value. The update is visible at once to every thread,
/// except for the options that a thread's open `execution_options!` scope sets: the innermost
/// setting wins. [`reset_execution_options`](xcs_core::reset_execution_options) restores the
/// defaults.
///
/// The options, their literal forms, the values accepted otherwise, the compile errors and the
/// run-time panics are those of [`execution_options!`]; the only difference is that there is no
/// `=> expr` (giving one is a compile error). Every option it names replaces the global value,
/// budgets included (only scopes narrow a budget).
///
/// ```standalone_crate
/// // (Run in a process of its own: it changes the process-wide options.)
/// use xcs::{execution_options, get_execution_options, reset_execution_options, set_execution_options};
///
/// let global = set_execution_options!(max_workers = 8, trace_execution = false);
/// assert_eq!(global.max_workers.map(|n| n.get()), Some(8));
///
/// // Another thread sees the update at once.
/// let seen = std::thread::spawn(get_execution_options).join().unwrap();
/// assert_eq!(seen.max_workers.map(|n| n.get()), Some(8));
///
/// // A scope that names an option overrides the global value.
/// let scoped = execution_options!(max_workers = 2 => get_execution_options().max_workers);
/// assert_eq!(scoped.map(|n| n.get()), Some(2));
///
/// reset_execution_options();
/// ```
///
/// ```compile_fail
/// xcs::set_execution_options!(max_workers = 0);
/// ```
///
/// # Panics
///
/// As [`execution_options!`], on an invalid non-literal value; the global options are unchanged
/// then.
#[proc_macro]
pub fn set_execution_options(input: TokenStream) -> TokenStream {
    options::expand_global(input.into()).into()
}

/// Sets (merges) the limits of a resource, process-wide.
///
/// ```text
/// set_resource_limits!(name, limit = value, limit = value, …)
/// ```
///
/// A *resource* is what several operators share and a provider limits: an API key, an
/// endpoint, a local model server. Operators name the resource their calls use with
/// `#[xcs::operator(resource = "…")]` (or `fn resource` by hand). This macro sets the limits of
/// the resource called `name` (a non-empty string literal, or any `&str` expression); the limits
/// it names replace the resource's, the others are kept, and a resource nobody limited is
/// unlimited. The run-time forms are `ResourceLimits::from_pairs(pairs)?` and
/// `xcs::set_resource_limits(name, &limits)`, which return errors instead of panicking.
///
/// | limit | literal forms | other values accepted (any expression of these types) |
/// |---|---|---|
/// | `requests_per_minute` | a number > 0 (integer or float) | `f64`, `f32`, `u32`, `u64`, `usize` |
/// | `tokens_per_minute` | a number > 0 (integer or float) | `f64`, `f32`, `u32`, `u64`, `usize` |
/// | `max_in_flight` | an integer ≥ 1 | `usize`, `u32`, `u64`, `NonZeroUsize` |
///
/// - `requests_per_minute`: the most calls of the resource started per minute;
/// - `tokens_per_minute`: the most tokens (input + output) its calls use per minute;
/// - `max_in_flight`: the most bodies of its calls running at once.
///
/// The macro's value is `()`, like a statement: unlike `set_execution_options!`, which returns
/// the new global options, there is nothing here a caller needs back (the limits it sets are
/// those it names). A trailing comma is allowed, and a call that names no limit changes nothing.
///
/// ```
/// use xcs::set_resource_limits;
///
/// set_resource_limits!("openai", requests_per_minute = 500, tokens_per_minute = 30_000, max_in_flight = 64);
/// // Merged: a later call changes only what it names.
/// set_resource_limits!("openai", max_in_flight = 16);
///
/// let name = String::from("local-llm");
/// let rpm: u32 = 120;
/// set_resource_limits!(&name, requests_per_minute = rpm, max_in_flight = 4);
/// ```
///
/// # Compile errors
///
/// Names and literals are checked when the program compiles, as the options of
/// [`execution_options!`] are, each error at its token and all of a call's errors together: an
/// unknown limit (``Invalid resource limit: max_inflight; did you mean `max_in_flight`? (valid
/// limits: …)``), a limit given twice, a rate of 0, a negative or infinite one (`1e400`), a
/// `max_in_flight` of 0, negative or with a fraction (`2.0`), a value of the wrong kind (a
/// string, a bool, `None`), an empty name literal (`""`) or a literal that is not a string, a
/// missing name or value, and a `=> expr`.
///
/// ```compile_fail
/// xcs::set_resource_limits!("openai", max_in_flight = 0);
/// ```
///
/// ```compile_fail
/// xcs::set_resource_limits!("", max_in_flight = 8);
/// ```
///
/// # Panics
///
/// A non-literal value is checked when the call runs, and an invalid one panics with a message
/// naming the limit: a rate that is not a finite number greater than 0 (`NaN`, infinite, 0 or
/// negative), a `max_in_flight` of 0, or an empty non-literal name. The resource's limits are
/// unchanged then. For values from configuration or users, use the fallible route instead:
/// `ResourceLimits::from_pairs` and `xcs::set_resource_limits`.
///
/// ```should_panic
/// # use xcs::set_resource_limits;
/// let rpm: f64 = "0".parse().unwrap();
/// set_resource_limits!("openai", requests_per_minute = rpm); // panics: must be greater than 0
/// ```
#[proc_macro]
pub fn set_resource_limits(input: TokenStream) -> TokenStream {
    resource::expand(input.into()).into()
}

/// Turns a function into an operator, or gives a hand-written operator's `impl` block what the
/// function form adds (see [Hand-written operators](#hand-written-operators)).
///
/// On `fn generate(prompt: String, seed: u64) -> String`, keeps `generate` exactly as written
/// (callable, with its docs and attributes) and adds, with the function's visibility:
///
/// - `struct Generate;` — the operator (`Clone`, `Copy`, `Debug`, `Default`, `PartialEq`, `Eq`,
///   `Hash`), implementing `Operator<Input = GenerateInputs, Output = String>` with
///   `name() == "generate"`. Its `call` runs the function under the effective execution options
///   (deadline, caching, tracing);
/// - `struct GenerateInputs { pub prompt: String, pub seed: u64 }`, with
///   `GenerateInputs::new(prompt, seed)` and `GenerateInputs::batch(prompt, seed)`, which takes
///   each argument as `impl Into<Axis<T>>`: a `Vec<T>` is batched (one value per item), a plain
///   `T` is broadcast (cloned into every item). Batched arguments of different lengths are an
///   `XcsError::BatchSizeMismatch`; with no batched argument the batch has one item, with empty
///   ones it is empty. `GenerateInputs` is always `Debug` (a field whose type is not shows as
///   `_`), and `Clone`, `PartialEq`, `Eq`, `Hash`, `serde::Serialize` and `serde::Deserialize`
///   (as a struct with one field per parameter) whenever every field type is: a field without
///   them is never a compile error, only using the missing trait is.
///
/// ```
/// use xcs::prelude::*;
///
/// /// Scores an answer.
/// #[xcs::operator]
/// pub fn score(answer: String, weight: u64) -> u64 {
///     answer.len() as u64 * weight
/// }
///
/// assert_eq!(score("abc".to_owned(), 2), 6); // still a function
/// assert_eq!(Score.name(), "score");
/// assert_eq!(Score.call(ScoreInputs::new("abc".to_owned(), 2))?, 6);
///
/// let batch = ScoreInputs::batch(vec!["a", "bcd"], 2)?; // `weight` broadcast
/// assert_eq!(batch[1], ScoreInputs::new("bcd".to_owned(), 2)); // `PartialEq`, `Debug`
/// assert_eq!(vmap(Score).call(batch.clone())?, vec![2, 6]);
/// # Ok::<(), XcsError>(())
/// ```
///
/// # Fallible functions
/// A function returning a `Result` (any path whose last segment is `Result`, so `io::Result<T>`
/// and `anyhow::Result<T>` too) is fallible: `Output` is the `Ok` type, and an error `E:
/// Into<Box<dyn Error + Send + Sync>>` becomes `XcsError::Operator`, naming the operator, with
/// the original error as its `source()`. A function whose error type is `XcsError` itself (a
/// path ending in `XcsError`) returns its errors as they are, so a body can say
/// `XcsError::permanent(…)` (not retried) or `XcsError::retry_after(…)` (a hint for the wait).
///
/// ```
/// use xcs::prelude::*;
///
/// #[xcs::operator]
/// fn parse_number(text: String) -> Result<u64, std::num::ParseIntError> {
///     text.parse()
/// }
///
/// let error = ParseNumber.call(ParseNumberInputs::new("x".to_owned())).unwrap_err();
/// assert!(matches!(error, XcsError::Operator { .. }));
/// assert!(error.to_string().starts_with("operator `parse_number` failed"));
/// ```
///
/// # Async functions
/// On an `async fn`, the operator implements `AsyncOperator` instead of `Operator` (with the
/// `tokio` feature of xcs, on by default; without it, this is a compile error saying so). The
/// function stays an `async fn`; the inputs struct, `new` and `batch` are the same, and so are
/// fallible functions. `AsyncOperator::forward` returns a `Send` future, so the function's
/// future must be `Send`: holding an `Rc` or a `std::sync::MutexGuard` across an `.await` is a
/// compile error on the function's name.
///
/// ```
/// use xcs::prelude::*;
///
/// #[xcs::operator]
/// async fn fetch(url: String, attempt: u32) -> Result<usize, std::io::Error> {
///     tokio::task::yield_now().await; // an HTTP call, say
///     Ok(url.len() + attempt as usize)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), XcsError> {
/// assert_eq!(Fetch.call(FetchInputs::new("a".into(), 1)).await?, 2);
/// let batch = FetchInputs::batch(vec!["a", "bc"], 0)?;
/// assert_eq!(vmap(Fetch).call(batch).await?, vec![1, 2]);
/// # Ok(())
/// # }
/// ```
///
/// # Retries
/// Under `max_retries`, a call that fails with a retryable error runs again with a copy of its
/// input: the inputs struct is `Clone` when every parameter type is. An operator with a
/// parameter that is not `Clone` still compiles, and runs once (with a warning).
///
/// # Arguments
/// - `name = "Other"`: names the structs `Other` and `OtherInputs` (`name()` stays the
///   function's name). Not on an impl block.
/// - `version = N` (an integer from 0 to `u32::MAX`, default 0): the operator's version, part of
///   every persistent cache key. Bump it when what the body calls changes its results (a helper
///   function, a model behind an API), so that results stored before are not returned.
/// - `resource = "openai"` (a non-empty string): the resource the operator's calls use, which
///   `set_resource_limits!` limits; the generated impl's `fn resource` returns it (without it,
///   `None`). On an impl block too, unless the block writes `fn resource` itself (then giving both
///   is a compile error).
/// - `estimate = path` (the path of a function `fn(&GenerateInputs) -> xcs::Usage`, or
///   `fn(&Input) -> xcs::Usage` on an impl block): what a call is expected to use, charged to its
///   resource and budget when it is admitted; the generated `fn estimate` calls it (without it,
///   zero). A function of another signature is a type error on the path. On an impl block, as
///   `resource`.
///
/// ```
/// use xcs::prelude::*;
/// use xcs::Usage;
///
/// fn guess(input: &AskInputs) -> Usage {
///     Usage { input_tokens: input.prompt.len() as u64 / 4, output_tokens: 256, cost: 0.0 }
/// }
///
/// #[xcs::operator(resource = "openai", estimate = guess)]
/// fn ask(prompt: String) -> String {
///     prompt // a model call, say
/// }
///
/// assert_eq!(Ask.resource(), Some("openai"));
/// assert_eq!(Ask.estimate(&AskInputs::new("a prompt".into())).output_tokens, 256);
/// ```
///
/// # Persistent keys
/// The persistent cache keys (`cache_dir`) of a generated operator also hold a fingerprint of
/// the function's signature and body (of the block, on an impl block), read from its tokens:
/// comments, doc comments and formatting do not count, any other edit does. Editing the body —
/// a prompt template, say — makes the entries stored by the old body misses by itself, without
/// a `version` bump.
///
/// # Hand-written operators
/// On an `impl Operator for T { … }` or `impl AsyncOperator for T { … }` block (the trait's path
/// ends in `Operator` or `AsyncOperator`), the attribute keeps the block as written and adds what
/// the function form adds, whenever the block's `Input` and `Output` types allow (decided on the
/// concrete types, never a compile error): the input is copied for retries when it is `Clone`,
/// calls are cached when the input is `Hash + Eq` and the output `Clone`, and they persist when
/// the input is `Serialize` and the output `Serialize + DeserializeOwned`, under `version` and
/// the block's fingerprint. Without it, a hand-written operator's input is copied and hashed only
/// when it is a common standard type (integers, `bool`, `char`, `String`, `()`, `Vec`s of them),
/// so a request struct or a tuple is neither retried nor cached (with a warning naming this
/// attribute). Generic blocks work too: the capabilities are then those the block's bounds
/// guarantee. A method the block writes itself (`persist_support`, say) is kept, and then
/// `version = N` is a compile error (give the version in that method); likewise `resource = …`
/// or `estimate = …` on a block that writes `fn resource` or `fn estimate`.
///
/// ```
/// use xcs::prelude::*;
///
/// #[derive(Clone, Hash, PartialEq, Eq)]
/// struct Request {
///     prompt: String,
///     max_tokens: u32,
/// }
///
/// struct Chat;
///
/// #[xcs::operator(version = 1)]
/// impl Operator for Chat {
///     type Input = Request;
///     type Output = String;
///     fn forward(&self, request: Request) -> Result<String, XcsError> {
///         Ok(request.prompt.repeat(2))
///     }
///     fn name(&self) -> &str {
///         "chat"
///     }
/// }
///
/// let ask = || Chat.call(Request { prompt: "hi".into(), max_tokens: 8 });
/// execution_options!(enable_caching = true, max_retries = 2 => {
///     assert_eq!(ask()?, "hihi");
///     assert_eq!(ask()?, "hihi"); // from the cache
///     Ok::<(), XcsError>(())
/// })?;
/// # Ok::<(), XcsError>(())
/// ```
///
/// # Caching
/// With `enable_caching`, calls are cached when every parameter type is `Hash + Eq` and the
/// output `Clone`; otherwise the operator runs uncached. This is decided on the concrete types
/// and is never a compile error.
///
/// # Compile errors
/// What an operator cannot carry is rejected on the offending token, with what to write
/// instead: a `self` receiver, `const`, `unsafe` or `extern` functions (async or not), generic,
/// const and lifetime parameters, `impl Trait` parameters or return types, reference parameters
/// (`&'static` ones are fine), patterns instead of parameter names, and unknown, duplicate or
/// malformed attribute arguments (a `version` that is negative, not an integer or too large; a
/// `resource` that is empty or not a string literal; an `estimate` that is not a path).
/// Every error is reported at once, and the function itself is still emitted. On an item that is
/// neither a function nor an `impl Operator`/`impl AsyncOperator` block (an inherent impl, an
/// impl of another trait, a struct), and for `name = …` on an impl block, the error says so, and
/// the item is emitted unchanged.
///
/// Generated locals start with `__xcs_`; do not use that prefix for parameter names.
#[proc_macro_attribute]
pub fn operator(args: TokenStream, item: TokenStream) -> TokenStream {
    operator::expand(args.into(), item.into()).into()
}
