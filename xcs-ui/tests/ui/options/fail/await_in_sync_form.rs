use xcs::execution_options;

async fn fetch() -> u32 {
    1
}

async fn caller() -> u32 {
    execution_options!(max_workers = 2 => fetch().await)
}

fn main() {
    let _ = caller();
}
