//! `'static` borrows are owned enough: they can be fields and outputs.

use xcs::Operator;

static GREETINGS: [&str; 2] = ["hello", "hi"];

#[xcs::operator]
fn pick(index: usize, fallback: &'static str) -> &'static str {
    GREETINGS.get(index).copied().unwrap_or(fallback)
}

fn main() {
    assert_eq!(Pick.call(PickInputs::new(1, "?")).unwrap(), "hi");
    let batch = PickInputs::batch(vec![0, 5], "?").unwrap();
    assert_eq!(xcs::vmap(Pick).call(batch).unwrap(), ["hello", "?"]);
}
