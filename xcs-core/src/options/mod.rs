//! The execution options: their list, their typed form, and partial updates of them.
//!
//! Every option is declared exactly once, as one row of the list in `list.rs` (`option_list!`,
//! whose documentation says how to add one). The fields of [`ExecutionOptions`] and
//! [`OptionsPatch`], the patch's methods, parsing by name and the table [`OPTIONS`] are written
//! from that list (`generate.rs`), and so is what the cluster sends of the options. The
//! run-time parser ([`OptionsPatch::from_pairs`], [`OptionsPatch::from_env`]) and the
//! compile-time checks of the `execution_options!` macros both read that table and share the
//! value parsers below, so the names, the accepted values and the error messages cannot drift
//! apart.
//!
//! The options know nothing of the layers above them: a `device_strategy` naming a backend is
//! parsed here as a name, and checked against the registered backends where configuration is
//! read (`config.rs`).
//!
//! [`ExecutionOptions`] is `Copy`: reading the effective options is a plain copy out of a
//! thread-local, with no allocation and no reference count to touch.

use std::num::NonZeroUsize;
use std::time::Duration;

use crate::error::XcsError;
use generate::{builder, define_options, merge_row};

mod generate;
mod list;
mod parse;
mod patch;
#[cfg(test)]
mod tests;
mod values;

pub(crate) use list::option_list;
pub use list::{MAX_WORKERS, OptionKind, OptionSpec, lookup, suggest, valid_names};
pub use parse::*;
use patch::Narrow;
pub(crate) use patch::{Parser, env_pairs};
pub use values::*;

option_list!(define_options);

impl ExecutionOptions {
    /// These options with `patch` applied on top (what a scope does).
    #[inline]
    pub fn patched(mut self, patch: &OptionsPatch) -> ExecutionOptions {
        patch.apply_to(&mut self);
        self
    }
}

impl Default for ExecutionOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}
