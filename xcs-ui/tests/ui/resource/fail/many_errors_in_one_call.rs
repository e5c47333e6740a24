use xcs::set_resource_limits;

fn main() {
    set_resource_limits!(
        "openai",
        request_per_minute = 500,
        tokens_per_minute = 0,
        max_in_flight = 1.5,
        tokens_per_minute = 10,
    );
}
