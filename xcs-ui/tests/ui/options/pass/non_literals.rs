//! Non-literal values of every accepted type.
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use xcs::{
    CacheDir, DeviceStrategy, MAX_WORKERS, Scheduler, execution_options, get_execution_options,
    reset_execution_options, set_execution_options,
};

fn workers() -> usize {
    3
}

fn main() {
    let flag = false;
    let seen = execution_options!(use_parallel = flag, enable_caching = !flag, trace_execution = { let two = 1 + 1; two == 2 } =>
        get_execution_options());
    assert!(!seen.use_parallel && seen.enable_caching && seen.trace_execution);

    let n: usize = 2;
    assert_eq!(
        execution_options!(max_workers = n => get_execution_options().max_workers),
        NonZeroUsize::new(2)
    );
    assert_eq!(
        execution_options!(max_workers = workers() => get_execution_options().max_workers),
        NonZeroUsize::new(3)
    );
    let nz = NonZeroUsize::new(5).unwrap();
    assert_eq!(
        execution_options!(max_workers = nz => get_execution_options().max_workers),
        Some(nz)
    );
    let maybe: Option<usize> = None;
    assert_eq!(
        execution_options!(max_workers = 2 => execution_options!(max_workers = maybe => get_execution_options().max_workers)),
        None
    );
    assert_eq!(
        execution_options!(max_workers = Some(nz) => get_execution_options().max_workers),
        Some(nz)
    );
    assert_eq!(
        execution_options!(max_workers = Some(4) => get_execution_options().max_workers),
        NonZeroUsize::new(4)
    );
    assert_eq!(
        execution_options!(max_workers = if flag { 2 } else { 6 } => get_execution_options().max_workers),
        NonZeroUsize::new(6)
    );

    let secs = 1.5_f64;
    let timeout = |t| t;
    assert_eq!(
        execution_options!(timeout_seconds = secs => get_execution_options().timeout_seconds),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(
        execution_options!(timeout_seconds = 2_u64 * 2 => get_execution_options().timeout_seconds),
        Some(Duration::from_secs(4))
    );
    assert_eq!(
        execution_options!(timeout_seconds = 0.25_f32 => get_execution_options().timeout_seconds),
        Some(Duration::from_millis(250))
    );
    let d = Duration::from_millis(10);
    assert_eq!(
        execution_options!(timeout_seconds = d => get_execution_options().timeout_seconds),
        Some(d)
    );
    assert_eq!(
        execution_options!(timeout_seconds = Some(d) => get_execution_options().timeout_seconds),
        Some(d)
    );
    assert_eq!(
        execution_options!(timeout_seconds = timeout(None::<f64>) => get_execution_options().timeout_seconds),
        None
    );
    assert_eq!(
        execution_options!(timeout_seconds = if flag { 1.0 } else { 0.5 } => get_execution_options().timeout_seconds),
        Some(Duration::from_millis(500))
    );

    let strategy = DeviceStrategy::Cpu;
    assert_eq!(
        execution_options!(device_strategy = strategy => get_execution_options().device_strategy),
        strategy
    );
    assert_eq!(
        execution_options!(device_strategy = DeviceStrategy::named("tpu") => get_execution_options().device_strategy).as_str(),
        "tpu"
    );

    let scheduler = Scheduler::Sequential;
    let seen = execution_options!(scheduler = scheduler => get_execution_options());
    assert_eq!(seen.scheduler, Some(Scheduler::Sequential));
    assert!(!seen.use_parallel);
    let none: Option<Scheduler> = None;
    assert_eq!(
        execution_options!(scheduler = none => get_execution_options().scheduler),
        None
    );

    // `max_workers` above `MAX_WORKERS` at run time is kept: it bounds threads, not the option.
    let many = 1usize << 20;
    assert!(many > MAX_WORKERS);
    assert_eq!(
        execution_options!(max_workers = many => get_execution_options().max_workers),
        NonZeroUsize::new(many)
    );

    let retries: u32 = 2;
    assert_eq!(
        execution_options!(max_retries = retries => get_execution_options().max_retries),
        2
    );
    let inferred = 5;
    assert_eq!(
        execution_options!(max_retries = inferred + 1 => get_execution_options().max_retries),
        6
    );

    let rate = 4.0_f64;
    assert_eq!(
        execution_options!(rate_limit = rate => get_execution_options().rate_limit),
        Some(4.0)
    );
    let maybe_rate: Option<f64> = None;
    assert_eq!(
        execution_options!(rate_limit = 1 => execution_options!(rate_limit = maybe_rate => get_execution_options().rate_limit)),
        None
    );
    assert_eq!(
        execution_options!(rate_limit = if flag { 1.0 } else { 0.5 } => get_execution_options().rate_limit),
        Some(0.5)
    );

    let dir = CacheDir::new("/tmp/xcs-ui").unwrap();
    let as_str: &str = "/tmp/xcs-ui";
    let as_string = String::from("/tmp/xcs-ui");
    let as_path_buf = PathBuf::from("/tmp/xcs-ui");
    assert_eq!(
        execution_options!(cache_dir = as_str => get_execution_options().cache_dir),
        Some(dir)
    );
    assert_eq!(
        execution_options!(cache_dir = &as_string => get_execution_options().cache_dir),
        Some(dir)
    );
    assert_eq!(
        execution_options!(cache_dir = as_path_buf.as_path() => get_execution_options().cache_dir),
        Some(dir)
    );
    assert_eq!(
        execution_options!(cache_dir = Some(as_path_buf.clone()) => get_execution_options().cache_dir),
        Some(dir)
    );
    assert_eq!(
        execution_options!(cache_dir = dir => get_execution_options().cache_dir),
        Some(dir)
    );
    assert_eq!(
        execution_options!(cache_dir = as_string => get_execution_options().cache_dir),
        Some(dir)
    );
    assert_eq!(
        execution_options!(cache_dir = Path::new("/tmp/xcs-ui") => get_execution_options().cache_dir),
        Some(dir)
    );
    let no_dir: Option<PathBuf> = None;
    assert_eq!(
        execution_options!(cache_dir = dir => execution_options!(cache_dir = no_dir => get_execution_options().cache_dir)),
        None
    );

    let progress = !flag;
    assert!(execution_options!(show_progress = progress => get_execution_options().show_progress));

    let global = set_execution_options!(max_workers = n, use_parallel = flag);
    assert_eq!(global.max_workers, NonZeroUsize::new(2));
    reset_execution_options();
}
