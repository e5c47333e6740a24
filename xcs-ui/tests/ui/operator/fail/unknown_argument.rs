#[xcs::operator(nmae = "Other")]
fn generate(prompt: String) -> String {
    prompt
}

fn main() {
    // Still expanded with the default name, so this use does not add an error.
    let _ = Generate;
}
