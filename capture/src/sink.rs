//! The Kafka side: [`KafkaChangeSink`] produces batches of records and reports, in batch order, the checkpoints
//! whose every record the broker acknowledged.
//!
//! Guarantees: `acks=all` and the idempotent producer (no duplicates or reordering from producer retries within a
//! session), the key's partition by murmur2 as Java clients and Debezium do. A batch's checkpoint is released only
//! when that batch and all batches before it are acknowledged (the lowest contiguous finished batch), whatever order
//! the partitions acknowledge in. Any delivery failure stops the pipeline, which then resumes from its last saved
//! checkpoint, so nothing is lost; records acknowledged after that checkpoint are sent again with identical source
//! coordinates.
//!
//! Heartbeats: a batch may ask for a [`Heartbeat`] at its checkpoint. It is produced to `<prefix>.heartbeats` when
//! that batch is released (every record before it acknowledged), with the source's watermarks: per partition of
//! each of the source's topics, the next offset after everything acknowledged so far (and, for partitions not
//! written since start, the broker's high watermark read once before the first heartbeat).
//!
//! Memory is bounded by librdkafka's queue (`queue.buffering.max.messages`/`.kbytes`): when it is full, `send`
//! waits for acknowledgements instead of buffering more. The default 4 MB (about 8,000 change events) is 0.4 s of what
//! the local broker acknowledges, enough to keep its batches full, and keeps the capture's peak memory small; a larger
//! queue (librdkafka's own default is 1 GB) only holds more memory when the broker is the bottleneck.
//!
//! Oversized records: before producing a batch, the sink checks every record against `message.max.bytes` and applies
//! the `oversized_records` policy (see [`crate::oversized`]), so no record reaches librdkafka only to be refused.
//!
//! Topics: the admin client is built from the same `kafka.properties` as the producer, without the producer-only
//! properties ([`admin_config`]), so SASL and TLS settings reach it. A topic is looked up in the broker's metadata
//! first and created (with `kafka.partitions` and `kafka.replication_factor`) only when the broker does not have it:
//! an existing topic is used as it is, whatever its partition count, and an account without CREATE permission works
//! on a cluster with pre-created topics. Every admin and metadata call has a deadline ([`BROKER_REQUEST`]).
//!
//! Compression is off by default, as in Kafka's own producer: the broker must decompress every batch it stores
//! record by record (the local broker spent about 4% of its time in LZ4 at 5,000 changes/s), and on one host it saves
//! nothing. Set `compression.type` in `kafka.properties` (`lz4`, `zstd`) where network bandwidth costs more than CPU.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use cdc_contract::{heartbeat_topic, Heartbeat, NextOffsets};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use tokio::sync::Notify;

use crate::checkpoint::Checkpoint;
use crate::config::{OversizedRecords, Settings, TableFilter};
use crate::error::{classify_kafka, CaptureError};
use crate::metrics::SourceMetrics;
use crate::oversized;
use crate::timeouts::BROKER_REQUEST;
use crate::transform::{now_ms, Record, Route};

/// librdkafka's queue limit in KB unless `kafka.properties` sets one (see the module doc).
pub const QUEUE_KBYTES: u64 = 4096;


/// librdkafka's producer-only properties (`P` in its CONFIGURATION.md): they configure producing, and some would
/// make the admin client act as a producer (`transactional.id`, `enable.idempotence`), so [`admin_config`] leaves
/// them out.
const PRODUCER_ONLY: &[&str] = &[
    "transactional.id",
    "transaction.timeout.ms",
    "enable.idempotence",
    "enable.gapless.guarantee",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.ms",
    "linger.ms",
    "message.send.max.retries",
    "retries",
    "queue.buffering.backpressure.threshold",
    "compression.codec",
    "compression.type",
    "compression.level",
    "batch.num.messages",
    "batch.size",
    "delivery.report.only.error",
    "dr_cb",
    "dr_msg_cb",
    "sticky.partitioning.linger.ms",
    "request.required.acks",
    "acks",
    "request.timeout.ms",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "queuing.strategy",
    "produce.offset.report",
    "partitioner",
    "partitioner_cb",
    "msg_order_cmp",
];

/// The admin client's configuration: `bootstrap.servers` and every `kafka.properties` entry the producer gets except
/// the producer-only ones (security, SASL, TLS, client id, socket and metadata settings all reach it), and no
/// automatic topic creation by metadata requests (a lookup must not create a topic with the broker's defaults).
pub fn admin_config(settings: &Settings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &settings.kafka.brokers);
    for (k, v) in settings.kafka.properties.iter().filter(|(k, _)| !PRODUCER_ONLY.contains(&k.as_str())) {
        config.set(k, v);
    }
    config.set("allow.auto.create.topics", "false");
    config
}

/// The producer's configuration: the capture's defaults, then `kafka.properties`, then the fixed settings.
pub fn producer_config(settings: &Settings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.kafka.brokers)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "50000")
        .set("queue.buffering.max.kbytes", QUEUE_KBYTES.to_string())
        .set("compression.type", "none");
    for (k, v) in &settings.kafka.properties {
        config.set(k, v);
    }
    // A message larger than the whole queue would never be accepted (`send` would wait forever), so a raised
    // message.max.bytes raises the default queue limit with it.
    let kbytes = |key: &str, divisor: u64| config.get(key).and_then(|v| v.parse::<u64>().ok()).map(|v| v.div_ceil(divisor));
    if !settings.kafka.properties.contains_key("queue.buffering.max.kbytes") {
        if let Some(message_kbytes) = kbytes("message.max.bytes", 1024).filter(|&k| k > QUEUE_KBYTES) {
            config.set("queue.buffering.max.kbytes", message_kbytes.to_string());
        }
    }
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", settings.kafka.delivery_timeout.as_millis().to_string());
    config
}

/// The unit passed from a reader to the sink.
#[derive(Debug, Default)]
pub struct Batch {
    /// Records, in order.
    pub records: Vec<Record>,
    /// Saved once this batch and all before it are acknowledged.
    pub checkpoint: Option<Checkpoint>,
    /// Publish a heartbeat at `checkpoint` once it is released (needs a checkpoint).
    pub heartbeat: Option<BeatAt>,
}

/// What the reader knows of a heartbeat; the sink adds the position (from the batch's checkpoint) and the
/// watermarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeatAt {
    /// See [`Heartbeat::last_commit_ts_ms`].
    pub last_commit_ts_ms: i64,
    /// See [`Heartbeat::as_of_ms`].
    pub as_of_ms: i64,
    /// See [`Heartbeat::idle`].
    pub idle: bool,
}

/// Acknowledgement bookkeeping shared with librdkafka's delivery callback.
#[derive(Default)]
struct Acks {
    /// Unacknowledged records per batch sequence number, and the first failure.
    state: Mutex<AckState>,
    /// Woken on every acknowledgement.
    notify: Notify,
}

#[derive(Default)]
struct AckState {
    remaining: HashMap<u64, usize>,
    failure: Option<KafkaError>,
    /// Per topic, per partition: one past the highest acknowledged offset (at least the high watermark read at
    /// start for the source's topics).
    next_offsets: NextOffsets,
}

/// The producer context: counts acknowledgements per batch.
struct AckContext {
    acks: Arc<Acks>,
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: usize) {
        let mut state = self.acks.state.lock().expect("ack state lock");
        match result {
            Ok(message) => {
                state.next_offsets.advance(message.topic(), message.partition(), message.offset() + 1);
                if let Some(n) = state.remaining.get_mut(&(batch as u64)) {
                    *n -= 1;
                }
            }
            Err((error, _)) => {
                state.failure.get_or_insert_with(|| error.clone());
            }
        }
        drop(state);
        self.acks.notify.notify_one();
    }
}

/// Produces records to Kafka and tracks which checkpoints are acknowledged.
pub struct KafkaChangeSink {
    /// The producer; its own thread polls for delivery reports.
    producer: ThreadedProducer<AckContext>,
    /// Looks topics up and creates missing ones on first use (the broker may not create them itself).
    admin: AdminClient<DefaultClientContext>,
    /// Shared with the delivery callback.
    acks: Arc<Acks>,
    /// Known topics and their partition counts.
    topics: HashMap<Arc<str>, i32>,
    /// Partitions and replication factor of topics this sink creates.
    new_topic_partitions: i32,
    new_topic_replication: i32,
    /// `message.max.bytes`, and what to do with a record over it.
    message_max_bytes: usize,
    oversized_records: OversizedRecords,
    /// Batches sent and not yet released, oldest first, with their checkpoints and heartbeat requests.
    pending: VecDeque<(u64, Option<Checkpoint>, Option<BeatAt>)>,
    /// The newest released heartbeat request, not yet published.
    ready_beat: Option<(BeatAt, Checkpoint)>,
    /// Whether the high watermarks of the source's existing topics were read.
    baseline_read: bool,
    /// The source's tables, to tell its topics.
    filter: TableFilter,
    /// `<prefix>.`, and the heartbeat topic.
    topic_prefix: String,
    heartbeat_topic: Arc<str>,
    /// Sequence number of the next batch.
    next_batch: u64,
    /// Metrics of the source this sink serves.
    metrics: Arc<SourceMetrics>,
}

impl KafkaChangeSink {
    /// A sink for one source, whose tables are those `filter` matches.
    pub fn new(settings: &Settings, filter: TableFilter, metrics: Arc<SourceMetrics>) -> Result<KafkaChangeSink, CaptureError> {
        let acks = Arc::new(Acks::default());
        let producer =
            producer_config(settings).create_with_context(AckContext { acks: acks.clone() }).map_err(classify_kafka)?;
        let admin = admin_config(settings).create().map_err(classify_kafka)?;
        Ok(KafkaChangeSink {
            producer,
            admin,
            acks,
            topics: HashMap::new(),
            new_topic_partitions: settings.kafka.partitions,
            new_topic_replication: settings.kafka.replication_factor,
            message_max_bytes: settings.message_max_bytes,
            oversized_records: settings.oversized_records,
            pending: VecDeque::new(),
            ready_beat: None,
            baseline_read: false,
            filter,
            topic_prefix: format!("{}.", settings.topic_prefix),
            heartbeat_topic: heartbeat_topic(&settings.topic_prefix).into(),
            next_batch: 0,
            metrics,
        })
    }

    /// Returns `topic`'s partition count, creating the topic first if the broker does not have it.
    async fn ensure_topic(&mut self, topic: &Arc<str>) -> Result<i32, CaptureError> {
        if let Some(&n) = self.topics.get(topic) {
            return Ok(n);
        }
        let partitions = match self.partitions_of(topic)? {
            Some(n) => n,
            None => {
                self.create_topic(topic).await?;
                self.partitions_of(topic)?.unwrap_or(self.new_topic_partitions)
            }
        };
        self.topics.insert(topic.clone(), partitions);
        self.acks.state.lock().expect("ack state lock").next_offsets.advance(topic, partitions - 1, 0);
        Ok(partitions)
    }

    /// The partition count of `topic` in the broker's metadata, `None` when the broker does not have it.
    fn partitions_of(&self, topic: &str) -> Result<Option<i32>, CaptureError> {
        let client = self.admin.inner();
        let metadata = tokio::task::block_in_place(|| client.fetch_metadata(Some(topic), BROKER_REQUEST))
            .map_err(classify_kafka)?;
        let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else { return Ok(None) };
        match found.error().map(RDKafkaErrorCode::from) {
            Some(
                code @ (RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::InvalidTopic),
            ) => Err(classify_kafka(KafkaError::MetadataFetch(code))),
            // Unknown, or known without partitions yet (being created): create it, or look again after.
            _ => Ok(Some(found.partitions().len() as i32).filter(|&n| n > 0)),
        }
    }

    /// Creates `topic` with the configured partitions and replication; a topic created meanwhile is fine.
    async fn create_topic(&self, topic: &str) -> Result<(), CaptureError> {
        let new = NewTopic::new(topic, self.new_topic_partitions, TopicReplication::Fixed(self.new_topic_replication));
        let options = AdminOptions::new().request_timeout(Some(BROKER_REQUEST)).operation_timeout(Some(BROKER_REQUEST));
        // librdkafka enforces the request timeout; the outer one bounds the call even if its reply never comes.
        let results = tokio::time::timeout(BROKER_REQUEST * 2, self.admin.create_topics([&new], &options))
            .await
            .map_err(|_| classify_kafka(KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut)))?
            .map_err(classify_kafka)?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(classify_kafka(KafkaError::AdminOp(code))),
            }
        }
        tracing::info!(source = %self.metrics.name, topic, partitions = self.new_topic_partitions, "topic created");
        Ok(())
    }

    /// Applies the `oversized_records` policy to every record over `message.max.bytes`, before any is produced.
    fn fit_records(&self, records: &mut [Record]) -> Result<(), CaptureError> {
        let limit = self.message_max_bytes;
        let error = |record| CaptureError::OversizedRecord { source_name: self.metrics.name.clone(), record };
        for record in records.iter_mut().filter(|r| !oversized::fits(r, limit)) {
            let what = oversized::describe(record, limit);
            if self.oversized_records == OversizedRecords::Fail {
                return Err(error(what));
            }
            let columns = oversized::truncate(record, limit).map_err(error)?;
            tracing::warn!(
                source = %self.metrics.name, table = %what.table, key = %what.key, position = %what.position,
                bytes = what.size, limit, columns = ?columns,
                "oversized record published with values replaced by a marker"
            );
            self.metrics.count_oversized(&what.table);
        }
        Ok(())
    }

    /// Produces a batch's records; waits while librdkafka's queue is full.
    pub async fn send(&mut self, mut batch: Batch) -> Result<(), CaptureError> {
        self.fit_records(&mut batch.records)?;
        let id = self.next_batch;
        self.next_batch += 1;
        let mut count = 0;
        for record in &batch.records {
            count += match record.route {
                Route::ByKey => 1,
                Route::AllPartitions => self.ensure_topic(&record.topic).await? as usize,
            };
        }
        self.acks.state.lock().expect("ack state lock").remaining.insert(id, count);
        let heartbeat = batch.heartbeat.filter(|_| batch.checkpoint.is_some());
        self.pending.push_back((id, batch.checkpoint, heartbeat));
        for record in &batch.records {
            let partitions = match record.route {
                Route::ByKey => {
                    self.ensure_topic(&record.topic).await?;
                    vec![None]
                }
                Route::AllPartitions => (0..self.ensure_topic(&record.topic).await?).map(Some).collect(),
            };
            for partition in partitions {
                self.produce(id, record, partition).await?;
            }
            if let Some((table, op)) = &record.op {
                self.metrics.count_event(table, *op);
            }
        }
        Ok(())
    }

    async fn produce(&self, id: u64, record: &Record, partition: Option<i32>) -> Result<(), CaptureError> {
        loop {
            let mut base = BaseRecord::<[u8], [u8], usize>::with_opaque_to(&record.topic, id as usize);
            if let Some(key) = &record.key {
                base = base.key(key.as_slice());
            }
            if let Some(value) = &record.value {
                base = base.payload(value.as_slice());
            }
            if let Some(p) = partition {
                base = base.partition(p);
            }
            match self.producer.send(base) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.check_failure()?;
                    // Wait for an acknowledgement to free space, with a bound in case it raced with this call.
                    let _ = tokio::time::timeout(Duration::from_millis(10), self.acks.notify.notified()).await;
                }
                Err((error, _)) => return Err(classify_kafka(error)),
            }
        }
    }

    fn check_failure(&self) -> Result<(), CaptureError> {
        match self.acks.state.lock().expect("ack state lock").failure.clone() {
            Some(error) => Err(classify_kafka(error)),
            None => Ok(()),
        }
    }

    /// Releases acknowledged batches in order; returns the newest checkpoint among them, if any. A heartbeat
    /// requested by a released batch becomes ready for [`publish_heartbeat`](Self::publish_heartbeat).
    pub fn take_acknowledged(&mut self) -> Result<Option<Checkpoint>, CaptureError> {
        self.check_failure()?;
        let mut state = self.acks.state.lock().expect("ack state lock");
        let mut newest = None;
        while let Some((id, _, _)) = self.pending.front() {
            if state.remaining.get(id).copied().unwrap_or(0) > 0 {
                break;
            }
            state.remaining.remove(id);
            let (_, checkpoint, beat) = self.pending.pop_front().expect("front exists");
            if let (Some(beat), Some(cp)) = (beat, &checkpoint) {
                self.ready_beat = Some((beat, cp.clone()));
            }
            if checkpoint.is_some() {
                newest = checkpoint;
            }
        }
        Ok(newest)
    }

    /// Publishes the ready heartbeat, if any, with the source's watermarks (see the module doc). It is tracked like a
    /// batch, so a failed delivery stops the pipeline like any other.
    pub async fn publish_heartbeat(&mut self) -> Result<(), CaptureError> {
        let Some((beat, cp)) = self.ready_beat.take() else { return Ok(()) };
        if !self.baseline_read {
            self.read_baseline()?;
            self.baseline_read = true;
        }
        let watermarks: BTreeMap<String, Vec<i64>> = {
            let state = self.acks.state.lock().expect("ack state lock");
            state
                .next_offsets
                .0
                .iter()
                .filter(|(topic, _)| self.is_source_topic(topic))
                .map(|(topic, offsets)| (topic.clone(), offsets.clone()))
                .collect()
        };
        let heartbeat = Heartbeat {
            source: self.metrics.name.clone(),
            server_id: cp.server_id,
            epoch: cp.epoch,
            file: cp.position.file.clone(),
            pos: cp.position.pos,
            gtid_set: cp.gtid_set.to_string(),
            last_commit_ts_ms: beat.last_commit_ts_ms,
            as_of_ms: beat.as_of_ms,
            idle: beat.idle,
            ts_ms: now_ms(),
            watermarks,
        };
        let record = Record {
            topic: self.heartbeat_topic.clone(),
            route: Route::ByKey,
            key: Some(serde_json::to_vec(&serde_json::json!({ "source": heartbeat.source })).expect("json")),
            value: Some(serde_json::to_vec(&heartbeat).expect("json")),
            op: None,
        };
        self.send(Batch { records: vec![record], checkpoint: None, heartbeat: None }).await
    }

    /// Whether `topic` holds changes of this source: `<prefix>.<db>.<table>` of a captured table.
    fn is_source_topic(&self, topic: &str) -> bool {
        topic
            .strip_prefix(&self.topic_prefix)
            .and_then(|rest| rest.split_once('.'))
            .is_some_and(|(db, table)| self.filter.matches(db, table))
    }

    /// Reads the broker's high watermarks of the source's existing topics: records published before this sink
    /// started (by an earlier run) lie below them.
    fn read_baseline(&self) -> Result<(), CaptureError> {
        let client = self.producer.client();
        let timeout = BROKER_REQUEST;
        let metadata = tokio::task::block_in_place(|| client.fetch_metadata(None, timeout)).map_err(classify_kafka)?;
        for topic in metadata.topics().iter().filter(|t| self.is_source_topic(t.name())) {
            for partition in topic.partitions() {
                let (_, high) = tokio::task::block_in_place(|| client.fetch_watermarks(topic.name(), partition.id(), timeout))
                    .map_err(classify_kafka)?;
                self.acks.state.lock().expect("ack state lock").next_offsets.advance(topic.name(), partition.id(), high);
            }
        }
        Ok(())
    }

    /// Waits until some record is acknowledged (or failed).
    pub async fn acknowledgement(&self) {
        self.acks.notify.notified().await
    }

    /// Batches sent and not yet released.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Waits up to `timeout` for every sent record's acknowledgement.
    pub fn flush(&self, timeout: Duration) -> Result<(), CaptureError> {
        tokio::task::block_in_place(|| self.producer.flush(timeout)).map_err(classify_kafka)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Secret, SnapshotMode, SourceConfig};

    fn settings(properties: &[(&str, &str)]) -> Settings {
        let mut config = Config {
            sources: vec![SourceConfig {
                name: "users".into(),
                url: Secret::new("mysql://u:p@127.0.0.1:3306/users"),
                server_id: 100,
                include: vec![],
                exclude: vec![],
                snapshot: SnapshotMode::Initial,
                snapshot_chunk_rows: 10,
                heartbeat_interval: Duration::from_secs(1),
                statement_dml: Default::default(),
            }],
            ..Config::default()
        };
        for (k, v) in properties {
            config.kafka.properties.insert((*k).into(), (*v).into());
        }
        config.validate().unwrap()
    }

    /// Which `kafka.properties` reach the admin client: connection, security and client settings do, producer-only
    /// ones do not, and metadata lookups never create topics.
    #[test]
    fn the_admin_client_gets_the_producers_security_settings_without_producer_only_ones() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("security.protocol", "SASL_SSL", Some("SASL_SSL")),
            ("sasl.mechanism", "SCRAM-SHA-512", Some("SCRAM-SHA-512")),
            ("sasl.username", "capture", Some("capture")),
            ("sasl.password", "secret", Some("secret")),
            ("ssl.ca.location", "/etc/ssl/ca.pem", Some("/etc/ssl/ca.pem")),
            ("ssl.endpoint.identification.algorithm", "https", Some("https")),
            ("client.id", "cdc-capture", Some("cdc-capture")),
            ("socket.timeout.ms", "30000", Some("30000")),
            ("message.max.bytes", "2000000", Some("2000000")),
            ("linger.ms", "20", None),
            ("compression.type", "lz4", None),
            ("queue.buffering.max.kbytes", "8192", None),
            ("batch.num.messages", "500", None),
            ("transactional.id", "t", None),
            ("request.timeout.ms", "5000", None),
            ("allow.auto.create.topics", "true", Some("false")),
        ];
        let all: Vec<(&str, &str)> = cases.iter().map(|(k, v, _)| (*k, *v)).collect();
        let configured = settings(&all);
        let admin = admin_config(&configured);
        let producer = producer_config(&configured);
        for (key, value, want) in cases {
            assert_eq!(admin.get(key), *want, "{key}");
            if *key != "allow.auto.create.topics" {
                assert_eq!(producer.get(key), Some(*value), "the producer gets {key}");
            }
        }
        assert_eq!(admin.get("bootstrap.servers"), Some("127.0.0.1:9092"));
        for fixed in ["acks", "enable.idempotence", "message.timeout.ms", "partitioner"] {
            assert_eq!(admin.get(fixed), None, "{fixed}");
        }
        // Every property the admin gets is one a producer-type client accepts: creating it succeeds.
        let client: Result<AdminClient<DefaultClientContext>, _> = admin_config(&settings(&[
            ("security.protocol", "plaintext"),
            ("client.id", "x"),
            ("linger.ms", "1"),
        ]))
        .create();
        assert!(client.is_ok(), "{:?}", client.err());
    }

    #[test]
    fn the_producer_queue_is_bounded_to_4_mb_unless_configured() {
        let config = producer_config(&settings(&[]));
        assert_eq!(config.get("queue.buffering.max.kbytes"), Some("4096"));
        assert_eq!(config.get("queue.buffering.max.messages"), Some("50000"));
        assert_eq!(config.get("acks"), Some("all"));
        let config = producer_config(&settings(&[("queue.buffering.max.kbytes", "16384")]));
        assert_eq!(config.get("queue.buffering.max.kbytes"), Some("16384"));
    }

    /// A message larger than the queue limit would wait forever for room; a raised message.max.bytes raises the
    /// default limit with it.
    #[test]
    fn a_raised_message_size_limit_raises_the_queue_limit() {
        let config = producer_config(&settings(&[("message.max.bytes", "10000000")]));
        assert_eq!(config.get("queue.buffering.max.kbytes"), Some("9766"));
        let config = producer_config(&settings(&[("message.max.bytes", "1000000")]));
        assert_eq!(config.get("queue.buffering.max.kbytes"), Some("4096"));
        let config =
            producer_config(&settings(&[("message.max.bytes", "10000000"), ("queue.buffering.max.kbytes", "16384")]));
        // A set limit stays (one below message.max.bytes is refused by validation).
        assert_eq!(config.get("queue.buffering.max.kbytes"), Some("16384"));
    }
}
