use xcs::execution_options;

fn main() {
    execution_options!(timeout_seconds = "1" => ());
}
