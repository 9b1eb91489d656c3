//! The link's task: owns the transport and the clock and drives the sans-IO [`Ecr`] by its driver
//! contract (inputs, then `poll_transmit` / `poll_event` / `poll_timeout`).

use std::collections::VecDeque;
use std::future::pending;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};
use zhengjiao_protocol::link::{Ecr, EcrEvent, FailureReason, StartError};
use zhengjiao_protocol::memo::Memo;
use zhengjiao_protocol::message::{
    Batch, MessageType, OperatorId, Request, RequestBody, Response, ResponseCode, Token,
};

use super::status::{LinkState, LinkStatus};
use super::transport::{backoff, connect, Connection};
use super::{ExchangeResult, Job, LinkSettings, SYSTEM_OPERATOR};

/// Bytes read from the transport at a time.
const READ_CHUNK: usize = 4096;
/// The longest one write may block (a serial line held by flow control, a TCP peer that stopped
/// reading) before the connection counts as lost.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The exchange the actor has handed to the [`Ecr`].
enum Current {
    /// The link's own SIGN_IN.
    SignIn,
    /// A caller's request (boxed: a job is large and the enum lives in every actor).
    User(Box<Job>),
}

/// Something to tell a caller once the status is published.
enum Delivery {
    Acked(oneshot::Sender<()>),
    Done(oneshot::Sender<ExchangeResult>, ExchangeResult),
}

/// Why a connection ended.
enum End {
    /// Shutdown asked for, or every handle dropped.
    Stop,
    /// The connection is lost or unusable; reconnect after a backoff.
    Lost(String),
}

pub(super) struct Actor {
    settings: LinkSettings,
    ecr: Ecr,
    jobs: mpsc::Receiver<Job>,
    jobs_open: bool,
    queue: VecDeque<Job>,
    queued: Arc<AtomicUsize>,
    status_tx: watch::Sender<LinkStatus>,
    status: LinkStatus,
    stop: CancellationToken,
    current: Option<Current>,
    /// A SIGN_IN is due before any request: set on every connection and after a `T4` answer.
    sign_in_due: bool,
    /// Reconnect attempts since the last successful sign-in.
    attempt: u32,
    deliveries: Vec<Delivery>,
    /// The last time anything moved on the link, for the heartbeat.
    last_activity: Instant,
    /// Resends already logged.
    resends_seen: u64,
    system_operator: OperatorId,
}

impl Actor {
    pub(super) fn new(
        settings: LinkSettings,
        jobs: mpsc::Receiver<Job>,
        queued: Arc<AtomicUsize>,
        status_tx: watch::Sender<LinkStatus>,
        stop: CancellationToken,
    ) -> Actor {
        let status = status_tx.borrow().clone();
        Actor {
            ecr: Ecr::new(settings.ecr),
            settings,
            jobs,
            jobs_open: true,
            queue: VecDeque::new(),
            queued,
            status_tx,
            status,
            stop,
            current: None,
            sign_in_due: true,
            attempt: 0,
            deliveries: Vec::new(),
            last_activity: Instant::now(),
            resends_seen: 0,
            system_operator: OperatorId::new(SYSTEM_OPERATOR).unwrap_or(OperatorId::EMPTY),
        }
    }

    /// Runs until shutdown or until every handle is gone.
    pub(super) async fn run(self) {
        let span = tracing::info_span!("link", terminal = %self.settings.name);
        self.run_inner().instrument(span).await;
    }

    async fn run_inner(mut self) {
        loop {
            self.set_state(LinkState::Connecting);
            self.publish();
            let connected = tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                c = connect(&self.settings.transport) => c,
            };
            let end = match connected {
                Ok(Connection::Tcp(stream)) => self.connection(stream).await,
                Ok(Connection::Serial(port)) => self.connection(port).await,
                Err(error) => End::Lost(error),
            };
            let End::Lost(error) = end else { break };
            warn!(%error, "link down");
            self.status.last_error = Some(error);
            self.set_state(LinkState::Down);
            if !self.wait_backoff().await {
                break;
            }
        }
        self.finish();
    }

    /// Waits out the reconnect backoff, taking in requests meanwhile. False when the link is to stop.
    async fn wait_backoff(&mut self) -> bool {
        let wait = backoff(self.attempt, self.settings.reconnect_min, self.settings.reconnect_max);
        self.attempt = self.attempt.saturating_add(1);
        debug!(?wait, attempt = self.attempt, "reconnecting after backoff");
        let until = Instant::now() + wait;
        loop {
            self.expire_queued();
            self.publish();
            self.deliver();
            let expiry = self.next_expiry();
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return false,
                _ = sleep_until(until) => return true,
                _ = sleep_opt(expiry) => {}
                job = self.jobs.recv(), if self.jobs_open => {
                    if !self.take_job(job) {
                        return false;
                    }
                }
            }
        }
    }

    /// Queues a job from the channel; false when the channel closed (every handle dropped).
    fn take_job(&mut self, job: Option<Job>) -> bool {
        match job {
            Some(job) => {
                self.queue.push_back(job);
                true
            }
            None => {
                self.jobs_open = false;
                false
            }
        }
    }

    /// One connection, from sign-in until it is lost or the link stops. Generic over the transport so
    /// TCP, serial and in-memory streams run the same code.
    async fn connection<S: AsyncRead + AsyncWrite + Unpin>(&mut self, mut io: S) -> End {
        self.status.connects += 1;
        self.sign_in_due = true;
        self.set_state(LinkState::SigningIn);
        self.last_activity = Instant::now();
        info!(connects = self.status.connects, "connected; signing in");
        let mut buf = vec![0u8; READ_CHUNK];
        let end = loop {
            if let Some(error) = self.step() {
                break End::Lost(error);
            }
            if let Err(error) = self.flush(&mut io).await {
                break End::Lost(error);
            }
            self.publish();
            self.deliver();
            let deadline = self.ecr.poll_timeout().map(Instant::from_std);
            let heartbeat = self.heartbeat_due();
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => break End::Stop,
                read = io.read(&mut buf) => match read {
                    Ok(0) => break End::Lost("connection closed by the terminal".to_owned()),
                    Ok(n) => {
                        self.last_activity = Instant::now();
                        self.ecr.handle_input(self.last_activity.into_std(), buf.get(..n).unwrap_or_default());
                    }
                    Err(e) => break End::Lost(format!("read failed: {e}")),
                },
                _ = sleep_opt(deadline) => self.ecr.handle_timeout(Instant::now().into_std()),
                _ = sleep_opt(self.next_expiry()) => {}
                _ = sleep_opt(heartbeat) => {
                    self.last_activity = Instant::now();
                    if let Err(error) = self.ecr.send_probe(self.last_activity.into_std()) {
                        debug!(%error, "no heartbeat probe");
                    }
                }
                job = self.jobs.recv(), if self.jobs_open => {
                    if !self.take_job(job) {
                        break End::Stop;
                    }
                }
            }
        };
        if let End::Lost(error) = &end {
            // Ends the exchange in flight (ConnectionLost) and resets the link for the next connection.
            warn!(%error, "link lost");
            self.ecr.connection_lost();
            self.sign_in_due = true;
            // Events only: nothing may be started on a connection that is gone.
            let _ = self.drain_events();
            self.publish();
            self.deliver();
        }
        end
    }

    /// Answers `NotSent` to every queued request whose start deadline has passed.
    fn expire_queued(&mut self) {
        let now = Instant::now();
        if !self.queue.iter().any(|j| j.out.start_by.is_some_and(|t| t <= now)) {
            return;
        }
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for job in std::mem::take(&mut self.queue) {
            if job.out.start_by.is_some_and(|t| t <= now) {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                warn!(kind = %job.out.body.message_type(), "request not started by its deadline; dropped unsent");
                let result = ExchangeResult::NotSent(
                    "not started in time: the terminal was busy with other requests or the link was down".to_owned(),
                );
                self.deliveries.push(Delivery::Done(job.done, result));
            } else {
                kept.push_back(job);
            }
        }
        self.queue = kept;
    }

    /// The earliest start deadline of a queued request.
    fn next_expiry(&self) -> Option<Instant> {
        self.queue.iter().filter_map(|j| j.out.start_by).min()
    }

    /// When the idle link is due for an ENQ probe.
    fn heartbeat_due(&self) -> Option<Instant> {
        let idle = self.status.state == LinkState::Ready
            && self.current.is_none()
            && self.queue.is_empty()
            && self.ecr.is_idle();
        idle.then(|| self.last_activity + self.settings.heartbeat)
    }

    /// Takes the Ecr's events, then starts what is due. Returns why the connection must be dropped.
    fn step(&mut self) -> Option<String> {
        self.expire_queued();
        loop {
            if let Some(error) = self.drain_events() {
                return Some(error);
            }
            self.note_acked();
            if self.current.is_some() || !self.ecr.is_idle() {
                return None;
            }
            if self.sign_in_due {
                if let Err(error) = self.start_sign_in() {
                    return Some(error);
                }
                return None;
            }
            if self.status.state != LinkState::Ready {
                return None;
            }
            let job = self.queue.pop_front()?;
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.start_job(job);
        }
    }

    fn start_sign_in(&mut self) -> Result<(), String> {
        let request = self.request(self.system_operator, RequestBody::SignIn, Memo::new());
        let now = Instant::now();
        match self.ecr.start(now.into_std(), request) {
            Ok(token) => {
                debug!(%token, "SIGN_IN sent");
                self.last_activity = now;
                self.sign_in_due = false;
                self.current = Some(Current::SignIn);
                self.set_state(LinkState::SigningIn);
                Ok(())
            }
            Err(e) => Err(format!("cannot start SIGN_IN: {e}")),
        }
    }

    /// Starts a caller's request, or answers it at once when it cannot be sent.
    fn start_job(&mut self, job: Job) {
        if job.done.is_closed() {
            debug!(kind = %job.out.body.message_type(), "request dropped by its caller before it was sent");
            return;
        }
        let request = self.request(job.out.operator, job.out.body, job.out.memo.clone());
        let kind = request.message_type();
        let now = Instant::now();
        match self.ecr.start(now.into_std(), request) {
            Ok(token) => {
                debug!(%kind, %token, "request sent");
                self.last_activity = now;
                self.current = Some(Current::User(Box::new(job)));
            }
            Err(StartError::Busy) => {
                // Not reached: jobs start only when the Ecr is idle. Keep the job for the next turn.
                self.queued.fetch_add(1, Ordering::AcqRel);
                self.queue.push_front(job);
            }
            Err(error) => {
                warn!(%kind, %error, "request refused before sending");
                self.deliveries.push(Delivery::Done(job.done, ExchangeResult::NotSent(error.to_string())));
            }
        }
    }

    fn request(&self, operator: OperatorId, body: RequestBody, memo: Memo) -> Request {
        // The Ecr replaces the token with its own.
        Request { token: Token::MIN, till: self.settings.till, operator, body, memo }
    }

    /// Fires `acked` of the request in flight once the terminal ACKed its frame.
    fn note_acked(&mut self) {
        if let Some(Current::User(job)) = &mut self.current {
            if self.ecr.in_flight().is_some() && !self.ecr.link().is_awaiting_ack() {
                if let Some(acked) = job.acked.take() {
                    self.deliveries.push(Delivery::Acked(acked));
                }
            }
        }
    }

    /// Handles every event the Ecr holds. Returns why the connection must be dropped, if it must.
    fn drain_events(&mut self) -> Option<String> {
        let mut lost = None;
        while let Some(event) = self.ecr.poll_event() {
            if let Some(error) = self.on_event(event) {
                lost.get_or_insert(error);
            }
        }
        let resends = self.ecr.stats().link.resends;
        if resends > self.resends_seen {
            let kind = self.ecr.in_flight().map(|r| r.message_type().name());
            info!(kind, resends = resends - self.resends_seen, total = resends, "frame resent (NAK or no ACK)");
            self.resends_seen = resends;
        }
        lost
    }

    fn on_event(&mut self, event: EcrEvent) -> Option<String> {
        match event {
            EcrEvent::Answered { request, response } => {
                self.last_activity = Instant::now();
                self.on_answered(&request, response)
            }
            EcrEvent::OutcomeUnknown { request, reason } => {
                self.last_activity = Instant::now();
                warn!(kind = %request.message_type(), token = %request.token, %reason, "outcome unknown; QUERY it");
                log_reason(&request, &reason);
                self.end_current(ExchangeResult::OutcomeUnknown(reason.clone()));
                link_broken(&reason)
            }
            EcrEvent::Failed { request, reason } => {
                self.last_activity = Instant::now();
                warn!(kind = %request.message_type(), token = %request.token, %reason, "exchange failed");
                log_reason(&request, &reason);
                match self.current.take() {
                    Some(Current::SignIn) => Some(format!("SIGN_IN failed: {reason}")),
                    other => {
                        self.current = other;
                        self.end_current(ExchangeResult::Failed(reason.clone()));
                        link_broken(&reason)
                    }
                }
            }
            EcrEvent::StaleResponse { token } => {
                warn!(token = token.map(|t| t.get()), "stale response discarded");
                None
            }
            EcrEvent::ProbeAnswered => {
                debug!("heartbeat answered");
                None
            }
            EcrEvent::ProbeLost => Some("heartbeat ENQ unanswered".to_owned()),
            _ => None,
        }
    }

    fn on_answered(&mut self, request: &Request, response: Box<Response>) -> Option<String> {
        let kind = request.message_type();
        let code = response.code;
        debug!(%kind, token = %request.token, %code, "answered");
        if code.is_approved() {
            self.record(kind, &response);
        }
        match self.current.take() {
            Some(Current::SignIn) => {
                if !code.is_approved() {
                    let text = response.text.as_str().to_owned();
                    return Some(format!("SIGN_IN answered {code} {text}"));
                }
                self.status.session += 1;
                self.attempt = 0;
                self.set_state(LinkState::Ready);
                info!(session = self.status.session, terminal_id = response.terminal.as_str(), "signed in; ready");
                None
            }
            Some(Current::User(mut job)) => {
                if let Some(acked) = job.acked.take() {
                    self.deliveries.push(Delivery::Acked(acked));
                }
                if code == ResponseCode::NOT_SIGNED_IN {
                    warn!(%kind, token = %request.token, %code, "terminal not signed in; signing in again");
                    self.sign_in_due = true;
                    self.set_state(LinkState::SigningIn);
                    let repeatable = matches!(kind, MessageType::Query | MessageType::Status | MessageType::Settle);
                    if repeatable && !job.retried {
                        job.retried = true;
                        self.queued.fetch_add(1, Ordering::AcqRel);
                        self.queue.push_front(*job);
                        return None;
                    }
                }
                self.deliveries.push(Delivery::Done(job.done, ExchangeResult::Answered(response)));
                None
            }
            None => None,
        }
    }

    /// Keeps what SIGN_IN, STATUS and SETTLE answers say about the terminal.
    fn record(&mut self, kind: MessageType, response: &Response) {
        let batch = match kind {
            MessageType::SignIn | MessageType::Status => response.batch,
            // SETTLE answers the batch it closed; the terminal has opened the next one.
            MessageType::Settle => next_batch(response.batch),
            _ => return,
        };
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        self.status.terminal_id = non_empty(response.terminal.as_str()).or(self.status.terminal_id.take());
        self.status.merchant_id = non_empty(response.merchant.as_str()).or(self.status.merchant_id.take());
        self.status.batch = Some(batch.as_str().to_owned());
    }

    /// Ends the caller's exchange in flight with `result`.
    fn end_current(&mut self, result: ExchangeResult) {
        match self.current.take() {
            Some(Current::User(job)) => self.deliveries.push(Delivery::Done(job.done, result)),
            other => self.current = other,
        }
    }

    /// Writes what the Ecr has to send, each write bounded by [`WRITE_TIMEOUT`].
    async fn flush<S: AsyncWrite + Unpin>(&mut self, io: &mut S) -> Result<(), String> {
        while let Some(bytes) = self.ecr.poll_transmit() {
            let write = async {
                io.write_all(&bytes).await?;
                io.flush().await
            };
            match timeout(WRITE_TIMEOUT, write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("write failed: {e}")),
                Err(_) => return Err(format!("write blocked for {WRITE_TIMEOUT:?}")),
            }
        }
        Ok(())
    }

    fn set_state(&mut self, state: LinkState) {
        self.status.state = state;
    }

    /// Publishes the status if it changed.
    fn publish(&mut self) {
        self.status.set_stats(&self.ecr.stats());
        self.status.queued = self.queued.load(Ordering::Acquire);
        self.status.in_flight = self.ecr.in_flight().map(|r| r.message_type().name().to_owned());
        let new = &self.status;
        self.status_tx.send_if_modified(|s| {
            if s == new {
                false
            } else {
                s.clone_from(new);
                true
            }
        });
    }

    /// Tells the callers, after the status they may look at is published.
    fn deliver(&mut self) {
        for delivery in self.deliveries.drain(..) {
            // A caller that dropped its receiver no longer cares.
            match delivery {
                Delivery::Acked(tx) => {
                    let _ = tx.send(());
                }
                Delivery::Done(tx, result) => {
                    let _ = tx.send(result);
                }
            }
        }
    }

    /// Shutting down: the exchange in flight is aborted, queued requests end unsent, the status says
    /// `down`. Dropping `self` afterwards closes the status channel, which ends `shutdown()`'s wait.
    fn finish(mut self) {
        info!("link stopping");
        self.ecr.abort();
        let _ = self.drain_events();
        self.jobs.close();
        while let Ok(job) = self.jobs.try_recv() {
            self.queue.push_back(job);
        }
        for job in std::mem::take(&mut self.queue) {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            let result = ExchangeResult::NotSent("the terminal link is shutting down".to_owned());
            self.deliveries.push(Delivery::Done(job.done, result));
        }
        self.set_state(LinkState::Down);
        self.publish();
        self.deliver();
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => pending().await,
    }
}

/// Failures after which the connection cannot be trusted: the terminal stopped ACKing.
fn link_broken(reason: &FailureReason) -> Option<String> {
    matches!(reason, FailureReason::LinkLost).then(|| reason.to_string())
}

/// The detail of a failure worth its own log line: a malformed response names the field and offset.
fn log_reason(request: &Request, reason: &FailureReason) {
    if let FailureReason::MalformedResponse(error) = reason {
        warn!(
            kind = %request.message_type(),
            token = %request.token,
            field = %error.field,
            offset = error.offset,
            %error,
            "malformed response"
        );
    }
}

/// The batch after `batch`, as a terminal opens it after SETTLE (999999 wraps to 000001).
fn next_batch(batch: Batch) -> Batch {
    let n = batch.value();
    let next = if n >= 999_999 { 1 } else { n + 1 };
    Batch::from_number(next).unwrap_or(batch)
}

#[cfg(test)]
mod tests {
    //! The actor over an in-memory stream, against a hand-written terminal that answers what the
    //! simulator never would: a stale response and a malformed one.

    use std::collections::VecDeque;

    use tokio::io::DuplexStream;
    use zhengjiao_protocol::link::{Link, LinkConfig, LinkEvent};
    use zhengjiao_protocol::message::{MerchantId, TerminalId};
    use zhengjiao_protocol::Ascii;

    use super::super::Outgoing;
    use super::*;

    const LIMIT: Duration = Duration::from_secs(20);

    /// Answers SIGN_IN with `00`; answers anything else with a stale response, then one with the right
    /// token whose amount field holds a letter.
    async fn odd_terminal(mut io: DuplexStream) {
        let mut link = Link::new(LinkConfig::default());
        let mut outbox: VecDeque<Vec<u8>> = VecDeque::new();
        let mut buf = [0u8; 1024];
        loop {
            while let Some(event) = link.poll_event() {
                let LinkEvent::Delivered(data) = event else { continue };
                let Ok(request) = Request::decode(&data) else { continue };
                if request.message_type() == MessageType::SignIn {
                    let mut response = Response::answering(&request, ResponseCode::APPROVED);
                    response.terminal = TerminalId::new("41000009").unwrap_or(TerminalId::EMPTY);
                    response.merchant = MerchantId::new("898410153990001").unwrap_or(MerchantId::EMPTY);
                    outbox.extend(response.encode());
                } else {
                    let stale = Response::empty(request.token.next(), request.message_type(), ResponseCode::NOT_FOUND);
                    outbox.extend(stale.encode());
                    let mut malformed =
                        Response::answering(&request, ResponseCode::APPROVED).encode().unwrap_or_default();
                    if let Some(digit) = malformed.get_mut(AMOUNT_AT) {
                        *digit = b'X';
                    }
                    outbox.push_back(malformed);
                }
            }
            if !link.is_awaiting_ack() {
                if let Some(data) = outbox.pop_front() {
                    let _ = link.send_frame(std::time::Instant::now(), &data);
                }
            }
            while let Some(bytes) = link.poll_transmit() {
                if io.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => link.handle_input(std::time::Instant::now(), buf.get(..n).unwrap_or_default()),
            }
        }
    }

    /// Offset of the amount field in a response: token 3, type 2, code 2, text 40, card 20.
    const AMOUNT_AT: usize = 67;

    #[tokio::test]
    async fn stale_and_malformed_responses_end_the_exchange_and_keep_the_link() {
        let transport = crate::config::Transport::Tcp { host: "127.0.0.1".to_owned(), port: 9 };
        let settings = LinkSettings {
            name: "T09".to_owned(),
            transport: transport.clone(),
            ecr: zhengjiao_protocol::link::EcrConfig::default(),
            till: OperatorId::new("DESK09").unwrap_or(OperatorId::EMPTY),
            heartbeat: Duration::from_secs(60),
            reconnect_min: Duration::from_millis(10),
            reconnect_max: Duration::from_millis(10),
            queue: 4,
        };
        let (jobs_tx, jobs_rx) = mpsc::channel(4);
        let queued = Arc::new(AtomicUsize::new(0));
        let (status_tx, mut status) = watch::channel(LinkStatus::new("T09", &transport));
        let stop = CancellationToken::new();
        let mut actor = Actor::new(settings, jobs_rx, Arc::clone(&queued), status_tx, stop.clone());
        let (ours, theirs) = tokio::io::duplex(4096);
        tokio::spawn(odd_terminal(theirs));
        let task = tokio::spawn(async move {
            let stopped = matches!(actor.connection(ours).await, End::Stop);
            actor.finish();
            stopped
        });

        let ready = tokio::time::timeout(LIMIT, status.wait_for(|s| s.state == LinkState::Ready)).await;
        assert!(matches!(ready.map(|r| r.map(|s| s.session)), Ok(Ok(1))));
        assert_eq!(status.borrow().terminal_id.as_deref(), Some("41000009"));

        let (done_tx, done) = oneshot::channel();
        let out = Outgoing {
            operator: OperatorId::new("C0001").unwrap_or(OperatorId::EMPTY),
            body: RequestBody::Query,
            memo: Memo::with_reference(zhengjiao_protocol::EcrReference::new("P1").unwrap_or(Ascii::EMPTY)),
            start_by: None,
        };
        queued.fetch_add(1, Ordering::AcqRel);
        let job = Job { out, acked: None, done: done_tx, retried: false };
        assert!(jobs_tx.send(job).await.is_ok());
        let result = tokio::time::timeout(LIMIT, done).await;
        let Ok(Ok(ExchangeResult::Failed(FailureReason::MalformedResponse(error)))) = result else {
            panic!("{result:?}");
        };
        assert_eq!(error.offset, AMOUNT_AT);

        let now = status.borrow().clone();
        assert_eq!((now.state, now.session, now.stale_responses, now.queued), (LinkState::Ready, 1, 1, 0));
        stop.cancel();
        assert!(matches!(tokio::time::timeout(LIMIT, task).await, Ok(Ok(true))));
        assert_eq!(status.borrow().state, LinkState::Down);
    }
}
