//! STUB — being written by a helper.
use proc_macro2::TokenStream;
use quote::quote;

pub(crate) fn expand_scoped(input: TokenStream) -> TokenStream {
    let _ = input;
    quote!(compile_error!("not yet"))
}

pub(crate) fn expand_global(input: TokenStream) -> TokenStream {
    let _ = input;
    quote!(compile_error!("not yet"))
}
