//! A report as data: typed columns, rows of typed cells, a summary and notes; and its JSON form, which
//! the API sends and the CLI reads back.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::Kind;
use crate::domain::Fen;

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CellKind {
    /// Words, codes, dates.
    Text,
    /// A whole number (a count, seconds).
    Count,
    /// Money in fen, shown as yuan with two decimals (may be negative: a net).
    Money,
    /// Yes or no.
    Flag,
}

impl CellKind {
    /// Its name in the JSON (`text`, `count`, `money`, `flag`).
    pub const fn as_str(self) -> &'static str {
        match self {
            CellKind::Text => "text",
            CellKind::Count => "count",
            CellKind::Money => "money",
            CellKind::Flag => "flag",
        }
    }

    fn parse(name: &str) -> Option<CellKind> {
        [CellKind::Text, CellKind::Count, CellKind::Money, CellKind::Flag].into_iter().find(|k| k.as_str() == name)
    }
}

/// A column: its key (the JSON field, snake_case English), its Chinese title and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The key in the JSON rows, e.g. `approved_total`.
    pub key: String,
    /// The Chinese title, e.g. `收款金额`.
    pub title: String,
    /// What its cells hold.
    pub kind: CellKind,
}

impl Column {
    /// A column.
    pub fn new(key: &str, title: &str, kind: CellKind) -> Column {
        Column { key: key.to_owned(), title: title.to_owned(), kind }
    }

    /// The header of CSV and XLSX: the Chinese title and the key, `收款金额 approved_total`.
    pub fn header(&self) -> String {
        if self.title.is_empty() {
            self.key.clone()
        } else {
            format!("{} {}", self.title, self.key)
        }
    }
}

/// One value of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cell {
    /// Nothing (JSON `null`, an empty CSV field).
    Empty,
    /// Words.
    Text(String),
    /// A whole number.
    Count(i64),
    /// Money.
    Money(Fen),
    /// Yes or no.
    Flag(bool),
}

impl Cell {
    /// A text cell.
    pub fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }

    /// A text cell, or empty.
    pub fn opt_text(s: Option<String>) -> Cell {
        s.map_or(Cell::Empty, Cell::Text)
    }

    /// The count it holds.
    pub fn as_count(&self) -> Option<i64> {
        match self {
            Cell::Count(n) => Some(*n),
            _ => None,
        }
    }

    /// The money it holds.
    pub fn as_money(&self) -> Option<Fen> {
        match self {
            Cell::Money(f) => Some(*f),
            _ => None,
        }
    }

    /// The text it holds.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Cell::Text(s) => Some(s),
            _ => None,
        }
    }

    /// As CSV and the text table show it: yuan with two decimals, `yes`/`no`, empty for nothing.
    pub fn display(&self) -> String {
        match self {
            Cell::Empty => String::new(),
            Cell::Text(s) => s.clone(),
            Cell::Count(n) => n.to_string(),
            Cell::Money(f) => f.to_yuan_string(),
            Cell::Flag(true) => "yes".to_owned(),
            Cell::Flag(false) => "no".to_owned(),
        }
    }

    /// Its JSON: money as a yuan string (`"280.00"`), counts as numbers.
    pub fn to_json(&self) -> Value {
        match self {
            Cell::Empty => Value::Null,
            Cell::Text(s) => json!(s),
            Cell::Count(n) => json!(n),
            Cell::Money(f) => json!(f.to_yuan_string()),
            Cell::Flag(b) => json!(b),
        }
    }

    fn from_json(kind: CellKind, value: &Value) -> Result<Cell, String> {
        match (kind, value) {
            (_, Value::Null) => Ok(Cell::Empty),
            (CellKind::Text, Value::String(s)) => Ok(Cell::Text(s.clone())),
            (CellKind::Count, Value::Number(n)) => n.as_i64().map(Cell::Count).ok_or_else(|| format!("{n}")),
            (CellKind::Money, Value::String(s)) => parse_signed_yuan(s).map(Cell::Money),
            (CellKind::Flag, Value::Bool(b)) => Ok(Cell::Flag(*b)),
            (kind, other) => Err(format!("{other} is not a {} value", kind.as_str())),
        }
    }
}

/// Yuan with an optional minus sign: `-280.00`.
pub(crate) fn parse_signed_yuan(text: &str) -> Result<Fen, String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let fen = Fen::from_yuan_str(digits).map_err(|e| e.to_string())?;
    if negative {
        Fen::ZERO.checked_sub(fen).ok_or_else(|| format!("{text:?} does not fit"))
    } else {
        Ok(fen)
    }
}

/// A figure of the summary: a column's description and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Its key, title and kind.
    pub column: Column,
    /// Its value.
    pub value: Cell,
}

impl Field {
    /// A field.
    pub fn new(key: &str, title: &str, value: Cell) -> Field {
        let kind = match &value {
            Cell::Count(_) => CellKind::Count,
            Cell::Money(_) => CellKind::Money,
            Cell::Flag(_) => CellKind::Flag,
            Cell::Empty | Cell::Text(_) => CellKind::Text,
        };
        Field { column: Column::new(key, title, kind), value }
    }
}

/// A report: one table, a summary and notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Which report.
    pub kind: Kind,
    /// Its title, Chinese and English: `日结 daily collection report`.
    pub title: String,
    /// The parameters it was made for (`None`: not given, e.g. every collection point).
    pub params: BTreeMap<String, Option<String>>,
    /// How its figures are decided, in words.
    pub notes: Vec<String>,
    /// The table's columns.
    pub columns: Vec<Column>,
    /// The table's rows, each with one cell per column.
    pub rows: Vec<Vec<Cell>>,
    /// Figures about the whole report.
    pub summary: Vec<Field>,
}

impl Report {
    /// The index of the column with this key.
    pub fn column(&self, key: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.key == key)
    }

    /// The cell of row `row` in the column with this key.
    pub fn get(&self, row: usize, key: &str) -> Option<&Cell> {
        let col = self.column(key)?;
        self.rows.get(row)?.get(col)
    }

    /// The summary figure with this key.
    pub fn summary_value(&self, key: &str) -> Option<&Cell> {
        self.summary.iter().find(|f| f.column.key == key).map(|f| &f.value)
    }

    /// A file name for it: `daily-2020-10-21-WD-DX-001.csv` (the parameters given, in order).
    pub fn file_name(&self, extension: &str) -> String {
        let mut name = self.kind.as_str().to_owned();
        for value in self.params.values().flatten() {
            name.push('-');
            name.extend(value.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }));
        }
        format!("{name}.{extension}")
    }

    /// The JSON the API answers:
    /// `{"report", "title", "params", "notes", "columns": [{"key", "title", "kind"}], "rows": [{key:
    /// value}], "summary": [{"key", "title", "kind", "value"}]}`.
    pub fn to_json(&self) -> Value {
        let column = |c: &Column| json!({"key": c.key, "title": c.title, "kind": c.kind.as_str()});
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let obj: Map<String, Value> =
                    self.columns.iter().zip(row).map(|(c, cell)| (c.key.clone(), cell.to_json())).collect();
                Value::Object(obj)
            })
            .collect();
        let summary: Vec<Value> = self
            .summary
            .iter()
            .map(|f| {
                let mut v = column(&f.column);
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("value".to_owned(), f.value.to_json());
                }
                v
            })
            .collect();
        json!({
            "report": self.kind.as_str(),
            "title": self.title,
            "params": self.params,
            "notes": self.notes,
            "columns": self.columns.iter().map(column).collect::<Vec<_>>(),
            "rows": rows,
            "summary": summary,
        })
    }

    /// Reads the JSON of [`to_json`](Self::to_json) back; the error names what is wrong.
    pub fn from_json(value: &Value) -> Result<Report, String> {
        let field = |name: &str| value.get(name).ok_or_else(|| format!("no {name:?}"));
        let text = |v: &Value, what: &str| v.as_str().map(str::to_owned).ok_or_else(|| format!("{what}: not a string"));
        let name = text(field("report")?, "report")?;
        let kind = Kind::parse(&name).ok_or_else(|| format!("report: unknown kind {name:?}"))?;
        let title = text(field("title")?, "title")?;
        let mut params = BTreeMap::new();
        for (k, v) in field("params")?.as_object().ok_or("params: not an object")? {
            let v = match v {
                Value::Null => None,
                other => Some(text(other, "params")?),
            };
            params.insert(k.clone(), v);
        }
        let notes = field("notes")?
            .as_array()
            .ok_or("notes: not an array")?
            .iter()
            .map(|n| text(n, "notes"))
            .collect::<Result<Vec<_>, _>>()?;
        let read_column = |c: &Value| -> Result<Column, String> {
            let key = text(c.get("key").unwrap_or(&Value::Null), "column key")?;
            let title = text(c.get("title").unwrap_or(&Value::Null), "column title")?;
            let kind_name = text(c.get("kind").unwrap_or(&Value::Null), "column kind")?;
            let kind =
                CellKind::parse(&kind_name).ok_or_else(|| format!("column {key}: unknown kind {kind_name:?}"))?;
            Ok(Column { key, title, kind })
        };
        let columns: Vec<Column> = field("columns")?
            .as_array()
            .ok_or("columns: not an array")?
            .iter()
            .map(read_column)
            .collect::<Result<_, _>>()?;
        let mut rows = Vec::new();
        for (i, row) in field("rows")?.as_array().ok_or("rows: not an array")?.iter().enumerate() {
            let obj = row.as_object().ok_or_else(|| format!("row {i}: not an object"))?;
            let cells = columns
                .iter()
                .map(|c| {
                    Cell::from_json(c.kind, obj.get(&c.key).unwrap_or(&Value::Null))
                        .map_err(|e| format!("row {i}, {}: {e}", c.key))
                })
                .collect::<Result<Vec<_>, _>>()?;
            rows.push(cells);
        }
        let mut summary = Vec::new();
        for f in field("summary")?.as_array().ok_or("summary: not an array")? {
            let column = read_column(f)?;
            let value = Cell::from_json(column.kind, f.get("value").unwrap_or(&Value::Null))
                .map_err(|e| format!("summary {}: {e}", column.key))?;
            summary.push(Field { column, value });
        }
        Ok(Report { kind, title, params, notes, columns, rows, summary })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            kind: Kind::Daily,
            title: "日结 daily collection report".to_owned(),
            params: [("date".to_owned(), Some("2020-10-21".to_owned())), ("collection_point".to_owned(), None)]
                .into_iter()
                .collect(),
            notes: vec!["a note".to_owned()],
            columns: vec![
                Column::new("point", "征缴网点", CellKind::Text),
                Column::new("n", "笔数", CellKind::Count),
                Column::new("net", "净额", CellKind::Money),
                Column::new("ok", "平衡", CellKind::Flag),
            ],
            rows: vec![
                vec![Cell::text("WD-001"), Cell::Count(3), Cell::Money(Fen::from_fen(-28_050)), Cell::Flag(true)],
                vec![Cell::Empty, Cell::Count(0), Cell::Money(Fen::ZERO), Cell::Flag(false)],
            ],
            summary: vec![Field::new("total", "合计", Cell::Money(Fen::from_fen(123)))],
        }
    }

    #[test]
    fn json_round_trips() {
        let r = sample();
        let v = r.to_json();
        assert_eq!(v["rows"][0]["net"], json!("-280.50"));
        assert_eq!(v["params"]["collection_point"], Value::Null);
        assert_eq!(Report::from_json(&v).unwrap(), r);
        assert_eq!(r.file_name("csv"), "daily-2020-10-21.csv");
    }

    #[test]
    fn signed_yuan() {
        assert_eq!(parse_signed_yuan("-0.05"), Ok(Fen::from_fen(-5)));
        assert_eq!(parse_signed_yuan("12.30"), Ok(Fen::from_fen(1230)));
        assert!(parse_signed_yuan("--1").is_err());
    }
}
