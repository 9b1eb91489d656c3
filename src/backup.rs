//! `zhengjiao backup`: a consistent copy of the live journal with SQLite's online backup API, while the
//! daemon runs (docs/operations.md, "Backing up and restoring the journal").
//!
//! The copy is read through its own read-only connection, page by page, in steps; a write by the
//! daemon between two steps makes SQLite start over, so the copy is always one committed state of the
//! journal (WAL included), never a torn file. It is written to `OUTPUT.partial` (mode 0600: it holds
//! full ID numbers), checked (`PRAGMA quick_check`, the journal's application id) and only then renamed
//! to `OUTPUT`, so a file under the final name is always a whole backup. An existing `OUTPUT` is never
//! overwritten.
//!
//! Restore: stop the daemon, copy the backup over the journal (mode 0600, owned by the daemon's user),
//! remove any `-wal` / `-shm` files beside it, start the daemon; it asks the terminals about every
//! payment whose outcome it did not know.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// `PRAGMA application_id` of a journal ("ZJJL"), as the journal's schema sets it.
const JOURNAL_APPLICATION_ID: i32 = 0x5A4A_4A4C;
/// Pages copied per step of the backup.
pub const PAGES_PER_STEP: i32 = 1024;
/// Pause between two steps, so the daemon's writer is not starved.
pub const STEP_PAUSE: Duration = Duration::from_millis(5);
/// The most times a backup may be restarted by writes (SQLite restarts it on its own) before it gives up
/// and says so; a bound on steps, since every restart copies again from the first page.
pub const MAX_STEPS: u64 = 1_000_000;

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The backup file.
    pub output: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its pages.
    pub pages: i64,
    /// Its schema version (`PRAGMA user_version`).
    pub schema_version: i64,
    /// Payments it holds.
    pub payments: i64,
    /// Roster lines it holds.
    pub roster_lines: i64,
}

/// Why a backup failed. Nothing is left under the output name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The output file exists already.
    #[error("{0} exists; a backup never overwrites a file")]
    Exists(PathBuf),
    /// The journal does not exist.
    #[error("no journal at {0}")]
    NoJournal(PathBuf),
    /// A file could not be created, renamed or read.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// SQLite failed.
    #[error("{path}: {source}")]
    Sqlite {
        /// The database it was working on.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file is not a zhengjiao journal.
    #[error("{0} is not a zhengjiao journal (application id)")]
    NotAJournal(PathBuf),
    /// The copy failed its check.
    #[error("the copy {path} failed PRAGMA quick_check: {result}")]
    Check {
        /// The copy.
        path: PathBuf,
        /// What SQLite said.
        result: String,
    },
    /// The backup was restarted by writes more than [`MAX_STEPS`] steps.
    #[error("the journal kept changing: the backup did not finish in {MAX_STEPS} steps")]
    TooManySteps,
}

fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> BackupError + '_ {
    move |source| BackupError::Sqlite { path: path.to_owned(), source }
}

/// Copies the journal at `journal` to `output` with the online backup API, checks the copy and gives
/// what it holds.
pub fn backup(journal: &Path, output: &Path) -> Result<BackupReport, BackupError> {
    if !journal.exists() {
        return Err(BackupError::NoJournal(journal.to_owned()));
    }
    if output.exists() {
        return Err(BackupError::Exists(output.to_owned()));
    }
    let mut partial = output.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let result = copy(journal, &partial);
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            remove_copy(&partial);
            return Err(e);
        }
    };
    if output.exists() {
        remove_copy(&partial);
        return Err(BackupError::Exists(output.to_owned()));
    }
    std::fs::rename(&partial, output).map_err(|source| BackupError::File { path: output.to_owned(), source })?;
    let bytes = std::fs::metadata(output).map(|m| m.len()).unwrap_or_default();
    Ok(BackupReport { output: output.to_owned(), bytes, ..report })
}

fn remove_copy(partial: &Path) {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let mut p = partial.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

fn copy(journal: &Path, partial: &Path) -> Result<BackupReport, BackupError> {
    let source =
        Connection::open_with_flags(journal, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(sql(journal))?;
    source.busy_timeout(Duration::from_secs(5)).map_err(sql(journal))?;
    let id: i32 = source.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(sql(journal))?;
    if id != JOURNAL_APPLICATION_ID {
        return Err(BackupError::NotAJournal(journal.to_owned()));
    }
    // Created empty with mode 0600 before SQLite opens it: it will hold full ID numbers.
    create_private(partial)?;
    let mut dest = Connection::open(partial).map_err(sql(partial))?;
    {
        let backup = rusqlite::backup::Backup::new(&source, &mut dest).map_err(sql(partial))?;
        let mut steps = 0u64;
        loop {
            use rusqlite::backup::StepResult;
            match backup.step(PAGES_PER_STEP).map_err(sql(journal))? {
                StepResult::Done => break,
                StepResult::More | StepResult::Busy | StepResult::Locked => {}
                // Future variants: carry on; the step bound ends a loop that never finishes.
                #[allow(unreachable_patterns)]
                _ => {}
            }
            steps += 1;
            if steps >= MAX_STEPS {
                return Err(BackupError::TooManySteps);
            }
            std::thread::sleep(STEP_PAUSE);
        }
    }
    drop(source);
    // A single self-contained file: no WAL beside it to forget when copying it somewhere.
    dest.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(())).map_err(sql(partial))?;
    let check: String = dest.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(sql(partial))?;
    if check != "ok" {
        return Err(BackupError::Check { path: partial.to_owned(), result: check });
    }
    let int = |q: &str| dest.query_row(q, [], |r| r.get::<_, i64>(0)).map_err(sql(partial));
    let report = BackupReport {
        output: partial.to_owned(),
        bytes: 0,
        pages: int("PRAGMA page_count")?,
        schema_version: int("PRAGMA user_version")?,
        payments: int("SELECT count(*) FROM payments").unwrap_or(0),
        roster_lines: int("SELECT count(*) FROM roster_lines")?,
    };
    dest.close().map_err(|(_, e)| sql(partial)(e))?;
    Ok(report)
}

#[cfg(unix)]
fn create_private(path: &Path) -> Result<(), BackupError> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|source| BackupError::File { path: path.to_owned(), source })
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> Result<(), BackupError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map(drop)
        .map_err(|source| BackupError::File { path: path.to_owned(), source })
}

/// `zhengjiao backup --config FILE OUTPUT`: backs up the journal of the configuration's data directory
/// to `OUTPUT` and prints what the copy holds.
///
/// Exit status: 0 when the backup was written and checked, 1 when it failed (nothing is left under
/// `OUTPUT`), 2 when the configuration cannot be used.
pub fn backup_command(config: &Path, output: &Path) -> ExitCode {
    let data_dir = match crate::config::Config::load(config) {
        Ok(c) => c.data_dir,
        Err(e) => {
            eprintln!("zhengjiao backup: {e}");
            return ExitCode::from(2);
        }
    };
    let journal = crate::import::journal_path(&data_dir);
    match backup(&journal, output) {
        Ok(r) => {
            println!(
                "backup {}: {} bytes, {} pages, schema {}, {} roster lines, {} payments (from {})",
                r.output.display(),
                r.bytes,
                r.pages,
                r.schema_version,
                r.roster_lines,
                r.payments,
                journal.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("zhengjiao backup: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_file_that_is_not_a_journal_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let other = dir.path().join("other.db");
        Connection::open(&other).and_then(|c| c.execute_batch("CREATE TABLE t (x)")).expect("sqlite");
        let out = dir.path().join("copy.db");
        assert!(matches!(backup(&other, &out), Err(BackupError::NotAJournal(_))));
        assert!(!out.exists());
        assert!(!dir.path().join("copy.db.partial").exists());
        assert!(matches!(backup(&dir.path().join("none.db"), &out), Err(BackupError::NoJournal(_))));
    }
}
