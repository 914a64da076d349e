//! The view service's HTTP endpoints: the dashboard page (`/`), `/metrics`, `/health`, `/lag` and `/status`.
//!
//! `/lag` reads every configured source's binlog position when the request arrives and compares it with what the
//! view has applied (see [`crate::lag`]). `/status` is everything the dashboard and `views status` show, in one
//! request.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use cdc_common::now_ms;
use mysql_async::prelude::*;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::lag::{LagReport, Position};
use crate::metrics::{Metrics, Sample, SAMPLE_STEP_MS};

/// How long `/lag` waits for a source's position before calling it unknown.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the handlers share.
pub struct App {
    metrics: Arc<Metrics>,
    /// The configured sources, by name.
    sources: Vec<(String, mysql_async::Pool)>,
    heartbeat_timeout_ms: i64,
    /// ClickHouse, for `reporting.freshness`.
    clickhouse: clickhouse::Client,
    /// How this instance gets its partitions.
    assignment: crate::config::Assignment,
}

impl App {
    /// The shared state of `settings`' service. Connects to nothing yet.
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> App {
        let c = &settings.config;
        let sources = c
            .sources
            .iter()
            .map(|s| {
                let opts = mysql_async::Opts::from_url(s.url.expose()).expect("validated in Config::validate");
                let constraints = mysql_async::PoolConstraints::new(0, 2).expect("0 <= 2");
                let opts = mysql_async::OptsBuilder::from_opts(opts)
                    .pool_opts(mysql_async::PoolOpts::default().with_constraints(constraints));
                (s.name.clone(), mysql_async::Pool::new(opts))
            })
            .collect();
        let clickhouse = clickhouse::Client::default()
            .with_url(&c.clickhouse_url)
            .with_user(&c.clickhouse_user)
            .with_password(c.clickhouse_password.expose())
            .with_database(&c.database)
            .with_validation(false);
        App {
            metrics,
            sources,
            heartbeat_timeout_ms: c.heartbeat_timeout.as_millis() as i64,
            clickhouse,
            assignment: c.assignment,
        }
    }

    /// The configured sources' names.
    pub fn source_names(&self) -> Vec<String> {
        self.sources.iter().map(|(name, _)| name.clone()).collect()
    }

    /// The lag report now: reads every source's position (concurrently), then compares.
    pub async fn lag(&self) -> LagReport {
        let positions = futures_util::future::join_all(self.sources.iter().map(|(name, pool)| async move {
            let position = match tokio::time::timeout(SOURCE_TIMEOUT, current_position(pool)).await {
                Ok(Ok(p)) => Ok(p),
                Ok(Err(e)) => Err(format!("reading the source's binlog position: {e}")),
                Err(_) => Err(format!("the source did not answer within {SOURCE_TIMEOUT:?}")),
            };
            (name.clone(), position)
        }))
        .await;
        let current: BTreeMap<String, Result<Position, String>> = positions.into_iter().collect();
        let existing = self.metrics.existing_topics();
        // The clock is read after the positions: a heartbeat's age is never understated.
        let now = now_ms();
        self.metrics.coverage.lock().expect("coverage lock").report(now, &current, self.heartbeat_timeout_ms, &existing)
    }

    /// Disconnects from the sources.
    pub async fn close(&self) {
        for (_, pool) in &self.sources {
            let _ = pool.clone().disconnect().await;
        }
    }
}

/// The server's current binlog position (`SHOW MASTER STATUS`, `SHOW BINARY LOG STATUS` on MySQL 8.4+).
async fn current_position(pool: &mysql_async::Pool) -> Result<Position, mysql_async::Error> {
    let mut conn = pool.get_conn().await?;
    let row: Option<mysql_async::Row> = match conn.query_first("SHOW MASTER STATUS").await {
        Ok(row) => row,
        Err(mysql_async::Error::Server(e)) if e.code == 1064 => conn.query_first("SHOW BINARY LOG STATUS").await?,
        Err(e) => return Err(e),
    };
    let row = row.ok_or_else(|| {
        mysql_async::Error::Other("the server has no binary log (log_bin is off), so it cannot be captured".into())
    })?;
    let file: String = row.get(0).unwrap_or_default();
    let pos: u64 = row.get(1).unwrap_or_default();
    Ok(Position { file, pos })
}

/// The router.
pub fn app(state: Arc<App>) -> Router {
    Router::new()
        .route("/", get(crate::dashboard::page))
        .route("/metrics", get(metrics_text))
        .route("/health", get(health))
        .route("/lag", get(lag))
        .route("/status", get(status))
        .with_state(state)
}

async fn metrics_text(State(app): State<Arc<App>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], app.metrics.render(now_ms()))
}

fn health_body(metrics: &Metrics) -> (StatusCode, serde_json::Value) {
    match metrics.problem() {
        None => (StatusCode::OK, serde_json::json!({"status": "ok"})),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({"status": "unavailable", "reason": reason})),
    }
}

async fn health(State(app): State<Arc<App>>) -> impl IntoResponse {
    let (code, body) = health_body(&app.metrics);
    (code, Json(body))
}

async fn lag(State(app): State<Arc<App>>) -> impl IntoResponse {
    Json(app.lag().await)
}

/// A row of `reporting.freshness`.
#[derive(Debug, Serialize, serde::Deserialize, clickhouse::Row)]
struct Freshness {
    source: String,
    newest_commit_ms: u64,
    applied_at_ms: u64,
}

/// Answer of `/status`.
#[derive(Serialize)]
struct Status {
    now_ms: i64,
    health: serde_json::Value,
    lag: LagReport,
    throughput: Throughput,
    consumer_lag: Vec<PartitionLag>,
    freshness: Vec<Freshness>,
    /// Problem reading `freshness`, if any.
    freshness_error: Option<String>,
    history: History,
    /// `all` or `group` (option `assignment`).
    assignment: crate::config::Assignment,
    /// With `group`: the partitions the group gave this instance (`lag` is the whole group's).
    assigned: Vec<Partition>,
}

#[derive(Serialize)]
struct Partition {
    topic: String,
    partition: i32,
}

#[derive(Serialize)]
struct Throughput {
    events_total: u64,
    /// Over the last 10 s of history (0 before two samples exist).
    events_per_s: f64,
}

#[derive(Serialize)]
struct PartitionLag {
    topic: String,
    partition: i32,
    messages: i64,
}

#[derive(Serialize)]
struct History {
    step_ms: i64,
    samples: Vec<Sample>,
}

async fn status(State(app): State<Arc<App>>) -> impl IntoResponse {
    let freshness = async {
        let query = app
            .clickhouse
            .query("SELECT source, toUInt64(newest_commit_ms), toUInt64(applied_at_ms) FROM freshness ORDER BY source");
        match tokio::time::timeout(SOURCE_TIMEOUT, query.fetch_all::<Freshness>()).await {
            Ok(Ok(rows)) => (rows, None),
            Ok(Err(e)) => (Vec::new(), Some(format!("reading reporting.freshness: {e}"))),
            Err(_) => (Vec::new(), Some(format!("ClickHouse did not answer within {SOURCE_TIMEOUT:?}"))),
        }
    };
    let (lag, (freshness, freshness_error)) = tokio::join!(app.lag(), freshness);
    let samples = app.metrics.history();
    let events_total = app.metrics.events_total();
    let now = now_ms();
    let events_per_s = samples
        .iter()
        .find(|s| now - s.at_ms <= 10_000 + SAMPLE_STEP_MS / 2)
        .filter(|s| now - s.at_ms >= SAMPLE_STEP_MS / 2)
        .map_or(0.0, |s| events_total.saturating_sub(s.events_total) as f64 * 1000.0 / (now - s.at_ms) as f64);
    let consumer_lag = app
        .metrics
        .partitions()
        .into_iter()
        .map(|((topic, partition), messages)| PartitionLag { topic, partition, messages })
        .collect();
    Json(Status {
        now_ms: now,
        health: health_body(&app.metrics).1,
        lag,
        throughput: Throughput { events_total, events_per_s },
        consumer_lag,
        freshness,
        freshness_error,
        history: History { step_ms: SAMPLE_STEP_MS, samples },
        assignment: app.assignment,
        assigned: app.metrics.assigned.lock().expect("assigned lock").iter().map(|(t, p)| Partition { topic: t.clone(), partition: *p }).collect(),
    })
}

/// Serves until `shutdown`, and samples the history every [`SAMPLE_STEP_MS`] meanwhile.
pub async fn serve(addr: SocketAddr, app: Arc<App>, shutdown: CancellationToken) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let sampler = {
        let (app, shutdown) = (app.clone(), shutdown.clone());
        tokio::spawn(async move {
            let names = app.source_names();
            let mut tick = tokio::time::interval(Duration::from_millis(SAMPLE_STEP_MS as u64));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => app.metrics.sample(now_ms(), &names),
                }
            }
        })
    };
    let result = axum::serve(listener, self::app(app.clone()))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    sampler.abort();
    app.close().await;
    result
}
