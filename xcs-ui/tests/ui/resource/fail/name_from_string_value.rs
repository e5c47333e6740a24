use xcs::set_resource_limits;

fn main() {
    let name = String::from("openai");
    // A `&str` is expected: `&name` would do.
    set_resource_limits!(name, max_in_flight = 8);
}
