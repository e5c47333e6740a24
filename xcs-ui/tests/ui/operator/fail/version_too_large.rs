#[xcs::operator(version = 4294967296)]
fn generate(prompt: String) -> String {
    prompt
}

fn main() {}
