//! Checking the entries against the option table of `xcs-core`.
//!
//! Names, expected-value texts and value parsers all come from `xcs_core::options`, the table the
//! run-time parser (`OptionsPatch::from_pairs`) reads too, so the compile-time and run-time checks
//! cannot disagree. Literals are checked here, completely; any other expression is left for the
//! type checker and the `convert` functions of the runtime.

use std::collections::HashSet;

use syn::{Expr, ExprLit, Lit, UnOp};
use xcs_core::options::{
    CLUSTER_BACKEND, DeviceStrategy, Hedge, OptionKind, OptionSpec, Scheduler, cost_budget_from,
    lookup, rate_limit_from, suggest, timeout_from_secs, valid_names,
};

use super::ast::Entry;
use crate::errors::Errors;

/// A checked value, ready to be expanded.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    /// A boolean literal.
    Bool(bool),
    /// A `max_workers` literal: `None` or a count of at least 1 (`u128::MAX` for one beyond
    /// `u128`; the runtime reads counts too large for a `usize` as `usize::MAX`).
    Workers(Option<u128>),
    /// A `timeout_seconds` literal: `None` or a finite number of seconds that makes a non-zero
    /// `Duration`.
    Timeout(Option<f64>),
    /// A built-in `device_strategy` literal.
    Device(DeviceStrategy),
    /// A `scheduler` literal.
    Scheduler(Option<Scheduler>),
    /// A `max_retries` literal.
    Retries(u32),
    /// A `rate_limit` literal: `None` or a finite number of calls per second > 0.
    Rate(Option<f64>),
    /// A `cache_dir` literal: `None` or a non-empty path.
    Directory(Option<String>),
    /// A `token_budget` literal: `None` or a count of at least 1 (`u64::MAX` for one beyond
    /// `u64`, as the run-time parser reads it).
    Tokens(Option<u64>),
    /// A `cost_budget` literal: `None` or a finite number > 0.
    Cost(Option<f64>),
    /// A `hedge_after` literal: `None`, a delay in seconds (finite, > 0) or a quantile
    /// (`"p50"` … `"p99"`, kept as written).
    Hedge(Option<HedgeLiteral>),
    /// Not a literal: converted at run time by `::xcs::__private::convert`.
    Runtime(Expr),
}

/// A checked `hedge_after` literal.
#[derive(Clone, Debug)]
pub(crate) enum HedgeLiteral {
    /// A delay in seconds.
    Seconds(f64),
    /// A quantile, as written (`"p95"`).
    Quantile(String),
}

/// One entry that passed validation.
pub(crate) struct Setting {
    pub(crate) spec: &'static OptionSpec,
    pub(crate) value: Value,
}

/// What validation leaves to expand.
#[derive(Default)]
pub(crate) struct Validated {
    /// The valid settings, in the order written (first occurrence of each option).
    pub(crate) settings: Vec<Setting>,
    /// Values of entries that were rejected; the expansion still mentions them so the user's
    /// variables do not turn up as unused on top of the real error.
    pub(crate) rejected: Vec<Expr>,
}

/// Checks every entry, reporting every problem into `errors`.
pub(crate) fn validate(entries: Vec<Entry>, errors: &Errors) -> Validated {
    let mut out = Validated::default();
    let mut seen: HashSet<&'static str> = HashSet::new();
    // Literal `use_parallel` and `scheduler` values, for the consistency check.
    let mut literal_parallel: Option<bool> = None;
    let mut literal_scheduler: Option<(Scheduler, Expr)> = None;

    for entry in entries {
        let name = entry.key.unraw_string();
        let Some(spec) = lookup(&name) else {
            errors.at(entry.key.span(), unknown_option(&name));
            out.rejected.push(entry.value);
            continue;
        };
        let duplicate = !seen.insert(spec.name);
        if duplicate {
            errors.at(
                entry.key.span(),
                format_args!("duplicate execution option `{}`", spec.name),
            );
        }
        let checked = check_value(spec, &entry.value, errors);
        match checked {
            Some(value) if !duplicate => {
                match value {
                    Value::Bool(b) if spec.name == "use_parallel" => literal_parallel = Some(b),
                    Value::Scheduler(Some(s)) => literal_scheduler = Some((s, entry.value.clone())),
                    _ => {}
                }
                out.settings.push(Setting { spec, value });
            }
            _ => out.rejected.push(entry.value),
        }
    }

    if let (Some(parallel), Some((scheduler, expr))) = (literal_parallel, &literal_scheduler) {
        if scheduler.use_parallel() != parallel {
            errors.spanned(
                expr,
                format_args!(
                    "scheduler \"{scheduler}\" implies `use_parallel = {}`, which contradicts \
                     `use_parallel = {parallel}`; remove one of the two",
                    scheduler.use_parallel()
                ),
            );
            out.settings
                .retain(|setting| setting.spec.kind != OptionKind::Scheduler);
        }
    }
    out
}

trait UnrawString {
    fn unraw_string(&self) -> String;
}

impl UnrawString for syn::Ident {
    fn unraw_string(&self) -> String {
        use syn::ext::IdentExt;
        self.unraw().to_string()
    }
}

/// `Invalid execution option: <name>; did you mean `<option>`? (valid options: …)`.
pub(crate) fn unknown_option(name: &str) -> String {
    let hint = suggest(name)
        .map(|near| format!("; did you mean `{near}`?"))
        .unwrap_or_default();
    format!(
        "Invalid execution option: {name}{hint} (valid options: {})",
        valid_names()
    )
}

/// A literal as the macros see it, after peeling parentheses and invisible groups.
#[derive(Debug)]
pub(crate) enum Literal {
    Bool(bool),
    /// An integer; `None` if it does not fit in a `u128`.
    Int {
        value: Option<u128>,
        negative: bool,
    },
    Float {
        value: f64,
        negative: bool,
    },
    Str(String),
    /// The token `None` (or `Option::None`, `std::option::Option::None`, …).
    None,
    /// `Some(literal)`: the literal, for the options that also take `None`.
    Some(Box<Literal>),
    /// A character, byte or byte-string literal: a literal, but of no kind an option takes.
    Other,
}

fn peel(mut expr: &Expr) -> &Expr {
    loop {
        match expr {
            Expr::Paren(inner) => expr = &inner.expr,
            Expr::Group(inner) => expr = &inner.expr,
            _ => return expr,
        }
    }
}

/// `Some(literal)` classifies as the literal for the options that take `None` too.
pub(crate) fn classify(expr: &Expr) -> Option<Literal> {
    let expr = peel(expr);
    match expr {
        Expr::Lit(ExprLit { lit, attrs }) if attrs.is_empty() => Some(classify_lit(lit, false)),
        Expr::Unary(unary) if matches!(unary.op, UnOp::Neg(_)) && unary.attrs.is_empty() => {
            match peel(&unary.expr) {
                Expr::Lit(ExprLit { lit, attrs }) if attrs.is_empty() => {
                    match classify_lit(lit, true) {
                        literal @ (Literal::Int { .. } | Literal::Float { .. }) => Some(literal),
                        _ => None,
                    }
                }
                _ => None,
            }
        }
        Expr::Path(path)
            if path.attrs.is_empty()
                && path.qself.is_none()
                && is_option_path(&path.path, "None") =>
        {
            Some(Literal::None)
        }
        Expr::Call(call) if call.attrs.is_empty() && call.args.len() == 1 => match &*call.func {
            Expr::Path(path) if path.qself.is_none() && is_option_path(&path.path, "Some") => {
                classify(&call.args[0]).map(|inner| Literal::Some(Box::new(inner)))
            }
            _ => None,
        },
        _ => None,
    }
}

/// `variant` (`None` or `Some`), or a path to it through `Option` without generic arguments.
fn is_option_path(path: &syn::Path, variant: &str) -> bool {
    let segments: Vec<_> = path.segments.iter().collect();
    let Some((last, before)) = segments.split_last() else {
        return false;
    };
    let plain = |s: &&syn::PathSegment| s.arguments.is_none();
    last.ident == variant
        && plain(last)
        && before.iter().all(plain)
        && before.last().is_none_or(|s| s.ident == "Option")
}

fn classify_lit(lit: &Lit, negative: bool) -> Literal {
    match lit {
        Lit::Bool(b) => Literal::Bool(b.value),
        Lit::Int(int) => Literal::Int {
            value: int.base10_parse::<u128>().ok(),
            negative,
        },
        Lit::Float(float) => match float.base10_parse::<f64>() {
            Ok(value) => Literal::Float { value, negative },
            Err(_) => Literal::Other,
        },
        Lit::Str(s) => Literal::Str(s.value()),
        _ => Literal::Other,
    }
}

/// Checks one value against its option. `None` if it was rejected (and reported).
fn check_value(spec: &'static OptionSpec, expr: &Expr, errors: &Errors) -> Option<Value> {
    let Some(literal) = classify(expr) else {
        return Some(Value::Runtime(expr.clone()));
    };
    let takes_none = spec.kind.takes_none();
    let literal = match literal {
        Literal::Some(inner)
            if takes_none && !matches!(*inner, Literal::None | Literal::Some(_)) =>
        {
            *inner
        }
        other => other,
    };
    let name = spec.name;
    let wrong_kind = || {
        errors.spanned(
            expr,
            format_args!("expected `{name}` to be {}", spec.expected),
        );
        None
    };
    match (spec.kind, literal) {
        (OptionKind::Bool, Literal::Bool(b)) => Some(Value::Bool(b)),
        (OptionKind::Workers, Literal::None) => Some(Value::Workers(None)),
        (OptionKind::Workers, Literal::Int { value, negative }) => match value {
            Some(0) => {
                errors.spanned(expr, format_args!("`{name}` may not be 0"));
                None
            }
            _ if negative => {
                errors.spanned(expr, format_args!("`{name}` may not be negative"));
                None
            }
            n => Some(Value::Workers(Some(n.unwrap_or(u128::MAX)))),
        },
        (OptionKind::Timeout, Literal::None) => Some(Value::Timeout(None)),
        (OptionKind::Timeout, Literal::Int { value, negative }) => {
            // Beyond `u128` the float conversion is what decides (it is too large either way).
            let seconds = value.map_or(f64::INFINITY, |v| v as f64);
            check_timeout(name, expr, seconds, negative, errors)
        }
        (OptionKind::Timeout, Literal::Float { value, negative }) => {
            check_timeout(name, expr, value, negative, errors)
        }
        (OptionKind::Device, Literal::Str(s)) => match DeviceStrategy::builtin(&s) {
            Some(strategy) => Some(Value::Device(strategy)),
            // The backend name the cluster registers under (`xcs::cluster`): resolved when the
            // batch runs, like `DeviceStrategy::named("cluster")`.
            None if s.eq_ignore_ascii_case(CLUSTER_BACKEND) => {
                Some(Value::Device(DeviceStrategy::named(CLUSTER_BACKEND)))
            }
            None => {
                let builtins = [
                    DeviceStrategy::Auto,
                    DeviceStrategy::Cpu,
                    DeviceStrategy::Gpu,
                ]
                .map(DeviceStrategy::as_str);
                let known = [builtins[0], builtins[1], builtins[2], CLUSTER_BACKEND];
                errors.spanned(
                    expr,
                    format_args!(
                        "unknown `{name}` {s:?}{} (expected {}, or `DeviceStrategy::named({s:?})` \
                         for a registered backend)",
                        did_you_mean(&s, &known),
                        quoted_list(&builtins, ""),
                    ),
                );
                None
            }
        },
        (OptionKind::Scheduler, Literal::None) => Some(Value::Scheduler(None)),
        (OptionKind::Scheduler, Literal::Str(s)) => match Scheduler::from_name(&s) {
            Some(scheduler) => Some(Value::Scheduler(Some(scheduler))),
            None => {
                let names = Scheduler::ALL.map(Scheduler::as_str);
                errors.spanned(
                    expr,
                    format_args!(
                        "unknown `{name}` {s:?}{} (expected {})",
                        did_you_mean(&s, &names),
                        quoted_list(&names, " or `None`"),
                    ),
                );
                None
            }
        },
        (OptionKind::Retries, Literal::Int { value, negative }) => match value {
            _ if negative && value != Some(0) => {
                errors.spanned(expr, format_args!("`{name}` may not be negative"));
                None
            }
            Some(n) if n <= u128::from(u32::MAX) => Some(Value::Retries(n as u32)),
            _ => {
                errors.spanned(
                    expr,
                    format_args!("`{name}` may not be more than {}", u32::MAX),
                );
                None
            }
        },
        (OptionKind::Rate, Literal::None) => Some(Value::Rate(None)),
        (OptionKind::Rate, Literal::Int { value, negative }) => {
            let rate = value.map_or(f64::INFINITY, |v| v as f64);
            check_rate(name, expr, rate, negative, errors)
        }
        (OptionKind::Rate, Literal::Float { value, negative }) => {
            check_rate(name, expr, value, negative, errors)
        }
        (OptionKind::Directory, Literal::None) => Some(Value::Directory(None)),
        (OptionKind::Directory, Literal::Str(path)) => {
            if path.is_empty() {
                errors.spanned(expr, format_args!("`{name}` may not be an empty path"));
                None
            } else {
                Some(Value::Directory(Some(path)))
            }
        }
        (OptionKind::Tokens, Literal::None) => Some(Value::Tokens(None)),
        (OptionKind::Tokens, Literal::Int { value, negative }) => match value {
            Some(0) => {
                errors.spanned(expr, format_args!("`{name}` may not be 0"));
                None
            }
            _ if negative => {
                errors.spanned(expr, format_args!("`{name}` may not be negative"));
                None
            }
            n => Some(Value::Tokens(Some(
                n.map_or(u64::MAX, |n| u64::try_from(n).unwrap_or(u64::MAX)),
            ))),
        },
        (OptionKind::Cost, Literal::None) => Some(Value::Cost(None)),
        (OptionKind::Cost, Literal::Int { value, negative }) => {
            let cost = value.map_or(f64::INFINITY, |v| v as f64);
            check_positive(name, expr, cost, negative, errors).map(|v| Value::Cost(Some(v)))
        }
        (OptionKind::Cost, Literal::Float { value, negative }) => {
            check_positive(name, expr, value, negative, errors).map(|v| Value::Cost(Some(v)))
        }
        (OptionKind::Hedge, Literal::None) => Some(Value::Hedge(None)),
        (OptionKind::Hedge, Literal::Int { value, negative }) => {
            let seconds = value.map_or(f64::INFINITY, |v| v as f64);
            check_timeout(name, expr, seconds, negative, errors)
                .map(|_| Value::Hedge(Some(HedgeLiteral::Seconds(seconds))))
        }
        (OptionKind::Hedge, Literal::Float { value, negative }) => {
            check_timeout(name, expr, value, negative, errors)
                .map(|_| Value::Hedge(Some(HedgeLiteral::Seconds(value))))
        }
        (OptionKind::Hedge, Literal::Str(text)) => {
            if Hedge::parse(&text).is_some_and(|h| h.quantile_percent().is_some()) {
                return Some(Value::Hedge(Some(HedgeLiteral::Quantile(text))));
            }
            let quantile = text
                .strip_prefix(['p', 'P'])
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
            if quantile {
                errors.spanned(
                    expr,
                    format_args!(
                        "`{name}` takes a quantile from \"p{}\" to \"p{}\", not {text:?}",
                        Hedge::MIN_QUANTILE,
                        Hedge::MAX_QUANTILE
                    ),
                );
            } else {
                errors.spanned(
                    expr,
                    format_args!("unknown `{name}` {text:?} (expected {})", spec.expected),
                );
            }
            None
        }
        _ => wrong_kind(),
    }
}

/// A finite number greater than 0 (a `cost_budget`, a rate of a resource), reported otherwise.
pub(crate) fn check_positive(
    name: &str,
    expr: &Expr,
    value: f64,
    negative: bool,
    errors: &Errors,
) -> Option<f64> {
    let problem = if negative || value == 0.0 {
        "must be greater than 0"
    } else {
        match cost_budget_from(value) {
            Some(value) => return Some(value),
            None => "must be finite",
        }
    };
    errors.spanned(expr, format_args!("`{name}` {problem}"));
    None
}

fn check_rate(
    name: &str,
    expr: &Expr,
    rate: f64,
    negative: bool,
    errors: &Errors,
) -> Option<Value> {
    let problem = if negative || rate == 0.0 {
        "must be greater than 0"
    } else {
        match rate_limit_from(rate) {
            Some(rate) => return Some(Value::Rate(Some(rate))),
            None => "must be finite",
        }
    };
    errors.spanned(expr, format_args!("`{name}` {problem}"));
    None
}

fn check_timeout(
    name: &str,
    expr: &Expr,
    seconds: f64,
    negative: bool,
    errors: &Errors,
) -> Option<Value> {
    let problem = if negative || seconds == 0.0 {
        "must be greater than 0"
    } else if !seconds.is_finite() {
        "must be finite"
    } else {
        match timeout_from_secs(seconds) {
            Some(_) => return Some(Value::Timeout(Some(seconds))),
            None if seconds < 1.0 => "is shorter than a nanosecond",
            None => "is too large for a `Duration`",
        }
    };
    errors.spanned(expr, format_args!("`{name}` {problem}"));
    None
}

/// `"a", "b" or "c"`, then `tail`.
fn quoted_list(items: &[&str], tail: &str) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("{item:?}")).collect();
    match (quoted.split_last(), tail.is_empty()) {
        (Some((last, rest)), true) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => format!("{}{tail}", quoted.join(", ")),
    }
}

/// `; did you mean "x"?` for the candidate nearest to `word`, if it is near.
/// Words of three letters or fewer are not corrected: `"tpu"` is more likely a backend than a
/// typo of `"cpu"`.
fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    let word = word.to_ascii_lowercase();
    if word.chars().count() <= 3 {
        return String::new();
    }
    candidates
        .iter()
        .map(|candidate| (edit_distance(&word, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| format!("; did you mean {candidate:?}?"))
        .unwrap_or_default()
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::ast::{MacroKind, parse};
    use proc_macro2::Span;
    use quote::quote;

    fn check(tokens: proc_macro2::TokenStream) -> (Validated, Vec<String>) {
        let errors = Errors::new();
        let input = parse(tokens, MacroKind::Global, &errors);
        let validated = validate(input.entries, &errors);
        let messages = errors
            .into_error()
            .map(|e| e.into_iter().map(|e| e.to_string()).collect())
            .unwrap_or_default();
        (validated, messages)
    }

    fn only_error(tokens: proc_macro2::TokenStream) -> String {
        let (_, mut messages) = check(tokens);
        assert_eq!(messages.len(), 1, "{messages:?}");
        messages.remove(0)
    }

    #[test]
    fn accepts_every_literal_form() {
        let (validated, messages) = check(quote!(
            use_parallel = true,
            max_workers = 4,
            device_strategy = "GPU",
            enable_caching = (false),
            trace_execution = true,
            timeout_seconds = 0.5,
            scheduler = "wave",
        ));
        assert!(messages.is_empty(), "{messages:?}");
        let values: Vec<String> = validated
            .settings
            .iter()
            .map(|s| format!("{}={:?}", s.spec.name, s.value))
            .collect();
        assert_eq!(
            values,
            [
                "use_parallel=Bool(true)",
                "max_workers=Workers(Some(4))",
                "device_strategy=Device(Gpu)",
                "enable_caching=Bool(false)",
                "trace_execution=Bool(true)",
                "timeout_seconds=Timeout(Some(0.5))",
                "scheduler=Scheduler(Some(Wave))",
            ]
        );
    }

    #[test]
    fn none_forms() {
        let (validated, messages) = check(quote!(
            max_workers = None,
            timeout_seconds = Option::None,
            scheduler = ::core::option::Option::None,
        ));
        assert!(messages.is_empty(), "{messages:?}");
        assert!(
            validated
                .settings
                .iter()
                .all(|s| !matches!(s.value, Value::Runtime(_)))
        );
        let (validated, _) = check(quote!(max_workers = Option::<usize>::None));
        assert!(matches!(validated.settings[0].value, Value::Runtime(_)));
        let (validated, _) = check(quote!(max_workers = foo::None));
        assert!(matches!(validated.settings[0].value, Value::Runtime(_)));
    }

    #[test]
    fn some_of_a_literal_is_checked_like_the_literal() {
        let (validated, messages) = check(quote!(
            max_workers = Some(2),
            timeout_seconds = Option::Some(1.5),
            scheduler = Some("wave"),
        ));
        assert!(messages.is_empty(), "{messages:?}");
        let values: Vec<String> = validated
            .settings
            .iter()
            .map(|s| format!("{:?}", s.value))
            .collect();
        assert_eq!(
            values,
            [
                "Workers(Some(2))",
                "Timeout(Some(1.5))",
                "Scheduler(Some(Wave))"
            ]
        );
        assert_eq!(
            only_error(quote!(max_workers = Some(0))),
            "`max_workers` may not be 0"
        );
        assert!(
            only_error(quote!(use_parallel = Some(true))).starts_with("expected `use_parallel`")
        );
        assert!(only_error(quote!(max_workers = Some(None))).starts_with("expected `max_workers`"));
        let (validated, _) = check(quote!(max_workers = Some(n)));
        assert!(matches!(validated.settings[0].value, Value::Runtime(_)));
    }

    #[test]
    fn non_literals_are_left_to_the_runtime() {
        let (validated, messages) = check(quote!(
            use_parallel = !x,
            max_workers = n,
            timeout_seconds = -x
        ));
        assert!(messages.is_empty());
        assert!(
            validated
                .settings
                .iter()
                .all(|s| matches!(s.value, Value::Runtime(_)))
        );
    }

    #[test]
    fn unknown_names_suggest_and_list_the_table() {
        let message = only_error(quote!(use_paralel = true));
        assert_eq!(
            message,
            format!(
                "Invalid execution option: use_paralel; did you mean `use_parallel`? (valid options: {})",
                valid_names()
            )
        );
        let message = only_error(quote!(invalid_option = true));
        assert!(message.starts_with(
            "Invalid execution option: invalid_option (valid options: `use_parallel`"
        ));
    }

    #[test]
    fn duplicates_name_the_option() {
        assert_eq!(
            only_error(quote!(max_workers = 2, max_workers = 3)),
            "duplicate execution option `max_workers`"
        );
    }

    #[test]
    fn wrong_kinds_use_the_table_text() {
        assert_eq!(
            only_error(quote!(use_parallel = 1)),
            "expected `use_parallel` to be `true` or `false`"
        );
        assert_eq!(
            only_error(quote!(use_parallel = None)),
            "expected `use_parallel` to be `true` or `false`"
        );
        assert_eq!(
            only_error(quote!(max_workers = "4")),
            "expected `max_workers` to be an integer of at least 1, or `None`"
        );
        assert_eq!(
            only_error(quote!(max_workers = 2.0)),
            "expected `max_workers` to be an integer of at least 1, or `None`"
        );
        assert!(
            only_error(quote!(timeout_seconds = "1"))
                .starts_with("expected `timeout_seconds` to be")
        );
        assert!(
            only_error(quote!(device_strategy = 3)).starts_with("expected `device_strategy` to be")
        );
        assert!(
            only_error(quote!(device_strategy = None))
                .starts_with("expected `device_strategy` to be")
        );
        assert!(only_error(quote!(scheduler = 'x')).starts_with("expected `scheduler` to be"));
    }

    #[test]
    fn out_of_range() {
        assert_eq!(
            only_error(quote!(max_workers = 0)),
            "`max_workers` may not be 0"
        );
        assert_eq!(
            only_error(quote!(max_workers = -2)),
            "`max_workers` may not be negative"
        );
        assert!(
            only_error(quote!(
                max_workers = -99999999999999999999999999999999999999999
            ))
            .contains("negative")
        );
        // Any count of at least 1 is accepted; beyond `u128`, as the largest.
        for (tokens, expected) in [
            (quote!(max_workers = 1024), 1024),
            (quote!(max_workers = 1025), 1025),
            (quote!(max_workers = 5_000), 5000),
            (quote!(max_workers = 1_000_000), 1_000_000),
            (
                quote!(max_workers = 18446744073709551615),
                u128::from(u64::MAX),
            ),
            (
                quote!(max_workers = Some(99999999999999999999999999999999999999999)),
                u128::MAX,
            ),
        ] {
            let (validated, messages) = check(tokens);
            assert!(messages.is_empty(), "{messages:?}");
            match validated.settings[0].value {
                Value::Workers(Some(n)) => assert_eq!(n, expected),
                ref other => panic!("{other:?}"),
            }
        }
        for tokens in [
            quote!(timeout_seconds = 0),
            quote!(timeout_seconds = 0.0),
            quote!(timeout_seconds = -1),
            quote!(timeout_seconds = -0.5),
        ] {
            assert_eq!(
                only_error(tokens),
                "`timeout_seconds` must be greater than 0"
            );
        }
        assert_eq!(
            only_error(quote!(timeout_seconds = 1e400)),
            "`timeout_seconds` must be finite"
        );
        assert_eq!(
            only_error(quote!(timeout_seconds = 1e-12)),
            "`timeout_seconds` is shorter than a nanosecond"
        );
        assert_eq!(
            only_error(quote!(timeout_seconds = 1e30)),
            "`timeout_seconds` is too large for a `Duration`"
        );
    }

    #[test]
    fn new_options_accept_their_literals() {
        let (validated, messages) = check(quote!(
            max_retries = 0,
            rate_limit = 2,
            cache_dir = "/var/cache/xcs",
            show_progress = true,
        ));
        assert!(messages.is_empty(), "{messages:?}");
        let values: Vec<String> = validated
            .settings
            .iter()
            .map(|s| format!("{}={:?}", s.spec.name, s.value))
            .collect();
        assert_eq!(
            values,
            [
                "max_retries=Retries(0)",
                "rate_limit=Rate(Some(2.0))",
                "cache_dir=Directory(Some(\"/var/cache/xcs\"))",
                "show_progress=Bool(true)",
            ]
        );
        let (validated, messages) = check(quote!(
            max_retries = 4294967295,
            rate_limit = Some(0.5),
            cache_dir = Some("c"),
        ));
        assert!(messages.is_empty(), "{messages:?}");
        let values: Vec<String> = validated
            .settings
            .iter()
            .map(|s| format!("{:?}", s.value))
            .collect();
        assert_eq!(
            values,
            [
                "Retries(4294967295)",
                "Rate(Some(0.5))",
                "Directory(Some(\"c\"))"
            ]
        );
        let (validated, messages) = check(quote!(rate_limit = None, cache_dir = None));
        assert!(messages.is_empty(), "{messages:?}");
        assert!(
            validated
                .settings
                .iter()
                .all(|s| matches!(s.value, Value::Rate(None) | Value::Directory(None)))
        );
    }

    #[test]
    fn new_options_reject_bad_literals() {
        let cases = [
            (
                quote!(max_retries = -1),
                "`max_retries` may not be negative",
            ),
            (
                quote!(max_retries = 4294967296),
                "`max_retries` may not be more than 4294967295",
            ),
            (
                quote!(max_retries = 1.5),
                "expected `max_retries` to be an integer from 0 to 4294967295",
            ),
            (
                quote!(max_retries = "3"),
                "expected `max_retries` to be an integer from 0 to 4294967295",
            ),
            (
                quote!(max_retries = None),
                "expected `max_retries` to be an integer from 0 to 4294967295",
            ),
            (
                quote!(rate_limit = 0),
                "`rate_limit` must be greater than 0",
            ),
            (
                quote!(rate_limit = 0.0),
                "`rate_limit` must be greater than 0",
            ),
            (
                quote!(rate_limit = -2),
                "`rate_limit` must be greater than 0",
            ),
            (quote!(rate_limit = 1e400), "`rate_limit` must be finite"),
            (
                quote!(rate_limit = "5"),
                "expected `rate_limit` to be a finite number of calls per second greater than 0, or `None`",
            ),
            (
                quote!(cache_dir = ""),
                "`cache_dir` may not be an empty path",
            ),
            (
                quote!(cache_dir = Some("")),
                "`cache_dir` may not be an empty path",
            ),
            (
                quote!(cache_dir = 3),
                "expected `cache_dir` to be a non-empty directory path, or `None`",
            ),
            (
                quote!(cache_dir = true),
                "expected `cache_dir` to be a non-empty directory path, or `None`",
            ),
            (
                quote!(show_progress = 1),
                "expected `show_progress` to be `true` or `false`",
            ),
        ];
        for (tokens, expected) in cases {
            assert_eq!(only_error(tokens), expected);
        }
    }

    #[test]
    fn budgets_take_their_literals() {
        let (validated, messages) = check(quote!(token_budget = 30_000, cost_budget = 2,));
        assert!(messages.is_empty(), "{messages:?}");
        let values: Vec<String> = validated
            .settings
            .iter()
            .map(|s| format!("{}={:?}", s.spec.name, s.value))
            .collect();
        assert_eq!(
            values,
            [
                "token_budget=Tokens(Some(30000))",
                "cost_budget=Cost(Some(2.0))"
            ]
        );
        let (validated, messages) = check(quote!(
            token_budget = Some(99999999999999999999999),
            cost_budget = 0.05,
        ));
        assert!(messages.is_empty(), "{messages:?}");
        let values: Vec<String> = validated
            .settings
            .iter()
            .map(|s| format!("{:?}", s.value))
            .collect();
        assert_eq!(
            values,
            ["Tokens(Some(18446744073709551615))", "Cost(Some(0.05))"]
        );
        let (validated, messages) = check(quote!(token_budget = None, cost_budget = None));
        assert!(messages.is_empty(), "{messages:?}");
        assert!(
            validated
                .settings
                .iter()
                .all(|s| matches!(s.value, Value::Tokens(None) | Value::Cost(None)))
        );
        let (validated, _) = check(quote!(token_budget = n, cost_budget = c));
        assert!(
            validated
                .settings
                .iter()
                .all(|s| matches!(s.value, Value::Runtime(_)))
        );
        let cases = [
            (quote!(token_budget = 0), "`token_budget` may not be 0"),
            (
                quote!(token_budget = -1),
                "`token_budget` may not be negative",
            ),
            (
                quote!(token_budget = 1.5),
                "expected `token_budget` to be an integer of at least 1, or `None`",
            ),
            (
                quote!(token_budget = "x"),
                "expected `token_budget` to be an integer of at least 1, or `None`",
            ),
            (
                quote!(cost_budget = 0),
                "`cost_budget` must be greater than 0",
            ),
            (
                quote!(cost_budget = -0.5),
                "`cost_budget` must be greater than 0",
            ),
            (quote!(cost_budget = 1e400), "`cost_budget` must be finite"),
            (
                quote!(cost_budget = "x"),
                "expected `cost_budget` to be a finite number greater than 0, or `None`",
            ),
            (
                quote!(cost_budget = true),
                "expected `cost_budget` to be a finite number greater than 0, or `None`",
            ),
        ];
        for (tokens, expected) in cases {
            assert_eq!(only_error(tokens), expected);
        }
    }

    #[test]
    fn hedge_after_takes_its_literals() {
        let (validated, messages) = check(quote!(hedge_after = 0.25));
        assert!(messages.is_empty(), "{messages:?}");
        assert_eq!(
            format!("{:?}", validated.settings[0].value),
            "Hedge(Some(Seconds(0.25)))"
        );
        for ok in [
            quote!(hedge_after = "p50"),
            quote!(hedge_after = Some("p99")),
            quote!(hedge_after = 2),
            quote!(hedge_after = None),
        ] {
            let (_, messages) = check(ok);
            assert!(messages.is_empty(), "{messages:?}");
        }
        let cases = [
            (
                quote!(hedge_after = 0),
                "`hedge_after` must be greater than 0",
            ),
            (
                quote!(hedge_after = -1.5),
                "`hedge_after` must be greater than 0",
            ),
            (
                quote!(hedge_after = "p100"),
                "`hedge_after` takes a quantile from \"p50\" to \"p99\", not \"p100\"",
            ),
            (
                quote!(hedge_after = "p5"),
                "`hedge_after` takes a quantile from \"p50\" to \"p99\", not \"p5\"",
            ),
            (
                quote!(hedge_after = "fast"),
                "unknown `hedge_after` \"fast\" (expected a number of seconds greater than 0, \"p50\" … \"p99\", or `None`)",
            ),
            (
                quote!(hedge_after = true),
                "expected `hedge_after` to be a number of seconds greater than 0, \"p50\" … \"p99\", or `None`",
            ),
        ];
        for (tokens, expected) in cases {
            assert_eq!(only_error(tokens), expected);
        }
    }

    #[test]
    fn unknown_device_and_scheduler_literals() {
        assert_eq!(
            only_error(quote!(device_strategy = "gpuu")),
            "unknown `device_strategy` \"gpuu\"; did you mean \"gpu\"? (expected \"auto\", \"cpu\" or \"gpu\", \
             or `DeviceStrategy::named(\"gpuu\")` for a registered backend)"
        );
        assert_eq!(
            only_error(quote!(scheduler = "sequental")),
            "unknown `scheduler` \"sequental\"; did you mean \"sequential\"? (expected \"sequential\", \
             \"topological\", \"parallel\", \"wave\", \"auto\" or `None`)"
        );
        assert!(!only_error(quote!(scheduler = "fifo")).contains("did you mean"));
        assert!(!only_error(quote!(device_strategy = "tpu")).contains("did you mean"));
        assert!(
            only_error(quote!(device_strategy = "clustr")).contains("did you mean \"cluster\"?")
        );
    }

    #[test]
    fn the_cluster_backend_name_is_a_literal() {
        let (validated, messages) = check(quote!(device_strategy = "cluster"));
        assert!(messages.is_empty(), "{messages:?}");
        assert_eq!(
            format!("{:?}", validated.settings[0].value),
            "Device(Named(\"cluster\"))"
        );
    }

    #[test]
    fn contradicting_scheduler() {
        assert_eq!(
            only_error(quote!(scheduler = "sequential", use_parallel = true)),
            "scheduler \"sequential\" implies `use_parallel = false`, which contradicts \
             `use_parallel = true`; remove one of the two"
        );
        let (validated, messages) = check(quote!(scheduler = "topological", use_parallel = false));
        assert!(messages.is_empty());
        assert_eq!(validated.settings.len(), 2);
    }

    #[test]
    fn every_error_of_a_call_is_reported() {
        let (validated, messages) = check(quote!(
            use_paralel = true,
            max_workers = 0,
            max_workers = 2,
            device_strategy = 3,
            enable_caching = true,
        ));
        assert_eq!(messages.len(), 4, "{messages:?}");
        let names: Vec<_> = validated.settings.iter().map(|s| s.spec.name).collect();
        assert_eq!(names, ["enable_caching"]);
        assert_eq!(validated.rejected.len(), 4);
    }

    #[test]
    fn every_table_option_is_accepted() {
        for spec in xcs_core::options::OPTIONS {
            let name = syn::Ident::new(spec.name, Span::call_site());
            let (validated, messages) = check(quote!(#name = value));
            assert!(messages.is_empty(), "{}: {messages:?}", spec.name);
            assert_eq!(validated.settings.len(), 1);
        }
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("gpu", "gpu"), 0);
        assert_eq!(edit_distance("gpuu", "gpu"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
