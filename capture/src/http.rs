//! The capture's HTTP endpoints: `/metrics` (Prometheus text) and `/health` (200, or 503 with the reason; both
//! with `warnings`, which do not change the status: binlog retention headroom below `retention_warning`, or the
//! binlog file a checkpoint needs purged or at risk at the next rotation).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, SourceState};
use crate::transform::now_ms;

/// The router.
pub fn app(metrics: Arc<Metrics>) -> Router {
    Router::new().route("/metrics", get(metrics_text)).route("/health", get(health)).with_state(metrics)
}

async fn metrics_text(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.render())
}

async fn health(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut sources = serde_json::Map::new();
    let now = now_ms();
    for s in metrics.sources() {
        warnings.extend(s.retention_warning(now));
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
        "warnings": warnings,
    });
    (status, Json(body))
}

/// Serves the endpoints on `addr` until `shutdown`.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>, shutdown: CancellationToken) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app(metrics)).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::{Purge, RetentionEstimate};

    async fn get_health(metrics: Arc<Metrics>) -> (StatusCode, serde_json::Value) {
        let response = health(State(metrics)).await.into_response();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("a body");
        (status, serde_json::from_slice(&body).expect("JSON"))
    }

    #[tokio::test]
    async fn low_retention_headroom_is_a_warning_not_a_failure() {
        let metrics = Metrics::new();
        let source = metrics.source("orders");
        source.set_state(SourceState::Streaming);
        let (status, body) = get_health(metrics.clone()).await;
        assert_eq!((status, &body["warnings"]), (StatusCode::OK, &serde_json::json!([])), "{body}");
        source.retention.lock().unwrap().estimate = Some(RetentionEstimate {
            file: "binlog.000003".into(),
            expiry: Duration::from_secs(7200),
            purge: Purge::NotBefore(now_ms() + 2_400_000),
            warning: Duration::from_secs(3600),
        });
        let (status, body) = get_health(metrics).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "ok");
        assert_eq!(body["sources"]["orders"], "streaming");
        let warnings = body["warnings"].as_array().expect("warnings");
        assert_eq!(warnings.len(), 1, "{body}");
        let warning = warnings[0].as_str().unwrap_or_default();
        assert!(warning.starts_with("source orders: binlog retention headroom "), "{warning}");
        assert!(warning.contains(" 39m 59s ") || warning.contains(" 40m "), "{warning}");
        assert!(warning.contains("below retention_warning 1h") && warning.contains("binlog.000003"), "{warning}");
    }
}
