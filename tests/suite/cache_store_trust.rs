//! What the persistent cache trusts: bytes in a store are decoded with bounds (a deeply nested
//! value is a miss, not a crashed process), and a directory or store file that another user
//! could have written is refused (the call answers from its body and the memory cache, never
//! from planted data).
//!
//! Each scenario lays out files, then runs this test binary again as a child process that makes
//! one call with `cache_dir` and prints what happened: a child opens the store afresh (a process
//! opens a directory's store once), and a child that crashes fails the test instead of aborting
//! the whole test binary.
#![cfg(all(unix, feature = "persist"))]

use crate::common;

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use xcs::{CacheDir, Operator, OptionsPatch, PersistSupport, XcsError, with_options};

const DB: &str = "xcs-cache.sqlite3";
const NOBODY: u32 = 65534;

static BODIES: AtomicUsize = AtomicUsize::new(0);

/// Answers every question with `answer`, counting bodies. The victim answers "42"; the
/// attacker's process (which plants a store) answers "1337" under the same name and version.
struct Answer(&'static str);

impl Operator for Answer {
    type Input = String;
    type Output = String;
    fn forward(&self, _question: String) -> Result<String, XcsError> {
        BODIES.fetch_add(1, Ordering::SeqCst);
        Ok(self.0.to_owned())
    }
    fn name(&self) -> &str {
        "trust_answer"
    }
    fn persist_support(&self) -> Option<PersistSupport<String, String>> {
        Some(PersistSupport::serde())
    }
}

/// A recursive output type, as users write them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
enum Expr {
    Lit(i64),
    Neg(Box<Expr>),
}

/// `Neg(Neg(…Lit(1)…))`, `depth` deep.
#[xcs::operator]
fn parse(depth: u32) -> Expr {
    BODIES.fetch_add(1, Ordering::SeqCst);
    (0..depth).fold(Expr::Lit(1), |e, _| Expr::Neg(Box::new(e)))
}

fn cached_in(dir: &Path) -> OptionsPatch {
    OptionsPatch::new()
        .enable_caching(true)
        .cache_dir(Some(CacheDir::new(dir).unwrap()))
}

/// A fresh, empty scratch directory (mode 0700) for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xcs-trust-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Gives `dir` and every file in it to `nobody`.
fn give_away(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        std::os::unix::fs::chown(entry.unwrap().path(), Some(NOBODY), Some(NOBODY)).unwrap();
    }
    std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY)).unwrap();
}

/// Whether this process may give files away (it runs as root, as in CI); says so if not.
fn can_chown(case: &str) -> bool {
    let probe = scratch(&format!("probe-{case}"));
    let root = std::fs::metadata(&probe).unwrap().uid() == 0;
    let _ = std::fs::remove_dir_all(&probe);
    if !root {
        eprintln!(
            "SKIPPED {case}: files of another user need root to make (this process is not root)"
        );
    }
    root
}

const ROLE: &str = "XCS_TRUST_TEST_ROLE";
const DIR: &str = "XCS_TRUST_TEST_DIR";

/// What one call in a child process did.
#[derive(Debug, PartialEq)]
struct Outcome {
    answer: String,
    bodies: usize,
    persistent_hits: u64,
}

/// Runs this test binary again as a child that makes one call of `role` with `cache_dir = dir`.
fn child(role: &str, dir: &Path) -> Outcome {
    let (stdout, _) = common::rerun(
        module_path!(),
        "child_process",
        &[(ROLE, role.as_ref()), (DIR, dir.as_os_str())],
    );
    let field = |name: &str| {
        let line = stdout
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("the child printed no {name}: {stdout}"));
        line.to_owned()
    };
    Outcome {
        answer: field("ANSWER"),
        bodies: field("BODIES").parse().unwrap(),
        persistent_hits: field("HITS").parse().unwrap(),
    }
}

/// Not a test of its own: what a child process does when `XCS_TRUST_TEST_ROLE` is set.
#[test]
fn child_process() {
    let (Ok(role), Ok(dir)) = (std::env::var(ROLE), std::env::var(DIR)) else {
        return;
    };
    let options = cached_in(Path::new(&dir));
    let answer = match role.as_str() {
        "victim" => with_options(&options, || Answer("42").call("q".into())).unwrap(),
        "attacker" => with_options(&options, || Answer("1337").call("q".into())).unwrap(),
        "parse" => {
            let expr = with_options(&options, || Parse.call(ParseInputs { depth: 3 })).unwrap();
            format!("{expr:?}")
        }
        other => panic!("unknown role {other}"),
    };
    // On a line of its own: the test harness has just printed the test's name.
    println!("\nANSWER={answer}");
    println!("BODIES={}", BODIES.load(Ordering::SeqCst));
    println!("HITS={}", xcs::cache_stats().persistent_hits);
}

/// The victim's call when the store is refused: the body answers, nothing comes from disk.
fn refused() -> Outcome {
    Outcome {
        answer: "42".into(),
        bodies: 1,
        persistent_hits: 0,
    }
}

/// A store in `dir` whose only entry answers the victim's question with "1337".
fn planted_store(dir: &Path) {
    let planted = child("attacker", dir);
    assert_eq!(planted.answer, "1337");
    assert!(dir.join(DB).exists());
}

#[test]
fn a_deeply_nested_stored_value_is_a_miss_not_a_crash() {
    let dir = scratch("deep");
    let first = child("parse", &dir);
    assert_eq!(first.answer, "Neg(Neg(Neg(Lit(1))))");
    assert_eq!(first.bodies, 1);
    // Replace the stored value by one nested 200 000 levels deep (200 KB): `Neg` is variant 1,
    // `Lit` variant 0, then zigzag(1).
    let mut deep = vec![1u8; 200_000];
    deep.extend([0, 2]);
    let db = rusqlite::Connection::open(dir.join(DB)).unwrap();
    assert_eq!(
        db.execute("UPDATE entries SET value = ?1", [&deep])
            .unwrap(),
        1
    );
    drop(db);

    // The process lives, the body answers, and the bad entry is replaced by a good one.
    let second = child("parse", &dir);
    assert_eq!(
        second,
        Outcome {
            answer: first.answer.clone(),
            bodies: 1,
            persistent_hits: 0
        }
    );
    let third = child("parse", &dir);
    assert_eq!((third.bodies, third.persistent_hits), (0, 1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_private_directory_is_used() {
    // Ours with mode 0755 (think `cache_dir = "."`): trusted, the second process hits.
    let dir = scratch("ours");
    chmod(&dir, 0o755);
    assert_eq!(child("victim", &dir), refused());
    let again = child("victim", &dir);
    assert_eq!((again.answer.as_str(), again.persistent_hits), ("42", 1));
    assert_eq!(mode(&dir), 0o755, "an existing directory keeps its mode");
    assert_eq!(mode(&dir.join(DB)), 0o600);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_directory_of_another_user_is_refused() {
    if !can_chown("a_directory_of_another_user_is_refused") {
        return;
    }
    let dir = scratch("nobody-dir");
    planted_store(&dir);
    give_away(&dir);
    chmod(&dir, 0o755);
    assert_eq!(child("victim", &dir), refused());
    assert_eq!(std::fs::metadata(dir.join(DB)).unwrap().uid(), NOBODY);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_directory_others_may_write_is_refused() {
    let dir = scratch("world-writable");
    planted_store(&dir);
    chmod(&dir, 0o777);
    assert_eq!(child("victim", &dir), refused());
    // Group-writable is as bad.
    chmod(&dir, 0o770);
    assert_eq!(child("victim", &dir), refused());
    // clear_cache_dir touches nothing in such a directory.
    assert!(matches!(
        xcs::clear_cache_dir(&dir),
        Err(XcsError::CacheStore { .. })
    ));
    assert!(dir.join(DB).exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The victim's store in `dir` (answering "42"), and a WAL file in `wal` that, replayed into
/// it, makes its entry answer "1337".
fn victim_store_and_hostile_wal(dir: &Path, staging: &Path) -> PathBuf {
    assert_eq!(child("victim", dir), refused()); // stores "42"
    // Fold the victim's WAL into its database file (the last connection to close does).
    let db = rusqlite::Connection::open(dir.join(DB)).unwrap();
    let n: i64 = db
        .query_row("SELECT count(*) FROM entries", [], |row| row.get(0))
        .unwrap();
    assert_eq!(n, 1);
    drop(db);
    assert!(!dir.join(format!("{DB}-wal")).exists());
    // The attacker's copy of the database, changed in WAL mode with checkpoints off.
    std::fs::copy(dir.join(DB), staging.join(DB)).unwrap();
    let db = rusqlite::Connection::open(staging.join(DB)).unwrap();
    db.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    // postcard's "1337": its length, then its bytes.
    let n = db
        .execute("UPDATE entries SET value = X'0431333337'", [])
        .unwrap();
    assert_eq!(n, 1);
    let wal = staging.join(format!("{DB}-wal"));
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    let planted = dir.join(format!("{DB}-wal"));
    std::fs::copy(&wal, &planted).unwrap();
    drop(db);
    // The planted file works: SQLite replays it into a copy of the victim's database.
    let proof = staging.join("proof");
    std::fs::create_dir_all(&proof).unwrap();
    std::fs::copy(dir.join(DB), proof.join(DB)).unwrap();
    std::fs::copy(&planted, proof.join(format!("{DB}-wal"))).unwrap();
    let value: Vec<u8> = rusqlite::Connection::open(proof.join(DB))
        .unwrap()
        .query_row("SELECT value FROM entries", [], |row| row.get(0))
        .unwrap();
    assert_eq!(value, b"\x041337");
    std::fs::remove_dir_all(&proof).unwrap();
    planted
}

#[test]
fn a_planted_wal_file_is_refused() {
    let staging = scratch("wal-staging");
    // Ours but writable by others (a 0755 directory lets others reach it).
    let dir = scratch("wal-writable");
    let wal = victim_store_and_hostile_wal(&dir, &staging);
    chmod(&dir, 0o755);
    chmod(&wal, 0o666);
    assert_eq!(child("victim", &dir), refused());
    // clear_cache_dir deletes such files (by name) and the store works again.
    xcs::clear_cache_dir(&dir).unwrap();
    assert!(!wal.exists() && !dir.join(DB).exists());
    assert_eq!(child("victim", &dir), refused());
    assert_eq!(child("victim", &dir).persistent_hits, 1);
    let _ = std::fs::remove_dir_all(&dir);

    if can_chown("a_planted_wal_file_is_refused (owned by another user)") {
        let dir = scratch("wal-nobody");
        std::fs::remove_file(staging.join(DB)).unwrap();
        let wal = victim_store_and_hostile_wal(&dir, &staging);
        std::os::unix::fs::chown(&wal, Some(NOBODY), Some(NOBODY)).unwrap();
        chmod(&wal, 0o600);
        assert_eq!(child("victim", &dir), refused());
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&staging);
}

#[test]
fn a_symlinked_database_file_is_refused_and_its_target_untouched() {
    let dir = scratch("symlink");
    let elsewhere = scratch("symlink-target");
    planted_store(&elsewhere);
    let target = elsewhere.join(DB);
    chmod(&target, 0o644);
    let before = std::fs::read(&target).unwrap();
    symlink(&target, dir.join(DB)).unwrap();
    assert_eq!(child("victim", &dir), refused());
    assert_eq!(mode(&target), 0o644, "the target's mode changed");
    assert_eq!(std::fs::read(&target).unwrap(), before);
    // clear_cache_dir removes the link, not its target.
    xcs::clear_cache_dir(&dir).unwrap();
    assert!(std::fs::symlink_metadata(dir.join(DB)).is_err());
    assert_eq!(std::fs::read(&target).unwrap(), before);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&elsewhere);
}

#[test]
fn a_dangling_symlink_creates_nothing_at_its_target() {
    let dir = scratch("dangling");
    let elsewhere = scratch("dangling-target");
    let target = elsewhere.join("chosen-by-the-attacker");
    symlink(&target, dir.join(DB)).unwrap();
    assert_eq!(child("victim", &dir), refused());
    assert!(
        std::fs::symlink_metadata(&target).is_err(),
        "a file was created at the link's target"
    );
    // A symlinked side file is refused as well.
    std::fs::remove_file(dir.join(DB)).unwrap();
    symlink(&target, dir.join(format!("{DB}-shm"))).unwrap();
    assert_eq!(child("victim", &dir), refused());
    assert!(std::fs::symlink_metadata(&target).is_err());
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&elsewhere);
}
