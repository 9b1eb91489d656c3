//! Reversals (void / refund): the writes and the reads. An approved reversal moves its payment through
//! the payment transition of [`super::payment`], in the same write.

use rusqlite::{params, Connection, OptionalExtension, Row};
use zhengjiao_protocol::message::{AuthCode, Batch, Date, Rrn, TerminalId, Trace};
use zhengjiao_protocol::{EcrReference, MaskedPan, ResponseCode};

use super::super::error::{CreateReversalError, TransitionError};
use super::super::payment::{PaymentState, TerminalSaid};
use super::super::reversal::{NewReversal, Reversal, ReversalKind, ReversalOutcome};
use super::super::writer::{Ctx, Refusal, Shared};
use super::codec::parse;
use super::payment::{self, insert_transition, note_batch, read_said, History};
use super::ReadFail;
use crate::domain::{Fen, StaffNumber};

/// The states in which a reversal blocks another one of the same payment, as an SQL list.
const OPEN_OR_APPROVED: &str = "('created', 'sent', 'unknown', 'approved')";

/// Records a new reversal as `created`.
pub(super) fn record_created(ctx: &Ctx<'_>, r: &NewReversal) -> Result<Reversal, Refusal<CreateReversalError>> {
    let conn = ctx.conn;
    let id = r.id.as_str();
    let pid = r.payment.as_str();
    let refuse = |e| Err(Refusal::Refused(e));
    if id.is_empty() {
        return refuse(CreateReversalError::EmptyId);
    }
    if conn.prepare_cached("SELECT 1 FROM reversals WHERE id = ?1")?.exists([id])? {
        return refuse(CreateReversalError::DuplicateId { id: id.to_owned(), existing: "reversal" });
    }
    if conn.prepare_cached("SELECT 1 FROM payments WHERE id = ?1")?.exists([id])? {
        return refuse(CreateReversalError::DuplicateId { id: id.to_owned(), existing: "payment" });
    }
    let Some(paid) = payment::payment(conn, ctx.shared, pid).map_err(ReadFail::into_refusal)? else {
        return refuse(CreateReversalError::UnknownPayment { id: id.to_owned(), payment: pid.to_owned() });
    };
    if paid.state.is_under_way() {
        return refuse(CreateReversalError::PaymentUnderWay {
            id: id.to_owned(),
            payment: pid.to_owned(),
            state: paid.state,
        });
    }
    if !matches!(paid.state, PaymentState::Approved | PaymentState::Forwarded) {
        return refuse(CreateReversalError::PaymentNotReversible {
            id: id.to_owned(),
            payment: pid.to_owned(),
            state: paid.state,
        });
    }
    let other = conn
        .prepare_cached(&format!(
            "SELECT id, kind, state FROM reversals WHERE payment_id = ?1 AND state IN {OPEN_OR_APPROVED}
             ORDER BY created_at, id LIMIT 1"
        ))?
        .query_row([pid], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?)))
        .optional()?;
    if let Some((other, kind, state)) = other {
        return refuse(CreateReversalError::OtherReversal {
            id: id.to_owned(),
            payment: pid.to_owned(),
            kind: parse(ctx.shared, "reversals", &other, "kind", &kind, |k| ReversalKind::parse(k).ok_or(()))
                .map_err(|e| Refusal::Refused(e.into()))?,
            state: parse(ctx.shared, "reversals", &other, "state", &state, PaymentState::parse)
                .map_err(|e| Refusal::Refused(e.into()))?,
            other,
        });
    }
    if !r.amount.is_positive() {
        return refuse(CreateReversalError::BadAmount { id: id.to_owned(), amount_fen: r.amount.as_fen() });
    }
    // What the terminal approved; the requested amount when it reported none.
    let approved = paid.pos.amount.unwrap_or(paid.amount);
    if r.amount > approved {
        return refuse(CreateReversalError::AmountAboveApproved {
            id: id.to_owned(),
            payment: pid.to_owned(),
            amount_fen: r.amount.as_fen(),
            approved_fen: approved.as_fen(),
        });
    }
    if !conn.prepare_cached("SELECT 1 FROM terminals WHERE id = ?1")?.exists([r.terminal.as_str()])? {
        return refuse(CreateReversalError::UnknownTerminal {
            id: id.to_owned(),
            terminal: r.terminal.as_str().to_owned(),
        });
    }
    let now = ctx.now();
    conn.prepare_cached(
        "INSERT INTO reversals (id, payment_id, kind, amount_fen, terminal_id, operator, state, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'created', ?7, ?7)",
    )?
    .execute(params![
        id,
        pid,
        r.kind.as_str(),
        r.amount.as_fen(),
        r.terminal.as_str(),
        r.operator.as_str(),
        now
    ])?;
    insert_transition(conn, History::Reversal, id, &now, None, PaymentState::Created, &TerminalSaid::default())?;
    Ok(Reversal {
        id: r.id,
        payment: r.payment,
        kind: r.kind,
        amount: r.amount,
        terminal: r.terminal,
        operator: r.operator.clone(),
        state: PaymentState::Created,
        created_at: now.clone(),
        updated_at: now,
        pos: TerminalSaid::default(),
    })
}

/// Records a reversal's step; `approved` moves its payment to `voided` / `refunded` in the same write.
pub(super) fn transition(
    ctx: &Ctx<'_>,
    id: &EcrReference,
    to: PaymentState,
    said: &TerminalSaid,
) -> Result<ReversalOutcome, Refusal<TransitionError>> {
    let conn = ctx.conn;
    let rid = id.as_str();
    let refuse = |e| Err(Refusal::Refused(e));
    let Some(current) = reversal(conn, ctx.shared, rid).map_err(ReadFail::into_refusal)? else {
        return refuse(TransitionError::UnknownReversal { id: rid.to_owned() });
    };
    let from = current.state;
    let reachable = !matches!(to, PaymentState::Forwarded | PaymentState::Voided | PaymentState::Refunded);
    if !reachable || !from.can_move_to(to) {
        return refuse(TransitionError::ReversalNotAllowed { id: rid.to_owned(), from, to });
    }
    let now = ctx.now();
    conn.prepare_cached(
        "UPDATE reversals SET state = ?2, updated_at = ?3, response_code = coalesce(?4, response_code),
             response_text = coalesce(?5, response_text), trace = coalesce(?6, trace),
             batch_no = coalesce(?7, batch_no), rrn = coalesce(?8, rrn), auth_code = coalesce(?9, auth_code),
             card_masked = coalesce(?10, card_masked), approved_fen = coalesce(?11, approved_fen),
             txn_date = coalesce(?12, txn_date)
         WHERE id = ?1",
    )?
    .execute(params![
        rid,
        to.as_str(),
        now,
        said.code.as_ref().map(ResponseCode::as_str),
        said.text,
        said.trace.as_ref().map(Trace::as_str),
        said.batch.as_ref().map(Batch::as_str),
        said.rrn.as_ref().map(Rrn::as_str),
        said.auth.as_ref().map(AuthCode::as_str),
        said.card.as_ref().map(MaskedPan::as_str),
        said.amount.map(Fen::as_fen),
        said.date.as_ref().map(Date::as_str),
    ])?;
    insert_transition(conn, History::Reversal, rid, &now, Some(from), to, said)?;
    note_batch(conn, &current.terminal, said.batch.as_ref(), &now)?;
    let Some(after) = reversal(conn, ctx.shared, rid).map_err(ReadFail::into_refusal)? else {
        return refuse(TransitionError::UnknownReversal { id: rid.to_owned() });
    };
    let payment = if to == PaymentState::Approved {
        // The payment's history and the reversal entry carry the reversal's own POS data (all it said
        // so far, e.g. a trace from `sent` and the code from a QUERY), never the sale's.
        let note = match &said.note {
            Some(n) => format!("{} {rid} approved: {n}", after.kind),
            None => format!("{} {rid} approved", after.kind),
        };
        let payment_said = TerminalSaid { note: Some(note), ..after.pos.clone() };
        let amount = after.pos.amount.unwrap_or(after.amount);
        Some(payment::transition_with(
            ctx,
            &after.payment,
            &[],
            after.kind.payment_state(),
            &payment_said,
            Some(amount),
        )?)
    } else {
        None
    };
    Ok(ReversalOutcome { reversal: after, from, payment })
}

/// The columns [`read_reversal`] reads, in its order.
const REVERSAL_COLUMNS: &str = "id, payment_id, kind, amount_fen, terminal_id, operator, state, created_at, updated_at,
    response_code, response_text, trace, batch_no, rrn, auth_code, card_masked, approved_fen, txn_date";

fn read_reversal(shared: &Shared, r: &Row<'_>) -> Result<Reversal, ReadFail> {
    let id: String = r.get(0)?;
    let t = "reversals";
    Ok(Reversal {
        id: parse(shared, t, &id, "id", &id, EcrReference::new)?,
        payment: parse(shared, t, &id, "payment_id", &r.get::<_, String>(1)?, EcrReference::new)?,
        kind: parse(shared, t, &id, "kind", &r.get::<_, String>(2)?, |k| ReversalKind::parse(k).ok_or(()))?,
        amount: Fen::from_fen(r.get(3)?),
        terminal: parse(shared, t, &id, "terminal_id", &r.get::<_, String>(4)?, TerminalId::new)?,
        operator: parse(shared, t, &id, "operator", &r.get::<_, String>(5)?, StaffNumber::parse)?,
        state: parse(shared, t, &id, "state", &r.get::<_, String>(6)?, PaymentState::parse)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
        pos: read_said(shared, t, &id, r, 9, false)?,
    })
}

fn collect(shared: &Shared, mut rows: rusqlite::Rows<'_>) -> Result<Vec<Reversal>, ReadFail> {
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(read_reversal(shared, r)?);
    }
    Ok(out)
}

/// The reversal with this id.
pub(super) fn reversal(conn: &Connection, shared: &Shared, id: &str) -> Result<Option<Reversal>, ReadFail> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {REVERSAL_COLUMNS} FROM reversals WHERE id = ?1"))?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(r) => read_reversal(shared, r).map(Some),
        None => Ok(None),
    }
}

/// Every reversal of a payment, oldest first.
pub(super) fn reversals_of(conn: &Connection, shared: &Shared, payment: &str) -> Result<Vec<Reversal>, ReadFail> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {REVERSAL_COLUMNS} FROM reversals WHERE payment_id = ?1 ORDER BY created_at, id"
    ))?;
    let rows = stmt.query([payment])?;
    collect(shared, rows)
}

/// Every reversal in one of `states`, oldest first.
pub(super) fn reversals_in(
    conn: &Connection,
    shared: &Shared,
    states: &[PaymentState],
) -> Result<Vec<Reversal>, ReadFail> {
    if states.is_empty() {
        return Ok(Vec::new());
    }
    // The codes come from the enum, never from outside: safe to inline.
    let list = states.iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(", ");
    let mut stmt = conn.prepare(&format!(
        "SELECT {REVERSAL_COLUMNS} FROM reversals WHERE state IN ({list}) ORDER BY created_at, id"
    ))?;
    let rows = stmt.query([])?;
    collect(shared, rows)
}
