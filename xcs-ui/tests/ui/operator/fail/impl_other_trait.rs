struct Chat;

#[xcs::operator]
impl Clone for Chat {
    fn clone(&self) -> Self {
        Chat
    }
}

fn main() {}
