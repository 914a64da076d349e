//! End-to-end lag and `caught_up`, from the sources' heartbeats. Pure logic: the runtime feeds it what was applied
//! and what arrived, the HTTP layer asks it for a report with the sources' current positions.
//!
//! A [`Heartbeat`] of a source says that every change the source committed before `file:pos` lies in its topics
//! below the heartbeat's watermarks. Once the offsets the view has written to ClickHouse (with several instances in
//! one group: also the group's committed offsets, see [`crate::group`]) reach the watermarks of the topics it
//! consumes, the heartbeat is *covered*: the report holds every change of that source up to `file:pos`,
//! and is current as of the heartbeat's `as_of_ms`. Watermarks only grow from one heartbeat of a source to the next,
//! so the covered heartbeats of a source are always the oldest pending ones.
//!
//! - Lag of a source = now - the newer of the newest applied commit time and the newest covered heartbeat's
//!   `as_of_ms`. Idle sources keep sending heartbeats, so the lag stays true; when the capture or the view stops,
//!   nothing new is covered and the lag grows with the outage.
//! - A source is caught up when its current binlog position (read when the request arrives) is at or before the
//!   newest covered position, and that heartbeat is younger than the heartbeat timeout. Positions compare only
//!   within one epoch (`Heartbeat::epoch`, raised by the capture when the source's positions restart lower): while
//!   a heartbeat of a newer epoch than the covered one is pending, the source is not caught up. The whole view is caught up
//!   when every configured source is, and every topic the view consumes is accounted for by some configured
//!   source's watermarks (or does not exist yet), so a change cannot hide in a topic no heartbeat speaks for.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use cdc_contract::{position_order, Heartbeat, NextOffsets};
use serde::Serialize;

/// Pending heartbeats kept per source; older ones are dropped first (a newer covered heartbeat supersedes them).
const MAX_PENDING: usize = 1000;

/// What the view has applied and which heartbeats that covers.
#[derive(Debug, Default)]
pub struct Coverage {
    /// The change topics the view consumes.
    topics: HashSet<String>,
    /// Per topic, per partition: the next offset after what is written to ClickHouse.
    applied: NextOffsets,
    /// Heartbeats not yet covered, per source, oldest first.
    pending: HashMap<String, VecDeque<Heartbeat>>,
    /// The newest covered heartbeat per source.
    covered: HashMap<String, Heartbeat>,
    /// The newest commit time applied per source, ms.
    newest_commit: HashMap<String, i64>,
}

/// A binlog position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Position {
    pub file: String,
    pub pos: u64,
}

/// What the view has applied of a source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppliedPosition {
    /// The newest covered position (null until a heartbeat is covered).
    pub file: Option<String>,
    pub pos: Option<u64>,
    /// Commit time of the newest change applied, ms.
    pub commit_ms: Option<i64>,
    /// The view holds every change of the source up to this time, ms (the newest covered heartbeat).
    pub as_of_ms: Option<i64>,
}

/// One source in [`LagReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceLag {
    pub source: String,
    /// End-to-end lag, ms; null until anything of the source was applied or covered.
    pub lag_ms: Option<i64>,
    pub caught_up: bool,
    pub applied: AppliedPosition,
    /// The source's binlog position when the request arrived.
    pub current: Option<Position>,
    /// Why the source is not caught up, when that is not just "behind".
    pub error: Option<String>,
}

/// The answer of `GET /lag`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LagReport {
    pub now_ms: i64,
    /// Every change committed in every configured source before the request is visible in the report.
    pub caught_up: bool,
    pub sources: Vec<SourceLag>,
    /// Problems that concern no single source (a topic without watermarks, no sources configured).
    pub errors: Vec<String>,
}

impl Coverage {
    /// Coverage of the view consuming `topics`.
    pub fn new<'a>(topics: impl IntoIterator<Item = &'a str>) -> Coverage {
        Coverage { topics: topics.into_iter().map(str::to_owned).collect(), ..Coverage::default() }
    }

    /// Records that everything of `topic`'s `partition` below `next` is in ClickHouse.
    pub fn applied_to(&mut self, topic: &str, partition: i32, next: i64) {
        self.applied.advance(topic, partition, next);
    }

    /// Records a written batch: its offsets (the last offset per partition) and newest commit times; settles.
    pub fn written<'a>(
        &mut self,
        last_offsets: impl IntoIterator<Item = (&'a str, i32, i64)>,
        newest_commit: &HashMap<String, i64>,
    ) {
        for (topic, partition, offset) in last_offsets {
            self.applied_to(topic, partition, offset + 1);
        }
        for (source, ms) in newest_commit {
            let entry = self.newest_commit.entry(source.clone()).or_insert(0);
            *entry = (*entry).max(*ms);
        }
        self.settle();
    }

    /// Adds a heartbeat; settles.
    pub fn heartbeat(&mut self, beat: Heartbeat) {
        let pending = self.pending.entry(beat.source.clone()).or_default();
        if pending.len() >= MAX_PENDING {
            pending.pop_front();
        }
        pending.push_back(beat);
        self.settle();
    }

    /// Moves every covered pending heartbeat to `covered`.
    fn settle(&mut self) {
        for (source, pending) in &mut self.pending {
            while let Some(front) = pending.front() {
                if !self.applied.reaches(&front.watermarks, |topic| self.topics.contains(topic)) {
                    break;
                }
                let beat = pending.pop_front().expect("front exists");
                self.covered.insert(source.clone(), beat);
            }
        }
    }

    /// Lag of `source` at `now_ms`, ms.
    pub fn lag_ms(&self, source: &str, now_ms: i64) -> Option<i64> {
        let commit = self.newest_commit.get(source).copied();
        let as_of = self.covered.get(source).map(|b| b.as_of_ms);
        commit.max(as_of).map(|t| (now_ms - t).max(0))
    }

    /// The newest epoch among `source`'s pending heartbeats, if it is above `epoch`.
    fn newer_epoch(&self, source: &str, epoch: u32) -> Option<u32> {
        self.pending.get(source)?.iter().map(|b| b.epoch).max().filter(|&e| e > epoch)
    }

    /// Every source the view has heard of, by events or heartbeats.
    pub fn sources(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.newest_commit.keys().chain(self.covered.keys()).chain(self.pending.keys()).cloned().collect();
        names.sort();
        names.dedup();
        names
    }

    /// The report at `now_ms` given each configured source's current position (or why it is unknown), the
    /// heartbeat timeout and the view's topics that exist on the broker.
    pub fn report(
        &self,
        now_ms: i64,
        current: &BTreeMap<String, Result<Position, String>>,
        heartbeat_timeout_ms: i64,
        existing_topics: &HashSet<String>,
    ) -> LagReport {
        let mut names: Vec<String> = current.keys().cloned().collect();
        names.extend(self.sources());
        names.sort();
        names.dedup();
        let mut errors = Vec::new();
        if current.is_empty() {
            errors.push("no sources configured ([[sources]] in the view's configuration): caught_up cannot be known".into());
        }
        let sources: Vec<SourceLag> = names
            .into_iter()
            .map(|name| {
                let covered = self.covered.get(&name);
                let commit = self.newest_commit.get(&name).copied();
                let applied = AppliedPosition {
                    file: covered.map(|b| b.file.clone()),
                    pos: covered.map(|b| b.pos),
                    commit_ms: commit.max(covered.map(|b| b.last_commit_ts_ms).filter(|&t| t > 0)),
                    as_of_ms: covered.map(|b| b.as_of_ms),
                };
                let (current, error, caught_up) = match current.get(&name) {
                    None => (None, Some("not configured in the view's [[sources]]".to_owned()), false),
                    Some(Err(e)) => (None, Some(e.clone()), false),
                    Some(Ok(position)) => {
                        let (caught_up, error) = match covered {
                            None => (false, Some("no heartbeat of this source is applied yet".to_owned())),
                            Some(b) if now_ms - b.as_of_ms > heartbeat_timeout_ms => (
                                false,
                                Some(format!(
                                    "the newest applied heartbeat is {} s old: is the capture running?",
                                    (now_ms - b.as_of_ms) / 1000
                                )),
                            ),
                            // The server's position is in the newest epoch's binlog history; a covered
                            // position of an older epoch cannot be compared with it.
                            Some(b) if self.newer_epoch(&name, b.epoch).is_some() => (
                                false,
                                Some(format!(
                                    "the source's binlog positions restarted (epoch {}): no heartbeat of the new \
                                     epoch is applied yet",
                                    self.newer_epoch(&name, b.epoch).unwrap_or_default()
                                )),
                            ),
                            Some(b) => match (position_order(&b.file, b.pos), position_order(&position.file, position.pos)) {
                                (Some(applied), Some(now)) => (applied >= now, None),
                                _ => (false, Some(format!("binlog file names {:?}, {:?} cannot be ordered", b.file, position.file))),
                            },
                        };
                        (Some(position.clone()), error, caught_up)
                    }
                };
                SourceLag { lag_ms: self.lag_ms(&name, now_ms), source: name, caught_up, applied, current, error }
            })
            .collect();
        let mut topics: Vec<&String> = self.topics.iter().collect();
        topics.sort();
        for topic in topics {
            let accounted = current
                .keys()
                .filter_map(|name| self.covered.get(name))
                .any(|beat| beat.watermarks.contains_key(topic.as_str()));
            if !accounted && existing_topics.contains(topic.as_str()) {
                errors.push(format!("topic {topic} has no watermark from any configured source"));
            }
        }
        let caught_up =
            errors.is_empty() && sources.iter().filter(|s| current.contains_key(&s.source)).all(|s| s.caught_up);
        LagReport { now_ms, caught_up, sources, errors }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "shop.orders.orders";

    fn beat(pos: u64, as_of_ms: i64, marks: &[i64]) -> Heartbeat {
        Heartbeat {
            source: "orders".into(),
            server_id: 3,
            epoch: 0,
            file: "binlog.000002".into(),
            pos,
            gtid_set: String::new(),
            last_commit_ts_ms: 0,
            as_of_ms,
            idle: true,
            ts_ms: as_of_ms,
            watermarks: [(T.to_string(), marks.to_vec()), ("shop.orders.other".to_string(), vec![99])].into(),
        }
    }

    fn current(pos: u64) -> BTreeMap<String, Result<Position, String>> {
        [("orders".to_string(), Ok(Position { file: "binlog.000002".into(), pos }))].into()
    }

    fn existing() -> HashSet<String> {
        [T.to_string()].into()
    }

    #[test]
    fn a_heartbeat_counts_once_the_written_offsets_reach_its_watermarks() {
        let mut c = Coverage::new([T]);
        c.heartbeat(beat(500, 1_000, &[3, 0, 2]));
        assert_eq!(c.lag_ms("orders", 5_000), None);
        c.written([(T, 0, 2)], &HashMap::new()); // partition 0 up to offset 2: next 3; partition 2 still missing
        assert!(!c.report(1_500, &current(500), 10_000, &existing()).caught_up);
        c.written([(T, 2, 1)], &[("orders".to_string(), 900)].into());
        let r = c.report(1_500, &current(500), 10_000, &existing());
        assert!(r.caught_up, "{r:?}");
        // Topics the view does not consume ("other") do not matter; lag counts from the heartbeat's as_of.
        assert_eq!(r.sources[0].lag_ms, Some(500));
        assert_eq!(r.sources[0].applied.pos, Some(500));
    }

    #[test]
    fn a_source_is_behind_when_its_binlog_moved_on_or_its_heartbeats_stopped() {
        let mut c = Coverage::new([T]);
        c.heartbeat(beat(500, 1_000, &[1]));
        c.written([(T, 0, 0)], &HashMap::new());
        assert!(c.report(1_000, &current(500), 10_000, &existing()).caught_up);
        // A commit after the covered position.
        assert!(!c.report(1_000, &current(501), 10_000, &existing()).caught_up);
        // The same position but no heartbeat for longer than the timeout: lag grows, not caught up.
        let r = c.report(12_000, &current(500), 10_000, &existing());
        assert!(!r.caught_up);
        assert_eq!(r.sources[0].lag_ms, Some(11_000));
        assert!(r.sources[0].error.as_deref().unwrap().contains("capture running"));
        // An unreachable source.
        let down = [("orders".to_string(), Err("connection refused".to_string()))].into();
        assert!(!c.report(1_000, &down, 10_000, &existing()).caught_up);
    }

    #[test]
    fn newer_heartbeats_supersede_older_ones_and_unaccounted_topics_block_caught_up() {
        let mut c = Coverage::new([T, "shop.users.users"]);
        c.heartbeat(beat(400, 900, &[1]));
        c.heartbeat(beat(500, 1_000, &[2]));
        c.heartbeat(beat(600, 1_100, &[5]));
        c.written([(T, 0, 1)], &HashMap::new());
        let r = c.report(1_000, &current(500), 10_000, &existing());
        assert_eq!(r.sources[0].applied.pos, Some(500));
        assert!(r.caught_up);
        // shop.users.users exists but no configured source's heartbeat speaks for it.
        let both: HashSet<String> = [T.to_string(), "shop.users.users".to_string()].into();
        let r = c.report(1_000, &current(500), 10_000, &both);
        assert!(!r.caught_up);
        assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
        // No sources configured: never caught up.
        assert!(!c.report(1_000, &BTreeMap::new(), 10_000, &existing()).caught_up);
    }

    /// After RESET MASTER the server's position (binlog.000001) is lower than a covered heartbeat of the old history
    /// (binlog.000002); once a heartbeat of the raised epoch arrives, the old one no longer says caught up.
    #[test]
    fn a_pending_heartbeat_of_a_newer_epoch_means_not_caught_up() {
        let mut c = Coverage::new([T]);
        c.heartbeat(beat(500, 1_000, &[1]));
        c.written([(T, 0, 0)], &HashMap::new());
        let reset: BTreeMap<String, Result<Position, String>> =
            [("orders".to_string(), Ok(Position { file: "binlog.000001".into(), pos: 300 }))].into();
        assert!(c.report(1_000, &reset, 10_000, &existing()).caught_up, "the view cannot know before a heartbeat");
        let mut newer = beat(300, 1_100, &[3]);
        (newer.epoch, newer.file) = (2, "binlog.000001".into());
        c.heartbeat(newer);
        let r = c.report(1_100, &reset, 10_000, &existing());
        assert!(!r.caught_up);
        assert!(r.sources[0].error.as_deref().unwrap().contains("epoch 2"), "{r:?}");
        c.written([(T, 0, 2)], &HashMap::new());
        assert!(c.report(1_100, &reset, 10_000, &existing()).caught_up);
    }
}
