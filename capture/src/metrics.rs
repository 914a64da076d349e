//! Prometheus metrics of the capture. Names are the constants below; values that depend on the time of the scrape
//! (lag, checkpoint age) are computed when `/metrics` is read, so they never go stale.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use cdc_contract::Op;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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
/// Batches produced and not yet acknowledged.
pub const IN_FLIGHT: &str = "cdc_capture_in_flight_batches";
/// Seconds since the checkpoint was last saved.
pub const CHECKPOINT_AGE_SECONDS: &str = "cdc_capture_checkpoint_age_seconds";
/// Rows emitted by snapshots.
pub const SNAPSHOT_ROWS: &str = "cdc_capture_snapshot_rows";
/// 1 while the source streams or snapshots, 0 while it retries or has failed.
pub const UP: &str = "cdc_capture_up";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
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
    in_flight: Family<SourceLabel, Gauge>,
    checkpoint_age: Family<SourceLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    snapshot_rows: Family<SourceLabel, Counter>,
    up: Family<SourceLabel, Gauge>,
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
    /// See [`IN_FLIGHT`].
    pub in_flight: AtomicI64,
    /// The reader's binlog position (file, offset).
    pub position: Mutex<(String, u64)>,
    state: Mutex<SourceState>,
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
            in_flight: Family::default(),
            checkpoint_age: Family::default(),
            snapshot_rows: Family::default(),
            up: Family::default(),
            sources: Mutex::new(Vec::new()),
        };
        registry.register(LAG_SECONDS, "Seconds behind the newest committed change of the source", m.lag.clone());
        registry.register(BINLOG_BYTES_BEHIND, "Binlog bytes not yet read", m.bytes_behind.clone());
        registry.register(EVENTS, "Change events produced", m.events.clone());
        registry.register(QUEUE_DEPTH, "Batches queued between reader and producer", m.queue_depth.clone());
        registry.register(IN_FLIGHT, "Batches produced, not yet acknowledged", m.in_flight.clone());
        registry.register(CHECKPOINT_AGE_SECONDS, "Seconds since the last checkpoint save", m.checkpoint_age.clone());
        registry.register(SNAPSHOT_ROWS, "Rows emitted by snapshots", m.snapshot_rows.clone());
        registry.register(UP, "1 while the source streams or snapshots", m.up.clone());
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
            label,
            last_commit_ms: AtomicI64::new(0),
            caught_up_ms: AtomicI64::new(0),
            checkpoint_saved_ms: AtomicI64::new(now),
            bytes_behind: AtomicI64::new(0),
            queue_depth: AtomicI64::new(0),
            in_flight: AtomicI64::new(0),
            position: Mutex::new((String::new(), 0)),
            state: Mutex::new(SourceState::Starting),
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
            let age = (now - s.checkpoint_saved_ms.load(Ordering::Relaxed)).max(0) as f64 / 1000.0;
            self.checkpoint_age.get_or_create(&s.label).set(age);
            let up = matches!(s.state(), SourceState::Streaming | SourceState::Snapshotting);
            self.up.get_or_create(&s.label).set(up as i64);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry.lock().expect("registry lock"))
            .expect("writing to a String cannot fail");
        out
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

    /// Counts snapshot rows.
    pub fn count_snapshot_rows(&self, n: u64) {
        self.snapshot_rows.inc_by(n);
    }

    /// Records the commit time of a published transaction.
    pub fn committed(&self, ts_ms: i64) {
        self.last_commit_ms.fetch_max(ts_ms, Ordering::Relaxed);
    }

    /// Records that the server reported the capture caught up (a heartbeat), now.
    pub fn caught_up(&self) {
        self.caught_up_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Records a checkpoint save, now.
    pub fn checkpoint_saved(&self) {
        self.checkpoint_saved_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Lag in seconds at `now_ms`: since the newest of the last published commit and the last caught-up
    /// heartbeat. 0 before anything was seen is not claimed: the lag then counts from the start.
    pub fn lag_seconds(&self, now_ms: i64) -> f64 {
        let newest = self.last_commit_ms.load(Ordering::Relaxed).max(self.caught_up_ms.load(Ordering::Relaxed));
        let newest = if newest == 0 { self.checkpoint_saved_ms.load(Ordering::Relaxed) } else { newest };
        (now_ms - newest).max(0) as f64 / 1000.0
    }

    /// Sets the state.
    pub fn set_state(&self, state: SourceState) {
        *self.state.lock().expect("state lock") = state;
    }

    /// The state.
    pub fn state(&self) -> SourceState {
        self.state.lock().expect("state lock").clone()
    }
}
