use xcs::execution_options;

fn main() {
    execution_options!(scheduler = "sequential", use_parallel = true => ());
}
