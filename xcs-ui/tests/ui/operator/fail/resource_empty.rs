#[xcs::operator(resource = "")]
fn generate(prompt: String) -> String {
    prompt
}

fn main() {}
