#[xcs::operator]
async fn fetch(url: &str) -> usize {
    url.len()
}

fn main() {}
