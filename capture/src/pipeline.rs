//! Wires one source's stages together: checks, snapshot or binlog reader -> bounded queue -> Kafka sink ->
//! checkpoint store. This module only connects things; each stage lives in its own module.
//!
//! Order of work is the guarantee: a checkpoint is saved only after the sink reports every record before it
//! acknowledged. A transient error (lost connection, broker unavailable) restarts the source from its saved
//! checkpoint after a backoff; a definite error stops it with a message naming the remedy.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{Checkpoint, CheckpointStore, FileCheckpointStore};
use crate::checks::{self, Flavor, ServerInfo};
use crate::config::{Settings, SnapshotMode, SourceSettings};
use crate::error::CaptureError;
use crate::metrics::{SourceMetrics, SourceState};
use crate::position::GtidSet;
use crate::sink::{Batch, KafkaChangeSink};
use crate::{snapshot, stream};

/// Runs one source until `shutdown`, retrying transient errors with backoff.
pub async fn run_source(
    settings: Arc<Settings>,
    source: SourceSettings,
    metrics: Arc<SourceMetrics>,
    shutdown: CancellationToken,
) -> Result<(), CaptureError> {
    let mut backoff = Duration::from_millis(250);
    loop {
        let started = Instant::now();
        match run_once(&settings, &source, &metrics, &shutdown).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_transient() && !shutdown.is_cancelled() => {
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_millis(250);
                }
                tracing::warn!(source = %source.name, error = %e, retry_in = ?backoff, "transient error; resuming from the checkpoint");
                metrics.set_state(SourceState::Retrying(e.to_string()));
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(e) => {
                metrics.set_state(SourceState::Failed(e.to_string()));
                return Err(e);
            }
        }
    }
}

/// Connects, checks the server and the checkpoint, and returns what streaming needs.
pub async fn prepare(
    source: &SourceSettings,
    store: &FileCheckpointStore,
) -> Result<(mysql_async::Pool, ServerInfo, Option<Checkpoint>), CaptureError> {
    let checkpoint_error = |error| CaptureError::Checkpoint { source_name: source.name.clone(), error };
    let checkpoint = store.load().map_err(checkpoint_error)?;
    let pool = mysql_async::Pool::new(source.opts.clone());
    let info = checks::run(&pool, source, checkpoint.as_ref(), &store.path().display().to_string()).await?;
    Ok((pool, info, checkpoint))
}

async fn run_once(
    settings: &Settings,
    source: &SourceSettings,
    metrics: &Arc<SourceMetrics>,
    shutdown: &CancellationToken,
) -> Result<(), CaptureError> {
    let name = source.name.as_str();
    let checkpoint_error = |error| CaptureError::Checkpoint { source_name: name.to_owned(), error };
    metrics.set_state(SourceState::Starting);
    let mut store = FileCheckpointStore::new(&settings.state_dir, name).map_err(checkpoint_error)?;
    let (pool, info, checkpoint) = prepare(source, &store).await?;
    tracing::info!(source = %name, version = %info.version, server_id = info.server_id, "source checked");

    let sink = KafkaChangeSink::new(settings, metrics.clone())?;
    let (tx, rx) = mpsc::channel::<Batch>(settings.queue_capacity);
    let stop = shutdown.child_token();
    let reader = read(settings, source, &info, &pool, checkpoint, tx, metrics, &stop);
    let writer = write(settings, sink, rx, &mut store, metrics, &stop);
    let monitor = tokio::spawn(monitor_binlog(pool.clone(), metrics.clone(), stop.clone()));
    tokio::pin!(reader, writer);
    // The writer finishes after the reader: it drains what the reader queued, then saves the last checkpoint.
    let result = tokio::select! {
        r = &mut reader => {
            // The reader dropped its sender: the writer drains the queue and returns.
            let w = writer.await;
            r.and(w)
        }
        w = &mut writer => {
            stop.cancel();
            w
        }
    };
    stop.cancel();
    let _ = monitor.await;
    pool.clone().disconnect().await.ok();
    result
}

/// The reader stage: the snapshot when one is due, then the binlog.
#[allow(clippy::too_many_arguments)]
async fn read(
    settings: &Settings,
    source: &SourceSettings,
    info: &ServerInfo,
    pool: &mysql_async::Pool,
    checkpoint: Option<Checkpoint>,
    tx: mpsc::Sender<Batch>,
    metrics: &Arc<SourceMetrics>,
    stop: &CancellationToken,
) -> Result<(), CaptureError> {
    let tx = &tx;
    let start = match checkpoint {
        Some(cp) if cp.snapshot.is_none() => cp,
        resume if source.snapshot == SnapshotMode::Initial => {
            metrics.set_state(SourceState::Snapshotting);
            let cp = snapshot::run(settings, source, info.flavor, info.server_id, pool, resume, tx, metrics, stop).await?;
            if stop.is_cancelled() {
                return Ok(());
            }
            cp
        }
        _ => {
            let position = checks::current_position(pool, info.flavor, &source.name).await?;
            let gtid_set = match info.flavor {
                Flavor::MariaDb => gtid_at(pool, &source.name, &position).await?,
                Flavor::MySql => GtidSet::default(),
            };
            Checkpoint { server_id: info.server_id, position, gtid_set, ts_ms: 0, snapshot: None }
        }
    };
    metrics.set_state(SourceState::Streaming);
    stream::run(settings, source, info.flavor, pool, start, tx, metrics, stop).await
}

async fn gtid_at(
    pool: &mysql_async::Pool,
    name: &str,
    position: &crate::position::BinlogPosition,
) -> Result<GtidSet, CaptureError> {
    use mysql_async::prelude::*;
    let my = |e| crate::error::classify_mysql(name, e);
    let mut conn = pool.get_conn().await.map_err(my)?;
    let gtid: Option<String> =
        conn.exec_first("SELECT BINLOG_GTID_POS(?, ?)", (&position.file, position.pos)).await.map_err(my)?;
    GtidSet::parse(&gtid.unwrap_or_default())
        .map_err(|message| CaptureError::Definite { source_name: name.to_owned(), message })
}

/// The writer stage: produce, collect acknowledgements, save checkpoints at most every `checkpoint_interval`.
async fn write(
    settings: &Settings,
    mut sink: KafkaChangeSink,
    mut rx: mpsc::Receiver<Batch>,
    store: &mut FileCheckpointStore,
    metrics: &Arc<SourceMetrics>,
    stop: &CancellationToken,
) -> Result<(), CaptureError> {
    let name = metrics.name.clone();
    let mut unsaved: Option<Checkpoint> = None;
    let mut last_save = Instant::now();
    let mut tick = tokio::time::interval(settings.checkpoint_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut open = true;
    loop {
        tokio::select! {
            // Acknowledgements first: they free broker queue space and let checkpoints advance.
            biased;
            _ = sink.acknowledgement() => {}
            _ = tick.tick() => {}
            batch = rx.recv(), if open => match batch {
                Some(batch) => sink.send(batch).await?,
                None => open = false,
            },
        }
        if let Some(cp) = sink.take_acknowledged()? {
            unsaved = Some(cp);
        }
        metrics.in_flight.store(sink.in_flight() as i64, Ordering::Relaxed);
        let closing = !open || stop.is_cancelled();
        if let Some(cp) = &unsaved {
            if closing || last_save.elapsed() >= settings.checkpoint_interval {
                save(store, cp, &name)?;
                metrics.checkpoint_saved();
                unsaved = None;
                last_save = Instant::now();
            }
        }
        if closing && (!open || rx.is_empty()) {
            // Drain: wait for what was sent, save the final checkpoint.
            if stop.is_cancelled() {
                while let Ok(batch) = rx.try_recv() {
                    sink.send(batch).await?;
                }
            }
            sink.flush(settings.kafka.delivery_timeout)?;
            if let Some(cp) = sink.take_acknowledged()? {
                save(store, &cp, &name)?;
                metrics.checkpoint_saved();
            }
            return Ok(());
        }
    }
}

/// Updates `binlog_bytes_behind` every 2 s from the server's binlog sizes and the reader's position. Errors are
/// left to the reader, which owns reconnection: the gauge then keeps its last value.
async fn monitor_binlog(pool: mysql_async::Pool, metrics: Arc<SourceMetrics>, stop: CancellationToken) {
    use mysql_async::prelude::*;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Ok(mut conn) = pool.get_conn().await else { continue };
        let Ok(logs) = conn.query::<(String, u64), _>("SHOW BINARY LOGS").await else { continue };
        let (file, pos) = metrics.position.lock().expect("position lock").clone();
        if file.is_empty() {
            continue;
        }
        metrics.bytes_behind.store(bytes_behind(&logs, &file, pos) as i64, Ordering::Relaxed);
    }
}

/// Bytes of binlog after `file:pos` given the server's files and sizes.
fn bytes_behind(logs: &[(String, u64)], file: &str, pos: u64) -> u64 {
    logs.iter()
        .map(|(f, size)| match f.as_str().cmp(file) {
            std::cmp::Ordering::Less => 0,
            std::cmp::Ordering::Equal => size.saturating_sub(pos),
            std::cmp::Ordering::Greater => *size,
        })
        .sum()
}

fn save(store: &mut FileCheckpointStore, cp: &Checkpoint, name: &str) -> Result<(), CaptureError> {
    tokio::task::block_in_place(|| store.save(cp))
        .map_err(|error| CaptureError::Checkpoint { source_name: name.to_owned(), error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_behind_counts_the_rest_of_the_file_and_newer_files() {
        let logs = vec![("binlog.000001".to_string(), 1000), ("binlog.000002".into(), 500), ("binlog.000003".into(), 300)];
        assert_eq!(bytes_behind(&logs, "binlog.000002", 200), 300 + 300);
        assert_eq!(bytes_behind(&logs, "binlog.000003", 300), 0);
    }
}
