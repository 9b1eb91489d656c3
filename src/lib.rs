//! zhengjiao (征缴): the collection-point daemon between UnionPay "全民付" POS terminals, the
//! contribution roster and the tax bureau's ledger.
//!
//! So far the library holds the field engineer's frame inspector; the daemon's parts arrive with their
//! issues.

pub mod api;
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
pub mod policy;
