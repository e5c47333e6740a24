use xcs::set_execution_options;

fn main() {
    set_execution_options!(token_budget = "x");
}
