//! Scopes and nesting: `execution_options!` puts options in force for one expression, nested
//! scopes set only what they name, and the previous options come back on every way out.
//!
//! Run with `cargo run --example scopes`.

use xcs::prelude::*;

/// Prints the options in force on this thread.
fn show(label: &str) {
    let o = get_execution_options();
    let workers = o
        .max_workers
        .map_or("per CPU".to_owned(), |n| n.to_string());
    println!(
        "{label:<22} use_parallel = {:<5}  max_workers = {workers:<7}  enable_caching = {}",
        o.use_parallel, o.enable_caching
    );
}

/// An operator that reports the `max_workers` it runs under.
#[xcs::operator]
fn seen_max_workers(_item: u32) -> usize {
    get_execution_options().max_workers.map_or(0, |n| n.get())
}

/// `?` inside a scope leaves the function early; the scope still ends.
fn fails_inside_a_scope() -> Result<(), XcsError> {
    execution_options!(use_parallel = false => {
        OptionsPatch::from_pairs([("max_wokers", "2")])?;
        Ok(())
    })
}

fn main() -> Result<(), XcsError> {
    show("defaults");
    execution_options!(max_workers = 4 => {
        show("outer scope");
        execution_options!(use_parallel = false, enable_caching = true => {
            // Inherits `max_workers = 4`, sets the other two.
            show("  inner scope");
        });
        show("outer scope again");

        // Batch items run on worker threads, yet see the caller's scope.
        let seen = vmap(SeenMaxWorkers).call(SeenMaxWorkersInputs::batch(vec![1, 2, 3, 4])?)?;
        println!("{:<22} items saw max_workers = {seen:?}", "  inside vmap");

        // Scopes are per thread: a thread the user spawns starts from the global options.
        let elsewhere = std::thread::spawn(|| get_execution_options().max_workers)
            .join()
            .expect("the thread does not panic");
        println!("{:<22} another thread sees max_workers = {elsewhere:?}", "  std::thread::spawn");
        Ok::<(), XcsError>(())
    })?;
    show("after the scope");

    // The value of the expression is the value of the macro.
    let doubled = execution_options!(use_parallel = false => 21 * 2);
    println!("\nexecution_options!(… => 21 * 2) = {doubled}");

    // Leaving by `?` restores the options…
    let err = fails_inside_a_scope().unwrap_err();
    println!("left a scope by `?` ({err})");
    show("  then");

    // …and so does a panic (whose default message is silenced here).
    std::panic::set_hook(Box::new(|_| {}));
    let caught =
        std::panic::catch_unwind(|| execution_options!(use_parallel = false => panic!("boom")));
    let _ = std::panic::take_hook();
    println!("left a scope by a panic (caught: {})", caught.is_err());
    show("  then");
    Ok(())
}
