use xcs::execution_options;

fn main() {
    execution_options!(max_workers 4 => ());
}
