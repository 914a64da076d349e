//! The heartbeat record of `<prefix>.heartbeats`: a watermark of one source.
//!
//! A heartbeat says: every change the source committed before binlog position `file:pos` is in the source's change
//! topics below the offsets in `watermarks`. The capture publishes one only after the broker acknowledged every
//! record before that position, so a consumer whose applied offsets reach the watermarks of its topics has applied
//! every change of the source up to `file:pos`, and is current as of `as_of_ms`. Heartbeats come while the source is
//! idle (the server's heartbeat: nothing newer exists) and at most every heartbeat interval at the end of a
//! transaction while it is busy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The topic of the heartbeats of every source under `prefix`: `<prefix>.heartbeats`.
pub fn heartbeat_topic(prefix: &str) -> String {
    format!("{prefix}.heartbeats")
}

/// A source's watermark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The capture's source name.
    pub source: String,
    /// The source server's id.
    pub server_id: u32,
    /// The source's epoch at the position (see [`SourceOrder`](crate::SourceOrder)): `file:pos` of heartbeats of
    /// one epoch are positions of one binlog history; a heartbeat of a higher epoch is newer whatever its `file:pos`.
    /// 0 when absent (heartbeats written before epochs existed).
    #[serde(default)]
    pub epoch: u32,
    /// Binlog file of the position.
    pub file: String,
    /// Offset in `file`: every change committed before it is covered.
    pub pos: u64,
    /// GTID set executed up to the position (empty where the server has none).
    pub gtid_set: String,
    /// Commit time of the newest transaction before the position, ms since the epoch.
    pub last_commit_ts_ms: i64,
    /// The source is covered up to this wall-clock time: when the server reported nothing newer (idle), or the
    /// commit time of the transaction ending at the position (busy). ms since the epoch.
    pub as_of_ms: i64,
    /// True when the server reported the capture at its end of binlog (an idle heartbeat).
    pub idle: bool,
    /// When the capture published the heartbeat, ms since the epoch.
    pub ts_ms: i64,
    /// For each topic of the source: per partition (index = partition), the offset below which every record of the
    /// source before the position lies (the next offset to be written when the heartbeat was made).
    pub watermarks: BTreeMap<String, Vec<i64>>,
}

/// Per topic, per partition (index = partition): a next offset that only grows. The capture keeps the offsets it
/// has had acknowledged this way (the watermarks of its heartbeats), a consumer the offsets it has applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NextOffsets(pub BTreeMap<String, Vec<i64>>);

impl NextOffsets {
    /// Raises `topic`'s `partition` to `next` (no change if it is already there or beyond; negative partitions are
    /// ignored).
    pub fn advance(&mut self, topic: &str, partition: i32, next: i64) {
        let Ok(index) = usize::try_from(partition) else { return };
        let offsets = match self.0.get_mut(topic) {
            Some(o) => o,
            None => self.0.entry(topic.to_owned()).or_default(),
        };
        if offsets.len() <= index {
            offsets.resize(index + 1, 0);
        }
        offsets[index] = offsets[index].max(next);
    }

    /// Whether every offset of `marks` for the topics `relevant` accepts is reached here.
    pub fn reaches(&self, marks: &BTreeMap<String, Vec<i64>>, relevant: impl Fn(&str) -> bool) -> bool {
        marks.iter().filter(|(topic, _)| relevant(topic)).all(|(topic, marks)| {
            let done = self.0.get(topic.as_str()).map_or(&[][..], Vec::as_slice);
            marks.iter().enumerate().all(|(i, &mark)| mark <= done.get(i).copied().unwrap_or(0))
        })
    }
}

/// A binlog position's order within one epoch: the file's numeric suffix, then the offset. `None` when the file
/// has no numeric suffix. Positions of different epochs order by epoch first ([`Heartbeat::order`]).
pub fn position_order(file: &str, pos: u64) -> Option<(u32, u64)> {
    Some((crate::file_seq(file)?, pos))
}

impl Heartbeat {
    /// The heartbeat's position in the source's history: epoch, then file number and offset.
    pub fn order(&self) -> Option<(u32, u32, u64)> {
        let (file, pos) = position_order(&self.file, self.pos)?;
        Some((self.epoch, file, pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heartbeat_topic_is_the_prefix_and_heartbeats() {
        assert_eq!(heartbeat_topic("shop"), "shop.heartbeats");
    }

    #[test]
    fn positions_order_by_file_number_then_offset() {
        assert!(position_order("binlog.000009", 900) < position_order("binlog.000010", 4));
        assert!(position_order("binlog.000010", 4) < position_order("binlog.000010", 5));
        assert_eq!(position_order("binlog", 4), None);
    }

    #[test]
    fn heartbeats_order_by_epoch_first_and_old_ones_read_as_epoch_zero() {
        let text = |epoch: &str, file: &str| {
            format!(
                r#"{{"source":"s","server_id":1,{epoch}"file":"{file}","pos":9,"gtid_set":"","last_commit_ts_ms":0,
                "as_of_ms":0,"idle":true,"ts_ms":0,"watermarks":{{}}}}"#
            )
        };
        let old: Heartbeat = serde_json::from_str(&text("", "binlog.000009")).unwrap();
        let new: Heartbeat = serde_json::from_str(&text(r#""epoch":9,"#, "binlog.000001")).unwrap();
        assert_eq!(old.epoch, 0);
        assert!(old.order() < new.order());
    }

    #[test]
    fn next_offsets_only_grow_and_reach_marks_partition_by_partition() {
        let mut done = NextOffsets::default();
        done.advance("t", 2, 5);
        done.advance("t", 2, 3);
        done.advance("t", -1, 9);
        assert_eq!(done.0["t"], vec![0, 0, 5]);
        let marks: BTreeMap<String, Vec<i64>> = [("t".to_string(), vec![0, 0, 5]), ("u".to_string(), vec![1])].into();
        assert!(!done.reaches(&marks, |_| true));
        assert!(done.reaches(&marks, |t| t == "t"));
    }

    #[test]
    fn round_trips_as_json() {
        let beat = Heartbeat {
            source: "orders".into(),
            server_id: 3,
            epoch: 4,
            file: "binlog.000003".into(),
            pos: 1234,
            gtid_set: "0-3-10".into(),
            last_commit_ts_ms: 1_000,
            as_of_ms: 2_000,
            idle: true,
            ts_ms: 2_001,
            watermarks: [("shop.orders.orders".to_string(), vec![3, 0, 7])].into(),
        };
        let text = serde_json::to_string(&beat).unwrap();
        assert_eq!(serde_json::from_str::<Heartbeat>(&text).unwrap(), beat);
    }
}
