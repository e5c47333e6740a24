struct Config {
    loud: bool,
}

#[xcs::operator]
fn shout(text: String, config: &Config) -> String {
    if config.loud {
        text.to_uppercase()
    } else {
        text
    }
}

fn main() {}
