//! The idempotent, batched change-event consumer the catalog and orders services share.
//!
//! Messages are taken in batches (up to `batch_max`, or what arrived within `batch_linger` of the first) and each
//! batch is applied in one local transaction ([`crate::apply`]): per key, an event changes something only if it is
//! newer than the version recorded in `applied_events`, and the new versions are recorded in the same transaction.
//! Only after that commit are the batch's Kafka offsets committed (together, every 100 ms). A crash in between
//! redelivers the batch, whose versions are then found and skipped. Per-key order holds because the capture
//! partitions by primary key and a batch keeps partition order.
//!
//! Errors, by the workspace's MySQL classifier ([`cdc_common::mysql_error_kind`]):
//! - an event that cannot apply *by its content* (not a change event, missing columns, data the schema refuses)
//!   is stored in `dead_letters` in the batch's transaction, and the rest of the batch applies ([`crate::dead_letters`]);
//! - any other database error (read-only, lost or killed connection, shutdown, lock wait, deadlock, too many
//!   connections, and also errors that need an operator such as a missing table) rolls the batch back and retries
//!   it with backoff until the database accepts it: nothing is skipped and no offset moves meanwhile. `/health` is
//!   503 with the error while it retries, and `cdc_service_apply_retries_total` counts the retries.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use cdc_common::backoff::Backoff;
use cdc_common::mysql::{mysql_error_kind, MySqlErrorKind};
use mysql_async::Pool;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::apply::{apply_batch, Outcome};
use crate::handler::{Handler, Message};
use crate::dead_letters;
use crate::metrics::Metrics;

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Name recorded in `applied_events` and `dead_letters` (the consumer group).
    pub name: String,
    pub brokers: String,
    pub topics: Vec<String>,
    /// At most this many messages per batch (one transaction).
    pub batch_max: usize,
    /// How long a batch waits for more messages after its first.
    pub batch_linger: Duration,
    /// See [`crate::config::Config::stop_before_offset_commit`].
    pub stop_before_offset_commit: Option<u64>,
}

/// Retry delays of a batch the database refuses: from 50 ms, at most 5 s.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// How often dead letters are counted and consumer lag measured.
const MEASURE_EVERY: Duration = Duration::from_secs(2);

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
    tracing::info!(topics = ?topics, group = %config.name, batch_max = config.batch_max, "consuming");
    metrics.set_problem(None);
    let committed: Arc<Mutex<HashMap<(String, i32), i64>>> = Arc::default();
    let measure = tokio::spawn(measure(
        consumer.clone(),
        pool.clone(),
        config.clone(),
        committed.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let result = consume(&pool, &config, &consumer, handler, &metrics, &shutdown, &committed).await;
    measure.abort();
    result
}

/// Every [`MEASURE_EVERY`]: pending dead letters (gauge and the /health warning), and consumer lag, the brokers'
/// high watermarks against what is committed (a round trip per partition, so off the consuming loop).
async fn measure(
    consumer: Arc<StreamConsumer>,
    pool: Pool,
    config: ConsumerConfig,
    committed: Arc<Mutex<HashMap<(String, i32), i64>>>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(MEASURE_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        count_dead_letters(&pool, &config, &metrics).await;
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

/// Sets the pending dead-letter gauge of every consumed topic and the /health warning.
async fn count_dead_letters(pool: &Pool, config: &ConsumerConfig, metrics: &Metrics) {
    let (database, counts) = match dead_letters::pending(pool, &config.name).await {
        Ok(counts) => counts,
        Err(e) => return tracing::debug!(error = %e, "counting dead letters failed"),
    };
    let mut total = 0;
    for topic in &config.topics {
        let n = counts.iter().find(|(t, _)| t == topic).map_or(0, |c| c.1);
        metrics.dead_letters_pending(topic, n);
        total += n;
    }
    metrics.set_warning((total > 0).then(|| {
        format!(
            "warning: {total} dead letters in {database}.dead_letters; inspect and run `{} replay-dead-letters`",
            metrics.service()
        )
    }));
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
    let mut handled = 0_u64;
    // Offsets of applied batches not yet committed: committed together every COMMIT_EVERY (a crash in between only
    // redelivers messages whose positions are recorded, which are skipped).
    let mut uncommitted: HashMap<(String, i32), i64> = HashMap::new();
    let mut last_commit = Instant::now();
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
    loop {
        let first = tokio::select! {
            biased; // a shutdown wins over more messages
            _ = shutdown.cancelled() => {
                commit(consumer, &mut uncommitted, committed, CommitMode::Sync);
                return Ok(());
            }
            r = tokio::time::timeout(COMMIT_EVERY, consumer.recv()) => r,
        };
        let mut received = Vec::new();
        match first {
            Err(_) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "consumer error"),
            Ok(Ok(m)) => received.push(m.detach()),
        }
        if !received.is_empty() {
            let until = tokio::time::Instant::now() + config.batch_linger;
            while received.len() < config.batch_max {
                match tokio::time::timeout_at(until, consumer.recv()).await {
                    Ok(Ok(m)) => received.push(m.detach()),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "consumer error");
                        break;
                    }
                    Err(_) => break,
                }
            }
            // A tombstone (no payload) follows its delete, which carries the change: only its offset counts.
            let batch: Vec<Message> = received
                .iter()
                .filter_map(|m| {
                    let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
                    Some(Message::new(m.topic(), m.partition(), m.offset(), &key, m.payload()?.to_vec(), None))
                })
                .collect();
            if !batch.is_empty() && !apply_until_accepted(pool, config, handler.as_ref(), &batch, metrics, shutdown, &mut backoff).await {
                commit(consumer, &mut uncommitted, committed, CommitMode::Sync);
                return Ok(()); // shut down while retrying: the batch is redelivered after the next start
            }
            handled += received.len() as u64;
            if config.stop_before_offset_commit.is_some_and(|n| handled >= n) {
                tracing::warn!(messages = handled, "stopping before the offset commit (fault injection)");
                return Ok(());
            }
            for m in &received {
                uncommitted.insert((m.topic().to_owned(), m.partition()), m.offset());
            }
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

/// Applies `batch`, retrying with backoff while the database refuses it; false when shut down meanwhile.
async fn apply_until_accepted<H: Handler>(
    pool: &Pool,
    config: &ConsumerConfig,
    handler: &H,
    batch: &[Message],
    metrics: &Metrics,
    shutdown: &CancellationToken,
    backoff: &mut Backoff,
) -> bool {
    loop {
        match apply_batch(pool, &config.name, handler, batch).await {
            Ok(outcomes) => {
                if backoff.attempts() > 0 {
                    tracing::info!(retries = backoff.attempts(), "the database accepts the batch again");
                    backoff.reset();
                }
                metrics.set_problem(None);
                metrics.batch(batch.len());
                let mut dead = false;
                for (message, outcome) in batch.iter().zip(outcomes) {
                    match outcome {
                        Outcome::Applied => metrics.applied(&message.topic),
                        Outcome::Duplicate => metrics.duplicate(&message.topic),
                        Outcome::DeadLettered(_) => {
                            metrics.dead_letter(&message.topic);
                            dead = true;
                        }
                    }
                }
                if dead {
                    count_dead_letters(pool, config, metrics).await;
                }
                return true;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                let what = match mysql_error_kind(&e) {
                    MySqlErrorKind::Transient => "retrying",
                    _ => "retrying; this error does not clear by itself: fix the database (schema, privileges)",
                };
                tracing::warn!(error = %e, retry_in = ?delay, attempt = backoff.attempts(), events = batch.len(), "the database refuses a batch; {what}");
                metrics.apply_retry();
                metrics.set_problem(Some(format!(
                    "database refuses the consumer's batch ({what}, attempt {}; offsets not committed): {e}",
                    backoff.attempts()
                )));
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(delay) => {}
                }
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
