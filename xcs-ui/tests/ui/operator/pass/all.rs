//! What `#[xcs::operator]` must accept: each module is one case, and `main` runs them all.
//!
//! The cases share one file because trybuild builds (and cleans) every pass file as a crate of
//! its own, one after another; a crate-level attribute of a case is an inner attribute of its
//! module here, which lints and resolves the module's items the same way.

fn main() {
    basic::main();
    #[cfg(feature = "tokio")]
    async_operators::main();
    versions::main();
    inputs_traits::main();
    local_items::main();
    no_implicit_prelude::main();
    static_references::main();
    unused_items_do_not_warn::main();
    impl_blocks::main();
    resources::main();
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

/// `async fn`s make async operators, under the same strict lints, also without the prelude.
#[cfg(feature = "tokio")]
pub mod async_operators {
    #![deny(warnings, missing_docs)]

    use xcs::AsyncOperator;

    /// Fetches a page.
    #[xcs::operator(version = 1)]
    pub async fn fetch(url: String, attempt: u8) -> Result<usize, std::io::Error> {
        tokio::task::yield_now().await;
        Ok(url.len() + usize::from(attempt))
    }

    /// Waits.
    #[xcs::operator]
    pub async fn wait() {
        tokio::task::yield_now().await;
    }

    mod no_prelude {
        #![no_implicit_prelude]

        #[::xcs::operator]
        pub async fn count(text: ::std::string::String) -> usize {
            text.len()
        }
    }

    /// Runs the case.
    pub fn main() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let page = Fetch.call(FetchInputs::new("ab".into(), 1)).await.unwrap();
            assert_eq!(page, 3);
            assert_eq!(Fetch.__xcs_version(), 1);
            Wait.call(WaitInputs::new()).await.unwrap();
            let all = xcs::vmap(no_prelude::Count)
                .call(no_prelude::CountInputs::batch(vec!["a", "bc"]).unwrap())
                .await
                .unwrap();
            assert_eq!(all, [1, 2]);
        });
    }
}

/// `version = N` in every form it takes, next to `name`.
mod versions {
    use xcs::Operator;

    #[xcs::operator(version = 0)]
    fn zero(x: u8) -> u8 {
        x
    }

    #[xcs::operator(name = "Renamed", version = 7)]
    fn seven(x: u8) -> u8 {
        x
    }

    #[xcs::operator(version = 4_294_967_295u32,)]
    fn largest(x: u8) -> u8 {
        x
    }

    #[xcs::operator]
    fn unversioned(x: u8) -> u8 {
        x
    }

    pub fn main() {
        assert_eq!(Zero.__xcs_version(), 0);
        assert_eq!(Renamed.__xcs_version(), 7);
        assert_eq!(Largest.__xcs_version(), u32::MAX);
        assert_eq!(Unversioned.__xcs_version(), 0);
        let _ = (zero(1), seven(1), largest(1), unversioned(1));
    }
}

/// The inputs struct is `Clone`, `PartialEq`, `Eq`, `Hash`, `Serialize` and `Deserialize` when
/// every field is, and compiles without a warning, also under lints that are allowed by default,
/// when a field has none of them (a client handle, say).
mod inputs_traits {
    #![deny(
        warnings,
        unused_lifetimes,
        single_use_lifetimes,
        unused_qualifications,
        rust_2018_idioms
    )]

    use xcs::Operator;

    /// A handle without any of the traits, like an HTTP client.
    pub struct Client;

    #[xcs::operator]
    fn fetch(client: Client, url: String) -> usize {
        let Client = client;
        url.len()
    }

    #[xcs::operator]
    fn plain(prompt: String, seed: u64) -> String {
        format!("{prompt}{seed}")
    }

    // Function pointers compare by address (as derived `PartialEq` does) without a warning.
    #[xcs::operator]
    fn apply(f: fn(u8) -> u8, x: u8) -> u8 {
        f(x)
    }

    fn double(x: u8) -> u8 {
        x * 2
    }

    #[derive(Clone, PartialEq, Eq, Hash)]
    pub struct Tag(pub u8);

    // Parameter types written with `$crate`, as an operator generated by a macro of a library has.
    macro_rules! define_tagged {
        () => {
            #[xcs::operator]
            fn tagged(tag: $crate::inputs_traits::Tag) -> u8 {
                tag.0
            }
        };
    }
    define_tagged!();

    pub fn main() {
        let inputs = FetchInputs::new(Client, "ab".into());
        assert_eq!(format!("{inputs:?}"), r#"FetchInputs { client: _, url: "ab" }"#);
        assert_eq!(Fetch.call(inputs).unwrap(), 2);

        let batch = PlainInputs::batch(vec!["a", "b"], 1).unwrap();
        let copy = batch.clone();
        assert_eq!(copy, batch);
        let set: std::collections::HashSet<PlainInputs> = copy.into_iter().collect();
        assert_eq!(set.len(), 2);
        let json = serde_json::to_string(&batch).unwrap();
        assert_eq!(json, r#"[{"prompt":"a","seed":1},{"prompt":"b","seed":1}]"#);
        assert_eq!(serde_json::from_str::<Vec<PlainInputs>>(&json).unwrap(), batch);

        let apply = ApplyInputs::new(double, 2);
        assert!(apply.clone() != ApplyInputs::new(double, 3));
        assert_eq!(Apply.call(apply).unwrap(), 4);

        let tagged = TaggedInputs::new(Tag(3));
        assert!(tagged.clone() == tagged);
        assert_eq!(Tagged.call(tagged).unwrap(), 3);
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

/// `#[xcs::operator]` on hand-written `impl Operator`/`impl AsyncOperator` blocks: whatever the
/// `Input` and `Output` types can do, the block compiles under strict lints.
pub mod impl_blocks {
    #![deny(warnings, missing_docs)]

    use xcs::{Operator, XcsError};

    /// Neither `Clone`, `Hash` nor serde: runs once, uncached, in memory only.
    pub struct Opaque(pub f64);

    /// Takes an `Opaque`.
    pub struct Measure;

    #[xcs::operator]
    impl Operator for Measure {
        type Input = Opaque;
        type Output = Opaque;
        fn forward(&self, input: Opaque) -> Result<Opaque, XcsError> {
            Ok(Opaque(input.0 * 2.0))
        }
        fn name(&self) -> &str {
            "measure"
        }
    }

    /// Generic, with the input a type parameter without bounds.
    pub struct Identity<T>(pub ::std::marker::PhantomData<fn() -> T>);

    #[xcs::operator(version = 3)]
    impl<T: Send + 'static> xcs::Operator for Identity<T> {
        type Input = T;
        type Output = T;
        fn forward(&self, input: T) -> Result<T, XcsError> {
            Ok(input)
        }
        fn name(&self) -> &str {
            "identity"
        }
    }

    /// A borrowed output, and a hidden method of its own.
    pub struct Greeting;

    #[xcs::operator]
    impl Operator for Greeting {
        type Input = u8;
        type Output = &'static str;
        fn forward(&self, _: u8) -> Result<&'static str, XcsError> {
            Ok("hello")
        }
        fn name(&self) -> &str {
            "greeting"
        }
        fn __xcs_version(&self) -> u32 {
            7
        }
    }

    /// Both traits on one type.
    pub struct Both;

    #[xcs::operator]
    impl Operator for Both {
        type Input = String;
        type Output = usize;
        fn forward(&self, input: String) -> Result<usize, XcsError> {
            Ok(input.len())
        }
        fn name(&self) -> &str {
            "both"
        }
    }

    #[cfg(feature = "tokio")]
    #[xcs::operator]
    impl xcs::AsyncOperator for Both {
        type Input = Vec<String>;
        type Output = usize;
        async fn forward(&self, input: Vec<String>) -> Result<usize, XcsError> {
            Ok(input.len())
        }
        fn name(&self) -> &str {
            "both_async"
        }
    }

    /// Under `no_implicit_prelude`, naming the trait by its absolute path.
    pub mod bare {
        #![no_implicit_prelude]

        /// Counts.
        pub struct Count;

        #[::xcs::operator]
        impl ::xcs::Operator for Count {
            type Input = ::std::vec::Vec<u8>;
            type Output = usize;
            fn forward(
                &self,
                input: ::std::vec::Vec<u8>,
            ) -> ::std::result::Result<usize, ::xcs::XcsError> {
                ::std::result::Result::Ok(input.len())
            }
            fn name(&self) -> &str {
                "count"
            }
        }
    }

    pub(crate) fn main() {
        let options = || {
            xcs::execution_options!(enable_caching = true, max_retries = 2 => ())
        };
        options();
        assert_eq!(Measure.call(Opaque(1.5)).unwrap().0, 3.0);
        assert!(Measure.persist_support().is_none());
        let identity = Identity::<String>(::std::marker::PhantomData);
        assert_eq!(identity.call("x".to_owned()).unwrap(), "x");
        assert!(Greeting.persist_support().is_none());
        assert_eq!(Operator::call(&Both, "abc".to_owned()).unwrap(), 3);
        assert_eq!(Operator::call(&bare::Count, vec![1, 2]).unwrap(), 2);
        xcs::execution_options!(enable_caching = true, max_retries = 2 => {
            assert_eq!(Measure.call(Opaque(1.0)).unwrap().0, 2.0);
            assert_eq!(identity.call("y".to_owned()).unwrap(), "y");
            assert_eq!(Operator::call(&Both, "ab".to_owned()).unwrap(), 2);
        });
    }
}

/// `resource = "…"` and `estimate = path` on functions (sync and async) and impl blocks, with
/// paths of every shape, next to the other arguments and without the prelude.
mod resources {
    use xcs::{Operator, Usage, XcsError};

    fn guess(input: &TranslatorInputs) -> Usage {
        Usage {
            input_tokens: input.text.len() as u64,
            ..Usage::default()
        }
    }

    pub mod estimates {
        pub fn of_request(request: &u32) -> xcs::Usage {
            xcs::Usage {
                output_tokens: u64::from(*request),
                ..xcs::Usage::default()
            }
        }
    }

    #[xcs::operator(resource = "openai", estimate = guess, version = 2, name = "Translator")]
    fn translate(text: String) -> String {
        text
    }

    #[xcs::operator(resource = r"raw-name",)]
    fn raw(text: String) -> String {
        text
    }

    #[cfg(feature = "tokio")]
    #[xcs::operator(resource = "http", estimate = self::fetch_estimate)]
    async fn fetch(url: String) -> Result<usize, XcsError> {
        Ok(url.len())
    }

    #[cfg(feature = "tokio")]
    fn fetch_estimate(_: &FetchInputs) -> Usage {
        Usage::ZERO
    }

    struct Counter;

    #[xcs::operator(resource = "counter", estimate = estimates::of_request, version = 1)]
    impl Operator for Counter {
        type Input = u32;
        type Output = u32;
        fn forward(&self, n: u32) -> Result<u32, XcsError> {
            Ok(n + 1)
        }
        fn name(&self) -> &str {
            "counter"
        }
    }

    mod no_prelude {
        #![no_implicit_prelude]

        fn zero(_: &LenInputs) -> ::xcs::Usage {
            ::xcs::Usage::ZERO
        }

        #[::xcs::operator(resource = "local", estimate = zero)]
        pub fn len(text: ::std::string::String) -> usize {
            text.len()
        }
    }

    pub fn main() {
        assert_eq!(Translator.resource(), Some("openai"));
        assert_eq!(
            Translator
                .estimate(&TranslatorInputs::new("abc".into()))
                .input_tokens,
            3
        );
        assert_eq!(Raw.resource(), Some("raw-name"));
        assert_eq!(Raw.estimate(&RawInputs::new("x".into())), Usage::ZERO);
        #[cfg(feature = "tokio")]
        {
            use xcs::AsyncOperator;
            assert_eq!(AsyncOperator::resource(&Fetch), Some("http"));
            assert_eq!(
                AsyncOperator::estimate(&Fetch, &FetchInputs::new("u".into())),
                Usage::ZERO
            );
        }
        assert_eq!(Counter.resource(), Some("counter"));
        assert_eq!(Counter.estimate(&7).output_tokens, 7);
        assert_eq!(Counter.call(1).unwrap(), 2);
        assert_eq!(no_prelude::Len.resource(), Some("local"));
    }
}
