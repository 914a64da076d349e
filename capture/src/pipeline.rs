//! Wires one source's stages together: checks, snapshot or binlog reader -> bounded queue -> Kafka sink ->
//! checkpoint store. This module only connects things; each stage lives in its own module.
//!
//! Order of work is the guarantee: a checkpoint is saved only after the sink reports every record before it
//! acknowledged. A transient error (lost connection, broker unavailable, a server that does not answer within its
//! limit in [`crate::timeouts`]) restarts the source from its saved checkpoint after a backoff; a definite error stops
//! it with a message naming the remedy.
//!
//! Liveness: the writer keeps the send time of the oldest unacknowledged batch in the source's metrics, which
//! `/health` turns into "broker not acknowledging" (see `AckClock`); on shutdown, its drain is bounded by
//! [`crate::timeouts::DRAIN`], and no stage waits on a frozen server or broker past the shutdown.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::checkpoint::{Checkpoint, CheckpointStore, FileCheckpointStore};
use crate::checks::{self, ServerInfo};
use crate::position::Flavor;
use crate::config::{Settings, SnapshotMode, SourceSettings};
use crate::epoch::{self, EpochFile};
use crate::error::CaptureError;
use crate::metrics::{Purge, RetentionEstimate, SourceMetrics, SourceState};
use crate::position::GtidSet;
use crate::queue::{self, BatchReceiver, BatchSender};
use crate::sink::KafkaChangeSink;
use crate::transform::now_ms;
use crate::{snapshot, stream, timeouts};

/// Runs one source until `shutdown`, retrying transient errors with backoff. While `paused` holds a pause the
/// source does not run (see [`crate::control`]): a pause stops the running source as a shutdown would.
pub async fn run_source(
    settings: Arc<Settings>,
    source: SourceSettings,
    metrics: Arc<SourceMetrics>,
    shutdown: CancellationToken,
    mut paused: tokio::sync::watch::Receiver<Option<crate::control::Pause>>,
) -> Result<(), CaptureError> {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    loop {
        let pause = paused.borrow_and_update().clone();
        if let Some(pause) = pause {
            metrics.set_state(SourceState::Paused(pause.describe()));
            tracing::info!(source = %source.name, "paused");
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = paused.wait_for(Option::is_none) => {}
            }
            tracing::info!(source = %source.name, "resumed");
            continue;
        }
        let started = Instant::now();
        // This run's stop: the shutdown, or a pause.
        let run = shutdown.child_token();
        let pausing = {
            let (mut paused, run) = (paused.clone(), run.clone());
            tokio::spawn(async move {
                if paused.wait_for(Option::is_some).await.is_ok() {
                    run.cancel();
                }
            })
        };
        let result = run_once(&settings, &source, &metrics, &run).await;
        pausing.abort();
        let pausing = run.is_cancelled() && !shutdown.is_cancelled();
        match result {
            Ok(()) if pausing => continue,
            Ok(()) => return Ok(()),
            Err(e) if e.is_transient() && pausing => {
                tracing::info!(source = %source.name, error = %e, "stopped for the pause");
                continue;
            }
            Err(e) if e.is_transient() && shutdown.is_cancelled() => {
                // Cut short by the shutdown (e.g. the drain's bound): what was not acknowledged lies after the saved
                // checkpoint and is sent again after the next start.
                tracing::info!(source = %source.name, error = %e, "stopped during shutdown");
                return Ok(());
            }
            Err(e) if e.is_transient() => {
                if started.elapsed() > Duration::from_secs(60) {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                tracing::warn!(source = %source.name, error = %e, retry_in = ?delay, "transient error; resuming from the checkpoint");
                metrics.set_state(SourceState::Retrying(e.to_string()));
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
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
    let epochs = EpochFile::open(store.path().parent().unwrap_or(std::path::Path::new(".")), &source.name)?;
    let pool = mysql_async::Pool::new(source.opts.clone());
    let path = store.path().display().to_string();
    let checked = checks::run(&pool, source, checkpoint.as_ref(), &path, &epochs);
    match timeouts::within(&source.name, "the start-up checks", timeouts::MYSQL_CHECKS, checked).await {
        Ok(info) => Ok((pool, info, checkpoint)),
        Err(e) => {
            tokio::spawn(disconnect(pool));
            Err(e)
        }
    }
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
    let (pool, info, checkpoint) = tokio::select! {
        prepared = prepare(source, &store) => prepared?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    tracing::info!(source = %name, version = %info.version, server_id = info.server_id, "source checked");
    metrics.checkpoint_loaded(checkpoint.as_ref());

    let sink = KafkaChangeSink::new(settings, source.filter.clone(), metrics.clone())?;
    let (tx, rx) = queue::channel(settings.queue_capacity, settings.queue_max_bytes, metrics.clone());
    let stop = shutdown.child_token();
    let monitor =
        tokio::spawn(monitor_binlog(pool.clone(), metrics.clone(), settings.retention_warning, stop.clone()));
    // The stages are dropped at the end of this block, before the pool is closed: `disconnect` waits for every pooled
    // connection, and a reader still holding one (its schema connection) made a writer's error hang there.
    let result = {
        let reader = read(settings, source, &info, &pool, checkpoint, tx, metrics, &stop);
        let writer = write(settings, sink, rx, &mut store, metrics, &stop);
        tokio::pin!(reader, writer);
        // The writer finishes after the reader: it drains what the reader queued, then saves the last checkpoint.
        tokio::select! {
            r = &mut reader => {
                // The reader dropped its sender: the writer drains the queue and returns.
                let w = writer.await;
                r.and(w)
            }
            w = &mut writer => {
                stop.cancel();
                w
            }
        }
    };
    stop.cancel();
    if let Err(e) = &result {
        // Reported at once: the server may be frozen, and the source retries (or stays stopped) from now.
        let state = if e.is_transient() { SourceState::Retrying(e.to_string()) } else { SourceState::Failed(e.to_string()) };
        metrics.set_state(state);
    }
    let _ = monitor.await;
    if result.is_ok() {
        disconnect(pool.clone()).await;
    } else {
        // The server may not answer: the retry does not wait for the goodbye.
        tokio::spawn(disconnect(pool.clone()));
    }
    result
}

/// Closes the pool's connections, for at most [`timeouts::MYSQL_QUERY`]: a frozen server never answers the
/// goodbye, and its connections are then simply dropped.
async fn disconnect(pool: mysql_async::Pool) {
    let _ = tokio::time::timeout(timeouts::MYSQL_QUERY, pool.disconnect()).await;
}

/// The reader stage: the snapshot when one is due, then the binlog.
#[allow(clippy::too_many_arguments)]
async fn read(
    settings: &Settings,
    source: &SourceSettings,
    info: &ServerInfo,
    pool: &mysql_async::Pool,
    checkpoint: Option<Checkpoint>,
    tx: BatchSender,
    metrics: &Arc<SourceMetrics>,
    stop: &CancellationToken,
) -> Result<(), CaptureError> {
    let tx = &tx;
    let mut epochs = EpochFile::open(&settings.state_dir, &source.name)?;
    if let Some(reason) = &info.plan.reason {
        tracing::warn!(source = %source.name, epoch = info.plan.epoch, start = ?info.plan.start, %reason, "binlog positions restart: epoch raised");
    }
    let start = match checkpoint {
        Some(cp) if cp.snapshot.is_none() => info.plan.start_from(cp, info.server_id),
        resume if source.snapshot == SnapshotMode::Initial => {
            metrics.set_state(SourceState::Snapshotting);
            let resume = resume.map(|cp| info.plan.start_from(cp, info.server_id));
            let snapshot =
                snapshot::run(settings, source, info.flavor, info.server_id, pool, resume, &mut epochs, tx, metrics, stop);
            // Stopping in the middle is safe: the snapshot resumes from its last acknowledged chunk.
            let cp = tokio::select! {
                cp = snapshot => cp?,
                _ = stop.cancelled() => return Ok(()),
            };
            if stop.is_cancelled() {
                return Ok(());
            }
            cp
        }
        _ => {
            let name = source.name.as_str();
            let current = checks::current_position(pool, info.flavor, name);
            let position = timeouts::within(name, "the binlog position query", timeouts::MYSQL_QUERY, current).await?;
            let gtid_set = match info.flavor {
                Flavor::MariaDb => gtid_at(pool, name, &position).await?,
                Flavor::MySql => GtidSet::default(),
            };
            let seq = epoch::file_seq(&position.file).unwrap_or(0);
            let epoch = epoch::check_place(&source.name, epochs.state().epoch_at(seq), seq)?;
            Checkpoint { server_id: info.server_id, epoch, position, gtid_set, ts_ms: 0, snapshot: None, resnapshot: None }
        }
    };
    metrics.set_state(SourceState::Streaming);
    stream::run(settings, source, info.flavor, pool, start, &mut epochs, tx, metrics, stop).await
}

async fn gtid_at(
    pool: &mysql_async::Pool,
    name: &str,
    position: &crate::position::BinlogPosition,
) -> Result<GtidSet, CaptureError> {
    use mysql_async::prelude::*;
    let mut conn = timeouts::mysql(name, "connecting", timeouts::MYSQL_CONNECT, pool.get_conn()).await?;
    let query = conn.exec_first("SELECT BINLOG_GTID_POS(?, ?)", (&position.file, position.pos));
    let gtid: Option<String> = timeouts::mysql(name, "the GTID position query", timeouts::MYSQL_QUERY, query).await?;
    GtidSet::parse(&gtid.unwrap_or_default())
        .map_err(|message| CaptureError::Definite { source_name: name.to_owned(), message })
}

/// The writer stage: produce, collect acknowledgements, save checkpoints at most every `checkpoint_interval`.
async fn write(
    settings: &Settings,
    mut sink: KafkaChangeSink,
    mut rx: BatchReceiver,
    store: &mut FileCheckpointStore,
    metrics: &Arc<SourceMetrics>,
    stop: &CancellationToken,
) -> Result<(), CaptureError> {
    let name = metrics.name.clone();
    let mut unsaved: Option<Checkpoint> = None;
    let mut last_save = Instant::now();
    let mut tick = tokio::time::interval(settings.checkpoint_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut clock = AckClock::resume(metrics);
    let mut open = true;
    loop {
        tokio::select! {
            // Acknowledgements first: they free broker queue space and let checkpoints advance.
            biased;
            _ = sink.acknowledgement() => clock.broker_answered(),
            _ = tick.tick() => {}
            batch = rx.recv(), if open => match batch {
                // The batch's bytes return to the budget once librdkafka holds its records.
                Some((batch, _bytes)) => {
                    clock.sending(metrics);
                    // A send waits while the producer's queue is full (the broker is slow or frozen); a shutdown
                    // does not wait for room. A batch cut off here is not acknowledged, so no checkpoint passes it.
                    tokio::select! {
                        biased;
                        sent = sink.send(batch) => if let Err(e) = sent {
                            if !e.is_transient() {
                                settle(&mut sink, store, metrics);
                            }
                            return Err(e);
                        },
                        _ = stop.cancelled() => {}
                    }
                    clock.track(sink.in_flight(), metrics);
                }
                None => open = false,
            },
        }
        if let Some(cp) = sink.take_acknowledged()? {
            unsaved = Some(cp);
        }
        clock.track(sink.in_flight(), metrics);
        // Publishing may wait on the broker (the first one reads its high watermarks): that counts as waiting too.
        clock.sending(metrics);
        sink.publish_heartbeat().await?;
        clock.track(sink.in_flight(), metrics);
        let closing = !open || stop.is_cancelled();
        if let Some(cp) = &unsaved {
            if closing || last_save.elapsed() >= settings.checkpoint_interval {
                save(store, cp, &name)?;
                metrics.checkpoint_saved(cp);
                unsaved = None;
                last_save = Instant::now();
            }
        }
        if closing {
            return drain(sink, rx, store, metrics, stop, clock).await;
        }
    }
}

/// Before a definite error of a send (a record refused before it was produced) stops the source: saves the
/// checkpoint of what the broker acknowledged before it, waiting at most [`timeouts::DRAIN`], so that the stopped
/// source's checkpoint is the start of the refused transaction and `capture skip` past it skips nothing else.
fn settle(sink: &mut KafkaChangeSink, store: &mut FileCheckpointStore, metrics: &Arc<SourceMetrics>) {
    let flushed = sink.flush(timeouts::DRAIN);
    match sink.take_acknowledged() {
        Ok(Some(cp)) if save(store, &cp, &metrics.name).is_ok() => metrics.checkpoint_saved(&cp),
        Ok(_) => {}
        Err(e) => tracing::warn!(source = %metrics.name, error = %e, "no checkpoint saved before the stop"),
    }
    if let Err(e) = flushed {
        tracing::warn!(source = %metrics.name, error = %e, "not everything before the stop was acknowledged");
    }
}

/// The writer's end, when the reader stopped or on shutdown, bounded by [`timeouts::DRAIN`] whatever the broker
/// does: on shutdown it sends what is still queued, then waits for acknowledgements and saves the checkpoint of
/// what was acknowledged. What is not acknowledged by then lies after that checkpoint and is sent again by the next
/// run, which is safe.
async fn drain(
    mut sink: KafkaChangeSink,
    mut rx: BatchReceiver,
    store: &mut FileCheckpointStore,
    metrics: &Arc<SourceMetrics>,
    stop: &CancellationToken,
    mut clock: AckClock,
) -> Result<(), CaptureError> {
    let name = metrics.name.clone();
    let deadline = Instant::now() + timeouts::DRAIN;
    let mut queued = 0usize;
    if stop.is_cancelled() {
        let send_queued = async {
            while let Some((batch, _bytes)) = rx.try_recv() {
                sink.send(batch).await?;
                queued += 1;
            }
            Ok::<_, CaptureError>(())
        };
        if let Ok(sent) = tokio::time::timeout_at(deadline.into(), send_queued).await {
            sent?;
        }
    }
    let flushed = sink.flush(deadline.saturating_duration_since(Instant::now()));
    if let Some(cp) = sink.take_acknowledged()? {
        save(store, &cp, &name)?;
        metrics.checkpoint_saved(&cp);
    }
    // What is still unacknowledged keeps counting into the next run.
    clock.track(sink.in_flight(), metrics);
    if let Err(e) = flushed {
        tracing::warn!(
            source = %name, error = %e, unacknowledged_batches = sink.in_flight(), queued_sent = queued,
            drain = ?timeouts::DRAIN,
            "not everything was acknowledged in time; it is sent again from the checkpoint at the next start"
        );
    }
    Ok(())
}

/// When each batch still waiting for its acknowledgement was produced, oldest first, for the broker check of
/// `/health` ([`SourceMetrics::oldest_unacknowledged_ms`]). The sink releases batches in order, so after each call
/// that only adds batches (a send) or only releases them, the change in its count of batches in flight tells which.
///
/// A run that ends with batches unacknowledged or a broker call unanswered (the pipeline restarts after a broker
/// error) leaves that time behind; the next run carries it until the broker acknowledges something, so a broker
/// that stays frozen keeps `/health` at 503 across the restarts.
#[derive(Debug, Default)]
struct AckClock {
    sent_ms: VecDeque<i64>,
    /// Left by the previous run; dropped at the first acknowledgement of this one.
    carried_ms: Option<i64>,
}

impl AckClock {
    /// The clock of a new run of the writer.
    fn resume(metrics: &SourceMetrics) -> AckClock {
        let carried = metrics.oldest_unacknowledged_ms.load(Ordering::Relaxed);
        AckClock { sent_ms: VecDeque::new(), carried_ms: (carried > 0).then_some(carried) }
    }

    /// The broker delivered (or refused) a record: it answers.
    fn broker_answered(&mut self) {
        self.carried_ms = None;
    }

    /// Before a send: the batch waits from now on, also while the send itself waits for room in the producer's
    /// queue.
    fn sending(&self, metrics: &SourceMetrics) {
        let _ = metrics.oldest_unacknowledged_ms.compare_exchange(0, now_ms(), Ordering::Relaxed, Ordering::Relaxed);
    }

    /// After a call that added or released batches: `in_flight` batches wait now.
    fn track(&mut self, in_flight: usize, metrics: &SourceMetrics) {
        while self.sent_ms.len() > in_flight {
            self.sent_ms.pop_front();
        }
        let now = now_ms();
        self.sent_ms.resize(in_flight, now);
        let oldest = self.carried_ms.into_iter().chain(self.sent_ms.front().copied()).min().unwrap_or(0);
        metrics.oldest_unacknowledged_ms.store(oldest, Ordering::Relaxed);
        metrics.in_flight.store(in_flight as i64, Ordering::Relaxed);
    }
}

/// Updates `binlog_bytes_behind` and the binlog retention estimate (see [`crate::metrics`]) every 2 s from the
/// server's binlog files, expiry setting and clock, the reader's position and the checkpoint. Errors are left to the
/// reader, which owns reconnection: the gauges then keep their last values (the retention headroom counting down).
async fn monitor_binlog(
    pool: mysql_async::Pool,
    metrics: Arc<SourceMetrics>,
    retention_warning: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // A frozen server never answers: each look is bounded, and the shutdown does not wait for one.
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::timeout(timeouts::MYSQL_QUERY, look(&pool, &metrics, retention_warning)) => {}
        }
    }
}

/// One look of [`monitor_binlog`] at the server.
async fn look(pool: &mysql_async::Pool, metrics: &SourceMetrics, retention_warning: Duration) {
    use mysql_async::prelude::*;
    let Ok(mut conn) = pool.get_conn().await else { return };
    // The clock before the files: what SHOW BINARY LOGS shows was still true at that server time. The capture's
    // clock is read first, so the measured offset errs towards less headroom.
    let local_ms = now_ms();
    let server_ms = conn.query_first::<i64, _>(SERVER_CLOCK_MS).await.ok().flatten();
    let Ok(logs) = conn.query::<(String, u64), _>("SHOW BINARY LOGS").await else { return };
    let (file, pos) = metrics.position.lock().expect("position lock").clone();
    if !file.is_empty() {
        metrics.bytes_behind.store(bytes_behind(&logs, &file, pos) as i64, Ordering::Relaxed);
    }
    let Some(server_ms) = server_ms else { return };
    let Ok(variables) = conn.query::<(String, String), _>(EXPIRY_VARIABLES).await else { return };
    let expiry = expiry_period(&variables);
    let mut retention = metrics.retention.lock().expect("retention lock");
    let seen = &mut retention.seen_active_ms;
    seen.retain(|f, _| logs.iter().any(|(l, _)| l == f));
    if let Some((active, _)) = logs.last() {
        seen.insert(active.clone(), server_ms);
    }
    if retention.needed_file.is_empty() {
        return;
    }
    let open_at_ms = open_at(&retention.needed_file, retention.needed_open_at_ms, &retention.seen_active_ms);
    let purge = purge_time(&logs, expiry, &retention.needed_file, open_at_ms, server_ms - local_ms);
    let file = retention.needed_file.clone();
    retention.estimate = Some(RetentionEstimate { file, expiry, purge, warning: retention_warning });
}

/// The server's clock in ms since the epoch.
const SERVER_CLOCK_MS: &str = "SELECT CAST(FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000) AS SIGNED)";

/// The settings that decide when the server purges binlog files by age; a server lacks some (MySQL 8.4 has no
/// `expire_logs_days`, MariaDB no `binlog_expire_logs_auto_purge`, MariaDB before 10.6 no
/// `binlog_expire_logs_seconds`), and SHOW VARIABLES then leaves them out instead of failing.
const EXPIRY_VARIABLES: &str = "SHOW GLOBAL VARIABLES WHERE Variable_name IN \
     ('binlog_expire_logs_seconds', 'expire_logs_days', 'binlog_expire_logs_auto_purge')";

/// The server's expiry period from [`EXPIRY_VARIABLES`]; zero when it does not purge by age.
///
/// `binlog_expire_logs_seconds` wins when non-zero: MariaDB 10.6+ keeps the two linked (one is the other converted),
/// MySQL 8 ignores `expire_logs_days` then (its first releases added the two: the seconds alone still bound it from
/// below). Otherwise `expire_logs_days` (fractional on MariaDB), rounded down. MySQL 8.0.29+ does not purge by age at
/// all with `binlog_expire_logs_auto_purge` OFF.
fn expiry_period(variables: &[(String, String)]) -> Duration {
    let value = |name: &str| variables.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim());
    if value("binlog_expire_logs_auto_purge").is_some_and(|v| v.eq_ignore_ascii_case("OFF") || v == "0") {
        return Duration::ZERO;
    }
    let seconds = value("binlog_expire_logs_seconds").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    if seconds > 0 {
        return Duration::from_secs(seconds);
    }
    let days = value("expire_logs_days").and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    if days.is_finite() && days > 0.0 {
        Duration::from_secs((days * 86_400.0) as u64)
    } else {
        Duration::ZERO
    }
}

/// The latest server time (ms) at which binlog file `needed` was certainly still open, 0 when nothing shows one:
/// `checkpoint_ms` (a commit time before the checkpoint, see [`crate::metrics::Retention::needed_open_at_ms`]), or
/// the last time the monitor saw it, or an earlier file, as the server's active file.
fn open_at(needed: &str, checkpoint_ms: i64, seen_active_ms: &HashMap<String, i64>) -> i64 {
    let needed_seq = file_seq(needed);
    seen_active_ms
        .iter()
        .filter(|(file, _)| {
            file.as_str() == needed || matches!((file_seq(file), needed_seq), (Some(f), Some(n)) if f < n)
        })
        .map(|(_, &ms)| ms)
        .fold(checkpoint_ms.max(0), i64::max)
}

/// The numeric suffix of a binlog file name, which orders the files of one server.
fn file_seq(file: &str) -> Option<u64> {
    file.rsplit('.').next()?.parse().ok()
}

/// When the server may purge binlog file `needed`, given its files (SHOW BINARY LOGS), its expiry period, a server
/// time `open_at_ms` at which the file was still open (0 if unknown), and the offset of the server's clock from the
/// capture's (`server - capture`, ms). A file is purged once it is older than the expiry period, counted from its
/// last write, which is at or after `open_at_ms`.
fn purge_time(logs: &[(String, u64)], expiry: Duration, needed: &str, open_at_ms: i64, offset_ms: i64) -> Purge {
    if !logs.iter().any(|(file, _)| file == needed) {
        Purge::Purged
    } else if expiry.is_zero() {
        Purge::Never
    } else if open_at_ms <= 0 {
        Purge::Unknown
    } else {
        let expiry_ms = i64::try_from(expiry.as_millis()).unwrap_or(i64::MAX);
        Purge::NotBefore(open_at_ms.saturating_add(expiry_ms).saturating_sub(offset_ms))
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
    fn the_ack_clock_keeps_the_send_time_of_the_oldest_batch_in_flight() {
        let metrics = crate::metrics::Metrics::new().source("orders");
        let oldest = |m: &SourceMetrics| m.oldest_unacknowledged_ms.load(Ordering::Relaxed);
        let mut clock = AckClock::default();
        clock.track(0, &metrics);
        assert_eq!(oldest(&metrics), 0, "nothing in flight");
        clock.sending(&metrics);
        let first = oldest(&metrics);
        assert!(first > 0, "a send that waits for room already counts");
        clock.track(2, &metrics);
        assert_eq!(clock.sent_ms.len(), 2);
        clock.sent_ms[1] = first + 1_000; // the second batch was sent later
        clock.sending(&metrics);
        assert_eq!(oldest(&metrics), first, "a later send does not make the oldest younger");
        clock.track(3, &metrics);
        clock.track(2, &metrics); // the first batch is released
        assert_eq!(oldest(&metrics), first + 1_000);
        clock.track(0, &metrics);
        assert_eq!((oldest(&metrics), metrics.in_flight.load(Ordering::Relaxed)), (0, 0));
    }

    #[test]
    fn a_run_that_ended_waiting_for_the_broker_carries_that_time_until_the_broker_answers() {
        let metrics = crate::metrics::Metrics::new().source("orders");
        let oldest = |m: &SourceMetrics| m.oldest_unacknowledged_ms.load(Ordering::Relaxed);
        let first = AckClock::resume(&metrics);
        first.sending(&metrics); // e.g. a metadata request that fails after its timeout
        let since = oldest(&metrics);
        drop(first); // the run ends with the broker's error
        let mut next = AckClock::resume(&metrics);
        next.track(0, &metrics);
        assert_eq!(oldest(&metrics), since, "nothing in flight yet, but the broker has not answered since");
        next.track(1, &metrics);
        assert_eq!(oldest(&metrics), since);
        next.broker_answered();
        next.track(0, &metrics);
        assert_eq!(oldest(&metrics), 0);
        assert_eq!(AckClock::resume(&metrics).carried_ms, None, "a run that ended with everything acknowledged");
    }

    #[test]
    fn bytes_behind_counts_the_rest_of_the_file_and_newer_files() {
        let logs = vec![("binlog.000001".to_string(), 1000), ("binlog.000002".into(), 500), ("binlog.000003".into(), 300)];
        assert_eq!(bytes_behind(&logs, "binlog.000002", 200), 300 + 300);
        assert_eq!(bytes_behind(&logs, "binlog.000003", 300), 0);
    }

    const HOUR_MS: i64 = 3_600_000;
    const EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

    fn logs() -> Vec<(String, u64)> {
        vec![("binlog.000002".to_string(), 1000), ("binlog.000003".into(), 500), ("binlog.000004".into(), 300)]
    }

    #[test]
    fn the_active_file_keeps_the_full_expiry_from_when_it_was_last_seen_active() {
        let now = 100 * HOUR_MS;
        let seen = HashMap::from([("binlog.000004".to_string(), now)]);
        let open = open_at("binlog.000004", now - 48 * HOUR_MS, &seen);
        assert_eq!(open, now, "seen active just now: newer than the checkpoint's commit");
        let purge = purge_time(&logs(), EXPIRY, "binlog.000004", open, 0);
        assert_eq!(purge, Purge::NotBefore(now + 7 * 24 * HOUR_MS));
    }

    #[test]
    fn an_older_file_counts_from_the_checkpoints_commit_time() {
        let now = 500 * HOUR_MS;
        // The monitor never saw binlog.000003 active (the capture started after it was closed).
        let seen = HashMap::from([("binlog.000004".to_string(), now)]);
        let open = open_at("binlog.000003", now - 2 * HOUR_MS, &seen);
        assert_eq!(open, now - 2 * HOUR_MS);
        let purge = purge_time(&logs(), Duration::from_secs(3 * 3600), "binlog.000003", open, 0);
        assert_eq!(purge, Purge::NotBefore(now + HOUR_MS), "3 h expiry - 2 h since the commit = 1 h");
        // The server's clock runs 10 s ahead of the capture's: the file goes 10 s earlier by the capture's clock.
        let skewed = purge_time(&logs(), Duration::from_secs(3 * 3600), "binlog.000003", open, 10_000);
        assert_eq!(skewed, Purge::NotBefore(now + HOUR_MS - 10_000));
    }

    #[test]
    fn a_file_seen_active_or_after_an_earlier_active_file_was_open_then() {
        let seen = HashMap::from([
            ("binlog.000002".to_string(), 10 * HOUR_MS),
            ("binlog.000003".to_string(), 20 * HOUR_MS),
            ("binlog.000004".to_string(), 30 * HOUR_MS),
        ]);
        assert_eq!(open_at("binlog.000003", 5 * HOUR_MS, &seen), 20 * HOUR_MS, "seen active itself");
        assert_eq!(open_at("binlog.000003", 25 * HOUR_MS, &seen), 25 * HOUR_MS, "a later commit in it");
        let earlier_only = HashMap::from([("binlog.000002".to_string(), 10 * HOUR_MS)]);
        assert_eq!(open_at("binlog.000003", 0, &earlier_only), 10 * HOUR_MS, "created after .000002 was active");
        let later_only = HashMap::from([("binlog.000004".to_string(), 30 * HOUR_MS)]);
        assert_eq!(open_at("binlog.000003", 0, &later_only), 0, "a later active file proves nothing");
    }

    #[test]
    fn a_closed_file_with_no_evidence_may_go_at_the_next_rotation() {
        assert_eq!(purge_time(&logs(), EXPIRY, "binlog.000003", 0, 0), Purge::Unknown);
    }

    #[test]
    fn a_file_the_server_no_longer_lists_is_purged_whatever_the_expiry() {
        assert_eq!(purge_time(&logs(), EXPIRY, "binlog.000001", HOUR_MS, 0), Purge::Purged);
        assert_eq!(purge_time(&logs(), Duration::ZERO, "binlog.000001", HOUR_MS, 0), Purge::Purged);
    }

    #[test]
    fn expiry_zero_never_purges() {
        assert_eq!(purge_time(&logs(), Duration::ZERO, "binlog.000003", 0, 0), Purge::Never);
        assert_eq!(purge_time(&logs(), Duration::ZERO, "binlog.000004", HOUR_MS, 0), Purge::Never);
    }

    #[test]
    fn a_long_gone_deadline_stays_a_deadline_that_the_headroom_clamps_at_zero() {
        let purge = purge_time(&logs(), Duration::from_secs(3600), "binlog.000002", HOUR_MS, 0);
        assert_eq!(purge, Purge::NotBefore(2 * HOUR_MS));
        let estimate = RetentionEstimate {
            file: "binlog.000002".into(),
            expiry: Duration::from_secs(3600),
            purge,
            warning: Duration::from_secs(3600),
        };
        assert_eq!(estimate.headroom_seconds(50 * HOUR_MS), 0.0);
    }

    #[test]
    fn the_expiry_period_follows_each_servers_variables() {
        let vars = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
        };
        let cases = [
            // MariaDB 10.11: both, linked.
            (vars(&[("binlog_expire_logs_seconds", "604800"), ("expire_logs_days", "7.000000")]), 604_800),
            // MariaDB 10.5: days only, fractional.
            (vars(&[("expire_logs_days", "0.500000")]), 43_200),
            (vars(&[("expire_logs_days", "0")]), 0),
            // MySQL 8.0 with expire_logs_days set at startup: seconds 0, days used.
            (vars(&[("binlog_expire_logs_seconds", "0"), ("expire_logs_days", "2")]), 172_800),
            // MySQL 8.4: seconds only; automatic purging off means never.
            (vars(&[("binlog_expire_logs_seconds", "2592000"), ("binlog_expire_logs_auto_purge", "ON")]), 2_592_000),
            (vars(&[("binlog_expire_logs_seconds", "2592000"), ("binlog_expire_logs_auto_purge", "OFF")]), 0),
            (vars(&[]), 0),
        ];
        for (variables, seconds) in cases {
            assert_eq!(expiry_period(&variables), Duration::from_secs(seconds), "{variables:?}");
        }
    }
}
