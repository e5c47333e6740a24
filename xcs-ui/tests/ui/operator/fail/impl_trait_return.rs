#[xcs::operator]
fn describe(value: u64) -> impl std::fmt::Display {
    value
}

fn main() {}
