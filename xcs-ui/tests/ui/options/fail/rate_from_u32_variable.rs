use xcs::execution_options;

fn main() {
    let value: u32 = 10;
    execution_options!(rate_limit = value => ());
}
