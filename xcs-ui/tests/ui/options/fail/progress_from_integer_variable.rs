use xcs::execution_options;

fn main() {
    let value: i32 = 1;
    execution_options!(show_progress = value => ());
}
