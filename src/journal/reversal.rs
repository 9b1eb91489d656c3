//! Reversals of approved payments: a void (撤销, same batch, before settlement) or a refund (退货), each
//! a terminal transaction with its own ECR reference, driven through the payment state machine.

use std::fmt;

use zhengjiao_protocol::message::TerminalId;
use zhengjiao_protocol::EcrReference;

use crate::domain::{Fen, StaffNumber};

use super::payment::{PaymentState, TerminalSaid, TransitionOutcome};

/// What a reversal does to its payment once approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReversalKind {
    /// 撤销: cancels the sale within its batch; the payment becomes `voided`.
    Void,
    /// 退货: returns the money later; the payment becomes `refunded`.
    Refund,
}

impl ReversalKind {
    /// The stable storage code: `void` or `refund`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReversalKind::Void => "void",
            ReversalKind::Refund => "refund",
        }
    }

    /// Parses a storage code.
    pub fn parse(s: &str) -> Option<ReversalKind> {
        [ReversalKind::Void, ReversalKind::Refund].into_iter().find(|k| k.as_str() == s)
    }

    /// The state the payment reaches when a reversal of this kind is approved.
    pub const fn payment_state(self) -> PaymentState {
        match self {
            ReversalKind::Void => PaymentState::Voided,
            ReversalKind::Refund => PaymentState::Refunded,
        }
    }
}

impl fmt::Display for ReversalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reversal about to be sent to a terminal: recorded as `created` before any byte goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReversal {
    /// Its own ECR reference, unique forever (never a payment's).
    pub id: EcrReference,
    /// The payment it reverses (approved or forwarded).
    pub payment: EcrReference,
    /// Void or refund.
    pub kind: ReversalKind,
    /// The amount to reverse, in fen: positive, at most what the terminal approved for the payment.
    pub amount: Fen,
    /// The terminal it is sent to (registered before).
    pub terminal: TerminalId,
    /// 操作员号: the collector's staff number.
    pub operator: StaffNumber,
}

/// A reversal as the journal holds it now. Its state moves like a payment's
/// ([`PaymentState::can_move_to`]), but never beyond `approved`, `declined` or `not_charged`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reversal {
    /// Its ECR reference.
    pub id: EcrReference,
    /// The payment it reverses.
    pub payment: EcrReference,
    /// Void or refund.
    pub kind: ReversalKind,
    /// The amount requested, in fen.
    pub amount: Fen,
    /// The terminal.
    pub terminal: TerminalId,
    /// 操作员号.
    pub operator: StaffNumber,
    /// Where it stands.
    pub state: PaymentState,
    /// When it was recorded (RFC 3339, +08:00).
    pub created_at: String,
    /// When its state last changed (RFC 3339, +08:00).
    pub updated_at: String,
    /// The latest POS data the terminal gave for the reversal itself (its own trace, batch, rrn, auth).
    pub pos: TerminalSaid,
}

/// The result of a recorded reversal transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReversalOutcome {
    /// The reversal after the step.
    pub reversal: Reversal,
    /// Its state before.
    pub from: PaymentState,
    /// For `approved`: the payment's own step to `voided` / `refunded`, taken in the same transaction
    /// (the line released, the reversal entry in the outbox). `None` for every other step.
    pub payment: Option<TransitionOutcome>,
}
