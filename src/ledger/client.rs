//! The HTTP client of the ledger's ingest API (ledger-api.md): signed requests over rustls HTTPS (plain
//! HTTP only to a loopback host), and every way a request can fail, sorted by what the caller does next.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use super::answer::{parse_batch_answer, ContractError};
use super::sign::{signature, SigningSecret, KEY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::config::LedgerConfig;
use crate::journal::LedgerAnswer;

/// Largest answer body read from the ledger (500 results are a few tens of kilobytes).
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// Longest `Retry-After` honoured; a longer one is cut to it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Characters of an error body quoted in a message.
const EXCERPT_CHARS: usize = 200;

/// Timeouts of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSettings {
    /// Most time to set up a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Most time for one whole request, answer included; beyond it the outcome is unknown.
    pub request_timeout: Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings { connect_timeout: Duration::from_secs(10), request_timeout: Duration::from_secs(30) }
    }
}

/// Why the client cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The endpoint is not a usable URL.
    #[error("ledger endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// The endpoint given.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
    /// The key id or the secret is empty, or the key id cannot go into a header.
    #[error("ledger key: {0}")]
    Key(String),
    /// reqwest could not build its client (e.g. the TLS roots).
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// Why a request to the ledger gave no usable answer. [`is_unknown`](Self::is_unknown) tells the
/// failures after which the ledger may have stored what was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// `401`: the ledger does not accept our key, signature or clock; nothing was processed.
    #[error("the ledger answered 401 ({reason}): check ledger.key_id and the secret, and this machine's clock")]
    Unauthorized {
        /// The ledger's reason, e.g. `bad_signature`.
        reason: String,
    },
    /// `429` or `503`: retry later, not before `retry_after` when given.
    #[error("the ledger is unavailable (HTTP {status}){}", retry_note(*.retry_after))]
    Unavailable {
        /// 429 or 503.
        status: u16,
        /// The `Retry-After` it gave, bounded by [`MAX_RETRY_AFTER`].
        retry_after: Option<Duration>,
    },
    /// Another `5xx`: retry later.
    #[error("the ledger failed (HTTP {status}): {detail}")]
    ServerError {
        /// The status.
        status: u16,
        /// The start of its body.
        detail: String,
    },
    /// Another status (`400`, `413`, ...): the ledger refused the request as a whole; nothing was
    /// processed.
    #[error("the ledger refused the request (HTTP {status}): {detail}")]
    Refused {
        /// The status.
        status: u16,
        /// The start of its body.
        detail: String,
    },
    /// No answer within the request timeout: unknown, the ledger may have stored the entries.
    #[error("no answer from the ledger within {timeout_ms} ms (outcome unknown)")]
    Timeout {
        /// The timeout.
        timeout_ms: u64,
    },
    /// The connection could not be made, or broke before a whole answer came (unknown once sent).
    #[error("connection to the ledger failed: {detail}")]
    Connection {
        /// The deepest cause.
        detail: String,
    },
    /// A `200` whose body is not the contract's.
    #[error("the ledger's answer breaks the contract: {0}")]
    BadAnswer(#[from] ContractError),
}

fn retry_note(retry_after: Option<Duration>) -> String {
    retry_after.map(|d| format!(", Retry-After {} s", d.as_secs())).unwrap_or_default()
}

impl SendError {
    /// A short stable word for the status: `unauthorized`, `unavailable`, `server_error`, `refused`,
    /// `timeout`, `connection`, `bad_answer`.
    pub fn kind(&self) -> &'static str {
        match self {
            SendError::Unauthorized { .. } => "unauthorized",
            SendError::Unavailable { .. } => "unavailable",
            SendError::ServerError { .. } => "server_error",
            SendError::Refused { .. } => "refused",
            SendError::Timeout { .. } => "timeout",
            SendError::Connection { .. } => "connection",
            SendError::BadAnswer(_) => "bad_answer",
        }
    }

    /// The `Retry-After` the ledger asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// True when the ledger may have acted on the request (no answer, or a broken one): the same
    /// entries are sent again with the same ids, and `exists` settles it.
    pub fn is_unknown(&self) -> bool {
        matches!(self, SendError::Timeout { .. } | SendError::Connection { .. } | SendError::BadAnswer(_))
    }
}

/// An entry as the ledger holds it (`GET /v1/entries/{entry_id}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HeldEntry {
    /// The ENTRY object.
    pub entry: serde_json::Value,
    /// 电子税票号码.
    pub tax_voucher_no: String,
    /// When the ledger received it.
    pub received_at: String,
}

/// The ledger's day totals (`GET /v1/summary`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LedgerSummary {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// One line per collection point, insurance and channel.
    pub lines: Vec<LedgerSummaryLine>,
}

/// One line of [`LedgerSummary`]; totals are yuan strings with two decimals, read as
/// [`rust_decimal::Decimal`], never as floats.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LedgerSummaryLine {
    /// 征缴网点.
    pub collection_point: String,
    /// `pension` or `medical`.
    pub insurance: String,
    /// `pos` or `cash`.
    pub channel: String,
    /// Number of payments.
    pub payments: u64,
    /// Their total.
    #[serde(with = "rust_decimal::serde::str")]
    pub payment_total: rust_decimal::Decimal,
    /// Number of reversals.
    pub reversals: u64,
    /// Their total.
    #[serde(with = "rust_decimal::serde::str")]
    pub reversal_total: rust_decimal::Decimal,
}

/// A client of one ledger with one key. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LedgerClient {
    http: reqwest::Client,
    base: Url,
    key_id: HeaderValue,
    secret: SigningSecret,
    settings: ClientSettings,
}

impl LedgerClient {
    /// A client for the configured ledger.
    pub fn from_config(config: &LedgerConfig, settings: ClientSettings) -> Result<LedgerClient, ClientError> {
        LedgerClient::new(&config.endpoint, &config.key_id, SigningSecret::new(config.secret.expose()), settings)
    }

    /// A client for the ledger at `endpoint` (https, or http to a loopback host), signing with `key_id`
    /// and `secret`.
    pub fn new(
        endpoint: &str,
        key_id: &str,
        secret: SigningSecret,
        settings: ClientSettings,
    ) -> Result<LedgerClient, ClientError> {
        let bad = |reason: &str| ClientError::Endpoint { endpoint: endpoint.to_owned(), reason: reason.to_owned() };
        let base = Url::parse(endpoint.trim_end_matches('/')).map_err(|e| bad(&e.to_string()))?;
        if base.cannot_be_a_base() || base.query().is_some() || base.fragment().is_some() {
            return Err(bad("expected a base URL without query or fragment"));
        }
        let host = base.host_str().ok_or_else(|| bad("no host"))?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let loopback =
            bare.eq_ignore_ascii_case("localhost") || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        match base.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => return Err(bad("http:// is only allowed to a loopback host")),
            _ => return Err(bad("the scheme must be https:// or http://")),
        }
        if key_id.is_empty() || secret.is_empty() {
            return Err(ClientError::Key("the key id and the secret must not be empty".to_owned()));
        }
        let key_id = HeaderValue::from_str(key_id)
            .map_err(|_| ClientError::Key("the key id cannot go into an HTTP header".to_owned()))?;
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("zhengjiao/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(LedgerClient { http, base, key_id, secret, settings })
    }

    /// The ledger's base URL, for messages.
    pub fn endpoint(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The URL of `segments` below the base (each percent-encoded).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends one signed request and reads its answer (status, body) in full.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Option<Duration>, Vec<u8>), SendError> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or_default();
        // The path as it goes on the wire (percent-encoded), without the query string.
        let sig = signature(&self.secret, timestamp, method.as_str(), url.path(), &body);
        let mut request = self
            .http
            .request(method, url)
            .header(KEY_ID_HEADER, self.key_id.clone())
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, sig);
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, "application/json; charset=utf-8").body(body);
        }
        let mut response = request.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(&e))? {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(SendError::Connection {
                    detail: format!("the answer is longer than {MAX_ANSWER_BYTES} bytes; not read"),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((status, retry_after, bytes))
    }

    fn transport(&self, e: &reqwest::Error) -> SendError {
        if e.is_timeout() {
            SendError::Timeout {
                timeout_ms: u64::try_from(self.settings.request_timeout.as_millis()).unwrap_or(u64::MAX),
            }
        } else {
            SendError::Connection { detail: innermost(e) }
        }
    }

    /// `POST /v1/entries` with `body` (`{"entries": [...]}` holding the entries `ids`, in order); the
    /// answer is checked against the contract and given one verdict per entry, in the order sent.
    pub async fn post_entries(&self, ids: &[&str], body: Vec<u8>) -> Result<Vec<LedgerAnswer>, SendError> {
        let (status, retry_after, bytes) = self.send(Method::POST, self.url(&["v1", "entries"]), body).await?;
        if status != StatusCode::OK {
            return Err(status_error(status, retry_after, &bytes));
        }
        Ok(parse_batch_answer(ids, &bytes)?)
    }

    /// `GET /v1/entries/{entry_id}`: the entry as the ledger holds it, or `None` on `404`.
    pub async fn entry(&self, entry_id: &str) -> Result<Option<HeldEntry>, SendError> {
        let (status, retry_after, bytes) =
            self.send(Method::GET, self.url(&["v1", "entries", entry_id]), Vec::new()).await?;
        match status {
            StatusCode::OK => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| SendError::BadAnswer(ContractError::NotJson(e.to_string()))),
            StatusCode::NOT_FOUND => Ok(None),
            other => Err(status_error(other, retry_after, &bytes)),
        }
    }

    /// `GET /v1/summary?date=D[&collection_point=C]`.
    pub async fn summary(&self, date: time::Date, collection_point: Option<&str>) -> Result<LedgerSummary, SendError> {
        let mut url = self.url(&["v1", "summary"]);
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("date", &format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day()));
            if let Some(point) = collection_point {
                query.append_pair("collection_point", point);
            }
        }
        let (status, retry_after, bytes) = self.send(Method::GET, url, Vec::new()).await?;
        if status != StatusCode::OK {
            return Err(status_error(status, retry_after, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| SendError::BadAnswer(ContractError::NotJson(e.to_string())))
    }
}

/// The error of a status other than `200`.
fn status_error(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> SendError {
    let code = status.as_u16();
    match status {
        StatusCode::UNAUTHORIZED => {
            let reason = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(|r| excerpt(r.as_bytes())))
                .unwrap_or_else(|| excerpt(body));
            SendError::Unauthorized { reason }
        }
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            SendError::Unavailable { status: code, retry_after }
        }
        s if s.is_server_error() => SendError::ServerError { status: code, detail: excerpt(body) },
        _ => SendError::Refused { status: code, detail: excerpt(body) },
    }
}

/// The start of a body, control characters blanked, anything shaped like a full ID or card number
/// masked: it is kept in the status and the journal, and shown to operators.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(EXCERPT_CHARS).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        out.push_str("...");
    }
    crate::logging::redact(&out).into_owned()
}

/// The deepest cause of an error ("Connection refused (os error 111)" rather than "error sending
/// request").
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
