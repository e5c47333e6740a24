//! What follows from the list of options: `option_list!(define_options)` writes
//! [`ExecutionOptions`](super::ExecutionOptions), [`OptionsPatch`](super::OptionsPatch) with its
//! per-option methods, and [`OPTIONS`](super::OPTIONS). The grammar of a row is documented on
//! `option_list!` (in `list.rs`); the rules that tie two options together (`use_parallel` and
//! `scheduler`) are written by hand in `patch.rs`.

/// Writes the items of every option from the rows of `option_list!`.
macro_rules! define_options {
    ($(
        $(#[$field_doc:meta])*
        $name:ident: $ty:ty = $default:expr => {
            kind: $kind:ident,
            default: $shown:literal,
            expected: $expected:literal,
            doc: $doc:literal,
            parse: $parse:path,
            $(#[$setter_doc:meta])*
            setter: $setter:ident $(checked_by $check:path)?,
            macro_setter: $macro_setter:ident,
            merge: $merge:ident,
            $(call_policy: $policy:expr,)?
            wire: $wire:ident $(($worker:expr))?,
        },
    )*) => {
        /// The effective execution options: what a call runs under.
        ///
        /// Read them with [`get_execution_options`](crate::get_execution_options); change them with
        /// `execution_options!` (scoped), `set_execution_options!` (global) or an [`OptionsPatch`].
        /// Every value this struct can hold through the public constructors is valid: worker counts are
        /// at least 1, timeouts are positive, rate limits are finite and positive, token budgets
        /// are at least 1 and cost budgets finite and positive, cache directories are non-empty,
        /// and `scheduler` never contradicts `use_parallel`.
        ///
        /// ```
        /// use xcs::ExecutionOptions;
        /// let defaults = ExecutionOptions::default();
        /// assert!(defaults.use_parallel);
        /// assert_eq!(defaults.max_workers, None);
        /// assert_eq!(defaults.timeout_seconds, None);
        /// assert_eq!(defaults.max_retries, 0);
        /// assert_eq!(defaults.rate_limit, None);
        /// assert_eq!(defaults.cache_dir, None);
        /// assert!(!defaults.show_progress);
        /// ```
        #[derive(Clone, Copy, Debug, PartialEq)]
        #[non_exhaustive]
        pub struct ExecutionOptions {
            $(
                $(#[$field_doc])*
                pub $name: $ty,
            )*
        }

        impl ExecutionOptions {
            /// The defaults, usable in `const` context.
            pub const DEFAULT: ExecutionOptions = ExecutionOptions {
                $($name: $default,)*
            };

            /// Whether a call under these options does more than run its body (besides a deadline):
            /// caching, tracing, retries, a rate limit or a budget (the rows with a
            /// `call_policy`). `false` is the fast path.
            #[inline]
            #[allow(clippy::redundant_closure_call)]
            pub(crate) fn has_call_policy(&self) -> bool {
                false $($(|| ($policy)(&self.$name))?)*
            }
        }

        /// A partial set of options: what a scope or a global update sets. Options it leaves unset are
        /// inherited from the level below (defaults ← global ← outer scopes ← inner scope).
        ///
        /// Build one from configuration with [`from_pairs`](OptionsPatch::from_pairs) or
        /// [`from_env`](OptionsPatch::from_env) (every name and value checked, errors typed), or in code
        /// with the builder methods.
        ///
        /// ```
        /// use xcs::{OptionsPatch, with_options, get_execution_options};
        /// let patch = OptionsPatch::from_pairs([("use_parallel", "false"), ("max_workers", "2")])?;
        /// with_options(&patch, || {
        ///     let options = get_execution_options();
        ///     assert!(!options.use_parallel);
        ///     assert_eq!(options.max_workers.map(|n| n.get()), Some(2));
        /// });
        /// # Ok::<(), xcs::XcsError>(())
        /// ```
        #[derive(Clone, Copy, Debug, Default, PartialEq)]
        pub struct OptionsPatch {
            $($name: Option<$ty>,)*
        }

        impl OptionsPatch {
            /// A patch that sets nothing.
            pub const fn new() -> OptionsPatch {
                OptionsPatch {
                    $($name: None,)*
                }
            }

            /// A patch that sets every option to the value it has in `options`. Applied as a
            /// scope, its budgets narrow those in force like any scope's.
            pub const fn from_options(options: &ExecutionOptions) -> OptionsPatch {
                OptionsPatch {
                    $($name: Some(options.$name),)*
                }
            }

            $(
                builder!($(#[$setter_doc])* $setter, $name, $ty $(, $check)?);
            )*

            $(
                /// Unchecked setter for the macros, which validate literals at compile time and
                /// other values through [`crate::__private::convert`]. Where the builder method
                /// checks the patch (`scheduler` against this patch's `use_parallel`, which the
                /// macros only allow for non-literal values), this panics with that error.
                #[doc(hidden)]
                pub fn $macro_setter(&mut self, v: $ty) {
                    self.$name = Some(v);
                    $(
                        if let Err(err) = $check(self) {
                            panic!("{err}");
                        }
                    )?
                }
            )*

            /// Sets the option of `spec` from its configuration text (surrounding whitespace
            /// ignored).
            pub(super) fn set_parsed(
                &mut self,
                spec: &'static OptionSpec,
                raw: &str,
            ) -> Result<(), XcsError> {
                let value = raw.trim();
                match spec.name {
                    $(stringify!($name) => self.$name = Some($parse(spec, value)?),)*
                    _ => return Err(XcsError::invalid_option(spec.name)),
                }
                Ok(())
            }

            /// Takes what `other` sets of the options that merge plainly (the newer wins) and of
            /// those that narrow (the narrower wins).
            #[inline]
            pub(super) fn take_unlinked(&mut self, other: &OptionsPatch) {
                $(merge_row!($merge, take, self, other, $name);)*
            }

            /// Applies, as a scope, what this patch sets of the options that merge plainly
            /// (replacing) and of those that narrow (narrowing).
            #[inline]
            pub(super) fn apply_unlinked(&self, options: &mut ExecutionOptions) {
                $(merge_row!($merge, apply, self, options, $name);)*
            }

            /// Applies, as a global update, what this patch sets of the options that are not
            /// linked: every one of them replaces, budgets included.
            #[inline]
            pub(super) fn replace_unlinked(&self, options: &mut ExecutionOptions) {
                $(merge_row!($merge, replace, self, options, $name);)*
            }
        }

        /// For each option, whether its default as the table shows it (quotes removed) reads
        /// back, through the option's own parser, as its default in [`ExecutionOptions`].
        #[cfg(test)]
        pub(super) fn defaults_parse_back() -> Vec<(&'static str, bool)> {
            vec![$(
                (
                    stringify!($name),
                    lookup(stringify!($name))
                        .and_then(|spec| $parse(spec, spec.default.trim_matches('"')).ok())
                        == Some(ExecutionOptions::DEFAULT.$name),
                ),
            )*]
        }

        /// The table of every execution option. The single source of truth for names.
        pub const OPTIONS: &[OptionSpec] = &[
            $(
                OptionSpec {
                    name: stringify!($name),
                    kind: OptionKind::$kind,
                    default: $shown,
                    expected: $expected,
                    doc: $doc,
                },
            )*
        ];
    };
}
pub(super) use define_options;

/// A builder method of [`OptionsPatch`](super::OptionsPatch): infallible, or checking the patch.
macro_rules! builder {
    ($(#[$doc:meta])* $setter:ident, $name:ident, $ty:ty) => {
        $(#[$doc])*
        pub fn $setter(mut self, value: $ty) -> Self {
            self.$name = Some(value);
            self
        }
    };
    ($(#[$doc:meta])* $setter:ident, $name:ident, $ty:ty, $check:path) => {
        $(#[$doc])*
        pub fn $setter(mut self, value: $ty) -> Result<Self, XcsError> {
            self.$name = Some(value);
            $check(&self)?;
            Ok(self)
        }
    };
}
pub(super) use builder;

/// One option's part in merging two patches (`take`), applying a patch as a scope (`apply`) or
/// as a global update (`replace`), by its `merge` rule: `plain` replaces, `narrow` keeps the
/// narrower of the two in a scope (see `Narrow` in `patch.rs`) and replaces in a global
/// update, `linked` is written by hand in `patch.rs`.
macro_rules! merge_row {
    (plain, take, $patch:ident, $other:ident, $name:ident) => {
        if $other.$name.is_some() {
            $patch.$name = $other.$name;
        }
    };
    (narrow, take, $patch:ident, $other:ident, $name:ident) => {
        if let Some(inner) = $other.$name {
            $patch.$name = Some(match $patch.$name {
                Some(outer) => Narrow::narrowed(outer, inner),
                None => inner,
            });
        }
    };
    (narrow, apply, $patch:ident, $options:ident, $name:ident) => {
        if let Some(inner) = $patch.$name {
            $options.$name = Narrow::narrowed($options.$name, inner);
        }
    };
    (plain, $mode:ident, $patch:ident, $options:ident, $name:ident) => {
        if let Some(v) = $patch.$name {
            $options.$name = v;
        }
    };
    (narrow, replace, $patch:ident, $options:ident, $name:ident) => {
        if let Some(v) = $patch.$name {
            $options.$name = v;
        }
    };
    (linked, $mode:ident, $patch:ident, $options:ident, $name:ident) => {};
}
pub(super) use merge_row;
