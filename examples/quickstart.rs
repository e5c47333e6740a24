//! A first tour: an operator run over a batch, then execution options — a scope, a nested
//! scope, a global setting, reading the effective options, and an invalid option caught at run
//! time.
//!
//! Run it with `cargo run --example quickstart`.

use xcs::prelude::*;

/// An operator is a plain function with `#[xcs::operator]` on it.
#[xcs::operator]
fn greet(greeting: String, name: String) -> String {
    format!("{greeting}, {name}!")
}

fn describe(label: &str) {
    let options = get_execution_options();
    let workers = options
        .max_workers
        .map_or_else(|| "one per CPU".to_owned(), |n| n.to_string());
    println!(
        "{label:<30} use_parallel={:<5} max_workers={workers:<11} caching={}",
        options.use_parallel, options.enable_caching
    );
}

fn main() -> Result<(), xcs::XcsError> {
    // One batch: `greeting` is broadcast, `name` is batched; items run in parallel on at most
    // two threads, and come back in input order.
    let names = vec![
        "Ada".to_string(),
        "Grace".to_string(),
        "Barbara".to_string(),
    ];
    let inputs = GreetInputs::batch("Hello".to_string(), names)?;
    let greetings = execution_options!(max_workers = 2 => vmap(Greet).call(inputs))?;
    println!("{greetings:?}");

    describe("defaults");

    // A scope: the options hold for the expression after `=>`, then the previous ones return.
    // Names and literal values are checked at compile time: `max_workers = 0` would not compile.
    execution_options!(max_workers = 4 => {
        describe("scope (max_workers = 4)");

        // A nested scope sets only what it names; the rest comes from the outer scope.
        execution_options!(use_parallel = false => describe("nested (use_parallel = false)"));

        describe("back in the outer scope");
    });

    // A scope is an expression: it yields the value of its body.
    let caching =
        execution_options!(enable_caching = true => get_execution_options().enable_caching);
    println!("a scope yields its body's value: caching was {caching}");

    // Global options apply to every thread, under whatever scopes are open.
    let global = set_execution_options!(enable_caching = true, max_workers = 2);
    println!(
        "set_execution_options! returned the new global options: max_workers = {}, caching = {}",
        global
            .max_workers
            .map_or_else(|| "unset".to_owned(), |n| n.to_string()),
        global.enable_caching
    );
    describe("after the global update");
    execution_options!(max_workers = 8 => describe("a scope still wins"));
    reset_execution_options();
    describe("after reset");

    // Options from configuration are parsed at run time, with typed errors instead of panics.
    let patch = OptionsPatch::from_pairs([("use_parallel", "false"), ("max_workers", "3")])?;
    with_options(&patch, || describe("from configuration"));
    match OptionsPatch::from_pairs([("invalid_option", "true")]) {
        Ok(_) => unreachable!("`invalid_option` is not an option"),
        Err(err) => println!("{err}"),
    }
    if let Err(err) = OptionsPatch::from_pairs([("max_worker", "2")]) {
        println!("{err}");
    }
    Ok(())
}
