use xcs::{Operator, Usage, XcsError};

struct Chat;

fn guess(_: &String) -> Usage {
    Usage::default()
}

#[xcs::operator(estimate = guess)]
impl Operator for Chat {
    type Input = String;
    type Output = String;
    fn forward(&self, prompt: String) -> Result<String, XcsError> {
        Ok(prompt)
    }
    fn name(&self) -> &str {
        "chat"
    }
    fn estimate(&self, _: &String) -> Usage {
        Usage::default()
    }
}

fn main() {}
