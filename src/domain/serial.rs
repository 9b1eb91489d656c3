//! 征集流水号: the collection serial of a contribution line.

use std::fmt;
use std::str::FromStr;

/// A collection serial (征集流水号): 1..=32 characters of `[0-9A-Za-z-]`, assigned by the
/// social-security or medical-insurance department to each contribution line; unique within a year and
/// insurance.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct CollectionSerial(String);

/// Why a text is not a collection serial.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CollectionSerialError {
    /// Nothing was given.
    #[error("the collection serial is empty")]
    Empty,
    /// Longer than [`CollectionSerial::MAX_LEN`] characters.
    #[error("a collection serial has at most {max} characters, this one has {found}")]
    TooLong {
        /// Characters found.
        found: usize,
        /// The limit.
        max: usize,
    },
    /// A character outside `[0-9A-Za-z-]`.
    #[error("character {position} of the collection serial is not a letter, digit or '-'")]
    Character {
        /// 1-based position.
        position: usize,
    },
}

impl CollectionSerial {
    /// The most characters of a collection serial.
    pub const MAX_LEN: usize = 32;

    /// Parses a serial; surrounding white space is trimmed, case is kept.
    pub fn parse(input: &str) -> Result<CollectionSerial, CollectionSerialError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(CollectionSerialError::Empty);
        }
        let found = s.chars().count();
        if found > Self::MAX_LEN {
            return Err(CollectionSerialError::TooLong { found, max: Self::MAX_LEN });
        }
        if let Some(i) = s.chars().position(|c| !(c.is_ascii_alphanumeric() || c == '-')) {
            return Err(CollectionSerialError::Character { position: i + 1 });
        }
        Ok(CollectionSerial(s.to_owned()))
    }

    /// The serial.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CollectionSerial {
    type Err = CollectionSerialError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CollectionSerial::parse(s)
    }
}

impl fmt::Display for CollectionSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
