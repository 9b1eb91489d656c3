//! Payments as the API shows them (docs/api.md, PAYMENT and REVERSAL).

use serde_json::{json, Value};
use zhengjiao_protocol::EcrReference;

use super::{Collection, ServiceError};
use crate::domain::Fen;
use crate::journal::{
    Payment, PaymentDetail, PaymentState, Reversal, Store, StoredLine, TerminalSaid, TransitionRecord,
};

/// A payment with what the API shows beside it.
#[derive(Debug, Clone)]
pub struct PaymentView {
    /// The payment.
    pub payment: Payment,
    /// Its line (for the slip).
    pub line: Option<StoredLine>,
    /// Its voids and refunds, oldest first.
    pub reversals: Vec<Reversal>,
    /// Its history, on single-payment answers.
    pub history: Option<Vec<TransitionRecord>>,
    /// The configured name of its terminal.
    pub terminal_name: Option<String>,
    /// 商户号 of its terminal.
    pub merchant_id: Option<String>,
    /// The reversal this answer is about (void and refund answers).
    pub reversal: Option<EcrReference>,
}

impl PaymentView {
    /// True once the outcome is known: neither the payment nor the reversal this answer is about is
    /// under way.
    pub fn is_final(&self) -> bool {
        // Any reversal under way (the one asked for, an automatic one, one the terminal reported)
        // leaves the payment's outcome open.
        let reversal_open = self.reversals.iter().any(|r| r.state.is_under_way());
        !self.payment.state.is_under_way() && !reversal_open && !self.being_reversed()
    }

    /// True when the line is bound to this payment.
    pub fn is_bound(&self) -> bool {
        self.line.as_ref().and_then(|l| l.paid_by.as_ref()) == Some(&self.payment.id)
    }

    /// An approval that could not be bound, whose automatic reversal is still to come or under way.
    fn being_reversed(&self) -> bool {
        let approved = matches!(self.payment.state, PaymentState::Approved | PaymentState::Forwarded);
        let operator_needed =
            self.reversals.iter().rev().find(|r| is_automatic(r)).is_some_and(|r| r.state == PaymentState::Declined);
        approved && self.line.is_some() && !self.is_bound() && !operator_needed
    }

    /// The PAYMENT object.
    pub fn to_json(&self) -> Value {
        payment_json(self)
    }
}

fn said_json(s: &TerminalSaid) -> Value {
    json!({
        "code": s.code.map(|c| c.as_str().to_owned()),
        "text": s.text,
        "card": s.card.as_ref().map(|c| c.as_str().to_owned()),
        "amount": s.amount.map(Fen::to_yuan_string),
        "trace": s.trace.as_ref().map(|t| t.as_str().to_owned()),
        "batch": s.batch.as_ref().map(|t| t.as_str().to_owned()),
        "rrn": s.rrn.as_ref().map(|t| t.as_str().to_owned()),
        "auth": s.auth.as_ref().map(|t| t.as_str().to_owned()),
        "date": s.date.as_ref().map(|t| t.as_str().to_owned()),
    })
}

fn is_automatic(r: &Reversal) -> bool {
    r.id.as_str().rsplit_once('-').is_some_and(|(_, tail)| tail.starts_with('A'))
}

/// The words for a payment's state.
fn message(v: &PaymentView) -> String {
    let p = &v.payment;
    let terminal = v.terminal_name.clone().unwrap_or_else(|| p.terminal.as_str().to_owned());
    let what = format!("{} yuan for {} {} {}", p.amount, p.line.year, p.line.insurance.code(), p.line.serial);
    let declined = |s: &TerminalSaid| {
        format!(
            "declined {}: {}",
            s.code.map(|c| c.as_str().to_owned()).unwrap_or_default(),
            s.text.clone().or_else(|| s.code.and_then(|c| c.meaning()).map(str::to_owned)).unwrap_or_default()
        )
    };
    let auto = v.reversals.iter().rev().find(|r| is_automatic(r));
    let wrong = || match p.pos.amount {
        Some(a) if a != p.amount => format!("approved {a} but {} was asked", p.amount),
        None => format!("approved with no amount although {} was asked", p.amount),
        _ => "approved, but the line or the person was paid meanwhile by another payment".to_owned(),
    };
    let unbound = v.line.is_some() && !v.is_bound();
    match p.state {
        PaymentState::Created => format!("recorded; waiting to be sent to terminal {terminal}"),
        PaymentState::Sent => format!("sent to terminal {terminal}; waiting for the card and the bank"),
        PaymentState::Unknown => "outcome unknown, checking with the terminal".to_owned(),
        PaymentState::Approved | PaymentState::Forwarded if unbound => match auto {
            None => format!("{}: being reversed automatically", wrong()),
            Some(r) if r.state == PaymentState::Declined => format!(
                "{}: the automatic {} was declined ({}); an operator must void or refund it",
                wrong(),
                r.kind.as_str(),
                r.pos.code.map(|c| c.as_str().to_owned()).unwrap_or_default()
            ),
            Some(r) => format!("{}: automatic {} {}", wrong(), r.kind.as_str(), r.state),
        },
        PaymentState::Approved => format!("approved: {what}"),
        PaymentState::Forwarded => format!("approved: {what} (forwarded to the ledger)"),
        PaymentState::Declined => declined(&p.pos),
        PaymentState::NotCharged => "not charged: the terminal has no record of it (25)".to_owned(),
        PaymentState::Voided | PaymentState::Refunded => {
            let done = if p.state == PaymentState::Voided { "voided" } else { "refunded" };
            match auto.filter(|r| r.state == PaymentState::Approved) {
                Some(_) => format!("{}: {done} automatically", wrong()),
                None => format!("{done}: {what} returned to the card"),
            }
        }
    }
}

fn reversal_message(r: &Reversal) -> String {
    let kind = r.kind.as_str();
    match r.state {
        PaymentState::Created => format!("{kind} recorded; waiting to be sent"),
        PaymentState::Sent => format!("{kind} sent; waiting for the terminal"),
        PaymentState::Unknown => format!("{kind} outcome unknown, checking with the terminal"),
        PaymentState::Approved => format!("{kind} approved: {} yuan", r.amount),
        PaymentState::Declined => format!(
            "{kind} declined {}: {}",
            r.pos.code.map(|c| c.as_str().to_owned()).unwrap_or_default(),
            r.pos.text.clone().unwrap_or_default()
        ),
        PaymentState::NotCharged => format!("{kind} not carried out: the terminal has no record of it (25)"),
        other => format!("{kind} {other}"),
    }
}

/// The REVERSAL object.
pub fn reversal_json(r: &Reversal) -> Value {
    json!({
        "id": r.id.as_str(),
        "kind": r.kind.as_str(),
        "automatic": is_automatic(r),
        "state": r.state.as_str(),
        "final": !r.state.is_under_way(),
        "amount": r.amount.to_yuan_string(),
        "operator": r.operator.as_str(),
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "pos": said_json(&r.pos),
        "message": reversal_message(r),
    })
}

/// The PAYMENT object of docs/api.md.
pub fn payment_json(v: &PaymentView) -> Value {
    let p = &v.payment;
    let approved_once = matches!(
        p.state,
        PaymentState::Approved | PaymentState::Forwarded | PaymentState::Voided | PaymentState::Refunded
    );
    let slip = match (&v.line, approved_once) {
        (Some(line), true) => json!({
            "payer_name": line.line.name.as_str(),
            "payer_id": line.line.id_number.masked(),
            "insurance": p.line.insurance.code(),
            "year": p.line.year,
            "serial": p.line.serial.as_str(),
            "amount": p.pos.amount.unwrap_or(p.amount).to_yuan_string(),
            "card": p.pos.card.as_ref().map(|c| c.as_str().to_owned()),
            "merchant_id": v.merchant_id,
            "terminal_id": p.terminal.as_str(),
            "batch": p.pos.batch.as_ref().map(|t| t.as_str().to_owned()),
            "trace": p.pos.trace.as_ref().map(|t| t.as_str().to_owned()),
            "rrn": p.pos.rrn.as_ref().map(|t| t.as_str().to_owned()),
            "auth": p.pos.auth.as_ref().map(|t| t.as_str().to_owned()),
            "collection_point": line.line.collection_point.as_str(),
            "operator": p.operator.as_str(),
        }),
        _ => Value::Null,
    };
    let mut out = json!({
        "id": p.id.as_str(),
        "state": p.state.as_str(),
        "final": v.is_final(),
        "line": {"serial": p.line.serial.as_str(), "insurance": p.line.insurance.code(), "year": p.line.year},
        "amount": p.amount.to_yuan_string(),
        "terminal": v.terminal_name,
        "terminal_id": p.terminal.as_str(),
        "till": p.till.as_str(),
        "operator": p.operator.as_str(),
        "created_at": p.created_at,
        "updated_at": p.updated_at,
        "pos": said_json(&p.pos),
        "message": message(v),
        "slip": slip,
        "reversals": v.reversals.iter().map(reversal_json).collect::<Vec<_>>(),
    });
    if let (Some(history), Some(obj)) = (&v.history, out.as_object_mut()) {
        let steps: Vec<Value> = history
            .iter()
            .map(|h| {
                json!({
                    "at": h.at,
                    "from": h.from.map(PaymentState::as_str),
                    "to": h.to.as_str(),
                    "code": h.said.code.map(|c| c.as_str().to_owned()),
                    "text": h.said.text,
                    "note": h.said.note,
                })
            })
            .collect();
        obj.insert("history".to_owned(), Value::Array(steps));
    }
    out
}

impl Collection {
    /// A payment with its line, reversals and (optionally) history.
    pub async fn view(&self, id: &EcrReference, with_history: bool) -> Result<PaymentView, ServiceError> {
        let detail = self
            .inner
            .store
            .payment_detail(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("payment", format!("no payment {}", id.as_str())))?;
        self.view_of_detail(detail, with_history).await
    }

    /// The view of a payment's detail already read.
    pub(crate) async fn view_of_detail(
        &self,
        detail: PaymentDetail,
        with_history: bool,
    ) -> Result<PaymentView, ServiceError> {
        let PaymentDetail { payment, line, reversals, history } = detail;
        let history = with_history.then_some(history);
        let (terminal_name, merchant_id) = self.terminal_of(&payment).await?;
        Ok(PaymentView { payment, line, reversals, history, terminal_name, merchant_id, reversal: None })
    }

    /// The view of a payment already read.
    pub async fn view_of(&self, payment: Payment, with_history: bool) -> Result<PaymentView, ServiceError> {
        let store = &self.inner.store;
        let line = store.roster_line(&payment.line.serial, payment.line.insurance, payment.line.year).await?;
        let reversals = store.reversals_of(&payment.id).await?;
        let history = if with_history { Some(store.payment_history(&payment.id).await?) } else { None };
        let (terminal_name, merchant_id) = self.terminal_of(&payment).await?;
        Ok(PaymentView { payment, line, reversals, history, terminal_name, merchant_id, reversal: None })
    }

    /// The configured name of a payment's terminal and its 商户号 (from the link, when connected).
    async fn terminal_of(&self, payment: &Payment) -> Result<(Option<String>, Option<String>), ServiceError> {
        let entry = self.terminal_by_id(payment.terminal.as_str());
        let terminal_name = match entry {
            Some(t) => Some(t.name.clone()),
            None => self.inner.store.terminals().await?.into_iter().find(|t| t.id == payment.terminal).map(|t| t.name),
        };
        let merchant_id = entry.and_then(|t| t.link.status().merchant_id);
        Ok((terminal_name, merchant_id))
    }
}
