use xcs::execution_options;

fn main() {
    let delay: u32 = 2;
    execution_options!(hedge_after = delay => ());
}
