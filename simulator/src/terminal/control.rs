//! The HTTP control endpoint of the terminal simulator (`--control ADDR`): read counters, change
//! faults and queue outcomes at run time. JSON in and out; errors are `{"error": "..."}`, with 400 for a
//! body that does not parse (or names an unknown field) and for a value out of range, 404 for no such
//! terminal, 409 for a full outcome queue.
//!
//! | route | what |
//! |---|---|
//! | `GET /terminals` | `[{"index":0,"terminal":"41000001","endpoint":"127.0.0.1:4100"}]` |
//! | `GET /terminals/{i}/counters` | [`TerminalCounters`](super::TerminalCounters) |
//! | `GET /terminals/{i}/faults` | [`Faults`](super::Faults) |
//! | `POST /terminals/{i}/faults` | a [`FaultsPatch`](super::FaultsPatch): changes the fields given, the others stay; 200 with the faults now in force |
//! | `POST /faults` | the same patch on every terminal; 200 with each terminal's faults, in index order |
//! | `POST /terminals/{i}/next-sale` | `{"code":"51"}`: the next SALE answers it, whatever its amount (queued in order, ahead of the amount table); `{"code":"00","amount_fen":28100}`: the next SALE is approved for that amount instead of the one asked, and stored and reported with it (`amount_fen` only with `00`, 1 to 999999999999); 204 |
//! | `POST /terminals/{i}/card-delay` | `{"ms":60000}`: the SALE card wait from now on (at most [`MAX_CARD_DELAY_MS`](super::MAX_CARD_DELAY_MS)); a sale already waiting follows the change; 204 |

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zhengjiao_protocol::message::ResponseCode;

use super::{validate_card_delay, ControlError, FaultsPatch, SimInner};

type Shared = State<Arc<SimInner>>;

/// The routes, over the running terminals.
pub(crate) fn router(inner: Arc<SimInner>) -> Router {
    Router::new()
        .route("/terminals", get(list))
        .route("/terminals/{i}/counters", get(counters))
        .route("/terminals/{i}/faults", get(faults).post(set_faults))
        .route("/faults", post(set_all_faults))
        .route("/terminals/{i}/next-sale", post(next_sale))
        .route("/terminals/{i}/card-delay", post(card_delay))
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

/// Parses a JSON body; a body that does not parse is a 400 in the usual error form.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("body: {e}")))
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

async fn set_faults(State(sim): Shared, Path(i): Path<usize>, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    let patch: FaultsPatch = parse(&body)?;
    Ok(Json(sim.patch_faults(i, &patch)?))
}

async fn set_all_faults(State(sim): Shared, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    let patch: FaultsPatch = parse(&body)?;
    Ok(Json(sim.patch_all_faults(&patch)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NextSale {
    code: String,
    /// With `00` only: the amount the sale is approved for instead of the one asked.
    #[serde(default)]
    amount_fen: Option<u64>,
}

async fn next_sale(State(sim): Shared, Path(i): Path<usize>, body: Bytes) -> Result<StatusCode, ApiError> {
    let next: NextSale = parse(&body)?;
    let code = ResponseCode::new(&next.code)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("code {:?}: {e}", next.code)))?;
    match next.amount_fen {
        None => sim.queue_outcome(i, code)?,
        Some(fen) if code.is_approved() => sim.queue_approval_of(i, fen)?,
        Some(_) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("amount_fen goes with code 00 only (an approval of another amount), not {:?}", next.code),
            ))
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CardDelay {
    ms: u64,
}

async fn card_delay(State(sim): Shared, Path(i): Path<usize>, body: Bytes) -> Result<StatusCode, ApiError> {
    let CardDelay { ms } = parse(&body)?;
    let delay = Duration::from_millis(ms);
    validate_card_delay(delay).map_err(ControlError::from)?;
    sim.terminal(i)?.set_card_delay(delay);
    Ok(StatusCode::NO_CONTENT)
}
