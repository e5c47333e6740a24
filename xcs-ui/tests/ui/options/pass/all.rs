//! What `execution_options!` and `set_execution_options!` must accept (with `literals.rs` and
//! `non_literals.rs` beside it): each module is one case,
//! and `main` runs them all (in this order; each case leaves the global options at their
//! defaults).
//!
//! The cases share one file because trybuild builds (and cleans) every pass file as a crate of
//! its own, one after another.

fn main() {
    control_flow::main();
    macro_rules_forward::main();
}

/// The body is expanded inline: `?`, `return`, `break`, `continue` and borrows work as without
/// the macro.
mod control_flow {
    use xcs::{OptionsPatch, XcsError, execution_options, get_execution_options};

    fn parse_twice(text: &str) -> Result<u32, std::num::ParseIntError> {
        let n: u32 = execution_options!(use_parallel = false => text.parse()?);
        Ok(n * 2)
    }

    fn early(flag: bool) -> &'static str {
        execution_options!(max_workers = 2 => {
            if flag {
                return "returned";
            }
        });
        "fell through"
    }

    fn fallible() -> Result<(), XcsError> {
        execution_options!(enable_caching = true => {
            OptionsPatch::from_pairs([("max_workers", "2")])?;
            Ok(())
        })
    }

    pub fn main() {
        assert_eq!(parse_twice("21"), Ok(42));
        assert!(parse_twice("x").is_err());
        assert!(get_execution_options().use_parallel);
        assert_eq!(early(true), "returned");
        assert_eq!(early(false), "fell through");
        assert!(fallible().is_ok());

        let mut total = 0;
        for i in 0..10 {
            execution_options!(trace_execution = true => {
                if i == 2 {
                    continue;
                }
                if i == 5 {
                    break;
                }
                total += i;
            });
        }
        assert_eq!(total, 0 + 1 + 3 + 4);
        let found = 'outer: loop {
            execution_options!(use_parallel = false => break 'outer 7);
        };
        assert_eq!(found, 7);

        // Borrows inside the body are plain borrows of the surrounding function.
        let mut items = vec![1, 2, 3];
        let first = execution_options!(max_workers = 1 => &mut items[0]);
        *first = 10;
        assert_eq!(items, [10, 2, 3]);
        assert!(!get_execution_options().trace_execution);
    }
}


/// Keys and values forwarded through `macro_rules!` fragments are checked like written ones.
mod macro_rules_forward {
    use std::num::NonZeroUsize;
    use xcs::{execution_options, get_execution_options};

    macro_rules! with_workers {
        ($key:ident = $value:expr => $body:expr) => {
            execution_options!($key = $value => $body)
        };
    }

    pub fn main() {
        let seen = with_workers!(max_workers = 3 => get_execution_options().max_workers);
        assert_eq!(seen, NonZeroUsize::new(3));
        let seen = with_workers!(max_workers = None => get_execution_options().max_workers);
        assert_eq!(seen, None);
    }
}

