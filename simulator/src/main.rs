//! `zhengjiao-sim`: the terminal and tax-ledger simulators.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use zhengjiao_simulator::{ledger, terminal};

/// Simulators of a UnionPay "全民付" POS terminal and of the tax bureau's ledger ingest, with faults.
#[derive(Debug, Parser)]
#[command(name = "zhengjiao-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulated terminals over TCP or a pseudo-terminal (wire-protocol.md).
    Terminal(Box<terminal::cli::TerminalArgs>),
    /// The simulated tax ledger over HTTP (ledger-api.md).
    Ledger(Box<ledger::cli::LedgerArgs>),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut out = std::io::stdout();
    let result = match cli.command {
        Command::Terminal(args) => terminal::cli::run(*args, &mut out).await,
        Command::Ledger(args) => ledger::cli::run(*args, &mut out).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zhengjiao-sim: {e}");
            ExitCode::FAILURE
        }
    }
}
