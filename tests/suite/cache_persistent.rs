//! The persistent cache: answers survive the process, several processes share a
//! store, faults degrade to the memory cache, errors are never stored.
#![cfg(feature = "persist")]

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, MutexGuard};

use xcs::{CacheDir, Operator, OptionsPatch, PersistSupport, XcsError, vmap, with_options};

/// The memory cache and its counters are process-wide: the tests take turns (with every test of
/// the binary that uses them). Each test starts with an empty memory cache.
fn turn() -> MutexGuard<'static, ()> {
    let turn = common::global_lock();
    xcs::clear_cache();
    turn
}

/// Answers `q` with a string, counting bodies; fails on "fail".
struct Answer {
    bodies: Arc<AtomicUsize>,
    version: u32,
}

impl Answer {
    fn new(version: u32) -> Answer {
        Answer {
            bodies: Arc::default(),
            version,
        }
    }
    fn bodies(&self) -> usize {
        self.bodies.load(Ordering::SeqCst)
    }
}

impl Operator for Answer {
    type Input = String;
    type Output = String;
    fn forward(&self, q: String) -> Result<String, XcsError> {
        self.bodies.fetch_add(1, Ordering::SeqCst);
        if q == "fail" {
            return Err(XcsError::operator("answer", "no answer"));
        }
        Ok(format!("answer to {q} (v{})", self.version))
    }
    fn name(&self) -> &str {
        "persist_answer"
    }
    fn persist_support(&self) -> Option<PersistSupport<String, String>> {
        Some(PersistSupport::serde().version(self.version))
    }
}

fn cached_in(dir: &Path) -> OptionsPatch {
    OptionsPatch::new()
        .enable_caching(true)
        .cache_dir(Some(CacheDir::new(dir).unwrap()))
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xcs-persist-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

const ROLE: &str = "PERSIST_TEST_ROLE";
const DIR: &str = "PERSIST_TEST_DIR";

/// Runs this test binary again as a child doing `role` in `dir`; returns what it printed.
fn child(role: &str, dir: &Path) -> String {
    common::rerun(
        module_path!(),
        "child_process",
        &[(ROLE, role.as_ref()), (DIR, dir.as_os_str())],
    )
    .0
}

/// Not a test of its own: what a child process does when `PERSIST_TEST_ROLE` is set.
#[test]
fn child_process() {
    let (Ok(role), Ok(dir)) = (std::env::var(ROLE), std::env::var(DIR)) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let op = Answer::new(1);
    match role.as_str() {
        "ask" => {
            let answer = with_options(&cached_in(&dir), || op.call("life".into())).unwrap();
            let stats = xcs::cache_stats();
            println!(
                "BODIES={} ANSWER={answer} HITS={} MISSES={} PERSISTENT_HITS={}",
                op.bodies(),
                stats.hits,
                stats.misses,
                stats.persistent_hits
            );
        }
        writer => {
            // Many distinct inputs at once, in parallel, into one store.
            let inputs: Vec<String> = (0..100).map(|i| format!("{writer}-{i}")).collect();
            let op = vmap(Arc::new(op));
            let out = with_options(&cached_in(&dir), || op.call(inputs)).unwrap();
            println!("WROTE={}", out.len());
        }
    }
}

#[test]
fn answers_survive_the_process() {
    let _turn = turn();
    let dir = fresh_dir("survive");
    let op = Answer::new(1);
    let first = with_options(&cached_in(&dir), || op.call("life".into())).unwrap();
    assert_eq!(op.bodies(), 1);
    // Another process answers from the store without running the body.
    let printed = child("ask", &dir);
    assert!(
        printed.contains(&format!("BODIES=0 ANSWER={first}")),
        "{printed}"
    );
    // The answer from disk is a persistent hit, not a miss: no body ran.
    assert!(
        printed.contains("HITS=0 MISSES=0 PERSISTENT_HITS=1"),
        "{printed}"
    );
    assert!(xcs::cache_stats().misses >= 1);
    xcs::clear_cache_dir(&dir).unwrap();
    let printed = child("ask", &dir);
    assert!(printed.contains("BODIES=1"), "cleared: {printed}");
    assert!(
        printed.contains("HITS=0 MISSES=1 PERSISTENT_HITS=0"),
        "cleared: {printed}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_version_invalidates_and_errors_are_never_stored() {
    let _turn = turn();
    let dir = fresh_dir("version");
    let v1 = Answer::new(1);
    with_options(&cached_in(&dir), || v1.call("q".into())).unwrap();
    xcs::clear_cache();
    let before = xcs::cache_stats().persistent_hits;
    with_options(&cached_in(&dir), || v1.call("q".into())).unwrap();
    assert_eq!(v1.bodies(), 1, "answered from the store");
    assert_eq!(xcs::cache_stats().persistent_hits, before + 1);
    xcs::clear_cache();
    let v2 = Answer::new(2);
    let answer = with_options(&cached_in(&dir), || v2.call("q".into())).unwrap();
    assert_eq!((v2.bodies(), answer.as_str()), (1, "answer to q (v2)"));
    // Errors: never stored, so every call runs the body again.
    for _ in 0..2 {
        xcs::clear_cache();
        assert!(with_options(&cached_in(&dir), || v1.call("fail".into())).is_err());
    }
    assert_eq!(v1.bodies(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_processes_write_one_store_at_once() {
    let _turn = turn();
    let dir = fresh_dir("two");
    let a = std::thread::spawn({
        let dir = dir.clone();
        move || child("writer-a", &dir)
    });
    let b = child("writer-b", &dir);
    let a = a.join().unwrap();
    assert!(
        a.contains("WROTE=100") && b.contains("WROTE=100"),
        "{a} / {b}"
    );
    // Everything both wrote answers here without a body.
    xcs::clear_cache();
    let op = Answer::new(1);
    let inputs: Vec<String> = ["writer-a", "writer-b"]
        .iter()
        .flat_map(|w| (0..100).map(move |i| format!("{w}-{i}")))
        .collect();
    let out = with_options(&cached_in(&dir), || vmap(Arc::new(op)).call(inputs)).unwrap();
    assert_eq!(out.len(), 200);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_store_that_cannot_be_used_degrades_to_the_memory_cache() {
    let _turn = turn();
    // A directory that cannot be created (its parent is a file).
    let file = fresh_dir("not-a-dir");
    std::fs::write(&file, b"a file").unwrap();
    // A store whose database file is garbage.
    let corrupt = fresh_dir("corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::write(corrupt.join("xcs-cache.sqlite3"), vec![0x5a; 8192]).unwrap();
    for dir in [file.join("cache"), corrupt.clone()] {
        xcs::clear_cache();
        let op = Answer::new(1);
        for _ in 0..3 {
            let answer = with_options(&cached_in(&dir), || op.call("q".into())).unwrap();
            assert_eq!(answer, "answer to q (v1)");
        }
        assert_eq!(op.bodies(), 1, "the memory cache still answers ({dir:?})");
    }
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_dir_all(&corrupt);
}

#[cfg(unix)]
#[test]
fn the_store_is_private_to_its_user() {
    use std::os::unix::fs::PermissionsExt;
    let _turn = turn();
    let dir = fresh_dir("private");
    with_options(&cached_in(&dir), || Answer::new(1).call("q".into())).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("xcs-cache.sqlite3")), 0o600);
    let _ = std::fs::remove_dir_all(&dir);
}

static SHOUTS: AtomicUsize = AtomicUsize::new(0);

/// A generated operator persists when its parameters and output are serde types.
#[xcs::operator(version = 3)]
fn shout(text: String, times: u32) -> Vec<String> {
    SHOUTS.fetch_add(1, Ordering::SeqCst);
    vec![text.to_uppercase(); times as usize]
}

#[test]
fn generated_operators_persist_under_their_version() {
    let _turn = turn();
    let dir = fresh_dir("generated");
    assert_eq!(Shout.persist_support().map(|s| s.version_number()), Some(3));
    let input = || ShoutInputs::batch("hey".to_string(), vec![1, 2]).unwrap();
    let first = with_options(&cached_in(&dir), || vmap(Shout).call(input())).unwrap();
    assert_eq!(SHOUTS.load(Ordering::SeqCst), 2);
    xcs::clear_cache();
    let again = with_options(&cached_in(&dir), || vmap(Shout).call(input())).unwrap();
    assert_eq!(again, first);
    assert_eq!(SHOUTS.load(Ordering::SeqCst), 2, "answered from the store");
    let _ = std::fs::remove_dir_all(&dir);
}
