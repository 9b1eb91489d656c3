//! What a simulated terminal has seen and done, read through the control surface.

use serde::Serialize;
use zhengjiao_protocol::link::LinkStats;

use super::engine::EngineCounters;
use super::faults::FaultCounters;

/// Frame-level counters of a terminal's links, summed over every connection it served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LinkCounters {
    /// Well-formed frames received, duplicates included.
    pub frames_received: u64,
    /// Frames delivered (each request once).
    pub frames_delivered: u64,
    /// Response frames sent, first sends only.
    pub frames_sent: u64,
    /// Response frames sent again after a NAK or T_ack (§4 rule 3).
    pub resends: u64,
    /// ACKs sent (for frames and ENQs); ACKs the swallow-ack fault removed are not counted.
    pub acks_sent: u64,
    /// NAKs sent for broken frames.
    pub naks_sent: u64,
    /// NAKs received from the ECR.
    pub naks_received: u64,
    /// Request frames received again and suppressed as duplicates (§4 rule 4).
    pub duplicates_suppressed: u64,
    /// Broken frames received (bad check, no ETX, bad LEN, partial at T_gap).
    pub broken_frames: u64,
    /// Noise bytes skipped.
    pub noise_bytes: u64,
    /// ENQs answered with ACK.
    pub enqs_answered: u64,
    /// ENQs left unanswered because the terminal was busy.
    pub enqs_ignored: u64,
    /// Response frames given up after every resend ("link lost").
    pub links_lost: u64,
}

impl LinkCounters {
    /// The counters of a link whose output lost `acks_swallowed` ACKs to the swallow-ack fault.
    pub(crate) fn from_stats(stats: &LinkStats, links_lost: u64, acks_swallowed: u64) -> Self {
        LinkCounters {
            frames_received: stats.frames_received,
            frames_delivered: stats.frames_delivered,
            frames_sent: stats.frames_sent,
            resends: stats.resends,
            acks_sent: stats.acks_sent.saturating_sub(acks_swallowed),
            naks_sent: stats.naks_sent,
            naks_received: stats.naks_received,
            duplicates_suppressed: stats.duplicates,
            broken_frames: stats.broken_frames,
            noise_bytes: stats.noise_bytes,
            enqs_answered: stats.enqs_answered,
            enqs_ignored: stats.enqs_ignored,
            links_lost,
        }
    }

    pub(crate) fn add(&mut self, other: &LinkCounters) {
        self.frames_received += other.frames_received;
        self.frames_delivered += other.frames_delivered;
        self.frames_sent += other.frames_sent;
        self.resends += other.resends;
        self.acks_sent += other.acks_sent;
        self.naks_sent += other.naks_sent;
        self.naks_received += other.naks_received;
        self.duplicates_suppressed += other.duplicates_suppressed;
        self.broken_frames += other.broken_frames;
        self.noise_bytes += other.noise_bytes;
        self.enqs_answered += other.enqs_answered;
        self.enqs_ignored += other.enqs_ignored;
        self.links_lost += other.links_lost;
    }
}

/// Everything a terminal counts, as returned by
/// [`TerminalSimHandle::counters`](super::TerminalSimHandle::counters) and `GET /terminals/{i}/counters`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TerminalCounters {
    /// The terminal's index, from 0.
    pub index: usize,
    /// Connections accepted (TCP) or link restarts (serial), the first one included.
    pub connections: u64,
    /// Frame-level counters.
    pub link: LinkCounters,
    /// Retransmissions seen on the line: request frames the ECR sent again (suppressed as duplicates)
    /// plus NAKs from the ECR (each one makes the terminal resend its response).
    pub resends_seen: u64,
    /// Requests delivered by the link (well-formed frames, once each), malformed ones included.
    pub requests: u64,
    /// Requests that did not decode, answered `T5`.
    pub malformed: u64,
    /// Malformed requests without a readable token, left unanswered.
    pub unanswerable: u64,
    /// Requests answered `T3` because another was still being processed.
    pub busy: u64,
    /// Responses handed to the link.
    pub responses_sent: u64,
    /// Responses never handed to the link: their connection went first (the request was processed and
    /// stored all the same), the response queue was full, or the response did not encode. Each is
    /// logged.
    pub responses_lost: u64,
    /// Serial only: times the simulator cleared exclusive mode (`TIOCEXCL`) on its pseudo-terminal
    /// device, so an ECR that died holding the device can open it again.
    pub serial_unlocks: u64,
    /// State files that could not be written.
    pub state_save_errors: u64,
    /// Faults injected, by kind.
    pub faults: FaultCounters,
    /// The engine's own counters: requests by type, and the outcomes (`sales_approved`,
    /// `sales_declined`, ...).
    pub engine: EngineCounters,
}

impl TerminalCounters {
    pub(crate) fn finish(mut self) -> Self {
        self.resends_seen = self.link.duplicates_suppressed + self.link.naks_received;
        self
    }
}
