//! The idempotent change-event consumer the catalog and orders services share.
//!
//! For each message, in this order:
//! 1. one local transaction: look up the newest source position already applied for the message's topic and key
//!    (`applied_events`, row-locked); if the event is not newer, it is a redelivery or a replay and changes nothing;
//!    else apply the handler's effect and record the event's position, then commit;
//! 2. only then commit the message's Kafka offset (offsets of applied messages are committed together every 100 ms).
//!
//! A crash between 1 and 2 redelivers the message; step 1 then finds its position and skips it. Per-key order holds
//! because the capture partitions by primary key and one consumer applies a partition in order. An event that can
//! never apply (not a change event, a row without the expected columns) is stored in `dead_letters` with its error
//! and payload, counted, and passed, so one bad message neither blocks the stream nor disappears.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use cdc_contract::{ChangeEvent, Row, Value};
use mysql_async::prelude::*;
use mysql_async::{Pool, Transaction, TxOpts};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// One change event taken from a topic.
#[derive(Debug)]
pub struct Incoming {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The message key (the primary key as JSON).
    pub key: String,
    pub event: ChangeEvent,
}

/// The change event that caused an effect: recorded next to it (an order's history) so it can be traced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Cause {
    pub topic: String,
    pub file: String,
    pub pos: u64,
    pub row: u64,
}

impl Incoming {
    pub fn cause(&self) -> Cause {
        let s = &self.event.source;
        Cause { topic: self.topic.clone(), file: s.file.clone(), pos: s.pos, row: s.row }
    }

    /// The row image that identifies the changed row: `after`, or `before` for a delete.
    pub fn row(&self) -> Result<&Row, ApplyError> {
        self.event
            .after
            .as_ref()
            .or(self.event.before.as_ref())
            .ok_or_else(|| ApplyError::Permanent("the event carries no row image".into()))
    }
}

/// Why an event did not apply.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// It never will: goes to `dead_letters`.
    #[error("{0}")]
    Permanent(String),
    /// Retried with backoff (database unreachable, deadlock).
    #[error(transparent)]
    Transient(#[from] mysql_async::Error),
}

/// A required column of a row image, converted.
pub fn column<'r, T>(row: &'r Row, name: &str, convert: impl Fn(&'r Value) -> Option<T>) -> Result<T, ApplyError> {
    let value = row.get(name).ok_or_else(|| ApplyError::Permanent(format!("the row has no column `{name}`")))?;
    convert(value).ok_or_else(|| ApplyError::Permanent(format!("column `{name}` has an unexpected value {value:?}")))
}

/// What a consumer does with one event, inside the transaction that also records the event as applied.
pub trait Handler: Send + Sync + 'static {
    /// Something to do once the transaction committed (metrics of what changed).
    type Note: Send;

    fn apply<'a>(
        &'a self,
        tx: &'a mut Transaction<'static>,
        incoming: &'a Incoming,
    ) -> impl Future<Output = Result<Self::Note, ApplyError>> + Send + 'a;

    /// Called after the commit.
    fn committed(&self, note: Self::Note);
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Name recorded in `applied_events` and `dead_letters` (the consumer group).
    pub name: String,
    pub brokers: String,
    pub topics: Vec<String>,
    /// See [`crate::cli::Config::stop_before_offset_commit`].
    pub stop_before_offset_commit: Option<u64>,
}

/// Consumes `topics` and applies each event once, until `shutdown`.
pub async fn run<H: Handler>(
    pool: Pool,
    config: ConsumerConfig,
    handler: Arc<H>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<()> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.name)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        // Topics appear when the capture first sees a change of their table: pick them up quickly.
        .set("topic.metadata.refresh.interval.ms", "2000")
        // A workflow step waits for this consumer: do not let an empty fetch sit at the broker for long (tansu
        // answers a fetch only when this wait is over if no data was there at its start).
        .set("fetch.wait.max.ms", "20")
        .create()?;
    let consumer = Arc::new(consumer);
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    tracing::info!(topics = ?topics, group = %config.name, "consuming");
    metrics.set_problem(None);
    let committed: Arc<Mutex<HashMap<(String, i32), i64>>> = Arc::default();
    let lag = tokio::spawn(measure_lag(consumer.clone(), committed.clone(), metrics.clone(), shutdown.clone()));
    let result = consume(&pool, &config, &consumer, handler, &metrics, &shutdown, &committed).await;
    lag.abort();
    result
}

/// Consumer lag every 5 s: the brokers' high watermarks against what is committed (a round trip per partition, so
/// off the consuming loop).
async fn measure_lag(
    consumer: Arc<StreamConsumer>,
    committed: Arc<Mutex<HashMap<(String, i32), i64>>>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let partitions: Vec<((String, i32), i64)> =
            committed.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), *v)).collect();
        for ((topic, partition), offset) in partitions {
            let c = consumer.clone();
            let t = topic.clone();
            let marks = tokio::task::spawn_blocking(move || c.fetch_watermarks(&t, partition, Duration::from_secs(1))).await;
            if let Ok(Ok((_, high))) = marks {
                metrics.consumer_lag(&topic, partition, (high - offset - 1).max(0));
            }
        }
    }
}

async fn consume<H: Handler>(
    pool: &Pool,
    config: &ConsumerConfig,
    consumer: &StreamConsumer,
    handler: Arc<H>,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
    committed: &Mutex<HashMap<(String, i32), i64>>,
) -> Result<()> {
    let mut applied_count = 0_u64;
    // Offsets of applied messages not yet committed: committed together every COMMIT_EVERY (a crash in between only
    // redelivers messages whose positions are recorded, which are skipped).
    let mut uncommitted: HashMap<(String, i32), i64> = HashMap::new();
    let mut last_commit = Instant::now();
    loop {
        let received = tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                commit(consumer, &mut uncommitted, committed, CommitMode::Sync);
                return Ok(());
            }
            r = tokio::time::timeout(COMMIT_EVERY, consumer.recv()) => r,
        };
        let message = match received {
            Err(_) => None,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
                continue;
            }
            Ok(Ok(m)) => Some(m),
        };
        if let Some(message) = message {
            let (topic, partition, offset) = (message.topic().to_owned(), message.partition(), message.offset());
            if let Some(payload) = message.payload() {
                let key = message.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
                match serde_json::from_slice::<ChangeEvent>(payload) {
                    Ok(event) => {
                        let incoming = Incoming { topic: topic.clone(), partition, offset, key, event };
                        if !apply_once(pool, &config.name, handler.as_ref(), &incoming, payload, metrics, shutdown).await? {
                            commit(consumer, &mut uncommitted, committed, CommitMode::Sync);
                            return Ok(()); // shut down while retrying
                        }
                    }
                    Err(e) => {
                        dead_letter(pool, &config.name, &topic, partition, offset, &format!("not a change event: {e}"), payload, metrics, shutdown)
                            .await?
                    }
                }
            } // a tombstone: the delete came before it
            applied_count += 1;
            if config.stop_before_offset_commit.is_some_and(|n| applied_count >= n) {
                tracing::warn!(topic, partition, offset, "stopping before the offset commit (fault injection)");
                return Ok(());
            }
            uncommitted.insert((topic, partition), offset);
        }
        if last_commit.elapsed() >= COMMIT_EVERY {
            commit(consumer, &mut uncommitted, committed, CommitMode::Async);
            last_commit = Instant::now();
        }
    }
}

/// How often the offsets of applied messages are committed.
const COMMIT_EVERY: Duration = Duration::from_millis(100);

/// Commits the next offset of every partition with applied messages.
fn commit(
    consumer: &StreamConsumer,
    uncommitted: &mut HashMap<(String, i32), i64>,
    committed: &Mutex<HashMap<(String, i32), i64>>,
    mode: CommitMode,
) {
    if uncommitted.is_empty() {
        return;
    }
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in uncommitted.iter() {
        if let Err(e) = list.add_partition_offset(topic, *partition, Offset::Offset(offset + 1)) {
            tracing::warn!(error = %e, "offset not committed; its messages will be redelivered and skipped");
        }
    }
    match consumer.commit(&list, mode) {
        Ok(()) => committed.lock().unwrap_or_else(|e| e.into_inner()).extend(uncommitted.drain()),
        Err(e) => tracing::warn!(error = %e, "offset commit failed; retried with the next commit"),
    }
}

/// Applies one event exactly once; retries transient failures until `shutdown` (then returns false).
async fn apply_once<H: Handler>(
    pool: &Pool,
    consumer: &str,
    handler: &H,
    incoming: &Incoming,
    payload: &[u8],
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<bool> {
    let mut backoff = Duration::from_millis(50);
    let mut server_errors = 0;
    loop {
        match try_apply(pool, consumer, handler, incoming).await {
            Ok(Some(note)) => {
                metrics.set_problem(None);
                metrics.applied(&incoming.topic);
                handler.committed(note);
                return Ok(true);
            }
            Ok(None) => {
                metrics.duplicate(&incoming.topic);
                return Ok(true);
            }
            Err(ApplyError::Permanent(reason)) => {
                let (t, p, o) = (&incoming.topic, incoming.partition, incoming.offset);
                return dead_letter(pool, consumer, t, p, o, &reason, payload, metrics, shutdown).await.map(|()| true);
            }
            Err(ApplyError::Transient(e)) => {
                // A server error other than a deadlock or lock timeout is retried a few times, then parked.
                if let mysql_async::Error::Server(s) = &e {
                    if s.code != 1213 && s.code != 1205 {
                        server_errors += 1;
                        if server_errors >= 5 {
                            let (t, p, o) = (&incoming.topic, incoming.partition, incoming.offset);
                            let reason = format!("database refused the effect: {e}");
                            return dead_letter(pool, consumer, t, p, o, &reason, payload, metrics, shutdown).await.map(|()| true);
                        }
                    }
                }
                tracing::warn!(error = %e, retry_in = ?backoff, topic = %incoming.topic, "applying an event failed; retrying");
                metrics.set_problem(Some(format!("database: {e}")));
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(false),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// `Some(note)` when applied, `None` when the event's position was already applied.
async fn try_apply<H: Handler>(pool: &Pool, consumer: &str, handler: &H, incoming: &Incoming) -> Result<Option<H::Note>, ApplyError> {
    let version = incoming
        .event
        .version()
        .ok_or_else(|| ApplyError::Permanent(format!("binlog file name `{}` has no sequence number", incoming.event.source.file)))?;
    let mut tx = pool.start_transaction(TxOpts::default()).await?;
    let seen: Option<u64> = tx
        .exec_first(
            "SELECT version FROM applied_events WHERE consumer = ? AND topic = ? AND event_key = ? FOR UPDATE",
            (consumer, &incoming.topic, &incoming.key),
        )
        .await?;
    if seen.is_some_and(|v| v >= version) {
        tx.rollback().await?;
        return Ok(None);
    }
    let note = handler.apply(&mut tx, incoming).await?;
    let s = &incoming.event.source;
    tx.exec_drop(
        "INSERT INTO applied_events (consumer, topic, event_key, version, source_file, source_pos, source_row, \
         kafka_partition, kafka_offset) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE \
         version = VALUES(version), source_file = VALUES(source_file), source_pos = VALUES(source_pos), \
         source_row = VALUES(source_row), kafka_partition = VALUES(kafka_partition), \
         kafka_offset = VALUES(kafka_offset), applied_at = CURRENT_TIMESTAMP(3)",
        (consumer, &incoming.topic, &incoming.key, version, &s.file, s.pos, s.row, incoming.partition, incoming.offset),
    )
    .await?;
    tx.commit().await?;
    Ok(Some(note))
}

#[allow(clippy::too_many_arguments)]
async fn dead_letter(
    pool: &Pool,
    consumer: &str,
    topic: &str,
    partition: i32,
    offset: i64,
    error: &str,
    payload: &[u8],
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<()> {
    tracing::error!(topic, partition, offset, error, "event cannot be applied; stored in dead_letters");
    let payload = String::from_utf8_lossy(payload);
    let mut backoff = Duration::from_millis(50);
    loop {
        let stored = async {
            pool.get_conn()
                .await?
                .exec_drop(
                    "INSERT INTO dead_letters (consumer, topic, kafka_partition, kafka_offset, error, payload) \
                     VALUES (?, ?, ?, ?, ?, ?)",
                    (consumer, topic, partition, offset, error, payload.as_ref()),
                )
                .await
        }
        .await;
        match stored {
            Ok(()) => {
                metrics.dead_letter(topic);
                return Ok(());
            }
            Err(e) => {
                tracing::warn!(error = %e, "storing a dead letter failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => anyhow::bail!("shut down before a dead letter was stored"),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// What one reconciliation pass found and repaired, by kind.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reconciliation {
    /// Ids found per kind of inconsistency (the backlog before repairs).
    pub found: std::collections::BTreeMap<String, Vec<u64>>,
    /// Ids repaired per kind.
    pub repaired: std::collections::BTreeMap<String, Vec<u64>>,
}

impl Reconciliation {
    /// Records the findings of `kind` (even none, so the metric drops to zero).
    pub fn found(&mut self, kind: &str, ids: Vec<u64>) {
        self.found.insert(kind.to_owned(), ids);
    }

    pub fn repaired(&mut self, kind: &str, id: u64) {
        self.repaired.entry(kind.to_owned()).or_default().push(id);
    }

    /// Publishes the pass in `metrics`: the backlog is what was found and not repaired.
    pub fn publish(&self, metrics: &Metrics) {
        for (kind, ids) in &self.found {
            let repaired = self.repaired.get(kind).map_or(0, Vec::len);
            metrics.findings(kind, ids.len().saturating_sub(repaired));
        }
        for (kind, ids) in &self.repaired {
            metrics.repaired(kind, ids.len());
        }
    }
}

/// Runs `pass` every `interval` until `shutdown`; failures are logged and retried at the next tick.
pub async fn every<F, Fut>(interval: Duration, shutdown: CancellationToken, what: &'static str, mut pass: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        if let Err(e) = pass().await {
            tracing::warn!(error = %e, "{what} failed; retrying at the next interval");
        }
    }
}
