//! Fault injection (故障注入) for a simulated terminal: what goes wrong on the line and in the terminal,
//! each at a configurable rate, drawn from a seeded generator so a run can be repeated with `--seed`.

use serde::{Deserialize, Serialize};

/// The most noise bytes put in front of one frame by the noise fault.
pub const MAX_NOISE_BURST: usize = 8;
/// The longest response delay the delay fault accepts, in milliseconds (10 minutes).
pub const MAX_DELAY_MS: u64 = 600_000;

/// The faults a terminal injects. Rates are probabilities from 0.0 (never) to 1.0 (every time); each is
/// drawn independently per occasion from the terminal's seeded generator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Per response frame: its first send goes out with a corrupted check; the link's resend after the
    /// ECR's NAK goes out intact.
    pub corrupt_check: f64,
    /// Per request frame delivered: its ACK is not sent, so the ECR resends and the terminal's link
    /// suppresses the duplicate. The terminal holds the request until that resend arrives (at most
    /// [`SWALLOW_HOLD`](super::runtime::SWALLOW_HOLD)), so the ECR does not get the response first.
    pub swallow_ack: f64,
    /// Per request: ACKed, then neither processed nor answered (a QUERY for it later answers `25`).
    pub never_answer: f64,
    /// Per SALE: approved and stored, then the connection drops before the response is sent (money
    /// moved and the ECR did not hear it).
    pub approve_drop: f64,
    /// Per SALE: the power fails: the sale is not stored, the connection drops and the terminal comes
    /// back signed out (T4 until the next SIGN_IN).
    pub power_loss: f64,
    /// Per frame sent: a burst of noise bytes (never STX nor a control byte) goes out before it.
    pub noise: f64,
    /// Per response frame: once it is ACKed, the identical bytes go out a second time.
    pub duplicate: f64,
    /// Every response waits this long after processing before it is sent, in milliseconds.
    pub delay_ms: u64,
}

/// A fault setting out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FaultsError {
    /// A rate is not a number from 0.0 to 1.0.
    #[error("fault rate {name} = {value}: expected a number from 0.0 to 1.0")]
    Rate {
        /// The fault's name.
        name: &'static str,
        /// The value given.
        value: f64,
    },
    /// The delay is above [`MAX_DELAY_MS`].
    #[error("delay_ms = {value}: at most {max}")]
    Delay {
        /// The value given.
        value: u64,
        /// [`MAX_DELAY_MS`].
        max: u64,
    },
}

impl Faults {
    /// No faults at all.
    pub const NONE: Faults = Faults {
        corrupt_check: 0.0,
        swallow_ack: 0.0,
        never_answer: 0.0,
        approve_drop: 0.0,
        power_loss: 0.0,
        noise: 0.0,
        duplicate: 0.0,
        delay_ms: 0,
    };

    /// Every rate with its name, for checks and messages.
    pub fn rates(&self) -> [(&'static str, f64); 7] {
        [
            ("corrupt_check", self.corrupt_check),
            ("swallow_ack", self.swallow_ack),
            ("never_answer", self.never_answer),
            ("approve_drop", self.approve_drop),
            ("power_loss", self.power_loss),
            ("noise", self.noise),
            ("duplicate", self.duplicate),
        ]
    }

    /// Checks that every rate is from 0.0 to 1.0 and the delay within [`MAX_DELAY_MS`].
    pub fn validate(&self) -> Result<(), FaultsError> {
        for (name, value) in self.rates() {
            if !(0.0..=1.0).contains(&value) {
                return Err(FaultsError::Rate { name, value });
            }
        }
        if self.delay_ms > MAX_DELAY_MS {
            return Err(FaultsError::Delay { value: self.delay_ms, max: MAX_DELAY_MS });
        }
        Ok(())
    }
}

/// Faults injected so far, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FaultCounters {
    /// Response frames whose first send carried a corrupted check.
    pub corrupt_check: u64,
    /// Request frames whose ACK was swallowed.
    pub swallow_ack: u64,
    /// Requests ACKed and never answered.
    pub never_answer: u64,
    /// Sales approved and then dropped unanswered.
    pub approve_drop: u64,
    /// Sales lost to a power failure.
    pub power_loss: u64,
    /// Bursts of noise sent before a frame.
    pub noise: u64,
    /// Response frames sent a second time after their ACK.
    pub duplicate: u64,
    /// Responses held back by the response delay.
    pub delay: u64,
}

/// Draws fault decisions from a seeded generator.
#[derive(Debug, Clone)]
pub(crate) struct Dice {
    rng: fastrand::Rng,
}

impl Dice {
    pub(crate) fn new(seed: u64) -> Self {
        Dice { rng: fastrand::Rng::with_seed(seed) }
    }

    /// True with probability `rate`. A zero rate draws nothing, so it leaves the sequence unchanged.
    pub(crate) fn roll(&mut self, rate: f64) -> bool {
        rate > 0.0 && self.rng.f64() < rate
    }

    /// A burst of 1..=[`MAX_NOISE_BURST`] printable ASCII bytes: none is STX, ETX or a control byte.
    pub(crate) fn noise(&mut self) -> Vec<u8> {
        let len = self.rng.usize(1..=MAX_NOISE_BURST);
        (0..len).map(|_| self.rng.u8(0x20..=0x7e)).collect()
    }
}

/// Seeds of the independent random streams of terminal `index`: the engine's and the faults'.
pub(crate) fn seeds(seed: u64, index: usize) -> (u64, u64) {
    // Splitmix-style spreading so neighbouring terminals and the two streams do not correlate.
    let mix = |x: u64| {
        let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let base = mix(seed ^ mix(index as u64));
    (base, mix(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_outside_zero_to_one_are_refused() {
        let faults = Faults { noise: 1.5, ..Faults::NONE };
        assert_eq!(faults.validate(), Err(FaultsError::Rate { name: "noise", value: 1.5 }));
        let faults = Faults { duplicate: f64::NAN, ..Faults::NONE };
        assert!(faults.validate().is_err());
        assert!(Faults { power_loss: 1.0, ..Faults::NONE }.validate().is_ok());
    }

    #[test]
    fn noise_holds_no_frame_or_control_byte() {
        let mut dice = Dice::new(7);
        for _ in 0..1000 {
            let burst = dice.noise();
            assert!(!burst.is_empty() && burst.len() <= MAX_NOISE_BURST);
            assert!(burst.iter().all(|b| ![0x02, 0x03, 0x05, 0x06, 0x15].contains(b)));
        }
    }

    #[test]
    fn rate_one_always_and_zero_never() {
        let mut dice = Dice::new(1);
        assert!((0..100).all(|_| dice.roll(1.0)));
        assert!((0..100).all(|_| !dice.roll(0.0)));
    }
}
