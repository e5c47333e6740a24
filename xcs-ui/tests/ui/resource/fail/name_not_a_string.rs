use xcs::set_resource_limits;

fn main() {
    set_resource_limits!(42, max_in_flight = 8);
}
