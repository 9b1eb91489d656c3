//! `zhengjiao-sim`: terminal and tax-ledger simulators (not built yet).

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("zhengjiao-sim: the simulators are not built yet");
    ExitCode::from(2)
}
