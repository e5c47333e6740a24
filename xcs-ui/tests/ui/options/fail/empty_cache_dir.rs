use xcs::execution_options;

fn main() {
    execution_options!(cache_dir = "" => ());
}
