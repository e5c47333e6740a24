#[xcs::operator]
async fn first<'a>(words: Vec<String>) -> String {
    words.concat()
}

fn main() {}
