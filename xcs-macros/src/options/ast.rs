//! What the user wrote: `name = value, … => expr`, parsed with error recovery.
//!
//! Parsing never fails as a whole. A malformed entry is reported and skipped up to the next `,`
//! or `=>`, so the entries around it are still checked and the body is still expanded. Each entry
//! is parsed on a fork of the stream: a failed parse inside a group (`f(1 +)`) would otherwise
//! leave syn's "unexpected token" state behind on the main stream.

use proc_macro2::{Span, TokenTree};
use syn::ext::IdentExt;
use syn::parse::discouraged::Speculative;
use syn::parse::{ParseStream, Parser};
use syn::{Expr, Ident, Token};

use crate::errors::Errors;

/// Which macro is being expanded; decides whether `=> expr` is required or refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MacroKind {
    /// `execution_options!(… => expr)`.
    Scoped,
    /// `set_execution_options!(…)`.
    Global,
    /// The limits of `set_resource_limits!("name", …)`, after the name.
    Limits,
}

impl MacroKind {
    /// What the entries name, for messages.
    fn entry_example(self) -> &'static str {
        match self {
            MacroKind::Scoped | MacroKind::Global => "an option name, e.g. `use_parallel = false`",
            MacroKind::Limits => "a limit name, e.g. `max_in_flight = 8`",
        }
    }
}

/// One `name = value`.
pub(crate) struct Entry {
    pub(crate) key: Ident,
    pub(crate) value: Expr,
}

/// A whole macro input. Whatever could not be parsed has been reported already.
pub(crate) struct OptionsInput {
    pub(crate) entries: Vec<Entry>,
    /// The `=> expr`, if one was written and parsed. For `set_execution_options!` it is reported
    /// as an error and dropped.
    pub(crate) body: Option<Expr>,
}

/// Parses `tokens`, reporting every syntax error into `errors`.
pub(crate) fn parse(
    tokens: proc_macro2::TokenStream,
    kind: MacroKind,
    errors: &Errors,
) -> OptionsInput {
    let mut input = OptionsInput {
        entries: Vec::new(),
        body: None,
    };
    let parser = |stream: ParseStream| {
        parse_stream(stream, kind, errors, &mut input);
        Ok(())
    };
    // `parse_stream` consumes everything and reports instead of failing; anything syn still
    // objects to is reported like the rest.
    if let Err(error) = parser.parse2(tokens) {
        errors.push(error);
    }
    input
}

fn at_fat_arrow(stream: ParseStream) -> bool {
    stream.peek(Token![=>])
}

fn at_separator(stream: ParseStream) -> bool {
    stream.is_empty() || stream.peek(Token![,]) || at_fat_arrow(stream)
}

/// Skips token trees up to the next `,` or `=>` (or the end).
pub(crate) fn skip_to_separator(stream: ParseStream) {
    while !at_separator(stream) {
        if stream.parse::<TokenTree>().is_err() {
            return;
        }
    }
}

/// Skips everything that is left.
fn skip_rest(stream: ParseStream) {
    while !stream.is_empty() {
        if stream.parse::<TokenTree>().is_err() {
            return;
        }
    }
}

/// Parses `name = value, …` (and, for `execution_options!`, `=> expr`) from `stream`, reporting
/// every syntax error into `errors` and consuming everything.
pub(crate) fn parse_stream(
    stream: ParseStream,
    kind: MacroKind,
    errors: &Errors,
    out: &mut OptionsInput,
) {
    let mut saw_arrow = false;
    while !stream.is_empty() {
        if at_fat_arrow(stream) {
            saw_arrow = true;
            parse_body(stream, kind, errors, out);
            break;
        }
        if stream.peek(Token![,]) {
            // A stray `,` (a leading one, or `,,`); the trailing one is consumed after entries.
            let comma: Token![,] = match stream.parse() {
                Ok(comma) => comma,
                Err(_) => break,
            };
            let what = match kind {
                MacroKind::Limits => "a limit name",
                _ => "an option name",
            };
            errors.at(comma.span, format_args!("expected {what} before `,`"));
            continue;
        }
        let fork = stream.fork();
        match parse_entry(&fork, kind) {
            Ok(entry) => {
                stream.advance_to(&fork);
                let key = entry.key.to_string();
                out.entries.push(entry);
                if !at_separator(stream) {
                    let expected = match kind {
                        MacroKind::Scoped => "`,` or `=>`",
                        MacroKind::Global | MacroKind::Limits => "`,`",
                    };
                    errors.at(
                        stream.span(),
                        format_args!("expected {expected} after the value of `{key}`"),
                    );
                    skip_to_separator(stream);
                }
            }
            Err(error) => {
                errors.push(error);
                skip_to_separator(stream);
            }
        }
        // The `,` that ends the entry (optional after the last one).
        if stream.peek(Token![,]) {
            let _ = stream.parse::<Token![,]>();
        }
    }
    if !saw_arrow && kind == MacroKind::Scoped {
        errors.at(
            Span::call_site(),
            "missing `=> expr` after the options of `execution_options!`",
        );
    }
}

/// `name = value`, where `value` ends at `,`, `=>` or the end of input.
fn parse_entry(stream: ParseStream, kind: MacroKind) -> syn::Result<Entry> {
    if !stream.peek(Ident::peek_any) {
        return Err(stream.error(format_args!("expected {}", kind.entry_example())));
    }
    // `parse_any`: a keyword such as `type` is an unknown option, not a syntax error.
    let key = Ident::parse_any(stream)?;
    let name = key.to_string();
    if !stream.peek(Token![=]) || stream.peek(Token![=>]) || stream.peek(Token![==]) {
        return Err(if stream.is_empty() {
            syn::Error::new(
                key.span(),
                format_args!("expected `=` and a value after `{name}`"),
            )
        } else {
            stream.error(format_args!("expected `=` after `{name}`"))
        });
    }
    let eq: Token![=] = stream.parse()?;
    if at_separator(stream) {
        return Err(syn::Error::new(
            eq.span,
            format_args!("expected a value after `{name} =`"),
        ));
    }
    let value: Expr = stream.parse()?;
    Ok(Entry { key, value })
}

fn parse_body(stream: ParseStream, kind: MacroKind, errors: &Errors, out: &mut OptionsInput) {
    let Ok(arrow) = stream.parse::<Token![=>]>() else {
        return skip_rest(stream);
    };
    if kind != MacroKind::Scoped {
        let rest: proc_macro2::TokenStream = stream.parse().unwrap_or_default();
        let mut whole = quote::quote!(#arrow);
        whole.extend(rest);
        let message = match kind {
            MacroKind::Limits => {
                "`set_resource_limits!` takes no `=> expr`: it sets a resource's limits"
            }
            _ => {
                "`set_execution_options!` takes no `=> expr`: it changes the global options; \
                 use `execution_options!(… => expr)` to run an expression under options"
            }
        };
        errors.spanned(whole, message);
        return;
    }
    if stream.is_empty() {
        errors.at(arrow.spans[0], "expected an expression after `=>`");
        return;
    }
    let fork = stream.fork();
    match fork.parse::<Expr>() {
        Ok(body) => {
            stream.advance_to(&fork);
            if !stream.is_empty() {
                let rest: proc_macro2::TokenStream = stream.parse().unwrap_or_default();
                errors.spanned(
                    rest,
                    "unexpected tokens after the expression of `execution_options!`; \
                     put several statements in a block: `=> { … }`",
                );
            }
            out.body = Some(body);
        }
        Err(error) => {
            errors.push(error);
            skip_rest(stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn messages(errors: Errors) -> Vec<String> {
        errors
            .into_error()
            .map(|e| e.into_iter().map(|e| e.to_string()).collect())
            .unwrap_or_default()
    }

    fn run(tokens: proc_macro2::TokenStream, kind: MacroKind) -> (OptionsInput, Vec<String>) {
        let errors = Errors::new();
        let input = parse(tokens, kind, &errors);
        (input, messages(errors))
    }

    #[test]
    fn parses_entries_and_body() {
        let (input, errs) = run(
            quote!(use_parallel = false, max_workers = n + 1, => { body() }),
            MacroKind::Scoped,
        );
        assert!(errs.is_empty(), "{errs:?}");
        let keys: Vec<_> = input.entries.iter().map(|e| e.key.to_string()).collect();
        assert_eq!(keys, ["use_parallel", "max_workers"]);
        assert!(input.body.is_some());
    }

    #[test]
    fn value_stops_at_fat_arrow_not_at_eq() {
        let (input, errs) = run(quote!(max_workers = n => x), MacroKind::Scoped);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(input.entries.len(), 1);
        let (input, errs) = run(quote!(use_parallel = a == b => x), MacroKind::Scoped);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(input.entries.len(), 1);
    }

    #[test]
    fn turbofish_commas_stay_in_the_value() {
        let (input, errs) = run(quote!(max_workers = f::<A, B>() => x), MacroKind::Scoped);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(input.entries.len(), 1);
    }

    #[test]
    fn empty_options_are_allowed() {
        let (input, errs) = run(quote!(=> 1), MacroKind::Scoped);
        assert!(errs.is_empty() && input.entries.is_empty() && input.body.is_some());
        let (input, errs) = run(quote!(), MacroKind::Global);
        assert!(errs.is_empty() && input.entries.is_empty());
    }

    #[test]
    fn missing_body() {
        let (_, errs) = run(quote!(use_parallel = false), MacroKind::Scoped);
        assert_eq!(
            errs,
            ["missing `=> expr` after the options of `execution_options!`"]
        );
        let (_, errs) = run(quote!(), MacroKind::Scoped);
        assert_eq!(errs.len(), 1);
        let (_, errs) = run(quote!(use_parallel = false =>), MacroKind::Scoped);
        assert_eq!(errs, ["expected an expression after `=>`"]);
    }

    #[test]
    fn body_refused_by_global() {
        let (_, errs) = run(quote!(use_parallel = false => x), MacroKind::Global);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("`set_execution_options!` takes no `=> expr`"));
    }

    #[test]
    fn recovers_after_each_malformed_entry() {
        let (input, errs) = run(
            quote!(max_workers 4, = 4, use_parallel =, trace_execution = true 1, enable_caching = true => x),
            MacroKind::Scoped,
        );
        assert_eq!(
            errs,
            [
                "expected `=` after `max_workers`",
                "expected an option name, e.g. `use_parallel = false`",
                "expected a value after `use_parallel =`",
                "expected `,` or `=>` after the value of `trace_execution`",
            ]
        );
        let keys: Vec<_> = input.entries.iter().map(|e| e.key.to_string()).collect();
        assert_eq!(keys, ["trace_execution", "enable_caching"]);
        assert!(input.body.is_some());
    }

    #[test]
    fn failed_group_parse_does_not_poison_the_stream() {
        let (input, errs) = run(
            quote!(max_workers = f(1 +), use_parallel = true => x),
            MacroKind::Scoped,
        );
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(input.entries.len(), 1);
        assert!(input.body.is_some());
    }

    #[test]
    fn extra_tokens_after_body() {
        let (input, errs) = run(quote!(=> a; b), MacroKind::Scoped);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("unexpected tokens after the expression"));
        assert!(input.body.is_some());
    }

    #[test]
    fn keywords_are_names() {
        let (input, errs) = run(quote!(type = 1 => x), MacroKind::Scoped);
        assert!(errs.is_empty());
        assert_eq!(input.entries[0].key.to_string(), "type");
    }

    #[test]
    fn stray_commas() {
        let (input, errs) = run(quote!(, use_parallel = true,, => x), MacroKind::Scoped);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(input.entries.len(), 1);
    }
}
