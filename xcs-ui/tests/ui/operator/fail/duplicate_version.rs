#[xcs::operator(version = 1, name = "Gen", version = 2)]
fn generate(prompt: String) -> String {
    prompt
}

fn main() {}
