//! The ledger forwarder's reads and writes of the outbox (see `journal::outbox`).

use rusqlite::{params, Connection, OptionalExtension};
use zhengjiao_protocol::message::{Batch, TerminalId};

use super::super::error::ForwardError;
use super::super::outbox::{AnswersRecorded, DaySettlement, LedgerAnswer, LedgerVerdict, OutboxCounts, QueuedEntry};
use super::super::payment::OutboxEntry;
use super::super::settlement::SettlementRecord;
use super::super::writer::{Ctx, Refusal, Shared};
use super::codec::parse;
use super::payment::{mark_forward_failed, mark_forwarded, parse_kind, read_outbox_entry, OUTBOX_COLUMNS};
use super::settlement::totals_from;
use super::ReadFail;
use crate::domain::CollectionPointCode;

/// Up to `limit` entries ready to send with a sequence number above `after`, in the order written. A
/// reversal is ready only once its payment entry is forwarded.
pub(super) fn sendable(
    conn: &Connection,
    shared: &Shared,
    after: i64,
    limit: usize,
) -> Result<Vec<QueuedEntry>, ReadFail> {
    // The limit is written into the statement, not bound: SQLite plans with a bound LIMIT's value and
    // so prepares such a statement again on every execution. The forwarder's limits are a handful of
    // values (the batch size, halved), each a statement of the cache.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT o.seq, o.entry_id, o.kind, o.reverses, o.payload, o.attempts, o.created_at
         FROM ledger_outbox o LEFT JOIN ledger_outbox p ON p.entry_id = o.reverses
         WHERE o.forwarded_at IS NULL AND o.dead_letter IS NULL AND o.seq > ?1
           AND (o.reverses IS NULL OR p.forwarded_at IS NOT NULL)
         ORDER BY o.seq LIMIT {}",
        i64::try_from(limit).unwrap_or(i64::MAX)
    ))?;
    let mut rows = stmt.query(params![after])?;
    let mut out = Vec::with_capacity(limit.min(1024));
    while let Some(r) = rows.next()? {
        let entry_id: String = r.get(1)?;
        out.push(QueuedEntry {
            seq: r.get(0)?,
            kind: parse_kind(shared, &entry_id, &r.get::<_, String>(2)?)?,
            reverses: r.get(3)?,
            payload: r.get(4)?,
            attempts: u32::try_from(r.get::<_, i64>(5)?).unwrap_or(u32::MAX),
            created_at: r.get(6)?,
            entry_id,
        });
    }
    Ok(out)
}

/// Records a batch of the ledger's answers in the one transaction of this write.
pub(super) fn record_answers(
    ctx: &Ctx<'_>,
    answers: &[LedgerAnswer],
) -> Result<AnswersRecorded, Refusal<ForwardError>> {
    let mut done = AnswersRecorded::default();
    for answer in answers {
        let applied = match &answer.verdict {
            LedgerVerdict::Holds { tax_voucher_no } => {
                mark_forwarded(ctx, &answer.entry_id, tax_voucher_no).map(|now| {
                    if now {
                        done.forwarded += 1;
                    } else {
                        done.already_forwarded += 1;
                    }
                })
            }
            LedgerVerdict::Rejected { reason } => {
                mark_forward_failed(ctx, &answer.entry_id, reason, true).map(|()| done.dead_lettered += 1)
            }
        };
        match applied {
            Ok(()) => {}
            // Refusals are decided before anything of that entry is written.
            Err(Refusal::Refused(e)) => done.refused.push(e.to_string()),
            Err(Refusal::Sql(e)) => return Err(Refusal::Sql(e)),
        }
    }
    Ok(done)
}

/// Counts one failed attempt (the whole batch failed: no answer, an error status, a broken answer) on
/// each entry still unsent.
pub(super) fn record_attempt_failed(
    ctx: &Ctx<'_>,
    entry_ids: &[String],
    error: &str,
) -> Result<(), Refusal<ForwardError>> {
    let mut stmt = ctx.conn.prepare_cached(
        "UPDATE ledger_outbox SET attempts = attempts + 1, last_error = ?2
         WHERE entry_id = ?1 AND forwarded_at IS NULL AND dead_letter IS NULL",
    )?;
    for id in entry_ids {
        stmt.execute(params![id, error])?;
    }
    Ok(())
}

/// The counts of the status.
pub(super) fn counts(conn: &Connection) -> Result<OutboxCounts, ReadFail> {
    // One snapshot: a batch's answers committed between two of the counts would make them disagree
    // (an entry counted both in the backlog and as a dead letter).
    let snapshot = conn.unchecked_transaction()?;
    let conn: &Connection = &snapshot;
    let backlog: i64 = conn
        .prepare_cached("SELECT count(*) FROM ledger_outbox WHERE forwarded_at IS NULL AND dead_letter IS NULL")?
        .query_row([], |r| r.get(0))?;
    let held: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM ledger_outbox o JOIN ledger_outbox p ON p.entry_id = o.reverses
             WHERE o.forwarded_at IS NULL AND o.dead_letter IS NULL AND p.forwarded_at IS NULL",
        )?
        .query_row([], |r| r.get(0))?;
    let (dead, forwarded): (Option<i64>, Option<i64>) = conn
        .prepare_cached("SELECT sum(dead_letter IS NOT NULL), sum(forwarded_at IS NOT NULL) FROM ledger_outbox")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let oldest = conn
        .prepare_cached(
            "SELECT entry_id, created_at FROM ledger_outbox WHERE forwarded_at IS NULL AND dead_letter IS NULL
             ORDER BY seq LIMIT 1",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let n = |v: i64| u64::try_from(v).unwrap_or_default();
    Ok(OutboxCounts {
        backlog: n(backlog),
        held: n(held),
        dead_letters: n(dead.unwrap_or_default()),
        forwarded: n(forwarded.unwrap_or_default()),
        oldest_unsent: oldest,
    })
}

/// Up to `limit` dead letters, oldest first.
pub(super) fn dead_letters(conn: &Connection, shared: &Shared, limit: usize) -> Result<Vec<OutboxEntry>, ReadFail> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM ledger_outbox WHERE dead_letter IS NOT NULL ORDER BY seq LIMIT ?1"
    ))?;
    let mut rows = stmt.query([i64::try_from(limit).unwrap_or(i64::MAX)])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(read_outbox_entry(shared, r)?);
    }
    Ok(out)
}

/// The outbox entry with this id.
pub(super) fn entry(conn: &Connection, shared: &Shared, entry_id: &str) -> Result<Option<OutboxEntry>, ReadFail> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {OUTBOX_COLUMNS} FROM ledger_outbox WHERE entry_id = ?1"))?;
    let mut rows = stmt.query([entry_id])?;
    match rows.next()? {
        Some(r) => read_outbox_entry(shared, r).map(Some),
        None => Ok(None),
    }
}

/// Puts a dead letter back in the queue; its rejection stays in `last_error`.
pub(super) fn requeue(ctx: &Ctx<'_>, entry_id: &str) -> Result<OutboxEntry, Refusal<ForwardError>> {
    let dead: Option<Option<String>> = ctx
        .conn
        .prepare_cached("SELECT dead_letter FROM ledger_outbox WHERE entry_id = ?1")?
        .query_row([entry_id], |r| r.get(0))
        .optional()?;
    let reason = match dead {
        None => return Err(Refusal::Refused(ForwardError::UnknownEntry { entry_id: entry_id.to_owned() })),
        Some(None) => return Err(Refusal::Refused(ForwardError::NotDeadLettered { entry_id: entry_id.to_owned() })),
        Some(Some(reason)) => reason,
    };
    ctx.conn
        .prepare_cached("UPDATE ledger_outbox SET dead_letter = NULL, last_error = ?2 WHERE entry_id = ?1")?
        .execute(params![entry_id, format!("requeued by an operator at {}; rejected before: {reason}", ctx.now())])?;
    match entry(ctx.conn, ctx.shared, entry_id) {
        Ok(Some(e)) => Ok(e),
        Ok(None) => Err(Refusal::Refused(ForwardError::UnknownEntry { entry_id: entry_id.to_owned() })),
        Err(e) => Err(e.into_refusal()),
    }
}

/// A date as the first characters of the stored times of that day: `2020-10-21`.
fn day(date: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}

/// Every outbox entry whose `occurred_at` falls on `date` (UTC+8; the payload's time carries +08:00),
/// of one collection point or all, in the order written.
pub(super) fn entries_on(
    conn: &Connection,
    shared: &Shared,
    date: time::Date,
    point: Option<&CollectionPointCode>,
) -> Result<Vec<OutboxEntry>, ReadFail> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM ledger_outbox
         WHERE substr(json_extract(payload, '$.occurred_at'), 1, 10) = ?1
           AND (?2 IS NULL OR json_extract(payload, '$.collection_point') = ?2)
         ORDER BY seq"
    ))?;
    let mut rows = stmt.query(params![day(date), point.map(CollectionPointCode::as_str)])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(read_outbox_entry(shared, r)?);
    }
    Ok(out)
}

/// Settlements recorded on `date` (UTC+8), oldest first, with their terminal's collection point.
pub(super) fn settlements_on(
    conn: &Connection,
    shared: &Shared,
    date: time::Date,
) -> Result<Vec<DaySettlement>, ReadFail> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.id, s.terminal_id, s.batch_no,
                s.terminal_sale_count, s.terminal_sale_fen, s.terminal_void_count, s.terminal_void_fen,
                s.terminal_refund_count, s.terminal_refund_fen, s.journal_sale_count, s.journal_sale_fen,
                s.journal_void_count, s.journal_void_fen, s.journal_refund_count, s.journal_refund_fen, s.matches,
                s.at, t.collection_point
         FROM settlements s JOIN terminals t ON t.id = s.terminal_id
         WHERE s.at >= ?1 AND s.at < ?2 ORDER BY s.id",
    )?;
    let next = date.next_day().map(day).unwrap_or_else(|| "9999-99-99".to_owned());
    let mut rows = stmt.query(params![day(date), next])?;
    let mut out = Vec::new();
    let t = "settlements";
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let key = id.to_string();
        out.push(DaySettlement {
            collection_point: parse(
                shared,
                t,
                &key,
                "terminal collection_point",
                &r.get::<_, String>(17)?,
                CollectionPointCode::parse,
            )?,
            record: SettlementRecord {
                id,
                terminal: parse(shared, t, &key, "terminal_id", &r.get::<_, String>(1)?, TerminalId::new)?,
                batch: parse(shared, t, &key, "batch_no", &r.get::<_, String>(2)?, Batch::new)?,
                terminal_totals: totals_from(r, 3)?,
                journal_totals: totals_from(r, 9)?,
                balanced: r.get::<_, i64>(15)? == 1,
                at: r.get(16)?,
            },
        });
    }
    Ok(out)
}
