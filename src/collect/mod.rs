//! The collection service (征缴): from a collector's request to a payment bound to its contribution
//! line, exactly once, whatever the cable, the terminal or the process does.
//!
//! - [`Collection::collect`] checks the policy, records the payment `created` in the journal before any
//!   byte goes to the terminal, hands the SALE to the terminal's link and records the answer: `approved`
//!   binds the line and queues the ledger entry in the same journal transaction; any other code is a
//!   decline; no answer is `unknown`. An approval that turns out wrong (another amount, the line paid
//!   meanwhile) is voided automatically.
//! - **Unknown outcomes** (wire-protocol.md §4 rule 7) are asked with QUERY: by a recovery task per
//!   terminal, after every sign-in (so on every reconnect and every start of the daemon), whenever a new
//!   unknown appears, every [`CollectionSettings::retry_every`] while some remain, and on demand
//!   ([`Collection::query`]). Only the terminal's answer moves a payment out of `unknown`.
//! - **Voids and refunds** ([`Collection::void`], [`Collection::refund`]) carry their own ECR reference
//!   and follow the same rules; approved, they reverse the payment at the ledger.
//! - **Settlement** ([`Collection::settle`]) closes the terminal's batch and compares its totals with the
//!   journal's.
//!
//! Per terminal, a batch gate (a read-write lock) keeps SETTLE apart from money exchanges: every sale, void
//! and refund holds it shared from its `created` record until its outcome is recorded, and SETTLE holds it
//! alone, so a batch's totals are compared only once every exchange of that batch is in the journal.

mod error;
mod flow;
mod lookup;
mod recover;
mod reversal;
mod settle;
mod view;

use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify, RwLock};
use zhengjiao_protocol::message::{OperatorId, Till};
use zhengjiao_protocol::EcrReference;

use crate::clock::Clock;
use crate::config::{Config, OperatorConfig, Role};
use crate::domain::{CollectionPointCode, StaffNumber};
use crate::journal::{PaymentDetail, PaymentState, SqliteStore, Store, TerminalSaid};
use crate::link::{LinkSettings, LinkState, LinkStatus, TerminalLink};
use crate::policy::Policy;

pub use error::{Rule, ServiceError};
pub use flow::{CollectRequest, LineChoice, ReversalRequest};
pub use lookup::{Lookup, MAX_LISTING};
pub use settle::{differences, SettlementView};
pub use view::{payment_json, reversal_json, PaymentView};

/// The most a caller may wait for an outcome in one call.
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// Tunables of the service.
#[derive(Debug, Clone, Copy)]
pub struct CollectionSettings {
    /// How long a collect, void or refund waits for the outcome by default.
    pub default_wait: Duration,
    /// How often the recovery task asks again about outcomes still unknown (while the terminal is
    /// ready).
    pub retry_every: Duration,
}

impl Default for CollectionSettings {
    fn default() -> Self {
        CollectionSettings { default_wait: Duration::from_secs(100), retry_every: Duration::from_secs(5) }
    }
}

/// Who is asking: an operator of the configuration, found by their token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// 工号, sent to the terminal as the operator number.
    pub staff_no: StaffNumber,
    /// Their collection point (a collector always has one).
    pub collection_point: Option<CollectionPointCode>,
    /// What they may do.
    pub role: Role,
}

impl Operator {
    /// From the configuration.
    pub fn from_config(o: &OperatorConfig) -> Operator {
        Operator { staff_no: o.staff_no.clone(), collection_point: o.collection_point.clone(), role: o.role }
    }

    /// True when the operator may act at `point`: an admin anywhere, a collector at their own point.
    pub fn may_act_at(&self, point: &CollectionPointCode) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Collector => self.collection_point.as_ref() == Some(point),
        }
    }

    /// True for an admin.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    fn operator_id(&self) -> OperatorId {
        operator_id(&self.staff_no)
    }

    /// Their collection point, for messages.
    pub(crate) fn point_name(&self) -> String {
        match &self.collection_point {
            Some(p) => p.as_str().to_owned(),
            None => "none".to_owned(),
        }
    }
}

/// The operator number sent for a staff number (both are at most 8 printable ASCII characters).
fn operator_id(staff: &StaffNumber) -> OperatorId {
    OperatorId::new(staff.as_str()).unwrap_or_else(|_| system_operator())
}

/// The operator number of requests the daemon makes on its own (QUERY, recovery).
fn system_operator() -> OperatorId {
    #[allow(clippy::expect_used)]
    OperatorId::new("ZJ").expect("\"ZJ\" is a valid operator field")
}

/// The API's word for a link state.
pub(crate) fn link_state_name(state: LinkState) -> &'static str {
    match state {
        LinkState::Connecting => "connecting",
        LinkState::SigningIn => "signing_in",
        LinkState::Ready => "ready",
        LinkState::Down => "down",
    }
}

/// What a waiter learns from a step: that one happened, the state it recorded when the notifier
/// knows it (`None`: something changed, read the journal), and the payment as that step left it when
/// the step read it in its own transaction.
///
/// Steps are told in the order their tasks get to it, which may not be the order of their commits. A
/// waiter that answers with a detail told late still answers with what the payment was at a moment
/// during its wait: it waits only after finding the payment under way, so before that step committed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen {
    seq: u64,
    pub(crate) state: Option<PaymentState>,
    pub(crate) detail: Option<Arc<PaymentDetail>>,
}

impl Seen {
    fn next(&mut self, state: Option<PaymentState>, detail: Option<Arc<PaymentDetail>>) {
        self.seq = self.seq.wrapping_add(1);
        // A payment never goes back under way once its outcome is known: a step told late (its task
        // delayed after the commit) was committed before that outcome, and must not hide it (or the
        // detail read with it) from the waiters.
        let late =
            matches!((self.state, state), (Some(known), Some(new)) if !known.is_under_way() && new.is_under_way());
        if !late {
            self.state = state;
            self.detail = detail;
        }
    }
}

/// A caller's wait for the steps of one payment or reversal; leaves the map when the last one ends.
pub(crate) struct StepWatch {
    collection: Collection,
    id: EcrReference,
    rx: watch::Receiver<Seen>,
}

impl StepWatch {
    /// Returns after the next step of the reference (at once when one happened since the last call),
    /// with what that step told.
    pub(crate) async fn changed(&mut self) -> Seen {
        if self.rx.changed().await.is_err() {
            // Not reached: the sender lives in the map while a receiver does.
            std::future::pending::<()>().await;
        }
        self.rx.borrow_and_update().clone()
    }
}

impl Drop for StepWatch {
    fn drop(&mut self) {
        if let Ok(mut waiting) = self.collection.inner.waiting.lock() {
            // This receiver is still alive: it is the last when the count is 1.
            if waiting.get(&self.id).is_some_and(|tx| tx.receiver_count() <= 1) {
                waiting.remove(&self.id);
            }
        }
    }
}

/// One configured terminal and what the service keeps for it.
pub(crate) struct TerminalEntry {
    /// Configured name.
    pub(crate) name: String,
    /// Where it stands.
    pub(crate) collection_point: CollectionPointCode,
    /// 款台号.
    pub(crate) till: Till,
    /// Its link actor.
    pub(crate) link: TerminalLink,
    /// Wakes the recovery task (a new unknown outcome, a QUERY asked for).
    pub(crate) kick: Notify,
    /// Money exchanges hold it shared; SETTLE alone.
    pub(crate) batch_gate: Arc<RwLock<()>>,
    /// The most requests its link queues.
    pub(crate) queue_max: usize,
    /// Held while asking the terminal about its unknown outcomes.
    pub(crate) resolving: tokio::sync::Mutex<()>,
    /// The link session whose sign-in the journal has recorded; payments wait for it, and the API shows
    /// the terminal `ready` only once it is recorded.
    pub(crate) registered_session: watch::Sender<u64>,
}

impl TerminalEntry {
    /// The terminal id (终端号) it reported at its last sign-in.
    pub(crate) fn terminal_id(&self) -> Option<String> {
        self.link.status().terminal_id
    }
}

pub(crate) struct Inner {
    pub(crate) store: SqliteStore,
    pub(crate) policy: Policy,
    pub(crate) clock: Clock,
    pub(crate) settings: CollectionSettings,
    pub(crate) terminals: Vec<Arc<TerminalEntry>>,
    pub(crate) by_name: HashMap<String, usize>,
    /// Terminal ids (终端号) reported at sign-in, to the index of the terminal that reported them: a
    /// hint that spares a scan of every link; the link's own status has the last word.
    pub(crate) by_terminal_id: std::sync::RwLock<HashMap<String, usize>>,
    /// Bumped after every recorded step (never with a state: it is every reference's).
    pub(crate) changed: watch::Sender<Seen>,
    /// Callers waiting for a payment's or reversal's outcome, by its reference: told of every step of
    /// that reference with the state it recorded (and all of them of a change that names none), so a
    /// waiter reads the journal only when its own record moved in a way it was not told.
    pub(crate) waiting: std::sync::Mutex<HashMap<EcrReference, watch::Sender<Seen>>>,
    /// Signalled after every step that may have written a ledger outbox row (an approval, a reversal).
    pub(crate) outbox: Arc<Notify>,
    /// The last six hex digits of the next payment reference: drawn at random when the service starts,
    /// then counted up, so references follow one another and land at the end of the journal's indexes.
    pub(crate) reference_suffix: AtomicU32,
}

/// How many six-hex-digit reference suffixes there are.
pub(crate) const REFERENCE_SUFFIXES: u32 = 0x0100_0000;

/// The collection service; cheap to clone.
#[derive(Clone)]
pub struct Collection {
    pub(crate) inner: Arc<Inner>,
}

impl Collection {
    /// Starts the service: every payment and reversal found `created` or `sent` (the daemon stopped
    /// while it was under way) becomes `unknown`, a link actor starts per configured terminal, and a
    /// recovery task per terminal asks it about every unknown outcome once it has signed in.
    pub async fn start(
        config: &Config,
        store: SqliteStore,
        clock: Clock,
        settings: CollectionSettings,
    ) -> Result<Collection, String> {
        let mut terminals = Vec::with_capacity(config.terminals.len());
        let mut by_name = HashMap::new();
        for t in &config.terminals {
            let link_settings = LinkSettings::from_config(t).map_err(|e| format!("terminal {}: {e}", t.id))?;
            let till = link_settings.till;
            let queue_max = link_settings.queue;
            by_name.insert(t.id.clone(), terminals.len());
            terminals.push(Arc::new(TerminalEntry {
                name: t.id.clone(),
                collection_point: t.collection_point.clone(),
                till,
                link: crate::link::spawn(link_settings),
                kick: Notify::new(),
                batch_gate: Arc::new(RwLock::new(())),
                queue_max,
                resolving: tokio::sync::Mutex::new(()),
                registered_session: watch::Sender::new(0),
            }));
        }
        let collection = Collection {
            inner: Arc::new(Inner {
                store,
                policy: config.policy.clone(),
                clock,
                settings,
                terminals,
                by_name,
                by_terminal_id: std::sync::RwLock::new(HashMap::new()),
                changed: watch::Sender::new(Seen::default()),
                waiting: std::sync::Mutex::new(HashMap::new()),
                outbox: Arc::new(Notify::new()),
                reference_suffix: AtomicU32::new(fastrand::u32(..REFERENCE_SUFFIXES)),
            }),
        };
        collection.mark_interrupted().await.map_err(|e| e.to_string())?;
        for entry in &collection.inner.terminals {
            tokio::spawn(collection.clone().recovery(Arc::clone(entry)));
        }
        Ok(collection)
    }

    /// The journal.
    pub fn store(&self) -> &SqliteStore {
        &self.inner.store
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The business clock.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Every terminal's link status, in configuration order, with its collection point. A terminal
    /// that signed in shows `signing_in` until the journal has recorded the sign-in: only then does it
    /// take payments.
    pub fn terminals(&self) -> Vec<(CollectionPointCode, LinkStatus)> {
        self.inner
            .terminals
            .iter()
            .map(|t| {
                let mut status = t.link.status();
                if status.state == LinkState::Ready && *t.registered_session.borrow() != status.session {
                    status.state = LinkState::SigningIn;
                }
                (t.collection_point.clone(), status)
            })
            .collect()
    }

    /// Closes every link.
    pub async fn shutdown(&self) {
        for t in &self.inner.terminals {
            t.link.shutdown().await;
        }
    }

    pub(crate) fn terminal(&self, name: &str) -> Result<&Arc<TerminalEntry>, ServiceError> {
        self.inner
            .by_name
            .get(name)
            .and_then(|&i| self.inner.terminals.get(i))
            .ok_or_else(|| ServiceError::not_found("terminal", format!("no terminal named {name:?} is configured")))
    }

    /// The terminal whose last sign-in reported this terminal id.
    pub(crate) fn terminal_by_id(&self, terminal_id: &str) -> Option<&Arc<TerminalEntry>> {
        let hinted = self.inner.by_terminal_id.read().ok().and_then(|ids| ids.get(terminal_id).copied());
        hinted
            .and_then(|i| self.inner.terminals.get(i))
            .filter(|t| t.link.has_terminal_id(terminal_id))
            .or_else(|| self.inner.terminals.iter().find(|t| t.link.has_terminal_id(terminal_id)))
    }

    /// Signalled whenever a ledger outbox row may have been written; the forwarder waits on it.
    pub fn outbox_signal(&self) -> Arc<Notify> {
        Arc::clone(&self.inner.outbox)
    }

    /// Wakes every waiter: a change that names no payment or reversal.
    pub(crate) fn notify_changed(&self) {
        self.inner.changed.send_modify(|s| s.next(None, None));
        if let Ok(waiting) = self.inner.waiting.lock() {
            for tx in waiting.values() {
                tx.send_modify(|s| s.next(None, None));
            }
        }
    }

    /// Wakes the waiters of one payment or reversal after a step of it: `recorded` is the state the
    /// step recorded, `None` when the caller cannot say (the waiters then read the journal).
    pub(crate) fn notify_step(&self, id: &EcrReference, recorded: Option<PaymentState>) {
        self.notify_step_with(id, recorded, None);
    }

    /// As [`notify_step`](Self::notify_step), with the payment as the step left it (read in the step's
    /// own transaction): a waiter answers with it instead of reading the journal.
    pub(crate) fn notify_step_with(
        &self,
        id: &EcrReference,
        recorded: Option<PaymentState>,
        detail: Option<Arc<PaymentDetail>>,
    ) {
        self.inner.changed.send_modify(|s| s.next(None, None));
        if let Ok(waiting) = self.inner.waiting.lock() {
            if let Some(tx) = waiting.get(id) {
                tx.send_modify(|s| s.next(recorded, detail));
            }
        }
    }

    /// Follows the steps of `id` from now on: [`StepWatch::changed`] returns after the next one.
    pub(crate) fn watch_steps(&self, id: &EcrReference) -> StepWatch {
        let rx = match self.inner.waiting.lock() {
            Ok(mut waiting) => waiting.entry(*id).or_insert_with(|| watch::Sender::new(Seen::default())).subscribe(),
            // A poisoned map (a panic while it was held): follow every change instead.
            Err(_) => self.inner.changed.subscribe(),
        };
        StepWatch { collection: self.clone(), id: *id, rx }
    }

    /// At start-up: whatever was under way when the daemon stopped is unknown until the terminal says.
    async fn mark_interrupted(&self) -> Result<(), ServiceError> {
        let store = &self.inner.store;
        for p in store.payments_in(&[PaymentState::Created, PaymentState::Sent]).await? {
            let note = format!("found {} at start-up; asking the terminal", p.state);
            tracing::warn!(payment = %p.id.as_str(), state = %p.state, "payment under way at start-up is unknown");
            store
                .transition(&p.id, PaymentState::Unknown, TerminalSaid::note(note))
                .await
                .map_err(|e| ServiceError::Journal(format!("cannot mark payment {} unknown: {e}", p.id.as_str())))?;
        }
        for r in store.reversals_in(&[PaymentState::Created, PaymentState::Sent]).await? {
            let note = format!("found {} at start-up; asking the terminal", r.state);
            tracing::warn!(reversal = %r.id.as_str(), state = %r.state, "reversal under way at start-up is unknown");
            store
                .transition_reversal(&r.id, PaymentState::Unknown, TerminalSaid::note(note))
                .await
                .map_err(|e| ServiceError::Journal(format!("cannot mark reversal {} unknown: {e}", r.id.as_str())))?;
        }
        Ok(())
    }

    /// One terminal's recovery task: after each sign-in it registers the terminal in the journal, then
    /// asks it about every unknown outcome on it; it asks again when kicked, and periodically while some
    /// remain.
    async fn recovery(self, entry: Arc<TerminalEntry>) {
        let mut status = entry.link.watch();
        let mut registered_session = 0;
        loop {
            let current = status.borrow_and_update().clone();
            let mut remaining = 0;
            if current.state == LinkState::Ready {
                if current.session != registered_session && self.register(&entry, &current).await {
                    registered_session = current.session;
                    if let (Some(id), Some(&i)) = (&current.terminal_id, self.inner.by_name.get(&entry.name)) {
                        if let Ok(mut ids) = self.inner.by_terminal_id.write() {
                            ids.insert(id.clone(), i);
                        }
                    }
                    entry.registered_session.send_replace(registered_session);
                    tracing::info!(terminal = %entry.name, session = current.session, "terminal signed in; asking about unknown outcomes");
                }
                if registered_session == current.session {
                    remaining = self.resolve_unknown(&entry).await;
                    remaining += self.reverse_wrong_approvals(&entry).await;
                } else {
                    remaining = 1;
                }
            }
            let retry = async {
                if remaining > 0 {
                    tokio::time::sleep(self.inner.settings.retry_every).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            // Wake on a new state or session only: counters change with every frame.
            let moved = async {
                loop {
                    if status.changed().await.is_err() {
                        return false;
                    }
                    let s = status.borrow();
                    if s.state != current.state || s.session != current.session {
                        return true;
                    }
                }
            };
            tokio::select! {
                alive = moved => if !alive { return },
                () = entry.kick.notified() => {}
                () = retry => {}
            }
        }
    }

    /// Records the terminal as it signed in (terminal id, merchant, link).
    async fn register(&self, entry: &TerminalEntry, status: &LinkStatus) -> bool {
        let Some(id) = status.terminal_id.as_deref() else { return false };
        let Ok(id) = zhengjiao_protocol::message::TerminalId::new(id) else { return false };
        let terminal = crate::journal::Terminal {
            id,
            name: entry.name.clone(),
            collection_point: entry.collection_point.clone(),
            merchant_id: status.merchant_id.clone(),
            link: status.transport.clone(),
        };
        match self.inner.store.register_terminal(terminal).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(terminal = %entry.name, error = %e, "cannot record the terminal in the journal");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_told_late_does_not_hide_a_known_outcome() {
        let mut seen = Seen::default();
        seen.next(Some(PaymentState::Sent), None);
        assert_eq!(seen.state, Some(PaymentState::Sent));
        seen.next(Some(PaymentState::Approved), None);
        // `unknown` recorded earlier, its waiters told only now (its task was delayed).
        seen.next(Some(PaymentState::Unknown), None);
        assert_eq!((seen.seq, seen.state), (3, Some(PaymentState::Approved)));
        // A change that does not say sends the waiter to the journal.
        seen.next(None, None);
        assert_eq!((seen.seq, seen.state), (4, None));
        // Under way to under way, and to an outcome, are taken as told.
        let mut seen = Seen::default();
        seen.next(Some(PaymentState::Created), None);
        seen.next(Some(PaymentState::Unknown), None);
        assert_eq!(seen.state, Some(PaymentState::Unknown));
        seen.next(Some(PaymentState::NotCharged), None);
        assert_eq!(seen.state, Some(PaymentState::NotCharged));
    }

    /// A payment's detail as a step reads it, in the state given.
    fn detail(state: PaymentState) -> Arc<PaymentDetail> {
        use crate::domain::{CollectionSerial, Fen, Insurance, StaffNumber};
        use crate::journal::{LineKey, Payment};
        let payment = Payment {
            id: EcrReference::new("P20201021090000-000001").unwrap(),
            line: LineKey {
                serial: CollectionSerial::parse("ZJ-0000001").unwrap(),
                insurance: Insurance::Medical,
                year: 2020,
            },
            amount: Fen::from_fen(28_000),
            terminal: zhengjiao_protocol::message::TerminalId::new("41000001").unwrap(),
            till: Till::new("01").unwrap(),
            operator: StaffNumber::parse("0001").unwrap(),
            state,
            created_at: "2020-10-21T09:00:00+08:00".to_owned(),
            updated_at: "2020-10-21T09:00:00+08:00".to_owned(),
            pos: TerminalSaid::default(),
        };
        Arc::new(PaymentDetail { payment, line: None, reversals: Vec::new(), history: Vec::new() })
    }

    #[test]
    fn a_detail_goes_with_its_step_and_a_step_that_says_less_clears_it() {
        let approved = detail(PaymentState::Approved);
        let mut seen = Seen::default();
        seen.next(Some(PaymentState::Created), None);
        seen.next(Some(PaymentState::Approved), Some(Arc::clone(&approved)));
        assert!(seen.detail.as_ref().is_some_and(|d| Arc::ptr_eq(d, &approved)));
        // `sent` recorded before the approval, told after it: the approval and its detail stand.
        seen.next(Some(PaymentState::Sent), None);
        assert_eq!(seen.state, Some(PaymentState::Approved));
        assert!(seen.detail.as_ref().is_some_and(|d| Arc::ptr_eq(d, &approved)));
        // A later step without a detail (a reversal begun, told without a state) sends the waiter to
        // the journal: the old detail is gone with the old state.
        seen.next(None, None);
        assert!(seen.state.is_none() && seen.detail.is_none());
        // A later outcome told with its own detail replaces it.
        let voided = detail(PaymentState::Voided);
        seen.next(Some(PaymentState::Voided), Some(Arc::clone(&voided)));
        assert!(seen.detail.as_ref().is_some_and(|d| Arc::ptr_eq(d, &voided)));
    }
}
