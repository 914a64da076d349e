//! Capture: tails each source database's binlog over the replication protocol and publishes Debezium-compatible
//! change events to Kafka, one topic per table (`<prefix>.<database>.<table>`), keyed by primary key.
//!
//! # Guarantees
//!
//! - **Nothing lost.** A source's checkpoint (binlog file/position and GTID set of the last transaction whose every
//!   event the broker acknowledged with `acks=all`) is saved only after those acknowledgements. After a crash at any
//!   moment, streaming resumes from it; events sent after it are sent again with identical `source` coordinates
//!   (`file`, `pos` of the transaction's GTID event, `row` within it), so consumers can drop duplicates.
//! - **Per-key order.** Events of one row go to one partition (murmur2 of the JSON key), in binlog order; the
//!   idempotent producer keeps that order across retries.
//! - **Growing row versions.** Consumers version rows by position; when positions restart lower (`RESET MASTER`,
//!   another server, a new snapshot) the source's epoch rises so versions keep growing (see [`epoch`]), and a
//!   checkpoint of another server resumes by GTID set (see [`resume`]).
//! - **Exact snapshot handoff.** The initial snapshot reads a consistent view and streaming starts at exactly the
//!   binlog position of that view (see [`snapshot`]).
//! - **Schema changes.** Row events decode with the schema in their own TABLE_MAP (`binlog_row_metadata=FULL`), so
//!   both sides of a DDL decode right, also across restarts (see [`ddl`]).
//! - **Bounded memory.** Large transactions are split into batches (by count and bytes); the queue to the producer
//!   is bounded in batches and bytes ([`queue`]), and the producer's own queue in bytes.
//!
//! # Errors
//!
//! [`error::CaptureError`] separates transient errors (retried with backoff from the checkpoint) from definite
//! ones (wrong server settings, missing privileges, purged binlog), which stop the source with the remedy.
//!
//! # Stages
//!
//! [`checks`] -> [`snapshot`] / [`stream`] (with [`transform`] and [`decode`]) -> [`sink`] -> [`checkpoint`],
//! wired per source by [`pipeline`]; [`http`] serves [`metrics`] and health.

pub mod checkpoint;
pub mod checks;
pub mod config;
pub mod ddl;
pub mod decode;
pub mod epoch;
pub mod error;
pub mod http;
pub mod metrics;
pub mod oversized;
pub mod pipeline;
pub mod position;
pub mod queue;
pub mod resume;
pub mod schema;
pub mod sink;
pub mod snapshot;
pub mod stream;
pub mod transform;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::FileCheckpointStore;
use crate::config::Settings;
use crate::error::CaptureError;
use crate::metrics::Metrics;

/// Runs every source and the HTTP server until `shutdown` or a definite error of any source.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let metrics = Metrics::new();
    let mut tasks = JoinSet::new();
    let http = tokio::spawn(http::serve(settings.listen, metrics.clone(), shutdown.clone()));
    for source in settings.sources.clone() {
        let source_metrics = metrics.source(&source.name);
        let name = source.name.clone();
        tasks.spawn(pipeline::run_source(settings.clone(), source, source_metrics, shutdown.clone()));
        tracing::info!(source = %name, "source started");
    }
    let mut failure = None;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "source stopped");
                failure.get_or_insert(e);
                shutdown.cancel();
            }
            Err(join) => {
                tracing::error!(error = %join, "source task panicked");
                shutdown.cancel();
            }
        }
    }
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), http).await;
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// `capture --check`: validates every source's server and checkpoint without streaming. Returns one line per
/// source.
pub async fn check(settings: &Settings) -> Result<Vec<String>, CaptureError> {
    let mut lines = Vec::new();
    for source in &settings.sources {
        let store = FileCheckpointStore::new(&settings.state_dir, &source.name)
            .map_err(|error| CaptureError::Checkpoint { source_name: source.name.clone(), error })?;
        let (pool, info, checkpoint) = pipeline::prepare(source, &store).await?;
        pool.disconnect().await.ok();
        let resume = match checkpoint {
            Some(cp) if cp.snapshot.is_some() => format!("resumes its snapshot ({} rows done)", cp.snapshot.map_or(0, |s| s.rows)),
            Some(cp) if info.plan.start == resume::Start::Gtid => format!(
                "resumes by GTID set {} in epoch {} ({})",
                cp.gtid_set,
                info.plan.epoch,
                info.plan.reason.as_deref().unwrap_or_default()
            ),
            Some(cp) => format!("resumes at {} ({}) in epoch {}", cp.position, cp.gtid_set, info.plan.epoch),
            None => format!("starts with snapshot mode {:?}", source.snapshot),
        };
        lines.push(format!("{}: ok ({} server_id {}); {resume}", source.name, info.version, info.server_id));
    }
    Ok(lines)
}
