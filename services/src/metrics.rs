//! Prometheus metrics of a service (prometheus-client). Every service registers the same families; the ones a
//! service does not use stay empty.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabel {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

/// The metrics and health of one service.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    applied: Family<TopicLabel, Counter>,
    duplicates: Family<TopicLabel, Counter>,
    dead: Family<TopicLabel, Counter>,
    consumer_lag: Family<PartitionLabels, Gauge>,
    transitions: Family<StatusLabel, Counter>,
    decision: Histogram,
    oldest_pending: Gauge<f64, std::sync::atomic::AtomicU64>,
    findings: Family<KindLabel, Gauge>,
    repaired: Family<KindLabel, Counter>,
    dead_pending: Family<TopicLabel, Gauge>,
    retries: Counter,
    batch_events: Histogram,
    problem: Mutex<Option<String>>,
    /// Shown by /health while the service stays available (pending dead letters).
    warning: Mutex<Option<String>>,
    service: String,
}

impl Metrics {
    /// Registers every family; `service` becomes a constant label.
    pub fn new(service: &str) -> Metrics {
        let mut root = Registry::with_labels([("service".into(), service.to_owned().into())].into_iter());
        let m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            applied: Family::default(),
            duplicates: Family::default(),
            dead: Family::default(),
            consumer_lag: Family::default(),
            transitions: Family::default(),
            decision: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            oldest_pending: Gauge::default(),
            findings: Family::default(),
            repaired: Family::default(),
            dead_pending: Family::default(),
            retries: Counter::default(),
            batch_events: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            problem: Mutex::new(Some("starting".into())),
            warning: Mutex::new(None),
            service: service.to_owned(),
        };
        let r = &mut root;
        r.register("cdc_service_http_requests", "HTTP requests answered", m.requests.clone());
        r.register("cdc_service_events_applied", "Change events applied by the service's consumer", m.applied.clone());
        r.register(
            "cdc_service_events_duplicate",
            "Change events skipped because their source position was already applied (redelivery, replay)",
            m.duplicates.clone(),
        );
        r.register("cdc_service_dead_letters", "Change events that could not be applied (see the dead_letters table)", m.dead.clone());
        r.register(
            "cdc_service_consumer_lag_messages",
            "Messages not yet applied: high watermark minus committed offset",
            m.consumer_lag.clone(),
        );
        r.register("cdc_orders_transitions", "Order status changes, by new status", m.transitions.clone());
        r.register(
            "cdc_orders_decision_seconds",
            "Time from an order's creation to its CONFIRMED or REJECTED transition",
            m.decision.clone(),
        );
        r.register("cdc_orders_oldest_pending_seconds", "Age of the oldest PENDING order (0 when none)", m.oldest_pending.clone());
        r.register(
            "cdc_reconcile_findings",
            "Inconsistencies found by the last reconciliation, by kind (the backlog)",
            m.findings.clone(),
        );
        r.register("cdc_reconcile_repaired", "Inconsistencies repaired by reconciliation, by kind", m.repaired.clone());
        r.register(
            "cdc_service_dead_letters_pending",
            "Dead letters not replayed yet (see `<service> replay-dead-letters`)",
            m.dead_pending.clone(),
        );
        r.register(
            "cdc_service_apply_retries",
            "Batches of change events retried because the database refused them (read-only, lost connection, deadlock...)",
            m.retries.clone(),
        );
        r.register("cdc_service_batch_events", "Change events per applied batch (one transaction)", m.batch_events.clone());
        Metrics { registry: root, ..m }
    }

    pub fn request(&self, method: &str, route: &str, status: u16) {
        self.requests.get_or_create(&RequestLabels { method: method.into(), route: route.into(), status }).inc();
    }

    pub fn applied(&self, topic: &str) {
        self.applied.get_or_create(&TopicLabel { topic: topic.into() }).inc();
    }

    pub fn duplicate(&self, topic: &str) {
        self.duplicates.get_or_create(&TopicLabel { topic: topic.into() }).inc();
    }

    pub fn dead_letter(&self, topic: &str) {
        self.dead.get_or_create(&TopicLabel { topic: topic.into() }).inc();
    }

    pub fn consumer_lag(&self, topic: &str, partition: i32, messages: i64) {
        self.consumer_lag.get_or_create(&PartitionLabels { topic: topic.into(), partition }).set(messages);
    }

    pub fn transition(&self, status: &str) {
        self.transitions.get_or_create(&StatusLabel { status: status.into() }).inc();
    }

    pub fn decided_after(&self, seconds: f64) {
        self.decision.observe(seconds);
    }

    pub fn oldest_pending(&self, seconds: f64) {
        self.oldest_pending.set(seconds);
    }

    pub fn findings(&self, kind: &str, count: usize) {
        self.findings.get_or_create(&KindLabel { kind: kind.into() }).set(count as i64);
    }

    pub fn repaired(&self, kind: &str, count: usize) {
        self.repaired.get_or_create(&KindLabel { kind: kind.into() }).inc_by(count as u64);
    }

    pub fn dead_letters_pending(&self, topic: &str, count: u64) {
        self.dead_pending.get_or_create(&TopicLabel { topic: topic.into() }).set(count as i64);
    }

    pub fn apply_retry(&self) {
        self.retries.inc();
    }

    pub fn batch(&self, events: usize) {
        self.batch_events.observe(events as f64);
    }

    /// The service's name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// A warning for /health that does not make the service unavailable; `None` when there is nothing to say.
    pub fn set_warning(&self, warning: Option<String>) {
        *self.warning.lock().unwrap_or_else(|e| e.into_inner()) = warning;
    }

    pub fn warning(&self) -> Option<String> {
        self.warning.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `None` when healthy.
    pub fn set_problem(&self, problem: Option<String>) {
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = problem;
    }

    pub fn problem(&self) -> Option<String> {
        self.problem.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}
