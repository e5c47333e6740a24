use xcs::execution_options;

fn main() {
    execution_options!(token_budget = -1 => ());
}
