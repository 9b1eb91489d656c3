//! 工号: a collector's staff number.

use std::fmt;
use std::str::FromStr;

/// A collector's staff number (工号): 1..=8 printable ASCII characters without spaces. It travels in
/// the terminal protocol's 8-byte operator field, so it must fit there.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct StaffNumber(String);

/// Why a text is not a staff number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StaffNumberError {
    /// Nothing was given.
    #[error("the staff number is empty")]
    Empty,
    /// Longer than [`StaffNumber::MAX_LEN`] characters.
    #[error("a staff number has at most {max} characters (the terminal's operator field), this one has {found}")]
    TooLong {
        /// Characters found.
        found: usize,
        /// The limit.
        max: usize,
    },
    /// A character that is not printable ASCII, or a space.
    #[error("character {position} of the staff number is not printable ASCII without spaces")]
    Character {
        /// 1-based position.
        position: usize,
    },
}

impl StaffNumber {
    /// The most bytes of a staff number: the width of the terminal protocol's operator field.
    pub const MAX_LEN: usize = 8;

    /// Parses a staff number; surrounding white space is trimmed.
    pub fn parse(input: &str) -> Result<StaffNumber, StaffNumberError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(StaffNumberError::Empty);
        }
        let found = s.chars().count();
        if found > Self::MAX_LEN {
            return Err(StaffNumberError::TooLong { found, max: Self::MAX_LEN });
        }
        if let Some(i) = s.chars().position(|c| !c.is_ascii_graphic()) {
            return Err(StaffNumberError::Character { position: i + 1 });
        }
        Ok(StaffNumber(s.to_owned()))
    }

    /// The staff number.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for StaffNumber {
    type Err = StaffNumberError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StaffNumber::parse(s)
    }
}

impl fmt::Display for StaffNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
