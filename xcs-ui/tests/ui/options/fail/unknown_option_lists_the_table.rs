use xcs::set_execution_options;

fn main() {
    set_execution_options!(invalid_option = true);
}
