//! The routes of docs/api.md.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::body::{query_param, wait_ms, Body};
use super::{ApiError, ApiState, MAX_BODY, MAX_JSON_BODY};
use crate::collect::{CollectRequest, LineChoice, PaymentView, ReversalRequest};
use crate::domain::{CollectionPointCode, CollectionSerial, IdNumber, Insurance};
use crate::import::{apply_collectors, apply_roster, read_collectors, read_roster, TextEncoding};
use crate::journal::PaymentState;

type Answer = Result<Response, ApiError>;
type Params = Query<HashMap<String, String>>;

/// The API's router.
pub fn router(state: ApiState) -> Router {
    let imports = Router::new()
        .route("/v1/imports/roster", post(import_roster))
        .route("/v1/imports/collectors", post(import_collectors))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), admin_only));
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/lookup/{query}", get(lookup))
        .route("/v1/collect", post(collect))
        .route("/v1/payments", get(payments))
        .route("/v1/payments/{id}", get(payment))
        .route("/v1/payments/{id}/query", post(query))
        .route("/v1/payments/{id}/void", post(void))
        .route("/v1/payments/{id}/refund", post(refund))
        .route("/v1/terminals", get(terminals))
        .route("/v1/terminals/{name}/settle", post(settle))
        .route("/v1/settlements", get(settlements))
        .route("/v1/ledger/status", get(super::ledger::status))
        .route("/v1/ledger/dead-letters", get(super::ledger::dead_letters))
        .route("/v1/ledger/dead-letters/{entry_id}/retry", post(super::ledger::retry))
        .route("/v1/reconcile", get(super::ledger::reconcile))
        .route("/v1/reports/{kind}", get(super::report::report))
        .route("/metrics", get(super::metrics::metrics))
        .merge(imports)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .with_state(state)
}

/// Imports only: the token and the admin role are checked before a byte of the (large) body is read.
async fn admin_only(
    State(s): State<ApiState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match s.operator(request.headers()) {
        Ok(who) if who.is_admin() => next.run(request).await,
        Ok(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", "imports are for admins").into_response(),
        Err(e) => e.into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route; see docs/api.md")
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// 200 when final, 202 while the outcome is open.
fn payment_answer(view: &PaymentView) -> Response {
    let status = if view.is_final() { StatusCode::OK } else { StatusCode::ACCEPTED };
    (status, Json(view.to_json())).into_response()
}

async fn lookup(State(s): State<ApiState>, headers: HeaderMap, Path(query): Path<String>) -> Answer {
    let who = s.operator(&headers)?;
    let found = s.collection.lookup(&who, &query).await?;
    Ok(Json(json!({"lines": found.lines, "elsewhere": found.elsewhere})).into_response())
}

fn insurance(body: &Body) -> Result<Option<Insurance>, ApiError> {
    body.str("insurance")?
        .map(|i| Insurance::parse(i).map_err(|e| ApiError::bad("insurance", e.to_string())))
        .transpose()
}

async fn collect(State(s): State<ApiState>, headers: HeaderMap, bytes: Bytes) -> Answer {
    let who = s.operator(&headers)?;
    let body =
        Body::parse(&bytes, &["serial", "id_number", "insurance", "year", "tier", "amount", "terminal", "wait_ms"])?;
    let insurance = insurance(&body)?;
    let line = match (body.str("serial")?, body.str("id_number")?) {
        (Some(serial), None) => LineChoice::Serial {
            serial: CollectionSerial::parse(serial).map_err(|e| ApiError::bad("serial", e.to_string()))?,
            insurance,
        },
        (None, Some(id)) => LineChoice::IdNumber {
            id_number: IdNumber::parse(id).map_err(|e| ApiError::bad("id_number", e.to_string()))?,
            insurance: insurance.ok_or_else(|| ApiError::bad("insurance", "required with id_number"))?,
        },
        (Some(_), Some(_)) => return Err(ApiError::bad("serial", "give serial or id_number, not both")),
        (None, None) => return Err(ApiError::bad("serial", "required (or id_number with insurance)")),
    };
    let year = body
        .int("year")?
        .map(|y| i32::try_from(y).ok().filter(|y| (2000..=2100).contains(y)))
        .map(|y| y.ok_or_else(|| ApiError::bad("year", "expected a year between 2000 and 2100")))
        .transpose()?;
    let terminal = body.str("terminal")?.ok_or_else(|| ApiError::bad("terminal", "required"))?.to_owned();
    let req = CollectRequest {
        line,
        year,
        tier: body.yuan("tier")?,
        amount: body.yuan("amount")?,
        terminal,
        wait: body.wait()?,
    };
    let view = s.collection.collect(&who, req).await?;
    Ok(payment_answer(&view))
}

async fn payment(State(s): State<ApiState>, headers: HeaderMap, Path(id): Path<String>, params: Params) -> Answer {
    let who = s.operator(&headers)?;
    let wait = query_param(&params, "wait_ms", |v| v.parse::<i64>().map_err(|e| format!("{v:?}: {e}")))?
        .map(wait_ms)
        .transpose()?;
    let payment = s.collection.payment_for(&who, &id).await?;
    let view = s.collection.wait_payment(&payment.id, wait.unwrap_or_default()).await?;
    Ok((StatusCode::OK, Json(view.to_json())).into_response())
}

async fn payments(State(s): State<ApiState>, headers: HeaderMap, params: Params) -> Answer {
    let who = s.operator(&headers)?;
    let date = query_param(&params, "date", |v| {
        time::Date::parse(v, time::macros::format_description!("[year]-[month]-[day]"))
            .map_err(|_| format!("{v:?} is not a date YYYY-MM-DD"))
    })?;
    let state = query_param(&params, "state", |v| PaymentState::parse(v).map_err(|e| e.to_string()))?;
    let point = query_param(&params, "collection_point", |v| CollectionPointCode::parse(v).map_err(|e| e.to_string()))?;
    let limit = query_param(&params, "limit", |v| v.parse::<usize>().map_err(|e| format!("{v:?}: {e}")))?;
    let terminal = params.get("terminal").filter(|t| !t.is_empty()).map(String::as_str);
    let list = s.collection.payments(&who, date, state, terminal, point, limit.unwrap_or(1000)).await?;
    Ok(Json(json!({"payments": list})).into_response())
}

async fn query(State(s): State<ApiState>, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    let who = s.operator(&headers)?;
    let view = s.collection.query(&who, &id).await?;
    Ok((StatusCode::OK, Json(view.to_json())).into_response())
}

fn reversal_answer(view: &PaymentView) -> Response {
    let reversal = view
        .reversal
        .and_then(|id| view.reversals.iter().find(|r| r.id == id))
        .map(crate::collect::reversal_json)
        .unwrap_or(Value::Null);
    let status = if view.is_final() { StatusCode::OK } else { StatusCode::ACCEPTED };
    (status, Json(json!({"payment": view.to_json(), "reversal": reversal}))).into_response()
}

async fn void(State(s): State<ApiState>, headers: HeaderMap, Path(id): Path<String>, bytes: Bytes) -> Answer {
    let who = s.operator(&headers)?;
    let body = Body::parse(&bytes, &["wait_ms"])?;
    let view = s.collection.void(&who, ReversalRequest { payment: id, amount: None, wait: body.wait()? }).await?;
    Ok(reversal_answer(&view))
}

async fn refund(State(s): State<ApiState>, headers: HeaderMap, Path(id): Path<String>, bytes: Bytes) -> Answer {
    let who = s.operator(&headers)?;
    let body = Body::parse(&bytes, &["amount", "wait_ms"])?;
    let req = ReversalRequest { payment: id, amount: body.yuan("amount")?, wait: body.wait()? };
    let view = s.collection.refund(&who, req).await?;
    Ok(reversal_answer(&view))
}

async fn terminals(State(s): State<ApiState>, headers: HeaderMap) -> Answer {
    let who = s.operator(&headers)?;
    let mut out = Vec::new();
    let open = s.collection.open_outcomes().await?;
    for (point, status) in s.collection.terminals() {
        if !who.may_act_at(&point) {
            continue;
        }
        let unknown = status.terminal_id.as_ref().and_then(|id| open.get(id)).copied().unwrap_or(0);
        let mut v = serde_json::to_value(&status).unwrap_or(Value::Null);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("collection_point".to_owned(), json!(point.as_str()));
            obj.insert("unknown".to_owned(), json!(unknown));
        }
        out.push(v);
    }
    Ok(Json(json!({"terminals": out})).into_response())
}

async fn settle(State(s): State<ApiState>, headers: HeaderMap, Path(name): Path<String>) -> Answer {
    let who = s.operator(&headers)?;
    let view = s.collection.settle(&who, &name).await?;
    Ok(Json(view.to_json()).into_response())
}

async fn settlements(State(s): State<ApiState>, headers: HeaderMap, params: Params) -> Answer {
    let who = s.operator(&headers)?;
    let terminal = params.get("terminal").filter(|t| !t.is_empty()).map(String::as_str);
    let list = s.collection.settlements(&who, terminal).await?;
    Ok(Json(json!({"settlements": list.iter().map(|v| v.to_json()).collect::<Vec<_>>()})).into_response())
}

/// Which register an import is for.
#[derive(Clone, Copy)]
enum ImportKind {
    Roster,
    Collectors,
}

async fn import_roster(State(s): State<ApiState>, headers: HeaderMap, params: Params, bytes: Bytes) -> Answer {
    import(s, headers, params, bytes, ImportKind::Roster).await
}

async fn import_collectors(State(s): State<ApiState>, headers: HeaderMap, params: Params, bytes: Bytes) -> Answer {
    import(s, headers, params, bytes, ImportKind::Collectors).await
}

/// Stages the body as a file in the data directory, reads and checks it with the importer, applies it
/// all or nothing, and removes the staged file.
async fn import(s: ApiState, headers: HeaderMap, params: Params, bytes: Bytes, kind: ImportKind) -> Answer {
    let who = s.operator(&headers)?;
    if !who.is_admin() {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "imports are for admins"));
    }
    let xlsx = match params.get("format").map(String::as_str) {
        None | Some("") => bytes.starts_with(b"PK\x03\x04"),
        Some("xlsx") => true,
        Some("csv") => false,
        Some(other) => return Err(ApiError::bad("format", format!("{other:?}: expected csv or xlsx"))),
    };
    let encoding = match params.get("encoding").map(String::as_str) {
        None | Some("") => None,
        Some("utf8" | "utf-8") => Some(TextEncoding::Utf8),
        Some("gb18030" | "gbk") => Some(TextEncoding::Gb18030),
        Some(other) => return Err(ApiError::bad("encoding", format!("{other:?}: expected utf8 or gb18030"))),
    };
    let update = match params.get("update").map(String::as_str) {
        None | Some("" | "false") => false,
        Some("true") => true,
        Some(other) => return Err(ApiError::bad("update", format!("{other:?}: expected true or false"))),
    };
    let path = s.data_dir.join(format!("import-{:016x}.{}", fastrand::u64(..), if xlsx { "xlsx" } else { "csv" }));
    let staged = path.clone();
    let read = tokio::task::spawn_blocking(move || {
        std::fs::write(&staged, &bytes).map_err(|e| format!("cannot stage the file: {e}"))?;
        let result = match kind {
            ImportKind::Roster => read_roster(&staged, encoding).map(Checked::Roster),
            ImportKind::Collectors => read_collectors(&staged, encoding).map(Checked::Collectors),
        };
        let _ = std::fs::remove_file(&staged);
        result.map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let _ = std::fs::remove_file(&path);
    let checked = read.map_err(refused)?;
    let store = s.collection.store();
    let summary = match checked {
        Checked::Roster(f) => apply_roster(store, f, update).await,
        Checked::Collectors(f) => apply_collectors(store, f, update).await,
    }
    .map_err(|e| match e {
        crate::import::ImportError::Journal(j) => {
            tracing::error!(error = %j, "import: journal failure");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the journal failed; nothing was imported")
        }
        other => refused(other.to_string()),
    })?;
    let o = summary.outcome;
    Ok(Json(json!({"rows": summary.rows, "inserted": o.inserted, "unchanged": o.unchanged, "updated": o.updated}))
        .into_response())
}

enum Checked {
    Roster(crate::import::RosterFile),
    Collectors(crate::import::CollectorsFile),
}

fn refused(message: String) -> ApiError {
    let problems: Vec<Value> = message.lines().skip(1).map(|l| json!(l.trim())).collect();
    let first = message.lines().next().unwrap_or_default().to_owned();
    let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "import_refused", first);
    e.with("problems", Value::Array(problems));
    e
}
