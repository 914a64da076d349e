use super::*;

/// `{"a":1,"b":[true,null]}` as MySQL stores it: a small object whose int16 and literals are inlined.
const OBJECT: &[u8] = &[
    0x00, // small object
    0x02, 0x00, 0x1e, 0x00, // 2 elements, 30 bytes
    0x12, 0x00, 0x01, 0x00, // key "a" at 18, length 1
    0x13, 0x00, 0x01, 0x00, // key "b" at 19, length 1
    0x05, 0x01, 0x00, // int16 1, inlined
    0x02, 0x14, 0x00, // small array at 20
    b'a', b'b', //
    0x02, 0x00, 0x0a, 0x00, // array: 2 elements, 10 bytes
    0x04, 0x01, 0x00, // true
    0x04, 0x00, 0x00, // null
];

#[test]
fn binary_documents() {
    let cases: &[(&[u8], &str)] = &[
        (OBJECT, r#"{"a":1,"b":[true,null]}"#),
        (&[], "null"),
        (&[0x04, 0x02], "false"),
        (&[0x05, 0xff, 0xff], "-1"),
        (&[0x06, 0xff, 0xff], "65535"),
        (&[0x07, 0x00, 0x00, 0x00, 0x80], "-2147483648"),
        (&[0x08, 0xff, 0xff, 0xff, 0xff], "4294967295"),
        (&[0x09, 0, 0, 0, 0, 0, 0, 0, 0x80], "-9223372036854775808"),
        (&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], "18446744073709551615"),
        (&[0x0b, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f], "1.5"),
        (&[0x0b, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f], "1.0"),
        (&[0x0c, 0x07, b'a', b'"', b'\\', b'\n', 0x01, 0xc3, 0xa9], r#""a\"\\\n\u0001é""#),
        (&[0x02, 0x00, 0x00, 0x04, 0x00], "[]"),
        (&[0x00, 0x00, 0x00, 0x04, 0x00], "{}"),
        // Large array with one inlined int32 and one string stored after the header.
        (
            &[
                0x03, 0x02, 0, 0, 0, 0x19, 0, 0, 0, // 2 elements, 25 bytes
                0x07, 0xfe, 0xff, 0xff, 0xff, // int32 -2, inlined in the large format
                0x0c, 0x13, 0, 0, 0,    // string at 19
                0x00, // padding byte the offsets skip
                0x05, b'h', b'e', b'l', b'l', b'o',
            ],
            r#"[-2,"hello"]"#,
        ),
        // Opaque values: DECIMAL(5,2) 123.45, DATE, DATETIME, TIME, and a VARCHAR shown as base64.
        (&[0x0f, 246, 0x05, 5, 2, 0x80, 0x7b, 0x2d], "123.45"),
        (&[0x0f, 15, 0x01, b'U'], r#""base64:type15:VQ==""#),
    ];
    for (bytes, expected) in cases {
        assert_eq!(binary_to_text(bytes).as_deref(), Ok(*expected), "{bytes:02x?}");
    }
}

fn packed_datetime(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64, us: i64) -> [u8; 8] {
    let ymd = ((y * 13 + mo) << 5) | d;
    let hms = (h << 12) | (mi << 6) | s;
    ((((ymd << 17) | hms) << 24) + us).to_le_bytes()
}

#[test]
fn opaque_temporals() {
    let opaque = |ty: u8, data: [u8; 8]| [&[0x0f, ty, 8][..], &data[..]].concat();
    let date = opaque(10, packed_datetime(2012, 3, 18, 0, 0, 0, 0));
    assert_eq!(binary_to_text(&date).unwrap(), r#""2012-03-18""#);
    let datetime = opaque(12, packed_datetime(2012, 3, 18, 11, 30, 45, 0));
    assert_eq!(binary_to_text(&datetime).unwrap(), r#""2012-03-18 11:30:45.000000""#);
    let time = -((((87i64 << 12) | (31 << 6) | 46) << 24) + 654_321);
    assert_eq!(binary_to_text(&opaque(11, time.to_le_bytes())).unwrap(), r#""-87:31:46.654321""#);
}

#[test]
fn malformed_binary_is_an_error_not_a_panic() {
    let cases: &[&[u8]] = &[
        &[0x00],
        &[0x00, 0x01, 0x00, 0xff, 0x00],
        &[0x00, 0x01, 0x00, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00],
        &[0x02, 0xff, 0xff, 0x04, 0x00],
        &[0x0c, 0x05, b'a'],
        &[0x0c, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0x04, 0x07],
        &[0x0e],
        &[0x0f, 246, 0x01, 0x05],
        &[0x0f, 10, 0x02, 0x00, 0x00],
        &[0x09, 0x00],
    ];
    for bytes in cases {
        assert!(binary_to_text(bytes).is_err(), "{bytes:02x?}");
    }
    // Truncating a valid document anywhere must fail cleanly.
    for n in 1..OBJECT.len() {
        assert!(binary_to_text(&OBJECT[..n]).is_err(), "prefix {n}");
    }
}

#[test]
fn nesting_is_bounded() {
    // [[[[...]]]] deeper than MAX_DEPTH: each level is a small array holding one non-inlined array.
    let mut doc = vec![0x02, 0x00, 0x00, 0x04, 0x00];
    for _ in 0..(MAX_DEPTH + 5) {
        let inner = doc.clone();
        let size = (4 + 3 + inner.len() - 1) as u16;
        let mut next = vec![0x02, 0x01, 0x00];
        next.extend_from_slice(&size.to_le_bytes());
        next.extend_from_slice(&[inner[0], 0x07, 0x00]);
        next.extend_from_slice(&inner[1..]);
        doc = next;
    }
    assert_eq!(binary_to_text(&doc), Err("JSON nested too deeply"));
}

#[test]
fn text_normalisation_keeps_key_order() {
    let cases = [
        (r#"{"b": [true, null], "a": 1}"#, r#"{"b":[true,null],"a":1}"#),
        ("  [ 1 ,\n 2.50 , -3e2, \"x\\u00e9\" ] ", r#"[1,2.5,-300.0,"xé"]"#),
        (r#"{ "k" : "v" }"#, r#"{"k":"v"}"#),
        ("18446744073709551615", "18446744073709551615"),
        ("12345678901234567890123", "1.2345678901234568e+22"),
        (r#""tab\tquote\"""#, r#""tab\tquote\"""#),
        ("[]", "[]"),
        ("{}", "{}"),
        ("[[],{}]", "[[],{}]"),
    ];
    for (input, expected) in cases {
        assert_eq!(normalize_text(input).as_deref(), Some(expected), "{input}");
    }
    for invalid in ["", "{", "[1,]", "nul", "1 2", "{\"a\" 1}"] {
        assert_eq!(normalize_text(invalid), None, "{invalid}");
    }
}

#[test]
fn both_flavours_agree() {
    // The same document as MySQL binary JSON and as MariaDB text gives the same string (keys already in MySQL order).
    let text = normalize_text(" { \"a\" : 1 , \"b\" : [ true , null ] } ").unwrap();
    assert_eq!(binary_to_text(OBJECT).unwrap(), text);
}
