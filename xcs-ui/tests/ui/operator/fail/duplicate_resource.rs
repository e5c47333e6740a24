#[xcs::operator(resource = "openai", version = 1, resource = "local")]
fn generate(prompt: String) -> String {
    prompt
}

fn main() {}
