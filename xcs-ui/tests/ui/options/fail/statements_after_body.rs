use xcs::execution_options;

fn main() {
    execution_options!(use_parallel = false => println!("a"); println!("b"));
}
