#[xcs::operator]
fn first<'a>(words: Vec<String>) -> String {
    words.concat()
}

fn main() {}
