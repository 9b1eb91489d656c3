//! zhengjiao (征缴): the collection-point daemon between UnionPay "全民付" POS terminals, the
//! contribution roster and the tax bureau's ledger.
//!
//! The parts: the domain types and the policy; configuration and the business clock; roster and
//! register imports; the journal (SQLite); one link actor per terminal; the collection service (policy
//! checks, payments, unknown outcomes, voids, refunds, settlement); the ledger forwarder and
//! reconciliation; the operator HTTP API and the CLI verbs that call it; the frame inspector.

pub mod api;
pub mod backup;
pub mod client;
pub mod clock;
pub mod collect;
pub mod config;
pub mod demo;
pub mod domain;
pub mod import;
pub mod inspect;
pub mod journal;
pub mod ledger;
pub mod link;
pub mod logging;
pub mod metrics;
pub mod policy;
pub mod report;
