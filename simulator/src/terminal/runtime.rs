//! One simulated terminal at run time: its engine, its faults, its counters, and the processing of one
//! request at a time (card wait, engine, durable storage, response delay), shared by whichever
//! connection is current.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use zhengjiao_protocol::link::LinkConfig;
use zhengjiao_protocol::message::{MerchantId, MessageType, Request, Response, ResponseCode, TerminalId};
use zhengjiao_protocol::{DecodeError, Text};

use super::counters::{LinkCounters, TerminalCounters};
use super::engine::{code_text, Engine, QueueFull};
use super::faults::{Dice, Faults};

/// The longest a request whose ACK was swallowed waits for the ECR's resend before it is processed
/// anyway (the swallow-ack fault).
pub const SWALLOW_HOLD: Duration = Duration::from_secs(10);

/// What the processing of a request ends in, handed back to the connection that delivered it.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Send this response.
    Respond(Box<Response>),
    /// Drop the connection without answering (approve-drop, power loss).
    Drop,
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
    pub(crate) card_delay: Duration,
    pub(crate) state_path: Option<PathBuf>,
}

/// One simulated terminal, shared by its transport task, its connections, its processing task and
/// the control surface.
#[derive(Debug)]
pub(crate) struct Terminal {
    pub(crate) cfg: RuntimeConfig,
    engine: Mutex<Engine>,
    faults: Mutex<Faults>,
    dice: Mutex<Dice>,
    tally: Mutex<Tally>,
    /// True while a request is being processed (§1: one exchange at a time; others get `T3`).
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
        cancel: CancellationToken,
    ) -> Self {
        let tally =
            Tally { counters: TerminalCounters { index: cfg.index, ..Default::default() }, ..Default::default() };
        Terminal {
            cfg,
            engine: Mutex::new(engine),
            faults: Mutex::new(faults),
            dice: Mutex::new(Dice::new(fault_seed)),
            tally: Mutex::new(tally),
            busy: AtomicBool::new(false),
            processing: Mutex::new(None),
            cancel,
        }
    }

    /// The faults in force.
    pub(crate) fn faults(&self) -> Faults {
        *lock(&self.faults)
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        *lock(&self.faults) = faults;
    }

    /// Draws one fault decision at `rate`.
    pub(crate) fn roll(&self, rate: impl FnOnce(&Faults) -> f64) -> bool {
        let rate = rate(&lock(&self.faults));
        lock(&self.dice).roll(rate)
    }

    /// A burst of noise bytes.
    pub(crate) fn noise(&self) -> Vec<u8> {
        lock(&self.dice).noise()
    }

    /// Updates the counters.
    pub(crate) fn count(&self, f: impl FnOnce(&mut Tally)) {
        f(&mut lock(&self.tally));
    }

    pub(crate) fn queue_outcome(&self, code: ResponseCode) -> Result<(), QueueFull> {
        lock(&self.engine).queue_outcome(code)
    }

    pub(crate) fn set_decline_rates(&self, rates: Vec<(ResponseCode, f64)>) {
        lock(&self.engine).set_decline_rates(rates);
    }

    /// Everything counted so far.
    pub(crate) fn counters(&self) -> TerminalCounters {
        let engine = lock(&self.engine).counters();
        let tally = lock(&self.tally);
        let mut link = tally.closed_links;
        link.add(&tally.live_link);
        TerminalCounters { link, engine, ..tally.counters }.finish()
    }

    /// True while a request is being processed.
    pub(crate) fn is_busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst)
    }

    /// Claims the terminal for one request; `None` when another is being processed.
    pub(crate) fn try_claim(self: &Arc<Self>) -> Option<Claim> {
        self.busy
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .ok()
            .map(|_| Claim(Arc::clone(self)))
    }

    /// The `T5` answer to a request that does not decode ([`Engine::handle_malformed`]); `None` when
    /// not even its token is readable.
    pub(crate) fn malformed_response(&self, data: &[u8], error: &DecodeError) -> Option<Response> {
        lock(&self.engine).handle_malformed(data, error)
    }

    /// The `T3` answer to a request that arrives while another is processed.
    pub(crate) fn busy_response(&self, request: &Request) -> Response {
        let mut response = Response::answering(request, ResponseCode::BUSY);
        response.text = Text::new(code_text(ResponseCode::BUSY)).unwrap_or_default();
        response.merchant = self.cfg.merchant;
        response.terminal = self.cfg.terminal;
        response
    }

    /// Starts processing `request` under `claim`; the outcome comes back on the returned channel. The
    /// processing goes on if the connection drops meanwhile: the terminal finishes the transaction and
    /// its response is lost.
    pub(crate) fn start_processing(self: &Arc<Self>, claim: Claim, request: Request) -> oneshot::Receiver<Outcome> {
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

    /// Runs `f` on the engine on a blocking thread, then, when a state file is configured and the
    /// engine's stored state changed ([`Engine::changes`]), saves it before returning: what the engine
    /// stored is durable before anything depends on it (the response is sent after). `None` if `f`
    /// panicked.
    async fn with_engine<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Engine) -> R + Send + 'static,
    ) -> Option<R> {
        let term = Arc::clone(self);
        let result = tokio::task::spawn_blocking(move || {
            let mut engine = lock(&term.engine);
            let before = engine.changes();
            let result = f(&mut engine);
            if let (true, Some(path)) = (engine.changes() != before, &term.cfg.state_path) {
                if let Err(error) = engine.state().save(path) {
                    tracing::error!(terminal = term.cfg.index, %error, "cannot save the terminal state");
                    term.count(|t| t.counters.state_save_errors += 1);
                }
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

    /// Sleeps for `duration` unless shutdown comes first; false on shutdown.
    async fn pause(&self, duration: Duration) -> bool {
        if duration.is_zero() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(duration) => true,
            _ = self.cancel.cancelled() => false,
        }
    }
}

/// The processing of one request: card wait (SALE), the SALE faults, the engine with durable storage,
/// the response delay. Clears the busy flag before handing the outcome over, so the ECR's next request,
/// sent as soon as it has the response, never meets a busy terminal.
async fn process(term: Arc<Terminal>, request: Request, tx: oneshot::Sender<Outcome>, busy: Claim) {
    let kind = request.message_type();
    let index = term.cfg.index;
    if kind == MessageType::Sale && !term.pause(term.cfg.card_delay).await {
        return;
    }
    let sale = kind == MessageType::Sale;
    let power_loss = sale && term.roll(|f| f.power_loss);
    let approve_drop = sale && !power_loss && term.roll(|f| f.approve_drop);
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
        if sale {
            term.count(|t| match response.code.is_approved() {
                true => t.counters.sales_approved += 1,
                false => t.counters.sales_declined += 1,
            });
        }
        if approve_drop {
            tracing::info!(terminal = index, "fault: sale approved, connection dropped before the response");
            term.count(|t| t.counters.faults.approve_drop += 1);
            Outcome::Drop
        } else {
            let delay = Duration::from_millis(term.faults().delay_ms);
            if !delay.is_zero() {
                term.count(|t| t.counters.faults.delay += 1);
                if !term.pause(delay).await {
                    return;
                }
            }
            Outcome::Respond(Box::new(response))
        }
    };
    drop(busy);
    if tx.send(outcome).is_err() {
        tracing::warn!(terminal = index, "outcome lost: the connection that asked is gone");
        term.count(|t| t.counters.responses_lost += 1);
    }
}
