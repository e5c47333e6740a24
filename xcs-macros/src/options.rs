//! `execution_options!` and `set_execution_options!`: parse → validate → expand.
//!
//! - [`ast`] parses `name = value, … => expr` with error recovery;
//! - [`validate`] checks names and literal values against the option table of `xcs-core`;
//! - [`expand`] generates the code, naming the runtime only as `::xcs::__private::…`.
//!
//! Every error of a call is reported at once, each at the narrowest token, and the expansion is
//! produced regardless (without the rejected entries), so one mistake does not cascade into type
//! errors around the call.

pub(crate) mod ast;
mod expand;
pub(crate) mod validate;

use proc_macro2::TokenStream;

use self::ast::MacroKind;
use crate::errors::Errors;

/// `execution_options!(name = value, … => expr)`.
pub(crate) fn expand_scoped(input: TokenStream) -> TokenStream {
    let errors = Errors::new();
    let parsed = ast::parse(input, MacroKind::Scoped, &errors);
    let validated = validate::validate(parsed.entries, &errors);
    let patch = expand::patch(&validated.settings);
    expand::scoped(patch, parsed.body.as_ref(), errors.into_compile_errors())
}

/// `set_execution_options!(name = value, …)`.
pub(crate) fn expand_global(input: TokenStream) -> TokenStream {
    let errors = Errors::new();
    let parsed = ast::parse(input, MacroKind::Global, &errors);
    let validated = validate::validate(parsed.entries, &errors);
    let patch = expand::patch(&validated.settings);
    expand::global(patch, errors.into_compile_errors())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn normalized(tokens: TokenStream) -> String {
        tokens
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn scoped_expands_inline_with_a_guard() {
        let out = normalized(expand_scoped(
            quote!(use_parallel = true, max_workers = 4 => body()),
        ));
        assert_eq!(
            out,
            normalized(quote!({
                let __xcs_guard = ::xcs::__private::enter({
                    let mut __xcs_patch = ::xcs::__private::OptionsPatch::new();
                    __xcs_patch.__set_use_parallel(true);
                    __xcs_patch.__set_max_workers(::xcs::__private::convert::max_workers(4usize));
                    __xcs_patch
                });
                body()
            }))
        );
    }

    #[test]
    fn typed_literals_and_scheduler_last() {
        let out = normalized(expand_global(quote!(
            scheduler = "sequential",
            device_strategy = "gpu",
            timeout_seconds = 0.5,
            max_workers = None,
        )));
        assert_eq!(
            out,
            normalized(quote!({
                ::xcs::__private::set_global_options(&{
                    let mut __xcs_patch = ::xcs::__private::OptionsPatch::new();
                    let __xcs_scheduler =
                        ::core::option::Option::Some(::xcs::__private::Scheduler::Sequential);
                    __xcs_patch.__set_device_strategy(::xcs::__private::DeviceStrategy::Gpu);
                    __xcs_patch
                        .__set_timeout_seconds(::xcs::__private::convert::timeout_seconds(0.5f64));
                    __xcs_patch.__set_max_workers(::core::option::Option::None);
                    __xcs_patch.__set_scheduler(__xcs_scheduler);
                    __xcs_patch
                })
            }))
        );
    }

    #[test]
    fn non_literals_go_through_convert() {
        let out = normalized(expand_global(quote!(use_parallel = flag, max_workers = n)));
        assert!(
            out.contains("__set_use_parallel (:: xcs :: __private :: convert :: flag (flag))"),
            "{out}"
        );
        assert!(out.contains(":: convert :: max_workers (n)"), "{out}");
    }

    #[test]
    fn new_options_expand_to_typed_values() {
        let out = normalized(expand_global(quote!(
            max_retries = 3,
            rate_limit = 2,
            cache_dir = "/tmp/c",
            show_progress = true,
        )));
        assert_eq!(
            out,
            normalized(quote!({
                ::xcs::__private::set_global_options(&{
                    let mut __xcs_patch = ::xcs::__private::OptionsPatch::new();
                    __xcs_patch.__set_max_retries(3u32);
                    __xcs_patch.__set_rate_limit(::core::option::Option::Some(2f64));
                    __xcs_patch.__set_cache_dir(::xcs::__private::convert::cache_dir("/tmp/c"));
                    __xcs_patch.__set_show_progress(true);
                    __xcs_patch
                })
            }))
        );
        let out = normalized(expand_global(quote!(
            max_retries = n,
            rate_limit = r,
            cache_dir = dir,
            show_progress = p,
        )));
        for expected in [
            "__set_max_retries (:: xcs :: __private :: convert :: max_retries (n))",
            "__set_rate_limit (:: xcs :: __private :: convert :: rate_limit (r))",
            "__set_cache_dir (:: xcs :: __private :: convert :: cache_dir (dir))",
            "__set_show_progress (:: xcs :: __private :: convert :: flag (p))",
        ] {
            assert!(out.contains(expected), "{out}");
        }
        let out = normalized(expand_global(quote!(rate_limit = None, cache_dir = None)));
        assert_eq!(
            out.matches("(:: core :: option :: Option :: None)").count(),
            2,
            "{out}"
        );
    }

    #[test]
    fn budgets_expand_to_typed_values() {
        let out = normalized(expand_scoped(
            quote!(token_budget = 1000, cost_budget = 2 => body()),
        ));
        assert!(
            out.contains("__set_token_budget (:: core :: option :: Option :: Some (1000u64))"),
            "{out}"
        );
        assert!(
            out.contains("__set_cost_budget (:: core :: option :: Option :: Some (2f64))"),
            "{out}"
        );
        let out = normalized(expand_global(quote!(token_budget = n, cost_budget = c)));
        assert!(
            out.contains("__set_token_budget (:: xcs :: __private :: convert :: token_budget (n))"),
            "{out}"
        );
        assert!(
            out.contains("__set_cost_budget (:: xcs :: __private :: convert :: cost_budget (c))"),
            "{out}"
        );
    }

    #[test]
    fn errors_are_emitted_and_the_body_kept() {
        let out = normalized(expand_scoped(
            quote!(use_paralel = true, max_workers = 0 => body()),
        ));
        assert_eq!(out.matches("compile_error").count(), 2, "{out}");
        assert!(out.contains("Invalid execution option: use_paralel"));
        assert!(out.ends_with("body () }"), "{out}");
    }

    #[test]
    fn never_panics_on_odd_input() {
        for tokens in [
            quote!(),
            quote!(=>),
            quote!(=> =>),
            quote!(,,,),
            quote!(= = =),
            quote!(a = b = c => d),
            quote!(max_workers = 1e400),
            quote!(max_retries = -99999999999999999999999999999999999999999 => x),
            quote!(rate_limit = -1e400 => x),
            quote!(cache_dir = Some(Some("")) => x),
            quote!(timeout_seconds = 1e400 => x),
            quote!(timeout_seconds = 99999999999999999999999999999999999999999999 => x),
            quote!(use_parallel = [1, 2 => 3] => x),
            quote!(r#use_parallel = true => x),
            quote!(use_parallel = true => x => y),
            quote!(=> { a } b c),
            quote!(1 2 3),
            quote!(::a::b),
        ] {
            let _ = expand_scoped(tokens.clone());
            let _ = expand_global(tokens);
        }
    }
}
