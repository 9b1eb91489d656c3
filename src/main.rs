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
    /// Check a configuration file and the policy it names; report every problem with its key path.
    ///
    /// Exit status: 0 when valid, 1 when any problem was found, 2 when the file cannot be read.
    CheckConfig {
        /// The configuration file (see zhengjiao.example.toml).
        file: std::path::PathBuf,
    },
    /// Start the daemon from a configuration file; refuses to start on any configuration problem.
    ///
    /// Opens the journal, starts the terminal links, the recovery of unknown outcomes and the ledger
    /// forwarder, and serves the operator API (docs/api.md) until SIGINT or SIGTERM. Prints
    /// `listening http://ADDR` on standard output once ready; logs go to standard error.
    Serve {
        /// The configuration file.
        #[arg(long)]
        config: std::path::PathBuf,
        /// The log format on standard error.
        #[arg(long, value_enum, default_value = "human")]
        log_format: zhengjiao::logging::LogFormat,
    },
    /// Back up the live journal with SQLite's online backup API, while the daemon runs.
    ///
    /// Writes a checked, self-contained copy (mode 0600: it holds full ID numbers) and never overwrites
    /// a file. Restore: stop the daemon, copy the backup over the journal with mode 0600, start it
    /// (docs/operations.md). Exit status: 0 written, 1 failed (nothing left under OUTPUT), 2 the
    /// configuration cannot be read.
    Backup {
        /// The daemon's configuration file (its data_dir holds the journal).
        #[arg(long)]
        config: std::path::PathBuf,
        /// The backup file to write.
        output: std::path::PathBuf,
    },
    /// Run the whole system on this machine: simulated terminals and ledger, a collection day, its
    /// report and reconciliation.
    Demo(zhengjiao::demo::DemoArgs),
    /// The contribution roster (参保底册 / 征缴计划清单).
    #[command(subcommand)]
    Roster(ImportCommand),
    /// The collector register (集中征缴工作人员登记表).
    #[command(subcommand)]
    Collectors(ImportCommand),
    /// The operator's verbs, clients of the daemon's HTTP API (docs/api.md, "CLI").
    #[command(flatten)]
    Client(zhengjiao::client::ClientCommand),
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// Import a CSV (UTF-8 with or without BOM, or GB18030/GBK) or XLSX file into the journal, all or
    /// nothing (roster-format.md). Works directly on the data directory; the daemon must not be running.
    ///
    /// Exit status: 0 when every row was applied, 1 when anything was refused (nothing was imported).
    Import {
        /// The file to import.
        file: std::path::PathBuf,
        /// The data directory holding the journal.
        #[arg(long, conflicts_with = "config", required_unless_present = "config")]
        data_dir: Option<std::path::PathBuf>,
        /// Take the data directory from this configuration file instead.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// Force the CSV encoding instead of detecting it.
        #[arg(long, value_enum)]
        encoding: Option<EncodingArg>,
        /// Replace lines whose content changed, when they are unpaid.
        #[arg(long)]
        update: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EncodingArg {
    Utf8,
    Gb18030,
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
        Command::CheckConfig { file } => zhengjiao::config::check_config_command(&file),
        Command::Serve { config, log_format } => serve(&config, log_format),
        Command::Backup { config, output } => zhengjiao::backup::backup_command(&config, &output),
        Command::Demo(args) => zhengjiao::demo::run(args),
        Command::Roster(ImportCommand::Import { file, data_dir, config, encoding, update }) => {
            match import_data_dir(data_dir, config) {
                Ok(dir) => zhengjiao::import::roster_import_command(&dir, &file, import_options(encoding, update)),
                Err(code) => code,
            }
        }
        Command::Collectors(ImportCommand::Import { file, data_dir, config, encoding, update }) => {
            match import_data_dir(data_dir, config) {
                Ok(dir) => zhengjiao::import::collectors_import_command(&dir, &file, import_options(encoding, update)),
                Err(code) => code,
            }
        }
        Command::Client(command) => zhengjiao::client::run(command),
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

fn import_options(encoding: Option<EncodingArg>, update: bool) -> zhengjiao::import::ImportOptions {
    use zhengjiao::import::TextEncoding;
    let encoding = encoding.map(|e| match e {
        EncodingArg::Utf8 => TextEncoding::Utf8,
        EncodingArg::Gb18030 => TextEncoding::Gb18030,
    });
    zhengjiao::import::ImportOptions { encoding, update }
}

/// The data directory of an import: given, or read from a configuration that must be valid.
fn import_data_dir(
    data_dir: Option<std::path::PathBuf>,
    config: Option<std::path::PathBuf>,
) -> Result<std::path::PathBuf, ExitCode> {
    match (data_dir, config) {
        (Some(dir), _) => Ok(dir),
        (None, Some(config)) => zhengjiao::config::prepare_serve(&config).map(|c| c.data_dir),
        (None, None) => Err(ExitCode::from(USAGE)),
    }
}

/// `serve`: refuses any configuration problem; opens (creating and migrating) the journal; then stops,
/// since the collection flow is not built yet.
fn serve(config: &std::path::Path, log_format: zhengjiao::logging::LogFormat) -> ExitCode {
    zhengjiao::logging::init(log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("zhengjiao serve: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(zhengjiao::config::serve_command(config))
}
