//! A report as an XLSX workbook (rust_xlsxwriter): the table on the first sheet, named after the
//! report, with a bold frozen header row; then a sheet `about` with the title, the parameters, the
//! summary and the notes.
//!
//! Money cells are numbers with the format `0.00`, so a spreadsheet can add them up. A spreadsheet
//! number is a binary float: the value written is the integer fen divided by 100 (exact to the fen for
//! any amount below 2^53 fen), and the fen are the figures of record.

use rust_decimal::prelude::ToPrimitive;
use rust_xlsxwriter::{Format, Workbook, Worksheet, XlsxError};

use super::{Cell, Report};

/// A spreadsheet holds at most this many rows.
const SHEET_ROWS: usize = 1_048_576;

fn write_cell(sheet: &mut Worksheet, row: u32, col: u16, cell: &Cell, money: &Format) -> Result<(), XlsxError> {
    match cell {
        Cell::Empty => {}
        Cell::Text(s) => {
            sheet.write_string(row, col, s)?;
        }
        Cell::Count(n) => match n.to_f64() {
            Some(x) => {
                sheet.write_number(row, col, x)?;
            }
            None => {
                sheet.write_string(row, col, n.to_string())?;
            }
        },
        Cell::Money(f) => match f.to_decimal().to_f64() {
            Some(x) => {
                sheet.write_number_with_format(row, col, x, money)?;
            }
            None => {
                sheet.write_string(row, col, f.to_yuan_string())?;
            }
        },
        Cell::Flag(_) => {
            sheet.write_string(row, col, cell.display())?;
        }
    }
    Ok(())
}

fn index<T: TryFrom<usize>>(i: usize) -> Result<T, XlsxError> {
    T::try_from(i).map_err(|_| XlsxError::RowColumnLimitError)
}

impl Report {
    /// The report as the bytes of an XLSX workbook.
    pub fn to_xlsx(&self) -> Result<Vec<u8>, XlsxError> {
        if self.rows.len() >= SHEET_ROWS {
            return Err(XlsxError::RowColumnLimitError);
        }
        let mut book = Workbook::new();
        let bold = Format::new().set_bold();
        let money = Format::new().set_num_format("0.00");
        let sheet = book.add_worksheet();
        sheet.set_name(self.kind.as_str())?;
        for (c, column) in self.columns.iter().enumerate() {
            sheet.write_string_with_format(0, index(c)?, column.header(), &bold)?;
        }
        for (r, row) in self.rows.iter().enumerate() {
            for (c, cell) in row.iter().enumerate() {
                write_cell(sheet, index(r + 1)?, index(c)?, cell, &money)?;
            }
        }
        sheet.set_freeze_panes(1, 0)?;
        sheet.autofit();

        let about = book.add_worksheet();
        about.set_name("about")?;
        about.write_string_with_format(0, 0, &self.title, &bold)?;
        let mut r: u32 = 1;
        for (name, value) in &self.params {
            about.write_string(r, 0, name)?;
            about.write_string(r, 1, value.as_deref().unwrap_or("all"))?;
            r += 1;
        }
        for f in &self.summary {
            about.write_string(r, 0, f.column.header())?;
            write_cell(about, r, 1, &f.value, &money)?;
            r += 1;
        }
        for note in &self.notes {
            about.write_string(r, 0, "note")?;
            about.write_string(r, 1, note)?;
            r += 1;
        }
        about.autofit();
        book.save_to_buffer()
    }
}
