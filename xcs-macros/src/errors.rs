//! Collecting every error of one macro call, so the user sees them all at once.
//!
//! A macro that stops at its first error makes the user fix mistakes one compile at a time. Like
//! serde_derive's `Ctxt`, [`Errors`] gathers `syn::Error`s while parsing and validating go on,
//! and hands them back as one combined error (`syn::Error::combine`), which renders as one
//! `compile_error!` per message, each at its own span. It is shared by reference (`&Errors`) so
//! any pass can report without threading `&mut` through every function.

use std::cell::RefCell;
use std::fmt::Display;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;

/// The errors of one macro call, in the order they were found.
#[derive(Default)]
pub(crate) struct Errors {
    errors: RefCell<Vec<syn::Error>>,
}

impl Errors {
    /// No errors yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Records an error that already carries its span(s).
    pub(crate) fn push(&self, error: syn::Error) {
        self.errors.borrow_mut().push(error);
    }

    /// Records `message` at `span`.
    pub(crate) fn at(&self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// Records `message` spanning all of `tokens` (e.g. a `-` and the literal after it).
    pub(crate) fn spanned(&self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// All errors as one, or `None` if there were none.
    #[must_use]
    pub(crate) fn into_error(self) -> Option<syn::Error> {
        self.errors
            .into_inner()
            .into_iter()
            .reduce(|mut all, next| {
                all.combine(next);
                all
            })
    }

    /// All errors as `compile_error!` invocations (nothing if there were none).
    #[must_use]
    pub(crate) fn into_compile_errors(self) -> TokenStream {
        self.into_error()
            .map(|error| error.into_compile_error())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combines_in_order() {
        let errors = Errors::new();
        errors.at(Span::call_site(), "first");
        errors.spanned(quote::quote!(a b), "second");
        let messages: Vec<String> = errors
            .into_error()
            .into_iter()
            .flat_map(|e| e.into_iter().map(|e| e.to_string()).collect::<Vec<_>>())
            .collect();
        assert_eq!(messages, ["first", "second"]);
    }

    #[test]
    fn nothing_reported_expands_to_nothing() {
        assert!(Errors::new().into_compile_errors().is_empty());
    }
}
