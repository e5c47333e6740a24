use xcs::set_resource_limits;

fn main() {
    let seconds: i32 = 30;
    set_resource_limits!("openai", cooldown_seconds = seconds);
}
