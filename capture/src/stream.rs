//! The binlog reader: one replication connection per source, from a checkpoint's position to the end of time.
//!
//! Events are turned into records by the [`Transformer`] and sent to the sink in batches: one batch per
//! transaction, or several for a transaction larger than `batch_size`, so a million-row transaction passes in
//! bounded memory (the queue to the sink is bounded in batches and bytes, and `send` waits when it is full; a batch
//! also closes once its records hold `batch_max_bytes`).
//!
//! When the server has nothing to send it sends a heartbeat every `heartbeat_interval`; the reader then checkpoints
//! its position and asks the sink to publish a [`Heartbeat`](cdc_contract::Heartbeat) to `<prefix>.heartbeats` once
//! everything before it is acknowledged, so positions advance and lag stays measurable on an idle source. While the
//! source is busy, the end of a transaction carries such a heartbeat at most every `heartbeat_interval`, so
//! consumers can tell how far they are also under load.
//!
//! Liveness: with no event at all for [`timeouts::read_deadline`] (three heartbeat periods, at least 5 s) the
//! connection or the server is taken as frozen, a transient error: the source reconnects from its checkpoint.
//! Every other call to the server is bounded too (see [`timeouts`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::StreamExt;
use mysql_async::binlog::EventType;
use mysql_async::prelude::*;
use mysql_async::{Conn, Pool};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::Checkpoint;
use crate::position::Flavor;
use crate::config::{Settings, SourceSettings};
use crate::decode::ServerFlavor;
use crate::epoch::{self, EpochFile};
use crate::error::{classify_mysql, CaptureError};
use crate::metrics::SourceMetrics;
use crate::queue::{batch_bytes, BatchSender};
use crate::resnapshot::Resnapshot;
use crate::sink::{Batch, BeatAt};
use crate::{schema, timeouts};
use crate::transform::{now_ms, Record, TransformError, Transformer};

/// Streams from `start` until cancelled or an error.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    settings: &Settings,
    source: &SourceSettings,
    flavor: Flavor,
    pool: &Pool,
    start: Checkpoint,
    epochs: &mut EpochFile,
    tx: &BatchSender,
    metrics: &Arc<SourceMetrics>,
    shutdown: &CancellationToken,
) -> Result<(), CaptureError> {
    let name = source.name.as_str();
    let my = |e| classify_mysql(name, e);
    let mut conn = timeouts::mysql(name, "connecting", timeouts::MYSQL_CONNECT, Conn::new(source.opts.clone())).await?;
    let period_ns = source.heartbeat_interval.as_nanos().to_string();
    let setup = format!("SET @master_heartbeat_period = {period_ns}");
    timeouts::mysql(name, "the binlog session setup", timeouts::MYSQL_QUERY, conn.query_drop(setup)).await?;
    if flavor == Flavor::MariaDb {
        // Without this MariaDB replaces its GTID events by dummy events.
        let capability = conn.query_drop("SET @mariadb_slave_capability = 4");
        timeouts::mysql(name, "the binlog session setup", timeouts::MYSQL_QUERY, capability).await?;
    }
    // By position, or by GTID set where the checkpoint's position is not this server's (see crate::resume).
    let (session, request) = crate::resume::stream_request(&start, flavor, source.server_id)
        .map_err(|message| CaptureError::Definite { source_name: name.to_owned(), message })?;
    for statement in session {
        timeouts::mysql(name, "the binlog session setup", timeouts::MYSQL_QUERY, conn.query_drop(statement)).await?;
    }
    let mut stream =
        timeouts::mysql(name, "the binlog request", timeouts::MYSQL_QUERY, conn.get_binlog_stream(request)).await?;
    let deadline = timeouts::read_deadline(source.heartbeat_interval);
    tracing::info!(source = %name, position = %start.position, gtid = %start.gtid_set, "streaming");

    let mut transformer = Transformer::new(
        name,
        &settings.topic_prefix,
        source.filter.clone(),
        settings.tombstones,
        &start.position,
        start.gtid_set.clone(),
        match flavor {
            Flavor::MariaDb => ServerFlavor::MariaDb,
            Flavor::MySql => ServerFlavor::MySql,
        },
    )
    .with_statement_row_changes(source.statement_dml, metrics.skipped_statements.clone())
    .resumed_as(start.epoch, start.server_id);
    // Incremental snapshots of single tables, emitted between transactions (see crate::resnapshot).
    let mut resnapshot = Resnapshot::new(settings, source, flavor, pool, &start, metrics).await?;
    let mut schema_conn: Option<Conn> = None;
    let mut records: Vec<Record> = Vec::with_capacity(settings.batch_size);
    // Bytes of `records`: a batch also closes at `batch_max_bytes`.
    let mut bytes = 0;
    let mut last_beat = std::time::Instant::now();
    loop {
        let event = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            wake = resnapshot.wake() => {
                resnapshot.woke(wake).await?;
                if !transformer.in_transaction() {
                    emit_chunk(&mut resnapshot, epochs, start.epoch, transformer.file(), tx, metrics, settings.batch_size).await?;
                }
                continue;
            }
            event = tokio::time::timeout(deadline, stream.next()) => event.map_err(|_| CaptureError::Timeout {
                source_name: name.to_owned(),
                what: format!("the binlog stream (heartbeats every {})", humantime(source.heartbeat_interval)),
                limit: deadline,
            })?,
        };
        let Some(event) = event else {
            return Err(CaptureError::MySql {
                source_name: name.to_owned(),
                error: mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed),
                transient: true,
            });
        };
        let event = event.map_err(my)?;
        fill_schemas(name, flavor, pool, &mut schema_conn, &mut transformer, &event).await?;
        let before = records.len();
        let checkpoint = transformer.handle(&event, &mut records).map_err(|e| transform_error(name, e))?;
        bytes += batch_bytes(&records[before..]);
        resnapshot.observe(&records[before..]);
        let is_heartbeat = event.header().event_type_raw() == EventType::HEARTBEAT_EVENT as u8;
        if let Some(checkpoint) = checkpoint {
            let checkpoint = resnapshot.checkpoint(checkpoint);
            {
                let mut pos = metrics.position.lock().expect("position lock");
                pos.0.clone_from(&checkpoint.position.file);
                pos.1 = checkpoint.position.pos;
            }
            let last_commit_ts_ms = transformer.last_commit_ts_ms();
            let beat = if is_heartbeat {
                metrics.caught_up();
                Some(BeatAt { last_commit_ts_ms, as_of_ms: now_ms(), idle: true })
            } else {
                metrics.committed(last_commit_ts_ms);
                (last_beat.elapsed() >= source.heartbeat_interval)
                    .then_some(BeatAt { last_commit_ts_ms, as_of_ms: last_commit_ts_ms, idle: false })
            };
            if beat.is_some() {
                last_beat = std::time::Instant::now();
            }
            publishing(epochs, start.epoch, &records, transformer.file())?;
            send(tx, metrics, std::mem::take(&mut records), Some(checkpoint), beat).await?;
            emit_chunk(&mut resnapshot, epochs, start.epoch, transformer.file(), tx, metrics, settings.batch_size).await?;
            records.reserve(settings.batch_size);
            bytes = 0;
        } else if records.len() >= settings.batch_size || bytes >= settings.batch_max_bytes {
            publishing(epochs, start.epoch, &records, transformer.file())?;
            send(tx, metrics, std::mem::take(&mut records), None, None).await?;
            records.reserve(settings.batch_size);
            bytes = 0;
        }
    }
}

/// Looks up the information_schema facts `transformer` lacks for `event` (see [`Transformer::missing_schema`]), on
/// `schema_conn`, connected from `pool` when first needed.
pub(crate) async fn fill_schemas(
    name: &str,
    flavor: Flavor,
    pool: &Pool,
    schema_conn: &mut Option<Conn>,
    transformer: &mut Transformer,
    event: &mysql_async::binlog::events::Event,
) -> Result<(), CaptureError> {
    while let Some(table) = transformer.missing_schema(event) {
        if schema_conn.is_none() {
            let connect = pool.get_conn();
            *schema_conn = Some(timeouts::mysql(name, "connecting", timeouts::MYSQL_CONNECT, connect).await?);
        }
        let conn = schema_conn.as_mut().expect("set above");
        let lookup = schema::columns(conn, flavor, &table);
        let columns = timeouts::mysql(name, "the schema lookup", timeouts::MYSQL_QUERY, lookup).await?;
        transformer.set_schema(table, columns);
    }
    Ok(())
}

/// Makes the epoch file cover `records` of binlog `file` before they are sent (see [`crate::epoch`]).
fn publishing(epochs: &mut EpochFile, epoch: u32, records: &[Record], file: &str) -> Result<(), CaptureError> {
    match epoch::file_seq(file) {
        Some(seq) if !records.is_empty() => epochs.publishing(epoch, seq),
        _ => Ok(()),
    }
}

/// Sends the resnapshot chunk that is due at the reader's position, if any; called between transactions only.
async fn emit_chunk(
    resnapshot: &mut Resnapshot,
    epochs: &mut EpochFile,
    epoch: u32,
    file: &str,
    tx: &BatchSender,
    metrics: &SourceMetrics,
    batch_size: usize,
) -> Result<(), CaptureError> {
    for (records, checkpoint) in resnapshot.ready(batch_size).unwrap_or_default() {
        publishing(epochs, epoch, &records, file)?;
        send(tx, metrics, records, checkpoint, None).await?;
    }
    Ok(())
}

async fn send(
    tx: &BatchSender,
    metrics: &SourceMetrics,
    records: Vec<Record>,
    checkpoint: Option<Checkpoint>,
    heartbeat: Option<BeatAt>,
) -> Result<(), CaptureError> {
    metrics.queue_depth.store((tx.max_capacity() - tx.capacity()) as i64, Ordering::Relaxed);
    tx.send(Batch { records, checkpoint, heartbeat }).await.map_err(|_| CaptureError::Definite {
        source_name: metrics.name.clone(),
        message: "the producer stopped".into(),
    })
}

fn humantime(d: std::time::Duration) -> humantime_serde::re::humantime::FormattedDuration {
    humantime_serde::re::humantime::format_duration(d)
}

fn transform_error(source: &str, e: TransformError) -> CaptureError {
    CaptureError::Definite { source_name: source.to_owned(), message: e.to_string() }
}
