//! The HTTP control endpoint of the terminal simulator (`--control ADDR`): read counters, change
//! faults and queue outcomes at run time. JSON in and out; errors are `{"error": "..."}`.
//!
//! | route | what |
//! |---|---|
//! | `GET /terminals` | `[{"index":0,"terminal":"41000001","endpoint":"127.0.0.1:4100"}]` |
//! | `GET /terminals/{i}/counters` | [`TerminalCounters`](super::TerminalCounters) |
//! | `GET /terminals/{i}/faults` | [`Faults`](super::Faults) |
//! | `POST /terminals/{i}/faults` | replaces terminal `i`'s faults (fields left out are 0); 204 |
//! | `POST /faults` | the same for every terminal; 204 |
//! | `POST /terminals/{i}/next-sale` | `{"code":"51"}`: the next SALE amount does not decide answers it; 204 |

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use zhengjiao_protocol::message::ResponseCode;

use super::{ControlError, Faults, SimInner};

type Shared = State<Arc<SimInner>>;

/// The routes, over the running terminals.
pub(crate) fn router(inner: Arc<SimInner>) -> Router {
    Router::new()
        .route("/terminals", get(list))
        .route("/terminals/{i}/counters", get(counters))
        .route("/terminals/{i}/faults", get(faults).post(set_faults))
        .route("/faults", post(set_all_faults))
        .route("/terminals/{i}/next-sale", post(next_sale))
        .with_state(inner)
}

/// An error answer.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<ControlError> for ApiError {
    fn from(error: ControlError) -> Self {
        let status = match error {
            ControlError::NoSuchTerminal { .. } => StatusCode::NOT_FOUND,
            ControlError::QueueFull(_) => StatusCode::CONFLICT,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError(status, error.to_string())
    }
}

#[derive(Serialize)]
struct Listed {
    index: usize,
    terminal: String,
    endpoint: Option<String>,
}

async fn list(State(sim): Shared) -> Json<Vec<Listed>> {
    Json(
        (0..sim.count())
            .map(|index| Listed {
                index,
                terminal: sim.terminal_id(index).map(|id| id.as_str().to_owned()).unwrap_or_default(),
                endpoint: sim.endpoint(index),
            })
            .collect(),
    )
}

async fn counters(State(sim): Shared, Path(i): Path<usize>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(sim.counters(i)?))
}

async fn faults(State(sim): Shared, Path(i): Path<usize>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(sim.faults(i)?))
}

async fn set_faults(
    State(sim): Shared,
    Path(i): Path<usize>,
    Json(faults): Json<Faults>,
) -> Result<StatusCode, ApiError> {
    sim.set_faults(i, faults)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_all_faults(State(sim): Shared, Json(faults): Json<Faults>) -> Result<StatusCode, ApiError> {
    sim.set_all_faults(faults)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NextSale {
    code: String,
}

async fn next_sale(
    State(sim): Shared,
    Path(i): Path<usize>,
    Json(next): Json<NextSale>,
) -> Result<StatusCode, ApiError> {
    let code = ResponseCode::new(&next.code)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("code {:?}: {e}", next.code)))?;
    sim.queue_outcome(i, code)?;
    Ok(StatusCode::NO_CONTENT)
}
