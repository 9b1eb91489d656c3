//! Header rows: which file column holds which field.
//!
//! A field is found by its Chinese or English header name (roster-format.md), after trimming white
//! space (full-width spaces included); English names are matched without regard to case. Columns the
//! importer does not know are ignored. Missing required columns are reported together, in one error.

use super::ImportError;

/// A column a file may have.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ColumnSpec {
    /// The Chinese header name.
    pub(crate) zh: &'static str,
    /// The English header name.
    pub(crate) en: &'static str,
    /// The column must be present.
    pub(crate) required: bool,
}

impl ColumnSpec {
    /// `征集流水号 (collection_serial)`.
    pub(crate) fn both_names(&self) -> String {
        format!("{} ({})", self.zh, self.en)
    }

    fn matches(&self, header: &str) -> bool {
        header == self.zh || header.eq_ignore_ascii_case(self.en)
    }
}

/// Where each field of a [`ColumnSpec`] table is in a file.
#[derive(Debug, Clone)]
pub(crate) struct HeaderMap {
    /// For each spec (same order): the file column, if present.
    columns: Vec<Option<usize>>,
    /// For each spec: the column's name as the file writes it, or the Chinese name when absent.
    names: Vec<String>,
}

impl HeaderMap {
    /// Maps `header` (the file's header cells) onto `specs`.
    pub(crate) fn new(specs: &[ColumnSpec], header: &[String]) -> Result<HeaderMap, ImportError> {
        let mut columns: Vec<Option<usize>> = vec![None; specs.len()];
        let mut names: Vec<String> = specs.iter().map(|s| s.zh.to_owned()).collect();
        for (col, cell) in header.iter().enumerate() {
            let cell = cell.trim();
            let Some(field) = specs.iter().position(|s| s.matches(cell)) else {
                continue;
            };
            if let Some(first) = columns[field] {
                return Err(ImportError::DuplicateColumn {
                    name: specs[field].both_names(),
                    first: column_letters(first),
                    second: column_letters(col),
                });
            }
            columns[field] = Some(col);
            names[field] = cell.to_owned();
        }
        let missing: Vec<String> = specs
            .iter()
            .zip(&columns)
            .filter(|(s, c)| s.required && c.is_none())
            .map(|(s, _)| s.both_names())
            .collect();
        if !missing.is_empty() {
            let found = header.iter().map(|h| h.trim()).filter(|h| !h.is_empty()).map(str::to_owned).collect();
            return Err(ImportError::MissingColumns { missing, found });
        }
        Ok(HeaderMap { columns, names })
    }

    /// The file column of field `field` (an index into the spec table).
    pub(crate) fn column(&self, field: usize) -> Option<usize> {
        self.columns.get(field).copied().flatten()
    }

    /// The name of field `field` as the file writes it.
    pub(crate) fn name(&self, field: usize) -> &str {
        self.names.get(field).map_or("", String::as_str)
    }
}

/// Spreadsheet letters of a 0-based column: 0 → `A`, 26 → `AA`.
pub(crate) fn column_letters(col: usize) -> String {
    let mut n = col + 1;
    let mut letters = Vec::new();
    while n > 0 {
        let rem = (n - 1) % 26;
        // rem < 26
        letters.push(char::from(b'A' + rem as u8));
        n = (n - 1) / 26;
    }
    letters.iter().rev().collect()
}
