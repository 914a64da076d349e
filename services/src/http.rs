//! What the three services share on the HTTP side: JSON errors, extractors whose rejections say what is wrong,
//! keyset paging, the `/health`, `/metrics` and `/openapi.json` routes, and the layers around every request
//! ([`harden`]): request metrics with bounded labels, the cross-site check and the request timeout.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::metrics::Metrics;

/// The body of every error answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable kind, e.g. `invalid_input`, `not_found`, `duplicate`, `unknown_reference`.
    pub error: String,
    /// What is wrong, for a person.
    pub message: String,
}

/// An error answer: a status and an [`ErrorBody`].
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &str, message: impl Into<String>) -> ApiError {
        ApiError { status, body: ErrorBody { error: error.to_owned(), message: message.into() } }
    }

    /// 400: the request is malformed or a field is invalid.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    /// 404.
    pub fn not_found(what: &str, id: u64) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{what} {id} does not exist"))
    }

    /// 409: the request conflicts with what is stored.
    pub fn conflict(error: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, error, message)
    }

    /// 422: the request refers to something this service does not know.
    pub fn unknown(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_reference", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// Database failures are 500s (logged); callers map the expected ones (duplicates) themselves.
impl From<mysql_async::Error> for ApiError {
    fn from(e: mysql_async::Error) -> ApiError {
        tracing::error!(error = %e, "database error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the database failed; nothing was written")
    }
}

/// MySQL's duplicate-key error (1062).
pub fn is_duplicate(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if s.code == 1062)
}

/// A JSON request body whose rejection is an [`ApiError`] naming the problem (syntax, type, missing field).
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Body<T>, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = match &rejection {
        JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, "invalid_input", rejection.body_text())
}

/// A numeric id in the path; anything else is a 400 that says so.
pub struct Id(pub u64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Id, ApiError> {
        let axum::extract::Path(raw) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid(e.body_text()))?;
        match raw.parse::<u64>() {
            Ok(id) if id > 0 => Ok(Id(id)),
            _ => Err(ApiError::invalid(format!("`{raw}` is not an id (a positive integer)"))),
        }
    }
}

/// Query parameters whose rejection is an [`ApiError`].
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Query<T>, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e: QueryRejection| ApiError::invalid(e.body_text()))
    }
}

/// Keyset paging: `?limit=50&after=<last id of the previous page>`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page, 1 to 500 (default 50).
    pub limit: Option<u32>,
    /// Return items with an id greater than this.
    pub after: Option<u64>,
}

impl PageParams {
    /// The validated limit.
    pub fn limit(&self) -> Result<u32, ApiError> {
        match self.limit.unwrap_or(50) {
            n @ 1..=500 => Ok(n),
            n => Err(ApiError::invalid(format!("limit must be between 1 and 500, not {n}"))),
        }
    }
}

/// One page of items, with the cursor of the next page (`null` on the last).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` to get the next page.
    pub next_after: Option<u64>,
}

impl<T> Page<T> {
    /// A page cut at `limit`, given up to `limit + 1` items in id order.
    pub fn cut(mut items: Vec<T>, limit: u32, id: impl Fn(&T) -> u64) -> Page<T> {
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_after = if more { items.last().map(id) } else { None };
        Page { items, next_after }
    }
}

/// A consuming service as started: its routes, their OpenAPI document, and its background tasks.
pub type Started = (Router, utoipa::openapi::OpenApi, Vec<tokio::task::JoinHandle<anyhow::Result<()>>>);

/// `/health`, `/metrics`, `/openapi.json` and request metrics around a service's own routes.
pub fn with_common_routes(routes: Router, metrics: Arc<Metrics>, openapi: utoipa::openapi::OpenApi) -> Router {
    let openapi = Arc::new(openapi);
    routes
        .route("/openapi.json", get(move || async move { Json(openapi.as_ref().clone()) }))
        .merge(
            Router::new()
                .route("/metrics", get(metrics_text))
                .route("/health", get(health))
                .with_state(metrics.clone()),
        )
}

/// What every request passes before its handler.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    /// A handler that takes longer is abandoned with a 503.
    pub request_timeout: Duration,
    /// Origins (`scheme://host[:port]`) whose browsers may send state-changing requests.
    pub allowed_origins: Vec<String>,
}

/// Wraps a service's router: every request is counted (route template, bounded method, status), state-changing
/// requests from other origins or without a JSON body type are refused, and every handler has `request_timeout`.
pub fn harden(router: Router, metrics: Arc<Metrics>, policy: HttpPolicy) -> Router {
    router
        .layer(axum::middleware::from_fn_with_state(Arc::new(policy), guard))
        .layer(axum::middleware::from_fn_with_state(metrics, count_requests))
}

async fn count_requests(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = method_label(req.method());
    let response = next.run(req).await;
    metrics.request(method, &route, response.status().as_u16());
    response
}

/// The method as a metric label: the standard ones, every other `OTHER`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

async fn guard(State(policy): State<Arc<HttpPolicy>>, req: Request, next: Next) -> Response {
    let refused = {
        let header = |name| req.headers().get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
        refuse(req.method(), header(header::CONTENT_TYPE), header(header::ORIGIN), &policy.allowed_origins)
    };
    if let Some(refused) = refused {
        return refused.into_response();
    }
    match tokio::time::timeout(policy.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request did not finish within {} and was abandoned; a write may still have committed: read before retrying",
                humantime::format_duration(policy.request_timeout)
            ),
        )
        .into_response(),
    }
}

/// Why a request is refused before its handler, if it is. Reading methods pass. A state-changing request is refused
/// when it carries an `Origin` that is not allowed (a browser on another site), and, for the methods a cross-site
/// form can send or that carry a body (POST, PUT, PATCH), when its content type is not `application/json` (which a
/// browser only sends cross-site after a CORS preflight, which these services never grant).
pub fn refuse(method: &Method, content_type: Option<&str>, origin: Option<&str>, allowed: &[String]) -> Option<ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    if let Some(origin) = origin.filter(|o| !allowed.iter().any(|a| a.eq_ignore_ascii_case(o))) {
        return Some(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            format!("a {method} from origin `{origin}` is refused: it is not in --allowed-origins (SERVICE_ALLOWED_ORIGINS)"),
        ));
    }
    let json = content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if matches!(*method, Method::POST | Method::PUT | Method::PATCH) && !json {
        return Some(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_input",
            format!("a {method} needs `content-type: application/json` (also without a body)"),
        ));
    }
    None
}

async fn metrics_text(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.render())
}

async fn health(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    let (status, mut body) = match metrics.problem() {
        None => (StatusCode::OK, serde_json::json!({"status": "ok"})),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({"status": "unavailable", "reason": reason})),
    };
    // A warning (pending dead letters) needs an operator but no restart: the status stays.
    if let Some(warning) = metrics.warning() {
        body["warning"] = warning.into();
    }
    (status, Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_site_and_non_json_state_changes_are_refused() {
        let allowed = vec!["https://shop.example".to_string()];
        let json = Some("application/json; charset=utf-8");
        type Case<'a> = (Method, Option<&'a str>, Option<&'a str>, Option<u16>);
        let cases: [Case<'_>; 12] = [
            (Method::GET, None, Some("https://evil.example"), None),
            (Method::HEAD, None, None, None),
            (Method::POST, json, None, None),
            (Method::POST, Some("Application/JSON"), Some("https://SHOP.example"), None),
            (Method::POST, json, Some("https://evil.example"), Some(403)),
            (Method::POST, json, Some("null"), Some(403)),
            (Method::POST, Some("text/plain"), None, Some(415)),
            (Method::POST, Some("application/x-www-form-urlencoded"), None, Some(415)),
            (Method::POST, None, None, Some(415)),
            (Method::PATCH, Some("application/jsonx"), None, Some(415)),
            (Method::DELETE, None, None, None),
            (Method::DELETE, None, Some("https://evil.example"), Some(403)),
        ];
        for (method, content_type, origin, want) in cases {
            let got = refuse(&method, content_type, origin, &allowed).map(|e| e.status.as_u16());
            assert_eq!(got, want, "{method} {content_type:?} {origin:?}");
        }
    }

    #[test]
    fn method_labels_are_bounded() {
        let cases = [("GET", "GET"), ("DELETE", "DELETE"), ("PROPFIND", "OTHER"), ("X-ANYTHING", "OTHER")];
        for (method, want) in cases {
            assert_eq!(method_label(&Method::from_bytes(method.as_bytes()).unwrap()), want);
        }
    }

    #[test]
    fn pages_cut_at_the_limit_and_point_past_the_last_item() {
        let page = Page::cut(vec![1_u64, 2, 3], 2, |x| *x);
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.next_after, Some(2));
        let last = Page::cut(vec![3_u64], 2, |x| *x);
        assert_eq!(last.next_after, None);
    }
}
