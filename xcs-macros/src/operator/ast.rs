//! The function as an operator sees it: its name, visibility, parameters and output, read from
//! the `syn` item, with everything an operator cannot carry rejected on the narrowest token.

use proc_macro2::{Ident, Span};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, GenericArgument, GenericParam, Item, ItemFn, Meta, Pat, PathArguments,
    ReturnType, Signature, Type, TypeParamBound, Visibility,
};

use super::Errors;

/// The attribute is on something other than a function or an impl block.
pub(super) const NOT_A_FUNCTION: &str = "expected a function or an impl block, `#[xcs::operator]` goes on a `fn` or on an `impl Operator`/`impl AsyncOperator` block";

// Messages: lowercase, one line, no trailing period, what to do instead in the same sentence.

const CONST_FN: &str =
    "an operator cannot be a `const fn`, remove `const` (call a `const fn` from the body instead)";
const UNSAFE_FN: &str = "an operator cannot be an `unsafe fn`, make it safe and keep the `unsafe` block inside the body";
const FOREIGN_ABI: &str = "an operator cannot have a foreign ABI, remove the `extern` and call the foreign function from the body";
const TYPE_PARAMETER: &str =
    "an operator cannot carry generic parameters, write the function for one concrete type";
const CONST_PARAMETER: &str = "an operator cannot carry const generic parameters, use a constant or take the value as a parameter";
const LIFETIME_PARAMETER: &str =
    "an operator cannot carry lifetime parameters, take owned parameters instead";
const VARIADIC: &str = "an operator cannot be variadic, take the arguments as a `Vec` instead";
const SELF_RECEIVER: &str =
    "an operator cannot take `self`, make it a free function and pass what it needs as parameters";
const CONDITIONAL_PARAMETER: &str =
    "an operator parameter cannot be conditional, put the `#[cfg]` on the whole function";
const WILDCARD_PARAMETER: &str =
    "bind the parameter to a name, it becomes a field of the operator's inputs";
const PATTERN_PARAMETER: &str = "bind the parameter to a name and destructure it in the body, it becomes a field of the operator's inputs";

/// A function accepted as an operator.
pub(super) struct OperatorFn<'a> {
    /// The function's name, as written (possibly raw, `r#type`).
    pub(super) ident: &'a Ident,
    pub(super) vis: &'a Visibility,
    /// `#[cfg]`s of the function, copied onto every generated item: they refer to the function,
    /// so they exist exactly when it does.
    pub(super) cfgs: Vec<&'a Attribute>,
    /// `#[deprecated]` and `#[doc(hidden)]`, copied onto the generated structs.
    pub(super) struct_attrs: Vec<&'a Attribute>,
    pub(super) params: Vec<Param<'a>>,
    pub(super) output: Output<'a>,
    /// The `async` keyword of an `async fn`: the operator is an `AsyncOperator`.
    pub(super) asyncness: Option<Span>,
    /// The fingerprint of the signature and the body, part of every persistent cache key.
    pub(super) fingerprint: u64,
}

/// One parameter: a field of the inputs struct.
pub(super) struct Param<'a> {
    pub(super) ident: &'a Ident,
    pub(super) ty: &'a Type,
}

/// What the function returns, as the operator's output.
pub(super) enum Output<'a> {
    /// No return type: `Output = ()`.
    Unit,
    /// An infallible function: `Output` is its return type.
    Value(&'a Type),
    /// A function returning `Result<ok, E>` (any path ending in `Result`).
    Fallible {
        ok: &'a Type,
        /// `E` if written, else the return type: where a failed error conversion points.
        error_span: Span,
        /// `E` is `XcsError`: passed through instead of wrapped in `XcsError::Operator`.
        passthrough: bool,
    },
}

impl<'a> OperatorFn<'a> {
    /// Reads `function`, recording every unsupported part in `errors`; `None` if there was one.
    pub(super) fn parse(function: &'a ItemFn, errors: &mut Errors) -> Option<Self> {
        let mark = errors.mark();
        let sig = &function.sig;
        let block = &function.block;
        check_signature(sig, errors);
        let params = parse_params(sig, errors);
        let output = match &sig.output {
            ReturnType::Default => Output::Unit,
            ReturnType::Type(_, ty) => {
                check_type(ty, Position::Return, errors);
                classify_output(ty)
            }
        };
        if errors.stops_since(mark) {
            return None;
        }
        Some(OperatorFn {
            ident: &sig.ident,
            vis: &function.vis,
            cfgs: function
                .attrs
                .iter()
                .filter(|attr| attr.path().is_ident("cfg"))
                .collect(),
            struct_attrs: function
                .attrs
                .iter()
                .filter(|attr| is_struct_attr(attr))
                .collect(),
            params,
            output,
            asyncness: sig.asyncness.map(|token| token.span),
            fingerprint: super::fingerprint::fingerprint(quote::quote!(#sig #block)),
        })
    }

    /// The function's name without `r#`: the operator's `name()`.
    pub(super) fn name(&self) -> String {
        self.ident.unraw().to_string()
    }
}

/// Rejects qualifiers (but `async`: an async operator), generics and variadics.
fn check_signature(sig: &Signature, errors: &mut Errors) {
    if let Some(token) = &sig.constness {
        errors.error(token, CONST_FN);
    }
    if let Some(token) = &sig.unsafety {
        errors.error(token, UNSAFE_FN);
    }
    if let Some(abi) = &sig.abi {
        errors.error(abi, FOREIGN_ABI);
    }
    for param in &sig.generics.params {
        let (tokens, message): (&dyn ToTokens, _) = match param {
            GenericParam::Type(param) => (&param.ident, TYPE_PARAMETER),
            GenericParam::Const(param) => (&param.ident, CONST_PARAMETER),
            GenericParam::Lifetime(param) => (&param.lifetime, LIFETIME_PARAMETER),
        };
        errors.error(tokens, message);
    }
    if let Some(variadic) = &sig.variadic {
        errors.error(variadic.dots, VARIADIC);
    }
}

/// The named parameters; rejects receivers, patterns, borrowed and conditional parameters.
fn parse_params<'a>(sig: &'a Signature, errors: &mut Errors) -> Vec<Param<'a>> {
    let mut params = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => errors.error(receiver.self_token, SELF_RECEIVER),
            FnArg::Typed(typed) => {
                for attr in &typed.attrs {
                    if is_conditional(attr) {
                        errors.error(attr, CONDITIONAL_PARAMETER);
                    }
                }
                check_type(&typed.ty, Position::Parameter, errors);
                match &*typed.pat {
                    Pat::Ident(binding) => params.push(Param {
                        ident: &binding.ident,
                        ty: &typed.ty,
                    }),
                    Pat::Wild(wild) => errors.error(wild, WILDCARD_PARAMETER),
                    pattern => errors.error(pattern, PATTERN_PARAMETER),
                }
            }
        }
    }
    // A name bound twice is rustc's error on the function itself; generating a struct with
    // a duplicate field would only repeat it.
    for (i, param) in params.iter().enumerate() {
        if params[..i]
            .iter()
            .any(|earlier| earlier.ident == param.ident)
        {
            errors.stop_silently();
        }
    }
    params
}

/// `Result<T, E>`, `io::Result<T>`, … → fallible; anything else → the output as is.
fn classify_output(ty: &Type) -> Output<'_> {
    let Type::Path(path) = ungroup(ty) else {
        return Output::Value(ty);
    };
    let Some(last) = path.path.segments.last() else {
        return Output::Value(ty);
    };
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return Output::Value(ty);
    };
    if path.qself.is_some() || last.ident != "Result" {
        return Output::Value(ty);
    }
    let mut types = args.args.iter().filter_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    });
    let Some(ok) = types.next() else {
        return Output::Value(ty);
    };
    let error = types.next();
    let passthrough = error.is_some_and(|error| match ungroup(error) {
        Type::Path(error) => error
            .path
            .segments
            .last()
            .is_some_and(|last| last.ident == "XcsError"),
        _ => false,
    });
    Output::Fallible {
        ok,
        error_span: error.unwrap_or(ty).span(),
        passthrough,
    }
}

/// `ty` without the invisible groups `macro_rules!` wraps around `$t:ty` and without parens.
fn ungroup(mut ty: &Type) -> &Type {
    loop {
        match ty {
            Type::Group(group) => ty = &group.elem,
            Type::Paren(paren) => ty = &paren.elem,
            _ => return ty,
        }
    }
}

#[derive(Clone, Copy)]
enum Position {
    Parameter,
    Return,
}

/// Rejects what cannot be a field of the inputs struct or the `Output` of an operator: borrowed
/// data (references and lifetimes other than `'static`), `impl Trait` and `!`.
fn check_type(ty: &Type, position: Position, errors: &mut Errors) {
    match ty {
        Type::Reference(reference) => {
            let is_static = reference
                .lifetime
                .as_ref()
                .is_some_and(|lifetime| lifetime.ident == "static");
            if is_static {
                check_type(&reference.elem, position, errors);
            } else {
                errors.error(reference, borrowed_message(&reference.elem, position));
            }
        }
        Type::ImplTrait(impl_trait) => errors.error(
            impl_trait,
            match position {
                Position::Parameter => {
                    "an operator cannot carry the generics of an `impl Trait` parameter, take a concrete type such as `Box<dyn Trait>`"
                }
                Position::Return => {
                    "an operator cannot return `impl Trait`, return a concrete type such as `Box<dyn Trait>`"
                }
            },
        ),
        Type::Never(never) => errors.error(
            never,
            "an operator must produce a value, return `()` or a `Result` instead of `!`",
        ),
        Type::Array(array) => check_type(&array.elem, position, errors),
        Type::Slice(slice) => check_type(&slice.elem, position, errors),
        Type::Ptr(pointer) => check_type(&pointer.elem, position, errors),
        Type::Group(group) => check_type(&group.elem, position, errors),
        Type::Paren(paren) => check_type(&paren.elem, position, errors),
        Type::Tuple(tuple) => {
            for elem in &tuple.elems {
                check_type(elem, position, errors);
            }
        }
        Type::Path(path) => {
            if let Some(qself) = &path.qself {
                check_type(&qself.ty, position, errors);
            }
            check_path(&path.path, position, errors);
        }
        Type::TraitObject(object) => check_bounds(object.bounds.iter(), position, errors),
        // Function pointers and the rest: lifetimes there are higher-ranked, or rustc has its
        // own say on the function itself.
        _ => {}
    }
}

fn check_path(path: &syn::Path, position: Position, errors: &mut Errors) {
    for segment in &path.segments {
        // `Fn(&str) -> &str` sugar: higher-ranked, fine in a field.
        let PathArguments::AngleBracketed(args) = &segment.arguments else {
            continue;
        };
        for arg in &args.args {
            match arg {
                GenericArgument::Type(ty) => check_type(ty, position, errors),
                GenericArgument::Lifetime(lifetime) => check_lifetime(lifetime, position, errors),
                GenericArgument::AssocType(assoc) => check_type(&assoc.ty, position, errors),
                GenericArgument::Constraint(constraint) => {
                    check_bounds(constraint.bounds.iter(), position, errors);
                }
                _ => {}
            }
        }
    }
}

fn check_bounds<'b>(
    bounds: impl Iterator<Item = &'b TypeParamBound>,
    position: Position,
    errors: &mut Errors,
) {
    for bound in bounds {
        match bound {
            TypeParamBound::Trait(bound) => check_path(&bound.path, position, errors),
            TypeParamBound::Lifetime(lifetime) => check_lifetime(lifetime, position, errors),
            _ => {}
        }
    }
}

fn check_lifetime(lifetime: &syn::Lifetime, position: Position, errors: &mut Errors) {
    if lifetime.ident != "static" {
        errors.error(
            lifetime,
            match position {
                Position::Parameter => {
                    "an operator parameter cannot borrow, take an owned type or use `'static`"
                }
                Position::Return => {
                    "an operator cannot return borrowed data, return an owned type or use `'static`"
                }
            },
        );
    }
}

/// What to take (or return) instead of a borrow of `elem`.
fn borrowed_message(elem: &Type, position: Position) -> &'static str {
    let is_str = matches!(ungroup(elem), Type::Path(path) if path.path.is_ident("str"));
    let is_slice = matches!(ungroup(elem), Type::Slice(_));
    match (position, is_str, is_slice) {
        (Position::Parameter, true, _) => {
            "an operator parameter cannot be a reference, take an owned `String` instead of `&str`"
        }
        (Position::Parameter, _, true) => {
            "an operator parameter cannot be a reference, take an owned `Vec<T>` instead of `&[T]`"
        }
        (Position::Parameter, ..) => {
            "an operator parameter cannot be a reference, take `T` by value instead of `&T`"
        }
        (Position::Return, true, _) => {
            "an operator cannot return a reference, return an owned `String` instead of `&str`"
        }
        (Position::Return, _, true) => {
            "an operator cannot return a reference, return an owned `Vec<T>` instead of `&[T]`"
        }
        (Position::Return, ..) => {
            "an operator cannot return a reference, return `T` by value instead of `&T`"
        }
    }
}

/// `#[cfg(…)]` or `#[cfg_attr(…)]`.
fn is_conditional(attr: &Attribute) -> bool {
    attr.path().is_ident("cfg") || attr.path().is_ident("cfg_attr")
}

/// `#[deprecated]` or `#[doc(hidden)]`: deprecating or hiding the function does the same to
/// its operator.
fn is_struct_attr(attr: &Attribute) -> bool {
    let path = attr.path();
    match &attr.meta {
        _ if path.is_ident("deprecated") => true,
        Meta::List(list) if path.is_ident("doc") => list.tokens.to_string() == "hidden",
        _ => false,
    }
}

/// The keyword of an item that is not a function, where the error should point.
pub(super) fn item_keyword(item: &Item) -> Span {
    match item {
        Item::Const(item) => item.const_token.span,
        Item::Enum(item) => item.enum_token.span,
        Item::ExternCrate(item) => item.extern_token.span,
        Item::ForeignMod(item) => item.abi.span(),
        Item::Impl(item) => item.impl_token.span,
        Item::Macro(item) => item.mac.path.span(),
        Item::Mod(item) => item.mod_token.span,
        Item::Static(item) => item.static_token.span,
        Item::Struct(item) => item.struct_token.span,
        Item::Trait(item) => item.trait_token.span,
        Item::TraitAlias(item) => item.trait_token.span,
        Item::Type(item) => item.type_token.span,
        Item::Union(item) => item.union_token.span,
        Item::Use(item) => item.use_token.span,
        other => other.span(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    #[test]
    fn fallible_outputs() {
        let cases: [(Type, bool, bool); 7] = [
            (parse_quote!(String), false, false),
            (parse_quote!(Result<String, E>), true, false),
            (
                parse_quote!(std::result::Result<u8, std::io::Error>),
                true,
                false,
            ),
            (parse_quote!(io::Result<u8>), true, false),
            (parse_quote!(anyhow::Result<u8>), true, false),
            (parse_quote!(Result<u8, xcs::XcsError>), true, true),
            (parse_quote!(<T as Tr>::Result<u8>), false, false),
        ];
        for (ty, fallible, pass) in &cases {
            match classify_output(ty) {
                Output::Fallible { passthrough, .. } => {
                    assert!(fallible, "{}", ty.to_token_stream());
                    assert_eq!(passthrough, *pass, "{}", ty.to_token_stream());
                }
                _ => assert!(!fallible, "{}", ty.to_token_stream()),
            }
        }
    }

    #[test]
    fn borrowed_types() {
        let rejected: [Type; 6] = [
            parse_quote!(&str),
            parse_quote!(&mut u8),
            parse_quote!(Vec<&'a str>),
            parse_quote!(Cow<'_, str>),
            parse_quote!(Box<dyn Fn() + 'a>),
            parse_quote!(impl Into<String>),
        ];
        let accepted: [Type; 4] = [
            parse_quote!(&'static str),
            parse_quote!(fn(&str) -> &str),
            parse_quote!(Box<dyn Fn(&str) -> String + Send>),
            parse_quote!(std::borrow::Cow<'static, str>),
        ];
        for ty in &rejected {
            let mut errors = Errors::default();
            check_type(ty, Position::Parameter, &mut errors);
            assert_eq!(errors.mark(), 1, "{}", ty.to_token_stream());
        }
        for ty in &accepted {
            let mut errors = Errors::default();
            check_type(ty, Position::Parameter, &mut errors);
            assert_eq!(errors.mark(), 0, "{}", ty.to_token_stream());
        }
    }
}
