//! 困难类别: the hardship category civil affairs (民政) reports.

use std::fmt;
use std::str::FromStr;

/// A resident's hardship category, from the civil-affairs lists; finance pays matching funds for their
/// medical premiums, so the roster's amount due is already the personal share.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub enum Hardship {
    /// No category (an empty cell).
    #[default]
    None,
    /// 低保: minimum-living-allowance recipient.
    Dibao,
    /// 特困: extreme-poverty support recipient.
    Tekun,
}

/// Why a text is not a hardship category.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HardshipError {
    /// None of the accepted values.
    #[error("expected an empty cell, 低保 or 特困, got {0:?}")]
    Unknown(String),
}

impl Hardship {
    /// Parses an empty (or blank) cell, `低保` or `特困`; the storage codes of [`code`](Self::code) are
    /// accepted too.
    pub fn parse(input: &str) -> Result<Hardship, HardshipError> {
        match input.trim() {
            "" | "none" => Ok(Hardship::None),
            "低保" | "dibao" => Ok(Hardship::Dibao),
            "特困" | "tekun" => Ok(Hardship::Tekun),
            other => Err(HardshipError::Unknown(super::excerpt(other))),
        }
    }

    /// The stable storage code: `none`, `dibao` or `tekun`.
    pub const fn code(self) -> &'static str {
        match self {
            Hardship::None => "none",
            Hardship::Dibao => "dibao",
            Hardship::Tekun => "tekun",
        }
    }

    /// The roster's Chinese value: empty, `低保` or `特困`.
    pub const fn zh(self) -> &'static str {
        match self {
            Hardship::None => "",
            Hardship::Dibao => "低保",
            Hardship::Tekun => "特困",
        }
    }
}

impl FromStr for Hardship {
    type Err = HardshipError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Hardship::parse(s)
    }
}

impl fmt::Display for Hardship {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}
