//! 催缴清单: the unpaid lines of a collection point, for the collectors to call on: serial, insurance,
//! year, name, masked ID number, amount due, hardship, street and community.

use rusqlite::params;

use super::{mask_id, point_param, read, Cell, CellKind, Column, Field, Kind, Report, ReportError, MAX_ROWS};
use crate::domain::{CollectionPointCode, Fen};

/// One unpaid line.
struct Unpaid {
    point: String,
    street: Option<String>,
    community: Option<String>,
    serial: String,
    insurance: String,
    year: i64,
    name: String,
    id_number: String,
    amount_due: Option<i64>,
    hardship: String,
    under_way: bool,
}

/// The unpaid lines of `year` (the policy's) of one collection point (every point, `None`), by point,
/// street, community, insurance and serial; at most [`MAX_ROWS`].
pub async fn unpaid(
    store: &crate::journal::SqliteStore,
    year: i32,
    point: Option<&CollectionPointCode>,
) -> Result<Report, ReportError> {
    let filter = point_param(point);
    let sql_point = filter.clone();
    let limit = i64::try_from(MAX_ROWS + 1).unwrap_or(i64::MAX);
    let lines = read(store, move |conn| {
        // A line is not chased when the same person paid another line of the insurance and year
        // (the roster may list a person twice; one payment per person, insurance and year).
        let mut stmt = conn.prepare(
            "SELECT l.collection_point, l.street, l.community, l.serial, l.insurance, l.year, l.name, l.id_number,
                    l.amount_due_fen, l.hardship,
                    EXISTS (SELECT 1 FROM payments p WHERE p.line_id = l.id AND p.state IN ('created', 'sent', 'unknown'))
             FROM roster_lines l
             WHERE l.paid_by IS NULL AND l.year = ?1 AND (?2 IS NULL OR l.collection_point = ?2)
               AND NOT EXISTS (SELECT 1 FROM roster_lines o WHERE o.id_number = l.id_number
                               AND o.insurance = l.insurance AND o.year = l.year AND o.paid_by IS NOT NULL)
             ORDER BY l.collection_point, l.street, l.community, l.insurance, l.serial
             LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![year, sql_point, limit], |r| {
            Ok(Unpaid {
                point: r.get(0)?,
                street: r.get(1)?,
                community: r.get(2)?,
                serial: r.get(3)?,
                insurance: r.get(4)?,
                year: r.get(5)?,
                name: r.get(6)?,
                id_number: r.get(7)?,
                amount_due: r.get(8)?,
                hardship: r.get(9)?,
                under_way: r.get(10)?,
            })
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
    })
    .await?;
    if lines.len() > MAX_ROWS {
        return Err(ReportError::TooLarge { limit: MAX_ROWS });
    }
    let mut due = Fen::ZERO;
    let (mut medical, mut pension, mut under_way) = (0i64, 0i64, 0i64);
    let mut rows = Vec::with_capacity(lines.len());
    for l in lines {
        if let Some(fen) = l.amount_due {
            due = due.checked_add(Fen::from_fen(fen)).ok_or(ReportError::Overflow { what: "amounts due" })?;
        }
        match l.insurance.as_str() {
            "medical" => medical += 1,
            _ => pension += 1,
        }
        if l.under_way {
            under_way += 1;
        }
        rows.push(vec![
            Cell::Text(l.point),
            Cell::opt_text(l.street),
            Cell::opt_text(l.community),
            Cell::Text(l.serial),
            Cell::Text(l.insurance),
            Cell::Count(l.year),
            Cell::Text(l.name),
            Cell::Text(mask_id(&l.id_number)),
            l.amount_due.map_or(Cell::Empty, |f| Cell::Money(Fen::from_fen(f))),
            Cell::Text(l.hardship),
            Cell::text(if l.under_way { "under_way" } else { "unpaid" }),
        ]);
    }
    let total = medical + pension;
    Ok(Report {
        kind: Kind::Unpaid,
        title: format!("催缴清单 unpaid lines of {year}"),
        params: [("collection_point".to_owned(), filter)].into_iter().collect(),
        notes: vec![
            format!("lines of {year} (the policy's year) not paid, and whose person has not paid another line of the same insurance and year"),
            "status under_way: a payment for the line is in progress or its outcome is being asked of the terminal".to_owned(),
            "amount_due is empty for pension lines: the payer chooses a tier; hardship: none, dibao (低保) or tekun (特困)"
                .to_owned(),
            "ID numbers are masked: the first 6 and the last 4 characters".to_owned(),
        ],
        columns: vec![
            Column::new("collection_point", "征缴网点", CellKind::Text),
            Column::new("street", "街道", CellKind::Text),
            Column::new("community", "社区村", CellKind::Text),
            Column::new("serial", "征集流水号", CellKind::Text),
            Column::new("insurance", "险种", CellKind::Text),
            Column::new("year", "年度", CellKind::Count),
            Column::new("name", "姓名", CellKind::Text),
            Column::new("id_number", "身份证号", CellKind::Text),
            Column::new("amount_due", "应缴金额", CellKind::Money),
            Column::new("hardship", "困难类别", CellKind::Text),
            Column::new("status", "状态", CellKind::Text),
        ],
        rows,
        summary: vec![
            Field::new("lines", "未缴条数", Cell::Count(total)),
            Field::new("medical", "医疗", Cell::Count(medical)),
            Field::new("pension", "养老", Cell::Count(pension)),
            Field::new("under_way", "缴费中", Cell::Count(under_way)),
            Field::new("medical_due", "医疗应缴合计", Cell::Money(due)),
        ],
    })
}
