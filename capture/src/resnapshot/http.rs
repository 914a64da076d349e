//! `POST /sources/{name}/resnapshot` with `{"table": "db.t", "where": "SQL" | null}`: 202 with the resnapshot's
//! status once the source's reader validated the request; 400 (bad table or condition), 404 (no such source), 409
//! (not streaming, or a resnapshot already runs), 503 (the server could not be asked) with `{"error": "..."}`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::RequestError;
use crate::metrics::{Metrics, SourceState};

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Body {
    /// `database.table`.
    pub table: String,
    /// SQL condition limiting the rows.
    #[serde(default, rename = "where")]
    pub filter: Option<String>,
}

/// The handler.
pub async fn request(State(metrics): State<Arc<Metrics>>, Path(name): Path<String>, Json(body): Json<Body>) -> Response {
    let answer = match metrics.sources().into_iter().find(|s| s.name == name) {
        None => Err(RequestError::UnknownSource(name.clone())),
        Some(source) => match source.state() {
            SourceState::Streaming => source.resnapshot.request(&name, &body.table, body.filter).await,
            state => Err(RequestError::NotStreaming { source_name: name.clone(), state: state.to_string() }),
        },
    };
    match answer {
        Ok(status) => (StatusCode::ACCEPTED, Json(serde_json::json!(status))).into_response(),
        Err(e) => {
            tracing::info!(source = %name, table = %body.table, error = %e, "resnapshot refused");
            let code = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            (code, Json(serde_json::json!({ "error": e.to_string() }))).into_response()
        }
    }
}
