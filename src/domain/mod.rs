//! Domain types, parsed once (解析一次): a value of one of these types has been checked, so the rest of
//! the daemon never holds an unchecked ID number, serial, amount or code.
//!
//! Every `parse` trims surrounding white space (spreadsheet cells often carry it) and refuses anything
//! else that does not fit; errors name what is wrong without echoing sensitive input.

mod collection_point;
mod hardship;
mod id_number;
mod insurance;
mod money;
mod pension_tier;
mod person_name;
mod serial;
mod staff_number;

pub use collection_point::{CollectionPointCode, CollectionPointCodeError};
pub use hardship::{Hardship, HardshipError};
pub use id_number::{IdNumber, IdNumberError};
pub use insurance::{Insurance, InsuranceError};
pub use money::{Fen, FenError};
pub use pension_tier::PensionTier;
pub use person_name::{PersonName, PersonNameError};
pub use serial::{CollectionSerial, CollectionSerialError};
pub use staff_number::{StaffNumber, StaffNumberError};

/// At most this many characters of a refused value are quoted back in an error: enough to find the
/// cell, too few to carry a whole ID number that landed in the wrong column.
const EXCERPT_CHARS: usize = 10;

/// A refused value as quoted in an error: its first [`EXCERPT_CHARS`] characters, `...` if cut.
pub(crate) fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(EXCERPT_CHARS).collect();
    if s.chars().nth(EXCERPT_CHARS).is_some() {
        out.push_str("...");
    }
    out
}
