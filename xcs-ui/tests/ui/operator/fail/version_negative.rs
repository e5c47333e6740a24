#[xcs::operator(version = -1)]
fn generate(prompt: String) -> String {
    prompt
}

fn main() {}
