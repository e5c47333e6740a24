#[xcs::operator]
const async fn fetch(len: usize) -> usize {
    len
}

fn main() {}
