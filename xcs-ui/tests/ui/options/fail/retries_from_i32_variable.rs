use xcs::execution_options;

fn main() {
    let value: i32 = 3;
    execution_options!(max_retries = value => ());
}
