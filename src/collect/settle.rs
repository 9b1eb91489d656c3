//! Settlement (结算) of one terminal's batch, compared with the journal.

use serde_json::{json, Value};
use zhengjiao_protocol::message::{Batch, TerminalId};
use zhengjiao_protocol::{Memo, RequestBody};

use super::{Collection, Operator, ServiceError};
use crate::domain::Fen;
use crate::journal::{BatchTotals, PaymentState, SettlementRecord, Store};
use crate::link::{ExchangeResult, Outgoing};

/// How long SETTLE waits for the money exchanges on its terminal to finish.
const SETTLE_GATE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// A stored settlement, for the API.
#[derive(Debug, Clone)]
pub struct SettlementView {
    /// The record.
    pub record: SettlementRecord,
    /// The terminal's configured name.
    pub terminal_name: Option<String>,
}

fn totals_json(t: &BatchTotals) -> Value {
    json!({
        "sale_count": t.sale_count, "sale_total": Fen::from_fen(t.sale_fen).to_yuan_string(),
        "void_count": t.void_count, "void_total": Fen::from_fen(t.void_fen).to_yuan_string(),
        "refund_count": t.refund_count, "refund_total": Fen::from_fen(t.refund_fen).to_yuan_string(),
    })
}

/// The differences between the terminal's totals and the journal's, as `(what, terminal, journal)`.
pub fn differences(terminal: &BatchTotals, journal: &BatchTotals) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    let mut count = |what, a: u32, b: u32| {
        if a != b {
            out.push((what, a.to_string(), b.to_string()));
        }
    };
    count("sale_count", terminal.sale_count, journal.sale_count);
    count("void_count", terminal.void_count, journal.void_count);
    count("refund_count", terminal.refund_count, journal.refund_count);
    let mut money = |what, a: i64, b: i64| {
        if a != b {
            out.push((what, Fen::from_fen(a).to_yuan_string(), Fen::from_fen(b).to_yuan_string()));
        }
    };
    money("sale_total", terminal.sale_fen, journal.sale_fen);
    money("void_total", terminal.void_fen, journal.void_fen);
    money("refund_total", terminal.refund_fen, journal.refund_fen);
    out
}

impl SettlementView {
    /// The SETTLEMENT object of docs/api.md.
    pub fn to_json(&self) -> Value {
        let r = &self.record;
        json!({
            "id": r.id,
            "terminal": self.terminal_name,
            "terminal_id": r.terminal.as_str(),
            "batch": r.batch.as_str(),
            "balanced": r.balanced,
            "terminal_totals": totals_json(&r.terminal_totals),
            "journal_totals": totals_json(&r.journal_totals),
            "differences": differences(&r.terminal_totals, &r.journal_totals).into_iter()
                .map(|(what, t, j)| json!({"what": what, "terminal": t, "journal": j}))
                .collect::<Vec<_>>(),
            "at": r.at,
        })
    }
}

impl Collection {
    /// Settles a terminal: waits for its money exchanges to be recorded and keeps new ones out, asks about
    /// every unknown outcome on it, sends SETTLE, and compares the batch's totals with the journal's.
    pub async fn settle(&self, who: &Operator, name: &str) -> Result<SettlementView, ServiceError> {
        let entry = std::sync::Arc::clone(self.terminal(name)?);
        if !who.may_act_at(&entry.collection_point) {
            return Err(ServiceError::Forbidden(format!(
                "terminal {} stands at collection point {}, not yours",
                entry.name, entry.collection_point
            )));
        }
        // Checked before waiting: a terminal that is down cannot be settled, however long one waits.
        self.ready_terminal_id(&entry).await?;
        let _gate = tokio::time::timeout(SETTLE_GATE_WAIT, entry.batch_gate.write()).await.map_err(|_| {
            ServiceError::conflict(
                "money_in_flight",
                format!(
                    "money exchanges on terminal {} did not finish within {} s; settle again later",
                    entry.name,
                    SETTLE_GATE_WAIT.as_secs()
                ),
            )
        })?;
        let terminal_id = self.ready_terminal_id(&entry).await?;
        if self.resolve_unknown(&entry).await > 0 {
            return Err(ServiceError::conflict(
                "outcome_unknown",
                format!("an outcome on terminal {} is still unknown; the batch is not closed over it", entry.name),
            ));
        }
        let out =
            Outgoing { operator: who.operator_id(), body: RequestBody::Settle, memo: Memo::new(), start_by: None };
        let exchange =
            entry.link.submit(out).map_err(|e| ServiceError::TerminalUnavailable(format!("SETTLE not sent: {e}")))?;
        let lost = |why: String| {
            tracing::error!(terminal = %entry.name, why = %why, "SETTLE answer lost; the batch may be closed");
            ServiceError::conflict(
                "settle_outcome_unknown",
                format!(
                    "SETTLE got no answer ({why}): the terminal may have closed its batch; its totals for that batch \
                     cannot be asked again. `zhengjiao terminals` shows the batch the terminal reports now"
                ),
            )
        };
        let response = match exchange.done.await {
            Ok(ExchangeResult::Answered(r)) => r,
            Ok(ExchangeResult::NotSent(why)) => {
                return Err(ServiceError::TerminalUnavailable(format!("SETTLE not sent: {why}")))
            }
            Ok(ExchangeResult::Failed(reason)) | Ok(ExchangeResult::OutcomeUnknown(reason)) => {
                return Err(lost(reason.to_string()))
            }
            Err(_) => return Err(lost("the terminal link stopped".to_owned())),
        };
        if !response.code.is_approved() {
            return Err(ServiceError::conflict(
                "terminal_refused",
                format!("the terminal refused SETTLE: {} {}", response.code.as_str(), response.text.as_str().trim()),
            ));
        }
        let totals = response.memo.settle.ok_or_else(|| {
            tracing::error!(terminal = %entry.name, batch = %response.batch.as_str(), "SETTLE answer without totals");
            ServiceError::conflict(
                "settle_totals_missing",
                format!(
                    "the terminal closed batch {} but its answer carries no totals (memo 0F10-0F15)",
                    response.batch.as_str()
                ),
            )
        })?;
        // In the log first: if the journal cannot record them, they are not lost.
        tracing::info!(
            terminal = %entry.name, batch = %response.batch.as_str(),
            sales = totals.sale_count, sale_total_fen = totals.sale_total,
            voids = totals.void_count, void_total_fen = totals.void_total,
            refunds = totals.refund_count, refund_total_fen = totals.refund_total,
            "batch closed by SETTLE"
        );
        let terminal_totals = BatchTotals {
            sale_count: totals.sale_count,
            sale_fen: i64::try_from(totals.sale_total).unwrap_or(i64::MAX),
            void_count: totals.void_count,
            void_fen: i64::try_from(totals.void_total).unwrap_or(i64::MAX),
            refund_count: totals.refund_count,
            refund_fen: i64::try_from(totals.refund_total).unwrap_or(i64::MAX),
        };
        let batch: Batch = response.batch;
        let tid: TerminalId = terminal_id;
        let journal_totals = self.store().batch_totals(&tid, &batch).await?;
        let record = self
            .store()
            .record_settlement(&tid, &batch, terminal_totals, journal_totals)
            .await
            .map_err(|e| ServiceError::Journal(e.to_string()))?;
        if record.balanced {
            tracing::info!(terminal = %entry.name, batch = %batch.as_str(), "settlement balanced");
        } else {
            tracing::warn!(terminal = %entry.name, batch = %batch.as_str(), "settlement NOT balanced");
        }
        self.notify_changed();
        Ok(SettlementView { record, terminal_name: Some(entry.name.clone()) })
    }

    /// Stored settlements, newest first; a collector sees their point's terminals only.
    pub async fn settlements(&self, who: &Operator, name: Option<&str>) -> Result<Vec<SettlementView>, ServiceError> {
        let terminals = self.store().terminals().await?;
        let tid = match name {
            Some(n) => {
                self.terminal(n)?;
                match terminals.iter().find(|t| t.name == n) {
                    Some(t) => Some(t.id),
                    None => return Ok(Vec::new()),
                }
            }
            None => None,
        };
        let mut out = Vec::new();
        for record in self.store().settlements(tid.as_ref()).await? {
            let t = terminals.iter().find(|t| t.id == record.terminal);
            if let Some(t) = t {
                if !who.may_act_at(&t.collection_point) {
                    continue;
                }
            } else if !who.is_admin() {
                continue;
            }
            out.push(SettlementView { terminal_name: t.map(|t| t.name.clone()), record });
        }
        Ok(out)
    }

    /// How many payments and reversals have an open outcome (created, sent, unknown), by terminal id.
    pub async fn open_outcomes(&self) -> Result<std::collections::HashMap<String, usize>, ServiceError> {
        let states = [PaymentState::Created, PaymentState::Sent, PaymentState::Unknown];
        let mut counts = std::collections::HashMap::new();
        for p in self.store().payments_in(&states).await? {
            *counts.entry(p.terminal.as_str().to_owned()).or_insert(0) += 1;
        }
        for r in self.store().reversals_in(&states).await? {
            *counts.entry(r.terminal.as_str().to_owned()).or_insert(0) += 1;
        }
        Ok(counts)
    }
}
