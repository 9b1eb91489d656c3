//! Retry delays: exponential backoff with jitter, and the ledger's `Retry-After` honoured. Plain
//! arithmetic with the random source passed in, so tests can check the bounds.

use std::time::Duration;

use super::client::MAX_RETRY_AFTER;

/// Exponential backoff: after the n-th failure in a row the delay is drawn from
/// `[d/2, d]` with `d = initial * 2^(n-1)`, capped at `max` ("equal jitter": never zero, so a failing
/// ledger is not hammered, and spread so many daemons do not retry in step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first failure (before jitter).
    pub initial: Duration,
    /// The largest delay (before jitter).
    pub max: Duration,
}

impl Default for Backoff {
    /// 500 ms, doubling up to 60 s.
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(500), max: Duration::from_secs(60) }
    }
}

impl Backoff {
    /// The delay after `failures` failures in a row (at least 1), never shorter than `retry_after`
    /// (bounded by [`MAX_RETRY_AFTER`]).
    pub fn delay(&self, failures: u32, retry_after: Option<Duration>, rng: &mut fastrand::Rng) -> Duration {
        let exponent = failures.saturating_sub(1).min(30);
        let full = self.initial.saturating_mul(1u32 << exponent).min(self.max);
        let half = full / 2;
        let span = u64::try_from((full - half).as_millis()).unwrap_or(u64::MAX);
        let jittered = half + Duration::from_millis(rng.u64(0..=span));
        match retry_after {
            Some(asked) => jittered.max(asked.min(MAX_RETRY_AFTER)),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_jitter_within_bounds_and_honours_retry_after() {
        let b = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(2) };
        let mut rng = fastrand::Rng::with_seed(7);
        for n in 1..40 {
            let full = (Duration::from_millis(100) * 2u32.pow(n.min(20) - 1)).min(Duration::from_secs(2));
            for _ in 0..50 {
                let d = b.delay(n, None, &mut rng);
                assert!(d >= full / 2 && d <= full, "failure {n}: {d:?} outside [{:?}, {full:?}]", full / 2);
            }
        }
        assert!(b.delay(1, Some(Duration::from_secs(5)), &mut rng) >= Duration::from_secs(5));
        assert!(b.delay(1, Some(Duration::from_secs(999_999)), &mut rng) <= MAX_RETRY_AFTER);
    }
}
