//! `zhengjiao-sim terminal`: simulated terminals until interrupted.
//!
//! Standard output carries the endpoints, one per terminal, first and flushed: the TCP address each
//! terminal listens on, or with `--pty` the device path the ECR opens; then `control http://ADDR` when
//! `--control` is given. Logs go to standard error (`RUST_LOG`).

use crate::common::parse_rate;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use zhengjiao_protocol::frame::{Check, FrameConfig};
use zhengjiao_protocol::link::LinkConfig;
use zhengjiao_protocol::message::{MerchantId, ResponseCode, TerminalId};

use super::{Faults, TerminalSim, TerminalSimConfig, Transport, DEFAULT_MERCHANT, DEFAULT_TERMINAL_ID};

/// Options of `zhengjiao-sim terminal`.
#[derive(Debug, clap::Args)]
pub struct TerminalArgs {
    /// TCP address to listen on (port 0: any free port). With --terminals N and a fixed port P,
    /// terminal i listens on P+i.
    #[arg(long, default_value = "127.0.0.1:0", conflicts_with = "pty")]
    pub listen: SocketAddr,
    /// Serial over a pseudo-terminal instead of TCP: prints the device path the daemon opens.
    #[arg(long)]
    pub pty: bool,
    /// Independent terminals to run, one port (or device) each.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=super::MAX_TERMINALS as i64))]
    pub terminals: u16,
    /// Check dialect of the frames: lrc or crc16.
    #[arg(long, default_value = "lrc")]
    pub check: Check,
    /// 商户号 (merchant id) of every terminal.
    #[arg(long, default_value = DEFAULT_MERCHANT, value_parser = parse_merchant)]
    pub merchant: MerchantId,
    /// 终端号 of the first terminal; the others count up from its trailing digits.
    #[arg(long, default_value = DEFAULT_TERMINAL_ID, value_parser = parse_terminal_id)]
    pub terminal_id: TerminalId,
    /// Seed of every random choice (declines, faults), for reproducible runs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Drawn declines for sales that neither a queued outcome nor the amount decides, e.g.
    /// 51=0.03,T1=0.02.
    #[arg(long, value_parser = parse_declines, default_value = "", hide_default_value = true)]
    pub decline: Declines,
    /// How long a SALE waits for the card, in milliseconds (at most 600000).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=super::MAX_CARD_DELAY_MS))]
    pub card_delay_ms: u64,
    /// State file ("memory like flash"): loaded at start, written after every change. With
    /// --terminals N, terminal i >= 1 uses FILE.i.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Serve the HTTP control endpoint on this address (prints `control http://ADDR`).
    #[arg(long, value_name = "ADDR")]
    pub control: Option<SocketAddr>,
    /// Fault injection.
    #[command(flatten)]
    pub faults: Box<FaultArgs>,
}

/// The fault options of `zhengjiao-sim terminal` (rates from 0.0 to 1.0, drawn per occasion).
#[derive(Debug, Clone, clap::Args)]
pub struct FaultArgs {
    /// Rate of responses whose first send carries a corrupted check.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub corrupt_check: f64,
    /// Rate of request frames whose ACK is swallowed (the ECR resends).
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub swallow_ack: f64,
    /// Rate of requests ACKed and never answered.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub never_answer: f64,
    /// Rate of sales approved, then the connection dropped before the response.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub approve_drop: f64,
    /// Rate of sales lost to a power failure (not stored, connection dropped, signed out).
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub power_loss: f64,
    /// Rate of frames preceded by a burst of noise bytes.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub noise: f64,
    /// Rate of responses sent a second time after their ACK.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub duplicate: f64,
    /// Delay of every response, in milliseconds (at most 600000).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=super::MAX_DELAY_MS))]
    pub delay_ms: u64,
}

impl FaultArgs {
    /// The faults these options ask for.
    pub fn faults(&self) -> Faults {
        Faults {
            corrupt_check: self.corrupt_check,
            swallow_ack: self.swallow_ack,
            never_answer: self.never_answer,
            approve_drop: self.approve_drop,
            power_loss: self.power_loss,
            noise: self.noise,
            duplicate: self.duplicate,
            delay_ms: self.delay_ms,
        }
    }
}

/// Decline rates as given by `--decline`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Declines(pub Vec<(ResponseCode, f64)>);

impl TerminalArgs {
    /// The simulator settings these options ask for.
    pub fn config(&self) -> TerminalSimConfig {
        TerminalSimConfig {
            transport: if self.pty { Transport::Pty } else { Transport::Tcp(self.listen) },
            terminals: usize::from(self.terminals),
            link: LinkConfig { frame: FrameConfig::new(self.check), ..LinkConfig::default() },
            merchant: self.merchant,
            terminal_id: self.terminal_id,
            seed: self.seed,
            decline_rates: self.decline.0.clone(),
            card_delay: Duration::from_millis(self.card_delay_ms),
            faults: self.faults.faults(),
            state: self.state.clone(),
        }
    }
}

/// Runs the terminal simulator until interrupted (ctrl-c or SIGTERM), writing its endpoints to `out`
/// first.
pub async fn run(args: TerminalArgs, out: &mut (dyn Write + Send)) -> Result<(), Box<dyn std::error::Error>> {
    let mut sim = TerminalSim::start(args.config()).await?;
    let mut lines = String::new();
    for addr in sim.addrs() {
        lines.push_str(&format!("{addr}\n"));
    }
    for path in sim.pty_paths() {
        lines.push_str(&format!("{}\n", path.display()));
    }
    if let Some(addr) = args.control {
        let bound = sim.serve_control(addr).await?;
        lines.push_str(&format!("control http://{bound}\n"));
    }
    out.write_all(lines.as_bytes())?;
    out.flush()?;
    interrupted().await?;
    tracing::info!("stopping");
    sim.shutdown().await;
    Ok(())
}

/// Waits for ctrl-c, or SIGTERM on Unix.
async fn interrupted() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

fn parse_merchant(s: &str) -> Result<MerchantId, String> {
    MerchantId::new(s).map_err(|e| format!("merchant id {s:?}: {e}"))
}

fn parse_terminal_id(s: &str) -> Result<TerminalId, String> {
    TerminalId::new(s).map_err(|e| format!("terminal id {s:?}: {e}"))
}

/// Parses `CODE=RATE[,CODE=RATE...]`; the empty string is no declines.
pub fn parse_declines(s: &str) -> Result<Declines, String> {
    let mut rates = Vec::new();
    for item in s.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let (code, rate) = item.split_once('=').ok_or_else(|| format!("{item:?}: expected CODE=RATE, e.g. 51=0.03"))?;
        let code = ResponseCode::new(code.trim()).map_err(|e| format!("{item:?}: code: {e}"))?;
        if rates.iter().any(|(c, _)| *c == code) {
            return Err(format!("{item:?}: code {code} given twice"));
        }
        rates.push((code, parse_rate(rate.trim())?));
    }
    super::validate_decline_rates(&rates).map_err(|e| e.to_string())?;
    Ok(Declines(rates))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declines_parse() {
        let parsed = parse_declines("51=0.03, T1=0.02").map(|d| d.0);
        let code = |s| ResponseCode::new(s).unwrap_or(ResponseCode::BUSY);
        assert_eq!(parsed, Ok(vec![(code("51"), 0.03), (code("T1"), 0.02)]));
        assert_eq!(parse_declines("").map(|d| d.0), Ok(vec![]));
        assert!(parse_declines("51").is_err());
        assert!(parse_declines("51=2").is_err());
        assert!(parse_declines("5x=0.1").is_err());
        assert!(parse_declines("00=0.1").is_err());
        assert!(parse_declines("51=0.1,51=0.2").is_err());
    }
}
