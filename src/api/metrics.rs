//! `GET /metrics`: Prometheus text exposition (in progress).

use axum::extract::State;
use axum::http::StatusCode;

use super::ApiState;

/// The metrics page.
pub(crate) async fn metrics(State(_s): State<ApiState>) -> (StatusCode, &'static str) {
    (StatusCode::NOT_IMPLEMENTED, "metrics are not built yet\n")
}
