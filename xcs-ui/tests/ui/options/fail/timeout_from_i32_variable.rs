use xcs::execution_options;

fn main() {
    let value: i32 = 2;
    execution_options!(timeout_seconds = value => ());
}
