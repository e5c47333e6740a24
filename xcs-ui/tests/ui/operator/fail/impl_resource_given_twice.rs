use xcs::{Operator, XcsError};

struct Chat;

#[xcs::operator(resource = "openai")]
impl Operator for Chat {
    type Input = String;
    type Output = String;
    fn forward(&self, prompt: String) -> Result<String, XcsError> {
        Ok(prompt)
    }
    fn name(&self) -> &str {
        "chat"
    }
    fn resource(&self) -> Option<&str> {
        Some("local")
    }
}

fn main() {}
