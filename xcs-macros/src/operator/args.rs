//! The arguments of `#[xcs::operator(…)]`: `name = "StructName"` and `version = N`.

use proc_macro2::{Ident, Span, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, LitInt, Meta, Token};

use super::Errors;

/// The arguments this attribute takes, for the "did you mean" hint.
const ARGUMENTS: &[&str] = &["name", "version"];

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
        let (mut seen_name, mut seen_version) = (false, false);
        for meta in &metas {
            let path = meta.path();
            let Some(key) = path.get_ident() else {
                errors.error(path, unknown_argument(&quote::quote!(#path).to_string()));
                continue;
            };
            let seen = if key == "name" {
                &mut seen_name
            } else if key == "version" {
                &mut seen_version
            } else {
                errors.error(key, unknown_argument(&key.to_string()));
                continue;
            };
            if *seen {
                errors.error(key, format_args!("duplicate argument `{key}`"));
                continue;
            }
            *seen = true;
            if key == "name" {
                args.name_key = Some(key.span());
            } else {
                args.version_key = Some(key.span());
            }
            let Meta::NameValue(pair) = meta else {
                let expected = if key == "name" {
                    "expected `name = \"…\"` with the operator struct's name"
                } else {
                    "expected `version = N` with an integer N ≥ 0, like `version = 1`"
                };
                errors.error(meta, expected);
                continue;
            };
            if key == "name" {
                args.name = parse_name(&pair.value, errors);
            } else {
                args.version = parse_version(&pair.value, errors);
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
            "unknown argument `{given}` of `#[xcs::operator]`, expected `name = \"…\"` or `version = N`"
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

    #[test]
    fn hints() {
        assert_eq!(
            unknown_argument("nmae"),
            "unknown argument `nmae` of `#[xcs::operator]`, did you mean `name`?"
        );
        assert!(unknown_argument("timeout").ends_with("expected `name = \"…\"` or `version = N`"));
        assert_eq!(
            unknown_argument("verison"),
            "unknown argument `verison` of `#[xcs::operator]`, did you mean `version`?"
        );
    }
}
