//! The forwarder: one task that drains the journal's outbox to the ledger (ledger-api.md,
//! `POST /v1/entries`).
//!
//! How it runs:
//! - It reads entries ready to send ([`Store::sendable_outbox`]: a reversal only once the ledger holds
//!   its payment entry) in batches of up to [`ForwarderSettings::batch_size`], and keeps up to
//!   [`ForwarderSettings::in_flight`] batches on the wire at once. A batch is the stored payloads sent
//!   byte for byte, with their stable ids, so every retry is the same request in substance.
//! - Each answer is checked against the contract, then recorded in ONE journal write per batch
//!   ([`Store::record_ledger_answers`]): `created`/`exists` store the voucher number and mark the entry
//!   forwarded, `rejected` makes it a dead letter. An answer that breaks the contract, an error status,
//!   a timeout or a broken connection records nothing but a failed attempt: the entries stay queued
//!   and are sent again with the same ids (a timeout is "unknown": `exists` settles it).
//! - After a failure it waits (exponential backoff with jitter, never less than `Retry-After`). With
//!   nothing to send it sleeps until the outbox signal (a new row), an operator's retry, or the end of
//!   a backoff: there is no polling loop.
//! - While batches are on the wire it reads on from the last sequence number dispatched; once none is
//!   left it reads from the start again, which picks up reversals whose payment was just acknowledged,
//!   requeued dead letters and entries of failed batches.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::client::{LedgerClient, SendError};
use crate::clock::Clock;
use crate::journal::{AnswersRecorded, ForwardError, OutboxEntry, QueuedEntry, ReadError, SqliteStore, Store};

/// Most entries in one request (ledger-api.md: 1..=500).
pub const MAX_BATCH: usize = 500;
/// Most batches on the wire at once.
pub const MAX_IN_FLIGHT: usize = 16;
/// Most dead letters listed at once.
pub const MAX_DEAD_LETTERS: usize = 10_000;
/// The kinds of failure [`Forwarder::error_counts`] always lists: those of [`SendError::kind`], then
/// `journal` (the outbox could not be read or an answer recorded) and `internal` (a batch task failed).
pub const ERROR_KINDS: [&str; 9] = [
    "unauthorized",
    "unavailable",
    "server_error",
    "refused",
    "timeout",
    "connection",
    "bad_answer",
    "journal",
    "internal",
];
/// Recent failures kept for the status.
const RECENT_ERRORS: usize = 8;

/// Tunables of the forwarder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwarderSettings {
    /// Entries per request, 1..=[`MAX_BATCH`].
    pub batch_size: usize,
    /// Batches on the wire at once, 1..=[`MAX_IN_FLIGHT`].
    pub in_flight: usize,
    /// Delays after failures.
    pub backoff: Backoff,
}

impl Default for ForwarderSettings {
    /// 500 per batch, 4 in flight, [`Backoff::default`].
    fn default() -> Self {
        ForwarderSettings { batch_size: MAX_BATCH, in_flight: 4, backoff: Backoff::default() }
    }
}

/// A failure of the forwarder, as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastError {
    /// When (business clock, RFC 3339 +08:00).
    pub at: String,
    /// `unauthorized`, `unavailable`, `server_error`, `refused`, `timeout`, `connection`,
    /// `bad_answer` (see [`SendError::kind`]) or `journal`.
    pub kind: String,
    /// What happened, in words, naming the cause.
    pub message: String,
    /// Entries of the batch concerned.
    pub entries: usize,
    /// The `Retry-After` the ledger asked for, in seconds.
    pub retry_after_secs: Option<u64>,
}

/// The forwarder's status (`GET /v1/ledger/status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerStatus {
    /// The ledger's base URL.
    pub endpoint: String,
    /// `idle` (nothing to send), `sending`, `backing_off` (waiting after a failure) or `stopped`.
    pub state: &'static str,
    /// Entries not yet acknowledged and not dead letters (held reversals included).
    pub backlog: u64,
    /// Of the backlog, reversals waiting until the ledger holds their payment entry.
    pub held: u64,
    /// The oldest entry of the backlog.
    pub oldest_unsent: Option<String>,
    /// When it was written (business clock).
    pub oldest_unsent_at: Option<String>,
    /// Its age in seconds, by the business clock.
    pub oldest_unsent_age_secs: Option<i64>,
    /// Entries the ledger rejected, waiting for an operator.
    pub dead_letters: u64,
    /// Entries the ledger holds.
    pub forwarded: u64,
    /// The failure of the current streak, `null` once a batch went through again.
    pub last_error: Option<LastError>,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// While backing off: milliseconds until the next attempt.
    pub next_attempt_in_ms: Option<u64>,
    /// When a batch was last answered (business clock).
    pub last_success_at: Option<String>,
    /// Batches answered since the daemon started.
    pub batches_answered: u64,
    /// Entries acknowledged (`created` or `exists`) since the daemon started.
    pub entries_acknowledged: u64,
    /// Entries rejected since the daemon started.
    pub entries_rejected: u64,
    /// Batches on the wire now.
    pub in_flight: usize,
    /// The latest failures, newest last (at most 8), including those of streaks already over.
    pub recent_errors: Vec<LastError>,
}

/// What the task shares with the handle, in memory.
#[derive(Debug, Default)]
struct Live {
    stopped: bool,
    in_flight: usize,
    backoff_until: Option<Instant>,
    consecutive_failures: u32,
    last_error: Option<LastError>,
    recent_errors: VecDeque<LastError>,
    last_success_at: Option<String>,
    batches_answered: u64,
    entries_acknowledged: u64,
    entries_rejected: u64,
    /// Failed batches (and outbox reads) since the daemon started, by [`LastError::kind`].
    errors_by_kind: BTreeMap<String, u64>,
}

struct Shared {
    store: SqliteStore,
    client: LedgerClient,
    clock: Clock,
    settings: ForwarderSettings,
    /// The collection service's outbox signal.
    outbox: Arc<Notify>,
    /// An operator's retry.
    kick: Notify,
    stop: watch::Sender<bool>,
    live: Mutex<Live>,
    /// Bumped whenever a batch ends or the state changes; waiters re-read the status.
    progress: watch::Sender<u64>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    fn live(&self) -> MutexGuard<'_, Live> {
        // Plain fields, never left half-written by a panic.
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bump(&self) {
        self.progress.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn now_text(&self) -> String {
        stamp(self.clock.now())
    }
}

/// The ledger forwarder: a handle on its task. Cheap to clone.
#[derive(Clone)]
pub struct Forwarder {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").field("endpoint", &self.shared.client.endpoint()).finish_non_exhaustive()
    }
}

/// How one batch ended.
enum BatchDone {
    Answered { recorded: AnswersRecorded },
    Failed { failure: Failure, entries: usize },
}

/// A failed batch or read.
struct Failure {
    kind: String,
    message: String,
    retry_after: Option<Duration>,
    /// The ledger refused the batch's body itself (400, 413): a smaller batch isolates the entry at
    /// fault.
    body_refused: bool,
}

impl Failure {
    fn send(e: &SendError) -> Failure {
        let body_refused = matches!(e, SendError::Refused { status: 400 | 413, .. });
        Failure { kind: e.kind().to_owned(), message: e.to_string(), retry_after: e.retry_after(), body_refused }
    }

    fn journal(e: &dyn std::error::Error) -> Failure {
        Failure { kind: "journal".to_owned(), message: format!("journal: {e}"), retry_after: None, body_refused: false }
    }
}

impl Forwarder {
    /// Starts the forwarder's task on the current runtime. `outbox` is the signal notified whenever an
    /// outbox row may have been written ([`crate::collect::Collection::outbox_signal`]).
    pub fn start(
        store: SqliteStore,
        client: LedgerClient,
        clock: Clock,
        outbox: Arc<Notify>,
        settings: ForwarderSettings,
    ) -> Forwarder {
        let settings = ForwarderSettings {
            batch_size: settings.batch_size.clamp(1, MAX_BATCH),
            in_flight: settings.in_flight.clamp(1, MAX_IN_FLIGHT),
            backoff: settings.backoff,
        };
        let shared = Arc::new(Shared {
            store,
            client,
            clock,
            settings,
            outbox,
            kick: Notify::new(),
            stop: watch::Sender::new(false),
            live: Mutex::new(Live::default()),
            progress: watch::Sender::new(0),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(run(Arc::clone(&shared)));
        *shared.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
        tracing::info!(endpoint = shared.client.endpoint(), "ledger forwarder started");
        Forwarder { shared }
    }

    /// The client, for reconciliation.
    pub fn client(&self) -> &LedgerClient {
        &self.shared.client
    }

    /// The journal.
    pub fn store(&self) -> &SqliteStore {
        &self.shared.store
    }

    /// The business clock.
    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    /// Wakes the task (as a new outbox row would); a backoff in progress is still honoured.
    pub fn kick(&self) {
        self.shared.kick.notify_one();
    }

    /// The status: the journal's counts and the task's state.
    pub async fn status(&self) -> Result<LedgerStatus, ReadError> {
        let counts = self.shared.store.outbox_counts().await?;
        let now = self.shared.clock.now();
        let (oldest_unsent, oldest_unsent_at, oldest_unsent_age_secs) = match counts.oldest_unsent {
            Some((id, at)) => {
                let age = OffsetDateTime::parse(&at, &Rfc3339).ok().map(|t| (now - t).whole_seconds().max(0));
                (Some(id), Some(at), age)
            }
            None => (None, None, None),
        };
        let live = self.shared.live();
        let next = live.backoff_until.map(|t| t.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero());
        let state = if live.stopped {
            "stopped"
        } else if next.is_some() {
            "backing_off"
        } else if live.in_flight > 0 {
            "sending"
        } else {
            "idle"
        };
        Ok(LedgerStatus {
            endpoint: self.shared.client.endpoint().to_owned(),
            state,
            backlog: counts.backlog,
            held: counts.held,
            oldest_unsent,
            oldest_unsent_at,
            oldest_unsent_age_secs,
            dead_letters: counts.dead_letters,
            forwarded: counts.forwarded,
            last_error: live.last_error.clone(),
            consecutive_failures: live.consecutive_failures,
            next_attempt_in_ms: next.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            last_success_at: live.last_success_at.clone(),
            batches_answered: live.batches_answered,
            entries_acknowledged: live.entries_acknowledged,
            entries_rejected: live.entries_rejected,
            in_flight: live.in_flight,
            recent_errors: live.recent_errors.iter().cloned().collect(),
        })
    }

    /// Waits until `done` holds for the status, re-reading it whenever the task makes progress; gives
    /// the last status read, `Ok` when `done` held, `Err` when `timeout` ran out first.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&LedgerStatus) -> bool,
    ) -> Result<Result<LedgerStatus, LedgerStatus>, ReadError> {
        let deadline = Instant::now() + timeout;
        let mut progress = self.shared.progress.subscribe();
        loop {
            progress.borrow_and_update();
            let status = self.status().await?;
            if done(&status) {
                return Ok(Ok(status));
            }
            tokio::select! {
                changed = progress.changed() => if changed.is_err() { return Ok(Err(status)) },
                () = tokio::time::sleep_until(deadline) => return Ok(Err(status)),
            }
        }
    }

    /// Failed batches (and outbox reads) since the daemon started, by kind (the `kind` of
    /// [`LastError`]: [`SendError::kind`], `journal` or `internal`), in kind order. Every kind of
    /// [`ERROR_KINDS`] is listed, with 0 when it never happened, so a metric exists before its first
    /// failure.
    pub fn error_counts(&self) -> Vec<(String, u64)> {
        let live = self.shared.live();
        let mut counts: BTreeMap<String, u64> = ERROR_KINDS.iter().map(|k| ((*k).to_owned(), 0)).collect();
        for (kind, n) in &live.errors_by_kind {
            *counts.entry(kind.clone()).or_default() += n;
        }
        counts.into_iter().collect()
    }

    /// Up to `limit` (at most [`MAX_DEAD_LETTERS`]) dead letters, oldest first.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<OutboxEntry>, ReadError> {
        self.shared.store.dead_letters(limit.min(MAX_DEAD_LETTERS)).await
    }

    /// An operator's replay of a dead letter, once its cause is fixed: the entry goes back in the queue
    /// (same id, same content) and the task is woken.
    pub async fn retry(&self, entry_id: &str) -> Result<OutboxEntry, ForwardError> {
        let entry = self.shared.store.requeue_dead_letter(entry_id).await?;
        tracing::info!(entry = entry_id, "dead letter requeued by an operator");
        self.kick();
        Ok(entry)
    }

    /// Stops the task; batches on the wire are abandoned (their entries stay queued and are sent again
    /// with the same ids by the next start).
    pub async fn shutdown(&self) {
        self.shared.stop.send_replace(true);
        let task = self.shared.task.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.shared.live().stopped = true;
        self.shared.bump();
    }
}

/// After a batch smaller than the batch size (the outbox was drained), the next read waits this long:
/// at a steady trickle of payments the forwarder then sends a request per interval with what came
/// meanwhile, instead of one per payment. A backlog still goes in full batches back to back.
const LINGER: Duration = Duration::from_millis(20);

/// The task.
async fn run(shared: Arc<Shared>) {
    let settings = shared.settings;
    let mut stop = shared.stop.subscribe();
    let mut batches: JoinSet<BatchDone> = JoinSet::new();
    let mut rng = fastrand::Rng::new();
    let mut cursor = 0i64;
    let mut backoff_until: Option<Instant> = None;
    // Halved after the ledger refuses a batch's body (400, 413), doubled back after each answered
    // batch: a single bad entry is isolated (and dead-lettered) without holding back the rest.
    let mut batch_limit = settings.batch_size;
    // Set after a partial batch: no read before it (see LINGER).
    let mut hold_until: Option<Instant> = None;
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        if backoff_until.is_some_and(|t| t <= Instant::now()) {
            backoff_until = None;
            shared.live().backoff_until = None;
            shared.bump();
        }
        let mut dispatched = false;
        if hold_until.is_some_and(|t| t <= Instant::now()) {
            hold_until = None;
        }
        if backoff_until.is_none() && hold_until.is_none() && batches.len() < settings.in_flight {
            if batches.is_empty() {
                cursor = 0;
            }
            match shared.store.sendable_outbox(cursor, batch_limit).await {
                Ok(batch) => {
                    if let Some(last) = batch.last() {
                        cursor = last.seq;
                        dispatched = true;
                        if batch.len() < batch_limit {
                            hold_until = Some(Instant::now() + LINGER);
                        }
                        batches.spawn(send_batch(Arc::clone(&shared), batch));
                        shared.live().in_flight = batches.len();
                    }
                }
                Err(e) => {
                    let failure = Failure::journal(&e);
                    backoff_until = Some(failed(&shared, failure, 0, &mut rng));
                }
            }
        }
        if dispatched {
            continue;
        }
        let backoff = async {
            match backoff_until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let hold = async {
            match hold_until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(joined) = batches.join_next(), if !batches.is_empty() => {
                shared.live().in_flight = batches.len();
                match joined {
                    Ok(BatchDone::Answered { recorded }) => {
                        batch_limit = batch_limit.saturating_mul(2).min(settings.batch_size);
                        answered(&shared, &recorded);
                    }
                    Ok(BatchDone::Failed { failure, entries }) => {
                        let split = failure.body_refused && entries > 1;
                        if failure.body_refused {
                            batch_limit = (entries / 2).max(1);
                        }
                        let until = failed(&shared, failure, entries, &mut rng);
                        if split {
                            // Not a passing trouble: the halves go at once.
                            shared.live().backoff_until = backoff_until;
                        } else {
                            backoff_until = Some(backoff_until.map_or(until, |t| t.max(until)));
                        }
                    }
                    Err(e) => {
                        let failure = Failure { kind: "internal".to_owned(), message: format!("batch task failed: {e}"), retry_after: None, body_refused: false };
                        backoff_until = Some(failed(&shared, failure, 0, &mut rng));
                    }
                }
                shared.bump();
            }
            () = shared.outbox.notified() => {}
            () = hold => {
                hold_until = None;
            }
            () = shared.kick.notified() => {}
            () = backoff => {}
            _ = stop.changed() => {}
        }
    }
    batches.abort_all();
    let mut live = shared.live();
    live.stopped = true;
    live.in_flight = 0;
    drop(live);
    shared.bump();
    tracing::info!("ledger forwarder stopped");
}

/// Records an answered batch in the status.
fn answered(shared: &Shared, recorded: &AnswersRecorded) {
    for refused in &recorded.refused {
        tracing::error!(error = %refused, "ledger answer could not be recorded");
    }
    let mut live = shared.live();
    live.consecutive_failures = 0;
    live.last_error = None;
    live.last_success_at = Some(shared.now_text());
    live.batches_answered += 1;
    live.entries_acknowledged += u64::try_from(recorded.forwarded + recorded.already_forwarded).unwrap_or(u64::MAX);
    live.entries_rejected += u64::try_from(recorded.dead_lettered).unwrap_or(u64::MAX);
}

/// Records a failure in the status and gives the end of the backoff it calls for.
fn failed(shared: &Shared, failure: Failure, entries: usize, rng: &mut fastrand::Rng) -> Instant {
    let mut live = shared.live();
    live.consecutive_failures = live.consecutive_failures.saturating_add(1);
    let delay = shared.settings.backoff.delay(live.consecutive_failures, failure.retry_after, rng);
    *live.errors_by_kind.entry(failure.kind.clone()).or_default() += 1;
    tracing::warn!(
        kind = %failure.kind,
        error = %crate::logging::redact(&failure.message),
        entries,
        failures = live.consecutive_failures,
        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        "ledger batch failed; entries stay queued"
    );
    let error = LastError {
        at: shared.now_text(),
        kind: failure.kind,
        message: failure.message,
        entries,
        retry_after_secs: failure.retry_after.map(|d| d.as_secs()),
    };
    if live.recent_errors.len() == RECENT_ERRORS {
        live.recent_errors.pop_front();
    }
    live.recent_errors.push_back(error.clone());
    live.last_error = Some(error);
    let until = Instant::now() + delay;
    live.backoff_until = Some(live.backoff_until.map_or(until, |t| t.max(until)));
    until
}

/// Sends one batch and records the answer in one journal write (or the failed attempt).
async fn send_batch(shared: Arc<Shared>, batch: Vec<QueuedEntry>) -> BatchDone {
    let entries = batch.len();
    let ids: Vec<&str> = batch.iter().map(|e| e.entry_id.as_str()).collect();
    let mut body = Vec::with_capacity(batch.iter().map(|e| e.payload.len() + 1).sum::<usize>() + 16);
    body.extend_from_slice(b"{\"entries\":[");
    for (i, entry) in batch.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(entry.payload.as_bytes());
    }
    body.extend_from_slice(b"]}");
    match shared.client.post_entries(&ids, body).await {
        Ok(answers) => {
            for answer in &answers {
                if let crate::journal::LedgerVerdict::Rejected { reason } = &answer.verdict {
                    tracing::warn!(entry = %answer.entry_id, reason = %crate::logging::redact(reason), "ledger rejected an entry; dead letter");
                }
            }
            match shared.store.record_ledger_answers(answers).await {
                Ok(recorded) => BatchDone::Answered { recorded },
                Err(e) => BatchDone::Failed { failure: Failure::journal(&e), entries },
            }
        }
        Err(e) => {
            let failure = Failure::send(&e);
            if failure.body_refused && batch.len() == 1 {
                // One entry alone is refused as malformed (400) or too large (413): no retry can
                // change that. It becomes a dead letter, visible and replayable, so it does not hold
                // back every entry behind it.
                let answer = crate::journal::LedgerAnswer {
                    entry_id: batch[0].entry_id.clone(),
                    verdict: crate::journal::LedgerVerdict::Rejected {
                        reason: format!("refused alone: {}", failure.message),
                    },
                };
                tracing::warn!(entry = %answer.entry_id, error = %crate::logging::redact(&failure.message), "the ledger refuses this entry alone; dead letter");
                return match shared.store.record_ledger_answers(vec![answer]).await {
                    Ok(recorded) => BatchDone::Answered { recorded },
                    Err(e) => BatchDone::Failed { failure: Failure::journal(&e), entries },
                };
            }
            let owned = batch.into_iter().map(|e| e.entry_id).collect();
            if let Err(je) = shared.store.record_forward_attempt_failed(owned, &failure.message).await {
                tracing::error!(error = %je, "cannot record a failed ledger attempt");
            }
            BatchDone::Failed { failure, entries }
        }
    }
}

/// A business time as RFC 3339 (+08:00).
fn stamp(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.unix_timestamp().to_string())
}
