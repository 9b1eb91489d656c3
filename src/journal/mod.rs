//! The journal (日记账): everything the daemon knows, durably: roster lines, collectors, terminals and
//! their batches, payments with their append-only history, the ledger outbox and settlement results.
//!
//! Callers see the [`Store`] trait; [`SqliteStore`] implements it on one SQLite file (WAL,
//! `synchronous=FULL`), and a PostgreSQL store can implement it later without touching callers.
//!
//! How the SQLite store writes (see [`SqliteStore`] for the details):
//! - **one writer** thread owns the write connection; every write is a request on a bounded queue;
//! - **group commit**: the writer takes every request waiting (up to [`JournalOptions::max_batch`]),
//!   runs them one after the other inside one transaction, commits once (one fsync), and only then
//!   answers each request. A write that is refused (a conflict, a state the payment cannot move to)
//!   sends the batch back: it is rolled back and run again with the refused write and each one after
//!   it in its own SAVEPOINT, and the refused one is rolled back to its savepoint without touching the
//!   others;
//! - **stop on I/O failure**: after an I/O-class error (I/O error, full disk, corruption) the store
//!   answers [`StorageError::Failed`] to the writes of that batch and refuses all later work,
//!   reads included, with [`StorageError::Stopped`] until it is reopened; what a reopened journal
//!   reads back is the truth.
//!
//! Every answered write is committed: a caller may act on it (send a request to a terminal, tell the
//! operator) as soon as its future resolves.
//!
//! Decisions:
//! - **Imports are all-or-nothing, conflicts included.** Any conflict left (different content without
//!   `update`, a paid line, a payment under way, one key twice with different content) refuses the
//!   whole import with every conflict listed; the caller exits non-zero. Rows are compared field by
//!   field; the stored `content_hash` is a fingerprint for people and tools, not the judge.
//! - **A line is paid by at most one payment** (`roster_lines.paid_by`, unique), and at most one
//!   payment per line is under way (`created`/`sent`/`unknown`, a partial unique index): a second
//!   payment for a line is refused until the first one's outcome is known.
//! - **One person pays once per insurance and year.** The roster may list a person (ID number) on two
//!   lines of one insurance and year: a payment is refused while another line of that person, insurance
//!   and year is paid or has a payment under way, and an approval does not bind when such a line is
//!   paid (read through the index on `id_number`).
//! - **`approved` binds and queues for the ledger in one transaction.** If the line (or another line of
//!   the same person, insurance and year) was paid meanwhile, or the terminal approved another amount
//!   or reported none (a missing or zero amount is not an approval of the amount asked), the approval
//!   is recorded but not bound, nothing goes to the ledger, and [`Effect`] tells the caller to void
//!   it; [`Store::payments_to_reverse`] finds such approvals again after a crash.
//! - **Ledger entry ids** are the ECR reference (payment) and `<reference>-reversal` (its void or
//!   refund), fixed when the outbox row is written. The entry's `collection_point` is the terminal's.
//!   A void before the payment entry was forwarded still sends both, in order.
//! - **Times** are the business clock's, stored as RFC 3339 at +08:00 with microseconds.

mod error;
mod outbox;
mod payment;
mod reversal;
mod schema;
mod settlement;
mod sqlite;
mod writer;

use std::fmt;
use std::future::Future;

use crate::domain::{
    CollectionPointCode, CollectionSerial, Fen, Hardship, IdNumber, Insurance, PersonName, StaffNumber,
};
use zhengjiao_protocol::message::{Batch, TerminalId};
use zhengjiao_protocol::EcrReference;

pub use error::{
    CreatePaymentError, CreateReversalError, ForwardError, ImportError, OpenError, ReadError, RegisterTerminalError,
    SettlementError, StorageError, TransitionError,
};
pub use outbox::{AnswersRecorded, DaySettlement, LedgerAnswer, LedgerVerdict, OutboxCounts, QueuedEntry};
pub use payment::{
    Effect, EntryKind, NewPayment, OutboxEntry, Payment, PaymentFilter, PaymentState, PaymentStateError, Terminal,
    TerminalSaid, TransitionOutcome, TransitionRecord,
};
pub use reversal::{NewReversal, Reversal, ReversalKind, ReversalOutcome};
pub use settlement::{BatchTotals, SettlementRecord};
pub use sqlite::{JournalOptions, JournalSettings, PendingWrite, SqliteStore};
pub use writer::{StoreMetrics, BATCH_SIZE_BOUNDS};

/// The key of a contribution line: 征集流水号, 险种 and 年度 (roster-format.md: a serial is unique
/// within a year and insurance).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LineKey {
    /// 征集流水号.
    pub serial: CollectionSerial,
    /// 险种.
    pub insurance: Insurance,
    /// 年度.
    pub year: i32,
}

impl fmt::Display for LineKey {
    /// `2020/medical/ZJ-000123`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.year, self.insurance.code(), self.serial)
    }
}

/// One row of the roster (参保底册 / 征缴计划清单, roster-format.md), validated by the importer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterLine {
    /// 征集流水号.
    pub serial: CollectionSerial,
    /// 险种.
    pub insurance: Insurance,
    /// 身份证号.
    pub id_number: IdNumber,
    /// 姓名.
    pub name: PersonName,
    /// 年度.
    pub year: i32,
    /// 应缴金额, the personal share after any subsidy (required for medical, absent for pension, whose
    /// payer picks a tier).
    pub amount_due: Option<Fen>,
    /// 困难类别.
    pub hardship: Hardship,
    /// 征缴网点: the collection point's code.
    pub collection_point: CollectionPointCode,
    /// 街道; blank is stored as absent.
    pub street: Option<String>,
    /// 社区村; blank is stored as absent.
    pub community: Option<String>,
}

impl RosterLine {
    /// The line's key.
    pub fn key(&self) -> LineKey {
        LineKey { serial: self.serial.clone(), insurance: self.insurance, year: self.year }
    }
}

/// A payment and what belongs to it, as [`Store::payment_detail`] reads them together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentDetail {
    /// The payment.
    pub payment: Payment,
    /// Its line (`None` only if the line were gone, which the schema's foreign key prevents).
    pub line: Option<StoredLine>,
    /// Its voids and refunds, oldest first.
    pub reversals: Vec<Reversal>,
    /// Its history, oldest first.
    pub history: Vec<TransitionRecord>,
}

/// A roster line as the journal holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLine {
    /// The line.
    pub line: RosterLine,
    /// The approved (or forwarded) payment that paid it, if any.
    pub paid_by: Option<EcrReference>,
    /// Fingerprint of the line's content (`fnv1a64:` and 16 hex digits); equal content, equal hash.
    pub content_hash: String,
    /// When it was first imported (RFC 3339, +08:00).
    pub imported_at: String,
    /// When an import last changed it.
    pub updated_at: Option<String>,
}

/// One row of the collector register (集中征缴工作人员登记表, roster-format.md). Its key is
/// (`collection_point`, `staff_no`): the operator number a collector types on that point's terminals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collector {
    /// 序号, the row number on the form (kept, but not part of the content compared on re-import).
    pub no: Option<u32>,
    /// 代征点名称.
    pub collection_point_name: String,
    /// 代征点编码.
    pub collection_point: CollectionPointCode,
    /// 代征人员姓名.
    pub name: PersonName,
    /// 工号.
    pub staff_no: StaffNumber,
    /// 身份证号.
    pub id_number: IdNumber,
    /// 开户行名称.
    pub bank_name: String,
    /// 开户行.
    pub bank_branch: String,
    /// 银行账号.
    pub bank_account: String,
    /// 联系电话.
    pub phone: String,
}

/// What an import applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportOutcome {
    /// Rows new to the journal, inserted.
    pub inserted: usize,
    /// Rows identical to what the journal holds (or repeating an earlier identical row of the same
    /// import): nothing done.
    pub unchanged: usize,
    /// Rows that replaced different content under the same key (only with `update`).
    pub updated: usize,
}

/// A row an import could not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportConflict {
    /// The row's index in the rows given to the import (0-based; the importer maps it to a file row).
    pub row: usize,
    /// The row's key: `year/insurance/serial` for a roster line, `collection_point/staff_no` for a
    /// collector.
    pub key: String,
    /// What is wrong.
    pub kind: ConflictKind,
}

/// Why a row conflicts. `fields` name the fields that differ, with the roster format's English header
/// names (`name`, `amount_due`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConflictKind {
    /// The key exists with different content, and no update was asked for.
    Differs {
        /// The fields that differ.
        fields: Vec<&'static str>,
    },
    /// Update asked for, but the line is paid: a paid line never changes.
    Paid {
        /// The fields that differ.
        fields: Vec<&'static str>,
        /// The payment bound to the line.
        by: String,
    },
    /// Update asked for, but a payment for the line is under way (created, sent or unknown), priced from
    /// the current content.
    PaymentUnderWay {
        /// The fields that differ.
        fields: Vec<&'static str>,
        /// The payment under way.
        payment: String,
    },
    /// The same key appears on an earlier row of the same import with different content.
    DuplicateInImport {
        /// The earlier row's index.
        first_row: usize,
        /// The fields that differ.
        fields: Vec<&'static str>,
    },
}

impl fmt::Display for ImportConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {} ({}): ", self.row, self.key)?;
        match &self.kind {
            ConflictKind::Differs { fields } => {
                write!(f, "exists with different {}; not applied (update would apply it)", fields.join(", "))
            }
            ConflictKind::Paid { fields, by } => {
                write!(f, "exists with different {}; not applied: the line is paid (payment {by})", fields.join(", "))
            }
            ConflictKind::PaymentUnderWay { fields, payment } => write!(
                f,
                "exists with different {}; not applied: payment {payment} for the line is under way",
                fields.join(", ")
            ),
            ConflictKind::DuplicateInImport { first_row, fields } => {
                write!(f, "repeats row {first_row} with different {}", fields.join(", "))
            }
        }
    }
}

/// The journal's operations, whatever stores it.
///
/// Every write is all-or-nothing and is committed when its future resolves `Ok`. Every method returns a
/// `Send` future, so callers may spawn them; implementations are cheap to share (`Clone`, `Arc` inside).
pub trait Store: Send + Sync {
    /// Imports roster lines, all or nothing, in one transaction.
    ///
    /// A row identical to the stored line with its key is counted unchanged. A row whose key exists with
    /// different content is a conflict; with `update`, it is applied instead (counted updated) when the
    /// line is unpaid and no payment for it is under way. Two rows of the same import with one key and
    /// different content conflict. If any conflict remains, nothing at all is applied and
    /// [`ImportError::Conflicts`] lists every one.
    fn import_roster(
        &self,
        lines: Vec<RosterLine>,
        update: bool,
    ) -> impl Future<Output = Result<ImportOutcome, ImportError>> + Send;

    /// Imports the collector register, all or nothing, with the rules of
    /// [`import_roster`](Self::import_roster); with `update`, a changed collector is always applied.
    fn import_collectors(
        &self,
        collectors: Vec<Collector>,
        update: bool,
    ) -> impl Future<Output = Result<ImportOutcome, ImportError>> + Send;

    /// The number of roster lines held.
    fn count_roster_lines(&self) -> impl Future<Output = Result<u64, ReadError>> + Send;

    /// The line with this key.
    fn roster_line(
        &self,
        serial: &CollectionSerial,
        insurance: Insurance,
        year: i32,
    ) -> impl Future<Output = Result<Option<StoredLine>, ReadError>> + Send;

    /// Every line of this payer, by year, insurance and serial.
    fn lines_by_id_number(
        &self,
        id_number: &IdNumber,
    ) -> impl Future<Output = Result<Vec<StoredLine>, ReadError>> + Send;

    /// Every collector, by collection point and staff number.
    fn collectors(&self) -> impl Future<Output = Result<Vec<Collector>, ReadError>> + Send;

    /// Registers a terminal, or updates its name, point, merchant id and link.
    fn register_terminal(&self, terminal: Terminal) -> impl Future<Output = Result<(), RegisterTerminalError>> + Send;

    /// Every registered terminal, by id.
    fn terminals(&self) -> impl Future<Output = Result<Vec<Terminal>, ReadError>> + Send;

    /// Records a payment as `created`, before any byte of it goes to the terminal. Refused when the line
    /// is paid or another payment for it is under way, so a line is never charged twice; and refused
    /// when another line of the same person (ID number) for the same insurance and year is paid
    /// ([`CreatePaymentError::PersonPaid`]) or has a payment under way
    /// ([`CreatePaymentError::PersonPaymentUnderWay`]), so a person is never charged twice either.
    fn record_payment_created(
        &self,
        payment: NewPayment,
    ) -> impl Future<Output = Result<Payment, CreatePaymentError>> + Send;

    /// Moves a payment to `to`, appending what the terminal said to its history. For `approved`, in the
    /// same transaction: the line is bound to the payment and the ledger entry is put in the outbox
    /// (unless the line, or another line of the same person for the same insurance and year, was paid
    /// meanwhile, or the terminal reported another amount or none: see [`Effect`]). For `voided` and
    /// `refunded`: the line is released and a reversal entry is put in the outbox.
    fn transition(
        &self,
        payment_id: &EcrReference,
        to: PaymentState,
        said: TerminalSaid,
    ) -> impl Future<Output = Result<TransitionOutcome, TransitionError>> + Send;

    /// Moves a payment through the steps `via` and then to `to` in one write: the same history rows,
    /// POS data and effects as [`transition`](Self::transition) called for each in turn, all committed
    /// together or not at all. A step of `via` may not have effects (`approved`, `voided`, `refunded`,
    /// `forwarded`): those come last. The outcome's `from` is the state before the first step.
    fn transition_through(
        &self,
        payment_id: &EcrReference,
        via: Vec<(PaymentState, TerminalSaid)>,
        to: PaymentState,
        said: TerminalSaid,
    ) -> impl Future<Output = Result<TransitionOutcome, TransitionError>> + Send;

    /// Records that the ledger holds an outbox entry under `tax_voucher_no` (answer `created` or
    /// `exists`); a payment entry's payment moves `approved -> forwarded` in the same transaction.
    /// Recording the same voucher again is a no-op.
    fn mark_forwarded(
        &self,
        entry_id: &str,
        tax_voucher_no: &str,
    ) -> impl Future<Output = Result<(), ForwardError>> + Send;

    /// Records a failed send of an outbox entry: `rejected` (the ledger refused it for good: the entry is
    /// dead-lettered and never retried) or not (retried later).
    fn mark_forward_failed(
        &self,
        entry_id: &str,
        error: &str,
        rejected: bool,
    ) -> impl Future<Output = Result<(), ForwardError>> + Send;

    /// Up to `limit` outbox entries ready to send whose sequence number is above `after_seq` (0: from
    /// the start), in the order written. A reversal is ready only once the ledger holds its payment
    /// entry, so a reversal never reaches the ledger before what it cancels.
    fn sendable_outbox(
        &self,
        after_seq: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<QueuedEntry>, ReadError>> + Send;

    /// Records the ledger's answers to one batch in ONE write: `created`/`exists` mark the entry
    /// forwarded with its voucher (a payment entry moves its payment to `forwarded`), `rejected`
    /// dead-letters it. An answer that cannot be applied is listed in
    /// [`AnswersRecorded::refused`]; the others are recorded all the same.
    fn record_ledger_answers(
        &self,
        answers: Vec<LedgerAnswer>,
    ) -> impl Future<Output = Result<AnswersRecorded, ForwardError>> + Send;

    /// Counts one failed attempt with `error` on each of these entries still unsent (one write).
    fn record_forward_attempt_failed(
        &self,
        entry_ids: Vec<String>,
        error: &str,
    ) -> impl Future<Output = Result<(), ForwardError>> + Send;

    /// Counts of the outbox: backlog, held reversals, dead letters, forwarded, the oldest unsent entry.
    fn outbox_counts(&self) -> impl Future<Output = Result<OutboxCounts, ReadError>> + Send;

    /// Up to `limit` dead letters, oldest first.
    fn dead_letters(&self, limit: usize) -> impl Future<Output = Result<Vec<OutboxEntry>, ReadError>> + Send;

    /// The outbox entry with this id.
    fn outbox_entry(&self, entry_id: &str) -> impl Future<Output = Result<Option<OutboxEntry>, ReadError>> + Send;

    /// Puts a dead letter back in the queue (an operator's replay once the cause is fixed); the
    /// rejection is kept in `last_error`. Refused for an unknown entry or one that is not a dead letter.
    fn requeue_dead_letter(&self, entry_id: &str) -> impl Future<Output = Result<OutboxEntry, ForwardError>> + Send;

    /// Every outbox entry whose `occurred_at` falls on `date` (UTC+8), of one collection point or all,
    /// in the order written (daily reconciliation).
    fn ledger_entries_on(
        &self,
        date: time::Date,
        collection_point: Option<&CollectionPointCode>,
    ) -> impl Future<Output = Result<Vec<OutboxEntry>, ReadError>> + Send;

    /// Settlements recorded on `date` (UTC+8), oldest first, with their terminal's collection point.
    fn settlements_on(&self, date: time::Date) -> impl Future<Output = Result<Vec<DaySettlement>, ReadError>> + Send;

    /// The payment with this ECR reference.
    fn payment(&self, id: &EcrReference) -> impl Future<Output = Result<Option<Payment>, ReadError>> + Send;

    /// A payment with its line, its reversals and its history, read in one snapshot of the journal
    /// (one read where [`payment`](Self::payment), [`roster_line`](Self::roster_line),
    /// [`reversals_of`](Self::reversals_of) and [`payment_history`](Self::payment_history) make four).
    fn payment_detail(
        &self,
        id: &EcrReference,
    ) -> impl Future<Output = Result<Option<PaymentDetail>, ReadError>> + Send;

    /// A payment's history, oldest first.
    fn payment_history(
        &self,
        id: &EcrReference,
    ) -> impl Future<Output = Result<Vec<TransitionRecord>, ReadError>> + Send;

    /// Every payment in one of these states (e.g. `created`, `sent`, `unknown` at start-up), oldest first.
    fn payments_in(&self, states: &[PaymentState]) -> impl Future<Output = Result<Vec<Payment>, ReadError>> + Send;

    /// Approved payments whose approval still needs reversing, oldest first: those in state `approved`
    /// that are not bound to their line (the approval was recorded with [`Effect::LineAlreadyPaid`] or
    /// [`Effect::AmountDiffers`]: money moved, nothing went to the ledger) and that have no reversal
    /// under way (`created`, `sent`, `unknown`), approved, or declined (a declined one is left for an
    /// operator). A reversal that ended `not_charged` does not count: the payment is listed again.
    ///
    /// The automatic void after such an approval runs after the approval was committed; after a crash
    /// (or a failed attempt to start it) this is how the daemon finds what is still to give back.
    fn payments_to_reverse(&self) -> impl Future<Output = Result<Vec<Payment>, ReadError>> + Send;

    /// True when the payment's line is bound to it (`paid_by` is this payment): its approval was
    /// taken, and its ledger entry written. False for a payment never bound (not yet approved, or
    /// approved but refused binding), for one whose line was released by a void or refund, and for an
    /// unknown reference.
    fn is_bound(&self, payment: &EcrReference) -> impl Future<Output = Result<bool, ReadError>> + Send;

    /// Up to `limit` outbox entries still to send (neither forwarded nor dead-lettered), in the order
    /// written.
    fn pending_outbox(&self, limit: usize) -> impl Future<Output = Result<Vec<OutboxEntry>, ReadError>> + Send;

    /// Payments matching `filter`, oldest first, at most `filter.limit`.
    fn payments(&self, filter: PaymentFilter) -> impl Future<Output = Result<Vec<Payment>, ReadError>> + Send;

    /// Records a reversal (void or refund) of an approved or forwarded payment as `created`, before any
    /// byte of it goes to the terminal. Refused when the payment cannot be reversed, another reversal of
    /// it is under way or approved, or the amount is not positive or above the approved amount.
    fn record_reversal_created(
        &self,
        reversal: NewReversal,
    ) -> impl Future<Output = Result<Reversal, CreateReversalError>> + Send;

    /// Moves a reversal to `to` (the payment state machine, never beyond `approved`, `declined`,
    /// `not_charged`), appending what the terminal said to its history. For `approved`, in the same
    /// transaction, its payment moves to `voided` or `refunded` (see [`transition`](Self::transition)):
    /// the line is released and the reversal entry, carrying the reversal's amount and its own POS
    /// numbers, is put in the outbox.
    fn transition_reversal(
        &self,
        id: &EcrReference,
        to: PaymentState,
        said: TerminalSaid,
    ) -> impl Future<Output = Result<ReversalOutcome, TransitionError>> + Send;

    /// The reversal with this ECR reference.
    fn reversal(&self, id: &EcrReference) -> impl Future<Output = Result<Option<Reversal>, ReadError>> + Send;

    /// A reversal's history, oldest first.
    fn reversal_history(
        &self,
        id: &EcrReference,
    ) -> impl Future<Output = Result<Vec<TransitionRecord>, ReadError>> + Send;

    /// Every reversal of a payment, oldest first.
    fn reversals_of(&self, payment: &EcrReference) -> impl Future<Output = Result<Vec<Reversal>, ReadError>> + Send;

    /// Every reversal in one of these states, oldest first.
    fn reversals_in(&self, states: &[PaymentState]) -> impl Future<Output = Result<Vec<Reversal>, ReadError>> + Send;

    /// The journal's gross totals of one terminal batch, counted like the terminal counts them: sales
    /// are that terminal's payments approved in `batch` (approved, forwarded, voided or refunded since),
    /// by the approved amount; voids and refunds are its approved reversals whose own batch is `batch`.
    fn batch_totals(
        &self,
        terminal: &TerminalId,
        batch: &Batch,
    ) -> impl Future<Output = Result<BatchTotals, ReadError>> + Send;

    /// Records a settlement of a terminal batch: the batch is marked settled (and recorded if the journal
    /// had not seen it), and the comparison of both totals is kept; balanced when they are equal.
    fn record_settlement(
        &self,
        terminal: &TerminalId,
        batch: &Batch,
        terminal_totals: BatchTotals,
        journal_totals: BatchTotals,
    ) -> impl Future<Output = Result<SettlementRecord, SettlementError>> + Send;

    /// Recorded settlements, of one terminal or of all, newest first.
    fn settlements(
        &self,
        terminal: Option<&TerminalId>,
    ) -> impl Future<Output = Result<Vec<SettlementRecord>, ReadError>> + Send;

    /// Counters of the writer (batches, writes, commit time).
    fn metrics(&self) -> StoreMetrics;
}
