//! The ledger routes of docs/api.md: the forwarder's status, the dead letters and their replay, and the
//! daily reconciliation.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::body::query_param;
use super::{ApiError, ApiState};
use crate::domain::CollectionPointCode;
use crate::journal::{ForwardError, OutboxEntry};
use crate::ledger::{reconcile as run_reconcile, ReconcileError, MAX_DEAD_LETTERS};

type Answer = Result<axum::response::Response, ApiError>;
type Params = axum::extract::Query<std::collections::HashMap<String, String>>;

/// An outbox entry as the API shows it: no payer data (the ID number and name stay in the journal).
pub(crate) fn entry_json(e: &OutboxEntry) -> Value {
    let field = |name: &str| e.payload.get(name).cloned().unwrap_or(Value::Null);
    let state = if e.forwarded_at.is_some() {
        "forwarded"
    } else if e.dead_letter.is_some() {
        "dead_letter"
    } else {
        "queued"
    };
    json!({
        "entry_id": e.entry_id,
        "kind": e.kind.as_str(),
        "payment_id": e.payment_id,
        "reverses": e.reverses,
        "state": state,
        "reason": e.dead_letter,
        "amount": field("amount"),
        "insurance": field("insurance"),
        "year": field("year"),
        "collection_serial": field("collection_serial"),
        "collection_point": field("collection_point"),
        "terminal_id": field("terminal_id"),
        "occurred_at": field("occurred_at"),
        "created_at": e.created_at,
        "attempts": e.attempts,
        "last_error": e.last_error,
        "forwarded_at": e.forwarded_at,
        "tax_voucher_no": e.tax_voucher_no,
    })
}

fn journal_error(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "journal failure answered 500");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

/// `GET /v1/ledger/status`.
pub(crate) async fn status(State(s): State<ApiState>, headers: HeaderMap) -> Answer {
    s.operator(&headers)?;
    let status = s.forwarder.status().await.map_err(journal_error)?;
    Ok(Json(status).into_response())
}

/// `GET /v1/ledger/dead-letters[?limit=N]`.
pub(crate) async fn dead_letters(State(s): State<ApiState>, headers: HeaderMap, params: Params) -> Answer {
    let who = s.operator(&headers)?;
    let limit = query_param(&params, "limit", |v| {
        v.parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_DEAD_LETTERS).contains(n))
            .ok_or_else(|| format!("{v:?}: expected 1 to {MAX_DEAD_LETTERS}"))
    })?;
    let limit = limit.unwrap_or(1000);
    // A collector's own dead letters may lie behind others': read them all (bounded), filter, then
    // apply the limit.
    let read = if who.is_admin() { limit } else { MAX_DEAD_LETTERS };
    let list = s.forwarder.dead_letters(read).await.map_err(journal_error)?;
    let visible: Vec<Value> = list
        .iter()
        .filter(|e| {
            who.is_admin()
                || e.payload
                    .get("collection_point")
                    .and_then(Value::as_str)
                    .and_then(|p| CollectionPointCode::parse(p).ok())
                    .is_some_and(|p| who.may_act_at(&p))
        })
        .take(limit)
        .map(entry_json)
        .collect();
    Ok(Json(json!({"dead_letters": visible})).into_response())
}

/// `POST /v1/ledger/dead-letters/{entry_id}/retry` (admin).
pub(crate) async fn retry(State(s): State<ApiState>, headers: HeaderMap, Path(entry_id): Path<String>) -> Answer {
    let who = s.operator(&headers)?;
    if !who.is_admin() {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "replaying a dead letter is for admins"));
    }
    match s.forwarder.retry(&entry_id).await {
        Ok(entry) => Ok(Json(json!({"entry": entry_json(&entry)})).into_response()),
        Err(ForwardError::UnknownEntry { .. }) => {
            let mut e = ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no ledger entry {entry_id:?}"));
            e.with("what", json!("entry"));
            Err(e)
        }
        Err(ForwardError::NotDeadLettered { .. }) => {
            let mut e = ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("ledger entry {entry_id:?} is not a dead letter (queued or forwarded)"),
            );
            e.with("reason", json!("not_dead_letter"));
            Err(e)
        }
        Err(other) => Err(journal_error(other)),
    }
}

/// `GET /v1/reconcile?date=YYYY-MM-DD[&collection_point=C]`.
pub(crate) async fn reconcile(State(s): State<ApiState>, headers: HeaderMap, params: Params) -> Answer {
    let who = s.operator(&headers)?;
    let date = query_param(&params, "date", |v| {
        time::Date::parse(v, time::macros::format_description!("[year]-[month]-[day]"))
            .map_err(|_| format!("{v:?} is not a date YYYY-MM-DD"))
    })?
    .ok_or_else(|| ApiError::bad("date", "required (YYYY-MM-DD)"))?;
    let asked = query_param(&params, "collection_point", |v| CollectionPointCode::parse(v).map_err(|e| e.to_string()))?;
    let point = match (asked, who.is_admin()) {
        (asked, true) => asked,
        (Some(p), false) if who.may_act_at(&p) => Some(p),
        (Some(p), false) => {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", format!("collection point {p} is not yours")))
        }
        (None, false) => who.collection_point.clone(),
    };
    match run_reconcile(s.forwarder.store(), s.forwarder.client(), date, point.as_ref()).await {
        Ok(r) => Ok(Json(r).into_response()),
        Err(ReconcileError::Ledger(e)) => {
            let mut err = ApiError::new(
                StatusCode::BAD_GATEWAY,
                "ledger_unavailable",
                format!("the ledger could not be asked: {e}"),
            );
            err.with("kind", json!(e.kind()));
            Err(err)
        }
        Err(e) => Err(journal_error(e)),
    }
}
