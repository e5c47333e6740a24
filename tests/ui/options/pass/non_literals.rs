//! Non-literal values of every accepted type.
use std::num::NonZeroUsize;
use std::time::Duration;
use xcs::{
    DeviceStrategy, Scheduler, execution_options, get_execution_options, reset_execution_options,
    set_execution_options,
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

    let global = set_execution_options!(max_workers = n, use_parallel = flag);
    assert_eq!(global.max_workers, NonZeroUsize::new(2));
    reset_execution_options();
}
