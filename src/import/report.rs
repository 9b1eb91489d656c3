//! What an import found wrong with a file's rows, and what it did.

use std::fmt;

/// Problems listed in an error at most; beyond this they are counted, not listed, so a file that is
/// wrong in every one of a million rows gives a readable error and bounded memory.
pub const MAX_LISTED_PROBLEMS: usize = 1000;

/// Why a cell was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Reason {
    /// A required cell is empty.
    #[error("the cell is empty")]
    Empty,
    /// The value does not fit the field; the text says why.
    #[error("{0}")]
    Invalid(String),
    /// A spreadsheet number cell in a column of identifiers (ID numbers).
    #[error(
        "the cell is a number: a spreadsheet keeps only 15 digits, so an ID number stored as a number \
         has lost its last digits; format the column as text and enter the numbers again"
    )]
    NumberCell,
    /// A spreadsheet number cell of 16 or more digits.
    #[error(
        "a number of 16 or more digits: the spreadsheet kept only 15 significant digits; format the \
         column as text and enter the value again"
    )]
    NumberTooLong,
    /// Text in scientific notation (`4.10402E+17`): a spreadsheet program turned a long number into a
    /// float before the file was saved, and its digits are lost.
    #[error(
        "{0:?} is a number in scientific notation: a spreadsheet program turned the value into a number \
         and lost its digits; format the column as text in the original file and export it again"
    )]
    ScientificNotation(String),
    /// A spreadsheet cell with no usable value (a date, TRUE/FALSE, an error).
    #[error("{0}")]
    Unusable(String),
    /// A medical line without an amount due.
    #[error("a medical line needs an amount due (应缴金额)")]
    MedicalAmountMissing,
    /// The row's key is already on an earlier row of the file.
    #[error("duplicate: {key} is already on row {first_row}")]
    Duplicate {
        /// What is duplicated, e.g. `collection serial 2020-0001 (医疗 2020)`.
        key: String,
        /// The earlier row.
        first_row: u64,
    },
}

/// One refused cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    /// The row number as a spreadsheet shows it (the header is row 1).
    pub row: u64,
    /// The column's header as the file writes it.
    pub column: String,
    /// Why the cell was refused.
    pub reason: Reason,
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {}, {}: {}", self.row, self.column, self.reason)
    }
}

/// Every refused cell of a file (up to [`MAX_LISTED_PROBLEMS`] listed, all counted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BadRows {
    /// The problems, in file order.
    pub problems: Vec<RowProblem>,
    /// Rows with at least one problem.
    pub bad_rows: u64,
    /// Problems in all, listed or not.
    pub total_problems: u64,
    last_bad_row: Option<u64>,
}

impl BadRows {
    /// Records a problem (rows come in increasing order).
    pub(crate) fn push(&mut self, problem: RowProblem) {
        if self.last_bad_row != Some(problem.row) {
            self.bad_rows += 1;
            self.last_bad_row = Some(problem.row);
        }
        self.total_problems += 1;
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.problems.push(problem);
        }
    }

    /// No problem was found.
    pub fn is_empty(&self) -> bool {
        self.total_problems == 0
    }

    /// Whether `row` has a problem with `column`, for tests and callers that check one cell.
    pub fn has(&self, row: u64, column: &str) -> bool {
        self.problems.iter().any(|p| p.row == row && p.column == column)
    }
}

impl fmt::Display for BadRows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bad row{} ({} problem{}); nothing was imported:",
            self.bad_rows,
            plural(self.bad_rows),
            self.total_problems,
            plural(self.total_problems)
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        let unlisted = self.total_problems - self.problems.len() as u64;
        if unlisted > 0 {
            write!(f, "\n  ... and {unlisted} more problem{} not listed", plural(unlisted))?;
        }
        Ok(())
    }
}

/// `"s"` unless `n` is 1.
pub(crate) fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
