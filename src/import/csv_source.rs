//! CSV files: decoded strictly ([`super::encoding`]) and read record by record, never whole.

use std::fs::File;
use std::io::Read;

use super::encoding::{DecodeError, DecodingReader, DetectedEncoding};
use super::source::{row_is_blank, CellRef, RowSource};
use super::ImportError;

/// The longest record accepted, in bytes: a roster row is a few hundred bytes; anything this long is
/// not a roster (or a quote was never closed).
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// A CSV file being read.
pub(crate) struct CsvSource<R: Read = File> {
    reader: csv::Reader<DecodingReader<R>>,
    header: Vec<String>,
    record: csv::StringRecord,
    /// The current record's spreadsheet row number.
    row: u64,
    /// The reader's line count after the last record read.
    next_line: u64,
    total_bytes: u64,
}

impl<R: Read> CsvSource<R> {
    /// Opens a CSV source on `input` (of `total_bytes` bytes) decoded as `encoding`, and reads the
    /// header: the first record that is not blank.
    pub(crate) fn new(input: R, encoding: DetectedEncoding, total_bytes: u64) -> Result<CsvSource<R>, ImportError> {
        let decoding = DecodingReader::new(input, encoding.encoding);
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            // Only a line feed ends a record: a carriage return before it stays in the last cell, and
            // cells are trimmed. csv then counts one line per line feed, blank lines included.
            .terminator(csv::Terminator::Any(b'\n'))
            .buffer_capacity(64 * 1024)
            .from_reader(decoding);
        let mut source = CsvSource {
            reader,
            header: Vec::new(),
            record: csv::StringRecord::new(),
            row: 0,
            next_line: 1,
            total_bytes,
        };
        if !source.read_nonblank()? {
            return Err(ImportError::NoHeader);
        }
        source.header = source.record.iter().map(str::to_owned).collect();
        Ok(source)
    }

    /// Reads the next record that is not blank; `Ok(false)` at the end.
    fn read_nonblank(&mut self) -> Result<bool, ImportError> {
        loop {
            let more = self.reader.read_record(&mut self.record).map_err(|e| csv_error(e, self.row + 1))?;
            if !more {
                return Ok(false);
            }
            // The reader skipped blank lines before the record, then read the record and its line
            // feed (every record has one: the decoder adds it at the end). A spreadsheet shows each
            // blank line as a row, and a quoted cell's line feeds within one row.
            let after = self.reader.position().line();
            let lines = after.saturating_sub(self.next_line);
            let quoted = self.record.as_slice().bytes().filter(|&b| b == b'\n').count() as u64;
            self.row += lines.saturating_sub(quoted).max(1);
            self.next_line = after;
            if self.record.as_slice().len() > MAX_RECORD_BYTES {
                return Err(ImportError::RecordTooLong { row: self.row, limit: MAX_RECORD_BYTES });
            }
            if !row_is_blank(self.record.iter().map(CellRef::Text)) {
                return Ok(true);
            }
        }
    }
}

/// An error of the CSV reader: the decode error inside it, or the reader's own.
fn csv_error(err: csv::Error, row: u64) -> ImportError {
    if let csv::ErrorKind::Io(io) = err.kind() {
        if let Some(decode) = DecodeError::from_io(io) {
            return ImportError::Decode(decode.clone());
        }
    }
    let message = err.to_string();
    match err.into_kind() {
        csv::ErrorKind::Io(io) => ImportError::Read(io),
        _ => ImportError::Csv { row, message },
    }
}

impl<R: Read> RowSource for CsvSource<R> {
    fn header(&self) -> &[String] {
        &self.header
    }

    fn advance(&mut self) -> Result<bool, ImportError> {
        self.read_nonblank()
    }

    fn row_number(&self) -> u64 {
        self.row
    }

    fn cell(&self, col: usize) -> CellRef<'_> {
        CellRef::Text(self.record.get(col).unwrap_or(""))
    }

    fn progress(&self) -> (u64, u64) {
        (self.reader.get_ref().bytes_consumed(), self.total_bytes)
    }

    fn progress_in_bytes(&self) -> bool {
        true
    }
}
