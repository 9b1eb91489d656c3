//! The journal's errors: one enum per operation (open, import, read, payment creation, transition,
//! forwarding), each wrapping the shared [`StorageError`] for what the storage itself did.
//!
//! Every message names the journal file. A refusal (a conflict, a transition the state machine does not
//! allow) is kept apart from a storage failure: after a refusal nothing was written and the store works
//! on; after [`StorageError::Failed`] the store has stopped and refuses all work until it is reopened.

use std::path::PathBuf;

use super::payment::PaymentState;
use super::reversal::ReversalKind;
use super::ImportConflict;

/// What the storage did wrong, shared by every operation's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An I/O-class failure (I/O error, full disk, corruption, the file gone read-only) while this
    /// operation's batch was written or committed. Whether the batch reached the disk is unknown: the
    /// store has stopped, and the truth is what a reopened journal reads back.
    #[error("journal {}: {what}; whether this write was committed is unknown; the journal refuses all work until it is reopened", path.display())]
    Failed {
        /// The journal file.
        path: PathBuf,
        /// What SQLite or the system reported.
        what: String,
    },
    /// The store had stopped before this operation, after an earlier failure; nothing was done.
    #[error("journal {}: stopped after an earlier failure ({what}); nothing was done; reopen the journal", path.display())]
    Stopped {
        /// The journal file.
        path: PathBuf,
        /// The failure that stopped it.
        what: String,
    },
    /// The store was closed; nothing was done.
    #[error("journal {}: closed", path.display())]
    Closed {
        /// The journal file.
        path: PathBuf,
    },
    /// Another process (or connection) held the file's write lock longer than the busy timeout; nothing
    /// was done and the store works on.
    #[error("journal {}: locked by another process for longer than the busy timeout ({timeout_ms} ms); nothing was done", path.display())]
    Busy {
        /// The journal file.
        path: PathBuf,
        /// The busy timeout waited, in milliseconds.
        timeout_ms: u64,
    },
    /// SQLite refused a statement for a reason other than I/O (a violated constraint: a bug, or a file
    /// edited by hand); this operation changed nothing and the store works on.
    #[error("journal {}: {what}", path.display())]
    Sql {
        /// The journal file.
        path: PathBuf,
        /// SQLite's message.
        what: String,
    },
    /// A stored value does not read back as a valid value (edited by hand, or written by a newer
    /// program).
    #[error("journal {}: table {table}, row {key}: column {column} does not read back as a valid value", path.display())]
    BadRow {
        /// The journal file.
        path: PathBuf,
        /// The table.
        table: &'static str,
        /// The row's key.
        key: String,
        /// The column at fault.
        column: &'static str,
    },
}

/// Why a journal could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The file could not be created or opened, or its permissions set.
    #[error("journal {}: cannot {action}: {source}", path.display())]
    File {
        /// The file concerned (the journal, or its `-wal` / `-shm` companion).
        path: PathBuf,
        /// What was attempted.
        action: &'static str,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an SQLite database (random bytes, another kind of file, encrypted).
    #[error("journal {}: not a database (the file exists but is not SQLite; was the path mistyped or the file overwritten?)", path.display())]
    NotADatabase {
        /// The file.
        path: PathBuf,
    },
    /// The file is an SQLite database but damaged.
    #[error("journal {}: the database is corrupt: {detail}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What SQLite's check found.
        detail: String,
    },
    /// Another process (or connection) holds the database locked.
    #[error("journal {}: locked by another process (still locked after the busy timeout of {timeout_ms} ms; is another zhengjiao running on this journal?)", path.display())]
    Locked {
        /// The file.
        path: PathBuf,
        /// The busy timeout waited, in milliseconds.
        timeout_ms: u64,
    },
    /// An SQLite database, but not a zhengjiao journal (another program's file).
    #[error("journal {}: not a zhengjiao journal: {reason}", path.display())]
    NotAJournal {
        /// The file.
        path: PathBuf,
        /// Why it was recognised as foreign.
        reason: String,
    },
    /// The journal was written by a newer zhengjiao whose schema this one does not know.
    #[error("journal {}: schema version {found} is newer than this program's {supported}; upgrade zhengjiao", path.display())]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// The file's schema version.
        found: u32,
        /// The newest this program knows.
        supported: u32,
    },
    /// A schema migration failed (nothing of it was applied).
    #[error("journal {}: migration to schema version {version} failed: {what}", path.display())]
    Migration {
        /// The file.
        path: PathBuf,
        /// The version being migrated to.
        version: u32,
        /// SQLite's message.
        what: String,
    },
    /// A setting the journal needs did not take (e.g. WAL mode refused by the file system).
    #[error("journal {}: {setting} could not be set (got {got:?})", path.display())]
    Setting {
        /// The file.
        path: PathBuf,
        /// The setting.
        setting: &'static str,
        /// What SQLite reported instead.
        got: String,
    },
    /// Any other SQLite error at open.
    #[error("journal {}: {what}", path.display())]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// SQLite's message.
        what: String,
    },
    /// The writer thread could not be started.
    #[error("journal {}: cannot start the writer thread: {source}", path.display())]
    Thread {
        /// The file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

/// Why an import (roster lines or collectors) applied nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// Some rows conflict with what the journal holds or with each other; the import is all-or-nothing,
    /// so nothing was applied. Every conflicting row is listed, in row order.
    #[error("{} conflicting row(s), nothing imported; first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    Conflicts(Vec<ImportConflict>),
    /// The storage failed; see [`StorageError`] (for [`StorageError::Failed`], whether the import was
    /// committed is unknown).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why a read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The storage failed, or a row does not read back.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why a terminal was not registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterTerminalError {
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why a payment was not recorded as `created` (nothing was written; the request must not be sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CreatePaymentError {
    /// The ECR reference is empty.
    #[error("a payment needs a non-empty ECR reference")]
    EmptyId,
    /// A payment with this ECR reference exists already (references are never reused).
    #[error("payment {id}: a payment with this ECR reference exists already")]
    DuplicateId {
        /// The reference.
        id: String,
    },
    /// No roster line has this key.
    #[error("no roster line {key}")]
    UnknownLine {
        /// The line's key, `year/insurance/serial`.
        key: String,
    },
    /// No terminal has this id; register it first.
    #[error("terminal {terminal} is not registered")]
    UnknownTerminal {
        /// The terminal id.
        terminal: String,
    },
    /// The line is paid (bound to an approved or forwarded payment).
    #[error("roster line {key} is paid already, by payment {by}")]
    LinePaid {
        /// The line's key.
        key: String,
        /// The payment bound to it.
        by: String,
    },
    /// Another payment for the line is under way (created, sent or unknown): its outcome must be known
    /// before a new one may start, or the payer could be charged twice.
    #[error("roster line {key} has payment {other} under way ({state}); resolve it first")]
    PaymentUnderWay {
        /// The line's key.
        key: String,
        /// The payment under way.
        other: String,
        /// Its state.
        state: PaymentState,
    },
    /// The same person (ID number) is paid already for this insurance and year, on another line of the
    /// roster: one person pays once per insurance and year.
    #[error("roster line {key}: person {id_masked} has paid this insurance and year already, on line {other_line} (payment {by})")]
    PersonPaid {
        /// The line's key.
        key: String,
        /// The person's ID number, masked (first 6 and last 4 characters only).
        id_masked: String,
        /// The other line's key, `year/insurance/serial`.
        other_line: String,
        /// The payment bound to the other line.
        by: String,
    },
    /// A payment of the same person (ID number) for this insurance and year is under way (created,
    /// sent or unknown) on another line: its outcome must be known first, or the person could be
    /// charged twice.
    #[error("roster line {key}: payment {other} of the same person, on line {other_line}, is under way ({state}); resolve it first")]
    PersonPaymentUnderWay {
        /// The line's key.
        key: String,
        /// The other line's key, `year/insurance/serial`.
        other_line: String,
        /// The payment under way.
        other: String,
        /// Its state.
        state: PaymentState,
    },
    /// The amount is zero or negative.
    #[error("payment {id}: the amount must be positive")]
    BadAmount {
        /// The reference.
        id: String,
    },
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why a transition was not recorded (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransitionError {
    /// No payment has this ECR reference.
    #[error("no payment {id}")]
    UnknownPayment {
        /// The reference.
        id: String,
    },
    /// The state machine of architecture.md does not allow this move.
    #[error("payment {id}: {from} -> {to} is not allowed")]
    NotAllowed {
        /// The reference.
        id: String,
        /// The payment's current state.
        from: PaymentState,
        /// The state asked for.
        to: PaymentState,
    },
    /// No reversal has this ECR reference.
    #[error("no reversal {id}")]
    UnknownReversal {
        /// The reference.
        id: String,
    },
    /// The state machine does not allow this move of a reversal (a reversal never goes beyond
    /// `approved`, `declined` or `not_charged`).
    #[error("reversal {id}: {from} -> {to} is not allowed")]
    ReversalNotAllowed {
        /// The reversal's reference.
        id: String,
        /// The reversal's current state.
        from: PaymentState,
        /// The state asked for.
        to: PaymentState,
    },
    /// `forwarded` is recorded by [`Store::mark_forwarded`](super::Store::mark_forwarded) when the
    /// ledger confirms the payment's entry, never by a transition.
    #[error("payment {id}: forwarded is recorded when the ledger confirms the entry (mark_forwarded)")]
    ForwardedByLedger {
        /// The reference.
        id: String,
    },
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why a reversal was not recorded as `created` (nothing was written; the request must not be sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CreateReversalError {
    /// The ECR reference is empty.
    #[error("a reversal needs a non-empty ECR reference")]
    EmptyId,
    /// A reversal or a payment with this ECR reference exists already (references are never reused).
    #[error("reversal {id}: a {existing} with this ECR reference exists already")]
    DuplicateId {
        /// The reference.
        id: String,
        /// What holds it: `reversal` or `payment`.
        existing: &'static str,
    },
    /// No payment has the reference to reverse.
    #[error("reversal {id}: no payment {payment}")]
    UnknownPayment {
        /// The reversal's reference.
        id: String,
        /// The payment's reference.
        payment: String,
    },
    /// The payment's outcome is not known yet (created, sent or unknown): it cannot be reversed before
    /// it is known to be approved.
    #[error("reversal {id}: payment {payment} is under way ({state}); its outcome must be known first")]
    PaymentUnderWay {
        /// The reversal's reference.
        id: String,
        /// The payment's reference.
        payment: String,
        /// The payment's state.
        state: PaymentState,
    },
    /// The payment is not approved or forwarded (declined, not charged, voided, refunded): no money to
    /// give back.
    #[error("reversal {id}: payment {payment} is {state}; only an approved or forwarded payment can be reversed")]
    PaymentNotReversible {
        /// The reversal's reference.
        id: String,
        /// The payment's reference.
        payment: String,
        /// The payment's state.
        state: PaymentState,
    },
    /// Another reversal of the payment is under way (created, sent, unknown) or approved already.
    #[error("reversal {id}: payment {payment} has {kind} {other} {state} already")]
    OtherReversal {
        /// The reversal's reference.
        id: String,
        /// The payment's reference.
        payment: String,
        /// The other reversal's reference.
        other: String,
        /// Its kind.
        kind: ReversalKind,
        /// Its state.
        state: PaymentState,
    },
    /// The amount is zero or negative.
    #[error("reversal {id}: the amount must be positive, not {amount_fen} fen")]
    BadAmount {
        /// The reversal's reference.
        id: String,
        /// The amount asked for, in fen.
        amount_fen: i64,
    },
    /// The amount is above what the terminal approved for the payment.
    #[error("reversal {id}: {amount_fen} fen is more than the {approved_fen} fen approved for payment {payment}")]
    AmountAboveApproved {
        /// The reversal's reference.
        id: String,
        /// The payment's reference.
        payment: String,
        /// The amount asked for, in fen.
        amount_fen: i64,
        /// The payment's approved amount (the requested amount when the terminal reported none), in fen.
        approved_fen: i64,
    },
    /// No terminal has this id; register it first.
    #[error("reversal {id}: terminal {terminal} is not registered")]
    UnknownTerminal {
        /// The reversal's reference.
        id: String,
        /// The terminal id.
        terminal: String,
    },
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why a settlement was not recorded (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettlementError {
    /// No terminal has this id.
    #[error("terminal {terminal} is not registered")]
    UnknownTerminal {
        /// The terminal id.
        terminal: String,
    },
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why an outbox entry's forwarding result was not recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// No outbox entry has this id.
    #[error("no ledger outbox entry {entry_id}")]
    UnknownEntry {
        /// The entry id.
        entry_id: String,
    },
    /// The entry was forwarded already with another tax voucher number.
    #[error("ledger outbox entry {entry_id} was forwarded already with voucher {existing}")]
    VoucherDiffers {
        /// The entry id.
        entry_id: String,
        /// The voucher number recorded before.
        existing: String,
    },
    /// An operator asked to requeue an entry that is not a dead letter.
    #[error("ledger outbox entry {entry_id} is not a dead letter")]
    NotDeadLettered {
        /// The entry id.
        entry_id: String,
    },
    /// The entry was dead-lettered: the ledger rejected it for good.
    #[error("ledger outbox entry {entry_id} is dead-lettered: {reason}")]
    DeadLettered {
        /// The entry id.
        entry_id: String,
        /// The rejection recorded.
        reason: String,
    },
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}
