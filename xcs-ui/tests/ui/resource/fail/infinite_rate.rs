use xcs::set_resource_limits;

fn main() {
    set_resource_limits!("openai", requests_per_minute = 1e400);
}
