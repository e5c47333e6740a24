use xcs::execution_options;

fn main() {
    execution_options!(max_retries = 2.0 => ());
}
