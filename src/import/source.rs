//! Rows of a file as the file holds them: the header's text, then data rows of cells with their
//! spreadsheet row numbers. CSV and XLSX both present themselves this way.

use std::borrow::Cow;

use super::report::Reason;

/// One cell of a data row, as the file holds it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CellRef<'a> {
    /// Text (every CSV cell; a text cell of a spreadsheet). Empty for a missing cell.
    Text(&'a str),
    /// A number cell of a spreadsheet.
    Number(f64),
    /// An integer cell of a spreadsheet.
    Integer(i64),
    /// A cell holding no usable value, and what it is (`a date cell`, `a TRUE/FALSE cell`, ...).
    Unusable(Cow<'a, str>),
}

/// Spreadsheets keep 15 significant digits: an integer at or above this may already have lost digits.
const EXACT_INTEGER_LIMIT: f64 = 1e15;

/// How a number cell may be read as text in a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Numbers {
    /// A number becomes its text: integers without a decimal point, others in their shortest form.
    Text,
    /// A number cell is refused: the column holds identifiers that do not survive being numbers
    /// (an ID number has 18 digits, more than a spreadsheet keeps, and may end in X).
    Refuse,
}

impl CellRef<'_> {
    /// The cell's text, trimmed, or why there is none.
    pub(crate) fn text(&self, numbers: Numbers) -> Result<Cow<'_, str>, Reason> {
        match self {
            CellRef::Text(s) => {
                let t = s.trim();
                if looks_scientific(t) {
                    return Err(Reason::ScientificNotation(t.chars().take(24).collect()));
                }
                Ok(Cow::Borrowed(t))
            }
            CellRef::Integer(i) => match numbers {
                Numbers::Refuse => Err(Reason::NumberCell),
                Numbers::Text if i.unsigned_abs() as f64 >= EXACT_INTEGER_LIMIT => Err(Reason::NumberTooLong),
                Numbers::Text => Ok(Cow::Owned(i.to_string())),
            },
            CellRef::Number(f) => match numbers {
                Numbers::Refuse => Err(Reason::NumberCell),
                Numbers::Text if !f.is_finite() => Err(Reason::Unusable("a non-finite number".into())),
                Numbers::Text if f.abs() >= EXACT_INTEGER_LIMIT => Err(Reason::NumberTooLong),
                // Below 1e15 an integer-valued float converts exactly.
                #[allow(clippy::cast_possible_truncation)]
                Numbers::Text if f.fract() == 0.0 => Ok(Cow::Owned((*f as i64).to_string())),
                // Rust prints the shortest text that reads back as the same float: 280.5, 0.1.
                Numbers::Text => Ok(Cow::Owned(f.to_string())),
            },
            CellRef::Unusable(what) => Err(Reason::Unusable(what.to_string())),
        }
    }
}

/// `4.10402E+17`: what a spreadsheet program writes for a long number it has turned into a float (an
/// ID number or account opened and saved as CSV). No field of ours can contain a `+`.
fn looks_scientific(t: &str) -> bool {
    t.contains('+') && (t.contains('E') || t.contains('e')) && t.parse::<f64>().is_ok()
}

/// A file's rows: the header, then data rows one at a time.
///
/// Wholly empty rows are skipped (spreadsheets leave them at the end); row numbers still count them.
pub(crate) trait RowSource {
    /// The header cells as text (not yet trimmed).
    fn header(&self) -> &[String];
    /// Moves to the next data row; `Ok(false)` at the end of the file.
    fn advance(&mut self) -> Result<bool, super::ImportError>;
    /// The current row's number as a spreadsheet shows it (the header is usually row 1).
    fn row_number(&self) -> u64;
    /// The current row's cell in column `col` (0-based); a missing cell is empty text.
    fn cell(&self, col: usize) -> CellRef<'_>;
    /// Work done so far and in all, in bytes or rows (see [`RowSource::progress_in_bytes`]).
    fn progress(&self) -> (u64, u64);
    /// `true` when [`RowSource::progress`] counts bytes, `false` when it counts rows.
    fn progress_in_bytes(&self) -> bool;
}

/// `true` when every cell of the current row is empty text.
pub(crate) fn row_is_blank<'a, I: IntoIterator<Item = CellRef<'a>>>(cells: I) -> bool {
    cells.into_iter().all(|c| matches!(c, CellRef::Text(s) if s.trim().is_empty()))
}
