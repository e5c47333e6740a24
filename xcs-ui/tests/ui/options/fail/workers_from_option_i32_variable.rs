use xcs::execution_options;

fn main() {
    let value: Option<i32> = Some(4);
    execution_options!(max_workers = value => ());
}
