//! 缴费档次: a pension contribution tier.

use std::fmt;

use super::Fen;

/// A pension contribution amount that is one of the policy's tiers (缴费档次). Only
/// [`Policy::pension_tier`](crate::policy::Policy::pension_tier) makes one, so holding a `PensionTier`
/// means the amount was checked against the policy in force.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct PensionTier(Fen);

impl PensionTier {
    /// Wraps an amount already found in the policy's tier list.
    pub(crate) const fn checked(amount: Fen) -> PensionTier {
        PensionTier(amount)
    }

    /// The amount.
    pub const fn amount(self) -> Fen {
        self.0
    }
}

impl fmt::Display for PensionTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
