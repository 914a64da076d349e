//! The capture's HTTP endpoints: `/metrics` (Prometheus text) and `/health` (200, or 503 with the reason).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, SourceState};

/// The router.
pub fn app(metrics: Arc<Metrics>) -> Router {
    Router::new().route("/metrics", get(metrics_text)).route("/health", get(health)).with_state(metrics)
}

async fn metrics_text(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.render())
}

async fn health(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    let mut problems = Vec::new();
    let mut sources = serde_json::Map::new();
    for s in metrics.sources() {
        let state = s.state();
        let text = match &state {
            SourceState::Starting => "starting".to_string(),
            SourceState::Snapshotting => "snapshotting".to_string(),
            SourceState::Streaming => "streaming".to_string(),
            SourceState::Retrying(e) => format!("retrying: {e}"),
            SourceState::Failed(e) => format!("failed: {e}"),
        };
        if !matches!(state, SourceState::Streaming | SourceState::Snapshotting) {
            problems.push(format!("{}: {text}", s.name));
        }
        sources.insert(s.name.clone(), serde_json::Value::String(text));
    }
    let status = if problems.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::json!({
        "status": if problems.is_empty() { "ok" } else { "unavailable" },
        "reason": problems.join("; "),
        "sources": sources,
    });
    (status, Json(body))
}

/// Serves the endpoints on `addr` until `shutdown`.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>, shutdown: CancellationToken) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app(metrics)).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}
