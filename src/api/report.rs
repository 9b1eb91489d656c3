//! `GET /v1/reports/{kind}`: the reports (in progress).

use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::{ApiError, ApiState};

/// One report.
pub(crate) async fn report(State(_s): State<ApiState>, Path(kind): Path<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_IMPLEMENTED, "not_found", format!("report {kind:?} is not built yet"))
}
