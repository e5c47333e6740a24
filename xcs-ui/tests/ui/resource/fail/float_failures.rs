use xcs::set_resource_limits;

fn main() {
    set_resource_limits!("openai", open_after_failures = 2.5);
}
