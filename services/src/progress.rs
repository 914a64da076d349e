//! How far the catalog has applied the orders topic, in the orders database's commit time, and the rule that lets a
//! reservation expire.
//!
//! A heartbeat of the orders source ([`Heartbeat`]) says: every change committed before its position lies in the
//! source's topics below its watermarks, and the source is covered up to `as_of_ms`. Once the offsets the catalog's
//! consumer group has *committed* on the orders topic reach those watermarks (a consumer commits an offset only after
//! the database transaction of the messages before it), every change of the orders database committed before
//! `as_of_ms` is applied in the catalog's database. [`run`] follows the heartbeats and stores that time in
//! `known_progress.covered_ms`; it advances while the orders database is busy (heartbeats at the end of
//! transactions) and while it is idle (the server's heartbeats).
//!
//! [`may_expire`] then allows an expiry only for an order the catalog knows as `PENDING` at a covered time later
//! than the order's `pending_since_ms` plus the TTL, both in the orders database's clock: since the orders service
//! confirms only within the pending timeout of the order's creation, and the TTL is longer, a confirmation would
//! have been applied before that point. The argument, with its assumptions, is in docs/services.md.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::Result;
use cdc_contract::{Heartbeat, NextOffsets};
use mysql_async::prelude::*;
use mysql_async::Pool;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

/// Heartbeats kept while not covered; when more arrive the oldest are dropped (a newer one covers more).
const MAX_PENDING: usize = 64;

/// What the progress tracker follows.
#[derive(Debug, Clone)]
pub struct ProgressConfig {
    pub brokers: String,
    /// The consumer group whose committed offsets count as applied.
    pub group: String,
    /// `<prefix>.heartbeats`.
    pub heartbeats: String,
    /// The consumed topic whose progress is measured (`<prefix>.<orders db>.orders`).
    pub topic: String,
}

/// Why a reservation may not expire yet; `None` from [`may_expire`] means it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// The catalog's copy says the order is not PENDING (CONFIRMED: held until cancelled).
    NotPending,
    /// The catalog's own clock has not reached `expires_at`.
    NotDue,
    /// The orders stream is not applied far enough to know the order stayed PENDING past the TTL.
    NotConsumedFarEnough,
    /// An orders event of this consumer is pending in `dead_letters` (not replayed): it may be the one that confirmed the order.
    DeadLetters,
}

/// What [`may_expire`] decides on.
#[derive(Debug, Clone, Copy)]
pub struct ExpiryFacts<'a> {
    /// The order's status in `known_orders`.
    pub status: &'a str,
    /// `known_orders.pending_since_ms` (orders clock); `None` for reservations made before it was recorded.
    pub pending_since_ms: Option<i64>,
    /// `known_progress.covered_ms` of the orders topic (orders clock); `None` before the first covered heartbeat.
    pub covered_ms: Option<i64>,
    /// Whether the catalog's clock passed the reservation's `expires_at`.
    pub due: bool,
    /// Dead letters of the orders topic.
    pub dead_letters: u64,
    pub ttl_ms: i64,
}

/// Whether a held reservation may expire now (`None`), or what holds it.
pub fn may_expire(f: ExpiryFacts<'_>) -> Option<Hold> {
    if f.status != "PENDING" {
        return Some(Hold::NotPending);
    }
    if !f.due {
        return Some(Hold::NotDue);
    }
    if f.dead_letters > 0 {
        return Some(Hold::DeadLetters);
    }
    match (f.pending_since_ms, f.covered_ms) {
        (Some(since), Some(covered)) if covered > since.saturating_add(f.ttl_ms) => None,
        _ => Some(Hold::NotConsumedFarEnough),
    }
}

/// The newest of `pending` whose watermarks of `topic` `applied` reaches (its index).
pub fn newest_covered(pending: &VecDeque<Heartbeat>, applied: &NextOffsets, topic: &str) -> Option<usize> {
    pending.iter().rposition(|beat| applied.reaches(&beat.watermarks, |t| t == topic))
}

/// Follows the heartbeats of the orders topic's source until `shutdown`, recording in `known_progress` how far the
/// consumer group has applied that topic.
pub async fn run(pool: Pool, config: ProgressConfig, shutdown: CancellationToken) -> Result<()> {
    // Heartbeats are only useful fresh: start at the end, nothing to commit.
    let beats: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", format!("{}.progress", config.group))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .set("topic.metadata.refresh.interval.ms", "2000")
        .set("fetch.wait.max.ms", "100")
        .create()?;
    beats.subscribe(&[config.heartbeats.as_str()])?;
    // Only reads the main group's committed offsets: it never joins the group.
    let offsets: std::sync::Arc<BaseConsumer> = std::sync::Arc::new(
        ClientConfig::new().set("bootstrap.servers", &config.brokers).set("group.id", &config.group).create()?,
    );
    let mut pending: VecDeque<Heartbeat> = VecDeque::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // The tick before the heartbeats: with many sources heartbeats may always be ready, and the tick is rare.
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
            message = beats.recv() => match message {
                Ok(m) => {
                    let beat = m.payload().and_then(|p| serde_json::from_slice::<Heartbeat>(p).ok());
                    if let Some(beat) = beat.filter(|b| b.watermarks.contains_key(&config.topic)) {
                        if pending.len() == MAX_PENDING {
                            pending.pop_front();
                        }
                        pending.push_back(beat);
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, topic = %config.heartbeats, "heartbeat consumer error");
                    continue;
                }
            },
        }
        let Some(partitions) = pending.back().map(|b| b.watermarks[&config.topic].len()) else { continue };
        let applied = match committed(&offsets, &config.topic, partitions).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, group = %config.group, "cannot read the committed offsets; retrying");
                continue;
            }
        };
        if let Some(i) = newest_covered(&pending, &applied, &config.topic) {
            let beat = pending.drain(..=i).next_back().expect("a covered heartbeat");
            if let Err(e) = store(&pool, &config.topic, &beat).await {
                tracing::warn!(error = %e, "cannot record the consumed progress; retrying with the next heartbeat");
            }
        }
    }
}

/// The group's committed offsets of `topic`'s first `partitions` partitions (0 where none is committed).
async fn committed(consumer: &std::sync::Arc<BaseConsumer>, topic: &str, partitions: usize) -> Result<NextOffsets> {
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p as i32);
    }
    let c = consumer.clone();
    let list = tokio::task::spawn_blocking(move || c.committed_offsets(list, Duration::from_secs(5))).await??;
    let mut applied = NextOffsets::default();
    for e in list.elements() {
        if let Offset::Offset(next) = e.offset() {
            applied.advance(e.topic(), e.partition(), next);
        }
    }
    Ok(applied)
}

async fn store(pool: &Pool, topic: &str, beat: &Heartbeat) -> Result<()> {
    pool.get_conn()
        .await?
        .exec_drop(
            "INSERT INTO known_progress (topic, covered_ms, source_file, source_pos) VALUES (?, ?, ?, ?) \
             ON DUPLICATE KEY UPDATE source_file = IF(VALUES(covered_ms) > covered_ms, VALUES(source_file), source_file), \
             source_pos = IF(VALUES(covered_ms) > covered_ms, VALUES(source_pos), source_pos), \
             covered_ms = GREATEST(covered_ms, VALUES(covered_ms))",
            (topic, beat.as_of_ms, &beat.file, beat.pos),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: i64 = 10_000;

    fn facts(status: &str, since: Option<i64>, covered: Option<i64>, due: bool, dead: u64) -> ExpiryFacts<'_> {
        ExpiryFacts { status, pending_since_ms: since, covered_ms: covered, due, dead_letters: dead, ttl_ms: TTL }
    }

    #[test]
    fn a_reservation_expires_only_when_pending_is_known_at_a_consumed_point_past_the_ttl() {
        let cases = [
            // (status, pending since, covered, due, dead letters) -> decision
            (("PENDING", Some(1_000), Some(11_001), true, 0), None),
            (("PENDING", Some(1_000), Some(11_000), true, 0), Some(Hold::NotConsumedFarEnough)),
            (("PENDING", Some(1_000), None, true, 0), Some(Hold::NotConsumedFarEnough)),
            (("PENDING", None, Some(99_000), true, 0), Some(Hold::NotConsumedFarEnough)),
            (("PENDING", Some(1_000), Some(50_000), false, 0), Some(Hold::NotDue)),
            (("PENDING", Some(1_000), Some(50_000), true, 1), Some(Hold::DeadLetters)),
            // The crash after reserving: the catalog's copy is stale, but a CONFIRMED copy never expires.
            (("CONFIRMED", Some(1_000), Some(50_000), true, 0), Some(Hold::NotPending)),
            (("CANCELLED", Some(1_000), Some(50_000), true, 0), Some(Hold::NotPending)),
        ];
        for ((status, since, covered, due, dead), want) in cases {
            assert_eq!(may_expire(facts(status, since, covered, due, dead)), want, "{status} {since:?} {covered:?} {due} {dead}");
        }
    }

    fn beat(as_of_ms: i64, marks: &[i64]) -> Heartbeat {
        Heartbeat {
            source: "orders".into(),
            server_id: 1,
            epoch: 0,
            file: "binlog.000001".into(),
            pos: as_of_ms as u64,
            gtid_set: String::new(),
            last_commit_ts_ms: as_of_ms,
            as_of_ms,
            idle: true,
            ts_ms: as_of_ms,
            watermarks: [("o".to_string(), marks.to_vec()), ("other".to_string(), vec![99])].into(),
        }
    }

    #[test]
    fn the_newest_heartbeat_whose_watermarks_every_partition_reached_is_covered() {
        let pending: VecDeque<Heartbeat> = [beat(1, &[1, 0]), beat(2, &[2, 1]), beat(3, &[5, 1])].into();
        type Case = (&'static [(i32, i64)], Option<usize>);
        let cases: [Case; 5] = [
            (&[], None),
            (&[(0, 1)], Some(0)),
            (&[(0, 2)], Some(0)), // partition 1 not reached for the second
            (&[(0, 4), (1, 1)], Some(1)),
            (&[(0, 9), (1, 9)], Some(2)), // other topics' watermarks do not matter
        ];
        for (offsets, want) in cases {
            let mut applied = NextOffsets::default();
            for &(p, next) in offsets {
                applied.advance("o", p, next);
            }
            assert_eq!(newest_covered(&pending, &applied, "o"), want, "{offsets:?}");
        }
    }
}
