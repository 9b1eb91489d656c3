//! Terminal and tax-ledger simulators for zhengjiao's tests, benchmarks and demo.
//!
//! - [`terminal`]: a UnionPay "全民付" POS terminal speaking the terminal side of `wire-protocol.md`, over
//!   TCP or a pseudo-terminal through the real serial stack, with fault injection.
//! - [`ledger`]: the tax bureau's ledger ingest (`ledger-api.md`) over HTTP, stored in SQLite, with fault
//!   injection.
//!
//! Both start in-process on port 0 (for tests and benches) and from the `zhengjiao-sim` binary; both
//! expose a control surface (library handle and HTTP) to change faults and read counters at run time.

pub mod common;
pub mod ledger;
pub mod terminal;
