//! The command line of the client verbs, as `main` parses it (docs/api.md, "CLI").

use std::fmt;
use std::str::FromStr;

use crate::domain::Fen;

use super::model::PaymentState;

/// How a verb reaches the API, shared by every verb.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The API's address [env: ZHENGJIAO_API] [default: http://127.0.0.1:8080].
    #[arg(long, value_name = "URL")]
    pub api: Option<String>,
    /// The operator's token [env: ZHENGJIAO_TOKEN]. Prefer the environment: a command line is visible to
    /// other users of the machine.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<Secret>,
    /// Print the API's JSON answer (pretty) instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// A token: its `Debug` and `Display` do not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The client verbs; `main` flattens them into its own subcommands.
// The `api` fields are flattened: their arguments carry the documentation.
#[allow(missing_docs)]
#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Look up the roster lines of an ID number (身份证号) or a collection serial (征集流水号).
    ///
    /// Exit status: 0 when lines were found, 1 when the API refused (e.g. nothing matched), 2 for bad
    /// usage or an unreachable API.
    Lookup {
        /// An 18-character ID number or a collection serial.
        query: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Collect a contribution on a terminal (SALE) and wait for the outcome.
    ///
    /// Exit status: 0 approved, 3 declined or not charged, 4 the outcome is still unknown (the payment
    /// id is printed: ask with `zhengjiao query`), 1 the API refused, 2 bad usage or unreachable API.
    Collect(CollectArgs),
    /// Void (撤销) an approved payment of the terminal's open batch.
    ///
    /// Exit status: 0 the void was approved, 3 declined or not charged, 4 still unknown, 1 the API
    /// refused, 2 bad usage or unreachable API.
    Void {
        /// The payment id.
        payment: String,
        /// How long to wait for the outcome, in seconds (at most 600).
        #[arg(long, value_name = "SECS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=600))]
        wait: u64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Refund (退货) a payment of an earlier, settled batch; a contribution is refunded whole.
    ///
    /// Exit status: 0 the refund was approved, 3 declined or not charged, 4 still unknown, 1 the API
    /// refused, 2 bad usage or unreachable API.
    Refund {
        /// The payment id.
        payment: String,
        /// The payment's amount in yuan, as a confirmation (must equal it).
        #[arg(long, value_name = "YUAN", value_parser = yuan)]
        amount: Option<String>,
        /// How long to wait for the outcome, in seconds (at most 600).
        #[arg(long, value_name = "SECS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=600))]
        wait: u64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Ask the terminal about a payment (QUERY) and show it with its history.
    ///
    /// Exit status: 0 the outcome is known and was not a decline, 3 declined or not charged, 4 still
    /// unknown, 1 the API refused, 2 bad usage or unreachable API.
    Query {
        /// The payment id.
        payment: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Settle (结算) a terminal: close its batch and compare its totals with the journal's.
    ///
    /// Exit status: 0 balanced, 5 not balanced, 1 the API refused (e.g. an outcome is still unknown), 2
    /// bad usage or unreachable API.
    Settle {
        /// The terminal's configured name.
        terminal: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List payments, oldest first.
    ///
    /// Exit status: 0 listed, 1 the API refused, 2 bad usage or unreachable API.
    Payments(PaymentsArgs),
    /// List the terminals and the state of their links.
    ///
    /// Exit status: 0 listed, 1 the API refused, 2 bad usage or unreachable API.
    Terminals {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The ledger forwarder (入库): its status, the dead letters, and their replay.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Daily reconciliation (日清日结): the journal's entries of a day against the ledger's summary and
    /// the terminals' settlements, every difference listed.
    ///
    /// Exit status: 0 when terminals, journal and ledger agree to the fen, 5 when anything differs or
    /// is missing, 1 the API refused (e.g. the ledger could not be asked), 2 bad usage or unreachable API.
    Reconcile(ReconcileArgs),
    /// A report (docs/api.md, "Reports"): daily (日结), commission (代征手续费), settlement (结算), ledger
    /// (入库) or unpaid (催缴清单); as a table on the terminal, CSV, XLSX or JSON.
    ///
    /// Exit status: 0 shown or written, 1 the API refused, 2 bad usage (e.g. xlsx without --output), an
    /// unreachable API or an output file that cannot be written.
    Report(ReportArgs),
}

/// `zhengjiao ledger ...`.
#[allow(missing_docs)]
#[derive(Debug, Clone, clap::Subcommand)]
pub enum LedgerCommand {
    /// The forwarder's status: backlog, age of the oldest unsent entry, last error, dead letters.
    ///
    /// Exit status: 0 shown, 1 the API refused, 2 bad usage or unreachable API.
    Status {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The entries the ledger rejected, with the reason.
    ///
    /// Exit status: 0 listed, 1 the API refused, 2 bad usage or unreachable API.
    DeadLetters {
        /// At most this many (the API's default is 1000).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: Option<u32>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Requeue a dead letter once its cause is fixed (admin): sent again with the same id.
    ///
    /// Exit status: 0 requeued, 1 the API refused (unknown entry, not a dead letter, not an admin), 2 bad
    /// usage or unreachable API.
    Retry {
        /// The entry id.
        entry: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// `zhengjiao reconcile`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReconcileArgs {
    /// The business day (UTC+8), YYYY-MM-DD.
    #[arg(long, value_name = "D", value_parser = date)]
    pub date: String,
    /// Only this collection point (a collector always gets their own).
    #[arg(long, value_name = "C")]
    pub collection_point: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub api: ApiArgs,
}

/// `zhengjiao report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Which report.
    #[arg(value_enum)]
    pub kind: ReportKind,
    /// The business day (UTC+8), YYYY-MM-DD: daily (default: today), settlement (default: every day).
    #[arg(long, value_name = "D", value_parser = date)]
    pub date: Option<String>,
    /// The month, YYYY-MM: commission (default: every month).
    #[arg(long, value_name = "M", value_parser = month)]
    pub month: Option<String>,
    /// Only this collection point (a collector always gets their own; an admin every point by default).
    #[arg(long, value_name = "C")]
    pub collection_point: Option<String>,
    /// How to show it: a table on the terminal, CSV (UTF-8 with a BOM), XLSX (needs --output) or the
    /// API's JSON.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Write it to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub api: ApiArgs,
}

/// The reports of `zhengjiao report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportKind {
    /// 日结: a day's collections per collection point, insurance, channel and pension tier.
    Daily,
    /// 代征手续费: the commission per collecting unit and month.
    Commission,
    /// 结算: the terminal settlements, terminal against journal totals.
    Settlement,
    /// 入库: the ledger forwarder's status and the outbox per collection point.
    Ledger,
    /// 催缴清单: the unpaid lines of a collection point.
    Unpaid,
}

impl ReportKind {
    /// The API's name for it.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReportKind::Daily => "daily",
            ReportKind::Commission => "commission",
            ReportKind::Settlement => "settlement",
            ReportKind::Ledger => "ledger",
            ReportKind::Unpaid => "unpaid",
        }
    }
}

/// How `zhengjiao report` shows a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// A readable table.
    Table,
    /// CSV, UTF-8 with a byte-order mark.
    Csv,
    /// An XLSX workbook (needs --output).
    Xlsx,
    /// The API's JSON.
    Json,
}

/// `zhengjiao collect`.
#[derive(Debug, Clone, clap::Args)]
pub struct CollectArgs {
    /// The collection serial (征集流水号), or with --id-number the payer's ID number (身份证号).
    pub serial: String,
    /// The terminal's configured name.
    #[arg(long, value_name = "NAME")]
    pub terminal: String,
    /// The pension tier in yuan (pension lines only), e.g. 300.
    #[arg(long, value_name = "YUAN", value_parser = yuan)]
    pub tier: Option<String>,
    /// Which insurance, when the serial names lines of both; required with --id-number.
    #[arg(long, value_enum)]
    pub insurance: Option<InsuranceArg>,
    /// The contribution year (default: the policy's year).
    #[arg(long, value_name = "Y")]
    pub year: Option<u16>,
    /// SERIAL is the payer's ID number rather than a collection serial.
    #[arg(long, requires = "insurance")]
    pub id_number: bool,
    /// How long to wait for the outcome in all, in seconds (at most 600).
    #[arg(long, value_name = "SECS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub wait: u64,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub api: ApiArgs,
}

/// `zhengjiao payments`: every filter is optional.
#[derive(Debug, Clone, clap::Args)]
pub struct PaymentsArgs {
    /// The business day (UTC+8) the payments were created, YYYY-MM-DD.
    #[arg(long, value_name = "D", value_parser = date)]
    pub date: Option<String>,
    /// Only payments in this state.
    #[arg(long, value_name = "S", value_enum)]
    pub state: Option<PaymentState>,
    /// Only payments on this terminal.
    #[arg(long, value_name = "T")]
    pub terminal: Option<String>,
    /// Only payments of this collection point.
    #[arg(long, value_name = "C")]
    pub collection_point: Option<String>,
    /// At most this many payments (the API's default is 1000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: Option<u32>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub api: ApiArgs,
}

/// The insurance of a line (险种).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InsuranceArg {
    /// 城乡居民基本养老保险.
    Pension,
    /// 城乡居民基本医疗保险.
    Medical,
}

impl InsuranceArg {
    /// The API's name for it.
    pub const fn as_str(self) -> &'static str {
        match self {
            InsuranceArg::Pension => "pension",
            InsuranceArg::Medical => "medical",
        }
    }
}

impl ClientCommand {
    /// The verb's name, for messages.
    pub fn verb(&self) -> &'static str {
        match self {
            ClientCommand::Lookup { .. } => "lookup",
            ClientCommand::Collect(_) => "collect",
            ClientCommand::Void { .. } => "void",
            ClientCommand::Refund { .. } => "refund",
            ClientCommand::Query { .. } => "query",
            ClientCommand::Settle { .. } => "settle",
            ClientCommand::Payments(_) => "payments",
            ClientCommand::Terminals { .. } => "terminals",
            ClientCommand::Ledger(LedgerCommand::Status { .. }) => "ledger status",
            ClientCommand::Ledger(LedgerCommand::DeadLetters { .. }) => "ledger dead-letters",
            ClientCommand::Ledger(LedgerCommand::Retry { .. }) => "ledger retry",
            ClientCommand::Reconcile(_) => "reconcile",
            ClientCommand::Report(_) => "report",
        }
    }

    /// How the verb reaches the API.
    pub fn api_args(&self) -> &ApiArgs {
        match self {
            ClientCommand::Lookup { api, .. }
            | ClientCommand::Void { api, .. }
            | ClientCommand::Refund { api, .. }
            | ClientCommand::Query { api, .. }
            | ClientCommand::Settle { api, .. }
            | ClientCommand::Terminals { api }
            | ClientCommand::Ledger(
                LedgerCommand::Status { api }
                | LedgerCommand::DeadLetters { api, .. }
                | LedgerCommand::Retry { api, .. },
            ) => api,
            ClientCommand::Reconcile(args) => &args.api,
            ClientCommand::Report(args) => &args.api,
            ClientCommand::Collect(args) => &args.api,
            ClientCommand::Payments(args) => &args.api,
        }
    }
}

/// An amount argument: checked to be yuan with at most two decimals, then sent as typed (trimmed).
fn yuan(s: &str) -> Result<String, String> {
    Fen::from_yuan_str(s).map(|_| s.trim().to_owned()).map_err(|e| e.to_string())
}

/// A date argument: checked to be YYYY-MM-DD, then sent as typed.
fn date(s: &str) -> Result<String, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, format).map(|_| s.to_owned()).map_err(|_| format!("expected a date YYYY-MM-DD, got {s:?}"))
}

/// A month argument: checked to be YYYY-MM, then sent as typed.
fn month(s: &str) -> Result<String, String> {
    crate::report::YearMonth::parse(s).map(|_| s.to_owned()).map_err(|e| format!("expected a month YYYY-MM: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_checked_and_kept_as_typed() {
        assert_eq!(yuan("300"), Ok("300".to_owned()));
        assert_eq!(yuan(" 280.50 "), Ok("280.50".to_owned()));
        assert!(yuan("4x0").is_err());
        assert!(yuan("1.234").is_err());
        assert!(yuan("-5").is_err());
    }

    #[test]
    fn dates_are_checked() {
        assert_eq!(date("2020-10-21"), Ok("2020-10-21".to_owned()));
        assert!(date("2020-13-01").is_err());
        assert!(date("21.10.2020").is_err());
        assert_eq!(month("2020-10"), Ok("2020-10".to_owned()));
        assert!(month("2020-13").is_err());
    }

    #[test]
    fn a_secret_does_not_show() {
        let s = Secret::new("abc");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
    }
}
