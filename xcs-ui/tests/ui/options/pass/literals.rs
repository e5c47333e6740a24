//! Every literal form of every option, in both macros.
use std::num::NonZeroUsize;
use std::time::Duration;
use xcs::{
    CacheDir, DeviceStrategy, ExecutionOptions, Scheduler, execution_options,
    get_execution_options, reset_execution_options, set_execution_options,
};

fn main() {
    let seen = execution_options!(
        use_parallel = false,
        max_workers = 4,
        device_strategy = "cpu",
        enable_caching = true,
        trace_execution = true,
        timeout_seconds = 0.5,
        scheduler = "topological",
        => get_execution_options()
    );
    assert!(!seen.use_parallel);
    assert_eq!(seen.max_workers, NonZeroUsize::new(4));
    assert_eq!(seen.device_strategy, DeviceStrategy::Cpu);
    assert!(seen.enable_caching && seen.trace_execution);
    assert_eq!(seen.timeout_seconds, Some(Duration::from_millis(500)));
    assert_eq!(seen.scheduler, Some(Scheduler::Topological));

    // Integer seconds, the other strategies and schedulers, `None` (also spelt out), parentheses.
    let seen = execution_options!(timeout_seconds = 2, device_strategy = "gpu", scheduler = "wave" =>
        get_execution_options());
    assert_eq!(seen.timeout_seconds, Some(Duration::from_secs(2)));
    assert_eq!(seen.device_strategy, DeviceStrategy::Gpu);
    assert!(seen.use_parallel);
    let seen =
        execution_options!(max_workers = (2), scheduler = "parallel" => get_execution_options());
    assert_eq!(seen.max_workers, NonZeroUsize::new(2));
    assert_eq!(seen.scheduler, Some(Scheduler::Parallel));
    let seen = execution_options!(max_workers = 2, timeout_seconds = 1 => {
        execution_options!(
            max_workers = None,
            timeout_seconds = Option::None,
            scheduler = ::core::option::Option::None,
            device_strategy = "auto",
            => get_execution_options()
        )
    });
    assert_eq!(seen.max_workers, None);
    assert_eq!(seen.timeout_seconds, None);
    assert_eq!(seen.scheduler, None);
    let seen =
        execution_options!(scheduler = "auto", use_parallel = true => get_execution_options());
    assert_eq!(seen.scheduler, Some(Scheduler::Auto));
    let seen = execution_options!(scheduler = "sequential" => get_execution_options());
    assert!(!seen.use_parallel);

    // The options of retries, rate limits, the persistent cache and progress.
    let seen = execution_options!(
        max_retries = 3,
        rate_limit = 2,
        cache_dir = "/tmp/xcs-ui-cache",
        show_progress = true,
        => get_execution_options()
    );
    assert_eq!(seen.max_retries, 3);
    assert_eq!(seen.rate_limit, Some(2.0));
    assert_eq!(
        seen.cache_dir.map(CacheDir::as_path),
        Some(std::path::Path::new("/tmp/xcs-ui-cache"))
    );
    assert!(seen.show_progress);
    let seen = execution_options!(rate_limit = 0.5, cache_dir = Some("relative"), max_retries = 0 => {
        execution_options!(rate_limit = None, cache_dir = None, show_progress = false => get_execution_options())
    });
    assert_eq!(seen.rate_limit, None);
    assert_eq!(seen.cache_dir, None);
    assert_eq!(seen.max_retries, 0);
    assert!(!seen.show_progress);
    let seen = execution_options!(max_retries = 4294967295, max_workers = 1024, rate_limit = Some(1e9) =>
        get_execution_options());
    assert_eq!(seen.max_retries, u32::MAX);
    assert_eq!(seen.max_workers, NonZeroUsize::new(xcs::MAX_WORKERS));
    assert_eq!(seen.rate_limit, Some(1e9));
    // Any count of at least 1 compiles, above `MAX_WORKERS` too (it bounds a sync batch's
    // threads, not the option); beyond `usize`, as many as a `usize` says.
    assert_eq!(
        execution_options!(max_workers = 1025 => get_execution_options().max_workers),
        NonZeroUsize::new(1025)
    );
    assert_eq!(
        execution_options!(max_workers = 2000 => get_execution_options().max_workers),
        NonZeroUsize::new(2000)
    );
    assert_eq!(
        execution_options!(max_workers = 5_000 => get_execution_options().max_workers),
        NonZeroUsize::new(5000)
    );
    assert_eq!(
        execution_options!(max_workers = Some(1_000_000) => get_execution_options().max_workers),
        NonZeroUsize::new(1_000_000)
    );
    assert_eq!(
        execution_options!(max_workers = 99999999999999999999999999999999999999999 => get_execution_options().max_workers),
        Some(NonZeroUsize::MAX)
    );

    // No options at all, and a trailing comma.
    assert_eq!(
        execution_options!(=> get_execution_options()),
        ExecutionOptions::default()
    );
    let seen = execution_options!(enable_caching = true, => get_execution_options());
    assert!(seen.enable_caching);

    // The global form returns the new global options.
    let global: ExecutionOptions =
        set_execution_options!(max_workers = 3, trace_execution = false,);
    assert_eq!(global.max_workers, NonZeroUsize::new(3));
    assert_eq!(set_execution_options!(), global);
    reset_execution_options();
}
