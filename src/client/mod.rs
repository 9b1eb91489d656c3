//! The operator's command-line verbs (`lookup`, `collect`, `void`, `refund`, `query`, `settle`,
//! `payments`, `terminals`, `ledger status|dead-letters|retry`, `reconcile`, `report`): clients of the
//! daemon's HTTP API (docs/api.md, "CLI").
//!
//! Each verb sends one request (and, when an outcome is still open, polls for it within the operator's
//! `--wait`), prints a readable summary or, with `--json`, the API's JSON answer, and ends with the exit
//! status of docs/api.md: see [`Exit`]. An outcome the API has not settled is reported as unknown, with
//! the payment id to ask about, never as a failure.

mod args;
mod http;
mod json;
mod ledger;
mod model;
mod render;
mod report;
mod verbs;

use std::process::ExitCode;
use std::time::Duration;

pub use args::{
    ApiArgs, ClientCommand, CollectArgs, InsuranceArg, LedgerCommand, PaymentsArgs, ReconcileArgs, ReportArgs,
    ReportFormat, ReportKind, Secret,
};
pub use model::PaymentState;

/// The API address when neither `--api` nor `ZHENGJIAO_API` gives one.
pub const DEFAULT_API: &str = "http://127.0.0.1:8080";
/// The environment variable naming the API address.
pub const API_ENV: &str = "ZHENGJIAO_API";
/// The environment variable holding the operator's token.
pub const TOKEN_ENV: &str = "ZHENGJIAO_TOKEN";

/// How long to wait for a TCP connection to the API.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Added to a verb's own wait for the whole request, so a slow answer is not cut short.
const REQUEST_MARGIN: Duration = Duration::from_secs(30);
/// The wait assumed for verbs that talk to a terminal without a `--wait` of their own (`query`,
/// `settle`): the daemon asks the terminal, possibly about several payments.
const TERMINAL_VERB_WAIT: Duration = Duration::from_secs(100);
/// The wait assumed for `reconcile`: the daemon may look up many entries at the ledger.
const RECONCILE_WAIT: Duration = Duration::from_secs(300);
/// The wait assumed for `report`: a report of every collection point reads much of the journal.
const REPORT_WAIT: Duration = Duration::from_secs(120);

/// The exit status of a client verb (docs/api.md, "CLI").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exit {
    /// 0: done (collect, void, refund approved; settlement balanced; a lookup or listing answered).
    Done,
    /// 1: the API refused the request, or answered with something that is not its documented JSON.
    Refused,
    /// 2: bad usage, or the API could not be reached.
    Usage,
    /// 3: the terminal declined, or did not charge.
    Declined,
    /// 4: the outcome is still unknown (the payment id was printed).
    Unknown,
    /// 5: the settlement, or the day's reconciliation, is not balanced.
    NotBalanced,
}

impl Exit {
    /// The numeric status.
    pub const fn code(self) -> u8 {
        match self {
            Exit::Done => 0,
            Exit::Refused => 1,
            Exit::Usage => 2,
            Exit::Declined => 3,
            Exit::Unknown => 4,
            Exit::NotBalanced => 5,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

/// Runs one client verb to the end on its own runtime: the entry point of `main`.
pub fn run(command: ClientCommand) -> ExitCode {
    let verb = command.verb();
    let target = match http::Target::resolve(command.api_args()) {
        Ok(target) => target,
        Err(message) => {
            eprintln!("zhengjiao {verb}: {message}");
            return Exit::Usage.into();
        }
    };
    let wait = match &command {
        ClientCommand::Collect(args) => Duration::from_secs(args.wait),
        ClientCommand::Void { wait, .. } | ClientCommand::Refund { wait, .. } => Duration::from_secs(*wait),
        ClientCommand::Query { .. } | ClientCommand::Settle { .. } => TERMINAL_VERB_WAIT,
        ClientCommand::Lookup { .. }
        | ClientCommand::Payments(_)
        | ClientCommand::Terminals { .. }
        | ClientCommand::Ledger(_) => Duration::ZERO,
        // Looking up a day's entries at the ledger can take a while.
        ClientCommand::Reconcile(_) => RECONCILE_WAIT,
        ClientCommand::Report(_) => REPORT_WAIT,
    };
    let api = match http::Api::new(target, CONNECT_TIMEOUT, wait.saturating_add(REQUEST_MARGIN)) {
        Ok(api) => api,
        Err(e) => {
            eprintln!("zhengjiao {verb}: cannot start the HTTP client: {e}");
            return Exit::Usage.into();
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("zhengjiao {verb}: cannot start the runtime: {e}");
            return Exit::Usage.into();
        }
    };
    let json = command.api_args().json;
    let out = render::Out::new(verb, json);
    runtime.block_on(verbs::run(&api, &command, &out)).into()
}
