use xcs::execution_options;

fn main() {
    let value: i32 = 4;
    execution_options!(max_workers = value => ());
}
