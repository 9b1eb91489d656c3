//! The terminal link (终端链路): one tokio task per POS terminal that owns the transport (TCP or serial)
//! and the clock, and drives the protocol crate's sans-IO [`Ecr`](zhengjiao_protocol::link::Ecr) with them
//! (wire-protocol.md §1, §4).
//!
//! The rest of the daemon talks to a terminal through a [`TerminalLink`] handle: [`TerminalLink::submit`]
//! queues one request and returns an [`Exchange`] whose `done` receiver always gets exactly one
//! [`ExchangeResult`]; [`TerminalLink::watch`] follows the link's [`LinkStatus`].
//!
//! What the task does on its own:
//! - connects, and on every connection signs in (SIGN_IN 签到) before it sends anything else; every
//!   successful sign-in increments [`LinkStatus::session`], the collection service's cue to run its
//!   recovery QUERYs;
//! - reconnects after a connect failure, EOF, I/O error, unanswered frame or lost probe, with exponential
//!   backoff and jitter between [`LinkSettings::reconnect_min`] and [`LinkSettings::reconnect_max`];
//! - probes an idle link with ENQ every [`LinkSettings::heartbeat`];
//! - after a `T4` answer (terminal not signed in, e.g. after a power loss) signs in again before the next
//!   request; a QUERY, STATUS or SETTLE that got `T4` is sent once more after the sign-in.
//!
//! Queued requests wait, unsent, for as long as the link is not ready; only [`TerminalLink::shutdown`]
//! (or dropping every handle) ends that wait, with [`ExchangeResult::NotSent`]. A caller that wants a
//! bound puts a timeout on `done` and drops the receiver: a queued request whose `done` receiver was
//! dropped is discarded unsent when its turn comes.

mod actor;
mod status;
mod transport;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use zhengjiao_protocol::link::{EcrConfig, FailureReason};
use zhengjiao_protocol::memo::Memo;
use zhengjiao_protocol::message::{OperatorId, RequestBody, Response, Till, Token};

pub use status::{LinkState, LinkStatus};

/// Idle time before an ENQ probe, unless configured.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// The shortest reconnect backoff, unless configured.
pub const DEFAULT_RECONNECT_MIN: Duration = Duration::from_millis(200);
/// The longest reconnect backoff, unless configured.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(10);
/// Requests a terminal's queue holds, unless configured.
pub const DEFAULT_QUEUE: usize = 64;
/// The largest request queue a terminal may have; [`LinkSettings::queue`] is clamped to `1..=MAX_QUEUE`.
pub const MAX_QUEUE: usize = 4096;
/// 操作员号 of the requests the link sends on its own (SIGN_IN).
pub const SYSTEM_OPERATOR: &str = "SYSTEM";

/// Settings of one terminal's link.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// Our name for the terminal (the configuration's id, e.g. `T01`), in every log line.
    pub name: String,
    /// How the terminal is reached.
    pub transport: crate::config::Transport,
    /// Link and response timeouts. `first_token` is replaced at [`spawn`] by a random token in
    /// `100..=999`, so a late response to a previous process's request is very likely recognised as
    /// stale.
    pub ecr: EcrConfig,
    /// 款台号, sent in every request.
    pub till: Till,
    /// Idle time before an ENQ probe. Default [`DEFAULT_HEARTBEAT`].
    pub heartbeat: Duration,
    /// The first reconnect backoff. Default [`DEFAULT_RECONNECT_MIN`].
    pub reconnect_min: Duration,
    /// The reconnect backoff doubles up to this. Default [`DEFAULT_RECONNECT_MAX`].
    pub reconnect_max: Duration,
    /// How many requests may wait; clamped to `1..=`[`MAX_QUEUE`]. Default [`DEFAULT_QUEUE`].
    pub queue: usize,
}

impl LinkSettings {
    /// Settings for a configured terminal, with the defaults for everything the configuration does not
    /// say. Fails, naming the terminal and the value, when the till is not a valid 款台号.
    pub fn from_config(t: &crate::config::TerminalConfig) -> Result<LinkSettings, String> {
        let till = Till::new(&t.till).map_err(|e| format!("terminal {}: till {:?}: {e}", t.id, t.till))?;
        Ok(LinkSettings {
            name: t.id.clone(),
            transport: t.transport.clone(),
            ecr: t.ecr,
            till,
            heartbeat: DEFAULT_HEARTBEAT,
            reconnect_min: DEFAULT_RECONNECT_MIN,
            reconnect_max: DEFAULT_RECONNECT_MAX,
            queue: DEFAULT_QUEUE,
        })
    }
}

/// One request to send, as the caller gives it; the link adds the till and the token.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// 操作员号 of the collector.
    pub operator: OperatorId,
    /// What to ask for.
    pub body: RequestBody,
    /// The memo; SALE, VOID, REFUND and QUERY need the ECR reference (0F01).
    pub memo: Memo,
    /// If the request has not been started by then (the terminal busy with others, or the link down),
    /// it is dropped unsent and answered [`ExchangeResult::NotSent`]: a sale the collector has given
    /// up on must not reach the terminal hours later. `None`: it waits as long as it takes.
    pub start_by: Option<tokio::time::Instant>,
}

/// The caller's end of one submitted request.
#[derive(Debug)]
pub struct Exchange {
    /// Fires when the terminal ACKed the request frame (or answered it, which proves the same), always
    /// before `done` in that case. Never fires for a request that was not delivered; its sender is then
    /// dropped.
    pub acked: oneshot::Receiver<()>,
    /// Fires exactly once with the result, unless the link's task panics.
    pub done: oneshot::Receiver<ExchangeResult>,
}

/// How an exchange ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeResult {
    /// The terminal answered, with any code (only `00` means money moved).
    Answered(Box<Response>),
    /// A SALE, VOID or REFUND whose frame may have reached the terminal ended without an answer: learn
    /// the outcome with QUERY (wire-protocol.md §4 rule 7).
    OutcomeUnknown(FailureReason),
    /// The exchange failed and nothing moved: a non-money request, or a frame never written.
    Failed(FailureReason),
    /// Never handed to the transport, so nothing moved: the link shut down while it was queued, or the
    /// protocol core refused it (a reference whose outcome is unknown, a request that breaks §5).
    NotSent(String),
}

/// Why [`TerminalLink::submit`] refused a request. Nothing was queued or sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The terminal's queue already holds its maximum.
    #[error("the terminal's request queue is full ({max} requests)")]
    QueueFull {
        /// The queue's size.
        max: usize,
    },
    /// The link's task has ended (shut down).
    #[error("the terminal link has stopped")]
    Stopped,
}

/// A request waiting for the actor, with the caller's receivers' other ends.
#[derive(Debug)]
struct Job {
    out: Outgoing,
    acked: Option<oneshot::Sender<()>>,
    done: oneshot::Sender<ExchangeResult>,
    /// True once it was answered `T4` and queued again after a sign-in.
    retried: bool,
}

#[derive(Debug)]
struct Shared {
    name: String,
    jobs: mpsc::Sender<Job>,
    /// Jobs submitted and not yet taken off the queue: the bound [`SubmitError::QueueFull`] checks.
    queued: Arc<AtomicUsize>,
    max: usize,
    status: watch::Receiver<LinkStatus>,
    stop: CancellationToken,
}

/// A handle on one terminal's link; cheap to clone. The link's task ends on
/// [`shutdown`](Self::shutdown) or when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct TerminalLink {
    shared: Arc<Shared>,
}

/// Starts the link's task on the current tokio runtime. Panics outside a runtime, like `tokio::spawn`.
pub fn spawn(mut settings: LinkSettings) -> TerminalLink {
    settings.queue = settings.queue.clamp(1, MAX_QUEUE);
    settings.ecr.first_token = Token::new(fastrand::u16(100..=999)).unwrap_or(Token::MIN);
    let (jobs, rx) = mpsc::channel(settings.queue);
    let queued = Arc::new(AtomicUsize::new(0));
    let initial = LinkStatus::new(&settings.name, &settings.transport);
    let (status_tx, status) = watch::channel(initial);
    let stop = CancellationToken::new();
    let shared = Shared {
        name: settings.name.clone(),
        jobs,
        queued: Arc::clone(&queued),
        max: settings.queue,
        status,
        stop: stop.clone(),
    };
    let actor = actor::Actor::new(settings, rx, queued, status_tx, stop);
    tokio::spawn(actor.run());
    TerminalLink { shared: Arc::new(shared) }
}

impl TerminalLink {
    /// The terminal's name (the configuration's id).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The link's status now.
    pub fn status(&self) -> LinkStatus {
        let mut status = self.shared.status.borrow().clone();
        status.queued = self.shared.queued.load(Ordering::Acquire);
        status
    }

    /// True when the terminal reported `terminal_id` (终端号) at its last sign-in. Reads the status in
    /// place, without the copy [`status`](Self::status) makes.
    pub fn has_terminal_id(&self, terminal_id: &str) -> bool {
        self.shared.status.borrow().terminal_id.as_deref() == Some(terminal_id)
    }

    /// A receiver that sees every change of the status. It reports the sender closed once the task has
    /// ended.
    pub fn watch(&self) -> watch::Receiver<LinkStatus> {
        self.shared.status.clone()
    }

    /// Queues one request. Fails at once, with nothing queued and nothing sent, when the queue is full or
    /// the link has stopped.
    pub fn submit(&self, out: Outgoing) -> Result<Exchange, SubmitError> {
        let max = self.shared.max;
        if self.shared.stop.is_cancelled() || self.shared.jobs.is_closed() {
            return Err(SubmitError::Stopped);
        }
        self.shared
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .map_err(|_| SubmitError::QueueFull { max })?;
        let (acked_tx, acked) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        let job = Job { out, acked: Some(acked_tx), done: done_tx, retried: false };
        match self.shared.jobs.try_send(job) {
            Ok(()) => Ok(Exchange { acked, done }),
            Err(e) => {
                self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                match e {
                    // Cannot happen while `queued` bounds the channel; report it as what it would mean.
                    mpsc::error::TrySendError::Full(_) => Err(SubmitError::QueueFull { max }),
                    mpsc::error::TrySendError::Closed(_) => Err(SubmitError::Stopped),
                }
            }
        }
    }

    /// Stops the link: an exchange in flight is aborted (a money request's outcome is then unknown), queued
    /// requests end [`ExchangeResult::NotSent`], the transport is closed. Returns once the task has ended.
    pub async fn shutdown(&self) {
        self.shared.stop.cancel();
        let mut status = self.shared.status.clone();
        // `changed` fails once the task has dropped its sender, i.e. ended.
        while status.changed().await.is_ok() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TerminalConfig, Transport};
    use crate::domain::CollectionPointCode;

    fn terminal(till: &str) -> TerminalConfig {
        TerminalConfig {
            id: "T01".to_owned(),
            collection_point: CollectionPointCode::parse("CP01").unwrap_or_else(|e| panic!("{e}")),
            till: till.to_owned(),
            transport: Transport::Tcp { host: "127.0.0.1".to_owned(), port: 4100 },
            ecr: EcrConfig::default(),
        }
    }

    #[test]
    fn settings_from_config_take_the_defaults_and_name_a_bad_till() {
        let settings = LinkSettings::from_config(&terminal("DESK01")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((settings.name.as_str(), settings.till.as_str()), ("T01", "DESK01"));
        assert_eq!(settings.heartbeat, DEFAULT_HEARTBEAT);
        assert_eq!((settings.reconnect_min, settings.reconnect_max), (DEFAULT_RECONNECT_MIN, DEFAULT_RECONNECT_MAX));
        assert_eq!(settings.queue, DEFAULT_QUEUE);
        let error = LinkSettings::from_config(&terminal("DESK-0001")).err().unwrap_or_default();
        assert!(error.contains("T01") && error.contains("DESK-0001"), "{error}");
    }
}
