#[xcs::operator]
fn shout(text: String, #[cfg(any())] loud: bool) -> String {
    text
}

fn main() {}
