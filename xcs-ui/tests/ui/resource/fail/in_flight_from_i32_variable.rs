use xcs::set_resource_limits;

fn main() {
    let n: i32 = 8;
    set_resource_limits!("openai", max_in_flight = n);
}
