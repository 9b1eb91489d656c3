//! What the simulator has seen and done, for tests and `GET /control/counters`.

use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// Counts since start (they are not persisted: a restart begins at zero).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct LedgerCounters {
    /// `/v1` requests received, whatever their fate.
    pub requests: u64,
    /// Entries answered `created`.
    pub entries_created: u64,
    /// Entries answered `exists` (a duplicate of a stored entry, refused as a new one).
    pub entries_exists: u64,
    /// Entries answered `rejected`, for any reason.
    pub entries_rejected: u64,
    /// Of those, `exists_with_different_content`: an id reused with other content.
    pub entries_conflicting: u64,
    /// Requests answered `401`.
    pub unauthorized: u64,
    /// Requests answered `400` or `413` (malformed, too large, too many entries).
    pub bad_requests: u64,
    /// Faults injected, by kind.
    pub faults: FaultCounters,
}

/// Faults injected, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct FaultCounters {
    /// `503` answered because the outage window was open.
    pub outage: u64,
    /// `503` drawn at `unavailable_rate`.
    pub unavailable: u64,
    /// `500` drawn at `error_rate`.
    pub error: u64,
    /// Answers delayed.
    pub slow: u64,
    /// Their delays added up, in milliseconds.
    pub slow_ms: u64,
    /// Connections closed without an answer after the entries were committed.
    pub dropped: u64,
}

/// The live counters, shared by all connections; the lock is held for one update, never across an
/// `.await`.
#[derive(Debug, Default)]
pub(crate) struct Counters(Mutex<LedgerCounters>);

impl Counters {
    /// Applies one update.
    pub(crate) fn bump(&self, update: impl FnOnce(&mut LedgerCounters)) {
        update(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// A copy of the counts now.
    pub(crate) fn snapshot(&self) -> LedgerCounters {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}
