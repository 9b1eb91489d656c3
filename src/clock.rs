//! The business clock (业务时钟): the one source of "now" for policy windows, ages and the day a
//! payment belongs to. Real time in production; for drills, tests and the demo (the 2020 plan's window
//! lies in the past) it starts at a configured instant and runs on from there.

use std::time::Instant;

use time::macros::offset;
use time::{Date, OffsetDateTime, UtcOffset};

/// China Standard Time, the offset of every business time.
pub const CST: UtcOffset = offset!(+8);

/// The business clock. Cheap to clone; clones share the same start.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    kind: Kind,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Real,
    Shifted { start: OffsetDateTime, at: Instant },
}

impl Clock {
    /// Real time.
    pub fn real() -> Clock {
        Clock { kind: Kind::Real }
    }

    /// A clock that reads `start` now and runs on with real elapsed time (monotonic, so a change of
    /// the system clock does not move it).
    pub fn starting_at(start: OffsetDateTime) -> Clock {
        Clock { kind: Kind::Shifted { start, at: Instant::now() } }
    }

    /// Whether this is real time.
    pub fn is_real(&self) -> bool {
        matches!(self.kind, Kind::Real)
    }

    /// Now, in UTC+8.
    pub fn now(&self) -> OffsetDateTime {
        let now = match self.kind {
            Kind::Real => OffsetDateTime::now_utc(),
            Kind::Shifted { start, at } => {
                let elapsed = time::Duration::try_from(at.elapsed()).unwrap_or(time::Duration::MAX);
                start.checked_add(elapsed).unwrap_or(start)
            }
        };
        now.to_offset(CST)
    }

    /// Today's date in UTC+8.
    pub fn today(&self) -> Date {
        self.now().date()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::real()
    }
}
