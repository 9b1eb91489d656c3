//! The link state machine (链路层), wire-protocol.md §4, sans-IO in the manner of quinn-proto.
//!
//! Nothing here owns a socket, a serial port or a clock. The driver (the async wrapper in the daemon, the
//! terminal simulator, a test harness) feeds received bytes and the current time in through `handle_*`
//! calls and takes bytes to write, the next deadline and events out through `poll_*` calls.
//!
//! Two layers:
//! - [`Link`]: frames and control bytes, symmetric (rules 1-5): ACK/NAK, resends, duplicate suppression,
//!   ENQ, the T_gap rule for partial frames. Used by the ECR (收银机) side and by the terminal (终端)
//!   simulator alike.
//! - [`Ecr`]: one request/response exchange at a time on top of a [`Link`], ECR side (rules 6-7, §5.2):
//!   tokens, response timeouts (应答超时), stale responses and the explicit "outcome unknown" result for
//!   money requests.
//!
//! Every queue has a named bound ([`MAX_QUEUED_CONTROLS`], [`MAX_QUEUED_EVENTS`],
//! [`MAX_UNKNOWN_REFERENCES`]), so a hostile or broken peer cannot make memory grow, however many bytes it
//! sends and however rarely the driver polls.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::frame::{encode_frame_into, Control, DataLenError, Event, FrameConfig, FrameDecoder, ACK, ENQ, NAK};

mod ecr;

pub use ecr::{
    Ecr, EcrConfig, EcrEvent, EcrStats, FailureReason, ResponseTimeouts, StartError, UnknownSetFull,
    MAX_UNKNOWN_REFERENCES,
};

/// T_ack, how long a sender waits for ACK (§4 rule 3).
pub const DEFAULT_T_ACK: Duration = Duration::from_millis(1000);
/// Resends after the first send before the link counts as lost (§4 rule 3): 4 sends in all.
pub const DEFAULT_MAX_RESENDS: u8 = 3;
/// T_gap, the silence after which a partial frame is dropped (§4 rule 2).
pub const DEFAULT_T_GAP: Duration = Duration::from_millis(500);

/// The most ACK/NAK answers a [`Link`] holds for transmit. Answers beyond it are dropped and counted
/// ([`LinkStats::controls_dropped`]): a driver that does not write is not sending anything anyway, and a
/// peer that misses an answer resends or probes again.
pub const MAX_QUEUED_CONTROLS: usize = 32;
/// The most events a [`Link`] or an [`Ecr`] holds for the owner. A well-formed new frame arriving while
/// a [`Link`]'s queue is full is NAKed instead of ACKed (the peer resends it later), so nothing is lost;
/// an [`Ecr`] drops [`EcrEvent::StaleResponse`] notices beyond it (they are still counted).
pub const MAX_QUEUED_EVENTS: usize = 64;
/// Received bytes are fed to the frame decoder in pieces of at most this size, so the decoder's buffer
/// ([`Backlog::input_bytes`]) holds at most one partial frame plus one piece, however large a single
/// [`Link::handle_input`] call is.
pub const INPUT_PIECE: usize = 1024;

/// Settings of a [`Link`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkConfig {
    /// Framing: check dialect and the largest LEN accepted.
    pub frame: FrameConfig,
    /// T_ack: how long to wait for ACK before resending (§4 rule 3). Default 1000 ms.
    pub t_ack: Duration,
    /// Resends after the first send; after the last one goes unanswered the link is lost. Default 3.
    pub max_resends: u8,
    /// T_gap: silence after which a partial frame is dropped and NAKed (§4 rule 2). Default 500 ms.
    pub t_gap: Duration,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            frame: FrameConfig::default(),
            t_ack: DEFAULT_T_ACK,
            max_resends: DEFAULT_MAX_RESENDS,
            t_gap: DEFAULT_T_GAP,
        }
    }
}

/// Something the [`Link`] reports to its owner, taken with [`Link::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkEvent {
    /// The DATA of a well-formed frame, already ACKed; each frame is delivered once (§4 rules 1, 4).
    Delivered(Vec<u8>),
    /// The peer ACKed the frame given to [`Link::send_frame`].
    Acked,
    /// The peer answered the ENQ of [`Link::send_probe`] with ACK (§4 rule 5).
    ProbeAnswered,
    /// The frame or ENQ awaiting ACK went unanswered (or NAKed) through every resend: "link lost"
    /// (§4 rule 3). The link stops waiting and withdraws any copy not yet handed out for transmit; the
    /// owner decides what follows.
    LinkLost,
}

/// Why a [`Link`] refused to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// A frame or probe already awaits its ACK; one at a time.
    #[error("a frame or probe already awaits its ACK")]
    Busy,
    /// The DATA does not fit a frame (1..=9999 bytes).
    #[error(transparent)]
    DataLen(#[from] DataLenError),
}

/// Counters kept by a [`Link`], cumulative across [`Link::reset`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkStats {
    /// Well-formed frames received (delivered, duplicates and refused alike).
    pub frames_received: u64,
    /// Frames delivered to the owner.
    pub frames_delivered: u64,
    /// Frames sent with [`Link::send_frame`], first sends only.
    pub frames_sent: u64,
    /// ENQ probes sent with [`Link::send_probe`], first sends only.
    pub probes_sent: u64,
    /// Resends of a frame or ENQ, after NAK or T_ack (§4 rule 3).
    pub resends: u64,
    /// ACKs queued: for frames and for ENQs.
    pub acks_sent: u64,
    /// NAKs queued: for broken frames and refused frames.
    pub naks_sent: u64,
    /// NAKs received, expected or not.
    pub naks_received: u64,
    /// Frames byte-identical to the last one delivered, ACKed again and not delivered (§4 rule 4).
    pub duplicates: u64,
    /// Broken frames: bad check, no ETX, bad LEN, or partial at T_gap (§4 rule 2).
    pub broken_frames: u64,
    /// Bytes skipped as noise outside frames (§3).
    pub noise_bytes: u64,
    /// ENQs answered with ACK while idle (§4 rule 5).
    pub enqs_answered: u64,
    /// ENQs left unanswered because the owner was not idle.
    pub enqs_ignored: u64,
    /// ACKs or NAKs received while nothing awaited one.
    pub stray_controls: u64,
    /// ACK/NAK answers dropped because [`MAX_QUEUED_CONTROLS`] were already waiting for transmit.
    pub controls_dropped: u64,
    /// New frames NAKed because [`MAX_QUEUED_EVENTS`] events were waiting for the owner.
    pub frames_refused: u64,
}

/// How much a [`Link`] holds right now; each figure has a named bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backlog {
    /// Bytes queued for transmit: at most [`MAX_QUEUED_CONTROLS`] answers, one ENQ and the frames the
    /// owner sent.
    pub transmit_bytes: usize,
    /// ACK/NAK answers among them, at most [`MAX_QUEUED_CONTROLS`].
    pub queued_controls: usize,
    /// Events waiting for [`Link::poll_event`]; peer-caused ones at most [`MAX_QUEUED_EVENTS`].
    pub events: usize,
    /// Received bytes held by the frame decoder: at most one partial frame (`max_data_len` + 6) plus
    /// [`INPUT_PIECE`].
    pub input_bytes: usize,
}

/// What awaits an ACK.
#[derive(Debug, Clone)]
enum Awaited {
    /// A frame, with its exact bytes for resending.
    Frame(Vec<u8>),
    /// An ENQ probe.
    Probe,
}

#[derive(Debug, Clone)]
struct Pending {
    awaited: Awaited,
    /// Sends so far, the first included.
    sends: u16,
    /// When T_ack expires; `None` if the configured T_ack is beyond what `Instant` can hold.
    deadline: Option<Instant>,
    /// True once a copy has been handed out by `poll_transmit`.
    written: bool,
}

/// One item queued for transmit.
#[derive(Debug, Clone)]
enum Out {
    Control(u8),
    Frame(Vec<u8>),
}

/// The frame-level link of §4 (rules 1-5), symmetric: the ECR and the terminal run the same machine.
///
/// # Driver contract
/// Inputs:
/// - [`handle_input(now, bytes)`](Self::handle_input) with every chunk read from the transport;
/// - [`handle_timeout(now)`](Self::handle_timeout) once `now` reaches [`poll_timeout`](Self::poll_timeout)
///   (calling it early or repeatedly is harmless);
/// - the owner's commands [`send_frame`](Self::send_frame), [`send_probe`](Self::send_probe),
///   [`cancel_pending`](Self::cancel_pending), [`set_idle`](Self::set_idle), [`reset`](Self::reset).
///
/// After each input, drain the outputs: write everything [`poll_transmit`](Self::poll_transmit) returns,
/// in order, until `None`; take events with [`poll_event`](Self::poll_event) until `None`; then sleep
/// until the new [`poll_timeout`](Self::poll_timeout) or the next input, whichever comes first. After
/// `handle_timeout(now)`, `poll_timeout()` is later than `now` (or `None`), so this loop settles; with a
/// zero T_ack it may equal `now`, and the resend budget still ends the loop after `max_resends` calls.
/// Call [`reset`](Self::reset) when the transport reconnects.
///
/// T_ack runs from the [`send_frame`](Self::send_frame) call, so write promptly.
#[derive(Debug, Clone)]
pub struct Link {
    cfg: LinkConfig,
    decoder: FrameDecoder,
    transmit: VecDeque<Out>,
    queued_controls: usize,
    events: VecDeque<LinkEvent>,
    pending: Option<Pending>,
    /// DATA of the last frame delivered, for duplicate suppression (§4 rule 4).
    last_delivered: Option<Vec<u8>>,
    /// When bytes last arrived, for T_gap.
    last_input: Option<Instant>,
    idle: bool,
    stats: LinkStats,
    /// Noise and broken counts of decoders replaced by `reset`.
    retired: crate::frame::DecoderStats,
}

impl Link {
    /// A link with nothing pending, idle.
    pub fn new(cfg: LinkConfig) -> Self {
        Link {
            cfg,
            decoder: FrameDecoder::new(cfg.frame),
            transmit: VecDeque::new(),
            queued_controls: 0,
            events: VecDeque::new(),
            pending: None,
            last_delivered: None,
            last_input: None,
            idle: true,
            stats: LinkStats::default(),
            retired: crate::frame::DecoderStats::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &LinkConfig {
        &self.cfg
    }

    /// Says whether the owner is idle, i.e. whether an ENQ gets ACK (§4 rule 5). Idle by default.
    pub fn set_idle(&mut self, idle: bool) {
        self.idle = idle;
    }

    /// True when ENQs are answered.
    pub fn is_idle(&self) -> bool {
        self.idle
    }

    /// True while a frame or ENQ of ours awaits its ACK.
    pub fn is_awaiting_ack(&self) -> bool {
        self.pending.is_some()
    }

    /// Input: bytes read from the transport at `now`.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.last_input = Some(now);
        for piece in bytes.chunks(INPUT_PIECE) {
            self.decoder.push(piece);
            self.drain_decoder(now);
        }
    }

    /// Input: time has reached `now`. Drops a partial frame after T_gap of silence (NAKing it and
    /// rescanning the bytes behind its STX), and resends or gives up on an unanswered frame or ENQ.
    pub fn handle_timeout(&mut self, now: Instant) {
        // The gap first: an ACK held behind a partial frame makes a resend unnecessary.
        while self.gap_due(now) {
            self.decoder.gap();
            self.drain_decoder(now);
        }
        if self.pending.as_ref().and_then(|p| p.deadline).is_some_and(|deadline| now >= deadline) {
            self.retry(now);
        }
    }

    /// Command: sends a frame carrying `data` and waits T_ack for its ACK, resending on NAK or T_ack
    /// expiry up to `max_resends` times, then reporting [`LinkEvent::Acked`] or [`LinkEvent::LinkLost`].
    pub fn send_frame(&mut self, now: Instant, data: &[u8]) -> Result<(), LinkError> {
        if self.pending.is_some() {
            return Err(LinkError::Busy);
        }
        let mut bytes = Vec::new();
        encode_frame_into(data, self.cfg.frame.check, &mut bytes)?;
        self.transmit.push_back(Out::Frame(bytes.clone()));
        self.await_ack(now, Awaited::Frame(bytes));
        self.stats.frames_sent += 1;
        Ok(())
    }

    /// Command: sends ENQ and waits T_ack for ACK with the same resend rule as frames, then reports
    /// [`LinkEvent::ProbeAnswered`] or [`LinkEvent::LinkLost`] (§4 rule 5).
    pub fn send_probe(&mut self, now: Instant) -> Result<(), LinkError> {
        if self.pending.is_some() {
            return Err(LinkError::Busy);
        }
        self.transmit.push_back(Out::Control(ENQ));
        self.await_ack(now, Awaited::Probe);
        self.stats.probes_sent += 1;
        Ok(())
    }

    /// Command: stops waiting for the ACK of the current frame or ENQ, and withdraws any copy of it not
    /// yet handed out by [`poll_transmit`](Self::poll_transmit). Used when the response arrives before
    /// the ACK (which proves the request arrived) or when the owner gives up. Returns whether anything
    /// was pending.
    pub fn cancel_pending(&mut self) -> bool {
        let Some(pending) = self.pending.take() else {
            return false;
        };
        self.withdraw(&pending.awaited);
        true
    }

    /// Command: the transport reconnected. Starts over with a fresh decoder, no duplicate memory, nothing
    /// pending, nothing queued for transmit and no events. Keeps the settings, the idle flag and the
    /// counters.
    pub fn reset(&mut self) {
        let old = std::mem::replace(&mut self.decoder, FrameDecoder::new(self.cfg.frame)).stats();
        self.retired.noise_bytes += old.noise_bytes;
        self.retired.broken += old.broken;
        self.transmit.clear();
        self.queued_controls = 0;
        self.events.clear();
        self.pending = None;
        self.last_delivered = None;
        self.last_input = None;
    }

    /// Output: the next bytes to write, in order; `None` when there are none. Each call returns either
    /// one whole frame or a run of control bytes.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        match self.transmit.pop_front()? {
            Out::Frame(bytes) => {
                if let Some(pending) = &mut self.pending {
                    if matches!(&pending.awaited, Awaited::Frame(f) if *f == bytes) {
                        pending.written = true;
                    }
                }
                Some(bytes)
            }
            Out::Control(byte) => {
                let mut out = vec![byte];
                self.note_control_out(byte);
                while let Some(&Out::Control(byte)) = self.transmit.front() {
                    self.transmit.pop_front();
                    self.note_control_out(byte);
                    out.push(byte);
                }
                Some(out)
            }
        }
    }

    /// Output: when [`handle_timeout`](Self::handle_timeout) is next due: the earlier of the T_ack
    /// deadline and, while a partial frame is held, the end of T_gap after the last input.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ack = self.pending.as_ref().and_then(|p| p.deadline);
        let gap = self.gap_deadline();
        match (ack, gap) {
            (Some(a), Some(g)) => Some(a.min(g)),
            (a, g) => a.or(g),
        }
    }

    /// Output: the next event for the owner.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// The counters so far.
    pub fn stats(&self) -> LinkStats {
        let decoder = self.decoder.stats();
        LinkStats {
            noise_bytes: self.retired.noise_bytes + decoder.noise_bytes,
            broken_frames: self.retired.broken + decoder.broken,
            ..self.stats
        }
    }

    /// How much is held right now.
    pub fn backlog(&self) -> Backlog {
        Backlog {
            transmit_bytes: self
                .transmit
                .iter()
                .map(|out| match out {
                    Out::Control(_) => 1,
                    Out::Frame(bytes) => bytes.len(),
                })
                .sum(),
            queued_controls: self.queued_controls,
            events: self.events.len(),
            input_bytes: self.decoder.buffered(),
        }
    }

    /// True when the frame awaiting ACK has been handed out by `poll_transmit` at least once.
    fn pending_frame_written(&self) -> bool {
        self.pending.as_ref().is_some_and(|p| p.written && matches!(p.awaited, Awaited::Frame(_)))
    }

    fn await_ack(&mut self, now: Instant, awaited: Awaited) {
        self.pending = Some(Pending { awaited, sends: 1, deadline: now.checked_add(self.cfg.t_ack), written: false });
    }

    fn gap_deadline(&self) -> Option<Instant> {
        if !self.decoder.has_partial() {
            return None;
        }
        self.last_input.and_then(|t| t.checked_add(self.cfg.t_gap))
    }

    fn gap_due(&self, now: Instant) -> bool {
        self.gap_deadline().is_some_and(|deadline| now >= deadline)
    }

    fn drain_decoder(&mut self, now: Instant) {
        while let Some(event) = self.decoder.next_event() {
            match event {
                Event::Frame { data, .. } => self.on_frame(data),
                Event::Control { control, .. } => self.on_control(now, control),
                Event::Broken { .. } => {
                    self.queue_answer(NAK);
                }
            }
        }
    }

    fn on_frame(&mut self, data: Vec<u8>) {
        self.stats.frames_received += 1;
        if self.last_delivered.as_deref() == Some(data.as_slice()) {
            // Rule 4: our ACK was lost and the peer resent.
            self.stats.duplicates += 1;
            self.queue_answer(ACK);
            return;
        }
        if self.events.len() >= MAX_QUEUED_EVENTS {
            // The owner is not keeping up: refuse the frame so the peer resends it later.
            self.stats.frames_refused += 1;
            self.queue_answer(NAK);
            return;
        }
        // Rule 1: ACK first, then deliver once. Delivered even if the ACK was dropped for want of room:
        // the peer then resends and gets its ACK as a duplicate.
        self.queue_answer(ACK);
        self.stats.frames_delivered += 1;
        self.last_delivered = Some(data.clone());
        self.events.push_back(LinkEvent::Delivered(data));
    }

    fn on_control(&mut self, now: Instant, control: Control) {
        match control {
            // An ACK for something not yet handed out for transmit answers nothing of ours: the peer
            // cannot have seen it. Taking it would let the frame go out after its exchange ended.
            Control::Ack => match self.pending.take() {
                Some(Pending { awaited: Awaited::Frame(_), written: true, .. }) => {
                    self.events.push_back(LinkEvent::Acked)
                }
                Some(Pending { awaited: Awaited::Probe, written: true, .. }) => {
                    self.events.push_back(LinkEvent::ProbeAnswered)
                }
                unwritten => {
                    self.pending = unwritten;
                    self.stats.stray_controls += 1;
                }
            },
            Control::Nak => {
                self.stats.naks_received += 1;
                if self.pending.is_some() {
                    self.retry(now);
                } else {
                    self.stats.stray_controls += 1;
                }
            }
            Control::Enq => {
                if self.idle {
                    if self.queue_answer(ACK) {
                        self.stats.enqs_answered += 1;
                    }
                } else {
                    self.stats.enqs_ignored += 1;
                }
            }
        }
    }

    /// Rule 3: resend the identical bytes, or give up after `max_resends`.
    fn retry(&mut self, now: Instant) {
        let Some(mut pending) = self.pending.take() else {
            return;
        };
        if pending.sends > u16::from(self.cfg.max_resends) {
            // A copy the driver never wrote must not go out after the owner was told the link is lost.
            self.withdraw(&pending.awaited);
            self.events.push_back(LinkEvent::LinkLost);
            return;
        }
        pending.sends += 1;
        pending.deadline = now.checked_add(self.cfg.t_ack);
        self.stats.resends += 1;
        // A copy still queued (the driver has not written it yet) goes out once, not twice.
        let out = match &pending.awaited {
            Awaited::Frame(bytes) => Out::Frame(bytes.clone()),
            Awaited::Probe => Out::Control(ENQ),
        };
        let queued = self.transmit.iter().any(|o| match (o, &out) {
            (Out::Frame(a), Out::Frame(b)) => a == b,
            (Out::Control(a), Out::Control(b)) => a == b,
            _ => false,
        });
        if !queued {
            self.transmit.push_back(out);
        }
        self.pending = Some(pending);
    }

    /// Removes queued, unwritten copies of what awaited an ACK.
    fn withdraw(&mut self, awaited: &Awaited) {
        match awaited {
            Awaited::Frame(bytes) => self.transmit.retain(|out| !matches!(out, Out::Frame(f) if f == bytes)),
            Awaited::Probe => self.transmit.retain(|out| !matches!(out, Out::Control(ENQ))),
        }
    }

    /// Queues an ACK or NAK within [`MAX_QUEUED_CONTROLS`]; returns false when it was dropped.
    fn queue_answer(&mut self, byte: u8) -> bool {
        if self.queued_controls >= MAX_QUEUED_CONTROLS {
            self.stats.controls_dropped += 1;
            return false;
        }
        self.queued_controls += 1;
        if byte == ACK {
            self.stats.acks_sent += 1;
        } else {
            self.stats.naks_sent += 1;
        }
        self.transmit.push_back(Out::Control(byte));
        true
    }

    fn note_control_out(&mut self, byte: u8) {
        if byte == ENQ {
            if let Some(pending) = &mut self.pending {
                pending.written = true;
            }
        } else {
            self.queued_controls = self.queued_controls.saturating_sub(1);
        }
    }
}

impl Default for Link {
    fn default() -> Self {
        Link::new(LinkConfig::default())
    }
}
