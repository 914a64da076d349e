//! The envelope's JSON encoding, written straight into a caller's buffer.
//!
//! [`ChangeEventRef`] borrows every part of an event (row values, source names, the transaction id), so a producer
//! encodes an event without building an owned [`ChangeEvent`](crate::ChangeEvent) first: no per-event strings, and
//! the only allocation is the buffer, which the caller can reuse. The bytes are exactly what serde_json writes for
//! the owned types (same field order, same string escapes, same number formatting: numbers go through serde_json's
//! own formatter, non-finite floats become `null`); the tests hold both paths to that.

use std::io;
use std::sync::Arc;

use serde_json::ser::{CompactFormatter, Formatter};

use crate::{ChangeEvent, Op, Row, SnapshotMarker, Source, TransactionBlock, Value};

/// The `source` block, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceRef<'a> {
    /// Always "mysql".
    pub connector: &'a str,
    /// The logical name of the source server.
    pub name: &'a str,
    /// Database of the row.
    pub db: &'a str,
    /// Table of the row.
    pub table: &'a str,
    /// server_id of the server that wrote the event.
    pub server_id: u32,
    /// The source's epoch (see [`SourceOrder`](crate::SourceOrder)).
    pub epoch: u32,
    /// GTID of the transaction; `None` is written as null.
    pub gtid: Option<&'a str>,
    /// Binlog file of the transaction's first event.
    pub file: &'a str,
    /// Position of the transaction's first event in `file`.
    pub pos: u64,
    /// Index of the row within the transaction.
    pub row: u64,
    /// Commit time in ms since the epoch.
    pub ts_ms: i64,
    /// Snapshot marker.
    pub snapshot: SnapshotMarker,
}

/// The `transaction` block, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionRef<'a> {
    /// The transaction's id.
    pub id: &'a str,
    /// Position of the event among all events of the transaction, from 1.
    pub total_order: u64,
    /// Position of the event among the transaction's events on the same table, from 1.
    pub data_collection_order: u64,
}

/// One row image, borrowed: column names (plain or already encoded) and one value per column. Extra names or
/// values are not written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowRef<'a> {
    names: Names<'a>,
    values: &'a [Value],
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Names<'a> {
    Plain(&'a [Arc<str>]),
    Encoded(&'a ColumnKeys),
}

impl<'a> RowRef<'a> {
    /// A row whose column names are escaped as they are written.
    pub fn new(columns: &'a [Arc<str>], values: &'a [Value]) -> RowRef<'a> {
        RowRef { names: Names::Plain(columns), values }
    }

    /// A row whose column names were encoded once for their table (the fast path for many rows).
    pub fn encoded(keys: &'a ColumnKeys, values: &'a [Value]) -> RowRef<'a> {
        RowRef { names: Names::Encoded(keys), values }
    }

    /// Appends the row's JSON object to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self.names {
            Names::Plain(columns) => write_object(out, columns.iter().map(|c| &**c).zip(self.values)),
            Names::Encoded(keys) => {
                out.push(b'{');
                for (i, (key, value)) in keys.iter().zip(self.values).enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(key);
                    write_value(out, value);
                }
                out.push(b'}');
            }
        }
    }
}

/// The column names of one table version, each encoded once as a JSON object key with its colon (`"id":`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnKeys {
    /// All keys, back to back.
    text: Vec<u8>,
    /// Where each key ends in `text`.
    ends: Vec<usize>,
}

impl ColumnKeys {
    /// Encodes `columns`.
    pub fn new<S: AsRef<str>>(columns: &[S]) -> ColumnKeys {
        let mut keys = ColumnKeys::default();
        for name in columns {
            write_str(&mut keys.text, name.as_ref());
            keys.text.push(b':');
            keys.ends.push(keys.text.len());
        }
        keys
    }

    /// The encoded keys, in column order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.ends.iter().scan(0, |start, &end| {
            let key = &self.text[*start..end];
            *start = end;
            Some(key)
        })
    }

    /// The encoded key of column `i` (`"id":`), if there is one.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.text[start..end])
    }

    /// Appends a JSON object of the given columns of `values` to `out`, e.g. a record key `{"id":42}`. Columns
    /// without a key are skipped; missing values are written as null.
    pub fn write_object(&self, out: &mut Vec<u8>, columns: &[usize], values: &[Value]) {
        out.push(b'{');
        let mut first = true;
        for &i in columns {
            let Some(key) = self.get(i) else { continue };
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(key);
            write_value(out, values.get(i).unwrap_or(&Value::Null));
        }
        out.push(b'}');
    }
}

/// The `source` block of a [`ChangeEventRef`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SourceBlock<'a> {
    /// Every field, encoded as the event is written.
    Fields(SourceRef<'a>),
    /// Every field but `row` encoded once (see [`EncodedSource`]), and this event's `row`.
    Encoded(&'a EncodedSource, u64),
}

/// A `source` block with every field but `row` encoded, for the many events that share them (the rows of one
/// table in one transaction): writing it is two copies and one number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodedSource {
    /// The block up to `"row":`, then from the field after `row` to its end.
    text: Vec<u8>,
    /// Where the part after `row` starts in `text`.
    split: usize,
}

impl EncodedSource {
    /// Encodes every field of `source` but `row`.
    pub fn new(source: &SourceRef<'_>) -> EncodedSource {
        let mut encoded = EncodedSource::default();
        encoded.set(source);
        encoded
    }

    /// Encodes every field of `source` but `row`, reusing this buffer.
    pub fn set(&mut self, source: &SourceRef<'_>) {
        self.text.clear();
        write_source_head(&mut self.text, source);
        self.split = self.text.len();
        write_source_tail(&mut self.text, source);
    }

    fn head(&self) -> &[u8] {
        &self.text[..self.split]
    }

    fn tail(&self) -> &[u8] {
        &self.text[self.split..]
    }
}

/// The `source` block from its opening brace to `"row":`.
fn write_source_head(out: &mut Vec<u8>, s: &SourceRef<'_>) {
    out.extend_from_slice(b"{\"connector\":");
    write_str(out, s.connector);
    out.extend_from_slice(b",\"name\":");
    write_str(out, s.name);
    out.extend_from_slice(b",\"db\":");
    write_str(out, s.db);
    out.extend_from_slice(b",\"table\":");
    write_str(out, s.table);
    out.extend_from_slice(b",\"server_id\":");
    write_u64(out, u64::from(s.server_id));
    out.extend_from_slice(b",\"epoch\":");
    write_u64(out, u64::from(s.epoch));
    out.extend_from_slice(b",\"gtid\":");
    match s.gtid {
        Some(gtid) => write_str(out, gtid),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"file\":");
    write_str(out, s.file);
    out.extend_from_slice(b",\"pos\":");
    write_u64(out, s.pos);
    out.extend_from_slice(b",\"row\":");
}

/// The `source` block after `row`'s value, to its closing brace.
fn write_source_tail(out: &mut Vec<u8>, s: &SourceRef<'_>) {
    out.extend_from_slice(b",\"ts_ms\":");
    write_i64(out, s.ts_ms);
    out.extend_from_slice(match s.snapshot {
        SnapshotMarker::False => b",\"snapshot\":\"false\"}",
        SnapshotMarker::True => b",\"snapshot\":\"true\"}",
        SnapshotMarker::Last => b",\"snapshot\":\"last\"}",
    });
}

/// A change event, borrowed; [`ChangeEventRef::write_json`] encodes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChangeEventRef<'a> {
    /// Row image before the change.
    pub before: Option<RowRef<'a>>,
    /// Row image after the change.
    pub after: Option<RowRef<'a>>,
    /// Where the change comes from.
    pub source: SourceBlock<'a>,
    /// The operation.
    pub op: Op,
    /// When the capture processed the event, ms since the epoch.
    pub ts_ms: i64,
    /// Transaction metadata; `None` is written as null.
    pub transaction: Option<TransactionRef<'a>>,
}

impl ChangeEventRef<'_> {
    /// Appends the event's JSON to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"before\":");
        write_optional_row(out, self.before.as_ref());
        out.extend_from_slice(b",\"after\":");
        write_optional_row(out, self.after.as_ref());
        out.extend_from_slice(b",\"source\":");
        match &self.source {
            SourceBlock::Fields(source) => {
                write_source_head(out, source);
                write_u64(out, source.row);
                write_source_tail(out, source);
            }
            SourceBlock::Encoded(encoded, row) => {
                out.extend_from_slice(encoded.head());
                write_u64(out, *row);
                out.extend_from_slice(encoded.tail());
            }
        }
        out.extend_from_slice(b",\"op\":\"");
        out.extend_from_slice(self.op.code().as_bytes());
        out.extend_from_slice(b"\",\"ts_ms\":");
        write_i64(out, self.ts_ms);
        out.extend_from_slice(b",\"transaction\":");
        match &self.transaction {
            Some(t) => {
                out.extend_from_slice(b"{\"id\":");
                write_str(out, t.id);
                out.extend_from_slice(b",\"total_order\":");
                write_u64(out, t.total_order);
                out.extend_from_slice(b",\"data_collection_order\":");
                write_u64(out, t.data_collection_order);
                out.push(b'}');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
    }
}

impl Source {
    /// This source block, borrowed.
    pub fn borrowed(&self) -> SourceRef<'_> {
        SourceRef {
            connector: &self.connector,
            name: &self.name,
            db: &self.db,
            table: &self.table,
            server_id: self.server_id,
            epoch: self.epoch,
            gtid: self.gtid.as_deref(),
            file: &self.file,
            pos: self.pos,
            row: self.row,
            ts_ms: self.ts_ms,
            snapshot: self.snapshot,
        }
    }
}

impl TransactionBlock {
    /// This transaction block, borrowed.
    pub fn borrowed(&self) -> TransactionRef<'_> {
        TransactionRef { id: &self.id, total_order: self.total_order, data_collection_order: self.data_collection_order }
    }
}

impl Row {
    /// This row, borrowed.
    pub fn borrowed(&self) -> RowRef<'_> {
        RowRef::new(&self.columns, &self.values)
    }

    /// Appends the row's JSON object to `out` (the same bytes as serde_json).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.borrowed().write_json(out);
    }
}

impl ChangeEvent {
    /// This event, borrowed.
    pub fn borrowed(&self) -> ChangeEventRef<'_> {
        ChangeEventRef {
            before: self.before.as_ref().map(Row::borrowed),
            after: self.after.as_ref().map(Row::borrowed),
            source: SourceBlock::Fields(self.source.borrowed()),
            op: self.op,
            ts_ms: self.ts_ms,
            transaction: self.transaction.as_ref().map(TransactionBlock::borrowed),
        }
    }

    /// The event's JSON (the same bytes as `serde_json::to_vec`).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.borrowed().write_json(&mut out);
        out
    }
}

fn write_optional_row(out: &mut Vec<u8>, row: Option<&RowRef<'_>>) {
    match row {
        Some(row) => row.write_json(out),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends a JSON object of `(name, value)` pairs to `out`, e.g. a record key `{"id":42}`.
pub fn write_object<'a>(out: &mut Vec<u8>, pairs: impl IntoIterator<Item = (&'a str, &'a Value)>) {
    out.push(b'{');
    let mut first = true;
    for (name, value) in pairs {
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(out, name);
        out.push(b':');
        write_value(out, value);
    }
    out.push(b'}');
}

/// Appends one column value to `out`, as [`Value`]'s `Serialize` writes it.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => write_i64(out, *i),
        Value::UInt(u) => write_u64(out, *u),
        Value::Float(f) if f.is_finite() => infallible(CompactFormatter.write_f64(out, *f)),
        Value::Float(_) => out.extend_from_slice(b"null"),
        Value::Text(t) => write_str(out, t),
    }
}

fn write_i64(out: &mut Vec<u8>, i: i64) {
    infallible(CompactFormatter.write_i64(out, i));
}

fn write_u64(out: &mut Vec<u8>, u: u64) {
    infallible(CompactFormatter.write_u64(out, u));
}

/// Writing to a `Vec<u8>` cannot fail.
fn infallible(result: io::Result<()>) {
    debug_assert!(result.is_ok());
}

/// What a byte becomes inside a JSON string, as serde_json escapes it: 0 = itself, `u` = `\u00XX`, otherwise a
/// backslash and that character.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as a JSON string to `out`.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let clean = clean_prefix(bytes);
    out.extend_from_slice(&bytes[..clean]);
    if clean < bytes.len() {
        write_escaped(out, &bytes[clean..]);
    }
    out.push(b'"');
}

/// Length of the longest prefix of `bytes` that needs no escape, eight bytes at a time while none does.
fn clean_prefix(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut clean = 0;
    for chunk in bytes.chunks_exact(8) {
        let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        // A lane's high bit ends up set iff its byte is below 0x20, a quote or a backslash (exact for "any lane").
        let control = x.wrapping_sub(ONES * 0x20) & !x;
        let quote = zero_lanes(x ^ (ONES * u64::from(b'"')));
        let backslash = zero_lanes(x ^ (ONES * u64::from(b'\\')));
        if (control | quote | backslash) & HIGH != 0 {
            break;
        }
        clean += 8;
    }
    clean + bytes[clean..].iter().take_while(|&&b| ESCAPE[usize::from(b)] == 0).count()
}

/// High bits set at (at least the first of) the zero bytes of `x`.
fn zero_lanes(x: u64) -> u64 {
    x.wrapping_sub(0x0101_0101_0101_0101) & !x
}

/// Appends `bytes` with serde_json's escapes.
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = ESCAPE[usize::from(b)];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if escape == b'u' {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TableId;

    fn columns(names: &[&str]) -> Arc<[Arc<str>]> {
        names.iter().map(|n| Arc::<str>::from(*n)).collect::<Vec<_>>().into()
    }

    /// Every kind of value, with the edge cases of each.
    fn values() -> Vec<Value> {
        let mut control = String::new();
        for c in 0u8..0x20 {
            control.push(char::from(c));
        }
        vec![
            Value::Null,
            Value::Bool(true),
            Value::Bool(false),
            Value::Int(0),
            Value::Int(-1),
            Value::Int(i64::MIN),
            Value::Int(i64::MAX),
            Value::UInt(0),
            Value::UInt(u64::MAX),
            Value::UInt(9_007_199_254_740_993),
            Value::Float(0.0),
            Value::Float(-0.0),
            Value::Float(1.5),
            Value::Float(0.1),
            Value::Float(1.1),
            Value::Float(100.0),
            Value::Float(1e21),
            Value::Float(1.5e-9),
            Value::Float(-12345.678),
            Value::Float(f64::MAX),
            Value::Float(f64::MIN_POSITIVE),
            Value::Float(5e-324),
            Value::Float(f64::from(1.1f32)),
            Value::Float(f64::NAN),
            Value::Float(f64::INFINITY),
            Value::Float(f64::NEG_INFINITY),
            Value::Text(String::new()),
            Value::Text("12.30".into()),
            Value::Text("-0.01".into()),
            Value::Text("2024-02-29T12:34:56.120Z".into()),
            Value::Text("quote \" backslash \\ slash / tab \t newline \n return \r".into()),
            Value::Text(control),
            Value::Text("\u{7f} é ü 漢字 🦀 \u{2028}\u{2029}".into()),
            Value::Text(r#"{"a":[1,2,{"b":null}]}"#.into()),
            Value::Text("AAECAwQ=".into()),
        ]
    }

    #[test]
    fn every_value_is_written_as_serde_json_writes_it() {
        for value in values() {
            let mut out = Vec::new();
            write_value(&mut out, &value);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&value).unwrap(),
                "{value:?}"
            );
        }
    }

    #[test]
    fn every_byte_of_a_string_is_escaped_as_serde_json_escapes_it() {
        for b in 0u8..0x80 {
            let s = format!("a{}b", char::from(b));
            let mut out = Vec::new();
            write_str(&mut out, &s);
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap(), "byte {b:#x}");
        }
    }

    /// The eight-bytes-at-a-time scan must find an escape at any offset, and pass bytes that only look close
    /// (0x20, 0x21, 0x23, 0x5b, 0x5d, DEL, multi-byte UTF-8).
    #[test]
    fn escapes_are_found_at_every_offset_of_long_strings() {
        let specials = ["\"", "\\", "\n", "\u{0}", "\u{1f}", " ", "!", "#", "[", "]", "\u{7f}", "é", "🦀"];
        for len in 0..40 {
            for at in 0..len {
                for special in specials {
                    let s: String = (0..len).map(|i| if i == at { special } else { "a" }).collect();
                    let mut out = Vec::new();
                    write_str(&mut out, &s);
                    assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap(), "{s:?}");
                }
            }
        }
    }

    fn event(op: Op, before: Option<Row>, after: Option<Row>, gtid: Option<&str>, snapshot: SnapshotMarker) -> ChangeEvent {
        let table = TableId::new("shop \"db\"", "ta\\ble");
        ChangeEvent {
            before,
            after,
            source: Source {
                connector: "mysql".into(),
                name: "orders\n".into(),
                db: table.database,
                table: table.table,
                server_id: u32::MAX,
                epoch: u32::MAX,
                gtid: gtid.map(str::to_owned),
                file: "binlog.000002".into(),
                pos: 1234,
                row: 7,
                ts_ms: -1,
                snapshot,
            },
            op,
            ts_ms: 1_700_000_000_123,
            transaction: gtid.map(|g| TransactionBlock {
                id: g.to_owned(),
                total_order: 3,
                data_collection_order: u64::MAX,
            }),
        }
    }

    #[test]
    fn events_are_written_as_serde_json_writes_them() {
        let values = values();
        let names: Vec<String> = (0..values.len()).map(|i| format!("c{i} \"x\"")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let row = Row { columns: columns(&names), values: values.clone() };
        let mut other = row.clone();
        other.values.reverse();
        let empty = Row { columns: columns(&[]), values: vec![] };
        let cases = [
            event(Op::Create, None, Some(row.clone()), Some("0-1-17"), SnapshotMarker::False),
            event(Op::Update, Some(row.clone()), Some(other.clone()), Some("3E11FA47-71CA-11E1-9E33-C80AA9429562:23"), SnapshotMarker::False),
            event(Op::Delete, Some(other), None, None, SnapshotMarker::False),
            event(Op::Read, None, Some(row), None, SnapshotMarker::True),
            event(Op::Read, None, Some(empty), None, SnapshotMarker::Last),
            event(Op::Truncate, None, None, Some("0-1-18"), SnapshotMarker::False),
        ];
        for event in cases {
            let fast = event.to_json();
            assert_eq!(String::from_utf8(fast.clone()).unwrap(), serde_json::to_string(&event).unwrap());
            // Column names encoded once per table and the source encoded once per transaction give the same bytes.
            let keys = |row: &Option<Row>| row.as_ref().map(|r| ColumnKeys::new(&r.columns));
            let (before_keys, after_keys) = (keys(&event.before), keys(&event.after));
            let source = EncodedSource::new(&event.source.borrowed());
            let mut encoded = event.borrowed();
            encoded.source = SourceBlock::Encoded(&source, event.source.row);
            encoded.before = event.before.as_ref().zip(before_keys.as_ref()).map(|(r, k)| RowRef::encoded(k, &r.values));
            encoded.after = event.after.as_ref().zip(after_keys.as_ref()).map(|(r, k)| RowRef::encoded(k, &r.values));
            let mut out = Vec::new();
            encoded.write_json(&mut out);
            assert_eq!(out, fast);
            // And it reads back as the same event (NaN and infinities aside, which become null).
            let back: ChangeEvent = serde_json::from_slice(&fast).unwrap();
            assert_eq!(back.source, event.source);
            assert_eq!(back.op, event.op);
            assert_eq!(back.transaction, event.transaction);
        }
    }

    #[test]
    fn rows_and_keys_are_written_as_serde_json_writes_them() {
        let row = Row { columns: columns(&["id", "name"]), values: vec![Value::UInt(u64::MAX), Value::Text("a\"b".into())] };
        let mut out = Vec::new();
        row.write_json(&mut out);
        assert_eq!(out, serde_json::to_vec(&row).unwrap());
        let mut key = Vec::new();
        write_object(&mut key, [("id", &Value::Int(42))]);
        assert_eq!(key, br#"{"id":42}"#);
        let mut empty = Vec::new();
        write_object(&mut empty, []);
        assert_eq!(empty, b"{}");

        let keys = ColumnKeys::new(&["id", "name", "tenant \"t\""]);
        assert_eq!(keys.iter().collect::<Vec<_>>(), [&br#""id":"#[..], br#""name":"#, br#""tenant \"t\"":"#]);
        assert_eq!(keys.get(1), Some(&br#""name":"#[..]));
        assert_eq!(keys.get(3), None);
        let values = [Value::Int(7), Value::Text("x".into()), Value::UInt(u64::MAX)];
        let mut key = Vec::new();
        keys.write_object(&mut key, &[2, 0], &values);
        assert_eq!(key, br#"{"tenant \"t\"":18446744073709551615,"id":7}"#);
        let mut out = Vec::new();
        RowRef::encoded(&keys, &values).write_json(&mut out);
        let row = Row { columns: columns(&["id", "name", "tenant \"t\""]), values: values.to_vec() };
        assert_eq!(out, serde_json::to_vec(&row).unwrap());
    }
}
