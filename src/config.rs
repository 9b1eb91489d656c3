//! The daemon's configuration file (`zhengjiao.example.toml` documents every key), read and checked
//! whole: every problem is reported with its key path and what was expected, unknown keys included, and
//! the policy file it names is loaded and validated too.
//!
//! Relative paths in the file (`data_dir`, `policy`, `ledger.secret_file`) are taken relative to the
//! directory of the configuration file, so a configuration works from whatever directory the daemon is
//! started in.

pub(crate) mod keys;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use time::OffsetDateTime;
use zhengjiao_protocol::link::{EcrConfig, LinkConfig, ResponseTimeouts};
use zhengjiao_protocol::{Check, FrameConfig};

use crate::clock::Clock;
use crate::domain::{CollectionPointCode, StaffNumber};
use crate::policy::{Policy, PolicyError};
use keys::{Problems, Table};

pub use keys::Problem;

/// The most terminals one daemon drives. Each costs a link task, a recovery task and one connection
/// (a file descriptor); about 26 KiB of resident memory when idle (BENCHMARKS.md, the load benchmark
/// connects 5,000). The process's file descriptor limit must allow them.
pub const MAX_TERMINALS: usize = 10_000;
/// The most operators one configuration lists.
pub const MAX_OPERATORS: usize = 4096;

/// A checked configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The configuration file it was read from.
    pub source: PathBuf,
    /// Where the journal and other state live (resolved against the configuration file's directory).
    pub data_dir: PathBuf,
    /// The policy file (resolved).
    pub policy_path: PathBuf,
    /// The policy, loaded and validated.
    pub policy: Policy,
    /// The business clock setting.
    pub clock: ClockSetting,
    /// Where the HTTP API listens.
    pub api_listen: SocketAddr,
    /// The tax bureau's ledger.
    pub ledger: LedgerConfig,
    /// The POS terminals.
    pub terminals: Vec<TerminalConfig>,
    /// The operators allowed to use the API.
    pub operators: Vec<OperatorConfig>,
}

/// How the business clock runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockSetting {
    /// Real time (the default).
    Real,
    /// Starts at this instant when the daemon starts, and runs on.
    StartAt(OffsetDateTime),
}

impl ClockSetting {
    /// A clock per this setting, started now.
    pub fn start(self) -> Clock {
        match self {
            ClockSetting::Real => Clock::real(),
            ClockSetting::StartAt(at) => Clock::starting_at(at),
        }
    }
}

/// One POS terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TerminalConfig {
    /// Our name for it, unique in the configuration: 1..=16 of `[0-9A-Za-z_-]`.
    pub id: String,
    /// The collection point it stands at.
    pub collection_point: CollectionPointCode,
    /// The till (款台号) sent in every request: 1..=8 printable ASCII characters, no spaces.
    pub till: String,
    /// How it is reached.
    pub transport: Transport,
    /// Link settings: check dialect, T_ack, resends, T_gap, response timeouts.
    pub ecr: EcrConfig,
}

/// How a terminal is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// RS-232: `serial:/dev/ttyUSB0?baud=9600`.
    Serial {
        /// The device path.
        path: String,
        /// The baud rate.
        baud: u32,
    },
    /// TCP: `tcp:HOST:PORT` (`tcp:[::1]:9100` for IPv6).
    Tcp {
        /// Host name or address (without brackets).
        host: String,
        /// Port.
        port: u16,
    },
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Serial { path, baud } => write!(f, "serial:{path}?baud={baud}"),
            Transport::Tcp { host, port } if host.contains(':') => write!(f, "tcp:[{host}]:{port}"),
            Transport::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
        }
    }
}

/// The tax bureau's ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LedgerConfig {
    /// Base URL, without a trailing `/`: https, or http to a loopback host.
    pub endpoint: String,
    /// The key id the ledger knows us by.
    pub key_id: String,
    /// The shared secret.
    pub secret: Secret,
}

/// A secret whose `Debug` and `Display` print `Secret(..)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for signing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// An operator of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OperatorConfig {
    /// SHA-256 of the operator's bearer token, 64 lower-case hex digits (the token itself is never
    /// stored).
    pub token_sha256: String,
    /// Staff number (工号).
    pub staff_no: StaffNumber,
    /// The collection point (required for collectors; an admin may have none).
    pub collection_point: Option<CollectionPointCode>,
    /// What the operator may do.
    pub role: Role,
}

/// An operator's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Takes payments at their collection point.
    Collector,
    /// Everything, including imports and configuration views.
    Admin,
}

impl Role {
    /// `collector` or `admin`.
    pub const fn code(self) -> &'static str {
        match self {
            Role::Collector => "collector",
            Role::Admin => "admin",
        }
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigErrors {
    /// The configuration file cannot be read.
    #[error("{}: cannot read the configuration file: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file was read; these are all its problems (and the policy file's).
    #[error("{}", list(path, problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem, each with its key path.
        problems: Vec<Problem>,
    },
}

impl ConfigErrors {
    /// Every problem (empty when the file could not be read).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigErrors::Unreadable { .. } => &[],
            ConfigErrors::Invalid { problems, .. } => problems,
        }
    }
}

fn list(path: &Path, problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("{}: {p}", path.display())).collect::<Vec<_>>().join("\n")
}

impl Config {
    /// Reads and checks a configuration file and the policy file it names.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigErrors::Unreadable { path: path.to_owned(), source })?;
        let base = path.parent().map(Path::to_owned).unwrap_or_default();
        let invalid = |problems| ConfigErrors::Invalid { path: path.to_owned(), problems };
        let doc = keys::parse_document(&text).map_err(|p| invalid(vec![p]))?;
        let mut p = Problems::default();
        let config = read(&doc, path, &base, &mut p);
        match config {
            Some(c) if p.0.is_empty() => Ok(c),
            _ => Err(invalid(p.0)),
        }
    }
}

const TRANSPORT_EXPECTED: &str = "\"serial:/dev/...?baud=N\" or \"tcp:HOST:PORT\"";
const BAUD_RATES: [u32; 8] = [1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200];

fn read(doc: &toml::Table, source: &Path, base: &Path, p: &mut Problems) -> Option<Config> {
    let mut root = Table::root(doc);
    let data_dir = root.parsed("data_dir", true, "a directory path", p, non_empty).map(|d| base.join(d));
    let policy_path = root.parsed("policy", true, "a policy file path", p, non_empty).map(|f| base.join(f));
    let policy = policy_path.as_ref().and_then(|path| match Policy::load(path) {
        Ok(policy) => Some(policy),
        Err(PolicyError::Read { source, .. }) => {
            p.push(root.key("policy"), format!("cannot read the policy file {}: {source}", path.display()));
            None
        }
        Err(e) => {
            for problem in e.problems() {
                let key = if problem.key.is_empty() {
                    path.display().to_string()
                } else {
                    format!("{}: {}", path.display(), problem.key)
                };
                p.push(key, problem.message.clone());
            }
            None
        }
    });
    let clock = read_clock(&mut root, p);

    let api_listen = root.table("api", true, p).and_then(|mut api| {
        let listen = api.parsed("listen", true, "an address like \"127.0.0.1:8080\"", p, |s| {
            s.parse::<SocketAddr>().map_err(|_| String::new())
        });
        api.finish(p);
        listen
    });

    let ledger = root.table("ledger", true, p).and_then(|mut l| {
        let ledger = read_ledger(&mut l, base, p);
        l.finish(p);
        ledger
    });

    let terminals = read_terminals(&mut root, p);
    let operators = read_operators(&mut root, p);
    root.finish(p);

    Some(Config {
        source: source.to_owned(),
        data_dir: data_dir?,
        policy_path: policy_path?,
        policy: policy?,
        clock: clock?,
        api_listen: api_listen?,
        ledger: ledger?,
        terminals,
        operators,
    })
}

fn non_empty(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("empty".to_owned())
    } else {
        Ok(s.to_owned())
    }
}

fn read_clock(root: &mut Table<'_>, p: &mut Problems) -> Option<ClockSetting> {
    const EXPECTED: &str = "\"real\" or a start instant with its offset like \"2020-10-21T09:00:00+08:00\"";
    let key = root.key("clock");
    let text = match root.get("clock") {
        None => return Some(ClockSetting::Real),
        Some(toml::Value::String(s)) => s.clone(),
        Some(toml::Value::Datetime(dt)) => dt.to_string(),
        Some(other) => {
            p.push(key, format!("expected {EXPECTED}, got {}", keys::kind(other)));
            return None;
        }
    };
    if text.trim() == "real" {
        return Some(ClockSetting::Real);
    }
    match OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339) {
        Ok(at) => Some(ClockSetting::StartAt(at.to_offset(crate::clock::CST))),
        Err(_) => {
            p.push(key, format!("expected {EXPECTED}, got {}", keys::quote(&text)));
            None
        }
    }
}

fn read_ledger(l: &mut Table<'_>, base: &Path, p: &mut Problems) -> Option<LedgerConfig> {
    let endpoint = l.parsed_unquoted(
        "endpoint",
        true,
        "an https:// URL (http:// only to a loopback host such as 127.0.0.1 or localhost)",
        p,
        check_endpoint,
    );
    let key_id = l.parsed("key_id", true, "1 to 64 printable ASCII characters without spaces", p, |s| {
        if (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(s.to_owned())
        } else {
            Err(String::new())
        }
    });
    let sources = ["secret", "secret_env", "secret_file"];
    let given: Vec<&str> = sources.into_iter().filter(|k| l.has(k)).collect();
    let secret = match given.as_slice() {
        ["secret"] => {
            l.string("secret", true, "the secret as a string", p).and_then(|s| secret_value(s, l.key("secret"), p))
        }
        ["secret_env"] => l.parsed("secret_env", true, "an environment variable name", p, non_empty).and_then(|var| {
            match std::env::var(&var) {
                Ok(s) => secret_value(&s, l.key("secret_env"), p),
                Err(std::env::VarError::NotPresent) => {
                    p.push(l.key("secret_env"), format!("the environment variable {var} is not set"));
                    None
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    p.push(l.key("secret_env"), format!("the environment variable {var} is not valid UTF-8"));
                    None
                }
            }
        }),
        ["secret_file"] => l.parsed("secret_file", true, "a file path", p, non_empty).and_then(|f| {
            let path = base.join(f);
            match std::fs::read_to_string(&path) {
                // A trailing newline is what editors and `echo` add; it is not part of the secret.
                Ok(s) => secret_value(s.trim_end_matches(['\n', '\r']), l.key("secret_file"), p),
                Err(e) => {
                    p.push(l.key("secret_file"), format!("cannot read {}: {e}", path.display()));
                    None
                }
            }
        }),
        [] => {
            p.push(l.key("secret"), "missing; expected exactly one of secret, secret_env or secret_file");
            None
        }
        _ => {
            p.push(
                l.key(given.first().copied().unwrap_or("secret")),
                format!("expected exactly one of secret, secret_env or secret_file, got {}", given.join(" and ")),
            );
            None
        }
    };
    Some(LedgerConfig { endpoint: endpoint?, key_id: key_id?, secret: secret? })
}

fn secret_value(s: &str, key: String, p: &mut Problems) -> Option<Secret> {
    if s.is_empty() {
        p.push(key, "the secret is empty");
        None
    } else if s.chars().any(char::is_control) {
        p.push(key, "the secret contains control characters");
        None
    } else {
        Some(Secret(s.to_owned()))
    }
}

/// Checks a ledger URL: scheme, host, optional port, optional path; http only to loopback.
fn check_endpoint(s: &str) -> Result<String, String> {
    let (https, rest) = if let Some(rest) = s.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = s.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err("the scheme must be https:// or http://".to_owned());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err("credentials in the URL are not accepted; use key_id and secret".to_owned());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) => (h, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("no host".to_owned());
    }
    if let Some(port) = port {
        if !port.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err("the port is not a number from 1 to 65535".to_owned());
        }
    }
    if !https && !is_loopback(host) {
        return Err(format!("http:// is only allowed to a loopback host; {host} needs https://"));
    }
    Ok(s.trim_end_matches('/').to_owned())
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn parse_transport(s: &str) -> Result<Transport, String> {
    if let Some(rest) = s.strip_prefix("serial:") {
        let (path, query) = rest.split_once('?').ok_or("no ?baud=N")?;
        if path.is_empty() || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("no device path".to_owned());
        }
        let baud = query.strip_prefix("baud=").ok_or("the only option is baud=N")?;
        let baud = baud
            .parse::<u32>()
            .ok()
            .filter(|b| BAUD_RATES.contains(b))
            .ok_or_else(|| format!("baud must be one of {}", BAUD_RATES.map(|b| b.to_string()).join(", ")))?;
        Ok(Transport::Serial { path: path.to_owned(), baud })
    } else if let Some(rest) = s.strip_prefix("tcp:") {
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
            (h, after.strip_prefix(':').ok_or("no :PORT")?)
        } else {
            rest.rsplit_once(':').ok_or("no :PORT")?
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/') {
            return Err("no host".to_owned());
        }
        let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or("the port is not a number from 1 to 65535")?;
        Ok(Transport::Tcp { host: host.to_owned(), port })
    } else {
        Err(String::new())
    }
}

fn read_terminals(root: &mut Table<'_>, p: &mut Problems) -> Vec<TerminalConfig> {
    let tables = root.tables("terminals", false, p);
    if tables.len() > MAX_TERMINALS {
        p.push(root.key("terminals"), format!("at most {MAX_TERMINALS} terminals, got {}", tables.len()));
    }
    let mut out: Vec<TerminalConfig> = Vec::new();
    for mut t in tables {
        let id = t.parsed("id", true, "1 to 16 letters, digits, '_' or '-'", p, |s| {
            let ok =
                (1..=16).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if ok {
                Ok(s.to_owned())
            } else {
                Err(String::new())
            }
        });
        let point = t.parsed("collection_point", true, "a collection point code", p, |s| {
            CollectionPointCode::parse(s).map_err(|e| e.to_string())
        });
        let till = t.parsed("till", true, "1 to 8 printable ASCII characters without spaces", p, |s| {
            if (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()) {
                Ok(s.to_owned())
            } else {
                Err(String::new())
            }
        });
        let transport = t.parsed("transport", true, TRANSPORT_EXPECTED, p, parse_transport);
        let check = t.parsed("check", false, "\"lrc\" or \"crc16\"", p, |s| match s {
            "lrc" => Ok(Check::Lrc),
            "crc16" => Ok(Check::Crc16),
            _ => Err(String::new()),
        });
        let ecr = read_timeouts(&mut t, check.unwrap_or_default(), p);
        if let Some(id) = &id {
            if out.iter().any(|o| &o.id == id) {
                p.push(t.key("id"), format!("the terminal id {} is used twice", keys::quote(id)));
            }
        }
        if let Some(tr) = &transport {
            if let Some(other) = out.iter().find(|o| &o.transport == tr) {
                p.push(t.key("transport"), format!("terminal {} already uses {tr}", other.id));
            }
        }
        t.finish(p);
        if let (Some(id), Some(collection_point), Some(till), Some(transport), Some(ecr)) =
            (id, point, till, transport, ecr)
        {
            out.push(TerminalConfig { id, collection_point, till, transport, ecr });
        }
    }
    out
}

fn read_timeouts(t: &mut Table<'_>, check: Check, p: &mut Problems) -> Option<EcrConfig> {
    let mut ecr = EcrConfig {
        link: LinkConfig { frame: FrameConfig::new(check), ..LinkConfig::default() },
        timeouts: ResponseTimeouts::default(),
        ..EcrConfig::default()
    };
    let Some(mut to) = t.table("timeouts", false, p) else {
        // Absent is fine; present but not a table was reported.
        return (!t.has("timeouts")).then_some(ecr);
    };
    let before = p.0.len();
    let mut ms = |key: &'static str, range: std::ops::RangeInclusive<i64>, slot: &mut Duration| {
        if let Some(v) = to.integer(key, false, range, p) {
            *slot = Duration::from_millis(v.unsigned_abs());
        }
    };
    ms("t_ack_ms", 100..=60_000, &mut ecr.link.t_ack);
    ms("t_gap_ms", 50..=60_000, &mut ecr.link.t_gap);
    ms("money_ms", 1_000..=600_000, &mut ecr.timeouts.money);
    ms("settle_ms", 1_000..=600_000, &mut ecr.timeouts.settle);
    ms("sign_in_ms", 1_000..=600_000, &mut ecr.timeouts.sign_in);
    ms("query_ms", 1_000..=600_000, &mut ecr.timeouts.query);
    ms("status_ms", 1_000..=600_000, &mut ecr.timeouts.status);
    if let Some(n) = to.integer("max_resends", false, 0..=10, p).and_then(|n| u8::try_from(n).ok()) {
        ecr.link.max_resends = n;
    }
    to.finish(p);
    (p.0.len() == before).then_some(ecr)
}

fn read_operators(root: &mut Table<'_>, p: &mut Problems) -> Vec<OperatorConfig> {
    let tables = root.tables("operators", false, p);
    if tables.len() > MAX_OPERATORS {
        p.push(root.key("operators"), format!("at most {MAX_OPERATORS} operators, got {}", tables.len()));
    }
    let mut out: Vec<OperatorConfig> = Vec::new();
    for mut t in tables {
        let hash = t.parsed("token_sha256", true, "the SHA-256 of the token as 64 hex digits", p, |s| {
            if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(s.to_ascii_lowercase())
            } else {
                Err(String::new())
            }
        });
        let staff_no =
            t.parsed("staff_no", true, "a staff number", p, |s| StaffNumber::parse(s).map_err(|e| e.to_string()));
        let role = t.parsed("role", true, "\"collector\" or \"admin\"", p, |s| match s {
            "collector" => Ok(Role::Collector),
            "admin" => Ok(Role::Admin),
            _ => Err(String::new()),
        });
        let point = t.parsed("collection_point", false, "a collection point code", p, |s| {
            CollectionPointCode::parse(s).map_err(|e| e.to_string())
        });
        let point_given = t.has("collection_point");
        if role == Some(Role::Collector) && !point_given {
            p.push(t.key("collection_point"), "missing; a collector needs the collection point they work at");
        }
        if let Some(h) = &hash {
            if out.iter().any(|o| &o.token_sha256 == h) {
                p.push(t.key("token_sha256"), "the same token hash is given to two operators");
            }
        }
        t.finish(p);
        if let (Some(token_sha256), Some(staff_no), Some(role)) = (hash, staff_no, role) {
            if point.is_some() || !point_given {
                out.push(OperatorConfig { token_sha256, staff_no, collection_point: point, role });
            }
        }
    }
    out
}

/// `zhengjiao check-config FILE`: checks the configuration and its policy file. Prints
/// `ok: N terminals, M operators, policy YEAR` and exits 0, or prints every problem (on standard error,
/// one a line) and exits 1; exits 2 when the file cannot be read.
pub fn check_config_command(path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(c) => {
            println!(
                "ok: {} terminals, {} operators, policy {} ({})",
                c.terminals.len(),
                c.operators.len(),
                c.policy.year(),
                c.policy.district()
            );
            ExitCode::SUCCESS
        }
        Err(e) => report(&e),
    }
}

fn report(e: &ConfigErrors) -> ExitCode {
    eprintln!("{e}");
    match e {
        ConfigErrors::Unreadable { .. } => ExitCode::from(2),
        ConfigErrors::Invalid { problems, .. } => {
            eprintln!("{} problem(s); nothing was started", problems.len());
            ExitCode::FAILURE
        }
    }
}

/// What `serve` does before anything runs: loads and checks the configuration (printing every
/// problem and returning the exit code on failure: 1, or 2 when unreadable) and creates the data
/// directory if missing (mode 0700 on Unix).
pub fn prepare_serve(path: &Path) -> Result<Config, ExitCode> {
    let config = Config::load(path).map_err(|e| report(&e))?;
    if let Err(e) = create_data_dir(&config.data_dir) {
        eprintln!("{}: cannot create the data directory {}: {e}", path.display(), config.data_dir.display());
        return Err(ExitCode::FAILURE);
    }
    tracing::info!(
        config = %path.display(),
        data_dir = %config.data_dir.display(),
        policy_year = config.policy.year(),
        terminals = config.terminals.len(),
        operators = config.operators.len(),
        "configuration is valid"
    );
    Ok(config)
}

fn create_data_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// `zhengjiao serve --config FILE`: refuses to start on any configuration problem (exit 1 with the
/// list), otherwise opens the journal, starts the terminal links and the collection service, and serves
/// the operator API (docs/api.md) until SIGINT or SIGTERM.
pub async fn serve_command(path: &Path) -> ExitCode {
    match prepare_serve(path) {
        Ok(config) => crate::api::serve(config).await,
        Err(code) => code,
    }
}
