//! Unknown outcomes (wire-protocol.md §4 rule 7): asked with QUERY, recorded only from the terminal's
//! answer; and approvals that turned out wrong, reversed automatically.

use std::sync::Arc;
use std::time::Duration;

use zhengjiao_protocol::memo::QueryState;
use zhengjiao_protocol::message::MessageType;
use zhengjiao_protocol::{EcrReference, Memo, RequestBody};

use super::flow::{SentStep, Verdict};
use super::view::PaymentView;
use super::{system_operator, Collection, Operator, ServiceError, TerminalEntry};
use crate::journal::{Payment, PaymentState, ReversalKind, Store, TerminalSaid};
use crate::link::{ExchangeResult, LinkState, Outgoing};

/// A QUERY not started on the terminal within this is dropped and asked again later.
const QUERY_START_WITHIN: Duration = Duration::from_secs(30);

/// How long an operator's QUERY waits for the terminal's recovery pass in progress.
const RESOLVE_WAIT: Duration = Duration::from_secs(60);

impl Collection {
    /// Asks the terminal (QUERY) about a payment and its reversals whose outcome is unknown, and records
    /// the answers. Returns the payment as it stands.
    pub async fn query(&self, who: &Operator, id: &str) -> Result<PaymentView, ServiceError> {
        let payment = self.payment_for(who, id).await?;
        let entry = Arc::clone(self.entry_of(&payment)?);
        let status = entry.link.status();
        if status.state != LinkState::Ready {
            return Err(ServiceError::TerminalUnavailable(format!(
                "terminal {} is {}{}",
                entry.name,
                super::link_state_name(status.state),
                status.last_error.as_deref().map(|e| format!(" (last error: {e})")).unwrap_or_default()
            )));
        }
        let _resolving = tokio::time::timeout(RESOLVE_WAIT, entry.resolving.lock()).await.map_err(|_| {
            ServiceError::TerminalUnavailable(format!(
                "terminal {} is busy answering other questions; try again",
                entry.name
            ))
        })?;
        let payment = self.inner.store.payment(&payment.id).await?.unwrap_or(payment);
        if payment.state == PaymentState::Unknown {
            self.query_payment(&entry, &payment).await;
        }
        for r in self.inner.store.reversals_of(&payment.id).await? {
            if r.state == PaymentState::Unknown {
                self.query_reversal(&entry, &r.id, r.kind).await;
            }
        }
        self.view(&payment.id, true).await
    }

    /// Asks about every unknown outcome on this terminal; returns how many remain unknown.
    pub(crate) async fn resolve_unknown(&self, entry: &Arc<TerminalEntry>) -> usize {
        let Some(terminal_id) = entry.terminal_id() else { return 0 };
        // One pass at a time per terminal (the recovery task, a settlement, an operator's QUERY).
        let _resolving = entry.resolving.lock().await;
        let store = &self.inner.store;
        let mut remaining = 0;
        match store.payments_in(&[PaymentState::Unknown]).await {
            Ok(payments) => {
                for p in payments.iter().filter(|p| p.terminal.as_str() == terminal_id) {
                    if !self.query_payment(entry, p).await {
                        remaining += 1;
                    }
                }
            }
            Err(e) => {
                tracing::error!(terminal = %entry.name, error = %e, "cannot read unknown payments");
                remaining += 1;
            }
        }
        match store.reversals_in(&[PaymentState::Unknown]).await {
            Ok(reversals) => {
                for r in reversals.iter().filter(|r| r.terminal.as_str() == terminal_id) {
                    if !self.query_reversal(entry, &r.id, r.kind).await {
                        remaining += 1;
                    }
                }
            }
            Err(e) => {
                tracing::error!(terminal = %entry.name, error = %e, "cannot read unknown reversals");
                remaining += 1;
            }
        }
        remaining
    }

    /// Reverses, on this terminal, every approval that could not be bound (another amount, the person
    /// paid meanwhile) and has no reversal yet; returns how many could not be started (tried again
    /// later). A declined automatic reversal is left to an operator, who sees it on the payment.
    pub(crate) async fn reverse_wrong_approvals(&self, entry: &Arc<TerminalEntry>) -> usize {
        let Some(terminal_id) = entry.terminal_id() else { return 0 };
        let payments = match self.inner.store.payments_to_reverse().await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(terminal = %entry.name, error = %e, "cannot read approvals to reverse");
                return 1;
            }
        };
        let mut remaining = 0;
        for p in payments.iter().filter(|p| p.terminal.as_str() == terminal_id) {
            let operator = Collection::auto_operator(p);
            match self.prepare_reversal(entry, &p.id, None, None, operator, p.operator.clone()).await {
                Ok(prepared) => {
                    tracing::warn!(payment = %p.id.as_str(), reversal = %prepared.id().as_str(), "reversing a wrong approval");
                    tokio::spawn(self.clone().run_reversal(Arc::clone(entry), prepared));
                }
                Err(e) => {
                    tracing::error!(payment = %p.id.as_str(), error = %e, "cannot reverse a wrong approval yet");
                    remaining += 1;
                }
            }
        }
        remaining
    }

    /// QUERY for one payment; true when its outcome is now recorded.
    async fn query_payment(&self, entry: &Arc<TerminalEntry>, payment: &Payment) -> bool {
        let Some(verdict) = self.ask(entry, &payment.id, &[MessageType::Sale]).await else { return false };
        self.record_payment_verdict(entry, &payment.id, verdict, SentStep::Done).await
    }

    /// QUERY for one reversal; true when its outcome is now recorded.
    async fn query_reversal(&self, entry: &Arc<TerminalEntry>, id: &EcrReference, kind: ReversalKind) -> bool {
        let expected = match kind {
            ReversalKind::Void => MessageType::Void,
            ReversalKind::Refund => MessageType::Refund,
        };
        let Some(verdict) = self.ask(entry, id, &[expected]).await else { return false };
        self.record_reversal_verdict(id, verdict, SentStep::Done).await
    }

    /// One QUERY; `None` when the answer does not settle the outcome (no answer, busy, another type).
    async fn ask(&self, entry: &TerminalEntry, id: &EcrReference, expected: &[MessageType]) -> Option<Verdict> {
        let out = Outgoing {
            operator: system_operator(),
            body: RequestBody::Query,
            memo: Memo::with_reference(*id),
            start_by: Some(tokio::time::Instant::now() + QUERY_START_WITHIN),
        };
        let exchange = match entry.link.submit(out) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(terminal = %entry.name, reference = %id.as_str(), error = %e, "QUERY not sent");
                return None;
            }
        };
        let response = match exchange.done.await {
            Ok(ExchangeResult::Answered(r)) => r,
            Ok(other) => {
                tracing::warn!(terminal = %entry.name, reference = %id.as_str(), result = ?other, "QUERY unanswered");
                return None;
            }
            Err(_) => return None,
        };
        if response.memo.reference.as_ref().is_some_and(|r| r != id) {
            tracing::warn!(reference = %id.as_str(), "QUERY answer names another reference; ignored");
            return None;
        }
        if let Some(kind) = response.memo.query_type {
            if !expected.contains(&kind) {
                tracing::warn!(reference = %id.as_str(), %kind, "QUERY answer is about another type of transaction; ignored");
                return None;
            }
        }
        let mut said = TerminalSaid::from_response(&response);
        match response.memo.query_state {
            Some(QueryState::Approved) => {
                said.note = Some("QUERY: approved".to_owned());
                Some(Verdict::Approved(said))
            }
            Some(QueryState::Voided) => {
                said.note = Some("QUERY: approved, since voided on the terminal".to_owned());
                Some(Verdict::ApprovedThenReversed(said, ReversalKind::Void))
            }
            Some(QueryState::Refunded) => {
                said.note = Some("QUERY: approved, since refunded on the terminal".to_owned());
                Some(Verdict::ApprovedThenReversed(said, ReversalKind::Refund))
            }
            Some(QueryState::Declined) => {
                said.note = Some("QUERY: declined".to_owned());
                Some(Verdict::Declined(said))
            }
            None if response.code.as_str() == "25" => {
                said.note = Some("QUERY: the terminal has no record of it (25): not charged".to_owned());
                Some(Verdict::NotCharged(said))
            }
            None => {
                tracing::warn!(
                    terminal = %entry.name, reference = %id.as_str(), code = %response.code.as_str(),
                    "QUERY answer does not settle the outcome; asking again later"
                );
                None
            }
        }
    }
}
