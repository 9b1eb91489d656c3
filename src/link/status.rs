//! What a terminal link shows: its state, what it learned at sign-in, and the link counters.

use serde::Serialize;
use zhengjiao_protocol::link::EcrStats;

use crate::config::Transport;

/// Where a link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Opening the transport.
    Connecting,
    /// Connected; SIGN_IN (签到) in progress or due. Requests wait.
    SigningIn,
    /// Signed in: requests are sent, one at a time.
    Ready,
    /// No transport: waiting to reconnect, or stopped. Requests wait.
    Down,
}

/// A snapshot of one terminal's link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkStatus {
    /// Our name for the terminal.
    pub name: String,
    /// The transport, as configured (`tcp:HOST:PORT`, `serial:PATH?baud=N`).
    pub transport: String,
    /// Where the link is.
    pub state: LinkState,
    /// Successful sign-ins so far: each new value is a new terminal session, after which the collection
    /// service looks up the outcomes it does not know.
    pub session: u64,
    /// 终端号, from the last SIGN_IN, STATUS or SETTLE answer.
    pub terminal_id: Option<String>,
    /// 商户号, from the last SIGN_IN, STATUS or SETTLE answer.
    pub merchant_id: Option<String>,
    /// 批次号 of the open batch: from the last SIGN_IN or STATUS answer, or the batch after the one the
    /// last SETTLE closed.
    pub batch: Option<String>,
    /// The latest error (connect, I/O, sign-in, lost link). Kept after the link recovers, for the
    /// operator to see what happened last.
    pub last_error: Option<String>,
    /// Requests waiting to be sent.
    pub queued: usize,
    /// The message type (`sale`, `query`, ...) of the exchange in flight.
    pub in_flight: Option<String>,
    /// Frames sent, first sends only.
    pub frames_sent: u64,
    /// Well-formed frames received.
    pub frames_received: u64,
    /// NAKs sent for broken frames.
    pub naks_sent: u64,
    /// NAKs received.
    pub naks_received: u64,
    /// Resends of our frames or probes.
    pub resends: u64,
    /// Bytes skipped as noise outside frames.
    pub noise_bytes: u64,
    /// Broken frames received (bad check, no ETX, partial at T_gap).
    pub broken_frames: u64,
    /// Responses that belonged to no exchange in flight.
    pub stale_responses: u64,
    /// ENQ heartbeat probes sent.
    pub probes_sent: u64,
    /// Transport connections opened.
    pub connects: u64,
}

impl LinkStatus {
    /// The status of a link that has not connected yet.
    pub(crate) fn new(name: &str, transport: &Transport) -> LinkStatus {
        LinkStatus {
            name: name.to_owned(),
            transport: transport.to_string(),
            state: LinkState::Connecting,
            session: 0,
            terminal_id: None,
            merchant_id: None,
            batch: None,
            last_error: None,
            queued: 0,
            in_flight: None,
            frames_sent: 0,
            frames_received: 0,
            naks_sent: 0,
            naks_received: 0,
            resends: 0,
            noise_bytes: 0,
            broken_frames: 0,
            stale_responses: 0,
            probes_sent: 0,
            connects: 0,
        }
    }

    /// Copies the protocol core's counters in.
    pub(crate) fn set_stats(&mut self, stats: &EcrStats) {
        self.frames_sent = stats.link.frames_sent;
        self.frames_received = stats.link.frames_received;
        self.naks_sent = stats.link.naks_sent;
        self.naks_received = stats.link.naks_received;
        self.resends = stats.link.resends;
        self.noise_bytes = stats.link.noise_bytes;
        self.broken_frames = stats.link.broken_frames;
        self.stale_responses = stats.stale_responses;
        self.probes_sent = stats.link.probes_sent;
    }
}
