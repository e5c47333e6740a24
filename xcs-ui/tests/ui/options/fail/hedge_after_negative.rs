use xcs::set_execution_options;

fn main() {
    set_execution_options!(hedge_after = -0.5);
}
