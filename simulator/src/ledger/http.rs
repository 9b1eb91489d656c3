//! The HTTP face: the `/v1` API of ledger-api.md behind its gate (faults, then body, then signature),
//! and the `/control/` endpoints (loopback only, no signature, no faults).

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::macros::format_description;
use time::Date;
use tokio::time::Instant;

use super::auth;
use super::conn::ConnInfo;
use super::entry::{self, Entry, FieldError};
use super::faults::{LedgerFaultsPatch, Refusal, MAX_OUTAGE_SECS};
use super::store::Decision;
use super::Shared;

/// Most entries in one `POST /v1/entries` (contract: 1..=500).
pub(crate) const MAX_ENTRIES: usize = 500;
/// Largest request body read, in bytes (500 entries of the longest fields fit well within it).
pub(crate) const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

type AppState = Arc<Shared>;

/// The whole server: `/v1` behind its gate, `/control/` behind the loopback check.
pub(crate) fn router(shared: AppState) -> Router {
    let v1 = Router::new()
        .route("/v1/entries", post(post_entries))
        .route("/v1/entries/{entry_id}", get(get_entry))
        .route("/v1/summary", get(get_summary))
        .route_layer(middleware::from_fn_with_state(shared.clone(), v1_gate));
    let control = Router::new()
        .route("/control/counters", get(control_counters))
        .route("/control/faults", get(control_faults).post(control_set_faults))
        .route("/control/down", post(control_down))
        .route("/control/entries/{entry_id}", axum::routing::delete(control_remove_entry))
        .route_layer(middleware::from_fn(loopback_only));
    v1.merge(control).fallback(not_found).with_state(shared)
}

/// A JSON answer with the contract's content type.
fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let text = serde_json::to_vec(body).unwrap_or_default();
    let mut response = (status, text).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    response
}

/// An error answer: `{"error": <code>, "reason": <text>}`.
fn error_response(status: StatusCode, error: &str, reason: impl Into<String>) -> Response {
    json_response(status, &json!({ "error": error, "reason": reason.into() }))
}

/// The request body, read in full once the signature checks out.
#[derive(Debug, Clone)]
struct VerifiedBody(Bytes);

/// Why a body could not be read.
enum BodyError {
    TooLarge,
    Broken,
}

/// Reads a body of at most `limit` bytes.
async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let Ok(data) = frame.map_err(|_| BodyError::Broken)?.into_data() else { continue };
        if buf.len().saturating_add(data.len()) > limit {
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

fn unix_now() -> i64 {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// Every `/v1` request passes here: the fault plan is drawn, refusals answer at once, then the body is
/// read and the signature checked (401 processes nothing), then the handler runs; a slow answer waits
/// after it, and a drop cuts the connection once the entries are committed.
async fn v1_gate(
    State(shared): State<AppState>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    request: Request,
    next: Next,
) -> Response {
    shared.counters.bump(|c| c.requests += 1);
    let plan = shared.faults.plan(Instant::now());
    match plan.refuse {
        Some(Refusal::Outage { retry_after }) => {
            shared.counters.bump(|c| c.faults.outage += 1);
            return unavailable(retry_after, "the ledger is down (outage window)");
        }
        Some(Refusal::Unavailable { retry_after }) => {
            shared.counters.bump(|c| c.faults.unavailable += 1);
            return unavailable(retry_after, "the ledger is busy (injected fault)");
        }
        Some(Refusal::Error) => {
            shared.counters.bump(|c| c.faults.error += 1);
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "injected fault");
        }
        None => {}
    }

    let (mut parts, body) = request.into_parts();
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let too_large =
        || error_response(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", format!("more than {MAX_BODY_BYTES} bytes"));
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        shared.counters.bump(|c| c.bad_requests += 1);
        return too_large();
    }
    let body = match read_body(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            shared.counters.bump(|c| c.bad_requests += 1);
            return too_large();
        }
        Err(BodyError::Broken) => {
            shared.counters.bump(|c| c.bad_requests += 1);
            return error_response(StatusCode::BAD_REQUEST, "malformed_body", "the body could not be read");
        }
    };
    let verdict =
        auth::verify(&shared.keys, &parts.headers, parts.method.as_str(), parts.uri.path(), &body, unix_now());
    if let Err(e) = verdict {
        shared.counters.bump(|c| c.unauthorized += 1);
        tracing::info!(peer = %conn.peer, reason = %e.reason(), "ledger: 401");
        return error_response(StatusCode::UNAUTHORIZED, "unauthorized", e.reason());
    }

    let is_submission = parts.method == Method::POST && parts.uri.path() == "/v1/entries";
    parts.extensions.insert(VerifiedBody(body));
    let response = next.run(Request::from_parts(parts, Body::empty())).await;
    if matches!(response.status(), StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE) {
        shared.counters.bump(|c| c.bad_requests += 1);
    }

    if let Some(delay) = plan.slow {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        shared.counters.bump(|c| {
            c.faults.slow += 1;
            c.faults.slow_ms = c.faults.slow_ms.saturating_add(ms);
        });
        tokio::time::sleep(delay).await;
    }
    if plan.drop && is_submission && response.status() == StatusCode::OK {
        shared.counters.bump(|c| c.faults.dropped += 1);
        tracing::info!(peer = %conn.peer, "ledger: entries committed, connection dropped (injected fault)");
        conn.cut.cut();
    }
    response
}

fn unavailable(retry_after: u32, reason: &str) -> Response {
    let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, "unavailable", reason);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

/// `{"entries": [...]}`: anything else at the top level is a malformed body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntriesBody {
    entries: Vec<Value>,
}

/// One element of the answer's `results`.
#[derive(Serialize)]
struct EntryResult {
    entry_id: Option<String>,
    status: &'static str,
    tax_voucher_no: Option<String>,
    reason: Option<String>,
}

/// `POST /v1/entries`.
async fn post_entries(
    State(shared): State<AppState>,
    Extension(VerifiedBody(body)): Extension<VerifiedBody>,
) -> Response {
    let bad = |reason: String| error_response(StatusCode::BAD_REQUEST, "malformed_body", reason);
    let entries = match serde_json::from_slice::<EntriesBody>(&body) {
        Ok(parsed) => parsed.entries,
        Err(e) => return bad(format!("expected {{\"entries\": [ENTRY, ...]}}: {e}")),
    };
    if entries.is_empty() {
        return bad("no entries: a request carries 1 to 500".into());
    }
    if entries.len() > MAX_ENTRIES {
        let reason = format!("{} entries: at most {MAX_ENTRIES} per request", entries.len());
        return error_response(StatusCode::PAYLOAD_TOO_LARGE, "too_many_entries", reason);
    }
    let mut checked: Vec<Result<Entry, FieldError>> = Vec::with_capacity(entries.len());
    for (i, value) in entries.iter().enumerate() {
        match value.as_object() {
            Some(map) => checked.push(entry::parse_entry(map)),
            None => return bad(format!("entries[{i}] is not an object")),
        }
    }

    let to_store = checked.iter().map(|c| c.as_ref().ok().cloned()).collect();
    let decisions = match shared.store.submit(to_store).await {
        Ok(decisions) => decisions,
        Err(e) => {
            tracing::error!(error = %e, "ledger: store failed; nothing committed");
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "store_error", e.to_string());
        }
    };

    let results: Vec<EntryResult> = entries
        .iter()
        .zip(checked)
        .zip(decisions)
        .map(|((value, checked), decision)| {
            let entry_id = entry::echoed_id(value);
            match (checked, decision) {
                (Err(field), _) => rejected(entry_id, field.reason()),
                (Ok(_), Some(Decision::Created(v))) => voucher(entry_id, "created", v),
                (Ok(_), Some(Decision::Exists(v))) => voucher(entry_id, "exists", v),
                (Ok(_), Some(Decision::Rejected(reason))) => rejected(entry_id, reason),
                // The store answers every entry it was given.
                (Ok(_), None) => rejected(entry_id, "internal_error".into()),
            }
        })
        .collect();
    shared.counters.bump(|c| {
        for r in &results {
            match (r.status, r.reason.as_deref()) {
                ("created", _) => c.entries_created += 1,
                ("exists", _) => c.entries_exists += 1,
                (_, reason) => {
                    c.entries_rejected += 1;
                    if reason == Some("exists_with_different_content") {
                        c.entries_conflicting += 1;
                    }
                }
            }
        }
    });
    json_response(StatusCode::OK, &json!({ "results": results }))
}

fn voucher(entry_id: Option<String>, status: &'static str, voucher: String) -> EntryResult {
    EntryResult { entry_id, status, tax_voucher_no: Some(voucher), reason: None }
}

fn rejected(entry_id: Option<String>, reason: String) -> EntryResult {
    EntryResult { entry_id, status: "rejected", tax_voucher_no: None, reason: Some(reason) }
}

/// `GET /v1/entries/{entry_id}`.
async fn get_entry(State(shared): State<AppState>, entry_id: Result<Path<String>, PathRejection>) -> Response {
    let Ok(Path(entry_id)) = entry_id else {
        return error_response(StatusCode::BAD_REQUEST, "malformed_path", "the entry id does not decode");
    };
    match shared.store.get(entry_id).await {
        Ok(Some(stored)) => json_response(StatusCode::OK, &stored),
        Ok(None) => error_response(StatusCode::NOT_FOUND, "not_found", "no entry with this id"),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, "store_error", e.to_string()),
    }
}

/// The query of `GET /v1/summary`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SummaryQuery {
    date: String,
    collection_point: Option<String>,
}

/// `GET /v1/summary?date=YYYY-MM-DD[&collection_point=CODE]`.
async fn get_summary(State(shared): State<AppState>, query: Result<Query<SummaryQuery>, QueryRejection>) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, "malformed_query", e.body_text()),
    };
    let Ok(date) = Date::parse(&query.date, format_description!("[year]-[month]-[day]")) else {
        return error_response(StatusCode::BAD_REQUEST, "malformed_query", "date: expected YYYY-MM-DD");
    };
    match shared.store.summary(date, query.collection_point).await {
        Ok(summary) => json_response(StatusCode::OK, &summary),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, "store_error", e.to_string()),
    }
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// The control surface answers only peers on the loopback interface.
async fn loopback_only(ConnectInfo(conn): ConnectInfo<ConnInfo>, request: Request, next: Next) -> Response {
    if !conn.peer.ip().is_loopback() {
        return error_response(StatusCode::FORBIDDEN, "forbidden", "the control surface answers loopback peers only");
    }
    next.run(request).await
}

/// `GET /control/counters`.
async fn control_counters(State(shared): State<AppState>) -> Response {
    json_response(StatusCode::OK, &shared.counters.snapshot())
}

/// `GET /control/faults`.
async fn control_faults(State(shared): State<AppState>) -> Response {
    json_response(StatusCode::OK, &shared.faults.faults())
}

/// `POST /control/faults` with a partial [`super::LedgerFaults`]; answers the faults now in force.
async fn control_set_faults(State(shared): State<AppState>, body: Bytes) -> Response {
    let patch = match serde_json::from_slice::<LedgerFaultsPatch>(&body) {
        Ok(patch) => patch,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, "malformed_body", e.to_string()),
    };
    match shared.faults.patch(&patch) {
        Ok(faults) => json_response(StatusCode::OK, &faults),
        Err(e) => error_response(StatusCode::BAD_REQUEST, "invalid_faults", e.to_string()),
    }
}

/// `DELETE /control/entries/{entry_id}`: the ledger loses the entry (a reconciliation drill).
async fn control_remove_entry(
    State(shared): State<AppState>,
    entry_id: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(entry_id)) = entry_id else {
        return error_response(StatusCode::BAD_REQUEST, "malformed_path", "the entry id does not decode");
    };
    match shared.store.remove(entry_id.clone()).await {
        Ok(true) => {
            tracing::info!(entry = %entry_id, "ledger: entry removed through the control surface");
            json_response(StatusCode::OK, &json!({ "removed": entry_id }))
        }
        Ok(false) => error_response(StatusCode::NOT_FOUND, "not_found", "no entry with this id"),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, "store_error", e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DownQuery {
    seconds: u64,
}

/// `POST /control/down?seconds=N`: an outage window of N seconds from now; 0 ends it.
async fn control_down(State(shared): State<AppState>, query: Result<Query<DownQuery>, QueryRejection>) -> Response {
    let seconds = match query {
        Ok(Query(DownQuery { seconds })) if seconds <= MAX_OUTAGE_SECS => seconds,
        Ok(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "malformed_query",
                format!("seconds: at most {MAX_OUTAGE_SECS}"),
            )
        }
        Err(e) => return error_response(StatusCode::BAD_REQUEST, "malformed_query", e.body_text()),
    };
    shared.faults.down_for(Instant::now(), Duration::from_secs(seconds));
    json_response(StatusCode::OK, &json!({ "down_for_secs": seconds }))
}
