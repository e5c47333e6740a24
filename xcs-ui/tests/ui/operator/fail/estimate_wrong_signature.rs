use xcs::Usage;

fn guess(prompt: &String) -> Usage {
    Usage {
        input_tokens: prompt.len() as u64,
        ..Usage::default()
    }
}

// `estimate` takes the inputs struct: `fn(&GenerateInputs) -> Usage`.
#[xcs::operator(estimate = guess)]
fn generate(prompt: String) -> String {
    prompt
}

fn main() {}
