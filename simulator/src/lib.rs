//! Terminal and tax-ledger simulators for zhengjiao.
//!
//! A skeleton: the simulators themselves arrive with their own issue. The crate exists now so that the
//! workspace has its final shape and the protocol crate is used from here from the start.
