//! The collector register (集中征缴工作人员登记表, the plan's attachment): its columns and the checks of
//! each row (roster-format.md).

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use crate::domain::{CollectionPointCode, IdNumber, PersonName, StaffNumber};
use crate::journal::Collector;

use super::header::{ColumnSpec, HeaderMap};
use super::report::{BadRows, Reason};
use super::roster::{parse_place, Cells};
use super::source::{Numbers, RowSource};

/// The register's columns, in the order of the field indices below.
pub(crate) const COLUMNS: [ColumnSpec; 10] = [
    ColumnSpec { zh: "序号", en: "no", required: false },
    ColumnSpec { zh: "代征点名称", en: "collection_point_name", required: true },
    ColumnSpec { zh: "代征点编码", en: "collection_point", required: true },
    ColumnSpec { zh: "代征人员姓名", en: "collector_name", required: true },
    ColumnSpec { zh: "工号", en: "staff_no", required: true },
    ColumnSpec { zh: "身份证号", en: "id_number", required: true },
    ColumnSpec { zh: "开户行名称", en: "bank_name", required: true },
    ColumnSpec { zh: "开户行", en: "bank_branch", required: true },
    ColumnSpec { zh: "银行账号", en: "bank_account", required: true },
    ColumnSpec { zh: "联系电话", en: "phone", required: true },
];
const NO: usize = 0;
const POINT_NAME: usize = 1;
const POINT: usize = 2;
const COLLECTOR_NAME: usize = 3;
const STAFF_NO: usize = 4;
const ID_NUMBER: usize = 5;
const BANK_NAME: usize = 6;
const BANK_BRANCH: usize = 7;
const BANK_ACCOUNT: usize = 8;
const PHONE: usize = 9;

/// Digits of a bank account number.
pub const BANK_ACCOUNT_DIGITS: std::ops::RangeInclusive<usize> = 12..=30;

/// Checks register rows one at a time, remembering keys (collection point, staff number: the journal's
/// key of a collector) to find duplicates.
pub(crate) struct CollectorChecker {
    map: HeaderMap,
    seen: HashMap<(CollectionPointCode, StaffNumber), u64>,
}

impl CollectorChecker {
    pub(crate) fn new(map: HeaderMap) -> CollectorChecker {
        CollectorChecker { map, seen: HashMap::new() }
    }

    /// Checks the source's current row; problems go to `bad`.
    pub(crate) fn check(&mut self, src: &dyn RowSource, bad: &mut BadRows) -> Option<Collector> {
        let row = src.row_number();
        let mut cells = Cells { src, map: &self.map, row, bad, ok: true };
        let no = cells.optional(NO, Numbers::Text, |s| s.parse::<u32>().map_err(|_| "expected a row number like 1"));
        let point_name = cells.required(POINT_NAME, Numbers::Text, parse_place);
        let point = cells.required(POINT, Numbers::Text, CollectionPointCode::parse);
        let name = cells.required(COLLECTOR_NAME, Numbers::Text, PersonName::parse);
        let staff_no = cells.required(STAFF_NO, Numbers::Text, StaffNumber::parse);
        let id_number = cells.required(ID_NUMBER, Numbers::Refuse, IdNumber::parse);
        let bank_name = cells.required(BANK_NAME, Numbers::Text, parse_place);
        let bank_branch = cells.required(BANK_BRANCH, Numbers::Text, parse_place);
        let bank_account = cells.required(BANK_ACCOUNT, Numbers::Text, parse_bank_account);
        let phone = cells.required(PHONE, Numbers::Text, parse_phone);
        if let (Some(point), Some(staff_no)) = (&point, &staff_no) {
            match self.seen.entry((point.clone(), staff_no.clone())) {
                Entry::Occupied(first) => {
                    let key = format!("staff number {} at collection point {}", staff_no.as_str(), point.as_str());
                    cells.problem(STAFF_NO, Reason::Duplicate { key, first_row: *first.get() });
                }
                Entry::Vacant(slot) => {
                    slot.insert(row);
                }
            }
        }
        if !cells.ok {
            return None;
        }
        Some(Collector {
            no: no?,
            collection_point_name: point_name?,
            collection_point: point?,
            name: name?,
            staff_no: staff_no?,
            id_number: id_number?,
            bank_name: bank_name?,
            bank_branch: bank_branch?,
            bank_account: bank_account?,
            phone: phone?,
        })
    }
}

/// Why a text is not a bank account number.
#[derive(Debug, thiserror::Error)]
#[error(
    "a bank account number has {} to {} digits (spaces between groups allowed), this one has {digits} digits{}",
    BANK_ACCOUNT_DIGITS.start(), BANK_ACCOUNT_DIGITS.end(),
    if *other { " and other characters" } else { "" }
)]
pub(crate) struct BankAccountError {
    digits: usize,
    other: bool,
}

/// 12..30 digits; spaces between digit groups (as printed on passbooks) are dropped.
fn parse_bank_account(s: &str) -> Result<String, BankAccountError> {
    let compact: String = s.chars().filter(|c| *c != ' ' && *c != '\u{3000}').collect();
    let digits = compact.chars().filter(char::is_ascii_digit).count();
    let other = digits != compact.chars().count();
    if other || !BANK_ACCOUNT_DIGITS.contains(&digits) {
        return Err(BankAccountError { digits, other });
    }
    Ok(compact)
}

/// Why a text is not a phone number.
#[derive(Debug, thiserror::Error)]
#[error(
    "expected an 11-digit mobile number starting with 1 (13812345678) or a landline with its area code \
     (0375-1234567 or 03751234567)"
)]
pub(crate) struct PhoneError;

/// An 11-digit mobile number starting with 1, or an area-code landline: 0, 2 or 3 more digits of area
/// code, an optional `-`, 7 or 8 digits. Returned as written (hyphen kept).
fn parse_phone(s: &str) -> Result<String, PhoneError> {
    let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let ok = if let Some((area, local)) = s.split_once('-') {
        area.starts_with('0')
            && (3..=4).contains(&area.len())
            && all_digits(area)
            && (7..=8).contains(&local.len())
            && all_digits(local)
    } else if s.starts_with('1') {
        s.len() == 11 && all_digits(s)
    } else {
        // Without the hyphen: 3- or 4-digit area code and 7 or 8 digits, 10 to 12 digits in all.
        s.starts_with('0') && (10..=12).contains(&s.len()) && all_digits(s)
    };
    if ok {
        Ok(s.to_owned())
    } else {
        Err(PhoneError)
    }
}
