//! Money: integer fen (分), never a float.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

/// An amount of money in fen (分, 1/100 yuan). Parsers accept only non-negative amounts; arithmetic
/// is checked, and a difference may be negative (reconciliation).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct Fen(i64);

/// Why a text or decimal is not an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FenError {
    /// Nothing was given.
    #[error("the amount is empty")]
    Empty,
    /// Not of the form `280`, `280.5` or `280.50`.
    #[error("expected an amount in yuan like 280 or 280.50 (digits, at most two decimals, no sign), got {0:?}")]
    Format(String),
    /// More than two decimals (a fraction of a fen).
    #[error("an amount has at most two decimals (fen), got {0}")]
    TooPrecise(String),
    /// A negative amount.
    #[error("the amount is negative: {0}")]
    Negative(String),
    /// Does not fit 64-bit fen.
    #[error("the amount is too large: {0}")]
    Overflow(String),
}

impl Fen {
    /// Zero.
    pub const ZERO: Fen = Fen(0);

    /// An amount given in fen.
    pub const fn from_fen(fen: i64) -> Fen {
        Fen(fen)
    }

    /// Whole yuan, `None` on overflow.
    pub const fn from_yuan(yuan: i64) -> Option<Fen> {
        match yuan.checked_mul(100) {
            Some(f) => Some(Fen(f)),
            None => None,
        }
    }

    /// Parses yuan as written in a roster or a file: `280`, `280.5`, `280.50` (surrounding white space
    /// trimmed). No sign, no exponent, no thousands separator, at most two decimals; full-width digits
    /// are refused.
    pub fn from_yuan_str(input: &str) -> Result<Fen, FenError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(FenError::Empty);
        }
        let shown = || super::excerpt(s);
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (s, None),
        };
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || frac.is_some_and(|f| !digits(f)) {
            return Err(FenError::Format(shown()));
        }
        let frac = frac.unwrap_or("");
        if frac.len() > 2 {
            return Err(FenError::TooPrecise(shown()));
        }
        let overflow = || FenError::Overflow(shown());
        let mut fen: i64 = 0;
        for b in whole.bytes() {
            fen = fen.checked_mul(10).and_then(|f| f.checked_add(i64::from(b - b'0'))).ok_or_else(overflow)?;
        }
        let mut cents: i64 = 0;
        for b in frac.bytes().chain(std::iter::repeat(b'0')).take(2) {
            cents = cents * 10 + i64::from(b - b'0');
        }
        fen.checked_mul(100).and_then(|f| f.checked_add(cents)).map(Fen).ok_or_else(overflow)
    }

    /// Converts a decimal amount of yuan; refuses negative amounts and fractions of a fen.
    pub fn from_decimal(yuan: Decimal) -> Result<Fen, FenError> {
        if yuan.is_sign_negative() && !yuan.is_zero() {
            return Err(FenError::Negative(super::excerpt(&yuan.to_string())));
        }
        let fen = yuan
            .checked_mul(Decimal::ONE_HUNDRED)
            .ok_or_else(|| FenError::Overflow(super::excerpt(&yuan.to_string())))?;
        if !fen.fract().is_zero() {
            return Err(FenError::TooPrecise(super::excerpt(&yuan.to_string())));
        }
        i64::try_from(fen.trunc()).map(Fen).map_err(|_| FenError::Overflow(super::excerpt(&yuan.to_string())))
    }

    /// The amount as a decimal number of yuan with two decimals.
    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.0, 2)
    }

    /// The amount in fen.
    pub const fn as_fen(self) -> i64 {
        self.0
    }

    /// Yuan with two decimals: `280.00`, `-1.50`.
    pub fn to_yuan_string(self) -> String {
        self.to_string()
    }

    /// `self + other`, `None` on overflow.
    pub const fn checked_add(self, other: Fen) -> Option<Fen> {
        match self.0.checked_add(other.0) {
            Some(f) => Some(Fen(f)),
            None => None,
        }
    }

    /// `self - other` (may be negative), `None` on overflow.
    pub const fn checked_sub(self, other: Fen) -> Option<Fen> {
        match self.0.checked_sub(other.0) {
            Some(f) => Some(Fen(f)),
            None => None,
        }
    }

    /// `self * n`, `None` on overflow (e.g. the commission for `n` person-times).
    pub const fn checked_mul(self, n: i64) -> Option<Fen> {
        match self.0.checked_mul(n) {
            Some(f) => Some(Fen(f)),
            None => None,
        }
    }

    /// True for an amount above zero.
    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }
}

impl FromStr for Fen {
    type Err = FenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Fen::from_yuan_str(s)
    }
}

impl fmt::Display for Fen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}
