//! The view service's HTTP endpoints: `/metrics` and `/health`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// The router.
pub fn app(metrics: Arc<Metrics>) -> Router {
    Router::new().route("/metrics", get(metrics_text)).route("/health", get(health)).with_state(metrics)
}

async fn metrics_text(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.render(now))
}

async fn health(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    match metrics.problem() {
        None => (StatusCode::OK, Json(serde_json::json!({"status": "ok"}))),
        Some(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"status": "unavailable", "reason": reason})))
        }
    }
}

/// Serves until `shutdown`.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>, shutdown: CancellationToken) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app(metrics)).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}
