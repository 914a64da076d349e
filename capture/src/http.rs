//! The capture's HTTP endpoints: `/metrics` (Prometheus text) and `/health` (200, or 503 with the reason; both
//! with `warnings`, which do not change the status: binlog retention headroom below `retention_warning`, or the
//! binlog file a checkpoint needs purged or at risk at the next rotation; and `resnapshots`, the progress of each
//! source's incremental snapshot); `POST /sources/{name}/resnapshot` (see [`crate::resnapshot::http`]).
//!
//! A source paused by an operator is no problem (200), but its entry says `paused` with who, since when and why,
//! and `warnings` lists it.
//!
//! `/health` is 503 while any source is not streaming or snapshotting (starting, retrying after a transient error,
//! or failed with a definite error, which stops only that source), or while the broker has not acknowledged a
//! source's oldest batch for [`crate::timeouts::BROKER_ACK`]; the reason names each such source and why.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, SourceState};
use crate::transform::now_ms;

/// The router.
pub fn app(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/health", get(health))
        .route("/sources/{name}/resnapshot", post(crate::resnapshot::http::request))
        .with_state(metrics)
}

async fn metrics_text(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.render())
}

async fn health(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut sources = serde_json::Map::new();
    let mut resnapshots = serde_json::Map::new();
    let now = now_ms();
    for s in metrics.sources() {
        if let Some(status) = s.resnapshot.status() {
            resnapshots.insert(s.name.clone(), serde_json::json!(status));
        }
        warnings.extend(s.retention_warning(now));
        let state = s.state();
        if let SourceState::Paused(by) = &state {
            warnings.push(format!("source {}: paused {by}; it reads nothing until `capture resume`", s.name));
        }
        let text = match (s.problem(now), &state) {
            (Some(problem), SourceState::Streaming | SourceState::Snapshotting) => format!("{state}; {problem}"),
            (Some(problem), _) => problem,
            (None, _) => state.to_string(),
        };
        if s.problem(now).is_some() {
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
        "resnapshots": resnapshots,
    });
    (status, Json(body))
}

/// Serves the endpoints on `addr` until `shutdown`.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>, shutdown: CancellationToken) -> std::io::Result<()> {
    serve_on(tokio::net::TcpListener::bind(addr).await?, metrics, None, shutdown).await
}

/// Serves the endpoints, and the control endpoints of `control` (see [`crate::api`]), on a bound listener until
/// `shutdown`.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    control: Option<Arc<crate::control::Control>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = match control {
        Some(control) => app(metrics.clone()).merge(crate::api::routes(metrics, control)),
        None => app(metrics),
    };
    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
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
    async fn a_failed_source_makes_health_503_naming_it_while_the_other_streams() {
        let metrics = Metrics::new();
        metrics.source("orders").set_state(SourceState::Streaming);
        metrics.source("users").set_state(SourceState::Failed("source users: the row image is MINIMAL".into()));
        let (status, body) = get_health(metrics.clone()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["reason"], "users: failed: source users: the row image is MINIMAL");
        assert_eq!(body["sources"]["orders"], "streaming");
        let text = metrics.render();
        for line in [
            "cdc_capture_up{source=\"orders\"} 1",
            "cdc_capture_up{source=\"users\"} 0",
            "cdc_capture_source_failed{source=\"orders\"} 0",
            "cdc_capture_source_failed{source=\"users\"} 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[tokio::test]
    async fn a_broker_that_does_not_acknowledge_makes_health_503_after_the_limit() {
        let metrics = Metrics::new();
        let source = metrics.source("orders");
        source.set_state(SourceState::Streaming);
        let since = |ago: Duration| now_ms() - ago.as_millis() as i64;
        source.oldest_unacknowledged_ms.store(since(Duration::from_secs(2)), std::sync::atomic::Ordering::Relaxed);
        let (status, body) = get_health(metrics.clone()).await;
        assert_eq!(status, StatusCode::OK, "2 s is within the limit: {body}");
        let waited = crate::timeouts::BROKER_ACK + Duration::from_secs(3);
        source.oldest_unacknowledged_ms.store(since(waited), std::sync::atomic::Ordering::Relaxed);
        let (status, body) = get_health(metrics.clone()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let expected = format!("orders: streaming; broker not acknowledging for {} s", waited.as_secs());
        assert_eq!(body["reason"], expected.as_str());
        assert!(metrics.render().contains("cdc_capture_up{source=\"orders\"} 0"));
    }

    #[tokio::test]
    async fn a_paused_source_is_healthy_and_named_in_the_warnings() {
        let metrics = Metrics::new();
        metrics.source("orders").set_state(SourceState::Paused("by ops since 2026-01-02T03:04:05Z: upgrade".into()));
        let (status, body) = get_health(metrics.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["sources"]["orders"], "paused by ops since 2026-01-02T03:04:05Z: upgrade");
        assert_eq!(
            body["warnings"],
            serde_json::json!([
                "source orders: paused by ops since 2026-01-02T03:04:05Z: upgrade; it reads nothing until `capture resume`"
            ])
        );
        let text = metrics.render();
        assert!(text.contains("cdc_capture_up{source=\"orders\"} 1") && text.contains("cdc_capture_source_paused{source=\"orders\"} 1"), "{text}");
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
