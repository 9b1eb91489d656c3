//! 公民身份号码: the resident ID number of GB 11643-1999.

use std::fmt;
use std::str::FromStr;

use time::{Date, Month};

/// Characters of an ID number.
const LEN: usize = 18;
/// ISO 7064 MOD 11-2 weights of the first 17 digits (2^(17-i) mod 11).
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// The check character for each remainder of the weighted sum mod 11.
const CHECK: [u8; 11] = *b"10X98765432";

/// A resident ID number (公民身份号码, GB 11643-1999), checked: 18 characters, a region code of the
/// right shape, a real birth date and a matching ISO 7064 MOD 11-2 check character.
///
/// The number is personal data: [`Display`](fmt::Display) and [`Debug`](fmt::Debug) print only the
/// masked form (`110105********002X`), and there is deliberately no `Serialize`: storage and the ledger
/// take the full number explicitly with [`as_str`](Self::as_str).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdNumber {
    /// 18 ASCII characters: 17 digits and a digit or upper-case `X`.
    number: String,
    birth_date: Date,
}

/// Why a text is not an ID number. No variant carries the number itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdNumberError {
    /// Nothing was given.
    #[error("the ID number is empty")]
    Empty,
    /// A 15-digit number of the old (pre-1999) scheme.
    #[error("15-digit ID numbers (pre-1999) are not accepted; ask for the 18-digit number")]
    FifteenDigit,
    /// Not 18 characters.
    #[error("an ID number has 18 characters, this one has {found}")]
    Length {
        /// Characters found.
        found: usize,
    },
    /// A character other than a digit (or `X` in the last place).
    #[error("character {position} of the ID number is not a digit{}", if *position == 18 { " or X" } else { "" })]
    Character {
        /// 1-based position of the offending character.
        position: usize,
    },
    /// The region code (characters 1..6) cannot be one: it must start with 1..8.
    #[error("the region code (characters 1-6) is not a valid code: it must start with a digit from 1 to 8")]
    Region,
    /// Characters 7..14 are not a real date.
    #[error("the birth date (characters 7-14) is not a real date")]
    BirthDate,
    /// The check character does not match the other 17.
    #[error("the check character (character 18) does not match the others (ISO 7064 MOD 11-2): a digit was probably mistyped")]
    CheckDigit,
}

impl IdNumber {
    /// Parses an ID number. Surrounding white space is trimmed; a lower-case `x` and full-width digits
    /// (`０`..`９`, `Ｘ`, `ｘ`) are normalised to ASCII.
    pub fn parse(input: &str) -> Result<IdNumber, IdNumberError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(IdNumberError::Empty);
        }
        let mut chars = Vec::with_capacity(LEN);
        for c in trimmed.chars() {
            chars.push(normalise(c));
            if chars.len() > LEN {
                break;
            }
        }
        let count = trimmed.chars().count();
        if count == 15 && chars.iter().all(|c| c.is_some_and(|b| b.is_ascii_digit())) {
            return Err(IdNumberError::FifteenDigit);
        }
        if count != LEN {
            return Err(IdNumberError::Length { found: count });
        }
        let mut bytes = [0u8; LEN];
        for (i, c) in chars.iter().enumerate() {
            let ok = match c {
                Some(b) if b.is_ascii_digit() => true,
                Some(b'X') => i == LEN - 1,
                _ => false,
            };
            match c {
                Some(b) if ok => bytes[i] = *b,
                _ => return Err(IdNumberError::Character { position: i + 1 }),
            }
        }
        if !(b'1'..=b'8').contains(&bytes[0]) {
            return Err(IdNumberError::Region);
        }
        let birth_date = birth_date(&bytes[6..14]).ok_or(IdNumberError::BirthDate)?;
        let sum: u32 = WEIGHTS.iter().zip(&bytes[..17]).map(|(w, d)| w * u32::from(d - b'0')).sum();
        // sum % 11 < 11 always.
        if CHECK.get((sum % 11) as usize) != Some(&bytes[17]) {
            return Err(IdNumberError::CheckDigit);
        }
        let number = bytes.iter().map(|&b| char::from(b)).collect();
        Ok(IdNumber { number, birth_date })
    }

    /// The full number. Only for storage and the ledger: anything shown or logged uses
    /// [`masked`](Self::masked) (or `Display`).
    pub fn as_str(&self) -> &str {
        &self.number
    }

    /// The birth date (characters 7..14).
    pub fn birth_date(&self) -> Date {
        self.birth_date
    }

    /// The first 6 characters, `********`, the last 4: `110105********002X`.
    pub fn masked(&self) -> String {
        let (head, tail) = (&self.number[..6], &self.number[14..]);
        format!("{head}********{tail}")
    }

    /// Age in completed years on `date` (0 before birth). Someone born on 29 February turns a year
    /// older on 1 March in common years.
    pub fn age_on(&self, date: Date) -> u32 {
        let b = self.birth_date;
        let mut years = date.year() - b.year();
        if (u8::from(date.month()), date.day()) < (u8::from(b.month()), b.day()) {
            years -= 1;
        }
        u32::try_from(years).unwrap_or(0)
    }
}

/// A character mapped to ASCII: full-width digits and `X`, lower-case `x`; `None` for anything else
/// that is not ASCII.
fn normalise(c: char) -> Option<u8> {
    match c {
        '０'..='９' => u8::try_from(u32::from(c) - u32::from('０')).ok().map(|d| b'0' + d),
        'x' | 'Ｘ' | 'ｘ' => Some(b'X'),
        _ if c.is_ascii() => u8::try_from(c).ok(),
        _ => None,
    }
}

fn birth_date(digits: &[u8]) -> Option<Date> {
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        digits.get(r)?.iter().try_fold(0u32, |acc, d| d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0')))
    };
    let year = i32::try_from(num(0..4)?).ok()?;
    let month = Month::try_from(u8::try_from(num(4..6)?).ok()?).ok()?;
    let day = u8::try_from(num(6..8)?).ok()?;
    Date::from_calendar_date(year, month, day).ok()
}

impl FromStr for IdNumber {
    type Err = IdNumberError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IdNumber::parse(s)
    }
}

impl fmt::Display for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdNumber({})", self.masked())
    }
}
