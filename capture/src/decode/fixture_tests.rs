//! Decoding recorded binlogs end to end: `capture/tests/fixtures/binlogs/` (origins in its README).
//!
//! Each file is read offline with `mysql_common`'s `EventStreamReader`; every TABLE_MAP builds a [`TableLayout`],
//! every rows event (also inside compressed TRANSACTION_PAYLOAD events) is decoded with [`decode_rows`], and, where
//! `mysql_common`'s slow `rows()` API can read the event, every value is cross-checked against it
//! ([`differential`]).

use std::collections::HashMap;
use std::sync::Arc;

use cdc_contract::Value;
use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::events::{Event, EventData, RowsEventData};
use mysql_common::binlog::EventStreamReader;

use super::{decode_rows, DecodeError, RowImage, SchemaColumn, ServerFlavor, TableLayout};

mod assertions;
mod differential;

/// One decoded rows event.
#[derive(Debug)]
pub(super) struct Decoded {
    pub(super) table: String,
    /// `c`, `u` or `d`.
    pub(super) kind: char,
    /// The rows event's type code (23-25: v1, 30-32: v2).
    pub(super) type_code: u8,
    /// Whether the event came out of a compressed TRANSACTION_PAYLOAD event.
    pub(super) compressed: bool,
    pub(super) names: Arc<[Arc<str>]>,
    pub(super) primary_key: Vec<usize>,
    pub(super) result: Result<Vec<RowImage>, DecodeError>,
}

impl Decoded {
    /// The decoded rows; panics with the error otherwise.
    pub(super) fn rows(&self) -> &[RowImage] {
        match &self.result {
            Ok(rows) => rows,
            Err(e) => panic!("{} ({}): {e}", self.table, self.kind),
        }
    }

    /// The value of a named column in an image.
    pub(super) fn value<'a>(&self, image: &'a [Value], column: &str) -> &'a Value {
        let i = self.names.iter().position(|n| &**n == column).unwrap_or_else(|| panic!("no column {column}"));
        &image[i]
    }
}

/// Everything decoded from one binlog file.
#[derive(Debug, Default)]
pub(super) struct DecodedFile {
    pub(super) server_version: String,
    pub(super) events: Vec<Decoded>,
    pub(super) gtids: Vec<String>,
    /// Differences from `mysql_common`'s own row decoding.
    pub(super) mismatches: Vec<String>,
    /// Rows cross-checked against `mysql_common`.
    pub(super) cross_checked: usize,
    /// Why reading stopped early (truncated or corrupt file), if it did.
    pub(super) stopped: Option<String>,
}

pub(super) type Schemas<'a> = &'a dyn Fn(&str) -> Option<Vec<SchemaColumn>>;

pub(super) fn read_fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/binlogs/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Decodes every rows event of a fixture; `schemas` maps a table name to its `information_schema` columns.
pub(super) fn decode_file(name: &str, schemas: Schemas<'_>) -> DecodedFile {
    let data = read_fixture(name);
    assert_eq!(data.get(..4), Some(&b"\xfebin"[..]), "{name}: binlog magic");
    let mut input = &data[4..];
    let mut reader = EventStreamReader::new(BinlogVersion::Version4);
    let mut state = State { layouts: HashMap::new(), file: DecodedFile::default() };
    loop {
        // `Event::read` panics on a short event body, so check that the whole event is there first.
        if input.is_empty() {
            break;
        }
        let Some(size) = input.get(9..13).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize) else {
            state.file.stopped = Some("truncated event header".into());
            break;
        };
        if size < 19 || size > input.len() {
            state.file.stopped = Some(format!("truncated event: {size} bytes announced, {} left", input.len()));
            break;
        }
        match reader.read(&mut input) {
            Ok(Some(event)) => state.handle(&mut reader, &event, schemas, false),
            Ok(None) => break,
            Err(e) => {
                state.file.stopped = Some(e.to_string());
                break;
            }
        }
    }
    state.file
}

struct State {
    layouts: HashMap<u64, TableLayout>,
    file: DecodedFile,
}

impl State {
    fn flavor(reader: &EventStreamReader) -> ServerFlavor {
        let version = reader.get_fde().server_version().into_owned();
        if version.contains("MariaDB") {
            ServerFlavor::MariaDb
        } else {
            ServerFlavor::MySql
        }
    }

    fn handle(&mut self, reader: &mut EventStreamReader, event: &Event, schemas: Schemas<'_>, nested: bool) {
        self.file.server_version = reader.get_fde().server_version().trim_end_matches(['\0', ' ']).to_owned();
        let type_code = event.header().event_type_raw();
        if type_code == 162 {
            // MariaDB GTID: sequence number (8), domain (4), flags; server id from the header.
            let d = event.data();
            if d.len() >= 12 {
                let seq = u64::from_le_bytes(d[..8].try_into().unwrap());
                let domain = u32::from_le_bytes(d[8..12].try_into().unwrap());
                self.file.gtids.push(format!("{domain}-{}-{seq}", event.header().server_id()));
            }
            return;
        }
        let Ok(Some(data)) = event.read_data() else { return };
        match data {
            EventData::TableMapEvent(tme) => {
                let schema = schemas(&tme.table_name());
                let layout = TableLayout::with_flavor(&tme, schema.as_deref(), Self::flavor(reader))
                    .unwrap_or_else(|e| panic!("table map of {}: {e}", tme.table_name()));
                self.layouts.insert(tme.table_id(), layout);
            }
            EventData::RowsEvent(rows) => {
                let layout = &self.layouts[&rows.table_id()];
                let kind = match rows {
                    RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => 'c',
                    RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => 'd',
                    _ => 'u',
                };
                let mut out = Vec::new();
                let result = decode_rows(layout, &rows, &mut out).map(|()| out);
                if let (Ok(decoded), Some(tme)) = (&result, reader.get_tme(rows.table_id())) {
                    let (checked, mismatches) = differential::compare(layout, tme, &rows, decoded);
                    self.file.cross_checked += checked;
                    self.file.mismatches.extend(mismatches);
                }
                self.file.events.push(Decoded {
                    table: layout.table().to_owned(),
                    kind,
                    type_code,
                    compressed: nested,
                    names: layout.column_names().clone(),
                    primary_key: layout.primary_key().to_vec(),
                    result,
                });
            }
            EventData::GtidEvent(g) => {
                let sid = g.sid();
                let hex: String = sid.iter().map(|b| format!("{b:02x}")).collect();
                let uuid = format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]);
                let tag = g.tag().map(|t| format!(":{}", t.as_str())).unwrap_or_default();
                self.file.gtids.push(format!("{uuid}{tag}:{}", g.gno()));
            }
            EventData::TransactionPayloadEvent(payload) if !nested => {
                let mut inner = payload.decompressed().expect("zstd payload");
                while let Some(e) = reader.read_decompressed(&mut inner).expect("inner event") {
                    self.handle(reader, &e, schemas, true);
                }
            }
            _ => {}
        }
    }
}

pub(super) fn no_schema(_: &str) -> Option<Vec<SchemaColumn>> {
    None
}

/// Every copied fixture decodes, and every row `mysql_common` can read agrees with ours value by value.
#[test]
fn every_fixture_agrees_with_mysql_common() {
    let dir = format!("{}/tests/fixtures/binlogs", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.ends_with(".md"))
        .collect();
    names.sort();
    let mut total = 0;
    for name in &names {
        let file = decode_file(name, &no_schema);
        assert!(file.mismatches.is_empty(), "{name}: {:#?}", file.mismatches);
        for event in &file.events {
            if let Err(e) = &event.result {
                assert!(matches!(e, DecodeError::Unsupported { .. }), "{name}: {} ({}): {e}", event.table, event.kind);
            }
        }
        total += file.cross_checked;
    }
    assert!(total >= 90, "only {total} rows cross-checked");
}
