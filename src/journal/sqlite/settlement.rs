//! Settlement: the journal's batch totals, and the record of each comparison with a terminal's.

use rusqlite::{params, Connection, Row};
use zhengjiao_protocol::message::{Batch, TerminalId};

use super::super::error::SettlementError;
use super::super::settlement::{BatchTotals, SettlementRecord};
use super::super::writer::{Ctx, Refusal, Shared};
use super::codec::parse;
use super::ReadFail;

/// A count read back (never negative, never above `u32::MAX` in practice).
fn count(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The journal's gross totals of one terminal batch.
pub(super) fn batch_totals(conn: &Connection, terminal: &TerminalId, batch: &Batch) -> Result<BatchTotals, ReadFail> {
    let mut totals = BatchTotals::default();
    // A sale counts once it was approved, whatever happened to it since (the terminal counts a voided
    // sale as a sale and as a void).
    let (sales, sale_fen): (i64, i64) = conn
        .prepare_cached(
            "SELECT count(*), coalesce(sum(coalesce(approved_fen, amount_fen)), 0) FROM payments
             WHERE terminal_id = ?1 AND batch_no = ?2 AND state IN ('approved', 'forwarded', 'voided', 'refunded')",
        )?
        .query_row(params![terminal.as_str(), batch.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
    totals.sale_count = count(sales);
    totals.sale_fen = sale_fen;
    let mut stmt = conn.prepare_cached(
        "SELECT kind, count(*), coalesce(sum(coalesce(approved_fen, amount_fen)), 0) FROM reversals
         WHERE terminal_id = ?1 AND batch_no = ?2 AND state = 'approved' GROUP BY kind",
    )?;
    let mut rows = stmt.query(params![terminal.as_str(), batch.as_str()])?;
    while let Some(r) = rows.next()? {
        let (n, fen): (i64, i64) = (r.get(1)?, r.get(2)?);
        match r.get::<_, String>(0)?.as_str() {
            "void" => (totals.void_count, totals.void_fen) = (count(n), fen),
            "refund" => (totals.refund_count, totals.refund_fen) = (count(n), fen),
            // The schema's CHECK allows no other kind.
            _ => {}
        }
    }
    Ok(totals)
}

/// Records a settlement; the batch is marked settled.
pub(super) fn record_settlement(
    ctx: &Ctx<'_>,
    terminal: &TerminalId,
    batch: &Batch,
    terminal_totals: &BatchTotals,
    journal_totals: &BatchTotals,
) -> Result<SettlementRecord, Refusal<SettlementError>> {
    let conn = ctx.conn;
    if !conn.prepare_cached("SELECT 1 FROM terminals WHERE id = ?1")?.exists([terminal.as_str()])? {
        return Err(Refusal::Refused(SettlementError::UnknownTerminal { terminal: terminal.as_str().to_owned() }));
    }
    let now = ctx.now();
    conn.prepare_cached(
        "INSERT INTO terminal_batches (terminal_id, batch_no, first_seen_at, settled_at) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT (terminal_id, batch_no) DO UPDATE SET settled_at = excluded.settled_at",
    )?
    .execute(params![terminal.as_str(), batch.as_str(), now])?;
    let balanced = terminal_totals == journal_totals;
    let (t, j) = (terminal_totals, journal_totals);
    conn.prepare_cached(
        "INSERT INTO settlements (terminal_id, batch_no,
             terminal_sale_count, terminal_sale_fen, terminal_void_count, terminal_void_fen, terminal_refund_count,
             terminal_refund_fen, journal_sale_count, journal_sale_fen, journal_void_count, journal_void_fen,
             journal_refund_count, journal_refund_fen, matches, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )?
    .execute(params![
        terminal.as_str(),
        batch.as_str(),
        t.sale_count,
        t.sale_fen,
        t.void_count,
        t.void_fen,
        t.refund_count,
        t.refund_fen,
        j.sale_count,
        j.sale_fen,
        j.void_count,
        j.void_fen,
        j.refund_count,
        j.refund_fen,
        balanced,
        now,
    ])?;
    Ok(SettlementRecord {
        id: conn.last_insert_rowid(),
        terminal: *terminal,
        batch: *batch,
        terminal_totals: *terminal_totals,
        journal_totals: *journal_totals,
        balanced,
        at: now,
    })
}

pub(super) fn totals_from(r: &Row<'_>, first: usize) -> rusqlite::Result<BatchTotals> {
    Ok(BatchTotals {
        sale_count: count(r.get(first)?),
        sale_fen: r.get(first + 1)?,
        void_count: count(r.get(first + 2)?),
        void_fen: r.get(first + 3)?,
        refund_count: count(r.get(first + 4)?),
        refund_fen: r.get(first + 5)?,
    })
}

/// Recorded settlements, of one terminal or of all, newest first.
pub(super) fn settlements(
    conn: &Connection,
    shared: &Shared,
    terminal: Option<&TerminalId>,
) -> Result<Vec<SettlementRecord>, ReadFail> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, terminal_id, batch_no,
                terminal_sale_count, terminal_sale_fen, terminal_void_count, terminal_void_fen,
                terminal_refund_count, terminal_refund_fen, journal_sale_count, journal_sale_fen,
                journal_void_count, journal_void_fen, journal_refund_count, journal_refund_fen, matches, at
         FROM settlements WHERE ?1 IS NULL OR terminal_id = ?1 ORDER BY id DESC",
    )?;
    let mut rows = stmt.query([terminal.map(TerminalId::as_str)])?;
    let mut out = Vec::new();
    let t = "settlements";
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let key = id.to_string();
        out.push(SettlementRecord {
            id,
            terminal: parse(shared, t, &key, "terminal_id", &r.get::<_, String>(1)?, TerminalId::new)?,
            batch: parse(shared, t, &key, "batch_no", &r.get::<_, String>(2)?, Batch::new)?,
            terminal_totals: totals_from(r, 3)?,
            journal_totals: totals_from(r, 9)?,
            balanced: r.get::<_, i64>(15)? == 1,
            at: r.get(16)?,
        });
    }
    Ok(out)
}
