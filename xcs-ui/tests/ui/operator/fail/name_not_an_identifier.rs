#[xcs::operator(name = "2fast")]
fn generate(prompt: String) -> String {
    prompt
}

#[xcs::operator(name = "type")]
fn classify(prompt: String) -> String {
    prompt
}

fn main() {}
