use xcs::execution_options;

fn main() {
    let workers: u32 = execution_options!(max_workers = 2);
    let _ = workers;
}
