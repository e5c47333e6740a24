struct Chat;

#[xcs::operator]
impl Chat {
    fn ask(&self) -> String {
        String::new()
    }
}

fn main() {}
