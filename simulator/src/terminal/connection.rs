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
use super::faults::FaultKind;
use super::runtime::{Claim, Outcome, Processed, Terminal, SWALLOW_HOLD};

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
    /// Noise to send before its first send.
    noise: Option<Vec<u8>>,
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
    /// Encoded responses waiting for the link to be free, in order.
    outbox: VecDeque<Vec<u8>>,
    in_flight: Option<InFlight>,
    held: Option<Held>,
    pending: Option<oneshot::Receiver<Processed>>,
    /// Bytes to write, in order.
    wire: VecDeque<Vec<u8>>,
    drop_requested: bool,
    links_lost: u64,
    /// ACKs the swallow-ack fault took out of the link's output.
    acks_swallowed: u64,
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
        wire: VecDeque::new(),
        drop_requested: false,
        links_lost: 0,
        acks_swallowed: 0,
    };
    let end = conn.run(io, cancel).await;
    conn.finish();
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
            // Counters first, so whoever reads them after seeing these bytes sees them counted.
            self.publish();
            tokio::select! {
                written = self.write_out(io) => {
                    if let Err(error) = written {
                        return ConnEnd::Io(error);
                    }
                }
                _ = cancel.cancelled() => return ConnEnd::Cancelled,
            }
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
                        let now = Instant::now();
                        for &byte in buf.get(..n).unwrap_or_default() {
                            self.feed(now, |link, now| link.handle_input(now, &[byte]));
                        }
                    }
                    Err(error) => return ConnEnd::Io(error),
                },
                _ = sleep_until(deadline), if deadline.is_some() => {
                    self.feed(Instant::now(), Link::handle_timeout);
                }
                processed = outcome(pending), if pending.is_some() => {
                    self.pending = None;
                    self.on_outcome(processed);
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

    /// Gives the link one input (a byte read, or its timeout), handles the events it caused and
    /// collects what it answered. Input goes in a byte at a time (the link's behaviour does not depend on
    /// how input is split), so the ACK of a delivered request frame can be told apart from others and
    /// the ENQ rule sees the terminal's state as of that byte.
    fn feed(&mut self, now: Instant, input: impl FnOnce(&mut Link, std::time::Instant)) {
        let idle = self.idle();
        self.link.set_idle(idle);
        let before = self.link.stats();
        input(&mut self.link, now.into_std());
        let after = self.link.stats();
        // Every frame delivered queued one ACK. Only when nothing else did (an ENQ answered, a duplicate
        // ACKed again, an answer dropped for want of room: possible together when a broken frame's bytes
        // are rescanned) are the ACKs in the output exactly the delivered frames', in order.
        let others = (after.enqs_answered - before.enqs_answered)
            + (after.duplicates - before.duplicates)
            + (after.controls_dropped - before.controls_dropped);
        let mut swallow = VecDeque::new();
        while let Some(event) = self.link.poll_event() {
            match event {
                LinkEvent::Delivered(data) => swallow.push_back(self.on_request(now, &data, others == 0)),
                LinkEvent::Acked => self.on_acked(),
                LinkEvent::LinkLost => {
                    tracing::warn!(terminal = self.term.cfg.index, "response never acknowledged: link lost");
                    self.links_lost += 1;
                    self.in_flight = None;
                }
                _ => {}
            }
        }
        self.collect_transmit(swallow);
    }

    /// Starts what can start and collects the bytes to write.
    fn step(&mut self, now: Instant) {
        self.release_held(now);
        self.send_next(now);
        self.collect_transmit(VecDeque::new());
    }

    /// A request frame delivered by the link. Returns whether its ACK is to be swallowed, which
    /// `can_swallow` (its ACK can be singled out) allows.
    fn on_request(&mut self, now: Instant, data: &[u8], can_swallow: bool) -> bool {
        let term = Arc::clone(&self.term);
        term.count(|t| t.counters.requests += 1);
        // Drawn for every request frame, so the draws do not depend on whether the ACK can be found.
        let swallowed = term.roll(FaultKind::SwallowAck);
        if swallowed && !can_swallow {
            tracing::info!(terminal = term.cfg.index, "fault: swallow-ack skipped, the ACK is not alone");
        }
        let swallowed = swallowed && can_swallow;
        if swallowed {
            tracing::info!(terminal = term.cfg.index, "fault: request ACK swallowed");
            term.count(|t| t.counters.faults.swallow_ack += 1);
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
                return swallowed;
            }
        };
        // A response not yet queued (its outcome still on the way, or its request held) keeps this
        // connection busy whatever the flag says: the newcomer must not take its place.
        let claim = match (&self.pending, &self.held) {
            (None, None) => term.try_claim(),
            _ => None,
        };
        let Some(claim) = claim else {
            term.count(|t| t.counters.busy += 1);
            let response = term.busy_response(&request);
            self.queue_response(&response);
            return swallowed;
        };
        if term.roll(FaultKind::NeverAnswer) {
            tracing::info!(terminal = term.cfg.index, kind = %request.message_type(), "fault: request never answered");
            term.count(|t| t.counters.faults.never_answer += 1);
            return swallowed;
        }
        if swallowed {
            let duplicates_at = self.link.stats().duplicates;
            self.held =
                Some(Held { claim, request, duplicates_at, deadline: now.checked_add(SWALLOW_HOLD).unwrap_or(now) });
        } else {
            self.pending = Some(term.start_processing(claim, request));
        }
        swallowed
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

    fn on_outcome(&mut self, processed: Result<Processed, oneshot::error::RecvError>) {
        match processed {
            // The claim goes once the response is queued, in order, for the link.
            Ok(Processed { outcome: Outcome::Respond(response), claim }) => {
                self.queue_response(&response);
                drop(claim);
            }
            Ok(Processed { outcome: Outcome::Drop, claim: _ }) => self.drop_requested = true,
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
            self.wire.push_back(wire);
        }
    }

    fn queue_response(&mut self, response: &Response) {
        let data = match response.encode() {
            Ok(data) => data,
            Err(error) => {
                tracing::error!(terminal = self.term.cfg.index, %error, "response does not encode: lost");
                self.term.count(|t| t.counters.responses_lost += 1);
                return;
            }
        };
        if self.outbox.len() >= MAX_QUEUED_RESPONSES {
            tracing::warn!(terminal = self.term.cfg.index, "response queue full: response lost");
            self.term.count(|t| t.counters.responses_lost += 1);
            return;
        }
        self.outbox.push_back(data);
    }

    /// Hands the next queued response to the link once nothing awaits an ACK, drawing its faults.
    fn send_next(&mut self, now: Instant) {
        if self.in_flight.is_some() || self.link.is_awaiting_ack() {
            return;
        }
        let Some(data) = self.outbox.pop_front() else {
            return;
        };
        match self.link.send_frame(now.into_std(), &data) {
            Ok(()) => {
                let corrupt = self.term.roll(FaultKind::CorruptCheck);
                let duplicate = self.term.roll(FaultKind::Duplicate);
                let noise = self.term.noise();
                self.in_flight = Some(InFlight { corrupt, duplicate, noise, wire: None });
                self.term.count(|t| t.counters.responses_sent += 1);
            }
            Err(error) => {
                tracing::error!(terminal = self.term.cfg.index, %error, "response refused by the link: lost");
                self.term.count(|t| t.counters.responses_lost += 1);
            }
        }
    }

    /// Moves the link's output to the write queue, applying the line faults. `swallow` says, for each
    /// request frame the last input delivered, in order, whether its ACK is to be left out.
    fn collect_transmit(&mut self, mut swallow: VecDeque<bool>) {
        while let Some(mut bytes) = self.link.poll_transmit() {
            if bytes.first() == Some(&STX) {
                self.push_response_frame(bytes);
                continue;
            }
            let mut swallowed = 0;
            bytes.retain(|&byte| {
                let keep = byte != ACK || !swallow.pop_front().unwrap_or(false);
                swallowed += u64::from(!keep);
                keep
            });
            self.acks_swallowed += swallowed;
            if !bytes.is_empty() {
                self.wire.push_back(bytes);
            }
        }
    }

    /// Queues a response frame for writing; on its first send, with the faults drawn for it.
    fn push_response_frame(&mut self, mut bytes: Vec<u8>) {
        if let Some(in_flight) = self.in_flight.as_mut().filter(|f| f.wire.is_none()) {
            in_flight.wire = Some(bytes.clone());
            if let Some(noise) = in_flight.noise.take() {
                self.term.count(|t| t.counters.faults.noise += 1);
                self.wire.push_back(noise);
            }
            if in_flight.corrupt {
                if let Some(last) = bytes.last_mut() {
                    *last ^= 0xFF;
                    tracing::info!(terminal = self.term.cfg.index, "fault: response check corrupted");
                    self.term.count(|t| t.counters.faults.corrupt_check += 1);
                }
            }
        }
        self.wire.push_back(bytes);
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
        let live = LinkCounters::from_stats(&self.link.stats(), self.links_lost, self.acks_swallowed);
        self.term.count(|t| t.live_link = live);
    }

    /// The connection ended: counts the responses that never reached the link.
    fn finish(&mut self) {
        self.publish();
        let unsent = self.outbox.len() as u64;
        if unsent > 0 {
            tracing::warn!(terminal = self.term.cfg.index, unsent, "connection ended: queued responses lost");
            self.term.count(|t| t.counters.responses_lost += unsent);
        }
        if self.held.take().is_some() {
            tracing::warn!(terminal = self.term.cfg.index, "connection ended: a held request is dropped unprocessed");
        }
    }
}

/// Sleeps until `deadline`; never returns without one (the branch is disabled then).
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn outcome(pending: &mut Option<oneshot::Receiver<Processed>>) -> Result<Processed, oneshot::error::RecvError> {
    match pending {
        Some(rx) => rx.await,
        None => std::future::pending().await,
    }
}
