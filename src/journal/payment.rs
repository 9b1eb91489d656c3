//! Payments as the journal holds them: their states (architecture.md, "Payment states"), what a
//! terminal said at each step, and the ledger outbox entries an approval or a reversal leaves behind.

use std::fmt;
use std::str::FromStr;

use zhengjiao_protocol::message::{AuthCode, Batch, Date, Rrn, TerminalId, Till, Trace};
use zhengjiao_protocol::{EcrReference, MaskedPan, Response, ResponseCode};

use crate::domain::{CollectionPointCode, Fen, StaffNumber};

use super::LineKey;

/// Where a card payment stands (architecture.md):
///
/// ```text
/// created --request ACKed--> sent --00--> approved --ledger created/exists--> forwarded
///    |                        |  \--non-00--> declined
///    |                        \--no answer / link lost / crash--> unknown --QUERY--> approved | declined | not_charged
///    \--never sent (crash before send)--> unknown
/// approved/forwarded --VOID 00--> voided;  approved/forwarded --REFUND 00--> refunded
/// ```
///
/// Nothing but an answer from the terminal moves a payment out of `unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentState {
    /// Recorded before any byte goes to the terminal.
    Created,
    /// The terminal acknowledged the request.
    Sent,
    /// The terminal answered `00`: money moved.
    Approved,
    /// The terminal answered another code: no money moved.
    Declined,
    /// The outcome is not known (no answer, link lost, crash); only a QUERY or a settlement answers it.
    Unknown,
    /// A QUERY answered `25`: the terminal never carried the payment out.
    NotCharged,
    /// The ledger holds the payment's entry (a tax voucher number is recorded).
    Forwarded,
    /// Voided on the terminal (冲正/撤销); a reversal entry goes to the ledger.
    Voided,
    /// Refunded on the terminal (退货); a reversal entry goes to the ledger.
    Refunded,
}

/// Why a text is not a payment state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a payment state: {0:?}")]
pub struct PaymentStateError(String);

impl PaymentState {
    /// Every state.
    pub const ALL: [PaymentState; 9] = [
        PaymentState::Created,
        PaymentState::Sent,
        PaymentState::Approved,
        PaymentState::Declined,
        PaymentState::Unknown,
        PaymentState::NotCharged,
        PaymentState::Forwarded,
        PaymentState::Voided,
        PaymentState::Refunded,
    ];

    /// The stable storage code, e.g. `not_charged`.
    pub const fn as_str(self) -> &'static str {
        match self {
            PaymentState::Created => "created",
            PaymentState::Sent => "sent",
            PaymentState::Approved => "approved",
            PaymentState::Declined => "declined",
            PaymentState::Unknown => "unknown",
            PaymentState::NotCharged => "not_charged",
            PaymentState::Forwarded => "forwarded",
            PaymentState::Voided => "voided",
            PaymentState::Refunded => "refunded",
        }
    }

    /// Parses a storage code.
    pub fn parse(s: &str) -> Result<PaymentState, PaymentStateError> {
        PaymentState::ALL.into_iter().find(|state| state.as_str() == s).ok_or_else(|| PaymentStateError(s.to_owned()))
    }

    /// True when the state machine allows `self -> to`. `forwarded` is reached only through
    /// [`Store::mark_forwarded`](super::Store::mark_forwarded).
    pub const fn can_move_to(self, to: PaymentState) -> bool {
        use PaymentState::{Approved, Created, Declined, Forwarded, NotCharged, Refunded, Sent, Unknown, Voided};
        matches!(
            (self, to),
            (Created, Sent | Unknown)
                | (Sent, Approved | Declined | Unknown)
                | (Unknown, Approved | Declined | NotCharged)
                | (Approved, Forwarded | Voided | Refunded)
                | (Forwarded, Voided | Refunded)
        )
    }

    /// True while the outcome is open (created, sent, unknown): no other payment may start for the
    /// same line.
    pub const fn is_under_way(self) -> bool {
        matches!(self, PaymentState::Created | PaymentState::Sent | PaymentState::Unknown)
    }
}

impl fmt::Display for PaymentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PaymentState {
    type Err = PaymentStateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PaymentState::parse(s)
    }
}

/// A POS terminal the daemon drives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminal {
    /// 终端号, the terminal id it reports in its answers.
    pub id: TerminalId,
    /// Our name for it in the configuration, e.g. `T01`. A terminal registered before schema version 3
    /// reads back named by its id until it is registered again.
    pub name: String,
    /// The collection point it stands at.
    pub collection_point: CollectionPointCode,
    /// 商户号, when known.
    pub merchant_id: Option<String>,
    /// How it is reached, e.g. `tcp:10.0.0.5:9100` or `serial:/dev/ttyS0` (for people reading).
    pub link: String,
}

/// Which payments [`Store::payments`](super::Store::payments) lists: every condition given must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentFilter {
    /// The local day (UTC+8) the payment was recorded on.
    pub date: Option<time::Date>,
    /// Its state now.
    pub state: Option<PaymentState>,
    /// The terminal it was sent to.
    pub terminal: Option<TerminalId>,
    /// The collection point of the line it pays (征缴网点).
    pub collection_point: Option<CollectionPointCode>,
    /// The line it pays.
    pub line: Option<LineKey>,
    /// Most payments returned (the oldest first).
    pub limit: usize,
}

impl PaymentFilter {
    /// No condition, at most `limit` payments.
    pub fn all(limit: usize) -> PaymentFilter {
        PaymentFilter { date: None, state: None, terminal: None, collection_point: None, line: None, limit }
    }
}

/// A card payment about to be sent to a terminal: recorded as `created` before any byte goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayment {
    /// The ECR reference (memo 0F01): the payment's id, unique forever.
    pub id: EcrReference,
    /// The contribution line it pays.
    pub line: LineKey,
    /// The amount requested, in fen (positive).
    pub amount: Fen,
    /// The terminal it is sent to (registered before).
    pub terminal: TerminalId,
    /// 款台号, the till field of the request.
    pub till: Till,
    /// 操作员号: the collector's staff number.
    pub operator: StaffNumber,
}

/// What a terminal said with a step (all absent when it said nothing: link lost, crash), plus our own
/// note on why the step was taken. A full card number cannot be held: the card is a [`MaskedPan`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TerminalSaid {
    /// 应答码.
    pub code: Option<ResponseCode>,
    /// 应答信息, the response text.
    pub text: Option<String>,
    /// 凭证号, the POS trace number.
    pub trace: Option<Trace>,
    /// 批次号.
    pub batch: Option<Batch>,
    /// 参考号, the retrieval reference number.
    pub rrn: Option<Rrn>,
    /// 授权码.
    pub auth: Option<AuthCode>,
    /// 卡号, masked.
    pub card: Option<MaskedPan>,
    /// The amount the terminal reported, in fen.
    pub amount: Option<Fen>,
    /// 交易日期, the terminal's date of the transaction (`YYYYMMDD`), e.g. for a later refund's original
    /// date.
    pub date: Option<Date>,
    /// Our words on why (e.g. `no answer after 3 resends`, `found created at start-up`); not the
    /// terminal's.
    pub note: Option<String>,
}

impl TerminalSaid {
    /// Takes each piece of POS data `newer` has, keeping this one's where `newer` has none (the note
    /// stays this one's: it is not POS data).
    pub(crate) fn keep_latest(&mut self, newer: &TerminalSaid) {
        fn take<T: Clone>(field: &mut Option<T>, newer: &Option<T>) {
            if newer.is_some() {
                field.clone_from(newer);
            }
        }
        take(&mut self.code, &newer.code);
        take(&mut self.text, &newer.text);
        take(&mut self.trace, &newer.trace);
        take(&mut self.batch, &newer.batch);
        take(&mut self.rrn, &newer.rrn);
        take(&mut self.auth, &newer.auth);
        take(&mut self.card, &newer.card);
        take(&mut self.amount, &newer.amount);
        take(&mut self.date, &newer.date);
    }

    /// Nothing from the terminal, only our note.
    pub fn note(note: impl Into<String>) -> TerminalSaid {
        TerminalSaid { note: Some(note.into()), ..TerminalSaid::default() }
    }

    /// What a terminal's response carries. Empty fields (all spaces, all zeros) are left out.
    pub fn from_response(response: &Response) -> TerminalSaid {
        let text = response.text.as_str().trim();
        TerminalSaid {
            code: Some(response.code),
            text: (!text.is_empty()).then(|| text.to_owned()),
            trace: (!response.trace.is_zero()).then_some(response.trace),
            batch: (!response.batch.is_zero()).then_some(response.batch),
            rrn: (!response.rrn.is_empty()).then_some(response.rrn),
            auth: (!response.auth.is_empty()).then_some(response.auth),
            card: response.card,
            amount: i64::try_from(response.amount.fen()).ok().map(Fen::from_fen).filter(|a| a.is_positive()),
            date: (!response.date.is_zero()).then_some(response.date),
            note: None,
        }
    }
}

/// A payment as the journal holds it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// The ECR reference.
    pub id: EcrReference,
    /// The line it pays.
    pub line: LineKey,
    /// The amount requested, in fen.
    pub amount: Fen,
    /// The terminal.
    pub terminal: TerminalId,
    /// 款台号.
    pub till: Till,
    /// 操作员号.
    pub operator: StaffNumber,
    /// Where it stands.
    pub state: PaymentState,
    /// When it was recorded (RFC 3339, +08:00).
    pub created_at: String,
    /// When its state last changed (RFC 3339, +08:00).
    pub updated_at: String,
    /// The latest POS data the terminal gave (code, trace, batch, rrn, auth, card, amount, date).
    pub pos: TerminalSaid,
}

/// One step of a payment's history (`payment_transitions`, append-only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRecord {
    /// Order of the step in the whole journal.
    pub seq: i64,
    /// When (RFC 3339, +08:00).
    pub at: String,
    /// The state before; `None` for the creation.
    pub from: Option<PaymentState>,
    /// The state after.
    pub to: PaymentState,
    /// What the terminal said, and our note.
    pub said: TerminalSaid,
}

/// What a recorded transition did beside changing the state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Effect {
    /// Nothing else.
    None,
    /// `approved`: the line is bound to the payment and the ledger entry `entry_id` waits in the outbox,
    /// both in the same transaction as the state change.
    Bound {
        /// The outbox entry's id.
        entry_id: String,
    },
    /// `approved`, but the line, or another line of the same person (ID number) for the same insurance
    /// and year, was paid already by another payment: not bound, nothing for the ledger. Money moved,
    /// so the caller must VOID this payment.
    LineAlreadyPaid {
        /// The payment bound to the line (or to the person's other line).
        by: String,
    },
    /// `approved` for another amount than requested, or with no positive amount reported (an approval
    /// that does not name the amount is not taken as one of the amount asked): not bound, nothing for
    /// the ledger; the caller must VOID it.
    AmountDiffers {
        /// The amount requested.
        requested: Fen,
        /// The amount the terminal approved; [`Fen::ZERO`] when it reported none (or zero).
        approved: Fen,
    },
    /// `voided` / `refunded`: the line is unpaid again; `entry_id` is the reversal entry now in the
    /// outbox, `None` when the payment had never been bound (nothing to reverse at the ledger).
    Reversed {
        /// The reversal's outbox entry id.
        entry_id: Option<String>,
    },
}

/// The result of a recorded transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionOutcome {
    /// The payment after the step.
    pub payment: Payment,
    /// The state before.
    pub from: PaymentState,
    /// What else the step did.
    pub effect: Effect,
}

/// `kind` of a ledger entry (ledger-api.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// 缴费.
    Payment,
    /// 冲正: cancels an earlier payment entry (void or refund).
    Reversal,
}

impl EntryKind {
    /// The contract's spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            EntryKind::Payment => "payment",
            EntryKind::Reversal => "reversal",
        }
    }

    /// The entry id of a payment's entry of this kind: the ECR reference for the payment, with
    /// `-reversal` appended for its reversal. Stable, so every retry reuses it.
    pub fn entry_id(self, payment: &str) -> String {
        match self {
            EntryKind::Payment => payment.to_owned(),
            EntryKind::Reversal => format!("{payment}-reversal"),
        }
    }
}

/// A row of the ledger outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The idempotency key sent to the ledger.
    pub entry_id: String,
    /// Payment or reversal.
    pub kind: EntryKind,
    /// For a reversal, the entry it cancels.
    pub reverses: Option<String>,
    /// The payment it comes from.
    pub payment_id: String,
    /// The ENTRY object of ledger-api.md, as JSON, fixed when the row was written.
    pub payload: serde_json::Value,
    /// When it was written (RFC 3339, +08:00).
    pub created_at: String,
    /// When the ledger confirmed it.
    pub forwarded_at: Option<String>,
    /// 电子税票号码 the ledger assigned.
    pub tax_voucher_no: Option<String>,
    /// Sends tried so far.
    pub attempts: u32,
    /// The latest failure.
    pub last_error: Option<String>,
    /// Set when the ledger rejected the entry for good: it is never retried.
    pub dead_letter: Option<String>,
}
