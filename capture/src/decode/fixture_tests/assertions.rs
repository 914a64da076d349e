//! Concrete values from the recorded binlogs, checked against what the files' SQL wrote.

use super::super::schema::tests::column;
use super::*;

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn after(event: &Decoded, row: usize) -> &[Value] {
    event.rows()[row].after.as_deref().expect("after image")
}

fn before(event: &Decoded, row: usize) -> &[Value] {
    event.rows()[row].before.as_deref().expect("before image")
}

fn events<'a>(file: &'a DecodedFile, table: &str) -> Vec<&'a Decoded> {
    file.events.iter().filter(|e| e.table == table).collect()
}

#[test]
fn mysql8_binary_json() {
    let file = decode_file("json.binlog.000001", &no_schema);
    assert_eq!(file.server_version, "8.0.22");
    let inserts: Vec<&Value> = file
        .events
        .iter()
        .filter(|e| e.kind == 'c')
        .flat_map(|e| e.rows())
        .map(|r| &r.after.as_ref().unwrap()[1])
        .collect();
    assert_eq!(inserts.len(), 6);
    assert_eq!(*inserts[0], text(r#"{"age":24,"data":"xxxxxxxxxx","name":"Joe"}"#));
    assert_eq!(*inserts[2], text(r#"{"age":40,"data":"zzzzzzzzzz","name":"Pete"}"#));
    assert!(file.events.iter().filter(|e| e.kind == 'c').all(|e| e.type_code == 30), "v2 WRITE_ROWS");
    let update = file.events.iter().find(|e| e.kind == 'u').unwrap();
    assert_eq!(update.type_code, 31, "v2 UPDATE_ROWS");
    assert_eq!(before(update, 0)[1], text(r#"{"age":24,"data":"xxxxxxxxxx","name":"Joe"}"#));
    assert_eq!(after(update, 0)[1], text(r#"{"age":25,"data":"xxxxxxxxxx","name":"Joe"}"#));
    assert_eq!(after(update, 0)[3], Value::Int(25));
    // The file ends with a JSON partial update (binlog_row_value_options=PARTIAL_JSON): refused, not misread.
    let partial = file.events.last().unwrap();
    assert_eq!(partial.type_code, 39);
    assert!(matches!(partial.result, Err(DecodeError::Unsupported { column: None, .. })));
}

#[test]
fn mysql9_json_opaque_values() {
    let file = decode_file("json-opaque.binlog", &no_schema);
    let values: Vec<&Value> = file.events.iter().map(|e| &after(e, 0)[0]).collect();
    let expected = [
        r#"{"a":"base64:type15:VQ=="}"#,
        r#"{"b":"2012-03-18"}"#,
        r#"{"c":"2012-03-18 11:30:45.000000"}"#,
        r#"{"c":"87:31:46.654321"}"#,
        r#"{"d":123.456}"#,
        r#"{"e":9.00}"#,
        r#"{"e":[0,1,true,false]}"#,
        r#"{"e":null}"#,
    ];
    assert_eq!(values, expected.map(text).iter().collect::<Vec<_>>());
}

#[test]
fn mysql8_enum_set_and_strings() {
    let file = decode_file("mysql-enum-string-set.000001", &no_schema);
    let [insert, update, delete] = &file.events[..] else { panic!("{:?}", file.events) };
    assert_eq!(&*insert.names, ["f1", "f2", "f3", "f4", "f5"].map(Arc::<str>::from));
    let digits = "0123456789".repeat(10);
    assert_eq!(after(insert, 0)[0], Value::Text(digits.clone()));
    assert_eq!(after(insert, 0)[2], text("var1"));
    assert_eq!(after(insert, 0)[3], text("one,three"));
    assert_eq!(after(insert, 0)[4], text("0123456789"));
    assert_eq!(after(update, 0)[..4], [text("field1"), text("field_2"), text("variant2"), text("two,four")]);
    assert_eq!(before(delete, 0)[2], text("variant2"));
    assert_eq!(file.gtids[0], "93e95066-a2f4-11ec-9b69-9657f0ae95e2:1");
}

#[test]
fn mysql8_bits_time_and_minimal_metadata() {
    let bits = decode_file("mysql_type_bit.000001", &no_schema);
    assert_eq!(after(&bits.events[0], 0), [text("BA=="), text("foo"), text("IA==")]);

    let time = decode_file("time_issue.000001", &no_schema);
    // -507:48:27, i.e. 21 days and 3:48:27 before midnight.
    assert_eq!(after(&time.events[0], 0), [Value::Int(-(507 * 3600 + 48 * 60 + 27) * 1_000_000)]);

    let minimal = decode_file("minimal_row_metadata.000001", &no_schema);
    let event = &minimal.events[0];
    assert!(event.rows()[0].partial);
    assert_eq!(after(event, 0), [Value::Int(1), Value::Null, text("a"), Value::Null, Value::UInt(3_230_202_323)]);
    assert_eq!(event.names[0].as_ref(), "col_0", "no names without FULL metadata");
}

/// MySQL 5.1 NDB binlogs: v1 rows events, full and partial images.
#[test]
fn ndb_full_and_partial_images() {
    let write = decode_file("write-full-row.binlog", &no_schema);
    let ba: Vec<&Decoded> = events(&write, "ba");
    assert!(ba.iter().all(|e| matches!(e.type_code, 23 | 25)), "v1 events");
    let rows: Vec<&[Value]> = ba[0].rows().iter().map(|r| r.after.as_deref().unwrap()).collect();
    assert_eq!(rows[0], [Value::Int(3), Value::Int(3), Value::Int(3)]);
    assert_eq!(rows.len(), 5);

    let update = decode_file("update-full-row.binlog", &no_schema);
    let u = events(&update, "ba").into_iter().find(|e| e.kind == 'u').unwrap();
    assert_eq!(u.type_code, 24);
    assert_eq!(before(u, 0), [Value::Int(4), Value::Int(4), Value::Int(4)]);
    assert_eq!(after(u, 0), [Value::Int(4), Value::Int(4), Value::Int(40)]);
    assert!(!u.rows()[0].partial);

    let partial = decode_file("update-partial-row.binlog", &no_schema);
    let u = events(&partial, "ba").into_iter().find(|e| e.kind == 'u').unwrap();
    assert!(u.rows()[0].partial);
    assert_eq!(after(u, 0), [Value::Int(4), Value::Null, Value::Int(40)]);
}

#[test]
fn gtids_compression_and_truncation() {
    let gtid = decode_file("binlog_transaction_with_GTID.000001", &no_schema);
    assert_eq!(gtid.gtids, (1..=3).map(|n| format!("006c2cf2-b1ea-11e4-9057-8c705a3d3e78:{n}")).collect::<Vec<_>>());
    let tagged = decode_file("binlog_transaction_with_GTID_TAG.000001", &no_schema);
    assert_eq!(tagged.gtids, ["55778904-0299-11f1-b1b8-4ef0c4956feb:mytag:3"]);
    assert_eq!(after(&tagged.events[0], 0), [Value::Int(3), Value::Int(100), text("250.00")]);

    let compressed = decode_file("transaction_compression.000001", &no_schema);
    let [event] = &compressed.events[..] else { panic!("{:?}", compressed.events) };
    assert!(event.compressed);
    assert_eq!(event.table, "tb1");
    assert_eq!(after(event, 0), [Value::Int(1)]);

    let truncated = decode_file("binlog_truncated_event.000001", &no_schema);
    assert!(truncated.stopped.is_some() && truncated.events.is_empty());
}

#[test]
fn mysql9_vectors() {
    let file = decode_file("vector.binlog", &no_schema);
    let foo = events(&file, "foo");
    // [1.1, 2.2, 3.3] as little-endian f32s.
    assert_eq!(after(foo[0], 0), [Value::UInt(1), text("zcyMP83MDEAzM1NA")]);
    let bar = events(&file, "bar");
    assert_eq!(&*bar[0].names, ["id", "vector_column", "foo", "vector_column2"].map(Arc::<str>::from));
    // The text column between two VECTORs keeps its utf8mb4 charset (MySQL counts VECTOR as a character column).
    assert_eq!(after(bar[0], 1)[2], text("bar"));
}

#[test]
fn mariadb_10_5_outbox() {
    let file = decode_file("mariadb-bin.000001", &no_schema);
    assert_eq!(file.gtids, ["0-1-1", "0-1-2"]);
    let event = &file.events[0];
    assert_eq!(event.type_code, 23, "MariaDB writes v1 rows events");
    assert_eq!(event.primary_key, [0]);
    assert_eq!(
        after(event, 0),
        [Value::Int(62), text("foo"), text("JSON"), text("eyJmb28iOjF9"), text("2022-04-20T22:18:04Z")]
    );
}

/// `information_schema.COLUMNS` of `fx.t_str` as MariaDB 10.11 reports it (see the fixtures' README).
fn t_str_schema(table: &str) -> Option<Vec<SchemaColumn>> {
    if table != "t_str" {
        return None;
    }
    let mut columns = vec![
        column("id", "int", "int(11)", None),
        column("c", "char", "char(10)", Some("utf8mb4")),
        column("vc", "varchar", "varchar(300)", Some("utf8mb4")),
        column("g", "point", "point", None),
        column("vl", "varchar", "varchar(20)", Some("latin1")),
        column("va", "varchar", "varchar(20)", Some("ascii")),
        column("vb", "varbinary", "varbinary(20)", None),
        column("b", "binary", "binary(4)", None),
        column("tx", "text", "text", Some("utf8mb4")),
        column("bl", "blob", "blob", None),
        column("mtx", "mediumtext", "mediumtext", Some("latin1")),
        column("ltx", "longtext", "longtext", Some("utf8mb4")),
        column("c255", "char", "char(255)", Some("utf8mb4")),
        column("u16", "varchar", "varchar(10)", Some("utf16")),
        column("u3", "varchar", "varchar(10)", Some("utf8mb3")),
        column("e", "enum", "enum('a','b','c')", Some("utf8mb4")),
        column("s", "set", "set('x','y','z')", Some("utf8mb4")),
        column("j", "longtext", "longtext", Some("utf8mb4")),
        column("geo", "geometry", "geometry", None),
        column("cl", "char", "char(3)", Some("latin1")),
    ];
    columns[0].is_primary_key = true;
    columns[17].is_json = true;
    Some(columns)
}

#[test]
fn mariadb_10_11_numbers() {
    let file = decode_file("mariadb-10.11-types.000001", &no_schema);
    assert_eq!(file.gtids.len(), 17);
    assert_eq!(file.gtids[0], "0-7-1");
    let t = events(&file, "t_num");
    assert!(t.iter().all(|e| matches!(e.type_code, 23..=25)));
    let row = after(t[0], 0);
    let expected = [
        Value::Int(1),
        Value::Int(-128),
        Value::UInt(255),
        Value::Int(-32768),
        Value::UInt(65535),
        Value::Int(-8_388_608),
        Value::UInt(16_777_215),
        Value::Int(-2_147_483_648),
        Value::UInt(4_294_967_295),
        Value::Int(i64::MIN),
        Value::UInt(u64::MAX),
        Value::Int(1901),
        // Signed only if the YEAR before it were not counted in SIGNEDNESS (MariaDB counts it).
        Value::UInt(4_000_000_000),
        Value::Float(1.1),
        Value::Float(-2.5e-300),
        text("12.30"),
        text("-12345678901234567890123456789012345.123456789012345678901234567890"),
        text("-99999"),
        text("0.0001"),
        Value::Bool(true),
        text("AQI="),
        text("AQAAAAAAAIA="),
    ];
    assert_eq!(row, expected);
    let row = after(t[0], 1);
    assert_eq!(
        row[13..19],
        [
            Value::Float(-3.402_823_5e38),
            Value::Float(f64::MAX),
            text("-0.05"),
            text("0.000000000000000000000000000001"),
            text("0"),
            text("0.9999"),
        ]
    );
    assert_eq!(row[19..], [Value::Bool(false), text("AAA="), text("AAAAAAAAAAA=")]);
    let row = after(t[0], 2);
    assert_eq!((&row[11], &row[15], &row[16]), (&Value::Int(0), &text("0.00"), &Value::Null), "YEAR 0 stays 0");
    let update = after(t[1], 0);
    assert_eq!((&update[8], &update[15]), (&Value::UInt(4_294_967_294), &text("99999999.99")));
    assert_eq!(before(t[2], 0)[0], Value::Int(2));
}

#[test]
fn mariadb_10_11_temporals() {
    let file = decode_file("mariadb-10.11-types.000001", &no_schema);
    let t = &events(&file, "t_time")[0];
    let day = 86_400i64;
    assert_eq!(
        after(t, 0)[1..],
        [
            Value::Int(19_724),
            Value::Int(-(838 * 3600 + 59 * 60 + 59) * 1_000_000),
            Value::Int(-((12 * 3600 + 34 * 60 + 56) * 1_000_000 + 789_000)),
            Value::Int(-1),
            Value::Int(1_704_164_645_000),
            Value::Int(1_704_164_645_100),
            Value::Int(1_704_164_645_120),
            Value::Int(1_704_164_645_123_400),
            Value::Int(1_704_164_645_123_456),
            text("2024-01-02T03:04:05Z"),
            text("2024-01-02T03:04:05.12Z"),
            text("2024-01-02T03:04:05.120Z"),
            text("2024-01-02T03:04:05.000001Z"),
        ]
    );
    assert_eq!(
        after(t, 1)[1..],
        [
            Value::Int(-354_285),
            Value::Int((838 * 3600 + 59 * 60 + 59) * 1_000_000),
            Value::Int(500_000),
            Value::Int(day * 1_000_000 - 1),
            Value::Int(-354_285 * day * 1000),
            Value::Int(253_402_300_799_900),
            Value::Int(-1),
            Value::Int(100),
            Value::Int(253_402_300_799_999_999),
            text("1970-01-01T00:00:01Z"),
            text("2038-01-19T03:14:07.99Z"),
            text("1999-12-31T23:59:59.999Z"),
            text("2038-01-19T03:14:07.999999Z"),
        ]
    );
    // Zero dates are null; zero times are 0.
    let zero = after(t, 2);
    assert_eq!(zero[1], Value::Null);
    assert_eq!(zero[2..5], [Value::Int(0), Value::Int(0), Value::Int(0)]);
    assert!(zero[5..].iter().all(|v| *v == Value::Null));
}

#[test]
fn mariadb_10_11_strings() {
    for schemas in [&no_schema as Schemas<'_>, &t_str_schema] {
        let file = decode_file("mariadb-10.11-types.000001", schemas);
        let t = events(&file, "t_str");
        let row = after(t[0], 0);
        let get = |c| t[0].value(row, c);
        assert_eq!(get("c"), &text("ab"), "CHAR trailing spaces are not in the binlog");
        assert_eq!(get("vc"), &text("héllo 😀"));
        assert_eq!(get("g"), &text("AQEAAAAAAAAAAADwPwAAAAAAAABA"), "WKB of POINT(1 2)");
        assert_eq!(get("vl"), &text("café é"), "latin1 after a GEOMETRY column");
        assert_eq!(get("va"), &text("plain"));
        assert_eq!(get("vb"), &text("AP8Q"));
        assert_eq!(get("b"), &text("AQIDBA=="));
        assert_eq!(get("tx"), &text("text é"));
        assert_eq!(get("bl"), &text("3q2+7w=="));
        assert_eq!(get("mtx"), &text("médium"));
        assert_eq!(get("ltx"), &text("long 😀 text"));
        assert_eq!(get("c255"), &text("padded"));
        assert_eq!(get("u16"), &text("ütf16 😀"));
        assert_eq!(get("u3"), &text("mb3 é"));
        assert_eq!((get("e"), get("s")), (&text("b"), &text("x,z")));
        assert_eq!(get("cl"), &text("é"));
        let empty = after(t[0], 1);
        assert_eq!(t[0].value(empty, "b"), &text("AAAAAA=="), "BINARY(4) zero-padded like a SELECT");
        assert_eq!(t[0].value(empty, "e"), &text(""));
        assert!(after(t[0], 2)[1..].iter().all(|v| *v == Value::Null));
        let update = after(t[1], 0);
        assert_eq!(t[1].value(update, "vl"), &text("Ærø"));
        assert_eq!(t[1].value(update, "s"), &text("x,y,z"));
    }

    // MariaDB JSON is LONGTEXT: only the schema says so. With it, the text is normalised like MySQL's JSON.
    let raw = decode_file("mariadb-10.11-types.000001", &no_schema);
    let t = events(&raw, "t_str");
    assert_eq!(
        t[0].value(after(t[0], 0), "j"),
        &text(r#"{"b": [true, null], "a": 1, "s": "é\u00e9", "n": 1.50, "big": 12345678901234567890}"#)
    );
    let file = decode_file("mariadb-10.11-types.000001", &t_str_schema);
    let t = events(&file, "t_str");
    assert_eq!(
        t[0].value(after(t[0], 0), "j"),
        &text(r#"{"b":[true,null],"a":1,"s":"éé","n":1.5,"big":12345678901234567890}"#)
    );
    assert_eq!(t[1].value(after(t[1], 0), "j"), &text(r#"{"k":"v"}"#));
}

#[test]
fn mariadb_10_11_wide_enum_set_and_keys() {
    let file = decode_file("mariadb-10.11-types.000001", &no_schema);
    let wide = events(&file, "t_wide")[0];
    let values: Vec<&[Value]> = wide.rows().iter().map(|r| &r.after.as_deref().unwrap()[1..]).collect();
    assert_eq!(values[0], [text("v300"), text("s1,s64")]);
    assert_eq!(values[1], [text("v1"), text("")]);
    assert_eq!(values[2], [text("v256"), text("s2,s9,s33")]);

    let pk2 = events(&file, "t_pk2");
    assert_eq!(pk2[0].primary_key, [1, 0], "PRIMARY KEY (b, a) in key order");
    let minimal = &pk2[1].rows()[0];
    assert!(minimal.partial, "binlog_row_image=MINIMAL");
    assert_eq!(minimal.before.as_deref(), Some(&[Value::Int(1), text("x"), Value::Null][..]));
    assert_eq!(minimal.after.as_deref(), Some(&[Value::Null, Value::Null, Value::Int(11)][..]));
    assert!(!pk2[2].rows()[0].partial);
    assert_eq!(pk2[3].rows().len(), 2);
}
