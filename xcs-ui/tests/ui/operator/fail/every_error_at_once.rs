#[xcs::operator(nmae = "Other")]
async fn generate<T>(_prompt: &str, (a, b): (u8, u8), _value: T) -> impl std::fmt::Display {
    a + b
}

fn main() {}
