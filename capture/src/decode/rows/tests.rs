use super::super::charset::Charset;
use super::super::layout::ColumnKind;
use super::super::test_support::{rows_event, RowsKind};
use super::*;

fn layout() -> TableLayout {
    TableLayout::from_kinds(
        7,
        vec![
            ColumnKind::Int { bytes: 4, unsigned: false },
            ColumnKind::Text { length_bytes: 1, charset: Charset::Utf8, json: false },
            ColumnKind::Int { bytes: 2, unsigned: true },
        ],
    )
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// Row 1: (1, "ab", 7); row 2: (-2, NULL, NULL).
const TWO_ROWS: &[u8] = &[
    0b000, 1, 0, 0, 0, 2, b'a', b'b', 7, 0, //
    0b110, 0xfe, 0xff, 0xff, 0xff,
];

#[test]
fn write_rows_v1_and_v2() {
    for v2 in [false, true] {
        let event = rows_event(RowsKind::Write, v2, 7, 3, &[&[0b111]], TWO_ROWS);
        let mut out = Vec::new();
        decode_rows(&layout(), &event, &mut out).unwrap();
        assert_eq!(
            out,
            [
                RowImage { before: None, after: Some(vec![Value::Int(1), text("ab"), Value::UInt(7)]), partial: false },
                RowImage { before: None, after: Some(vec![Value::Int(-2), Value::Null, Value::Null]), partial: false },
            ],
            "v2 = {v2}"
        );
    }
}

#[test]
fn update_and_delete() {
    let event = rows_event(RowsKind::Update, false, 7, 3, &[&[0b111], &[0b111]], TWO_ROWS);
    let mut out = Vec::new();
    decode_rows(&layout(), &event, &mut out).unwrap();
    assert_eq!(
        out,
        [RowImage {
            before: Some(vec![Value::Int(1), text("ab"), Value::UInt(7)]),
            after: Some(vec![Value::Int(-2), Value::Null, Value::Null]),
            partial: false,
        }]
    );

    let event = rows_event(RowsKind::Delete, true, 7, 3, &[&[0b111]], TWO_ROWS);
    out.clear();
    decode_rows(&layout(), &event, &mut out).unwrap();
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|r| r.after.is_none() && r.before.is_some()));
    assert_eq!(out[1].before, Some(vec![Value::Int(-2), Value::Null, Value::Null]));
}

/// binlog_row_image=MINIMAL: the before image has only the key, the after image only the changed column.
#[test]
fn minimal_images_are_flagged_partial() {
    let rows = [0b0, 5, 0, 0, 0, /* after: */ 0b0, 9, 0];
    let event = rows_event(RowsKind::Update, true, 7, 3, &[&[0b001], &[0b100]], &rows);
    let mut out = Vec::new();
    decode_rows(&layout(), &event, &mut out).unwrap();
    assert_eq!(
        out,
        [RowImage {
            before: Some(vec![Value::Int(5), Value::Null, Value::Null]),
            after: Some(vec![Value::Null, Value::Null, Value::UInt(9)]),
            partial: true,
        }]
    );
}

#[test]
fn null_bitmap_wider_than_a_byte() {
    let layout = TableLayout::from_kinds(1, vec![ColumnKind::Int { bytes: 1, unsigned: false }; 10]);
    // Columns 0 and 9 are null; the others hold their index.
    let mut rows = vec![0b0000_0001, 0b0000_0010];
    rows.extend(1..=8u8);
    let event = rows_event(RowsKind::Write, true, 1, 10, &[&[0xff, 0x03]], &rows);
    let mut out = Vec::new();
    decode_rows(&layout, &event, &mut out).unwrap();
    let mut expected = vec![Value::Null];
    expected.extend((1..=8).map(Value::Int));
    expected.push(Value::Null);
    assert_eq!(out[0].after.as_deref(), Some(&expected[..]));
}

#[test]
fn event_level_errors() {
    let mut out = vec![RowImage { before: None, after: None, partial: false }];
    let event = rows_event(RowsKind::Write, true, 8, 3, &[&[0b111]], TWO_ROWS);
    assert_eq!(
        decode_rows(&layout(), &event, &mut out),
        Err(DecodeError::TableMismatch { layout_table_id: 7, event_table_id: 8 })
    );
    let event = rows_event(RowsKind::Write, true, 7, 4, &[&[0b1111]], TWO_ROWS);
    assert_eq!(
        decode_rows(&layout(), &event, &mut out),
        Err(DecodeError::ColumnCount { table_id: 7, event_columns: 4, layout_columns: 3 })
    );
    let event = rows_event(RowsKind::PartialUpdate, true, 7, 3, &[&[0b111], &[0b111]], TWO_ROWS);
    assert!(matches!(
        decode_rows(&layout(), &event, &mut out),
        Err(DecodeError::Unsupported { table_id: 7, column: None, .. })
    ));
    assert_eq!(out.len(), 1, "nothing appended on error");
}

#[test]
fn truncated_rows_append_nothing() {
    for n in 1..TWO_ROWS.len() {
        if n == 10 {
            continue; // exactly the first row
        }
        let event = rows_event(RowsKind::Write, true, 7, 3, &[&[0b111]], &TWO_ROWS[..n]);
        let mut out = Vec::new();
        let err = decode_rows(&layout(), &event, &mut out).unwrap_err();
        assert!(matches!(err, DecodeError::Truncated { table_id: 7, .. }), "{n}: {err:?}");
        assert!(out.is_empty());
    }
    let event = rows_event(RowsKind::Write, true, 7, 3, &[&[0b111]], &TWO_ROWS[..3]);
    assert_eq!(
        decode_rows(&layout(), &event, &mut Vec::new()),
        Err(DecodeError::Truncated { table_id: 7, column: Some(0), offset: 1 })
    );
}

#[test]
fn value_errors_name_the_column() {
    let layout = TableLayout::from_kinds(
        3,
        vec![
            ColumnKind::Int { bytes: 1, unsigned: false },
            ColumnKind::Decimal { precision: 9, scale: 0, size: 4 },
            ColumnKind::Unsupported { feature: "typed array column" },
        ],
    );
    let event = rows_event(RowsKind::Write, true, 3, 3, &[&[0b111]], &[0b100, 1, 0xbb, 0x9a, 0xca, 0x00]);
    assert_eq!(
        decode_rows(&layout, &event, &mut Vec::new()),
        Err(DecodeError::Corrupt { table_id: 3, column: 1, reason: "decimal digit group out of range" })
    );
    let event = rows_event(RowsKind::Write, true, 3, 3, &[&[0b111]], &[0b010, 1]);
    assert_eq!(
        decode_rows(&layout, &event, &mut Vec::new()),
        Err(DecodeError::Unsupported { table_id: 3, column: Some(2), feature: "typed array column" })
    );
    // A null unsupported column is fine.
    let event = rows_event(RowsKind::Write, true, 3, 3, &[&[0b111]], &[0b110, 1]);
    assert!(decode_rows(&layout, &event, &mut Vec::new()).is_ok());
}

/// Random bytes as row data never panic, whatever the column types.
#[test]
fn garbage_never_panics() {
    let kinds = vec![
        ColumnKind::Int { bytes: 8, unsigned: true },
        ColumnKind::Decimal { precision: 20, scale: 6, size: 10 },
        ColumnKind::Time2 { fsp: 4 },
        ColumnKind::DateTime2 { fsp: 6 },
        ColumnKind::Timestamp2 { fsp: 2 },
        ColumnKind::Text { length_bytes: 2, charset: Charset::Utf16Be, json: false },
        ColumnKind::Text { length_bytes: 4, charset: Charset::Utf8, json: true },
        ColumnKind::Json { length_bytes: 4 },
        ColumnKind::Json { length_bytes: 1 },
        ColumnKind::Bit { bits: 13 },
        ColumnKind::Enum { pack: 2, members: Some(vec!["a".into()].into()) },
        ColumnKind::Set { pack: 3, members: Some(vec!["a".into(), "b".into()].into()) },
        ColumnKind::Date,
        ColumnKind::Time,
        ColumnKind::DateTime,
    ];
    let n = kinds.len();
    let layout = TableLayout::from_kinds(1, kinds);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = (next() % 96) as usize;
        let mut rows: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Mostly JSON columns hold a small binary document, to reach deeper than the length checks.
        if rows.len() > 20 && next() % 2 == 0 {
            rows[0] = 0;
            rows[1] = 0;
        }
        let event = rows_event(RowsKind::Update, next() % 2 == 0, 1, n, &[&[0xff, 0x7f], &[0xff, 0x7f]], &rows);
        let mut out = Vec::new();
        let _ = decode_rows(&layout, &event, &mut out);
    }
}

/// Rows decoded into recycled vectors (holding other rows' values, of other types and lengths) are the same rows.
#[test]
fn pooled_vectors_decode_the_same_rows() {
    let dirty = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| match i % 3 {
                0 => Value::Text("left over from another row".into()),
                1 => Value::Float(2.5),
                _ => Value::Int(-9),
            })
            .collect()
    };
    let cases = [
        rows_event(RowsKind::Write, true, 7, 3, &[&[0b111]], TWO_ROWS),
        rows_event(RowsKind::Update, false, 7, 3, &[&[0b111], &[0b111]], TWO_ROWS),
        rows_event(RowsKind::Update, true, 7, 3, &[&[0b001], &[0b100]], &[0b0, 5, 0, 0, 0, 0b0, 9, 0]),
    ];
    for event in cases {
        let mut expected = Vec::new();
        decode_rows(&layout(), &event, &mut expected).unwrap();
        for width in [0, 2, 3, 5] {
            let mut pool = ImagePool::default();
            for _ in 0..4 {
                pool.recycle(RowImage { before: Some(dirty(width)), after: Some(dirty(width)), partial: false });
            }
            let mut out = Vec::new();
            decode_rows_pooled(&layout(), &event, &mut out, &mut pool).unwrap();
            assert_eq!(out, expected, "recycled width {width}");
        }
    }
}

/// The pool keeps a rows event's worth of vectors and only short strings, so what it holds stays small.
#[test]
fn the_pool_keeps_few_vectors_and_short_strings() {
    let mut pool = ImagePool::default();
    let long = "x".repeat(ImagePool::MAX_TEXT + 1);
    pool.recycle(RowImage { before: Some(vec![text("short"), text(&long)]), after: None, partial: false });
    assert_eq!(pool.vectors, [vec![text("short"), Value::Null]]);
    for _ in 0..ImagePool::MAX_VECTORS + 10 {
        pool.recycle(RowImage { before: Some(vec![Value::Int(1)]), after: Some(vec![Value::Int(2)]), partial: false });
    }
    assert_eq!(pool.vectors.len(), ImagePool::MAX_VECTORS);
}
