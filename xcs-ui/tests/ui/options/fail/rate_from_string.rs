use xcs::execution_options;

fn main() {
    execution_options!(rate_limit = "10" => ());
}
