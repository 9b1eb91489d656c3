//! The SALE flow of a collection, and the steps every money exchange shares: recording `sent` on the
//! ACK, the answer, or `unknown` when there is none.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, OwnedRwLockReadGuard};
use zhengjiao_protocol::memo::ContributionKind;
use zhengjiao_protocol::message::OperatorId;
use zhengjiao_protocol::{Amount, EcrReference, MaskedIdNumber, Memo, PayerName, RequestBody, Response};

use super::error::{Rule, ServiceError};
use super::view::PaymentView;
use super::{link_state_name, Collection, Operator, StepWatch, TerminalEntry, MAX_WAIT, REFERENCE_SUFFIXES};
use crate::domain::{CollectionSerial, Fen, IdNumber, Insurance};
use crate::journal::{
    CreatePaymentError, Effect, NewPayment, Payment, PaymentDetail, PaymentState, ReversalKind, Store, StoredLine,
    TerminalSaid,
};
use crate::link::{ExchangeResult, LinkState, Outgoing};

/// How long a collection waits for a terminal that has just signed in to be recorded in the journal.
const REGISTRATION_WAIT: Duration = Duration::from_secs(5);

/// How long a money request waits for a settlement of its terminal in progress.
pub(super) const GATE_WAIT: Duration = Duration::from_secs(30);

/// A SALE, VOID or REFUND not started on the terminal within this (the terminal busy with others, the
/// link down) is dropped unsent: the collector has given up on it, and it must not reach the terminal
/// later. The payment then goes `unknown`, and QUERY proves it was not charged.
pub(super) const MONEY_START_WITHIN: Duration = Duration::from_secs(20);

/// How long after the terminal's ACK `sent` is recorded on its own; an answer within it is recorded
/// together with `sent` (see [`Collection::exchange`]).
const SENT_GRACE: Duration = Duration::from_millis(100);

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
pub(super) enum Verdict {
    /// `00`, or QUERY state `A`: money moved.
    Approved(TerminalSaid),
    /// Any other code, or QUERY state `D`.
    Declined(TerminalSaid),
    /// QUERY `25`: the terminal never carried it out.
    NotCharged(TerminalSaid),
    /// QUERY state `V` or `R`: approved, and since voided or refunded on the terminal itself.
    ApprovedThenReversed(TerminalSaid, ReversalKind),
}

impl Collection {
    /// Collects one line: policy, `created`, SALE, outcome. Returns the payment as it stands when the
    /// outcome is known or the wait ran out.
    ///
    /// Recording `created` and sending run in a task of their own, so a caller that goes away (an HTTP
    /// client disconnecting) never leaves a payment recorded and not sent.
    pub async fn collect(&self, who: &Operator, req: CollectRequest) -> Result<PaymentView, ServiceError> {
        let entry = Arc::clone(self.terminal(&req.terminal)?);
        if !who.may_act_at(&entry.collection_point) {
            return Err(ServiceError::Forbidden(format!(
                "terminal {} stands at collection point {}, not yours ({})",
                entry.name,
                entry.collection_point,
                who.point_name()
            )));
        }
        let line = self.find_line(&req).await?;
        let stored = &line.line;
        if !who.may_act_at(&stored.collection_point) {
            return Err(ServiceError::policy(
                Rule::CollectionPoint,
                format!(
                    "line {} belongs to collection point {}, not yours ({})",
                    stored.key(),
                    stored.collection_point,
                    who.point_name()
                ),
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
        self.ready_terminal_id(&entry).await?;
        let (tx, rx) = oneshot::channel();
        let this = self.clone();
        let staff = who.clone();
        tokio::spawn(async move { this.create_and_send(entry, line, amount, staff, tx).await });
        let (id, steps) =
            rx.await.map_err(|_| ServiceError::Journal("the collection task ended early".to_owned()))??;
        let wait = req.wait.unwrap_or(self.inner.settings.default_wait);
        self.follow_payment(&id, steps, Some(PaymentState::Created), wait).await
    }

    /// The terminal id (终端号) of a terminal that is ready for money requests: signed in, its sign-in
    /// recorded in the journal (waited for briefly), and room in its queue.
    pub(super) async fn ready_terminal_id(
        &self,
        entry: &TerminalEntry,
    ) -> Result<zhengjiao_protocol::message::TerminalId, ServiceError> {
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
                    status.last_error.as_deref().map(|e| format!(" (last error: {e})")).unwrap_or_default()
                )))
            }
        };
        if status.queued >= entry.queue_max {
            return Err(ServiceError::TerminalUnavailable(format!(
                "terminal {} has {} requests waiting (its queue holds {}); nothing was recorded or sent",
                entry.name, status.queued, entry.queue_max
            )));
        }
        zhengjiao_protocol::message::TerminalId::new(&terminal_id)
            .map_err(|e| ServiceError::Journal(format!("terminal id {terminal_id:?}: {e}")))
    }

    /// Takes the batch gate (a settlement in progress finishes first), waiting at most [`GATE_WAIT`].
    pub(super) async fn enter_batch(&self, entry: &TerminalEntry) -> Result<OwnedRwLockReadGuard<()>, ServiceError> {
        tokio::time::timeout(GATE_WAIT, Arc::clone(&entry.batch_gate).read_owned()).await.map_err(|_| {
            ServiceError::TerminalUnavailable(format!(
                "terminal {} is being settled and did not finish within {} s; nothing was recorded or sent",
                entry.name,
                GATE_WAIT.as_secs()
            ))
        })
    }

    /// Records the payment `created` and sends its SALE; the id, with a watch on its steps taken before
    /// any of them (or the refusal), goes to `reply` as soon as the payment is recorded.
    async fn create_and_send(
        self,
        entry: Arc<TerminalEntry>,
        line: StoredLine,
        amount: Fen,
        who: Operator,
        reply: oneshot::Sender<Result<(EcrReference, StepWatch), ServiceError>>,
    ) {
        let gate = match self.enter_batch(&entry).await {
            Ok(g) => g,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        // Checked again under the gate: a settlement may have run meanwhile.
        let terminal_id = match self.ready_terminal_id(&entry).await {
            Ok(id) => id,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let mut attempts = 0;
        let created = loop {
            let id = match self.new_reference() {
                Ok(id) => id,
                Err(e) => {
                    let _ = reply.send(Err(e));
                    return;
                }
            };
            let new = NewPayment {
                id,
                line: line.line.key(),
                amount,
                terminal: terminal_id,
                till: entry.till,
                operator: who.staff_no.clone(),
            };
            attempts += 1;
            match self.inner.store.record_payment_created(new).await {
                // The reference was taken (an earlier run of the daemon in the same second counted
                // through the same numbers): the ones after it may be too, so count on from a new
                // random start.
                Err(CreatePaymentError::DuplicateId { .. }) if attempts < 5 => {
                    self.inner.reference_suffix.store(fastrand::u32(..REFERENCE_SUFFIXES), Ordering::Relaxed);
                    continue;
                }
                other => break other,
            }
        };
        let payment = match created {
            Ok(p) => p,
            Err(e) => {
                let _ = reply.send(Err(refusal_of(e)));
                return;
            }
        };
        let steps = self.watch_steps(&payment.id);
        self.notify_step(&payment.id, Some(PaymentState::Created));
        tracing::info!(
            payment = %payment.id.as_str(), terminal = %entry.name, line = %payment.line, amount = %payment.amount,
            "payment created"
        );
        let _ = reply.send(Ok((payment.id, steps)));
        let memo = sale_memo(&payment, &line);
        let body = RequestBody::Sale { amount: amount_of(payment.amount) };
        self.run_sale(entry, payment, who.operator_id(), body, memo, gate).await;
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
                if let (Some(asked), Some(tier)) = (req.amount, req.tier) {
                    if asked != tier {
                        return Err(ServiceError::bad(
                            "amount",
                            format!("amount {asked} differs from the tier {tier}"),
                        ));
                    }
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
                if !due.is_positive() {
                    return Err(ServiceError::policy(
                        Rule::MedicalAmount,
                        format!("line {} has amount due {due}: there is nothing to collect", l.key()),
                    ));
                }
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
        // The same person, insurance and year on another line (a roster may list a person twice) is
        // checked by the journal itself when it records `created`, in the same transaction: a check
        // here could not see a payment another desk creates a moment later. Its refusal is the same
        // rule (`refusal_of`).
        Ok(amount)
    }

    /// A new ECR reference: `P`, the business time to the second, `-`, six hex digits counted up from
    /// a random start (`Inner::reference_suffix`). Within one run the references of one second follow
    /// one another, so the journal's indexes on them grow at their end instead of at random pages
    /// (each commit then writes a few index pages, not one per payment); across restarts within the
    /// same second a collision is as unlikely as with random digits, and is drawn again.
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
            self.inner.reference_suffix.fetch_add(1, Ordering::Relaxed) % REFERENCE_SUFFIXES
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
        match self.exchange(&entry, operator, body, memo, &id, false).await {
            Ok(Answered { response, sent }) => {
                let said = TerminalSaid::from_response(&response);
                let verdict =
                    if response.code.is_approved() { Verdict::Approved(said) } else { Verdict::Declined(said) };
                if !self.record_payment_verdict(&entry, &id, verdict, sent).await {
                    self.fall_back_to_unknown(&entry, &id, false, "the answer could not be recorded").await;
                }
            }
            Err(note) => self.fall_back_to_unknown(&entry, &id, false, &note).await,
        }
        // Every step above told the payment's waiters what it recorded.
        drop(gate);
    }

    /// Records `unknown` for a payment or reversal whose outcome was not recorded, and wakes the
    /// terminal's recovery task to ask the terminal.
    pub(super) async fn fall_back_to_unknown(
        &self,
        entry: &TerminalEntry,
        id: &EcrReference,
        reversal: bool,
        note: &str,
    ) {
        tracing::warn!(reference = %id.as_str(), note, "outcome unknown; asking the terminal");
        self.step(id, reversal, PaymentState::Unknown, TerminalSaid::note(note)).await;
        entry.kick.notify_one();
    }

    /// Runs one money exchange: records `sent` when the terminal ACKs the request, and returns the
    /// response, or why there is none (the outcome is then unknown).
    ///
    /// `sent` is recorded [`SENT_GRACE`] after the ACK, or with the outcome when the answer comes
    /// sooner: with no card to wait for, the answer follows the ACK within milliseconds, and one journal
    /// write then records both steps. Nothing waits on `sent` being durable: a payment found `created`
    /// or `sent` after a crash is asked about (QUERY) alike, and the history shows the steps either way.
    pub(super) async fn exchange(
        &self,
        entry: &TerminalEntry,
        operator: OperatorId,
        body: RequestBody,
        memo: Memo,
        reference: &EcrReference,
        reversal: bool,
    ) -> Result<Answered, String> {
        let start_by = Some(tokio::time::Instant::now() + MONEY_START_WITHIN);
        let exchange =
            entry.link.submit(Outgoing { operator, body, memo, start_by }).map_err(|e| format!("not sent: {e}"))?;
        let mut acked = exchange.acked;
        let mut done = exchange.done;
        let mut acked_seen = false;
        // Set on the ACK until `sent` is queued: when to queue it.
        let mut sent_due: Option<tokio::time::Instant> = None;
        let mut sent: Option<QueuedStep> = None;
        let mut sent_queued = false;
        let result = loop {
            tokio::select! {
                biased;
                r = &mut acked, if !acked_seen => {
                    acked_seen = true;
                    if r.is_ok() {
                        sent_due = Some(tokio::time::Instant::now() + SENT_GRACE);
                    }
                }
                () = sleep_until_some(sent_due), if sent_due.is_some() => {
                    // The card is awaited: `sent` is recorded and shown meanwhile.
                    sent_due = None;
                    sent = Some(self.queue_step(reference, reversal, PaymentState::Sent, TerminalSaid::default()).await);
                    sent_queued = true;
                }
                recorded = QueuedStep::answer(&mut sent), if sent.is_some() => {
                    if let Some(step) = sent.take() {
                        self.tell_step(&step, recorded);
                    }
                }
                r = &mut done => break r,
            }
        };
        let reason = match result {
            Ok(ExchangeResult::Answered(response)) => match &response.memo.reference {
                Some(echoed) if echoed != reference => {
                    format!("the answer names reference {} instead of {}", echoed.as_str(), reference.as_str())
                }
                _ => {
                    let sent = match (sent, sent_queued, sent_due) {
                        (Some(step), _, _) => SentStep::Queued(step),
                        (None, true, _) => SentStep::Done,
                        (None, false, Some(_)) => SentStep::WithOutcome(TerminalSaid::default()),
                        // An answer proves the request arrived; `sent` comes before the outcome.
                        (None, false, None) => SentStep::WithOutcome(TerminalSaid::note("answered before its ACK")),
                    };
                    return Ok(Answered { response: *response, sent });
                }
            },
            Ok(ExchangeResult::OutcomeUnknown(reason)) => format!("outcome unknown: {reason}"),
            Ok(ExchangeResult::Failed(reason)) => format!("exchange failed: {reason}"),
            Ok(ExchangeResult::NotSent(why)) => format!("not sent: {why}"),
            Err(_) => "the terminal link stopped".to_owned(),
        };
        // An ACKed request was sent; `unknown` comes after `sent`, and waiters hear of them in that order.
        if sent_due.is_some() {
            sent = Some(self.queue_step(reference, reversal, PaymentState::Sent, TerminalSaid::default()).await);
        }
        if let Some(step) = sent {
            self.finish_step(step).await;
        }
        Err(reason)
    }

    /// Queues one step of a payment (or a reversal) in the journal: its answer comes from
    /// [`finish_step`](Self::finish_step). Steps queued one after another are applied in that order.
    pub(super) async fn queue_step(
        &self,
        id: &EcrReference,
        reversal: bool,
        to: PaymentState,
        said: TerminalSaid,
    ) -> QueuedStep {
        let store = &self.inner.store;
        let write: StepWrite = if reversal {
            let pending = store.queue_transition_reversal(id, to, said).await;
            Box::pin(async move { pending.outcome().await.map(|_| ()).map_err(|e| e.to_string()) })
        } else {
            let pending = store.queue_transition(id, Vec::new(), to, said).await;
            Box::pin(async move { pending.outcome().await.map(|_| ()).map_err(|e| e.to_string()) })
        };
        QueuedStep { id: *id, to, write }
    }

    /// Waits for a queued step's answer and tells its waiters; true when recorded.
    pub(super) async fn finish_step(&self, mut step: QueuedStep) -> bool {
        let recorded = (&mut step.write).await;
        self.tell_step(&step, recorded)
    }

    /// Tells the waiters of a step's reference what it recorded (and the forwarder of an approval),
    /// logging a refusal; true when recorded.
    fn tell_step(&self, step: &QueuedStep, recorded: Result<(), String>) -> bool {
        self.notify_step(&step.id, recorded.is_ok().then_some(step.to));
        if step.to == PaymentState::Approved {
            self.inner.outbox.notify_one();
        }
        match recorded {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(reference = %step.id.as_str(), to = %step.to, error = %e, "cannot record the step");
                false
            }
        }
    }

    /// Records one step of a payment (or a reversal), logging a refusal; true when recorded.
    pub(super) async fn step(&self, id: &EcrReference, reversal: bool, to: PaymentState, said: TerminalSaid) -> bool {
        let queued = self.queue_step(id, reversal, to, said).await;
        self.finish_step(queued).await
    }

    /// Records a terminal's verdict on a payment, behind its `sent` step when that is still queued. An
    /// approval that cannot be bound (another amount, the person paid meanwhile) wakes the recovery
    /// task, which reverses it. True when recorded.
    pub(super) async fn record_payment_verdict(
        &self,
        entry: &Arc<TerminalEntry>,
        id: &EcrReference,
        verdict: Verdict,
        sent: SentStep,
    ) -> bool {
        let store = &self.inner.store;
        let (to, said, reversed) = match verdict {
            Verdict::Approved(s) => (PaymentState::Approved, s, None),
            Verdict::Declined(s) => (PaymentState::Declined, s, None),
            Verdict::NotCharged(s) => (PaymentState::NotCharged, s, None),
            Verdict::ApprovedThenReversed(s, kind) => (PaymentState::Approved, s, Some(kind)),
        };
        let said_again = said.clone();
        let (via, queued, sent_said) = match sent {
            SentStep::WithOutcome(s) => (vec![(PaymentState::Sent, s.clone())], None, Some(s)),
            SentStep::Queued(step) => (Vec::new(), Some(step), None),
            SentStep::Done => (Vec::new(), None, None),
        };
        let pending = store.queue_transition_detailed(id, via, to, said).await;
        if let Some(step) = queued {
            self.finish_step(step).await;
        }
        let outcome = pending.outcome().await;
        // The detail read with the step goes to the waiters, unless a reversal is to follow it (a wrong
        // approval, or one the terminal reversed itself): the waiters then read the journal for
        // themselves.
        let (outcome, detail) = match outcome {
            Ok((o, detail)) => {
                let settled = reversed.is_none()
                    && !matches!(o.effect, Effect::LineAlreadyPaid { .. } | Effect::AmountDiffers { .. });
                (Ok(o), detail.filter(|_| settled).map(Arc::new))
            }
            Err(e) => (Err(e), None),
        };
        self.notify_step_with(id, outcome.is_ok().then_some(to), detail);
        if to == PaymentState::Approved {
            self.inner.outbox.notify_one();
        }
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(payment = %id.as_str(), to = %to, error = %e, "cannot record the outcome");
                if let Some(s) = sent_said {
                    // `sent` went down with the outcome it was written with: the request did arrive,
                    // and the history says so before the `unknown` that follows.
                    self.step(id, false, PaymentState::Sent, s).await;
                }
                return false;
            }
        };
        tracing::info!(
            payment = %id.as_str(), from = %outcome.from, to = %to,
            code = outcome.payment.pos.code.map(|c| c.as_str().to_owned()).unwrap_or_default(),
            "payment outcome recorded"
        );
        if let Some(kind) = reversed {
            self.record_terminal_reversal(&outcome.payment, kind, said_again).await;
            return true;
        }
        match outcome.effect {
            Effect::LineAlreadyPaid { by } => {
                tracing::warn!(payment = %id.as_str(), by = %by, "approved although paid meanwhile: to be reversed");
                entry.kick.notify_one();
            }
            Effect::AmountDiffers { requested, approved } => {
                tracing::warn!(payment = %id.as_str(), %requested, %approved, "approved another amount: to be reversed");
                entry.kick.notify_one();
            }
            _ => {}
        }
        true
    }

    /// Waits up to `wait` for the payment's outcome; returns it as it stands.
    pub async fn wait_payment(&self, id: &EcrReference, wait: Duration) -> Result<PaymentView, ServiceError> {
        let steps = self.watch_steps(id);
        self.follow_payment(id, steps, None, wait).await
    }

    /// Follows a payment's steps until its outcome is known or `wait` runs out, then returns it as it
    /// stands. `known` is its state when the caller knows it (else it is read); each step then tells
    /// the state it recorded, so the journal is read again only when a step did not say.
    async fn follow_payment(
        &self,
        id: &EcrReference,
        steps: StepWatch,
        known: Option<PaymentState>,
        wait: Duration,
    ) -> Result<PaymentView, ServiceError> {
        match self.follow_steps(id, false, steps, known, wait).await? {
            Some(detail) => self.view_of_detail(Arc::unwrap_or_clone(detail), true).await,
            None => self.view(id, true).await,
        }
    }

    /// Waits for a reversal's outcome; returns its payment.
    pub(super) async fn wait_reversal(
        &self,
        payment: &EcrReference,
        reversal: &EcrReference,
        wait: Duration,
    ) -> Result<PaymentView, ServiceError> {
        let steps = self.watch_steps(reversal);
        self.follow_steps(reversal, true, steps, None, wait).await?;
        let mut view = self.view(payment, true).await?;
        view.reversal = Some(*reversal);
        Ok(view)
    }

    /// Follows the steps of a payment (or, with `reversal`, a reversal) until it is no longer under way
    /// or `wait` runs out. Its state is `known` or read; after that each step tells the state it
    /// recorded, and the journal is read again only after a step that could not say. Returns the
    /// payment's detail when the step that ended the wait came with it.
    async fn follow_steps(
        &self,
        id: &EcrReference,
        reversal: bool,
        mut steps: StepWatch,
        known: Option<PaymentState>,
        wait: Duration,
    ) -> Result<Option<Arc<PaymentDetail>>, ServiceError> {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        let store = &self.inner.store;
        let mut told = known.map(|state| (state, None));
        loop {
            let (state, detail) = match told.take() {
                Some((state, detail)) => (Some(state), detail),
                None if reversal => (store.reversal(id).await?.map(|r| r.state), None),
                None => (store.payment(id).await?.map(|p| p.state), None),
            };
            if !state.is_some_and(PaymentState::is_under_way) {
                return Ok(detail);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            match tokio::time::timeout_at(deadline, steps.changed()).await {
                Ok(seen) => told = seen.state.map(|state| (state, seen.detail)),
                Err(_) => return Ok(None),
            }
        }
    }
}

/// A journal write of one step, its answer to come.
type StepWrite = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

/// A step queued in the journal ([`Collection::queue_step`]), its answer still to come.
pub(super) struct QueuedStep {
    id: EcrReference,
    to: PaymentState,
    write: StepWrite,
}

impl QueuedStep {
    /// The answer of the step in `slot`; pending for ever when there is none (a disabled branch).
    async fn answer(slot: &mut Option<QueuedStep>) -> Result<(), String> {
        match slot {
            Some(step) => (&mut step.write).await,
            None => std::future::pending().await,
        }
    }
}

/// A money exchange the terminal answered.
pub(super) struct Answered {
    /// The answer.
    pub(super) response: Response,
    /// Where its `sent` step stands.
    pub(super) sent: SentStep,
}

/// Where the `sent` step of an answered exchange stands.
pub(super) enum SentStep {
    /// Recorded (or refused, and logged) before the answer came.
    Done,
    /// Queued in the journal, its answer to come: the outcome is queued behind it.
    Queued(QueuedStep),
    /// Not yet queued: it is recorded with the outcome, in one write.
    WithOutcome(TerminalSaid),
}

/// Sleeps until `at`; never returns when it is `None` (a disabled branch).
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The API's refusal for a payment the journal would not record.
fn refusal_of(e: CreatePaymentError) -> ServiceError {
    match e {
        CreatePaymentError::LinePaid { key, by } => {
            ServiceError::policy(Rule::AlreadyPaid, format!("line {key} is already paid by {by}"))
        }
        CreatePaymentError::PaymentUnderWay { key, other, state } => ServiceError::conflict(
            "payment_under_way",
            format!("payment {other} for line {key} is {state}; its outcome comes first"),
        ),
        e @ (CreatePaymentError::PersonPaid { .. } | CreatePaymentError::PersonPaymentUnderWay { .. }) => {
            ServiceError::policy(Rule::AlreadyPaid, e.to_string())
        }
        e => ServiceError::Journal(e.to_string()),
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
pub(super) fn amount_of(fen: Fen) -> Amount {
    u64::try_from(fen.as_fen()).ok().and_then(|f| Amount::from_fen(f).ok()).unwrap_or(Amount::ZERO)
}
