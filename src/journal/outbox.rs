//! What the ledger forwarder reads from and writes to the outbox: entries ready to send, the ledger's
//! answers recorded a batch at a time, counts for the status, dead letters and their replay, and the
//! day's entries and settlements for reconciliation (日清日结).

use crate::domain::CollectionPointCode;

use super::payment::EntryKind;
use super::settlement::SettlementRecord;

/// An outbox entry ready to send: not forwarded, not dead-lettered, and (for a reversal) its payment
/// entry already acknowledged by the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEntry {
    /// Order of writing (the outbox's sequence number).
    pub seq: i64,
    /// The idempotency key.
    pub entry_id: String,
    /// Payment or reversal.
    pub kind: EntryKind,
    /// For a reversal, the payment entry it cancels.
    pub reverses: Option<String>,
    /// The ENTRY object of ledger-api.md as the JSON text stored when the row was written: sent as it
    /// is, byte for byte, on every attempt.
    pub payload: String,
    /// Sends tried so far.
    pub attempts: u32,
    /// When the row was written (RFC 3339, +08:00).
    pub created_at: String,
}

/// What the ledger said about one entry, as far as the outbox cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerVerdict {
    /// `created` or `exists`: the ledger holds the entry under this tax voucher number (电子税票号码).
    Holds {
        /// The voucher number.
        tax_voucher_no: String,
    },
    /// `rejected`: refused for good; the entry becomes a dead letter with this reason.
    Rejected {
        /// The ledger's reason, e.g. `exists_with_different_content`.
        reason: String,
    },
}

/// The ledger's verdict on one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerAnswer {
    /// The entry.
    pub entry_id: String,
    /// What the ledger said.
    pub verdict: LedgerVerdict,
}

/// What recording a batch of answers did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnswersRecorded {
    /// Entries marked forwarded now.
    pub forwarded: usize,
    /// Entries that were forwarded already with the same voucher (nothing done).
    pub already_forwarded: usize,
    /// Entries moved to the dead letters.
    pub dead_lettered: usize,
    /// Answers that could not be applied, each with why (an unknown entry, another voucher recorded
    /// before, a dead letter answered `created`); the rest of the batch is recorded all the same.
    pub refused: Vec<String>,
}

/// Counts of the outbox, for the forwarder's status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Entries not forwarded and not dead-lettered (held reversals included).
    pub backlog: u64,
    /// Of those, reversals waiting for their payment entry to be acknowledged.
    pub held: u64,
    /// Dead letters: rejected by the ledger, waiting for an operator.
    pub dead_letters: u64,
    /// Entries the ledger holds.
    pub forwarded: u64,
    /// The oldest entry of the backlog: its id and when it was written (RFC 3339, +08:00).
    pub oldest_unsent: Option<(String, String)>,
}

/// A settlement recorded on a given day, with the collection point of its terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaySettlement {
    /// The terminal's collection point.
    pub collection_point: CollectionPointCode,
    /// The settlement.
    pub record: SettlementRecord,
}
