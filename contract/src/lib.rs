//! The wire contract shared by the capture (producer) and the views and services (consumers).
//!
//! What it holds, and nothing else:
//! - [`ChangeEvent`], the Debezium-compatible envelope without the schema part (`before`, `after`, `source`, `op`,
//!   `ts_ms`, `transaction`), and [`Row`]/[`Value`], the column values inside it;
//! - [`Op`], the operation, mapped to `c`/`u`/`d`/`r`/`t` only in this module;
//! - [`TableId`] and [`topic_name`], the one function that names topics;
//! - [`Heartbeat`], a source's watermark in [`heartbeat_topic`] (`<prefix>.heartbeats`), and [`position_order`];
//! - [`SourceOrder`], a total order of positions within one source, which consumers use as a row version;
//! - [`ChangeEventRef`] and the [`json`] writers: the envelope encoded straight into a reused buffer from borrowed
//!   parts, byte for byte what serde_json writes for the owned types (producers use it; consumers deserialize).
//!
//! The crate does no I/O. A [`Row`] shares its column names with every other row of the same table, so encoding an
//! event allocates nothing but its output buffer.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

pub mod heartbeat;
pub mod json;

pub use heartbeat::{heartbeat_topic, position_order, Heartbeat, NextOffsets};
pub use json::{ChangeEventRef, ColumnKeys, EncodedSource, RowRef, SourceBlock, SourceRef, TransactionRef};

/// The operation an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// A row was inserted (`c`).
    Create,
    /// A row was updated (`u`).
    Update,
    /// A row was deleted (`d`).
    Delete,
    /// A row was read by a snapshot (`r`).
    Read,
    /// The table was truncated (`t`).
    Truncate,
}

impl Op {
    /// The envelope's code for this operation.
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Truncate => "t",
        }
    }

    /// Parses an envelope code.
    pub fn from_code(code: &str) -> Option<Op> {
        Some(match code {
            "c" => Op::Create,
            "u" => Op::Update,
            "d" => Op::Delete,
            "r" => Op::Read,
            "t" => Op::Truncate,
            _ => return None,
        })
    }
}

impl Serialize for Op {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Op {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = <&str>::deserialize(d).map_err(|_| de::Error::custom("op must be a string"))?;
        Op::from_code(code).ok_or_else(|| de::Error::custom(format!("unknown op {code:?}")))
    }
}

/// A captured table: database and table name as the source spells them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableId {
    /// Database (schema) name.
    pub database: String,
    /// Table name.
    pub table: String,
}

impl TableId {
    /// A table identity.
    pub fn new(database: impl Into<String>, table: impl Into<String>) -> TableId {
        TableId { database: database.into(), table: table.into() }
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.database, self.table)
    }
}

/// The topic of a captured table: `<prefix>.<database>.<table>`, e.g. `shop.orders.orders`.
pub fn topic_name(prefix: &str, table: &TableId) -> String {
    format!("{prefix}.{}.{}", table.database, table.table)
}

/// One column value, as the envelope carries it (Debezium's JSON encoding of MySQL types, DECIMAL as a string).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// BIT(1).
    Bool(bool),
    /// Signed integers, and temporal types encoded as numbers (DATE in days, TIME in µs, DATETIME in ms or µs).
    Int(i64),
    /// Unsigned integers; BIGINT UNSIGNED stays exact.
    UInt(u64),
    /// FLOAT and DOUBLE.
    Float(f64),
    /// Text, DECIMAL, ENUM, SET, JSON, TIMESTAMP (ISO-8601) and base64 of binary values.
    Text(String),
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::UInt(u) => s.serialize_u64(*u),
            Value::Float(f) if f.is_finite() => s.serialize_f64(*f),
            Value::Float(_) => s.serialize_unit(),
            Value::Text(t) => s.serialize_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar column value")
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_none<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
                Ok(Value::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
                Ok(Value::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
                Ok(match i64::try_from(v) {
                    Ok(i) => Value::Int(i),
                    Err(_) => Value::UInt(v),
                })
            }
            fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
                Ok(Value::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Value, E> {
                Ok(Value::Text(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Value, E> {
                Ok(Value::Text(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Int(i) => u64::try_from(*i).ok(),
            Value::UInt(u) => Some(*u),
            _ => None,
        }
    }

    /// The value as text, if it is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// The column values of one row image. Column names are shared by all rows of a table version.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Column names, in table order.
    pub columns: Arc<[Arc<str>]>,
    /// One value per column.
    pub values: Vec<Value>,
}

impl Row {
    /// The value of a column by name.
    pub fn get(&self, column: &str) -> Option<&Value> {
        self.columns.iter().position(|c| &**c == column).map(|i| &self.values[i])
    }
}

impl Serialize for Row {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.values.len()))?;
        for (name, value) in self.columns.iter().zip(&self.values) {
            map.serialize_entry(&**name, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Row {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Row;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a row object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Row, A::Error> {
                let mut columns = Vec::new();
                let mut values = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    columns.push(Arc::<str>::from(k));
                    values.push(v);
                }
                Ok(Row { columns: columns.into(), values })
            }
        }
        d.deserialize_map(V)
    }
}

/// Whether an event was read by a snapshot (`source.snapshot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotMarker {
    /// Streamed from the binlog.
    False,
    /// Read by a snapshot.
    True,
    /// The last row of a snapshot.
    Last,
}

/// Where an event comes from (`source`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Always "mysql".
    pub connector: String,
    /// The logical name of the source server (the capture's source name).
    pub name: String,
    /// Database of the row.
    pub db: String,
    /// Table of the row.
    pub table: String,
    /// server_id of the server that wrote the event.
    pub server_id: u32,
    /// The source's epoch: raised by the capture whenever binlog positions restart lower (another server, `RESET
    /// MASTER`, a new snapshot), so that row versions keep growing (see [`SourceOrder`]). 0 when absent (events
    /// written before epochs existed).
    #[serde(default)]
    pub epoch: u32,
    /// GTID of the transaction (`domain-server-seq` on MariaDB, `uuid:n` on MySQL); null when none.
    pub gtid: Option<String>,
    /// Binlog file of the transaction's first event (its GTID event).
    pub file: String,
    /// Position of the transaction's first event in `file`.
    pub pos: u64,
    /// Index of the row within the transaction's row events, from 0.
    pub row: u64,
    /// Commit time in ms since the epoch.
    pub ts_ms: i64,
    /// Snapshot marker.
    pub snapshot: SnapshotMarker,
}

/// The `transaction` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionBlock {
    /// The transaction's id (its GTID, or `file:pos` without one).
    pub id: String,
    /// Position of the event among all events of the transaction, from 1.
    pub total_order: u64,
    /// Position of the event among the transaction's events on the same table, from 1.
    pub data_collection_order: u64,
}

/// A change event (the Kafka record value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// Row image before the change (updates, deletes).
    pub before: Option<Row>,
    /// Row image after the change (inserts, updates, snapshot reads).
    pub after: Option<Row>,
    /// Where the change comes from.
    pub source: Source,
    /// The operation.
    pub op: Op,
    /// When the capture processed the event, ms since the epoch.
    pub ts_ms: i64,
    /// Transaction metadata; null for snapshot reads.
    pub transaction: Option<TransactionBlock>,
}

/// A position's total order within one source, usable as a row version by consumers: later positions compare
/// greater. Built from the source's epoch, the binlog file's numeric suffix, the transaction's offset and the row
/// index.
///
/// The epoch is an offset added to the file's sequence number. Within one epoch positions order as the server
/// writes them. When positions restart lower (`RESET MASTER` starts again at file 1, another server has other file
/// numbers, a new snapshot), the capture raises the epoch so that `epoch + file_seq` of every later event is above
/// that of every event published before (see the capture's `epoch` module). So the derived order
/// `(epoch + file_seq, pos, row)` and the lexicographic order `(epoch, file_seq, pos, row)` agree on every event a
/// source has published, and [`SourceOrder::packed`] keeps that order in one `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SourceOrder {
    /// The source's epoch (`source.epoch`).
    #[serde(default)]
    pub epoch: u32,
    /// Numeric suffix of the binlog file (`binlog.000042` -> 42).
    pub file_seq: u32,
    /// Offset of the transaction in that file.
    pub pos: u64,
    /// Row index within the transaction.
    pub row: u64,
}

/// The largest `epoch + file_seq` a row version can hold (16 bits).
pub const MAX_EPOCH_FILE: u64 = 0xffff;

impl SourceOrder {
    /// The order of an event's source coordinates; `None` when the file name has no numeric suffix.
    pub fn of(source: &Source) -> Option<SourceOrder> {
        let file_seq = file_seq(&source.file)?;
        Some(SourceOrder { epoch: source.epoch, file_seq, pos: source.pos, row: source.row })
    }

    /// `epoch + file_seq`: the file's place in the source's history across epochs (the version's top 16 bits
    /// while it stays at or below [`MAX_EPOCH_FILE`]).
    pub fn epoch_file(self) -> u64 {
        u64::from(self.epoch) + u64::from(self.file_seq)
    }

    /// A single number with the same order, for storage as a ClickHouse UInt64 version:
    /// `(epoch + file_seq) << 48 + pos << 16 + row`. The row index is added, not masked, so a transaction with
    /// more than 65,536 rows stays ordered: its rows only borrow from the offset bits, and the next transaction
    /// starts at a higher offset by at least its size in bytes. Exact while files stay under 4 GiB and
    /// `epoch + file_seq` at or below [`MAX_EPOCH_FILE`] (the capture refuses to go beyond).
    pub fn packed(self) -> u64 {
        ((self.epoch_file() & MAX_EPOCH_FILE) << 48)
            .wrapping_add((self.pos & 0xffff_ffff) << 16)
            .wrapping_add(self.row)
    }
}

/// The numeric suffix of a binlog file name (`binlog.000042` -> 42), which orders the files of one server.
pub fn file_seq(file: &str) -> Option<u32> {
    file.rsplit('.').next()?.parse().ok()
}

impl ChangeEvent {
    /// The row version of this event within its source, derived from its position only: later changes of a key
    /// have greater versions. Snapshot reads all share the snapshot's position P (each key is read once) and get
    /// `P << 16`; streamed events count their row from 1, so even the first row of a transaction that begins
    /// exactly at P is newer than every snapshot read.
    pub fn version(&self) -> Option<u64> {
        let mut order = SourceOrder::of(&self.source)?;
        order.row = if self.op == Op::Read { 0 } else { order.row + 1 };
        Some(order.packed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, Value)]) -> Row {
        Row {
            columns: pairs.iter().map(|(k, _)| Arc::<str>::from(*k)).collect::<Vec<_>>().into(),
            values: pairs.iter().map(|(_, v)| v.clone()).collect(),
        }
    }

    #[test]
    fn envelope_round_trips_and_keeps_unsigned_exact() {
        let event = ChangeEvent {
            before: None,
            after: Some(row(&[
                ("id", Value::UInt(u64::MAX)),
                ("price", Value::Text("12.30".into())),
                ("n", Value::Int(-5)),
                ("x", Value::Null),
            ])),
            source: Source {
                connector: "mysql".into(),
                name: "orders".into(),
                db: "orders".into(),
                table: "orders".into(),
                server_id: 3,
                epoch: 7,
                gtid: Some("0-3-17".into()),
                file: "binlog.000002".into(),
                pos: 1234,
                row: 0,
                ts_ms: 1_700_000_000_000,
                snapshot: SnapshotMarker::False,
            },
            op: Op::Create,
            ts_ms: 1_700_000_000_123,
            transaction: Some(TransactionBlock { id: "0-3-17".into(), total_order: 1, data_collection_order: 1 }),
        };
        let json = serde_json::to_string(&event).unwrap();
        assert!(json.contains(r#""id":18446744073709551615"#), "{json}");
        assert!(json.contains(r#""op":"c""#), "{json}");
        assert!(json.contains(r#""snapshot":"false""#), "{json}");
        let back: ChangeEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn ops_map_to_codes_and_back() {
        for op in [Op::Create, Op::Update, Op::Delete, Op::Read, Op::Truncate] {
            assert_eq!(Op::from_code(op.code()), Some(op));
        }
        assert_eq!(Op::from_code("x"), None);
    }

    #[test]
    fn topic_names_follow_the_contract() {
        assert_eq!(topic_name("shop", &TableId::new("orders", "order_lines")), "shop.orders.order_lines");
    }

    /// Regression: the first row of the first transaction after a snapshot had the snapshot reads' version, so
    /// a view could keep the snapshot's older row instead of that change.
    #[test]
    fn a_change_at_the_snapshot_position_is_newer_than_the_snapshot_read() {
        let json = |op: &str, row: u64| {
            format!(
                r#"{{"before":null,"after":{{"id":1}},"source":{{"connector":"mysql","name":"s","db":"d","table":"t",
                "server_id":1,"gtid":null,"file":"binlog.000001","pos":500,"row":{row},"ts_ms":0,"snapshot":"false"}},
                "op":"{op}","ts_ms":0,"transaction":null}}"#
            )
        };
        let read: ChangeEvent = serde_json::from_str(&json("r", 7)).unwrap();
        let change: ChangeEvent = serde_json::from_str(&json("u", 0)).unwrap();
        assert!(change.version().unwrap() > read.version().unwrap());
    }

    #[test]
    fn source_order_is_monotonic_across_files_and_rows() {
        let at = |file: &str, pos, row| SourceOrder { epoch: 0, file_seq: file.parse().unwrap(), pos, row };
        let cases = [at("1", 900, 5), at("2", 4, 0), at("2", 4, 1), at("2", 4, 70_000), at("2", 500_000, 0), at("10", 4, 0)];
        for pair in cases.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(pair[0].packed() < pair[1].packed());
        }
    }

    /// Regression: after `RESET MASTER`, a failover or a new snapshot, positions restarted lower and every later
    /// change got a lower version than the old ones, so consumers ignored them. An epoch raised as the capture
    /// raises it (to at least `old epoch + old file_seq + 1 - new file_seq`) keeps both orders increasing.
    #[test]
    fn versions_grow_across_epochs_as_the_capture_raises_them() {
        let at = |epoch, file_seq, pos, row| SourceOrder { epoch, file_seq, pos, row };
        let cases = [
            at(0, 5, 900_000, 3),
            // RESET MASTER: files restart at 1, the epoch becomes 0 + 5.
            at(5, 1, 4, 0),
            at(5, 1, 256, 0),
            at(5, 2, 4, 0),
            // Failover to a replica whose files are numbered higher: the epoch still goes up by one.
            at(6, 40, 1_000, 0),
            // And back to a server at file 3: 6 + 40 + 1 - 3.
            at(44, 3, 4, 0),
            // A new snapshot on the same file: one more.
            at(45, 3, 4, 0),
        ];
        for pair in cases.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?}");
            assert!(pair[0].packed() < pair[1].packed(), "{pair:?}");
        }
    }

    #[test]
    fn events_without_an_epoch_read_as_epoch_zero() {
        let json = |epoch: &str| {
            format!(
                r#"{{"before":null,"after":{{"id":1}},"source":{{"connector":"mysql","name":"s","db":"d","table":"t",
                "server_id":1,{epoch}"gtid":null,"file":"binlog.000003","pos":500,"row":0,"ts_ms":0,"snapshot":"false"}},
                "op":"u","ts_ms":0,"transaction":null}}"#
            )
        };
        let old: ChangeEvent = serde_json::from_str(&json("")).unwrap();
        assert_eq!(old.source.epoch, 0);
        let new: ChangeEvent = serde_json::from_str(&json(r#""epoch":2,"#)).unwrap();
        assert_eq!(new.source.epoch, 2);
        assert_eq!(new.version().unwrap(), old.version().unwrap() + (2 << 48));
    }
}
