//! `zhengjiao-sim ledger`.

use crate::common::parse_rate;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{
    LedgerConfig, LedgerFaults, LedgerSim, Secret, MAX_CONNECTIONS, MAX_OUTAGE_SECS, MAX_RETRY_AFTER_SECS, MAX_SLOW_MS,
};

/// Options of `zhengjiao-sim ledger`.
///
/// Prints `http://<bound address>` as the first line of standard output, then serves until ctrl-c
/// (SIGINT) and exits 0. Fault rates are chances per `/v1` request, 0.0..=1.0, drawn from `--seed`.
#[derive(Debug, clap::Args)]
pub struct LedgerArgs {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The client's key id (`X-ZJ-Key-Id`).
    #[arg(long)]
    key_id: String,
    /// The key's shared secret (its UTF-8 bytes).
    #[arg(long)]
    secret: Secret,
    /// SQLite file holding the entries (created if absent); in memory when not given.
    #[arg(long)]
    db: Option<PathBuf>,
    /// Most connections served at once; further ones wait to be accepted until one closes.
    #[arg(long, default_value_t = MAX_CONNECTIONS, value_parser = connections)]
    max_connections: usize,
    /// Seed of the fault decisions.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Chance of `503` with `Retry-After`.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    unavailable_rate: f64,
    /// `Retry-After` seconds of those `503`s.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_RETRY_AFTER_SECS)))]
    retry_after: u32,
    /// Chance of `500`.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    error_rate: f64,
    /// Chance of a slow answer.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    slow_rate: f64,
    /// Delay of a slow answer, in milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(0..=MAX_SLOW_MS))]
    slow_ms: u64,
    /// Chance, on POST /v1/entries, of committing and then closing the connection without an answer.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    drop_rate: f64,
    /// Outage window from start, in seconds: every /v1 request is answered 503 until it ends.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=MAX_OUTAGE_SECS))]
    down_for: Option<u64>,
}

/// A connection bound: a whole number, at least 1.
fn connections(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?} is not a number of connections (at least 1)")),
    }
}

/// Runs the ledger simulator until interrupted, writing its address to `out` first.
pub async fn run(args: LedgerArgs, out: &mut (dyn std::io::Write + Send)) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = LedgerConfig::new(args.key_id, args.secret);
    config.listen = args.listen;
    config.db = args.db;
    config.seed = args.seed;
    config.max_connections = args.max_connections;
    config.faults = LedgerFaults {
        unavailable_rate: args.unavailable_rate,
        retry_after_secs: args.retry_after,
        error_rate: args.error_rate,
        slow_rate: args.slow_rate,
        slow_ms: args.slow_ms,
        drop_rate: args.drop_rate,
    };
    let ledger = LedgerSim::start(config).await?;
    if let Some(secs) = args.down_for {
        ledger.down_for(Duration::from_secs(secs));
    }
    writeln!(out, "{}", ledger.url())?;
    out.flush()?;
    let interrupted = tokio::signal::ctrl_c().await;
    ledger.shutdown().await;
    Ok(interrupted?)
}
