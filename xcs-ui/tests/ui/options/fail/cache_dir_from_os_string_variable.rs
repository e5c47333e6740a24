use xcs::execution_options;

fn main() {
    let value: std::ffi::OsString = "cache".into();
    execution_options!(cache_dir = value => ());
}
