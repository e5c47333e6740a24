//! `set_resource_limits!("name", limit = value, …)`: parse → validate → expand, the way the
//! option macros are (and with their parser and literal checks).
//!
//! - the resource's name comes first: a non-empty string literal, or any `&str` expression;
//! - the limits are `name = value` entries, parsed by [`ast`](crate::options::ast) with its error
//!   recovery, and checked against the table of limits of `xcs-core` (`LIMITS`), which names
//!   them, says what each accepts and suggests the nearest name;
//! - the expansion builds a `ResourceLimits` and merges it into the resource's, naming the
//!   runtime only as `::xcs::__private::…`.
//!
//! Every error of a call is reported at once, each at its token.

use proc_macro2::{Literal as TokenLiteral, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::parse::discouraged::Speculative;
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, Token};
use xcs_core::{LimitKind, LimitSpec};

use crate::errors::Errors;
use crate::options::ast::{self, Entry, MacroKind, OptionsInput};
use crate::options::validate::{Literal, check_positive, classify};

/// A checked limit value, ready to be expanded.
#[derive(Debug)]
enum Value {
    /// A literal rate per minute: finite and > 0.
    PerMinute(f64),
    /// A literal count ≥ 1 (`u128::MAX` for one beyond `u128`).
    Count(u128),
    /// A literal number of seconds: finite and > 0.
    Seconds(f64),
    /// Not a literal: converted at run time.
    Runtime(Expr),
}

struct Setting {
    spec: &'static LimitSpec,
    value: Value,
}

/// The resource's name as the expansion uses it.
enum Name {
    /// A checked, non-empty string literal.
    Literal(Expr),
    /// Any other expression, checked at run time.
    Runtime(Expr),
}

/// `set_resource_limits!("name", limit = value, …)`.
pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let errors = Errors::new();
    let (name, entries) = parse(input, &errors);
    let name = name.and_then(|name| check_name(name, &errors));
    let settings = validate(entries, &errors);
    let errors = errors.into_compile_errors();
    let Some(name) = name else {
        // Nothing to set without a name: the errors stand in for the call, of type `()`.
        return quote!({ #errors });
    };
    let name = match name {
        Name::Literal(expr) => quote!(#expr),
        Name::Runtime(expr) => {
            quote_spanned!(expr.span()=> ::xcs::__private::convert::resource_name(#expr))
        }
    };
    let limits = format_ident!("__xcs_limits", span = Span::mixed_site());
    let steps = settings.iter().map(|setting| {
        let method = format_ident!("{}", setting.spec.name);
        let value = value_tokens(setting);
        quote!(let #limits = ::xcs::__private::ResourceLimits::#method(#limits, #value);)
    });
    quote!({
        #errors
        ::xcs::__private::apply_resource_limits(#name, &{
            let #limits = ::xcs::__private::ResourceLimits::new();
            #(#steps)*
            #limits
        })
    })
}

/// The resource's name (if one was written) and the entries after it.
fn parse(tokens: TokenStream, errors: &Errors) -> (Option<Expr>, Vec<Entry>) {
    let mut name = None;
    let mut input = OptionsInput {
        entries: Vec::new(),
        body: None,
    };
    let parser = |stream: ParseStream| {
        if stream.is_empty() {
            errors.at(
                Span::call_site(),
                "expected the resource's name and its limits, like \
                 `set_resource_limits!(\"openai\", requests_per_minute = 500)`",
            );
            return Ok(());
        }
        let fork = stream.fork();
        match fork.parse::<Expr>() {
            Ok(Expr::Assign(assign)) => {
                // `set_resource_limits!(max_in_flight = 4)`: the name was left out.
                stream.advance_to(&fork);
                errors.spanned(
                    &assign.left,
                    "expected the resource's name before its limits, like \
                     `set_resource_limits!(\"openai\", max_in_flight = 4)`",
                );
            }
            Ok(expr) => {
                stream.advance_to(&fork);
                name = Some(expr);
            }
            Err(error) => {
                errors.push(error);
                ast::skip_to_separator(stream);
            }
        }
        if !stream.is_empty() {
            if stream.peek(Token![,]) {
                stream.parse::<Token![,]>()?;
            } else {
                errors.at(stream.span(), "expected `,` after the resource's name");
                ast::skip_to_separator(stream);
                let _ = stream.parse::<Option<Token![,]>>();
            }
        }
        ast::parse_stream(stream, MacroKind::Limits, errors, &mut input);
        Ok(())
    };
    if let Err(error) = parser.parse2(tokens) {
        errors.push(error);
    }
    (name, input.entries)
}

/// A string literal must be a non-empty name; another literal is not a name at all; any other
/// expression is checked when the program runs.
fn check_name(expr: Expr, errors: &Errors) -> Option<Name> {
    match &expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(text),
            ..
        }) => {
            if text.value().is_empty() {
                errors.spanned(
                    text,
                    "the resource's name may not be empty, name it like \"openai\"",
                );
                None
            } else {
                Some(Name::Literal(expr))
            }
        }
        Expr::Lit(_) => {
            errors.spanned(
                &expr,
                "expected the resource's name, a string like \"openai\" or a `&str`",
            );
            None
        }
        _ => Some(Name::Runtime(expr)),
    }
}

/// `Invalid resource limit: <name>; did you mean `<limit>`? (valid limits: …)`.
fn unknown_limit(name: &str) -> String {
    let hint = LimitSpec::nearest(name)
        .map(|near| format!("; did you mean `{near}`?"))
        .unwrap_or_default();
    format!(
        "Invalid resource limit: {name}{hint} (valid limits: {})",
        LimitSpec::valid_names()
    )
}

fn validate(entries: Vec<Entry>, errors: &Errors) -> Vec<Setting> {
    let mut settings: Vec<Setting> = Vec::new();
    let mut seen: Vec<&'static str> = Vec::new();
    for entry in entries {
        let name = syn::ext::IdentExt::unraw(&entry.key).to_string();
        let Some(spec) = LimitSpec::named(&name) else {
            errors.at(entry.key.span(), unknown_limit(&name));
            continue;
        };
        let duplicate = seen.contains(&spec.name);
        if duplicate {
            errors.at(
                entry.key.span(),
                format_args!("duplicate resource limit `{}`", spec.name),
            );
        } else {
            seen.push(spec.name);
        }
        if let Some(value) = check_value(spec, &entry.value, errors) {
            if !duplicate {
                settings.push(Setting { spec, value });
            }
        }
    }
    settings
}

/// Checks one value against its limit. `None` if it was rejected (and reported).
fn check_value(spec: &'static LimitSpec, expr: &Expr, errors: &Errors) -> Option<Value> {
    let Some(literal) = classify(expr) else {
        return Some(Value::Runtime(expr.clone()));
    };
    let name = spec.name;
    match (spec.kind, literal) {
        (LimitKind::PerMinute, Literal::Int { value, negative }) => {
            let rate = value.map_or(f64::INFINITY, |v| v as f64);
            check_positive(name, expr, rate, negative, errors).map(Value::PerMinute)
        }
        (LimitKind::PerMinute, Literal::Float { value, negative }) => {
            check_positive(name, expr, value, negative, errors).map(Value::PerMinute)
        }
        (LimitKind::Seconds, Literal::Int { value, negative }) => {
            let seconds = value.map_or(f64::INFINITY, |v| v as f64);
            check_positive(name, expr, seconds, negative, errors).map(Value::Seconds)
        }
        (LimitKind::Seconds, Literal::Float { value, negative }) => {
            check_positive(name, expr, value, negative, errors).map(Value::Seconds)
        }
        (LimitKind::Count, Literal::Int { value, negative }) => match value {
            Some(0) => {
                errors.spanned(expr, format_args!("`{name}` may not be 0"));
                None
            }
            _ if negative => {
                errors.spanned(expr, format_args!("`{name}` may not be negative"));
                None
            }
            n => Some(Value::Count(n.unwrap_or(u128::MAX))),
        },
        _ => {
            errors.spanned(
                expr,
                format_args!("expected `{name}` to be {}", spec.expected),
            );
            None
        }
    }
}

/// The value passed to the limit's builder method.
fn value_tokens(setting: &Setting) -> TokenStream {
    match &setting.value {
        Value::PerMinute(rate) | Value::Seconds(rate) => {
            let rate = TokenLiteral::f64_suffixed(*rate);
            quote!(#rate)
        }
        Value::Count(n) if *n <= u128::from(u32::MAX) => {
            // Suffixed `usize`, which holds it on every target.
            let n = syn::LitInt::new(&format!("{n}usize"), Span::call_site());
            quote!(#n)
        }
        Value::Count(n) => {
            let n = TokenLiteral::u128_suffixed(*n);
            quote!(::xcs::__private::convert::limit_count_literal(#n))
        }
        Value::Runtime(expr) => {
            let span = expr.span();
            let convert = syn::Ident::new(setting.spec.kind.convert(), span);
            let name = setting.spec.name;
            quote_spanned!(span=> ::xcs::__private::convert::#convert(#expr, #name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(tokens: TokenStream) -> String {
        tokens
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn errors_of(tokens: TokenStream) -> Vec<String> {
        let errors = Errors::new();
        let (name, entries) = parse(tokens, &errors);
        if let Some(name) = name {
            let _ = check_name(name, &errors);
        }
        let _ = validate(entries, &errors);
        errors
            .into_error()
            .map(|e| e.into_iter().map(|e| e.to_string()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn expands_literals_and_values() {
        let out = normalized(expand(quote!(
            "openai",
            requests_per_minute = 500,
            tokens_per_minute = 30_000.5,
            max_in_flight = 64,
        )));
        assert_eq!(
            out,
            // Braces, not parentheses: rustfmt leaves their tokens as written.
            normalized(quote! {{
                ::xcs::__private::apply_resource_limits("openai", &{
                    let __xcs_limits = ::xcs::__private::ResourceLimits::new();
                    let __xcs_limits =
                        ::xcs::__private::ResourceLimits::requests_per_minute(__xcs_limits, 500f64);
                    let __xcs_limits =
                        ::xcs::__private::ResourceLimits::tokens_per_minute(__xcs_limits, 30000.5f64);
                    let __xcs_limits =
                        ::xcs::__private::ResourceLimits::max_in_flight(__xcs_limits, 64usize);
                    __xcs_limits
                })
            }})
        );
        let out = normalized(expand(quote!(
            name,
            requests_per_minute = rpm,
            max_in_flight = n
        )));
        for expected in [
            ":: xcs :: __private :: convert :: resource_name (name)",
            ":: xcs :: __private :: convert :: limit_per_minute (rpm , \"requests_per_minute\")",
            ":: xcs :: __private :: convert :: limit_count (n , \"max_in_flight\")",
        ] {
            assert!(out.contains(expected), "{out}");
        }
        let out = normalized(expand(quote!(
            "m",
            open_after_failures = 5,
            cooldown_seconds = 30,
            cooldown_seconds = 1
        )));
        assert!(
            out.contains("open_after_failures (__xcs_limits , 5usize)"),
            "{out}"
        );
        assert!(
            out.contains("cooldown_seconds (__xcs_limits , 30f64)"),
            "{out}"
        );
        let out = normalized(expand(quote!("m", cooldown_seconds = pause)));
        assert!(
            out.contains(
                ":: xcs :: __private :: convert :: limit_seconds (pause , \"cooldown_seconds\")"
            ),
            "{out}"
        );
        let out = normalized(expand(quote!("m", max_in_flight = 99999999999999999999)));
        assert!(
            out.contains("limit_count_literal (99999999999999999999u128)"),
            "{out}"
        );
        // No limits: the resource's limits are merged with none.
        assert!(!normalized(expand(quote!("m"))).contains("compile_error"));
    }

    #[test]
    fn rejects_bad_names_and_literals() {
        let cases = [
            (
                quote!("m", reqests_per_minute = 1),
                "Invalid resource limit: reqests_per_minute; did you mean `requests_per_minute`? \
                 (valid limits: `requests_per_minute`, `tokens_per_minute`, `max_in_flight`, \
                 `open_after_failures`, `cooldown_seconds`)",
            ),
            (
                quote!("m", max_in_flight = 1, max_in_flight = 2),
                "duplicate resource limit `max_in_flight`",
            ),
            (
                quote!("m", requests_per_minute = 0),
                "`requests_per_minute` must be greater than 0",
            ),
            (
                quote!("m", tokens_per_minute = -5.5),
                "`tokens_per_minute` must be greater than 0",
            ),
            (
                quote!("m", tokens_per_minute = 1e400),
                "`tokens_per_minute` must be finite",
            ),
            (
                quote!("m", requests_per_minute = "500"),
                "expected `requests_per_minute` to be a finite number of requests per minute greater than 0",
            ),
            (
                quote!("m", requests_per_minute = true),
                "expected `requests_per_minute` to be a finite number of requests per minute greater than 0",
            ),
            (
                quote!("m", requests_per_minute = None),
                "expected `requests_per_minute` to be a finite number of requests per minute greater than 0",
            ),
            (
                quote!("m", max_in_flight = 0),
                "`max_in_flight` may not be 0",
            ),
            (
                quote!("m", open_after_failures = 0),
                "`open_after_failures` may not be 0",
            ),
            (
                quote!("m", open_after_failures = 2.5),
                "expected `open_after_failures` to be an integer of at least 1",
            ),
            (
                quote!("m", cooldown_seconds = 0),
                "`cooldown_seconds` must be greater than 0",
            ),
            (
                quote!("m", cooldown_seconds = -1.5),
                "`cooldown_seconds` must be greater than 0",
            ),
            (
                quote!("m", cooldown_seconds = "30"),
                "expected `cooldown_seconds` to be a finite number of seconds greater than 0",
            ),
            (
                quote!("m", max_in_flight = -2),
                "`max_in_flight` may not be negative",
            ),
            (
                quote!("m", max_in_flight = 2.0),
                "expected `max_in_flight` to be an integer of at least 1",
            ),
            (
                quote!("", max_in_flight = 2),
                "the resource's name may not be empty, name it like \"openai\"",
            ),
            (
                quote!(3, max_in_flight = 2),
                "expected the resource's name, a string like \"openai\" or a `&str`",
            ),
            (
                quote!("m", max_in_flight =),
                "expected a value after `max_in_flight =`",
            ),
            (
                quote!(max_in_flight = 2),
                "expected the resource's name before its limits, like \
                 `set_resource_limits!(\"openai\", max_in_flight = 4)`",
            ),
            (
                quote!("m" max_in_flight = 2),
                "expected `,` after the resource's name",
            ),
            (
                quote!("m", max_in_flight = 2 => x),
                "`set_resource_limits!` takes no `=> expr`: it sets a resource's limits",
            ),
        ];
        for (tokens, expected) in cases {
            assert_eq!(errors_of(tokens.clone()), [expected], "{tokens}");
        }
        assert_eq!(errors_of(quote!()).len(), 1);
        // Every mistake of a call at once.
        assert_eq!(
            errors_of(quote!("", max_inflight = 1, requests_per_minute = 0)).len(),
            3
        );
    }

    #[test]
    fn every_table_limit_is_accepted() {
        for spec in xcs_core::LIMITS {
            let name = syn::Ident::new(spec.name, Span::call_site());
            assert!(
                errors_of(quote!("m", #name = 5)).is_empty(),
                "{}",
                spec.name
            );
            assert!(
                errors_of(quote!("m", #name = value)).is_empty(),
                "{}",
                spec.name
            );
        }
    }

    #[test]
    fn never_panics_on_odd_input() {
        for tokens in [
            quote!(),
            quote!(,),
            quote!("m",,),
            quote!(=> x),
            quote!("m" =),
            quote!(a = b = c),
            quote!("m", max_in_flight = 1e400),
            quote!(
                "m",
                requests_per_minute = -99999999999999999999999999999999999999999
            ),
            quote!(1 2 3),
        ] {
            let _ = expand(tokens);
        }
    }
}
