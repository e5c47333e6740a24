#[xcs::operator]
struct Generate {
    prompt: String,
}

fn main() {}
