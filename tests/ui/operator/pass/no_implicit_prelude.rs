//! Generated code does not rely on the prelude.
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

fn main() {
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
