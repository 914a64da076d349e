//! One batch of change events, mapped to the rows of each table ([`Applied`]): pure, no I/O.

use std::collections::HashMap;
use std::time::Instant;

use cdc_contract::{ChangeEvent, Heartbeat};
use serde::Serialize;

use crate::model::{apply, reaches_report, Change, Entity, LineRow, OrderRow, ProductRow, UserRow};
use crate::report::Keys;

/// A message that could not be applied.
#[derive(Debug, Clone, Serialize, clickhouse::Row)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub error: String,
    pub payload: String,
}

/// A row of `freshness_log`: the newest commit of a source in an applied batch, and when the batch was applied.
#[derive(Debug, Clone, Serialize, clickhouse::Row)]
pub struct FreshnessRow {
    pub source: String,
    pub commit_ms: u64,
    pub applied_ms: u64,
}

impl Applied {
    /// The freshness rows of this batch, applied at `applied_ms`.
    pub fn freshness(&self, applied_ms: i64) -> Vec<FreshnessRow> {
        self.newest_commit_ms
            .iter()
            .map(|(source, ms)| FreshnessRow {
                source: source.clone(),
                commit_ms: (*ms).max(0) as u64,
                applied_ms: applied_ms.max(0) as u64,
            })
            .collect()
    }
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
    /// The keys whose changes reach the report: the lines they reach are recomputed after the rows are written.
    pub reach: Keys,
    /// Newest commit time per source name.
    pub newest_commit_ms: HashMap<String, i64>,
    /// Commit time of every change event applied, per source name (for the end-to-end histogram).
    pub commit_ms: HashMap<String, Vec<i64>>,
    pub dead: Vec<DeadLetter>,
    /// Change events applied.
    pub events: usize,
    /// The oldest Kafka timestamp (ms) among the batch's messages, if they carry one.
    pub oldest_message_ms: Option<i64>,
    /// When the batch's first message was received, and the wall clock then (ms).
    pub first_received: Option<(Instant, i64)>,
}

/// Parses a message of the heartbeat topic; `None` (with a warning) for one that is not a heartbeat.
pub(crate) fn heartbeat(topic: &str, partition: i32, offset: i64, payload: &[u8]) -> Option<Heartbeat> {
    match serde_json::from_slice(payload) {
        Ok(beat) => Some(beat),
        Err(e) => {
            // Heartbeats of an older capture carry no watermarks: they cannot vouch for anything.
            tracing::warn!(topic, partition, offset, error = %e, "ignoring a heartbeat without watermarks");
            None
        }
    }
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
                match self.commit_ms.get_mut(&event.source.name) {
                    Some(commits) => commits.push(event.source.ts_ms),
                    None => drop(self.commit_ms.insert(event.source.name.clone(), vec![event.source.ts_ms])),
                }
                let reaches = reaches_report(entity, &event);
                let reach = &mut self.reach;
                match change {
                    Change::User(r) => {
                        if reaches {
                            reach.users.insert(r.id);
                        }
                        self.users.push(r)
                    }
                    Change::Product(r) => {
                        if reaches {
                            reach.products.insert(r.id);
                        }
                        self.products.push(r)
                    }
                    Change::Order(r) => {
                        if reaches {
                            reach.orders.insert(r.id);
                        }
                        self.orders.push(r)
                    }
                    Change::Line(r) => {
                        reach.lines.insert(r.id);
                        self.lines.push(r)
                    }
                    Change::Truncate { entity, version } => {
                        reach.all = true;
                        self.truncates.push((entity, version))
                    }
                }
            }
            Err(e) => self.dead.push(dead(e.to_string())),
        }
    }
}
