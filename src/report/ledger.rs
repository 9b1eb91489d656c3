//! 入库: the ledger forwarder's status (backlog, oldest unsent entry and its age, last error, dead
//! letters, forwarded), with the outbox counted per collection point.

use rusqlite::params;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{point_param, read, Cell, CellKind, Column, Field, Kind, Report, ReportError};
use crate::domain::CollectionPointCode;
use crate::ledger::LedgerStatus;

/// The collection-point column of the row for every point.
const ALL: &str = "all";

/// The outbox of one collection point.
#[derive(Debug, Clone, Default)]
struct Outbox {
    point: String,
    backlog: i64,
    held: i64,
    dead_letters: i64,
    forwarded: i64,
    /// (seq, entry id, written at) of the oldest entry of the backlog.
    oldest: Option<(i64, String, String)>,
}

fn gather(conn: &rusqlite::Connection, point: Option<&str>) -> rusqlite::Result<Vec<Outbox>> {
    // The entry's collection point is in its payload (the terminal's point, as the ledger gets it).
    let mut stmt = conn.prepare(
        "SELECT json_extract(o.payload, '$.collection_point'),
                coalesce(sum(o.forwarded_at IS NULL AND o.dead_letter IS NULL), 0),
                coalesce(sum(o.forwarded_at IS NULL AND o.dead_letter IS NULL AND o.reverses IS NOT NULL
                             AND p.forwarded_at IS NULL), 0),
                coalesce(sum(o.dead_letter IS NOT NULL), 0),
                coalesce(sum(o.forwarded_at IS NOT NULL), 0)
         FROM ledger_outbox o LEFT JOIN ledger_outbox p ON p.entry_id = o.reverses
         WHERE ?1 IS NULL OR json_extract(o.payload, '$.collection_point') = ?1
         GROUP BY 1 ORDER BY 1",
    )?;
    let mut out: Vec<Outbox> = stmt
        .query_map(params![point], |r| {
            Ok(Outbox {
                point: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                backlog: r.get(1)?,
                held: r.get(2)?,
                dead_letters: r.get(3)?,
                forwarded: r.get(4)?,
                oldest: None,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    // SQLite gives the other columns of the row that holds min(seq).
    let mut oldest = conn.prepare(
        "SELECT json_extract(payload, '$.collection_point'), min(seq), entry_id, created_at FROM ledger_outbox
         WHERE forwarded_at IS NULL AND dead_letter IS NULL
           AND (?1 IS NULL OR json_extract(payload, '$.collection_point') = ?1)
         GROUP BY 1",
    )?;
    let mut rows = oldest.query(params![point])?;
    while let Some(r) = rows.next()? {
        let p = r.get::<_, Option<String>>(0)?.unwrap_or_default();
        let entry = Some((r.get(1)?, r.get(2)?, r.get(3)?));
        if let Some(o) = out.iter_mut().find(|o| o.point == p) {
            o.oldest = entry;
        }
    }
    Ok(out)
}

/// Seconds from `at` (RFC 3339) to `now`, never negative.
fn age(at: &str, now: OffsetDateTime) -> Option<i64> {
    OffsetDateTime::parse(at, &Rfc3339).ok().map(|t| (now - t).whole_seconds().max(0))
}

/// The ledger status report: the forwarder's `status` (as [`Forwarder::status`] gives it), and the
/// outbox of one collection point (or every point and their sum, `None`); ages by `now`.
///
/// [`Forwarder::status`]: crate::ledger::Forwarder::status
pub async fn ledger(
    store: &crate::journal::SqliteStore,
    status: &LedgerStatus,
    now: OffsetDateTime,
    point: Option<&CollectionPointCode>,
) -> Result<Report, ReportError> {
    let filter = point_param(point);
    let sql_point = filter.clone();
    let mut groups = read(store, move |conn| gather(conn, sql_point.as_deref())).await?;
    let overflow = || ReportError::Overflow { what: "outbox counts" };
    if let Some(p) = &filter {
        if groups.is_empty() {
            groups.push(Outbox { point: p.clone(), ..Outbox::default() });
        }
    } else {
        let mut all = Outbox { point: ALL.to_owned(), ..Outbox::default() };
        for g in &groups {
            all.backlog = all.backlog.checked_add(g.backlog).ok_or_else(overflow)?;
            all.held = all.held.checked_add(g.held).ok_or_else(overflow)?;
            all.dead_letters = all.dead_letters.checked_add(g.dead_letters).ok_or_else(overflow)?;
            all.forwarded = all.forwarded.checked_add(g.forwarded).ok_or_else(overflow)?;
            if let Some(o) = &g.oldest {
                if all.oldest.as_ref().is_none_or(|a| o.0 < a.0) {
                    all.oldest = Some(o.clone());
                }
            }
        }
        groups.push(all);
    }
    let last_error =
        status.last_error.as_ref().map(|e| format!("{} at {}: {} ({} entries)", e.kind, e.at, e.message, e.entries));
    let rows = groups
        .iter()
        .map(|g| {
            vec![
                Cell::text(&g.point),
                Cell::Count(g.backlog),
                Cell::Count(g.held),
                Cell::Count(g.dead_letters),
                Cell::Count(g.forwarded),
                Cell::opt_text(g.oldest.as_ref().map(|o| o.1.clone())),
                Cell::opt_text(g.oldest.as_ref().map(|o| o.2.clone())),
                g.oldest.as_ref().and_then(|o| age(&o.2, now)).map_or(Cell::Empty, Cell::Count),
                Cell::text(status.state),
                Cell::opt_text(last_error.clone()),
            ]
        })
        .collect();
    let count = |n: u64| Cell::Count(i64::try_from(n).unwrap_or(i64::MAX));
    Ok(Report {
        kind: Kind::Ledger,
        title: "入库 ledger forwarding status".to_owned(),
        params: [("collection_point".to_owned(), filter)].into_iter().collect(),
        notes: vec![
            "backlog: entries neither acknowledged by the ledger nor dead letters; held: reversals of \
             them waiting until the ledger holds their payment; the age is by the business clock"
                .to_owned(),
            "the collection point of an entry is its terminal's; forwarder_state and last_error are \
             the forwarder's, the same on every row"
                .to_owned(),
        ],
        columns: vec![
            Column::new("collection_point", "征缴网点", CellKind::Text),
            Column::new("backlog", "待发送", CellKind::Count),
            Column::new("held", "待发送冲正", CellKind::Count),
            Column::new("dead_letters", "拒收", CellKind::Count),
            Column::new("forwarded", "已入库", CellKind::Count),
            Column::new("oldest_unsent", "最早待发送", CellKind::Text),
            Column::new("oldest_unsent_at", "最早待发送时间", CellKind::Text),
            Column::new("oldest_unsent_age_secs", "等待秒数", CellKind::Count),
            Column::new("forwarder_state", "转发状态", CellKind::Text),
            Column::new("last_error", "最近错误", CellKind::Text),
        ],
        rows,
        summary: vec![
            Field::new("endpoint", "税务端地址", Cell::text(&status.endpoint)),
            Field::new("state", "转发状态", Cell::text(status.state)),
            Field::new("consecutive_failures", "连续失败", Cell::Count(i64::from(status.consecutive_failures))),
            Field::new("next_attempt_in_ms", "下次尝试毫秒", status.next_attempt_in_ms.map_or(Cell::Empty, count)),
            Field::new("last_success_at", "最近成功", Cell::opt_text(status.last_success_at.clone())),
            Field::new("last_error", "最近错误", Cell::opt_text(last_error)),
            Field::new("batches_answered", "已应答批次", count(status.batches_answered)),
            Field::new("entries_acknowledged", "已确认条目", count(status.entries_acknowledged)),
            Field::new("entries_rejected", "已拒收条目", count(status.entries_rejected)),
            Field::new("in_flight", "在途批次", count(u64::try_from(status.in_flight).unwrap_or(u64::MAX))),
        ],
    })
}
