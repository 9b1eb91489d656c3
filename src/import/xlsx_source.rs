//! XLSX workbooks (calamine): the first sheet, its first non-empty row being the header.
//!
//! Spreadsheet cells have types that CSV cells have not. Text cells are text; number cells are turned
//! into text where a column may hold numbers ([`super::source::Numbers`]); date, TRUE/FALSE and error
//! cells are reported as unusable in the row and column where they stand.

use std::borrow::Cow;
use std::io::{Read, Seek};

use calamine::{Data, Range, Reader, Xlsx};

use super::source::{row_is_blank, CellRef, Numbers, RowSource};
use super::ImportError;

/// The first sheet of a workbook, in memory (calamine reads a sheet whole).
pub(crate) struct XlsxSource {
    range: Range<Data>,
    header: Vec<String>,
    /// Index in `range` of the current row.
    index: usize,
    /// Spreadsheet row number of `range`'s first row.
    first_row: u64,
}

impl XlsxSource {
    /// Reads the first sheet of the workbook in `input`, and its header.
    pub(crate) fn new<R: Read + Seek>(input: R) -> Result<XlsxSource, ImportError> {
        let mut workbook: Xlsx<R> = Xlsx::new(input).map_err(ImportError::Xlsx)?;
        let range = match workbook.worksheet_range_at(0) {
            None => return Err(ImportError::NoSheet),
            Some(r) => r.map_err(ImportError::Xlsx)?,
        };
        let first_row = range.start().map_or(1, |(row, _)| u64::from(row) + 1);
        let mut source = XlsxSource { range, header: Vec::new(), index: 0, first_row };
        // Position on the first non-blank row: the header.
        while source.index < source.range.height() && source.current_is_blank() {
            source.index += 1;
        }
        if source.index >= source.range.height() {
            return Err(ImportError::NoHeader);
        }
        let width = source.range.width();
        source.header =
            (0..width).map(|c| source.cell(c).text(Numbers::Text).map(Cow::into_owned).unwrap_or_default()).collect();
        Ok(source)
    }

    fn current_is_blank(&self) -> bool {
        row_is_blank((0..self.range.width()).map(|c| self.cell(c)))
    }
}

/// A calamine cell as the importer sees it.
fn cell_ref(data: &Data) -> CellRef<'_> {
    match data {
        Data::Empty => CellRef::Text(""),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => CellRef::Text(s),
        Data::Float(f) => CellRef::Number(*f),
        Data::Int(i) => CellRef::Integer(*i),
        Data::Bool(_) => CellRef::Unusable(Cow::Borrowed("a TRUE/FALSE cell")),
        Data::DateTime(_) => CellRef::Unusable(Cow::Borrowed("a date/time cell; format the column as text")),
        Data::Error(e) => CellRef::Unusable(Cow::Owned(format!("an error cell ({e})"))),
    }
}

impl RowSource for XlsxSource {
    fn header(&self) -> &[String] {
        &self.header
    }

    fn advance(&mut self) -> Result<bool, ImportError> {
        loop {
            self.index += 1;
            if self.index >= self.range.height() {
                return Ok(false);
            }
            if !self.current_is_blank() {
                return Ok(true);
            }
        }
    }

    fn row_number(&self) -> u64 {
        self.first_row + self.index as u64
    }

    fn cell(&self, col: usize) -> CellRef<'_> {
        let width = self.range.width();
        if col >= width {
            return CellRef::Text("");
        }
        // `get` takes (row, column) relative to the range's start.
        self.range.get((self.index, col)).map_or(CellRef::Text(""), cell_ref)
    }

    fn progress(&self) -> (u64, u64) {
        (self.index as u64, self.range.height() as u64)
    }

    fn progress_in_bytes(&self) -> bool {
        false
    }
}
