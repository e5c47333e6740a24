use xcs::set_execution_options;

fn main() {
    set_execution_options!(use_parallel = false => println!("hi"));
}
