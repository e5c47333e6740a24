//! The storage layer of the persistent cache (`cache_dir`, SPEC §9): an embedded database in the
//! cache directory, shared by the threads of a process and by every process that uses the same
//! directory at once.
//!
//! # Why SQLite
//!
//! Several processes must be able to read and write one store at the same time. redb (the pure
//! Rust candidate) takes an exclusive lock on its file: a second process that opens the same
//! database gets `DatabaseAlreadyOpen` (checked with redb 5.0; its multi-process mode is
//! unfinished work upstream), so the second process of a pipeline would lose its cache. SQLite in
//! WAL mode lets any number of processes read while one writes, serializes writers across
//! processes with its file locks (a writer waits up to [`BUSY_TIMEOUT`] for the lock), and survives
//! a process killed in the middle of a write: the next opener ignores the unfinished tail of the
//! WAL, so every committed transaction is there and nothing else. We link SQLite statically (`rusqlite` with `bundled`), so there is no
//! system library to match; the price is compiling SQLite's C source once, which is why the store
//! sits behind the default-on cargo feature `persist` (without it [`Store::open`] always fails and
//! calls use the memory cache).
//!
//! Measured on the shared 2-core development machine (release build, `bench_store` below; other
//! jobs were running, so take the spread as the error bar): a hit (`get` of a 100-byte value)
//! costs 3–4.5 µs and a miss about 3 µs; 8 threads writing 100-byte values sustain 18 000–29 000
//! puts per second (writes are serialized: one writer at a time, per process and across
//! processes), and 8 threads reading sustain 600 000–800 000 hits per second. Operators worth
//! caching on disk take milliseconds, so neither figure matters next to them. `synchronous =
//! NORMAL` makes a commit a write into the WAL without an `fsync`: a killed process loses nothing
//! it committed, a power cut may lose the last commits but never corrupts the file — the right
//! trade for a cache.
//!
//! # API (crate-internal)
//!
//! - [`Store::open`]`(dir) -> Result<Arc<Store>, StoreError>`: the store of a directory, opened
//!   once per process and shared (a process-wide map from [`CacheDir`] to the open store). It
//!   creates the directory (mode 0700) and the database file (mode 0600). A directory that failed
//!   to open is remembered: calls within [`RETRY_AFTER`] get the same error without touching the
//!   disk, then one retry is made. Cheap enough to call on every call (a mutex and a map lookup).
//! - [`Store::get`], [`Store::put`], [`Store::remove`]: opaque bytes in, opaque bytes out. A caller
//!   whose value does not decode treats it as a miss and may `put` a fresh value over it (or
//!   `remove` it).
//! - [`key_bytes`]`(operator, version, input)`: the key of one call: a format tag, the operator's
//!   name (length-prefixed), its version and the input's serialized bytes. Unambiguous, and stable
//!   across processes, builds and platforms.
//! - [`encode`] / [`decode`]: the serialized form of inputs and outputs (`postcard`, whose wire
//!   format is stable across its 1.x releases and platform-independent: integers are varints, so a
//!   `usize` reads the same on 32- and 64-bit hosts). Both return `None` instead of failing or
//!   panicking, including when a user's `Serialize`/`Deserialize` impl panics.
//! - [`clear_cache_dir`]`(path)` (public, re-exported at the crate root): empties the store of a
//!   directory.
//!
//! # Faults
//!
//! Nothing here panics on a bad disk. An unopenable, read-only, full or corrupt store is a
//! [`StoreError`] for the caller, who answers from the memory cache instead; each directory's
//! first failure is also logged once with `tracing::warn!` (target `xcs`). A corrupt database
//! file stays unusable until [`clear_cache_dir`] deletes it and the next open starts afresh.
//!
//! # Privacy
//!
//! A directory the store creates gets mode 0700; the database file and SQLite's side files
//! (`-wal`, `-shm`) get 0600 whatever the umask. An existing directory is used as it is: its mode
//! is the user's choice (think `cache_dir = "."`), and the files in it are private anyway.
//!
//! # Caveats for callers
//!
//! - Keys are only as stable as the input's serialized form: an input holding a `HashMap` or
//!   `HashSet` serializes in a per-process order and so misses across processes (it never returns
//!   a wrong answer).
//! - `postcard` is not self-describing: types that need `deserialize_any` (`#[serde(untagged)]`,
//!   `#[serde(flatten)]`, `serde_json::Value`) never decode, so they always miss; callers should
//!   check that an encoded value decodes before relying on the store for such types.
//! - Two spellings of one directory (`cache` and `./cache`) are two entries of the process-wide
//!   map, hence two connections to one database: correct, just not shared.
//! - A put waits up to [`BUSY_TIMEOUT`] when another process holds the write lock; a caller under
//!   a deadline may want to skip the store instead of waiting.
#![cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "the call path uses the store once `cache_dir` is wired in; remove this then"
    )
)]

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::XcsError;
use crate::options::CacheDir;

/// The database file in the cache directory. SQLite keeps `-wal` and `-shm` files beside it.
pub(crate) const DB_FILE: &str = "xcs-cache.sqlite3";

/// The side files SQLite may keep next to [`DB_FILE`] (the last one only in rollback-journal
/// mode, which a store never uses, but a stray one must not survive [`clear_cache_dir`]).
const SIDE_SUFFIXES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// How long a read or write waits for another process (or connection) that holds the database
/// lock before it gives up with [`StoreErrorKind::Busy`]. Writes are single small transactions,
/// so the lock is normally held for microseconds; a wait this long means a stuck process.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a directory that failed to open is left alone before one more attempt.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Bumped if the key layout ever changes, so old entries simply stop matching.
const KEY_FORMAT: u8 = 1;

/// What went wrong with a store. The caller degrades to the memory cache whatever the kind; the
/// kind is for messages and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreErrorKind {
    /// The directory or the database file cannot be created or opened.
    Unavailable,
    /// The directory or the database file cannot be written.
    ReadOnly,
    /// The database file is not a (valid) SQLite database.
    Corrupt,
    /// The disk (or the quota) is full.
    Full,
    /// Another process held the database lock longer than [`BUSY_TIMEOUT`].
    Busy,
    /// Any other I/O or database failure.
    Io,
    /// xcs was built without the `persist` feature.
    #[cfg(not(feature = "persist"))]
    Disabled,
}

/// A store that could not do what was asked, and why.
#[derive(Clone, Debug)]
pub(crate) struct StoreError {
    dir: PathBuf,
    kind: StoreErrorKind,
    reason: String,
}

impl StoreError {
    fn new(dir: &Path, kind: StoreErrorKind, reason: impl Into<String>) -> StoreError {
        StoreError {
            dir: dir.to_path_buf(),
            kind,
            reason: reason.into(),
        }
    }

    /// What went wrong.
    pub(crate) fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot use the persistent cache in `{}`: {}",
            self.dir.display(),
            self.reason
        )
    }
}

impl std::error::Error for StoreError {}

impl From<StoreError> for XcsError {
    fn from(error: StoreError) -> XcsError {
        XcsError::CacheStore {
            dir: error.dir,
            reason: error.reason,
        }
    }
}

/// The store of one cache directory: a handle on its database, shared by every thread of the
/// process (see the module docs).
pub(crate) struct Store {
    dir: CacheDir,
    db: sqlite::Db,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

/// One directory's entry in the process-wide map.
enum Slot {
    Open(Arc<Store>),
    Failed { error: StoreError, at: Instant },
}

/// Every store this process opened (or failed to open), by directory.
static STORES: LazyLock<Mutex<HashMap<CacheDir, Slot>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The directories whose failure has been logged (one warning per directory).
static WARNED: LazyLock<Mutex<HashSet<PathBuf>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

/// Logs `error` unless its directory has already had a warning.
fn warn_once(error: &StoreError) {
    let first = WARNED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(error.dir.clone());
    if first {
        tracing::warn!(
            target: "xcs",
            cache_dir = %error.dir.display(),
            "{error}; calls use the memory cache instead"
        );
    }
}

impl Store {
    /// The store of `dir`, opened on first use and shared afterwards (see the module docs).
    ///
    /// # Errors
    /// The directory cannot be created, or the database cannot be opened for writing (read-only,
    /// corrupt, not ours); the same error again, without a new attempt, until [`RETRY_AFTER`] has
    /// passed.
    pub(crate) fn open(dir: CacheDir) -> Result<Arc<Store>, StoreError> {
        let mut stores = STORES.lock().unwrap_or_else(PoisonError::into_inner);
        match stores.get(&dir) {
            Some(Slot::Open(store)) => return Ok(Arc::clone(store)),
            Some(Slot::Failed { error, at }) if at.elapsed() < RETRY_AFTER => {
                return Err(error.clone());
            }
            _ => {}
        }
        // Opened under the map's lock: opening is rare (once per directory and process), and
        // this way two threads never race to create one directory's files.
        match Store::open_uncached(dir) {
            Ok(store) => {
                let store = Arc::new(store);
                stores.insert(dir, Slot::Open(Arc::clone(&store)));
                Ok(store)
            }
            Err(error) => {
                warn_once(&error);
                stores.insert(
                    dir,
                    Slot::Failed {
                        error: error.clone(),
                        at: Instant::now(),
                    },
                );
                Err(error)
            }
        }
    }

    fn open_uncached(dir: CacheDir) -> Result<Store, StoreError> {
        Ok(Store {
            dir,
            db: sqlite::Db::open(dir.as_path())?,
        })
    }

    /// The directory of this store.
    pub(crate) fn dir(&self) -> CacheDir {
        self.dir
    }

    /// The value stored under `key`, if any.
    ///
    /// # Errors
    /// The database cannot be read (corrupt, busy past [`BUSY_TIMEOUT`], I/O error).
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get(key).inspect_err(warn_once)
    }

    /// Stores `value` under `key`, replacing any value there (committed when this returns).
    ///
    /// # Errors
    /// The database cannot be written (read-only, disk full, corrupt, busy past
    /// [`BUSY_TIMEOUT`]).
    pub(crate) fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.db.put(key, value).inspect_err(warn_once)
    }

    /// Removes the value under `key`, if any (for a caller that found it undecodable).
    ///
    /// # Errors
    /// As [`Store::put`].
    pub(crate) fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.db.remove(key).inspect_err(warn_once)
    }
}

/// Empties the persistent cache in `path` (the directory given as `cache_dir`), for this process
/// and every other process that uses it. A directory without a cache, or no directory at all, is
/// already empty.
///
/// The entries are deleted through the database, so processes that have the store open keep
/// using it. A database file that is corrupt (or not a database) is deleted with its side files
/// instead, and the next call that uses the directory creates a fresh one. Files in the directory
/// that are not the cache's are left alone.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("xcs-doc-clear-{}", std::process::id()));
/// xcs::clear_cache_dir(&dir)?; // nothing there yet: fine
/// # Ok::<(), xcs::XcsError>(())
/// ```
///
/// # Errors
/// [`XcsError::CacheStore`] if the store exists but cannot be emptied (read-only, held by a
/// process past the busy timeout, or its files cannot be deleted); [`XcsError::InvalidValue`] for
/// an empty path.
pub fn clear_cache_dir(path: impl AsRef<Path>) -> Result<(), XcsError> {
    let dir = CacheDir::new(path.as_ref())?;
    // Forget this process's handle and any remembered failure, so that the next call opens the
    // store afresh (and warns again if it fails again).
    let slot = STORES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&dir);
    drop(slot);
    WARNED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(dir.as_path());
    let db_path = dir.as_path().join(DB_FILE);
    if !exists(&db_path) {
        // A stray WAL must not outlive its database: SQLite would replay it into the next one.
        return remove_db_files(dir.as_path()).map_err(XcsError::from);
    }
    match sqlite::empty(dir.as_path()) {
        Ok(()) => Ok(()),
        // Nothing in a corrupt file is worth keeping, and SQLite cannot empty it: delete it.
        Err(error) if error.kind() == StoreErrorKind::Corrupt => {
            remove_db_files(dir.as_path()).map_err(XcsError::from)
        }
        Err(error) => Err(error.into()),
    }
}

/// Whether `path` exists (a dangling symlink counts: it is still a name to remove).
fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Deletes the database file and its side files in `dir`; missing files are fine.
fn remove_db_files(dir: &Path) -> Result<(), StoreError> {
    let db = dir.join(DB_FILE);
    let mut files = vec![db.clone()];
    files.extend(SIDE_SUFFIXES.iter().map(|suffix| side_file(&db, suffix)));
    for file in files {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::new(
                    dir,
                    StoreErrorKind::Io,
                    format!("cannot delete `{}`: {e}", file.display()),
                ));
            }
        }
    }
    Ok(())
}

/// `db` with `suffix` appended to its file name (`x.sqlite3` → `x.sqlite3-wal`).
fn side_file(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The key of one call in the store: a format tag, the operator's name as a length-prefixed
/// UTF-8 string, its version (§4), and the input's serialized bytes ([`encode`]). All integers
/// are little-endian and fixed-size, so two different (name, version, input) triples never share
/// a key, and a key means the same in every process, build and platform.
pub(crate) fn key_bytes(operator: &str, version: u32, input: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + 8 + operator.len() + 4 + input.len());
    key.push(KEY_FORMAT);
    key.extend_from_slice(&(operator.len() as u64).to_le_bytes());
    key.extend_from_slice(operator.as_bytes());
    key.extend_from_slice(&version.to_le_bytes());
    key.extend_from_slice(input);
    key
}

/// `value` in the store's serialized form, or `None` if it cannot be serialized (or its
/// `Serialize` impl panics).
pub(crate) fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Option<Vec<u8>> {
    catch_unwind(AssertUnwindSafe(|| postcard::to_stdvec(value)))
        .ok()?
        .ok()
}

/// The value whose serialized form is `bytes`, or `None` if they are not exactly one value of
/// type `T` (wrong type, truncated, trailing bytes, hostile input, or a panicking `Deserialize`
/// impl). Allocation is bounded by the input: sequence lengths read from `bytes` are not trusted
/// for pre-allocation (serde caps its size hints).
pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(|| postcard::take_from_bytes::<T>(bytes))) {
        Ok(Ok((value, []))) => Some(value),
        _ => None,
    }
}

/// The SQLite database behind a [`Store`].
#[cfg(feature = "persist")]
mod sqlite {
    use std::fs::{DirBuilder, OpenOptions};
    use std::path::{Path, PathBuf};
    use std::sync::{Mutex, PoisonError};

    use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};

    use super::{BUSY_TIMEOUT, DB_FILE, SIDE_SUFFIXES, StoreError, StoreErrorKind, side_file};

    /// Idle read connections kept for reuse (more are opened while more threads read at once).
    const IDLE_READERS: usize = 8;

    const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS entries (
        key BLOB PRIMARY KEY NOT NULL,
        value BLOB NOT NULL
    ) WITHOUT ROWID";

    /// One writer connection (writes are serialized by SQLite anyway; a mutex queues this
    /// process's writers without the busy handler's sleeps) and a pool of readers (WAL readers
    /// run in parallel with each other and with the writer).
    pub(super) struct Db {
        dir: PathBuf,
        path: PathBuf,
        writer: Mutex<Connection>,
        readers: Mutex<Vec<Connection>>,
    }

    impl Db {
        pub(super) fn open(dir: &Path) -> Result<Db, StoreError> {
            create_dir(dir)?;
            let path = dir.join(DB_FILE);
            create_file(dir, &path)?;
            let writer = connect(&path).map_err(|e| store_error(dir, &e))?;
            configure(&writer).map_err(|e| store_error(dir, &e))?;
            if writer
                .is_readonly(rusqlite::MAIN_DB)
                .map_err(|e| store_error(dir, &e))?
            {
                return Err(StoreError::new(
                    dir,
                    StoreErrorKind::ReadOnly,
                    "the database file is read-only",
                ));
            }
            // SQLite gives its side files the database file's mode, but set it anyway: the files
            // may predate us, and privacy must not depend on that detail.
            for suffix in SIDE_SUFFIXES {
                let side = side_file(&path, suffix);
                if super::exists(&side) {
                    make_private(dir, &side)?;
                }
            }
            Ok(Db {
                dir: dir.to_path_buf(),
                path,
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
            })
        }

        pub(super) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.read(key).map_err(|e| store_error(&self.dir, &e))
        }

        fn read(&self, key: &[u8]) -> rusqlite::Result<Option<Vec<u8>>> {
            let idle = self
                .readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let reader = match idle {
                Some(reader) => reader,
                None => {
                    let reader = connect(&self.path)?;
                    reader.pragma_update(None, "query_only", true)?;
                    reader
                }
            };
            // On an error the reader is dropped rather than pooled: it may be the problem.
            let value = reader
                .prepare_cached("SELECT value FROM entries WHERE key = ?1")?
                .query_row([key], |row| row.get(0))
                .optional()?;
            let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
            if readers.len() < IDLE_READERS {
                readers.push(reader);
            }
            Ok(value)
        }

        pub(super) fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
            self.write(
                "INSERT OR REPLACE INTO entries (key, value) VALUES (?1, ?2)",
                (key, value),
            )
        }

        pub(super) fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
            self.write("DELETE FROM entries WHERE key = ?1", [key])
        }

        /// The writer connection, for tests that need to set it up oddly.
        #[cfg(test)]
        pub(super) fn writer(&self) -> std::sync::MutexGuard<'_, Connection> {
            self.writer.lock().unwrap_or_else(PoisonError::into_inner)
        }

        /// Runs one statement as its own transaction (committed when this returns).
        fn write(&self, sql: &str, params: impl rusqlite::Params) -> Result<(), StoreError> {
            let writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
            writer
                .prepare_cached(sql)
                .and_then(|mut statement| statement.execute(params))
                .map(drop)
                .map_err(|e| store_error(&self.dir, &e))
        }
    }

    /// Deletes every entry of the store in `dir` (whose database file exists).
    pub(super) fn empty(dir: &Path) -> Result<(), StoreError> {
        let conn = connect(&dir.join(DB_FILE)).map_err(|e| store_error(dir, &e))?;
        configure(&conn).map_err(|e| store_error(dir, &e))?;
        conn.execute("DELETE FROM entries", [])
            .map_err(|e| store_error(dir, &e))?;
        // Give the space back where nobody is in the way; a store in use shrinks later.
        let _ = conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);");
        Ok(())
    }

    fn connect(path: &Path) -> rusqlite::Result<Connection> {
        // No SQLITE_OPEN_CREATE: `create_file` made the file with the right mode. NO_MUTEX: a
        // connection is only ever used under one of our mutexes.
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(conn)
    }

    /// WAL mode (persistent in the file), commits without fsync, and the table.
    fn configure(conn: &Connection) -> rusqlite::Result<()> {
        // The first statement that reads the file: a file that is not a database fails here.
        let _mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)
    }

    fn create_dir(dir: &Path) -> Result<(), StoreError> {
        let mut builder = DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(|e| io_error(dir, "cannot create the directory", &e))
    }

    /// Creates the database file with mode 0600 (if it is missing) and makes it 0600 (if it is
    /// not), before SQLite opens it: SQLite would create it with the umask's mode.
    fn create_file(dir: &Path, path: &Path) -> Result<(), StoreError> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(path)
            .map_err(|e| io_error(dir, "cannot open the database file for writing", &e))?;
        make_private(dir, path)
    }

    #[cfg(unix)]
    fn make_private(dir: &Path, path: &Path) -> Result<(), StoreError> {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| io_error(dir, "cannot read the mode of a database file", &e))?
            .permissions()
            .mode();
        if mode & 0o777 == 0o600 {
            return Ok(());
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io_error(dir, "cannot make a database file private (mode 0600)", &e))
    }

    /// Elsewhere the files inherit the directory's access control.
    #[cfg(not(unix))]
    fn make_private(_dir: &Path, _path: &Path) -> Result<(), StoreError> {
        Ok(())
    }

    fn io_error(dir: &Path, what: &str, error: &std::io::Error) -> StoreError {
        use std::io::ErrorKind;
        let kind = match error.kind() {
            ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => StoreErrorKind::ReadOnly,
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => StoreErrorKind::Full,
            _ => StoreErrorKind::Unavailable,
        };
        StoreError::new(dir, kind, format!("{what}: {error}"))
    }

    fn store_error(dir: &Path, error: &rusqlite::Error) -> StoreError {
        let (kind, what) = match error.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => (
                StoreErrorKind::Corrupt,
                "the database file is corrupt (`xcs::clear_cache_dir` deletes it)",
            ),
            Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => {
                (StoreErrorKind::ReadOnly, "the database cannot be written")
            }
            Some(ErrorCode::CannotOpen) => (
                StoreErrorKind::Unavailable,
                "the database cannot be opened (is the directory writable?)",
            ),
            Some(ErrorCode::DiskFull) => (StoreErrorKind::Full, "the disk is full"),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => (
                StoreErrorKind::Busy,
                "another connection held the database lock too long",
            ),
            _ => (StoreErrorKind::Io, "the database failed"),
        };
        StoreError::new(dir, kind, format!("{what}: {error}"))
    }
}

/// Built without the `persist` feature: no database, every open fails.
#[cfg(not(feature = "persist"))]
mod sqlite {
    use std::path::Path;

    use super::{StoreError, StoreErrorKind};

    /// No value of this type exists.
    pub(super) enum Db {}

    impl Db {
        pub(super) fn open(dir: &Path) -> Result<Db, StoreError> {
            Err(disabled(dir))
        }

        pub(super) fn get(&self, _key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            match *self {}
        }

        pub(super) fn put(&self, _key: &[u8], _value: &[u8]) -> Result<(), StoreError> {
            match *self {}
        }

        pub(super) fn remove(&self, _key: &[u8]) -> Result<(), StoreError> {
            match *self {}
        }
    }

    /// Without SQLite the files cannot be emptied in place: they are deleted.
    pub(super) fn empty(dir: &Path) -> Result<(), StoreError> {
        super::remove_db_files(dir)
    }

    fn disabled(dir: &Path) -> StoreError {
        StoreError::new(
            dir,
            StoreErrorKind::Disabled,
            "xcs was built without its `persist` feature",
        )
    }
}
