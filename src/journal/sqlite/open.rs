//! Opening a journal file: the file and its permissions, the connection settings, recognising a foreign
//! or damaged file, and the schema migrations.
//!
//! Permissions: the journal holds ID numbers and names, so the database file is created with mode
//! 0600 (owner read/write only) before SQLite opens it, and a wider mode found on an existing file is
//! narrowed to 0600. SQLite creates the `-wal` and `-shm` files with the database file's mode, so they
//! are 0600 too; after opening, any of the three found wider is narrowed to 0600. What is guaranteed:
//! when [`open`](super::SqliteStore::open) returns `Ok`, the database file and the `-wal` and `-shm`
//! files that exist have mode 0600. The directory's permissions are the operator's.

use std::fs::{self, OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::super::error::OpenError;
use super::super::schema::{self, APPLICATION_ID, LATEST};

/// The mode of the journal and its companion files.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Creates the file with mode 0600 if it does not exist, and narrows a wider mode.
pub(crate) fn create_private(path: &Path) -> Result<(), OpenError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|source| OpenError::File { path: path.to_owned(), action: "create or open the file", source })?;
    narrow_mode(path)
}

/// Sets mode 0600 on `path` when it is anything else (the umask may have taken bits away, or an older
/// file may be wider). A missing file is left missing.
pub(crate) fn narrow_mode(path: &Path) -> Result<(), OpenError> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(OpenError::File { path: path.to_owned(), action: "read the permissions", source }),
    };
    if meta.permissions().mode() & 0o777 != FILE_MODE {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777), "journal file mode narrowed to 0600");
        fs::set_permissions(path, Permissions::from_mode(FILE_MODE)).map_err(|source| OpenError::File {
            path: path.to_owned(),
            action: "set mode 0600",
            source,
        })?;
    }
    Ok(())
}

/// The `-wal` and `-shm` companions of a database file.
pub(crate) fn companions(path: &Path) -> [PathBuf; 2] {
    let with = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [with("-wal"), with("-shm")]
}

/// Maps an SQLite error met while opening.
pub(crate) fn open_error(path: &Path, busy_timeout: Duration, e: &rusqlite::Error) -> OpenError {
    let path = path.to_owned();
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => OpenError::NotADatabase { path },
        Some(ErrorCode::DatabaseCorrupt) => OpenError::Corrupt { path, detail: e.to_string() },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            OpenError::Locked { path, timeout_ms: u64::try_from(busy_timeout.as_millis()).unwrap_or(u64::MAX) }
        }
        _ => OpenError::Sqlite { path, what: e.to_string() },
    }
}

/// Opens a connection on an existing file (never creating one) with the busy timeout.
pub(crate) fn connect(path: &Path, busy_timeout: Duration) -> Result<Connection, rusqlite::Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(busy_timeout)?;
    // The writer alone runs some forty distinct statements; rusqlite's default cache of 16 would
    // prepare them again and again under load.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Statements each connection keeps prepared.
const STATEMENT_CACHE: usize = 128;

/// The writer connection's page cache, in KiB (a ceiling: it fills only as pages are read).
const WRITER_CACHE_KIB: u32 = 8 * 1024;

/// Each reader connection's page cache, in KiB.
const READER_CACHE_KIB: u32 = 16 * 1024;

/// What the writer connection must have.
pub(crate) struct WriterSetup {
    pub(crate) busy_timeout: Duration,
    pub(crate) check_on_open: bool,
    pub(crate) max_pages: Option<u32>,
}

/// Opens the writer connection: WAL, `synchronous=FULL`, foreign keys, the journal check, the
/// migrations, and the companions' modes.
pub(crate) fn open_writer(path: &Path, setup: &WriterSetup) -> Result<Connection, OpenError> {
    create_private(path)?;
    let sql = |e: rusqlite::Error| open_error(path, setup.busy_timeout, &e);
    let conn = connect(path, setup.busy_timeout).map_err(sql)?;

    // The first statement reads the header: a foreign file or a lock shows here.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(sql)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenError::Setting { path: path.to_owned(), setting: "journal_mode = WAL", got: mode });
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;").map_err(sql)?;
    // A batch run again after a refusal runs each write in its own SAVEPOINT, whose undo pages (the
    // sub-journal) SQLite keeps in a temporary file by default: a write(2) for every page a write
    // touches. They serve only to roll back one write within the open transaction, never crash recovery
    // (that is the WAL's job), so they are kept in memory (BENCHMARKS.md, the load benchmark's profile).
    conn.execute_batch("PRAGMA temp_store = MEMORY;").map_err(sql)?;
    // A page cache for the indexes the writes walk (roster lines by key and by ID number, payments, the
    // outbox), larger than SQLite's 2 MiB; not much larger: SQLite walks the cache's hash table at the
    // end of every transaction, which cost more than it saved at 64 MiB.
    conn.execute_batch(&format!("PRAGMA cache_size = -{WRITER_CACHE_KIB};")).map_err(sql)?;
    // Checkpoints run on a thread of their own (`checkpoint.rs`); the writer's is a backstop.
    conn.execute_batch(&format!("PRAGMA wal_autocheckpoint = {};", super::checkpoint::WRITER_BACKSTOP_PAGES))
        .map_err(sql)?;
    let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).map_err(sql)?;
    if sync != 2 {
        return Err(OpenError::Setting { path: path.to_owned(), setting: "synchronous = FULL", got: sync.to_string() });
    }
    let fk: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).map_err(sql)?;
    if fk != 1 {
        return Err(OpenError::Setting { path: path.to_owned(), setting: "foreign_keys = ON", got: fk.to_string() });
    }

    let version = check_identity(path, &conn, setup.busy_timeout)?;
    if setup.check_on_open && version > 0 {
        quick_check(path, &conn, setup.busy_timeout)?;
    }
    schema::migrate(&conn, version).map_err(|f| match f.error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => sql(f.error),
        _ => OpenError::Migration { path: path.to_owned(), version: f.version, what: f.error.to_string() },
    })?;
    if let Some(pages) = setup.max_pages {
        conn.pragma_update(None, "max_page_count", pages).map_err(sql)?;
    }
    for companion in companions(path) {
        narrow_mode(&companion)?;
    }
    Ok(conn)
}

/// Checks the file is a zhengjiao journal (or a new, empty database) this program can read; returns its
/// schema version.
fn check_identity(path: &Path, conn: &Connection, busy_timeout: Duration) -> Result<u32, OpenError> {
    let sql = |e: rusqlite::Error| open_error(path, busy_timeout, &e);
    let app_id: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(sql)?;
    let version = schema::version(conn).map_err(sql)?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'", [], |r| r.get(0))
        .map_err(sql)?;
    let foreign = |reason: String| Err(OpenError::NotAJournal { path: path.to_owned(), reason });
    if app_id != APPLICATION_ID && (app_id != 0 || version != 0 || tables != 0) {
        return foreign(if app_id != 0 {
            format!("its application id is {app_id:#010x}, a journal's is {APPLICATION_ID:#010x}")
        } else {
            "an SQLite database of another program (it has tables but no journal application id)".to_owned()
        });
    }
    if version > LATEST {
        return Err(OpenError::NewerSchema { path: path.to_owned(), found: version, supported: LATEST });
    }
    Ok(version)
}

/// Runs `PRAGMA quick_check` (every page and index structure, not the index contents).
fn quick_check(path: &Path, conn: &Connection, busy_timeout: Duration) -> Result<(), OpenError> {
    let sql = |e: rusqlite::Error| open_error(path, busy_timeout, &e);
    let mut stmt = conn.prepare("PRAGMA quick_check(5)").map_err(sql)?;
    let found: Vec<String> = stmt.query_map([], |r| r.get(0)).map_err(sql)?.collect::<Result<_, _>>().map_err(sql)?;
    if found.len() == 1 && found[0] == "ok" {
        Ok(())
    } else {
        Err(OpenError::Corrupt { path: path.to_owned(), detail: found.join("; ") })
    }
}

/// Opens a reader connection: `query_only`, so a bug cannot write through it.
///
/// Readers do not map the journal file (`mmap_size` stays 0). Every commit of the writer empties a
/// reader's page cache, and SQLite also unmaps the whole file when a read begins after a commit: with a
/// map, each read paid an `munmap` (and the other cores a TLB flush) before its page faults, which cost
/// more than copying its few pages with `pread` (the load benchmark's paced run: about 575 µs of CPU per
/// payment with the map, 505 µs without). Without a map, a failing disk is an error, never SIGBUS.
pub(crate) fn open_reader(path: &Path, busy_timeout: Duration) -> Result<Connection, rusqlite::Error> {
    let conn = connect(path, busy_timeout)?;
    conn.execute_batch(&format!("PRAGMA query_only = ON; PRAGMA cache_size = -{READER_CACHE_KIB};"))?;
    Ok(conn)
}
