//! The terminal simulator (wire-protocol.md, terminal side): one or many simulated UnionPay "全民付" POS
//! terminals over TCP or a pseudo-terminal, with fault injection and a control surface.
//!
//! - [`engine`] and [`state`]: what a terminal does with a request and what it keeps, sans-IO.
//! - `runtime`, `connection`, `transport`: the async driver. Each terminal runs the protocol crate's
//!   [`Link`](zhengjiao_protocol::link::Link) over its transport with real time; a delivered request goes
//!   to the engine and its response back through the link, one frame awaiting ACK at a time.
//! - [`faults`]: what goes wrong, at seeded rates.
//! - [`counters`]: what a terminal has seen and done.
//! - `control`: the HTTP control endpoint; [`TerminalSimHandle`] is the same surface in-process.
//! - [`cli`]: `zhengjiao-sim terminal`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use zhengjiao_simulator::terminal::{TerminalSim, TerminalSimConfig};
//! let sim = TerminalSim::start(TerminalSimConfig::default()).await?;
//! let addr = sim.addrs()[0]; // the ECR connects here
//! # let _ = addr;
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

pub mod cli;
mod connection;
mod control;
pub mod counters;
pub mod engine;
pub mod faults;
mod runtime;
pub mod state;
mod transport;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use zhengjiao_protocol::link::LinkConfig;
use zhengjiao_protocol::message::{Amount, MerchantId, ResponseCode, TerminalId};

pub use connection::{MAX_QUEUED_RESPONSES, READ_CHUNK, WRITE_TIMEOUT};
pub use counters::{LinkCounters, TerminalCounters};
pub use faults::{FaultCounters, Faults, FaultsError, FaultsPatch, MAX_DELAY_MS};
pub use runtime::SWALLOW_HOLD;
pub use transport::{ERROR_BACKOFF, SERIAL_UNLOCK_INTERVAL};

use engine::{Engine, EngineConfig, QueueApprovalError};
use runtime::{RuntimeConfig, Terminal};
use state::{StateError, TerminalState};

/// The most terminals one simulator runs.
pub const MAX_TERMINALS: usize = 1024;
/// The longest SALE card wait (`--card-delay-ms`), in milliseconds (10 minutes).
pub const MAX_CARD_DELAY_MS: u64 = 600_000;
/// How long [`TerminalSimHandle::shutdown`] lets the control endpoint finish the requests it is
/// serving before it cuts them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// 商户号 of the simulated terminals unless configured.
pub const DEFAULT_MERCHANT: &str = "898410153990001";
/// 终端号 of the first simulated terminal unless configured; the others count up from it.
pub const DEFAULT_TERMINAL_ID: &str = "41000001";

/// Where the terminals listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP: the terminal listens, the ECR connects (§1). With several terminals, port 0 gives each its
    /// own free port; a fixed port `p` gives terminal `i` port `p + i`.
    Tcp(SocketAddr),
    /// Serial over a pseudo-terminal pair per terminal; the ECR opens the device path
    /// ([`TerminalSimHandle::pty_paths`]).
    Pty,
}

/// Settings of a [`TerminalSim`].
#[derive(Debug, Clone)]
pub struct TerminalSimConfig {
    /// TCP or pseudo-terminal. Default: TCP on `127.0.0.1:0`.
    pub transport: Transport,
    /// How many independent terminals, 1..=[`MAX_TERMINALS`]. Default 1.
    pub terminals: usize,
    /// The terminal's link: check dialect (`lrc` by default), T_ack, resends, T_gap.
    pub link: LinkConfig,
    /// 商户号, shared by all terminals.
    pub merchant: MerchantId,
    /// 终端号 of the first terminal; terminal `i` gets this number plus `i` (its trailing digits,
    /// keeping their width).
    pub terminal_id: TerminalId,
    /// Seed of every random choice (engine and faults), per terminal derived from it and its index.
    pub seed: u64,
    /// Drawn declines for sales that neither the amount nor the control queue decide.
    pub decline_rates: Vec<(ResponseCode, f64)>,
    /// How long a SALE waits for the card to be presented before it is processed, at most
    /// [`MAX_CARD_DELAY_MS`]. Default 0. Changeable at run time
    /// ([`TerminalSimHandle::set_card_delay`]).
    pub card_delay: Duration,
    /// Faults in force at start, on every terminal.
    pub faults: Faults,
    /// The state file ("memory like flash"): loaded at start, written after every request that may
    /// change it, before the response is sent. Terminal 0 uses this path, terminal `i` ≥ 1 the path with
    /// `.i` appended (`state.json`, `state.json.1`, ...).
    pub state: Option<PathBuf>,
}

impl Default for TerminalSimConfig {
    fn default() -> Self {
        TerminalSimConfig {
            transport: Transport::Tcp(SocketAddr::from(([127, 0, 0, 1], 0))),
            terminals: 1,
            link: LinkConfig::default(),
            merchant: MerchantId::new(DEFAULT_MERCHANT).unwrap_or(MerchantId::EMPTY),
            terminal_id: TerminalId::new(DEFAULT_TERMINAL_ID).unwrap_or(TerminalId::EMPTY),
            seed: 0,
            decline_rates: Vec::new(),
            card_delay: Duration::ZERO,
            faults: Faults::NONE,
            state: None,
        }
    }
}

/// Why the simulator did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The number of terminals is 0 or above [`MAX_TERMINALS`].
    #[error("{0} terminals: expected 1 to {MAX_TERMINALS}")]
    TerminalCount(usize),
    /// A fault setting is out of range.
    #[error(transparent)]
    Faults(#[from] FaultsError),
    /// A decline rate is out of range.
    #[error(transparent)]
    DeclineRates(#[from] DeclineRatesError),
    /// A terminal id cannot be derived for terminal `index`.
    #[error("cannot derive a terminal id for terminal {index} from {base:?}: {why}")]
    TerminalId {
        /// The first terminal's id.
        base: String,
        /// The terminal's index.
        index: usize,
        /// What went wrong.
        why: &'static str,
    },
    /// Terminal `index` would listen on a port above 65535.
    #[error("no port for terminal {index}: {base} + {index} is above 65535")]
    Port {
        /// The configured first port.
        base: u16,
        /// The terminal's index.
        index: usize,
    },
    /// Listening failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The pseudo-terminal could not be opened.
    #[error("cannot open a pseudo-terminal: {0}")]
    Pty(#[from] tokio_serial::Error),
    /// A state file could not be read.
    #[error(transparent)]
    State(#[from] StateError),
    /// The card wait is above [`MAX_CARD_DELAY_MS`].
    #[error(transparent)]
    CardDelay(#[from] CardDelayError),
}

/// A card wait above [`MAX_CARD_DELAY_MS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("card delay of {} ms: at most {MAX_CARD_DELAY_MS}", .0.as_millis())]
pub struct CardDelayError(pub Duration);

/// Checks a card wait against [`MAX_CARD_DELAY_MS`].
fn validate_card_delay(delay: Duration) -> Result<(), CardDelayError> {
    if delay > Duration::from_millis(MAX_CARD_DELAY_MS) {
        return Err(CardDelayError(delay));
    }
    Ok(())
}

/// A decline rate out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DeclineRatesError {
    /// A rate is not from 0.0 to 1.0.
    #[error("decline rate {code}={rate}: expected a number from 0.0 to 1.0")]
    Rate {
        /// The code.
        code: ResponseCode,
        /// The rate given.
        rate: f64,
    },
    /// `00` is not a decline.
    #[error("00 is not a decline code")]
    Approved,
    /// The rates add up to more than 1.
    #[error("decline rates add up to {0}, more than 1")]
    Sum(f64),
}

/// Checks decline rates: each from 0.0 to 1.0, no `00`, at most 1 in all.
pub fn validate_decline_rates(rates: &[(ResponseCode, f64)]) -> Result<(), DeclineRatesError> {
    for &(code, rate) in rates {
        if code.is_approved() {
            return Err(DeclineRatesError::Approved);
        }
        if !(0.0..=1.0).contains(&rate) {
            return Err(DeclineRatesError::Rate { code, rate });
        }
    }
    let sum: f64 = rates.iter().map(|(_, rate)| rate).sum();
    // A little slack for sums like 0.1 + 0.2 + 0.7.
    if sum > 1.0 + 1e-9 {
        return Err(DeclineRatesError::Sum(sum));
    }
    Ok(())
}

/// Why a control command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// No terminal has this index.
    #[error("no terminal {index}: the simulator runs {count}")]
    NoSuchTerminal {
        /// The index asked for.
        index: usize,
        /// How many terminals run.
        count: usize,
    },
    /// The terminal's outcome queue is full.
    #[error("terminal {0}: the outcome queue is full")]
    QueueFull(usize),
    /// An approval of another amount names an amount no sale can have.
    #[error(
        "an approval of {0} fen: expected 1 to {max} fen",
        max = zhengjiao_protocol::message::MAX_AMOUNT_FEN
    )]
    ApprovalAmount(u64),
    /// A fault setting is out of range.
    #[error(transparent)]
    Faults(#[from] FaultsError),
    /// A decline rate is out of range.
    #[error(transparent)]
    DeclineRates(#[from] DeclineRatesError),
    /// The card wait is out of range.
    #[error(transparent)]
    CardDelay(#[from] CardDelayError),
    /// The command applies to serial terminals only.
    #[error("terminal {0} is not on a pseudo-terminal")]
    NotSerial(usize),
}

/// Starts simulated terminals; see [`TerminalSim::start`].
#[derive(Debug)]
pub struct TerminalSim(());

impl TerminalSim {
    /// Starts the terminals and returns once every one listens (its TCP port is bound or its
    /// pseudo-terminal open), so the ECR can connect at once.
    pub async fn start(cfg: TerminalSimConfig) -> Result<TerminalSimHandle, StartError> {
        if cfg.terminals == 0 || cfg.terminals > MAX_TERMINALS {
            return Err(StartError::TerminalCount(cfg.terminals));
        }
        cfg.faults.validate()?;
        validate_decline_rates(&cfg.decline_rates)?;
        validate_card_delay(cfg.card_delay)?;
        let cancel = CancellationToken::new();
        // Built as it goes: on an error, dropping it stops what already runs.
        let mut handle =
            TerminalSimHandle { inner: Arc::new(SimInner::default()), tasks: Vec::new(), control: Vec::new(), cancel };
        let mut inner = SimInner::default();
        for index in 0..cfg.terminals {
            let terminal_id = derive_terminal_id(&cfg.terminal_id, index)?;
            let state_path = cfg.state.as_deref().map(|path| state_path(path, index));
            let state = match &state_path {
                Some(path) => load_state(path.clone()).await?,
                None => TerminalState::new(),
            };
            let (engine_seed, fault_seed) = faults::seeds(cfg.seed, index);
            let engine = Engine::new(
                EngineConfig {
                    merchant: cfg.merchant,
                    terminal: terminal_id,
                    seed: engine_seed,
                    decline_rates: cfg.decline_rates.clone(),
                },
                state,
            );
            let runtime =
                RuntimeConfig { index, merchant: cfg.merchant, terminal: terminal_id, link: cfg.link, state_path };
            let cancel = handle.cancel.clone();
            let term = Arc::new(Terminal::new(runtime, engine, cfg.faults, fault_seed, cfg.card_delay, cancel));
            match cfg.transport {
                Transport::Tcp(base) => {
                    let addr = tcp_addr(base, index)?;
                    let listener =
                        TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr, source })?;
                    let bound = listener.local_addr().map_err(|source| StartError::Listen { addr, source })?;
                    inner.addrs.push(bound);
                    let task = transport::serve_tcp(Arc::clone(&term), listener, handle.cancel.clone());
                    handle.tasks.push(tokio::spawn(task));
                }
                Transport::Pty => {
                    let pty = transport::open_pty()?;
                    inner.pty_paths.push(pty.path.clone());
                    handle.tasks.push(tokio::spawn(transport::serve_pty(
                        Arc::clone(&term),
                        pty,
                        handle.cancel.clone(),
                    )));
                }
            }
            tracing::info!(terminal = index, id = %terminal_id, "terminal ready");
            inner.terminals.push(term);
        }
        handle.inner = Arc::new(inner);
        Ok(handle)
    }
}

/// Reads a state file on a blocking thread; a fresh state when there is none.
async fn load_state(path: PathBuf) -> Result<TerminalState, StartError> {
    let shown = path.clone();
    let loaded = tokio::task::spawn_blocking(move || TerminalState::load(&path)).await.map_err(|error| {
        StartError::State(StateError::Read { path: shown, source: std::io::Error::other(error.to_string()) })
    })?;
    Ok(loaded?.unwrap_or_else(TerminalState::new))
}

/// The terminals shared with the control endpoint.
#[derive(Debug, Default)]
pub(crate) struct SimInner {
    terminals: Vec<Arc<Terminal>>,
    addrs: Vec<SocketAddr>,
    pty_paths: Vec<PathBuf>,
}

impl SimInner {
    fn terminal(&self, index: usize) -> Result<&Arc<Terminal>, ControlError> {
        self.terminals.get(index).ok_or(ControlError::NoSuchTerminal { index, count: self.terminals.len() })
    }

    pub(crate) fn count(&self) -> usize {
        self.terminals.len()
    }

    pub(crate) fn endpoint(&self, index: usize) -> Option<String> {
        self.addrs
            .get(index)
            .map(ToString::to_string)
            .or_else(|| self.pty_paths.get(index).map(|p| p.display().to_string()))
    }

    pub(crate) fn terminal_id(&self, index: usize) -> Option<TerminalId> {
        self.terminals.get(index).map(|t| t.cfg.terminal)
    }

    pub(crate) fn queue_outcome(&self, index: usize, code: ResponseCode) -> Result<(), ControlError> {
        self.terminal(index)?.queue_outcome(code).map_err(|_| ControlError::QueueFull(index))
    }

    pub(crate) fn queue_approval_of(&self, index: usize, fen: u64) -> Result<(), ControlError> {
        let terminal = self.terminal(index)?;
        let amount = Amount::from_fen(fen).map_err(|_| ControlError::ApprovalAmount(fen))?;
        terminal.queue_approval_of(amount).map_err(|e| match e {
            QueueApprovalError::Full(_) => ControlError::QueueFull(index),
            _ => ControlError::ApprovalAmount(fen),
        })
    }

    pub(crate) fn set_faults(&self, index: usize, faults: Faults) -> Result<(), ControlError> {
        faults.validate()?;
        self.terminal(index)?.set_faults(faults);
        Ok(())
    }

    pub(crate) fn set_all_faults(&self, faults: Faults) -> Result<(), ControlError> {
        faults.validate()?;
        self.terminals.iter().for_each(|t| t.set_faults(faults));
        Ok(())
    }

    pub(crate) fn patch_faults(&self, index: usize, patch: &FaultsPatch) -> Result<Faults, ControlError> {
        Ok(self.terminal(index)?.patch_faults(patch)?)
    }

    pub(crate) fn patch_all_faults(&self, patch: &FaultsPatch) -> Result<Vec<Faults>, ControlError> {
        // Every field is checked on its own, so a patch valid over no faults is valid over any: check
        // first, so a bad value changes no terminal.
        Faults::NONE.patched(patch).validate()?;
        self.terminals.iter().map(|t| Ok(t.patch_faults(patch)?)).collect()
    }

    pub(crate) fn faults(&self, index: usize) -> Result<Faults, ControlError> {
        Ok(self.terminal(index)?.faults())
    }

    pub(crate) fn counters(&self, index: usize) -> Result<TerminalCounters, ControlError> {
        Ok(self.terminal(index)?.counters())
    }
}

/// Running terminals: their addresses and the control surface. Dropping it stops them as well; call
/// [`shutdown`](Self::shutdown) to wait until they have stopped.
#[derive(Debug)]
pub struct TerminalSimHandle {
    inner: Arc<SimInner>,
    tasks: Vec<JoinHandle<()>>,
    /// Control endpoints, stopped within [`SHUTDOWN_GRACE`].
    control: Vec<JoinHandle<()>>,
    cancel: CancellationToken,
}

impl TerminalSimHandle {
    /// How many terminals run.
    pub fn terminal_count(&self) -> usize {
        self.inner.count()
    }

    /// The TCP address of each terminal, in index order (empty over pseudo-terminals).
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.inner.addrs
    }

    /// The device path the ECR opens for each terminal, in index order (empty over TCP).
    pub fn pty_paths(&self) -> &[PathBuf] {
        &self.inner.pty_paths
    }

    /// The device path of terminal 0 over a pseudo-terminal.
    pub fn pty_path(&self) -> Option<&Path> {
        self.inner.pty_paths.first().map(PathBuf::as_path)
    }

    /// 终端号 of terminal `index`.
    pub fn terminal_id(&self, index: usize) -> Option<TerminalId> {
        self.inner.terminal_id(index)
    }

    /// Makes the next SALE on terminal `index` answer `code`, whatever its amount: the queue is consulted
    /// before the amount table (codes queued in order, one per SALE).
    pub fn queue_outcome(&self, index: usize, code: ResponseCode) -> Result<(), ControlError> {
        self.inner.queue_outcome(index, code)
    }

    /// Makes the next SALE on terminal `index` be approved (`00`) for `fen` instead of the amount it
    /// asks, whatever that is: the terminal stores that amount and reports it in the response, to QUERY
    /// and in SETTLE's totals, and a VOID must name it (a misbehaving terminal). Queued in order with
    /// [`queue_outcome`](Self::queue_outcome)'s codes, one per SALE. `fen` is 1 to
    /// [`MAX_AMOUNT_FEN`](zhengjiao_protocol::message::MAX_AMOUNT_FEN).
    pub fn queue_approval_of(&self, index: usize, fen: u64) -> Result<(), ControlError> {
        self.inner.queue_approval_of(index, fen)
    }

    /// Replaces the faults of terminal `index`.
    pub fn set_faults(&self, index: usize, faults: Faults) -> Result<(), ControlError> {
        self.inner.set_faults(index, faults)
    }

    /// Replaces the faults of every terminal.
    pub fn set_all_faults(&self, faults: Faults) -> Result<(), ControlError> {
        self.inner.set_all_faults(faults)
    }

    /// Changes the faults `patch` names on terminal `index`, leaving the others as they are; returns the
    /// faults now in force. Nothing changes when a value is out of range.
    pub fn patch_faults(&self, index: usize, patch: &FaultsPatch) -> Result<Faults, ControlError> {
        self.inner.patch_faults(index, patch)
    }

    /// The same on every terminal; returns each terminal's faults now in force, in index order.
    pub fn patch_all_faults(&self, patch: &FaultsPatch) -> Result<Vec<Faults>, ControlError> {
        self.inner.patch_all_faults(patch)
    }

    /// Changes the SALE card wait of terminal `index` (at most [`MAX_CARD_DELAY_MS`]). A sale already
    /// waiting follows the change: its wait, counted from its start, ends at once when the new delay
    /// has passed (a cardholder presenting the card).
    pub fn set_card_delay(&self, index: usize, delay: Duration) -> Result<(), ControlError> {
        validate_card_delay(delay)?;
        self.inner.terminal(index)?.set_card_delay(delay);
        Ok(())
    }

    /// Waits until serial terminal `index` next clears exclusive mode on its device (every
    /// [`SERIAL_UNLOCK_INTERVAL`] and after every restart of its link; see the README, Transports). For
    /// tests and tools that must know an ECR that died holding the device can open it again.
    pub async fn serial_unlocked(&self, index: usize) -> Result<(), ControlError> {
        if self.inner.pty_paths.is_empty() {
            return Err(ControlError::NotSerial(index));
        }
        let mut unlocks = self.inner.terminal(index)?.watch_serial_unlocks();
        // The sender lives as long as the terminal, which `self` keeps.
        let _ = unlocks.changed().await;
        Ok(())
    }

    /// The faults of terminal `index`.
    pub fn faults(&self, index: usize) -> Result<Faults, ControlError> {
        self.inner.faults(index)
    }

    /// Replaces the drawn decline rates of terminal `index`.
    pub fn set_decline_rates(&self, index: usize, rates: Vec<(ResponseCode, f64)>) -> Result<(), ControlError> {
        validate_decline_rates(&rates)?;
        self.inner.terminal(index)?.set_decline_rates(rates);
        Ok(())
    }

    /// What terminal `index` has counted so far.
    pub fn counters(&self, index: usize) -> Result<TerminalCounters, ControlError> {
        self.inner.counters(index)
    }

    /// Serves the HTTP control endpoint on `addr` until shutdown; returns the bound address once it
    /// listens. See the simulator's README for the routes.
    pub async fn serve_control(&mut self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let router = control::router(Arc::clone(&self.inner));
        let cancel = self.cancel.clone();
        self.control.push(tokio::spawn(async move {
            let served = axum::serve(listener, router).with_graceful_shutdown(cancel.cancelled_owned()).await;
            if let Err(error) = served {
                tracing::error!(%error, "control endpoint failed");
            }
        }));
        Ok(bound)
    }

    /// Stops every terminal and waits until they have stopped: connections closed, and a request being
    /// processed either finished (stored and saved) or abandoned during its card wait or response delay.
    /// The control endpoint finishes the requests it is serving within [`SHUTDOWN_GRACE`]; those still
    /// running then are cut.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        for mut task in std::mem::take(&mut self.control) {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await.is_err() {
                tracing::warn!("control endpoint: requests still in flight after the grace period; cutting them");
                task.abort();
            }
        }
        for task in std::mem::take(&mut self.tasks) {
            if let Err(error) = task.await {
                tracing::error!(%error, "simulator task failed");
            }
        }
        for term in &self.inner.terminals {
            term.finish_processing().await;
        }
    }
}

impl Drop for TerminalSimHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// 终端号 of terminal `index`: the first id's trailing number plus `index`, keeping its width.
fn derive_terminal_id(base: &TerminalId, index: usize) -> Result<TerminalId, StartError> {
    if index == 0 {
        return Ok(*base);
    }
    let fail = |why| StartError::TerminalId { base: base.as_str().to_owned(), index, why };
    let text = base.as_str();
    let digits = text.bytes().rev().take_while(u8::is_ascii_digit).count();
    let (prefix, number) = text.split_at(text.len() - digits);
    if number.is_empty() {
        return Err(fail("it does not end in digits"));
    }
    let first: u64 = number.parse().map_err(|_| fail("its trailing number does not parse"))?;
    let next = first.checked_add(index as u64).ok_or_else(|| fail("the number overflows"))?;
    let derived = format!("{prefix}{next:0width$}", width = number.len());
    if derived.len() != text.len() {
        return Err(fail("the number outgrows its digits"));
    }
    TerminalId::new(&derived).map_err(|_| fail("the derived id is not a terminal id"))
}

/// The state file of terminal `index`: `path` for 0, `path.i` for the others.
fn state_path(path: &Path, index: usize) -> PathBuf {
    if index == 0 {
        return path.to_path_buf();
    }
    let mut name = OsString::from(path.as_os_str());
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

/// The address terminal `index` listens on.
fn tcp_addr(base: SocketAddr, index: usize) -> Result<SocketAddr, StartError> {
    if base.port() == 0 {
        return Ok(base);
    }
    let port = u16::try_from(index)
        .ok()
        .and_then(|i| base.port().checked_add(i))
        .ok_or(StartError::Port { base: base.port(), index })?;
    Ok(SocketAddr::new(base.ip(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> TerminalId {
        TerminalId::new(s).unwrap_or(TerminalId::EMPTY)
    }

    #[test]
    fn terminal_ids_count_up_keeping_width() {
        assert_eq!(derive_terminal_id(&id("41000001"), 0).ok(), Some(id("41000001")));
        assert_eq!(derive_terminal_id(&id("41000001"), 2).ok(), Some(id("41000003")));
        assert_eq!(derive_terminal_id(&id("T0009"), 1).ok(), Some(id("T0010")));
        assert!(derive_terminal_id(&id("T9"), 1).is_err());
        assert!(derive_terminal_id(&id("TERM"), 1).is_err());
    }

    #[test]
    fn state_files_per_terminal() {
        assert_eq!(state_path(Path::new("/x/s.json"), 0), PathBuf::from("/x/s.json"));
        assert_eq!(state_path(Path::new("/x/s.json"), 3), PathBuf::from("/x/s.json.3"));
    }

    #[test]
    fn fixed_ports_count_up() {
        let base = SocketAddr::from(([127, 0, 0, 1], 7000));
        assert_eq!(tcp_addr(base, 2).ok(), Some(SocketAddr::from(([127, 0, 0, 1], 7002))));
        assert!(tcp_addr(SocketAddr::from(([127, 0, 0, 1], 65535)), 1).is_err());
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        assert_eq!(tcp_addr(any, 5).ok(), Some(any));
    }

    #[test]
    fn decline_rates_are_checked() {
        let code = |s| ResponseCode::new(s).unwrap_or(ResponseCode::BUSY);
        assert!(validate_decline_rates(&[(code("51"), 0.03), (code("T1"), 0.02)]).is_ok());
        assert!(validate_decline_rates(&[(code("00"), 0.1)]).is_err());
        assert!(validate_decline_rates(&[(code("51"), 1.2)]).is_err());
        assert!(validate_decline_rates(&[(code("51"), 0.6), (code("05"), 0.6)]).is_err());
    }
}
