//! Forwarding to the tax bureau's ledger (入库核算), the client side of `ledger-api.md`, and the daily
//! reconciliation (日清日结) of terminals, journal and ledger.
//!
//! - [`LedgerClient`]: signed requests (HMAC-SHA256, [`sign`]) over rustls HTTPS, plain HTTP only to
//!   a loopback host; every failure sorted ([`SendError`]), the answers checked against the contract
//!   ([`answer`]).
//! - [`Forwarder`]: the task that drains the journal's outbox, with its [`LedgerStatus`], dead letters
//!   and operator replay.
//! - [`reconcile()`]: the day's journal entries against the ledger's `/v1/summary` and the terminals'
//!   settlements, every difference listed.

pub mod answer;
mod backoff;
mod client;
mod forwarder;
mod reconcile;
pub mod sign;

pub use answer::ContractError;
pub use backoff::Backoff;
pub use client::{
    ClientError, ClientSettings, HeldEntry, LedgerClient, LedgerSummary, LedgerSummaryLine, SendError,
    MAX_ANSWER_BYTES, MAX_RETRY_AFTER,
};
pub use forwarder::{
    Forwarder, ForwarderSettings, LastError, LedgerStatus, ERROR_KINDS, MAX_BATCH, MAX_DEAD_LETTERS, MAX_IN_FLIGHT,
};
pub use reconcile::{reconcile, ReconcileError, Reconciliation, MAX_LOOKUPS};
