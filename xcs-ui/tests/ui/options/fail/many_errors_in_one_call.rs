use xcs::execution_options;

fn main() {
    // Every mistake is reported at once, and the body still type-checks as written: `answer`
    // is a `u32` (no error about the body), so the errors below are the only ones.
    let answer: u32 = execution_options!(
        use_paralel = true,
        max_workers = 0,
        max_workers = 2,
        timeout_seconds = "1",
        device_strategy = "tpu",
        enable_caching = true,
        => 42
    );
    let _ = answer;
}
