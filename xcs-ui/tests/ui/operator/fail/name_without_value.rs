#[xcs::operator(name)]
fn generate(prompt: String) -> String {
    prompt
}

fn main() {}
