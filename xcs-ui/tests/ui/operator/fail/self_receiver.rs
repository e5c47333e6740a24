struct Model;

impl Model {
    #[xcs::operator]
    fn generate(&self, prompt: String) -> String {
        prompt
    }
}

fn main() {}
