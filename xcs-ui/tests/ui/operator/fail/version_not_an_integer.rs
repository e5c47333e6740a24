#[xcs::operator(version = "2")]
fn generate(prompt: String) -> String {
    prompt
}

fn main() {}
