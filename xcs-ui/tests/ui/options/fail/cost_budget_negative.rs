use xcs::execution_options;

fn main() {
    execution_options!(cost_budget = -0.5 => ());
}
