use xcs::execution_options;

fn main() {
    execution_options!(cost_budget = 1e400 => ());
}
