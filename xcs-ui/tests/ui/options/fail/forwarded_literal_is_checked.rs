use xcs::execution_options;

macro_rules! with_workers {
    ($value:expr) => {
        execution_options!(max_workers = $value => ())
    };
}

fn main() {
    with_workers!(0);
}
