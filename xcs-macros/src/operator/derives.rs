//! The standard traits of the generated inputs struct, implemented whatever its field types.
//!
//! The inputs struct has one field per parameter, of whatever type the user wrote, so a derive
//! would fail to compile as soon as one field lacks the trait (`#[derive(Clone)]` on a struct
//! holding a `reqwest::Client`-like handle, say). Instead:
//!
//! - `Debug` is always implemented: fields whose type is not `Debug` show as `_` (the autoref
//!   probes of `::xcs::__private::probe`), so `batch(…).unwrap_err()` and `{:?}` always work.
//! - `Clone`, `PartialEq`, `Eq`, `Hash`, `Serialize` and `Deserialize` are implemented field by
//!   field, like their derives, under a bound per field that is *higher-ranked*
//!   (`where for<'__xcs> String: Clone`). On a non-generic impl, a plain `String: Clone` bound is
//!   "trivial" and rustc checks it where the impl is written, so a field lacking the trait would
//!   be a compile error; a bound under a binder is only checked where the impl is used. The
//!   struct then has each trait exactly when every field does, and using a missing one is an
//!   ordinary "trait bounds were not satisfied" error at the use. The binder's lifetime is
//!   unused by construction: the impls allow `unused_lifetimes` in case a user denies it (rustc
//!   does not report it in macro output today).
//! - serde writes the (de)serialization, but of a copy of the struct with one type parameter per
//!   field, declared in a module of its own inside a `const _`. Its derived impls are generic, so
//!   serde's usual `T: Serialize` bounds are not trivial; the user's types stay tokens with their
//!   own spans and hygiene instead of the strings `#[serde(bound = "…")]` would need (a string
//!   cannot carry `$crate`); and the module keeps serde's code, which names `str` and the like
//!   plainly, away from whatever the user's module shadows. The inputs struct's own impls convert
//!   to and from the copy, so the format is serde's for the struct as written: a struct named
//!   like the inputs struct with one field per parameter, named like it (without `r#`).
//!
//! `Eq` and `Hash` agree with `PartialEq`: all three look at every field, in order.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};
use syn::LitStr;
use syn::ext::IdentExt;

use super::ast::OperatorFn;

/// `Debug`, `Clone`, `PartialEq`, `Eq`, `Hash`, `Serialize` and `Deserialize` for `inputs`.
pub(super) fn inputs_traits(function: &OperatorFn<'_>, inputs: &Ident) -> TokenStream {
    let debug = debug(function, inputs);
    let std_traits = std_traits(function, inputs);
    let serde = serde(function, inputs);
    quote! {
        #debug
        #std_traits
        #serde
    }
}

/// `where for<'__xcs> T: #bound` for every field type `T`.
fn bounds(function: &OperatorFn<'_>, bound: TokenStream) -> TokenStream {
    let types = function.params.iter().map(|p| p.ty);
    quote! {
        where #( for<'__xcs> #types: #bound, )*
    }
}

/// `Debug` whatever the parameter types: fields whose type is not `Debug` show as `_`.
fn debug(function: &OperatorFn<'_>, inputs: &Ident) -> TokenStream {
    let cfgs = &function.cfgs;
    let fields: Vec<&Ident> = function.params.iter().map(|p| p.ident).collect();
    let types = function.params.iter().map(|p| p.ty);
    let field_names = function
        .params
        .iter()
        .map(|p| LitStr::new(&p.ident.unraw().to_string(), p.ident.span()));
    let inputs_name = LitStr::new(&inputs.unraw().to_string(), inputs.span());
    quote! {
        #(#cfgs)*
        #[allow(deprecated)]
        impl ::core::fmt::Debug for #inputs {
            fn fmt(
                &self,
                __xcs_formatter: &mut ::core::fmt::Formatter<'_>,
            ) -> ::core::fmt::Result {
                #[allow(unused_imports)]
                use ::xcs::__private::probe::{DebugProbe as _, NoDebugProbe as _};
                let mut __xcs_struct = ::core::fmt::Formatter::debug_struct(
                    __xcs_formatter,
                    #inputs_name,
                );
                #(
                    ::core::fmt::DebugStruct::field(
                        &mut __xcs_struct,
                        #field_names,
                        (&&::xcs::__private::probe::Probe::<#types>::new())
                            .as_debug(&self.#fields),
                    );
                )*
                ::core::fmt::DebugStruct::finish(&mut __xcs_struct)
            }
        }
    }
}

/// `Clone`, `PartialEq`, `Eq` and `Hash`, each when every field has it.
fn std_traits(function: &OperatorFn<'_>, inputs: &Ident) -> TokenStream {
    let cfgs = &function.cfgs;
    let fields: Vec<&Ident> = function.params.iter().map(|p| p.ident).collect();
    let clone_bounds = bounds(function, quote!(::core::clone::Clone));
    let partial_eq_bounds = bounds(function, quote!(::core::cmp::PartialEq));
    let eq_bounds = bounds(function, quote!(::core::cmp::Eq));
    let hash_bounds = bounds(function, quote!(::core::hash::Hash));
    let all_eq = fields
        .iter()
        .map(|field| quote!(::core::cmp::PartialEq::eq(&self.#field, &__xcs_other.#field)))
        .reduce(|all, one| quote!(#all && #one))
        .unwrap_or_else(|| quote!(true));
    let attrs = quote! {
        #(#cfgs)*
        #[automatically_derived]
        #[allow(deprecated, unused_lifetimes, single_use_lifetimes)]
    };
    quote! {
        #attrs
        impl ::core::clone::Clone for #inputs #clone_bounds {
            #[inline]
            fn clone(&self) -> Self {
                Self {
                    #( #fields: ::core::clone::Clone::clone(&self.#fields), )*
                }
            }
        }

        #attrs
        // Function pointers compare by address, as with `#[derive(PartialEq)]`; the user did
        // not write this comparison, so it is not theirs to be warned about (the lint is newer
        // than the oldest supported Rust, hence `unknown_lints`).
        #[allow(unknown_lints, unpredictable_function_pointer_comparisons)]
        impl ::core::cmp::PartialEq for #inputs #partial_eq_bounds {
            #[inline]
            fn eq(&self, __xcs_other: &Self) -> ::core::primitive::bool {
                #all_eq
            }
        }

        #attrs
        impl ::core::cmp::Eq for #inputs #eq_bounds {}

        #attrs
        impl ::core::hash::Hash for #inputs #hash_bounds {
            #[inline]
            fn hash<__XcsHasher: ::core::hash::Hasher>(&self, __xcs_state: &mut __XcsHasher) {
                #( ::core::hash::Hash::hash(&self.#fields, __xcs_state); )*
            }
        }
    }
}

/// `Serialize` and `Deserialize`, each when every field has it, through a generic copy of the
/// struct whose impls serde derives.
fn serde(function: &OperatorFn<'_>, inputs: &Ident) -> TokenStream {
    let cfgs = &function.cfgs;
    let fields: Vec<&Ident> = function.params.iter().map(|p| p.ident).collect();
    let types: Vec<_> = function.params.iter().map(|p| p.ty).collect();
    let params: Vec<Ident> = (0..fields.len())
        .map(|i| format_ident!("__XcsField{}", i))
        .collect();
    let serde = quote!(::xcs::__private::serde);
    let serialize_bounds = bounds(function, quote!(#serde::Serialize));
    let deserialize_bounds = bounds(function, quote!(#serde::Deserialize<'de>));
    quote! {
        #(#cfgs)*
        #[allow(deprecated)]
        const _: () = {
            // A module of its own: serde's derived code names `str` and other things plainly,
            // and the user's module may shadow them.
            mod __xcs_serde {
                /// What serde sees of the inputs struct: the same name and fields, the fields
                /// of generic types.
                #[derive(#serde::Serialize, #serde::Deserialize)]
                #[serde(crate = "::xcs::__private::serde")]
                pub struct #inputs<#(#params),*> {
                    #( pub #fields: #params, )*
                }
            }

            #[automatically_derived]
            #[allow(unused_lifetimes, single_use_lifetimes)]
            impl #serde::Serialize for #inputs #serialize_bounds {
                fn serialize<__XcsSerializer: #serde::Serializer>(
                    &self,
                    __xcs_serializer: __XcsSerializer,
                ) -> ::xcs::__private::Result<__XcsSerializer::Ok, __XcsSerializer::Error> {
                    #serde::Serialize::serialize(
                        &__xcs_serde::#inputs { #( #fields: &self.#fields, )* },
                        __xcs_serializer,
                    )
                }
            }

            #[automatically_derived]
            #[allow(unused_lifetimes, single_use_lifetimes)]
            impl<'de> #serde::Deserialize<'de> for #inputs #deserialize_bounds {
                fn deserialize<__XcsDeserializer: #serde::Deserializer<'de>>(
                    __xcs_deserializer: __XcsDeserializer,
                ) -> ::xcs::__private::Result<Self, __XcsDeserializer::Error> {
                    let __xcs_inputs =
                        <__xcs_serde::#inputs<#(#types),*> as #serde::Deserialize<'de>>::deserialize(
                            __xcs_deserializer,
                        )?;
                    ::xcs::__private::Result::Ok(Self {
                        #( #fields: __xcs_inputs.#fields, )*
                    })
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::Errors;

    fn expand(item: TokenStream) -> String {
        let function: syn::ItemFn = syn::parse2(item).unwrap();
        let model = OperatorFn::parse(&function, &mut Errors::default()).unwrap();
        inputs_traits(&model, &format_ident!("GenerateInputs")).to_string()
    }

    #[test]
    fn every_bound_is_higher_ranked() {
        let output = expand(quote!(
            fn generate(prompt: String, seed: u64) -> String {}
        ));
        for bound in [
            "for < '__xcs > String : :: core :: clone :: Clone ,",
            "for < '__xcs > u64 : :: core :: clone :: Clone ,",
            "for < '__xcs > u64 : :: core :: cmp :: Eq ,",
            "for < '__xcs > String : :: core :: hash :: Hash ,",
            "for < '__xcs > u64 : :: xcs :: __private :: serde :: Serialize ,",
            "for < '__xcs > String : :: xcs :: __private :: serde :: Deserialize < 'de > ,",
        ] {
            assert!(output.contains(bound), "{bound} in {output}");
        }
        // Nothing else bounds the impls: no trivial (eagerly checked) bound.
        assert_eq!(output.matches(" where ").count(), 6, "{output}");
        assert_eq!(output.matches("for < '__xcs >").count(), 12, "{output}");
    }

    #[test]
    fn no_fields() {
        let output = expand(quote!(
            fn answer() -> u64 {}
        ));
        assert!(
            output.contains(
                "fn eq (& self , __xcs_other : & Self) -> :: core :: primitive :: bool { true }"
            ),
            "{output}"
        );
        assert!(
            output.contains("pub struct GenerateInputs < > { }"),
            "{output}"
        );
    }
}
