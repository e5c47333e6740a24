//! What `execution_options!` and `set_execution_options!` must accept: each module is one case,
//! and `main` runs them all (in this order; each case leaves the global options at their
//! defaults).
//!
//! The cases share one file because trybuild builds (and cleans) every pass file as a crate of
//! its own, one after another.

fn main() {
    literals::main();
    non_literals::main();
    control_flow::main();
    macro_rules_forward::main();
}

mod literals {
    //! Every literal form of every option, in both macros.
    use std::num::NonZeroUsize;
    use std::time::Duration;
    use xcs::{
        CacheDir, DeviceStrategy, ExecutionOptions, Scheduler, execution_options,
        get_execution_options, reset_execution_options, set_execution_options,
    };

    pub fn main() {
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
        let seen = execution_options!(max_workers = (2), scheduler = "parallel" => get_execution_options());
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
        // Budgets: integers ≥ 1 and numbers > 0, `None`, `Some(…)`; a nested scope narrows.
        let seen = execution_options!(token_budget = 30_000, cost_budget = 2 => {
            execution_options!(token_budget = Some(100), cost_budget = None => get_execution_options())
        });
        assert_eq!(seen.token_budget, Some(100));
        assert_eq!(seen.cost_budget, Some(2.0));
        let seen = execution_options!(token_budget = 100, cost_budget = 0.5 => {
            execution_options!(token_budget = 1000u64, cost_budget = Some(1.5) => get_execution_options())
        });
        assert_eq!(seen.token_budget, Some(100));
        assert_eq!(seen.cost_budget, Some(0.5));
        let global = set_execution_options!(token_budget = 10, cost_budget = 1.0);
        assert_eq!((global.token_budget, global.cost_budget), (Some(10), Some(1.0)));
        // A global update replaces the global budget.
        let global = set_execution_options!(token_budget = None, cost_budget = 3);
        assert_eq!((global.token_budget, global.cost_budget), (None, Some(3.0)));
        reset_execution_options();
        // Hedging: seconds > 0, "p50" … "p99", `None`, `Some(…)`; a scope overrides.
        let seen = execution_options!(hedge_after = "p95" => {
            execution_options!(hedge_after = 0.25 => get_execution_options())
        });
        assert_eq!(seen.hedge_after, xcs::Hedge::after(Duration::from_millis(250)));
        let seen = execution_options!(hedge_after = Some("p50") => get_execution_options());
        assert_eq!(seen.hedge_after, xcs::Hedge::quantile(50));
        let seen = execution_options!(hedge_after = 2 => {
            execution_options!(hedge_after = None => get_execution_options())
        });
        assert_eq!(seen.hedge_after, None);
        let global = set_execution_options!(hedge_after = "P99");
        assert_eq!(global.hedge_after, xcs::Hedge::quantile(99));
        reset_execution_options();
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
}

mod non_literals {
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

    pub fn main() {
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

        let rule = xcs::Hedge::quantile(90);
        let text = "p75";
        let wait = Duration::from_millis(40);
        assert_eq!(
            execution_options!(hedge_after = rule => get_execution_options().hedge_after),
            rule
        );
        assert_eq!(
            execution_options!(hedge_after = text => get_execution_options().hedge_after),
            xcs::Hedge::quantile(75)
        );
        assert_eq!(
            execution_options!(hedge_after = wait => get_execution_options().hedge_after),
            xcs::Hedge::after(wait)
        );
        assert_eq!(
            execution_options!(hedge_after = Some(0.5_f64) => get_execution_options().hedge_after),
            xcs::Hedge::after(Duration::from_millis(500))
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

        let tokens: u64 = 500;
        let small: u32 = 50;
        let maybe_tokens: Option<usize> = Some(40);
        assert_eq!(
            execution_options!(token_budget = tokens => get_execution_options().token_budget),
            Some(500)
        );
        assert_eq!(
            execution_options!(token_budget = small => get_execution_options().token_budget),
            Some(50)
        );
        assert_eq!(
            execution_options!(token_budget = maybe_tokens => get_execution_options().token_budget),
            Some(40)
        );
        let cost = 0.25_f64;
        let maybe_cost: Option<f64> = None;
        assert_eq!(
            execution_options!(cost_budget = cost => get_execution_options().cost_budget),
            Some(0.25)
        );
        assert_eq!(
            execution_options!(cost_budget = maybe_cost => get_execution_options().cost_budget),
            None
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
        assert!(
            execution_options!(show_progress = progress => get_execution_options().show_progress)
        );

        let global = set_execution_options!(max_workers = n, use_parallel = flag);
        assert_eq!(global.max_workers, NonZeroUsize::new(2));
        reset_execution_options();
    }
}

/// The body is expanded inline: `?`, `return`, `break`, `continue` and borrows work as without
/// the macro.
mod control_flow {
    use xcs::{OptionsPatch, XcsError, execution_options, get_execution_options};

    fn parse_twice(text: &str) -> Result<u32, std::num::ParseIntError> {
        let n: u32 = execution_options!(use_parallel = false => text.parse()?);
        Ok(n * 2)
    }

    fn early(flag: bool) -> &'static str {
        execution_options!(max_workers = 2 => {
            if flag {
                return "returned";
            }
        });
        "fell through"
    }

    fn fallible() -> Result<(), XcsError> {
        execution_options!(enable_caching = true => {
            OptionsPatch::from_pairs([("max_workers", "2")])?;
            Ok(())
        })
    }

    pub fn main() {
        assert_eq!(parse_twice("21"), Ok(42));
        assert!(parse_twice("x").is_err());
        assert!(get_execution_options().use_parallel);
        assert_eq!(early(true), "returned");
        assert_eq!(early(false), "fell through");
        assert!(fallible().is_ok());

        let mut total = 0;
        for i in 0..10 {
            execution_options!(trace_execution = true => {
                if i == 2 {
                    continue;
                }
                if i == 5 {
                    break;
                }
                total += i;
            });
        }
        assert_eq!(total, 0 + 1 + 3 + 4);
        let found = 'outer: loop {
            execution_options!(use_parallel = false => break 'outer 7);
        };
        assert_eq!(found, 7);

        // Borrows inside the body are plain borrows of the surrounding function.
        let mut items = vec![1, 2, 3];
        let first = execution_options!(max_workers = 1 => &mut items[0]);
        *first = 10;
        assert_eq!(items, [10, 2, 3]);
        assert!(!get_execution_options().trace_execution);
    }
}

/// Keys and values forwarded through `macro_rules!` fragments are checked like written ones.
mod macro_rules_forward {
    use std::num::NonZeroUsize;
    use xcs::{execution_options, get_execution_options};

    macro_rules! with_workers {
        ($key:ident = $value:expr => $body:expr) => {
            execution_options!($key = $value => $body)
        };
    }

    pub fn main() {
        let seen = with_workers!(max_workers = 3 => get_execution_options().max_workers);
        assert_eq!(seen, NonZeroUsize::new(3));
        let seen = with_workers!(max_workers = None => get_execution_options().max_workers);
        assert_eq!(seen, None);
    }
}
