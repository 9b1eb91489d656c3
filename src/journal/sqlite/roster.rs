//! Roster lines and collectors: the all-or-nothing imports and the reads.
//!
//! An import runs as one write of the writer: when any row conflicts, the write is refused and
//! everything it did is rolled back (its batch runs again with a savepoint around each write), so the
//! journal is exactly as before.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, Row};
use zhengjiao_protocol::EcrReference;

use super::super::error::ImportError;
use super::super::writer::{Ctx, Refusal, Shared};
use super::super::{Collector, ConflictKind, ImportConflict, ImportOutcome, RosterLine, StoredLine};
use super::codec::{parse, text, Fingerprint};
use super::ReadFail;
use crate::domain::{
    CollectionPointCode, CollectionSerial, Fen, Hardship, IdNumber, Insurance, PersonName, StaffNumber,
};

/// What an import compares of a roster line (everything but its key), in storage form.
#[derive(PartialEq, Eq)]
struct LineContent {
    id_number: String,
    name: String,
    amount_due_fen: Option<i64>,
    hardship: String,
    collection_point: String,
    street: Option<String>,
    community: Option<String>,
}

impl LineContent {
    fn of(line: &RosterLine) -> LineContent {
        LineContent {
            id_number: line.id_number.as_str().to_owned(),
            name: line.name.as_str().to_owned(),
            amount_due_fen: line.amount_due.map(Fen::as_fen),
            hardship: line.hardship.code().to_owned(),
            collection_point: line.collection_point.as_str().to_owned(),
            street: text(&line.street),
            community: text(&line.community),
        }
    }

    /// The fields that differ, by the roster format's English header names.
    fn diff(&self, other: &LineContent) -> Vec<&'static str> {
        let mut fields = Vec::new();
        let mut check = |same: bool, name| {
            if !same {
                fields.push(name);
            }
        };
        check(self.id_number == other.id_number, "id_number");
        check(self.name == other.name, "name");
        check(self.amount_due_fen == other.amount_due_fen, "amount_due");
        check(self.hardship == other.hardship, "hardship");
        check(self.collection_point == other.collection_point, "collection_point");
        check(self.street == other.street, "street");
        check(self.community == other.community, "community");
        fields
    }

    fn fingerprint(&self, line: &RosterLine) -> String {
        let amount = self.amount_due_fen.map(|a| a.to_string());
        Fingerprint::new()
            .field(Some(line.serial.as_str()))
            .field(Some(line.insurance.code()))
            .field(Some(&line.year.to_string()))
            .field(Some(&self.id_number))
            .field(Some(&self.name))
            .field(amount.as_deref())
            .field(Some(&self.hardship))
            .field(Some(&self.collection_point))
            .field(self.street.as_deref())
            .field(self.community.as_deref())
            .finish()
    }
}

/// Imports roster lines; see [`Store::import_roster`](super::super::Store::import_roster).
pub(super) fn import_roster(
    ctx: &Ctx<'_>,
    lines: &[RosterLine],
    update: bool,
) -> Result<ImportOutcome, Refusal<ImportError>> {
    let conn = ctx.conn;
    let now = ctx.now();
    let mut find = conn.prepare_cached(
        "SELECT id, id_number, name, amount_due_fen, hardship, collection_point, street, community, paid_by
         FROM roster_lines WHERE serial = ?1 AND insurance = ?2 AND year = ?3",
    )?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO roster_lines (serial, insurance, year, id_number, name, amount_due_fen, hardship,
                                   collection_point, street, community, content_hash, imported_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    let mut replace = conn.prepare_cached(
        "UPDATE roster_lines SET id_number = ?2, name = ?3, amount_due_fen = ?4, hardship = ?5,
                collection_point = ?6, street = ?7, community = ?8, content_hash = ?9, updated_at = ?10
         WHERE id = ?1",
    )?;
    let mut under_way = conn.prepare_cached(
        "SELECT id FROM payments WHERE line_id = ?1 AND state IN ('created', 'sent', 'unknown') LIMIT 1",
    )?;

    let mut outcome = ImportOutcome::default();
    let mut conflicts = Vec::new();
    let mut seen: HashMap<(&str, &str, i32), usize> = HashMap::with_capacity(lines.len());
    for (row, line) in lines.iter().enumerate() {
        let content = LineContent::of(line);
        let key = line.key().to_string();
        let seen_key = (line.serial.as_str(), line.insurance.code(), line.year);
        let first_diff = |first: usize| lines.get(first).map(|f| LineContent::of(f).diff(&content)).unwrap_or_default();
        if repeats_earlier_row(&mut seen, seen_key, row, &key, first_diff, &mut outcome, &mut conflicts) {
            continue;
        }

        let stored = find
            .query_row(params![line.serial.as_str(), line.insurance.code(), line.year], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    LineContent {
                        id_number: r.get(1)?,
                        name: r.get(2)?,
                        amount_due_fen: r.get(3)?,
                        hardship: r.get(4)?,
                        collection_point: r.get(5)?,
                        street: r.get(6)?,
                        community: r.get(7)?,
                    },
                    r.get::<_, Option<String>>(8)?,
                ))
            })
            .optional()?;
        let hash = content.fingerprint(line);
        let Some((id, old, paid_by)) = stored else {
            insert.execute(params![
                line.serial.as_str(),
                line.insurance.code(),
                line.year,
                content.id_number,
                content.name,
                content.amount_due_fen,
                content.hardship,
                content.collection_point,
                content.street,
                content.community,
                hash,
                now,
            ])?;
            outcome.inserted += 1;
            continue;
        };
        let fields = old.diff(&content);
        if fields.is_empty() {
            outcome.unchanged += 1;
            continue;
        }
        let conflict = if !update {
            Some(ConflictKind::Differs { fields })
        } else if let Some(by) = paid_by {
            Some(ConflictKind::Paid { fields, by })
        } else {
            let payment = under_way.query_row([id], |r| r.get::<_, String>(0)).optional()?;
            payment.map(|payment| ConflictKind::PaymentUnderWay { fields, payment })
        };
        match conflict {
            Some(kind) => conflicts.push(ImportConflict { row, key, kind }),
            None => {
                replace.execute(params![
                    id,
                    content.id_number,
                    content.name,
                    content.amount_due_fen,
                    content.hardship,
                    content.collection_point,
                    content.street,
                    content.community,
                    hash,
                    now,
                ])?;
                outcome.updated += 1;
            }
        }
    }
    if conflicts.is_empty() {
        Ok(outcome)
    } else {
        Err(Refusal::Refused(ImportError::Conflicts(conflicts)))
    }
}

/// What an import compares of a collector (everything but its key and its row number on the form).
#[derive(PartialEq, Eq)]
struct CollectorContent {
    collection_point_name: String,
    name: String,
    id_number: String,
    bank_name: String,
    bank_branch: String,
    bank_account: String,
    phone: String,
}

impl CollectorContent {
    fn of(c: &Collector) -> CollectorContent {
        CollectorContent {
            collection_point_name: c.collection_point_name.trim().to_owned(),
            name: c.name.as_str().to_owned(),
            id_number: c.id_number.as_str().to_owned(),
            bank_name: c.bank_name.trim().to_owned(),
            bank_branch: c.bank_branch.trim().to_owned(),
            bank_account: c.bank_account.trim().to_owned(),
            phone: c.phone.trim().to_owned(),
        }
    }

    /// The fields that differ, by the register's English header names.
    fn diff(&self, other: &CollectorContent) -> Vec<&'static str> {
        [
            (self.collection_point_name == other.collection_point_name, "collection_point_name"),
            (self.name == other.name, "collector_name"),
            (self.id_number == other.id_number, "id_number"),
            (self.bank_name == other.bank_name, "bank_name"),
            (self.bank_branch == other.bank_branch, "bank_branch"),
            (self.bank_account == other.bank_account, "bank_account"),
            (self.phone == other.phone, "phone"),
        ]
        .into_iter()
        .filter_map(|(same, name)| (!same).then_some(name))
        .collect()
    }

    fn fingerprint(&self, c: &Collector) -> String {
        Fingerprint::new()
            .field(Some(c.collection_point.as_str()))
            .field(Some(c.staff_no.as_str()))
            .field(Some(&self.collection_point_name))
            .field(Some(&self.name))
            .field(Some(&self.id_number))
            .field(Some(&self.bank_name))
            .field(Some(&self.bank_branch))
            .field(Some(&self.bank_account))
            .field(Some(&self.phone))
            .finish()
    }
}

/// Imports collectors; see [`Store::import_collectors`](super::super::Store::import_collectors).
pub(super) fn import_collectors(
    ctx: &Ctx<'_>,
    collectors: &[Collector],
    update: bool,
) -> Result<ImportOutcome, Refusal<ImportError>> {
    let conn = ctx.conn;
    let now = ctx.now();
    let mut find = conn.prepare_cached(
        "SELECT id, collection_point_name, name, id_number, bank_name, bank_branch, bank_account, phone
         FROM collectors WHERE collection_point = ?1 AND staff_no = ?2",
    )?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO collectors (collection_point, staff_no, no, collection_point_name, name, id_number,
                                 bank_name, bank_branch, bank_account, phone, content_hash, imported_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    let mut replace = conn.prepare_cached(
        "UPDATE collectors SET no = ?2, collection_point_name = ?3, name = ?4, id_number = ?5, bank_name = ?6,
                bank_branch = ?7, bank_account = ?8, phone = ?9, content_hash = ?10, updated_at = ?11
         WHERE id = ?1",
    )?;

    let mut outcome = ImportOutcome::default();
    let mut conflicts = Vec::new();
    let mut seen: HashMap<(&str, &str), usize> = HashMap::with_capacity(collectors.len());
    for (row, c) in collectors.iter().enumerate() {
        let content = CollectorContent::of(c);
        let key = format!("{}/{}", c.collection_point, c.staff_no);
        let seen_key = (c.collection_point.as_str(), c.staff_no.as_str());
        let first_diff =
            |first: usize| collectors.get(first).map(|f| CollectorContent::of(f).diff(&content)).unwrap_or_default();
        if repeats_earlier_row(&mut seen, seen_key, row, &key, first_diff, &mut outcome, &mut conflicts) {
            continue;
        }

        let stored = find
            .query_row(params![c.collection_point.as_str(), c.staff_no.as_str()], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    CollectorContent {
                        collection_point_name: r.get(1)?,
                        name: r.get(2)?,
                        id_number: r.get(3)?,
                        bank_name: r.get(4)?,
                        bank_branch: r.get(5)?,
                        bank_account: r.get(6)?,
                        phone: r.get(7)?,
                    },
                ))
            })
            .optional()?;
        let hash = content.fingerprint(c);
        let no = c.no.map(i64::from);
        match stored {
            None => {
                insert.execute(params![
                    c.collection_point.as_str(),
                    c.staff_no.as_str(),
                    no,
                    content.collection_point_name,
                    content.name,
                    content.id_number,
                    content.bank_name,
                    content.bank_branch,
                    content.bank_account,
                    content.phone,
                    hash,
                    now,
                ])?;
                outcome.inserted += 1;
            }
            Some((_, old)) if old == content => outcome.unchanged += 1,
            Some((_, old)) if !update => {
                conflicts.push(ImportConflict { row, key, kind: ConflictKind::Differs { fields: old.diff(&content) } });
            }
            Some((id, _)) => {
                replace.execute(params![
                    id,
                    no,
                    content.collection_point_name,
                    content.name,
                    content.id_number,
                    content.bank_name,
                    content.bank_branch,
                    content.bank_account,
                    content.phone,
                    hash,
                    now,
                ])?;
                outcome.updated += 1;
            }
        }
    }
    if conflicts.is_empty() {
        Ok(outcome)
    } else {
        Err(Refusal::Refused(ImportError::Conflicts(conflicts)))
    }
}

/// The columns [`stored_line`] reads, in its order.
const LINE_COLUMNS: &str = "serial, insurance, year, id_number, name, amount_due_fen, hardship, collection_point,
                            street, community, paid_by, content_hash, imported_at, updated_at";

/// A roster line read back through the domain types.
fn stored_line(shared: &Shared, r: &Row<'_>) -> Result<StoredLine, ReadFail> {
    let serial: String = r.get(0)?;
    let insurance: String = r.get(1)?;
    let year: i32 = r.get(2)?;
    let key = format!("{year}/{insurance}/{serial}");
    let t = "roster_lines";
    let line = RosterLine {
        serial: parse(shared, t, &key, "serial", &serial, CollectionSerial::parse)?,
        insurance: parse(shared, t, &key, "insurance", &insurance, Insurance::parse)?,
        id_number: parse(shared, t, &key, "id_number", &r.get::<_, String>(3)?, IdNumber::parse)?,
        name: parse(shared, t, &key, "name", &r.get::<_, String>(4)?, PersonName::parse)?,
        year,
        amount_due: r.get::<_, Option<i64>>(5)?.map(Fen::from_fen),
        hardship: parse(shared, t, &key, "hardship", &r.get::<_, String>(6)?, Hardship::parse)?,
        collection_point: parse(
            shared,
            t,
            &key,
            "collection_point",
            &r.get::<_, String>(7)?,
            CollectionPointCode::parse,
        )?,
        street: r.get(8)?,
        community: r.get(9)?,
    };
    let paid_by = match r.get::<_, Option<String>>(10)? {
        Some(p) => Some(parse(shared, t, &key, "paid_by", &p, EcrReference::new)?),
        None => None,
    };
    Ok(StoredLine { line, paid_by, content_hash: r.get(11)?, imported_at: r.get(12)?, updated_at: r.get(13)? })
}

/// The line with this key.
pub(super) fn line_by_key(
    conn: &Connection,
    shared: &Shared,
    serial: &CollectionSerial,
    insurance: Insurance,
    year: i32,
) -> Result<Option<StoredLine>, ReadFail> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {LINE_COLUMNS} FROM roster_lines WHERE serial = ?1 AND insurance = ?2 AND year = ?3"
    ))?;
    let mut rows = stmt.query(params![serial.as_str(), insurance.code(), year])?;
    match rows.next()? {
        Some(r) => stored_line(shared, r).map(Some),
        None => Ok(None),
    }
}

/// Every line of one payer.
pub(super) fn lines_by_id_number(conn: &Connection, shared: &Shared, id: &str) -> Result<Vec<StoredLine>, ReadFail> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {LINE_COLUMNS} FROM roster_lines WHERE id_number = ?1 ORDER BY year, insurance, serial"
    ))?;
    let mut rows = stmt.query([id])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(stored_line(shared, r)?);
    }
    Ok(out)
}

/// Every collector.
pub(super) fn collectors(conn: &Connection, shared: &Shared) -> Result<Vec<Collector>, ReadFail> {
    let mut stmt = conn.prepare_cached(
        "SELECT collection_point, staff_no, no, collection_point_name, name, id_number, bank_name, bank_branch,
                bank_account, phone
         FROM collectors ORDER BY collection_point, staff_no",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    let t = "collectors";
    while let Some(r) = rows.next()? {
        let point: String = r.get(0)?;
        let staff: String = r.get(1)?;
        let key = format!("{point}/{staff}");
        let no = match r.get::<_, Option<i64>>(2)? {
            Some(n) => Some(parse(shared, t, &key, "no", &n.to_string(), |s| s.parse::<u32>())?),
            None => None,
        };
        out.push(Collector {
            no,
            collection_point_name: r.get(3)?,
            collection_point: parse(shared, t, &key, "collection_point", &point, CollectionPointCode::parse)?,
            name: parse(shared, t, &key, "name", &r.get::<_, String>(4)?, PersonName::parse)?,
            staff_no: parse(shared, t, &key, "staff_no", &staff, StaffNumber::parse)?,
            id_number: parse(shared, t, &key, "id_number", &r.get::<_, String>(5)?, IdNumber::parse)?,
            bank_name: r.get(6)?,
            bank_branch: r.get(7)?,
            bank_account: r.get(8)?,
            phone: r.get(9)?,
        });
    }
    Ok(out)
}

/// Whether `row` repeats a key seen earlier in the same import. Identical content counts as unchanged;
/// different content is a [`ConflictKind::DuplicateInImport`] naming the fields that differ. A new key is
/// remembered and `false` returned.
fn repeats_earlier_row<K: std::hash::Hash + Eq>(
    seen: &mut HashMap<K, usize>,
    seen_key: K,
    row: usize,
    key: &str,
    diff_with: impl FnOnce(usize) -> Vec<&'static str>,
    outcome: &mut ImportOutcome,
    conflicts: &mut Vec<ImportConflict>,
) -> bool {
    let first_row = match seen.entry(seen_key) {
        std::collections::hash_map::Entry::Occupied(first) => *first.get(),
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert(row);
            return false;
        }
    };
    let fields = diff_with(first_row);
    if fields.is_empty() {
        outcome.unchanged += 1;
    } else {
        conflicts.push(ImportConflict {
            row,
            key: key.to_owned(),
            kind: ConflictKind::DuplicateInImport { first_row, fields },
        });
    }
    true
}
