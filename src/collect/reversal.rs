//! Voids (撤销) and refunds (退货): each with its own ECR reference, recorded `created` before it is
//! sent, and resolved like a sale when its answer is lost.

use std::sync::Arc;

use tokio::sync::{oneshot, OwnedRwLockReadGuard};
use zhengjiao_protocol::message::{Batch, OperatorId, Trace};
use zhengjiao_protocol::{EcrReference, Memo, RequestBody};

use super::flow::{amount_of, Answered, SentStep, Verdict, MONEY_START_WITHIN};
use super::view::PaymentView;
use super::{operator_id, system_operator, Collection, Operator, ReversalRequest, ServiceError, TerminalEntry};
use crate::domain::{Fen, StaffNumber};
use crate::journal::{CreateReversalError, NewReversal, Payment, PaymentState, ReversalKind, Store, TerminalSaid};
use crate::link::{ExchangeResult, Outgoing};

/// A reversal recorded `created`, ready to be sent under the batch gate.
pub(super) struct Prepared {
    id: EcrReference,
    body: RequestBody,
    operator: OperatorId,
    gate: OwnedRwLockReadGuard<()>,
}

impl Prepared {
    /// Its ECR reference.
    pub(super) fn id(&self) -> EcrReference {
        self.id
    }
}

impl Collection {
    /// Voids a payment of the terminal's open batch (撤销).
    pub async fn void(&self, who: &Operator, req: ReversalRequest) -> Result<PaymentView, ServiceError> {
        self.reverse(who, req, ReversalKind::Void).await
    }

    /// Refunds a payment of an earlier batch (退货), whole.
    pub async fn refund(&self, who: &Operator, req: ReversalRequest) -> Result<PaymentView, ServiceError> {
        self.reverse(who, req, ReversalKind::Refund).await
    }

    async fn reverse(
        &self,
        who: &Operator,
        req: ReversalRequest,
        kind: ReversalKind,
    ) -> Result<PaymentView, ServiceError> {
        let payment = self.payment_for(who, &req.payment).await?;
        let entry = Arc::clone(self.entry_of(&payment)?);
        let (tx, rx) = oneshot::channel();
        let this = self.clone();
        let operator = who.operator_id();
        let staff = who.staff_no.clone();
        let amount = req.amount;
        let payment_id = payment.id;
        // Its own task: a caller that goes away never leaves a reversal recorded and not sent.
        tokio::spawn(async move {
            match this.prepare_reversal(&entry, &payment_id, Some(kind), amount, operator, staff).await {
                Ok(prepared) => {
                    let _ = tx.send(Ok(prepared.id()));
                    this.run_reversal(entry, prepared).await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
        let reversal = rx.await.map_err(|_| ServiceError::Journal("the reversal task ended early".to_owned()))??;
        let wait = req.wait.unwrap_or(self.inner.settings.default_wait);
        self.wait_reversal(&payment.id, &reversal, wait).await
    }

    /// The terminal a payment was made on.
    pub(super) fn entry_of(&self, payment: &Payment) -> Result<&Arc<TerminalEntry>, ServiceError> {
        self.terminal_by_id(payment.terminal.as_str()).ok_or_else(|| {
            ServiceError::TerminalUnavailable(format!(
                "terminal {} of payment {} has not signed in since the daemon started",
                payment.terminal.as_str(),
                payment.id.as_str()
            ))
        })
    }

    /// The terminal's open batch, asked with STATUS (a settlement made on the terminal's keypad moves
    /// it); the link's last known batch when STATUS gets no answer.
    async fn open_batch(&self, entry: &TerminalEntry) -> Option<String> {
        let out = Outgoing {
            operator: system_operator(),
            body: RequestBody::Status,
            memo: Memo::new(),
            start_by: Some(tokio::time::Instant::now() + MONEY_START_WITHIN),
        };
        if let Ok(exchange) = entry.link.submit(out) {
            if let Ok(ExchangeResult::Answered(r)) = exchange.done.await {
                if r.code.is_approved() && !r.batch.is_zero() {
                    return Some(r.batch.as_str().to_owned());
                }
            }
        }
        entry.link.status().batch
    }

    /// Under the batch gate: checks the payment can be reversed now, decides VOID or REFUND (`kind`
    /// `None`: automatic, VOID while the sale's batch is open, else REFUND), and records the reversal
    /// `created` with its reference `<payment>-V<n>`, `-R<n>` or, automatic, `-A<n>`.
    pub(super) async fn prepare_reversal(
        &self,
        entry: &Arc<TerminalEntry>,
        payment_id: &EcrReference,
        kind: Option<ReversalKind>,
        amount: Option<Fen>,
        operator: OperatorId,
        staff: StaffNumber,
    ) -> Result<Prepared, ServiceError> {
        let gate = self.enter_batch(entry).await?;
        self.ready_terminal_id(entry).await?;
        let open_batch = self.open_batch(entry).await;
        let store = &self.inner.store;
        let payment = store
            .payment(payment_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("payment", format!("no payment {}", payment_id.as_str())))?;
        let pid = payment.id.as_str();
        if payment.state.is_under_way() {
            return Err(ServiceError::conflict(
                "outcome_unknown",
                format!("payment {pid} is {}: its outcome comes first", payment.state),
            ));
        }
        if !matches!(payment.state, PaymentState::Approved | PaymentState::Forwarded) {
            return Err(ServiceError::conflict(
                "not_reversible",
                format!("payment {pid} is {}; only an approved payment can be reversed", payment.state),
            ));
        }
        let earlier = store.reversals_of(&payment.id).await?;
        if let Some(open) = earlier.iter().find(|r| r.state.is_under_way()) {
            return Err(ServiceError::conflict(
                "outcome_unknown",
                format!(
                    "{} {} of payment {pid} is {}: its outcome comes first",
                    open.kind,
                    open.id.as_str(),
                    open.state
                ),
            ));
        }
        let sale_amount = payment.pos.amount.filter(|a| a.is_positive()).unwrap_or(payment.amount);
        let sale_batch = payment.pos.batch.map(|b: Batch| b.as_str().to_owned());
        let automatic = kind.is_none();
        let kind = kind.unwrap_or(if sale_batch.is_none() || sale_batch == open_batch {
            ReversalKind::Void
        } else {
            ReversalKind::Refund
        });
        let body = match kind {
            ReversalKind::Void => {
                if sale_batch.is_some() && sale_batch != open_batch {
                    return Err(ServiceError::conflict(
                        "not_reversible",
                        format!(
                            "payment {pid} is in batch {}, and the terminal's open batch is {}: refund it instead",
                            sale_batch.unwrap_or_default(),
                            open_batch.unwrap_or_else(|| "unknown".to_owned())
                        ),
                    ));
                }
                let orig_trace = payment.pos.trace.filter(|t: &Trace| !t.is_zero()).ok_or_else(|| {
                    ServiceError::conflict("not_reversible", format!("the terminal gave no trace number for {pid}"))
                })?;
                RequestBody::Void { amount: amount_of(sale_amount), orig_trace }
            }
            ReversalKind::Refund => {
                if let Some(asked) = amount {
                    if asked != sale_amount {
                        return Err(ServiceError::bad(
                            "amount",
                            format!("a contribution is refunded whole: the amount must be {sale_amount}, not {asked}"),
                        ));
                    }
                }
                if sale_batch.is_some() && sale_batch == open_batch {
                    return Err(ServiceError::conflict(
                        "not_reversible",
                        format!(
                            "payment {pid} is in the terminal's open batch {}: void it instead",
                            open_batch.unwrap_or_default()
                        ),
                    ));
                }
                let orig_rrn = payment.pos.rrn.ok_or_else(|| {
                    ServiceError::conflict("not_reversible", format!("the terminal gave no RRN for {pid}"))
                })?;
                let orig_date = payment.pos.date.ok_or_else(|| {
                    ServiceError::conflict("not_reversible", format!("the terminal gave no date for {pid}"))
                })?;
                RequestBody::Refund { amount: amount_of(sale_amount), orig_date, orig_rrn }
            }
        };
        let letter = match (kind, automatic) {
            (_, true) => 'A',
            (ReversalKind::Void, false) => 'V',
            (ReversalKind::Refund, false) => 'R',
        };
        let text = format!("{pid}-{letter}{}", earlier.len() + 1);
        let id = EcrReference::new(&text).map_err(|e| ServiceError::Journal(format!("reference {text}: {e}")))?;
        let new = NewReversal {
            id,
            payment: payment.id,
            kind,
            amount: sale_amount,
            terminal: payment.terminal,
            operator: staff,
        };
        match store.record_reversal_created(new).await {
            Ok(_) => {}
            Err(e @ CreateReversalError::Storage(_)) => return Err(ServiceError::Journal(e.to_string())),
            Err(e @ (CreateReversalError::PaymentUnderWay { .. } | CreateReversalError::OtherReversal { .. })) => {
                return Err(ServiceError::conflict("outcome_unknown", e.to_string()))
            }
            Err(e) => return Err(ServiceError::conflict("not_reversible", e.to_string())),
        }
        self.notify_step(&id, Some(PaymentState::Created));
        self.notify_step(&payment.id, None);
        tracing::info!(payment = %pid, reversal = %text, kind = kind.as_str(), automatic, "reversal created");
        Ok(Prepared { id, body, operator, gate })
    }

    /// Sends a prepared reversal and records what comes of it; releases the batch gate after.
    pub(super) async fn run_reversal(self, entry: Arc<TerminalEntry>, prepared: Prepared) {
        let Prepared { id, body, operator, gate } = prepared;
        match self.exchange(&entry, operator, body, Memo::with_reference(id), &id, true).await {
            Ok(Answered { response, sent }) => {
                let said = TerminalSaid::from_response(&response);
                let verdict =
                    if response.code.is_approved() { Verdict::Approved(said) } else { Verdict::Declined(said) };
                if !self.record_reversal_verdict(&id, verdict, sent).await {
                    self.fall_back_to_unknown(&entry, &id, true, "the answer could not be recorded").await;
                }
            }
            Err(note) => self.fall_back_to_unknown(&entry, &id, true, &note).await,
        }
        // Every step above told the reversal's waiters what it recorded.
        drop(gate);
    }

    /// Records a terminal's verdict on a reversal, behind its `sent` step when that is still queued;
    /// true when recorded.
    pub(super) async fn record_reversal_verdict(&self, id: &EcrReference, verdict: Verdict, sent: SentStep) -> bool {
        let (to, said) = match verdict {
            Verdict::Approved(s) | Verdict::ApprovedThenReversed(s, _) => (PaymentState::Approved, s),
            Verdict::Declined(s) => (PaymentState::Declined, s),
            Verdict::NotCharged(s) => (PaymentState::NotCharged, s),
        };
        // A reversal's `sent` gets a write of its own (reversals are few), queued before the outcome.
        let sent = match sent {
            SentStep::WithOutcome(s) => Some(self.queue_step(id, true, PaymentState::Sent, s).await),
            SentStep::Queued(step) => Some(step),
            SentStep::Done => None,
        };
        let queued = self.queue_step(id, true, to, said).await;
        if let Some(step) = sent {
            self.finish_step(step).await;
        }
        let recorded = self.finish_step(queued).await;
        if recorded {
            tracing::info!(reversal = %id.as_str(), to = %to, "reversal outcome recorded");
        }
        recorded
    }

    /// A QUERY found the sale approved and since voided or refunded on the terminal itself (its keypad,
    /// or a reversal whose record was lost): the reversal is recorded as the terminal reports it
    /// (`<payment>-T<n>`), so the line is released and the ledger gets the reversal.
    pub(super) async fn record_terminal_reversal(&self, payment: &Payment, kind: ReversalKind, said: TerminalSaid) {
        let store = &self.inner.store;
        let earlier = match store.reversals_of(&payment.id).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(payment = %payment.id.as_str(), error = %e, "cannot read reversals");
                return;
            }
        };
        let text = format!("{}-T{}", payment.id.as_str(), earlier.len() + 1);
        let Ok(id) = EcrReference::new(&text) else { return };
        let new = NewReversal {
            id,
            payment: payment.id,
            kind,
            amount: payment.pos.amount.filter(|a| a.is_positive()).unwrap_or(payment.amount),
            terminal: payment.terminal,
            operator: payment.operator.clone(),
        };
        if let Err(e) = store.record_reversal_created(new).await {
            tracing::error!(payment = %payment.id.as_str(), error = %e, "cannot record the terminal's reversal");
            return;
        }
        let note = format!("the terminal reports the sale {} on the terminal itself (QUERY)", kind.as_str());
        let mut said = said;
        said.note = Some(note.clone());
        if self.step(&id, true, PaymentState::Sent, TerminalSaid::note(note)).await {
            self.step(&id, true, PaymentState::Approved, said).await;
        }
        tracing::warn!(payment = %payment.id.as_str(), reversal = %text, "reversal made on the terminal recorded");
    }

    /// The operator number for a payment's automatic reversal: its collector's.
    pub(super) fn auto_operator(payment: &Payment) -> OperatorId {
        operator_id(&payment.operator)
    }
}
