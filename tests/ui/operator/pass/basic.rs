//! The generated items compile under strict lints and can be used from `main`.
#![deny(warnings, missing_docs)]

//! A test crate.

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

fn main() {
    let output = Generate.call(GenerateInputs::new("a".into(), 1)).unwrap();
    assert_eq!(output, "a1");
    assert_eq!(
        Many.call(ManyInputs::new(1, 1, 1, 1, 1, 1, 1, 1)).unwrap(),
        8
    );
    Nothing.call(NothingInputs::new()).unwrap();
}
