use xcs::execution_options;

fn main() {
    // `Some(literal)` is checked like the literal.
    execution_options!(max_workers = Some(0) => ());
}
