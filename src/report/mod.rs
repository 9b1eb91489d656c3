//! The reports the people who run collection points use (docs/api.md, "Reports"), computed from the
//! journal with read-only queries ([`SqliteStore::query`]):
//!
//! - [`daily`] (日结): one business day's approved payments, voids, refunds and net, per collection
//!   point, insurance, channel and pension tier;
//! - [`commission`] (代征手续费): the policy's amount per person-time, per collecting unit and month,
//!   from forwarded payments net of reversals;
//! - [`settlement`] (结算): the stored terminal settlements, terminal against journal totals;
//! - [`ledger`] (入库): the forwarder's status and the outbox per collection point;
//! - [`unpaid`] (催缴清单): the unpaid lines of a collection point, ID numbers masked.
//!
//! Each is a [`Report`]: one table of typed cells (money in integer fen) with a summary and notes, which
//! renders as JSON ([`Report::to_json`], read back by [`Report::from_json`]), CSV with a UTF-8 BOM
//! ([`Report::to_csv`]), an XLSX workbook ([`Report::to_xlsx`]) and a text table
//! ([`Report::to_text`]). The CLI reads the JSON and renders it with the same code, so the API's CSV
//! and the CLI's CSV are the same bytes.
//!
//! Decisions (said in each report's notes too):
//! - **The day of a payment** is the local date (UTC+8) of its `created_at`: the moment the collector
//!   started it, a few seconds before the terminal approved it. A reversal's day is its own
//!   `created_at`'s.
//! - **The collection point** of a payment or reversal is its terminal's (as in the ledger entry); the
//!   collection service allows a line to be paid only on a terminal of its own point.
//! - **A sale counts** once the terminal approved it, whatever happened since (as the terminal counts
//!   it, and as settlement compares): a voided sale is a sale and a void.
//! - **Channel**: only `pos` has a source in the journal; cash collection is not recorded yet.
//! - **A person-time** (人次) is one payment: a person paying both insurances is two.

mod commission;
mod csv_out;
mod daily;
mod ledger;
mod settlement;
mod table;
mod text_out;
mod unpaid;
mod xlsx_out;

use std::fmt;

use rusqlite::Connection;
use time::{Date, Month};

use crate::domain::CollectionPointCode;
use crate::journal::{ReadError, SqliteStore};

pub use commission::commission;
pub use daily::daily;
pub use ledger::ledger;
pub use settlement::settlement;
pub use table::{Cell, CellKind, Column, Field, Report};
pub use unpaid::unpaid;

/// The most rows a report may have; past it the report is refused and asks for a narrower request
/// (e.g. one collection point).
pub const MAX_ROWS: usize = 200_000;

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// 日结: a business day's collections.
    Daily,
    /// 代征手续费: the commission per collecting unit and month.
    Commission,
    /// 结算: the terminal settlements.
    Settlement,
    /// 入库: the ledger forwarder.
    Ledger,
    /// 催缴清单: the unpaid lines.
    Unpaid,
}

impl Kind {
    /// Every kind, in the order of the documentation.
    pub const ALL: [Kind; 5] = [Kind::Daily, Kind::Commission, Kind::Settlement, Kind::Ledger, Kind::Unpaid];

    /// The kind named `name` (`daily`, `commission`, `settlement`, `ledger`, `unpaid`).
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Its name in the API and the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Daily => "daily",
            Kind::Commission => "commission",
            Kind::Settlement => "settlement",
            Kind::Ledger => "ledger",
            Kind::Unpaid => "unpaid",
        }
    }

    /// The query parameters it takes besides `format` (`collection_point` for all).
    pub const fn parameters(self) -> &'static [&'static str] {
        match self {
            Kind::Daily | Kind::Settlement => &["date", "collection_point"],
            Kind::Commission => &["month", "collection_point"],
            Kind::Ledger | Kind::Unpaid => &["collection_point"],
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A calendar month (`YYYY-MM`), for the commission report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YearMonth {
    year: i32,
    month: Month,
}

impl YearMonth {
    /// A month of a year between 1000 and 9999.
    pub fn new(year: i32, month: Month) -> Option<YearMonth> {
        (1000..=9999).contains(&year).then_some(YearMonth { year, month })
    }

    /// Parses `YYYY-MM`.
    pub fn parse(text: &str) -> Result<YearMonth, String> {
        let bad = || format!("{text:?} is not a month YYYY-MM");
        let (y, m) = text.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 || !y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month = m.parse::<u8>().ok().and_then(|m| Month::try_from(m).ok()).ok_or_else(bad)?;
        YearMonth::new(year, month).ok_or_else(bad)
    }

    /// The month of `date`.
    pub fn of(date: Date) -> YearMonth {
        YearMonth { year: date.year(), month: date.month() }
    }

    /// The year.
    pub fn year(self) -> i32 {
        self.year
    }

    /// The month.
    pub fn month(self) -> Month {
        self.month
    }

    /// The month after.
    pub fn next(self) -> YearMonth {
        match self.month {
            Month::December => YearMonth { year: self.year + 1, month: Month::January },
            m => YearMonth { year: self.year, month: m.next() },
        }
    }
}

impl fmt::Display for YearMonth {
    /// `2020-10`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, u8::from(self.month))
    }
}

/// `YYYY-MM-DD`.
pub(crate) fn day_text(date: Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}

/// The journal's times are RFC 3339 at +08:00, so a local day or month is a range of their text:
/// `[start, end)`.
pub(crate) fn day_range(date: Date) -> (String, String) {
    let next = date.next_day().map_or_else(|| "9999-99-99".to_owned(), day_text);
    (day_text(date), next)
}

/// `[start, end)` of a month, as [`day_range`].
pub(crate) fn month_range(month: YearMonth) -> (String, String) {
    (month.to_string(), month.next().to_string())
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The journal could not be read.
    #[error("the journal could not be read: {0}")]
    Journal(#[from] ReadError),
    /// More rows than [`MAX_ROWS`].
    #[error("the report would have more than {limit} rows; ask for one collection point")]
    TooLarge {
        /// [`MAX_ROWS`].
        limit: usize,
    },
    /// A sum that does not fit 64-bit fen (a corrupt journal).
    #[error("a total of the {what} does not fit 64-bit fen")]
    Overflow {
        /// What was summed.
        what: &'static str,
    },
}

/// Runs the queries of one report on a reader connection, in one read transaction, so every figure
/// of the report comes from the same snapshot of the journal.
pub(crate) async fn read<T, F>(store: &SqliteStore, f: F) -> Result<T, ReportError>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
{
    let value = store
        .query(move |conn| {
            // Dropped without a commit: a read transaction has nothing to keep, and a rollback ends it
            // whatever happened inside.
            let tx = conn.unchecked_transaction()?;
            f(&tx)
        })
        .await?;
    Ok(value)
}

/// The collection point a report is about, as its parameter (and its SQL filter) reads: `None`
/// (`null`, SQL `NULL`) for every point.
pub(crate) fn point_param(point: Option<&CollectionPointCode>) -> Option<String> {
    point.map(|p| p.as_str().to_owned())
}

/// Masks an ID number: the first 6 and the last 4 characters, the rest `*` (docs/api.md).
pub(crate) fn mask_id(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 10 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 10))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn months_parse_and_step() {
        let m = YearMonth::parse("2020-12").unwrap();
        assert_eq!((m.year(), m.month()), (2020, Month::December));
        assert_eq!(m.next().to_string(), "2021-01");
        assert_eq!(YearMonth::of(date!(2020 - 10 - 21)).to_string(), "2020-10");
        for bad in ["2020-13", "2020-1", "20-10", "2020/10", "2020-00", "abcd-ef", "2020-10-01"] {
            assert!(YearMonth::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_cover_the_local_day_and_month() {
        assert_eq!(day_range(date!(2020 - 10 - 31)), ("2020-10-31".to_owned(), "2020-11-01".to_owned()));
        let (from, to) = month_range(YearMonth::parse("2020-10").unwrap());
        let inside = "2020-10-31T23:59:59.999999+08:00";
        assert!(from.as_str() <= inside && inside < to.as_str());
        assert!("2020-11-01T00:00:00.000000+08:00" >= to.as_str());
    }

    #[test]
    fn id_numbers_are_masked() {
        assert_eq!(mask_id("41040219900101123X"), "410402********123X");
        assert_eq!(mask_id("short"), "*****");
    }

    #[test]
    fn kinds_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kind::parse("weekly"), None);
    }
}
