#[xcs::operator(resource = openai)]
fn generate(prompt: String) -> String {
    prompt
}

fn main() {}
