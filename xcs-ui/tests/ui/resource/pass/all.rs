//! What `set_resource_limits!` must accept: every literal form of every limit, names given as
//! literals and as `&str` expressions, non-literal values of every type a limit takes, and what
//! a `macro_rules!` forwards. Invalid non-literal values panic, naming the limit.

use std::num::NonZeroUsize;
use std::panic::catch_unwind;

use xcs::set_resource_limits;

macro_rules! limit_in_flight {
    ($name:expr, $n:expr) => {
        set_resource_limits!($name, max_in_flight = $n)
    };
}

fn name_of(provider: &str) -> String {
    format!("{provider}-chat")
}

fn main() {
    // Every literal form; a trailing comma; the value is `()`.
    let () = set_resource_limits!(
        "openai",
        requests_per_minute = 500,
        tokens_per_minute = 30_000,
        max_in_flight = 64,
    );
    set_resource_limits!("openai", requests_per_minute = 0.5, tokens_per_minute = 1e6);
    set_resource_limits!("openai", requests_per_minute = 500u32, max_in_flight = 4usize);
    set_resource_limits!("openai", requests_per_minute = (60), max_in_flight = (2));
    set_resource_limits!("openai", max_in_flight = 99999999999999999999999999);
    // No limit at all, and a raw identifier.
    set_resource_limits!("openai");
    set_resource_limits!("openai", r#max_in_flight = 1);

    // Names: any `&str` expression.
    let name = String::from("local-llm");
    set_resource_limits!(&name, max_in_flight = 2);
    set_resource_limits!(name.as_str(), max_in_flight = 2);
    set_resource_limits!(&name_of("vllm"), requests_per_minute = 30);
    const NAME: &str = "ollama";
    set_resource_limits!(NAME, tokens_per_minute = 1000);

    // Non-literal values of every type a limit takes.
    let rate_f64: f64 = 12.5;
    let rate_f32: f32 = 2.0;
    let rate_u32: u32 = 500;
    let rate_u64: u64 = 30_000;
    let rate_usize: usize = 60;
    set_resource_limits!("openai", requests_per_minute = rate_f64, tokens_per_minute = rate_f32);
    set_resource_limits!("openai", requests_per_minute = rate_u32, tokens_per_minute = rate_u64);
    set_resource_limits!("openai", requests_per_minute = rate_usize * 2);
    let count_usize: usize = 8;
    let count_u32: u32 = 16;
    let count_u64: u64 = 32;
    let count_non_zero = NonZeroUsize::new(4).unwrap();
    set_resource_limits!("openai", max_in_flight = count_usize);
    set_resource_limits!("openai", max_in_flight = count_u32);
    set_resource_limits!("openai", max_in_flight = count_u64);
    set_resource_limits!("openai", max_in_flight = count_non_zero);
    set_resource_limits!("openai", max_in_flight = if rate_f64 > 1.0 { 3usize } else { 1 });

    // The circuit breaker: every literal form and the types a limit in seconds takes.
    set_resource_limits!("openai", open_after_failures = 5, cooldown_seconds = 30);
    set_resource_limits!("openai", open_after_failures = 1usize, cooldown_seconds = 0.25);
    let seconds_f64: f64 = 2.5;
    let seconds_u64: u64 = 10;
    let pause = std::time::Duration::from_millis(1500);
    set_resource_limits!("openai", cooldown_seconds = seconds_f64);
    set_resource_limits!("openai", cooldown_seconds = seconds_u64);
    set_resource_limits!("openai", cooldown_seconds = pause, open_after_failures = count_u32);

    // Forwarded through `macro_rules!`: literals are still literals.
    limit_in_flight!("openai", 5);
    limit_in_flight!(&name, count_usize);

    // Invalid values known only at run time panic, naming the limit.
    for (case, expected) in [
        (
            catch_unwind(|| set_resource_limits!("openai", requests_per_minute = f64::NAN)),
            "resource limit `requests_per_minute` must be a finite number greater than 0",
        ),
        (
            catch_unwind(|| set_resource_limits!("openai", tokens_per_minute = -rate_f64)),
            "resource limit `tokens_per_minute` must be a finite number greater than 0",
        ),
        (
            catch_unwind(|| set_resource_limits!("openai", max_in_flight = count_usize - 8)),
            "resource limit `max_in_flight` may not be 0",
        ),
        (
            catch_unwind(|| set_resource_limits!("openai", cooldown_seconds = -seconds_f64)),
            "resource limit `cooldown_seconds` must be a finite number of seconds greater than 0",
        ),
        (
            catch_unwind(|| set_resource_limits!(&String::new(), max_in_flight = 1)),
            "`set_resource_limits!` needs a non-empty resource name",
        ),
    ] {
        let payload = case.unwrap_err();
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        assert!(message.contains(expected), "{message:?}");
    }
}
