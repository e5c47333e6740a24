//! `#[xcs::operator]` on a hand-written `impl Operator for T { … }` or
//! `impl AsyncOperator for T { … }` block: the block is kept whole, and the hidden methods the
//! function form writes are appended — inputs copied for retries, calls cached and persisted
//! whenever the `Input` and `Output` types allow (by the same autoref probes, so never a compile
//! error when they do not), the `version` and the fingerprint of the block. A hidden method the
//! block writes itself is left alone.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{ImplItem, ItemImpl, Path};

use super::Errors;
use super::args::Args;
use super::expand::{estimate_method, has_lifetime, resource_method};
use super::fingerprint::fingerprint;

const INHERENT_IMPL: &str = "expected `impl Operator for …` or `impl AsyncOperator for …`, `#[xcs::operator]` goes on a `fn` or on an operator's trait impl block";
const NEGATIVE_IMPL: &str =
    "`#[xcs::operator]` cannot go on a negative impl, remove the attribute or the `!`";
const OTHER_TRAIT: &str = "expected `Operator` or `AsyncOperator`, `#[xcs::operator]` goes on a `fn` or on an `impl Operator`/`impl AsyncOperator` block";
const NAME_ON_IMPL: &str = "`name` does not apply to an impl block: the operator is the type the block is for, and its `fn name` gives its name, remove `name = …`";

/// The hidden methods `#[xcs::operator]` adds to a block that has not written them.
const PERSIST_SUPPORT: &str = "persist_support";
const VERSION: &str = "__xcs_version";
/// The methods `resource = "…"` and `estimate = path` write.
const RESOURCE: &str = "resource";
const ESTIMATE: &str = "estimate";

/// The block with the hidden methods appended, or `None` (with the errors recorded) when it is
/// not an operator's trait impl.
pub(super) fn expand(block: &ItemImpl, args: &Args, errors: &mut Errors) -> Option<TokenStream> {
    let mark = errors.mark();
    let trait_path = match &block.trait_ {
        None => {
            errors.error_at(block.impl_token.span, INHERENT_IMPL);
            None
        }
        Some((Some(bang), ..)) => {
            errors.error(bang, NEGATIVE_IMPL);
            None
        }
        Some((None, path, _)) => {
            let last = path.segments.last().map(|segment| &segment.ident);
            if last.is_some_and(|ident| ident == "Operator" || ident == "AsyncOperator") {
                Some(path)
            } else {
                errors.error(path, OTHER_TRAIT);
                None
            }
        }
    };
    if let Some(span) = args.name_key {
        errors.error_at(span, NAME_ON_IMPL);
    }
    let written: Vec<String> = block
        .items
        .iter()
        .filter_map(|item| match item {
            ImplItem::Fn(method) => Some(method.sig.ident.to_string()),
            _ => None,
        })
        .collect();
    if let Some(span) = args.version_key {
        for method in [PERSIST_SUPPORT, VERSION] {
            if written.iter().any(|name| name == method) {
                errors.error_at(
                    span,
                    format_args!(
                        "`version` cannot apply: this block writes `{method}` itself, give the \
                         version there (`PersistSupport::version`) and remove `version = …`"
                    ),
                );
            }
        }
    }
    for (given, key, method) in [
        (args.resource_key, "resource", RESOURCE),
        (args.estimate_key, "estimate", ESTIMATE),
    ] {
        let Some(span) = given else { continue };
        if written.iter().any(|name| name == method) {
            errors.error_at(
                span,
                format_args!(
                    "`{key}` is given twice: by `{key} = …` here and by the block's `fn {method}`, \
                     remove one of the two"
                ),
            );
        }
    }
    let trait_path = trait_path?;
    if errors.stops_since(mark) {
        return None;
    }

    let output_ty = block.items.iter().find_map(|item| match item {
        ImplItem::Type(ty) if ty.ident == "Output" => Some(&ty.ty),
        _ => None,
    });
    let version = proc_macro2::Literal::u32_unsuffixed(args.version.unwrap_or(0));
    let fingerprint = proc_macro2::Literal::u64_suffixed(block_fingerprint(block));
    let hidden = Hidden {
        trait_path,
        version,
        fingerprint,
        output_borrows: output_ty.is_some_and(has_lifetime),
    };
    let mut block = block.clone();
    let missing = |name: &str| !written.iter().any(|written| written == name);
    let methods = [
        ("__xcs_cache_support", hidden.cache_support()),
        ("__xcs_clone_input", hidden.clone_input()),
        (VERSION, hidden.version()),
        (PERSIST_SUPPORT, hidden.persist_support()),
    ];
    for (name, method) in methods {
        if missing(name) {
            block.items.push(ImplItem::Verbatim(method));
        }
    }
    // Checked above: the block writes neither method the attribute gives.
    let input = hidden.input();
    for method in [
        resource_method(args.resource.as_ref()),
        estimate_method(args.estimate.as_ref(), &input),
    ] {
        if !method.is_empty() {
            block.items.push(ImplItem::Verbatim(method));
        }
    }
    Some(block.into_token_stream())
}

/// The fingerprint of the block as written: its generics, trait, type and items, without the
/// attributes of the block and of its items.
fn block_fingerprint(block: &ItemImpl) -> u64 {
    let mut bare = block.clone();
    bare.attrs.clear();
    for item in &mut bare.items {
        match item {
            ImplItem::Const(item) => item.attrs.clear(),
            ImplItem::Fn(item) => item.attrs.clear(),
            ImplItem::Type(item) => item.attrs.clear(),
            ImplItem::Macro(item) => item.attrs.clear(),
            _ => {}
        }
    }
    fingerprint(bare.into_token_stream())
}

/// What the hidden methods are written from.
struct Hidden<'a> {
    /// The trait as the block names it: `Self`'s types are written `<Self as Trait>::Input`, so
    /// a type implementing both traits is not ambiguous.
    trait_path: &'a Path,
    version: proc_macro2::Literal,
    fingerprint: proc_macro2::Literal,
    /// `type Output` mentions a lifetime: it never persists (see `expand::persist_support`).
    output_borrows: bool,
}

impl Hidden<'_> {
    fn input(&self) -> TokenStream {
        let path = self.trait_path;
        quote!(<Self as #path>::Input)
    }

    fn output(&self) -> TokenStream {
        let path = self.trait_path;
        quote!(<Self as #path>::Output)
    }

    /// Cached when the input is `Hash + Eq` and the output `Clone`, keyed by `Self`'s type.
    fn cache_support(&self) -> TokenStream {
        let path = self.trait_path;
        let (input, output) = (self.input(), self.output());
        let probe = quote!(::xcs::__private::probe::Probe);
        quote! {
            fn __xcs_cache_support(
                &self,
            ) -> ::xcs::__private::Option<::xcs::__private::CacheSupport<#input, #output>> {
                #[allow(unused_imports)]
                use ::xcs::__private::probe::{
                    CloneProbe as _, HashProbe as _, NoCloneProbe as _, NoHashProbe as _,
                    NoSizeProbe as _, SizeProbe as _, VecSizeProbe as _,
                };
                ::xcs::__private::CacheSupport::from_probes::<Self>(
                    <Self as #path>::name(self),
                    &[(
                        "input",
                        ::core::any::type_name::<#input>(),
                        (&&#probe::<#input>::new()).can_hash(),
                    )],
                    |__xcs_input: &#input, __xcs_state: &mut dyn ::xcs::__private::Hasher| {
                        (&&#probe::<#input>::new()).hash_into(__xcs_input, __xcs_state)
                    },
                    (&&#probe::<#output>::new()).cloner(),
                    (&&&#probe::<#output>::new()).byte_counter(),
                )
            }
        }
    }

    /// Retries copy the input when it is `Clone`.
    fn clone_input(&self) -> TokenStream {
        let input = self.input();
        quote! {
            fn __xcs_clone_input(
                &self,
            ) -> ::xcs::__private::Option<::xcs::__private::CloneInput<#input>> {
                #[allow(unused_imports)]
                use ::xcs::__private::probe::{CloneProbe as _, NoCloneProbe as _};
                (&&::xcs::__private::probe::Probe::<#input>::new()).cloner()
            }
        }
    }

    fn version(&self) -> TokenStream {
        let version = &self.version;
        quote! {
            fn __xcs_version(&self) -> ::core::primitive::u32 {
                #version
            }
        }
    }

    /// Persisted when the input is `Serialize` and the output `Serialize + DeserializeOwned`,
    /// under the version and the block's fingerprint.
    fn persist_support(&self) -> TokenStream {
        let (input, output) = (self.input(), self.output());
        let ret = quote! {
            ::xcs::__private::Option<::xcs::__private::PersistSupport<#input, #output>>
        };
        if self.output_borrows {
            return quote! {
                fn persist_support(&self) -> #ret {
                    ::xcs::__private::Option::None
                }
            };
        }
        let (version, fingerprint) = (&self.version, &self.fingerprint);
        quote! {
            fn persist_support(&self) -> #ret {
                #[allow(unused_imports)]
                use ::xcs::__private::probe::{
                    DecodeProbe as _, EncodeProbe as _, NoDecodeProbe as _, NoEncodeProbe as _,
                };
                let __xcs_input = (&&::xcs::__private::probe::Probe::<#input>::new()).encoder();
                let __xcs_output = (&&::xcs::__private::probe::Probe::<#output>::new()).encoder();
                let __xcs_decode = (&&::xcs::__private::probe::Probe::<#output>::new()).decoder();
                match (__xcs_input, __xcs_output, __xcs_decode) {
                    (
                        ::xcs::__private::Option::Some(__xcs_input),
                        ::xcs::__private::Option::Some(__xcs_output),
                        ::xcs::__private::Option::Some(__xcs_decode),
                    ) => ::xcs::__private::Option::Some(
                        ::xcs::__private::PersistSupport::from_fns(
                            __xcs_input,
                            __xcs_output,
                            __xcs_decode,
                        )
                        .version(#version)
                        .fingerprint(#fingerprint),
                    ),
                    _ => ::xcs::__private::Option::None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_block(args: TokenStream, item: TokenStream) -> (String, Vec<String>) {
        let output = crate::operator::expand(args, item).to_string();
        let errors = crate::operator::tests::compile_errors(&output);
        (output, errors)
    }

    #[test]
    fn appends_the_hidden_methods() {
        let (output, errors) = expand_block(
            quote!(version = 3),
            quote! {
                impl xcs::Operator for Chat {
                    type Input = Request;
                    type Output = String;
                    fn forward(&self, input: Request) -> Result<String, XcsError> { todo!() }
                    fn name(&self) -> &str { "chat" }
                }
            },
        );
        assert!(errors.is_empty(), "{errors:?}");
        for method in [
            "fn __xcs_cache_support",
            "fn __xcs_clone_input",
            "fn __xcs_version",
            "fn persist_support",
            ". version (3)",
        ] {
            assert_eq!(output.matches(method).count(), 1, "{method} in {output}");
        }
        assert!(
            output.contains("< Self as xcs :: Operator > :: Input"),
            "{output}"
        );
        assert!(output.contains("fn forward"), "{output}");
    }

    #[test]
    fn keeps_what_the_block_writes() {
        let (output, errors) = expand_block(
            TokenStream::new(),
            quote! {
                impl AsyncOperator for Chat {
                    type Input = Request;
                    type Output = &'static str;
                    async fn forward(&self, input: Request) -> Result<&'static str, XcsError> { todo!() }
                    fn name(&self) -> &str { "chat" }
                    fn __xcs_clone_input(&self) -> Option<CloneInput<Request>> { None }
                }
            },
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(output.matches("fn __xcs_clone_input").count(), 1);
        // A borrowed output never persists.
        assert!(!output.contains("decoder"), "{output}");
    }

    #[test]
    fn rejects_what_does_not_apply() {
        let cases = [
            (quote!(), quote!(impl Chat {}), INHERENT_IMPL),
            (quote!(), quote!(impl Clone for Chat {}), OTHER_TRAIT),
            (quote!(), quote!(impl !Operator for Chat {}), NEGATIVE_IMPL),
            (
                quote!(name = "X"),
                quote!(impl Operator for Chat {}),
                NAME_ON_IMPL,
            ),
        ];
        for (args, item, message) in cases {
            let (output, errors) = expand_block(args, item.clone());
            assert_eq!(errors, [message], "{item}");
            // The block is still emitted, unchanged.
            assert!(!output.contains("__xcs_"), "{output}");
        }
        let (_, errors) = expand_block(
            quote!(version = 2),
            quote!(impl Operator for Chat {
                fn persist_support(&self) -> Option<PersistSupport<u8, u8>> { None }
            }),
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("writes `persist_support`"), "{errors:?}");
    }

    #[test]
    fn adds_resource_and_estimate_unless_written() {
        let (output, errors) = expand_block(
            quote!(resource = "openai", estimate = guess),
            quote! {
                impl AsyncOperator for Chat {
                    type Input = Request;
                    type Output = String;
                    async fn forward(&self, input: Request) -> Result<String, XcsError> { todo!() }
                    fn name(&self) -> &str { "chat" }
                }
            },
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(output.matches("fn resource").count(), 1, "{output}");
        assert!(output.contains("Some (\"openai\")"), "{output}");
        assert!(
            output.contains(
                "fn estimate (& self , __xcs_input : & < Self as AsyncOperator > :: Input)"
            ),
            "{output}"
        );
        for (args, written, key) in [
            (
                quote!(resource = "openai"),
                quote!(
                    fn resource(&self) -> Option<&str> {
                        Some("x")
                    }
                ),
                "resource",
            ),
            (
                quote!(estimate = guess),
                quote!(
                    fn estimate(&self, input: &u8) -> Usage {
                        Usage::ZERO
                    }
                ),
                "estimate",
            ),
        ] {
            let (output, errors) = expand_block(
                args,
                quote!(impl Operator for Chat { type Input = u8; #written }),
            );
            assert_eq!(
                errors,
                [format!(
                    "`{key}` is given twice: by `{key} = …` here and by the block's `fn {key}`, remove one of the two"
                )]
            );
            assert!(!output.contains("__xcs_"), "{output}");
        }
        // A method the block writes, without the argument, is simply kept.
        let (output, errors) = expand_block(
            quote!(estimate = guess),
            quote!(impl Operator for Chat {
                type Input = u8;
                fn resource(&self) -> Option<&str> { Some("x") }
            }),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(output.matches("fn resource").count(), 1, "{output}");
        assert_eq!(output.matches("fn estimate").count(), 1, "{output}");
    }

    #[test]
    fn the_fingerprint_follows_the_code() {
        let of = |item: TokenStream| block_fingerprint(&syn::parse2(item).unwrap());
        let base = of(quote!(impl Operator for Chat { fn name(&self) -> &str { "a" } }));
        let documented = of(quote!(
            /// Docs.
            impl Operator for Chat {
                /// More docs.
                #[inline]
                fn name(&self) -> &str {
                    "a"
                }
            }
        ));
        assert_eq!(base, documented);
        assert_ne!(
            base,
            of(quote!(impl Operator for Chat { fn name(&self) -> &str { "b" } }))
        );
    }
}
