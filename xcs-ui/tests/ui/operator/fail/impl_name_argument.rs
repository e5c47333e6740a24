use xcs::{Operator, XcsError};

struct Chat;

#[xcs::operator(name = "Other", version = 2)]
impl Operator for Chat {
    type Input = String;
    type Output = String;
    fn forward(&self, input: String) -> Result<String, XcsError> {
        Ok(input)
    }
    fn name(&self) -> &str {
        "chat"
    }
}

fn main() {}
