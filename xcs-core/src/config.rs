//! Options from configuration: `(name, value)` pairs and the environment.
//!
//! The options parse every value by itself (`crate::options`); what they cannot know is which
//! device backends are registered, so a `device_strategy` naming a backend is checked here,
//! against the registry of `crate::device`, as each pair is read. Keeping that one check out of
//! the options keeps them below the device layer: options know nothing of backends.

use std::ffi::OsStr;

use crate::device;
use crate::error::XcsError;
use crate::options::{DeviceStrategy, OptionKind, OptionsPatch, Parser, env_pairs};

impl OptionsPatch {
    /// Parses `(name, value)` pairs from configuration. Names are the option names of the table
    /// (`use_parallel`, `max_workers`, …); values are strings as a config file or command line
    /// would hold them (`"true"`, `"8"`, `"0.5"`, `"cpu"`, `"/var/cache/app"`, `"none"`).
    /// Surrounding whitespace is ignored; `"none"` and `"null"` (any case) unset the options
    /// that take `None` (write a directory named `none` as `./none`).
    ///
    /// # Errors
    /// [`XcsError::InvalidOption`] for an unknown name, [`XcsError::InvalidValue`] for a value
    /// the option cannot take (`max_workers = 0` included), a name given
    /// twice, or a `scheduler` contradicting `use_parallel`. On error nothing is applied
    /// anywhere.
    ///
    /// ```
    /// use xcs::{OptionsPatch, XcsError};
    /// let err = OptionsPatch::from_pairs([("use_paralel", "true")]).unwrap_err();
    /// assert_eq!(err.to_string(), "Invalid execution option: use_paralel; did you mean `use_parallel`?");
    /// assert!(matches!(
    ///     OptionsPatch::from_pairs([("timeout_seconds", "NaN")]),
    ///     Err(XcsError::InvalidValue { .. })
    /// ));
    /// ```
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<OptionsPatch, XcsError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut parser = Parser::new();
        for (name, value) in pairs {
            let (name, value) = (name.as_ref(), value.as_ref());
            let spec = parser.set(name, value)?;
            // A strategy naming a backend must name one that is registered now: configuration
            // that names a backend nobody registered is a mistake to report at once, not when
            // the first batch runs.
            if spec.kind == OptionKind::Device {
                let value = value.trim();
                if let DeviceStrategy::Named(backend) = DeviceStrategy::named(value) {
                    if !device::is_registered(backend.as_str()) {
                        return Err(XcsError::InvalidValue {
                            option: spec.name.to_owned(),
                            value: value.to_owned(),
                            expected: spec.expected.to_owned(),
                        });
                    }
                }
            }
        }
        parser.finish()
    }

    /// Reads `XCS_<OPTION>` environment variables (`XCS_USE_PARALLEL`, `XCS_MAX_WORKERS`, …).
    ///
    /// The environment is shared with other programs, so an `XCS_` variable that names no
    /// option is ignored (a program's own `XCS_SOMETHING` does not stop it reading its options
    /// here) — unless it is a likely misspelling of one (`XCS_MAX_WORKRS`, `XCS_TIMEOUT`: near
    /// an option by the rule of the "did you mean" suggestion), which is an error, not silently
    /// ignored.
    ///
    /// # Errors
    /// As [`from_pairs`](OptionsPatch::from_pairs), with the name as the option name
    /// (lower-cased, prefix removed): [`XcsError::InvalidOption`] with its suggestion for a
    /// likely misspelling. A variable whose name starts with `XCS_`, is near an option and is
    /// not valid Unicode is an [`XcsError::InvalidOption`] (the invalid bytes shown as
    /// `\u{FFFD}`); an option's variable whose value is not valid Unicode is an
    /// [`XcsError::InvalidValue`].
    pub fn from_env() -> Result<OptionsPatch, XcsError> {
        Self::from_vars(std::env::vars_os())
    }

    /// [`from_env`](OptionsPatch::from_env) over an explicit list of variables (for tests and
    /// for environments captured elsewhere): `(name, value)` pairs of anything that is an
    /// [`OsStr`], such as the [`OsString`](std::ffi::OsString)s of [`std::env::vars_os`] or
    /// plain `&str`s. Variables not starting with `XCS_`, and `XCS_` variables not near any
    /// option, are ignored.
    ///
    /// ```
    /// use xcs::{ExecutionOptions, OptionsPatch, XcsError};
    /// let vars = [("XCS_MAX_RETRIES", "3"), ("HOME", "/root"), ("XCS_API_TOKEN", "t0k3n")];
    /// let patch = OptionsPatch::from_vars(vars)?;
    /// assert_eq!(ExecutionOptions::default().patched(&patch).max_retries, 3);
    /// // A likely misspelling is an error, with the suggestion.
    /// let err = OptionsPatch::from_vars([("XCS_MAX_RETRIE", "3")]).unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "Invalid execution option: max_retrie; did you mean `max_retries`?"
    /// );
    /// # Ok::<(), XcsError>(())
    /// ```
    ///
    /// # Errors
    /// As [`from_env`](OptionsPatch::from_env).
    pub fn from_vars<I, K, V>(vars: I) -> Result<OptionsPatch, XcsError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        Self::from_pairs(env_pairs(vars)?)
    }
}
