//! 日结: one business day's collections per collection point, insurance, channel and pension tier:
//! the payments the terminals approved, the voids and refunds approved that day, and the net.

use std::collections::BTreeMap;

use rusqlite::params;
use time::Date;

use super::{day_range, day_text, point_param, read, Cell, CellKind, Column, Field, Kind, Report, ReportError};
use crate::domain::{CollectionPointCode, Fen};

/// The only channel the journal records (cash collection has no source yet).
const CHANNEL_POS: &str = "pos";
/// The insurance column of a collection point's total row, and the point column of the grand total.
const TOTAL: &str = "total";

/// Counts and sums of one group.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    approved: (i64, i64),
    voids: (i64, i64),
    refunds: (i64, i64),
}

impl Figures {
    fn add(&mut self, other: &Figures) -> Option<()> {
        for (mine, theirs) in
            [(&mut self.approved, other.approved), (&mut self.voids, other.voids), (&mut self.refunds, other.refunds)]
        {
            mine.0 = mine.0.checked_add(theirs.0)?;
            mine.1 = mine.1.checked_add(theirs.1)?;
        }
        Some(())
    }

    /// (count, fen): approved minus voids minus refunds.
    fn net(&self) -> Option<(i64, i64)> {
        let count = self.approved.0.checked_sub(self.voids.0)?.checked_sub(self.refunds.0)?;
        let fen = self.approved.1.checked_sub(self.voids.1)?.checked_sub(self.refunds.1)?;
        Some((count, fen))
    }

    fn cells(&self) -> Option<Vec<Cell>> {
        let (net_count, net_fen) = self.net()?;
        let money = |f: i64| Cell::Money(Fen::from_fen(f));
        Some(vec![
            Cell::Count(self.approved.0),
            money(self.approved.1),
            Cell::Count(self.voids.0),
            money(self.voids.1),
            Cell::Count(self.refunds.0),
            money(self.refunds.1),
            Cell::Count(net_count),
            money(net_fen),
        ])
    }
}

/// The key of a row: point, insurance (pension first), tier in fen (pension only).
type GroupKey = (String, u8, String, Option<i64>);

fn insurance_rank(insurance: &str) -> u8 {
    match insurance {
        "pension" => 0,
        "medical" => 1,
        _ => 2,
    }
}

/// What the journal holds for the day, grouped.
fn gather(
    conn: &rusqlite::Connection,
    day: Date,
    point: Option<&str>,
) -> rusqlite::Result<BTreeMap<GroupKey, Figures>> {
    let (from, to) = day_range(day);
    let mut groups: BTreeMap<GroupKey, Figures> = BTreeMap::new();
    let key =
        |point: String, insurance: String, tier: Option<i64>| (point, insurance_rank(&insurance), insurance, tier);
    // A sale counts once the terminal approved it, whatever happened to it since (as the terminal's
    // batch totals and the settlement count it).
    let mut sales = conn.prepare(
        "SELECT t.collection_point, l.insurance,
                CASE WHEN l.insurance = 'pension' THEN p.amount_fen END,
                count(*), coalesce(sum(coalesce(p.approved_fen, p.amount_fen)), 0)
         FROM payments p JOIN roster_lines l ON l.id = p.line_id JOIN terminals t ON t.id = p.terminal_id
         WHERE p.created_at >= ?1 AND p.created_at < ?2
           AND p.state IN ('approved', 'forwarded', 'voided', 'refunded')
           AND (?3 IS NULL OR t.collection_point = ?3)
         GROUP BY 1, 2, 3",
    )?;
    let mut rows = sales.query(params![from, to, point])?;
    while let Some(r) = rows.next()? {
        let g = groups.entry(key(r.get(0)?, r.get(1)?, r.get(2)?)).or_default();
        g.approved = (r.get(3)?, r.get(4)?);
    }
    let mut reversals = conn.prepare(
        "SELECT t.collection_point, l.insurance,
                CASE WHEN l.insurance = 'pension' THEN p.amount_fen END, r.kind,
                count(*), coalesce(sum(coalesce(r.approved_fen, r.amount_fen)), 0)
         FROM reversals r JOIN payments p ON p.id = r.payment_id JOIN roster_lines l ON l.id = p.line_id
              JOIN terminals t ON t.id = r.terminal_id
         WHERE r.created_at >= ?1 AND r.created_at < ?2 AND r.state = 'approved'
           AND (?3 IS NULL OR t.collection_point = ?3)
         GROUP BY 1, 2, 3, 4",
    )?;
    let mut rows = reversals.query(params![from, to, point])?;
    while let Some(r) = rows.next()? {
        let g = groups.entry(key(r.get(0)?, r.get(1)?, r.get(2)?)).or_default();
        let figures = (r.get(4)?, r.get(5)?);
        match r.get::<_, String>(3)?.as_str() {
            "void" => g.voids = figures,
            // The schema allows only void and refund.
            _ => g.refunds = figures,
        }
    }
    Ok(groups)
}

/// The daily collection report (日结) of `day` (UTC+8) for one collection point, or every point
/// (`None`).
pub async fn daily(
    store: &crate::journal::SqliteStore,
    day: Date,
    point: Option<&CollectionPointCode>,
) -> Result<Report, ReportError> {
    let filter = point_param(point);
    let sql_point = filter.clone();
    let groups = read(store, move |conn| gather(conn, day, sql_point.as_deref())).await?;
    let overflow = || ReportError::Overflow { what: "daily figures" };

    let mut rows = Vec::new();
    let mut grand = Figures::default();
    let mut points = 0;
    let mut current: Option<(String, Figures)> = None;
    let close = |rows: &mut Vec<Vec<Cell>>, point: String, total: &Figures| -> Option<()> {
        let mut row = vec![Cell::Text(point), Cell::text(TOTAL), Cell::Empty, Cell::Empty];
        row.extend(total.cells()?);
        rows.push(row);
        Some(())
    };
    for ((point, _, insurance, tier), figures) in groups {
        match &mut current {
            Some((p, total)) if *p == point => total.add(&figures).ok_or_else(overflow)?,
            _ => {
                if let Some((p, total)) = current.take() {
                    close(&mut rows, p, &total).ok_or_else(overflow)?;
                }
                points += 1;
                current = Some((point.clone(), figures));
            }
        }
        grand.add(&figures).ok_or_else(overflow)?;
        let mut row = vec![
            Cell::Text(point),
            Cell::Text(insurance),
            Cell::text(CHANNEL_POS),
            tier.map_or(Cell::Empty, |t| Cell::Money(Fen::from_fen(t))),
        ];
        row.extend(figures.cells().ok_or_else(overflow)?);
        rows.push(row);
    }
    if let Some((p, total)) = current.take() {
        close(&mut rows, p, &total).ok_or_else(overflow)?;
    }
    if points > 1 {
        close(&mut rows, TOTAL.to_owned(), &grand).ok_or_else(overflow)?;
    }

    let (net_count, net_fen) = grand.net().ok_or_else(overflow)?;
    let money = |f: i64| Cell::Money(Fen::from_fen(f));
    let summary = vec![
        Field::new("collection_points", "网点数", Cell::Count(points)),
        Field::new("approved_count", "收款笔数", Cell::Count(grand.approved.0)),
        Field::new("approved_total", "收款金额", money(grand.approved.1)),
        Field::new("void_count", "撤销笔数", Cell::Count(grand.voids.0)),
        Field::new("void_total", "撤销金额", money(grand.voids.1)),
        Field::new("refund_count", "退货笔数", Cell::Count(grand.refunds.0)),
        Field::new("refund_total", "退货金额", money(grand.refunds.1)),
        Field::new("net_count", "净笔数", Cell::Count(net_count)),
        Field::new("net_total", "净额", money(net_fen)),
    ];
    Ok(Report {
        kind: Kind::Daily,
        title: "日结 daily collection report".to_owned(),
        params: [("date".to_owned(), Some(day_text(day))), ("collection_point".to_owned(), filter)]
            .into_iter()
            .collect(),
        notes: vec![
            "the day of a payment is the date (UTC+8) of its created_at, when the collector started it \
             (the terminal approves it seconds later); a void or refund counts on the date of its own \
             created_at, whatever day its payment was"
                .to_owned(),
            "approved: every payment the terminal approved (approved, forwarded, or since voided or \
             refunded), as the terminal's batch counts it; net = approved - voids - refunds"
                .to_owned(),
            "channel: pos only; cash collection is not recorded in the journal yet".to_owned(),
            "collection point: the terminal's; tier: the pension tier paid (medical has none); \
             insurance \"total\" rows add up a collection point, collection_point \"total\" every point"
                .to_owned(),
        ],
        columns: vec![
            Column::new("collection_point", "征缴网点", CellKind::Text),
            Column::new("insurance", "险种", CellKind::Text),
            Column::new("channel", "渠道", CellKind::Text),
            Column::new("tier", "缴费档次", CellKind::Money),
            Column::new("approved_count", "收款笔数", CellKind::Count),
            Column::new("approved_total", "收款金额", CellKind::Money),
            Column::new("void_count", "撤销笔数", CellKind::Count),
            Column::new("void_total", "撤销金额", CellKind::Money),
            Column::new("refund_count", "退货笔数", CellKind::Count),
            Column::new("refund_total", "退货金额", CellKind::Money),
            Column::new("net_count", "净笔数", CellKind::Count),
            Column::new("net_total", "净额", CellKind::Money),
        ],
        rows,
        summary,
    })
}
