//! The arguments of `#[xcs::operator(…)]`: only `name = "StructName"` so far.

use proc_macro2::{Ident, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, Meta, Token};

use super::Errors;

/// The arguments this attribute takes, for the "did you mean" hint.
const ARGUMENTS: &[&str] = &["name"];

/// What the attribute arguments say.
#[derive(Default)]
pub(super) struct Args {
    /// `name = "Other"`: the operator struct's name, spanned at the string literal.
    pub(super) name: Option<Ident>,
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
        let mut seen_name = false;
        for meta in &metas {
            let path = meta.path();
            let Some(key) = path.get_ident() else {
                errors.error(path, unknown_argument(&quote::quote!(#path).to_string()));
                continue;
            };
            if key != "name" {
                errors.error(key, unknown_argument(&key.to_string()));
                continue;
            }
            if seen_name {
                errors.error(key, "duplicate argument `name`");
                continue;
            }
            seen_name = true;
            let Meta::NameValue(pair) = meta else {
                errors.error(
                    meta,
                    "expected `name = \"…\"` with the operator struct's name",
                );
                continue;
            };
            let Expr::Lit(ExprLit {
                lit: Lit::Str(literal),
                ..
            }) = &pair.value
            else {
                errors.error(
                    &pair.value,
                    "expected a string literal, like `name = \"Generate\"`",
                );
                continue;
            };
            let value = literal.value();
            match syn::parse_str::<Ident>(&value) {
                Ok(mut ident) if ident == value && literal.suffix().is_empty() => {
                    ident.set_span(literal.span());
                    args.name = Some(ident);
                }
                _ => errors.error(
                    literal,
                    format_args!(
                        "`{value}` is not a valid struct name, give an identifier like `Generate`"
                    ),
                ),
            }
        }
        args
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
            "unknown argument `{given}` of `#[xcs::operator]`, the only argument is `name = \"…\"`"
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

    #[test]
    fn hints() {
        assert_eq!(
            unknown_argument("nmae"),
            "unknown argument `nmae` of `#[xcs::operator]`, did you mean `name`?"
        );
        assert!(unknown_argument("timeout").ends_with("the only argument is `name = \"…\"`"));
    }
}
