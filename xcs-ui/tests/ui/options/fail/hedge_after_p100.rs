use xcs::execution_options;

fn main() {
    execution_options!(hedge_after = "p100" => ());
}
