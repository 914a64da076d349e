//! Prometheus metrics and live state of the view service: what `/metrics`, `/lag` and `/status` show.
//! Time-dependent values (lag) are computed when read, so they never go stale.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use serde::Serialize;

use crate::lag::Coverage;
use crate::batch::Applied;

/// End-to-end lag per source: now minus the newer of the commit time of the newest change applied to ClickHouse
/// and the time up to which the newest applied heartbeat vouches for the source (see [`crate::lag`]).
pub const LAG_SECONDS: &str = "cdc_view_lag_seconds";
/// Messages not yet applied, per topic and partition (high watermark minus committed offset).
pub const CONSUMER_LAG: &str = "cdc_view_consumer_lag_messages";
/// Change events applied.
pub const EVENTS: &str = "cdc_view_events";
/// Events that could not be applied (see the dead_letters table).
pub const DEAD_LETTERS: &str = "cdc_view_dead_letters";
/// Time to write one batch to ClickHouse.
pub const INSERT_SECONDS: &str = "cdc_view_clickhouse_insert_seconds";
/// Per change event applied: from its commit in the source (binlog timestamp, whole seconds) to ClickHouse's
/// acknowledgement of the batch that holds it.
pub const END_TO_END_SECONDS: &str = "cdc_view_end_to_end_seconds";
/// Cancel rows of `report_lines` not yet merged with the rows they cancel, as last counted ([`crate::compact`]).
pub const CANCELS_PENDING: &str = "cdc_view_report_cancels_pending";
/// Partitions of `report_lines` compacted (`OPTIMIZE ... FINAL`) to bound the pending cancels.
pub const COMPACTIONS: &str = "cdc_view_report_compactions";

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
    end_to_end: Family<SourceLabel, Histogram>,
    cancels_pending: Gauge,
    compactions: Counter,
    events_total: std::sync::atomic::AtomicU64,
    /// What is applied and which heartbeats that covers.
    pub coverage: Mutex<Coverage>,
    /// Consumer lag per (topic, partition), as last measured.
    partitions: Mutex<BTreeMap<(String, i32), i64>>,
    /// The view's change topics that exist on the broker, as last seen.
    existing_topics: Mutex<HashSet<String>>,
    /// With `assignment = "group"`: the partitions the group assigned to this instance.
    pub assigned: Mutex<std::collections::BTreeSet<(String, i32)>>,
    /// Lag and throughput samples, oldest first (see [`Metrics::sample`]).
    history: Mutex<VecDeque<Sample>>,
    /// `None` when healthy, else the reason.
    problem: Mutex<Option<String>>,
}

/// Samples kept: 15 minutes at one every [`SAMPLE_STEP_MS`].
pub const HISTORY_SAMPLES: usize = 450;
/// Time between samples, ms.
pub const SAMPLE_STEP_MS: i64 = 2000;

/// One point of the dashboard's history.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub at_ms: i64,
    /// Lag per source, ms (null while unknown).
    pub lag_ms: BTreeMap<String, Option<i64>>,
    /// Change events applied so far.
    pub events_total: u64,
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
            end_to_end: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.05, 2.0, 14))),
            cancels_pending: Gauge::default(),
            compactions: Counter::default(),
            events_total: Default::default(),
            coverage: Mutex::new(Coverage::default()),
            partitions: Mutex::default(),
            existing_topics: Mutex::default(),
            assigned: Mutex::default(),
            history: Mutex::default(),
            problem: Mutex::new(Some("starting".into())),
        };
        registry.register(LAG_SECONDS, "End-to-end lag: now minus the newest applied commit or covered heartbeat", m.lag.clone());
        registry.register(CONSUMER_LAG, "Messages not yet applied", m.consumer_lag.clone());
        registry.register(EVENTS, "Change events applied", m.events.clone());
        registry.register(DEAD_LETTERS, "Events that could not be applied", m.dead.clone());
        registry.register(INSERT_SECONDS, "Time to write one batch to ClickHouse", m.insert.clone());
        registry.register(END_TO_END_SECONDS, "Source commit to applied in ClickHouse, per change event", m.end_to_end.clone());
        registry.register(CANCELS_PENDING, "Cancel rows of report_lines not yet merged, as last counted", m.cancels_pending.clone());
        registry.register(COMPACTIONS, "Partitions of report_lines compacted to bound the pending cancels", m.compactions.clone());
        *m.registry.lock().expect("registry lock") = registry;
        m
    }

    /// Records an applied batch.
    pub fn applied(&self, batch: &Applied, took: Duration) {
        self.events.inc_by(batch.events as u64);
        self.events_total.fetch_add(batch.events as u64, std::sync::atomic::Ordering::Relaxed);
        self.dead.inc_by(batch.dead.len() as u64);
        self.insert.observe(took.as_secs_f64());
        let now_ms = cdc_common::now_ms();
        for (source, commits) in &batch.commit_ms {
            let histogram = self.end_to_end.get_or_create(&SourceLabel { source: source.clone() });
            for ms in commits {
                histogram.observe((now_ms - ms).max(0) as f64 / 1000.0);
            }
        }
    }

    /// Records a count of the unmerged cancel rows.
    pub fn cancels_pending(&self, count: u64) {
        self.cancels_pending.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Records a compacted partition.
    pub fn compacted(&self) {
        self.compactions.inc();
    }

    /// Change events applied since start.
    pub fn events_total(&self) -> u64 {
        self.events_total.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records a partition's consumer lag.
    pub fn consumer_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.consumer_lag.get_or_create(&PartitionLabel { topic: topic.to_owned(), partition }).set(lag);
        self.partitions.lock().expect("partitions lock").insert((topic.to_owned(), partition), lag);
    }

    /// Consumer lag per (topic, partition), as last measured.
    pub fn partitions(&self) -> BTreeMap<(String, i32), i64> {
        self.partitions.lock().expect("partitions lock").clone()
    }

    /// Records which of the view's change topics exist on the broker.
    pub fn set_existing_topics(&self, topics: HashSet<String>) {
        *self.existing_topics.lock().expect("topics lock") = topics;
    }

    /// The view's change topics that exist on the broker, as last seen.
    pub fn existing_topics(&self) -> HashSet<String> {
        self.existing_topics.lock().expect("topics lock").clone()
    }

    /// Adds a history sample at `now_ms` for `sources` (and every source the view knows).
    pub fn sample(&self, now_ms: i64, sources: &[String]) {
        let coverage = self.coverage.lock().expect("coverage lock");
        let mut names = coverage.sources();
        names.extend(sources.iter().cloned());
        let lag_ms = names.into_iter().map(|s| (coverage.lag_ms(&s, now_ms), s)).map(|(l, s)| (s, l)).collect();
        drop(coverage);
        let mut history = self.history.lock().expect("history lock");
        if history.len() >= HISTORY_SAMPLES {
            history.pop_front();
        }
        history.push_back(Sample { at_ms: now_ms, lag_ms, events_total: self.events_total() });
    }

    /// The history, oldest first.
    pub fn history(&self) -> Vec<Sample> {
        self.history.lock().expect("history lock").iter().cloned().collect()
    }

    /// Sets health: `None` is healthy.
    pub fn set_healthy(&self, problem: Option<String>) {
        *self.problem.lock().expect("problem lock") = problem;
    }

    /// The health problem, if any.
    pub fn problem(&self) -> Option<String> {
        self.problem.lock().expect("problem lock").clone()
    }

    /// The text exposition.
    pub fn render(&self, now_ms: i64) -> String {
        let coverage = self.coverage.lock().expect("coverage lock");
        for source in coverage.sources() {
            if let Some(ms) = coverage.lag_ms(&source, now_ms) {
                self.lag.get_or_create(&SourceLabel { source }).set(ms as f64 / 1000.0);
            }
        }
        drop(coverage);
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
