use super::super::decimal::tests::encode as encode_decimal;
use super::*;

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn members(names: &[&str]) -> Option<Box<[String]>> {
    Some(names.iter().map(|s| s.to_string()).collect())
}

fn int(bytes: u8, unsigned: bool) -> ColumnKind {
    ColumnKind::Int { bytes, unsigned }
}

fn utf8(length_bytes: u8) -> ColumnKind {
    ColumnKind::Text { length_bytes, charset: Charset::Utf8, json: false }
}

/// (column kind, value bytes, expected value): every byte must be consumed.
fn cases() -> Vec<(ColumnKind, Vec<u8>, Value)> {
    let secs = 1_704_164_645u32.to_be_bytes(); // 2024-01-02T03:04:05Z
    let dec65 = "-12345678901234567890123456789012345.123456789012345678901234567890";
    let wide: Vec<String> = (1..=300).map(|i| format!("v{i}")).collect();
    let set64: Vec<String> = (1..=64).map(|i| format!("s{i}")).collect();
    vec![
        // Integers, signed and unsigned, every width.
        (int(1, false), vec![0x80], Value::Int(-128)),
        (int(1, true), vec![0xff], Value::UInt(255)),
        (int(2, false), vec![0x00, 0x80], Value::Int(-32768)),
        (int(2, true), vec![0xff, 0xff], Value::UInt(65535)),
        (int(3, false), vec![0x00, 0x00, 0x80], Value::Int(-8_388_608)),
        (int(3, false), vec![0xff, 0xff, 0x7f], Value::Int(8_388_607)),
        (int(3, true), vec![0xff, 0xff, 0xff], Value::UInt(16_777_215)),
        (int(4, false), vec![0xff; 4], Value::Int(-1)),
        (int(4, true), vec![0xff; 4], Value::UInt(4_294_967_295)),
        (int(8, false), vec![0, 0, 0, 0, 0, 0, 0, 0x80], Value::Int(i64::MIN)),
        (int(8, true), vec![0xff; 8], Value::UInt(18_446_744_073_709_551_615)),
        // FLOAT goes through its shortest text so 1.1 stays 1.1; DOUBLE is exact.
        (ColumnKind::Float, vec![0xcd, 0xcc, 0x8c, 0x3f], Value::Float(1.1)),
        (ColumnKind::Float, vec![0xff, 0xff, 0x7f, 0xff], Value::Float(-3.402_823_5e38)),
        (ColumnKind::Double, vec![0x2f, 0x30, 0xb7, 0xb3, 0xa7, 0xc9, 0xba, 0x81], Value::Float(-2.5e-300)),
        // DECIMAL keeps the column's scale.
        (ColumnKind::Decimal { precision: 10, scale: 2, size: 5 }, vec![0x80, 0, 0, 0x0c, 0x1e], text("12.30")),
        (ColumnKind::Decimal { precision: 10, scale: 2, size: 5 }, vec![0x7f, 0xff, 0xff, 0xff, 0xfa], text("-0.05")),
        (ColumnKind::Decimal { precision: 10, scale: 2, size: 5 }, vec![0x80, 0, 0, 0, 0], text("0.00")),
        (ColumnKind::Decimal { precision: 65, scale: 30, size: 30 }, encode_decimal(dec65, 65, 30), text(dec65)),
        // YEAR: 0 stays 0.
        (ColumnKind::Year, vec![0], Value::Int(0)),
        (ColumnKind::Year, vec![1], Value::Int(1901)),
        (ColumnKind::Year, vec![255], Value::Int(2155)),
        // DATE: days since the epoch; zero date is null.
        (ColumnKind::Date, vec![0x22, 0xd0, 0x0f], Value::Int(19_724)),
        (ColumnKind::Date, vec![0, 0, 0], Value::Null),
        // TIME: µs, negative allowed.
        (ColumnKind::Time, vec![0x59, 0x0a, 0x80], Value::Int(-(838 * 3600 + 59 * 60 + 59) * 1_000_000)),
        (ColumnKind::Time2 { fsp: 0 }, vec![0x4b, 0x91, 0x05], Value::Int(-(838 * 3600 + 59 * 60 + 59) * 1_000_000)),
        (ColumnKind::Time2 { fsp: 6 }, vec![0x7f, 0xff, 0xff, 0xff, 0xff, 0xff], Value::Int(-1)),
        (
            ColumnKind::Time2 { fsp: 3 },
            // -12:34:56.789: the integer part borrows one second from the negative fraction.
            vec![0x7f, 0x37, 0x47, 0xe1, 0x2e],
            Value::Int(-((12 * 3600 + 34 * 60 + 56) * 1_000_000 + 789_000)),
        ),
        // DATETIME: ms for fsp 0-3, µs for 4-6; zero is null.
        (ColumnKind::DateTime2 { fsp: 0 }, vec![0x99, 0xb2, 0x44, 0x31, 0x05], Value::Int(1_704_164_645_000)),
        (
            ColumnKind::DateTime2 { fsp: 3 },
            vec![0x99, 0xb2, 0x44, 0x31, 0x05, 0x04, 0xb0],
            Value::Int(1_704_164_645_120),
        ),
        (
            ColumnKind::DateTime2 { fsp: 6 },
            vec![0x99, 0xb2, 0x44, 0x31, 0x05, 0x01, 0xe2, 0x40],
            Value::Int(1_704_164_645_123_456),
        ),
        (ColumnKind::DateTime2 { fsp: 3 }, vec![0x99, 0x02, 0x7f, 0x7e, 0xfb, 0x27, 0x06], Value::Int(-1)),
        (ColumnKind::DateTime2 { fsp: 0 }, vec![0x80, 0, 0, 0, 0], Value::Null),
        (ColumnKind::DateTime, 20_240_102_030_405u64.to_le_bytes().to_vec(), Value::Int(1_704_164_645_000)),
        (ColumnKind::DateTime, vec![0; 8], Value::Null),
        // TIMESTAMP: ISO-8601 UTC with the column's fraction digits; zero is null.
        (ColumnKind::Timestamp2 { fsp: 0 }, secs.to_vec(), text("2024-01-02T03:04:05Z")),
        (ColumnKind::Timestamp2 { fsp: 3 }, [&secs[..], &[0x04, 0xb0]].concat(), text("2024-01-02T03:04:05.120Z")),
        (ColumnKind::Timestamp2 { fsp: 6 }, [&secs[..], &[0, 0, 1]].concat(), text("2024-01-02T03:04:05.000001Z")),
        (ColumnKind::Timestamp2 { fsp: 2 }, vec![0, 0, 0, 0, 0], Value::Null),
        (ColumnKind::Timestamp, 1_704_164_645u32.to_le_bytes().to_vec(), text("2024-01-02T03:04:05Z")),
        (ColumnKind::Timestamp, vec![0; 4], Value::Null),
        // BIT(1) is a boolean; wider BITs are little-endian base64.
        (ColumnKind::Bit { bits: 1 }, vec![1], Value::Bool(true)),
        (ColumnKind::Bit { bits: 1 }, vec![0], Value::Bool(false)),
        (ColumnKind::Bit { bits: 10 }, vec![0x02, 0x01], text("AQI=")),
        (ColumnKind::Bit { bits: 64 }, vec![0x80, 0, 0, 0, 0, 0, 0, 0x01], text("AQAAAAAAAIA=")),
        // ENUM and SET by member name.
        (ColumnKind::Enum { pack: 1, members: members(&["a", "b", "c"]) }, vec![2], text("b")),
        (ColumnKind::Enum { pack: 1, members: members(&["a", "b", "c"]) }, vec![0], text("")),
        (ColumnKind::Enum { pack: 2, members: Some(wide.into()) }, vec![0x2c, 0x01], text("v300")),
        (ColumnKind::Enum { pack: 1, members: None }, vec![2], Value::Int(2)),
        (ColumnKind::Set { pack: 1, members: members(&["x", "y", "z"]) }, vec![0b101], text("x,z")),
        (ColumnKind::Set { pack: 1, members: members(&["x", "y", "z"]) }, vec![0], text("")),
        (ColumnKind::Set { pack: 8, members: Some(set64.into()) }, vec![1, 0, 0, 0, 0, 0, 0, 0x80], text("s1,s64")),
        (ColumnKind::Set { pack: 1, members: None }, vec![0b101], Value::UInt(5)),
        // Strings in their charsets; binary as base64.
        (utf8(1), vec![4, 0xf0, 0x9f, 0x98, 0x80], text("😀")),
        (utf8(2), vec![2, 0, b'a', b'b'], text("ab")),
        (utf8(1), vec![0], text("")),
        (
            ColumnKind::Text { length_bytes: 1, charset: Charset::Latin1, json: false },
            b"\x04caf\xe9".to_vec(),
            text("café"),
        ),
        (
            ColumnKind::Text { length_bytes: 1, charset: Charset::Binary, json: false },
            vec![3, 0, 0xff, 0x10],
            text("AP8Q"),
        ),
        (
            ColumnKind::Text { length_bytes: 4, charset: Charset::Binary, json: false },
            vec![4, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef],
            text("3q2+7w=="),
        ),
        (
            ColumnKind::Text { length_bytes: 4, charset: Charset::Utf8, json: true },
            // Not valid JSON: kept as it is.
            [&[5u8, 0, 0, 0][..], br#"{"a":"#].concat(),
            text(r#"{"a":"#),
        ),
        (
            ColumnKind::Text { length_bytes: 4, charset: Charset::Utf8, json: true },
            [&[25u8, 0, 0, 0][..], br#"{ "b" : [1, 2] ,"a":null}"#].concat(),
            text(r#"{"b":[1,2],"a":null}"#),
        ),
        // BINARY(4) gets back the trailing zeros the binlog strips.
        (ColumnKind::FixedBinary { length_bytes: 1, width: 4 }, vec![2, 1, 2], text("AQIAAA==")),
        (ColumnKind::FixedBinary { length_bytes: 1, width: 4 }, vec![0], text("AAAAAA==")),
        (ColumnKind::FixedBinary { length_bytes: 1, width: 2 }, vec![2, 1, 2], text("AQI=")),
        // MySQL binary JSON.
        (ColumnKind::Json { length_bytes: 4 }, vec![2, 0, 0, 0, 0x04, 0x01], text("true")),
        (ColumnKind::Json { length_bytes: 4 }, vec![0, 0, 0, 0], text("null")),
        // GEOMETRY and VECTOR bytes.
        (ColumnKind::Bytes { length_bytes: 4 }, vec![3, 0, 0, 0, 1, 2, 3], text("AQID")),
        (ColumnKind::Geometry { length_bytes: 4 }, vec![7, 0, 0, 0, 0xe6, 0x10, 0, 0, 1, 2, 3], text("AQID")),
        (ColumnKind::Null, vec![], Value::Null),
    ]
}

#[test]
fn decodes_every_type() {
    for (kind, bytes, expected) in cases() {
        let mut r = Reader::new(&bytes);
        assert_eq!(decode_value(&kind, &mut r), Ok(expected), "{kind:?} {bytes:02x?}");
        assert!(r.is_empty(), "{kind:?}: {} bytes left", r.remaining());
    }
}

/// Decoding into a slot that holds another value (a string is reused) gives the same value.
#[test]
fn decodes_every_type_into_used_slots() {
    let used = [Value::Text("a longer string left over from an earlier row".into()), Value::Int(7), Value::Null];
    for (kind, bytes, expected) in cases() {
        for slot in &used {
            let mut slot = slot.clone();
            let mut r = Reader::new(&bytes);
            assert_eq!(decode_value_into(&kind, &mut r, &mut slot), Ok(()), "{kind:?}");
            assert_eq!(slot, expected, "{kind:?} {bytes:02x?}");
            assert!(r.is_empty());
        }
    }
}

#[test]
fn truncated_input_is_an_error() {
    for (kind, bytes, _) in cases() {
        for n in 0..bytes.len() {
            let mut r = Reader::new(&bytes[..n]);
            let result = decode_value(&kind, &mut r);
            assert!(matches!(result, Err(ValueError::Truncated)), "{kind:?} {n}/{}: {result:?}", bytes.len());
        }
    }
}

#[test]
fn corrupt_and_unsupported_values() {
    let cases: Vec<(ColumnKind, Vec<u8>, ValueError)> = vec![
        (
            ColumnKind::Enum { pack: 1, members: members(&["a"]) },
            vec![2],
            Corrupt("ENUM index beyond the known members"),
        ),
        (ColumnKind::Set { pack: 1, members: members(&["x"]) }, vec![2], Corrupt("SET bit beyond the known members")),
        (
            ColumnKind::Decimal { precision: 9, scale: 0, size: 4 },
            vec![0xbb, 0x9a, 0xca, 0x00],
            Corrupt("decimal digit group out of range"),
        ),
        (ColumnKind::Time2 { fsp: 0 }, vec![0x80, 0x0f, 0xff], Corrupt("invalid TIME")),
        (ColumnKind::DateTime2 { fsp: 0 }, vec![0x00, 0, 0, 0, 0], Corrupt("invalid DATETIME")),
        (ColumnKind::Timestamp2 { fsp: 6 }, vec![0, 0, 0, 1, 0xff, 0xff, 0xff], Corrupt("invalid TIMESTAMP")),
        (ColumnKind::Json { length_bytes: 4 }, vec![1, 0, 0, 0, 0x0e], Corrupt("unknown JSON value type")),
        (ColumnKind::Geometry { length_bytes: 1 }, vec![3, 0, 0, 0], Corrupt("GEOMETRY shorter than its SRID")),
        (
            ColumnKind::Unsupported { feature: "typed array column" },
            vec![],
            ValueError::Unsupported("typed array column"),
        ),
    ];
    for (kind, bytes, expected) in cases {
        assert_eq!(decode_value(&kind, &mut Reader::new(&bytes)), Err(expected), "{kind:?}");
    }
}

#[test]
fn float_widening_prints_like_the_float() {
    for (f, expected) in [(1.1f32, 1.1f64), (0.1, 0.1), (3.4028235e38, 3.4028235e38), (1e-45, 1e-45), (-0.0, -0.0)] {
        assert_eq!(widen(f), expected, "{f}");
    }
    assert!(widen(f32::NAN).is_nan());
    assert_eq!(widen(f32::INFINITY), f64::INFINITY);
}
