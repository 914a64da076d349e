//! Reading topics from the beginning, with a deadline.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message as _};

use crate::unique_name;

/// One consumed record.
#[derive(Debug, Clone)]
pub struct Message {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Key, parsed as JSON (`Null` when absent).
    pub key: serde_json::Value,
    /// Value, parsed as JSON; `None` for a tombstone.
    pub value: Option<serde_json::Value>,
}

/// A consumer in a group of its own, reading from the earliest offsets.
pub struct TopicReader {
    consumer: StreamConsumer,
    /// Everything read so far, in arrival order, each record once.
    pub messages: Vec<Message>,
    /// (topic, partition, offset) of every record read.
    seen: std::collections::HashSet<(String, i32, i64)>,
}

impl TopicReader {
    /// Subscribes to `topics` on `brokers`.
    pub fn new(brokers: &str, topics: &[&str]) -> Result<TopicReader> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", unique_name("reader"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("topic.metadata.refresh.interval.ms", "500")
            .create()?;
        consumer.subscribe(topics)?;
        Ok(TopicReader { consumer, messages: Vec::new(), seen: Default::default() })
    }

    /// Reads until `done(&messages)` holds, or fails after `timeout` showing how many were read.
    pub async fn read_until(&mut self, timeout: Duration, mut done: impl FnMut(&[Message]) -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !done(&self.messages) {
            if Instant::now() >= deadline {
                bail!("after {timeout:?}: read {} messages and the condition still fails", self.messages.len());
            }
            if let Ok(msg) = tokio::time::timeout(Duration::from_millis(200), self.consumer.recv()).await {
                let msg = match msg {
                    Ok(msg) => msg,
                    // A topic the producer has not created yet: keep polling until it exists.
                    Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition) => continue,
                    Err(e) => return Err(e.into()),
                };
                // A rebalance (a subscribed topic appearing) rewinds uncommitted partitions: skip what was read.
                let at = (msg.topic().to_owned(), msg.partition(), msg.offset());
                if !self.seen.insert(at) {
                    continue;
                }
                let parse = |b: Option<&[u8]>| b.map(|b| serde_json::from_slice(b).unwrap_or(serde_json::Value::Null));
                self.messages.push(Message {
                    topic: msg.topic().to_owned(),
                    partition: msg.partition(),
                    offset: msg.offset(),
                    key: parse(msg.key()).unwrap_or(serde_json::Value::Null),
                    value: parse(msg.payload()),
                });
            }
        }
        Ok(())
    }

    /// Reads until `n` non-tombstone messages arrived.
    pub async fn read_events(&mut self, n: usize, timeout: Duration) -> Result<()> {
        self.read_until(timeout, |m| m.iter().filter(|m| m.value.is_some()).count() >= n).await
    }

    /// The change events (non-tombstones) read so far.
    pub fn events(&self) -> Vec<&serde_json::Value> {
        self.messages.iter().filter_map(|m| m.value.as_ref()).collect()
    }
}
