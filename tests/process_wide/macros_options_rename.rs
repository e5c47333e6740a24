//! The expansion of the option macros must not depend on names in the caller's scope.
//!
//! The module below shadows everything the generated code could reach for by a relative name:
//! `core`, `std`, `xcs`, `Option`, `Some`, `None`, `Result`, `Ok`, `Err`, `usize`, `f64`, the
//! runtime's own item names, and a `mod __private`; and it declares locals named like the
//! macros' own. Generated code names the runtime as `::xcs::__private::…` and core items by
//! absolute path, and its locals have mixed-site hygiene, so none of this changes its meaning.
//!
//! `None` as an option value is recognised by the token, not resolved: `max_workers = None`
//! always means "unset", even here where `None` names a constant. To pass a value that happens
//! to be called `None`, write a non-literal expression such as `{ None }`.

#![allow(
    non_camel_case_types,
    non_upper_case_globals,
    dead_code,
    unused_imports
)]

use crate::common;

/// Tests in one binary run in parallel and global options are process-wide: every test holds the
/// binary's lock, and the one that sets global options restores the defaults.
fn serial() -> ::std::sync::MutexGuard<'static, ()> {
    common::global_lock()
}

mod shadowed {
    use super::serial;

    mod core {}
    mod std {}
    mod xcs {}
    mod __private {
        pub fn enter() {}
        pub mod convert {}
    }
    struct Option;
    struct Some;
    const None: u8 = 7;
    struct Result;
    struct Ok;
    struct Err;
    struct usize;
    struct f64;
    struct OptionsPatch;
    struct DeviceStrategy;
    struct Scheduler;
    struct Duration;
    struct NonZeroUsize;
    fn enter() {}
    fn set_global_options() {}
    mod convert {}

    use ::xcs::{execution_options, get_execution_options, set_execution_options};

    #[test]
    fn scoped_options_ignore_the_callers_names() {
        let _serial = serial();
        let seen = execution_options!(
            use_parallel = false,
            max_workers = 3,
            device_strategy = "gpu",
            enable_caching = true,
            trace_execution = true,
            timeout_seconds = 0.5,
            scheduler = "topological",
            => get_execution_options()
        );
        assert!(!seen.use_parallel);
        assert_eq!(
            seen.max_workers.map(|n| n.get()),
            ::core::option::Option::Some(3)
        );
        assert_eq!(seen.device_strategy, ::xcs::DeviceStrategy::Gpu);
        assert!(seen.enable_caching && seen.trace_execution);
        assert_eq!(
            seen.timeout_seconds,
            ::core::option::Option::Some(::std::time::Duration::from_millis(500))
        );
        assert_eq!(
            seen.scheduler,
            ::core::option::Option::Some(::xcs::Scheduler::Topological)
        );
    }

    #[test]
    fn none_is_the_unset_literal_even_when_shadowed() {
        let _serial = serial();
        assert_eq!(None, 7);
        let seen = execution_options!(max_workers = 2, timeout_seconds = 1 => {
            execution_options!(max_workers = None, timeout_seconds = None, scheduler = None =>
                get_execution_options())
        });
        assert!(seen.max_workers.is_none());
        assert!(seen.timeout_seconds.is_none());
        assert!(seen.scheduler.is_none());
    }

    #[test]
    fn non_literal_values_ignore_the_callers_names() {
        let _serial = serial();
        let workers: ::core::primitive::usize = 2;
        let secs: ::core::primitive::f64 = 0.25;
        let flag = false;
        let seen = execution_options!(max_workers = workers, timeout_seconds = secs, use_parallel = flag =>
            get_execution_options());
        assert_eq!(
            seen.max_workers.map(|n| n.get()),
            ::core::option::Option::Some(2)
        );
        assert!(!seen.use_parallel);
    }

    #[test]
    fn the_macros_locals_are_invisible_to_user_code() {
        let _serial = serial();
        let __xcs_patch = 4;
        let __xcs_guard = "mine";
        let __xcs_scheduler = ::xcs::Scheduler::Wave;
        let (workers, guard, seen) = execution_options!(
            max_workers = __xcs_patch,
            scheduler = __xcs_scheduler,
            => (get_execution_options().max_workers, __xcs_guard, get_execution_options())
        );
        assert_eq!(workers.map(|n| n.get()), ::core::option::Option::Some(4));
        assert_eq!(guard, "mine");
        assert_eq!(
            seen.scheduler,
            ::core::option::Option::Some(::xcs::Scheduler::Wave)
        );
    }

    #[test]
    fn global_options_ignore_the_callers_names() {
        let _serial = serial();
        let global = set_execution_options!(max_workers = 5, device_strategy = "cpu");
        assert_eq!(
            global.max_workers.map(|n| n.get()),
            ::core::option::Option::Some(5)
        );
        assert_eq!(global.device_strategy, ::xcs::DeviceStrategy::Cpu);
        ::xcs::reset_execution_options();
    }
}
