use xcs::set_resource_limits;

fn main() {
    set_resource_limits!("openai", max_in_flight = 0);
}
