//! `GET /metrics`: the Prometheus text exposition (format 0.0.4) of [`crate::metrics`]. No token: a
//! scraper has none, and the page holds counts only, never a payer, a card or a token. Keep the API's
//! port off networks that should not see those counts.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use super::ApiState;
use crate::metrics::{exposition, render};

/// The metrics page.
pub(crate) async fn metrics(State(s): State<ApiState>) -> impl IntoResponse {
    let page = render(&s.collection, &s.forwarder).await;
    ([(CONTENT_TYPE, exposition::CONTENT_TYPE)], page)
}
