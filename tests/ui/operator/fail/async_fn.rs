#[xcs::operator]
async fn generate(prompt: String) -> String {
    prompt
}

fn main() {}
