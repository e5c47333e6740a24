use xcs::{Operator, PersistSupport, XcsError};

struct Chat;

#[xcs::operator(version = 2)]
impl Operator for Chat {
    type Input = String;
    type Output = String;
    fn forward(&self, input: String) -> Result<String, XcsError> {
        Ok(input)
    }
    fn name(&self) -> &str {
        "chat"
    }
    fn persist_support(&self) -> Option<PersistSupport<String, String>> {
        Some(PersistSupport::serde().version(1))
    }
}

fn main() {}
