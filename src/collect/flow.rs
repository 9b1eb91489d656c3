//! The money flows: SALE for a collection, VOID and REFUND for a reversal, QUERY for an unknown outcome.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedRwLockReadGuard;
use zhengjiao_protocol::memo::{ContributionKind, QueryState};
use zhengjiao_protocol::message::{OperatorId, Trace};
use zhengjiao_protocol::{Amount, EcrReference, MaskedIdNumber, Memo, PayerName, RequestBody, Response};

use super::error::{Rule, ServiceError};
use super::view::PaymentView;
use super::{link_state_name, operator_id, system_operator, Collection, Operator, TerminalEntry, MAX_WAIT};
use crate::domain::{CollectionSerial, Fen, IdNumber, Insurance};
use crate::journal::{
    CreatePaymentError, CreateReversalError, Effect, LineKey, NewPayment, NewReversal, Payment, PaymentState,
    ReversalKind, Store, StoredLine, TerminalSaid,
};
use crate::link::{ExchangeResult, LinkState, Outgoing};

/// How long a collection waits for a terminal that has just signed in to be recorded in the journal.
const REGISTRATION_WAIT: Duration = Duration::from_secs(5);

/// Which line a collection is for.
#[derive(Debug, Clone)]
pub enum LineChoice {
    /// By 征集流水号; the insurance is needed only when the serial names lines of both.
    Serial {
        /// The serial.
        serial: CollectionSerial,
        /// The insurance, if given.
        insurance: Option<Insurance>,
    },
    /// By the payer's ID number and the insurance.
    IdNumber {
        /// 身份证号.
        id_number: IdNumber,
        /// The insurance.
        insurance: Insurance,
    },
}

/// A collector's request to collect one line.
#[derive(Debug, Clone)]
pub struct CollectRequest {
    /// The line.
    pub line: LineChoice,
    /// The year; the policy's year when absent.
    pub year: Option<i32>,
    /// The pension tier chosen (pension only).
    pub tier: Option<Fen>,
    /// For a medical line, the amount the collector expects (must equal the amount due).
    pub amount: Option<Fen>,
    /// The terminal's configured name.
    pub terminal: String,
    /// How long to wait for the outcome.
    pub wait: Option<Duration>,
}

/// A void or a refund asked for by an operator.
#[derive(Debug, Clone)]
pub struct ReversalRequest {
    /// The payment.
    pub payment: String,
    /// Refund only: the amount, which must equal the payment's.
    pub amount: Option<Fen>,
    /// How long to wait for the outcome.
    pub wait: Option<Duration>,
}

/// What a terminal's answer about a transaction means for its record.
enum Verdict {
    Approved(TerminalSaid),
    Declined(TerminalSaid),
    NotCharged(TerminalSaid),
}

impl Collection {
    /// Collects one line: policy, `created`, SALE, outcome. Returns the payment as it stands when the
    /// outcome is known or the wait ran out.
    pub async fn collect(&self, who: &Operator, req: CollectRequest) -> Result<PaymentView, ServiceError> {
        let entry = Arc::clone(self.terminal(&req.terminal)?);
        if !who.may_act_at(&entry.collection_point) {
            return Err(ServiceError::Forbidden(format!(
                "terminal {} stands at collection point {}, not yours",
                entry.name, entry.collection_point
            )));
        }
        let line = self.find_line(&req).await?;
        let stored = &line.line;
        if !who.may_act_at(&stored.collection_point) {
            return Err(ServiceError::policy(
                Rule::CollectionPoint,
                format!("line {} belongs to collection point {}, not yours", stored.key(), stored.collection_point),
            ));
        }
        if stored.collection_point != entry.collection_point {
            return Err(ServiceError::policy(
                Rule::CollectionPoint,
                format!(
                    "line {} belongs to collection point {}; terminal {} stands at {}",
                    stored.key(),
                    stored.collection_point,
                    entry.name,
                    entry.collection_point
                ),
            ));
        }
        let amount = self.check_policy(&line, &req).await?;
        let mut status = entry.link.status();
        if status.state == LinkState::Ready && *entry.registered_session.borrow() != status.session {
            // Signed in a moment ago: the journal records the terminal first (bounded wait).
            let mut registered = entry.registered_session.subscribe();
            let session = status.session;
            let _ = tokio::time::timeout(REGISTRATION_WAIT, registered.wait_for(|s| *s >= session)).await;
            status = entry.link.status();
        }
        let registered = *entry.registered_session.borrow() == status.session;
        let terminal_id = match (&status.state, &status.terminal_id) {
            (LinkState::Ready, Some(id)) if registered => id.clone(),
            _ => {
                return Err(ServiceError::TerminalUnavailable(format!(
                    "terminal {} is {}{}; nothing was recorded or sent",
                    entry.name,
                    link_state_name(status.state),
                    status.last_error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
                )))
            }
        };
        let terminal_id = zhengjiao_protocol::message::TerminalId::new(&terminal_id)
            .map_err(|e| ServiceError::Journal(format!("terminal id {terminal_id:?}: {e}")))?;

        let gate = Arc::clone(&entry.batch_gate).read_owned().await;
        let mut attempts = 0;
        let payment = loop {
            let new = NewPayment {
                id: self.new_reference()?,
                line: stored.key(),
                amount,
                terminal: terminal_id,
                till: entry.till,
                operator: who.staff_no.clone(),
            };
            attempts += 1;
            match self.inner.store.record_payment_created(new).await {
                // Two references drawn in the same second collided (1 in 16 million): draw again.
                Err(CreatePaymentError::DuplicateId { .. }) if attempts < 5 => continue,
                other => break other,
            }
        };
        let payment = match payment {
            Ok(p) => p,
            Err(CreatePaymentError::LinePaid { key, by }) => {
                return Err(ServiceError::policy(Rule::AlreadyPaid, format!("line {key} is already paid by {by}")))
            }
            Err(CreatePaymentError::PaymentUnderWay { key, other, state }) => {
                return Err(ServiceError::conflict(
                    "payment_under_way",
                    format!("payment {other} for line {key} is {state}; its outcome comes first"),
                ))
            }
            Err(e) => return Err(ServiceError::Journal(e.to_string())),
        };
        self.notify_changed();
        tracing::info!(
            payment = %payment.id.as_str(), terminal = %entry.name, line = %payment.line, amount = %payment.amount,
            "payment created"
        );
        let memo = sale_memo(&payment, &line);
        let operator = who.operator_id();
        let this = self.clone();
        let id = payment.id;
        let body = RequestBody::Sale { amount: amount_of(payment.amount) };
        tokio::spawn(async move { this.run_sale(entry, payment, operator, body, memo, gate).await });
        self.wait_payment(&id, req.wait.unwrap_or(self.inner.settings.default_wait)).await
    }

    /// Resolves the line a collection names.
    async fn find_line(&self, req: &CollectRequest) -> Result<StoredLine, ServiceError> {
        let year = req.year.unwrap_or(self.inner.policy.year());
        let store = &self.inner.store;
        match &req.line {
            LineChoice::Serial { serial, insurance } => {
                let mut found = Vec::new();
                for ins in Insurance::ALL {
                    if insurance.is_some_and(|i| i != ins) {
                        continue;
                    }
                    if let Some(line) = store.roster_line(serial, ins, year).await? {
                        found.push(line);
                    }
                }
                match found.len() {
                    0 => Err(ServiceError::not_found("line", format!("no {year} line has serial {serial}"))),
                    1 => Ok(found.remove(0)),
                    _ => Err(ServiceError::bad(
                        "insurance",
                        format!("serial {serial} names a pension and a medical line for {year}; say which"),
                    )),
                }
            }
            LineChoice::IdNumber { id_number, insurance } => {
                let lines = store.lines_by_id_number(id_number).await?;
                let mut matching: Vec<StoredLine> =
                    lines.into_iter().filter(|l| l.line.insurance == *insurance && l.line.year == year).collect();
                match matching.len() {
                    0 => Err(ServiceError::not_found(
                        "line",
                        format!("no {year} {} line for ID number {}", insurance.code(), id_number.masked()),
                    )),
                    1 => Ok(matching.remove(0)),
                    n => Err(ServiceError::bad(
                        "serial",
                        format!("{n} {year} {} lines for this ID number; give the serial", insurance.code()),
                    )),
                }
            }
        }
    }

    /// The policy checks of a collection; returns the amount to charge.
    async fn check_policy(&self, line: &StoredLine, req: &CollectRequest) -> Result<Fen, ServiceError> {
        let policy = &self.inner.policy;
        let l = &line.line;
        let today = self.inner.clock.today();
        if l.year != policy.year() {
            return Err(ServiceError::policy(
                Rule::Year,
                format!("line {} is for {}; the policy in force is for {}", l.key(), l.year, policy.year()),
            ));
        }
        policy.check_payment_date(today).map_err(|v| ServiceError::policy(Rule::Window, v.to_string()))?;
        let amount = match l.insurance {
            Insurance::Pension => {
                if req.amount.is_some() && req.tier.is_none() {
                    return Err(ServiceError::bad("tier", "a pension payment takes a tier, not an amount"));
                }
                let tier = req.tier.ok_or_else(|| {
                    ServiceError::bad("tier", format!("line {} is a pension line: choose a tier", l.key()))
                })?;
                let tiers: Vec<String> = policy.pension_tiers().iter().map(|t| t.to_yuan_string()).collect();
                policy.check_pension_tier(tier).map_err(|_| {
                    ServiceError::policy(
                        Rule::PensionTier,
                        format!("tier {tier} is not one of the {} tiers ({})", policy.year(), tiers.join(", ")),
                    )
                })?;
                policy.check_pension_age(&l.id_number, today).map_err(|v| {
                    ServiceError::policy(Rule::PensionAge, format!("{} (born {})", v, l.id_number.birth_date()))
                })?;
                tier
            }
            Insurance::Medical => {
                if req.tier.is_some() {
                    return Err(ServiceError::bad("tier", "a medical payment takes no tier: its amount is the line's"));
                }
                let due = l.amount_due.ok_or_else(|| {
                    ServiceError::conflict("no_amount_due", format!("medical line {} has no amount due", l.key()))
                })?;
                if let Some(asked) = req.amount {
                    if asked != due {
                        return Err(ServiceError::policy(
                            Rule::MedicalAmount,
                            format!("amount {asked} differs from the amount due {due} of line {}", l.key()),
                        ));
                    }
                }
                due
            }
        };
        if let Some(by) = &line.paid_by {
            return Err(ServiceError::policy(
                Rule::AlreadyPaid,
                format!("line {} is already paid by {}", l.key(), by.as_str()),
            ));
        }
        // The same person, insurance and year on another line (a roster may list a person twice).
        for other in self.inner.store.lines_by_id_number(&l.id_number).await? {
            let o = &other.line;
            if o.insurance != l.insurance || o.year != l.year || o.serial == l.serial {
                continue;
            }
            if let Some(by) = &other.paid_by {
                return Err(ServiceError::policy(
                    Rule::AlreadyPaid,
                    format!(
                        "{} is already paid for {} {} on line {} (payment {})",
                        l.id_number.masked(),
                        l.year,
                        l.insurance.code(),
                        o.serial,
                        by.as_str()
                    ),
                ));
            }
            let filter =
                crate::journal::PaymentFilter { line: Some(o.key()), ..crate::journal::PaymentFilter::all(100) };
            if let Some(p) = self.inner.store.payments(filter).await?.into_iter().find(|p| p.state.is_under_way()) {
                return Err(ServiceError::policy(
                    Rule::AlreadyPaid,
                    format!(
                        "payment {} for {} {} of this person (line {}) is {}",
                        p.id.as_str(),
                        l.year,
                        l.insurance.code(),
                        o.serial,
                        p.state
                    ),
                ));
            }
        }
        Ok(amount)
    }

    /// A new ECR reference: `P`, the business time to the second, `-`, six random hex digits.
    fn new_reference(&self) -> Result<EcrReference, ServiceError> {
        let now = self.inner.clock.now();
        let text = format!(
            "P{:04}{:02}{:02}{:02}{:02}{:02}-{:06X}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            fastrand::u32(..0x0100_0000)
        );
        EcrReference::new(&text).map_err(|e| ServiceError::Journal(format!("reference {text}: {e}")))
    }

    /// Sends a SALE and records what comes of it. Holds the batch gate until the outcome is recorded.
    async fn run_sale(
        self,
        entry: Arc<TerminalEntry>,
        payment: Payment,
        operator: OperatorId,
        body: RequestBody,
        memo: Memo,
        gate: OwnedRwLockReadGuard<()>,
    ) {
        let id = payment.id;
        let outcome = self.exchange(&entry, operator, body, memo, Some(&id), false).await;
        match outcome {
            Ok(response) => {
                if let Err(e) = self.record_sale_answer(&entry, &id, &response).await {
                    tracing::error!(payment = %id.as_str(), error = %e, "cannot record the SALE answer");
                }
            }
            Err(note) => {
                self.step(&id, false, PaymentState::Unknown, TerminalSaid::note(note)).await;
                entry.kick.notify_one();
            }
        }
        drop(gate);
        self.notify_changed();
    }

    /// Runs one money exchange: records `sent` when the terminal ACKs the request, and returns the
    /// response, or why there is none (the outcome is then unknown).
    async fn exchange(
        &self,
        entry: &TerminalEntry,
        operator: OperatorId,
        body: RequestBody,
        memo: Memo,
        reference: Option<&EcrReference>,
        reversal: bool,
    ) -> Result<Response, String> {
        let exchange = entry.link.submit(Outgoing { operator, body, memo }).map_err(|e| format!("not sent: {e}"))?;
        let mut acked = exchange.acked;
        let mut done = exchange.done;
        let mut acked_seen = false;
        let result = loop {
            tokio::select! {
                biased;
                r = &mut acked, if !acked_seen => {
                    acked_seen = true;
                    if r.is_ok() {
                        if let Some(id) = reference {
                            self.step(id, reversal, PaymentState::Sent, TerminalSaid::default()).await;
                        }
                    }
                }
                r = &mut done => break r,
            }
        };
        match result {
            Ok(ExchangeResult::Answered(response)) => {
                if let Some(id) = reference {
                    if let Some(echoed) = &response.memo.reference {
                        if echoed != id {
                            return Err(format!(
                                "the answer names reference {} instead of {}",
                                echoed.as_str(),
                                id.as_str()
                            ));
                        }
                    }
                    if !acked_seen {
                        self.step(id, reversal, PaymentState::Sent, TerminalSaid::note("answered before its ACK"))
                            .await;
                    }
                }
                Ok(*response)
            }
            Ok(ExchangeResult::OutcomeUnknown(reason)) => Err(format!("outcome unknown: {reason}")),
            Ok(ExchangeResult::Failed(reason)) => Err(format!("exchange failed: {reason}")),
            Ok(ExchangeResult::NotSent(why)) => Err(format!("not sent: {why}")),
            Err(_) => Err("the terminal link stopped".to_owned()),
        }
    }

    /// Records one step of a payment (or a reversal), logging a refusal; true when recorded.
    async fn step(&self, id: &EcrReference, reversal: bool, to: PaymentState, said: TerminalSaid) -> bool {
        let store = &self.inner.store;
        let result = if reversal {
            store.transition_reversal(id, to, said).await.map(|_| ())
        } else {
            store.transition(id, to, said).await.map(|_| ())
        };
        self.notify_changed();
        if to == PaymentState::Approved {
            self.inner.outbox.notify_one();
        }
        match result {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(reference = %id.as_str(), to = %to, error = %e, "cannot record the step");
                false
            }
        }
    }

    /// A SALE's answer: approved (bound, or voided automatically when wrong) or declined.
    async fn record_sale_answer(
        &self,
        entry: &Arc<TerminalEntry>,
        id: &EcrReference,
        response: &Response,
    ) -> Result<(), ServiceError> {
        let said = TerminalSaid::from_response(response);
        let verdict = if response.code.is_approved() { Verdict::Approved(said) } else { Verdict::Declined(said) };
        self.record_payment_verdict(entry, id, verdict).await
    }

    async fn record_payment_verdict(
        &self,
        entry: &Arc<TerminalEntry>,
        id: &EcrReference,
        verdict: Verdict,
    ) -> Result<(), ServiceError> {
        let store = &self.inner.store;
        let (to, said) = match verdict {
            Verdict::Approved(s) => (PaymentState::Approved, s),
            Verdict::Declined(s) => (PaymentState::Declined, s),
            Verdict::NotCharged(s) => (PaymentState::NotCharged, s),
        };
        let outcome = store.transition(id, to, said).await.map_err(|e| ServiceError::Journal(e.to_string()));
        self.notify_changed();
        if to == PaymentState::Approved {
            self.inner.outbox.notify_one();
        }
        let outcome = outcome?;
        tracing::info!(payment = %id.as_str(), from = %outcome.from, to = %to, code = ?outcome.payment.pos.code.map(|c| c.as_str().to_owned()), "payment outcome recorded");
        match outcome.effect {
            Effect::LineAlreadyPaid { by } => {
                tracing::warn!(payment = %id.as_str(), by = %by, "approved for a line paid meanwhile: voiding it");
                self.auto_void(entry, &outcome.payment).await;
            }
            Effect::AmountDiffers { requested, approved } => {
                tracing::warn!(payment = %id.as_str(), %requested, %approved, "approved another amount: voiding it");
                self.auto_void(entry, &outcome.payment).await;
            }
            _ => {}
        }
        Ok(())
    }

    /// Reverses a payment whose approval turned out wrong: VOID while its batch is open (reference
    /// `-A<n>`), else REFUND. Runs as its own task: it may wait for the batch gate, which a SETTLE in
    /// progress holds.
    async fn auto_void(&self, entry: &Arc<TerminalEntry>, payment: &Payment) {
        let this = self.clone();
        let entry = Arc::clone(entry);
        let payment = payment.clone();
        tokio::spawn(async move {
            let operator = operator_id(&payment.operator);
            let open_batch = entry.link.status().batch;
            let sale_batch = payment.pos.batch.map(|b| b.as_str().to_owned());
            let kind = if sale_batch.is_none() || sale_batch == open_batch {
                ReversalKind::Void
            } else {
                ReversalKind::Refund
            };
            match this.start_reversal(&entry, &payment, kind, None, operator, true).await {
                Ok(rev) => {
                    tracing::info!(payment = %payment.id.as_str(), reversal = %rev.as_str(), "automatic reversal sent")
                }
                Err(e) => {
                    tracing::error!(payment = %payment.id.as_str(), error = %e, "automatic reversal not possible; an operator must void or refund it")
                }
            }
        });
    }

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
        let entry = self.entry_of(&payment)?;
        let reversal = self.start_reversal(&entry, &payment, kind, req.amount, who.operator_id(), false).await?;
        let wait = req.wait.unwrap_or(self.inner.settings.default_wait);
        self.wait_reversal(&payment.id, &reversal, wait).await
    }

    /// The payment, if the operator may see it.
    pub(crate) async fn payment_for(&self, who: &Operator, id: &str) -> Result<Payment, ServiceError> {
        let reference =
            EcrReference::new(id).map_err(|e| ServiceError::bad("payment", format!("not a payment id: {e}")))?;
        let payment = self
            .inner
            .store
            .payment(&reference)
            .await?
            .ok_or_else(|| ServiceError::not_found("payment", format!("no payment {id}")))?;
        if !who.is_admin() {
            let point = self.line_point(&payment.line).await?;
            if !who.may_act_at(&point) {
                return Err(ServiceError::Forbidden(format!("payment {id} belongs to another collection point")));
            }
        }
        Ok(payment)
    }

    pub(crate) async fn line_point(&self, key: &LineKey) -> Result<crate::domain::CollectionPointCode, ServiceError> {
        let line = self.inner.store.roster_line(&key.serial, key.insurance, key.year).await?;
        line.map(|l| l.line.collection_point)
            .ok_or_else(|| ServiceError::Journal(format!("line {key} of a payment is missing")))
    }

    /// The terminal a payment was made on.
    fn entry_of(&self, payment: &Payment) -> Result<Arc<TerminalEntry>, ServiceError> {
        self.terminal_by_id(payment.terminal.as_str()).map(Arc::clone).ok_or_else(|| {
            ServiceError::TerminalUnavailable(format!(
                "terminal {} of payment {} has not signed in since the daemon started",
                payment.terminal.as_str(),
                payment.id.as_str()
            ))
        })
    }

    /// Records a reversal `created` and sends its VOID or REFUND; returns its reference.
    async fn start_reversal(
        &self,
        entry: &Arc<TerminalEntry>,
        payment: &Payment,
        kind: ReversalKind,
        amount: Option<Fen>,
        operator: OperatorId,
        automatic: bool,
    ) -> Result<EcrReference, ServiceError> {
        let status = entry.link.status();
        if status.state != LinkState::Ready {
            return Err(ServiceError::TerminalUnavailable(format!(
                "terminal {} is {}; nothing was recorded or sent",
                entry.name,
                link_state_name(status.state)
            )));
        }
        if !matches!(payment.state, PaymentState::Approved | PaymentState::Forwarded) {
            return Err(ServiceError::conflict(
                "not_reversible",
                format!(
                    "payment {} is {}; only an approved payment can be reversed",
                    payment.id.as_str(),
                    payment.state
                ),
            ));
        }
        let sale_amount = payment.pos.amount.unwrap_or(payment.amount);
        let sale_batch = payment.pos.batch.map(|b| b.as_str().to_owned());
        let open_batch = status.batch.clone();
        let body = match kind {
            ReversalKind::Void => {
                if sale_batch.is_some() && sale_batch != open_batch {
                    return Err(ServiceError::conflict(
                        "not_reversible",
                        format!(
                            "payment {} is in batch {}, and the terminal's open batch is {}: refund it instead",
                            payment.id.as_str(),
                            sale_batch.unwrap_or_default(),
                            open_batch.unwrap_or_default()
                        ),
                    ));
                }
                let orig_trace = payment.pos.trace.filter(|t: &Trace| !t.is_zero()).ok_or_else(|| {
                    ServiceError::conflict("not_reversible", "the terminal gave no trace number for the sale")
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
                            "payment {} is in the terminal's open batch {}: void it instead",
                            payment.id.as_str(),
                            open_batch.unwrap_or_default()
                        ),
                    ));
                }
                let orig_rrn = payment.pos.rrn.ok_or_else(|| {
                    ServiceError::conflict("not_reversible", "the terminal gave no reference number (RRN) for the sale")
                })?;
                let orig_date = payment.pos.date.ok_or_else(|| {
                    ServiceError::conflict("not_reversible", "the terminal gave no date for the sale")
                })?;
                RequestBody::Refund { amount: amount_of(sale_amount), orig_date, orig_rrn }
            }
        };
        let earlier = self.inner.store.reversals_of(&payment.id).await?;
        let letter = match (kind, automatic) {
            (_, true) => 'A',
            (ReversalKind::Void, false) => 'V',
            (ReversalKind::Refund, false) => 'R',
        };
        let text = format!("{}-{letter}{}", payment.id.as_str(), earlier.len() + 1);
        let id = EcrReference::new(&text).map_err(|e| ServiceError::Journal(format!("reference {text}: {e}")))?;
        let gate = Arc::clone(&entry.batch_gate).read_owned().await;
        let new = NewReversal {
            id,
            payment: payment.id,
            kind,
            amount: sale_amount,
            terminal: payment.terminal,
            operator: payment.operator.clone(),
        };
        match self.inner.store.record_reversal_created(new).await {
            Ok(_) => {}
            Err(e @ CreateReversalError::Storage(_)) => return Err(ServiceError::Journal(e.to_string())),
            Err(e) => return Err(ServiceError::conflict("not_reversible", e.to_string())),
        }
        self.notify_changed();
        tracing::info!(payment = %payment.id.as_str(), reversal = %text, kind = kind.as_str(), "reversal created");
        let this = self.clone();
        let entry = Arc::clone(entry);
        let memo = Memo::with_reference(id);
        tokio::spawn(async move {
            match this.exchange(&entry, operator, body, memo, Some(&id), true).await {
                Ok(response) => {
                    let said = TerminalSaid::from_response(&response);
                    let verdict =
                        if response.code.is_approved() { Verdict::Approved(said) } else { Verdict::Declined(said) };
                    this.record_reversal_verdict(&id, verdict).await;
                }
                Err(note) => {
                    this.step(&id, true, PaymentState::Unknown, TerminalSaid::note(note)).await;
                    entry.kick.notify_one();
                }
            }
            drop(gate);
            this.notify_changed();
        });
        Ok(id)
    }

    async fn record_reversal_verdict(&self, id: &EcrReference, verdict: Verdict) {
        let (to, said) = match verdict {
            Verdict::Approved(s) => (PaymentState::Approved, s),
            Verdict::Declined(s) => (PaymentState::Declined, s),
            Verdict::NotCharged(s) => (PaymentState::NotCharged, s),
        };
        if self.step(id, true, to, said).await {
            tracing::info!(reversal = %id.as_str(), to = %to, "reversal outcome recorded");
        }
    }

    /// Asks the terminal (QUERY) about a payment and its reversals whose outcome is unknown, and records
    /// the answers. Returns the payment as it stands.
    pub async fn query(&self, who: &Operator, id: &str) -> Result<PaymentView, ServiceError> {
        let payment = self.payment_for(who, id).await?;
        let entry = self.entry_of(&payment)?;
        if entry.link.status().state != LinkState::Ready {
            return Err(ServiceError::TerminalUnavailable(format!("terminal {} is not ready", entry.name)));
        }
        let _resolving = entry.resolving.lock().await;
        if payment.state == PaymentState::Unknown {
            self.query_payment(&entry, &payment).await;
        }
        for r in self.inner.store.reversals_of(&payment.id).await? {
            if r.state == PaymentState::Unknown {
                self.query_reversal(&entry, &r.id).await;
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
                    if !self.query_reversal(entry, &r.id).await {
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

    /// QUERY for one payment; true when its outcome is now recorded.
    async fn query_payment(&self, entry: &Arc<TerminalEntry>, payment: &Payment) -> bool {
        let Some(verdict) = self.ask(entry, &payment.id).await else { return false };
        match self.record_payment_verdict(entry, &payment.id, verdict).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(payment = %payment.id.as_str(), error = %e, "cannot record the QUERY answer");
                false
            }
        }
    }

    async fn query_reversal(&self, entry: &Arc<TerminalEntry>, id: &EcrReference) -> bool {
        let Some(verdict) = self.ask(entry, id).await else { return false };
        self.record_reversal_verdict(id, verdict).await;
        true
    }

    /// One QUERY; `None` when the answer does not settle the outcome (no answer, busy, ...).
    async fn ask(&self, entry: &TerminalEntry, id: &EcrReference) -> Option<Verdict> {
        let out = Outgoing { operator: system_operator(), body: RequestBody::Query, memo: Memo::with_reference(*id) };
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
        let mut said = TerminalSaid::from_response(&response);
        match response.memo.query_state {
            Some(QueryState::Approved | QueryState::Voided | QueryState::Refunded) => {
                if response.memo.query_state != Some(QueryState::Approved) {
                    said.note = Some(format!(
                        "the terminal reports it approved and since {}",
                        if response.memo.query_state == Some(QueryState::Voided) { "voided" } else { "refunded" }
                    ));
                    tracing::warn!(reference = %id.as_str(), "QUERY: approved and later reversed at the terminal");
                } else {
                    said.note = Some("QUERY: approved".to_owned());
                }
                Some(Verdict::Approved(said))
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

    /// Waits up to `wait` for the payment's outcome; returns it as it stands.
    pub async fn wait_payment(&self, id: &EcrReference, wait: Duration) -> Result<PaymentView, ServiceError> {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        let mut changed = self.inner.changed.subscribe();
        loop {
            let payment = self.inner.store.payment(id).await?;
            let open = payment.as_ref().is_some_and(|p| p.state.is_under_way());
            if !open || tokio::time::Instant::now() >= deadline {
                break;
            }
            if tokio::time::timeout_at(deadline, changed.changed()).await.is_err() {
                break;
            }
        }
        self.view(id, true).await
    }

    /// Waits for a reversal's outcome; returns its payment.
    async fn wait_reversal(
        &self,
        payment: &EcrReference,
        reversal: &EcrReference,
        wait: Duration,
    ) -> Result<PaymentView, ServiceError> {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        let mut changed = self.inner.changed.subscribe();
        loop {
            let r = self.inner.store.reversal(reversal).await?;
            let open = r.as_ref().is_some_and(|r| r.state.is_under_way());
            if !open || tokio::time::Instant::now() >= deadline {
                break;
            }
            if tokio::time::timeout_at(deadline, changed.changed()).await.is_err() {
                break;
            }
        }
        let mut view = self.view(payment, true).await?;
        view.reversal = Some(*reversal);
        Ok(view)
    }
}

/// The SALE memo: 0F01 the reference; 0F02-0F04 for the slip (kind, name, masked ID number).
fn sale_memo(payment: &Payment, line: &StoredLine) -> Memo {
    let mut memo = Memo::with_reference(payment.id);
    memo.contribution = Some(match line.line.insurance {
        Insurance::Pension => ContributionKind::Pension,
        Insurance::Medical => ContributionKind::Medical,
    });
    memo.payer_name = PayerName::new(line.line.name.as_str()).ok();
    memo.payer_id = MaskedIdNumber::new(&line.line.id_number.masked()).ok();
    memo
}

/// An amount for the wire; amounts here are positive and far below the field's 12 digits.
fn amount_of(fen: Fen) -> Amount {
    u64::try_from(fen.as_fen()).ok().and_then(|f| Amount::from_fen(f).ok()).unwrap_or(Amount::ZERO)
}
