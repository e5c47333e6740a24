use xcs::set_resource_limits;

fn main() {
    set_resource_limits!("", max_in_flight = 8);
}
