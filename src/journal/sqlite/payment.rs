//! Terminals, payments, their history and the ledger outbox: the writes and the reads.

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use serde_json::{json, Value};
use zhengjiao_protocol::message::{AuthCode, Batch, Date, Rrn, TerminalId, Till, Trace};
use zhengjiao_protocol::{EcrReference, MaskedPan, ResponseCode};

use super::super::error::{CreatePaymentError, ForwardError, RegisterTerminalError, StorageError, TransitionError};
use super::super::payment::{
    Effect, EntryKind, NewPayment, OutboxEntry, Payment, PaymentFilter, PaymentState, Terminal, TerminalSaid,
    TransitionOutcome, TransitionRecord,
};
use super::super::writer::{Ctx, Refusal, Shared};
use super::super::LineKey;
use super::codec::{parse, stamp_seconds};
use super::ReadFail;
use crate::domain::{CollectionPointCode, CollectionSerial, Fen, Insurance, StaffNumber};

/// The states in which a payment is under way, as an SQL list.
const UNDER_WAY: &str = "('created', 'sent', 'unknown')";

/// Registers or updates a terminal.
pub(super) fn register_terminal(ctx: &Ctx<'_>, t: &Terminal) -> Result<(), Refusal<RegisterTerminalError>> {
    ctx.conn
        .prepare_cached(
            "INSERT INTO terminals (id, collection_point, merchant_id, link, registered_at, name)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET collection_point = excluded.collection_point,
                 merchant_id = excluded.merchant_id, link = excluded.link, name = excluded.name,
                 updated_at = excluded.registered_at
             WHERE collection_point IS NOT excluded.collection_point OR merchant_id IS NOT excluded.merchant_id
                OR link IS NOT excluded.link OR name IS NOT excluded.name",
        )?
        .execute(params![t.id.as_str(), t.collection_point.as_str(), t.merchant_id, t.link, ctx.now(), t.name])?;
    Ok(())
}

/// Every terminal, by id.
pub(super) fn terminals(conn: &Connection, shared: &Shared) -> Result<Vec<Terminal>, ReadFail> {
    let mut stmt =
        conn.prepare_cached("SELECT id, name, collection_point, merchant_id, link FROM terminals ORDER BY id")?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    let t = "terminals";
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        out.push(Terminal {
            id: parse(shared, t, &id, "id", &id, TerminalId::new)?,
            // Registered before schema version 3 and not since: named by its id.
            name: r.get::<_, Option<String>>(1)?.unwrap_or_else(|| id.clone()),
            collection_point: parse(
                shared,
                t,
                &id,
                "collection_point",
                &r.get::<_, String>(2)?,
                CollectionPointCode::parse,
            )?,
            merchant_id: r.get(3)?,
            link: r.get(4)?,
        });
    }
    Ok(out)
}

/// Records a new payment as `created`.
pub(super) fn record_created(ctx: &Ctx<'_>, p: &NewPayment) -> Result<Payment, Refusal<CreatePaymentError>> {
    let conn = ctx.conn;
    let id = p.id.as_str();
    let key = p.line.to_string();
    let refuse = |e| Err(Refusal::Refused(e));
    if id.is_empty() {
        return refuse(CreatePaymentError::EmptyId);
    }
    if !p.amount.is_positive() {
        return refuse(CreatePaymentError::BadAmount { id: id.to_owned() });
    }
    if conn.prepare_cached("SELECT 1 FROM payments WHERE id = ?1")?.exists([id])?
        || conn.prepare_cached("SELECT 1 FROM reversals WHERE id = ?1")?.exists([id])?
    {
        return refuse(CreatePaymentError::DuplicateId { id: id.to_owned() });
    }
    let line = conn
        .prepare_cached(
            "SELECT id, paid_by, id_number FROM roster_lines WHERE serial = ?1 AND insurance = ?2 AND year = ?3",
        )?
        .query_row(params![p.line.serial.as_str(), p.line.insurance.code(), p.line.year], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, String>(2)?))
        })
        .optional()?;
    let (line_id, id_number) = match line {
        None => return refuse(CreatePaymentError::UnknownLine { key }),
        Some((_, Some(by), _)) => return refuse(CreatePaymentError::LinePaid { key, by }),
        Some((line_id, None, id_number)) => (line_id, id_number),
    };
    if !conn.prepare_cached("SELECT 1 FROM terminals WHERE id = ?1")?.exists([p.terminal.as_str()])? {
        return refuse(CreatePaymentError::UnknownTerminal { terminal: p.terminal.as_str().to_owned() });
    }
    let other = conn
        .prepare_cached(&format!("SELECT id, state FROM payments WHERE line_id = ?1 AND state IN {UNDER_WAY}"))?
        .query_row([line_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .optional()?;
    if let Some((other, state)) = other {
        let state = PaymentState::parse(&state).unwrap_or(PaymentState::Unknown);
        return refuse(CreatePaymentError::PaymentUnderWay { key, other, state });
    }
    // One person, one payment per insurance and year: another line of the same person (the roster may
    // list someone twice) must be neither paid nor have a payment under way.
    let other_line = |serial: &str| format!("{}/{}/{serial}", p.line.year, p.line.insurance.code());
    if let Some((serial, by)) = sibling_paid(conn, line_id)? {
        let (other_line, id_masked) = (other_line(&serial), mask_id_number(&id_number));
        return refuse(CreatePaymentError::PersonPaid { key, id_masked, other_line, by });
    }
    let other = conn
        .prepare_cached(&format!(
            "SELECT s.serial, q.id, q.state
             FROM roster_lines l
             JOIN roster_lines s ON s.id_number = l.id_number AND s.insurance = l.insurance AND s.year = l.year
                                AND s.id <> l.id
             JOIN payments q ON q.line_id = s.id AND q.state IN {UNDER_WAY}
             WHERE l.id = ?1
             ORDER BY q.created_at, q.id LIMIT 1"
        ))?
        .query_row([line_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
        .optional()?;
    if let Some((serial, other, state)) = other {
        let state = PaymentState::parse(&state).unwrap_or(PaymentState::Unknown);
        let other_line = other_line(&serial);
        return refuse(CreatePaymentError::PersonPaymentUnderWay { key, other_line, other, state });
    }
    let now = ctx.now();
    conn.prepare_cached(
        "INSERT INTO payments (id, line_id, amount_fen, terminal_id, till, operator, state, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'created', ?7, ?7)",
    )?
    .execute(params![
        id,
        line_id,
        p.amount.as_fen(),
        p.terminal.as_str(),
        p.till.as_str(),
        p.operator.as_str(),
        now
    ])?;
    insert_transition(conn, History::Payment, id, &now, None, PaymentState::Created, &TerminalSaid::default())?;
    Ok(Payment {
        id: p.id,
        line: p.line.clone(),
        amount: p.amount,
        terminal: p.terminal,
        till: p.till,
        operator: p.operator.clone(),
        state: PaymentState::Created,
        created_at: now.clone(),
        updated_at: now,
        pos: TerminalSaid::default(),
    })
}

/// An append-only history: a payment's or a reversal's (the same shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum History {
    /// `payment_transitions`.
    Payment,
    /// `reversal_transitions`.
    Reversal,
}

impl History {
    const fn table(self) -> &'static str {
        match self {
            History::Payment => "payment_transitions",
            History::Reversal => "reversal_transitions",
        }
    }

    const fn insert(self) -> &'static str {
        match self {
            History::Payment => {
                "INSERT INTO payment_transitions (payment_id, at, from_state, to_state, response_code, response_text,
                                                  trace, batch_no, rrn, auth_code, card_masked, amount_fen, note,
                                                  txn_date)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
            }
            History::Reversal => {
                "INSERT INTO reversal_transitions (reversal_id, at, from_state, to_state, response_code, response_text,
                                                   trace, batch_no, rrn, auth_code, card_masked, amount_fen, note,
                                                   txn_date)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
            }
        }
    }

    const fn select(self) -> &'static str {
        match self {
            History::Payment => {
                "SELECT seq, at, from_state, to_state, response_code, response_text, trace, batch_no, rrn, auth_code,
                        card_masked, amount_fen, txn_date, note
                 FROM payment_transitions WHERE payment_id = ?1 ORDER BY seq"
            }
            History::Reversal => {
                "SELECT seq, at, from_state, to_state, response_code, response_text, trace, batch_no, rrn, auth_code,
                        card_masked, amount_fen, txn_date, note
                 FROM reversal_transitions WHERE reversal_id = ?1 ORDER BY seq"
            }
        }
    }
}

/// Appends one step to a payment's or a reversal's history.
/// Records that a terminal's batch was seen (the batch a transaction reported), once.
pub(super) fn note_batch(
    conn: &Connection,
    terminal: &TerminalId,
    batch: Option<&Batch>,
    now: &str,
) -> rusqlite::Result<()> {
    if let Some(batch) = batch {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO terminal_batches (terminal_id, batch_no, first_seen_at) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![terminal.as_str(), batch.as_str(), now])?;
    }
    Ok(())
}

pub(super) fn insert_transition(
    conn: &Connection,
    history: History,
    id: &str,
    at: &str,
    from: Option<PaymentState>,
    to: PaymentState,
    said: &TerminalSaid,
) -> rusqlite::Result<()> {
    conn.prepare_cached(history.insert())?.execute(params![
        id,
        at,
        from.map(PaymentState::as_str),
        to.as_str(),
        said.code.as_ref().map(ResponseCode::as_str),
        said.text,
        said.trace.as_ref().map(Trace::as_str),
        said.batch.as_ref().map(Batch::as_str),
        said.rrn.as_ref().map(Rrn::as_str),
        said.auth.as_ref().map(AuthCode::as_str),
        said.card.as_ref().map(MaskedPan::as_str),
        said.amount.map(Fen::as_fen),
        said.note,
        said.date.as_ref().map(Date::as_str),
    ])?;
    Ok(())
}

/// Records a transition and its effects.
pub(super) fn transition(
    ctx: &Ctx<'_>,
    id: &EcrReference,
    to: PaymentState,
    said: &TerminalSaid,
) -> Result<TransitionOutcome, Refusal<TransitionError>> {
    transition_with(ctx, id, &[], to, said, None)
}

/// Records the steps `via` and then `to` in one write, as that many transitions one after the other
/// would (a history row each, the POS data of each kept in turn), reading and updating the payment
/// row once. The steps of `via` may not be ones with effects (an approval, a reversal).
pub(super) fn transition_through(
    ctx: &Ctx<'_>,
    id: &EcrReference,
    via: &[(PaymentState, TerminalSaid)],
    to: PaymentState,
    said: &TerminalSaid,
) -> Result<TransitionOutcome, Refusal<TransitionError>> {
    transition_with(ctx, id, via, to, said, None)
}

/// Records a transition (after the steps `via`, see [`transition_through`]) and its effects; for
/// `voided` / `refunded`, `reversal_amount` (a reversal's amount) is the reversal entry's amount instead
/// of the payment's.
pub(super) fn transition_with(
    ctx: &Ctx<'_>,
    id: &EcrReference,
    via: &[(PaymentState, TerminalSaid)],
    to: PaymentState,
    said: &TerminalSaid,
    reversal_amount: Option<Fen>,
) -> Result<TransitionOutcome, Refusal<TransitionError>> {
    let conn = ctx.conn;
    let pid = id.as_str();
    let refuse = |e| Err(Refusal::Refused(e));
    let Some(current) = payment(conn, ctx.shared, pid).map_err(ReadFail::into_refusal)? else {
        return refuse(TransitionError::UnknownPayment { id: pid.to_owned() });
    };
    let from = current.state;
    if to == PaymentState::Forwarded {
        return refuse(TransitionError::ForwardedByLedger { id: pid.to_owned() });
    }
    let mut at = from;
    for &(step, _) in via {
        let effects = matches!(
            step,
            PaymentState::Approved | PaymentState::Voided | PaymentState::Refunded | PaymentState::Forwarded
        );
        if effects || !at.can_move_to(step) {
            return refuse(TransitionError::NotAllowed { id: pid.to_owned(), from: at, to: step });
        }
        at = step;
    }
    if !at.can_move_to(to) {
        return refuse(TransitionError::NotAllowed { id: pid.to_owned(), from: at, to });
    }
    let now = ctx.now();
    let terminal = current.terminal;
    let mut after = current;
    after.state = to;
    after.updated_at.clone_from(&now);
    // The payment row keeps the sale's POS data; a void's or refund's own data is in the history and
    // in the reversal entry.
    // What each step said, latest first, as the row keeps it.
    let mut kept = TerminalSaid::default();
    for (_, s) in via {
        kept.keep_latest(s);
    }
    kept.keep_latest(said);
    if matches!(to, PaymentState::Voided | PaymentState::Refunded) {
        conn.prepare_cached("UPDATE payments SET state = ?2, updated_at = ?3 WHERE id = ?1")?.execute(params![
            pid,
            to.as_str(),
            now
        ])?;
    } else {
        conn.prepare_cached(
            "UPDATE payments SET state = ?2, updated_at = ?3, response_code = coalesce(?4, response_code),
                 response_text = coalesce(?5, response_text), trace = coalesce(?6, trace),
                 batch_no = coalesce(?7, batch_no), rrn = coalesce(?8, rrn), auth_code = coalesce(?9, auth_code),
                 card_masked = coalesce(?10, card_masked), approved_fen = coalesce(?11, approved_fen),
                 txn_date = coalesce(?12, txn_date)
             WHERE id = ?1",
        )?
        .execute(params![
            pid,
            to.as_str(),
            now,
            kept.code.as_ref().map(ResponseCode::as_str),
            kept.text,
            kept.trace.as_ref().map(Trace::as_str),
            kept.batch.as_ref().map(Batch::as_str),
            kept.rrn.as_ref().map(Rrn::as_str),
            kept.auth.as_ref().map(AuthCode::as_str),
            kept.card.as_ref().map(MaskedPan::as_str),
            kept.amount.map(Fen::as_fen),
            kept.date.as_ref().map(Date::as_str),
        ])?;
        // The same coalescing on the row read at the start: what a read of the row would now return.
        after.pos.keep_latest(&kept);
    }
    let mut at = from;
    for (step, s) in via {
        insert_transition(conn, History::Payment, pid, &now, Some(at), *step, s)?;
        note_batch(conn, &terminal, s.batch.as_ref(), &now)?;
        at = *step;
    }
    insert_transition(conn, History::Payment, pid, &now, Some(at), to, said)?;
    note_batch(conn, &terminal, said.batch.as_ref(), &now)?;
    let effect = match to {
        PaymentState::Approved => approve(ctx, &after, said)?,
        PaymentState::Voided | PaymentState::Refunded => reverse(ctx, &after, said, reversal_amount)?,
        _ => Effect::None,
    };
    Ok(TransitionOutcome { payment: after, from, effect })
}

/// Another line of the same person (ID number), insurance and year that is paid: its serial and the
/// payment bound to it. Reads through `roster_lines_by_id_number`.
fn sibling_paid(conn: &Connection, line_id: i64) -> rusqlite::Result<Option<(String, String)>> {
    conn.prepare_cached(
        "SELECT s.serial, s.paid_by
         FROM roster_lines l
         JOIN roster_lines s ON s.id_number = l.id_number AND s.insurance = l.insurance AND s.year = l.year
                            AND s.id <> l.id
         WHERE l.id = ?1 AND s.paid_by IS NOT NULL
         ORDER BY s.serial LIMIT 1",
    )?
    .query_row([line_id], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()
}

/// An ID number as errors may show it: the first 6 and the last 4 characters, `********` between.
fn mask_id_number(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() < 10 {
        return "*".repeat(chars.len().max(8));
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}********{tail}")
}

/// `approved`: binds the line and writes the ledger entry, unless the amount is not the one requested
/// (none or zero reported counts as differing), or the line, or another line of the same person for
/// the same insurance and year, is paid.
fn approve(ctx: &Ctx<'_>, p: &Payment, said: &TerminalSaid) -> rusqlite::Result<Effect> {
    let conn = ctx.conn;
    // An approval is of the amount asked only when the terminal says so: a missing or non-positive
    // amount is not a confirmation, and nothing goes to the ledger on it.
    match said.amount {
        Some(approved) if approved.is_positive() => {
            if approved != p.amount {
                return Ok(Effect::AmountDiffers { requested: p.amount, approved });
            }
        }
        _ => return Ok(Effect::AmountDiffers { requested: p.amount, approved: Fen::ZERO }),
    }
    let line_id = line_id(conn, p.id.as_str())?;
    if let Some((_, by)) = sibling_paid(conn, line_id)? {
        return Ok(Effect::LineAlreadyPaid { by });
    }
    let bound = conn
        .prepare_cached("UPDATE roster_lines SET paid_by = ?1 WHERE id = ?2 AND paid_by IS NULL")?
        .execute(params![p.id.as_str(), line_id])?;
    if bound == 0 {
        let by: Option<String> = conn
            .prepare_cached("SELECT paid_by FROM roster_lines WHERE id = ?1")?
            .query_row([line_id], |r| r.get(0))?;
        return Ok(Effect::LineAlreadyPaid { by: by.unwrap_or_default() });
    }
    let entry_id = EntryKind::Payment.entry_id(p.id.as_str());
    let payload = entry_payload(ctx, p, p.amount, &entry_id, EntryKind::Payment, None, &p.pos)?;
    insert_entry(ctx, &entry_id, EntryKind::Payment, p.id.as_str(), None, &payload)?;
    Ok(Effect::Bound { entry_id })
}

/// `voided` / `refunded`: releases the line and writes the reversal entry when there is a payment entry.
fn reverse(ctx: &Ctx<'_>, p: &Payment, said: &TerminalSaid, amount: Option<Fen>) -> rusqlite::Result<Effect> {
    let conn = ctx.conn;
    let line_id = line_id(conn, p.id.as_str())?;
    conn.prepare_cached("UPDATE roster_lines SET paid_by = NULL WHERE id = ?1 AND paid_by = ?2")?
        .execute(params![line_id, p.id.as_str()])?;
    // A payment's entry is named after it (`EntryKind::entry_id`): looked up by that name, through the
    // outbox's unique index, instead of scanning the whole outbox for its payment.
    let payment_entry: Option<String> = conn
        .prepare_cached(
            "SELECT entry_id FROM ledger_outbox WHERE entry_id = ?1 AND payment_id = ?2 AND kind = 'payment'",
        )?
        .query_row([EntryKind::Payment.entry_id(p.id.as_str()).as_str(), p.id.as_str()], |r| r.get(0))
        .optional()?;
    let Some(reverses) = payment_entry else {
        return Ok(Effect::Reversed { entry_id: None });
    };
    let entry_id = EntryKind::Reversal.entry_id(p.id.as_str());
    // The reversal carries the void's (or refund's) own POS numbers and the sale's card.
    let pos = TerminalSaid { card: said.card.or(p.pos.card), ..said.clone() };
    let amount = amount.unwrap_or(p.amount);
    let payload = entry_payload(ctx, p, amount, &entry_id, EntryKind::Reversal, Some(&reverses), &pos)?;
    insert_entry(ctx, &entry_id, EntryKind::Reversal, p.id.as_str(), Some(&reverses), &payload)?;
    Ok(Effect::Reversed { entry_id: Some(entry_id) })
}

fn line_id(conn: &Connection, payment: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT line_id FROM payments WHERE id = ?1")?.query_row([payment], |r| r.get(0))
}

/// The ENTRY object of ledger-api.md for a payment or its reversal.
#[allow(clippy::too_many_arguments)]
fn entry_payload(
    ctx: &Ctx<'_>,
    p: &Payment,
    amount: Fen,
    entry_id: &str,
    kind: EntryKind,
    reverses: Option<&str>,
    pos: &TerminalSaid,
) -> rusqlite::Result<Value> {
    let (payer_id, payer_name): (String, String) = ctx
        .conn
        .prepare_cached(
            "SELECT l.id_number, l.name FROM payments p JOIN roster_lines l ON l.id = p.line_id WHERE p.id = ?1",
        )?
        .query_row([p.id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (point, merchant): (String, Option<String>) = ctx
        .conn
        .prepare_cached("SELECT collection_point, merchant_id FROM terminals WHERE id = ?1")?
        .query_row([p.terminal.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(json!({
        "entry_id": entry_id,
        "kind": kind.as_str(),
        "reverses": reverses,
        "collection_serial": p.line.serial.as_str(),
        "insurance": p.line.insurance.code(),
        "year": p.line.year,
        "payer_id": payer_id,
        "payer_name": payer_name,
        "amount": amount.to_yuan_string(),
        "channel": "pos",
        "collection_point": point,
        "collector": p.operator.as_str(),
        "terminal_id": p.terminal.as_str(),
        "merchant_id": merchant,
        "batch": pos.batch.as_ref().map(Batch::as_str),
        "trace": pos.trace.as_ref().map(Trace::as_str),
        "rrn": pos.rrn.as_ref().map(Rrn::as_str),
        "auth_code": pos.auth.as_ref().map(AuthCode::as_str),
        "card_masked": pos.card.as_ref().map(MaskedPan::as_str),
        "occurred_at": stamp_seconds(ctx.now_time()),
    }))
}

fn insert_entry(
    ctx: &Ctx<'_>,
    entry_id: &str,
    kind: EntryKind,
    payment: &str,
    reverses: Option<&str>,
    payload: &Value,
) -> rusqlite::Result<()> {
    ctx.conn
        .prepare_cached(
            "INSERT INTO ledger_outbox (entry_id, kind, payment_id, reverses, payload, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![entry_id, kind.as_str(), payment, reverses, payload.to_string(), ctx.now()])?;
    Ok(())
}

/// Records the ledger's voucher for an entry; a payment entry moves its payment to `forwarded`. True
/// when it was marked now, false when it was forwarded already with the same voucher.
pub(super) fn mark_forwarded(ctx: &Ctx<'_>, entry_id: &str, voucher: &str) -> Result<bool, Refusal<ForwardError>> {
    let conn = ctx.conn;
    let refuse = |e| Err(Refusal::Refused(e));
    let row = conn
        .prepare_cached("SELECT kind, payment_id, tax_voucher_no, dead_letter FROM ledger_outbox WHERE entry_id = ?1")?
        .query_row([entry_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })
        .optional()?;
    let Some((kind, payment_id, existing, dead)) = row else {
        return refuse(ForwardError::UnknownEntry { entry_id: entry_id.to_owned() });
    };
    if let Some(reason) = dead {
        return refuse(ForwardError::DeadLettered { entry_id: entry_id.to_owned(), reason });
    }
    match existing {
        Some(v) if v == voucher => return Ok(false),
        Some(existing) => return refuse(ForwardError::VoucherDiffers { entry_id: entry_id.to_owned(), existing }),
        None => {}
    }
    let now = ctx.now();
    conn.prepare_cached(
        "UPDATE ledger_outbox SET forwarded_at = ?2, tax_voucher_no = ?3, attempts = attempts + 1, last_error = NULL
         WHERE entry_id = ?1",
    )?
    .execute(params![entry_id, now, voucher])?;
    if kind == EntryKind::Payment.as_str() {
        let moved = conn
            .prepare_cached(
                "UPDATE payments SET state = 'forwarded', updated_at = ?2 WHERE id = ?1 AND state = 'approved'",
            )?
            .execute(params![payment_id, now])?;
        if moved == 1 {
            let note = TerminalSaid::note(format!("ledger holds entry {entry_id}: tax voucher {voucher}"));
            let (from, to) = (Some(PaymentState::Approved), PaymentState::Forwarded);
            insert_transition(conn, History::Payment, &payment_id, &now, from, to, &note)?;
        }
    }
    Ok(true)
}

/// Records a failed send; `rejected` dead-letters the entry.
pub(super) fn mark_forward_failed(
    ctx: &Ctx<'_>,
    entry_id: &str,
    error: &str,
    rejected: bool,
) -> Result<(), Refusal<ForwardError>> {
    let changed = ctx
        .conn
        .prepare_cached(
            "UPDATE ledger_outbox SET attempts = attempts + 1, last_error = ?2,
                 dead_letter = CASE WHEN ?3 THEN ?2 ELSE dead_letter END
             WHERE entry_id = ?1 AND forwarded_at IS NULL",
        )?
        .execute(params![entry_id, error, rejected])?;
    if changed == 0
        && !ctx.conn.prepare_cached("SELECT 1 FROM ledger_outbox WHERE entry_id = ?1")?.exists([entry_id])?
    {
        return Err(Refusal::Refused(ForwardError::UnknownEntry { entry_id: entry_id.to_owned() }));
    }
    Ok(())
}

/// The columns [`read_payment`] reads, in its order.
const PAYMENT_COLUMNS: &str = "p.id, l.serial, l.insurance, l.year, p.amount_fen, p.terminal_id, p.till, p.operator,
    p.state, p.created_at, p.updated_at, p.response_code, p.response_text, p.trace, p.batch_no, p.rrn, p.auth_code,
    p.card_masked, p.approved_fen, p.txn_date";

/// POS data stored from column `first` on: code, text, trace, batch, rrn, auth, card, amount, date
/// (then, when `note`, the note).
pub(super) fn read_said(
    shared: &Shared,
    table: &'static str,
    key: &str,
    r: &Row<'_>,
    first: usize,
    note: bool,
) -> Result<TerminalSaid, ReadFail> {
    let opt = |i: usize| r.get::<_, Option<String>>(first + i);
    fn field<T, E>(
        shared: &Shared,
        table: &'static str,
        key: &str,
        column: &'static str,
        value: Option<String>,
        parser: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, StorageError> {
        value.map(|v| parse(shared, table, key, column, &v, parser)).transpose()
    }
    Ok(TerminalSaid {
        code: field(shared, table, key, "response_code", opt(0)?, ResponseCode::new)?,
        text: opt(1)?,
        trace: field(shared, table, key, "trace", opt(2)?, Trace::new)?,
        batch: field(shared, table, key, "batch_no", opt(3)?, Batch::new)?,
        rrn: field(shared, table, key, "rrn", opt(4)?, Rrn::new)?,
        auth: field(shared, table, key, "auth_code", opt(5)?, AuthCode::new)?,
        card: field(shared, table, key, "card_masked", opt(6)?, MaskedPan::new)?,
        amount: r.get::<_, Option<i64>>(first + 7)?.map(Fen::from_fen),
        date: field(shared, table, key, "txn_date", opt(8)?, Date::new)?,
        note: if note { r.get(first + 9)? } else { None },
    })
}

fn read_payment(shared: &Shared, r: &Row<'_>) -> Result<Payment, ReadFail> {
    let id: String = r.get(0)?;
    let t = "payments";
    let serial: String = r.get(1)?;
    let insurance: String = r.get(2)?;
    let state: String = r.get(8)?;
    Ok(Payment {
        id: parse(shared, t, &id, "id", &id, EcrReference::new)?,
        line: LineKey {
            serial: parse(shared, t, &id, "line serial", &serial, CollectionSerial::parse)?,
            insurance: parse(shared, t, &id, "line insurance", &insurance, Insurance::parse)?,
            year: r.get(3)?,
        },
        amount: Fen::from_fen(r.get(4)?),
        terminal: parse(shared, t, &id, "terminal_id", &r.get::<_, String>(5)?, TerminalId::new)?,
        till: parse(shared, t, &id, "till", &r.get::<_, String>(6)?, Till::new)?,
        operator: parse(shared, t, &id, "operator", &r.get::<_, String>(7)?, StaffNumber::parse)?,
        state: parse(shared, t, &id, "state", &state, PaymentState::parse)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
        pos: read_said(shared, t, &id, r, 11, false)?,
    })
}

/// The payment with this id.
pub(super) fn payment(conn: &Connection, shared: &Shared, id: &str) -> Result<Option<Payment>, ReadFail> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments p JOIN roster_lines l ON l.id = p.line_id WHERE p.id = ?1"
    ))?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(r) => read_payment(shared, r).map(Some),
        None => Ok(None),
    }
}

/// Every payment in one of `states`, oldest first.
pub(super) fn payments_in(
    conn: &Connection,
    shared: &Shared,
    states: &[PaymentState],
) -> Result<Vec<Payment>, ReadFail> {
    if states.is_empty() {
        return Ok(Vec::new());
    }
    // The codes come from the enum, never from outside: safe to inline.
    let list = states.iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(", ");
    let mut stmt = conn.prepare(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments p JOIN roster_lines l ON l.id = p.line_id
         WHERE p.state IN ({list}) ORDER BY p.created_at, p.id"
    ))?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(read_payment(shared, r)?);
    }
    Ok(out)
}

/// Approved payments not bound to their line (their approval was recorded with
/// [`Effect::LineAlreadyPaid`] or [`Effect::AmountDiffers`]) that no reversal is under way, approved
/// or declined for: money moved that nothing yet gives back. Oldest first.
pub(super) fn payments_to_reverse(conn: &Connection, shared: &Shared) -> Result<Vec<Payment>, ReadFail> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments p JOIN roster_lines l ON l.id = p.line_id
         WHERE p.state = 'approved' AND l.paid_by IS NOT p.id
           AND NOT EXISTS (SELECT 1 FROM reversals r WHERE r.payment_id = p.id
                           AND r.state IN ('created', 'sent', 'unknown', 'approved', 'declined'))
         ORDER BY p.created_at, p.id"
    ))?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(read_payment(shared, r)?);
    }
    Ok(out)
}

/// True when the payment's line is bound to it (false for an unknown payment).
pub(super) fn is_bound(conn: &Connection, payment: &str) -> Result<bool, ReadFail> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM payments p JOIN roster_lines l ON l.id = p.line_id WHERE p.id = ?1 AND l.paid_by = p.id",
        )?
        .exists([payment])?)
}

/// A payment's or a reversal's history, oldest first.
pub(super) fn history(
    conn: &Connection,
    shared: &Shared,
    which: History,
    id: &str,
) -> Result<Vec<TransitionRecord>, ReadFail> {
    let mut stmt = conn.prepare_cached(which.select())?;
    let mut rows = stmt.query([id])?;
    let mut out = Vec::new();
    let t = which.table();
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let key = format!("{id}#{seq}");
        let from = match r.get::<_, Option<String>>(2)? {
            Some(s) => Some(parse(shared, t, &key, "from_state", &s, PaymentState::parse)?),
            None => None,
        };
        out.push(TransitionRecord {
            seq,
            at: r.get(1)?,
            from,
            to: parse(shared, t, &key, "to_state", &r.get::<_, String>(3)?, PaymentState::parse)?,
            said: read_said(shared, t, &key, r, 4, true)?,
        });
    }
    Ok(out)
}

/// Payments matching `filter`, oldest first, at most `filter.limit`.
pub(super) fn payments(conn: &Connection, shared: &Shared, filter: &PaymentFilter) -> Result<Vec<Payment>, ReadFail> {
    let mut conditions = Vec::new();
    let mut values: Vec<SqlValue> = Vec::new();
    let mut condition = |sql: &str, value: SqlValue| {
        values.push(value);
        conditions.push(sql.replace('?', &format!("?{}", values.len())));
    };
    if let Some(date) = filter.date {
        // Stored times are fixed-width RFC 3339 at +08:00: the local day is a prefix, and the next day's
        // date bounds it, so the range reads through the index on created_at.
        condition("p.created_at >= ?", SqlValue::from(day(date)));
        condition(
            "p.created_at < ?",
            SqlValue::from(date.next_day().map(day).unwrap_or_else(|| "9999-99-99".to_owned())),
        );
    }
    if let Some(state) = filter.state {
        condition("p.state = ?", SqlValue::from(state.as_str().to_owned()));
    }
    if let Some(terminal) = filter.terminal {
        condition("p.terminal_id = ?", SqlValue::from(terminal.as_str().to_owned()));
    }
    if let Some(point) = &filter.collection_point {
        condition("l.collection_point = ?", SqlValue::from(point.as_str().to_owned()));
    }
    if let Some(line) = &filter.line {
        condition("l.serial = ?", SqlValue::from(line.serial.as_str().to_owned()));
        condition("l.insurance = ?", SqlValue::from(line.insurance.code().to_owned()));
        condition("l.year = ?", SqlValue::from(line.year));
    }
    values.push(SqlValue::Integer(i64::try_from(filter.limit).unwrap_or(i64::MAX)));
    let limit = values.len();
    let conditions = if conditions.is_empty() { "1".to_owned() } else { conditions.join(" AND ") };
    let mut stmt = conn.prepare(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments p JOIN roster_lines l ON l.id = p.line_id
         WHERE {conditions} ORDER BY p.created_at, p.id LIMIT ?{limit}"
    ))?;
    let mut rows = stmt.query(params_from_iter(values))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(read_payment(shared, r)?);
    }
    Ok(out)
}

/// A date as the first characters of the stored times of that day: `2020-10-21`.
fn day(date: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}

/// Up to `limit` entries still to send, in the order written.
pub(super) fn pending_outbox(conn: &Connection, shared: &Shared, limit: usize) -> Result<Vec<OutboxEntry>, ReadFail> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM ledger_outbox WHERE forwarded_at IS NULL AND dead_letter IS NULL
         ORDER BY seq LIMIT ?1"
    ))?;
    let mut rows = stmt.query([i64::try_from(limit).unwrap_or(i64::MAX)])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(read_outbox_entry(shared, r)?);
    }
    Ok(out)
}

/// The columns [`read_outbox_entry`] reads, in its order.
pub(super) const OUTBOX_COLUMNS: &str = "entry_id, kind, reverses, payment_id, payload, created_at, forwarded_at,
    tax_voucher_no, attempts, last_error, dead_letter";

/// One outbox row of [`OUTBOX_COLUMNS`].
pub(super) fn read_outbox_entry(shared: &Shared, r: &Row<'_>) -> Result<OutboxEntry, ReadFail> {
    let t = "ledger_outbox";
    let entry_id: String = r.get(0)?;
    let kind = parse_kind(shared, &entry_id, &r.get::<_, String>(1)?)?;
    let payload: String = r.get(4)?;
    Ok(OutboxEntry {
        payload: parse(shared, t, &entry_id, "payload", &payload, |s| serde_json::from_str::<Value>(s))?,
        kind,
        reverses: r.get(2)?,
        payment_id: r.get(3)?,
        created_at: r.get(5)?,
        forwarded_at: r.get(6)?,
        tax_voucher_no: r.get(7)?,
        attempts: u32::try_from(r.get::<_, i64>(8)?).unwrap_or(u32::MAX),
        last_error: r.get(9)?,
        dead_letter: r.get(10)?,
        entry_id,
    })
}

/// An outbox row's `kind`.
pub(super) fn parse_kind(shared: &Shared, entry_id: &str, kind: &str) -> Result<EntryKind, ReadFail> {
    match kind {
        "payment" => Ok(EntryKind::Payment),
        "reversal" => Ok(EntryKind::Reversal),
        _ => Err(ReadFail::Storage(StorageError::BadRow {
            path: shared.path.clone(),
            table: "ledger_outbox",
            key: entry_id.to_owned(),
            column: "kind",
        })),
    }
}
