//! The driver of one connection: a [`Link`] over any byte stream, driven with real time, in the
//! manner of quinn's endpoint drivers. Bytes read go to `handle_input`, `handle_timeout` runs at
//! `poll_timeout`, everything `poll_transmit` hands out is written, and `poll_event` yields requests,
//! which go to the terminal; responses come back through a queue, one frame awaiting its ACK at a time.
//! The line faults (corrupt check, swallowed ACK, noise, duplicate) are applied here, between the link
//! and the wire.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use zhengjiao_protocol::frame::{ACK, STX};
use zhengjiao_protocol::link::{Link, LinkEvent};
use zhengjiao_protocol::message::{Request, Response};

use super::counters::LinkCounters;
use super::runtime::{Claim, Outcome, Terminal, SWALLOW_HOLD};

/// The most responses waiting for their turn on one connection; more are dropped (and counted). Only a
/// peer that ignores §1 (one exchange at a time) gets there.
pub const MAX_QUEUED_RESPONSES: usize = 16;
/// Bytes read from the transport at once.
pub const READ_CHUNK: usize = 4096;
/// The longest one write may take before the connection counts as stuck and is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection ended.
#[derive(Debug)]
pub(crate) enum ConnEnd {
    /// The peer closed it.
    Closed,
    /// The terminal dropped it (approve-drop, power loss).
    Dropped,
    /// Shutdown, or a newer connection replaced it.
    Cancelled,
    /// Reading or writing failed.
    Io(io::Error),
}

/// The response frame awaiting its ACK.
#[derive(Debug)]
struct InFlight {
    /// Corrupt the check of its first send.
    corrupt: bool,
    /// Send it again once ACKed.
    duplicate: bool,
    /// The intact frame as first handed out by the link.
    wire: Option<Vec<u8>>,
}

/// A request whose ACK was swallowed, held until the ECR's resend arrives.
#[derive(Debug)]
struct Held {
    claim: Claim,
    request: Request,
    duplicates_at: u64,
    deadline: Instant,
}

struct Conn {
    term: Arc<Terminal>,
    link: Link,
    /// Encoded responses waiting for the link to be free.
    outbox: VecDeque<Vec<u8>>,
    in_flight: Option<InFlight>,
    held: Option<Held>,
    pending: Option<oneshot::Receiver<Outcome>>,
    /// ACKs still to be swallowed from the link's output.
    swallow: usize,
    /// Bytes to write, in order.
    wire: VecDeque<Vec<u8>>,
    drop_requested: bool,
    links_lost: u64,
}

/// Serves one connection until it closes, fails, is dropped by a fault or `cancel` fires. The
/// terminal's link counters include this connection's afterwards.
pub(crate) async fn serve<S>(term: &Arc<Terminal>, io: &mut S, cancel: &CancellationToken) -> ConnEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    term.count(|t| t.counters.connections += 1);
    let mut conn = Conn {
        term: Arc::clone(term),
        link: Link::new(term.cfg.link),
        outbox: VecDeque::new(),
        in_flight: None,
        held: None,
        pending: None,
        swallow: 0,
        wire: VecDeque::new(),
        drop_requested: false,
        links_lost: 0,
    };
    let end = conn.run(io, cancel).await;
    conn.publish();
    term.count(|t| {
        let live = std::mem::take(&mut t.live_link);
        t.closed_links.add(&live);
    });
    end
}

impl Conn {
    async fn run<S>(&mut self, io: &mut S, cancel: &CancellationToken) -> ConnEnd
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            self.step(Instant::now());
            tokio::select! {
                written = self.write_out(io) => {
                    if let Err(error) = written {
                        return ConnEnd::Io(error);
                    }
                }
                _ = cancel.cancelled() => return ConnEnd::Cancelled,
            }
            self.publish();
            if self.drop_requested {
                return ConnEnd::Dropped;
            }
            let deadline = self.deadline();
            let pending = &mut self.pending;
            tokio::select! {
                _ = cancel.cancelled() => return ConnEnd::Cancelled,
                read = io.read(&mut buf) => match read {
                    Ok(0) => return ConnEnd::Closed,
                    Ok(n) => {
                        let idle = self.idle();
                        self.link.set_idle(idle);
                        self.link.handle_input(Instant::now().into_std(), buf.get(..n).unwrap_or_default());
                    }
                    Err(error) => return ConnEnd::Io(error),
                },
                _ = sleep_until(deadline), if deadline.is_some() => {
                    self.link.handle_timeout(Instant::now().into_std());
                }
                outcome = outcome(pending), if pending.is_some() => {
                    self.pending = None;
                    self.on_outcome(outcome);
                }
            }
        }
    }

    /// True when no exchange is in progress on this terminal: ENQ then gets ACK (§4 rule 5).
    fn idle(&self) -> bool {
        !self.term.is_busy()
            && self.held.is_none()
            && self.pending.is_none()
            && self.outbox.is_empty()
            && self.in_flight.is_none()
    }

    fn deadline(&self) -> Option<Instant> {
        let link = self.link.poll_timeout().map(Instant::from_std);
        let held = self.held.as_ref().map(|h| h.deadline);
        match (link, held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes the link's events, starts the next response and collects the bytes to write.
    fn step(&mut self, now: Instant) {
        while let Some(event) = self.link.poll_event() {
            match event {
                LinkEvent::Delivered(data) => self.on_request(now, &data),
                LinkEvent::Acked => self.on_acked(),
                LinkEvent::LinkLost => {
                    tracing::warn!(terminal = self.term.cfg.index, "response never acknowledged: link lost");
                    self.links_lost += 1;
                    self.in_flight = None;
                }
                _ => {}
            }
        }
        self.release_held(now);
        self.send_next(now);
        self.collect_transmit();
    }

    fn on_request(&mut self, now: Instant, data: &[u8]) {
        let term = Arc::clone(&self.term);
        term.count(|t| t.counters.requests += 1);
        let swallowed = term.roll(|f| f.swallow_ack);
        if swallowed {
            tracing::info!(terminal = term.cfg.index, "fault: request ACK swallowed");
            term.count(|t| t.counters.faults.swallow_ack += 1);
            self.swallow += 1;
        }
        let request = match Request::decode(data) {
            Ok(request) => request,
            Err(error) => {
                tracing::info!(terminal = term.cfg.index, %error, "malformed request");
                match term.malformed_response(data, &error) {
                    Some(response) => {
                        term.count(|t| t.counters.malformed += 1);
                        self.queue_response(&response);
                    }
                    None => term.count(|t| t.counters.unanswerable += 1),
                }
                return;
            }
        };
        let Some(claim) = term.try_claim() else {
            term.count(|t| t.counters.busy += 1);
            let response = term.busy_response(&request);
            self.queue_response(&response);
            return;
        };
        if term.roll(|f| f.never_answer) {
            tracing::info!(terminal = term.cfg.index, kind = %request.message_type(), "fault: request never answered");
            term.count(|t| t.counters.faults.never_answer += 1);
            return;
        }
        if swallowed {
            let duplicates_at = self.link.stats().duplicates;
            self.held =
                Some(Held { claim, request, duplicates_at, deadline: now.checked_add(SWALLOW_HOLD).unwrap_or(now) });
        } else {
            self.pending = Some(term.start_processing(claim, request));
        }
    }

    /// Starts a held request once the ECR's resend was suppressed, or at the end of the hold.
    fn release_held(&mut self, now: Instant) {
        let due =
            self.held.as_ref().is_some_and(|h| self.link.stats().duplicates > h.duplicates_at || now >= h.deadline);
        if !due {
            return;
        }
        if let Some(Held { claim, request, .. }) = self.held.take() {
            self.pending = Some(self.term.start_processing(claim, request));
        }
    }

    fn on_outcome(&mut self, outcome: Result<Outcome, oneshot::error::RecvError>) {
        match outcome {
            Ok(Outcome::Respond(response)) => self.queue_response(&response),
            Ok(Outcome::Drop) => self.drop_requested = true,
            // Shutdown cut the processing short.
            Err(_) => {}
        }
    }

    fn on_acked(&mut self) {
        let Some(in_flight) = self.in_flight.take() else {
            return;
        };
        if let (true, Some(wire)) = (in_flight.duplicate, in_flight.wire) {
            tracing::info!(terminal = self.term.cfg.index, "fault: response sent twice");
            self.term.count(|t| t.counters.faults.duplicate += 1);
            self.push_frame(wire);
        }
    }

    fn queue_response(&mut self, response: &Response) {
        let data = match response.encode() {
            Ok(data) => data,
            Err(error) => {
                tracing::error!(terminal = self.term.cfg.index, %error, "response does not encode");
                return;
            }
        };
        if self.outbox.len() >= MAX_QUEUED_RESPONSES {
            tracing::warn!(terminal = self.term.cfg.index, "response queue full: response dropped");
            self.term.count(|t| t.counters.responses_lost += 1);
            return;
        }
        self.outbox.push_back(data);
    }

    /// Hands the next queued response to the link once nothing awaits an ACK.
    fn send_next(&mut self, now: Instant) {
        if self.in_flight.is_some() || self.link.is_awaiting_ack() {
            return;
        }
        let Some(data) = self.outbox.pop_front() else {
            return;
        };
        match self.link.send_frame(now.into_std(), &data) {
            Ok(()) => {
                let corrupt = self.term.roll(|f| f.corrupt_check);
                let duplicate = self.term.roll(|f| f.duplicate);
                self.in_flight = Some(InFlight { corrupt, duplicate, wire: None });
                self.term.count(|t| t.counters.responses_sent += 1);
            }
            Err(error) => tracing::error!(terminal = self.term.cfg.index, %error, "response refused by the link"),
        }
    }

    /// Moves the link's output to the write queue, applying the line faults.
    fn collect_transmit(&mut self) {
        while let Some(mut bytes) = self.link.poll_transmit() {
            if bytes.first() == Some(&STX) {
                if let Some(in_flight) = &mut self.in_flight {
                    if in_flight.wire.is_none() {
                        in_flight.wire = Some(bytes.clone());
                        if in_flight.corrupt {
                            if let Some(last) = bytes.last_mut() {
                                *last ^= 0xFF;
                                tracing::info!(terminal = self.term.cfg.index, "fault: response check corrupted");
                                self.term.count(|t| t.counters.faults.corrupt_check += 1);
                            }
                        }
                    }
                }
                self.push_frame(bytes);
            } else {
                while self.swallow > 0 {
                    let Some(at) = bytes.iter().position(|&b| b == ACK) else {
                        break;
                    };
                    bytes.remove(at);
                    self.swallow -= 1;
                }
                if !bytes.is_empty() {
                    self.wire.push_back(bytes);
                }
            }
        }
        // The ACK of a swallowed frame is queued by the same input that delivered it; anything left
        // over was never queued (the link's answer queue was full) and must not eat a later ACK.
        self.swallow = 0;
    }

    /// Queues a frame for writing, with a burst of noise before it when the noise fault strikes.
    fn push_frame(&mut self, frame: Vec<u8>) {
        if self.term.roll(|f| f.noise) {
            self.term.count(|t| t.counters.faults.noise += 1);
            self.wire.push_back(self.term.noise());
        }
        self.wire.push_back(frame);
    }

    async fn write_out<S: AsyncWrite + Unpin>(&mut self, io: &mut S) -> io::Result<()> {
        if self.wire.is_empty() {
            return Ok(());
        }
        let write = async {
            while let Some(bytes) = self.wire.pop_front() {
                io.write_all(&bytes).await?;
            }
            io.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write stuck: the peer does not read")),
        }
    }

    /// Makes this connection's link counters visible to the control surface.
    fn publish(&self) {
        let live = LinkCounters::from_stats(&self.link.stats(), self.links_lost);
        self.term.count(|t| t.live_link = live);
    }
}

/// Sleeps until `deadline`; never returns without one (the branch is disabled then).
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn outcome(pending: &mut Option<oneshot::Receiver<Outcome>>) -> Result<Outcome, oneshot::error::RecvError> {
    match pending {
        Some(rx) => rx.await,
        None => std::future::pending().await,
    }
}
