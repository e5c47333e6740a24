use xcs::execution_options;

fn main() {
    execution_options!(device_strategy = "gpuu" => ());
}
