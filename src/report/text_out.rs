//! A report as a text table for the terminal: the title, the parameters, the table with aligned
//! columns (numbers to the right; a Chinese character takes two columns of the terminal), the summary
//! and the notes.

use std::fmt::Write as _;

use super::{Cell, CellKind, Report};

/// The columns of a terminal a character takes: 2 for East Asian wide and full-width characters, 0 for
/// control characters, else 1.
fn char_width(c: char) -> usize {
    let u = u32::from(c);
    if c.is_control() {
        0
    } else if matches!(u,
        0x1100..=0x115F | 0x2E80..=0x303E | 0x3041..=0x33FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6 | 0x20000..=0x2FFFD | 0x30000..=0x3FFFD)
    {
        2
    } else {
        1
    }
}

/// The width of a text on a terminal.
pub(crate) fn width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

/// A cell's text for the terminal: control characters blanked.
fn shown(cell: &Cell) -> String {
    cell.display().chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

fn pad(out: &mut String, text: &str, to: usize, right: bool) {
    let fill = " ".repeat(to.saturating_sub(width(text)));
    if right {
        out.push_str(&fill);
        out.push_str(text);
    } else {
        out.push_str(text);
        out.push_str(&fill);
    }
}

impl Report {
    /// The report as text for a terminal, ending with a newline.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.title);
        let params: Vec<String> =
            self.params.iter().map(|(k, v)| format!("{k} {}", v.as_deref().unwrap_or("all"))).collect();
        if !params.is_empty() {
            let _ = writeln!(out, "{}", params.join("  "));
        }
        out.push('\n');
        if self.rows.is_empty() {
            out.push_str("(no rows)\n");
        } else {
            let texts: Vec<Vec<String>> = self.rows.iter().map(|r| r.iter().map(shown).collect()).collect();
            let widths: Vec<usize> = self
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    texts.iter().filter_map(|r| r.get(i)).map(|t| width(t)).max().unwrap_or(0).max(width(&c.key))
                })
                .collect();
            let right: Vec<bool> =
                self.columns.iter().map(|c| matches!(c.kind, CellKind::Count | CellKind::Money)).collect();
            let mut line = String::new();
            for (i, c) in self.columns.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                pad(&mut line, &c.key, widths[i], right[i]);
            }
            let _ = writeln!(out, "{}", line.trim_end());
            for row in &texts {
                let mut line = String::new();
                for (i, t) in row.iter().enumerate() {
                    if i > 0 {
                        line.push_str("  ");
                    }
                    pad(&mut line, t, widths.get(i).copied().unwrap_or(0), right.get(i).copied().unwrap_or(false));
                }
                let _ = writeln!(out, "{}", line.trim_end());
            }
        }
        if !self.summary.is_empty() {
            out.push('\n');
            let w = self.summary.iter().map(|f| width(&f.column.key)).max().unwrap_or(0);
            for f in &self.summary {
                let mut line = String::new();
                pad(&mut line, &f.column.key, w, false);
                let _ = writeln!(out, "{line}  {}", shown(&f.value));
            }
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                let _ = writeln!(out, "note: {note}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_takes_two_columns() {
        assert_eq!(width("张三 ab"), 7);
        assert_eq!(width("２８０"), 6);
    }
}
