#[xcs::operator(timeout = 3)]
fn generate(prompt: String) -> String {
    prompt
}

fn main() {}
