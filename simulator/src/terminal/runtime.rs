//! One simulated terminal at run time: its engine, its faults, its counters, and the processing of one
//! request at a time (card wait, engine, durable storage, response delay), shared by whichever
//! connection is current.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use zhengjiao_protocol::link::LinkConfig;
use zhengjiao_protocol::message::{Amount, MerchantId, MessageType, Request, Response, ResponseCode, TerminalId};
use zhengjiao_protocol::{DecodeError, Text};

use super::counters::{LinkCounters, TerminalCounters};
use super::engine::{code_text, Engine, EngineCounters, QueueApprovalError, QueueFull};
use super::faults::{Dice, FaultKind, Faults, FaultsError, FaultsPatch};
use super::state::TerminalState;

/// The longest a request whose ACK was swallowed waits for the ECR's resend before it is processed
/// anyway (the swallow-ack fault).
pub const SWALLOW_HOLD: Duration = Duration::from_secs(10);

/// What the processing of a request ends in.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Send this response.
    Respond(Box<Response>),
    /// Drop the connection without answering (approve-drop, power loss).
    Drop,
}

/// What the processing hands back to the connection that delivered the request: the outcome, with the
/// claim that keeps the terminal busy until the connection has dealt with it (the response queued in
/// order for its link, or the connection dropped). A request arriving before then is answered `T3`, so
/// it can neither overtake nor displace this response.
#[derive(Debug)]
pub(crate) struct Processed {
    pub(crate) outcome: Outcome,
    pub(crate) claim: Claim,
}

/// Counters the runtime keeps (the link's and the engine's are added when read).
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) counters: TerminalCounters,
    /// Link counters of connections that ended.
    pub(crate) closed_links: LinkCounters,
    /// Link counters of the connection being served.
    pub(crate) live_link: LinkCounters,
}

/// Settings of one terminal's runtime.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeConfig {
    pub(crate) index: usize,
    pub(crate) merchant: MerchantId,
    pub(crate) terminal: TerminalId,
    pub(crate) link: LinkConfig,
    pub(crate) state_path: Option<PathBuf>,
}

/// One simulated terminal, shared by its transport task, its connections, its processing task and
/// the control surface.
#[derive(Debug)]
pub(crate) struct Terminal {
    pub(crate) cfg: RuntimeConfig,
    engine: Mutex<Engine>,
    /// The engine's counters as of its last request, so reading counters never waits for the engine
    /// (or for a state file being written).
    engine_counters: Mutex<EngineCounters>,
    /// The engine change number last written to the state file. Held while writing: writes happen
    /// one at a time, and an older snapshot never overwrites a newer one.
    saved: Mutex<u64>,
    /// Watched, so a response waiting out the delay fault follows a change of the delay.
    faults: watch::Sender<Faults>,
    /// The SALE card wait; watched, so a sale waiting for its card follows a change.
    card_delay: watch::Sender<Duration>,
    dice: Mutex<Dice>,
    tally: Mutex<Tally>,
    /// Times exclusive mode was cleared on the serial device; watched by
    /// [`TerminalSimHandle::serial_unlocked`](super::TerminalSimHandle::serial_unlocked).
    serial_unlocks: watch::Sender<u64>,
    /// True from the moment a request is taken on until its outcome has been dealt with by its
    /// connection (see [`Processed`]); §1: one exchange at a time, others get `T3`.
    busy: AtomicBool,
    /// The processing task, so shutdown can wait for it.
    processing: Mutex<Option<JoinHandle<()>>>,
    /// Cancelled at shutdown.
    pub(crate) cancel: CancellationToken,
}

/// Locks a mutex, taking over the data of a holder that panicked: every value here stays consistent
/// between statements, so a panic elsewhere must not take the terminal down with it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The right to process one request: the terminal is busy while it lives, and is free again when it is
/// dropped, however the processing ends.
#[derive(Debug)]
pub(crate) struct Claim(Arc<Terminal>);

impl Drop for Claim {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::SeqCst);
    }
}

impl Terminal {
    pub(crate) fn new(
        cfg: RuntimeConfig,
        engine: Engine,
        faults: Faults,
        fault_seed: u64,
        card_delay: Duration,
        cancel: CancellationToken,
    ) -> Self {
        let tally =
            Tally { counters: TerminalCounters { index: cfg.index, ..Default::default() }, ..Default::default() };
        Terminal {
            cfg,
            engine_counters: Mutex::new(engine.counters()),
            saved: Mutex::new(engine.changes()),
            engine: Mutex::new(engine),
            faults: watch::Sender::new(faults),
            card_delay: watch::Sender::new(card_delay),
            dice: Mutex::new(Dice::new(fault_seed)),
            tally: Mutex::new(tally),
            serial_unlocks: watch::Sender::new(0),
            busy: AtomicBool::new(false),
            processing: Mutex::new(None),
            cancel,
        }
    }

    /// The faults in force.
    pub(crate) fn faults(&self) -> Faults {
        *self.faults.borrow()
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        self.faults.send_replace(faults);
    }

    /// Applies `patch` to the faults in force, if the result is valid; returns the faults now in force.
    pub(crate) fn patch_faults(&self, patch: &FaultsPatch) -> Result<Faults, FaultsError> {
        let mut result = Ok(Faults::NONE);
        self.faults.send_if_modified(|faults| {
            let patched = faults.patched(patch);
            result = patched.validate().map(|()| patched);
            match result {
                Ok(patched) if patched != *faults => {
                    *faults = patched;
                    true
                }
                _ => false,
            }
        });
        result
    }

    pub(crate) fn set_card_delay(&self, delay: Duration) {
        self.card_delay.send_replace(delay);
    }

    /// One occasion of the fault `kind`: one draw from its stream, true when the fault strikes.
    pub(crate) fn roll(&self, kind: FaultKind) -> bool {
        let rate = kind.rate(&self.faults());
        lock(&self.dice).roll(kind, rate)
    }

    /// One occasion of the noise fault: the burst to send, when it strikes.
    pub(crate) fn noise(&self) -> Option<Vec<u8>> {
        let rate = self.faults().noise;
        lock(&self.dice).noise(rate)
    }

    /// Updates the counters.
    pub(crate) fn count(&self, f: impl FnOnce(&mut Tally)) {
        f(&mut lock(&self.tally));
    }

    /// Records that exclusive mode was cleared on the serial device.
    pub(crate) fn serial_unlocked(&self) {
        self.serial_unlocks.send_modify(|n| *n += 1);
    }

    /// Watches [`Terminal::serial_unlocked`].
    pub(crate) fn watch_serial_unlocks(&self) -> watch::Receiver<u64> {
        self.serial_unlocks.subscribe()
    }

    /// Runs `f` on the engine and keeps its counters' snapshot current.
    fn engine<R>(&self, f: impl FnOnce(&mut Engine) -> R) -> R {
        let mut engine = lock(&self.engine);
        let result = f(&mut engine);
        *lock(&self.engine_counters) = engine.counters();
        result
    }

    pub(crate) fn queue_outcome(&self, code: ResponseCode) -> Result<(), QueueFull> {
        self.engine(|engine| engine.queue_outcome(code))
    }

    pub(crate) fn queue_approval_of(&self, amount: Amount) -> Result<(), QueueApprovalError> {
        self.engine(|engine| engine.queue_approval_of(amount))
    }

    pub(crate) fn set_decline_rates(&self, rates: Vec<(ResponseCode, f64)>) {
        self.engine(|engine| engine.set_decline_rates(rates));
    }

    /// Everything counted so far. Waits for no request and no state file.
    pub(crate) fn counters(&self) -> TerminalCounters {
        let engine = *lock(&self.engine_counters);
        let serial_unlocks = *self.serial_unlocks.borrow();
        let tally = lock(&self.tally);
        let mut link = tally.closed_links;
        link.add(&tally.live_link);
        TerminalCounters { link, engine, serial_unlocks, ..tally.counters }.finish()
    }

    /// True while a request is being processed or its outcome has not yet been dealt with.
    pub(crate) fn is_busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst)
    }

    /// Claims the terminal for one request; `None` when it is busy.
    pub(crate) fn try_claim(self: &Arc<Self>) -> Option<Claim> {
        self.busy
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .ok()
            .map(|_| Claim(Arc::clone(self)))
    }

    /// The `T5` answer to a request that does not decode ([`Engine::handle_malformed`]); `None` when
    /// not even its token is readable.
    pub(crate) fn malformed_response(&self, data: &[u8], error: &DecodeError) -> Option<Response> {
        self.engine(|engine| engine.handle_malformed(data, error))
    }

    /// The `T3` answer to a request that arrives while the terminal is busy.
    pub(crate) fn busy_response(&self, request: &Request) -> Response {
        let mut response = Response::answering(request, ResponseCode::BUSY);
        response.text = Text::new(code_text(ResponseCode::BUSY)).unwrap_or_default();
        response.merchant = self.cfg.merchant;
        response.terminal = self.cfg.terminal;
        response
    }

    /// Starts processing `request` under `claim`; the outcome comes back on the returned channel,
    /// with the claim. The processing goes on if the connection drops meanwhile: the terminal finishes
    /// the transaction and its response is lost (counted).
    pub(crate) fn start_processing(self: &Arc<Self>, claim: Claim, request: Request) -> oneshot::Receiver<Processed> {
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(process(Arc::clone(self), request, tx, claim));
        *lock(&self.processing) = Some(task);
        rx
    }

    /// Waits for the processing task, if any (after the cancel token fired).
    pub(crate) async fn finish_processing(&self) {
        let task = lock(&self.processing).take();
        if let Some(task) = task {
            if let Err(error) = task.await {
                tracing::error!(terminal = self.cfg.index, %error, "processing task failed");
            }
        }
    }

    /// Runs `f` on the engine, then, when a state file is configured and the engine's stored state
    /// changed ([`Engine::changes`]), writes it before returning: what the engine stored is durable
    /// before anything depends on it (the response is sent after). With a state file this runs on a
    /// blocking thread, and the state is serialised under the engine's lock and written outside it;
    /// without one, `f` is quick work in memory and runs here (a hand-off to a blocking thread for each
    /// request cost the load benchmark's simulators a quarter of their CPU). `None` if `f` panicked.
    async fn with_engine<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Engine) -> R + Send + 'static,
    ) -> Option<R> {
        if self.cfg.state_path.is_none() {
            let run = std::panic::AssertUnwindSafe(|| self.engine(f));
            return match std::panic::catch_unwind(run) {
                Ok(result) => Some(result),
                Err(_) => {
                    tracing::error!(terminal = self.cfg.index, "the engine failed");
                    None
                }
            };
        }
        let term = Arc::clone(self);
        let result = tokio::task::spawn_blocking(move || {
            let (result, snapshot) = term.engine(|engine| {
                let before = engine.changes();
                let result = f(engine);
                let changed = engine.changes() != before && term.cfg.state_path.is_some();
                (result, changed.then(|| (engine.changes(), engine.state().encode())))
            });
            if let (Some(path), Some((changes, bytes))) = (&term.cfg.state_path, snapshot) {
                term.save(path, changes, bytes);
            }
            result
        })
        .await;
        match result {
            Ok(result) => Some(result),
            Err(error) => {
                tracing::error!(terminal = self.cfg.index, %error, "the engine failed");
                None
            }
        }
    }

    /// Writes the state as of engine change `changes`, unless a newer one was written already.
    fn save(&self, path: &Path, changes: u64, bytes: std::io::Result<Vec<u8>>) {
        let mut saved = lock(&self.saved);
        if changes <= *saved {
            return;
        }
        let written = match bytes {
            Ok(bytes) => TerminalState::write_encoded(path, &bytes),
            Err(source) => Err(super::state::StateError::Write { path: path.to_owned(), source }),
        };
        match written {
            Ok(()) => *saved = changes,
            Err(error) => {
                tracing::error!(terminal = self.cfg.index, %error, "cannot save the terminal state");
                self.count(|t| t.counters.state_save_errors += 1);
            }
        }
    }

    /// The SALE card wait: [`Terminal::set_card_delay`] from `start`, following changes made while it
    /// runs. False on shutdown.
    async fn card_wait(&self, start: Instant) -> bool {
        self.wait_from(start, self.card_delay.subscribe(), |delay| *delay).await
    }

    /// Waits until `start` plus the duration `duration` reads from `watched`, following its changes;
    /// false when shutdown comes first.
    async fn wait_from<T>(
        &self,
        start: Instant,
        mut watched: watch::Receiver<T>,
        duration: impl Fn(&T) -> Duration,
    ) -> bool {
        loop {
            let wait = duration(&watched.borrow_and_update());
            let deadline = start.checked_add(wait).unwrap_or(start);
            if deadline <= Instant::now() {
                return true;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return true,
                changed = watched.changed() => {
                    if changed.is_err() {
                        // The terminal owns the sender; it cannot go while this runs.
                        return true;
                    }
                }
                _ = self.cancel.cancelled() => return false,
            }
        }
    }
}

/// The processing of one request: card wait (SALE), the SALE faults, the engine with durable storage,
/// the response delay. The outcome goes back with the claim, so the terminal stays busy until the
/// connection has queued the response: the ECR's next request, sent once it has the response, never
/// meets a busy terminal, and a request sent before that gets `T3` instead of displacing it.
async fn process(term: Arc<Terminal>, request: Request, tx: oneshot::Sender<Processed>, claim: Claim) {
    let kind = request.message_type();
    let index = term.cfg.index;
    let sale = kind == MessageType::Sale;
    if sale && !term.card_wait(Instant::now()).await {
        return;
    }
    // One draw of each per SALE, whatever the other decides; a power loss comes first.
    let (power_loss, approve_drop) =
        if sale { (term.roll(FaultKind::PowerLoss), term.roll(FaultKind::ApproveDrop)) } else { (false, false) };
    let approve_drop = approve_drop && !power_loss;
    let outcome = if power_loss {
        tracing::info!(terminal = index, "fault: power loss during a sale; not stored, signed out");
        term.count(|t| t.counters.faults.power_loss += 1);
        term.with_engine(Engine::sign_out).await;
        Outcome::Drop
    } else {
        let now = time::OffsetDateTime::now_utc();
        let asked = request.clone();
        let response = term
            .with_engine(move |engine| {
                if approve_drop {
                    engine.handle_forced(&request, now, ResponseCode::APPROVED)
                } else {
                    engine.handle(&request, now)
                }
            })
            .await;
        // An engine that panicked answers 96 (system malfunction), as a terminal with a fault would.
        let response = response.unwrap_or_else(|| {
            let code = ResponseCode::new("96").unwrap_or(ResponseCode::BUSY);
            let mut response = Response::answering(&asked, code);
            response.text = Text::new(code_text(code)).unwrap_or_default();
            response.merchant = term.cfg.merchant;
            response.terminal = term.cfg.terminal;
            response
        });
        if approve_drop {
            tracing::info!(terminal = index, "fault: sale approved, connection dropped before the response");
            term.count(|t| t.counters.faults.approve_drop += 1);
            Outcome::Drop
        } else {
            let processed_at = Instant::now();
            if term.faults().delay_ms > 0 {
                term.count(|t| t.counters.faults.delay += 1);
                let delay = |faults: &Faults| Duration::from_millis(faults.delay_ms);
                if !term.wait_from(processed_at, term.faults.subscribe(), delay).await {
                    return;
                }
            }
            Outcome::Respond(Box::new(response))
        }
    };
    if let Err(Processed { outcome, .. }) = tx.send(Processed { outcome, claim }) {
        // The claim goes with it: the terminal is free again.
        if matches!(outcome, Outcome::Respond(_)) {
            tracing::warn!(terminal = index, "response lost: the connection that asked is gone");
            term.count(|t| t.counters.responses_lost += 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zhengjiao_protocol::memo::Memo;
    use zhengjiao_protocol::message::{RequestBody, Token};
    use zhengjiao_protocol::Ascii;

    use crate::terminal::engine::EngineConfig;

    fn terminal() -> Arc<Terminal> {
        let cfg = RuntimeConfig {
            index: 0,
            merchant: Ascii::EMPTY,
            terminal: Ascii::EMPTY,
            link: LinkConfig::default(),
            state_path: None,
        };
        let engine = Engine::new(EngineConfig::default(), TerminalState::new());
        Arc::new(Terminal::new(cfg, engine, Faults::NONE, 0, Duration::ZERO, CancellationToken::new()))
    }

    fn status() -> Request {
        Request {
            token: Token::MIN,
            till: Ascii::EMPTY,
            operator: Ascii::EMPTY,
            body: RequestBody::Status,
            memo: Memo::new(),
        }
    }

    #[tokio::test]
    async fn the_terminal_stays_busy_until_the_connection_took_the_outcome() {
        let term = terminal();
        let Some(claim) = term.try_claim() else { panic!("a fresh terminal is busy") };
        let processed = term.start_processing(claim, status()).await;
        let Ok(processed) = processed else { panic!("the processing ended without an outcome") };
        assert!(matches!(processed.outcome, Outcome::Respond(_)));
        // Processing is over, but the response is not yet queued: a newcomer must get T3, not take the
        // terminal (and with it the place of this response).
        assert!(term.is_busy());
        assert!(term.try_claim().is_none());
        drop(processed);
        assert!(!term.is_busy());
        assert!(term.try_claim().is_some());
    }

    #[test]
    fn counters_do_not_wait_for_the_engine() {
        let term = terminal();
        // As while a request is being handled or (before the state file moved out of the lock) saved.
        let _engine = lock(&term.engine);
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = Arc::clone(&term);
        std::thread::spawn(move || {
            let _ = tx.send(reader.counters());
        });
        // A bound on the failure, not a measurement: the read does not wait at all.
        assert!(rx.recv_timeout(Duration::from_secs(10)).is_ok(), "reading counters waited for the engine");
    }

    #[tokio::test]
    async fn an_outcome_nobody_takes_frees_the_terminal_and_is_counted_lost() {
        let term = terminal();
        let Some(claim) = term.try_claim() else { panic!("a fresh terminal is busy") };
        drop(term.start_processing(claim, status()));
        term.finish_processing().await;
        assert!(!term.is_busy());
        assert_eq!(term.counters().responses_lost, 1);
    }
}
