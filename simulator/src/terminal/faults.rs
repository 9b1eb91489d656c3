//! Fault injection (故障注入) for a simulated terminal: what goes wrong on the line and in the terminal,
//! each at a configurable rate, drawn from a seeded generator so a run can be repeated with `--seed`.

use serde::{Deserialize, Serialize};

/// The most noise bytes put in front of one frame by the noise fault.
pub const MAX_NOISE_BURST: usize = 8;
/// The longest response delay the delay fault accepts, in milliseconds (10 minutes).
pub const MAX_DELAY_MS: u64 = 600_000;

/// The faults a terminal injects. Rates are probabilities from 0.0 (never) to 1.0 (every time). Each kind
/// has its own seeded random stream per terminal and draws from it exactly once per occasion, whatever
/// its rate, so a run repeats with the same seed and changing one rate leaves the other kinds'
/// decisions as they were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Per response frame: its first send goes out with a corrupted check; the link's resend after the
    /// ECR's NAK goes out intact.
    pub corrupt_check: f64,
    /// Per request frame delivered: its ACK (exactly that one, never an ENQ's) is not sent nor counted,
    /// so the ECR resends and the terminal's link suppresses the duplicate. (Should one input make the
    /// link answer a frame and something else at once, as when a broken frame's bytes are rescanned,
    /// the ACKs cannot be told apart and the fault is skipped; it is drawn all the same.) The terminal holds the request until that resend arrives (at most
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
    /// Per response frame, on its first send (not on the link's resends): a burst of noise bytes (never
    /// STX, ETX nor a control byte) goes out before it.
    pub noise: f64,
    /// Per response frame: once it is ACKed, the identical bytes go out a second time.
    pub duplicate: f64,
    /// Every response waits this long after processing (and storing) before it is sent, in
    /// milliseconds, at most [`MAX_DELAY_MS`]. A response already waiting follows a change: its wait is
    /// counted from the end of its processing with the new delay.
    pub delay_ms: u64,
}

/// A partial update of [`Faults`] (the body of `POST /terminals/{i}/faults` and `POST /faults`): fields
/// left out keep their value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultsPatch {
    /// New [`Faults::corrupt_check`].
    pub corrupt_check: Option<f64>,
    /// New [`Faults::swallow_ack`].
    pub swallow_ack: Option<f64>,
    /// New [`Faults::never_answer`].
    pub never_answer: Option<f64>,
    /// New [`Faults::approve_drop`].
    pub approve_drop: Option<f64>,
    /// New [`Faults::power_loss`].
    pub power_loss: Option<f64>,
    /// New [`Faults::noise`].
    pub noise: Option<f64>,
    /// New [`Faults::duplicate`].
    pub duplicate: Option<f64>,
    /// New [`Faults::delay_ms`].
    pub delay_ms: Option<u64>,
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

    /// These faults with the fields `patch` sets replaced (not checked: see [`Faults::validate`]).
    pub fn patched(&self, patch: &FaultsPatch) -> Faults {
        Faults {
            corrupt_check: patch.corrupt_check.unwrap_or(self.corrupt_check),
            swallow_ack: patch.swallow_ack.unwrap_or(self.swallow_ack),
            never_answer: patch.never_answer.unwrap_or(self.never_answer),
            approve_drop: patch.approve_drop.unwrap_or(self.approve_drop),
            power_loss: patch.power_loss.unwrap_or(self.power_loss),
            noise: patch.noise.unwrap_or(self.noise),
            duplicate: patch.duplicate.unwrap_or(self.duplicate),
            delay_ms: patch.delay_ms.unwrap_or(self.delay_ms),
        }
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

/// The faults drawn at a rate, one random stream each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultKind {
    CorruptCheck,
    SwallowAck,
    NeverAnswer,
    ApproveDrop,
    PowerLoss,
    Noise,
    Duplicate,
}

impl FaultKind {
    const ALL: [FaultKind; 7] = [
        FaultKind::CorruptCheck,
        FaultKind::SwallowAck,
        FaultKind::NeverAnswer,
        FaultKind::ApproveDrop,
        FaultKind::PowerLoss,
        FaultKind::Noise,
        FaultKind::Duplicate,
    ];

    /// The rate of this kind in `faults`.
    pub(crate) fn rate(self, faults: &Faults) -> f64 {
        match self {
            FaultKind::CorruptCheck => faults.corrupt_check,
            FaultKind::SwallowAck => faults.swallow_ack,
            FaultKind::NeverAnswer => faults.never_answer,
            FaultKind::ApproveDrop => faults.approve_drop,
            FaultKind::PowerLoss => faults.power_loss,
            FaultKind::Noise => faults.noise,
            FaultKind::Duplicate => faults.duplicate,
        }
    }
}

/// Draws fault decisions: one seeded stream per [`FaultKind`], and exactly one draw from it per occasion
/// whatever the rate (zero included), so a kind's decisions depend only on the seed and on how many
/// occasions of that kind came before, never on the other kinds or on their rates.
#[derive(Debug, Clone)]
pub(crate) struct Dice {
    streams: [fastrand::Rng; FaultKind::ALL.len()],
}

impl Dice {
    /// The streams of one terminal, from its fault seed ([`seeds`]).
    pub(crate) fn new(seed: u64) -> Self {
        Dice { streams: FaultKind::ALL.map(|kind| fastrand::Rng::with_seed(mix(seed ^ mix(kind as u64 + 1)))) }
    }

    /// One occasion of `kind`: true with probability `rate`.
    pub(crate) fn roll(&mut self, kind: FaultKind, rate: f64) -> bool {
        unit(self.draw(kind)) < rate
    }

    /// One occasion of the noise fault: with probability `rate`, a burst of 1..=[`MAX_NOISE_BURST`]
    /// printable ASCII bytes (none is STX, ETX or a control byte), made from the same single draw.
    pub(crate) fn noise(&mut self, rate: f64) -> Option<Vec<u8>> {
        let draw = self.draw(FaultKind::Noise);
        if unit(draw) >= rate {
            return None;
        }
        let mut burst = fastrand::Rng::with_seed(draw);
        let len = burst.usize(1..=MAX_NOISE_BURST);
        Some((0..len).map(|_| burst.u8(0x20..=0x7e)).collect())
    }

    fn draw(&mut self, kind: FaultKind) -> u64 {
        self.streams.get_mut(kind as usize).map_or(0, |rng| rng.u64(..))
    }
}

/// A draw as a number in [0, 1) (its top 53 bits).
fn unit(draw: u64) -> f64 {
    (draw >> 11) as f64 / (1u64 << 53) as f64
}

/// Splitmix-style spreading, so neighbouring terminals and streams do not correlate.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Seeds of terminal `index`: the engine's, and the one its fault streams derive from ([`Dice::new`]).
pub(crate) fn seeds(seed: u64, index: usize) -> (u64, u64) {
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
    fn a_patch_changes_only_the_fields_it_names() {
        let before = Faults { noise: 0.1, delay_ms: 5, ..Faults::NONE };
        let patch: FaultsPatch = serde_json::from_str(r#"{"duplicate":0.5}"#).unwrap_or_default();
        assert_eq!(before.patched(&patch), Faults { duplicate: 0.5, ..before });
        assert!(serde_json::from_str::<FaultsPatch>(r#"{"nosie":0.5}"#).is_err());
    }

    #[test]
    fn noise_holds_no_frame_or_control_byte() {
        let mut dice = Dice::new(7);
        for _ in 0..1000 {
            let burst = dice.noise(1.0).unwrap_or_default();
            assert!(!burst.is_empty() && burst.len() <= MAX_NOISE_BURST);
            assert!(burst.iter().all(|b| ![0x02, 0x03, 0x05, 0x06, 0x15].contains(b)));
        }
    }

    #[test]
    fn rate_one_always_and_zero_never() {
        let mut dice = Dice::new(1);
        assert!((0..100).all(|_| dice.roll(FaultKind::Duplicate, 1.0)));
        assert!((0..100).all(|_| !dice.roll(FaultKind::Duplicate, 0.0)));
        assert!((0..100).all(|_| dice.noise(0.0).is_none()));
    }

    #[test]
    fn each_kind_draws_once_per_occasion_from_its_own_stream() {
        let decisions = |other_rate: f64| {
            let mut dice = Dice::new(42);
            (0..200)
                .map(|_| {
                    // Another kind drawn in between, at whatever rate, must not shift this one.
                    dice.roll(FaultKind::Noise, other_rate);
                    dice.roll(FaultKind::CorruptCheck, other_rate);
                    dice.roll(FaultKind::Duplicate, 0.3)
                })
                .collect::<Vec<_>>()
        };
        let reference = decisions(0.0);
        assert_eq!(decisions(1.0), reference);
        assert_eq!(decisions(0.5), reference);
        let hits = reference.iter().filter(|&&hit| hit).count();
        assert!((30..=90).contains(&hits), "{hits} of 200 at 0.3");
        // A zero rate still draws: the next decision is the same as after a drawn one.
        let mut a = Dice::new(9);
        let mut b = Dice::new(9);
        a.roll(FaultKind::Duplicate, 0.0);
        b.roll(FaultKind::Duplicate, 1.0);
        assert_eq!(a.roll(FaultKind::Duplicate, 0.5), b.roll(FaultKind::Duplicate, 0.5));
    }
}
