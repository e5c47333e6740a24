//! Keys and values forwarded through `macro_rules!` fragments are checked like written ones.
use std::num::NonZeroUsize;
use xcs::{execution_options, get_execution_options};

macro_rules! with_workers {
    ($key:ident = $value:expr => $body:expr) => {
        execution_options!($key = $value => $body)
    };
}

fn main() {
    let seen = with_workers!(max_workers = 3 => get_execution_options().max_workers);
    assert_eq!(seen, NonZeroUsize::new(3));
    let seen = with_workers!(max_workers = None => get_execution_options().max_workers);
    assert_eq!(seen, None);
}
