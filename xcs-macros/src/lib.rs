//! Procedural macros of xcs. Use them through the `xcs` crate, which documents them:
//! `execution_options!`, `set_execution_options!` and `#[operator]`.
//!
//! Each entry point converts to `proc_macro2` and hands over to a module that parses what the
//! user wrote into a small AST, validates it (collecting every error), and expands it. Generated
//! code names the runtime only as `::xcs::__private::…`.
#![forbid(unsafe_code)]

use proc_macro::TokenStream;

mod operator;
mod options;

/// Evaluates an expression with execution options in force. See `xcs::execution_options!`.
#[proc_macro]
pub fn execution_options(input: TokenStream) -> TokenStream {
    options::expand_scoped(input.into()).into()
}

/// Merges execution options into the global ones. See `xcs::set_execution_options!`.
#[proc_macro]
pub fn set_execution_options(input: TokenStream) -> TokenStream {
    options::expand_global(input.into()).into()
}

/// Turns a function into an operator. See `xcs::operator`.
#[proc_macro_attribute]
pub fn operator(args: TokenStream, item: TokenStream) -> TokenStream {
    operator::expand(args.into(), item.into()).into()
}
