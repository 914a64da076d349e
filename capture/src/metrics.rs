//! Prometheus metrics of the capture. Names are the constants below; values that depend on the time of the scrape
//! (lag, checkpoint age, binlog retention headroom) are computed when `/metrics` is read, so they never go stale.
//!
//! # Binlog retention headroom
//!
//! The server deletes binlog files older than its expiry period (`binlog_expire_logs_seconds`, or `expire_logs_days`
//! on older MariaDB) when it rotates to a new file; a file's age is counted from when it was closed. If it deletes the
//! file the checkpoint still needs, the source cannot resume without a new snapshot. The headroom is how long that
//! cannot happen, as a lower bound, never more than there is: the file was certainly still open at the commit time
//! of the last transaction before the checkpoint (server clock, from the binlog; see [`Retention`]) and whenever the
//! pipeline's binlog monitor saw it as the server's active file, so it cannot be purged before the latest of those
//! times plus the expiry period. The monitor turns that into a time of the capture's own clock (correcting for the
//! offset between the clocks, measured each look); the headroom is that time minus now, counted down between looks.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cdc_contract::Op;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::checkpoint::Checkpoint;
use crate::position::BinlogPosition;
use crate::transform::now_ms;

/// Seconds between the newest change the capture has published and now; near 0 while an idle source sends
/// heartbeats, growing while the capture falls behind or is cut off.
pub const LAG_SECONDS: &str = "cdc_capture_lag_seconds";
/// Bytes of binlog between the capture's position and the server's end.
pub const BINLOG_BYTES_BEHIND: &str = "cdc_capture_binlog_bytes_behind";
/// Change events produced, by table and operation.
pub const EVENTS: &str = "cdc_capture_events";
/// Batches waiting between the binlog reader and the producer.
pub const QUEUE_DEPTH: &str = "cdc_capture_queue_depth";
/// Bytes of records (keys plus values) queued between the reader and the producer (see [`crate::queue`]).
pub const QUEUE_BYTES: &str = "cdc_capture_queue_bytes";
/// Records larger than `message.max.bytes` published with values replaced by a marker, by table.
pub const OVERSIZED_RECORDS: &str = "cdc_capture_oversized_records";
/// Batches produced and not yet acknowledged.
pub const IN_FLIGHT: &str = "cdc_capture_in_flight_batches";
/// Seconds since the checkpoint was last saved.
pub const CHECKPOINT_AGE_SECONDS: &str = "cdc_capture_checkpoint_age_seconds";
/// Seconds before the server may purge the binlog file the checkpoint needs, a lower bound (see the module doc):
/// +Inf when the server never purges by age, 0 when the file is gone or may go at the next rotation.
pub const BINLOG_RETENTION_HEADROOM_SECONDS: &str = "cdc_capture_binlog_retention_headroom_seconds";
/// Rows emitted by snapshots.
pub const SNAPSHOT_ROWS: &str = "cdc_capture_snapshot_rows";
/// 1 while the source streams or snapshots and the broker acknowledges (as `/health` says), 0 otherwise.
pub const UP: &str = "cdc_capture_up";
/// 1 once the source has stopped with a definite error (the process keeps running its other sources), else 0.
pub const SOURCE_FAILED: &str = "cdc_capture_source_failed";
/// Seconds since the oldest batch still waiting for the broker's acknowledgement was produced; 0 when none waits.
pub const OLDEST_UNACKNOWLEDGED_SECONDS: &str = "cdc_capture_oldest_unacknowledged_seconds";
/// 1 while an operator has paused the source (`capture pause`), else 0.
pub const SOURCE_PAUSED: &str = "cdc_capture_source_paused";
/// Row changes written as statements on captured tables that were skipped (`statement_dml = "skip"`).
pub const SKIPPED_STATEMENTS: &str = "cdc_capture_skipped_statements";
/// Rows emitted as reads by incremental snapshots (`capture resnapshot`), by table.
pub const RESNAPSHOT_ROWS: &str = "cdc_capture_resnapshot_rows";
/// 1 while an incremental snapshot of the table runs (chunks remain), 0 once it is done or abandoned.
pub const RESNAPSHOT_ACTIVE: &str = "cdc_capture_resnapshot_active";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    source: String,
    table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    source: String,
    table: String,
    op: String,
}

/// The registry and the metric families of all sources.
pub struct Metrics {
    registry: Mutex<Registry>,
    lag: Family<SourceLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    bytes_behind: Family<SourceLabel, Gauge>,
    events: Family<EventLabels, Counter>,
    queue_depth: Family<SourceLabel, Gauge>,
    queue_bytes: Family<SourceLabel, Gauge>,
    oversized: Family<TableLabels, Counter>,
    in_flight: Family<SourceLabel, Gauge>,
    checkpoint_age: Family<SourceLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    retention_headroom: Family<SourceLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    snapshot_rows: Family<SourceLabel, Counter>,
    up: Family<SourceLabel, Gauge>,
    failed: Family<SourceLabel, Gauge>,
    paused: Family<SourceLabel, Gauge>,
    oldest_unacknowledged: Family<SourceLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    skipped_statements: Family<SourceLabel, Counter>,
    resnapshot_rows: Family<TableLabels, Counter>,
    resnapshot_active: Family<TableLabels, Gauge>,
    sources: Mutex<Vec<Arc<SourceMetrics>>>,
}

/// What a source is doing, for `/health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceState {
    /// Connecting and checking the server.
    Starting,
    /// Emitting existing rows.
    Snapshotting,
    /// Following the binlog.
    Streaming,
    /// Waiting to retry after a transient error.
    Retrying(String),
    /// Stopped by a definite error.
    Failed(String),
    /// Paused by an operator (`capture pause`), with who, since when and why: reads nothing, holds no connection to
    /// the server, publishes no heartbeats. Not a problem for `/health`.
    Paused(String),
}

impl fmt::Display for SourceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceState::Starting => f.write_str("starting"),
            SourceState::Snapshotting => f.write_str("snapshotting"),
            SourceState::Streaming => f.write_str("streaming"),
            SourceState::Retrying(e) => write!(f, "retrying: {e}"),
            SourceState::Failed(e) => write!(f, "failed: {e}"),
            SourceState::Paused(by) => write!(f, "paused {by}"),
        }
    }
}

/// The live state of one source, updated by its tasks.
pub struct SourceMetrics {
    /// Source name (label).
    pub name: String,
    label: SourceLabel,
    events: Family<EventLabels, Counter>,
    /// Counter handles per (table, op), so counting does not allocate labels per event.
    counters: Mutex<HashMap<(Arc<str>, Op), Counter>>,
    snapshot_rows: Counter,
    /// See [`SKIPPED_STATEMENTS`].
    pub skipped_statements: Counter,
    oversized: Family<TableLabels, Counter>,
    /// Commit time of the newest published transaction, ms.
    last_commit_ms: AtomicI64,
    /// Wall clock of the newest heartbeat received while caught up, ms.
    caught_up_ms: AtomicI64,
    /// Wall clock of the last checkpoint save, ms.
    checkpoint_saved_ms: AtomicI64,
    /// See [`BINLOG_BYTES_BEHIND`].
    pub bytes_behind: AtomicI64,
    /// See [`QUEUE_DEPTH`].
    pub queue_depth: AtomicI64,
    /// See [`QUEUE_BYTES`].
    pub queue_bytes: AtomicI64,
    /// See [`IN_FLIGHT`].
    pub in_flight: AtomicI64,
    /// Wall clock (ms) at which the oldest batch still waiting for its acknowledgement was produced; 0 when none
    /// waits. Set by the writer, read by `/health` (see [`crate::timeouts::BROKER_ACK`]).
    pub oldest_unacknowledged_ms: AtomicI64,
    /// The reader's binlog position (file, offset).
    pub position: Mutex<(String, u64)>,
    /// What is known about the binlog file the checkpoint needs; see [`Retention`].
    pub retention: Mutex<Retention>,
    state: Mutex<SourceState>,
    resnapshot_rows: Family<TableLabels, Counter>,
    resnapshot_active: Family<TableLabels, Gauge>,
    /// Requests and progress of incremental snapshots (see [`crate::resnapshot`]).
    pub resnapshot: crate::resnapshot_control::Control,
}

/// What the capture knows about how long the server keeps the binlog file its checkpoint needs. The checkpoint side
/// is set by [`SourceMetrics::checkpoint_loaded`] and [`SourceMetrics::checkpoint_saved`], the server side by the
/// pipeline's binlog monitor, which also sets the estimate.
#[derive(Debug, Default)]
pub struct Retention {
    /// The binlog file of the newest checkpoint; empty before one was loaded or saved.
    pub needed_file: String,
    /// A server time (ms since the epoch) at which `needed_file` was certainly still open: the newest commit time of
    /// a transaction before a checkpoint's position, written to that file or an earlier one (so the file was not yet
    /// closed then). 0 while no checkpoint proved one (heartbeats before the first commit after a start carry 0);
    /// see [`Retention::checkpoint`].
    pub needed_open_at_ms: i64,
    /// Position of the last snapshot checkpoint seen: the checkpoint that completes a snapshot keeps it.
    snapshot_position: Option<BinlogPosition>,
    /// Whether this process saved a checkpoint of the source yet.
    saved: bool,
    /// Server time (ms) at which the monitor last saw each binlog file as the server's active (last) one, for files
    /// the server still lists. Kept here so that it survives the pipeline's reconnections.
    pub seen_active_ms: HashMap<String, i64>,
    /// The monitor's latest estimate; `None` before its first look with a checkpoint.
    pub estimate: Option<RetentionEstimate>,
}

/// When the server may purge the binlog file the checkpoint needs, from the monitor's latest look at the server.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionEstimate {
    /// The file.
    pub file: String,
    /// The server's expiry period; zero when it does not purge by age.
    pub expiry: Duration,
    /// When the file may be purged.
    pub purge: Purge,
    /// `retention_warning`: `/health` warns while the headroom is below it.
    pub warning: Duration,
}

/// When a binlog file may be purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purge {
    /// Never by age: the expiry period is 0 (or MySQL's `binlog_expire_logs_auto_purge` is OFF).
    Never,
    /// Not before this time of the capture's clock (ms since the epoch).
    NotBefore(i64),
    /// At the next rotation, as far as the capture can tell: the file is closed and nothing shows since when.
    Unknown,
    /// Already: the server no longer lists it.
    Purged,
}

impl RetentionEstimate {
    /// The headroom at `now_ms` in seconds: +Inf, or never below 0.
    pub fn headroom_seconds(&self, now_ms: i64) -> f64 {
        match self.purge {
            Purge::Never => f64::INFINITY,
            Purge::NotBefore(at) => (at - now_ms).max(0) as f64 / 1000.0,
            Purge::Unknown | Purge::Purged => 0.0,
        }
    }

    /// The `/health` warning of source `name` at `now_ms`, if one is due.
    pub fn warning(&self, name: &str, now_ms: i64) -> Option<String> {
        let file = &self.file;
        let expiry = whole_seconds(self.expiry.as_secs_f64());
        match self.purge {
            Purge::Never => None,
            Purge::Purged => Some(format!(
                "source {name}: binlog file {file}, which the checkpoint needs, is no longer on the server: the source \
                 cannot resume from this checkpoint, and unless the reader got past that file before it went, changes \
                 since the checkpoint are lost to the binlog (re-snapshot)"
            )),
            Purge::Unknown => Some(format!(
                "source {name}: binlog retention headroom unknown, reported as 0: {file}, which the checkpoint still \
                 needs, was closed at a time the capture cannot tell, so the server may purge it at its next rotation \
                 (expiry {expiry}); let the capture catch up so that it saves a newer checkpoint"
            )),
            Purge::NotBefore(_) => {
                let headroom = self.headroom_seconds(now_ms);
                (headroom < self.warning.as_secs_f64()).then(|| {
                    format!(
                        "source {name}: binlog retention headroom {} is below retention_warning {}: the server may \
                         purge {file}, which the checkpoint still needs, from then on (expiry {expiry}), and the \
                         source could then only resume with a new snapshot; let the capture catch up (see its lag \
                         and the broker) or raise the server's binlog_expire_logs_seconds",
                        whole_seconds(headroom),
                        humantime_serde::re::humantime::format_duration(self.warning),
                    )
                })
            }
        }
    }
}

/// `seconds` as a human duration, rounded down to whole seconds.
fn whole_seconds(seconds: f64) -> String {
    humantime_serde::re::humantime::format_duration(Duration::from_secs(seconds as u64)).to_string()
}

impl Metrics {
    /// An empty registry with every family registered.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            lag: Family::default(),
            bytes_behind: Family::default(),
            events: Family::default(),
            queue_depth: Family::default(),
            queue_bytes: Family::default(),
            oversized: Family::default(),
            in_flight: Family::default(),
            checkpoint_age: Family::default(),
            retention_headroom: Family::default(),
            snapshot_rows: Family::default(),
            up: Family::default(),
            failed: Family::default(),
            paused: Family::default(),
            oldest_unacknowledged: Family::default(),
            skipped_statements: Family::default(),
            resnapshot_rows: Family::default(),
            resnapshot_active: Family::default(),
            sources: Mutex::new(Vec::new()),
        };
        registry.register(LAG_SECONDS, "Seconds behind the newest committed change of the source", m.lag.clone());
        registry.register(BINLOG_BYTES_BEHIND, "Binlog bytes not yet read", m.bytes_behind.clone());
        registry.register(EVENTS, "Change events produced", m.events.clone());
        registry.register(QUEUE_DEPTH, "Batches queued between reader and producer", m.queue_depth.clone());
        registry.register(QUEUE_BYTES, "Bytes of records queued between reader and producer", m.queue_bytes.clone());
        registry.register(
            OVERSIZED_RECORDS,
            "Records over message.max.bytes published with values replaced by a marker",
            m.oversized.clone(),
        );
        registry.register(IN_FLIGHT, "Batches produced, not yet acknowledged", m.in_flight.clone());
        registry.register(CHECKPOINT_AGE_SECONDS, "Seconds since the last checkpoint save", m.checkpoint_age.clone());
        registry.register(
            BINLOG_RETENTION_HEADROOM_SECONDS,
            "Seconds at least before the server may purge the binlog file the checkpoint needs",
            m.retention_headroom.clone(),
        );
        registry.register(SNAPSHOT_ROWS, "Rows emitted by snapshots", m.snapshot_rows.clone());
        registry.register(UP, "1 while the source streams or snapshots and the broker acknowledges", m.up.clone());
        registry.register(SOURCE_FAILED, "1 once the source stopped with a definite error", m.failed.clone());
        registry.register(SOURCE_PAUSED, "1 while an operator has paused the source", m.paused.clone());
        registry.register(
            OLDEST_UNACKNOWLEDGED_SECONDS,
            "Seconds the oldest batch has waited for the broker's acknowledgement",
            m.oldest_unacknowledged.clone(),
        );
        registry.register(
            SKIPPED_STATEMENTS,
            "Row changes written as statements on captured tables, skipped",
            m.skipped_statements.clone(),
        );
        registry.register(RESNAPSHOT_ROWS, "Rows emitted by incremental snapshots", m.resnapshot_rows.clone());
        registry.register(RESNAPSHOT_ACTIVE, "1 while an incremental snapshot of the table runs", m.resnapshot_active.clone());
        *m.registry.lock().expect("registry lock") = registry;
        Arc::new(m)
    }

    /// Registers a source.
    pub fn source(&self, name: &str) -> Arc<SourceMetrics> {
        let label = SourceLabel { source: name.to_owned() };
        let now = now_ms();
        let s = Arc::new(SourceMetrics {
            name: name.to_owned(),
            events: self.events.clone(),
            counters: Mutex::new(HashMap::new()),
            snapshot_rows: self.snapshot_rows.get_or_create(&label).clone(),
            skipped_statements: self.skipped_statements.get_or_create(&label).clone(),
            oversized: self.oversized.clone(),
            label,
            last_commit_ms: AtomicI64::new(0),
            caught_up_ms: AtomicI64::new(0),
            checkpoint_saved_ms: AtomicI64::new(now),
            bytes_behind: AtomicI64::new(0),
            queue_depth: AtomicI64::new(0),
            queue_bytes: AtomicI64::new(0),
            in_flight: AtomicI64::new(0),
            oldest_unacknowledged_ms: AtomicI64::new(0),
            position: Mutex::new((String::new(), 0)),
            retention: Mutex::new(Retention::default()),
            state: Mutex::new(SourceState::Starting),
            resnapshot_rows: self.resnapshot_rows.clone(),
            resnapshot_active: self.resnapshot_active.clone(),
            resnapshot: Default::default(),
        });
        self.sources.lock().expect("sources lock").push(s.clone());
        s
    }

    /// The sources.
    pub fn sources(&self) -> Vec<Arc<SourceMetrics>> {
        self.sources.lock().expect("sources lock").clone()
    }

    /// The text exposition, with time-dependent values computed now.
    pub fn render(&self) -> String {
        let now = now_ms();
        for s in self.sources() {
            self.lag.get_or_create(&s.label).set(s.lag_seconds(now));
            self.bytes_behind.get_or_create(&s.label).set(s.bytes_behind.load(Ordering::Relaxed));
            self.queue_depth.get_or_create(&s.label).set(s.queue_depth.load(Ordering::Relaxed));
            self.in_flight.get_or_create(&s.label).set(s.in_flight.load(Ordering::Relaxed));
            self.queue_bytes.get_or_create(&s.label).set(s.queue_bytes.load(Ordering::Relaxed));
            self.checkpoint_age.get_or_create(&s.label).set(s.checkpoint_age_seconds(now));
            // No sample before the first estimate: nothing is known yet (no checkpoint, or no look at the server).
            if let Some(headroom) = s.retention_headroom_seconds(now) {
                self.retention_headroom.get_or_create(&s.label).set(headroom);
            }
            self.up.get_or_create(&s.label).set(s.problem(now).is_none() as i64);
            self.failed.get_or_create(&s.label).set(matches!(s.state(), SourceState::Failed(_)) as i64);
            self.paused.get_or_create(&s.label).set(matches!(s.state(), SourceState::Paused(_)) as i64);
            self.oldest_unacknowledged.get_or_create(&s.label).set(s.unacknowledged_for(now).as_secs_f64());
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry.lock().expect("registry lock"))
            .expect("writing to a String cannot fail");
        // The encoder spells infinity `inf`, which Prometheus parses; `+Inf` is the exposition format's own spelling.
        out.replace(" inf\n", " +Inf\n")
    }
}

impl SourceMetrics {
    /// Counts one produced change event.
    pub fn count_event(&self, table: &Arc<str>, op: Op) {
        let mut counters = self.counters.lock().expect("counters lock");
        let counter = counters.entry((table.clone(), op)).or_insert_with(|| {
            let labels =
                EventLabels { source: self.name.clone(), table: table.to_string(), op: op.code().to_owned() };
            self.events.get_or_create(&labels).clone()
        });
        counter.inc();
    }

    /// Counts a record of `table` published with values replaced by a marker.
    pub fn count_oversized(&self, table: &str) {
        self.oversized.get_or_create(&TableLabels { source: self.name.clone(), table: table.to_owned() }).inc();
    }

    /// Counts snapshot rows.
    pub fn count_snapshot_rows(&self, n: u64) {
        self.snapshot_rows.inc_by(n);
    }

    /// Counts rows an incremental snapshot of `table` emitted.
    pub fn count_resnapshot_rows(&self, table: &str, n: u64) {
        self.resnapshot_rows.get_or_create(&TableLabels { source: self.name.clone(), table: table.to_owned() }).inc_by(n);
    }

    /// Whether an incremental snapshot of `table` runs.
    pub fn resnapshot_active(&self, table: &str, active: bool) {
        let labels = TableLabels { source: self.name.clone(), table: table.to_owned() };
        self.resnapshot_active.get_or_create(&labels).set(active as i64);
    }

    /// Records the commit time of a published transaction.
    pub fn committed(&self, ts_ms: i64) {
        self.last_commit_ms.fetch_max(ts_ms, Ordering::Relaxed);
    }

    /// Records that the server reported the capture caught up (a heartbeat), now.
    pub fn caught_up(&self) {
        self.caught_up_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Records a checkpoint save, now, and the binlog file it needs.
    pub fn checkpoint_saved(&self, checkpoint: &Checkpoint) {
        self.checkpoint_saved_ms.store(now_ms(), Ordering::Relaxed);
        self.retention.lock().expect("retention lock").checkpoint(checkpoint, true);
    }

    /// Records the checkpoint a run starts from (if any): until the next save, its binlog file is the one needed.
    pub fn checkpoint_loaded(&self, checkpoint: Option<&Checkpoint>) {
        if let Some(checkpoint) = checkpoint {
            self.retention.lock().expect("retention lock").checkpoint(checkpoint, false);
        }
    }

    /// The binlog retention headroom at `now_ms` in seconds; `None` while unknown.
    pub fn retention_headroom_seconds(&self, now_ms: i64) -> Option<f64> {
        let retention = self.retention.lock().expect("retention lock");
        retention.estimate.as_ref().map(|e| e.headroom_seconds(now_ms))
    }

    /// The `/health` warning about binlog retention at `now_ms`, if one is due.
    pub fn retention_warning(&self, now_ms: i64) -> Option<String> {
        let retention = self.retention.lock().expect("retention lock");
        retention.estimate.as_ref().and_then(|e| e.warning(&self.name, now_ms))
    }

    /// Lag in seconds at `now_ms`: since the newest of the last published commit and the last caught-up
    /// heartbeat. 0 before anything was seen is not claimed: the lag then counts from the start.
    pub fn lag_seconds(&self, now_ms: i64) -> f64 {
        let newest = self.last_commit_ms.load(Ordering::Relaxed).max(self.caught_up_ms.load(Ordering::Relaxed));
        let newest = if newest == 0 { self.checkpoint_saved_ms.load(Ordering::Relaxed) } else { newest };
        (now_ms - newest).max(0) as f64 / 1000.0
    }

    /// Seconds since the checkpoint was last saved (or since the source was registered), at `now_ms`.
    pub fn checkpoint_age_seconds(&self, now_ms: i64) -> f64 {
        (now_ms - self.checkpoint_saved_ms.load(Ordering::Relaxed)).max(0) as f64 / 1000.0
    }

    /// Change events produced since the start, all tables and operations.
    pub fn events_total(&self) -> u64 {
        self.counters.lock().expect("counters lock").values().map(Counter::get).sum()
    }

    /// Sets the state.
    pub fn set_state(&self, state: SourceState) {
        *self.state.lock().expect("state lock") = state;
    }

    /// The state.
    pub fn state(&self) -> SourceState {
        self.state.lock().expect("state lock").clone()
    }

    /// How long the oldest batch has waited for the broker's acknowledgement at `now_ms`; zero when none waits.
    pub fn unacknowledged_for(&self, now_ms: i64) -> Duration {
        match self.oldest_unacknowledged_ms.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            since => Duration::from_millis((now_ms - since).max(0) as u64),
        }
    }

    /// Why the source is not healthy at `now_ms`, for `/health` (503) and [`UP`]: it is not streaming or
    /// snapshotting, or the broker has not acknowledged its oldest batch for [`crate::timeouts::BROKER_ACK`].
    pub fn problem(&self, now_ms: i64) -> Option<String> {
        match self.state() {
            SourceState::Streaming | SourceState::Snapshotting => {
                let waiting = self.unacknowledged_for(now_ms);
                (waiting > crate::timeouts::BROKER_ACK)
                    .then(|| format!("broker not acknowledging for {} s", waiting.as_secs()))
            }
            SourceState::Paused(_) => None,
            other => Some(other.to_string()),
        }
    }
}

impl Retention {
    /// Takes the binlog file a checkpoint needs (`saved` by this process, or loaded at a start), and what its
    /// `ts_ms` proves about when that file was open.
    ///
    /// Snapshot checkpoints carry the capture's clock at the start of the snapshot run, not a binlog time, and a
    /// resumed snapshot keeps the first run's position, possibly in a file closed long before: their `ts_ms` proves
    /// nothing. The checkpoint that completes a snapshot has no snapshot progress but keeps that position and
    /// `ts_ms`, so it is recognised by the position, unless this process did not see the snapshot: a checkpoint
    /// loaded at the start of the process is trusted only until the first save replaces what it proved.
    ///
    /// After that, the checkpoints this process saves only move forward: each one's file is the same as the last
    /// one's or a later one, closed no earlier, so what an earlier one proved still holds and the newer time is
    /// kept. A checkpoint loaded when the pipeline restarts within the process is the last one saved.
    fn checkpoint(&mut self, checkpoint: &Checkpoint, saved: bool) {
        let from_snapshot =
            checkpoint.snapshot.is_some() || self.snapshot_position.as_ref() == Some(&checkpoint.position);
        if checkpoint.snapshot.is_some() {
            self.snapshot_position = Some(checkpoint.position.clone());
        }
        self.needed_file.clone_from(&checkpoint.position.file);
        let proved = if from_snapshot { 0 } else { checkpoint.ts_ms.max(0) };
        if self.saved {
            self.needed_open_at_ms = self.needed_open_at_ms.max(proved);
        } else {
            // Nothing saved by this process yet: a loaded checkpoint, or the first save, which replaces it.
            self.needed_open_at_ms = proved;
        }
        self.saved |= saved;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::SnapshotProgress;
    use crate::position::GtidSet;

    fn estimate(purge: Purge) -> RetentionEstimate {
        RetentionEstimate {
            file: "binlog.000003".into(),
            expiry: Duration::from_secs(7200),
            purge,
            warning: Duration::from_secs(3600),
        }
    }

    #[test]
    fn headroom_counts_down_to_zero_and_never_below() {
        let now = 1_000_000;
        assert_eq!(estimate(Purge::NotBefore(now + 2_400_500)).headroom_seconds(now), 2400.5);
        assert_eq!(estimate(Purge::NotBefore(now - 5_000)).headroom_seconds(now), 0.0, "clamped at 0");
        assert_eq!(estimate(Purge::Never).headroom_seconds(now), f64::INFINITY);
        assert_eq!(estimate(Purge::Unknown).headroom_seconds(now), 0.0);
        assert_eq!(estimate(Purge::Purged).headroom_seconds(now), 0.0);
    }

    #[test]
    fn health_warns_below_the_threshold_and_when_the_file_is_gone_or_may_go() {
        let now = 1_000_000;
        let low = estimate(Purge::NotBefore(now + 2_400_000)).warning("orders", now).expect("40 min < 1h");
        assert!(low.starts_with("source orders: binlog retention headroom 40m is below retention_warning 1h"), "{low}");
        assert!(low.contains("binlog.000003") && low.contains("expiry 2h"), "{low}");
        assert_eq!(estimate(Purge::NotBefore(now + 3_600_000)).warning("orders", now), None);
        assert_eq!(estimate(Purge::Never).warning("orders", now), None, "expiry 0 never warns");
        let gone = estimate(Purge::Purged).warning("orders", now).expect("purged");
        assert!(gone.contains("binlog.000003") && gone.contains("no longer on the server"), "{gone}");
        let unknown = estimate(Purge::Unknown).warning("orders", now).expect("unknown");
        assert!(unknown.contains("unknown, reported as 0"), "{unknown}");
        let off = RetentionEstimate { warning: Duration::ZERO, ..estimate(Purge::NotBefore(now)) };
        assert_eq!(off.warning("orders", now), None, "retention_warning 0 turns the low-headroom warning off");
    }

    #[test]
    fn render_shows_the_headroom_once_estimated_and_infinity_as_plus_inf() {
        let metrics = Metrics::new();
        let source = metrics.source("orders");
        assert!(!metrics.render().contains(&format!("{BINLOG_RETENTION_HEADROOM_SECONDS}{{")), "no sample yet");
        source.retention.lock().unwrap().estimate = Some(estimate(Purge::Never));
        let text = metrics.render();
        assert!(text.contains(&format!("{BINLOG_RETENTION_HEADROOM_SECONDS}{{source=\"orders\"}} +Inf\n")), "{text}");
    }

    #[test]
    fn snapshot_checkpoints_prove_nothing_about_when_their_file_was_open() {
        let source = Metrics::new().source("orders");
        let open_at = |s: &SourceMetrics| {
            let r = s.retention.lock().unwrap();
            (r.needed_file.clone(), r.needed_open_at_ms)
        };
        let at = |file: &str, pos, ts_ms, snapshot: Option<SnapshotProgress>| Checkpoint {
            server_id: 1,
            epoch: 0,
            position: BinlogPosition::new(file, pos),
            gtid_set: GtidSet::default(),
            ts_ms,
            snapshot,
            resnapshot: None,
        };
        source.checkpoint_loaded(None);
        assert_eq!(open_at(&source), (String::new(), 0));
        source.checkpoint_loaded(Some(&at("binlog.000002", 400, 5_000, Some(SnapshotProgress::default()))));
        assert_eq!(open_at(&source), ("binlog.000002".into(), 0), "snapshot progress");
        source.checkpoint_saved(&at("binlog.000002", 400, 9_000, None));
        assert_eq!(open_at(&source), ("binlog.000002".into(), 0), "the checkpoint completing the snapshot");
        source.checkpoint_saved(&at("binlog.000003", 900, 12_000, None));
        assert_eq!(open_at(&source), ("binlog.000003".into(), 12_000), "a streamed commit");
        source.checkpoint_saved(&at("binlog.000004", 4, 0, None));
        assert_eq!(open_at(&source), ("binlog.000004".into(), 12_000), "a heartbeat keeps what an earlier one proved");
        source.checkpoint_loaded(Some(&at("binlog.000004", 4, 0, None)));
        assert_eq!(open_at(&source), ("binlog.000004".into(), 12_000), "reloaded when the pipeline restarts");
    }

    #[test]
    fn a_checkpoint_loaded_at_start_counts_until_the_first_save() {
        let source = Metrics::new().source("orders");
        let open_at = |s: &SourceMetrics| s.retention.lock().unwrap().needed_open_at_ms;
        let at = |file: &str, ts_ms| Checkpoint {
            server_id: 1,
            epoch: 0,
            position: BinlogPosition::new(file, 4),
            gtid_set: GtidSet::default(),
            ts_ms,
            snapshot: None,
            resnapshot: None,
        };
        // It may be one that completed a snapshot this process did not see: trusted only until the reader saves.
        source.checkpoint_loaded(Some(&at("binlog.000002", 50_000)));
        assert_eq!(open_at(&source), 50_000);
        source.checkpoint_saved(&at("binlog.000002", 20_000));
        assert_eq!(open_at(&source), 20_000, "the first save replaces it");
    }
}
