//! 征缴网点编码: the code of a collection point.

use std::fmt;
use std::str::FromStr;

/// The code of a collection point (集中征缴网点 / 代征点编码): 1..=32 characters of `[0-9A-Za-z_-]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct CollectionPointCode(String);

/// Why a text is not a collection point code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CollectionPointCodeError {
    /// Nothing was given.
    #[error("the collection point code is empty")]
    Empty,
    /// Longer than [`CollectionPointCode::MAX_LEN`] characters.
    #[error("a collection point code has at most {max} characters, this one has {found}")]
    TooLong {
        /// Characters found.
        found: usize,
        /// The limit.
        max: usize,
    },
    /// A character outside `[0-9A-Za-z_-]`.
    #[error("character {position} of the collection point code is not a letter, digit, '_' or '-'")]
    Character {
        /// 1-based position.
        position: usize,
    },
}

impl CollectionPointCode {
    /// The most characters of a collection point code.
    pub const MAX_LEN: usize = 32;

    /// Parses a code; surrounding white space is trimmed.
    pub fn parse(input: &str) -> Result<CollectionPointCode, CollectionPointCodeError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(CollectionPointCodeError::Empty);
        }
        let found = s.chars().count();
        if found > Self::MAX_LEN {
            return Err(CollectionPointCodeError::TooLong { found, max: Self::MAX_LEN });
        }
        if let Some(i) = s.chars().position(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
            return Err(CollectionPointCodeError::Character { position: i + 1 });
        }
        Ok(CollectionPointCode(s.to_owned()))
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CollectionPointCode {
    type Err = CollectionPointCodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CollectionPointCode::parse(s)
    }
}

impl fmt::Display for CollectionPointCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
