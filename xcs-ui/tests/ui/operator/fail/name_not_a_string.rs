#[xcs::operator(name = Other)]
fn generate(prompt: String) -> String {
    prompt
}

fn main() {}
