//! 险种: which of the two insurances a line or payment is for.

use std::fmt;
use std::str::FromStr;

/// One of the two residents' insurances (城乡居民"两险").
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum Insurance {
    /// 城乡居民基本养老保险, basic pension insurance.
    Pension,
    /// 城乡居民基本医疗保险, basic medical insurance.
    Medical,
}

/// Why a text is not an insurance kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InsuranceError {
    /// Neither of the accepted names.
    #[error("expected 养老 / pension or 医疗 / medical, got {0:?}")]
    Unknown(String),
}

impl Insurance {
    /// Both kinds.
    pub const ALL: [Insurance; 2] = [Insurance::Pension, Insurance::Medical];

    /// Parses `养老` / `pension` or `医疗` / `medical` (surrounding white space trimmed; the English names
    /// in any case).
    pub fn parse(input: &str) -> Result<Insurance, InsuranceError> {
        let s = input.trim();
        match s {
            "养老" => Ok(Insurance::Pension),
            "医疗" => Ok(Insurance::Medical),
            _ if s.eq_ignore_ascii_case("pension") => Ok(Insurance::Pension),
            _ if s.eq_ignore_ascii_case("medical") => Ok(Insurance::Medical),
            _ => Err(InsuranceError::Unknown(super::excerpt(s))),
        }
    }

    /// The stable code used in storage and on the wire to the ledger: `pension` or `medical`.
    pub const fn code(self) -> &'static str {
        match self {
            Insurance::Pension => "pension",
            Insurance::Medical => "medical",
        }
    }

    /// The Chinese name of the roster: `养老` or `医疗`.
    pub const fn zh(self) -> &'static str {
        match self {
            Insurance::Pension => "养老",
            Insurance::Medical => "医疗",
        }
    }
}

impl FromStr for Insurance {
    type Err = InsuranceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Insurance::parse(s)
    }
}

impl fmt::Display for Insurance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}
