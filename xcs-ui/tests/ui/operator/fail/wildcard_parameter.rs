#[xcs::operator]
fn constant(_: u64) -> u64 {
    42
}

fn main() {}
