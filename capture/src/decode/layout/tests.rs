use super::super::schema::tests::column;
use super::super::test_support::{lenenc, lenenc_str, table_map, tlv};
use super::*;

const SIGNEDNESS: u8 = 1;
const DEFAULT_CHARSET: u8 = 2;
const COLUMN_CHARSET: u8 = 3;
const COLUMN_NAME: u8 = 4;
const SET_STR_VALUE: u8 = 5;
const ENUM_STR_VALUE: u8 = 6;
const SIMPLE_PRIMARY_KEY: u8 = 8;
const ENUM_AND_SET_DEFAULT_CHARSET: u8 = 10;

fn ints(values: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    for &v in values {
        lenenc(v, &mut out);
    }
    out
}

fn strings(values: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        lenenc_str(v.as_bytes(), &mut out);
    }
    out
}

fn member_lists(lists: &[&[&str]]) -> Vec<u8> {
    let mut out = Vec::new();
    for list in lists {
        lenenc(list.len() as u64, &mut out);
        out.extend(strings(list));
    }
    out
}

const NAMES: [&str; 13] = ["id", "y", "n", "name", "l", "e", "s", "d", "ts", "j", "b", "g", "bits"];

/// A table map with every kind of metadata, as MySQL 8 writes it with `binlog_row_metadata=FULL`.
fn full_table_map() -> TableMapEvent<'static> {
    let types =
        [LONGLONG, YEAR, LONG, VARCHAR, STRING, STRING, STRING, NEWDECIMAL, TIMESTAMP2, JSON, BLOB, GEOMETRY, BIT];
    let meta = [
        &[0x2c, 0x01][..], // VARCHAR(300)
        &[0xfe, 10],       // CHAR(10)
        &[0xf7, 1],        // ENUM, 1 byte
        &[0xf8, 1],        // SET, 1 byte
        &[10, 2],          // DECIMAL(10,2)
        &[3],              // TIMESTAMP(3)
        &[4],              // JSON
        &[2],              // BLOB
        &[4],              // GEOMETRY
        &[2, 1],           // BIT(10)
    ]
    .concat();
    let mut optional = Vec::new();
    // MySQL's numeric columns: id, n, d (YEAR is not one). id and n unsigned.
    tlv(SIGNEDNESS, &[0b1100_0000], &mut optional);
    // Character columns: name, l, b. Default utf8mb4_0900_ai_ci, l latin1, b binary.
    tlv(DEFAULT_CHARSET, &ints(&[255, 1, 8, 2, 63]), &mut optional);
    tlv(COLUMN_NAME, &strings(&NAMES), &mut optional);
    tlv(SET_STR_VALUE, &member_lists(&[&["x", "y"]]), &mut optional);
    tlv(ENUM_STR_VALUE, &member_lists(&[&["a", "b"]]), &mut optional);
    tlv(SIMPLE_PRIMARY_KEY, &ints(&[0]), &mut optional);
    tlv(ENUM_AND_SET_DEFAULT_CHARSET, &ints(&[255]), &mut optional);
    // A field this decoder does not know is skipped.
    tlv(200, b"future", &mut optional);
    table_map(42, &types, &meta, &optional)
}

fn members(names: &[&str]) -> Option<Box<[String]>> {
    Some(names.iter().map(|s| s.to_string()).collect())
}

#[test]
fn full_metadata() {
    let layout = TableLayout::new(&full_table_map(), None).unwrap();
    assert_eq!(layout.table_id(), 42);
    assert_eq!((layout.database(), layout.table()), ("db", "t"));
    assert_eq!(layout.column_names().iter().map(|n| &**n).collect::<Vec<_>>(), NAMES);
    assert_eq!(layout.primary_key(), [0]);
    assert!(!layout.schema_applied());
    let expected = [
        ColumnKind::Int { bytes: 8, unsigned: true },
        ColumnKind::Year,
        ColumnKind::Int { bytes: 4, unsigned: true },
        ColumnKind::Text { length_bytes: 2, charset: Charset::Utf8, json: false },
        ColumnKind::Text { length_bytes: 1, charset: Charset::Latin1, json: false },
        ColumnKind::Enum { pack: 1, members: members(&["a", "b"]) },
        ColumnKind::Set { pack: 1, members: members(&["x", "y"]) },
        ColumnKind::Decimal { precision: 10, scale: 2, size: 5 },
        ColumnKind::Timestamp2 { fsp: 3 },
        ColumnKind::Json { length_bytes: 4 },
        ColumnKind::Text { length_bytes: 2, charset: Charset::Binary, json: false },
        ColumnKind::Geometry { length_bytes: 4 },
        ColumnKind::Bit { bits: 10 },
    ];
    assert_eq!(layout.kinds(), expected);
}

#[test]
fn without_optional_metadata() {
    let layout = TableLayout::new(&table_map(1, &[LONG, VARCHAR, STRING], &[10, 0, 0xf7, 2], &[]), None).unwrap();
    assert_eq!(layout.column_names().iter().map(|n| &**n).collect::<Vec<_>>(), ["col_0", "col_1", "col_2"]);
    assert!(layout.primary_key().is_empty());
    assert_eq!(
        layout.kinds(),
        [
            ColumnKind::Int { bytes: 4, unsigned: false },
            ColumnKind::Text { length_bytes: 1, charset: Charset::Utf8, json: false },
            ColumnKind::Enum { pack: 2, members: None },
        ]
    );
}

/// MariaDB lists YEAR in SIGNEDNESS and GEOMETRY among the character columns; MySQL does neither.
#[test]
fn server_flavors() {
    let types = [YEAR, LONG, GEOMETRY, VARCHAR];
    let meta = [4, 20, 0];
    let mut optional = Vec::new();
    tlv(SIGNEDNESS, &[0b1000_0000], &mut optional); // MariaDB: YEAR unsigned, INT signed.
    tlv(DEFAULT_CHARSET, &ints(&[45, 1, 8]), &mut optional); // MariaDB: character column 1 (the VARCHAR) is latin1.
    let tme = table_map(3, &types, &meta, &optional);

    let mariadb = TableLayout::with_flavor(&tme, None, ServerFlavor::MariaDb).unwrap();
    assert_eq!(mariadb.kinds()[1], ColumnKind::Int { bytes: 4, unsigned: false });
    assert_eq!(mariadb.kinds()[3], ColumnKind::Text { length_bytes: 1, charset: Charset::Latin1, json: false });

    // Read as MySQL, the one-byte bitmap fits both layouts, so the INT takes the YEAR's bit; the charset override's
    // index only fits MariaDB's character columns, so that field is still read right.
    let mysql = TableLayout::new(&tme, None).unwrap();
    assert_eq!(mysql.kinds()[1], ColumnKind::Int { bytes: 4, unsigned: true });
    assert_eq!(mysql.kinds()[3], ColumnKind::Text { length_bytes: 1, charset: Charset::Latin1, json: false });
}

#[test]
fn column_charsets_pick_the_flavor_that_fits() {
    let mut optional = Vec::new();
    tlv(COLUMN_CHARSET, &ints(&[63, 8]), &mut optional); // two character columns: only MariaDB counts GEOMETRY
    let tme = table_map(3, &[GEOMETRY, VARCHAR], &[4, 20, 0], &optional);
    let layout = TableLayout::new(&tme, None).unwrap();
    assert_eq!(layout.kinds()[1], ColumnKind::Text { length_bytes: 1, charset: Charset::Latin1, json: false });
}

fn schema() -> Vec<SchemaColumn> {
    let mut s = vec![
        column("id", "bigint", "bigint(20) unsigned", None),
        column("y", "year", "year(4)", None),
        column("n", "int", "int(11)", None),
        column("name", "varchar", "varchar(300)", Some("utf8mb4")),
        column("l", "char", "char(10)", Some("latin1")),
        column("e", "enum", "enum('p','q','it''s')", Some("utf8mb4")),
        column("s", "set", "set('u','v')", Some("utf8mb4")),
        column("d", "decimal", "decimal(10,2)", None),
        column("ts", "timestamp", "timestamp(3)", None),
        column("j", "json", "json", None),
        column("b", "longtext", "longtext", Some("utf8mb4")),
        column("g", "point", "point", None),
        column("bits", "bit", "bit(10)", None),
    ];
    s[0].is_primary_key = true;
    s[10].is_json = true;
    s
}

#[test]
fn schema_overrides_the_table_map() {
    let layout = TableLayout::new(&full_table_map(), Some(&schema())).unwrap();
    assert!(layout.schema_applied());
    let kinds = layout.kinds();
    assert_eq!(kinds[2], ColumnKind::Int { bytes: 4, unsigned: false });
    assert_eq!(kinds[5], ColumnKind::Enum { pack: 1, members: members(&["p", "q", "it's"]) });
    assert_eq!(kinds[6], ColumnKind::Set { pack: 1, members: members(&["u", "v"]) });
    assert_eq!(kinds[10], ColumnKind::Text { length_bytes: 2, charset: Charset::Utf8, json: true });
    assert_eq!(layout.primary_key(), [0]);
}

#[test]
fn primary_key_order_comes_from_the_table_map() {
    let mut optional = Vec::new();
    tlv(SIMPLE_PRIMARY_KEY, &ints(&[1, 0]), &mut optional);
    let tme = table_map(5, &[LONG, VARCHAR, LONG], &[40, 0], &optional);
    let mut s = vec![
        column("a", "int", "int(11)", None),
        column("b", "varchar", "varchar(10)", Some("utf8mb4")),
        column("c", "int", "int(11)", None),
    ];
    s[0].is_primary_key = true;
    s[1].is_primary_key = true;
    assert_eq!(TableLayout::new(&tme, Some(&s)).unwrap().primary_key(), [1, 0]);
    s[2].is_primary_key = true;
    assert_eq!(TableLayout::new(&tme, Some(&s)).unwrap().primary_key(), [0, 1, 2]);
    assert_eq!(TableLayout::new(&tme, None).unwrap().primary_key(), [1, 0]);
}

#[test]
fn stale_schema_is_ignored() {
    let tme = full_table_map();
    let mut short = schema();
    short.pop();
    let layout = TableLayout::new(&tme, Some(&short)).unwrap();
    assert!(!layout.schema_applied());
    assert_eq!(layout.column_names()[0].as_ref(), "id");
    assert_eq!(layout.kinds()[5], ColumnKind::Enum { pack: 1, members: members(&["a", "b"]) });

    let mut retyped = schema();
    retyped[3] = column("name", "int", "int(11)", None);
    assert!(!TableLayout::new(&tme, Some(&retyped)).unwrap().schema_applied());

    // Types this module does not classify (MariaDB INET6 is a BINARY(16) in the binlog) are accepted.
    let mut inet = schema();
    inet[4] = column("l", "inet6", "inet6", None);
    assert!(TableLayout::new(&tme, Some(&inet)).unwrap().schema_applied());
}

#[test]
fn long_char_metadata() {
    // CHAR(255) in utf8mb4 is 1020 bytes: two length bits live in the type byte.
    let layout = TableLayout::new(&table_map(1, &[STRING], &[0xce, 0xfc], &[]), None).unwrap();
    assert_eq!(layout.kinds(), [ColumnKind::Text { length_bytes: 2, charset: Charset::Utf8, json: false }]);
}

#[test]
fn malformed_table_maps() {
    let table_map_error = |types: &[u8], meta: &[u8], optional: &[u8]| {
        TableLayout::new(&table_map(9, types, meta, optional), None).unwrap_err()
    };
    assert_eq!(
        table_map_error(&[LONG, 0x99], &[], &[]),
        DecodeError::UnknownColumnType { table_id: 9, column: 1, type_code: 0x99 }
    );
    let reason = |e: DecodeError| match e {
        DecodeError::TableMap { reason, .. } => reason,
        other => panic!("{other:?}"),
    };
    assert_eq!(reason(table_map_error(&[TIME2], &[7], &[])), "fractional seconds precision above 6");
    assert_eq!(reason(table_map_error(&[NEWDECIMAL], &[70, 2], &[])), "bad DECIMAL precision or scale");
    assert_eq!(reason(table_map_error(&[VARCHAR], &[1], &[])), "truncated column metadata");
    assert_eq!(reason(table_map_error(&[LONG], &[1], &[])), "column metadata longer than the columns need");
    assert_eq!(reason(table_map_error(&[BIT], &[0, 9], &[])), "bad BIT length");
    assert_eq!(reason(table_map_error(&[BLOB], &[5], &[])), "bad length size");
    assert_eq!(reason(table_map_error(&[STRING], &[0xf7, 3], &[])), "bad ENUM/SET pack length");
    let mut o = Vec::new();
    tlv(SIGNEDNESS, &[0, 0], &mut o);
    assert_eq!(reason(table_map_error(&[LONG], &[], &o)), "signedness bitmap does not match the numeric columns");
    let mut o = Vec::new();
    tlv(COLUMN_NAME, &strings(&["a", "b"]), &mut o);
    assert_eq!(reason(table_map_error(&[LONG], &[], &o)), "column names do not match the columns");
    let mut o = Vec::new();
    tlv(SIMPLE_PRIMARY_KEY, &ints(&[3]), &mut o);
    assert_eq!(reason(table_map_error(&[LONG], &[], &o)), "primary key column out of range");
    let mut o = Vec::new();
    tlv(ENUM_STR_VALUE, &member_lists(&[&["a"], &["b"]]), &mut o);
    assert_eq!(reason(table_map_error(&[STRING], &[0xf7, 1], &o)), "more member lists than ENUM/SET columns");
    assert_eq!(reason(table_map_error(&[LONG], &[], &[SIGNEDNESS, 5, 0])), "truncated optional metadata field");
    let mut o = Vec::new();
    tlv(DEFAULT_CHARSET, &ints(&[45, 4, 8]), &mut o);
    assert_eq!(
        reason(table_map_error(&[VARCHAR], &[10, 0], &o)),
        "charset override for a column that is not a character column"
    );
}

#[test]
fn unsupported_types_still_lay_out() {
    // A pre-5.0 DECIMAL has no metadata; a typed array of VARCHAR carries 1 + 3 bytes; MariaDB compression 1 or 2.
    let types = [DECIMAL, TYPED_ARRAY, BLOB_COMPRESSED, VARCHAR_COMPRESSED, LONG];
    let meta = [VARCHAR, 10, 0, 1, 4, 20, 0];
    let layout = TableLayout::new(&table_map(1, &types, &meta, &[]), None).unwrap();
    assert!(matches!(layout.kinds()[0], ColumnKind::Unsupported { .. }));
    assert!(matches!(layout.kinds()[1], ColumnKind::Unsupported { .. }));
    assert!(matches!(layout.kinds()[2], ColumnKind::Unsupported { .. }));
    assert!(matches!(layout.kinds()[3], ColumnKind::Unsupported { .. }));
    assert_eq!(layout.kinds()[4], ColumnKind::Int { bytes: 4, unsigned: false });
}
