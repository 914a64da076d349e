//! The view's I/O: the Kafka consumer and [`ClickHouseViewStore`].
//!
//! Order of work is the guarantee: a batch of events is mapped by [`crate::model::apply`], written to ClickHouse,
//! and only after ClickHouse acknowledged every insert are the batch's Kafka offsets committed. A crash in between
//! redelivers the batch, whose rows carry the same versions: the effect is exactly once. A failed insert is retried
//! with backoff (nothing is committed meanwhile); an event that cannot be mapped goes to `dead_letters` with its
//! error and payload, so it is never silently dropped and never blocks the stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdc_contract::ChangeEvent;
use clickhouse::Client;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::model::{apply, Change, Entity, LineRow, OrderRow, ProductRow, UserRow};
use crate::schema;

/// A message that could not be applied.
#[derive(Debug, Clone, Serialize, clickhouse::Row)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub error: String,
    pub payload: String,
}

#[derive(Debug, Clone, Serialize, clickhouse::Row)]
struct FreshnessRow {
    source: String,
    commit_ms: u64,
    applied_ms: u64,
}

/// The effect of one batch, grouped by table.
#[derive(Debug, Default)]
pub struct Applied {
    pub users: Vec<UserRow>,
    pub products: Vec<ProductRow>,
    pub orders: Vec<OrderRow>,
    pub lines: Vec<LineRow>,
    /// Truncates, applied after the rows (rows newer than a truncate survive it by version).
    pub truncates: Vec<(Entity, u64)>,
    /// Newest commit time per source name.
    pub newest_commit_ms: HashMap<String, i64>,
    pub dead: Vec<DeadLetter>,
    /// Change events applied.
    pub events: usize,
}

impl Applied {
    /// Adds one message of `entity`'s topic.
    pub fn add(&mut self, entity: Entity, topic: &str, partition: i32, offset: i64, payload: &[u8]) {
        let dead = |error: String| DeadLetter {
            topic: topic.to_owned(),
            partition,
            offset,
            error,
            payload: String::from_utf8_lossy(payload).into_owned(),
        };
        let event: ChangeEvent = match serde_json::from_slice(payload) {
            Ok(e) => e,
            Err(e) => return self.dead.push(dead(format!("not a change event: {e}"))),
        };
        match apply(entity, &event) {
            Ok(change) => {
                self.events += 1;
                let newest = self.newest_commit_ms.entry(event.source.name.clone()).or_insert(0);
                *newest = (*newest).max(event.source.ts_ms);
                match change {
                    Change::User(r) => self.users.push(r),
                    Change::Product(r) => self.products.push(r),
                    Change::Order(r) => self.orders.push(r),
                    Change::Line(r) => self.lines.push(r),
                    Change::Truncate { entity, version } => self.truncates.push((entity, version)),
                }
            }
            Err(e) => self.dead.push(dead(e.to_string())),
        }
    }
}

/// Writes batches into the reporting database.
#[derive(Clone)]
pub struct ClickHouseViewStore {
    /// Client with the reporting database as default.
    client: Client,
    /// The reporting database.
    db: String,
}

impl ClickHouseViewStore {
    /// Connects and creates the schema if missing.
    pub async fn open(settings: &Settings) -> Result<ClickHouseViewStore, clickhouse::error::Error> {
        let c = &settings.config;
        let base = Client::default()
            .with_url(&c.clickhouse_url)
            .with_user(&c.clickhouse_user)
            .with_password(&c.clickhouse_password)
            .with_validation(false);
        for statement in schema::ddl(&c.database) {
            base.query(&statement).execute().await?;
        }
        Ok(ClickHouseViewStore { client: base.with_database(&c.database), db: c.database.clone() })
    }

    async fn insert<T>(&self, table: &str, rows: &[T]) -> Result<(), clickhouse::error::Error>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite,
    {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self.client.insert::<T>(table).await?;
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await
    }

    /// Writes a batch; returns once ClickHouse acknowledged every statement.
    pub async fn write(&self, batch: &Applied) -> Result<(), clickhouse::error::Error> {
        self.insert("users_state", &batch.users).await?;
        self.insert("products_state", &batch.products).await?;
        self.insert("orders_state", &batch.orders).await?;
        self.insert("lines_state", &batch.lines).await?;
        for (entity, version) in &batch.truncates {
            self.client.query(&schema::truncate(&self.db, entity.table(), *version)).execute().await?;
        }
        let now = cdc_now_ms() as u64;
        let fresh: Vec<FreshnessRow> = batch
            .newest_commit_ms
            .iter()
            .map(|(source, ms)| FreshnessRow { source: source.clone(), commit_ms: (*ms).max(0) as u64, applied_ms: now })
            .collect();
        self.insert("freshness_log", &fresh).await?;
        self.insert("dead_letters", &batch.dead).await
    }

    /// The client (for queries of tests and the lag endpoint).
    pub fn client(&self) -> &Client {
        &self.client
    }
}

fn cdc_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Consumes the four topics and applies them until `shutdown`.
pub async fn run(settings: Settings, store: ClickHouseViewStore, metrics: Arc<Metrics>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let c = &settings.config;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &c.brokers)
        .set("group.id", &c.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("topic.metadata.refresh.interval.ms", "2000")
        .create()?;
    let t = &settings.topics;
    let entities: HashMap<&str, Entity> = [
        (t.users.as_str(), Entity::User),
        (t.products.as_str(), Entity::Product),
        (t.orders.as_str(), Entity::Order),
        (t.lines.as_str(), Entity::Line),
    ]
    .into_iter()
    .collect();
    let topics: Vec<&str> = entities.keys().copied().collect();
    consumer.subscribe(&topics)?;
    tracing::info!(topics = ?topics, group = %c.group, "consuming");
    metrics.set_healthy(None);
    let mut committed: HashMap<(String, i32), i64> = HashMap::new();
    let mut last_lag_check = Instant::now();
    loop {
        let mut batch = Applied::default();
        let mut offsets: HashMap<(String, i32), i64> = HashMap::new();
        let mut deadline: Option<Instant> = None;
        while batch.events + batch.dead.len() < c.batch_max_events {
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            let received = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                r = tokio::time::timeout(wait, consumer.recv()) => r,
            };
            let message = match received {
                Err(_) => break, // the batch's wait is over
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    continue;
                }
                Ok(Ok(m)) => m,
            };
            deadline.get_or_insert_with(|| Instant::now() + c.batch_wait);
            offsets.insert((message.topic().to_owned(), message.partition()), message.offset());
            let Some(payload) = message.payload() else { continue }; // tombstones: the delete came before
            if let Some(&entity) = entities.get(message.topic()) {
                batch.add(entity, message.topic(), message.partition(), message.offset(), payload);
            }
        }
        let started = Instant::now();
        let mut backoff = Duration::from_millis(100);
        while let Err(e) = store.write(&batch).await {
            tracing::warn!(error = %e, retry_in = ?backoff, "clickhouse insert failed; retrying (offsets not committed)");
            metrics.set_healthy(Some(format!("clickhouse: {e}")));
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
        metrics.set_healthy(None);
        metrics.applied(&batch, started.elapsed());
        if !batch.dead.is_empty() {
            tracing::error!(count = batch.dead.len(), "events could not be applied; see the dead_letters table");
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in &offsets {
            list.add_partition_offset(topic, *partition, Offset::Offset(offset + 1))?;
        }
        if list.count() > 0 {
            consumer.commit(&list, CommitMode::Sync)?;
        }
        committed.extend(offsets);
        if last_lag_check.elapsed() >= Duration::from_secs(5) {
            // Consumer lag: the brokers' high watermarks against what is committed (a metadata round trip per
            // partition, so only every few seconds).
            last_lag_check = Instant::now();
            for ((topic, partition), offset) in &committed {
                let marks = tokio::task::block_in_place(|| consumer.fetch_watermarks(topic, *partition, Duration::from_secs(1)));
                if let Ok((_, high)) = marks {
                    metrics.consumer_lag(topic, *partition, (high - offset - 1).max(0));
                }
            }
        }
    }
}
