//! 结算: the stored terminal settlements, each batch's totals as the terminal reported them against
//! the journal's, and whether they balanced.

use rusqlite::params;
use time::Date;

use super::{
    day_range, day_text, point_param, read, Cell, CellKind, Column, Field, Kind, Report, ReportError, MAX_ROWS,
};
use crate::domain::{CollectionPointCode, Fen};

/// Both sides' figures, in the order of the columns: sales, voids, refunds (count, fen).
const SIDES: [(&str, &str); 2] = [("terminal", "终端"), ("journal", "日记账")];
const FIGURES: [(&str, &str); 3] = [("sale", "消费"), ("void", "撤销"), ("refund", "退货")];

/// The settlement report: every settlement recorded on `date` (UTC+8; every day when `None`) of
/// the terminals of one collection point (every point when `None`), oldest first.
pub async fn settlement(
    store: &crate::journal::SqliteStore,
    date: Option<Date>,
    point: Option<&CollectionPointCode>,
) -> Result<Report, ReportError> {
    let filter = point_param(point);
    let sql_point = filter.clone();
    let (from, to) = date.map_or_else(|| ("0000".to_owned(), "9999-99".to_owned()), day_range);
    let limit = i64::try_from(MAX_ROWS + 1).unwrap_or(i64::MAX);
    let records = read(store, move |conn| {
        let mut stmt = conn.prepare(
            "SELECT s.id, s.at, t.collection_point, coalesce(t.name, t.id), s.terminal_id, s.batch_no, s.matches,
                    s.terminal_sale_count, s.terminal_sale_fen, s.terminal_void_count, s.terminal_void_fen,
                    s.terminal_refund_count, s.terminal_refund_fen,
                    s.journal_sale_count, s.journal_sale_fen, s.journal_void_count, s.journal_void_fen,
                    s.journal_refund_count, s.journal_refund_fen
             FROM settlements s JOIN terminals t ON t.id = s.terminal_id
             WHERE s.at >= ?1 AND s.at < ?2 AND (?3 IS NULL OR t.collection_point = ?3)
             ORDER BY s.id LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![from, to, sql_point, limit], |r| {
            let mut figures = [0i64; 12];
            for (i, f) in figures.iter_mut().enumerate() {
                *f = r.get(7 + i)?;
            }
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)? == 1,
                figures,
            ))
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
    })
    .await?;
    if records.len() > MAX_ROWS {
        return Err(ReportError::TooLarge { limit: MAX_ROWS });
    }
    let overflow = || ReportError::Overflow { what: "settlement totals" };
    let net = |f: &[i64]| f[1].checked_sub(f[3]).and_then(|n| n.checked_sub(f[5]));

    let mut rows = Vec::with_capacity(records.len());
    let (mut balanced, mut terminal_net, mut journal_net) = (0i64, 0i64, 0i64);
    for (id, at, point, name, terminal_id, batch, matches, figures) in &records {
        let mut row = vec![
            Cell::Count(*id),
            Cell::text(at),
            Cell::text(point),
            Cell::text(name),
            Cell::text(terminal_id),
            Cell::text(batch),
            Cell::Flag(*matches),
        ];
        for side in figures.chunks(6) {
            for pair in side.chunks(2) {
                row.push(Cell::Count(pair[0]));
                row.push(Cell::Money(Fen::from_fen(pair[1])));
            }
            row.push(Cell::Money(Fen::from_fen(net(side).ok_or_else(overflow)?)));
        }
        if *matches {
            balanced += 1;
        }
        terminal_net = terminal_net.checked_add(net(&figures[..6]).ok_or_else(overflow)?).ok_or_else(overflow)?;
        journal_net = journal_net.checked_add(net(&figures[6..]).ok_or_else(overflow)?).ok_or_else(overflow)?;
        rows.push(row);
    }
    let total = i64::try_from(records.len()).unwrap_or(i64::MAX);

    let mut columns = vec![
        Column::new("id", "编号", CellKind::Count),
        Column::new("at", "结算时间", CellKind::Text),
        Column::new("collection_point", "征缴网点", CellKind::Text),
        Column::new("terminal", "终端", CellKind::Text),
        Column::new("terminal_id", "终端号", CellKind::Text),
        Column::new("batch", "批次号", CellKind::Text),
        Column::new("balanced", "平衡", CellKind::Flag),
    ];
    for (side, side_zh) in SIDES {
        for (figure, figure_zh) in FIGURES {
            columns.push(Column::new(
                &format!("{side}_{figure}_count"),
                &format!("{side_zh}{figure_zh}笔数"),
                CellKind::Count,
            ));
            columns.push(Column::new(
                &format!("{side}_{figure}_total"),
                &format!("{side_zh}{figure_zh}金额"),
                CellKind::Money,
            ));
        }
        columns.push(Column::new(&format!("{side}_net"), &format!("{side_zh}净额"), CellKind::Money));
    }
    Ok(Report {
        kind: Kind::Settlement,
        title: "结算 terminal settlement report".to_owned(),
        params: [("date".to_owned(), date.map(day_text)), ("collection_point".to_owned(), filter)]
            .into_iter()
            .collect(),
        notes: vec![
            "every settlement recorded (a batch settled twice shows twice), oldest first; the day is the \
             date (UTC+8) of its time; the collection point is the terminal's"
                .to_owned(),
            "terminal: the totals the terminal reported for the batch; journal: the journal's approved \
             sales, voids and refunds of that terminal and batch; net = sales - voids - refunds"
                .to_owned(),
        ],
        columns,
        rows,
        summary: vec![
            Field::new("settlements", "结算次数", Cell::Count(total)),
            Field::new("balanced", "平衡", Cell::Count(balanced)),
            Field::new("not_balanced", "不平衡", Cell::Count(total - balanced)),
            Field::new("terminal_net", "终端净额合计", Cell::Money(Fen::from_fen(terminal_net))),
            Field::new("journal_net", "日记账净额合计", Cell::Money(Fen::from_fen(journal_net))),
        ],
    })
}
