//! The `zhengjiao` command.

use std::io::{BufRead, Read, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use zhengjiao::inspect::{self, Decoded, Direction};
use zhengjiao_protocol::{Check, FrameConfig};

/// zhengjiao (征缴): collection-point middleware for the residents' pension and medical insurance.
#[derive(Debug, Parser)]
#[command(name = "zhengjiao", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect and build terminal-link frames (wire-protocol.md).
    #[command(subcommand)]
    Frame(FrameCommand),
}

#[derive(Debug, Subcommand)]
enum FrameCommand {
    /// Decode a captured byte stream (hex) into canonical JSON, one line per frame or control byte.
    ///
    /// Exit status: 0 when every frame decoded, 1 when any frame was broken, 2 for bad usage.
    Decode {
        /// Which side sent the bytes.
        #[arg(long, value_enum)]
        dir: DirArg,
        /// The terminal's check dialect.
        #[arg(long, value_enum, default_value = "lrc")]
        check: CheckArg,
        /// The receiver's maximum LEN.
        #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u16).range(1..=9999))]
        max_len: u16,
        /// Hex bytes (white space allowed); read from standard input when none are given.
        hex: Vec<String>,
    },
    /// Encode canonical JSON messages read from standard input, one per line, as frames in hex.
    ///
    /// Exit status: 0 when every line encoded, 1 when any line was refused.
    Encode {
        /// The terminal's check dialect.
        #[arg(long, value_enum, default_value = "lrc")]
        check: CheckArg,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DirArg {
    Request,
    Response,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CheckArg {
    Lrc,
    Crc16,
}

impl From<CheckArg> for Check {
    fn from(arg: CheckArg) -> Check {
        match arg {
            CheckArg::Lrc => Check::Lrc,
            CheckArg::Crc16 => Check::Crc16,
        }
    }
}

const USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Frame(FrameCommand::Decode { dir, check, max_len, hex }) => {
            let dir = match dir {
                DirArg::Request => Direction::Request,
                DirArg::Response => Direction::Response,
            };
            frame_decode(dir, FrameConfig { check: check.into(), max_data_len: usize::from(max_len) }, hex)
        }
        Command::Frame(FrameCommand::Encode { check }) => frame_encode(check.into()),
    }
}

fn frame_decode(dir: Direction, cfg: FrameConfig, hex: Vec<String>) -> ExitCode {
    let text = if hex.is_empty() {
        let mut text = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut text) {
            eprintln!("zhengjiao frame decode: cannot read standard input: {e}");
            return ExitCode::from(USAGE);
        }
        text
    } else {
        hex.join(" ")
    };
    let bytes = match inspect::parse_hex(&text) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("zhengjiao frame decode: {e}");
            return ExitCode::from(USAGE);
        }
    };
    let lines = inspect::decode_capture(&bytes, dir, cfg);
    let mut out = std::io::stdout().lock();
    for line in &lines {
        if writeln!(out, "{}", line.to_json()).is_err() {
            return ExitCode::FAILURE;
        }
    }
    if lines.iter().any(|l| matches!(l, Decoded::Broken { .. })) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn frame_encode(check: Check) -> ExitCode {
    let mut failed = false;
    let mut out = std::io::stdout().lock();
    for (index, line) in std::io::stdin().lock().lines().enumerate() {
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                eprintln!("zhengjiao frame encode: cannot read standard input: {e}");
                return ExitCode::from(USAGE);
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match inspect::encode_line(&line, check) {
            Ok(hex) => {
                if writeln!(out, "{hex}").is_err() {
                    return ExitCode::FAILURE;
                }
            }
            Err(e) => {
                eprintln!("line {}: {e}", index + 1);
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
