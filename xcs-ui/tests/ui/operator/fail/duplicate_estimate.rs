use xcs::Usage;

fn guess(_: &GenerateInputs) -> Usage {
    Usage::default()
}

#[xcs::operator(estimate = guess, estimate = guess)]
fn generate(prompt: String) -> String {
    prompt
}

fn main() {}
