use xcs::set_resource_limits;

fn main() {
    set_resource_limits!("openai", max_inflight = 8);
}
