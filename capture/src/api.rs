//! The control endpoints, on the same listener as `/metrics` and `/health` (`listen`): bind it to loopback or a
//! private network and never expose it, since they change what the capture reads and carry no authentication.
//!
//! - `GET /sources`: each source's state, position, lag, checkpoint age, events, pause (what `capture status`
//!   prints).
//! - `POST /sources/{name}/pause`, `POST /sources/{name}/resume`: body `{"actor": "...", "reason": "..."}`.
//! - `POST /sources/{name}/skip`: body `{"to": "FILE:POS" | "GTID", "actor": "...", "reason": "..."}`, for a source
//!   that failed with a definite error; moves its checkpoint (see [`crate::skip`]) and starts it again.
//!
//! State-changing endpoints are POST and require `Content-Type: application/json` (a browser cannot send that to
//! another origin without a preflight, so a web page cannot trigger them). Errors answer
//! `{"error": "..."}` with 400 (bad body), 404 (unknown source), 409 (not in a state that allows it), 415 (not
//! JSON), 422 (a skip target refused) or 500 (the state directory cannot be written).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointStore, FileCheckpointStore};
use crate::control::{Control, ControlError, Pause};
use crate::metrics::{Metrics, SourceState};
use crate::skip::{self, Audit, Target};
pub use crate::skip::Skipped;
use crate::transform::now_ms;

/// What the endpoints need.
#[derive(Clone)]
struct Api {
    metrics: Arc<Metrics>,
    control: Arc<Control>,
}

/// The control routes.
pub fn routes(metrics: Arc<Metrics>, control: Arc<Control>) -> Router {
    Router::new()
        .route("/sources", get(sources))
        .route("/sources/{name}/pause", post(pause))
        .route("/sources/{name}/resume", post(resume))
        .route("/sources/{name}/skip", post(skip_to))
        .with_state(Api { metrics, control })
}

/// One source in `GET /sources`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SourceStatus {
    /// The source's name.
    pub name: String,
    /// `starting`, `snapshotting`, `streaming`, `retrying`, `failed` or `paused`.
    pub state: String,
    /// The error of `retrying` or `failed`.
    pub error: Option<String>,
    /// The reader's binlog position, `FILE:POS` (empty before it read anything).
    pub position: String,
    /// Seconds behind the newest committed change (see `cdc_capture_lag_seconds`).
    pub lag_seconds: f64,
    /// Seconds since the checkpoint was last saved.
    pub checkpoint_age_seconds: f64,
    /// Change events produced since the capture started.
    pub events: u64,
    /// Who paused it, when and why.
    pub paused: Option<Pause>,
}

/// The answer of `GET /sources`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sources {
    /// The capture's clock (ms since the Unix epoch).
    pub now_ms: i64,
    /// Each source, in configuration order.
    pub sources: Vec<SourceStatus>,
}

async fn sources(State(api): State<Api>) -> Json<Sources> {
    let now = now_ms();
    let sources = api
        .metrics
        .sources()
        .iter()
        .map(|s| {
            let (state, error) = match s.state() {
                SourceState::Starting => ("starting", None),
                SourceState::Snapshotting => ("snapshotting", None),
                SourceState::Streaming => ("streaming", None),
                SourceState::Retrying(e) => ("retrying", Some(e)),
                SourceState::Failed(e) => ("failed", Some(e)),
                SourceState::Paused(_) => ("paused", None),
            };
            let (file, pos) = s.position.lock().expect("position lock").clone();
            SourceStatus {
                name: s.name.clone(),
                state: state.into(),
                error,
                position: if file.is_empty() { String::new() } else { format!("{file}:{pos}") },
                lag_seconds: s.lag_seconds(now),
                checkpoint_age_seconds: s.checkpoint_age_seconds(now),
                events: s.events_total(),
                paused: api.control.paused(&s.name).ok().flatten(),
            }
        })
        .collect();
    Json(Sources { now_ms: now, sources })
}

/// The body of pause and resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Action {
    /// Who.
    pub actor: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

/// The body of skip.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SkipRequest {
    /// `FILE:POS` or a GTID.
    pub to: String,
    /// Who.
    pub actor: String,
    /// Why (required).
    pub reason: String,
}

/// A refused request.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        let status = match &e {
            ControlError::UnknownSource(_) => StatusCode::NOT_FOUND,
            ControlError::Conflict(_) => StatusCode::CONFLICT,
            ControlError::State(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "a control request could not be recorded");
        }
        ApiError(status, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> ApiError {
        ApiError(e.status(), e.body_text())
    }
}

fn required(what: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, format!("\"{what}\" must not be empty")));
    }
    Ok(())
}

async fn pause(State(api): State<Api>, Path(name): Path<String>, body: Result<Json<Action>, JsonRejection>) -> Result<Json<Pause>, ApiError> {
    let Json(action) = body?;
    required("actor", &action.actor)?;
    let source = api.metrics.sources().into_iter().find(|s| s.name == name);
    if let Some(SourceState::Failed(e)) = source.as_ref().map(|s| s.state()) {
        return Err(ApiError(StatusCode::CONFLICT, format!("source {name} has failed ({e}): there is nothing to pause")));
    }
    Ok(Json(api.control.pause(&name, &action.actor, &action.reason)?))
}

async fn resume(State(api): State<Api>, Path(name): Path<String>, body: Result<Json<Action>, JsonRejection>) -> Result<StatusCode, ApiError> {
    let Json(action) = body?;
    required("actor", &action.actor)?;
    api.control.resume(&name, &action.actor, &action.reason)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn skip_to(State(api): State<Api>, Path(name): Path<String>, body: Result<Json<SkipRequest>, JsonRejection>) -> Result<Json<Skipped>, ApiError> {
    let Json(request) = body?;
    required("actor", &request.actor)?;
    required("reason", &request.reason)?;
    let target = Target::parse(&request.to).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let settings = api.control.settings.clone();
    let source = settings.sources.iter().find(|s| s.name == name).ok_or_else(|| ControlError::UnknownSource(name.clone()))?;
    let metrics = api.metrics.sources().into_iter().find(|s| s.name == name);
    match metrics.map(|m| m.state()) {
        Some(SourceState::Failed(_)) => {}
        state => {
            let state = state.map_or_else(|| "unknown".to_owned(), |s| s.to_string());
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!("source {name} is {state}: skip applies to a source stopped by a definite error (or to a capture that is not running)"),
            ));
        }
    }
    let refused = |e: crate::error::CaptureError| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string());
    let store = FileCheckpointStore::new(&settings.state_dir, &name).map_err(|e| refused(checkpoint(&name, e)))?;
    let from = store
        .load()
        .map_err(|e| refused(checkpoint(&name, e)))?
        .ok_or_else(|| ApiError(StatusCode::CONFLICT, format!("source {name} has no checkpoint yet: nothing to skip")))?;
    let config = api.control.config_path.as_ref().map_or_else(|| "<capture.toml>".to_owned(), |p| p.display().to_string());
    let audit = Audit { actor: request.actor, reason: request.reason };
    let skipped = skip::plan_and_apply(&settings, source, &from, &target, &config, &audit).await.map_err(refused)?;
    api.control.restart(&name)?;
    Ok(Json(skipped))
}

fn checkpoint(name: &str, error: crate::checkpoint::CheckpointError) -> crate::error::CaptureError {
    crate::error::CaptureError::Checkpoint { source_name: name.to_owned(), error }
}
