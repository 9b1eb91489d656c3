//! Reading a TOML document key by key, collecting every problem with its key path instead of stopping
//! at the first (serde's derive stops at the first error and cannot name all unknown keys).

use std::fmt;

use time::{Date, Month};
use toml::Value;

use crate::domain::Fen;

/// Longest piece of a bad value quoted back in a message.
const QUOTE_MAX: usize = 60;

/// One problem in a configuration or policy file: where (the key path, e.g. `terminals[1].transport`)
/// and what is wrong, with what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key path: dotted keys, `[i]` for array elements (0-based); empty for the whole file.
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// The problems found so far.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub(crate) Vec<Problem>);

impl Problems {
    pub(crate) fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { key: key.into(), message: message.into() });
    }
}

/// Parses TOML text into a table; a syntax error becomes one problem naming the line and column (the
/// offending line itself is not quoted: it may hold a secret).
pub(crate) fn parse_document(text: &str) -> Result<toml::Table, Problem> {
    text.parse::<toml::Table>().map_err(|e| {
        let at = e
            .span()
            .map(|span| {
                let before = text.get(..span.start).unwrap_or("");
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!(" at line {line}, column {column}")
            })
            .unwrap_or_default();
        Problem { key: String::new(), message: format!("not valid TOML{at}: {}", e.message().trim()) }
    })
}

/// A value quoted back in a message, shortened.
pub(crate) fn quote(s: &str) -> String {
    if s.chars().count() > QUOTE_MAX {
        format!("{:?}...", s.chars().take(QUOTE_MAX).collect::<String>())
    } else {
        format!("{s:?}")
    }
}

/// The kind of a value, for "got ..." (never the value itself: it may be a secret).
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// A table being read. Every key asked for is remembered, so [`finish`](Self::finish) can refuse the
/// rest as unknown and list the known ones.
pub(crate) struct Table<'a> {
    path: String,
    table: &'a toml::Table,
    known: Vec<&'static str>,
}

impl<'a> Table<'a> {
    /// The document's top level.
    pub(crate) fn root(table: &'a toml::Table) -> Table<'a> {
        Table { path: String::new(), table, known: Vec::new() }
    }

    /// The path of `key` in this table.
    pub(crate) fn key(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The table's own path.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The raw value of `key`, if present.
    pub(crate) fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        if !self.known.contains(&key) {
            self.known.push(key);
        }
        self.table.get(key)
    }

    /// Whether `key` is present (and marks it known).
    pub(crate) fn has(&mut self, key: &'static str) -> bool {
        self.get(key).is_some()
    }

    fn value(&mut self, key: &'static str, required: bool, expected: &str, p: &mut Problems) -> Option<&'a Value> {
        let v = self.get(key);
        if v.is_none() && required {
            p.push(self.key(key), format!("missing; expected {expected}"));
        }
        v
    }

    fn wrong(&self, key: &str, expected: &str, got: &Value, p: &mut Problems) {
        p.push(self.key(key), format!("expected {expected}, got {}", kind(got)));
    }

    /// A string.
    pub(crate) fn string(
        &mut self,
        key: &'static str,
        required: bool,
        expected: &str,
        p: &mut Problems,
    ) -> Option<&'a str> {
        match self.value(key, required, expected, p)? {
            Value::String(s) => Some(s),
            other => {
                self.wrong(key, expected, other, p);
                None
            }
        }
    }

    /// As [`parsed`](Self::parsed), for a value that may carry a secret (a URL with a password): its
    /// error gives the reason only, never the value.
    pub(crate) fn parsed_unquoted<T>(
        &mut self,
        key: &'static str,
        required: bool,
        expected: &str,
        p: &mut Problems,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        self.parse_with(key, required, expected, p, parse, false)
    }

    /// A string converted by `parse`; its error (a reason) is reported with the value quoted.
    pub(crate) fn parsed<T>(
        &mut self,
        key: &'static str,
        required: bool,
        expected: &str,
        p: &mut Problems,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        self.parse_with(key, required, expected, p, parse, true)
    }

    fn parse_with<T>(
        &mut self,
        key: &'static str,
        required: bool,
        expected: &str,
        p: &mut Problems,
        parse: impl FnOnce(&str) -> Result<T, String>,
        quote_value: bool,
    ) -> Option<T> {
        let s = self.string(key, required, expected, p)?;
        match parse(s) {
            Ok(v) => Some(v),
            Err(reason) if !quote_value => {
                p.push(self.key(key), format!("expected {expected}: {reason}"));
                None
            }
            Err(reason) => {
                let reason = if reason.is_empty() { String::new() } else { format!(" ({reason})") };
                p.push(self.key(key), format!("expected {expected}, got {}{reason}", quote(s)));
                None
            }
        }
    }

    /// An integer within `range`.
    pub(crate) fn integer(
        &mut self,
        key: &'static str,
        required: bool,
        range: std::ops::RangeInclusive<i64>,
        p: &mut Problems,
    ) -> Option<i64> {
        let expected = format!("an integer from {} to {}", range.start(), range.end());
        match self.value(key, required, &expected, p)? {
            Value::Integer(i) if range.contains(i) => Some(*i),
            Value::Integer(i) => {
                p.push(self.key(key), format!("expected {expected}, got {i}"));
                None
            }
            other => {
                self.wrong(key, &expected, other, p);
                None
            }
        }
    }

    /// A boolean.
    pub(crate) fn boolean(&mut self, key: &'static str, required: bool, p: &mut Problems) -> Option<bool> {
        match self.value(key, required, "true or false", p)? {
            Value::Boolean(b) => Some(*b),
            other => {
                self.wrong(key, "true or false", other, p);
                None
            }
        }
    }

    /// A calendar date: a TOML local date (`2020-09-20`) or a string of that form.
    pub(crate) fn date(&mut self, key: &'static str, required: bool, p: &mut Problems) -> Option<Date> {
        const EXPECTED: &str = "a date like 2020-09-20";
        let v = self.value(key, required, EXPECTED, p)?;
        let parsed = match v {
            Value::Datetime(dt) if dt.time.is_none() && dt.offset.is_none() => dt
                .date
                .and_then(|d| Date::from_calendar_date(i32::from(d.year), Month::try_from(d.month).ok()?, d.day).ok()),
            Value::String(s) => parse_date(s),
            _ => None,
        };
        if parsed.is_none() {
            let got = match v {
                Value::String(s) => quote(s),
                Value::Datetime(dt) => dt.to_string(),
                other => kind(other).to_owned(),
            };
            p.push(self.key(key), format!("expected {EXPECTED}, got {got}"));
        }
        parsed
    }

    /// Money in yuan: an integer (`280`) or a string with up to two decimals (`"280.50"`); never a float.
    pub(crate) fn money(&mut self, key: &'static str, required: bool, p: &mut Problems) -> Option<Fen> {
        let v = self.value(key, required, MONEY_EXPECTED, p)?;
        let k = self.key(key);
        money_value(&k, v, p)
    }

    /// A sub-table.
    pub(crate) fn table(&mut self, key: &'static str, required: bool, p: &mut Problems) -> Option<Table<'a>> {
        match self.value(key, required, "a table", p)? {
            Value::Table(t) => Some(Table { path: self.key(key), table: t, known: Vec::new() }),
            other => {
                self.wrong(key, "a table", other, p);
                None
            }
        }
    }

    /// An array (of anything).
    pub(crate) fn array(
        &mut self,
        key: &'static str,
        required: bool,
        expected: &str,
        p: &mut Problems,
    ) -> Option<&'a [Value]> {
        match self.value(key, required, expected, p)? {
            Value::Array(a) => Some(a),
            other => {
                self.wrong(key, expected, other, p);
                None
            }
        }
    }

    /// An array of tables (`[[key]]`), each with its path `key[i]`; elements that are not tables are
    /// reported.
    pub(crate) fn tables(&mut self, key: &'static str, required: bool, p: &mut Problems) -> Vec<Table<'a>> {
        let Some(items) = self.array(key, required, "an array of tables", p) else {
            return Vec::new();
        };
        let base = self.key(key);
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::Table(t) => out.push(Table { path: format!("{base}[{i}]"), table: t, known: Vec::new() }),
                other => p.push(format!("{base}[{i}]"), format!("expected a table, got {}", kind(other))),
            }
        }
        out
    }

    /// Reports every key of the table that was never asked for.
    pub(crate) fn finish(self, p: &mut Problems) {
        for key in self.table.keys() {
            if !self.known.contains(&key.as_str()) {
                let mut known = self.known.clone();
                known.sort_unstable();
                p.push(self.key(key), format!("unknown key; expected one of: {}", known.join(", ")));
            }
        }
    }
}

const MONEY_EXPECTED: &str = "an amount in yuan: an integer like 280 or a string like \"280.50\"";

/// Money at `key`: see [`Table::money`].
pub(crate) fn money_value(key: &str, v: &Value, p: &mut Problems) -> Option<Fen> {
    let parsed = match v {
        Value::Integer(i) if *i >= 0 => Fen::from_yuan(*i).ok_or_else(|| "too large".to_owned()),
        Value::Integer(i) => Err(format!("{i} is negative")),
        Value::String(s) => Fen::from_yuan_str(s).map_err(|e| e.to_string()),
        Value::Float(_) => Err("a float; write money as an integer or a string, never a float".to_owned()),
        other => Err(kind(other).to_owned()),
    };
    match parsed {
        Ok(f) => Some(f),
        Err(why) => {
            p.push(key, format!("expected {MONEY_EXPECTED}, got {why}"));
            None
        }
    }
}

/// `YYYY-MM-DD`.
pub(crate) fn parse_date(s: &str) -> Option<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s.trim(), &format).ok()
}
