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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resnapshot::{Phase, Status};

    async fn post(metrics: Arc<Metrics>, source: &str, body: &str) -> (StatusCode, serde_json::Value) {
        let body: Body = serde_json::from_str(body).expect("a body");
        let response = request(State(metrics), Path(source.to_owned()), Json(body)).await;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("a body");
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    #[tokio::test]
    async fn requests_reach_the_streaming_reader_and_refusals_carry_their_status() {
        let metrics = Metrics::new();
        let source = metrics.source("orders");
        let body = r#"{"table": "shop.items", "where": "id > 3"}"#;
        let (status, answer) = post(metrics.clone(), "nosuch", body).await;
        assert_eq!((status, answer["error"].as_str()), (StatusCode::NOT_FOUND, Some("no source named \"nosuch\" in this capture")));
        let (status, answer) = post(metrics.clone(), "orders", body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
        assert!(answer["error"].as_str().is_some_and(|e| e.contains("is starting, not streaming")), "{answer}");
        source.set_state(SourceState::Streaming);
        // A reader that accepts the first request and refuses the second.
        let receiver = source.resnapshot.receiver.clone();
        let reader = tokio::spawn(async move {
            let mut requests = receiver.lock_owned().await;
            let first = requests.recv().await.expect("a request");
            assert_eq!((first.table.as_str(), first.filter.as_deref()), ("shop.items", Some("id > 3")));
            let status = Status {
                table: first.table.clone(),
                filter: first.filter.clone(),
                state: Phase::Running,
                chunks: 0,
                rows: 0,
                dropped: 0,
                last_key: None,
                end_key: None,
                error: None,
            };
            let _ = first.reply.send(Ok(status));
            let second = requests.recv().await.expect("a request");
            let message = "table shop.log has no primary key".to_owned();
            let _ = second.reply.send(Err(RequestError::Invalid { source_name: "orders".into(), message }));
        });
        let (status, answer) = post(metrics.clone(), "orders", body).await;
        assert_eq!((status, &answer["state"], &answer["where"]), (StatusCode::ACCEPTED, &"running".into(), &"id > 3".into()));
        let (status, answer) = post(metrics.clone(), "orders", r#"{"table": "shop.log"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(answer["error"], "source orders: table shop.log has no primary key");
        reader.await.expect("the reader");
        assert!(serde_json::from_str::<Body>(r#"{"table": "shop.items", "other": 1}"#).is_err(), "unknown fields");
    }
}
