//! `zhengjiao demo`: the whole system on one machine with one command (in progress).

use std::process::ExitCode;

/// Options of `zhengjiao demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Where the demo keeps its data (created if missing).
    #[arg(long, default_value = "zhengjiao-demo")]
    pub dir: std::path::PathBuf,
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> ExitCode {
    eprintln!("demo: not built yet ({})", args.dir.display());
    ExitCode::FAILURE
}
