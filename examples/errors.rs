//! Errors: everything that can go wrong comes back as an `XcsError` with the facts needed to act
//! on it, and nothing a user can cause panics in the runtime.
//!
//! Run with `cargo run --example errors`.

use xcs::prelude::*;

/// A fallible operator: its error becomes `XcsError::Operator` with the operator's name and the
/// index of the failing item.
#[xcs::operator]
fn parse_score(text: String) -> Result<u32, std::num::ParseIntError> {
    text.trim().parse()
}

/// An operator that panics on one input; the panic is caught at the item.
#[xcs::operator]
fn divide(numerator: u32, denominator: u32) -> u32 {
    numerator / denominator
}

fn show<T: std::fmt::Debug>(what: &str, result: Result<T, XcsError>) {
    match result {
        Ok(value) => println!("{what}\n  ok: {value:?}"),
        Err(err) => println!("{what}\n  {}: {err}", variant(&err)),
    }
}

fn variant(err: &XcsError) -> &'static str {
    match err {
        XcsError::InvalidOption { .. } => "InvalidOption",
        XcsError::InvalidValue { .. } => "InvalidValue",
        XcsError::BatchSizeMismatch { .. } => "BatchSizeMismatch",
        XcsError::Operator { .. } => "Operator",
        XcsError::Panicked { .. } => "Panicked",
        XcsError::Timeout { .. } => "Timeout",
        XcsError::DeviceUnavailable { .. } => "DeviceUnavailable",
        _ => "other",
    }
}

fn main() {
    println!("— invalid options at run time (from configuration) —");
    // Literal options are checked by the compiler: `execution_options!(use_paralel = true => …)`
    // does not build. Options from a config file or the environment are checked here instead.
    show(
        "from_pairs([(\"use_paralel\", \"true\")])",
        OptionsPatch::from_pairs([("use_paralel", "true")]),
    );
    show(
        "from_pairs([(\"invalid_option\", \"true\")])",
        OptionsPatch::from_pairs([("invalid_option", "true")]),
    );
    show(
        "from_pairs([(\"max_workers\", \"0\")])",
        OptionsPatch::from_pairs([("max_workers", "0")]),
    );
    show(
        "from_pairs([(\"timeout_seconds\", \"-1\")])",
        OptionsPatch::from_pairs([("timeout_seconds", "-1")]),
    );
    show(
        "from_pairs([(\"device_strategy\", \"\")])",
        OptionsPatch::from_pairs([("device_strategy", "")]),
    );

    println!("\n— operator errors, with the failing item's index —");
    let texts = vec![
        "7".to_owned(),
        "12".to_owned(),
        "twelve".to_owned(),
        "x".to_owned(),
    ];
    show(
        "vmap(ParseScore) over [\"7\", \"12\", \"twelve\", \"x\"]",
        ParseScoreInputs::batch(texts.clone()).and_then(|b| vmap(ParseScore).call(b)),
    );
    if let Err(err) = ParseScoreInputs::batch(texts.clone()).and_then(|b| vmap(ParseScore).call(b))
    {
        println!(
            "  index(): {:?}; source: {:?}",
            err.index(),
            std::error::Error::source(&err).map(ToString::to_string)
        );
    }
    // `call_settled` returns every item's own outcome instead of the first error.
    if let Ok(batch) = ParseScoreInputs::batch(texts) {
        println!("call_settled:");
        for (i, outcome) in vmap(ParseScore).call_settled(batch).iter().enumerate() {
            println!("  item {i}: {outcome:?}");
        }
    }

    println!("\n— panics are caught —");
    // Silence the default panic message; the error carries it.
    std::panic::set_hook(Box::new(|_| {}));
    show(
        "vmap(Divide) over 10 / [5, 2, 0, 1]",
        DivideInputs::batch(10, vec![5, 2, 0, 1]).and_then(|b| vmap(Divide).call(b)),
    );
    show(
        "the runtime is still usable afterwards: 10 / [5, 2]",
        DivideInputs::batch(10, vec![5, 2]).and_then(|b| vmap(Divide).call(b)),
    );
    let _ = std::panic::take_hook();

    println!("\n— batches of different lengths —");
    show(
        "DivideInputs::batch(vec![1, 2, 3], vec![1, 2])",
        DivideInputs::batch(vec![1, 2, 3], vec![1, 2]).map(|items| items.len()),
    );

    println!("\n— no backend for the device —");
    show(
        "device_strategy = \"gpu\" with no GPU backend registered",
        execution_options!(device_strategy = "gpu" => {
            DivideInputs::batch(10, vec![1, 2]).and_then(|b| vmap(Divide).call(b))
        }),
    );
}
