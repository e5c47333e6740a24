#[xcs::operator(name = "generate")]
fn generate(prompt: String) -> String {
    prompt
}

#[allow(non_snake_case)]
#[xcs::operator]
fn Shout(prompt: String) -> String {
    prompt
}

fn main() {}
