use std::borrow::Cow;

#[xcs::operator]
fn shout(text: Cow<'_, str>) -> String {
    text.to_uppercase()
}

fn main() {}
