use xcs::set_resource_limits;

fn main() {
    set_resource_limits!("openai", max_in_flight = 8, requests_per_minute = 60, max_in_flight = 16);
}
