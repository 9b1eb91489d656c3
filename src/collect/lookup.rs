//! Looking up contribution lines by ID number or collection serial, and listing payments.

use serde_json::{json, Value};

use super::{Collection, Operator, ServiceError};
use crate::domain::{CollectionSerial, Fen, IdNumber, Insurance};
use crate::journal::{PaymentFilter, PaymentState, Store, StoredLine};

/// The most payments one listing returns.
pub const MAX_LISTING: usize = 100_000;

/// What a lookup found.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The lines the caller may see, as LINE objects.
    pub lines: Vec<Value>,
    /// Lines found at other collection points (for a collector).
    pub elsewhere: usize,
}

impl Collection {
    /// Finds the lines of an ID number (18 characters) or of a collection serial (the policy's year).
    pub async fn lookup(&self, who: &Operator, query: &str) -> Result<Lookup, ServiceError> {
        let query = query.trim();
        let store = self.store();
        let found: Vec<StoredLine> =
            if query.chars().count() == 18 && query.chars().take(17).all(|c| c.is_ascii_digit()) {
                let id = IdNumber::parse(query).map_err(|e| ServiceError::bad("query", format!("ID number: {e}")))?;
                store.lines_by_id_number(&id).await?
            } else {
                let serial = CollectionSerial::parse(query)
                    .map_err(|e| ServiceError::bad("query", format!("neither an ID number nor a serial: {e}")))?;
                let mut lines = Vec::new();
                for insurance in Insurance::ALL {
                    if let Some(line) = store.roster_line(&serial, insurance, self.policy().year()).await? {
                        lines.push(line);
                    }
                }
                lines
            };
        if found.is_empty() {
            // An ID number is echoed masked: the answer may end up in a log or on a screen.
            let shown = match IdNumber::parse(query) {
                Ok(id) => id.masked(),
                Err(_) => query.to_owned(),
            };
            return Err(ServiceError::not_found("line", format!("no line matches {shown:?}")));
        }
        let total = found.len();
        let mut lines = Vec::new();
        for line in found.into_iter().filter(|l| who.may_act_at(&l.line.collection_point)) {
            lines.push(self.line_json(&line).await?);
        }
        Ok(Lookup { elsewhere: total - lines.len(), lines })
    }

    async fn line_json(&self, stored: &StoredLine) -> Result<Value, ServiceError> {
        let l = &stored.line;
        let filter = PaymentFilter { line: Some(l.key()), ..PaymentFilter::all(1000) };
        let payments = self.store().payments(filter).await?;
        let status = if stored.paid_by.is_some() {
            "paid"
        } else if payments.iter().any(|p| p.state.is_under_way()) {
            "under_way"
        } else {
            "unpaid"
        };
        Ok(json!({
            "serial": l.serial.as_str(),
            "insurance": l.insurance.code(),
            "year": l.year,
            "name": l.name.as_str(),
            "id_number": l.id_number.masked(),
            "amount_due": l.amount_due.map(Fen::to_yuan_string),
            "hardship": l.hardship.code(),
            "collection_point": l.collection_point.as_str(),
            "street": l.street,
            "community": l.community,
            "status": status,
            "paid_by": stored.paid_by.as_ref().map(|p| p.as_str().to_owned()),
            "payments": payments.iter().map(|p| json!({
                "id": p.id.as_str(), "state": p.state.as_str(), "amount": p.amount.to_yuan_string(),
                "created_at": p.created_at,
            })).collect::<Vec<_>>(),
        }))
    }

    /// Payments by filter, as PAYMENT objects without history; a collector sees only their point.
    pub async fn payments(
        &self,
        who: &Operator,
        date: Option<time::Date>,
        state: Option<PaymentState>,
        terminal: Option<&str>,
        collection_point: Option<crate::domain::CollectionPointCode>,
        limit: usize,
    ) -> Result<Vec<Value>, ServiceError> {
        let point = if who.is_admin() {
            collection_point
        } else {
            match (collection_point, &who.collection_point) {
                (Some(asked), Some(own)) if &asked != own => {
                    return Err(ServiceError::Forbidden(format!("collection point {asked} is not yours")))
                }
                (_, own) => own.clone(),
            }
        };
        let terminal = match terminal {
            None => None,
            Some(name) => {
                let entry = self.terminal(name)?;
                match entry.terminal_id() {
                    Some(id) => Some(
                        zhengjiao_protocol::message::TerminalId::new(&id)
                            .map_err(|e| ServiceError::Journal(format!("terminal id {id:?}: {e}")))?,
                    ),
                    None => self.journal_terminal_id(name).await?,
                }
            }
        };
        let filter = PaymentFilter {
            date,
            state,
            terminal,
            collection_point: point,
            line: None,
            limit: limit.clamp(1, MAX_LISTING),
        };
        let mut out = Vec::new();
        for p in self.store().payments(filter).await? {
            out.push(self.view_of(p, false).await?.to_json());
        }
        Ok(out)
    }

    /// The terminal id the journal recorded for a configured name.
    async fn journal_terminal_id(
        &self,
        name: &str,
    ) -> Result<Option<zhengjiao_protocol::message::TerminalId>, ServiceError> {
        Ok(self.store().terminals().await?.into_iter().find(|t| t.name == name).map(|t| t.id))
    }

    /// The payment, if the operator may see it.
    pub(crate) async fn payment_for(&self, who: &Operator, id: &str) -> Result<crate::journal::Payment, ServiceError> {
        let reference = zhengjiao_protocol::EcrReference::new(id)
            .map_err(|e| ServiceError::bad("payment", format!("not a payment id: {e}")))?;
        let payment = self
            .store()
            .payment(&reference)
            .await?
            .ok_or_else(|| ServiceError::not_found("payment", format!("no payment {id}")))?;
        if !who.is_admin() {
            let key = &payment.line;
            let line = self.store().roster_line(&key.serial, key.insurance, key.year).await?;
            let point = line
                .map(|l| l.line.collection_point)
                .ok_or_else(|| ServiceError::Journal(format!("line {key} of payment {id} is missing")))?;
            if !who.may_act_at(&point) {
                return Err(ServiceError::Forbidden(format!(
                    "payment {id} belongs to collection point {point}, not yours ({})",
                    who.point_name()
                )));
            }
        }
        Ok(payment)
    }
}
