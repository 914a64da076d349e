//! Prometheus metrics of the view service. Time-dependent values (lag) are computed when `/metrics` is read.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::runtime::Applied;

/// End-to-end lag: now minus the commit time of the newest change applied to ClickHouse, per source.
pub const LAG_SECONDS: &str = "cdc_view_lag_seconds";
/// Messages not yet applied, per topic and partition (high watermark minus committed offset).
pub const CONSUMER_LAG: &str = "cdc_view_consumer_lag_messages";
/// Change events applied.
pub const EVENTS: &str = "cdc_view_events";
/// Events that could not be applied (see the dead_letters table).
pub const DEAD_LETTERS: &str = "cdc_view_dead_letters";
/// Time to write one batch to ClickHouse.
pub const INSERT_SECONDS: &str = "cdc_view_clickhouse_insert_seconds";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabel {
    topic: String,
    partition: i32,
}

/// The metrics and health of the view service.
pub struct Metrics {
    registry: Mutex<Registry>,
    lag: Family<SourceLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    consumer_lag: Family<PartitionLabel, Gauge>,
    events: Counter,
    dead: Counter,
    insert: Histogram,
    /// Newest commit time applied per source, ms.
    newest: Mutex<HashMap<String, i64>>,
    /// `None` when healthy, else the reason.
    problem: Mutex<Option<String>>,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            lag: Family::default(),
            consumer_lag: Family::default(),
            events: Counter::default(),
            dead: Counter::default(),
            insert: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            newest: Mutex::new(HashMap::new()),
            problem: Mutex::new(Some("starting".into())),
        };
        registry.register(LAG_SECONDS, "Now minus the commit time of the newest change applied", m.lag.clone());
        registry.register(CONSUMER_LAG, "Messages not yet applied", m.consumer_lag.clone());
        registry.register(EVENTS, "Change events applied", m.events.clone());
        registry.register(DEAD_LETTERS, "Events that could not be applied", m.dead.clone());
        registry.register(INSERT_SECONDS, "Time to write one batch to ClickHouse", m.insert.clone());
        *m.registry.lock().expect("registry lock") = registry;
        m
    }

    /// Records an applied batch.
    pub fn applied(&self, batch: &Applied, took: Duration) {
        self.events.inc_by(batch.events as u64);
        self.dead.inc_by(batch.dead.len() as u64);
        self.insert.observe(took.as_secs_f64());
        let mut newest = self.newest.lock().expect("newest lock");
        for (source, ms) in &batch.newest_commit_ms {
            let entry = newest.entry(source.clone()).or_insert(0);
            *entry = (*entry).max(*ms);
        }
    }

    /// Records a partition's consumer lag.
    pub fn consumer_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.consumer_lag.get_or_create(&PartitionLabel { topic: topic.to_owned(), partition }).set(lag);
    }

    /// Sets health: `None` is healthy.
    pub fn set_healthy(&self, problem: Option<String>) {
        *self.problem.lock().expect("problem lock") = problem;
    }

    /// The health problem, if any.
    pub fn problem(&self) -> Option<String> {
        self.problem.lock().expect("problem lock").clone()
    }

    /// Newest applied commit time per source.
    pub fn newest(&self) -> HashMap<String, i64> {
        self.newest.lock().expect("newest lock").clone()
    }

    /// The text exposition.
    pub fn render(&self, now_ms: i64) -> String {
        for (source, ms) in self.newest() {
            self.lag.get_or_create(&SourceLabel { source }).set((now_ms - ms).max(0) as f64 / 1000.0);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry.lock().expect("registry lock"))
            .expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}
