//! 姓名: a person's name.

use std::fmt;
use std::str::FromStr;

/// A person's name (姓名): trimmed, 1..=30 bytes when encoded in GB18030, no control characters.
/// [`Debug`](fmt::Debug) prints `PersonName(..)` so names stay out of debug logs; `Display` and
/// [`as_str`](Self::as_str) give the name for receipts and screens.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PersonName(String);

/// Why a text is not a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PersonNameError {
    /// Nothing but white space.
    #[error("the name is empty")]
    Empty,
    /// Too long in GB18030.
    #[error("a name has at most {max} bytes in GB18030 ({} Chinese characters), this one has {found}", max / 2)]
    TooLong {
        /// Bytes found.
        found: usize,
        /// The limit.
        max: usize,
    },
    /// A control character.
    #[error("character {position} of the name is a control character")]
    Control {
        /// 1-based position.
        position: usize,
    },
    /// A character GB18030 (as the terminals encode it) has no bytes for.
    #[error("character {position} of the name cannot be written in GB18030")]
    Unencodable {
        /// 1-based position.
        position: usize,
    },
}

impl PersonName {
    /// The most bytes of a name encoded in GB18030 (15 Chinese characters; the terminal memo's limit).
    pub const MAX_GB18030_BYTES: usize = 30;

    /// Parses a name; surrounding white space is trimmed.
    pub fn parse(input: &str) -> Result<PersonName, PersonNameError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(PersonNameError::Empty);
        }
        if let Some(i) = s.chars().position(char::is_control) {
            return Err(PersonNameError::Control { position: i + 1 });
        }
        let mut found = 0;
        for (i, c) in s.chars().enumerate() {
            let mut buf = [0u8; 4];
            let (bytes, _, unmappable) = encoding_rs::GB18030.encode(c.encode_utf8(&mut buf));
            if unmappable {
                return Err(PersonNameError::Unencodable { position: i + 1 });
            }
            found += bytes.len();
        }
        if found > Self::MAX_GB18030_BYTES {
            return Err(PersonNameError::TooLong { found, max: Self::MAX_GB18030_BYTES });
        }
        Ok(PersonName(s.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PersonName {
    type Err = PersonNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PersonName::parse(s)
    }
}

impl fmt::Display for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PersonName(..)")
    }
}
