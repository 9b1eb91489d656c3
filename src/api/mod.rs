//! The operator HTTP API (axum), documented in `docs/api.md`: bearer tokens checked against the
//! configuration's SHA-256 digests, collectors confined to their collection point, JSON errors with a
//! stable `code`.

mod body;
mod ledger;
mod metrics;
mod report;
mod routes;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::collect::{Collection, CollectionSettings, Operator, ServiceError};
use crate::config::Config;
use crate::import::journal_path;
use crate::journal::{JournalOptions, SqliteStore};
use crate::ledger::{ClientSettings, Forwarder, ForwarderSettings, LedgerClient};

pub use routes::router;

/// The most bytes an import's body (a roster file) may have.
pub const MAX_BODY: usize = 256 * 1024 * 1024;

/// The most bytes any other request's body may have (JSON).
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    /// The collection service.
    pub collection: Collection,
    /// The ledger forwarder.
    pub forwarder: Forwarder,
    /// Operators by the hex SHA-256 of their token.
    operators: Arc<HashMap<String, Operator>>,
    /// Where imports are staged.
    data_dir: PathBuf,
}

impl ApiState {
    /// The state for a service, its ledger forwarder and the configuration's operators.
    pub fn new(collection: Collection, forwarder: Forwarder, config: &Config) -> ApiState {
        let operators =
            config.operators.iter().map(|o| (o.token_sha256.to_ascii_lowercase(), Operator::from_config(o))).collect();
        ApiState { collection, forwarder, operators: Arc::new(operators), data_dir: config.data_dir.clone() }
    }

    /// The operator a request's bearer token names.
    fn operator(&self, headers: &HeaderMap) -> Result<Operator, ApiError> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("an Authorization: Bearer token is required"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be \"Bearer TOKEN\""))?;
        let digest = Sha256::digest(token.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.operators.get(&hex).cloned().ok_or_else(|| ApiError::unauthorized("no operator has this token"))
    }
}

/// An error answer: a status and a JSON body with `code` and `message` (and more fields).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError { status, body: json!({"code": code, "message": message.into()}) }
    }

    fn unauthorized(message: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    fn bad(field: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("{field}: {message}"));
        e.with("field", json!(field));
        e
    }

    fn with(&mut self, key: &str, value: Value) {
        if let Some(obj) = self.body.as_object_mut() {
            obj.insert(key.to_owned(), value);
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let message = e.to_string();
        match e {
            ServiceError::BadRequest { field, message } => ApiError::bad(field, message),
            ServiceError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m),
            ServiceError::NotFound { what, .. } => {
                let mut e = ApiError::new(StatusCode::NOT_FOUND, "not_found", message);
                e.with("what", json!(what));
                e
            }
            ServiceError::Conflict { reason, .. } => {
                let mut e = ApiError::new(StatusCode::CONFLICT, "conflict", message);
                e.with("reason", json!(reason));
                e
            }
            ServiceError::Policy { rule, .. } => {
                let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "policy", message);
                e.with("rule", json!(rule.code()));
                e
            }
            ServiceError::TerminalUnavailable(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "terminal_unavailable", m)
            }
            ServiceError::Journal(m) => {
                // The detail (file paths, SQLite's words) is for the log, not for the client.
                tracing::error!(error = %m, "internal failure answered 500");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the daemon could not complete the request; its log has the details",
                )
            }
            // Future variants: an internal error, never a panic.
            #[allow(unreachable_patterns)]
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// A running daemon: the journal, the collection service, the ledger forwarder and the API, started
/// in this process. `serve` runs one until a signal; the demo and tests start one beside simulators.
pub struct Daemon {
    /// Where the API listens.
    pub addr: SocketAddr,
    /// The collection service.
    pub collection: Collection,
    /// The ledger forwarder.
    pub forwarder: Forwarder,
    store: SqliteStore,
    stop: tokio_util::sync::CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Daemon {
    /// Opens the journal, starts the terminal links, the recovery of unknown outcomes and the ledger
    /// forwarder, and binds the API. Returns once the API accepts connections.
    pub async fn start(config: &Config) -> Result<Daemon, String> {
        let clock = config.clock.start();
        let options = JournalOptions { clock, ..JournalOptions::default() };
        let store = SqliteStore::open(journal_path(&config.data_dir), options)
            .await
            .map_err(|e| format!("cannot open the journal: {e}"))?;
        let collection = Collection::start(config, store.clone(), clock, CollectionSettings::default())
            .await
            .map_err(|e| format!("cannot start: {e}"))?;
        let client = match LedgerClient::from_config(&config.ledger, ClientSettings::default()) {
            Ok(c) => c,
            Err(e) => {
                collection.shutdown().await;
                return Err(e.to_string());
            }
        };
        // The outbox drains from the start: entries left by an earlier run are sent first.
        let forwarder =
            Forwarder::start(store.clone(), client, clock, collection.outbox_signal(), ForwarderSettings::default());
        let listener = match tokio::net::TcpListener::bind(config.api_listen).await {
            Ok(l) => l,
            Err(e) => {
                forwarder.shutdown().await;
                collection.shutdown().await;
                return Err(format!("cannot listen on {}: {e}", config.api_listen));
            }
        };
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let app = router(ApiState::new(collection.clone(), forwarder.clone(), config));
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).with_graceful_shutdown(async move { stopped.cancelled().await }).await
        });
        tracing::info!(%addr, terminals = config.terminals.len(), "API listening");
        Ok(Daemon { addr, collection, forwarder, store, stop, server })
    }

    /// Stops the API, the forwarder and the links, and closes the journal.
    pub async fn shutdown(self) -> Result<(), String> {
        self.stop.cancel();
        let served = self.server.await;
        self.forwarder.shutdown().await;
        self.collection.shutdown().await;
        self.store.close().await;
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// `zhengjiao serve`: starts a [`Daemon`] and serves until SIGINT or SIGTERM. Prints
/// `listening http://ADDR` on standard output once the API accepts connections.
pub async fn serve(config: Config) -> ExitCode {
    let daemon = match Daemon::start(&config).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        // Readiness line for supervisors and tests; a closed stdout does not stop the daemon.
        let _ = writeln!(out, "listening http://{}", daemon.addr);
        let _ = out.flush();
    }
    shutdown_signal().await;
    match daemon.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}
