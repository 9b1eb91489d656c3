//! The ECR (收银机) side of an exchange: one request, its response, and what happens when the response
//! does not come (wire-protocol.md §4 rules 6-7, §5.2).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Link, LinkConfig, LinkError, LinkEvent, LinkStats, MAX_QUEUED_EVENTS};
use crate::field::DecodeError;
use crate::memo::EcrReference;
use crate::message::{peek_token, EncodeError, MessageType, Request, Response, ResponseCode, Token};

/// The most ECR references whose outcome is unknown that an [`Ecr`] keeps (§4 rule 7). While this many
/// are unresolved every money request is refused ([`StartError::TooManyUnknown`]); resolve them with
/// QUERY first. An exchange in flight when the set fills may still add one more.
pub const MAX_UNKNOWN_REFERENCES: usize = 256;

/// T_resp, the response timeout (应答超时) per message type, counted from the request's ACK (§4 rule 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseTimeouts {
    /// SALE 消费, VOID 撤销, REFUND 退货: card wait and host authorisation. Default 90 s.
    pub money: Duration,
    /// SETTLE 结算. Default 60 s.
    pub settle: Duration,
    /// SIGN_IN 签到. Default 60 s.
    pub sign_in: Duration,
    /// QUERY 交易查询. Default 10 s.
    pub query: Duration,
    /// STATUS 状态. Default 10 s.
    pub status: Duration,
}

impl ResponseTimeouts {
    /// T_resp for requests of type `kind`.
    pub fn for_type(&self, kind: MessageType) -> Duration {
        match kind {
            MessageType::Sale | MessageType::Void | MessageType::Refund => self.money,
            MessageType::Settle => self.settle,
            MessageType::SignIn => self.sign_in,
            MessageType::Query => self.query,
            MessageType::Status => self.status,
        }
    }
}

impl Default for ResponseTimeouts {
    fn default() -> Self {
        ResponseTimeouts {
            money: Duration::from_secs(90),
            settle: Duration::from_secs(60),
            sign_in: Duration::from_secs(60),
            query: Duration::from_secs(10),
            status: Duration::from_secs(10),
        }
    }
}

/// Settings of an [`Ecr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcrConfig {
    /// The frame-level link.
    pub link: LinkConfig,
    /// Response timeouts per message type.
    pub timeouts: ResponseTimeouts,
    /// The token of the first request. A restarted daemon passes the token after the last one it
    /// used, so a late response to the old process's request is recognised as stale.
    pub first_token: Token,
}

impl Default for EcrConfig {
    fn default() -> Self {
        EcrConfig { link: LinkConfig::default(), timeouts: ResponseTimeouts::default(), first_token: Token::MIN }
    }
}

/// Why an exchange ended without a usable response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FailureReason {
    /// No ACK for the request frame through every resend (§4 rule 3).
    #[error("link lost: the request frame was never acknowledged")]
    LinkLost,
    /// The request was ACKed but no response came within T_resp (§4 rule 6).
    #[error("no response within {after:?} of the request's ACK")]
    ResponseTimeout {
        /// The T_resp that ran out.
        after: Duration,
    },
    /// A response with the request's token that does not decode.
    #[error("malformed response: {0}")]
    MalformedResponse(DecodeError),
    /// A response with the request's token but another message type.
    #[error("response of type {got} to a {expected} request")]
    TypeMismatch {
        /// The request's type.
        expected: MessageType,
        /// The type the response carries.
        got: MessageType,
    },
    /// The transport dropped ([`Ecr::connection_lost`]).
    #[error("connection lost")]
    ConnectionLost,
    /// The owner gave up on the exchange ([`Ecr::abort`]).
    #[error("aborted by the owner")]
    Aborted,
}

/// What an [`Ecr`] reports, taken with [`Ecr::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EcrEvent {
    /// The exchange ended with a response (any response code; only `00` means money moved). A QUERY
    /// answer that settles an unknown outcome has already removed its reference from the unknown set.
    Answered {
        /// The request as sent, with its token.
        request: Request,
        /// The terminal's response (boxed: it is the largest message).
        response: Box<Response>,
    },
    /// A SALE, VOID or REFUND failed after its request frame may have reached the terminal: the
    /// outcome is unknown and its reference is now in the unknown set (§4 rule 7). Learn it with QUERY.
    OutcomeUnknown {
        /// The request as sent.
        request: Request,
        /// Why the exchange ended.
        reason: FailureReason,
    },
    /// The exchange failed and nothing moved: any non-money request, or a money request whose frame was
    /// never handed out for transmit.
    Failed {
        /// The request as sent.
        request: Request,
        /// Why the exchange ended.
        reason: FailureReason,
    },
    /// A response that belongs to no exchange in flight (another token, no readable token, or none in
    /// flight): ACKed at the link level and discarded (§5.2). For the log.
    StaleResponse {
        /// Its token, if the first three bytes are one.
        token: Option<Token>,
    },
    /// The ENQ of [`Ecr::send_probe`] was answered.
    ProbeAnswered,
    /// The ENQ of [`Ecr::send_probe`] went unanswered through every resend.
    ProbeLost,
}

/// Why [`Ecr::start`] refused a request. Nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// An exchange or a probe is in progress; one exchange at a time (§1).
    #[error("an exchange or probe is in progress")]
    Busy,
    /// The request breaks a rule of §5.
    #[error("request cannot be encoded: {0}")]
    Encode(#[from] EncodeError),
    /// A money request for a reference whose earlier outcome is unknown; QUERY it first (§4 rule 7).
    #[error("the outcome of reference {0} is unknown; QUERY it first")]
    OutcomeUnknown(EcrReference),
    /// The unknown set is full; no money request is allowed until some are resolved.
    #[error("{max} references with unknown outcome; resolve them with QUERY first")]
    TooManyUnknown {
        /// [`MAX_UNKNOWN_REFERENCES`].
        max: usize,
    },
    /// The link refused the frame.
    #[error(transparent)]
    Link(#[from] LinkError),
}

/// [`Ecr::mark_unknown`] found the unknown set full.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the unknown set already holds its maximum of {max} references")]
pub struct UnknownSetFull {
    /// [`MAX_UNKNOWN_REFERENCES`].
    pub max: usize,
}

/// Counters kept by an [`Ecr`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EcrStats {
    /// The link's counters.
    pub link: LinkStats,
    /// Exchanges started.
    pub started: u64,
    /// Exchanges answered.
    pub answered: u64,
    /// Exchanges failed with nothing moved.
    pub failed: u64,
    /// Money exchanges whose outcome became unknown.
    pub outcomes_unknown: u64,
    /// Stale responses discarded (reported or not).
    pub stale_responses: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The request frame awaits its ACK.
    AwaitingAck,
    /// ACKed; the response is due by `deadline` (`None`: T_resp beyond what `Instant` holds).
    AwaitingResponse { deadline: Option<Instant>, after: Duration },
}

#[derive(Debug, Clone)]
struct Exchange {
    request: Request,
    phase: Phase,
    /// True once the request frame may have reached the terminal.
    written: bool,
}

/// The ECR side of the protocol: one request/response exchange at a time over a [`Link`].
///
/// # Driver contract
/// Inputs: [`handle_input`](Self::handle_input) with every chunk read from the transport;
/// [`handle_timeout`](Self::handle_timeout) once `now` reaches [`poll_timeout`](Self::poll_timeout);
/// [`connection_lost`](Self::connection_lost) when the transport drops; the commands
/// [`start`](Self::start), [`abort`](Self::abort), [`send_probe`](Self::send_probe) and
/// [`mark_unknown`](Self::mark_unknown).
///
/// Outputs, drained after every input: [`poll_transmit`](Self::poll_transmit) until `None` (write the
/// bytes in order), [`poll_event`](Self::poll_event) until `None`, then [`poll_timeout`](Self::poll_timeout)
/// for when to call `handle_timeout` next. Every exchange ends with exactly one of
/// [`EcrEvent::Answered`], [`EcrEvent::OutcomeUnknown`] or [`EcrEvent::Failed`].
///
/// A request counts as possibly delivered from the moment `poll_transmit` hands out its frame; a money
/// exchange that fails after that ends in [`EcrEvent::OutcomeUnknown`], and its ECR reference (memo
/// 0F01) stays blocked for money requests until a QUERY answer settles it (§4 rule 7). The owner
/// persists [`unknown_references`](Self::unknown_references) and [`next_token`](Self::next_token) and
/// restores them after a restart ([`mark_unknown`](Self::mark_unknown), [`EcrConfig::first_token`]).
///
/// The guard is per ECR reference, which is all the link can see. A VOID or REFUND carries its own
/// reference (§5.3), so rule 7's "no other money request for that payment" across a sale and its
/// reversals is the owner's to keep: it knows which payment each reference belongs to.
#[derive(Debug, Clone)]
pub struct Ecr {
    cfg: EcrConfig,
    link: Link,
    next_token: Token,
    exchange: Option<Exchange>,
    probing: bool,
    unknown: Vec<EcrReference>,
    events: VecDeque<EcrEvent>,
    stats: EcrStats,
}

impl Ecr {
    /// An idle ECR whose first request carries `cfg.first_token`.
    pub fn new(cfg: EcrConfig) -> Self {
        Ecr {
            cfg,
            link: Link::new(cfg.link),
            next_token: cfg.first_token,
            exchange: None,
            probing: false,
            unknown: Vec::new(),
            events: VecDeque::new(),
            stats: EcrStats::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &EcrConfig {
        &self.cfg
    }

    /// The link underneath, for its counters and backlog.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// The token the next request will carry.
    pub fn next_token(&self) -> Token {
        self.next_token
    }

    /// True when no exchange and no probe is in progress.
    pub fn is_idle(&self) -> bool {
        self.exchange.is_none() && !self.probing
    }

    /// The request of the exchange in flight.
    pub fn in_flight(&self) -> Option<&Request> {
        self.exchange.as_ref().map(|e| &e.request)
    }

    /// References whose outcome is unknown, oldest first.
    pub fn unknown_references(&self) -> &[EcrReference] {
        &self.unknown
    }

    /// Adds a reference to the unknown set, e.g. one reloaded from the journal after a restart.
    pub fn mark_unknown(&mut self, reference: EcrReference) -> Result<(), UnknownSetFull> {
        if self.unknown.contains(&reference) {
            return Ok(());
        }
        if self.unknown.len() >= MAX_UNKNOWN_REFERENCES {
            return Err(UnknownSetFull { max: MAX_UNKNOWN_REFERENCES });
        }
        self.unknown.push(reference);
        Ok(())
    }

    /// Removes a reference from the unknown set because the owner learned its outcome another way (an
    /// operator checked the terminal's records). Returns whether it was there.
    pub fn forget_unknown(&mut self, reference: &EcrReference) -> bool {
        let before = self.unknown.len();
        self.unknown.retain(|r| r != reference);
        self.unknown.len() != before
    }

    /// Command: starts an exchange. Overwrites `request.token` with a fresh token (returned), encodes
    /// the request and queues its frame.
    pub fn start(&mut self, now: Instant, mut request: Request) -> Result<Token, StartError> {
        if !self.is_idle() {
            return Err(StartError::Busy);
        }
        if request.message_type().moves_money() {
            if let Some(reference) = request.reference() {
                if self.unknown.contains(reference) {
                    return Err(StartError::OutcomeUnknown(*reference));
                }
            }
            if self.unknown.len() >= MAX_UNKNOWN_REFERENCES {
                return Err(StartError::TooManyUnknown { max: MAX_UNKNOWN_REFERENCES });
            }
        }
        let token = self.next_token;
        request.token = token;
        let mut data = Vec::new();
        request.encode_into(&mut data)?;
        self.link.send_frame(now, &data)?;
        self.next_token = token.next();
        self.exchange = Some(Exchange { request, phase: Phase::AwaitingAck, written: false });
        self.link.set_idle(false);
        self.stats.started += 1;
        Ok(token)
    }

    /// Command: sends an ENQ probe (heartbeat) while idle; reports [`EcrEvent::ProbeAnswered`] or
    /// [`EcrEvent::ProbeLost`].
    pub fn send_probe(&mut self, now: Instant) -> Result<(), LinkError> {
        if !self.is_idle() {
            return Err(LinkError::Busy);
        }
        self.link.send_probe(now)?;
        self.probing = true;
        Ok(())
    }

    /// Command: the owner gives up on the exchange in flight (e.g. shutting down). It ends with
    /// [`FailureReason::Aborted`]; a request frame not yet handed out is withdrawn. A response arriving
    /// later is stale.
    pub fn abort(&mut self) {
        self.end_probe();
        self.link.cancel_pending();
        if let Some(exchange) = self.exchange.take() {
            self.fail(exchange, FailureReason::Aborted);
        }
    }

    /// Input: the transport dropped. The exchange in flight ends with
    /// [`FailureReason::ConnectionLost`] and the link starts over (fresh decoder, no duplicate memory),
    /// ready for the next connection.
    pub fn connection_lost(&mut self) {
        self.link.reset();
        self.end_probe();
        if let Some(exchange) = self.exchange.take() {
            self.fail(exchange, FailureReason::ConnectionLost);
        }
    }

    /// Input: bytes read from the transport at `now`.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        self.link.handle_input(now, bytes);
        self.drain_link(now);
    }

    /// Input: time has reached `now`: link timers, then the response deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.link.handle_timeout(now);
        self.drain_link(now);
        if let Some(Exchange { phase: Phase::AwaitingResponse { deadline: Some(deadline), after }, .. }) = self.exchange
        {
            if now >= deadline {
                if let Some(exchange) = self.exchange.take() {
                    self.fail(exchange, FailureReason::ResponseTimeout { after });
                }
            }
        }
    }

    /// Output: the next bytes to write, in order.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let out = self.link.poll_transmit()?;
        if let Some(exchange) = &mut self.exchange {
            if self.link.pending_frame_written() {
                exchange.written = true;
            }
        }
        Some(out)
    }

    /// Output: when [`handle_timeout`](Self::handle_timeout) is next due: the earliest of the link's
    /// timers and the response deadline (ACK time + T_resp).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let response = match self.exchange.as_ref().map(|e| e.phase) {
            Some(Phase::AwaitingResponse { deadline, .. }) => deadline,
            _ => None,
        };
        match (self.link.poll_timeout(), response) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Output: the next event.
    pub fn poll_event(&mut self) -> Option<EcrEvent> {
        self.events.pop_front()
    }

    /// The counters so far.
    pub fn stats(&self) -> EcrStats {
        EcrStats { link: self.link.stats(), ..self.stats }
    }

    fn drain_link(&mut self, now: Instant) {
        while let Some(event) = self.link.poll_event() {
            match event {
                LinkEvent::Delivered(data) => self.on_response(&data),
                LinkEvent::Acked => self.on_acked(now),
                LinkEvent::ProbeAnswered => {
                    if std::mem::take(&mut self.probing) {
                        self.events.push_back(EcrEvent::ProbeAnswered);
                    }
                }
                LinkEvent::LinkLost => {
                    if std::mem::take(&mut self.probing) {
                        self.events.push_back(EcrEvent::ProbeLost);
                    } else if let Some(exchange) = self.exchange.take() {
                        self.fail(exchange, FailureReason::LinkLost);
                    }
                }
            }
        }
    }

    fn on_acked(&mut self, now: Instant) {
        let timeouts = self.cfg.timeouts;
        if let Some(exchange) = &mut self.exchange {
            if exchange.phase == Phase::AwaitingAck {
                let after = timeouts.for_type(exchange.request.message_type());
                exchange.phase = Phase::AwaitingResponse { deadline: now.checked_add(after), after };
                // The terminal says it has the request, whatever we believe we wrote.
                exchange.written = true;
            }
        }
    }

    fn on_response(&mut self, data: &[u8]) {
        let token = peek_token(data);
        let expected = self.exchange.as_ref().map(|e| e.request.token);
        if token.is_none() || token != expected {
            self.stats.stale_responses += 1;
            if self.events.len() < MAX_QUEUED_EVENTS {
                self.events.push_back(EcrEvent::StaleResponse { token });
            }
            return;
        }
        let Some(mut exchange) = self.exchange.take() else {
            return;
        };
        // A response with our token proves the request arrived, ACK or no ACK.
        self.link.cancel_pending();
        exchange.written = true;
        let expected = exchange.request.message_type();
        match Response::decode(data) {
            Ok(response) if response.kind == expected => self.answered(exchange.request, response),
            Ok(response) => self.fail(exchange, FailureReason::TypeMismatch { expected, got: response.kind }),
            Err(error) => self.fail(exchange, FailureReason::MalformedResponse(error)),
        }
    }

    fn answered(&mut self, request: Request, response: Response) {
        if request.message_type() == MessageType::Query {
            if let Some(reference) = request.reference() {
                if settles_outcome(reference, &response) {
                    self.unknown.retain(|r| r != reference);
                }
            }
        }
        self.stats.answered += 1;
        self.finish();
        self.events.push_back(EcrEvent::Answered { request, response: Box::new(response) });
    }

    fn fail(&mut self, exchange: Exchange, reason: FailureReason) {
        let Exchange { request, written, .. } = exchange;
        self.finish();
        if request.message_type().moves_money() && written {
            if let Some(reference) = request.reference() {
                // Never refused: losing an unknown outcome is worse than one entry over the bound.
                if !self.unknown.contains(reference) {
                    self.unknown.push(*reference);
                }
            }
            self.stats.outcomes_unknown += 1;
            self.events.push_back(EcrEvent::OutcomeUnknown { request, reason });
        } else {
            self.stats.failed += 1;
            self.events.push_back(EcrEvent::Failed { request, reason });
        }
    }

    /// A probe cut short by abort or a lost connection still ends with an event.
    fn end_probe(&mut self) {
        if std::mem::take(&mut self.probing) {
            self.events.push_back(EcrEvent::ProbeLost);
        }
    }

    fn finish(&mut self) {
        self.exchange = None;
        self.link.set_idle(true);
    }
}

/// True when a QUERY answer tells the outcome of `reference`: `25` (no record: not carried out), or the
/// looked-up state in memo 0F05 (§5.3), whatever code the terminal echoes with it (a stored decline may
/// come back as its own code with 0F05 `D`). A memo reference other than the one asked for settles
/// nothing.
fn settles_outcome(reference: &EcrReference, response: &Response) -> bool {
    let same = response.memo.reference.as_ref().is_none_or(|r| r == reference);
    let told = response.code == ResponseCode::NOT_FOUND || response.memo.query_state.is_some();
    same && told
}
