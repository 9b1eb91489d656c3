//! Settlement (结算): a terminal's batch totals against the journal's, and the record of each
//! comparison.

use zhengjiao_protocol::message::{Batch, TerminalId};

/// Gross totals of one terminal batch, counted the way the terminal counts them (wire-protocol.md
/// §5.3): a sale voided later is still a sale, and also a void; declined and uncharged transactions
/// count nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchTotals {
    /// Approved sales (消费笔数).
    pub sale_count: u32,
    /// Their approved amount, in fen.
    pub sale_fen: i64,
    /// Approved voids (撤销笔数).
    pub void_count: u32,
    /// Their approved amount, in fen.
    pub void_fen: i64,
    /// Approved refunds (退货笔数).
    pub refund_count: u32,
    /// Their approved amount, in fen.
    pub refund_fen: i64,
}

/// One recorded settlement of a terminal batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementRecord {
    /// The row id, increasing with time.
    pub id: i64,
    /// The terminal settled.
    pub terminal: TerminalId,
    /// 批次号, the batch settled.
    pub batch: Batch,
    /// The totals the terminal reported.
    pub terminal_totals: BatchTotals,
    /// The journal's totals for the same terminal and batch.
    pub journal_totals: BatchTotals,
    /// True when both totals are equal (平账).
    pub balanced: bool,
    /// When it was recorded (RFC 3339, +08:00).
    pub at: String,
}
