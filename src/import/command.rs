//! The `roster import` and `collectors import` commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::progress::Progress;
use super::{
    apply_collectors, apply_roster, read_collectors_with, read_roster_with, CollectorsFile, ImportError, ImportOptions,
    ImportSummary, RosterFile,
};
use crate::journal::{JournalOptions, SqliteStore};

/// The journal's file name in the data directory.
pub const JOURNAL_FILE: &str = "journal.sqlite";

/// Exit status when anything was refused or failed (nothing was imported).
const FAILED: u8 = 1;

/// The journal file in `data_dir`.
pub fn journal_path(data_dir: &Path) -> PathBuf {
    data_dir.join(JOURNAL_FILE)
}

/// `zhengjiao roster import FILE`: reads and checks the roster file, then imports it into the journal
/// in `data_dir` (created if missing), all or nothing. Prints a summary on standard output, or every
/// bad row / conflict on standard error. A progress bar is drawn on standard error when it is a
/// terminal.
///
/// Exit status: 0 when every row was applied (inserted, unchanged or updated), 1 otherwise (a bad row,
/// a conflict, an unreadable file or journal: nothing was imported).
///
/// Runs its own single-threaded tokio runtime: call it from synchronous code, not inside a runtime.
pub fn roster_import_command(data_dir: &Path, file: &Path, opts: ImportOptions) -> ExitCode {
    run("roster import", data_dir, file, opts, |p| read_roster_with(file, opts.encoding, p).map(Checked::Roster))
}

/// `zhengjiao collectors import FILE`: as [`roster_import_command`], for the collector register
/// (集中征缴工作人员登记表).
pub fn collectors_import_command(data_dir: &Path, file: &Path, opts: ImportOptions) -> ExitCode {
    run("collectors import", data_dir, file, opts, |p| {
        read_collectors_with(file, opts.encoding, p).map(Checked::Collectors)
    })
}

/// A file read and checked, of either kind.
enum Checked {
    Roster(RosterFile),
    Collectors(CollectorsFile),
}

fn run(
    command: &str,
    data_dir: &Path,
    file: &Path,
    opts: ImportOptions,
    read: impl FnOnce(&Progress) -> Result<Checked, ImportError>,
) -> ExitCode {
    let progress = Progress::on_terminal();
    // The file is read and checked before the journal is opened: a bad file never touches it.
    let checked = match read(&progress) {
        Ok(checked) => checked,
        Err(e) => {
            progress.finish();
            eprintln!("{command}: {}: {e}", file.display());
            return ExitCode::from(FAILED);
        }
    };
    progress.writing();
    let result = apply(data_dir, checked, opts.update);
    progress.finish();
    match result {
        Ok(summary) => {
            println!("{command}: {}: {summary}", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{command}: {}: {e}", file.display());
            ExitCode::from(FAILED)
        }
    }
}

/// Opens the journal and applies the checked rows.
fn apply(data_dir: &Path, checked: Checked, update: bool) -> Result<ImportSummary, String> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create the data directory {}: {e}", data_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let store =
            SqliteStore::open(journal_path(data_dir), JournalOptions::default()).await.map_err(|e| e.to_string())?;
        let result = match checked {
            Checked::Roster(f) => apply_roster(&store, f, update).await,
            Checked::Collectors(f) => apply_collectors(&store, f, update).await,
        };
        store.close().await;
        result.map_err(|e| e.to_string())
    })
}
