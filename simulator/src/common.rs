//! Small pieces both simulators use.

use time::macros::offset;
use time::UtcOffset;

/// China Standard Time, UTC+8: the terminals' local time and the ledger's business day.
pub const LOCAL_OFFSET: UtcOffset = offset!(+8);

/// Parses a fault rate for the command line: a number from 0.0 to 1.0.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!("{s:?} is not a rate from 0.0 to 1.0")),
    }
}
