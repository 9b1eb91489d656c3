//! `GET /v1/reports/{kind}?date=YYYY-MM-DD&month=YYYY-MM&collection_point=C&format=json|csv|xlsx`: the
//! reports of [`crate::report`], as JSON (the default), CSV (UTF-8 with a BOM) or an XLSX workbook.
//! A collector sees their own collection point only; an admin any point, or all.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::body::query_param;
use super::{ApiError, ApiState};
use crate::collect::Operator;
use crate::domain::CollectionPointCode;
use crate::report::{self, Kind, Report, ReportError, YearMonth};

/// The content type of an XLSX workbook.
const XLSX_TYPE: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// How the report is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    Xlsx,
}

/// Which collection point the caller gets: an admin what they asked (or every point); a collector
/// their own, and another point is refused.
fn scope(who: &Operator, asked: Option<CollectionPointCode>) -> Result<Option<CollectionPointCode>, ApiError> {
    match (asked, who.is_admin()) {
        (asked, true) => Ok(asked),
        (Some(p), false) if who.may_act_at(&p) => Ok(Some(p)),
        (Some(p), false) => {
            Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", format!("collection point {p} is not yours")))
        }
        (None, false) => match &who.collection_point {
            Some(p) => Ok(Some(p.clone())),
            // A collector always has a point (the configuration requires it); without one, nothing.
            None => Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "a collector without a collection point")),
        },
    }
}

fn failed(e: ReportError) -> ApiError {
    match e {
        ReportError::TooLarge { .. } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "too_large", e.to_string()),
        other => {
            // The detail (file paths, SQLite's words) is for the log, not for the client.
            tracing::error!(error = %other, "report failed: answered 500");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the report could not be made; the daemon's log has the details",
            )
        }
    }
}

/// A file download: the body with its type and a file name.
fn download(bytes: Vec<u8>, content_type: &'static str, file_name: &str) -> Response {
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// `GET /v1/reports/{kind}`.
pub(crate) async fn report(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Path(kind): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let who = s.operator(&headers)?;
    let Some(kind) = Kind::parse(&kind) else {
        let names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        let mut e = ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no report {kind:?}; the reports are {}", names.join(", ")),
        );
        e.with("what", json!("report"));
        return Err(e);
    };
    let mut names: Vec<&String> = params.keys().collect();
    names.sort();
    if let Some(extra) = names.into_iter().find(|n| n.as_str() != "format" && !kind.parameters().contains(&n.as_str()))
    {
        return Err(ApiError::bad(
            extra,
            format!("not a parameter of the {kind} report (it takes {} and format)", kind.parameters().join(", ")),
        ));
    }
    let format = match params.get("format").map(String::as_str) {
        None | Some("" | "json") => Format::Json,
        Some("csv") => Format::Csv,
        Some("xlsx") => Format::Xlsx,
        Some(other) => return Err(ApiError::bad("format", format!("{other:?}: expected json, csv or xlsx"))),
    };
    let date = query_param(&params, "date", |v| {
        time::Date::parse(v, time::macros::format_description!("[year]-[month]-[day]"))
            .map_err(|_| format!("{v:?} is not a date YYYY-MM-DD"))
    })?;
    let month = query_param(&params, "month", YearMonth::parse)?;
    let asked = query_param(&params, "collection_point", |v| CollectionPointCode::parse(v).map_err(|e| e.to_string()))?;
    let point = scope(&who, asked)?;

    let collection = &s.collection;
    let store = collection.store();
    let built: Report = match kind {
        Kind::Daily => report::daily(store, date.unwrap_or_else(|| collection.clock().today()), point.as_ref()).await,
        Kind::Commission => {
            report::commission(store, collection.policy().commission_per_person_time(), month, point.as_ref()).await
        }
        Kind::Settlement => report::settlement(store, date, point.as_ref()).await,
        Kind::Ledger => {
            let status = s.forwarder.status().await.map_err(|e| failed(ReportError::Journal(e)))?;
            report::ledger(store, &status, collection.clock().now(), point.as_ref()).await
        }
        Kind::Unpaid => report::unpaid(store, collection.policy().year(), point.as_ref()).await,
    }
    .map_err(failed)?;

    Ok(match format {
        Format::Json => Json(built.to_json()).into_response(),
        Format::Csv => download(built.to_csv(), "text/csv; charset=utf-8", &built.file_name("csv")),
        Format::Xlsx => {
            let name = built.file_name("xlsx");
            // Writing a large workbook takes a while: off the async threads.
            let written = tokio::task::spawn_blocking(move || built.to_xlsx().map_err(|e| e.to_string()))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            let bytes = written.map_err(|e| {
                tracing::error!(error = %e, "report workbook failed: answered 500");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the workbook could not be written")
            })?;
            download(bytes, XLSX_TYPE, &name)
        }
    })
}
