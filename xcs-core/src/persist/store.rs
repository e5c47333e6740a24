//! The storage layer of the persistent cache (`cache_dir`): an embedded database in the
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
//!   creates the directory (mode 0700) and the database file (mode 0600), and refuses a
//!   directory or file another user could have written (see Privacy). A directory that failed
//!   to open is remembered: calls within [`RETRY_AFTER`] get the same error without touching the
//!   disk, then one retry is made. Cheap enough to call on every call (a mutex and a map lookup).
//! - [`Store::get`], [`Store::put`], [`Store::remove`]: opaque bytes in, opaque bytes out. A caller
//!   whose value does not decode treats it as a miss and may `put` a fresh value over it (or
//!   `remove` it).
//! - [`key_bytes`]`(operator, version, fingerprint, input)`: the key of one call: a format tag,
//!   the operator's name (length-prefixed), its version, the fingerprint of its code (generated
//!   operators; 0 otherwise) and the input's serialized bytes. Unambiguous, and stable across
//!   processes, builds and platforms.
//! - Values are stored in the serialized form of [`codec`](crate::codec)
//!   ([`codec::encode`](crate::codec::encode) /
//!   [`codec::decode_owned`](crate::codec::decode_owned): `postcard`, whose wire format is
//!   stable across its 1.x releases and platform-independent: integers are varints, so a `usize`
//!   reads the same on 32- and 64-bit hosts). Both return `None` instead of failing or panicking,
//!   including when a user's `Serialize`/`Deserialize` impl panics or the bytes nest deeper than
//!   [`codec::MAX_DEPTH`](crate::codec::MAX_DEPTH) levels.
//! - [`clear_cache_dir`]`(path)` (public, re-exported at the crate root): empties the store of a
//!   directory.
//!
//! # Faults
//!
//! Nothing here panics on a bad disk. An unopenable, read-only, full or corrupt store is a
//! [`StoreError`] for the caller, who answers from the memory cache instead; each directory's
//! first failure is also warned about once (through `tracing`, target `xcs`, or on standard error
//! without a subscriber). A corrupt database
//! file stays unusable until [`clear_cache_dir`] deletes it and the next open starts afresh.
//!
//! # Privacy
//!
//! A directory the store creates gets mode 0700 (parents it creates too); the database file gets
//! 0600 whatever the umask, and SQLite gives its side files (`-wal`, `-shm`) the same mode.
//!
//! Threat model: whoever can write the directory or one of the store's files can make calls
//! answer whatever they like (a planted `-wal` file is replayed into the database when SQLite
//! opens it), and a symbolic link at a file's name would make the store create, write or change
//! the mode of a file elsewhere. So, on Unix, the store opens a directory only if it belongs to
//! the process's effective user and neither its group nor others may write it (an existing
//! `0755` directory of the user's, think `cache_dir = "."`, is fine; a `0777` or `0775` one, or
//! one of another user, is refused), and the database file and its `-wal`, `-shm` and
//! `-journal` files only if each (when it exists) is a regular file, not a symbolic link, of the
//! same user, that others may not write. A file of ours that others may read loses those bits
//! (0644 becomes 0600). All of it is checked with `lstat` before SQLite opens anything. Our own
//! code never opens an existing file: a missing database file is created with `O_CREAT |
//! O_EXCL` (which fails on a symbolic link, even a dangling one), SQLite opens the database
//! with `SQLITE_OPEN_NOFOLLOW` and its side files with `O_NOFOLLOW`. Once the directory is known
//! to be writable by its owner alone, nobody else (but root) can swap a checked name before it is
//! opened. A refused store is a [`StoreError`] ([`StoreErrorKind::UntrustedDir`] or
//! [`StoreErrorKind::UntrustedFile`]), so calls degrade to the memory cache with one warning,
//! as for any store that does not open; [`clear_cache_dir`] deletes refused files (by name) in a
//! directory of ours and touches nothing in a refused directory.
//!
//! Not covered: the directories above the cache directory are trusted as they are (as for any
//! path a program is given), and so is root. Elsewhere than Unix, ownership and modes are not
//! checked (the directory's access control lists apply as they are); symbolic links are still
//! refused.
//!
//! Bytes read back from a store are decoded with bounds
//! ([`codec::decode`](crate::codec::decode): depth, size, elements): a value that breaks them is
//! a miss, never a crashed process.
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

// Without `persist` the database half is compiled out and only the error paths remain.
#![cfg_attr(not(feature = "persist"), allow(dead_code))]

use std::collections::{HashMap, HashSet};
use std::fmt;
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
const KEY_FORMAT: u8 = 2;

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
    /// The directory belongs to another user or other users may write it (see the module
    /// docs): nothing in it is trusted or touched.
    UntrustedDir,
    /// A database file (or a side file) is a symbolic link, not a regular file, belongs to
    /// another user or other users may write it.
    UntrustedFile,
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
        // To the `tracing` subscriber, or on standard error without one: a store refused as
        // untrusted must not go unnoticed.
        crate::warn::warn(
            &error.dir.display().to_string(),
            &format!("{error}; calls use the memory cache instead"),
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
    #[cfg(test)]
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
/// using it. A database file that is corrupt (or not a database), or that the store refuses to
/// open (a symbolic link, or a file another user could have written), is deleted with its side
/// files instead — by name: a symbolic link is removed, never followed — and the next call that
/// uses the directory creates a fresh one. Files in the directory that are not the cache's are
/// left alone, and nothing at all is touched in a directory that belongs to another user or that
/// others may write.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("xcs-doc-clear-{}", std::process::id()));
/// xcs::clear_cache_dir(&dir)?; // nothing there yet: fine
/// # Ok::<(), xcs::XcsError>(())
/// ```
///
/// # Errors
/// [`XcsError::CacheStore`] if the directory belongs to another user or others may write it
/// (Unix), or if the store exists but cannot be emptied (read-only, held by a
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
    // Nothing is touched in a directory that another user could have written: its files may
    // not be ours to delete.
    #[cfg(feature = "persist")]
    if exists(dir.as_path()) {
        trust::check_dir(dir.as_path())?;
    }
    let db_path = dir.as_path().join(DB_FILE);
    if !exists(&db_path) {
        // A stray WAL must not outlive its database: SQLite would replay it into the next one.
        return remove_db_files(dir.as_path()).map_err(XcsError::from);
    }
    match sqlite::empty(dir.as_path()) {
        Ok(()) => Ok(()),
        // Nothing in a corrupt file, or in a file another user may have written, is worth
        // keeping, and SQLite must not (or cannot) open it: delete it. Deleting a name never
        // follows a symbolic link, and the directory is ours (else the error is `UntrustedDir`).
        Err(error)
            if matches!(
                error.kind(),
                StoreErrorKind::Corrupt | StoreErrorKind::UntrustedFile
            ) =>
        {
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
/// UTF-8 string, its version, the fingerprint of its code (see
/// [`PersistSupport`](crate::PersistSupport)) and the input's serialized bytes
/// ([`codec::encode`](crate::codec::encode)). All integers are little-endian and fixed-size, so
/// two different (name, version, fingerprint, input) tuples never share a key, and a key means
/// the same in every process, build and platform.
pub(crate) fn key_bytes(operator: &str, version: u32, fingerprint: u64, input: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + 8 + operator.len() + 4 + 8 + input.len());
    key.push(KEY_FORMAT);
    key.extend_from_slice(&(operator.len() as u64).to_le_bytes());
    key.extend_from_slice(operator.as_bytes());
    key.extend_from_slice(&version.to_le_bytes());
    key.extend_from_slice(&fingerprint.to_le_bytes());
    key.extend_from_slice(input);
    key
}

/// Which directories and files the store trusts: those only the current user can have written
/// (see the module docs, Privacy). Every check reads metadata without following a symbolic link
/// at the checked name, and none opens a file: closing a descriptor of a database file would drop
/// the locks this process's SQLite connections hold on it.
#[cfg(feature = "persist")]
mod trust {
    use std::fs::Metadata;
    use std::io::ErrorKind;
    use std::path::Path;

    use super::{StoreError, StoreErrorKind, sqlite::io_error};

    /// Refuses a cache directory that another user owns or may write. The directory's own name
    /// may be a symbolic link (to a directory that passes).
    pub(super) fn check_dir(dir: &Path) -> Result<(), StoreError> {
        let meta = std::fs::metadata(dir)
            .map_err(|e| io_error(dir, "cannot read the directory's metadata", &e))?;
        if !meta.is_dir() {
            return Err(StoreError::new(
                dir,
                StoreErrorKind::Unavailable,
                "it is not a directory",
            ));
        }
        match foreign(&meta) {
            None => Ok(()),
            Some(why) => Err(StoreError::new(
                dir,
                StoreErrorKind::UntrustedDir,
                format!(
                    "the directory {why}, so its files could be planted or replaced; use a \
                     directory that only you can write (xcs creates a missing one with mode 0700)"
                ),
            )),
        }
    }

    /// Refuses a database file (or side file) at `path` that is a symbolic link or not a regular
    /// file, or that another user owns or may write; makes one that others may read private
    /// (mode 0600). A missing file is fine.
    pub(super) fn check_file(dir: &Path, path: &Path) -> Result<(), StoreError> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(dir, "cannot read a database file's metadata", &e)),
        };
        let why = if meta.file_type().is_symlink() {
            Some("is a symbolic link".to_owned())
        } else if !meta.is_file() {
            Some("is not a regular file".to_owned())
        } else {
            foreign(&meta)
        };
        if let Some(why) = why {
            return Err(StoreError::new(
                dir,
                StoreErrorKind::UntrustedFile,
                format!(
                    "`{}` {why}, so it is not opened (`xcs::clear_cache_dir` deletes it)",
                    path.display()
                ),
            ));
        }
        make_private(dir, path, &meta)
    }

    /// Why another user could have written what `meta` describes, if they could.
    #[cfg(unix)]
    fn foreign(meta: &Metadata) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            Some(format!(
                "belongs to another user (uid {}; this process runs as uid {me})",
                meta.uid()
            ))
        } else if meta.mode() & 0o022 != 0 {
            Some(format!(
                "is writable by other users (mode {:o})",
                meta.mode() & 0o7777
            ))
        } else {
            None
        }
    }

    /// Elsewhere the directory's access control is trusted as it is.
    #[cfg(not(unix))]
    fn foreign(_meta: &Metadata) -> Option<String> {
        None
    }

    /// Takes the group's and others' permissions off a file of ours (a 0644 file becomes 0600).
    /// The path is not a symbolic link and sits in a directory only we may write, so nobody else
    /// can swap it before the change.
    #[cfg(unix)]
    fn make_private(dir: &Path, path: &Path, meta: &Metadata) -> Result<(), StoreError> {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            return Ok(());
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))
            .map_err(|e| io_error(dir, "cannot make a database file private (mode 0600)", &e))
    }

    /// Elsewhere the files inherit the directory's access control.
    #[cfg(not(unix))]
    fn make_private(_dir: &Path, _path: &Path, _meta: &Metadata) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The SQLite database behind a [`Store`].
#[cfg(feature = "persist")]
mod sqlite {
    use std::fs::{DirBuilder, OpenOptions};
    use std::path::{Path, PathBuf};
    use std::sync::{Mutex, PoisonError};
    use std::time::{Duration, Instant};

    use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};

    use super::{
        BUSY_TIMEOUT, DB_FILE, SIDE_SUFFIXES, StoreError, StoreErrorKind, side_file, trust,
    };

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
            let path = trusted_files(dir)?;
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
            // SQLite gives the side files it creates the database file's mode, but check them
            // anyway: privacy must not depend on that detail.
            for suffix in SIDE_SUFFIXES {
                trust::check_file(dir, &side_file(&path, suffix))?;
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

    /// Checks the directory `dir` and the database's files in it (those that exist) before
    /// SQLite opens any of them: SQLite replays a WAL file it finds into the database. The path
    /// of the database file.
    fn trusted_files(dir: &Path) -> Result<PathBuf, StoreError> {
        trust::check_dir(dir)?;
        let path = dir.join(DB_FILE);
        trust::check_file(dir, &path)?;
        for suffix in SIDE_SUFFIXES {
            trust::check_file(dir, &side_file(&path, suffix))?;
        }
        Ok(path)
    }

    /// Deletes every entry of the store in `dir` (whose database file exists).
    pub(super) fn empty(dir: &Path) -> Result<(), StoreError> {
        let path = trusted_files(dir)?;
        let conn = connect(&path).map_err(|e| store_error(dir, &e))?;
        configure(&conn).map_err(|e| store_error(dir, &e))?;
        conn.execute("DELETE FROM entries", [])
            .map_err(|e| store_error(dir, &e))?;
        // Give the space back where nobody is in the way; a store in use shrinks later.
        let _ = conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);");
        Ok(())
    }

    fn connect(path: &Path) -> rusqlite::Result<Connection> {
        // No SQLITE_OPEN_CREATE: `create_file` made the file with the right mode. NO_MUTEX: a
        // connection is only ever used under one of our mutexes. NOFOLLOW: a database path that
        // is a symbolic link is refused (SQLite opens its side files with O_NOFOLLOW anyway).
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(conn)
    }

    /// WAL mode (persistent in the file), commits without fsync, and the table.
    ///
    /// Retried on `SQLITE_BUSY` until [`BUSY_TIMEOUT`]: while a new file is switched to WAL, the
    /// processes opening it at once are still in rollback-journal mode, where SQLite returns
    /// `SQLITE_BUSY` without calling the busy handler when waiting could deadlock (one process
    /// holds a shared lock and asks for more while the other waits for it to go).
    fn configure(conn: &Connection) -> rusqlite::Result<()> {
        let deadline = Instant::now() + BUSY_TIMEOUT;
        loop {
            match try_configure(conn) {
                Err(e)
                    if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                result => return result,
            }
        }
    }

    fn try_configure(conn: &Connection) -> rusqlite::Result<()> {
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

    /// Creates the database file with mode 0600 if it is missing, before SQLite opens it: SQLite
    /// would create it with the umask's mode. (An existing one was checked by `trusted_files`.)
    /// `create_new` (`O_CREAT | O_EXCL`) never follows a symbolic link: a link planted at the
    /// path, even a dangling one, fails the creation instead of creating its target.
    fn create_file(dir: &Path, path: &Path) -> Result<(), StoreError> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(_) => Ok(()),
            // There already (checked by `trusted_files`), or created by another process since:
            // check it again.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => trust::check_file(dir, path),
            Err(e) => Err(io_error(dir, "cannot create the database file", &e)),
        }
    }

    pub(super) fn io_error(dir: &Path, what: &str, error: &std::io::Error) -> StoreError {
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

#[cfg(all(test, feature = "persist"))]
mod tests {
    //! Several tests need a second process: they re-run this test binary with
    //! `XCS_STORE_TEST_ROLE` set, which makes [`store_child`] play the child's part (the test is
    //! a no-op otherwise).

    use super::*;
    use std::io::{BufRead, BufReader, Write as _};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system's temp directory, deleted on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "xcs-store-{}-{}-{name}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        fn cache(&self, name: &str) -> CacheDir {
            CacheDir::new(self.0.join(name)).unwrap()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Drops this process's handle on `dir`, so the next open really opens the files again.
    fn forget(dir: CacheDir) {
        let slot = STORES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&dir);
        drop(slot);
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn db_file(dir: CacheDir) -> PathBuf {
        dir.as_path().join(DB_FILE)
    }

    /// This test binary, running only [`store_child`] in the role `role`.
    fn child(role: &str, dir: &Path) -> Command {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--exact",
                "persist::store::tests::store_child",
                "--nocapture",
            ])
            .env("XCS_STORE_TEST_ROLE", role)
            .env("XCS_STORE_TEST_DIR", dir)
            .stdin(Stdio::null());
        command
    }

    fn wait_for(path: &Path) {
        let start = Instant::now();
        while !path.exists() {
            assert!(start.elapsed() < Duration::from_secs(30), "no {path:?}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn big_value(i: u64) -> Vec<u8> {
        (0..4096u64).map(|j| (i * 31 + j) as u8).collect()
    }

    /// The child's part of the multi-process tests.
    #[test]
    fn store_child() {
        let Ok(role) = std::env::var("XCS_STORE_TEST_ROLE") else {
            return;
        };
        let dir = PathBuf::from(std::env::var_os("XCS_STORE_TEST_DIR").unwrap());
        let cache = CacheDir::new(&dir).unwrap();
        match role.as_str() {
            // Announce readiness, wait for the parent's go, then open (both children at once:
            // this races the creation of the store too) and write 200 keys.
            "writer" => {
                let prefix = std::env::var("XCS_STORE_TEST_PREFIX").unwrap();
                let barrier = dir.with_extension("barrier");
                std::fs::write(barrier.join(format!("ready-{prefix}")), b"").unwrap();
                wait_for(&barrier.join("go"));
                let store = Store::open(cache).unwrap();
                for i in 0..200 {
                    let key = format!("{prefix}-{i}");
                    store.put(key.as_bytes(), key.repeat(3).as_bytes()).unwrap();
                }
                println!("xcs-child-done");
            }
            // Write until killed, reporting every committed key.
            "killed" => {
                let round: u64 = std::env::var("XCS_STORE_TEST_ROUND")
                    .unwrap()
                    .parse()
                    .unwrap();
                let store = Store::open(cache).unwrap();
                let mut out = std::io::stdout().lock();
                let start = Instant::now();
                for i in 0.. {
                    let key = format!("round{round}-{i}");
                    store.put(key.as_bytes(), &big_value(round + i)).unwrap();
                    writeln!(out, "xcs-wrote {i}").unwrap();
                    out.flush().unwrap();
                    // Never outlive a parent that died before killing us.
                    if start.elapsed() > Duration::from_secs(60) {
                        break;
                    }
                }
            }
            // Run as a user who may not write `dir`: every attempt fails cleanly.
            "read-only" => {
                check_read_only(cache);
                println!("xcs-child-done");
            }
            other => panic!("unknown role {other}"),
        }
    }

    #[test]
    fn put_get_remove_and_reopen() {
        let tmp = TempDir::new("reopen");
        let dir = tmp.cache("cache");
        let store = Store::open(dir).unwrap();
        assert!(
            Arc::ptr_eq(&store, &Store::open(dir).unwrap()),
            "one store per directory"
        );
        assert_eq!(store.get(b"k").unwrap(), None);
        store.put(b"k", b"one").unwrap();
        store.put(b"k", b"two").unwrap();
        store.put(b"gone", b"x").unwrap();
        store.remove(b"gone").unwrap();
        store.remove(b"never there").unwrap();
        assert_eq!(store.get(b"k").unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(store.get(b"gone").unwrap(), None);
        // Empty keys and values, and large ones, are just bytes.
        store.put(b"", b"").unwrap();
        assert_eq!(store.get(b"").unwrap(), Some(Vec::new()));
        let big = vec![7u8; 1 << 20];
        store.put(&big, &big).unwrap();
        assert_eq!(store.get(&big).unwrap().as_deref(), Some(&big[..]));
        drop(store);

        forget(dir);
        let again = Store::open(dir).unwrap();
        assert_eq!(again.dir(), dir);
        assert_eq!(again.get(b"k").unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(again.get(&big).unwrap().as_deref(), Some(&big[..]));
    }

    #[test]
    fn threads_share_one_store() {
        let tmp = TempDir::new("threads");
        let dir = tmp.cache("cache");
        std::thread::scope(|s| {
            for t in 0..8u32 {
                s.spawn(move || {
                    let store = Store::open(dir).unwrap();
                    for i in 0..100u32 {
                        let key = key_bytes("op", t, 0, &i.to_le_bytes());
                        store.put(&key, &i.to_be_bytes()).unwrap();
                        assert_eq!(store.get(&key).unwrap().unwrap(), i.to_be_bytes());
                    }
                });
            }
        });
        let store = Store::open(dir).unwrap();
        for t in 0..8u32 {
            for i in 0..100u32 {
                let key = key_bytes("op", t, 0, &i.to_le_bytes());
                assert_eq!(store.get(&key).unwrap().unwrap(), i.to_be_bytes());
            }
        }
    }

    #[test]
    fn two_processes_write_at_once() {
        let tmp = TempDir::new("two-processes");
        let dir = tmp.0.join("cache");
        let barrier = dir.with_extension("barrier");
        std::fs::create_dir(&barrier).unwrap();
        let children: Vec<Child> = ["a", "b"]
            .iter()
            .map(|prefix| {
                child("writer", &dir)
                    .env("XCS_STORE_TEST_PREFIX", prefix)
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        wait_for(&barrier.join("ready-a"));
        wait_for(&barrier.join("ready-b"));
        std::fs::write(barrier.join("go"), b"").unwrap();
        for child in children {
            let output = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success(), "child failed: {stdout}");
            assert!(
                stdout.contains("xcs-child-done"),
                "child did not run: {stdout}"
            );
        }
        let store = Store::open(CacheDir::new(&dir).unwrap()).unwrap();
        for prefix in ["a", "b"] {
            for i in 0..200 {
                let key = format!("{prefix}-{i}");
                let value = store.get(key.as_bytes()).unwrap();
                assert_eq!(value.as_deref(), Some(key.repeat(3).as_bytes()), "{key}");
            }
        }
    }

    #[test]
    fn a_process_killed_mid_write_leaves_a_store_that_opens() {
        let tmp = TempDir::new("killed");
        let dir = tmp.cache("cache");
        let mut committed = Vec::new();
        for round in 0..3u64 {
            let mut child = child("killed", dir.as_path())
                .env("XCS_STORE_TEST_ROUND", round.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut last = None;
            let mut killed = false;
            // Read to the end: lines the child wrote before it died are commits too.
            let lines = BufReader::new(child.stdout.take().unwrap()).lines();
            for line in lines {
                let line = line.unwrap();
                if let Some(i) = line.strip_prefix("xcs-wrote ") {
                    let i: u64 = i.parse().unwrap();
                    last = Some(i);
                    // Kill at a point that varies with the round, while it keeps writing.
                    if !killed && i >= 150 + 37 * round {
                        child.kill().unwrap(); // SIGKILL
                        killed = true;
                    }
                }
            }
            let status = child.wait().unwrap();
            assert_eq!(
                status.signal(),
                Some(9),
                "the child was not killed: {status}"
            );
            committed.push(last.expect("the child wrote nothing"));
        }
        // A new process (here: a new connection) opens the store and finds every committed key.
        forget(dir);
        let store = Store::open(dir).unwrap();
        for (round, &last) in committed.iter().enumerate() {
            let round = round as u64;
            for i in 0..=last {
                let key = format!("round{round}-{i}");
                assert_eq!(
                    store.get(key.as_bytes()).unwrap(),
                    Some(big_value(round + i))
                );
            }
            // The write in flight at the kill is either whole or absent.
            let next = format!("round{round}-{}", last + 1);
            if let Some(value) = store.get(next.as_bytes()).unwrap() {
                assert_eq!(value, big_value(round + last + 1));
            }
        }
        let conn = rusqlite::Connection::open(db_file(dir)).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    #[test]
    fn files_are_private() {
        let tmp = TempDir::new("modes");
        let dir = tmp.cache("a/b");
        let store = Store::open(dir).unwrap();
        store.put(b"k", b"v").unwrap();
        assert_eq!(store.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(mode(&tmp.0.join("a")), 0o700);
        assert_eq!(mode(dir.as_path()), 0o700);
        let db = db_file(dir);
        assert_eq!(mode(&db), 0o600);
        for suffix in ["-wal", "-shm"] {
            let side = side_file(&db, suffix);
            assert!(side.exists(), "{side:?} missing while the store is open");
            assert_eq!(mode(&side), 0o600, "{side:?}");
        }

        // A database file made by someone else, readable by all, is made private on open; an
        // existing directory keeps its mode.
        let shared = tmp.cache("shared");
        std::fs::create_dir(shared.as_path()).unwrap();
        std::fs::set_permissions(shared.as_path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(db_file(shared), b"").unwrap();
        std::fs::set_permissions(db_file(shared), std::fs::Permissions::from_mode(0o644)).unwrap();
        Store::open(shared).unwrap().put(b"k", b"v").unwrap();
        assert_eq!(mode(&db_file(shared)), 0o600);
        assert_eq!(mode(shared.as_path()), 0o755);
    }

    #[test]
    fn untrusted_directories_and_files_are_errors() {
        let tmp = TempDir::new("untrusted");
        let dir = tmp.cache("open");
        std::fs::create_dir(dir.as_path()).unwrap();
        std::fs::set_permissions(dir.as_path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = Store::open(dir).unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::UntrustedDir, "{error}");
        assert!(
            error
                .to_string()
                .contains("writable by other users (mode 777)"),
            "{error}"
        );
        assert!(matches!(
            clear_cache_dir(dir.as_path()),
            Err(XcsError::CacheStore { .. })
        ));

        let dir = tmp.cache("linked");
        std::fs::create_dir(dir.as_path()).unwrap();
        std::os::unix::fs::symlink(
            tmp.0.join("elsewhere"),
            db_file(dir).with_extension("sqlite3-wal"),
        )
        .unwrap();
        let error = Store::open(dir).unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::UntrustedFile, "{error}");
        assert!(error.to_string().contains("is a symbolic link"), "{error}");
        // Cleared by deleting the link; then the store opens.
        clear_cache_dir(dir.as_path()).unwrap();
        Store::open(dir).unwrap().put(b"k", b"v").unwrap();
        assert!(!tmp.0.join("elsewhere").exists());
    }

    #[test]
    fn a_corrupt_file_fails_to_open_until_cleared() {
        let tmp = TempDir::new("corrupt");
        let dir = tmp.cache("cache");
        let store = Store::open(dir).unwrap();
        store.put(b"k", b"v").unwrap();
        drop(store);
        forget(dir);
        std::fs::write(db_file(dir), b"this is not a database, ".repeat(400)).unwrap();

        let error = Store::open(dir).unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::Corrupt, "{error}");
        let message = error.to_string();
        assert!(
            message.starts_with("cannot use the persistent cache in `"),
            "{message}"
        );
        assert!(message.contains("clear_cache_dir"), "{message}");
        // Remembered: the second attempt gives the same answer without opening anything.
        assert_eq!(Store::open(dir).unwrap_err().to_string(), message);

        clear_cache_dir(dir.as_path()).unwrap();
        assert!(!db_file(dir).exists());
        let store = Store::open(dir).unwrap();
        assert_eq!(store.get(b"k").unwrap(), None);
        store.put(b"k", b"again").unwrap();
        assert_eq!(store.get(b"k").unwrap().as_deref(), Some(&b"again"[..]));
    }

    #[test]
    fn clear_cache_dir_empties_a_store_in_use() {
        let tmp = TempDir::new("clear");
        let dir = tmp.cache("cache");
        // Missing directory, or directory without a store: nothing to do.
        clear_cache_dir(dir.as_path()).unwrap();
        clear_cache_dir(&tmp.0).unwrap();
        let other = tmp.0.join("not-ours.txt");
        std::fs::write(&other, b"keep me").unwrap();

        let store = Store::open(dir).unwrap();
        store.put(b"k", b"v").unwrap();
        clear_cache_dir(dir.as_path()).unwrap();
        // A handle taken before the clear still works, on the emptied store.
        assert_eq!(store.get(b"k").unwrap(), None);
        store.put(b"k2", b"v2").unwrap();
        assert_eq!(
            Store::open(dir).unwrap().get(b"k2").unwrap().as_deref(),
            Some(&b"v2"[..])
        );
        assert_eq!(std::fs::read(&other).unwrap(), b"keep me");

        assert!(matches!(
            clear_cache_dir(""),
            Err(XcsError::InvalidValue { .. })
        ));
    }

    #[test]
    fn an_uncreatable_directory_is_an_error_warned_once() {
        use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

        #[derive(Clone, Default)]
        struct Warnings(Arc<Mutex<Vec<String>>>);
        impl<S: tracing::Subscriber> Layer<S> for Warnings {
            fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
                let meta = event.metadata();
                if *meta.level() == tracing::Level::WARN {
                    self.0.lock().unwrap().push(meta.target().to_owned());
                }
            }
        }

        let tmp = TempDir::new("uncreatable");
        let file = tmp.0.join("file");
        std::fs::write(&file, b"").unwrap();
        let dir = CacheDir::new(file.join("cache")).unwrap();
        let warnings = Warnings::default();
        let subscriber = tracing_subscriber::registry().with(warnings.clone());
        tracing::subscriber::with_default(subscriber, || {
            let error = Store::open(dir).unwrap_err();
            assert_eq!(error.kind(), StoreErrorKind::Unavailable, "{error}");
            assert!(
                error.to_string().contains("cannot create the directory"),
                "{error}"
            );
            Store::open(dir).unwrap_err();
            forget(dir); // a retry after RETRY_AFTER: fails again, says nothing new
            Store::open(dir).unwrap_err();
        });
        assert_eq!(*warnings.0.lock().unwrap(), ["xcs"]);
        let error = XcsError::from(Store::open(dir).unwrap_err());
        assert!(matches!(&error, XcsError::CacheStore { dir: d, .. } if d == dir.as_path()));
    }

    #[test]
    fn a_full_store_is_an_error_and_still_answers() {
        let tmp = TempDir::new("full");
        let dir = tmp.cache("cache");
        let store = Store::open(dir).unwrap();
        store.put(b"k", b"v").unwrap();
        // SQLite's page limit fails writes exactly as a full disk does (SQLITE_FULL).
        let pages: i64 = store
            .db
            .writer()
            .query_row("PRAGMA page_count", [], |row| row.get(0))
            .unwrap();
        store
            .db
            .writer()
            .pragma_update(None, "max_page_count", pages)
            .unwrap();
        let error = (0..1000u32)
            .find_map(|i| store.put(&i.to_le_bytes(), &[0; 4096]).err())
            .expect("the page limit was never reached");
        assert_eq!(error.kind(), StoreErrorKind::Full, "{error}");
        assert!(error.to_string().contains("the disk is full"), "{error}");
        assert_eq!(store.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        store.remove(b"k").unwrap();
        store.put(b"k", b"w").unwrap();
    }

    /// Every way to open the store in `dir` (a read-only directory holding a read-only store)
    /// fails with an error, none panics.
    fn check_read_only(dir: CacheDir) {
        let error = Store::open(dir).unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::ReadOnly, "{error}");
        let sub = CacheDir::new(dir.as_path().join("sub")).unwrap();
        let error = Store::open(sub).unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::ReadOnly, "{error}");
        let error = clear_cache_dir(dir.as_path()).unwrap_err();
        assert!(matches!(error, XcsError::CacheStore { .. }), "{error}");
    }

    #[test]
    fn a_read_only_store_is_an_error() {
        let tmp = TempDir::new("read-only");
        let dir = tmp.cache("cache");
        let store = Store::open(dir).unwrap();
        store.put(b"k", b"v").unwrap();
        drop(store);
        forget(dir);
        let root = std::fs::metadata(&tmp.0).unwrap().uid() == 0;
        let nobody = 65534;
        for entry in std::fs::read_dir(dir.as_path()).unwrap() {
            let path = entry.unwrap().path();
            if root {
                std::os::unix::fs::chown(&path, Some(nobody), Some(nobody)).unwrap();
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        }
        if root {
            std::os::unix::fs::chown(dir.as_path(), Some(nobody), Some(nobody)).unwrap();
        }
        std::fs::set_permissions(dir.as_path(), std::fs::Permissions::from_mode(0o500)).unwrap();

        if root {
            // Root ignores permissions: check as an unprivileged user in a child process.
            use std::os::unix::process::CommandExt;
            let output = child("read-only", dir.as_path())
                .uid(nobody)
                .gid(nobody)
                .output();
            match output {
                Ok(output) => {
                    let stdout = String::from_utf8_lossy(&output.stdout);
                    let stderr = String::from_utf8_lossy(&output.stderr);
                    assert!(output.status.success(), "child failed: {stdout}{stderr}");
                    assert!(
                        stdout.contains("xcs-child-done"),
                        "child did not run: {stdout}"
                    );
                }
                Err(e) => eprintln!("skipped: cannot run the test binary as nobody: {e}"),
            }
        } else {
            check_read_only(dir);
        }
        std::fs::set_permissions(dir.as_path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    }

    #[test]
    fn keys_are_unambiguous_and_stable() {
        assert_eq!(
            key_bytes("op", 2, 0x0102, &[9]),
            [
                2, 2, 0, 0, 0, 0, 0, 0, 0, b'o', b'p', 2, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0, 9
            ]
        );
        assert_ne!(key_bytes("ab", 1, 0, b"c"), key_bytes("a", 1, 0, b"bc"));
        assert_ne!(key_bytes("a", 1, 0, b""), key_bytes("a", 2, 0, b""));
        assert_ne!(key_bytes("a", 0, 0, b""), key_bytes("", 0, 0, b"a"));
        assert_ne!(key_bytes("a", 0, 1, b""), key_bytes("a", 0, 2, b""));
    }

    /// `cargo test -p xcs-core --release --lib persist::store::tests::bench_store -- --ignored --nocapture`
    #[test]
    #[ignore = "a benchmark: prints figures, asserts nothing"]
    fn bench_store() {
        let tmp = TempDir::new("bench");
        let dir = tmp.cache("cache");
        let store = Store::open(dir).unwrap();
        let value = [42u8; 100];
        let key = key_bytes(
            "bench",
            0,
            0,
            &crate::codec::encode(&("some input", 12u32)).unwrap(),
        );
        store.put(&key, &value).unwrap();
        let n = 100_000;
        let start = Instant::now();
        for _ in 0..n {
            assert_eq!(store.get(&key).unwrap().unwrap().len(), 100);
        }
        let per_get = start.elapsed() / n;
        let start = Instant::now();
        let miss = key_bytes("bench", 1, 0, b"absent");
        for _ in 0..n {
            assert!(store.get(&miss).unwrap().is_none());
        }
        let per_miss = start.elapsed() / n;

        let threads = 8u32;
        let per_thread = 5_000u32;
        let start = Instant::now();
        std::thread::scope(|s| {
            for t in 0..threads {
                let store = &store;
                s.spawn(move || {
                    for i in 0..per_thread {
                        let key = key_bytes("bench-write", t, 0, &i.to_le_bytes());
                        store.put(&key, &value).unwrap();
                    }
                });
            }
        });
        let puts = f64::from(threads * per_thread) / start.elapsed().as_secs_f64();
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                let store = &store;
                let key = &key;
                s.spawn(move || {
                    for _ in 0..n / 8 {
                        store.get(key).unwrap().unwrap();
                    }
                });
            }
        });
        let gets = f64::from(n) / start.elapsed().as_secs_f64();
        println!(
            "store: hit (100-byte value) {per_get:?}, miss {per_miss:?}; \
             {threads} threads: {puts:.0} puts/s, {gets:.0} hits/s"
        );
    }
}
