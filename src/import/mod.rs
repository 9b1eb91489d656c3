//! Importing the files the departments hand the collection points (roster-format.md): the roster
//! (参保底册 / 征缴计划清单) and the collector register (集中征缴工作人员登记表).
//!
//! A file is `.xlsx` (first sheet, header row first) or `.csv` in UTF-8 (with or without BOM) or
//! GB18030/GBK, detected or forced ([`encoding`]). Header names are Chinese or English, in any order,
//! with surrounding spaces allowed; unknown columns are ignored.
//!
//! Import is all-or-nothing, in two steps:
//! 1. every row is read (streaming, for CSV) and checked into domain types; any bad row fails the
//!    whole file with [`ImportError::BadRows`], which lists every refused cell as (row number as a
//!    spreadsheet shows it, column as the file names it, reason). Duplicate keys within the file are
//!    bad rows too. Nothing has touched the journal at this point.
//! 2. the checked rows go to the journal in one call ([`crate::journal::Store`]), which applies them in
//!    one transaction and counts what it inserted, left unchanged (a re-import is a no-op) and updated
//!    (`--update`, unpaid lines only). A row in conflict with the journal applies nothing at all:
//!    [`ImportError::Conflicts`] lists every one with its file row number.
//!
//! [`roster_import_command`] and [`collectors_import_command`] are the CLI's commands.

mod collectors;
mod command;
mod csv_source;
pub mod encoding;
mod header;
mod progress;
mod report;
mod roster;
mod source;
mod xlsx_source;

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

pub use collectors::BANK_ACCOUNT_DIGITS;
pub use command::{collectors_import_command, journal_path, roster_import_command, JOURNAL_FILE};
pub use csv_source::MAX_RECORD_BYTES;
pub use encoding::{DecodeError, DetectError, DetectedEncoding, TextEncoding};
pub use report::{BadRows, Reason, RowProblem, MAX_LISTED_PROBLEMS};
pub use roster::{MAX_PLACE_CHARS, YEARS};

use header::HeaderMap;
use source::RowSource;

use crate::journal::{Collector, ImportConflict, ImportOutcome, RosterLine, Store};

/// The largest file accepted, in bytes (a million roster rows take about 100 MB).
pub const MAX_FILE_BYTES: u64 = 1 << 30;
/// The most data rows a file may have.
pub const MAX_ROWS: u64 = 5_000_000;

/// Why a file could not be imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file could not be opened or its size read.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Reading the file failed part-way.
    #[error("cannot read the file: {0}")]
    Read(#[source] io::Error),
    /// The file is bigger than [`MAX_FILE_BYTES`].
    #[error("the file has {size} bytes, more than the {limit} accepted")]
    TooLarge {
        /// The file's size.
        size: u64,
        /// [`MAX_FILE_BYTES`].
        limit: u64,
    },
    /// The file is of a kind that is not accepted (legacy `.xls`, UTF-16 text).
    #[error("{0}")]
    Unsupported(&'static str),
    /// The CSV file's bytes are not valid in its encoding.
    #[error("{0}")]
    Decode(DecodeError),
    /// The CSV reader refused the file.
    #[error("CSV error near row {row}: {message}")]
    Csv {
        /// The row being read.
        row: u64,
        /// The reader's message.
        message: String,
    },
    /// One CSV record is longer than [`MAX_RECORD_BYTES`] (often a quote that is never closed).
    #[error("row {row} is longer than {limit} bytes: is a quote (\") left open?")]
    RecordTooLong {
        /// The row.
        row: u64,
        /// [`MAX_RECORD_BYTES`].
        limit: usize,
    },
    /// The workbook could not be read.
    #[error("cannot read the workbook: {0}")]
    Xlsx(#[source] calamine::XlsxError),
    /// The workbook has no sheet.
    #[error("the workbook has no sheet")]
    NoSheet,
    /// The file has no header row (it is empty, or only blank rows).
    #[error("the file is empty: no header row")]
    NoHeader,
    /// The file has a header but no data rows.
    #[error("the file has a header row but no data rows")]
    NoRows,
    /// The file has more than [`MAX_ROWS`] data rows.
    #[error("the file has more than {limit} data rows")]
    TooManyRows {
        /// [`MAX_ROWS`].
        limit: u64,
    },
    /// Required columns are missing from the header.
    #[error("missing required column{}: {}; the header row has: {}",
        if missing.len() == 1 { "" } else { "s" }, missing.join(", "), found.join(" | "))]
    MissingColumns {
        /// The missing columns, `征集流水号 (collection_serial)`.
        missing: Vec<String>,
        /// The header cells found (non-empty, trimmed), to show what the file has instead.
        found: Vec<String>,
    },
    /// A field's column appears twice (by its Chinese and English name, or twice by one name).
    #[error("column {name} appears twice, in columns {first} and {second}")]
    DuplicateColumn {
        /// The field, `征集流水号 (collection_serial)`.
        name: String,
        /// The first column's spreadsheet letters.
        first: String,
        /// The second column's spreadsheet letters.
        second: String,
    },
    /// Rows failed their checks; nothing was imported.
    #[error("{0}")]
    BadRows(BadRows),
    /// Rows conflict with what the journal holds; nothing was imported.
    #[error("{}", conflicts_text(.0))]
    Conflicts(Vec<FileConflict>),
    /// The journal could not apply the rows for another reason than conflicts: its storage failed
    /// (for [`StorageError::Failed`](crate::journal::StorageError::Failed), whether the import was
    /// committed is unknown: see the journal's message).
    #[error("{0}")]
    Journal(#[source] crate::journal::ImportError),
}

/// What kind of file was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// CSV, in this encoding.
    Csv(DetectedEncoding),
    /// An XLSX workbook.
    Xlsx,
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileKind::Csv(enc) => write!(f, "CSV, {enc}"),
            FileKind::Xlsx => f.write_str("XLSX"),
        }
    }
}

/// Options of an import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// The CSV encoding, when the operator forces one (`--encoding`); `None` detects it. Ignored for
    /// XLSX.
    pub encoding: Option<TextEncoding>,
    /// Replace lines already in the journal whose content differs, when they are unpaid (`--update`).
    pub update: bool,
}

/// Opens `path` as CSV or XLSX (by its first bytes: an XLSX file is a ZIP archive).
fn open_source(path: &Path, encoding: Option<TextEncoding>) -> Result<(Box<dyn RowSource>, FileKind), ImportError> {
    let open = || File::open(path).map_err(|source| ImportError::Open { path: path.to_owned(), source });
    let mut file = open()?;
    let size = file.metadata().map_err(|source| ImportError::Open { path: path.to_owned(), source })?.len();
    if size > MAX_FILE_BYTES {
        return Err(ImportError::TooLarge { size, limit: MAX_FILE_BYTES });
    }
    let mut magic = Vec::with_capacity(4);
    file.by_ref().take(4).read_to_end(&mut magic).map_err(ImportError::Read)?;
    if magic == b"PK\x03\x04" {
        let source = xlsx_source::XlsxSource::new(BufReader::new(open()?))?;
        return Ok((Box::new(source), FileKind::Xlsx));
    }
    if magic == b"\xD0\xCF\x11\xE0" {
        return Err(ImportError::Unsupported(
            "the file is a legacy .xls workbook (or a password-protected one): save it as .xlsx or CSV",
        ));
    }
    let detected = encoding::detect(open()?, encoding).map_err(|e| match e {
        DetectError::Io(io) => ImportError::Read(io),
        DetectError::Utf16 => ImportError::Unsupported(
            "the file is UTF-16 text (\"Unicode text\"), which is not accepted: save it as CSV in UTF-8 \
             or GB18030",
        ),
    })?;
    let source = csv_source::CsvSource::new(open()?, detected, size)?;
    Ok((Box::new(source), FileKind::Csv(detected)))
}

/// Rows read from a file and checked, ready for the journal: the values and their spreadsheet row
/// numbers.
struct Checked<T> {
    values: Vec<T>,
    rows: Vec<u64>,
}

/// Reads every data row of `src`, checking each with `check`. Any problem fails the whole file, after
/// every row has been checked.
fn check_all<T>(
    src: &mut dyn RowSource,
    mut check: impl FnMut(&dyn RowSource, &mut BadRows) -> Option<T>,
    progress: &progress::Progress,
) -> Result<Checked<T>, ImportError> {
    let mut checked = Checked { values: Vec::new(), rows: Vec::new() };
    let mut bad = BadRows::default();
    let mut count: u64 = 0;
    progress.start(src.progress_in_bytes(), src.progress().1);
    while src.advance()? {
        count += 1;
        if count > MAX_ROWS {
            return Err(ImportError::TooManyRows { limit: MAX_ROWS });
        }
        let value = check(&*src, &mut bad);
        match value {
            Some(v) if bad.is_empty() => {
                checked.values.push(v);
                checked.rows.push(src.row_number());
            }
            // The file will be refused: stop keeping rows that will not be used.
            _ if !checked.values.is_empty() => checked = Checked { values: Vec::new(), rows: Vec::new() },
            _ => {}
        }
        if count % progress::EVERY == 0 {
            progress.set(src.progress().0);
        }
    }
    progress.set(src.progress().1);
    if !bad.is_empty() {
        return Err(ImportError::BadRows(bad));
    }
    if count == 0 {
        return Err(ImportError::NoRows);
    }
    Ok(checked)
}

/// A file's rows, read and checked, ready for the journal.
#[derive(Debug, Clone)]
pub struct CheckedFile<T> {
    /// The rows, in file order.
    pub values: Vec<T>,
    /// Each row's number as a spreadsheet shows it (same order).
    pub rows: Vec<u64>,
    /// What kind of file it was.
    pub kind: FileKind,
}

/// A roster file, read and checked.
pub type RosterFile = CheckedFile<RosterLine>;
/// A collector register, read and checked.
pub type CollectorsFile = CheckedFile<Collector>;

/// Reads and checks a roster file (CSV or XLSX). Fails, listing every bad row, when any row is bad.
pub fn read_roster(path: &Path, encoding: Option<TextEncoding>) -> Result<RosterFile, ImportError> {
    read_roster_with(path, encoding, &progress::Progress::hidden())
}

fn read_roster_with(
    path: &Path,
    encoding: Option<TextEncoding>,
    progress: &progress::Progress,
) -> Result<RosterFile, ImportError> {
    let (mut src, kind) = open_source(path, encoding)?;
    let mut checker = roster::RosterChecker::new(HeaderMap::new(&roster::COLUMNS, src.header())?);
    let checked = check_all(&mut *src, |s, bad| checker.check(s, bad), progress)?;
    Ok(CheckedFile { values: checked.values, rows: checked.rows, kind })
}

/// Reads and checks a collector register (CSV or XLSX). Fails, listing every bad row, when any row is
/// bad.
pub fn read_collectors(path: &Path, encoding: Option<TextEncoding>) -> Result<CollectorsFile, ImportError> {
    read_collectors_with(path, encoding, &progress::Progress::hidden())
}

fn read_collectors_with(
    path: &Path,
    encoding: Option<TextEncoding>,
    progress: &progress::Progress,
) -> Result<CollectorsFile, ImportError> {
    let (mut src, kind) = open_source(path, encoding)?;
    let mut checker = collectors::CollectorChecker::new(HeaderMap::new(&collectors::COLUMNS, src.header())?);
    let checked = check_all(&mut *src, |s, bad| checker.check(s, bad), progress)?;
    Ok(CheckedFile { values: checked.values, rows: checked.rows, kind })
}

/// A row the journal would not apply, with its file row number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConflict {
    /// The journal's conflict, its `row` (and any earlier row it names) turned into the file's row
    /// numbers.
    pub conflict: ImportConflict,
}

impl FileConflict {
    /// The conflicting row's number as a spreadsheet shows it.
    pub fn row(&self) -> u64 {
        self.conflict.row as u64
    }
}

impl std::fmt::Display for FileConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.conflict.fmt(f)
    }
}

fn conflicts_text(conflicts: &[FileConflict]) -> String {
    let mut text = format!(
        "{} row{} conflict{} with the journal; nothing was imported:",
        conflicts.len(),
        report::plural(conflicts.len() as u64),
        if conflicts.len() == 1 { "s" } else { "" }
    );
    for c in conflicts.iter().take(MAX_LISTED_PROBLEMS) {
        text.push_str(&format!("\n  {c}"));
    }
    if conflicts.len() > MAX_LISTED_PROBLEMS {
        text.push_str(&format!("\n  ... and {} more not listed", conflicts.len() - MAX_LISTED_PROBLEMS));
    }
    text
}

/// Turns the journal's row indices into the file's row numbers.
fn file_conflicts(conflicts: Vec<ImportConflict>, rows: &[u64]) -> Vec<FileConflict> {
    let to_file = |index: usize| rows.get(index).map_or(index, |&r| usize::try_from(r).unwrap_or(usize::MAX));
    conflicts
        .into_iter()
        .map(|mut conflict| {
            conflict.row = to_file(conflict.row);
            if let crate::journal::ConflictKind::DuplicateInImport { first_row, .. } = &mut conflict.kind {
                *first_row = to_file(*first_row);
            }
            FileConflict { conflict }
        })
        .collect()
}

fn journal_error(err: crate::journal::ImportError, rows: &[u64]) -> ImportError {
    match err {
        crate::journal::ImportError::Conflicts(c) => ImportError::Conflicts(file_conflicts(c, rows)),
        other => ImportError::Journal(other),
    }
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportSummary {
    /// What kind of file it was.
    pub kind: FileKind,
    /// Data rows in the file.
    pub rows: usize,
    /// What the journal did with them.
    pub outcome: ImportOutcome,
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = &self.outcome;
        write!(
            f,
            "{} row{} ({}): {} inserted, {} unchanged, {} updated, 0 conflicts",
            self.rows,
            report::plural(self.rows as u64),
            self.kind,
            o.inserted,
            o.unchanged,
            o.updated
        )
    }
}

/// Hands checked roster lines to the journal (one transaction). Conflicts come back with file row
/// numbers.
pub async fn apply_roster<S: Store>(store: &S, file: RosterFile, update: bool) -> Result<ImportSummary, ImportError> {
    let rows = file.rows;
    let count = file.values.len();
    let outcome = store.import_roster(file.values, update).await.map_err(|e| journal_error(e, &rows))?;
    Ok(ImportSummary { kind: file.kind, rows: count, outcome })
}

/// Hands checked collectors to the journal (one transaction). Conflicts come back with file row
/// numbers.
pub async fn apply_collectors<S: Store>(
    store: &S,
    file: CollectorsFile,
    update: bool,
) -> Result<ImportSummary, ImportError> {
    let rows = file.rows;
    let count = file.values.len();
    let outcome = store.import_collectors(file.values, update).await.map_err(|e| journal_error(e, &rows))?;
    Ok(ImportSummary { kind: file.kind, rows: count, outcome })
}

/// Reads, checks and imports a roster file into `store`: [`read_roster`] then [`apply_roster`].
///
/// Reading is blocking file I/O; a caller inside a busy runtime runs this on a blocking thread.
pub async fn import_roster<S: Store>(
    store: &S,
    path: &Path,
    opts: ImportOptions,
) -> Result<ImportSummary, ImportError> {
    let file = read_roster(path, opts.encoding)?;
    apply_roster(store, file, opts.update).await
}

/// Reads, checks and imports a collector register into `store`: [`read_collectors`] then
/// [`apply_collectors`].
pub async fn import_collectors<S: Store>(
    store: &S,
    path: &Path,
    opts: ImportOptions,
) -> Result<ImportSummary, ImportError> {
    let file = read_collectors(path, opts.encoding)?;
    apply_collectors(store, file, opts.update).await
}
