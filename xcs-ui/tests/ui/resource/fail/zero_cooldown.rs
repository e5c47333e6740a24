use xcs::set_resource_limits;

fn main() {
    set_resource_limits!("openai", cooldown_seconds = 0.0);
}
