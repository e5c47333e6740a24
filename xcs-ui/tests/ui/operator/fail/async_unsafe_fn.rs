#[xcs::operator]
async unsafe fn fetch(url: String) -> usize {
    url.len()
}

fn main() {}
