//! A report as CSV: UTF-8 with a byte-order mark (so office software reads it as UTF-8), one header row
//! (`征缴网点 collection_point`), one record per row. Money is yuan with two decimals, a flag `yes` or
//! `no`, nothing an empty field.

use super::{Cell, Report};

/// The UTF-8 byte-order mark.
pub(crate) const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Characters that make a spreadsheet read a text field as a formula; such a text is written with a
/// leading `'` so that a name or street in the roster can never run as one.
const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A text as a CSV field: a text that a spreadsheet would take for a formula gets a leading `'`.
fn field(cell: &Cell) -> String {
    match cell {
        Cell::Text(s) if s.starts_with(FORMULA_START) => format!("'{s}"),
        other => other.display(),
    }
}

impl Report {
    /// The report as CSV bytes (`text/csv; charset=utf-8`), beginning with a BOM.
    pub fn to_csv(&self) -> Vec<u8> {
        let mut out = BOM.to_vec();
        {
            let mut w =
                csv::WriterBuilder::new().flexible(true).terminator(csv::Terminator::CRLF).from_writer(&mut out);
            // With `flexible`, the only errors are the writer's I/O errors, and a Vec has none.
            let _ = w.write_record(self.columns.iter().map(super::Column::header));
            for row in &self.rows {
                let _ = w.write_record(row.iter().map(field));
            }
            let _ = w.flush();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused_and_numbers_kept() {
        assert_eq!(field(&Cell::text("=HYPERLINK(\"x\")")), "'=HYPERLINK(\"x\")");
        assert_eq!(field(&Cell::text("光明路")), "光明路");
        assert_eq!(field(&Cell::Money(crate::domain::Fen::from_fen(-150))), "-1.50");
    }
}
