//! `enable_caching`: observed through body counters.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::{
    AlwaysFails, AlwaysFailsInputs, CachedSquare, CachedSquareInputs, FLAKY_RUNS, SQUARE_RUNS,
    global_lock, op, serial,
};
use xcs::CacheStats;
use xcs::prelude::*;

fn caching() -> OptionsPatch {
    OptionsPatch::new().enable_caching(true)
}

/// Counts how often its body runs; fails on negative inputs.
#[derive(Default)]
struct Counted {
    runs: AtomicUsize,
}

impl Operator for Counted {
    type Input = i64;
    type Output = String;
    fn forward(&self, input: i64) -> Result<String, XcsError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if input < 0 {
            return Err(XcsError::operator("counted", "negative"));
        }
        Ok(format!("#{input}"))
    }
    fn name(&self) -> &str {
        "counted"
    }
}

#[test]
fn a_cached_body_runs_once_per_input() {
    let _lock = global_lock();
    xcs::clear_cache();
    let op = Counted::default();
    with_options(&caching(), || {
        assert_eq!(op.call(7).unwrap(), "#7");
        assert_eq!(op.call(7).unwrap(), "#7");
        assert_eq!(op.call(8).unwrap(), "#8");
        assert_eq!(op.call(7).unwrap(), "#7");
    });
    assert_eq!(op.runs.load(Ordering::SeqCst), 2);
    let stats = xcs::cache_stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (2, 2, 2));
    // Without the option, the body runs every time.
    op.call(7).unwrap();
    assert_eq!(op.runs.load(Ordering::SeqCst), 3);
}

#[test]
fn errors_are_not_cached() {
    let _lock = global_lock();
    xcs::clear_cache();
    let op = Counted::default();
    with_options(&caching(), || {
        assert!(op.call(-1).is_err());
        assert!(op.call(-1).is_err());
    });
    assert_eq!(op.runs.load(Ordering::SeqCst), 2);
    assert_eq!(xcs::cache_stats().entries, 0);
}

#[test]
fn batch_items_are_cached_one_by_one() {
    let _lock = global_lock();
    xcs::clear_cache();
    let op = Arc::new(Counted::default());
    let batch = vmap(Arc::clone(&op));
    let out = with_options(&caching(), || {
        batch.call(vec![1, 2, 1, 2, 1, 3]).unwrap();
        batch.call(vec![1, 2, 3]).unwrap()
    });
    assert_eq!(out, vec!["#1", "#2", "#3"]);
    // Each distinct input ran once, even duplicates running at the same time in one parallel
    // batch (the second waits for the first), and the second batch ran nothing.
    assert_eq!(op.runs.load(Ordering::SeqCst), 3);
    let before = op.runs.load(Ordering::SeqCst);
    with_options(&caching(), || batch.call(vec![3, 2, 1])).unwrap();
    assert_eq!(op.runs.load(Ordering::SeqCst), before);
}

#[test]
fn clear_cache_and_capacity_evict() {
    let _lock = global_lock();
    xcs::clear_cache();
    let op = Counted::default();
    with_options(&caching(), || {
        op.call(1).unwrap();
        xcs::clear_cache();
        op.call(1).unwrap();
    });
    assert_eq!(op.runs.load(Ordering::SeqCst), 2);

    xcs::set_cache_capacity(2);
    let op = Counted::default();
    with_options(&caching(), || {
        for i in [10, 11, 12] {
            op.call(i).unwrap();
        }
        // 10 was least recently used and is gone; 12 is still there.
        op.call(12).unwrap();
        op.call(10).unwrap();
    });
    assert_eq!(op.runs.load(Ordering::SeqCst), 4);
    let stats = xcs::cache_stats();
    assert_eq!(stats.capacity, 2);
    assert!(stats.evictions >= 2);
    xcs::set_cache_capacity(xcs::DEFAULT_CACHE_CAPACITY);
}

/// Input that cannot be hashed: runs uncached, never a compile error.
struct Halve(AtomicUsize);

impl Operator for Halve {
    type Input = f64;
    type Output = f64;
    fn forward(&self, x: f64) -> Result<f64, XcsError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(x / 2.0)
    }
    fn name(&self) -> &str {
        "halve"
    }
}

#[test]
fn unhashable_inputs_run_uncached() {
    let _lock = global_lock();
    let op = Halve(AtomicUsize::new(0));
    with_options(&caching(), || {
        op.call(1.0).unwrap();
        op.call(1.0).unwrap();
    });
    assert_eq!(op.0.load(Ordering::SeqCst), 2);
}

/// Counts runs; sleeps past the deadline on its first run only.
struct SlowOnce(AtomicUsize);

impl Operator for SlowOnce {
    type Input = u32;
    type Output = u32;
    fn forward(&self, x: u32) -> Result<u32, XcsError> {
        if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(150));
        }
        Ok(x)
    }
    fn name(&self) -> &str {
        "slow_once"
    }
}

#[test]
fn a_timed_out_call_is_not_cached() {
    let _lock = global_lock();
    xcs::clear_cache();
    let op = Arc::new(SlowOnce(AtomicUsize::new(0)));
    let patch = caching().timeout(Some(Duration::from_millis(50))).unwrap();
    let first = with_options(&patch, || op.call(5));
    assert!(first.unwrap_err().is_timeout());
    // Let the abandoned body finish; its late result must not have been stored.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(with_options(&patch, || op.call(5)).unwrap(), 5);
    assert_eq!(op.0.load(Ordering::SeqCst), 2);
    assert_eq!(with_options(&patch, || op.call(5)).unwrap(), 5);
    assert_eq!(op.0.load(Ordering::SeqCst), 2);
}

/// Slow enough that concurrent calls overlap; counts runs.
struct SlowCount(AtomicUsize, Duration);

impl Operator for SlowCount {
    type Input = u32;
    type Output = u32;
    fn forward(&self, x: u32) -> Result<u32, XcsError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.1);
        Ok(x * 2)
    }
    fn name(&self) -> &str {
        "slow_count"
    }
}

#[test]
fn concurrent_calls_with_one_input_run_the_body_once() {
    let _lock = global_lock();
    xcs::clear_cache();
    let op = Arc::new(SlowCount(AtomicUsize::new(0), Duration::from_millis(50)));
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let op = Arc::clone(&op);
            std::thread::spawn(move || with_options(&caching(), || op.call(21)))
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap().unwrap(), 42);
    }
    assert_eq!(op.0.load(Ordering::SeqCst), 1);
    let stats = xcs::cache_stats();
    assert_eq!((stats.misses, stats.hits), (1, 5));
}

#[test]
fn a_caller_waiting_for_another_still_meets_its_deadline() {
    let _lock = global_lock();
    xcs::clear_cache();
    let op = Arc::new(SlowCount(AtomicUsize::new(0), Duration::from_millis(400)));
    let leader = {
        let op = Arc::clone(&op);
        std::thread::spawn(move || with_options(&caching(), || op.call(5)))
    };
    // Let the leader claim the input, then wait for it under a short deadline.
    while op.0.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let patch = caching().timeout(Some(Duration::from_millis(50))).unwrap();
    let waiter = with_options(&patch, || op.call(5));
    assert!(waiter.unwrap_err().is_timeout());
    assert_eq!(leader.join().unwrap().unwrap(), 10);
    // The waiter did not run the body; the leader's result is stored.
    assert_eq!(op.0.load(Ordering::SeqCst), 1);
    assert_eq!(with_options(&caching(), || op.call(5)).unwrap(), 10);
    assert_eq!(op.0.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------------
// Operator identity: the operator's own type is part of the key.
// ---------------------------------------------------------------------------------------------

/// Two different hand-written operators that happen to share a name and their types.
struct Summarize;
struct Translate;

impl Operator for Summarize {
    type Input = String;
    type Output = String;
    fn forward(&self, text: String) -> Result<String, XcsError> {
        Ok(format!("summary of {text}"))
    }
    fn name(&self) -> &str {
        "llm"
    }
}

impl Operator for Translate {
    type Input = String;
    type Output = String;
    fn forward(&self, text: String) -> Result<String, XcsError> {
        Ok(format!("translation of {text}"))
    }
    fn name(&self) -> &str {
        "llm"
    }
}

mod first {
    #[xcs::operator]
    pub fn answer(question: String) -> String {
        format!("first: {question}")
    }
}

mod second {
    #[xcs::operator]
    pub fn answer(question: String) -> String {
        format!("second: {question}")
    }
}

#[test]
fn operator_types_with_one_name_never_share_entries() {
    let _lock = global_lock();
    xcs::clear_cache();
    with_options(&caching(), || {
        let report = || "the report".to_string();
        assert_eq!(Summarize.call(report()).unwrap(), "summary of the report");
        assert_eq!(
            Translate.call(report()).unwrap(),
            "translation of the report"
        );
        // Each is cached under its own type.
        assert_eq!(Summarize.call(report()).unwrap(), "summary of the report");
        assert_eq!(
            Translate.call(report()).unwrap(),
            "translation of the report"
        );
        assert_eq!(xcs::cache_stats().entries, 2);

        // Generated operators too (same function name, same parameter types).
        let q = || "why".to_string();
        assert_eq!(
            first::Answer.call(first::AnswerInputs::new(q())).unwrap(),
            "first: why"
        );
        assert_eq!(
            second::Answer.call(second::AnswerInputs::new(q())).unwrap(),
            "second: why"
        );
        assert_eq!(
            first::Answer.call(first::AnswerInputs::new(q())).unwrap(),
            "first: why"
        );
    });
    // An `Arc` shares its operator's entries.
    with_options(&caching(), || {
        let before = xcs::cache_stats().hits;
        assert_eq!(
            Arc::new(Translate).call("the report".to_string()).unwrap(),
            "translation of the report"
        );
        assert_eq!(xcs::cache_stats().hits, before + 1);
    });
}

// ---------------------------------------------------------------------------------------------
// The byte bound.
// ---------------------------------------------------------------------------------------------

const MIB: usize = 1 << 20;

/// Returns 1 MiB per input; counts runs.
#[derive(Default)]
struct Blob(AtomicUsize);

impl Operator for Blob {
    type Input = u32;
    type Output = Vec<u8>;
    fn forward(&self, seed: u32) -> Result<Vec<u8>, XcsError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(vec![seed as u8; MIB])
    }
    fn name(&self) -> &str {
        "blob"
    }
}

static PAGE_RUNS: AtomicUsize = AtomicUsize::new(0);

/// A generated operator returning 1 MiB of text.
#[xcs::operator]
fn page(n: u32) -> String {
    PAGE_RUNS.fetch_add(1, Ordering::SeqCst);
    char::from(b'a' + (n % 26) as u8).to_string().repeat(MIB)
}

/// Restores the default bounds when dropped.
struct DefaultBounds;

impl Drop for DefaultBounds {
    fn drop(&mut self) {
        xcs::set_cache_capacity(xcs::DEFAULT_CACHE_CAPACITY);
        xcs::set_cache_max_bytes(xcs::DEFAULT_CACHE_MAX_BYTES);
        xcs::clear_cache();
    }
}

#[test]
fn many_large_outputs_stay_under_the_byte_bound() {
    let _lock = global_lock();
    let _restore = DefaultBounds;
    xcs::clear_cache();
    let stats = xcs::cache_stats();
    assert_eq!(
        stats.max_bytes,
        xcs::DEFAULT_CACHE_MAX_BYTES,
        "the documented default"
    );
    assert_eq!(stats.bytes, 0);

    xcs::set_cache_max_bytes(8 * MIB);
    let op = Blob::default();
    with_options(&caching(), || {
        for seed in 0..32 {
            op.call(seed).unwrap();
        }
        let stats = xcs::cache_stats();
        assert!(stats.bytes <= 8 * MIB, "{stats:?}");
        // Seven outputs of 1 MiB and a bit fit, the eighth does not.
        assert_eq!(stats.entries, 7, "{stats:?}");
        assert!(
            stats.bytes >= 7 * MIB,
            "outputs count their heap: {stats:?}"
        );
        assert_eq!(stats.evictions, 25);
        // The most recent outputs are the ones kept.
        op.call(31).unwrap();
        op.call(25).unwrap();
        assert_eq!(op.0.load(Ordering::SeqCst), 32);
        op.call(0).unwrap();
        assert_eq!(op.0.load(Ordering::SeqCst), 33);
    });

    // Generated operators count their heap too.
    xcs::clear_cache();
    PAGE_RUNS.store(0, Ordering::SeqCst);
    with_options(&caching(), || {
        for n in 0..20 {
            Page.call(PageInputs::new(n)).unwrap();
        }
        let stats = xcs::cache_stats();
        assert!(
            stats.bytes <= 8 * MIB && stats.bytes >= 7 * MIB,
            "{stats:?}"
        );
        Page.call(PageInputs::new(19)).unwrap();
        assert_eq!(PAGE_RUNS.load(Ordering::SeqCst), 20);
    });

    // Lowering the bound evicts at once; an output larger than the bound is not stored.
    xcs::set_cache_max_bytes(MIB / 2);
    assert_eq!(xcs::cache_stats().entries, 0);
    assert_eq!(xcs::cache_stats().bytes, 0);
    let op = Blob::default();
    with_options(&caching(), || {
        op.call(1).unwrap();
        op.call(1).unwrap();
    });
    assert_eq!(op.0.load(Ordering::SeqCst), 2);
    assert_eq!(xcs::cache_stats().entries, 0);
}

#[test]
fn the_entry_bound_still_applies_beside_the_byte_bound() {
    let _lock = global_lock();
    let _restore = DefaultBounds;
    xcs::clear_cache();
    xcs::set_cache_capacity(3);
    let op = Counted::default();
    with_options(&caching(), || {
        for i in 0..10 {
            op.call(i).unwrap();
        }
    });
    let stats = xcs::cache_stats();
    assert_eq!((stats.entries, stats.capacity), (3, 3));
    assert!(stats.bytes > 0 && stats.bytes < stats.max_bytes);
}

// ---------------------------------------------------------------------------------------------
// Panics in user code around the cache: errors, never unwinding into the caller.
// ---------------------------------------------------------------------------------------------

/// An input whose `Hash` panics for 13.
#[derive(PartialEq, Eq)]
pub struct TouchyKey(pub u32);

impl std::hash::Hash for TouchyKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        if self.0 == 13 {
            panic!("touchy hash of 13");
        }
        self.0.hash(state);
    }
}

static TOUCHY_RUNS: AtomicUsize = AtomicUsize::new(0);

#[xcs::operator]
fn touchy(key: TouchyKey) -> u32 {
    TOUCHY_RUNS.fetch_add(1, Ordering::SeqCst);
    key.0
}

fn call_touchy(x: u32) -> Result<u32, XcsError> {
    Touchy.call(TouchyInputs::new(TouchyKey(x)))
}

#[test]
fn a_panicking_hash_is_an_error() {
    let _lock = global_lock();
    xcs::clear_cache();
    TOUCHY_RUNS.store(0, Ordering::SeqCst);
    with_options(&caching(), || {
        match call_touchy(13) {
            Err(XcsError::Panicked {
                operator, message, ..
            }) => {
                assert_eq!(operator, "touchy");
                assert!(message.contains("touchy hash of 13"), "{message}");
            }
            other => panic!("expected Panicked, got {other:?}"),
        }
        // The cache is still usable.
        assert_eq!(call_touchy(1).unwrap(), 1);
        assert_eq!(call_touchy(1).unwrap(), 1);
    });
    assert_eq!(TOUCHY_RUNS.load(Ordering::SeqCst), 1);
}

static FRAGILE_CLONE_PANICS: AtomicBool = AtomicBool::new(false);
static FRAGILE_RUNS: AtomicUsize = AtomicUsize::new(0);

/// An output whose `Clone` panics while `FRAGILE_CLONE_PANICS` is set.
#[derive(Debug, PartialEq)]
pub struct FragileOut(pub u32);

impl Clone for FragileOut {
    fn clone(&self) -> Self {
        if FRAGILE_CLONE_PANICS.load(Ordering::SeqCst) {
            panic!("fragile clone");
        }
        FragileOut(self.0)
    }
}

#[xcs::operator]
fn fragile(x: u32) -> FragileOut {
    FRAGILE_RUNS.fetch_add(1, Ordering::SeqCst);
    FragileOut(x)
}

fn call_fragile(x: u32) -> Result<FragileOut, XcsError> {
    Fragile.call(FragileInputs::new(x))
}

fn expect_clone_panic(result: Result<FragileOut, XcsError>) {
    match result {
        Err(XcsError::Panicked {
            operator, message, ..
        }) => {
            assert_eq!(operator, "fragile");
            assert!(message.contains("fragile clone"), "{message}");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
}

#[test]
fn a_panicking_clone_is_an_error() {
    let _lock = global_lock();
    xcs::clear_cache();
    FRAGILE_RUNS.store(0, Ordering::SeqCst);
    with_options(&caching(), || {
        // On insert: the body ran, storing its output panicked.
        FRAGILE_CLONE_PANICS.store(true, Ordering::SeqCst);
        expect_clone_panic(call_fragile(1));
        assert_eq!(xcs::cache_stats().entries, 0);
        // Stored, then a hit whose clone panics.
        FRAGILE_CLONE_PANICS.store(false, Ordering::SeqCst);
        assert_eq!(call_fragile(2).unwrap(), FragileOut(2));
        FRAGILE_CLONE_PANICS.store(true, Ordering::SeqCst);
        expect_clone_panic(call_fragile(2));
        // The entry and the cache survive.
        FRAGILE_CLONE_PANICS.store(false, Ordering::SeqCst);
        assert_eq!(call_fragile(2).unwrap(), FragileOut(2));
    });
    assert_eq!(FRAGILE_RUNS.load(Ordering::SeqCst), 2);
}

static GRENADES_EXPLODE: AtomicBool = AtomicBool::new(false);
static GRENADE_BLASTS: AtomicUsize = AtomicUsize::new(0);

/// An output whose stored copies (made by `Clone`) panic when dropped while `GRENADES_EXPLODE`
/// is set; the body's own outputs do not.
#[derive(Debug)]
pub struct Shell {
    pub armed: bool,
}

impl Clone for Shell {
    fn clone(&self) -> Self {
        Shell { armed: true }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        if self.armed && GRENADES_EXPLODE.load(Ordering::SeqCst) {
            GRENADE_BLASTS.fetch_add(1, Ordering::SeqCst);
            panic!("grenade dropped");
        }
    }
}

#[xcs::operator]
fn grenade(_x: u32) -> Shell {
    Shell { armed: false }
}

#[test]
fn a_panicking_drop_of_a_stored_output_is_swallowed() {
    let _lock = global_lock();
    let _restore = DefaultBounds;
    xcs::clear_cache();
    GRENADE_BLASTS.store(0, Ordering::SeqCst);
    GRENADES_EXPLODE.store(true, Ordering::SeqCst);
    xcs::set_cache_capacity(2);
    with_options(&caching(), || {
        // Evicted: 1 and 2 go as 3 and 4 come in.
        for x in 1..=4 {
            assert!(!Grenade.call(GrenadeInputs::new(x)).unwrap().armed);
        }
        // A hit hands out an armed clone; the caller keeps it out of harm's way.
        std::mem::forget(Grenade.call(GrenadeInputs::new(4)).unwrap());
    });
    assert_eq!(GRENADE_BLASTS.load(Ordering::SeqCst), 2);
    // Shrinking and clearing drop the rest.
    xcs::set_cache_capacity(1);
    assert_eq!(GRENADE_BLASTS.load(Ordering::SeqCst), 3);
    xcs::clear_cache();
    assert_eq!(GRENADE_BLASTS.load(Ordering::SeqCst), 4);
    assert_eq!(xcs::cache_stats().entries, 0);
    GRENADES_EXPLODE.store(false, Ordering::SeqCst);
}

/// Blocks in `Clone` until `other_call_done`, so a test can see whether another call could use
/// the cache meanwhile.
static SLOW_CLONE_ON: AtomicBool = AtomicBool::new(false);
static SLOW_CLONE_STARTED: AtomicUsize = AtomicUsize::new(0);
static SLOW_CLONE_BLOCKED: AtomicBool = AtomicBool::new(false);
static OTHER_CALL_DONE: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

#[derive(Debug)]
pub struct SlowCopy(pub u32);

impl Clone for SlowCopy {
    fn clone(&self) -> Self {
        if SLOW_CLONE_ON.load(Ordering::SeqCst) {
            SLOW_CLONE_STARTED.fetch_add(1, Ordering::SeqCst);
            let (done, woken) = &OTHER_CALL_DONE;
            let done = done.lock().unwrap();
            let (_done, wait) = woken
                .wait_timeout_while(done, Duration::from_secs(5), |done| !*done)
                .unwrap();
            if wait.timed_out() {
                SLOW_CLONE_BLOCKED.store(true, Ordering::SeqCst);
            }
        }
        SlowCopy(self.0)
    }
}

#[xcs::operator]
fn slow_clone(x: u32) -> SlowCopy {
    SlowCopy(x)
}

#[test]
fn a_slow_clone_does_not_hold_up_other_cached_calls() {
    let _lock = global_lock();
    xcs::clear_cache();
    with_options(&caching(), || SlowClone.call(SlowCloneInputs::new(1))).unwrap();
    SLOW_CLONE_ON.store(true, Ordering::SeqCst);
    // A hit: its clone blocks until the other call below is done.
    let hit =
        std::thread::spawn(|| with_options(&caching(), || SlowClone.call(SlowCloneInputs::new(1))));
    assert!(common::wait_for(&SLOW_CLONE_STARTED, 1));
    let op = Counted::default();
    with_options(&caching(), || {
        op.call(77).unwrap();
        op.call(77).unwrap();
    });
    let (done, woken) = &OTHER_CALL_DONE;
    *done.lock().unwrap() = true;
    woken.notify_all();
    assert_eq!(hit.join().unwrap().unwrap().0, 1);
    SLOW_CLONE_ON.store(false, Ordering::SeqCst);
    assert!(
        !SLOW_CLONE_BLOCKED.load(Ordering::SeqCst),
        "another cached call waited for a clone"
    );
}

// ---------------------------------------------------------------------------------------------
// Single flight never waits for itself.
// ---------------------------------------------------------------------------------------------

/// Calls itself once with its own input from inside its body.
struct Recursive(AtomicUsize);

impl Operator for Recursive {
    type Input = u32;
    type Output = u32;
    fn forward(&self, x: u32) -> Result<u32, XcsError> {
        if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            return self.call(x).map(|inner| inner + 1);
        }
        Ok(x)
    }
    fn name(&self) -> &str {
        "recursive"
    }
}

#[test]
fn an_operator_calling_itself_with_its_input_does_not_wait_for_itself() {
    let _lock = global_lock();
    xcs::clear_cache();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let op = Recursive(AtomicUsize::new(0));
        let _ = sender.send(with_options(&caching(), || op.call(5)));
    });
    let result = receiver
        .recv_timeout(Duration::from_secs(10))
        .expect("the nested call waited for its own caller");
    assert_eq!(result.unwrap(), 6);
}

// ---------------------------------------------------------------------------------------------
// Uncacheable operators are warned about, once per operator type.
// ---------------------------------------------------------------------------------------------

/// A hand-written operator whose input is not a standard type xcs can hash.
struct Mean;

impl Operator for Mean {
    type Input = Vec<f64>;
    type Output = f64;
    fn forward(&self, xs: Vec<f64>) -> Result<f64, XcsError> {
        Ok(xs.iter().sum::<f64>() / xs.len().max(1) as f64)
    }
    fn name(&self) -> &str {
        "mean_of_floats"
    }
}

/// A client: not `Hash`, so not part of a cache key.
pub struct LlmClient;

#[xcs::operator]
fn ask_with_client(client: LlmClient, prompt: String) -> String {
    let _ = client;
    prompt
}

/// Never called under caching.
struct NeverCached;

impl Operator for NeverCached {
    type Input = f32;
    type Output = f32;
    fn forward(&self, x: f32) -> Result<f32, XcsError> {
        Ok(x)
    }
    fn name(&self) -> &str {
        "never_cached_op"
    }
}

#[test]
fn uncacheable_operators_warn_once_per_type_saying_why() {
    let _lock = global_lock();
    let warnings = common::global_subscriber();
    NeverCached.call(1.0).unwrap();
    with_options(&caching(), || {
        for _ in 0..3 {
            Mean.call(vec![1.0, 2.0]).unwrap();
            AskWithClient
                .call(AskWithClientInputs::new(LlmClient, "hi".to_string()))
                .unwrap();
        }
        // Batches are cached item by item: no warning about the batch operators.
        vmap(vmap(Counted::default()))
            .call(vec![vec![1, 2], vec![3]])
            .unwrap();
    });

    let mean = warnings.warnings_mentioning("`mean_of_floats`");
    assert_eq!(mean.len(), 1, "{mean:#?}");
    assert!(
        mean[0].contains("input type `alloc::vec::Vec<f64>`"),
        "{}",
        mean[0]
    );
    assert!(mean[0].contains("`static`"), "{}", mean[0]);

    let ask = warnings.warnings_mentioning("`ask_with_client`");
    assert_eq!(ask.len(), 1, "{ask:#?}");
    assert!(
        ask[0].contains(&format!(
            "parameter `client: {}::LlmClient` is not `Hash + Eq`",
            module_path!()
        )),
        "{}",
        ask[0]
    );
    assert!(
        ask[0].contains("hand-written operator struct"),
        "{}",
        ask[0]
    );

    assert!(warnings.warnings_mentioning("vmap(").is_empty());
    assert!(warnings.warnings_mentioning("counted").is_empty());
    // Without `enable_caching`, nothing to warn about.
    assert!(warnings.warnings_mentioning("never_cached_op").is_empty());
}

static CUBE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[xcs::operator]
fn cached_cube(x: u64) -> u64 {
    CUBE_RUNS.fetch_add(1, Ordering::SeqCst);
    x * x * x
}

static CONCAT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[xcs::operator]
fn cached_concat(prompt: String, seed: u64) -> String {
    CONCAT_RUNS.fetch_add(1, Ordering::SeqCst);
    format!("{prompt}{seed}")
}

static FLOAT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[xcs::operator]
fn sum_floats(xs: Vec<f64>) -> f64 {
    FLOAT_RUNS.fetch_add(1, Ordering::SeqCst);
    xs.iter().sum()
}

#[test]
fn caching_returns_stored_output_and_counts() {
    let _s = serial();
    xcs::clear_cache();
    assert_eq!(xcs::cache_stats().entries, 0);
    SQUARE_RUNS.store(0, Ordering::SeqCst);
    let before = xcs::cache_stats();
    let CacheStats {
        hits: h0,
        misses: m0,
        ..
    } = before;
    execution_options!(enable_caching = true => {
        assert_eq!(CachedSquare.call(CachedSquareInputs { x: 3 }).unwrap(), 9);
        assert_eq!(CachedSquare.call(CachedSquareInputs { x: 3 }).unwrap(), 9);
        assert_eq!(CachedSquare.call(CachedSquareInputs { x: 4 }).unwrap(), 16);
    });
    assert_eq!(
        SQUARE_RUNS.load(Ordering::SeqCst),
        2,
        "the repeated input did not run forward"
    );
    let CacheStats {
        hits,
        misses,
        entries,
        ..
    } = xcs::cache_stats();
    assert_eq!(hits - h0, 1);
    assert_eq!(misses - m0, 2);
    assert_eq!(entries, 2);

    // Caching off: forward runs every time.
    CachedSquare.call(CachedSquareInputs { x: 3 }).unwrap();
    assert_eq!(SQUARE_RUNS.load(Ordering::SeqCst), 3);

    // clear_cache empties it.
    xcs::clear_cache();
    assert_eq!(xcs::cache_stats().entries, 0);
    execution_options!(enable_caching = true => CachedSquare.call(CachedSquareInputs { x: 3 }).unwrap());
    assert_eq!(SQUARE_RUNS.load(Ordering::SeqCst), 4);
}

#[test]
fn caching_keeps_operators_apart_and_handles_multi_argument_inputs() {
    let _s = serial();
    SQUARE_RUNS.store(0, Ordering::SeqCst);
    CUBE_RUNS.store(0, Ordering::SeqCst);
    CONCAT_RUNS.store(0, Ordering::SeqCst);
    execution_options!(enable_caching = true => {
        assert_eq!(CachedSquare.call(CachedSquareInputs { x: 2 }).unwrap(), 4);
        assert_eq!(CachedCube.call(CachedCubeInputs { x: 2 }).unwrap(), 8);
        assert_eq!(CachedCube.call(CachedCubeInputs { x: 2 }).unwrap(), 8);
        let i = || CachedConcatInputs { prompt: "a".to_string(), seed: 1 };
        assert_eq!(CachedConcat.call(i()).unwrap(), "a1");
        assert_eq!(CachedConcat.call(i()).unwrap(), "a1");
    });
    assert_eq!(SQUARE_RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(CUBE_RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(CONCAT_RUNS.load(Ordering::SeqCst), 1);
}

#[test]
fn caching_hand_written_operator_with_hashable_input() {
    let _s = serial();
    let runs = Arc::new(AtomicUsize::new(0));
    let r2 = runs.clone();
    let counted = op("counted_hand_written", move |x: u64| {
        r2.fetch_add(1, Ordering::SeqCst);
        x + 1
    });
    execution_options!(enable_caching = true => {
        assert_eq!(counted.call(5).unwrap(), 6);
        assert_eq!(counted.call(5).unwrap(), 6);
    });
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "u64 is Hash + Eq and u64 is Clone"
    );
}

#[test]
fn errors_are_not_cached_and_unhashable_inputs_run_uncached() {
    let _s = serial();
    FLAKY_RUNS.store(0, Ordering::SeqCst);
    FLOAT_RUNS.store(0, Ordering::SeqCst);
    execution_options!(enable_caching = true => {
        assert!(AlwaysFails.call(AlwaysFailsInputs { x: 1 }).is_err());
        assert!(AlwaysFails.call(AlwaysFailsInputs { x: 1 }).is_err());
        assert_eq!(SumFloats.call(SumFloatsInputs { xs: vec![1.0, 2.0] }).unwrap(), 3.0);
        assert_eq!(SumFloats.call(SumFloatsInputs { xs: vec![1.0, 2.0] }).unwrap(), 3.0);
    });
    assert_eq!(
        FLAKY_RUNS.load(Ordering::SeqCst),
        2,
        "errors are not cached"
    );
    assert_eq!(
        FLOAT_RUNS.load(Ordering::SeqCst),
        2,
        "unhashable input runs uncached"
    );
}

#[test]
fn cache_is_bounded_with_lru_eviction() {
    let _s = serial();
    xcs::clear_cache();
    let cap = xcs::DEFAULT_CACHE_CAPACITY as u64;
    assert_eq!(
        xcs::cache_stats().capacity,
        cap as usize,
        "the documented default"
    );
    SQUARE_RUNS.store(0, Ordering::SeqCst);
    execution_options!(enable_caching = true => {
        for x in 0..cap {
            CachedSquare.call(CachedSquareInputs { x }).unwrap();
        }
        CachedSquare.call(CachedSquareInputs { x: 0 }).unwrap(); // touch 0: 1 is now the LRU
        CachedSquare.call(CachedSquareInputs { x: cap }).unwrap(); // evicts 1
        assert_eq!(xcs::cache_stats().entries, cap as usize);
        let runs = SQUARE_RUNS.load(Ordering::SeqCst);
        CachedSquare.call(CachedSquareInputs { x: 0 }).unwrap();
        assert_eq!(SQUARE_RUNS.load(Ordering::SeqCst), runs, "0 was recently used: still cached");
        CachedSquare.call(CachedSquareInputs { x: 1 }).unwrap();
        assert_eq!(SQUARE_RUNS.load(Ordering::SeqCst), runs + 1, "1 was the LRU entry: evicted");
    });
    xcs::clear_cache();
}

#[derive(Debug, PartialEq)]
struct NotClone(u64);

#[test]
fn hashable_input_with_non_clone_output_runs_uncached() {
    let _s = serial();
    let runs = Arc::new(AtomicUsize::new(0));
    let r2 = runs.clone();
    let o = op("non_clone_output", move |x: u64| {
        r2.fetch_add(1, Ordering::SeqCst);
        NotClone(x)
    });
    execution_options!(enable_caching = true => {
        assert_eq!(o.call(1).unwrap(), NotClone(1));
        assert_eq!(o.call(1).unwrap(), NotClone(1));
    });
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}
