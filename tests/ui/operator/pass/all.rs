//! What `#[xcs::operator]` must accept: each module is one case, and `main` runs them all.
//!
//! The cases share one file because trybuild builds (and cleans) every pass file as a crate of
//! its own, one after another; a crate-level attribute of a case is an inner attribute of its
//! module here, which lints and resolves the module's items the same way.

fn main() {
    basic::main();
    local_items::main();
    no_implicit_prelude::main();
    static_references::main();
    unused_items_do_not_warn::main();
}

/// The generated items compile under strict lints and can be used from `main`.
pub mod basic {
    #![deny(warnings, missing_docs)]

    use xcs::Operator;

    /// Generates text.
    #[xcs::operator]
    pub fn generate(prompt: String, seed: u64) -> String {
        format!("{prompt}{seed}")
    }

    /// Never called, only deprecated: defining it warns nobody.
    #[deprecated(note = "use `generate`")]
    #[xcs::operator]
    pub fn old_generate(prompt: String) -> String {
        prompt
    }

    /// Takes eight parameters.
    #[xcs::operator]
    #[allow(clippy::too_many_arguments)]
    pub fn many(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8) -> u8 {
        a + b + c + d + e + f + g + h
    }

    /// Takes nothing.
    #[xcs::operator]
    pub fn nothing() {}

    /// Runs the case.
    pub fn main() {
        let output = Generate.call(GenerateInputs::new("a".into(), 1)).unwrap();
        assert_eq!(output, "a1");
        assert_eq!(
            Many.call(ManyInputs::new(1, 1, 1, 1, 1, 1, 1, 1)).unwrap(),
            8
        );
        Nothing.call(NothingInputs::new()).unwrap();
    }
}

/// The attribute works on a function declared inside another function, over local types.
mod local_items {
    use xcs::Operator;

    pub fn main() {
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        struct Point {
            x: i32,
        }

        #[xcs::operator]
        fn shift(point: Point, by: i32) -> Point {
            Point { x: point.x + by }
        }

        let out = Shift.call(ShiftInputs::new(Point { x: 1 }, 2)).unwrap();
        assert_eq!(out, Point { x: 3 });
        assert!(Shift.__xcs_cache_support().is_some());
    }
}

/// Generated code does not rely on the prelude.
mod no_implicit_prelude {
    #![no_implicit_prelude]

    mod inner {
        #[::xcs::operator]
        pub fn join(a: ::std::string::String, b: ::std::vec::Vec<u8>) -> ::std::string::String {
            ::std::format!("{a}{}", b.len())
        }

        #[::xcs::operator]
        pub fn fail(a: u8) -> ::std::result::Result<u8, ::std::string::String> {
            ::std::result::Result::Ok(a)
        }
    }

    pub fn main() {
        use ::xcs::Operator as _;
        let batch = inner::JoinInputs::batch(::std::vec!["x", "y"], ::std::vec![1, 2]).unwrap();
        ::std::assert_eq!(batch.len(), 2);
        let output = inner::Join
            .call(inner::JoinInputs::new(
                ::std::string::ToString::to_string("a"),
                ::std::vec![1],
            ))
            .unwrap();
        ::std::assert_eq!(output, "a1");
        ::std::assert_eq!(inner::Fail.call(inner::FailInputs::new(3)).unwrap(), 3);
    }
}

/// `'static` borrows are owned enough: they can be fields and outputs.
mod static_references {
    use xcs::Operator;

    static GREETINGS: [&str; 2] = ["hello", "hi"];

    #[xcs::operator]
    fn pick(index: usize, fallback: &'static str) -> &'static str {
        GREETINGS.get(index).copied().unwrap_or(fallback)
    }

    pub fn main() {
        assert_eq!(Pick.call(PickInputs::new(1, "?")).unwrap(), "hi");
        let batch = PickInputs::batch(vec![0, 5], "?").unwrap();
        assert_eq!(xcs::vmap(Pick).call(batch).unwrap(), ["hello", "?"]);
    }
}

/// Operators used only as functions, only as operators, or not at all, warn about nothing.
mod unused_items_do_not_warn {
    #![deny(warnings)]

    #[xcs::operator]
    fn used_as_function(x: u8) -> u8 {
        x
    }

    #[xcs::operator]
    fn used_as_operator(x: u8) -> u8 {
        x
    }

    #[xcs::operator]
    fn unused(x: u8) -> u8 {
        x
    }

    pub fn main() {
        use xcs::Operator;
        let _ = used_as_function(1);
        let _ = UsedAsOperator.call(UsedAsOperatorInputs::new(1));
    }
}
