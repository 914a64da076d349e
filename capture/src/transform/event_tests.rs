//! The transformer on compressed, tagged, refused and statement-format events: recorded binlogs, and events rebuilt
//! from them (compressed, or uncompressed) so both forms of the same changes can be compared.

use std::io::Write;

use cdc_contract::ChangeEvent;
use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::EventStreamReader;

use super::compressed::{payload_events, without_checksums, TRANSACTION_PAYLOAD};
use super::*;

fn read_fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/binlogs/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The events of a recorded binlog file.
fn fixture_events(name: &str) -> Vec<Event> {
    let data = read_fixture(name);
    let mut input = &data[4..];
    let mut reader = EventStreamReader::new(BinlogVersion::Version4);
    let mut events = Vec::new();
    while let Some(event) = reader.read(&mut input).unwrap() {
        events.push(event);
    }
    events
}

fn transformer(name: &str, flavor: ServerFlavor) -> Transformer {
    let filter = TableFilter::new(vec!["*.*".into()], vec![]).unwrap();
    Transformer::new("fx", "shop", filter, true, &BinlogPosition::new(name, 4), GtidSet::default(), flavor)
}

/// Every record of `events` and every checkpoint; panics on an error.
fn run(transformer: &mut Transformer, events: &[Event]) -> (Vec<Record>, Vec<Checkpoint>) {
    let (mut out, mut checkpoints) = (Vec::new(), Vec::new());
    for event in events {
        checkpoints.extend(transformer.handle(event, &mut out).unwrap());
    }
    (out, checkpoints)
}

/// What a record says, without the capture time.
fn summary(record: &Record) -> (String, Option<String>, Option<serde_json::Value>) {
    let value = record.value.as_ref().map(|v| {
        let mut event: serde_json::Value = serde_json::from_slice(v).unwrap();
        event.as_object_mut().unwrap().remove("ts_ms");
        event
    });
    (record.topic.to_string(), record.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()), value)
}

/// An event of `event_type` with `data` after the common header, `end` its log position, no checksum.
fn build(like: &Event, event_type: u8, data: &[u8], end: u32) -> Event {
    let size = (19 + data.len()) as u32;
    let header = like.header();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&header.timestamp().to_le_bytes());
    bytes.push(event_type);
    bytes.extend_from_slice(&header.server_id().to_le_bytes());
    bytes.extend_from_slice(&size.to_le_bytes());
    bytes.extend_from_slice(&end.to_le_bytes());
    bytes.extend_from_slice(&header.flags_raw().to_le_bytes());
    bytes.extend_from_slice(data);
    Event::read(&without_checksums(like.fde()), &bytes[..]).unwrap()
}

/// The fixture with each transaction payload replaced by its inner events, laid out from the payload's start as an
/// uncompressed binlog would have them.
fn uncompressed_equivalent(events: &[Event]) -> Vec<Event> {
    let mut out = Vec::new();
    for event in events {
        if event.header().event_type_raw() != TRANSACTION_PAYLOAD {
            out.push(event.clone());
            continue;
        }
        let mut at = event.header().log_pos() - event.header().event_size();
        for inner in payload_events(event).unwrap() {
            at += inner.header().event_size();
            out.push(build(&inner, inner.header().event_type_raw(), inner.data(), at));
        }
    }
    out
}

/// Regression: rows inside a TRANSACTION_PAYLOAD event (MySQL binlog_transaction_compression=ON) vanished and the
/// checkpoint did not pass the payload.
#[test]
fn a_transaction_payload_gives_the_records_of_its_uncompressed_events() {
    let name = "transaction_compression.000001";
    let events = fixture_events(name);
    let payload = events.iter().find(|e| e.header().event_type_raw() == TRANSACTION_PAYLOAD).expect("a payload");
    let payload_end = payload.header().log_pos() as u64;
    let anonymous_gtid = events.iter().find(|e| e.header().event_type_raw() == 34).expect("its GTID event");
    let gtid_pos = (anonymous_gtid.header().log_pos() - anonymous_gtid.header().event_size()) as u64;

    let (compressed, checkpoints) = run(&mut transformer(name, ServerFlavor::MySql), &events);
    let (plain, _) = run(&mut transformer(name, ServerFlavor::MySql), &uncompressed_equivalent(&events));
    assert_eq!(compressed.len(), 1, "the payload's one row");
    assert_eq!(compressed.iter().map(summary).collect::<Vec<_>>(), plain.iter().map(summary).collect::<Vec<_>>());

    let event: ChangeEvent = serde_json::from_slice(compressed[0].value.as_ref().unwrap()).unwrap();
    assert_eq!(event.op, Op::Create);
    assert_eq!((event.source.db.as_str(), event.source.table.as_str()), ("test", "tb1"));
    assert_eq!((event.source.file.as_str(), event.source.pos, event.source.row), (name, gtid_pos, 0));
    assert!(event.after.is_some());
    // The transaction ends with the payload: the checkpoint is its end.
    assert_eq!(checkpoints.iter().map(|c| c.position.pos).collect::<Vec<_>>(), [payload_end]);
}

/// The table maps inside a payload are looked up like any other, one after the other.
#[test]
fn missing_schemas_are_found_inside_payloads() {
    let name = "transaction_compression.000001";
    let events = fixture_events(name);
    let payload = events.iter().find(|e| e.header().event_type_raw() == TRANSACTION_PAYLOAD).unwrap();
    let mut t = transformer(name, ServerFlavor::MySql);
    assert_eq!(t.missing_schema(payload), Some(TableId::new("test", "tb1")));
    t.set_schema(TableId::new("test", "tb1"), Vec::new());
    assert_eq!(t.missing_schema(payload), None);
    let mut out = Vec::new();
    assert!(t.handle(payload, &mut out).unwrap().is_some());
    assert_eq!(out.len(), 1);
}

/// A payload whose compressed bytes are damaged stops the source with the position, never a panic.
#[test]
fn a_damaged_payload_is_a_definite_error() {
    let name = "transaction_compression.000001";
    let events = fixture_events(name);
    let payload = events.iter().find(|e| e.header().event_type_raw() == TRANSACTION_PAYLOAD).unwrap();
    let mut data = payload.data().to_vec();
    for cut in [data.len() - 5, data.len() / 2] {
        data.truncate(cut);
        let damaged = build(payload, TRANSACTION_PAYLOAD, &data, payload.header().log_pos());
        let error = transformer(name, ServerFlavor::MySql).handle(&damaged, &mut Vec::new()).unwrap_err();
        assert!(error.to_string().contains("unreadable TRANSACTION_PAYLOAD event"), "{error}");
    }
}

/// MySQL 8.3+ tagged GTIDs (`uuid:tag:gno`) name the transaction and go into the GTID set with their tag.
#[test]
fn tagged_gtids_are_decoded_and_added_to_the_set() {
    let name = "binlog_transaction_with_GTID_TAG.000001";
    let (records, checkpoints) = run(&mut transformer(name, ServerFlavor::MySql), &fixture_events(name));
    assert_eq!(records.len(), 1);
    let event: ChangeEvent = serde_json::from_slice(records[0].value.as_ref().unwrap()).unwrap();
    let gtid = event.source.gtid.expect("a GTID");
    let (uuid, rest) = gtid.split_once(':').unwrap();
    assert_eq!(uuid.len(), 36, "{gtid}");
    assert_eq!(rest, "mytag:3", "{gtid}");
    assert_eq!(event.transaction.unwrap().id, gtid);
    assert_eq!(checkpoints.len(), 1);
    assert_eq!(checkpoints[0].gtid_set.to_string(), format!("{uuid}:mytag:3"));
}

/// MariaDB's compressed record of `data`, as `binlog_buf_compress` writes it.
pub(super) fn mariadb_deflate(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u32).to_be_bytes();
    let skip = len.iter().take_while(|&&b| b == 0).count().min(3);
    let mut out = vec![0x80 | (4 - skip) as u8];
    out.extend_from_slice(&len[skip..]);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(data).unwrap();
    out.extend(z.finish().unwrap());
    out
}

/// The event as MariaDB writes it with log_bin_compress=ON (QUERY and v1 rows events), same position.
fn mariadb_compress(event: &Event) -> Event {
    let event_type = event.header().event_type_raw();
    let data = event.data();
    let (head, new_type) = match event_type {
        2 => {
            let (db_len, status_len) = (data[8] as usize, u16::from_le_bytes([data[11], data[12]]) as usize);
            (13 + status_len + db_len + 1, 165)
        }
        23..=25 => {
            // table id, flags, width (one byte here), one bitmap (two for updates).
            let width = data[8] as usize;
            let bitmaps = if event_type == 24 { 2 } else { 1 };
            (9 + bitmaps * width.div_ceil(8), 166 + event_type - 23)
        }
        _ => return event.clone(),
    };
    let mut compressed = data[..head].to_vec();
    compressed.extend(mariadb_deflate(&data[head..]));
    build(event, new_type, &compressed, event.header().log_pos())
}

/// MariaDB compressed events (log_bin_compress=ON) give exactly the records of the events they stand for.
#[test]
fn mariadb_compressed_events_give_the_records_of_the_uncompressed_ones() {
    let mut total = 0;
    for name in ["mariadb-bin.000001", "mariadb-10.11-types.000001"] {
        let events = fixture_events(name);
        let compressed: Vec<Event> = events.iter().map(mariadb_compress).collect();
        let changed = compressed.iter().filter(|e| compress_type(e)).count();
        assert!(changed > 0, "{name}: no event compressed");
        total += changed;
        let run_all = |events: &[Event]| {
            let mut t = transformer(name, ServerFlavor::MariaDb);
            let (mut out, mut checkpoints, mut refused) = (Vec::new(), Vec::new(), 0);
            for event in events {
                match t.handle(event, &mut out) {
                    Ok(cp) => checkpoints.extend(cp.map(|c| c.position.pos)),
                    Err(_) => refused += 1,
                }
            }
            (out.iter().map(summary).collect::<Vec<_>>(), checkpoints, refused)
        };
        let (plain, plain_checkpoints, plain_refused) = run_all(&events);
        let (inflated, inflated_checkpoints, inflated_refused) = run_all(&compressed);
        assert!(!plain.is_empty(), "{name}");
        assert_eq!(inflated, plain, "{name}");
        assert_eq!(inflated_checkpoints, plain_checkpoints, "{name}");
        assert_eq!(inflated_refused, plain_refused, "{name}");
    }
    assert!(total > 10, "only {total} events compressed");
}

fn compress_type(event: &Event) -> bool {
    (165..=171).contains(&event.header().event_type_raw())
}

/// A MariaDB compressed event whose zlib data is damaged is a definite error naming the event type.
#[test]
fn a_damaged_mariadb_compressed_event_is_a_definite_error() {
    let events = fixture_events("mariadb-bin.000001");
    let rows = events.iter().map(mariadb_compress).find(|e| e.header().event_type_raw() == 166).unwrap();
    let mut data = rows.data().to_vec();
    let last = data.len() - 1;
    data[last] ^= 0xff;
    let damaged = build(&rows, 166, &data, rows.header().log_pos());
    let mut t = transformer("mariadb-bin.000001", ServerFlavor::MariaDb);
    let error = t.handle(&damaged, &mut Vec::new()).unwrap_err();
    assert!(error.to_string().contains("unreadable WRITE_ROWS_COMPRESSED_EVENT_V1 event"), "{error}");
}

/// A QUERY event with `sql` run in database `db`, positioned like `like`.
fn query(like: &Event, db: &str, sql: &str) -> Event {
    let mut data = Vec::new();
    data.extend_from_slice(&7u32.to_le_bytes()); // thread id
    data.extend_from_slice(&0u32.to_le_bytes()); // exec time
    data.push(db.len() as u8);
    data.extend_from_slice(&0u16.to_le_bytes()); // error code
    data.extend_from_slice(&0u16.to_le_bytes()); // status variables
    data.extend_from_slice(db.as_bytes());
    data.push(0);
    data.extend_from_slice(sql.as_bytes());
    build(like, 2, &data, like.header().log_pos())
}

/// A row change written as a statement on a captured table stops the source by default, naming position, table
/// and fix; `skip` counts it and goes on; a table the filter leaves out is no error.
#[test]
fn statement_row_changes_on_captured_tables_are_refused_or_skipped() {
    let events = fixture_events("mariadb-bin.000001");
    let like = &events[1];
    let filter = TableFilter::new(vec!["shop.*".into()], vec!["shop.audit".into()]).unwrap();
    let start = BinlogPosition::new("binlog.000007", 4);
    let new = |policy| {
        Transformer::new("fx", "p", filter.clone(), true, &start, GtidSet::default(), ServerFlavor::MariaDb)
            .with_statement_row_changes(policy, Counter::default())
    };
    let update = query(like, "shop", "UPDATE orders SET total = total + 1 WHERE id = 3");
    let mut t = new(StatementDml::Error);
    let error = t.handle(&update, &mut Vec::new()).unwrap_err().to_string();
    let at = update.header().log_pos() - update.header().event_size();
    assert!(error.starts_with(&format!("binlog.000007:{at}: a change of table shop.orders")), "{error}");
    assert!(error.contains("UPDATE orders SET total") && error.contains("binlog_format=ROW"), "{error}");
    assert!(error.contains(r#"statement_dml = "skip""#) && error.contains("re-snapshot"), "{error}");

    let mut t = new(StatementDml::Skip);
    assert!(t.handle(&update, &mut Vec::new()).is_ok());
    assert_eq!(t.skipped_statements(), 1);

    let mut t = new(StatementDml::Error);
    let unrelated = ["UPDATE audit SET a = 1", "INSERT INTO other.t VALUES (1)", "DELETE FROM audit", "GRANT ALL ON *.* TO x"];
    for sql in unrelated {
        assert!(t.handle(&query(like, "shop", sql), &mut Vec::new()).is_ok(), "{sql}");
    }
    assert!(t.handle(&query(like, "other", "INSERT INTO shop.orders SELECT * FROM t"), &mut Vec::new()).is_err());
}

/// Event types that can carry rows the capture cannot decode stop the source; ignorable ones do not.
#[test]
fn refused_event_types_are_definite_errors() {
    let events = fixture_events("mariadb-bin.000001");
    let like = &events[1];
    let mut t = transformer("mariadb-bin.000001", ServerFlavor::MariaDb);
    let refused = [(26u8, "INCIDENT_EVENT (event type 26)"), (172, "event (event type 172)"), (21, "PRE_GA")];
    for (event_type, expect) in refused {
        let error = t.handle(&build(like, event_type, &[0; 8], like.header().log_pos()), &mut Vec::new());
        let error = error.unwrap_err().to_string();
        assert!(error.contains(expect), "{error}");
    }
    for event_type in [160u8, 161, 163, 29, 35] {
        assert!(t.handle(&build(like, event_type, &[0; 8], like.header().log_pos()), &mut Vec::new()).is_ok());
    }
}


/// Regression: on MySQL a statement that commits by itself (DDL) follows its GTID event without a BEGIN; the
/// transaction stayed open until the next GTID event, so its GTID never reached the GTID set and no checkpoint
/// followed it.
#[test]
fn every_mysql_transaction_ends_with_a_checkpoint_ddl_included() {
    for (name, gtid_type) in [
        ("mysql-enum-string-set.000001", 33),
        ("binlog-invisible-columns.000001", 33),
        ("mysql_type_bit.000001", 33),
        ("vector.binlog", 34),
    ] {
        let events = fixture_events(name);
        let transactions = events.iter().filter(|e| e.header().event_type_raw() == gtid_type).count();
        let ddl = events
            .iter()
            .filter(|e| matches!(e.read_data(), Ok(Some(EventData::QueryEvent(q))) if q.query() != "BEGIN"))
            .count();
        assert!(transactions > 2 && ddl > 1, "{name}: {transactions} transactions, {ddl} DDL");
        let mut t = transformer(name, ServerFlavor::MySql);
        let (_, checkpoints) = run(&mut t, &events);
        assert_eq!(checkpoints.len(), transactions, "{name}");
        assert!(!t.in_transaction(), "{name}");
        if gtid_type == 33 {
            let set = checkpoints.last().unwrap().gtid_set.to_string();
            assert!(set.ends_with(&format!(":1-{transactions}")), "{name}: {set}");
        }
    }
}
