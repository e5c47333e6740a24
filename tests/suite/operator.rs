//! `#[xcs::operator]`: what the generated operator, inputs and batches do.

use crate::common;

use std::error::Error as _;
use std::fmt;
use std::sync::Arc;

use common::{DOUBLE, Double, assert_lowercase_led, serial};
use xcs::Axis;
use xcs::prelude::*;

/// Generates text.
#[xcs::operator]
pub fn generate(prompt: String, seed: u64) -> String {
    format!("{prompt}#{seed}")
}

#[test]
fn the_function_stays_callable() {
    assert_eq!(generate("a".into(), 1), "a#1");
}

#[test]
fn struct_inputs_name_and_call() {
    let op = Generate;
    assert_eq!(op.name(), "generate");
    let inputs = GenerateInputs::new("hi".to_owned(), 7);
    assert_eq!(inputs.prompt, "hi");
    assert_eq!(inputs.seed, 7);
    assert_eq!(op.call(inputs).unwrap(), "hi#7");
    let inputs = GenerateInputs {
        prompt: "direct".to_owned(),
        seed: 2,
    };
    assert_eq!(op.forward(inputs).unwrap(), "direct#2");
}

#[test]
fn the_operator_struct_is_a_plain_value() {
    fn traits<T: Clone + Copy + fmt::Debug + Default + PartialEq + Eq + std::hash::Hash>(_: T) {}
    traits(Generate);
    assert_eq!(format!("{Generate:?}"), "Generate");
}

#[test]
fn batch_broadcasts_plain_values() {
    let batch = GenerateInputs::batch(vec!["a", "b", "c"], 7).unwrap();
    let seeds: Vec<u64> = batch.iter().map(|i| i.seed).collect();
    let prompts: Vec<&str> = batch.iter().map(|i| i.prompt.as_str()).collect();
    assert_eq!(seeds, [7, 7, 7]);
    assert_eq!(prompts, ["a", "b", "c"]);
}

#[test]
fn batch_zips_batched_values() {
    let batch = GenerateInputs::batch(vec!["a".to_owned(), "b".to_owned()], vec![1, 2]).unwrap();
    let pairs: Vec<(String, u64)> = batch.into_iter().map(|i| (i.prompt, i.seed)).collect();
    assert_eq!(pairs, [("a".to_owned(), 1), ("b".to_owned(), 2)]);
}

#[test]
fn batch_rejects_different_lengths() {
    let error = GenerateInputs::batch(vec!["a", "b"], vec![1, 2, 3])
        .err()
        .unwrap();
    match error {
        XcsError::BatchSizeMismatch {
            first,
            first_len,
            other,
            other_len,
            ..
        } => {
            assert_eq!((first.as_str(), first_len), ("prompt", 2));
            assert_eq!((other.as_str(), other_len), ("seed", 3));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn batch_without_a_batched_argument_has_one_item() {
    let batch = GenerateInputs::batch("only", 3).unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].prompt, "only");
    assert_eq!(batch[0].seed, 3);
}

#[test]
fn an_empty_batched_argument_makes_an_empty_batch() {
    let batch = GenerateInputs::batch(Vec::<String>::new(), 3).unwrap();
    assert!(batch.is_empty());
}

#[test]
fn vmap_runs_the_generated_operator() -> Result<(), XcsError> {
    let outputs = vmap(Generate).call(GenerateInputs::batch(vec!["x", "y"], 1)?)?;
    assert_eq!(outputs, ["x#1", "y#1"]);
    let nested = vmap(vmap(Generate)).call(vec![
        GenerateInputs::batch(vec!["a"], 1)?,
        GenerateInputs::batch(vec!["b", "c"], 2)?,
    ])?;
    assert_eq!(nested, [vec!["a#1"], vec!["b#2", "c#2"]]);
    Ok(())
}

// --- fallible functions -----------------------------------------------------------------------

#[xcs::operator]
fn parse_number(text: String) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not a number"))
}

#[xcs::operator]
fn read_config(path: String) -> Result<String, std::io::Error> {
    std::fs::read_to_string(path)
}

#[xcs::operator]
fn read_io(path: String) -> std::io::Result<String> {
    std::fs::read_to_string(path)
}

#[derive(Debug)]
struct Refused {
    code: u8,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused with code {}", self.code)
    }
}

impl std::error::Error for Refused {}

#[xcs::operator]
fn refuse(code: u8) -> Result<(), Refused> {
    if code == 0 {
        Ok(())
    } else {
        Err(Refused { code })
    }
}

#[xcs::operator]
fn check(value: i64) -> Result<i64, XcsError> {
    if value < 0 {
        Err(XcsError::operator("inner", "negative"))
    } else {
        Ok(value)
    }
}

/// Like `anyhow`: a crate's own one-parameter `Result` alias.
mod boxed_error {
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;
}

#[xcs::operator]
fn boxed(fail: bool) -> boxed_error::Result<u8> {
    if fail {
        Err("boxed failure".into())
    } else {
        Ok(1)
    }
}

#[test]
fn a_result_output_is_the_ok_type() {
    let value: u64 = ParseNumber
        .call(ParseNumberInputs::new("42".into()))
        .unwrap();
    assert_eq!(value, 42);
    assert_eq!(
        boxed(false).unwrap(),
        Boxed.call(BoxedInputs::new(false)).unwrap()
    );
}

#[test]
fn errors_become_operator_errors_with_the_source() {
    let error = ParseNumber
        .call(ParseNumberInputs::new("x".into()))
        .unwrap_err();
    assert!(matches!(&error, XcsError::Operator { operator, .. } if operator == "parse_number"));
    assert!(error.to_string().contains("parse_number"), "{error}");
    assert_eq!(error.source().unwrap().to_string(), "`x` is not a number");

    let error = Refuse.call(RefuseInputs::new(3)).unwrap_err();
    assert!(error.to_string().contains("`refuse`"), "{error}");
    let source = error.source().unwrap();
    assert_eq!(source.downcast_ref::<Refused>().unwrap().code, 3);
    assert!(Refuse.call(RefuseInputs::new(0)).is_ok());

    let error = Boxed.call(BoxedInputs::new(true)).unwrap_err();
    assert_eq!(error.source().unwrap().to_string(), "boxed failure");
}

#[test]
fn io_errors_keep_their_kind() {
    let missing = "/definitely/not/here/xcs-operator-test".to_owned();
    for error in [
        ReadConfig
            .call(ReadConfigInputs::new(missing.clone()))
            .unwrap_err(),
        ReadIo.call(ReadIoInputs::new(missing)).unwrap_err(),
    ] {
        assert!(matches!(error, XcsError::Operator { .. }), "{error:?}");
        let io = error.source().unwrap().downcast_ref::<std::io::Error>();
        assert_eq!(io.unwrap().kind(), std::io::ErrorKind::NotFound);
    }
}

#[test]
fn an_xcs_error_passes_through_unchanged() {
    let error = Check.call(CheckInputs::new(-1)).unwrap_err();
    match error {
        XcsError::Operator { operator, .. } => assert_eq!(operator, "inner"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(Check.call(CheckInputs::new(5)).unwrap(), 5);
}

#[test]
fn a_failing_item_fails_the_batch() {
    let error = vmap(ParseNumber)
        .call(ParseNumberInputs::batch(vec!["1", "x", "3"]).unwrap())
        .unwrap_err();
    assert!(error.to_string().contains("parse_number"), "{error}");
}

// --- shapes of functions ----------------------------------------------------------------------

#[xcs::operator]
fn answer() -> u64 {
    42
}

static TICKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[xcs::operator]
fn tick() {
    TICKS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

#[test]
fn zero_parameters() {
    assert_eq!(Answer.call(AnswerInputs::new()).unwrap(), 42);
    assert_eq!(Answer.call(AnswerInputs {}).unwrap(), 42);
    let batch = AnswerInputs::batch().unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(vmap(Answer).call(batch).unwrap(), [42]);
}

#[test]
fn no_return_type_is_a_unit_output() {
    let before = TICKS.load(std::sync::atomic::Ordering::SeqCst);
    let (): () = Tick.call(TickInputs::new()).unwrap();
    assert!(TICKS.load(std::sync::atomic::Ordering::SeqCst) > before);
}

#[xcs::operator(name = "Shout")]
fn make_loud(text: String) -> String {
    text.to_uppercase()
}

#[test]
fn name_overrides_the_struct_names_only() {
    assert_eq!(Shout.name(), "make_loud");
    assert_eq!(Shout.call(ShoutInputs::new("hey".into())).unwrap(), "HEY");
    assert_eq!(make_loud("a".into()), "A");
}

#[xcs::operator]
fn raw_names(r#type: String, r#match: u8) -> String {
    format!("{type}{match}", type = r#type, match = r#match)
}

#[xcs::operator]
fn r#loop(times: u8) -> u8 {
    times
}

#[test]
fn raw_identifiers() {
    let inputs = RawNamesInputs::new("t".into(), 1);
    assert_eq!(inputs.r#type, "t");
    assert_eq!(RawNames.call(inputs).unwrap(), "t1");
    let error = RawNamesInputs::batch(vec!["a"], vec![1, 2]).err().unwrap();
    assert!(error.to_string().contains("`type`"), "{error}");
    assert_eq!(Loop.name(), "loop");
    assert_eq!(Loop.call(LoopInputs::new(3)).unwrap(), 3);
}

#[xcs::operator]
fn mutable(mut count: u32, mut text: String) -> String {
    count += 1;
    text.push('!');
    format!("{text}{count}")
}

#[test]
fn mut_parameters() {
    let inputs = MutableInputs {
        count: 1,
        text: "a".into(),
    };
    assert_eq!(Mutable.call(inputs).unwrap(), "a!2");
}

mod visibility {
    #[xcs::operator]
    pub(crate) fn crate_visible(x: u8) -> u8 {
        x + 1
    }
}

#[test]
fn visibility_is_carried() {
    use visibility::{CrateVisible, CrateVisibleInputs};
    assert_eq!(CrateVisible.call(CrateVisibleInputs::new(1)).unwrap(), 2);
    assert_eq!(visibility::crate_visible(1), 2);
}

/// Documented.
#[xcs::operator]
#[must_use = "the sum is the point"]
#[allow(clippy::just_underscores_and_digits)]
#[inline]
pub fn add(a: u32, b: u32) -> u32 {
    a + b
}

#[allow(dead_code)]
#[xcs::operator]
fn never_used(x: u8) -> u8 {
    x
}

#[allow(deprecated)]
mod old {
    #[deprecated(note = "use `add` instead")]
    #[xcs::operator]
    pub fn old_add(a: u32, b: u32) -> u32 {
        a + b
    }
}

#[test]
fn attributes_are_kept() {
    assert_eq!(add(1, 2), 3);
    assert_eq!(Add.call(AddInputs::new(1, 2)).unwrap(), 3);
    #[allow(deprecated)]
    {
        assert_eq!(old::old_add(1, 1), 2);
        assert_eq!(old::OldAdd.call(old::OldAddInputs::new(1, 1)).unwrap(), 2);
    }
}

#[cfg(any())]
#[xcs::operator]
fn compiled_out(x: NoSuchType) -> NoSuchType {
    x
}

#[test]
fn cfg_removes_the_generated_items_too() {
    // `compiled_out` names a type that does not exist: this file only compiles because its
    // `#[cfg]` also applies to `CompiledOut` and `CompiledOutInputs`.
}

// --- caching ----------------------------------------------------------------------------------

#[xcs::operator]
fn scale(value: f64, factor: f64) -> f64 {
    value * factor
}

struct Opaque(u8);

#[xcs::operator]
fn take_opaque(value: Opaque) -> u8 {
    value.0
}

#[xcs::operator]
fn unclonable(value: u8) -> Opaque {
    Opaque(value)
}

#[test]
fn operators_over_unhashable_types_compile_and_run_uncached() {
    assert!(Scale.__xcs_cache_support().is_none());
    assert!(TakeOpaque.__xcs_cache_support().is_none());
    assert!(Unclonable.__xcs_cache_support().is_none());
    assert_eq!(Scale.call(ScaleInputs::new(2.0, 1.5)).unwrap(), 3.0);
    assert_eq!(
        TakeOpaque.call(TakeOpaqueInputs::new(Opaque(4))).unwrap(),
        4
    );
    assert_eq!(Unclonable.call(UnclonableInputs::new(5)).unwrap().0, 5);
    let batch = ScaleInputs::batch(vec![1.0, 2.0], 2.0).unwrap();
    assert_eq!(vmap(Scale).call(batch).unwrap(), [2.0, 4.0]);
}

#[test]
fn operators_over_hashable_types_support_caching() {
    assert!(Generate.__xcs_cache_support().is_some());
    assert!(Answer.__xcs_cache_support().is_some());
    assert!(ParseNumber.__xcs_cache_support().is_some());
}

mod counted {
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub static WORDS_RUNS: AtomicUsize = AtomicUsize::new(0);
    pub static HALVE_RUNS: AtomicUsize = AtomicUsize::new(0);

    #[xcs::operator]
    pub fn count_words(text: String, minimum: u64) -> Vec<String> {
        WORDS_RUNS.fetch_add(1, Ordering::SeqCst);
        let minimum = usize::try_from(minimum).unwrap_or(usize::MAX);
        text.split(' ')
            .filter(|w| w.len() >= minimum)
            .map(str::to_owned)
            .collect()
    }

    #[xcs::operator]
    pub fn halve(value: f64) -> f64 {
        HALVE_RUNS.fetch_add(1, Ordering::SeqCst);
        value / 2.0
    }
}

fn caching() -> OptionsPatch {
    OptionsPatch::from_pairs([("enable_caching", "true")]).unwrap()
}

#[test]
fn hashable_operators_are_cached_when_caching_is_on() {
    // The memory cache is process-wide (its bounds included): with the binary's other users.
    let _lock = common::global_lock();
    use counted::{CountWords, CountWordsInputs, WORDS_RUNS};
    use std::sync::atomic::Ordering;
    let text = "cache me if you can, operator-test".to_owned();
    let before = WORDS_RUNS.load(Ordering::SeqCst);
    let (first, second) = with_options(&caching(), || {
        (
            CountWords.call(CountWordsInputs::new(text.clone(), 3)),
            CountWords.call(CountWordsInputs::new(text.clone(), 3)),
        )
    });
    assert_eq!(first.unwrap(), second.unwrap());
    assert_eq!(WORDS_RUNS.load(Ordering::SeqCst) - before, 1);
}

#[test]
fn unhashable_operators_run_uncached_when_caching_is_on() {
    use counted::{HALVE_RUNS, Halve, HalveInputs};
    use std::sync::atomic::Ordering;
    let before = HALVE_RUNS.load(Ordering::SeqCst);
    with_options(&caching(), || {
        assert_eq!(Halve.call(HalveInputs::new(3.0)).unwrap(), 1.5);
        assert_eq!(Halve.call(HalveInputs::new(3.0)).unwrap(), 1.5);
    });
    assert_eq!(HALVE_RUNS.load(Ordering::SeqCst) - before, 2);
}

mod slow {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    pub static FINISHED: AtomicBool = AtomicBool::new(false);

    #[xcs::operator]
    pub fn sleepy(millis: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(millis));
        FINISHED.store(true, Ordering::SeqCst);
        millis
    }
}

#[test]
fn call_returns_at_the_deadline_while_the_body_still_runs() {
    use slow::{FINISHED, Sleepy, SleepyInputs};
    use std::sync::atomic::Ordering;
    let patch = OptionsPatch::from_pairs([("timeout_seconds", "0.05")]).unwrap();
    let result = with_options(&patch, || Sleepy.call(SleepyInputs::new(3_000)));
    assert!(
        matches!(result, Err(XcsError::Timeout { .. })),
        "{result:?}"
    );
    assert!(!FINISHED.load(Ordering::SeqCst), "call waited for the body");
}

/// A parameter type without `Debug`.
pub struct Secret(pub u64);

#[xcs::operator]
fn reveal(secret: Secret, label: String) -> u64 {
    let _ = label;
    secret.0
}

#[test]
fn inputs_are_debug_whatever_the_parameter_types() {
    let inputs = RevealInputs::new(Secret(7), "x".to_string());
    assert_eq!(reveal(Secret(1), String::new()), 1);
    assert_eq!(
        format!("{inputs:?}"),
        r#"RevealInputs { secret: _, label: "x" }"#
    );
    // So a batch error can be unwrapped directly.
    let err = RevealInputs::batch(vec![Secret(1), Secret(2)], vec!["a".to_string()]).unwrap_err();
    assert!(matches!(err, xcs::XcsError::BatchSizeMismatch { .. }));
    assert_eq!(Reveal.call(inputs).unwrap(), 7);
}

// --- standard traits of the inputs ------------------------------------------------------------

/// Whether `$ty` implements `$bound`, answered at compile time without requiring it (autoref
/// specialization, as in the runtime's probes): a missing trait is `false`, not a compile error.
macro_rules! implements {
    ($ty:ty: $($bound:tt)+) => {{
        struct Probe<T>(std::marker::PhantomData<T>);
        #[allow(dead_code)] // One of the two is unused, whichever the answer.
        trait Yes {
            fn answer(&self) -> bool {
                true
            }
        }
        impl<T: $($bound)+> Yes for &Probe<T> {}
        #[allow(dead_code)]
        trait No {
            fn answer(&self) -> bool {
                false
            }
        }
        impl<T> No for Probe<T> {}
        #[allow(clippy::needless_borrow)]
        (&&Probe::<$ty>(std::marker::PhantomData)).answer()
    }};
}

#[test]
fn inputs_of_plain_fields_clone_compare_and_hash() -> Result<(), XcsError> {
    use std::hash::BuildHasher as _;
    let batch = GenerateInputs::batch(vec!["a", "b"], 7)?;
    let copy = batch.clone();
    assert_eq!(copy, batch);
    assert_ne!(batch[0], batch[1]);
    assert_ne!(batch[0], GenerateInputs::new("a".into(), 8));
    // Equal inputs hash alike, whichever way they were built, so they work as set and map keys.
    let state = std::hash::RandomState::new();
    let rebuilt = GenerateInputs::new("a".into(), 7);
    assert_eq!(state.hash_one(&rebuilt), state.hash_one(&batch[0]));
    let seen: std::collections::HashSet<GenerateInputs> = batch.into_iter().chain(copy).collect();
    assert_eq!(seen.len(), 2);
    assert!(seen.contains(&rebuilt));
    // No fields: every value is equal to every other.
    assert_eq!(AnswerInputs::new().clone(), AnswerInputs {});
    assert_eq!(
        state.hash_one(AnswerInputs::new()),
        state.hash_one(AnswerInputs {})
    );
    Ok(())
}

#[test]
fn inputs_have_each_trait_exactly_when_every_field_does() {
    // `String` and `u64` have them all.
    assert!(implements!(GenerateInputs: Clone));
    assert!(implements!(GenerateInputs: PartialEq));
    assert!(implements!(GenerateInputs: Eq));
    assert!(implements!(GenerateInputs: std::hash::Hash));
    assert!(implements!(GenerateInputs: serde::Serialize));
    assert!(implements!(GenerateInputs: serde::de::DeserializeOwned));
    // `f64` is neither `Eq` nor `Hash`.
    assert!(implements!(ScaleInputs: Clone));
    assert!(implements!(ScaleInputs: PartialEq));
    assert!(!implements!(ScaleInputs: Eq));
    assert!(!implements!(ScaleInputs: std::hash::Hash));
    assert!(implements!(ScaleInputs: serde::Serialize));
    assert_eq!(
        ScaleInputs::new(1.5, 2.0).clone(),
        ScaleInputs::new(1.5, 2.0)
    );
    assert_ne!(
        ScaleInputs::new(f64::NAN, 2.0),
        ScaleInputs::new(f64::NAN, 2.0)
    );
    // `Secret` has none of them: `RevealInputs` has none either, yet compiles (and is `Debug`).
    assert!(!implements!(RevealInputs: Clone));
    assert!(!implements!(RevealInputs: PartialEq));
    assert!(!implements!(RevealInputs: Eq));
    assert!(!implements!(RevealInputs: std::hash::Hash));
    assert!(!implements!(RevealInputs: serde::Serialize));
    assert!(!implements!(RevealInputs: serde::de::DeserializeOwned));
    assert!(implements!(RevealInputs: fmt::Debug));
    // One field lacking a trait is enough to lack it.
    assert!(!implements!(TakeOpaqueInputs: Clone));
    assert!(implements!(UnclonableInputs: Clone));
}

#[test]
fn inputs_round_trip_through_serde() {
    let inputs = GenerateInputs::new("a \"quoted\" prompt".into(), 7);
    let json = serde_json::to_string(&inputs).unwrap();
    assert_eq!(json, r#"{"prompt":"a \"quoted\" prompt","seed":7}"#);
    assert_eq!(
        serde_json::from_str::<GenerateInputs>(&json).unwrap(),
        inputs
    );

    // A whole batch, and the forms serde accepts for a struct: fields in any order, a sequence.
    let batch = GenerateInputs::batch(vec!["x", "y"], vec![1, 2]).unwrap();
    let json = serde_json::to_value(&batch).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{"prompt": "x", "seed": 1}, {"prompt": "y", "seed": 2}])
    );
    assert_eq!(
        serde_json::from_value::<Vec<GenerateInputs>>(json).unwrap(),
        batch
    );
    let reordered: GenerateInputs = serde_json::from_str(r#"{"seed":1,"prompt":"x"}"#).unwrap();
    assert_eq!(reordered, batch[0]);
    let sequence: GenerateInputs = serde_json::from_str(r#"["x",1]"#).unwrap();
    assert_eq!(sequence, batch[0]);

    // Field names are the parameter names (raw identifiers without `r#`); no fields is `{}`.
    let raw = serde_json::to_string(&RawNamesInputs::new("t".into(), 1)).unwrap();
    assert_eq!(raw, r#"{"type":"t","match":1}"#);
    assert_eq!(serde_json::to_string(&AnswerInputs::new()).unwrap(), "{}");
    assert_eq!(
        serde_json::from_str::<AnswerInputs>("{}").unwrap(),
        AnswerInputs::new()
    );
    let renamed = serde_json::to_string(&ShoutInputs::new("hey".into())).unwrap();
    assert_eq!(renamed, r#"{"text":"hey"}"#);

    // Errors name the field and the struct.
    let missing = serde_json::from_str::<GenerateInputs>(r#"{"prompt":"x"}"#).unwrap_err();
    assert!(
        missing.to_string().contains("missing field `seed`"),
        "{missing}"
    );
    let wrong = serde_json::from_str::<GenerateInputs>("3").unwrap_err();
    assert!(
        wrong.to_string().contains("struct GenerateInputs"),
        "{wrong}"
    );
}

// --- retries ------------------------------------------------------------------------------------

mod flaky {
    use std::sync::atomic::{AtomicU32, Ordering};

    use xcs::XcsError;

    pub static FLAKY_ATTEMPTS: AtomicU32 = AtomicU32::new(0);
    pub static OPAQUE_ATTEMPTS: AtomicU32 = AtomicU32::new(0);
    pub static PERMANENT_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

    /// Fails its first `failures` attempts (counted across calls), then answers the attempt's
    /// number.
    #[xcs::operator]
    pub fn flaky(failures: u32) -> Result<u32, String> {
        let attempt = FLAKY_ATTEMPTS.fetch_add(1, Ordering::SeqCst) + 1;
        if attempt <= failures {
            Err(format!("attempt {attempt} failed"))
        } else {
            Ok(attempt)
        }
    }

    /// Not `Clone`: an input holding one cannot be copied for another attempt.
    pub struct Ticket(pub u32);

    #[xcs::operator]
    pub fn spend(ticket: Ticket) -> Result<u32, String> {
        OPAQUE_ATTEMPTS.fetch_add(1, Ordering::SeqCst);
        Err(format!("ticket {} refused", ticket.0))
    }

    /// Returns `XcsError`s of its own: they are passed through, not wrapped.
    #[xcs::operator]
    pub fn refuse_for_good(code: u16) -> Result<u32, XcsError> {
        PERMANENT_ATTEMPTS.fetch_add(1, Ordering::SeqCst);
        Err(XcsError::permanent(
            "refuse_for_good",
            format!("code {code}"),
        ))
    }

    #[xcs::operator]
    pub fn busy(seconds: u64) -> Result<u32, xcs::XcsError> {
        let wait = std::time::Duration::from_secs(seconds);
        Err(XcsError::retry_after("busy", wait, "429 too many requests"))
    }
}

#[test]
fn generated_operators_are_retried_with_a_copy_of_their_input() {
    use flaky::{FLAKY_ATTEMPTS, Flaky, FlakyInputs};
    use std::sync::atomic::Ordering;
    assert!(Flaky.__xcs_clone_input().is_some());
    let output = execution_options!(max_retries = 2 => Flaky.call(FlakyInputs::new(2))).unwrap();
    assert_eq!(output, 3, "succeeds on the third attempt");
    assert_eq!(FLAKY_ATTEMPTS.load(Ordering::SeqCst), 3);
}

#[test]
fn an_input_that_cannot_be_copied_runs_once() {
    use flaky::{OPAQUE_ATTEMPTS, Spend, SpendInputs, Ticket};
    use std::sync::atomic::Ordering;
    // Compiles whatever the field, and runs once (`tracing` warns that it is not retried).
    assert!(Spend.__xcs_clone_input().is_none());
    let error =
        execution_options!(max_retries = 2 => Spend.call(SpendInputs::new(Ticket(7)))).unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert_eq!(OPAQUE_ATTEMPTS.load(Ordering::SeqCst), 1);
}

#[test]
fn an_xcs_error_of_the_body_keeps_what_it_says_about_retrying() {
    use flaky::{Busy, BusyInputs, PERMANENT_ATTEMPTS, RefuseForGood, RefuseForGoodInputs};
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    let error = execution_options!(max_retries = 3 => {
        RefuseForGood.call(RefuseForGoodInputs::new(400))
    })
    .unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert!(
        matches!(&error, XcsError::Operator { operator, .. } if operator == "refuse_for_good"),
        "{error:?}"
    );
    assert_eq!(PERMANENT_ATTEMPTS.load(Ordering::SeqCst), 1, "not retried");

    let error = Busy.call(BusyInputs::new(30)).unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert_eq!(error.retry_hint(), Some(Duration::from_secs(30)));

    // Any other error type is wrapped, and retryable.
    let error = ParseNumber
        .call(ParseNumberInputs::new("x".into()))
        .unwrap_err();
    assert!(
        error.is_retryable() && error.retry_hint().is_none(),
        "{error}"
    );
}

// --- versions -----------------------------------------------------------------------------------

#[xcs::operator(version = 3)]
fn summarize(text: String) -> String {
    text.chars().take(10).collect()
}

#[test]
fn the_version_is_the_argument_or_0() {
    assert_eq!(Summarize.__xcs_version(), 3);
    assert_eq!(Generate.__xcs_version(), 0);
    // Handles and batches report their operator's version.
    assert_eq!(std::sync::Arc::new(Summarize).__xcs_version(), 3);
    static SUMMARIZE: Summarize = Summarize;
    assert_eq!(Operator::__xcs_version(&&SUMMARIZE), 3);
    assert_eq!(vmap(Summarize).__xcs_version(), 3);
    assert_eq!(pmap(Summarize, 2).__xcs_version(), 3);
}

#[xcs::operator(name = "Renamed")]
fn original_name(x: u64) -> u64 {
    x + 1
}

mod ops {
    /// A public operator in a module: the generated items share the function's visibility.
    #[xcs::operator]
    #[inline]
    pub fn shout(text: String) -> String {
        text.to_uppercase()
    }
}

#[xcs::operator]
fn parse_num(text: String) -> Result<i64, std::num::ParseIntError> {
    text.parse::<i64>()
}

#[xcs::operator]
fn io_fallible(x: u32) -> std::io::Result<u32> {
    if x == 0 {
        Err(std::io::Error::other("zero is not allowed"))
    } else {
        Ok(x * 2)
    }
}

#[xcs::operator]
fn boxed_fallible(x: u32) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
    if x == 0 {
        Err("zero again".into())
    } else {
        Ok(x)
    }
}

#[test]
fn operator_macro_keeps_function_and_adds_struct_and_inputs() {
    let _s = serial();
    assert_eq!(generate("hi".to_string(), 3), "hi#3");
    let g = Generate;
    assert_eq!(g.name(), "generate");
    let out = g
        .call(GenerateInputs {
            prompt: "p".to_string(),
            seed: 9,
        })
        .unwrap();
    assert_eq!(out, "p#9");
    let out = g
        .forward(GenerateInputs {
            prompt: "q".to_string(),
            seed: 1,
        })
        .unwrap();
    assert_eq!(out, "q#1");

    fn assert_types<O: Operator<Input = GenerateInputs, Output = String>>(_: &O) {}
    assert_types(&g);

    // `name = "…"` overrides the struct's name.
    assert_eq!(original_name(1), 2);
    assert_eq!(Renamed.call(RenamedInputs { x: 1 }).unwrap(), 2);

    // Visibility: a `pub fn` in a module gives public generated items.
    assert_eq!(ops::shout("abc".to_string()), "ABC");
    let out = ops::Shout
        .call(ops::ShoutInputs {
            text: "x".to_string(),
        })
        .unwrap();
    assert_eq!(out, "X");
    assert_eq!(ops::Shout.name(), "shout");
}

#[test]
fn inputs_batch_broadcast_and_batched() {
    let _s = serial();
    let items = GenerateInputs::batch(vec!["a".to_string(), "b".to_string()], 7u64).unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].prompt, "a");
    assert_eq!(items[1].prompt, "b");
    assert!(items.iter().all(|i| i.seed == 7));

    let items = GenerateInputs::batch("same".to_string(), vec![1u64, 2, 3]).unwrap();
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|i| i.prompt == "same"));
    assert_eq!(
        items.iter().map(|i| i.seed).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );

    let items =
        GenerateInputs::batch(vec!["x".to_string(), "y".to_string()], vec![1u64, 2]).unwrap();
    assert_eq!(items[1].prompt, "y");
    assert_eq!(items[1].seed, 2);

    // No batched argument: one item.
    let items = GenerateInputs::batch("one".to_string(), 1u64).unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].prompt, "one");

    // An empty batched argument: an empty batch.
    let items = GenerateInputs::batch(Vec::<String>::new(), 1u64).unwrap();
    assert!(items.is_empty());

    // Explicit `Axis` values work too.
    let a: Axis<String> = vec!["m".to_string()].into();
    let b: Axis<u64> = 5u64.into();
    let items = GenerateInputs::batch(a, b).unwrap();
    assert_eq!(items.len(), 1);

    // And the batch feeds `vmap`, in order.
    let items = GenerateInputs::batch(
        vec!["a".to_string(), "b".to_string(), "c".to_string()],
        0u64,
    )
    .unwrap();
    assert_eq!(
        vmap(Generate).call(items).unwrap(),
        vec!["a#0", "b#0", "c#0"]
    );
}

#[test]
fn inputs_batch_size_mismatch() {
    let _s = serial();
    let err = GenerateInputs::batch(vec!["a".to_string(), "b".to_string()], vec![1u64, 2, 3])
        .expect_err("mismatch");
    assert!(matches!(err, XcsError::BatchSizeMismatch { .. }), "{err:?}");
    assert_lowercase_led(&err);
    // An empty batched argument against a non-empty one is a mismatch as well.
    let err = GenerateInputs::batch(Vec::<String>::new(), vec![1u64]).expect_err("mismatch");
    assert!(matches!(err, XcsError::BatchSizeMismatch { .. }), "{err:?}");
}

#[test]
fn fallible_operator_maps_error_to_operator_variant() {
    let _s = serial();
    assert_eq!(
        ParseNum
            .call(ParseNumInputs {
                text: "41".to_string()
            })
            .unwrap(),
        41i64
    );
    let err = ParseNum
        .call(ParseNumInputs {
            text: "nope".to_string(),
        })
        .unwrap_err();
    assert!(matches!(err, XcsError::Operator { .. }), "{err:?}");
    assert!(err.to_string().contains("parse_num"), "{err}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the source is carried"
    );
    assert_lowercase_led(&err);

    // The function itself keeps its own signature.
    assert!(parse_num("x".to_string()).is_err());

    // Aliases such as `io::Result<T>`.
    assert_eq!(IoFallible.call(IoFallibleInputs { x: 2 }).unwrap(), 4u32);
    let err = IoFallible.call(IoFallibleInputs { x: 0 }).unwrap_err();
    assert!(matches!(err, XcsError::Operator { .. }), "{err:?}");
    let source = std::error::Error::source(&err).expect("source");
    assert!(source.to_string().contains("zero is not allowed"));

    // A boxed error.
    assert_eq!(
        BoxedFallible.call(BoxedFallibleInputs { x: 3 }).unwrap(),
        3u32
    );
    let err = BoxedFallible
        .call(BoxedFallibleInputs { x: 0 })
        .unwrap_err();
    assert!(matches!(err, XcsError::Operator { .. }), "{err:?}");
}

#[test]
fn operator_impls_for_arc_and_static_ref() {
    let _s = serial();
    fn run<O: Operator<Input = u64, Output = u64>>(o: O, x: u64) -> u64 {
        o.call(x).unwrap()
    }
    assert_eq!(run(Arc::new(Double), 2), 4);
    assert_eq!(run(&DOUBLE, 3), 6);
    assert_eq!(Arc::new(Double).name(), "double");
    assert_eq!(vmap(Arc::new(Double)).call(vec![1, 2]).unwrap(), vec![2, 4]);
    assert_eq!(vmap(&DOUBLE).call(vec![5]).unwrap(), vec![10]);
    assert_eq!(pmap(&DOUBLE, 2).call(vec![1, 2, 3]).unwrap(), vec![2, 4, 6]);
    fn is_operator<O: Operator>() {}
    is_operator::<Arc<Double>>();
    is_operator::<&'static Double>();
    is_operator::<xcs::VMap<Double>>();
    is_operator::<xcs::PMap<Double>>();
}
