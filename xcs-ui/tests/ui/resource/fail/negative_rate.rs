use xcs::set_resource_limits;

fn main() {
    set_resource_limits!("openai", tokens_per_minute = -30_000);
}
