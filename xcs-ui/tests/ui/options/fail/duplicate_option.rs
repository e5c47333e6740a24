use xcs::execution_options;

fn main() {
    execution_options!(max_workers = 2, use_parallel = true, max_workers = 4 => ());
}
