use xcs::execution_options;

fn main() {
    execution_options!(show_progress = "yes" => ());
}
