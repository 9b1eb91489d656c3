//! 代征手续费: the commission finance pays per person-time collected (policy, 四(三)), per collecting
//! unit (collection point) and month, from the payments the ledger holds, net of reversals.

use rusqlite::params;

use super::{month_range, point_param, read, Cell, CellKind, Column, Field, Kind, Report, ReportError, YearMonth};
use crate::domain::{CollectionPointCode, Fen};

/// The month column of the total row.
const TOTAL: &str = "total";

/// One (month, point) group as the journal holds it.
struct Group {
    month: String,
    point: String,
    /// Payments whose ledger entry is forwarded.
    forwarded: i64,
    /// Of those, payments since voided or refunded.
    reversed: i64,
    /// Bound payments whose entry is not forwarded yet (queued or dead letter).
    awaiting: i64,
}

/// The commission report for one month (or every month, `None`) and one collection point (or every
/// point, `None`), at `rate` per person-time (the policy's
/// [`commission_per_person_time`](crate::policy::Policy::commission_per_person_time)).
pub async fn commission(
    store: &crate::journal::SqliteStore,
    rate: Fen,
    month: Option<YearMonth>,
    point: Option<&CollectionPointCode>,
) -> Result<Report, ReportError> {
    let filter = point_param(point);
    let sql_point = filter.clone();
    let (from, to) = month.map_or_else(|| ("0000".to_owned(), "9999-99".to_owned()), month_range);
    let groups = read(store, move |conn| {
        // A payment earns once the ledger holds it (its entry is forwarded), and not at all if it
        // was voided or refunded, whenever that happened.
        let mut stmt = conn.prepare(
            "SELECT substr(p.created_at, 1, 7), t.collection_point,
                    coalesce(sum(o.forwarded_at IS NOT NULL), 0),
                    coalesce(sum(o.forwarded_at IS NOT NULL AND (p.state IN ('voided', 'refunded')
                        OR EXISTS (SELECT 1 FROM reversals r WHERE r.payment_id = p.id AND r.state = 'approved'))), 0),
                    coalesce(sum(o.forwarded_at IS NULL AND p.state = 'approved'), 0)
             FROM ledger_outbox o JOIN payments p ON p.id = o.payment_id JOIN terminals t ON t.id = p.terminal_id
             WHERE o.kind = 'payment' AND p.created_at >= ?1 AND p.created_at < ?2
               AND (?3 IS NULL OR t.collection_point = ?3)
             GROUP BY 1, 2 ORDER BY 1, 2",
        )?;
        let rows = stmt.query_map(params![from, to, sql_point], |r| {
            Ok(Group {
                month: r.get(0)?,
                point: r.get(1)?,
                forwarded: r.get(2)?,
                reversed: r.get(3)?,
                awaiting: r.get(4)?,
            })
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
    })
    .await?;
    let overflow = || ReportError::Overflow { what: "commission" };

    let mut rows = Vec::new();
    let (mut forwarded, mut reversed, mut person_times, mut awaiting, mut amount) = (0i64, 0i64, 0i64, 0i64, Fen::ZERO);
    for g in &groups {
        let net = g.forwarded.checked_sub(g.reversed).ok_or_else(overflow)?;
        let due = rate.checked_mul(net).ok_or_else(overflow)?;
        forwarded = forwarded.checked_add(g.forwarded).ok_or_else(overflow)?;
        reversed = reversed.checked_add(g.reversed).ok_or_else(overflow)?;
        person_times = person_times.checked_add(net).ok_or_else(overflow)?;
        awaiting = awaiting.checked_add(g.awaiting).ok_or_else(overflow)?;
        amount = amount.checked_add(due).ok_or_else(overflow)?;
        rows.push(vec![
            Cell::text(&g.month),
            Cell::text(&g.point),
            Cell::Count(g.forwarded),
            Cell::Count(g.reversed),
            Cell::Count(net),
            Cell::Money(rate),
            Cell::Money(due),
            Cell::Count(g.awaiting),
        ]);
    }
    if groups.len() > 1 {
        rows.push(vec![
            Cell::text(TOTAL),
            Cell::Empty,
            Cell::Count(forwarded),
            Cell::Count(reversed),
            Cell::Count(person_times),
            Cell::Money(rate),
            Cell::Money(amount),
            Cell::Count(awaiting),
        ]);
    }
    Ok(Report {
        kind: Kind::Commission,
        title: "代征手续费 commission report".to_owned(),
        params: [("month".to_owned(), month.map(|m| m.to_string())), ("collection_point".to_owned(), filter)]
            .into_iter()
            .collect(),
        notes: vec![
            format!(
                "the policy pays {} yuan per person-time (每人次); a person-time is one payment (a person \
                 paying both insurances counts twice)",
                rate.to_yuan_string()
            ),
            "a payment earns once the tax ledger holds it (forwarded) and not at all once voided or \
             refunded, whenever that happened; person_times = forwarded - reversed"
                .to_owned(),
            "month: of the payment's created_at (UTC+8); collecting unit: the terminal's collection point".to_owned(),
            "awaiting_ledger: bound payments whose ledger entry is not forwarded yet (queued or dead \
             letter); they earn once forwarded"
                .to_owned(),
        ],
        columns: vec![
            Column::new("month", "月份", CellKind::Text),
            Column::new("collection_point", "代征单位", CellKind::Text),
            Column::new("forwarded", "已入库人次", CellKind::Count),
            Column::new("reversed", "已撤销退货人次", CellKind::Count),
            Column::new("person_times", "计费人次", CellKind::Count),
            Column::new("rate", "每人次标准", CellKind::Money),
            Column::new("commission", "手续费", CellKind::Money),
            Column::new("awaiting_ledger", "待入库人次", CellKind::Count),
        ],
        rows,
        summary: vec![
            Field::new("rate", "每人次标准", Cell::Money(rate)),
            Field::new("person_times", "计费人次", Cell::Count(person_times)),
            Field::new("commission", "手续费合计", Cell::Money(amount)),
            Field::new("awaiting_ledger", "待入库人次", Cell::Count(awaiting)),
        ],
    })
}
