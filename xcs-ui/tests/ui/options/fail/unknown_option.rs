use xcs::execution_options;

fn main() {
    execution_options!(use_paralel = true => ());
}
