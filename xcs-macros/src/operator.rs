//! `#[xcs::operator]`: turns a plain function into an operator, or gives a hand-written
//! operator's impl block what the function form adds.
//!
//! The function stays exactly as written (callable, documented, with its attributes); next to
//! it the macro adds a unit struct implementing `Operator` and an inputs struct with one field
//! per parameter. Work is split as in thiserror-impl: [`args`] reads the attribute arguments,
//! [`ast`] reads the function into a small model and rejects what an operator cannot carry,
//! [`expand`] writes the code, [`derives`] the standard traits of the inputs struct,
//! [`fingerprint`] hashes the code into the persistent keys. On an `impl Operator` or
//! `impl AsyncOperator` block, [`impl_block`] keeps the block and appends the hidden methods
//! (retries, caching, persistence, version, fingerprint). Every error
//! found is reported at once, and on error the user's function is still emitted unchanged, so one
//! mistake does not cascade into "cannot find function" errors elsewhere.

mod args;
mod ast;
mod derives;
mod expand;
mod fingerprint;
mod impl_block;

use std::fmt::Display;

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};

/// Expands `#[xcs::operator(args)]` on `item`.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = args::Args::parse(args, &mut errors);
    let generated = match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Fn(function)) => {
            ast::OperatorFn::parse(&function, &mut errors).and_then(|model| {
                let names = expand::Names::new(&model, &args, &mut errors)?;
                Some(expand::operator(&model, &names, &args))
            })
        }
        Ok(syn::Item::Impl(block)) => {
            // The block itself is replaced by the block with the hidden methods appended.
            if let Some(block) = impl_block::expand(&block, &args, &mut errors) {
                let compile_errors = errors.to_compile_errors();
                return quote! {
                    #compile_errors
                    #block
                };
            }
            None
        }
        Ok(other) => {
            errors.error_at(ast::item_keyword(&other), ast::NOT_A_FUNCTION);
            None
        }
        Err(_) => {
            errors.error_at(Span::call_site(), ast::NOT_A_FUNCTION);
            None
        }
    };
    // Attribute-argument mistakes alone still expand (with the default name), so the rest of
    // the crate keeps compiling; signature mistakes expand to the function only.
    let compile_errors = errors.to_compile_errors();
    quote! {
        #compile_errors
        #item
        #generated
    }
}

/// Every error found in one expansion (serde_derive's `Ctxt`): reported together.
#[derive(Default)]
pub(crate) struct Errors {
    all: Option<syn::Error>,
    count: usize,
    /// Set when expansion must stop without a message of ours, because rustc reports the
    /// problem on the user's function anyway (a parameter name bound twice).
    silent: bool,
}

impl Errors {
    /// Records `error`.
    pub(crate) fn push(&mut self, error: syn::Error) {
        self.count += 1;
        match &mut self.all {
            Some(all) => all.combine(error),
            None => self.all = Some(error),
        }
    }

    /// Records `message` pointing at `tokens`.
    pub(crate) fn error(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// Records `message` pointing at `span`.
    pub(crate) fn error_at(&mut self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// Stops expansion without a message of ours.
    pub(crate) fn stop_silently(&mut self) {
        self.silent = true;
    }

    /// A mark to compare with [`stops_since`](Self::stops_since).
    pub(crate) fn mark(&self) -> usize {
        self.count
    }

    /// Whether anything recorded since `mark` stops expansion.
    pub(crate) fn stops_since(&self, mark: usize) -> bool {
        self.count > mark || self.silent
    }

    /// The recorded errors as `compile_error!` invocations.
    pub(crate) fn to_compile_errors(&self) -> TokenStream {
        self.all
            .as_ref()
            .map(syn::Error::to_compile_error)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(args: TokenStream, item: TokenStream) -> Vec<String> {
        compile_errors(&expand(args, item).to_string())
    }

    /// The messages of the `compile_error!`s in an expansion printed as a string.
    pub(crate) fn compile_errors(output: &str) -> Vec<String> {
        let mut errors = Vec::new();
        let mut rest = output;
        while let Some(start) = rest.find("compile_error ! {") {
            rest = &rest[start..];
            let from = rest.find('"').map_or(0, |i| i + 1);
            let to = rest[from..].find('"').map_or(from, |i| from + i);
            errors.push(rest[from..to].to_owned());
            rest = &rest[to..];
        }
        errors
    }

    #[test]
    fn expands_a_plain_function() {
        let output = expand(
            TokenStream::new(),
            quote!(
                pub fn generate(prompt: String, seed: u64) -> String {
                    prompt
                }
            ),
        )
        .to_string();
        assert!(output.contains("pub struct Generate ;"), "{output}");
        assert!(output.contains("pub struct GenerateInputs"), "{output}");
        assert!(output.contains("\"generate\""), "{output}");
        assert!(!output.contains("compile_error"), "{output}");
    }

    #[test]
    fn expands_an_async_function_to_an_async_operator() {
        let output = expand(
            quote!(version = 4),
            quote!(
                pub async fn fetch(url: String) -> Result<usize, XcsError> {
                    Ok(url.len())
                }
            ),
        )
        .to_string();
        assert!(output.contains("pub async fn fetch"), "{output}");
        assert!(
            output.contains(":: xcs :: __private :: async_operator !"),
            "{output}"
        );
        assert!(
            output.contains(":: xcs :: __private :: AsyncOperator for Fetch"),
            "{output}"
        );
        assert!(
            !output.contains(":: xcs :: __private :: Operator for"),
            "{output}"
        );
        assert!(output.contains("send_future"), "{output}");
        // `XcsError` is returned as it is.
        assert!(!output.contains("operator_error"), "{output}");
        assert!(output.contains("fn __xcs_version"), "{output}");
        assert!(output.contains("4"), "{output}");
        assert!(!output.contains("compile_error"), "{output}");
    }

    #[test]
    fn writes_resource_and_estimate() {
        for item in [
            quote!(
                fn generate(prompt: String) -> String {
                    prompt
                }
            ),
            quote!(
                async fn generate(prompt: String) -> String {
                    prompt
                }
            ),
        ] {
            let output =
                expand(quote!(resource = "openai", estimate = costs::guess), item).to_string();
            assert!(compile_errors(&output).is_empty(), "{output}");
            assert!(
                output.contains(
                    "fn resource (& self) -> :: xcs :: __private :: Option < & :: core :: primitive :: str > { :: xcs :: __private :: Option :: Some (\"openai\") }"
                ),
                "{output}"
            );
            assert!(
                output.contains(
                    "fn estimate (& self , __xcs_input : & GenerateInputs) -> :: xcs :: __private :: Usage"
                ),
                "{output}"
            );
            assert!(
                output.contains(
                    "let __xcs_estimate : fn (& GenerateInputs) -> :: xcs :: __private :: Usage = costs :: guess ;"
                ),
                "{output}"
            );
        }
        // Without the arguments, the traits' defaults stay.
        let output = expand(
            TokenStream::new(),
            quote!(
                fn f() {}
            ),
        )
        .to_string();
        assert!(!output.contains("fn resource"), "{output}");
        assert!(!output.contains("fn estimate"), "{output}");
    }

    #[test]
    fn wraps_errors_of_other_types() {
        let output = expand(
            TokenStream::new(),
            quote!(
                fn parse(text: String) -> Result<u8, std::num::ParseIntError> {
                    text.parse()
                }
            ),
        )
        .to_string();
        assert!(output.contains("operator_error"), "{output}");
        assert!(output.contains("fn __xcs_clone_input"), "{output}");
    }

    #[test]
    fn reports_every_error_at_once() {
        let found = messages(
            quote!(nmae = "X"),
            quote!(
                unsafe fn f<T>(&self, x: &str, (a, b): (u8, u8)) {}
            ),
        );
        assert_eq!(found.len(), 6, "{found:?}");
    }

    #[test]
    fn never_panics() {
        let items = [
            quote!(),
            quote!(fn),
            quote!(
                struct S;
            ),
            quote!(
                fn f();
            ),
            quote!(
                fn _1() {}
            ),
            quote!(
                fn __() {}
            ),
            quote!(
                fn f(x: impl Fn(&str) -> &str) {}
            ),
            quote!(
                fn f(x: u8, x: u8) {}
            ),
            quote!(
                fn f(...) {}
            ),
            quote!(
                fn f() -> ! {
                    loop {}
                }
            ),
            quote!(
                async fn f() {}
            ),
            quote!(
                async fn f(x: &u8) -> Result<u8, XcsError> {}
            ),
            quote!(
                const async unsafe fn f() {}
            ),
        ];
        let args = [
            quote!(),
            quote!(name),
            quote!(name = ),
            quote!(name = "1x"),
            quote!(name = "type"),
            quote!(name = "a b"),
            quote!(name = 3),
            quote!("x"),
            quote!(name = "A", name = "B"),
            quote!(version),
            quote!(version = -1),
            quote!(version = 99999999999999999999999),
            quote!(version = 1, version = 1),
            quote!(resource = ""),
            quote!(resource = 1, estimate = "x"),
            quote!(resource = "a", estimate = f, name = "X", version = 2),
            quote!(estimate = a::b::<T>),
        ];
        for item in &items {
            for arg in &args {
                let _ = expand(arg.clone(), item.clone());
            }
        }
    }
}
