//! Fault injection on the `/v1` API: what can go wrong, how often, and the seeded decisions.
//!
//! Every `/v1` request draws four numbers from one seeded generator, always in the same order
//! (unavailable, error, slow, drop) whether or not a fault is switched on, so the same seed and the same
//! sequence of requests give the same sequence of fault decisions. Precedence: outage window, then
//! `503`, then `500` (these answer before anything is read or stored), then the request is processed;
//! a slow answer waits after processing; a drop closes the connection after the entries are committed.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Longest `Retry-After` the simulator will advertise, in seconds.
pub const MAX_RETRY_AFTER_SECS: u32 = 3600;
/// Longest delay of a slow answer, in milliseconds.
pub const MAX_SLOW_MS: u64 = 600_000;
/// Longest outage window, in seconds (a week); longer requests are cut to it.
pub const MAX_OUTAGE_SECS: u64 = 7 * 24 * 3600;

/// Faults switched on, each with its rate (the chance per `/v1` request, 0.0..=1.0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerFaults {
    /// Chance of answering `503 Service Unavailable` with `Retry-After`, processing nothing.
    pub unavailable_rate: f64,
    /// The `Retry-After` seconds of those `503`s.
    pub retry_after_secs: u32,
    /// Chance of answering `500 Internal Server Error`, processing nothing.
    pub error_rate: f64,
    /// Chance of answering late: processed at once, answered after `slow_ms`.
    pub slow_rate: f64,
    /// Delay of a slow answer, in milliseconds.
    pub slow_ms: u64,
    /// Chance, on `POST /v1/entries`, of committing the entries and then closing the connection
    /// without any HTTP answer.
    pub drop_rate: f64,
}

impl Default for LedgerFaults {
    /// No faults; should one be switched on, `Retry-After: 1` and a 2-second delay.
    fn default() -> LedgerFaults {
        LedgerFaults {
            unavailable_rate: 0.0,
            retry_after_secs: 1,
            error_rate: 0.0,
            slow_rate: 0.0,
            slow_ms: 2000,
            drop_rate: 0.0,
        }
    }
}

impl LedgerFaults {
    /// Checks every rate and bound.
    pub fn check(&self) -> Result<(), FaultsError> {
        let rates = [
            ("unavailable_rate", self.unavailable_rate),
            ("error_rate", self.error_rate),
            ("slow_rate", self.slow_rate),
            ("drop_rate", self.drop_rate),
        ];
        for (field, value) in rates {
            if !(0.0..=1.0).contains(&value) {
                return Err(FaultsError::Rate { field, value });
            }
        }
        if self.retry_after_secs > MAX_RETRY_AFTER_SECS {
            return Err(FaultsError::Limit {
                field: "retry_after_secs",
                value: self.retry_after_secs.into(),
                max: MAX_RETRY_AFTER_SECS.into(),
            });
        }
        if self.slow_ms > MAX_SLOW_MS {
            return Err(FaultsError::Limit { field: "slow_ms", value: self.slow_ms, max: MAX_SLOW_MS });
        }
        Ok(())
    }

    /// These faults with the fields `patch` sets replaced.
    pub fn patched(&self, patch: &LedgerFaultsPatch) -> LedgerFaults {
        LedgerFaults {
            unavailable_rate: patch.unavailable_rate.unwrap_or(self.unavailable_rate),
            retry_after_secs: patch.retry_after_secs.unwrap_or(self.retry_after_secs),
            error_rate: patch.error_rate.unwrap_or(self.error_rate),
            slow_rate: patch.slow_rate.unwrap_or(self.slow_rate),
            slow_ms: patch.slow_ms.unwrap_or(self.slow_ms),
            drop_rate: patch.drop_rate.unwrap_or(self.drop_rate),
        }
    }
}

/// A partial update of [`LedgerFaults`] (the body of `POST /control/faults`): absent fields keep their
/// value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerFaultsPatch {
    /// New [`LedgerFaults::unavailable_rate`].
    pub unavailable_rate: Option<f64>,
    /// New [`LedgerFaults::retry_after_secs`].
    pub retry_after_secs: Option<u32>,
    /// New [`LedgerFaults::error_rate`].
    pub error_rate: Option<f64>,
    /// New [`LedgerFaults::slow_rate`].
    pub slow_rate: Option<f64>,
    /// New [`LedgerFaults::slow_ms`].
    pub slow_ms: Option<u64>,
    /// New [`LedgerFaults::drop_rate`].
    pub drop_rate: Option<f64>,
}

/// A fault setting out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FaultsError {
    /// A rate outside 0.0..=1.0 (or not a number).
    #[error("{field} = {value}: a rate must lie in 0.0..=1.0")]
    Rate {
        /// The rate's name.
        field: &'static str,
        /// The value refused.
        value: f64,
    },
    /// A value above its named limit.
    #[error("{field} = {value}: at most {max}")]
    Limit {
        /// The setting's name.
        field: &'static str,
        /// The value refused.
        value: u64,
        /// The limit.
        max: u64,
    },
}

/// An answer given before the request is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `503` because the outage window is open; `Retry-After` is the time left, rounded up.
    Outage {
        /// Seconds to advertise.
        retry_after: u32,
    },
    /// `503` drawn at `unavailable_rate`.
    Unavailable {
        /// Seconds to advertise.
        retry_after: u32,
    },
    /// `500` drawn at `error_rate`.
    Error,
}

/// What happens to one `/v1` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Answer at once without reading the request.
    pub(crate) refuse: Option<Refusal>,
    /// Answer after this delay.
    pub(crate) slow: Option<Duration>,
    /// Commit, then close the connection without an answer (POST /v1/entries only).
    pub(crate) drop: bool,
}

/// The faults in force, the outage window and the seeded generator, shared by all connections. The lock
/// is only ever held for a few plain statements, never across an `.await`.
#[derive(Debug)]
pub(crate) struct FaultState {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    faults: LedgerFaults,
    rng: fastrand::Rng,
    down_until: Option<Instant>,
}

impl FaultState {
    /// Faults already checked, drawn from a generator seeded with `seed`.
    pub(crate) fn new(faults: LedgerFaults, seed: u64) -> FaultState {
        FaultState { inner: Mutex::new(Inner { faults, rng: fastrand::Rng::with_seed(seed), down_until: None }) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding this lock cannot leave the plain fields half-written.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The faults in force.
    pub(crate) fn faults(&self) -> LedgerFaults {
        self.lock().faults.clone()
    }

    /// Replaces the faults in force after checking them.
    pub(crate) fn set(&self, faults: LedgerFaults) -> Result<(), FaultsError> {
        faults.check()?;
        self.lock().faults = faults;
        Ok(())
    }

    /// Applies a partial update after checking the result; returns the faults now in force.
    pub(crate) fn patch(&self, patch: &LedgerFaultsPatch) -> Result<LedgerFaults, FaultsError> {
        let mut inner = self.lock();
        let faults = inner.faults.patched(patch);
        faults.check()?;
        inner.faults = faults.clone();
        Ok(faults)
    }

    /// Starts an outage window of `length` (at most [`MAX_OUTAGE_SECS`]) from `now`; zero ends any
    /// outage.
    pub(crate) fn down_for(&self, now: Instant, length: Duration) {
        let length = length.min(Duration::from_secs(MAX_OUTAGE_SECS));
        self.lock().down_until = if length.is_zero() { None } else { now.checked_add(length) };
    }

    /// Time left in the outage window, if one is open at `now`.
    pub(crate) fn outage_left(&self, now: Instant) -> Option<Duration> {
        self.lock().down_until.and_then(|until| until.checked_duration_since(now)).filter(|left| !left.is_zero())
    }

    /// Draws the fate of one `/v1` request.
    pub(crate) fn plan(&self, now: Instant) -> Plan {
        let mut inner = self.lock();
        let Inner { faults, rng, down_until } = &mut *inner;
        let mut hit = |rate: f64| rng.f64() < rate;
        let (unavailable, error, slow, drop) =
            (hit(faults.unavailable_rate), hit(faults.error_rate), hit(faults.slow_rate), hit(faults.drop_rate));
        let outage = down_until.and_then(|until| until.checked_duration_since(now)).filter(|left| !left.is_zero());
        let refuse = match outage {
            Some(left) => Some(Refusal::Outage { retry_after: whole_seconds_up(left) }),
            None if unavailable => Some(Refusal::Unavailable { retry_after: faults.retry_after_secs }),
            None if error => Some(Refusal::Error),
            None => None,
        };
        Plan { refuse, slow: slow.then(|| Duration::from_millis(faults.slow_ms)), drop }
    }
}

/// `left` in whole seconds, rounded up, at least one.
fn whole_seconds_up(left: Duration) -> u32 {
    let secs = left.as_secs().saturating_add(u64::from(left.subsec_nanos() > 0)).max(1);
    u32::try_from(secs).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_plans() {
        let faults = LedgerFaults { error_rate: 0.5, drop_rate: 0.3, ..LedgerFaults::default() };
        let now = Instant::now();
        let run = |seed| {
            let state = FaultState::new(faults.clone(), seed);
            (0..64).map(|_| state.plan(now)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn rates_are_checked() {
        let bad = LedgerFaults { drop_rate: 1.5, ..LedgerFaults::default() };
        assert!(matches!(bad.check(), Err(FaultsError::Rate { field: "drop_rate", .. })));
        let nan = LedgerFaults { error_rate: f64::NAN, ..LedgerFaults::default() };
        assert!(nan.check().is_err());
    }
}
