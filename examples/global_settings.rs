//! Global settings: `set_execution_options!` changes the options of the whole process, scopes
//! still override them where they are open, and `reset_execution_options()` goes back to the
//! defaults. Options can also come from configuration or the environment.
//!
//! Run with `cargo run --example global_settings`
//! (try `XCS_MAX_WORKERS=3 cargo run --example global_settings`).

use xcs::prelude::*;

fn workers(o: &ExecutionOptions) -> String {
    o.max_workers
        .map_or("per CPU".to_owned(), |n| n.to_string())
}

fn main() -> Result<(), XcsError> {
    println!("defaults:        {:?}", get_execution_options());

    // Merge two options into the global ones; the new global options are returned.
    let global = set_execution_options!(max_workers = 8, enable_caching = true);
    println!(
        "after set_execution_options!(max_workers = 8, enable_caching = true):\n  \
         max_workers = {}, enable_caching = {}, use_parallel = {} (untouched)",
        workers(&global),
        global.enable_caching,
        global.use_parallel
    );

    // Every thread sees a global update at once.
    let other = std::thread::spawn(get_execution_options)
        .join()
        .expect("the thread does not panic");
    println!("another thread:  max_workers = {}", workers(&other));

    // A scope overrides what it names; a global update made while it is open shows through
    // everywhere else.
    execution_options!(max_workers = 2 => {
        set_execution_options!(max_workers = 16, trace_execution = false, use_parallel = false);
        let o = get_execution_options();
        println!(
            "inside a scope (max_workers = 2) after a global update to 16 / use_parallel = false:\n  \
             max_workers = {} (the scope wins), use_parallel = {} (global)",
            workers(&o),
            o.use_parallel
        );
    });
    println!(
        "after the scope: max_workers = {}",
        workers(&get_execution_options())
    );

    // From configuration: names and values as strings, checked at run time.
    let config = [("max_workers", "4"), ("timeout_seconds", "2.5")];
    let patch = OptionsPatch::from_pairs(config)?;
    let global = set_global_options(&patch);
    println!(
        "from a config file {config:?}:\n  max_workers = {}, timeout = {:?}",
        workers(&global),
        global.timeout_seconds
    );

    // From the environment: XCS_MAX_WORKERS, XCS_USE_PARALLEL, …
    match OptionsPatch::from_env() {
        Ok(patch) if patch.is_empty() => println!("no XCS_* variables set"),
        Ok(patch) => {
            let global = set_global_options(&patch);
            println!("from XCS_* variables: max_workers = {}", workers(&global));
        }
        Err(err) => println!("bad XCS_* variable: {err}"),
    }

    reset_execution_options();
    println!("after reset:     {:?}", get_execution_options());
    assert_eq!(get_execution_options(), ExecutionOptions::default());
    Ok(())
}
