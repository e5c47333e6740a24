//! Code generation for validated options.
//!
//! The runtime is named only as `::xcs::__private::…` and core items by absolute path, so nothing
//! in the user's scope (a `mod core`, a `struct Option`, an own `mod __private`) can change what
//! the expansion means. Generated locals are `__xcs_`-prefixed and have mixed-site hygiene: user
//! code can neither see nor shadow them.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, Ident};
use xcs_core::options::{DeviceStrategy, OptionKind, Scheduler};

use super::validate::{HedgeLiteral, Setting, Value};

fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

/// An expression of type `OptionsPatch` that sets what `settings` say.
///
/// Values are evaluated in the order written. The `scheduler` setter runs last, so that its
/// run-time check against this patch's `use_parallel` sees every other setting.
pub(crate) fn patch(settings: &[Setting]) -> TokenStream {
    if settings.is_empty() {
        return quote!(::xcs::__private::OptionsPatch::new());
    }
    let patch = local("__xcs_patch");
    let mut statements = TokenStream::new();
    let mut scheduler = None;
    for setting in settings {
        let value = value_tokens(setting);
        if setting.spec.kind == OptionKind::Scheduler {
            let held = local("__xcs_scheduler");
            statements.extend(quote!(let #held = #value;));
            scheduler = Some(held);
        } else {
            let setter = format_ident!("__set_{}", setting.spec.name);
            statements.extend(quote!(#patch.#setter(#value);));
        }
    }
    if let Some(held) = scheduler {
        statements.extend(quote!(#patch.__set_scheduler(#held);));
    }
    quote!({
        let mut #patch = ::xcs::__private::OptionsPatch::new();
        #statements
        #patch
    })
}

/// The value passed to the option's `__set_…` method.
fn value_tokens(setting: &Setting) -> TokenStream {
    let none = quote!(::core::option::Option::None);
    match &setting.value {
        Value::Bool(b) => quote!(#b),
        Value::Workers(None)
        | Value::Timeout(None)
        | Value::Scheduler(None)
        | Value::Rate(None)
        | Value::Directory(None)
        | Value::Tokens(None)
        | Value::Cost(None)
        | Value::Hedge(None) => none,
        Value::Workers(Some(n)) if *n <= u128::from(u32::MAX) => {
            // Suffixed `usize`, which holds it on every target.
            let n = syn::LitInt::new(&format!("{n}usize"), Span::call_site());
            quote!(::xcs::__private::convert::max_workers(#n))
        }
        Value::Workers(Some(n)) => {
            // Perhaps more than the target's `usize` holds: read as `usize::MAX` then.
            let n = Literal::u128_suffixed(*n);
            quote!(::xcs::__private::convert::max_workers_literal(#n))
        }
        Value::Timeout(Some(seconds)) => {
            let seconds = Literal::f64_suffixed(*seconds);
            quote!(::xcs::__private::convert::timeout_seconds(#seconds))
        }
        Value::Retries(n) => {
            let n = Literal::u32_suffixed(*n);
            quote!(#n)
        }
        Value::Rate(Some(rate)) => {
            let rate = Literal::f64_suffixed(*rate);
            quote!(::core::option::Option::Some(#rate))
        }
        Value::Tokens(Some(n)) => {
            let n = Literal::u64_suffixed(*n);
            quote!(::core::option::Option::Some(#n))
        }
        Value::Cost(Some(cost)) => {
            let cost = Literal::f64_suffixed(*cost);
            quote!(::core::option::Option::Some(#cost))
        }
        Value::Hedge(Some(HedgeLiteral::Seconds(seconds))) => {
            // Checked finite and > 0: the conversion cannot panic.
            let seconds = Literal::f64_suffixed(*seconds);
            quote!(::xcs::__private::convert::hedge_after(#seconds))
        }
        Value::Hedge(Some(HedgeLiteral::Quantile(text))) => {
            quote!(::xcs::__private::convert::hedge_after(#text))
        }
        Value::Directory(Some(path)) => {
            // Checked non-empty: the conversion cannot panic.
            quote!(::xcs::__private::convert::cache_dir(#path))
        }
        Value::Device(strategy) => device(*strategy),
        Value::Scheduler(Some(scheduler)) => scheduler_tokens(*scheduler),
        Value::Runtime(expr) => runtime(setting.spec.kind, expr),
    }
}

fn device(strategy: DeviceStrategy) -> TokenStream {
    match strategy {
        DeviceStrategy::Auto => quote!(::xcs::__private::DeviceStrategy::Auto),
        DeviceStrategy::Cpu => quote!(::xcs::__private::DeviceStrategy::Cpu),
        DeviceStrategy::Gpu => quote!(::xcs::__private::DeviceStrategy::Gpu),
        other => {
            let name = other.as_str();
            quote!(::xcs::__private::DeviceStrategy::named(#name))
        }
    }
}

/// `Some(Scheduler::…)`.
fn scheduler_tokens(scheduler: Scheduler) -> TokenStream {
    let variant = match scheduler {
        Scheduler::Sequential => "Sequential",
        Scheduler::Topological => "Topological",
        Scheduler::Parallel => "Parallel",
        Scheduler::Wave => "Wave",
        Scheduler::Auto => "Auto",
        other => {
            let name = other.as_str();
            return quote!(::xcs::__private::Scheduler::from_name(#name));
        }
    };
    let variant = Ident::new(variant, Span::call_site());
    quote!(::core::option::Option::Some(::xcs::__private::Scheduler::#variant))
}

/// A non-literal value, converted (and checked) at run time. Spanned at the value, so a type
/// that does not fit is reported on the user's expression.
fn runtime(kind: OptionKind, expr: &Expr) -> TokenStream {
    let convert = kind.convert();
    let span = expr.span();
    let convert = Ident::new(convert, span);
    quote_spanned!(span=> ::xcs::__private::convert::#convert(#expr))
}

/// `execution_options!`: the body evaluated with the patch in force, inline; an `async` block
/// becomes a future with the patch in force whenever it is polled.
pub(crate) fn scoped(patch: TokenStream, body: Option<&Expr>, errors: TokenStream) -> TokenStream {
    let guard = local("__xcs_guard");
    let awaited = body.and_then(first_await);
    match body {
        Some(body @ Expr::Async(_)) => quote!({
            #errors
            ::xcs::__private::with_options_async(&#patch, #body)
        }),
        Some(body) if awaited.is_some() => {
            let span = awaited.unwrap_or_else(Span::call_site);
            let message = "`.await` inside `execution_options!(… => expr)` would hold the scope \
                           across the await and leak it into other futures; write \
                           `execution_options!(… => async { … }).await` instead";
            let error = quote_spanned!(span=> ::core::compile_error!(#message););
            quote!({
                #errors
                #error
                let #guard = ::xcs::__private::enter(#patch);
                #body
            })
        }
        Some(body) => quote!({
            #errors
            let #guard = ::xcs::__private::enter(#patch);
            #body
        }),
        // No body to expand: the `compile_error!` stands in for it, so its type is left open
        // and the code around the call does not fail too.
        None => quote!({
            let _ = #patch;
            #errors
        }),
    }
}

/// `set_execution_options!`: the patch merged into the global options; yields the new ones.
pub(crate) fn global(patch: TokenStream, errors: TokenStream) -> TokenStream {
    quote!({
        #errors
        ::xcs::__private::set_global_options(&#patch)
    })
}

/// The span of the first `.await` in `body` that is not inside a nested `async` block or
/// closure (those run later, outside the scope, and may await freely).
fn first_await(body: &Expr) -> Option<Span> {
    use syn::visit::Visit;

    struct Finder(Option<Span>);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_expr_await(&mut self, node: &'ast syn::ExprAwait) {
            if self.0.is_none() {
                self.0 = Some(node.await_token.span);
            }
            syn::visit::visit_expr_await(self, node);
        }
        fn visit_expr_async(&mut self, _: &'ast syn::ExprAsync) {}
        fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
        fn visit_item(&mut self, _: &'ast syn::Item) {}
    }

    let mut finder = Finder(None);
    finder.visit_expr(body);
    finder.0
}
