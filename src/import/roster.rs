//! The roster (参保底册 / 征缴计划清单): its columns and the checks of each row (roster-format.md).

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use crate::domain::{CollectionPointCode, CollectionSerial, Fen, Hardship, IdNumber, Insurance, PersonName};
use crate::journal::RosterLine;

use super::header::{ColumnSpec, HeaderMap};
use super::report::{BadRows, Reason, RowProblem};
use super::source::{Numbers, RowSource};

/// The roster's columns, in the order of the field indices below.
pub(crate) const COLUMNS: [ColumnSpec; 10] = [
    ColumnSpec { zh: "征集流水号", en: "collection_serial", required: true },
    ColumnSpec { zh: "险种", en: "insurance", required: true },
    ColumnSpec { zh: "身份证号", en: "id_number", required: true },
    ColumnSpec { zh: "姓名", en: "name", required: true },
    ColumnSpec { zh: "年度", en: "year", required: true },
    // Required for medical lines only: checked per row.
    ColumnSpec { zh: "应缴金额", en: "amount_due", required: false },
    ColumnSpec { zh: "困难类别", en: "hardship", required: false },
    ColumnSpec { zh: "征缴网点", en: "collection_point", required: true },
    ColumnSpec { zh: "街道", en: "street", required: false },
    ColumnSpec { zh: "社区村", en: "community", required: false },
];
const SERIAL: usize = 0;
const INSURANCE: usize = 1;
const ID_NUMBER: usize = 2;
const NAME: usize = 3;
const YEAR: usize = 4;
const AMOUNT_DUE: usize = 5;
const HARDSHIP: usize = 6;
const COLLECTION_POINT: usize = 7;
const STREET: usize = 8;
const COMMUNITY: usize = 9;

/// Roster years accepted: the schemes postdate 2000, and a four-digit year keeps typos out.
pub const YEARS: std::ops::RangeInclusive<u16> = 2000..=2099;
/// Characters of a street or community name at most.
pub const MAX_PLACE_CHARS: usize = 100;

/// Checks rows one at a time, remembering keys to find duplicates within the file.
pub(crate) struct RosterChecker {
    map: HeaderMap,
    /// (year, insurance, serial) → the first row holding it.
    seen: HashMap<(u16, Insurance, CollectionSerial), u64>,
}

impl RosterChecker {
    pub(crate) fn new(map: HeaderMap) -> RosterChecker {
        RosterChecker { map, seen: HashMap::new() }
    }

    /// Checks the source's current row; problems go to `bad`.
    pub(crate) fn check(&mut self, src: &dyn RowSource, bad: &mut BadRows) -> Option<RosterLine> {
        let row = src.row_number();
        let mut cells = Cells { src, map: &self.map, row, bad, ok: true };
        let serial = cells.required(SERIAL, Numbers::Text, CollectionSerial::parse);
        let insurance = cells.required(INSURANCE, Numbers::Text, Insurance::parse);
        let id_number = cells.required(ID_NUMBER, Numbers::Refuse, IdNumber::parse);
        let name = cells.required(NAME, Numbers::Text, PersonName::parse);
        let year = cells.required(YEAR, Numbers::Text, parse_year);
        let amount_due = cells.optional(AMOUNT_DUE, Numbers::Text, Fen::from_yuan_str);
        let hardship = cells.optional(HARDSHIP, Numbers::Text, Hardship::parse);
        let collection_point = cells.required(COLLECTION_POINT, Numbers::Text, CollectionPointCode::parse);
        let street = cells.optional(STREET, Numbers::Text, parse_place);
        let community = cells.optional(COMMUNITY, Numbers::Text, parse_place);
        if insurance == Some(Insurance::Medical) && matches!(amount_due, Some(None)) {
            cells.problem(AMOUNT_DUE, Reason::MedicalAmountMissing);
        }
        if let (Some(serial), Some(insurance), Some(year)) = (&serial, insurance, year) {
            match self.seen.entry((year, insurance, serial.clone())) {
                Entry::Occupied(first) => {
                    let key = format!("collection serial {} ({} {year})", serial.as_str(), insurance_zh(insurance));
                    cells.problem(SERIAL, Reason::Duplicate { key, first_row: *first.get() });
                }
                Entry::Vacant(slot) => {
                    slot.insert(row);
                }
            }
        }
        if !cells.ok {
            return None;
        }
        Some(RosterLine {
            serial: serial?,
            insurance: insurance?,
            id_number: id_number?,
            name: name?,
            year: i32::from(year?),
            amount_due: amount_due?,
            hardship: hardship?.unwrap_or_default(),
            collection_point: collection_point?,
            street: street?,
            community: community?,
        })
    }
}

/// The cells of one row, and the problems found in them.
pub(crate) struct Cells<'a> {
    pub(crate) src: &'a dyn RowSource,
    pub(crate) map: &'a HeaderMap,
    pub(crate) row: u64,
    pub(crate) bad: &'a mut BadRows,
    /// No problem so far.
    pub(crate) ok: bool,
}

impl Cells<'_> {
    pub(crate) fn problem(&mut self, field: usize, reason: Reason) {
        self.ok = false;
        self.bad.push(RowProblem { row: self.row, column: self.map.name(field).to_owned(), reason });
    }

    /// A field that must have a value.
    pub(crate) fn required<T, E: std::fmt::Display>(
        &mut self,
        field: usize,
        numbers: Numbers,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        match self.optional(field, numbers, parse) {
            Some(Some(v)) => Some(v),
            Some(None) => {
                self.problem(field, Reason::Empty);
                None
            }
            None => None,
        }
    }

    /// A field that may be empty: `Some(None)` when it is, `None` after a problem.
    pub(crate) fn optional<T, E: std::fmt::Display>(
        &mut self,
        field: usize,
        numbers: Numbers,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<Option<T>> {
        let Some(col) = self.map.column(field) else {
            return Some(None);
        };
        let result = match self.src.cell(col).text(numbers) {
            Ok(t) if t.is_empty() => return Some(None),
            Ok(t) => parse(&t).map_err(|e| Reason::Invalid(e.to_string())),
            Err(reason) => Err(reason),
        };
        match result {
            Ok(v) => Some(Some(v)),
            Err(reason) => {
                self.problem(field, reason);
                None
            }
        }
    }
}

/// The insurance as the roster writes it in Chinese.
pub(crate) fn insurance_zh(insurance: Insurance) -> &'static str {
    match insurance {
        Insurance::Pension => "养老",
        Insurance::Medical => "医疗",
    }
}

/// Why a text is not a roster year.
#[derive(Debug, thiserror::Error)]
#[error("expected a year like 2020 (from {} to {})", YEARS.start(), YEARS.end())]
pub(crate) struct YearError;

fn parse_year(s: &str) -> Result<u16, YearError> {
    if s.len() != 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(YearError);
    }
    s.parse::<u16>().ok().filter(|y| YEARS.contains(y)).ok_or(YearError)
}

/// Why a text is not a street or community name.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PlaceError {
    #[error("at most {MAX_PLACE_CHARS} characters")]
    TooLong,
    #[error("contains a control character")]
    Control,
}

/// A free-text place name: bounded, no control characters.
pub(crate) fn parse_place(s: &str) -> Result<String, PlaceError> {
    if s.chars().count() > MAX_PLACE_CHARS {
        return Err(PlaceError::TooLong);
    }
    if s.chars().any(char::is_control) {
        return Err(PlaceError::Control);
    }
    Ok(s.to_owned())
}
