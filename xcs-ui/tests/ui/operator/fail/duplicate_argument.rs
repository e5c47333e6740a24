#[xcs::operator(name = "First", name = "Second")]
fn generate(prompt: String) -> String {
    prompt
}

fn main() {}
