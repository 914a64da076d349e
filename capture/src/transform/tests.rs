use std::collections::HashMap;

use cdc_contract::{ChangeEvent, Row};
use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::EventStreamReader;

use super::*;

fn read_fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/binlogs/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every record a Transformer makes from a recorded binlog, and how many events it refused.
fn transform_fixture(name: &str, flavor: ServerFlavor) -> (Vec<Record>, usize) {
    transform(&read_fixture(name), name, flavor)
}

fn transform(data: &[u8], name: &str, flavor: ServerFlavor) -> (Vec<Record>, usize) {
    let mut input = &data[4..];
    let mut reader = EventStreamReader::new(BinlogVersion::Version4);
    let filter = TableFilter::new(vec!["*.*".into()], vec![]).unwrap();
    let start = BinlogPosition::new(name, 4);
    let mut transformer = Transformer::new("fx", "shop", filter, true, &start, GtidSet::default(), flavor);
    let (mut out, mut refused) = (Vec::new(), 0);
    while let Ok(Some(event)) = reader.read(&mut input) {
        if transformer.handle(&event, &mut out).is_err() {
            refused += 1;
        }
    }
    (out, refused)
}

/// The envelopes and keys are written by hand; they must be exactly the bytes serde_json writes for the same
/// event: read back and written again, nothing changes (field order, escapes, number formats).
#[test]
fn envelopes_and_keys_are_the_bytes_serde_json_writes() {
    let fixtures = [
        ("mariadb-10.11-types.000001", ServerFlavor::MariaDb),
        ("mariadb-bin.000001", ServerFlavor::MariaDb),
        ("mysql-enum-string-set.000001", ServerFlavor::MySql),
        ("json.binlog.000001", ServerFlavor::MySql),
        ("mysql_type_bit.000001", ServerFlavor::MySql),
        ("binlog-invisible-columns.000001", ServerFlavor::MySql),
    ];
    let mut checked = 0;
    for (name, flavor) in fixtures {
        let (records, _) = transform_fixture(name, flavor);
        let mut orders: HashMap<(String, String), (u64, u64)> = HashMap::new();
        for record in &records {
            if let Some(value) = &record.value {
                let event: ChangeEvent = serde_json::from_slice(value).unwrap();
                assert_eq!(serde_json::to_vec(&event).unwrap(), *value, "{name}: {}", String::from_utf8_lossy(value));
                let t = event.transaction.as_ref().unwrap();
                let (total, per_table) = orders.entry((t.id.clone(), event.source.table.clone())).or_default();
                *per_table += 1;
                assert_eq!(t.data_collection_order, *per_table, "{name}");
                assert!(t.total_order > *total || *total == 0, "{name}");
                *total = t.total_order;
                checked += 1;
            }
            if let Some(key) = &record.key {
                let row: Row = serde_json::from_slice(key).unwrap();
                assert_eq!(serde_json::to_vec(&row).unwrap(), *key, "{name}");
            }
        }
    }
    assert!(checked > 30, "only {checked} events checked");
}

/// The types fixture's events in detail: ops, tombstones, keys of the composite primary key.
#[test]
fn records_of_the_types_fixture_carry_ops_keys_and_tombstones() {
    let (records, refused) = transform_fixture("mariadb-10.11-types.000001", ServerFlavor::MariaDb);
    assert_eq!(refused, 1, "the MINIMAL row image update is refused");
    let deletes = records.iter().filter(|r| r.op.as_ref().is_some_and(|(_, op)| *op == Op::Delete)).count();
    let tombstones: Vec<&Record> = records.iter().filter(|r| r.value.is_none()).collect();
    assert!(deletes > 0);
    assert_eq!(tombstones.len(), deletes, "a tombstone follows each delete of a keyed table");
    for pair in records.windows(2) {
        if pair[1].value.is_none() {
            assert_eq!(pair[0].key, pair[1].key);
            assert_eq!(pair[0].op.as_ref().map(|(_, op)| *op), Some(Op::Delete));
        }
    }
    let first = records.iter().find(|r| r.topic.as_ref() == "shop.fx.t_num").unwrap();
    assert_eq!(first.key.as_deref(), Some(&br#"{"id":1}"#[..]));
    let event: ChangeEvent = serde_json::from_slice(first.value.as_ref().unwrap()).unwrap();
    assert_eq!(event.op, Op::Create);
    assert_eq!(event.source.row, 0);
    assert_eq!(event.after.unwrap().get("biu"), Some(&Value::UInt(u64::MAX)));
}

/// An update that changes the primary key becomes a delete of the old key (with its tombstone) and a create of
/// the new key, so each key's events stay on its own partition in order.
#[test]
fn an_update_of_the_primary_key_is_a_delete_and_a_create() {
    let mut data = read_fixture("mariadb-10.11-types.000001");
    // The FULL-image update of t_pk2 (primary key (b, a)): after image a=2, b='y', c=21. Make it a=3.
    let after_image = [2, 0, 0, 0, 1, b'y', 21, 0, 0, 0];
    let at = data.windows(after_image.len()).position(|w| w == after_image).expect("the t_pk2 update");
    data[at] = 3;
    let (records, _) = transform(&data, "patched", ServerFlavor::MariaDb);
    let pk2: Vec<&Record> = records.iter().filter(|r| r.topic.as_ref() == "shop.fx.t_pk2").collect();
    let summary: Vec<(String, Option<Op>)> = pk2
        .iter()
        .map(|r| (String::from_utf8_lossy(r.key.as_ref().unwrap()).into_owned(), r.op.as_ref().map(|(_, op)| *op)))
        .collect();
    let key = |b: &str, a: u32| format!(r#"{{"b":"{b}","a":{a}}}"#);
    assert_eq!(
        summary,
        [
            (key("x", 1), Some(Op::Create)),
            (key("y", 2), Some(Op::Create)),
            (key("y", 2), Some(Op::Delete)),
            (key("y", 2), None),
            (key("y", 3), Some(Op::Create)),
            (key("x", 1), Some(Op::Delete)),
            (key("x", 1), None),
            // The recorded DELETE still names the row as it was recorded.
            (key("y", 2), Some(Op::Delete)),
            (key("y", 2), None),
        ]
    );
    let event = |r: &Record| serde_json::from_slice::<ChangeEvent>(r.value.as_ref().unwrap()).unwrap();
    let (delete, create) = (event(pk2[2]), event(pk2[4]));
    assert_eq!(delete.before.as_ref().unwrap().get("a"), Some(&Value::Int(2)));
    assert!(delete.after.is_none());
    assert!(create.before.is_none());
    assert_eq!(create.after.as_ref().unwrap().get("a"), Some(&Value::Int(3)));
    assert_eq!(create.after.as_ref().unwrap().get("c"), Some(&Value::Int(21)));
    // Both come from one row of one transaction: consecutive orders, consecutive rows.
    let (d, c) = (delete.transaction.unwrap(), create.transaction.unwrap());
    assert_eq!(d.id, c.id);
    assert_eq!((c.total_order, c.data_collection_order), (d.total_order + 1, d.data_collection_order + 1));
    assert_eq!(create.source.row, delete.source.row + 1);
}

/// A ROTATE event of `name` with log_pos 0 (the server's fake ROTATE), with 4 checksum bytes.
fn fake_rotate(name: &str) -> Vec<u8> {
    let size = 19 + 8 + name.len() + 4;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.push(4);
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&(size as u32).to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&0x20u16.to_le_bytes());
    bytes.extend_from_slice(&4u64.to_le_bytes());
    bytes.extend_from_slice(name.as_bytes());
    bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    bytes
}

/// Regression: when the server moved to a new binlog file, the name of its fake ROTATE lost 4 characters
/// ("binlog.000004" became "binlog.00"), so positions and checkpoints named a file that does not exist.
#[test]
fn a_rotation_mid_stream_keeps_the_whole_file_name() {
    let filter = TableFilter::new(vec!["*.*".into()], vec![]).unwrap();
    let start = BinlogPosition::new("mariadb-bin.000001", 4);
    let mut transformer =
        Transformer::new("fx", "shop", filter, true, &start, GtidSet::default(), ServerFlavor::MariaDb);
    let mut reader = EventStreamReader::new(BinlogVersion::Version4);
    let mut out = Vec::new();
    // At connection: the fake ROTATE comes before any FORMAT_DESCRIPTION, its checksum still attached.
    let first = fake_rotate("mariadb-bin.000001");
    let event = reader.read(&first[..]).unwrap().unwrap();
    transformer.handle(&event, &mut out).unwrap();
    assert_eq!(transformer.file(), "mariadb-bin.000001");
    // The file's FORMAT_DESCRIPTION (CRC32 checksums) and events, then a move to the next file.
    let data = read_fixture("mariadb-bin.000001");
    let mut input = &data[4..];
    while let Ok(Some(event)) = reader.read(&mut input) {
        transformer.handle(&event, &mut out).unwrap();
    }
    assert!(!out.is_empty());
    let next = fake_rotate("mariadb-bin.000002");
    let event = reader.read(&next[..]).unwrap().unwrap();
    transformer.handle(&event, &mut out).unwrap();
    assert_eq!(transformer.file(), "mariadb-bin.000002");
}
