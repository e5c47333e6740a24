//! The arguments of `#[xcs::operator(…)]`: `name = "StructName"`, `version = N`,
//! `resource = "name"` and `estimate = path`.

use proc_macro2::{Ident, Span, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, ExprPath, Lit, LitInt, LitStr, Meta, Token};

use super::Errors;

/// The arguments this attribute takes, for the "did you mean" hint.
const ARGUMENTS: &[&str] = &["name", "version", "resource", "estimate"];

/// What the attribute arguments say.
#[derive(Default)]
pub(super) struct Args {
    /// `name = "Other"`: the operator struct's name, spanned at the string literal.
    pub(super) name: Option<Ident>,
    /// `version = N`: part of every persistent cache key (0 when not given).
    pub(super) version: Option<u32>,
    /// Where `name` was written, even with a malformed value.
    pub(super) name_key: Option<Span>,
    /// Where `version` was written, even with a malformed value.
    pub(super) version_key: Option<Span>,
    /// `resource = "openai"`: the resource the operator's calls use (a non-empty string).
    pub(super) resource: Option<LitStr>,
    /// `estimate = path`: a `fn(&Input) -> Usage` charged at admission.
    pub(super) estimate: Option<ExprPath>,
    /// Where `resource` was written, even with a malformed value.
    pub(super) resource_key: Option<Span>,
    /// Where `estimate` was written, even with a malformed value.
    pub(super) estimate_key: Option<Span>,
}

impl Args {
    /// Reads the arguments, recording every mistake in `errors`. What could be read is kept.
    pub(super) fn parse(tokens: TokenStream, errors: &mut Errors) -> Args {
        let mut args = Args::default();
        let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(tokens) {
            Ok(metas) => metas,
            Err(error) => {
                errors.push(error);
                return args;
            }
        };
        let mut seen: Vec<&str> = Vec::new();
        for meta in &metas {
            let path = meta.path();
            let Some(key) = path.get_ident() else {
                errors.error(path, unknown_argument(&quote::quote!(#path).to_string()));
                continue;
            };
            let Some(&known) = ARGUMENTS.iter().find(|known| key == *known) else {
                errors.error(key, unknown_argument(&key.to_string()));
                continue;
            };
            if seen.contains(&known) {
                errors.error(key, format_args!("duplicate argument `{key}`"));
                continue;
            }
            seen.push(known);
            let span = Some(key.span());
            match known {
                "name" => args.name_key = span,
                "version" => args.version_key = span,
                "resource" => args.resource_key = span,
                _ => args.estimate_key = span,
            }
            let Meta::NameValue(pair) = meta else {
                let expected = match known {
                    "name" => "expected `name = \"…\"` with the operator struct's name",
                    "version" => "expected `version = N` with an integer N ≥ 0, like `version = 1`",
                    "resource" => {
                        "expected `resource = \"…\"` with the name of the resource the calls use, \
                         like `resource = \"openai\"`"
                    }
                    _ => {
                        "expected `estimate = path` with the path of a function \
                         `fn(&Input) -> xcs::Usage`, like `estimate = estimate_tokens`"
                    }
                };
                errors.error(meta, expected);
                continue;
            };
            match known {
                "name" => args.name = parse_name(&pair.value, errors),
                "version" => args.version = parse_version(&pair.value, errors),
                "resource" => args.resource = parse_resource(&pair.value, errors),
                _ => args.estimate = parse_estimate(&pair.value, errors),
            }
        }
        args
    }
}

/// `name = "Generate"`: a string literal holding an identifier.
fn parse_name(value: &Expr, errors: &mut Errors) -> Option<Ident> {
    let Expr::Lit(ExprLit {
        lit: Lit::Str(literal),
        ..
    }) = value
    else {
        errors.error(
            value,
            "expected a string literal, like `name = \"Generate\"`",
        );
        return None;
    };
    let value = literal.value();
    match syn::parse_str::<Ident>(&value) {
        Ok(mut ident) if ident == value && literal.suffix().is_empty() => {
            ident.set_span(literal.span());
            Some(ident)
        }
        _ => {
            errors.error(
                literal,
                format_args!(
                    "`{value}` is not a valid struct name, give an identifier like `Generate`"
                ),
            );
            None
        }
    }
}

/// `resource = "openai"`: a non-empty string literal.
fn parse_resource(value: &Expr, errors: &mut Errors) -> Option<LitStr> {
    match ungroup(value) {
        Expr::Lit(ExprLit {
            lit: Lit::Str(literal),
            ..
        }) => {
            if literal.value().is_empty() {
                errors.error(
                    literal,
                    "`resource` may not be empty, name the resource like `resource = \"openai\"`",
                );
                None
            } else if !literal.suffix().is_empty() {
                errors.error(literal, "expected `resource` to be a plain string literal");
                None
            } else {
                Some(literal.clone())
            }
        }
        _ => {
            errors.error(
                value,
                "expected `resource` to be a string literal, like `resource = \"openai\"`",
            );
            None
        }
    }
}

/// `estimate = path::to::function`: the path of a function `fn(&Input) -> Usage`.
fn parse_estimate(value: &Expr, errors: &mut Errors) -> Option<ExprPath> {
    match ungroup(value) {
        Expr::Path(path) if path.attrs.is_empty() => Some(path.clone()),
        _ => {
            errors.error(
                value,
                "expected `estimate` to be the path of a function `fn(&Input) -> xcs::Usage`, \
                 like `estimate = estimate_tokens`",
            );
            None
        }
    }
}

/// `version = 2`: an integer literal from 0 to `u32::MAX` (unsuffixed, or with an unsigned
/// integer suffix).
fn parse_version(value: &Expr, errors: &mut Errors) -> Option<u32> {
    match ungroup(value) {
        Expr::Lit(ExprLit {
            lit: Lit::Int(literal),
            ..
        }) => version_of(literal, errors),
        _ => {
            errors.error(
                value,
                "expected `version` to be an integer literal, like `version = 1`",
            );
            None
        }
    }
}

fn version_of(literal: &LitInt, errors: &mut Errors) -> Option<u32> {
    const UNSIGNED: &[&str] = &["", "u8", "u16", "u32", "u64", "u128", "usize"];
    // syn reads `-1` as one literal, spanned at the `-`.
    if literal.base10_digits().starts_with('-') {
        errors.error(
            literal,
            "`version` may not be negative, count versions from 0",
        );
        return None;
    }
    if !UNSIGNED.contains(&literal.suffix()) {
        errors.error(
            literal,
            format_args!(
                "expected `version` to be an unsigned integer, remove the `{}` suffix",
                literal.suffix()
            ),
        );
        return None;
    }
    match literal.base10_parse::<u32>() {
        Ok(version) => Some(version),
        Err(_) => {
            errors.error(literal, "`version` must fit in a `u32`, at most 4294967295");
            None
        }
    }
}

/// `value` without parentheses and the invisible groups of `macro_rules!`.
fn ungroup(mut value: &Expr) -> &Expr {
    loop {
        match value {
            Expr::Group(group) => value = &group.expr,
            Expr::Paren(paren) => value = &paren.expr,
            _ => return value,
        }
    }
}

/// The message for an argument the attribute does not take, with the nearest one as a hint.
fn unknown_argument(given: &str) -> String {
    let nearest = ARGUMENTS
        .iter()
        .map(|known| (edit_distance(given, known), *known))
        .min()
        .filter(|&(distance, known)| distance <= known.len() / 2 + 1);
    match nearest {
        Some((_, known)) => {
            format!("unknown argument `{given}` of `#[xcs::operator]`, did you mean `{known}`?")
        }
        None => format!(
            "unknown argument `{given}` of `#[xcs::operator]`, expected `name = \"…\"`, `version = N`, \
             `resource = \"…\"` or `estimate = path`"
        ),
    }
}

/// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![(0..=b.len()).collect::<Vec<_>>()];
    for i in 1..=a.len() {
        let mut row = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (rows[i - 1][j] + 1)
                .min(row[j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(rows[i - 2][j - 2] + 1);
            }
        }
        rows.push(row);
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("nmae", "name"), 1);
        assert_eq!(edit_distance("names", "name"), 1);
        assert_eq!(edit_distance("", "name"), 4);
        assert_eq!(edit_distance("timeout", "name"), 5);
    }

    fn version(value: proc_macro2::TokenStream) -> (Option<u32>, usize) {
        let mut errors = Errors::default();
        let args = Args::parse(quote::quote!(version = #value), &mut errors);
        (args.version, errors.mark())
    }

    #[test]
    fn versions() {
        assert_eq!(version(quote::quote!(0)), (Some(0), 0));
        assert_eq!(version(quote::quote!(12)), (Some(12), 0));
        assert_eq!(version(quote::quote!(7u32)), (Some(7), 0));
        assert_eq!(version(quote::quote!(4294967295)), (Some(u32::MAX), 0));
        for rejected in [
            quote::quote!(-1),
            quote::quote!(4294967296),
            quote::quote!(1i32),
            quote::quote!("1"),
            quote::quote!(1.0),
            quote::quote!(N),
        ] {
            assert_eq!(version(rejected.clone()), (None, 1), "{rejected}");
        }
        let mut errors = Errors::default();
        let args = Args::parse(quote::quote!(version = 1, version = 2), &mut errors);
        assert_eq!((args.version, errors.mark()), (Some(1), 1));
    }

    fn parsed(tokens: proc_macro2::TokenStream) -> (Args, usize) {
        let mut errors = Errors::default();
        let args = Args::parse(tokens, &mut errors);
        let count = errors.mark();
        (args, count)
    }

    #[test]
    fn resources_and_estimates() {
        let (args, count) = parsed(quote::quote!(resource = "openai", estimate = my::estimate));
        assert_eq!(count, 0);
        assert_eq!(args.resource.map(|r| r.value()).as_deref(), Some("openai"));
        let path = args.estimate.unwrap();
        assert_eq!(quote::quote!(#path).to_string(), "my :: estimate");
        for rejected in [
            quote::quote!(resource = ""),
            quote::quote!(resource = 3),
            quote::quote!(resource = openai),
            quote::quote!(resource),
            quote::quote!(resource = "a", resource = "b"),
            quote::quote!(estimate = "f"),
            quote::quote!(estimate = |x| x),
            quote::quote!(estimate),
            quote::quote!(estimate = f, estimate = g),
        ] {
            assert_eq!(parsed(rejected.clone()).1, 1, "{rejected}");
        }
    }

    #[test]
    fn hints() {
        assert_eq!(
            unknown_argument("nmae"),
            "unknown argument `nmae` of `#[xcs::operator]`, did you mean `name`?"
        );
        assert!(unknown_argument("timeout").ends_with(
            "expected `name = \"…\"`, `version = N`, `resource = \"…\"` or `estimate = path`"
        ));
        assert_eq!(
            unknown_argument("resorce"),
            "unknown argument `resorce` of `#[xcs::operator]`, did you mean `resource`?"
        );
        assert_eq!(
            unknown_argument("estimates"),
            "unknown argument `estimates` of `#[xcs::operator]`, did you mean `estimate`?"
        );
        assert_eq!(
            unknown_argument("verison"),
            "unknown argument `verison` of `#[xcs::operator]`, did you mean `version`?"
        );
    }
}
