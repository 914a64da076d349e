//! Records larger than the producer's `message.max.bytes`, and the `oversized_records` policy. No I/O.
//!
//! librdkafka refuses a message whose key, value and record framing exceed `message.max.bytes` (1,000,000 by
//! default). Such a row would fail again after every restart, so the sink checks each record before it produces any
//! of its batch ([`fits`]) and then, by policy:
//!
//! - `fail`: the source stops with an [`Oversized`] error naming the table, key, binlog position, size, limit and
//!   the fixes. Nothing of its transaction is checkpointed, so raising the limit and restarting resumes right there.
//! - `truncate`: [`truncate`] replaces column values of the envelope, largest first, by the JSON string
//!   `"__cdc_oversized__:<bytes>"` (`<bytes>`: the size of the JSON value it replaces) until the record fits. The
//!   envelope stays valid JSON with every column present; primary key columns are never replaced (the key must stay
//!   true), so a record whose key alone is too large still fails.
//!
//! The check works on the encoded record, so it covers snapshot reads and streamed changes alike; the envelope is
//! parsed back only for an oversized record, which is rare.

use std::fmt;

use cdc_contract::json::write_value;
use cdc_contract::{ChangeEvent, Row, SnapshotMarker, Value};

use crate::transform::Record;

/// What a record costs beyond its key and value: librdkafka's largest record framing (36 bytes,
/// `RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD`) plus a record batch header (61 bytes), so the record also fits in a batch of
/// its own under a broker limit equal to `message.max.bytes`.
pub const RECORD_OVERHEAD: usize = 36 + 61;

/// The start of the marker that replaces an oversized value.
pub const MARKER_PREFIX: &str = "__cdc_oversized__:";

/// Bytes of a record's key and value.
pub fn record_bytes(record: &Record) -> usize {
    record.key.as_ref().map_or(0, Vec::len) + record.value.as_ref().map_or(0, Vec::len)
}

/// Whether the producer accepts `record` under `limit` (`message.max.bytes`).
pub fn fits(record: &Record, limit: usize) -> bool {
    record_bytes(record) + RECORD_OVERHEAD <= limit
}

/// A record too large to produce, for the error and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oversized {
    /// `database.table`, or the topic when the value is not a change event.
    pub table: String,
    /// The record key's JSON (shortened when long).
    pub key: String,
    /// Where the change comes from: the transaction's binlog position (and GTID), or the snapshot.
    pub position: String,
    /// Key plus value, bytes.
    pub size: usize,
    /// `message.max.bytes`.
    pub limit: usize,
    /// Whether replacing every value that may be replaced was not enough (policy `truncate`).
    pub after_truncation: bool,
}

impl fmt::Display for Oversized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Oversized { table, key, position, size, limit, .. } = self;
        write!(f, "the record of table {table} key {key} ({position}) is {size} bytes")?;
        if self.after_truncation {
            write!(f, " even with every non-key value replaced by a marker")?;
        }
        write!(
            f,
            ", over the producer's limit of {limit} bytes (message.max.bytes, less {RECORD_OVERHEAD} bytes of record \
             framing); raise \"message.max.bytes\" in [kafka.properties] to at least {needed} and the broker's \
             message.max.bytes (or the topic's max.message.bytes) with it",
            needed = size + RECORD_OVERHEAD,
        )?;
        if !self.after_truncation {
            write!(
                f,
                ", or set oversized_records = \"truncate\" to publish it with its largest values replaced by a marker"
            )?;
        }
        Ok(())
    }
}

/// Describes an oversized `record` (parsing its envelope for table and position).
pub fn describe(record: &Record, limit: usize) -> Oversized {
    let event = record.value.as_deref().and_then(|v| serde_json::from_slice::<ChangeEvent>(v).ok());
    let (table, position) = match &event {
        Some(e) => {
            let s = &e.source;
            let gtid = s.gtid.as_deref().map(|g| format!(", gtid {g}")).unwrap_or_default();
            let position = match s.snapshot {
                SnapshotMarker::False => format!("transaction at binlog position {}:{}{gtid}", s.file, s.pos),
                _ => format!("snapshot read, streaming from {}:{}", s.file, s.pos),
            };
            (format!("{}.{}", s.db, s.table), position)
        }
        None => (record.topic.to_string(), "not a change event".to_owned()),
    };
    let key = match &record.key {
        Some(key) => shorten(&String::from_utf8_lossy(key), 200),
        None => "(none)".to_owned(),
    };
    Oversized { table, key, position, size: record_bytes(record), limit, after_truncation: false }
}

fn shorten(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

/// Replaces values of `record`'s envelope by markers, largest first, until it fits under `limit`. Returns the
/// replaced columns (`before.c` / `after.c`), or the description of a record that still does not fit (its key is
/// too large, or too many values are), leaving `record` as it was.
pub fn truncate(record: &mut Record, limit: usize) -> Result<Vec<String>, Oversized> {
    let too_large = |record: &Record| Oversized { after_truncation: true, ..describe(record, limit) };
    let Some(mut event) = record.value.as_deref().and_then(|v| serde_json::from_slice::<ChangeEvent>(v).ok()) else {
        return Err(too_large(record));
    };
    let key_columns: Vec<String> = record
        .key
        .as_deref()
        .and_then(|k| serde_json::from_slice::<Row>(k).ok())
        .map(|row| row.columns.iter().map(|c| c.to_string()).collect())
        .unwrap_or_default();
    // (JSON size, image: 0 before / 1 after, column index)
    let mut candidates = Vec::new();
    let mut scratch = Vec::new();
    for (image, row) in [(0, &event.before), (1, &event.after)] {
        let Some(row) = row else { continue };
        for (i, (name, value)) in row.columns.iter().zip(&row.values).enumerate() {
            if key_columns.iter().any(|k| k == &**name) {
                continue;
            }
            scratch.clear();
            write_value(&mut scratch, value);
            candidates.push((scratch.len(), image, i));
        }
    }
    candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let key_len = record.key.as_ref().map_or(0, Vec::len);
    let mut size = record_bytes(record);
    let mut replaced = Vec::new();
    for (value_size, image, i) in candidates {
        if size + RECORD_OVERHEAD <= limit {
            break;
        }
        let marker = Value::Text(format!("{MARKER_PREFIX}{value_size}"));
        scratch.clear();
        write_value(&mut scratch, &marker);
        if scratch.len() >= value_size {
            continue;
        }
        size = size - value_size + scratch.len();
        let (side, row) = if image == 0 { ("before", &mut event.before) } else { ("after", &mut event.after) };
        let row = row.as_mut().expect("a candidate's image exists");
        replaced.push(format!("{side}.{}", row.columns[i]));
        row.values[i] = marker;
    }
    let value = event.to_json();
    if key_len + value.len() + RECORD_OVERHEAD > limit {
        return Err(too_large(record));
    }
    record.value = Some(value);
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cdc_contract::{ChangeEventRef, ColumnKeys, Op, RowRef, SourceBlock, SourceRef, TransactionRef};

    use super::*;
    use crate::transform::Route;

    /// A change event record of table `shop.docs` with primary key `id` and the given other columns.
    fn record(op: Op, before: Option<&[(&str, Value)]>, after: Option<&[(&str, Value)]>) -> Record {
        let columns: Vec<&str> = before.or(after).unwrap().iter().map(|(c, _)| *c).collect();
        let keys = ColumnKeys::new(&columns);
        let values = |row: &[(&str, Value)]| row.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>();
        let (before, after) = (before.map(values), after.map(values));
        let source = SourceRef {
            connector: "mysql",
            name: "src",
            db: "shop",
            table: "docs",
            server_id: 1,
            epoch: 0,
            gtid: Some("0-1-7"),
            file: "binlog.000003",
            pos: 1234,
            row: 0,
            ts_ms: 1,
            snapshot: SnapshotMarker::False,
        };
        let event = ChangeEventRef {
            before: before.as_deref().map(|v| RowRef::encoded(&keys, v)),
            after: after.as_deref().map(|v| RowRef::encoded(&keys, v)),
            source: SourceBlock::Fields(source),
            op,
            ts_ms: 2,
            transaction: Some(TransactionRef { id: "0-1-7", total_order: 1, data_collection_order: 1 }),
        };
        let mut value = Vec::new();
        event.write_json(&mut value);
        let image = after.as_deref().or(before.as_deref()).unwrap();
        let mut key = Vec::new();
        keys.write_object(&mut key, &[0], image);
        Record {
            topic: "shop.shop.docs".into(),
            route: Route::ByKey,
            key: Some(key),
            value: Some(value),
            op: Some((Arc::from("shop.docs"), op)),
        }
    }

    fn text(n: usize) -> Value {
        Value::Text("x".repeat(n))
    }

    fn event(record: &Record) -> ChangeEvent {
        serde_json::from_slice(record.value.as_ref().unwrap()).unwrap()
    }

    #[test]
    fn records_fit_up_to_the_limit_less_the_framing() {
        let r = record(Op::Create, None, Some(&[("id", Value::Int(1)), ("doc", text(10))]));
        let exact = record_bytes(&r) + RECORD_OVERHEAD;
        assert!(fits(&r, exact));
        assert!(!fits(&r, exact - 1));
    }

    /// Which values are replaced, by case: largest first, only as many as needed, never a key column, both images.
    #[test]
    fn truncation_replaces_the_largest_values_until_the_record_fits() {
        let small = || Value::Text("s".into());
        // The replaced columns, in order; `None`: the record cannot be made to fit.
        let cases: Vec<(&str, Record, usize, Option<Vec<&str>>)> = vec![
            (
                "one large column",
                record(Op::Create, None, Some(&[("id", Value::Int(1)), ("a", small()), ("doc", text(5000))])),
                2000,
                Some(vec!["after.doc"]),
            ),
            (
                "the largest first, then the next",
                record(Op::Create, None, Some(&[("id", Value::Int(1)), ("a", text(1500)), ("b", text(3000))])),
                1000,
                Some(vec!["after.b", "after.a"]),
            ),
            (
                "the largest alone is enough",
                record(Op::Create, None, Some(&[("id", Value::Int(1)), ("a", text(600)), ("b", text(3000))])),
                1200,
                Some(vec!["after.b"]),
            ),
            (
                "an update: both images",
                record(
                    Op::Update,
                    Some(&[("id", Value::Int(1)), ("doc", text(3000))]),
                    Some(&[("id", Value::Int(1)), ("doc", text(3001))]),
                ),
                2000,
                Some(vec!["after.doc", "before.doc"]),
            ),
            (
                "a delete: the before image",
                record(Op::Delete, Some(&[("id", Value::Int(1)), ("doc", text(3000))]), None),
                1500,
                Some(vec!["before.doc"]),
            ),
            (
                "a large key is never replaced",
                record(Op::Create, None, Some(&[("id", text(3000)), ("doc", small())])),
                1500,
                None,
            ),
        ];
        for (name, mut r, limit, want) in cases {
            let original = r.clone();
            let got = truncate(&mut r, limit);
            match want {
                Some(columns) => {
                    let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
                    assert_eq!(got.as_ref().ok(), Some(&columns), "{name}");
                    assert!(fits(&r, limit), "{name}: {} bytes", record_bytes(&r));
                    // The same envelope shape: every column still there, the key and the source unchanged.
                    let (before, after) = (event(&original), event(&r));
                    assert_eq!(r.key, original.key, "{name}");
                    assert_eq!(after.source, before.source, "{name}");
                    for (old, new) in [(&before.before, &after.before), (&before.after, &after.after)] {
                        assert_eq!(
                            old.as_ref().map(|r| r.columns.clone()),
                            new.as_ref().map(|r| r.columns.clone()),
                            "{name}"
                        );
                    }
                }
                None => {
                    let e = got.expect_err(name);
                    assert!(e.after_truncation && e.table == "shop.docs", "{name}: {e:?}");
                    assert_eq!(r.value, original.value, "{name}: left as it was");
                }
            }
        }
    }

    /// The marker is a JSON string naming the size of the JSON value it replaced (quotes included).
    #[test]
    fn the_marker_names_the_size_of_the_replaced_value() {
        let mut r = record(Op::Create, None, Some(&[("id", Value::Int(7)), ("doc", text(5000))]));
        truncate(&mut r, 1000).unwrap();
        let e = event(&r);
        assert_eq!(e.after.as_ref().unwrap().get("doc"), Some(&Value::Text("__cdc_oversized__:5002".into())));
        assert_eq!(e.after.as_ref().unwrap().get("id"), Some(&Value::Int(7)));
        // Valid JSON, and exactly the bytes serde_json writes for it.
        assert_eq!(serde_json::to_vec(&e).unwrap(), *r.value.as_ref().unwrap());
    }

    #[test]
    fn the_error_names_table_key_position_size_limit_and_fixes() {
        let r = record(Op::Create, None, Some(&[("id", Value::Int(42)), ("doc", text(5000))]));
        let e = describe(&r, 1000);
        let text = e.to_string();
        for part in [
            "table shop.docs",
            r#"key {"id":42}"#,
            "binlog position binlog.000003:1234, gtid 0-1-7",
            &format!("is {} bytes", record_bytes(&r)),
            "limit of 1000 bytes",
            "\"message.max.bytes\" in [kafka.properties]",
            "max.message.bytes",
            "oversized_records = \"truncate\"",
        ] {
            assert!(text.contains(part), "{part:?} missing from: {text}");
        }
    }
}
