//! How values are stored: times, content fingerprints, and reading stored text back into checked types.

use time::format_description::FormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

use super::super::error::StorageError;
use super::super::writer::Shared;
use crate::clock::CST;

/// Stored times: RFC 3339 at +08:00 with microseconds, fixed width, so text order is time order.
const STAMP: &[FormatItem<'static>] = format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6][offset_hour sign:mandatory]:[offset_minute]"
);

/// Times sent to the ledger (`occurred_at`): RFC 3339 at +08:00, whole seconds.
const SECONDS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory]:[offset_minute]");

/// A time as stored: `2020-10-21T10:15:30.123456+08:00`.
pub(crate) fn stamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(CST);
    t.format(STAMP).unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// A time to whole seconds: `2020-10-21T10:15:30+08:00`.
pub(crate) fn stamp_seconds(t: OffsetDateTime) -> String {
    let t = t.to_offset(CST);
    t.format(SECONDS).unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// FNV-1a, 64 bits: a fingerprint of a row's content (stable across builds and platforms, unlike
/// `std`'s hasher). Not a defence against a forger: imports decide "unchanged" by comparing the fields
/// themselves; the fingerprint is stored for quick comparisons by people and other tools.
pub(crate) struct Fingerprint(u64);

impl Fingerprint {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    pub(crate) fn new() -> Fingerprint {
        Fingerprint(Self::OFFSET)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    /// Adds one field; absent and empty differ, and field boundaries count (length-prefixed).
    pub(crate) fn field(mut self, value: Option<&str>) -> Fingerprint {
        match value {
            None => self.bytes(&[0]),
            Some(v) => {
                self.bytes(&[1]);
                self.bytes(&(v.len() as u64).to_le_bytes());
                self.bytes(v.as_bytes());
            }
        }
        self
    }

    /// `fnv1a64:` and 16 hex digits.
    pub(crate) fn finish(self) -> String {
        format!("fnv1a64:{:016x}", self.0)
    }
}

/// Trims a free-text field; blank becomes absent.
pub(crate) fn text(value: &Option<String>) -> Option<String> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

/// Reads a stored value back through its checked type's parser.
pub(crate) fn parse<T, E>(
    shared: &Shared,
    table: &'static str,
    key: &str,
    column: &'static str,
    value: &str,
    parser: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, StorageError> {
    parser(value).map_err(|_| StorageError::BadRow { path: shared.path.clone(), table, key: key.to_owned(), column })
}
