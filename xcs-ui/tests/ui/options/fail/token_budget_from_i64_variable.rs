use xcs::execution_options;

fn main() {
    let budget: i64 = 100;
    execution_options!(token_budget = budget => ());
}
